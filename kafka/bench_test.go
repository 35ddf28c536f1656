package kafka

import (
	"context"
	"fmt"
	"github.com/chronik-stream/chronik/wal"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
)

// The benchmarks drive Chronik (fsync always, real files in a temp dir) and
// franz-go's in-memory kfake side by side with the same kgo load: 1 KiB
// records, acks=all (idempotent), one topic with 1 or 8 partitions.
//
//	go test -run '^$' -bench . -benchtime 3s -count 3 ./kafka/

const (
	benchRecordSize = 1024
	benchTopic      = "bench"
)

var benchValue = func() []byte {
	v := make([]byte, benchRecordSize)
	for i := range v {
		v[i] = byte(i*7 + i/13)
	}
	return v
}()

// benchTarget starts a broker with topic benchTopic of the given partition
// count and returns its address; it is stopped by b's cleanup.
type benchTarget struct {
	name  string
	start func(b *testing.B, partitions int32) string
}

var benchTargets = []benchTarget{
	{"chronik", func(b *testing.B, partitions int32) string {
		// broker.FsyncAlways is the default; CHRONIK_BENCH_FSYNC_BATCH
		// (auto, files, filesystem) sets how partitions share fsyncs.
		e := startEnv(b, func(e *testEnv) { e.bcfg.FsyncBatch = benchFsyncBatch(b) })
		e.createTopic(benchTopic, partitions, nil)
		return e.addr
	}},
	{"kfake", func(b *testing.B, partitions int32) string {
		c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(partitions, benchTopic))
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(c.Close)
		return c.ListenAddrs()[0]
	}},
}

// benchFsyncBatch is the broker.Config.FsyncBatch that
// CHRONIK_BENCH_FSYNC_BATCH names (default auto).
func benchFsyncBatch(b *testing.B) wal.SyncMode {
	name := envString("CHRONIK_BENCH_FSYNC_BATCH", "auto")
	for _, m := range []wal.SyncMode{wal.SyncAuto, wal.SyncFiles, wal.SyncFilesystem} {
		if m.String() == name {
			return m
		}
	}
	b.Fatalf("CHRONIK_BENCH_FSYNC_BATCH: %q is not auto, files or filesystem", name)
	return 0
}

func benchClient(b *testing.B, addr string, opts ...kgo.Opt) *kgo.Client {
	// kgo compresses with snappy by default; the identical values would
	// shrink to almost nothing and the benchmark would measure the client.
	opts = append([]kgo.Opt{kgo.SeedBrokers(addr), kgo.DefaultProduceTopic(benchTopic),
		kgo.ProducerBatchCompression(kgo.NoCompression())}, opts...)
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(cl.Close)
	return cl
}

// produceN produces n benchmark records and waits for every ack.
func produceN(b *testing.B, cl *kgo.Client, n int) {
	var (
		wg     sync.WaitGroup
		failed atomic.Pointer[error]
	)
	wg.Add(n)
	for range n {
		cl.Produce(context.Background(), &kgo.Record{Value: benchValue}, func(_ *kgo.Record, err error) {
			if err != nil {
				failed.CompareAndSwap(nil, &err)
			}
			wg.Done()
		})
	}
	wg.Wait()
	if err := failed.Load(); err != nil {
		b.Fatalf("produce: %v", *err)
	}
}

// BenchmarkProduce measures produce throughput: b.N records, acks=all,
// kgo's default (sticky) partitioner, over 1 and 8 partitions or the
// counts CHRONIK_BENCH_PRODUCE_PARTITIONS lists:
//
//	CHRONIK_BENCH_PRODUCE_PARTITIONS=1,8,64,256,1000 go test -run '^$' -bench 'Produce$' -benchtime 100000x ./kafka/
func BenchmarkProduce(b *testing.B) {
	counts := envPartitionCounts(b, "CHRONIK_BENCH_PRODUCE_PARTITIONS", "1,8")
	for _, target := range benchTargets {
		for _, partitions := range counts {
			b.Run(fmt.Sprintf("%s/partitions=%d", target.name, partitions), func(b *testing.B) {
				cl := benchClient(b, target.start(b, partitions))
				produceN(b, cl, 1) // metadata, producer ID, connections
				b.SetBytes(benchRecordSize)
				b.ResetTimer()
				produceN(b, cl, b.N)
			})
		}
	}
}

// BenchmarkConsume measures consume throughput: b.N records read from the
// start of every partition of a topic filled beforehand (re-read from the
// start as often as b.N needs). Chronik's 64 MiB topics fit the wal's
// default read cache, so after the first pass sealed segments are served
// from verified copies in memory; wal's BenchmarkReadSequential/uncached
// shows the cost of a reader that outruns the cache.
func BenchmarkConsume(b *testing.B) {
	const preload = 64 << 10 // records: 64 MiB
	for _, target := range benchTargets {
		for _, partitions := range []int32{1, 8} {
			// Started and filled once, on the parent: the sub-benchmark
			// body runs again (with its cleanups) for every b.N tried.
			addr := target.start(b, partitions)
			produceN(b, benchClient(b, addr), preload)
			b.Run(fmt.Sprintf("%s/partitions=%d", target.name, partitions), func(b *testing.B) {
				b.SetBytes(benchRecordSize)
				b.ResetTimer()
				for consumed := 0; consumed < b.N; {
					consumed += consumeFromStart(b, addr, partitions, min(b.N-consumed, preload))
				}
			})
		}
	}
}

// consumeFromStart reads n records from the start of the topic's partitions
// with a fresh consumer and returns how many it read.
func consumeFromStart(b *testing.B, addr string, partitions int32, n int) int {
	offsets := make(map[int32]kgo.Offset, partitions)
	for p := range partitions {
		offsets[p] = kgo.NewOffset().AtStart()
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{benchTopic: offsets}))
	if err != nil {
		b.Fatal(err)
	}
	defer cl.Close()
	got := 0
	for got < n {
		fs := cl.PollFetches(context.Background())
		fs.EachError(func(t string, p int32, err error) { b.Fatalf("fetch %s-%d: %v", t, p, err) })
		got += fs.NumRecords()
	}
	return got
}

// BenchmarkProduceLatency produces b.N records at a steady 20 MB/s (so
// -benchtime bounds the duration: 3s is about 60,000 records) and reports
// the p50 and p99 time from Produce to acknowledgement: over 8 partitions
// with kgo's default (sticky) partitioner, and spread round-robin over 100
// partitions, so that every produce request touches many of them.
//
//	go test -run '^$' -bench 'ProduceLatency$' -benchtime 60000x -count 5 ./kafka/
func BenchmarkProduceLatency(b *testing.B) {
	const rate = 20 << 20 / benchRecordSize // records per second
	interval := time.Second / rate
	for _, target := range benchTargets {
		for _, spread := range []struct {
			partitions int32
			opts       []kgo.Opt
		}{{8, nil}, {100, []kgo.Opt{kgo.RecordPartitioner(kgo.RoundRobinPartitioner())}}} {
			b.Run(fmt.Sprintf("%s/partitions=%d", target.name, spread.partitions), func(b *testing.B) {
				benchmarkProduceLatency(b, target.start(b, spread.partitions), interval, spread.opts)
			})
		}
	}
}

func benchmarkProduceLatency(b *testing.B, addr string, interval time.Duration, opts []kgo.Opt) {
	cl := benchClient(b, addr, append([]kgo.Opt{kgo.ProducerLinger(0)}, opts...)...)
	produceN(b, cl, 1)
	latencies := make([]time.Duration, b.N)
	var wg sync.WaitGroup
	wg.Add(b.N)
	b.SetBytes(benchRecordSize)
	b.ResetTimer()
	start := time.Now()
	for i := range b.N {
		if d := time.Until(start.Add(time.Duration(i) * interval)); d > 0 {
			time.Sleep(d)
		}
		sent := time.Now()
		cl.Produce(context.Background(), &kgo.Record{Value: benchValue}, func(_ *kgo.Record, err error) {
			if err != nil {
				b.Errorf("produce: %v", err)
			}
			latencies[i] = time.Since(sent)
			wg.Done()
		})
	}
	wg.Wait()
	b.StopTimer()
	slices.Sort(latencies)
	b.ReportMetric(float64(latencies[len(latencies)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(latencies[len(latencies)*99/100].Microseconds())/1000, "p99-ms")
}
