package main

import (
	"context"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// TestClusterGroupCoordinatorFailover: a consumer group keeps consuming
// through a coordinator failover. Three nodes, an RF=3 topic; a kgo group
// consumer commits after every poll. Half way through, the node that
// coordinates the group (the leader of its __consumer_offsets partition)
// is SIGKILLed; the consumer goes on against the survivors. Every record
// is consumed at least once, the offsets committed before the kill are
// still there afterwards (never lower), and a new member of the group
// after the failover starts from the last committed offsets, not from the
// start.
func TestClusterGroupCoordinatorFailover(t *testing.T) {
	const (
		topic      = "cg"
		group      = "cg-group"
		partitions = 3
		records    = 3000
		more       = 300
	)
	c := startCluster(t, 3)
	c.createTopic(topic, partitions, 3)

	produce := func(from, to int) map[int32]int64 {
		t.Helper()
		prod := c.client(kgo.RequiredAcks(kgo.AllISRAcks()), kgo.DefaultProduceTopic(topic),
			kgo.RecordRetries(100), kgo.RetryTimeout(60*time.Second))
		var rs []*kgo.Record
		for i := from; i < to; i++ {
			rs = append(rs, &kgo.Record{Key: []byte(strconv.Itoa(i)), Value: []byte(strconv.Itoa(i))})
		}
		ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
		defer cancel()
		// In chunks: small batches, so that the group consumes (and
		// commits) the topic in many steps.
		for i := 0; i < len(rs); i += 100 {
			if err := prod.ProduceSync(ctx, rs[i:min(i+100, len(rs))]...).FirstErr(); err != nil {
				t.Fatalf("produce %d..%d: %v", from, to, err)
			}
		}
		ends := map[int32]int64{}
		for _, r := range rs {
			ends[r.Partition] = max(ends[r.Partition], r.Offset+1)
		}
		return ends
	}
	produce(0, records)

	// The coordinator is known once __consumer_offsets has leaders.
	coordinator := findCoordinator(t, c.kafka, group)

	cons := c.client(kgo.ConsumerGroup(group), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.DisableAutoCommit(),
		kgo.FetchMaxWait(200*time.Millisecond), kgo.FetchMaxBytes(16<<10), kgo.FetchMaxPartitionBytes(4<<10),
		kgo.SessionTimeout(10*time.Second), kgo.HeartbeatInterval(500*time.Millisecond),
		kgo.RetryTimeout(60*time.Second))
	seen := map[string]bool{}
	// next is one past the highest offset consumed per partition.
	next := map[int32]int64{}
	// minAfter is the lowest offset per partition consumed after the kill.
	minAfter := map[int32]int64{}
	killed := false
	// poll consumes one poll's records and commits them (errors during
	// the failover are expected: the next poll's commit covers them).
	poll := func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		fs := cons.PollFetches(ctx)
		cancel()
		fs.EachRecord(func(r *kgo.Record) {
			seen[string(r.Value)] = true
			next[r.Partition] = max(next[r.Partition], r.Offset+1)
			if killed {
				if m, ok := minAfter[r.Partition]; !ok || r.Offset < m {
					minAfter[r.Partition] = r.Offset
				}
			}
		})
		ctx, cancel = context.WithTimeout(context.Background(), 10*time.Second)
		if err := cons.CommitUncommittedOffsets(ctx); err != nil {
			t.Logf("commit: %v", err)
		}
		cancel()
	}

	// Half the records, committed.
	deadline := time.Now().Add(60 * time.Second)
	for len(seen) < records/2 {
		if time.Now().After(deadline) {
			t.Fatalf("consumed %d of %d records in 60s before the kill", len(seen), records/2)
		}
		poll()
	}
	before := committedOffsets(t, c.kafka, group, topic, partitions, nil)
	sum := int64(0)
	for _, o := range before {
		sum += o
	}
	if sum < records/2 {
		t.Fatalf("committed before the kill: %v, fewer than %d records", before, records/2)
	}

	c.kill(int(coordinator))
	killed = true
	// Clients made from now on start from the survivors: the killed node
	// stays in Metadata, and a kgo FindCoordinator that picks it fails
	// without trying another broker.
	var live []string
	for id := 1; id <= 3; id++ {
		if id != int(coordinator) {
			live = append(live, c.kafka[id-1])
		}
	}
	t.Logf("coordinator node %d killed with %v committed", coordinator, before)

	// The consumer goes on against the survivors until it saw everything.
	deadline = time.Now().Add(120 * time.Second)
	for len(seen) < records {
		if time.Now().After(deadline) {
			t.Fatalf("consumed %d of %d records within 120s of the failover", len(seen), records)
		}
		poll()
	}
	for i := range records {
		if !seen[strconv.Itoa(i)] {
			t.Fatalf("record %d never consumed", i)
		}
	}
	t.Logf("all %d records consumed; lowest offsets consumed after the failover %v", records, minAfter)
	for p, m := range minAfter {
		if m < before[p] {
			t.Fatalf("partition %d: consumed offset %d after the failover, below the offset %d committed before it", p, m, before[p])
		}
	}
	// Commit what was consumed explicitly: kgo forgets uncommitted
	// offsets of partitions a rebalance revoked (a loaded machine can
	// expire the member's session during the failover), and the check
	// below is about what the coordinator keeps, not kgo's bookkeeping.
	final := map[string]map[int32]kgo.EpochOffset{topic: {}}
	for p, o := range next {
		final[topic][p] = kgo.EpochOffset{Epoch: -1, Offset: o}
	}
	var err error
	for range 30 {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err = nil
		cons.CommitOffsetsSync(ctx, final, func(_ *kgo.Client, _ *kmsg.OffsetCommitRequest, resp *kmsg.OffsetCommitResponse, cerr error) {
			err = cerr
			if cerr == nil {
				for _, rt := range resp.Topics {
					for _, rp := range rt.Partitions {
						if e := kerr.ErrorForCode(rp.ErrorCode); e != nil && err == nil {
							err = e
						}
					}
				}
			}
		})
		cancel()
		if err == nil {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("final commit: %v", err)
	}
	// Everything consumed is committed with the new coordinator, and
	// nothing committed before the kill went backwards.
	after := committedOffsets(t, live, group, topic, partitions, func(o map[int32]int64) bool {
		n := int64(0)
		for _, v := range o {
			n += v
		}
		return n == records
	})
	for p := range int32(partitions) {
		if after[p] < before[p] {
			t.Fatalf("partition %d: committed %d after the failover, %d before", p, after[p], before[p])
		}
	}
	if newCoord := findCoordinator(t, live, group); newCoord == coordinator {
		t.Fatalf("coordinator still node %d after it was killed", coordinator)
	}
	cons.Close() // leaves the group

	// A new member resumes from the committed offsets: it sees only the
	// records produced now.
	ends := produce(records, records+more)
	cons2 := c.client(kgo.SeedBrokers(live...), kgo.ConsumerGroup(group), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.DisableAutoCommit(),
		kgo.FetchMaxWait(200*time.Millisecond), kgo.RetryTimeout(60*time.Second))
	got := map[string]bool{}
	deadline = time.Now().Add(60 * time.Second)
	for len(got) < more {
		if time.Now().After(deadline) {
			t.Fatalf("new member consumed %d of %d new records in 60s", len(got), more)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		fs := cons2.PollFetches(ctx)
		cancel()
		var bad error
		fs.EachRecord(func(r *kgo.Record) {
			i, _ := strconv.Atoi(string(r.Value))
			if i < records && bad == nil {
				bad = fmt.Errorf("record %d (partition %d offset %d) consumed again: the group did not resume from its committed offsets %v", i, r.Partition, r.Offset, after)
			}
			got[string(r.Value)] = true
		})
		if bad != nil {
			t.Fatal(bad)
		}
	}
	for p, end := range ends {
		if end <= after[p] {
			t.Fatalf("partition %d: end %d after producing, committed %d", p, end, after[p])
		}
	}
}

// seededAdmin is an admin client whose first requests go to seeds.
func seededAdmin(t *testing.T, seeds []string) (*kadm.Client, func()) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(seeds...))
	if err != nil {
		t.Fatal(err)
	}
	return kadm.NewClient(cl), cl.Close
}

// findCoordinator asks for a group's coordinator until one is known.
func findCoordinator(t *testing.T, seeds []string, group string) int32 {
	t.Helper()
	var err error
	for range 300 {
		adm, done := seededAdmin(t, seeds)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		resp := adm.FindGroupCoordinators(ctx, group)[group]
		cancel()
		done()
		if resp.Err == nil && resp.NodeID > 0 {
			return resp.NodeID
		}
		err = resp.Err
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("no coordinator for %s: %v", group, err)
	return -1
}

// committedOffsets fetches a group's committed offsets of a topic (0 where
// none), retrying errors (a coordinator moving) and, with done, until done
// accepts them.
func committedOffsets(t *testing.T, seeds []string, group, topic string, partitions int32, done func(map[int32]int64) bool) map[int32]int64 {
	t.Helper()
	var (
		out map[int32]int64
		err error
	)
	for range 300 {
		adm, closeAdm := seededAdmin(t, seeds)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		var resp kadm.OffsetResponses
		resp, err = adm.FetchOffsets(ctx, group)
		cancel()
		closeAdm()
		if err == nil {
			err = resp.Error()
		}
		if err == nil {
			out = map[int32]int64{}
			for p := range partitions {
				if o, ok := resp.Lookup(topic, p); ok {
					out[p] = o.At
				}
			}
			if done == nil || done(out) {
				return out
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("committed offsets of %s: %v (last %v)", group, err, out)
	return nil
}
