package broker

import (
	"testing"
	"time"
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
