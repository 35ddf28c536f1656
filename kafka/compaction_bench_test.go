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
// check). Both write the same keyed records with the same broker settings;
// only the topic's policy differs. It reports the p50, p99 and p99.9 time
// from Produce to acknowledgement, and for cleaner=on how many cleanings
// finished during the measurement and how many log bytes they rewrote
// (from the cleaner's "compacted" log lines), so the comparison is honest.
//
// b.N is the number of records: 200000x is about 10 s at 20 MB/s.
//
//	go test -run '^$' -bench '^BenchmarkProduceLatencyCleaner$' -benchtime 200000x ./kafka/
func BenchmarkProduceLatencyCleaner(b *testing.B) {
	const keys = 100
	for _, bc := range []struct {
		name    string
		configs map[string]*string
	}{
		{"cleaner=off", map[string]*string{"cleanup.policy": new("delete")}},
		{"cleaner=on", map[string]*string{
			"cleanup.policy":            new("compact"),
			"segment.ms":                new("100"),
			"min.cleanable.dirty.ratio": new("0.01"),
		}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			e := startEnv(b, func(e *testEnv) { e.bcfg.CompactionCheckInterval = 100 * time.Millisecond })
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
