package kafka

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// BenchmarkProduceLatencyCleaner is BenchmarkProduceLatency (1 KiB
// records at a steady 20 MB/s, acks=all, 8 partitions, fsync always)
// against a broker whose log cleaner is idle (cleaner=off: a
// cleanup.policy=delete topic) or busy the whole time (cleaner=on: a
// compacted topic of few keys with segment.ms=100 and
// min.cleanable.dirty.ratio=0.01, the scheduler checking every 100 ms, so
// every partition's active segment is rolled and cleaned about every
// check), and busy with its I/O throttled to 32 MiB/s
// (cleaner=on,throttled=32MB), and as Kafka's defaults would have it
// (cleaner=on,kafka-defaults: min.cleanable.dirty.ratio 0.5, segment.ms
// 7 days, 1 MiB segments: a partition is cleaned when half its sealed
// log is new, here about once a second). All write the same keyed records with the
// same broker settings; only the topic's policy and the throttle differ. It reports the p50, p99 and p99.9 time
// from Produce to acknowledgement, and for cleaner=on how many cleanings
// finished during the measurement and how many log bytes they rewrote
// (from the cleaner's "compacted" log lines), so the comparison is honest.
//
// b.N is the number of records: 200000x is about 10 s at 20 MB/s.
//
//	go test -run '^$' -bench '^BenchmarkProduceLatencyCleaner$' -benchtime 200000x ./kafka/
//
// busyCompaction makes a compacted topic's partitions cleaned about every
// check.
var busyCompaction = map[string]*string{
	"cleanup.policy":            new("compact"),
	"segment.ms":                new("100"),
	"min.cleanable.dirty.ratio": new("0.01"),
}

func BenchmarkProduceLatencyCleaner(b *testing.B) {
	const keys = 100
	for _, bc := range []struct {
		name    string
		configs map[string]*string
		rate    int64 // --compaction-max-bytes-per-sec; 0 unlimited
	}{
		{"cleaner=off", map[string]*string{"cleanup.policy": new("delete")}, 0},
		{"cleaner=on", busyCompaction, 0},
		{"cleaner=on,throttled=32MB", busyCompaction, 32 << 20},
		{"cleaner=off,1MiB-segments", map[string]*string{"cleanup.policy": new("delete"), "segment.bytes": new("1048576")}, 0},
		{"cleaner=on,kafka-defaults", map[string]*string{"cleanup.policy": new("compact"), "segment.bytes": new("1048576")}, 0},
	} {
		b.Run(bc.name, func(b *testing.B) {
			e := startEnv(b, func(e *testEnv) {
				e.bcfg.CompactionCheckInterval = 100 * time.Millisecond
				e.bcfg.CompactionMaxBytesPerSec = bc.rate
			})
			e.createTopic(benchTopic, 8, bc.configs)
			cl := benchClient(b, e.addr, kgo.ProducerLinger(0))
			keyOf := func(i int) []byte { return fmt.Appendf(nil, "key-%03d", i%keys) }
			produceKeyedAtRate(b, cl, 1, keyOf) // metadata, producer ID, connections
			before := cleanerActivity(b, e.logs.String())
			b.SetBytes(benchRecordSize)
			b.ResetTimer()
			latencies := produceKeyedAtRate(b, cl, b.N, keyOf)
			b.StopTimer()
			after := cleanerActivity(b, e.logs.String())
			if after.failures > before.failures {
				b.Fatalf("%d cleanings failed; logs:\n%s", after.failures-before.failures, e.logs.String())
			}
			slices.Sort(latencies)
			ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
			b.ReportMetric(ms(latencies[len(latencies)/2]), "p50-ms")
			b.ReportMetric(ms(latencies[len(latencies)*99/100]), "p99-ms")
			b.ReportMetric(ms(latencies[len(latencies)*999/1000]), "p99.9-ms")
			b.ReportMetric(float64(after.runs-before.runs), "cleanings")
			b.ReportMetric(float64(after.bytesBefore-before.bytesBefore)/(1<<20), "cleaned-MiB")
		})
	}
}

// produceKeyedAtRate produces n benchmark records keyed keyOf(i) at 20 MB/s
// and returns each one's time from Produce to acknowledgement.
func produceKeyedAtRate(b *testing.B, cl *kgo.Client, n int, keyOf func(i int) []byte) []time.Duration {
	const rate = 20 << 20 / benchRecordSize // records per second
	interval := time.Second / rate
	latencies := make([]time.Duration, n)
	var wg sync.WaitGroup
	wg.Add(n)
	start := time.Now()
	for i := range n {
		if d := time.Until(start.Add(time.Duration(i) * interval)); d > 0 {
			time.Sleep(d)
		}
		sent := time.Now()
		cl.Produce(context.Background(), &kgo.Record{Key: keyOf(i), Value: benchValue}, func(_ *kgo.Record, err error) {
			if err != nil {
				b.Errorf("produce: %v", err)
			}
			latencies[i] = time.Since(sent)
			wg.Done()
		})
	}
	wg.Wait()
	return latencies
}

// cleanerTotals is what the cleaner's log lines say it has done so far.
type cleanerTotals struct {
	runs, failures int
	bytesBefore    int64
}

// cleanerActivity adds up the cleaner's "compacted" lines (one per
// cleaning) and its "compaction" error lines.
func cleanerActivity(b *testing.B, logs string) cleanerTotals {
	var t cleanerTotals
	for line := range strings.Lines(logs) {
		switch {
		case strings.Contains(line, `"message":"compacted"`):
			var l struct {
				BytesBefore int64 `json:"bytes_before"`
			}
			if err := json.Unmarshal([]byte(line), &l); err != nil {
				b.Fatalf("cleaner log line %q: %v", line, err)
			}
			t.runs++
			t.bytesBefore += l.BytesBefore
		case strings.Contains(line, `"message":"compaction"`):
			t.failures++
		}
	}
	return t
}
