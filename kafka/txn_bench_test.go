package kafka

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// BenchmarkTxnProduce: b.N 1 KiB records into 1 or 8 partitions, acks=all,
// by an idempotent producer (mode=idempotent) or by a transactional one
// committing every 100 ms (mode=txn100ms: Begin, produce for 100 ms,
// EndTransaction(TryCommit), repeat), on Chronik and kfake alike. For
// txn100ms it reports the commit latency: from the last record produced
// until EndTransaction returns (flushing what is still in flight, then
// EndTxn).
//
//	go test -run '^$' -bench TxnProduce -benchtime 5s -count 3 ./kafka/
func BenchmarkTxnProduce(b *testing.B) {
	for _, target := range benchTargets {
		for _, partitions := range []int32{1, 8} {
			for _, mode := range []string{"idempotent", "txn100ms"} {
				b.Run(fmt.Sprintf("%s/partitions=%d/mode=%s", target.name, partitions, mode), func(b *testing.B) {
					addr := target.start(b, partitions)
					if mode == "idempotent" {
						cl := benchClient(b, addr)
						produceN(b, cl, 1)
						b.SetBytes(benchRecordSize)
						b.ResetTimer()
						produceN(b, cl, b.N)
						return
					}
					cl := benchClient(b, addr, kgo.TransactionalID(fmt.Sprintf("bench-%d-%d", partitions, time.Now().UnixNano())))
					var commits []time.Duration
					produceFor(b, cl, 1, 0) // producer id, coordinator, partitions
					commit(b, cl)
					b.SetBytes(benchRecordSize)
					b.ResetTimer()
					for left := b.N; left > 0; {
						sent := produceFor(b, cl, left, 100*time.Millisecond)
						left -= sent
						start := time.Now()
						commit(b, cl)
						commits = append(commits, time.Since(start))
					}
					b.StopTimer()
					slices.Sort(commits)
					b.ReportMetric(float64(commits[len(commits)/2].Microseconds())/1000, "commit-p50-ms")
					b.ReportMetric(float64(commits[len(commits)*99/100].Microseconds())/1000, "commit-p99-ms")
					b.ReportMetric(float64(len(commits)), "commits")
				})
			}
		}
	}
}

// produceFor begins a transaction and produces up to n records for at most
// d, returning how many it produced (at least one).
func produceFor(b *testing.B, cl *kgo.Client, n int, d time.Duration) int {
	if err := cl.BeginTransaction(); err != nil {
		b.Fatal(err)
	}
	end := time.Now().Add(d)
	sent := 0
	for sent < n && (sent == 0 || sent%64 != 0 || time.Now().Before(end)) {
		cl.Produce(context.Background(), &kgo.Record{Value: benchValue}, func(_ *kgo.Record, err error) {
			if err != nil {
				b.Errorf("produce: %v", err)
			}
		})
		sent++
	}
	return sent
}

// commit flushes the transaction's records (kgo's EndTransaction does not)
// and commits it.
func commit(b *testing.B, cl *kgo.Client) {
	ctx := context.Background()
	if err := cl.Flush(ctx); err != nil {
		b.Fatal(err)
	}
	if err := cl.EndTransaction(ctx, kgo.TryCommit); err != nil {
		b.Fatal(err)
	}
}
