package main

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// TestConsoleCluster: three `chronik serve --peers` nodes with admin
// listeners. A node's console lists every node and its health, shows
// each partition's leader and replicas, and answers a message read of a
// partition it does not lead with 409 naming the leader (the pages say
// so, and do not proxy), while the leader's console serves the page.
func TestConsoleCluster(t *testing.T) {
	c := newCluster(t, 3)
	admins := freeAddrs(t, 3)
	for id := 1; id <= 3; id++ {
		c.startWith(id, "--peers", c.peers(), "--admin-listen", admins[id-1])
	}
	for id := 1; id <= 3; id++ {
		c.waitUp(id)
		for i := 0; ; i++ {
			if code, _ := httpGet(t, "http://"+admins[id-1]+"/readyz"); code == 200 {
				break
			}
			if i > 300 {
				t.Fatalf("node %d not ready in 30 s\n%s", id, c.logTail(id))
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.kafka...), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for i := 0; ; i++ { // until every node has registered
		resp, err := kadm.NewClient(cl).CreateTopic(ctx, 3, 3, nil, "spread")
		if err == nil && resp.Err == nil {
			break
		}
		if i > 100 {
			t.Fatalf("create: %v %v", err, resp.Err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	for p := int32(0); p < 3; p++ {
		for i := 0; ; i++ {
			err := cl.ProduceSync(ctx, &kgo.Record{Topic: "spread", Partition: p, Value: []byte(fmt.Sprintf("p%d", p))}).FirstErr()
			if err == nil {
				break
			}
			if i > 50 {
				t.Fatalf("produce to spread-%d: %v", p, err)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}

	c1 := &consoleClient{t: t, base: "http://" + admins[0], hc: newJarClient(), hdr: http.Header{}}
	var ov struct{ Nodes []ConsoleNode }
	for i := 0; ; i++ {
		c1.get("/v1/console/overview", &ov)
		alive := 0
		for _, n := range ov.Nodes {
			if n.Alive {
				alive++
			}
		}
		if len(ov.Nodes) == 3 && alive == 3 {
			break
		}
		if i > 100 {
			t.Fatalf("overview of node 1: %+v", ov)
		}
		time.Sleep(100 * time.Millisecond)
	}
	var tp struct{ Partitions []ConsolePartition }
	c1.get("/v1/console/topics/spread", &tp)
	if len(tp.Partitions) != 3 {
		t.Fatalf("topic page: %+v", tp)
	}
	for _, p := range tp.Partitions {
		if len(p.Replicas) != 3 || p.Leader < 1 || !p.Hosted || p.LeaderHere != (p.Leader == 1) {
			t.Errorf("partition %+v", p)
		}
	}
	// Partition 0 read on a node that does not lead it, then on its leader.
	p0 := tp.Partitions[0]
	other := p0.Leader%3 + 1
	path := "/v1/console/topics/spread/partitions/0/messages"
	follower := &consoleClient{t: t, base: "http://" + admins[other-1], hc: newJarClient(), hdr: http.Header{}}
	code, raw, _ := follower.do("GET", path, nil, false)
	if code != 409 || !strings.Contains(string(raw), fmt.Sprintf("by node %d", p0.Leader)) {
		t.Errorf("node %d reading spread-0 led by node %d: %d %s", other, p0.Leader, code, raw)
	}
	leader := &consoleClient{t: t, base: "http://" + admins[p0.Leader-1], hc: newJarClient(), hdr: http.Header{}}
	var pg ConsolePage
	leader.get(path, &pg)
	if len(pg.Records) != 1 || pg.Records[0].Value.Text != "p0" {
		t.Errorf("the leader's page: %+v", pg)
	}
}
