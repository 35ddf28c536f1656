// Command kfake serves franz-go's in-memory kfake broker on one port, the
// peer that .ci/bench/produce.sh measures Chronik against. On SIGINT it
// prints how many produce requests, partition batches and bytes it took.
package main

import (
	"flag"
	"fmt"
	"os"
	"os/signal"
	"sync/atomic"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"
)

func main() {
	port := flag.Int("port", 29192, "port to listen on (127.0.0.1)")
	flag.Parse()
	c, err := kfake.NewCluster(kfake.Ports(*port), kfake.NumBrokers(1), kfake.SeedTopics(-1))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	var requests, batches, bytes atomic.Int64
	c.ControlKey(0, func(kreq kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		requests.Add(1)
		for _, t := range kreq.(*kmsg.ProduceRequest).Topics {
			for _, p := range t.Partitions {
				batches.Add(1)
				bytes.Add(int64(len(p.Records)))
			}
		}
		return nil, nil, false // kfake answers as usual
	})
	fmt.Println("ready", c.ListenAddrs())
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, os.Interrupt)
	<-ch
	fmt.Printf("produce requests=%d partition-batches=%d bytes=%d\n", requests.Load(), batches.Load(), bytes.Load())
	c.Close()
}
