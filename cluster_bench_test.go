package main

// Cluster benchmarks (README, "Cluster performance"): produce throughput of
// a three-node RF=3 cluster beside a standalone broker of the same build,
// the time a producer stalls when a partition leader dies, and what 1,000
// idle partitions cost compared with 10.
//
// Every node runs in this process (a cluster.Node, a broker and a Kafka
// server each, on their own 127.0.0.1 ports and temp data directory, fsync
// always), driven by kgo over real TCP: starting a cluster takes well under
// a second instead of a process start per node, the server side of a
// failover can be watched directly (broker.PartitionLeader on the
// survivors), and the idle measurement can read the engine and transport
// counters and the process CPU time. A "kill" cuts the node's raft traffic
// (transport fault), then closes its raft transport and its Kafka listener
// and connections at once, so peers and clients see every connection drop
// as they would after SIGKILL.
//
//	go test -run '^$' -bench 'ClusterProduce' -benchtime 3s .
//	go test -run '^$' -bench 'ClusterFailover' -benchtime 5x .
//	go test -run '^$' -bench 'ClusterIdle' -benchtime 1x .
//
// CHRONIK_BENCH_LOG=1 (or =debug) sends the nodes' logs to stderr.

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/chronik-stream/chronik/broker"
	"github.com/chronik-stream/chronik/cluster"
	"github.com/chronik-stream/chronik/kafka"
)

const cbRecordSize = 1024

var cbValue = func() []byte {
	v := make([]byte, cbRecordSize)
	for i := range v {
		v[i] = byte(i*7 + i/13)
	}
	return v
}()

type cbNode struct {
	id    int
	node  *cluster.Node // nil: standalone
	b     *broker.Broker
	srv   *kafka.Server
	addr  string
	serve chan error
	down  bool
}

// cbCluster is n in-process nodes (clustered) or one standalone broker.
type cbCluster struct {
	tb        testing.TB
	dir       string
	clustered bool
	nodes     []*cbNode
	created   time.Duration // the last createTopic's CreateTopic call

	commitMu sync.Mutex
	commits  []time.Duration // leaders' propose-to-commit times (NodeConfig.OnCommit)
}

func (c *cbCluster) onCommit(d time.Duration) {
	c.commitMu.Lock()
	if len(c.commits) < 1<<20 {
		c.commits = append(c.commits, d)
	}
	c.commitMu.Unlock()
}

// takeCommits returns and forgets the commit times recorded so far, sorted.
func (c *cbCluster) takeCommits() []time.Duration {
	c.commitMu.Lock()
	out := c.commits
	c.commits = nil
	c.commitMu.Unlock()
	slices.Sort(out)
	return out
}

func cbLogger(id int) zerolog.Logger {
	level := zerolog.InfoLevel
	switch os.Getenv("CHRONIK_BENCH_LOG") {
	case "":
		return zerolog.Nop()
	case "debug":
		level = zerolog.DebugLevel
	}
	return zerolog.New(zerolog.ConsoleWriter{Out: os.Stderr, TimeFormat: "15:04:05.000", NoColor: true}).
		Level(level).With().Timestamp().Int("n", id).Logger()
}

// cbStart starts n clustered nodes, or one standalone broker when
// clustered is false. close (not the benchmark's cleanup) stops it, so
// one target's background work never overlaps the next target's run.
func cbStart(tb testing.TB, n int, clustered bool) *cbCluster {
	tb.Helper()
	dir, err := os.MkdirTemp("", "chronik-cbench-")
	if err != nil {
		tb.Fatal(err)
	}
	c := &cbCluster{tb: tb, dir: dir, clustered: clustered}
	if !clustered {
		n = 1
	}
	peers := map[uint64]string{}
	rafts := make([]net.Listener, n)
	kafkas := make([]net.Listener, n)
	for i := range n {
		if clustered {
			if rafts[i], err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
				tb.Fatal(err)
			}
			peers[uint64(i+1)] = rafts[i].Addr().String()
		}
		if kafkas[i], err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
			tb.Fatal(err)
		}
	}
	// Peers speak mutual TLS, as `chronik serve` does by default.
	var tlsOf func(int) *cluster.PeerTLS
	if clustered {
		tlsOf = testPeerTLS(tb, n)
	}
	for i := range n {
		id := i + 1
		in := &cbNode{id: id, addr: kafkas[i].Addr().String(), serve: make(chan error, 1)}
		cfg := broker.Config{
			DataDir: fmt.Sprintf("%s/node%d", dir, id), NodeID: int32(id),
			AdvertisedHost: "127.0.0.1", AdvertisedPort: int32(kafkas[i].Addr().(*net.TCPAddr).Port),
			Fsync: broker.FsyncAlways,
			// One __consumer_offsets partition instead of 50: no consumer
			// groups run here, and 50 extra raft groups would blur the
			// idle comparison.
			OffsetsTopicPartitions: 1,
			Logger:                 cbLogger(id),
		}
		if clustered {
			in.node, err = cluster.StartNode(cluster.NodeConfig{NodeID: uint64(id), Peers: peers, Listener: rafts[i],
				OnCommit: c.onCommit, Logger: cbLogger(id), TLS: tlsOf(id)})
			if err != nil {
				tb.Fatal(err)
			}
			cfg.Replication = in.node
		}
		if in.b, err = broker.Open(cfg); err != nil {
			tb.Fatal(err)
		}
		in.srv = kafka.New(kafka.Config{Logger: cbLogger(id)}, in.b)
		go func(ln net.Listener) { in.serve <- in.srv.Serve(ln) }(kafkas[i])
		c.nodes = append(c.nodes, in)
	}
	return c
}

func (c *cbCluster) close() {
	for _, in := range c.nodes {
		if in.down {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		in.srv.Shutdown(ctx)
		cancel()
		<-in.serve
		in.b.Close()
		if in.node != nil {
			in.node.Close()
		}
		in.down = true
	}
	os.RemoveAll(c.dir)
}

// kill stops node id as abruptly as this process can: its raft traffic is
// cut first, then its raft transport and its Kafka server close together
// (every connection dropped, no drain), then its broker.
func (c *cbCluster) kill(id int) {
	in := c.nodes[id-1]
	f := cluster.Fault{DropTo: map[uint64]bool{}, DropFrom: map[uint64]bool{}}
	for _, other := range c.nodes {
		if other.id != id {
			f.DropTo[uint64(other.id)] = true
			f.DropFrom[uint64(other.id)] = true
		}
	}
	in.node.Transport().SetFault(f)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		ctx, cancel := context.WithCancel(context.Background())
		cancel() // no drain: close every connection now
		in.srv.Shutdown(ctx)
		<-in.serve
	}()
	in.node.Close()
	wg.Wait()
	in.b.Close()
	in.down = true
}

func (c *cbCluster) addrs() []string {
	var out []string
	for _, in := range c.nodes {
		if !in.down {
			out = append(out, in.addr)
		}
	}
	return out
}

// leaderSeenBy is the partition leader according to node id (-1: none).
func (c *cbCluster) leaderSeenBy(id int, topic string, partition int32) int32 {
	l, _, err := c.nodes[id-1].b.PartitionLeader(topic, partition)
	if err != nil {
		return -1
	}
	return l
}

// createTopic creates the topic (RF 3 clustered, 1 standalone), retrying
// while the controller elects and adds its voters, and waits until every
// live node knows a leader for every partition.
func (c *cbCluster) createTopic(name string, partitions int32) {
	c.tb.Helper()
	start := time.Now()
	rf := int16(1)
	if c.clustered {
		rf = 3
	}
	deadline := time.Now().Add(120 * time.Second)
	for {
		_, err := c.nodes[0].b.CreateTopic(name, partitions, rf, nil, false)
		if err == nil || errors.Is(err, kerr.TopicAlreadyExists) {
			break
		}
		if time.Now().After(deadline) {
			c.tb.Fatalf("create topic %s: %v", name, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	c.created = time.Since(start)
	waitUntil(c.tb, "a leader for every partition on every node", 240*time.Second, func() bool {
		for _, in := range c.nodes {
			if in.down {
				continue
			}
			for p := range partitions {
				if c.leaderSeenBy(in.id, name, p) < 1 {
					return false
				}
			}
		}
		return true
	})
}

func cbClient(tb testing.TB, seeds []string, opts ...kgo.Opt) *kgo.Client {
	tb.Helper()
	// No compression: identical values would shrink to nothing. Every
	// record fails after 2 minutes at the latest, so no wait is unbounded.
	opts = append([]kgo.Opt{kgo.SeedBrokers(seeds...),
		kgo.ProducerBatchCompression(kgo.NoCompression()),
		kgo.RecordDeliveryTimeout(2 * time.Minute)}, opts...)
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		tb.Fatal(err)
	}
	return cl
}

// cbProduceN produces n 1 KiB records (acks=all, idempotent: kgo's
// defaults) and waits for every ack.
func cbProduceN(tb testing.TB, cl *kgo.Client, n int) {
	var (
		wg     sync.WaitGroup
		failed atomic.Pointer[error]
	)
	wg.Add(n)
	for range n {
		cl.Produce(context.Background(), &kgo.Record{Value: cbValue}, func(_ *kgo.Record, err error) {
			if err != nil {
				failed.CompareAndSwap(nil, &err)
			}
			wg.Done()
		})
	}
	wg.Wait()
	if err := failed.Load(); err != nil {
		tb.Fatalf("produce: %v", *err)
	}
}

// BenchmarkClusterProduce: b.N 1 KiB records, acks=all, idempotent, into 8
// or 1 partitions of a three-node RF=3 cluster and of a standalone broker,
// both fsync always. The cluster's three nodes share this machine's cores
// and disk (three fsyncs per commit on one disk). disk-MB/s is what the
// machine's block devices were written per second meanwhile: the cluster
// writes every record three times.
func BenchmarkClusterProduce(b *testing.B) {
	for _, partitions := range []int32{8, 1} {
		for _, clustered := range []bool{true, false} {
			name := "standalone"
			if clustered {
				name = "cluster"
			}
			// Started once per target, not per b.N tried; stopped before
			// the next target starts.
			c := cbStart(b, 3, clustered)
			c.createTopic("bench", partitions)
			cl := cbClient(b, c.addrs(), kgo.DefaultProduceTopic("bench"))
			cbProduceN(b, cl, 1000) // metadata, producer id, a connection to every leader
			if clustered {
				lead := map[int32]int{}
				for p := range partitions {
					lead[c.leaderSeenBy(1, "bench", p)]++
				}
				b.Logf("partitions=%d: partitions led per node %v", partitions, lead)
			}
			b.Run(fmt.Sprintf("partitions=%d/%s", partitions, name), func(b *testing.B) {
				c.takeCommits()
				b.SetBytes(cbRecordSize)
				disk0, diskOK := diskWrittenBytes()
				start := time.Now()
				b.ResetTimer()
				cbProduceN(b, cl, b.N)
				b.StopTimer()
				if disk1, ok := diskWrittenBytes(); ok && diskOK {
					// What every node together wrote to the machine's
					// disks per second (data, fsyncs, journal).
					b.ReportMetric(float64(disk1-disk0)/time.Since(start).Seconds()/1e6, "disk-MB/s")
				}
				if cs := c.takeCommits(); len(cs) > 0 {
					// One Replicate call per produced batch on its leader.
					b.ReportMetric(float64(cs[len(cs)/2].Microseconds())/1000, "commit-p50-ms")
					b.ReportMetric(float64(cs[len(cs)*99/100].Microseconds())/1000, "commit-p99-ms")
					b.ReportMetric(float64(b.N)/float64(len(cs)), "records/commit")
				}
			})
			cl.Close()
			c.close()
		}
	}
}

// BenchmarkClusterFailover: b.N times, a fresh three-node cluster with one
// RF=3 partition takes a steady 200 records/s (1 KiB, acks=all,
// idempotent) from one client; the partition leader is killed and two
// durations are taken from the kill:
//
//   - election-ms: until both survivors (the majority) name the same new
//     leader (broker.PartitionLeader): raft alone;
//   - client-ms: until the first record produced after the kill is
//     acknowledged: election, plus the client noticing (metadata refresh,
//     retry backoff).
//
// Two clients, seeds all three nodes, no compression, unlimited record
// retries (kgo's default) within kgo.RecordDeliveryTimeout(2m):
//
//   - client=tuned: kgo.MetadataMinAge(250ms), kgo.RetryBackoffFn(100ms
//     flat), kgo.ProducerLinger(0), kgo.DialTimeout(1s);
//   - client=kgo-defaults: nothing else (metadata min age 5s, kgo's
//     jittered exponential retry backoff, linger and dial timeout).
func BenchmarkClusterFailover(b *testing.B) {
	b.Run("client=tuned", func(b *testing.B) {
		cbFailover(b, kgo.MetadataMinAge(250*time.Millisecond),
			kgo.RetryBackoffFn(func(int) time.Duration { return 100 * time.Millisecond }),
			kgo.ProducerLinger(0),
			kgo.DialTimeout(time.Second))
	})
	b.Run("client=kgo-defaults", func(b *testing.B) { cbFailover(b) })
}

func cbFailover(b *testing.B, opts ...kgo.Opt) {
	const (
		topic    = "failover"
		interval = 5 * time.Millisecond // 200 records/s
	)
	var election, client, failed []float64
	for i := range b.N {
		c := cbStart(b, 3, true)
		c.createTopic(topic, 1)
		cl := cbClient(b, c.addrs(), append([]kgo.Opt{kgo.DefaultProduceTopic(topic)}, opts...)...)
		cbProduceN(b, cl, 100)

		var (
			killedAt  atomic.Int64 // unix nanos; 0 before the kill
			firstAck  atomic.Int64 // unix nanos of the first ack of a record produced after the kill
			nfailed   atomic.Int64
			firstErr  atomic.Pointer[error]
			wg        sync.WaitGroup
			stop      = make(chan struct{})
			producing sync.WaitGroup
		)
		producing.Add(1)
		go func() {
			defer producing.Done()
			t := time.NewTicker(interval)
			defer t.Stop()
			for {
				select {
				case <-stop:
					return
				case <-t.C:
				}
				after := killedAt.Load() != 0
				wg.Add(1)
				cl.Produce(context.Background(), &kgo.Record{Value: cbValue}, func(_ *kgo.Record, err error) {
					defer wg.Done()
					if err != nil {
						nfailed.Add(1)
						firstErr.CompareAndSwap(nil, &err)
						return
					}
					if after {
						firstAck.CompareAndSwap(0, time.Now().UnixNano())
					}
				})
			}
		}()
		time.Sleep(time.Second) // steady state

		old := int(c.leaderSeenBy(1, topic, 0))
		ctlOld := c.nodes[0].b.ControllerID()
		var survivors []int
		for _, in := range c.nodes {
			if in.id != old {
				survivors = append(survivors, in.id)
			}
		}
		start := time.Now()
		killedAt.Store(start.UnixNano())
		c.kill(old)
		killDone := time.Since(start)
		var elected time.Duration
		waitUntil(b, "the survivors agree on a new leader", 30*time.Second, func() bool {
			l := c.leaderSeenBy(survivors[0], topic, 0)
			if l > 0 && int(l) != old && c.leaderSeenBy(survivors[1], topic, 0) == l {
				elected = time.Since(start)
				return true
			}
			return false
		})
		waitUntil(b, "a record produced after the kill acknowledged", 60*time.Second, func() bool { return firstAck.Load() != 0 })
		acked := time.Duration(firstAck.Load() - start.UnixNano())
		close(stop)
		producing.Wait()
		wg.Wait() // bounded by RecordDeliveryTimeout
		cl.Close()
		c.close()

		if err := firstErr.Load(); err != nil {
			b.Logf("iteration %d: %d records failed, first: %v", i, nfailed.Load(), *err)
		}
		b.Logf("iteration %d: killed node %d (controller was %d; kill took %v): new leader agreed after %v, first ack after %v",
			i, old, ctlOld, killDone.Round(time.Millisecond), elected.Round(time.Millisecond), acked.Round(time.Millisecond))
		election = append(election, float64(elected.Microseconds())/1000)
		client = append(client, float64(acked.Microseconds())/1000)
		failed = append(failed, float64(nfailed.Load()))
	}
	b.ReportMetric(0, "ns/op")
	b.ReportMetric(cbMean(election), "election-ms")
	b.ReportMetric(cbMax(election), "election-max-ms")
	b.ReportMetric(cbMean(client), "client-ms")
	b.ReportMetric(cbMax(client), "client-max-ms")
	b.ReportMetric(cbMax(failed), "failed-records-max")
}

func cbMean(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := 0.0
	for _, x := range v {
		s += x
	}
	return s / float64(len(v))
}

func cbMax(v []float64) float64 {
	m := 0.0
	for _, x := range v {
		m = max(m, x)
	}
	return m
}

func cbCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

type cbTraffic struct {
	bytes, msgs, frames, raftMsgs uint64
	active                        int
}

func (c *cbCluster) traffic() cbTraffic {
	var t cbTraffic
	for _, in := range c.nodes {
		ts := in.node.Transport().Stats()
		es := in.node.Engine().Stats()
		t.bytes += ts.BytesSent
		t.msgs += ts.MessagesSent
		t.frames += ts.FramesSent
		t.raftMsgs += es.MessagesSent
		t.active += es.ActiveGroups
	}
	return t
}

// BenchmarkClusterIdle: three nodes, one RF=3 topic of 10 or 1,000
// partitions, one record produced to each partition; once the groups have
// quiesced and the brokers' one state-file pass over the changed partitions
// is done (32 s after the produce), three windows of 10 s (per b.N) measure the process's CPU time (all three
// nodes are in this process) and the peer traffic of all nodes. Flat:
// the 1,000-partition figures about equal the 10-partition ones.
func BenchmarkClusterIdle(b *testing.B) {
	const (
		window  = 10 * time.Second
		windows = 3 // per b.N
	)
	for _, partitions := range []int32{10, 1000} {
		b.Run(fmt.Sprintf("partitions=%d", partitions), func(b *testing.B) {
			c := cbStart(b, 3, true)
			defer c.close()
			topic := fmt.Sprintf("idle%d", partitions)
			start := time.Now()
			c.createTopic(topic, partitions)
			created := time.Since(start)

			cl := cbClient(b, c.addrs(), kgo.DefaultProduceTopic(topic), kgo.RecordPartitioner(kgo.ManualPartitioner()))
			recs := make([]*kgo.Record, partitions)
			for p := range partitions {
				recs[p] = &kgo.Record{Partition: p, Value: cbValue}
			}
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			err := cl.ProduceSync(ctx, recs...).FirstErr()
			cancel()
			cl.Close()
			if err != nil {
				b.Fatalf("produce one record per partition: %v", err)
			}
			produced := time.Now()
			// Quiesced: no group of any node ticking (bounded; a floor
			// above zero is reported as active-groups).
			groups := 0
			for _, in := range c.nodes {
				groups += in.node.Engine().Stats().Groups
			}
			deadline := time.Now().Add(60 * time.Second)
			for c.traffic().active > 0 && time.Now().Before(deadline) {
				time.Sleep(10 * time.Millisecond)
			}
			quiesced := time.Since(produced)
			// The brokers write the state file of every partition that
			// changed once per StateSnapshotInterval (30s by default): one
			// pass over all the partitions just produced to is due within
			// 30s of the produce. That one-off pass is measured apart, so
			// the windows see the steady idle cost.
			settleCPU := cbCPU()
			time.Sleep(time.Until(produced.Add(32 * time.Second)))
			settleCPU = cbCPU() - settleCPU
			settled := time.Since(produced)

			b.ResetTimer()
			var cpu, maxCPU time.Duration
			var d cbTraffic
			active := 0
			n := b.N * windows
			for range n {
				t0, cpu0 := c.traffic(), cbCPU()
				time.Sleep(window)
				t1, cpu1, t1at := c.traffic(), cbCPU(), time.Now()
				cpu += cpu1 - cpu0
				maxCPU = max(maxCPU, cpu1-cpu0)
				b.Logf("partitions=%d: window at +%v after quiescence: cpu %v, peer bytes %d", partitions,
					t1at.Sub(produced).Round(time.Second), (cpu1 - cpu0).Round(time.Millisecond), t1.bytes-t0.bytes)
				d.bytes += t1.bytes - t0.bytes
				d.msgs += t1.msgs - t0.msgs
				d.frames += t1.frames - t0.frames
				d.raftMsgs += t1.raftMsgs - t0.raftMsgs
				active = max(active, t1.active)
			}
			b.StopTimer()
			secs := float64(n) * window.Seconds()
			b.Logf("partitions=%d: %d raft groups over 3 nodes; CreateTopic returned after %v, every node knew every leader after %v; quiesced %v after the last ack; cpu from then to +%v (the partitions' state files written once): %v; per window: cpu %v, peer bytes %d, transport msgs %d, frames %d, raft msgs %d, active groups %d",
				partitions, groups, c.created.Round(time.Millisecond), created.Round(time.Millisecond), quiesced.Round(time.Millisecond),
				settled.Round(time.Second), settleCPU.Round(time.Millisecond),
				cpu/time.Duration(n), d.bytes/uint64(n), d.msgs/uint64(n), d.frames/uint64(n), d.raftMsgs/uint64(n), active)
			b.ReportMetric(0, "ns/op")
			b.ReportMetric(float64(cpu.Microseconds())/1000/secs, "cpu-ms/s")
			b.ReportMetric(float64(maxCPU.Microseconds())/1000/window.Seconds(), "cpu-max-ms/s")
			b.ReportMetric(float64(d.bytes)/secs, "peer-B/s")
			b.ReportMetric(float64(d.msgs)/secs, "peer-msgs/s")
			b.ReportMetric(float64(d.raftMsgs)/secs, "raft-msgs/s")
			b.ReportMetric(float64(active), "active-groups")
			b.ReportMetric(created.Seconds(), "create-s")
			b.ReportMetric(quiesced.Seconds(), "quiesce-s")
			b.ReportMetric(float64(settleCPU.Microseconds())/1000, "settle-cpu-ms")
		})
	}
}

// diskWrittenBytes sums the bytes written to the machine's block devices
// (/sys/block/*/stat, sectors of 512 bytes; whole devices only, so
// partitions are not counted twice). ok is false where that is not
// available.
func diskWrittenBytes() (total int64, ok bool) {
	stats, _ := filepath.Glob("/sys/block/*/stat")
	for _, path := range stats {
		dev := filepath.Base(filepath.Dir(path))
		if strings.HasPrefix(dev, "loop") || strings.HasPrefix(dev, "ram") || strings.HasPrefix(dev, "zram") {
			continue
		}
		raw, err := os.ReadFile(path)
		if err != nil {
			continue
		}
		f := strings.Fields(string(raw))
		if len(f) < 7 {
			continue
		}
		sectors, err := strconv.ParseInt(f[6], 10, 64)
		if err != nil {
			continue
		}
		total += sectors * 512
		ok = true
	}
	return total, ok
}
