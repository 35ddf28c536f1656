package broker

import (
	"fmt"
	"testing"
	"time"

	"github.com/chronik-stream/chronik/wal"
)

// TestCompactionTombstoneExpiry: a cleaning keeps a tombstone younger than
// delete.retention.ms; with nothing written since, the leader asks for
// another cleaning once it expires (not before), and that one removes it.
func TestCompactionTombstoneExpiry(t *testing.T) {
	b := openBroker(t, Config{CompactionCheckInterval: time.Hour}) // the test drives the scheduler
	createTopic(t, b, "t", 1, map[string]string{cfgCleanupPolicy: "compact", cfgDeleteRetention: "60000", cfgSegmentMs: "1"})
	p, err := b.partition("t", 0)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().UnixMilli()
	for i, r := range []tRec{{key: []byte("a"), value: []byte("1")}, {key: []byte("b"), value: []byte("2")}, {key: []byte("a"), value: nil}} {
		batch := tBatch{base: 0, pid: -1, epoch: -1, seq: -1, baseTs: now, recs: []tRec{r}}
		if res := mustProduce(t, b, "t", 0, batch.build(t)); res.BaseOffset != int64(i) {
			t.Fatalf("record %d at offset %d", i, res.BaseOffset)
		}
	}
	clean := func(at int64) {
		t.Helper()
		req, ok := p.compactionDue(at)
		if !ok {
			t.Fatalf("not due at %d", at)
		}
		if _, err := b.cleaner.clean(p, req); err != nil {
			t.Fatal(err)
		}
	}
	clean(now + 10) // segment.ms rolled the active segment
	if n := countRecords(t, b, 3); n != 2 {
		t.Fatalf("%d records after the first cleaning, want 2 (b and a's tombstone)", n)
	}
	if got, want := p.tombstoneExpiry.Load(), now+60001; got != want {
		t.Fatalf("tombstone expiry %d, want %d", got, want)
	}
	// The expiry and how far the log is cleaned survive a restart.
	b = reopen(t, b)
	if p, err = b.partition("t", 0); err != nil {
		t.Fatal(err)
	}
	if got, want := p.tombstoneExpiry.Load(), now+60001; got != want || p.cleanedUpTo.Load() != 3 {
		t.Fatalf("after a restart: tombstone expiry %d (want %d), cleaned up to %d (want 3)", got, want, p.cleanedUpTo.Load())
	}
	if _, ok := p.compactionDue(now + 60000); ok {
		t.Fatal("due again before the tombstone expired, with nothing written")
	}
	clean(now + 60001)
	if n := countRecords(t, b, 3); n != 1 {
		t.Fatalf("%d records after the tombstone expired, want 1 (b)", n)
	}
	if te := p.tombstoneExpiry.Load(); te != 0 {
		t.Fatalf("tombstone expiry %d with no tombstone left", te)
	}
	if _, ok := p.compactionDue(now + 120000); ok {
		t.Fatal("due with nothing to clean")
	}
}

// TestCompactionOfGroupOffsets: __consumer_offsets is cleaned in place by
// the same cleaner as any compacted topic (the coordinator's own
// compaction held off): many commits of few keys leave their latest
// records, the offsets are unchanged, and a restart replays only those.
func TestCompactionOfGroupOffsets(t *testing.T) {
	defer func(old int64) { groupCompactMinRecords = old }(groupCompactMinRecords)
	groupCompactMinRecords = 1 << 40
	cfg := coordTestConfig()
	cfg.SegmentBytes = 16 << 10
	cfg.CompactionCheckInterval = time.Hour // the test drives the scheduler
	b := openBroker(t, cfg)
	createTopic(t, b, "t", 4, nil)
	for r := range int64(300) {
		commitOne(t, b, "g", "", -1, "t", int32(r%4), r)
	}
	want := fetchOffsets(t, b, "g")
	op, err := b.partition(offsetsTopic, GroupOffsetsPartition("g", cfg.OffsetsTopicPartitions))
	if err != nil {
		t.Fatal(err)
	}
	if info, _ := b.Topic(offsetsTopic); info.Configs[cfgCleanupPolicy] != "compact" {
		t.Fatalf("%s created with configs %v", offsetsTopic, info.Configs)
	}
	if err := op.log.Roll(); err != nil {
		t.Fatal(err)
	}
	req, ok := op.compactionDue(time.Now().UnixMilli())
	if !ok {
		t.Fatal("__consumer_offsets not due for cleaning")
	}
	if _, err := b.cleaner.clean(op, req); err != nil {
		t.Fatal(err)
	}
	if got := fetchOffsets(t, b, "g"); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("offsets after cleaning %v, want %v", got, want)
	}
	kept := 0
	_ = op.forEachRecord(op.logStartOffset.Load(), op.highWatermark.Load(), func(int64, int64, groupBatchMeta, []byte, []byte) error {
		kept++
		return nil
	})
	// 4 offset keys and the group's metadata record at most.
	if kept > 5 {
		t.Fatalf("%d records left of 300 commits of 4 keys", kept)
	}
	b = reopen(t, b)
	if got := fetchOffsets(t, b, "g"); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("offsets after a restart %v, want %v", got, want)
	}
}

// TestCleanRuns: sealed segments to clean group into runs of at most the
// segment size; the active segment, segments without records, segments
// at or past UpTo and segments below the log start end a run, and one
// holding records past UpTo is cleaned alone.
func TestCleanRuns(t *testing.T) {
	seg := func(first uint64, firstOff, nextOff, bytes int64) wal.SegmentInfo {
		return wal.SegmentInfo{FirstIndex: first, FirstOffset: firstOff, NextOffset: nextOff, Bytes: bytes}
	}
	segs := []wal.SegmentInfo{
		seg(1, 0, 10, 100),    // below the log start (10)
		seg(11, 10, 20, 300),  // run 1
		seg(21, 20, 30, 300),  // run 1
		seg(31, 30, 40, 300),  // run 1: 900
		seg(41, 40, 50, 200),  // run 2 (would make 1100)
		seg(51, -1, -1, 50),   // no records: ends run 2
		seg(52, 50, 60, 2000), // larger than the limit: alone
		seg(62, 60, 70, 100),  // run 4
		seg(72, 70, 80, 100),  // spans UpTo (75): alone
		seg(82, 80, 90, 100),  // at or past UpTo
		{FirstIndex: 92, FirstOffset: 90, NextOffset: 91, Bytes: 10, Active: true},
	}
	got := cleanRuns(segs, 10, 75, 1000)
	want := []segmentRun{{11, 3}, {41, 1}, {52, 1}, {62, 1}, {72, 1}}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("runs %v, want %v", got, want)
	}
	if got := cleanRuns(segs, 10, 5, 1000); len(got) != 0 {
		t.Fatalf("nothing below UpTo: runs %v", got)
	}
}
