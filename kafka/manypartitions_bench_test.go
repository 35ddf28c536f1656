package kafka

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// BenchmarkManyPartitions produces a fixed total of 1 KiB records (acks=all,
// fsync always, no compression) spread round-robin over N partitions of one
// topic, with the log buffer budget on (the default, 256 MiB) and off, and
// reports throughput (MB/s) and the process's peak RSS and peak Go heap
// while producing; also the peak of the partition tails held in memory
// (chronik_log_buffer_bytes) and the logs rolled to stay within the
// budget. The client is in the same process, so its buffers are in the
// RSS too (the same for both settings).
//
// Each iteration produces the whole total to a fresh broker, so run it
// with -benchtime=1x, alone (the RSS is the process's):
//
//	go test -run '^$' -bench BenchmarkManyPartitions -benchtime 1x ./kafka/
//
// CHRONIK_BENCH_MANY_PARTITIONS_MIB sets the total in MiB (default 1024: the issue's
// 1 GiB across 1,000 partitions; at 256 MiB over 1,000 partitions the
// tails never reach the default budget), CHRONIK_BENCH_MANY_PARTITIONS the
// partition counts (default "64,1000").
func BenchmarkManyPartitions(b *testing.B) {
	total := int64(envInt(b, "CHRONIK_BENCH_MANY_PARTITIONS_MIB", 1024)) << 20
	counts := envPartitionCounts(b, "CHRONIK_BENCH_MANY_PARTITIONS", "64,1000")
	for _, partitions := range counts {
		for _, budget := range []struct {
			name  string
			bytes int64 // broker.Config.LogBufferBytes
		}{{"budget=default", 0}, {"budget=off", -1}} {
			b.Run(fmt.Sprintf("partitions=%d/%s", partitions, budget.name), func(b *testing.B) {
				benchmarkManyPartitions(b, partitions, total, budget.bytes)
			})
		}
	}
}

func benchmarkManyPartitions(b *testing.B, partitions int32, total, budget int64) {
	records := int(total / benchRecordSize)
	var peak memPeak
	var rolls int64
	b.SetBytes(total)
	b.ResetTimer()
	for range b.N {
		b.StopTimer()
		e := startEnv(b, func(e *testEnv) { e.bcfg.LogBufferBytes = budget })
		e.createTopic(benchTopic, partitions, nil)
		cl := benchClient(b, e.addr, kgo.RecordPartitioner(kgo.ManualPartitioner()))
		produceN(b, cl, 1) // metadata, producer ID, connections
		runtime.GC()
		debug.FreeOSMemory()
		stop := peak.start(func() int64 { held, _, _ := e.b.LogBuffers(); return held })
		b.StartTimer()
		produceSpread(b, cl, records, partitions)
		b.StopTimer()
		stop()
		_, _, r := e.b.LogBuffers()
		rolls += r
		cl.Close()
		e.stop()
		b.StartTimer()
	}
	b.ReportMetric(float64(peak.rss.Load())/(1<<20), "peak-RSS-MiB")
	b.ReportMetric(float64(peak.heap.Load())/(1<<20), "peak-heap-MiB")
	b.ReportMetric(float64(peak.held.Load())/(1<<20), "peak-logbuf-MiB")
	b.ReportMetric(float64(rolls)/float64(b.N), "rolls/op")
}

// produceSpread produces n benchmark records, record i to partition
// i mod partitions, and waits for every ack.
func produceSpread(b *testing.B, cl *kgo.Client, n int, partitions int32) {
	var (
		wg     sync.WaitGroup
		failed atomic.Pointer[error]
	)
	wg.Add(n)
	for i := range n {
		r := &kgo.Record{Value: benchValue, Partition: int32(i % int(partitions))}
		cl.Produce(context.Background(), r, func(_ *kgo.Record, err error) {
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

// memPeak samples the process's RSS, the Go heap and a third gauge every
// 5 ms while running; the peaks are kept across runs. The RSS peak is also
// read from VmHWM, reset at the start of each run (Linux: clear_refs 5),
// which catches peaks between samples.
type memPeak struct {
	rss, heap, held atomic.Int64
}

func (m *memPeak) start(held func() int64) (stop func()) {
	hwmReset := os.WriteFile("/proc/self/clear_refs", []byte("5"), 0) == nil
	done := make(chan struct{})
	finished := make(chan struct{})
	sample := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	observe := func() {
		maxInto(&m.rss, procStatusBytes("VmRSS:"))
		metrics.Read(sample)
		if sample[0].Value.Kind() == metrics.KindUint64 {
			maxInto(&m.heap, int64(sample[0].Value.Uint64()))
		}
		maxInto(&m.held, held())
	}
	go func() {
		defer close(finished)
		t := time.NewTicker(5 * time.Millisecond)
		defer t.Stop()
		for {
			observe()
			select {
			case <-done:
				return
			case <-t.C:
			}
		}
	}()
	return func() {
		close(done)
		<-finished
		observe()
		if hwmReset {
			maxInto(&m.rss, procStatusBytes("VmHWM:"))
		}
	}
}

func maxInto(v *atomic.Int64, n int64) {
	for {
		old := v.Load()
		if n <= old || v.CompareAndSwap(old, n) {
			return
		}
	}
}

// procStatusBytes reads a "<field> <n> kB" line of /proc/self/status; 0
// if there is none.
func procStatusBytes(field string) int64 {
	raw, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	sc := bufio.NewScanner(bytes.NewReader(raw))
	for sc.Scan() {
		line := sc.Text()
		if rest, ok := strings.CutPrefix(line, field); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			if err != nil {
				return 0
			}
			return kb << 10
		}
	}
	return 0
}

// envPartitionCounts is the comma-separated partition counts the
// environment variable name lists (dflt when unset).
func envPartitionCounts(b *testing.B, name, dflt string) []int32 {
	var counts []int32
	for _, f := range strings.Split(envString(name, dflt), ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			b.Fatalf("%s: %q is not a partition count", name, f)
		}
		counts = append(counts, int32(n))
	}
	return counts
}

func envString(name, dflt string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return dflt
}

func envInt(b *testing.B, name string, dflt int) int {
	v := os.Getenv(name)
	if v == "" {
		return dflt
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		b.Fatalf("%s: %q is not a positive number", name, v)
	}
	return n
}
