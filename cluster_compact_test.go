package main

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// TestClusterCompaction: a compacted topic replicated on three nodes. The
// leader's compaction request is applied by every replica, so all three
// logs end up with the same cleaned entries (same payloads at the same
// raft indexes); a consumer of the leader, and of the next leader after
// the first is SIGKILLed, reads exactly the latest record of each key at
// its original offset.
func TestClusterCompaction(t *testing.T) {
	c := newCluster(t, 3)
	for id := 1; id <= 3; id++ {
		c.startWith(id, "--peers", c.peers(), "--compaction-check-interval", "50ms", "--segment-bytes", "65536")
	}
	for id := 1; id <= 3; id++ {
		c.waitUp(id)
	}
	const topic = "cl-compacted"
	adm := kadm.NewClient(c.client())
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		resp, err := adm.CreateTopic(ctx, 1, 3, map[string]*string{
			"cleanup.policy": new("compact"), "segment.ms": new("200"),
			"min.cleanable.dirty.ratio": new("0.01"), "delete.retention.ms": new("0"),
		}, topic)
		cancel()
		if err == nil && resp.Err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("create %s: %v %v", topic, err, resp.Err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	for c.topicMetadata(topic).Partitions[0].Leader < 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%s has no leader", topic)
		}
		time.Sleep(50 * time.Millisecond)
	}

	cl := c.client(kgo.DefaultProduceTopic(topic), kgo.RequiredAcks(kgo.AllISRAcks()))
	latest := map[string]int64{} // key -> offset of its last write
	values := map[int64]string{}
	var last int64
	produce := func(key, value string, tombstone bool) {
		t.Helper()
		r := &kgo.Record{Key: []byte(key), Value: []byte(value)}
		if tombstone {
			r.Value = nil
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := cl.ProduceSync(ctx, r).FirstErr(); err != nil {
			t.Fatalf("produce %s: %v", key, err)
		}
		if tombstone {
			delete(latest, key)
		} else {
			latest[key] = r.Offset
			values[r.Offset] = value
		}
		last = r.Offset
	}
	for round := range 15 {
		for k := range 10 {
			produce(fmt.Sprintf("k%02d", k), fmt.Sprintf("v%02d-%02d-%s", k, round, strings.Repeat("y", 1000)), false)
		}
	}
	for k := range 3 {
		produce(fmt.Sprintf("k%02d", k), "", true) // delete.retention.ms=0: gone after cleaning
	}
	produce("k-last", "end", false)
	want := map[int64]string{}
	for k, off := range latest {
		want[off] = k + "=" + values[off]
	}

	read := func() map[int64]string {
		t.Helper()
		rc := c.client(kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: {0: kgo.NewOffset().AtStart()}}),
			kgo.FetchMaxWait(100*time.Millisecond))
		defer rc.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		got := map[int64]string{}
		for seen := int64(-1); seen < last; {
			fs := rc.PollFetches(ctx)
			if ctx.Err() != nil {
				t.Fatalf("read through %d: reached %d: %v", last, seen, ctx.Err())
			}
			fs.EachRecord(func(r *kgo.Record) {
				seen = r.Offset
				if r.Value != nil {
					got[r.Offset] = string(r.Key) + "=" + string(r.Value)
				} else {
					got[r.Offset] = string(r.Key) + "=<tombstone>"
				}
			})
		}
		return got
	}
	same := func(got map[int64]string) bool {
		if len(got) != len(want) {
			return false
		}
		for off, v := range want {
			if got[off] != v {
				return false
			}
		}
		return true
	}
	waitCompacted := func(who string) {
		t.Helper()
		deadline := time.Now().Add(60 * time.Second)
		for {
			got := read()
			if same(got) {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: %d records after 60s, want the %d latest per key: %v", who, len(got), len(want), got)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	waitCompacted("leader")
	// Every replica cleans the same entries: the same log size everywhere.
	c.waitSameLogSize(topic, 0)

	victim := c.leader(topic, 0)
	c.kill(victim)
	waitCompacted(fmt.Sprintf("the leader after node %d was killed", victim))
	c.start(victim)
	c.waitUp(victim)
	c.waitSameLogSize(topic, 0)

	c.stopAndCompareLogs(topic, 0) // the cleaned logs are identical
}
