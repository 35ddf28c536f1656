package kafka

import (
	"bytes"
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// tailBudgetValue is record seq of partition p, 1 KiB, recognisable.
func tailBudgetValue(p int32, seq int) []byte {
	v := bytes.Repeat([]byte{byte(p), byte(seq)}, 512)
	copy(v, fmt.Sprintf("p%d-r%d;", p, seq))
	return v
}

// TestManyPartitionsTailBudget: 200 partitions produced to with kgo under
// a 16 MiB log buffer budget, 25 MiB in all: the broker rolls the largest
// tails to stay within the budget (it never holds more than the budget
// once the roller is done), and every record is consumed back in order,
// from rolled segments and tails alike; after a restart every partition
// still ends where it did.
func TestManyPartitionsTailBudget(t *testing.T) {
	const (
		topic      = "tailbudget"
		partitions = 200
		perPart    = 128
		budget     = 16 << 20
	)
	e := startEnv(t, func(e *testEnv) { e.bcfg.LogBufferBytes = budget })
	e.createTopic(topic, partitions, nil)
	prod := e.client(kgo.RecordPartitioner(kgo.ManualPartitioner()), kgo.DefaultProduceTopic(topic),
		kgo.ProducerBatchCompression(kgo.NoCompression()))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for seq := range perPart {
		recs := make([]*kgo.Record, 0, partitions)
		for p := range int32(partitions) {
			recs = append(recs, &kgo.Record{Partition: p, Value: tailBudgetValue(p, seq)})
		}
		if err := prod.ProduceSync(ctx, recs...).FirstErr(); err != nil {
			t.Fatalf("produce round %d: %v", seq, err)
		}
	}
	held, limit, rolls := e.b.LogBuffers()
	if limit != budget || rolls == 0 {
		t.Fatalf("log buffers: %d bytes held, limit %d, %d rolls; want limit %d and rolls", held, limit, rolls, budget)
	}
	// The roller stops at 90% of the budget (every tail here is worth
	// rolling: 200 tails under 64 KiB are 12.5 MiB, under the budget).
	deadline := time.Now().Add(30 * time.Second)
	for held, _, _ = e.b.LogBuffers(); held > budget; held, _, _ = e.b.LogBuffers() {
		if time.Now().After(deadline) {
			t.Fatalf("partition tails hold %d bytes, budget %d", held, budget)
		}
		time.Sleep(10 * time.Millisecond)
	}

	offsets := make(map[int32]kgo.Offset, partitions)
	for p := range int32(partitions) {
		offsets[p] = kgo.NewOffset().AtStart()
	}
	cons := e.client(kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: offsets}))
	next := make([]int, partitions)
	for got := 0; got < partitions*perPart; {
		fs := cons.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			t.Fatalf("consumed %d of %d records: %v", got, partitions*perPart, err)
		}
		fs.EachError(func(tp string, p int32, err error) { t.Fatalf("fetch %s-%d: %v", tp, p, err) })
		fs.EachRecord(func(r *kgo.Record) {
			seq := next[r.Partition]
			if r.Offset != int64(seq) || !bytes.Equal(r.Value, tailBudgetValue(r.Partition, seq)) {
				t.Fatalf("partition %d: record at offset %d is not record %d", r.Partition, r.Offset, seq)
			}
			next[r.Partition]++
			got++
		})
	}
	cons.Close()

	e.restart()
	ends, err := kadm.NewClient(e.client()).ListEndOffsets(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	ends.Each(func(o kadm.ListedOffset) {
		n++
		if o.Err != nil || o.Offset != perPart {
			t.Errorf("after restart partition %d ends at %d (%v), want %d", o.Partition, o.Offset, o.Err, perPart)
		}
	})
	if n != partitions {
		t.Fatalf("after restart %d partitions listed, want %d", n, partitions)
	}
}
