package main

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// TestTenThousandPartitions: under a limit of 1,024 open files, one
// `chronik serve` creates a topic of 10,000 partitions and takes one
// record in every one of them in a single produce; every record is read
// back, and after a restart (a clean shutdown, then recovery of all
// 10,050 partitions under the same limit) every partition still ends at
// offset 1. The open-log budget keeps the descriptors under the limit
// throughout: topic creation checks for room without holding one per
// partition, and appends past the budget wait for an open log to come free.
func TestTenThousandPartitions(t *testing.T) {
	const partitions = 10_000
	c := newCluster(t, 1)
	c.wrap = []string{"sh", "-c", `ulimit -n 1024 && exec "$@"`, "sh"}
	c.startWith(1)
	c.waitUp(1)
	c.createTopic("many", partitions, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cl := partitionClient(c)
	var recs []*kgo.Record
	for p := range int32(partitions) {
		recs = append(recs, &kgo.Record{Topic: "many", Partition: p, Value: fmt.Appendf(nil, "p%d", p)})
	}
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatalf("produce one record to each of %d partitions: %v", partitions, err)
	}
	fdDir := fmt.Sprintf("/proc/%d/fd", c.procs[0].Process.Pid)
	if ents, err := os.ReadDir(fdDir); err != nil || len(ents) > 1024 {
		t.Fatalf("%d descriptors open under a limit of 1024 (%v)", len(ents), err)
	}

	rcl := c.client(kgo.ConsumeTopics("many"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	seen := make(map[int32]bool, partitions)
	for len(seen) < partitions {
		fs := rcl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("consumed the records of %d of %d partitions", len(seen), partitions)
		}
		fs.EachError(func(topic string, p int32, err error) { t.Fatalf("fetch %s-%d: %v", topic, p, err) })
		fs.EachRecord(func(r *kgo.Record) {
			if want := fmt.Sprintf("p%d", r.Partition); string(r.Value) != want || r.Offset != 0 || seen[r.Partition] {
				t.Fatalf("many-%d offset %d holds %q (seen before: %v)", r.Partition, r.Offset, r.Value, seen[r.Partition])
			}
			seen[r.Partition] = true
		})
	}
	rcl.Close()

	c.stop(1)
	c.startWith(1)
	c.waitUp(1)
	ends, err := kadm.NewClient(c.client()).ListEndOffsets(ctx, "many")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	ends.Each(func(o kadm.ListedOffset) {
		if o.Err != nil || o.Offset != 1 {
			t.Errorf("after restart many-%d: end offset %d, %v", o.Partition, o.Offset, o.Err)
		}
		n++
	})
	if n != partitions {
		t.Fatalf("after restart: end offsets of %d partitions, want %d", n, partitions)
	}
}
