package kafka

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// TestCompactionLarge (issue 15, "Must show"): 1,000,000 records over
// 10,000 keys (100 passes, each over every key in a random order) on a
// compacted topic shrink to about 10,000 records: once a cleaning that
// began after the last write is done, a consumer reading from the start
// sees every key's latest value at its offset and at most 10,000 records
// plus what one active segment can hold; then exactly the 10,000 latest.
// Then delete.retention.ms is set small (IncrementalAlterConfigs) and
// 1,000 keys are tombstoned: they disappear, the other 9,000 stay.
func TestCompactionLarge(t *testing.T) {
	const (
		topic     = "large-compacted"
		keys      = 10_000
		passes    = 100
		total     = keys * passes
		deleted   = 1_000
		segBytes  = 256 << 10
		batchMax  = 64 << 10
		minRecord = 19 // bytes of the smallest record below in a batch: length, attributes, two deltas, key and value with their lengths, header count
	)
	e := startEnv(t, func(e *testEnv) {
		e.bcfg.CompactionCheckInterval = 50 * time.Millisecond
		e.bcfg.SegmentBytes = segBytes
	})
	e.createTopic(topic, 1, map[string]*string{
		"cleanup.policy":            new("compact"),
		"segment.ms":                new("200"),
		"min.cleanable.dirty.ratio": new("0"), // clean any dirt: the last few records too
	})
	// The active segment holds at most segment.bytes plus the entry that
	// crossed it: this many records, uncompressed.
	activeMax := (segBytes + batchMax) / minRecord

	keyOf := func(k int) string { return fmt.Sprintf("k%05d", k) }
	// At offset o: the key index and the value's sequence number.
	keyAt := make([]int32, total+deleted+1)
	seqAt := make([]int32, total+deleted+1)
	tombAt := make([]bool, total+deleted+1)
	latest := make([]int64, keys) // key -> offset of its last write
	tombstoned := make([]bool, keys)

	began := time.Now()
	cl := e.client(kgo.DefaultProduceTopic(topic), kgo.ProducerLinger(20*time.Millisecond),
		kgo.ProducerBatchMaxBytes(batchMax), kgo.ProducerBatchCompression(kgo.NoCompression()),
		kgo.MaxBufferedRecords(200_000))
	var (
		wg       sync.WaitGroup
		failed   atomic.Int64
		errOnce  sync.Once
		firstErr error
	)
	produce := func(k, seq int, tombstone bool) {
		r := &kgo.Record{Key: []byte(keyOf(k)), Value: []byte(strconv.Itoa(seq))}
		if tombstone {
			r.Value = nil
		}
		wg.Add(1)
		cl.Produce(context.Background(), r, func(r *kgo.Record, err error) {
			defer wg.Done()
			if err == nil && (r.Offset < 0 || r.Offset >= int64(len(keyAt))) {
				err = fmt.Errorf("offset %d out of range", r.Offset)
			}
			if err != nil {
				failed.Add(1)
				errOnce.Do(func() { firstErr = err })
				return
			}
			keyAt[r.Offset], seqAt[r.Offset], tombAt[r.Offset] = int32(k), int32(seq), tombstone
		})
	}
	rng := rand.New(rand.NewPCG(1, 15))
	seq := 0
	for range passes {
		for _, k := range rng.Perm(keys) {
			produce(k, seq, false)
			seq++
		}
	}
	wg.Wait()
	if n := failed.Load(); n > 0 {
		t.Fatalf("%d of %d writes failed, first: %v", n, total, firstErr)
	}
	for o := range int64(total) {
		latest[keyAt[o]] = o // offsets in order: the last one wins
	}
	produced := time.Since(began)
	mark := len(e.logs.String())

	// read reads the partition through offset last and checks every record
	// against what was written at its offset; it returns the offsets read.
	read := func(last int64) map[int64]bool {
		t.Helper()
		rc := e.client(kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: {0: kgo.NewOffset().AtStart()}}),
			kgo.FetchMaxWait(100*time.Millisecond))
		defer rc.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		got := map[int64]bool{}
		for seen := int64(-1); seen < last; {
			fs := rc.PollFetches(ctx)
			if ctx.Err() != nil {
				t.Fatalf("read through %d: reached %d: %v", last, seen, ctx.Err())
			}
			fs.EachError(func(tp string, p int32, err error) { t.Fatalf("fetch %s-%d: %v", tp, p, err) })
			fs.EachRecord(func(r *kgo.Record) {
				if r.Offset <= seen {
					t.Fatalf("offset %d read after %d", r.Offset, seen)
				}
				seen = r.Offset
				wantKey, wantVal := keyOf(int(keyAt[r.Offset])), strconv.Itoa(int(seqAt[r.Offset]))
				if tombAt[r.Offset] {
					wantVal = ""
				}
				if string(r.Key) != wantKey || string(r.Value) != wantVal || (wantVal == "") != (r.Value == nil) {
					t.Fatalf("offset %d holds %q=%q, written was %q=%q", r.Offset, r.Key, r.Value, wantKey, wantVal)
				}
				got[r.Offset] = true
			})
		}
		return got
	}
	// checkLatest: every key not tombstoned has its latest value there.
	checkLatest := func(got map[int64]bool) {
		t.Helper()
		for k, off := range latest {
			if !tombstoned[k] && !got[off] {
				t.Fatalf("key %s's latest value, at offset %d, is missing", keyOf(k), off)
			}
		}
	}

	// A cleaning asked for after the last write: below where it cleaned up
	// to, only the latest record of each key; above, at most the segment
	// that was active then. At most one request is pending at a time, so
	// the second cleaning to begin after the last write was asked for after
	// it (or the first already cleaned everything).
	deadline := time.Now().Add(60 * time.Second)
	for !cleanedAfter(t, e.logs.String()[mark:], topic, total) {
		if time.Now().After(deadline) {
			t.Fatalf("no cleaning asked for after the last write done within 60s; logs:\n%s", e.logs.String()[mark:])
		}
		time.Sleep(20 * time.Millisecond)
	}
	got := read(total - 1)
	checkLatest(got)
	if len(got) < keys || len(got) > keys+activeMax {
		t.Fatalf("after a cleaning: %d records, want between %d and %d (the latest per key plus an active segment)", len(got), keys, keys+activeMax)
	}
	firstCount := len(got)
	// Then exactly the latest per key, once the active segment is rolled
	// (segment.ms) and cleaned.
	for len(got) != keys {
		if time.Now().After(deadline) {
			t.Fatalf("%d records after 60s, want the %d latest", len(got), keys)
		}
		time.Sleep(100 * time.Millisecond)
		got = read(total - 1)
		checkLatest(got)
	}
	compacted := time.Since(began)

	// Tombstones: 1,000 keys deleted, gone once delete.retention.ms passed.
	adm := kadm.NewClient(e.client())
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	resp, err := adm.AlterTopicConfigs(ctx, []kadm.AlterConfig{{Name: "delete.retention.ms", Value: new("100")}}, topic)
	cancel()
	if err == nil {
		_, err = resp.On(topic, nil)
	}
	if err != nil {
		t.Fatalf("set delete.retention.ms: %v", err)
	}
	for _, k := range rng.Perm(keys)[:deleted] {
		tombstoned[k] = true
		produce(k, seq, true)
		seq++
	}
	wg.Wait()
	if n := failed.Load(); n > 0 {
		t.Fatalf("%d tombstones failed, first: %v", n, firstErr)
	}
	// Then a live key once more, at once: the last offset, where readers
	// stop. Nothing is written after it, so the tombstones that a
	// cleaning keeps while they are younger than delete.retention.ms go
	// because the leader asks for another cleaning when they expire.
	for k := range keys {
		if !tombstoned[k] {
			produce(k, seq, false)
			break
		}
	}
	wg.Wait()
	if n := failed.Load(); n > 0 {
		t.Fatalf("the last write failed: %v", firstErr)
	}
	last := int64(total + deleted)
	for o := int64(total); o <= last; o++ {
		latest[keyAt[o]] = o
	}
	deadline = time.Now().Add(30 * time.Second)
	for {
		got = read(last)
		checkLatest(got)
		n := 0
		for off := range got {
			if tombstoned[keyAt[off]] {
				n++
			}
		}
		if n == 0 && len(got) == keys-deleted {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("30s after tombstoning %d keys with delete.retention.ms=100: %d records, %d of them of deleted keys", deleted, len(got), n)
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("produced %d records in %v; %d records after the first cleaning after it, %d (the latest per key) at %v; tombstoned keys gone at %v",
		total, produced.Round(time.Millisecond), firstCount, keys, compacted.Round(time.Millisecond), time.Since(began).Round(time.Millisecond))
}

// cleanedAfter reports whether logs (the broker's, from some moment on)
// show a cleaning of topic that was asked for after that moment done: the
// second one to begin, or one that cleaned up to end.
func cleanedAfter(t *testing.T, logs, topic string, end int64) bool {
	began := 0
	for line := range strings.Lines(logs) {
		var l struct {
			Message, Topic string
			UpTo           int64 `json:"up_to"`
		}
		if json.Unmarshal([]byte(line), &l) != nil || l.Topic != topic {
			continue
		}
		switch l.Message {
		case "compacting":
			began++
		case "compacted":
			if began >= 2 || l.UpTo >= end {
				t.Logf("cleaned up to %d after the last write (cleaning %d since)", l.UpTo, began)
				return true
			}
		}
	}
	return false
}
