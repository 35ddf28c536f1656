package wal

import (
	"bytes"
	"errors"
	"os"
	"testing"
	"time"
)

// flipByte flips one bit of byte pos of the file at path, in place.
func flipByte(t *testing.T, path string, pos int) {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	raw[pos] ^= 0x40
	if err := os.WriteFile(path, raw, 0o640); err != nil {
		t.Fatal(err)
	}
}

func wantCorrupt(t *testing.T, err error, path string, index uint64) {
	t.Helper()
	var ce *CorruptError
	if !errors.As(err, &ce) || !errors.Is(err, ErrCorrupt) || ce.File != path || ce.Index != index {
		t.Fatalf("read of damaged entry %d: %v, want a *CorruptError for %s", index, err, path)
	}
}

// TestSealedDamageNeverServed flips a byte in a sealed segment twice: before
// the segment is first read, and after its verified copy was evicted from
// the read cache. Both times the damaged entry is reported, never served,
// and the other entries stay readable.
func TestSealedDamageNeverServed(t *testing.T) {
	dir := t.TempDir()
	cache := NewReadCache(1) // keeps only the segment read last
	l := mustOpen(t, dir, Options{SegmentSize: 4 * storedEntry, Fsync: FsyncNever, ReadCache: cache})
	defer l.Close()
	appendData(t, l, 20, 200) // segments [1,4] [5,8] [9,12] [13,16] [17,20] [21,)

	seg1 := l.segPath(1)
	flipByte(t, seg1, storedEntry+60) // entry 2's payload
	_, err := l.Read(2)
	wantCorrupt(t, err, seg1, 2)
	for _, i := range []uint64{1, 3, 4} {
		if e, err := l.Read(i); err != nil || !bytes.Equal(e.Payload, payloadFor(uint64(i-1), 200)) {
			t.Fatalf("undamaged entry %d: %v", i, err)
		}
	}

	// Segment [5,8] is read (verified and cached), then damaged on disk:
	// the cached copy is the verified one, so reads still serve it.
	if _, err := l.Read(6); err != nil {
		t.Fatal(err)
	}
	seg2 := l.segPath(5)
	flipByte(t, seg2, storedEntry+100) // entry 6's payload
	if e, err := l.Read(6); err != nil || !bytes.Equal(e.Payload, payloadFor(5, 200)) {
		t.Fatalf("cached entry 6: %v", err)
	}
	// Reading another segment evicts it; the reload verifies again.
	if _, err := l.Read(10); err != nil {
		t.Fatal(err)
	}
	_, err = l.Read(6)
	wantCorrupt(t, err, seg2, 6)
	if _, err := l.Read(7); err != nil {
		t.Fatalf("entry after the damage: %v", err)
	}

	// A broken length prefix: that entry and every one after it in the
	// segment are unreadable, the ones before it are served.
	seg3 := l.segPath(9)
	flipByte(t, seg3, 2*storedEntry+1)    // entry 11's uvarint (234 = 0xea 0x01)
	if _, err := l.Read(14); err != nil { // evict [9,12]
		t.Fatal(err)
	}
	if _, err := l.Read(10); err != nil {
		t.Fatalf("entry before the broken framing: %v", err)
	}
	for _, i := range []uint64{11, 12} {
		if _, err := l.Read(i); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("entry %d after the broken framing: %v", i, err)
		}
	}
	// FindOffset scans headers from the index point at entry 9 (offset 8).
	if _, err := l.FindOffset(10); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("FindOffset over the broken framing: %v", err)
	}
}

// TestTailDamageNeverServed damages the tail segment while the log is
// released for idleness: tidwall reloads the tail from disk, and the first
// read of it verifies what was loaded.
func TestTailDamageNeverServed(t *testing.T) {
	dir := t.TempDir()
	l := mustOpen(t, dir, Options{Fsync: FsyncNever, IdleTimeout: 10 * time.Millisecond})
	defer l.Close()
	appendData(t, l, 10, 200)
	deadline := time.Now().Add(5 * time.Second)
	for {
		l.mu.Lock()
		released := l.tl == nil
		l.mu.Unlock()
		if released {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("log not released")
		}
		time.Sleep(5 * time.Millisecond)
	}
	path := l.segPath(1)
	flipByte(t, path, 3*storedEntry+50) // entry 4's payload
	_, err := l.Read(4)
	wantCorrupt(t, err, path, 4)
	if e, err := l.Read(3); err != nil || !bytes.Equal(e.Payload, payloadFor(2, 200)) {
		t.Fatalf("undamaged tail entry: %v", err)
	}
	_, err = l.Read(4)
	wantCorrupt(t, err, path, 4)
}

// TestTailVerifiedOnce: a tail loaded from disk is verified by the first
// read that reaches it and trusted afterwards, with what is appended later.
func TestTailVerifiedOnce(t *testing.T) {
	dir := t.TempDir()
	l := mustOpen(t, dir, Options{Fsync: FsyncNever})
	appendData(t, l, 10, 200)
	l.Close()
	l = mustOpen(t, dir, Options{Fsync: FsyncNever})
	defer l.Close()
	l.mu.Lock()
	trust := l.trustFrom
	l.mu.Unlock()
	if trust != 11 {
		t.Fatalf("trustFrom after open = %d, want 11", trust)
	}
	appendData(t, l, 5, 200)
	for i := uint64(1); i <= 15; i++ {
		if e, err := l.Read(i); err != nil || !bytes.Equal(e.Payload, payloadFor(i-1, 200)) {
			t.Fatalf("entry %d: %v", i, err)
		}
	}
	l.mu.Lock()
	trust = l.trustFrom
	l.mu.Unlock()
	if trust != 0 {
		t.Fatalf("trustFrom after reading = %d, want 0", trust)
	}
}

// TestReadCacheInvalidation: truncations and Reset must not leave stale
// segment copies behind, though new segments reuse the same first indexes.
func TestReadCacheInvalidation(t *testing.T) {
	dir := t.TempDir()
	cache := NewReadCache(1 << 20)
	l := mustOpen(t, dir, Options{SegmentSize: 4 * storedEntry, Fsync: FsyncNever, ReadCache: cache})
	defer l.Close()
	readAll := func(size int, salt uint64) {
		t.Helper()
		for i := l.FirstIndex(); i <= l.LastIndex(); i++ {
			e, err := l.Read(i)
			if err != nil {
				t.Fatalf("read %d: %v", i, err)
			}
			if want := payloadFor(uint64(e.BaseOffset)+salt, size); !bytes.Equal(e.Payload, want) {
				t.Fatalf("entry %d: stale or wrong payload", i)
			}
		}
	}
	appendData(t, l, 20, 200)
	readAll(200, 0)
	if cache.Bytes() == 0 {
		t.Fatal("nothing cached")
	}

	if err := l.TruncateBack(6); err != nil {
		t.Fatal(err)
	}
	for range 14 {
		off := l.NextOffset()
		if _, err := l.Append(Entry{Kind: KindData, BaseOffset: off, Payload: payloadFor(uint64(off)+1000, 200)}); err != nil {
			t.Fatal(err)
		}
	}
	for i := uint64(7); i <= 20; i++ {
		e, err := l.Read(i)
		if err != nil || !bytes.Equal(e.Payload, payloadFor(uint64(e.BaseOffset)+1000, 200)) {
			t.Fatalf("entry %d after truncate back: %v", i, err)
		}
	}

	if err := l.TruncateFront(3); err != nil { // mid-segment: rewritten
		t.Fatal(err)
	}
	if e, err := l.Read(3); err != nil || !bytes.Equal(e.Payload, payloadFor(2, 200)) {
		t.Fatalf("entry 3 after truncate front: %v", err)
	}

	if err := l.Reset(1, 0); err != nil {
		t.Fatal(err)
	}
	if cache.Bytes() != 0 {
		t.Fatalf("cache holds %d bytes of a reset log", cache.Bytes())
	}
	appendData(t, l, 20, 300)
	readAll(300, 0)
}

// TestReadCacheBudget: the cache stays within its budget across logs, or
// holds just the segment each log read last when those exceed it, and
// forgets a log when it closes.
func TestReadCacheBudget(t *testing.T) {
	segBytes := int64(4 * storedEntry)
	cache := NewReadCache(3 * segBytes)
	var logs []*Log
	for range 3 {
		l := mustOpen(t, t.TempDir(), Options{SegmentSize: int(segBytes), Fsync: FsyncNever, ReadCache: cache})
		appendData(t, l, 20, 200)
		logs = append(logs, l)
	}
	for round := range 2 {
		for _, l := range logs {
			for i := l.FirstIndex(); i <= l.LastIndex(); i++ {
				if _, err := l.Read(i); err != nil {
					t.Fatal(err)
				}
				if b := cache.Bytes(); b > 3*segBytes {
					t.Fatalf("round %d: cache holds %d bytes, budget %d", round, b, 3*segBytes)
				}
			}
		}
	}
	for _, l := range logs {
		l.Close()
	}
	if b := cache.Bytes(); b != 0 {
		t.Fatalf("cache holds %d bytes after every log closed", b)
	}

	// A budget below one segment per log: logs read in turn keep their
	// current segment each (no reload per read), and nothing else.
	small := NewReadCache(1)
	logs = logs[:0]
	for range 3 {
		l := mustOpen(t, t.TempDir(), Options{SegmentSize: int(segBytes), Fsync: FsyncNever, ReadCache: small})
		defer l.Close()
		appendData(t, l, 20, 200)
		logs = append(logs, l)
	}
	for i := uint64(1); i <= 20; i++ {
		for _, l := range logs {
			if _, err := l.Read(i); err != nil {
				t.Fatal(err)
			}
		}
	}
	small.mu.Lock()
	loads := small.loads
	small.mu.Unlock()
	if loads != 3*5 {
		t.Fatalf("%d segment loads for 3 logs of 5 sealed segments read in turn, want 15", loads)
	}
	if b := small.Bytes(); b > 3*segBytes {
		t.Fatalf("small cache holds %d bytes, want at most one segment per log", b)
	}
}
