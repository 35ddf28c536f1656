package kafka

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// withCompaction makes the cleaner check every 20 ms and gives new topics
// 4 KiB segments, so that a few hundred records make many cleanable ones.
func withCompaction() envOpt {
	return func(e *testEnv) {
		e.bcfg.CompactionCheckInterval = 20 * time.Millisecond
		e.bcfg.SegmentBytes = 4 << 10
	}
}

// keyedRecord is what a compacted partition should hold at an offset.
type keyedRecord struct {
	key   string
	value *string // nil: a tombstone
}

// readCompacted reads partition 0 of topic from the start through offset
// last, returning what each offset holds.
func readCompacted(t *testing.T, e *testEnv, topic string, last int64) map[int64]keyedRecord {
	t.Helper()
	cl := e.client(kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: {0: kgo.NewOffset().AtStart()}}),
		kgo.FetchMaxWait(100*time.Millisecond))
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	got := map[int64]keyedRecord{}
	for seen := int64(-1); seen < last; {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("read %s through offset %d: reached %d: %v\n%s", topic, last, seen, ctx.Err(), e.logs.String())
		}
		fs.EachError(func(tp string, p int32, err error) { t.Fatalf("fetch %s-%d: %v", tp, p, err) })
		fs.EachRecord(func(r *kgo.Record) {
			if r.Offset <= seen {
				t.Fatalf("offset %d read after %d", r.Offset, seen)
			}
			seen = r.Offset
			kr := keyedRecord{key: string(r.Key)}
			if r.Value != nil {
				v := string(r.Value)
				kr.value = &v
			}
			got[r.Offset] = kr
		})
	}
	return got
}

// latestPerKey is the compaction model: the last record of each key, at
// its offset; tombstones included when keepTombstones.
func latestPerKey(written map[int64]keyedRecord, keepTombstones bool) map[int64]keyedRecord {
	last := map[string]int64{}
	for off, r := range written {
		if cur, ok := last[r.key]; !ok || off > cur {
			last[r.key] = off
		}
	}
	out := map[int64]keyedRecord{}
	for _, off := range last {
		if r := written[off]; r.value != nil || keepTombstones {
			out[off] = r
		}
	}
	return out
}

func describeRecords(m map[int64]keyedRecord) string {
	var b strings.Builder
	for _, off := range slices.Sorted(maps.Keys(m)) {
		v := "<tombstone>"
		if m[off].value != nil {
			v = *m[off].value
		}
		fmt.Fprintf(&b, " %d:%s=%s", off, m[off].key, v)
	}
	return b.String()
}

// TestCompactedTopic: keyed records, overwritten many times, some deleted
// with tombstones, on a topic with cleanup.policy=compact. The cleaner
// keeps exactly the latest record of each key at its original offset (a
// consumer sees the gaps), tombstones kept for delete.retention.ms, and
// the result survives a restart; a keyless record is refused.
func TestCompactedTopic(t *testing.T) {
	e := startEnv(t, withCompaction())
	for _, tc := range []struct {
		name           string
		deleteRetMs    string
		keepTombstones bool
	}{
		{"keep-tombstones", "86400000", true},
		{"drop-tombstones", "0", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			topic := "compacted-" + tc.name
			e.createTopic(topic, 1, map[string]*string{
				"cleanup.policy":            new("compact"),
				"segment.ms":                new("100"),
				"min.cleanable.dirty.ratio": new("0.01"),
				"delete.retention.ms":       new(tc.deleteRetMs),
			})
			cl := e.client(kgo.DefaultProduceTopic(topic), kgo.ProducerLinger(0))
			written := map[int64]keyedRecord{}
			produce := func(key string, value *string) {
				t.Helper()
				r := &kgo.Record{Key: []byte(key)}
				if value != nil {
					r.Value = []byte(*value)
				}
				if err := cl.ProduceSync(context.Background(), r).FirstErr(); err != nil {
					t.Fatalf("produce %s: %v", key, err)
				}
				written[r.Offset] = keyedRecord{key: key, value: value}
			}
			for round := range 20 {
				for k := range 12 {
					produce(fmt.Sprintf("key-%02d", k), new(fmt.Sprintf("value-%02d-%02d-%s", k, round, strings.Repeat("x", 100))))
				}
			}
			for k := range 4 {
				produce(fmt.Sprintf("key-%02d", k), nil) // delete keys 0-3
			}
			produce("key-last", new("end"))
			last := int64(len(written) - 1)
			want := latestPerKey(written, tc.keepTombstones)

			deadline := time.Now().Add(30 * time.Second)
			var got map[int64]keyedRecord
			for {
				got = readCompacted(t, e, topic, last)
				if maps.EqualFunc(got, want, sameKeyed) || time.Now().After(deadline) {
					break
				}
				time.Sleep(50 * time.Millisecond)
			}
			if !maps.EqualFunc(got, want, sameKeyed) {
				t.Fatalf("after compaction:\n got%s\nwant%s", describeRecords(got), describeRecords(want))
			}
			e.restart()
			t.Logf("logs: %s", e.logs.String())
			if got := readCompacted(t, e, topic, last); !maps.EqualFunc(got, want, sameKeyed) {
				t.Fatalf("after restart:\n got%s\nwant%s", describeRecords(got), describeRecords(want))
			}

			cl = e.client(kgo.DefaultProduceTopic(topic), kgo.RecordRetries(0))
			err := cl.ProduceSync(context.Background(), &kgo.Record{Value: []byte("no key")}).FirstErr()
			if !errors.Is(err, kerr.InvalidRecord) {
				t.Fatalf("keyless record on a compacted topic: %v, want INVALID_RECORD", err)
			}
		})
	}
}

func sameKeyed(a, b keyedRecord) bool {
	return a.key == b.key && (a.value == nil) == (b.value == nil) && (a.value == nil || *a.value == *b.value)
}
