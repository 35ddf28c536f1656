package wal

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// appendMixed appends n entries of every kind (record entries spanning
// 1-3 offsets, no-ops, conf changes, meta) with payloads of 60-260 bytes,
// and returns them by index.
func appendMixed(t testing.TB, l *Log, n int, written map[uint64]Entry) {
	t.Helper()
	for i := 0; i < n; i++ {
		var e Entry
		switch i % 7 {
		case 3:
			e = Entry{Kind: KindNoop, Term: 2}
		case 5:
			e = Entry{Kind: KindConfChange, Term: 2, Payload: []byte(fmt.Sprintf("conf %d", i))}
		default:
			off := l.NextOffset()
			kind := KindData
			if i%11 == 0 {
				kind = KindMeta
			}
			e = Entry{Kind: kind, Term: 2, BaseOffset: off, LastOffsetDelta: int32(i % 3),
				MaxTimestamp: 5000 + 10*off - int64(i%4)*7, Payload: payloadFor(uint64(off), 60+(i*37)%200)}
		}
		idx, err := l.Append(e)
		if err != nil {
			t.Fatalf("append %d: %v", i, err)
		}
		if written != nil {
			written[idx] = e
		}
	}
}

// shrink is the test's compaction: a deterministic, idempotent function of
// the payload (a prefix of at most 20 bytes) for even indexes; odd indexes
// are left as they are.
func shrink(index uint64, e Entry) ([]byte, error) {
	if index%2 == 1 || len(e.Payload) <= 20 {
		return e.Payload, nil
	}
	return e.Payload[:20], nil
}

// rewritten is what shrink makes of the entry at index.
func rewritten(index uint64, e Entry) Entry {
	if e.Kind.HasRecords() {
		e.Payload, _ = shrink(index, e)
	}
	return e
}

type lookups struct {
	offsets map[int64]uint64
	times   map[int64]uint64
}

// takeLookups records FindOffset for every offset and FindTimestamp for a
// spread of timestamps.
func takeLookups(t testing.TB, l *Log) lookups {
	t.Helper()
	lk := lookups{offsets: map[int64]uint64{}, times: map[int64]uint64{}}
	for off := l.StartOffset(); off < l.NextOffset(); off++ {
		idx, err := l.FindOffset(off)
		if err != nil {
			t.Fatalf("FindOffset(%d): %v", off, err)
		}
		lk.offsets[off] = idx
	}
	for ts := int64(4990); ts < 5000+10*l.NextOffset()+20; ts += 3 {
		idx, err := l.FindTimestamp(ts)
		if errors.Is(err, ErrOffsetNotFound) {
			idx = 0
		} else if err != nil {
			t.Fatalf("FindTimestamp(%d): %v", ts, err)
		}
		lk.times[ts] = idx
	}
	return lk
}

func checkLookups(t testing.TB, l *Log, want lookups) {
	t.Helper()
	got := takeLookups(t, l)
	for off, idx := range want.offsets {
		if got.offsets[off] != idx {
			t.Fatalf("FindOffset(%d) = %d, was %d", off, got.offsets[off], idx)
		}
	}
	for ts, idx := range want.times {
		if idx != 0 && got.times[ts] != idx { // not found then: later appends may match
			t.Fatalf("FindTimestamp(%d) = %d, was %d", ts, got.times[ts], idx)
		}
	}
}

func checkEntries(t testing.TB, l *Log, want map[uint64]Entry) {
	t.Helper()
	for i := l.FirstIndex(); i <= l.LastIndex(); i++ {
		e, err := l.Read(i)
		if err != nil || !sameEntry(e, want[i]) {
			t.Fatalf("read %d: %+v %v, want %+v", i, e, err, want[i])
		}
	}
}

func noTempFiles(t testing.TB, dir string) {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if strings.HasSuffix(e.Name(), rewriteSuffix) {
			t.Fatalf("temp file %s left in %s", e.Name(), dir)
		}
	}
}

// TestRewriteSegment: a rewrite keeps every entry's index and header,
// changes only the payloads, shrinks the files, leaves FindOffset and
// FindTimestamp answering the same entries, and survives reopening.
func TestRewriteSegment(t *testing.T) {
	dir := t.TempDir()
	opts := Options{SegmentSize: 4 << 10, Fsync: FsyncNever, IndexIntervalBytes: 300, ReadCache: NewReadCache(1 << 20)}
	l := mustOpen(t, dir, opts)
	written := map[uint64]Entry{}
	appendMixed(t, l, 150, written)
	segs := l.Segments()
	if len(segs) < 4 {
		t.Fatalf("want several segments, got %d", len(segs))
	}
	lk := takeLookups(t, l)
	checkEntries(t, l, written) // the read cache and tidwall's cache hold the old files
	sizeBefore := l.Size()

	var saved int64
	for _, s := range segs[:len(segs)-1] {
		var calls []uint64
		before, after, err := l.RewriteSegment(s.FirstIndex, func(index uint64, e Entry) ([]byte, error) {
			calls = append(calls, index)
			if !e.Kind.HasRecords() || !sameEntry(e, written[index]) {
				t.Errorf("callback for %d got %+v, want %+v", index, e, written[index])
			}
			return shrink(index, e)
		})
		if err != nil {
			t.Fatalf("rewrite segment %d: %v", s.FirstIndex, err)
		}
		if before != s.Bytes || after >= before {
			t.Fatalf("segment %d: before %d after %d, was %d bytes", s.FirstIndex, before, after, s.Bytes)
		}
		saved += before - after
		var want []uint64
		for i := s.FirstIndex; i <= s.LastIndex; i++ {
			if written[i].Kind.HasRecords() {
				want = append(want, i)
			}
			written[i] = rewritten(i, written[i])
		}
		if fmt.Sprint(calls) != fmt.Sprint(want) {
			t.Fatalf("callback calls %v, want the record entries in order %v", calls, want)
		}
	}
	if l.Size() != sizeBefore-saved {
		t.Fatalf("size %d, want %d - %d", l.Size(), sizeBefore, saved)
	}
	checkEntries(t, l, written)
	checkLookups(t, l, lk)
	checkFiles(t, l)
	noTempFiles(t, dir)
	after := l.Segments()
	for i, s := range after {
		o := segs[i]
		if s.FirstIndex != o.FirstIndex || s.LastIndex != o.LastIndex || s.FirstOffset != o.FirstOffset ||
			s.NextOffset != o.NextOffset || s.MaxTimestamp != o.MaxTimestamp || s.FirstTimestamp != o.FirstTimestamp {
			t.Fatalf("segment %d: %+v, was %+v", i, s, o)
		}
	}

	// Rewriting again changes nothing (shrink is idempotent) and writes
	// nothing: the file is untouched.
	s0 := after[0]
	st, _ := os.Stat(l.segPath(s0.FirstIndex))
	before, afterBytes, err := l.RewriteSegment(s0.FirstIndex, shrink)
	if err != nil || before != s0.Bytes || afterBytes != before {
		t.Fatalf("idempotent rewrite: %d -> %d, %v", before, afterBytes, err)
	}
	if st2, _ := os.Stat(l.segPath(s0.FirstIndex)); !os.SameFile(st, st2) {
		t.Fatal("a rewrite that changed nothing replaced the file")
	}
	// A callback returning equal bytes in a new slice is no change either.
	if b, a, err := l.RewriteSegment(s0.FirstIndex, func(_ uint64, e Entry) ([]byte, error) {
		return bytes.Clone(e.Payload), nil
	}); err != nil || a != b {
		t.Fatalf("rewrite to equal bytes: %d -> %d, %v", b, a, err)
	}

	// Appends continue, and everything is the same after reopening.
	appendMixed(t, l, 20, written)
	wantSize, wantNext := l.Size(), l.NextOffset()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l = mustOpen(t, dir, opts)
	defer l.Close()
	if l.Size() != wantSize || l.NextOffset() != wantNext || len(l.Repairs()) != 0 {
		t.Fatalf("reopened: size %d next %d repairs %v", l.Size(), l.NextOffset(), l.Repairs())
	}
	checkEntries(t, l, written)
	checkLookups(t, l, lk)
	checkFiles(t, l)
}

// TestRewriteSegmentRefuses: the active segment and unknown first indexes
// are ErrOutOfRange, an oversized payload ErrInvalidEntry, a callback error
// is returned; each leaves the segment and the directory as they were.
func TestRewriteSegmentRefuses(t *testing.T) {
	dir := t.TempDir()
	l := mustOpen(t, dir, Options{SegmentSize: 4 << 10, Fsync: FsyncNever})
	defer l.Close()
	written := map[uint64]Entry{}
	appendMixed(t, l, 60, written)
	segs := l.Segments()
	tail := segs[len(segs)-1]
	for _, first := range []uint64{tail.FirstIndex, segs[0].FirstIndex + 1, tail.LastIndex + 5, 0} {
		if _, _, err := l.RewriteSegment(first, shrink); !errors.Is(err, ErrOutOfRange) {
			t.Fatalf("rewrite of %d: %v, want ErrOutOfRange", first, err)
		}
	}
	if _, _, err := l.RewriteSegment(segs[0].FirstIndex, nil); err == nil {
		t.Fatal("rewrite without a function succeeded")
	}
	huge := make([]byte, maxPayload+1)
	if _, _, err := l.RewriteSegment(segs[0].FirstIndex, func(index uint64, e Entry) ([]byte, error) {
		if index > segs[0].FirstIndex+2 {
			return huge, nil
		}
		return shrink(index, e)
	}); !errors.Is(err, ErrInvalidEntry) {
		t.Fatalf("oversized payload: %v", err)
	}
	boom := errors.New("boom")
	calls := 0
	if _, _, err := l.RewriteSegment(segs[1].FirstIndex, func(index uint64, e Entry) ([]byte, error) {
		if calls++; calls == 4 {
			return nil, boom
		}
		return shrink(index, e)
	}); !errors.Is(err, boom) || calls != 4 {
		t.Fatalf("callback error: %v", err)
	}
	noTempFiles(t, dir)
	checkEntries(t, l, written)
	checkFiles(t, l)
	if got := l.Segments(); fmt.Sprint(got) != fmt.Sprint(segs) {
		t.Fatalf("segments changed: %+v, were %+v", got, segs)
	}
}

// TestRewriteSegmentCrash: a temp file left by a crash before the rename is
// removed by Open and reported as a Repair, the segment intact; a crash
// after the rename (the new file in place, the directory perhaps not
// synced) opens with the new payloads.
func TestRewriteSegmentCrash(t *testing.T) {
	opts := Options{SegmentSize: 4 << 10, Fsync: FsyncNever}
	dir := t.TempDir()
	l := mustOpen(t, dir, opts)
	written := map[uint64]Entry{}
	appendMixed(t, l, 80, written)
	first := l.Segments()[1].FirstIndex
	// Build the rewritten file in a copy of the log, as RewriteSegment
	// would have left it.
	copyDir := t.TempDir()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	copyFiles(t, dir, copyDir)
	c := mustOpen(t, copyDir, opts)
	if _, _, err := c.RewriteSegment(first, shrink); err != nil {
		t.Fatal(err)
	}
	c.Close()
	newFile, err := os.ReadFile(filepath.Join(copyDir, segmentName(first)))
	if err != nil {
		t.Fatal(err)
	}
	oldFile, _ := os.ReadFile(filepath.Join(dir, segmentName(first)))
	if bytes.Equal(newFile, oldFile) || len(newFile) >= len(oldFile) {
		t.Fatal("the copy's rewrite changed nothing")
	}

	// Crash before the rename: a whole or partial temp file; no marker.
	for _, temp := range [][]byte{newFile, newFile[:len(newFile)/2], nil} {
		os.Remove(filepath.Join(dir, cleanFile))
		tmp := filepath.Join(dir, segmentName(first)+rewriteSuffix)
		if err := os.WriteFile(tmp, temp, 0o640); err != nil {
			t.Fatal(err)
		}
		var reported []Repair
		o := opts
		o.OnRepair = func(r Repair) { reported = append(reported, r) }
		l = mustOpen(t, dir, o)
		want := Repair{File: tmp, CutIndex: first, CutBytes: int64(len(temp)), Reason: reasonRewriteLeftover}
		if r := l.Repairs(); len(r) != 1 || r[0] != want || len(reported) != 1 || reported[0] != want {
			t.Fatalf("repairs %+v reported %+v, want %+v", r, reported, want)
		}
		noTempFiles(t, dir)
		checkEntries(t, l, written)
		checkFiles(t, l)
		l.Close()
	}

	// Crash after the rename.
	os.Remove(filepath.Join(dir, cleanFile))
	if err := os.WriteFile(filepath.Join(dir, segmentName(first)), newFile, 0o640); err != nil {
		t.Fatal(err)
	}
	l = mustOpen(t, dir, opts)
	defer l.Close()
	if len(l.Repairs()) != 0 {
		t.Fatalf("repairs after a finished rewrite: %v", l.Repairs())
	}
	s := l.Segments()[1]
	for i := s.FirstIndex; i <= s.LastIndex; i++ {
		written[i] = rewritten(i, written[i])
	}
	checkEntries(t, l, written)
	checkFiles(t, l)
	appendMixed(t, l, 5, written)
	checkEntries(t, l, written)
}

func copyFiles(t testing.TB, from, to string) {
	t.Helper()
	ents, err := os.ReadDir(from)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(from, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(to, e.Name()), b, 0o640); err != nil {
			t.Fatal(err)
		}
	}
}

// TestRewriteSegmentChangedMeanwhile: whatever replaces or removes the
// segment while the callback runs (the callback runs without the log's
// locks, so it can do it itself) makes the rewrite fail with
// ErrSegmentChanged (ErrClosed after Close), leaving no temp file and the
// log as the other call left it. What does not touch the segment (appends,
// Roll, an idle release, retention of another segment) does not stop it.
func TestRewriteSegmentChangedMeanwhile(t *testing.T) {
	cases := []struct {
		name    string
		seg     int // which segment to rewrite
		meddle  func(l *Log, s []SegmentInfo) error
		wantErr error
	}{
		{"retention drops it", 0, func(l *Log, s []SegmentInfo) error { return l.DropSegments(1) }, ErrSegmentChanged},
		{"retention by size", 0, func(l *Log, s []SegmentInfo) error { _, err := l.RetainBytes(1); return err }, ErrSegmentChanged},
		{"truncate front into it", 1, func(l *Log, s []SegmentInfo) error { return l.TruncateFront(s[1].FirstIndex + 2) }, ErrSegmentChanged},
		{"truncate back into it", 1, func(l *Log, s []SegmentInfo) error { return l.TruncateBack(s[1].LastIndex - 1) }, ErrSegmentChanged},
		{"truncate back to its end", 1, func(l *Log, s []SegmentInfo) error { return l.TruncateBack(s[1].LastIndex) }, ErrSegmentChanged},
		{"reset", 1, func(l *Log, s []SegmentInfo) error { return l.Reset(s[1].FirstIndex, 1000) }, ErrSegmentChanged},
		{"close", 1, func(l *Log, s []SegmentInfo) error { return l.Close() }, ErrClosed},
		{"retention of the one before", 1, func(l *Log, s []SegmentInfo) error { return l.DropSegments(1) }, nil},
		{"truncate front before it", 1, func(l *Log, s []SegmentInfo) error { return l.TruncateFront(s[0].FirstIndex + 1) }, nil},
		{"append and roll", 1, func(l *Log, s []SegmentInfo) error {
			appendMixed(t, l, 10, nil)
			return l.Roll()
		}, nil},
		{"idle release", 1, func(l *Log, s []SegmentInfo) error {
			l.wmu.Lock()
			l.mu.Lock()
			defer l.wmu.Unlock()
			defer l.mu.Unlock()
			return l.releaseLocked()
		}, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			l := mustOpen(t, dir, Options{SegmentSize: 4 << 10, Fsync: FsyncNever})
			defer l.Close()
			written := map[uint64]Entry{}
			appendMixed(t, l, 80, written)
			segs := l.Segments()
			first := segs[tc.seg].FirstIndex
			called := false
			before, after, err := l.RewriteSegment(first, func(index uint64, e Entry) ([]byte, error) {
				if !called {
					called = true
					if err := tc.meddle(l, segs); err != nil {
						t.Fatalf("meddle: %v", err)
					}
				}
				return shrink(index, e)
			})
			if !called {
				t.Fatal("callback never called")
			}
			if tc.wantErr == nil {
				if err != nil || after >= before {
					t.Fatalf("rewrite: %d -> %d, %v", before, after, err)
				}
				for i := first; i <= segs[tc.seg].LastIndex; i++ {
					if e, err := l.Read(i); err != nil || !sameEntry(e, rewritten(i, written[i])) {
						t.Fatalf("read %d after rewrite: %+v, %v", i, e, err)
					}
				}
			} else if !errors.Is(err, tc.wantErr) {
				t.Fatalf("rewrite: %v, want %v", err, tc.wantErr)
			}
			noTempFiles(t, dir)
			if tc.wantErr != ErrClosed {
				checkFiles(t, l)
				if l.Failed() != nil {
					t.Fatalf("log failed: %v", l.Failed())
				}
			}
		})
	}
}

// TestRewriteThenTidwallTruncates: tidwall's own truncations parse the
// rewritten file, never a cached copy of the old one (tidwall caches the
// segment it just cycled away from, and truncation writes from its cache),
// and after a merge while tidwall is open (its list of files then still
// names the removed ones) they go through a tidwall that sees the merged
// file.
func TestRewriteThenTidwallTruncates(t *testing.T) {
	for _, n := range []int{1, 3} { // segments rewritten into one
		for _, back := range []bool{false, true} {
			dir := t.TempDir()
			opts := Options{SegmentSize: 4 << 10, Fsync: FsyncNever}
			l := mustOpen(t, dir, opts)
			written := map[uint64]Entry{}
			appendMixed(t, l, 120, written)
			segs := l.Segments()
			run := segs[len(segs)-1-n : len(segs)-1] // ends with the segment tidwall cycled away from last
			if _, err := l.tl.Read(run[0].FirstIndex); err != nil {
				t.Fatal(err)
			}
			if _, _, err := l.RewriteSegments(run[0].FirstIndex, n, shrink); err != nil {
				t.Fatal(err)
			}
			for i := run[0].FirstIndex; i <= run[n-1].LastIndex; i++ {
				written[i] = rewritten(i, written[i])
			}
			s := run[n/2] // a file tidwall last knew
			mid := s.FirstIndex + (s.LastIndex-s.FirstIndex)/2
			var err error
			if back {
				err = l.TruncateBack(mid)
				for i := mid + 1; i <= segs[len(segs)-1].LastIndex; i++ {
					delete(written, i)
				}
			} else {
				err = l.TruncateFront(mid)
			}
			if err != nil {
				t.Fatalf("%d segments, back=%v: %v", n, back, err)
			}
			checkEntries(t, l, written)
			checkFiles(t, l)
			appendMixed(t, l, 10, written)
			checkEntries(t, l, written)
			l.Close()
			l = mustOpen(t, dir, opts)
			checkEntries(t, l, written)
			checkFiles(t, l)
			l.Close()
		}
	}
}

// TestRoll: Roll seals a non-empty active segment, appends after it land
// in a new segment, reopening keeps them, rolling an empty active segment
// is a no-op, and the segment just sealed can be rewritten.
func TestRoll(t *testing.T) {
	dir := t.TempDir()
	opts := Options{Fsync: FsyncAlways}
	l := mustOpen(t, dir, opts)
	if err := l.Roll(); err != nil || len(l.Segments()) != 1 {
		t.Fatalf("roll of an empty log: %v, %d segments", err, len(l.Segments()))
	}
	written := map[uint64]Entry{}
	appendMixed(t, l, 20, written)
	if s := l.Segments(); len(s) != 1 || s[0].FirstTimestamp != written[1].MaxTimestamp {
		t.Fatalf("segments %+v, first timestamp want %d", s, written[1].MaxTimestamp)
	}
	if err := l.Roll(); err != nil {
		t.Fatal(err)
	}
	segs := l.Segments()
	if len(segs) != 2 || segs[0].Active || !segs[1].Active || segs[0].LastIndex != 20 || segs[1].FirstIndex != 21 ||
		segs[1].LastIndex != 20 || segs[1].FirstTimestamp != -1 || segs[1].Bytes != 0 {
		t.Fatalf("after roll: %+v", segs)
	}
	if err := l.Roll(); err != nil || len(l.Segments()) != 2 {
		t.Fatalf("second roll: %v, %d segments", err, len(l.Segments()))
	}
	checkFiles(t, l)
	appendMixed(t, l, 5, written)
	segs = l.Segments()
	if len(segs) != 2 || segs[1].FirstIndex != 21 || segs[1].LastIndex != 25 || segs[1].FirstTimestamp != written[21].MaxTimestamp {
		t.Fatalf("appends after roll: %+v", segs)
	}
	checkEntries(t, l, written)
	// The segment just sealed can be rewritten, and read back.
	if b, a, err := l.RewriteSegment(1, shrink); err != nil || a >= b {
		t.Fatalf("rewrite after roll: %d -> %d, %v", b, a, err)
	}
	for i := uint64(1); i <= 20; i++ {
		written[i] = rewritten(i, written[i])
	}
	checkEntries(t, l, written)
	if err := l.Roll(); err != nil {
		t.Fatal(err)
	}
	checkFiles(t, l)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if err := l.Roll(); !errors.Is(err, ErrClosed) {
		t.Fatalf("roll after close: %v", err)
	}
	// Reopened (with the clean marker Close left): the same segments.
	l = mustOpen(t, dir, opts)
	if got := len(l.Segments()); got != 3 {
		t.Fatalf("reopened: %d segments %+v", got, l.Segments())
	}
	checkEntries(t, l, written)
	// A roll drops the clean marker like any change; then a crash (no
	// Close) reopens with the empty tail the roll made.
	appendMixed(t, l, 3, written)
	if err := l.Roll(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, cleanFile)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("clean marker after a roll: %v", err)
	}
	wantSegs := l.Segments()
	l2 := mustOpen(t, dir, opts) // as after a crash: l is never closed
	defer l2.Close()
	if got := l2.Segments(); fmt.Sprint(got) != fmt.Sprint(wantSegs) || len(l2.Repairs()) != 0 {
		t.Fatalf("after crash: %+v repairs %v, want %+v", got, l2.Repairs(), wantSegs)
	}
	checkEntries(t, l2, written)
	l.closed.Store(true) // never used again; its files belong to l2
}

// TestRollReleased: Roll of a log whose files were released for idleness
// (and capped by OpenLogs) works, and the next append reopens them.
func TestRollReleased(t *testing.T) {
	dir := t.TempDir()
	ol := NewOpenLogs(1)
	l := mustOpen(t, dir, Options{IdleTimeout: time.Millisecond, OpenLogs: ol})
	defer l.Close()
	written := map[uint64]Entry{}
	appendMixed(t, l, 10, written)
	waitReleased(t, l)
	if err := l.Roll(); err != nil {
		t.Fatal(err)
	}
	appendMixed(t, l, 10, written)
	if s := l.Segments(); len(s) != 2 || s[1].FirstIndex != 11 || s[1].LastIndex != 20 {
		t.Fatalf("segments %+v", s)
	}
	waitReleased(t, l)
	if _, _, err := l.RewriteSegment(1, shrink); err != nil {
		t.Fatal(err)
	}
	for i := uint64(1); i <= 10; i++ {
		written[i] = rewritten(i, written[i])
	}
	checkEntries(t, l, written)
	checkFiles(t, l)
}

// TestRewriteConcurrent runs appends, reads and lookups, retention and
// front truncation, rolls and idle releases while another goroutine
// rewrites sealed segments. Every read returns the entry as written or as
// rewritten, never anything else; a rewrite fails only because its segment
// went meanwhile. Run with -race.
func TestRewriteConcurrent(t *testing.T) {
	dir := t.TempDir()
	l := mustOpen(t, dir, Options{SegmentSize: 4 << 10, Fsync: FsyncNever, IdleTimeout: time.Millisecond,
		ReadCache: NewReadCache(16 << 10)})
	defer l.Close()
	var (
		mu       sync.Mutex // guards written
		written  = map[uint64]Entry{}
		stop     atomic.Bool
		rewrites atomic.Int64
		errs     = make(chan error, 10)
		others   sync.WaitGroup
	)
	deadline := time.Now().Add(20 * time.Second)
	check := func(idx uint64, e Entry) error {
		mu.Lock()
		want, ok := written[idx]
		mu.Unlock()
		if ok && !sameEntry(e, want) && !sameEntry(e, rewritten(idx, want)) {
			return fmt.Errorf("read %d: %+v, want %+v or rewritten", idx, e, want)
		}
		return nil
	}
	others.Add(3)
	go func() { // reader and lookups
		defer others.Done()
		for i := uint64(0); !stop.Load() && time.Now().Before(deadline); i++ {
			first, last := l.FirstIndex(), l.LastIndex()
			if last < first {
				continue
			}
			idx := first + (i*7919)%(last-first+1)
			e, err := l.Read(idx)
			if errors.Is(err, ErrNotFound) {
				continue
			}
			if err == nil {
				err = check(idx, e)
			}
			if err == nil && e.Kind.HasRecords() {
				var got uint64
				got, err = l.FindOffset(e.BaseOffset)
				if errors.Is(err, ErrOffsetNotFound) {
					err = nil // truncated meanwhile
				} else if err == nil && got != idx && l.FirstIndex() <= idx {
					err = fmt.Errorf("FindOffset(%d) = %d, entry is at %d", e.BaseOffset, got, idx)
				}
			}
			if err != nil {
				errs <- err
				return
			}
		}
	}()
	go func() { // rewriter
		defer others.Done()
		for !stop.Load() && time.Now().Before(deadline) {
			segs := l.Segments()
			for _, s := range segs[:len(segs)-1] {
				_, _, err := l.RewriteSegment(s.FirstIndex, func(index uint64, e Entry) ([]byte, error) {
					if err := check(index, e); err != nil {
						return nil, err
					}
					return shrink(index, e)
				})
				switch {
				case err == nil:
					rewrites.Add(1)
				case errors.Is(err, ErrSegmentChanged), errors.Is(err, ErrOutOfRange):
				default:
					errs <- fmt.Errorf("rewrite %d: %w", s.FirstIndex, err)
					return
				}
			}
			time.Sleep(time.Millisecond)
		}
	}()
	go func() { // retention, truncation, rolls
		defer others.Done()
		for i := 0; !stop.Load() && time.Now().Before(deadline); i++ {
			var err error
			switch i % 4 {
			case 0:
				_, err = l.RetainBytes(24 << 10)
			case 1:
				err = l.TruncateFront(l.FirstIndex() + 3)
			case 2:
				err = l.Roll()
			case 3:
				_, err = l.RetainAge(5000)
			}
			if err != nil {
				errs <- err
				return
			}
			time.Sleep(2 * time.Millisecond)
		}
	}()
	var next int64
	for i := 0; i < 1500 && time.Now().Before(deadline) && len(errs) == 0; i++ {
		e := Entry{Kind: KindData, Term: 1, BaseOffset: next, MaxTimestamp: 5000 + next, Payload: payloadFor(uint64(i), 40+i%150)}
		if i%9 == 4 {
			e = Entry{Kind: KindNoop, Term: 1}
		}
		mu.Lock()
		idx, err := l.Append(e)
		if err == nil {
			written[idx] = e
			if e.Kind.HasRecords() {
				next++
			}
		}
		mu.Unlock()
		if err != nil {
			t.Fatal(err)
		}
	}
	stop.Store(true)
	others.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	// Whatever happened meanwhile, a final pass rewrites every sealed
	// segment still there, and everything reads as rewritten.
	if err := l.Roll(); err != nil {
		t.Fatal(err)
	}
	segs := l.Segments()
	for _, s := range segs[:len(segs)-1] {
		if _, _, err := l.RewriteSegment(s.FirstIndex, shrink); err != nil {
			t.Fatal(err)
		}
	}
	for i := l.FirstIndex(); i <= l.LastIndex(); i++ {
		e, err := l.Read(i)
		if err != nil || !sameEntry(e, rewritten(i, written[i])) {
			t.Fatalf("final read %d: %+v %v", i, e, err)
		}
	}
	checkFiles(t, l)
	noTempFiles(t, dir)
	t.Logf("%d rewrites during the run", rewrites.Load())
}

const rewriteCrashDirEnv = "CHRONIK_WAL_REWRITE_CRASH_DIR"

var rewriteCrashOpts = Options{SegmentSize: 8 << 10, Fsync: FsyncAlways}

// crashPayload is the payload of the record entry at offset off.
func crashPayload(off int64) []byte { return payloadFor(uint64(off), 50+int(off%7)*40) }

// rewriteCrashChild appends data entries (one offset each, index = offset
// + 1) and, on another goroutine, rolls and rewrites every sealed segment
// with shrink, merging small ones, until it is killed. It prints "ack <index>" for every
// entry whose Append returned.
func rewriteCrashChild(dir string) {
	l, err := Open(dir, rewriteCrashOpts)
	if err != nil {
		fmt.Fprintln(os.Stderr, "child open:", err)
		os.Exit(2)
	}
	os.Stdout.WriteString("ready\n")
	go func() {
		for i := 0; ; i++ {
			if i%10 == 9 {
				if err := l.Roll(); err != nil {
					fmt.Fprintln(os.Stderr, "child roll:", err)
					os.Exit(3)
				}
			}
			// Runs of sealed segments up to 20 KiB merge into one.
			segs := l.Segments()
			sealed := segs[:len(segs)-1]
			for j := 0; j < len(sealed); {
				n, size := 1, sealed[j].Bytes
				for j+n < len(sealed) && size+sealed[j+n].Bytes <= 20<<10 {
					size += sealed[j+n].Bytes
					n++
				}
				if _, _, err := l.RewriteSegments(sealed[j].FirstIndex, n, shrink); err != nil {
					fmt.Fprintln(os.Stderr, "child rewrite:", err)
					os.Exit(3)
				}
				j += n
			}
		}
	}()
	for {
		off := l.NextOffset()
		idx, err := l.Append(Entry{Kind: KindData, Term: 1, BaseOffset: off, MaxTimestamp: off, Payload: crashPayload(off)})
		if err != nil {
			fmt.Fprintln(os.Stderr, "child append:", err)
			os.Exit(3)
		}
		os.Stdout.WriteString(fmt.Sprintf("ack %d\n", idx))
	}
}

// TestRewriteCrash SIGKILLs a child process that appends, rolls and
// rewrites segments, at random moments, and checks after each kill that
// the log opens, that every acknowledged entry is there with its header,
// and that every entry holds its original payload or the rewritten one.
func TestRewriteCrash(t *testing.T) {
	const cycles = 25
	dir := t.TempDir()
	rng := rand.New(rand.NewPCG(15, 2026))
	var acked uint64
	leftovers, mergeLeftovers := 0, 0
	for cycle := 0; cycle < cycles; cycle++ {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), rewriteCrashDirEnv+"="+dir)
		var stderr strings.Builder
		cmd.Stderr = &stderr
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		ready := make(chan struct{})
		done := make(chan struct{})
		var last uint64
		go func() {
			defer close(done)
			sc := bufio.NewScanner(out)
			for sc.Scan() {
				if sc.Text() == "ready" {
					close(ready)
					continue
				}
				var idx uint64
				if _, err := fmt.Sscanf(sc.Text(), "ack %d", &idx); err == nil && idx > last {
					last = idx
				}
			}
		}()
		select {
		case <-ready:
		case <-done:
			cmd.Wait()
			t.Fatalf("cycle %d: child exited before ready: %s", cycle, stderr.String())
		}
		time.Sleep(time.Duration(30+rng.IntN(71)) * time.Millisecond)
		cmd.Process.Kill()
		<-done
		cmd.Wait()
		if strings.Contains(stderr.String(), "child") {
			t.Fatalf("cycle %d: child failed: %s", cycle, stderr.String())
		}
		acked = max(acked, last)

		l, err := Open(dir, rewriteCrashOpts)
		if err != nil {
			t.Fatalf("cycle %d: reopen after kill: %v", cycle, err)
		}
		for _, r := range l.Repairs() {
			switch r.Reason {
			case reasonRewriteLeftover:
				leftovers++
			case reasonMergeLeftover:
				mergeLeftovers++
			}
		}
		if l.FirstIndex() != 1 || l.LastIndex() < acked {
			t.Fatalf("cycle %d: log [%d, %d], %d entries acknowledged", cycle, l.FirstIndex(), l.LastIndex(), acked)
		}
		for i := uint64(1); i <= l.LastIndex(); i++ {
			e, err := l.Read(i)
			off := int64(i - 1)
			want := Entry{Kind: KindData, Term: 1, BaseOffset: off, MaxTimestamp: off, Payload: crashPayload(off)}
			if err != nil || !sameEntry(e, want) && !sameEntry(e, rewritten(i, want)) {
				t.Fatalf("cycle %d: index %d: %+v %v", cycle, i, e, err)
			}
		}
		checkFiles(t, l)
		noTempFiles(t, dir)
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
	}
	if acked < cycles {
		t.Fatalf("only %d entries acknowledged in %d cycles", acked, cycles)
	}
	t.Logf("%d acknowledged entries survived %d kills; %d rewrite temp files and %d merged segments' files removed at open", acked, cycles, leftovers, mergeLeftovers)
}

// TestScanSegment: ScanSegment yields a sealed segment's entries as Read
// does, rewritten ones included, without filling the read cache; fn's
// false stops it; the active segment and unknown starts are refused.
func TestScanSegment(t *testing.T) {
	cache := NewReadCache(64 << 20)
	l := mustOpen(t, t.TempDir(), Options{Fsync: FsyncNever, ReadCache: cache})
	written := map[uint64]Entry{}
	appendMixed(t, l, 20, written)
	if err := l.Roll(); err != nil {
		t.Fatal(err)
	}
	appendMixed(t, l, 5, written)
	scan := func() map[uint64]Entry {
		t.Helper()
		got := map[uint64]Entry{}
		err := l.ScanSegment(1, func(i uint64, e Entry) (bool, error) {
			e.Payload = bytes.Clone(e.Payload)
			got[i] = e
			return true, nil
		})
		if err != nil {
			t.Fatal(err)
		}
		return got
	}
	check := func(got map[uint64]Entry) {
		t.Helper()
		if len(got) != 20 {
			t.Fatalf("%d entries scanned, want 20", len(got))
		}
		for i, e := range got {
			if w := written[i]; e.Kind != w.Kind || e.Term != w.Term || e.BaseOffset != w.BaseOffset ||
				e.LastOffsetDelta != w.LastOffsetDelta || e.MaxTimestamp != w.MaxTimestamp || !bytes.Equal(e.Payload, w.Payload) {
				t.Fatalf("entry %d scanned as %+v, written %+v", i, e, w)
			}
		}
	}
	check(scan())
	if n := cache.Bytes(); n != 0 {
		t.Fatalf("the scan put %d bytes in the read cache", n)
	}
	if _, _, err := l.RewriteSegment(1, shrink); err != nil {
		t.Fatal(err)
	}
	for i := uint64(1); i <= 20; i++ {
		written[i] = rewritten(i, written[i])
	}
	check(scan())
	n := 0
	if err := l.ScanSegment(1, func(uint64, Entry) (bool, error) { n++; return n < 3, nil }); err != nil || n != 3 {
		t.Fatalf("stopped scan: %d entries, %v", n, err)
	}
	if err := l.ScanSegment(21, func(uint64, Entry) (bool, error) { return true, nil }); !errors.Is(err, ErrOutOfRange) {
		t.Fatalf("scan of the active segment: %v", err)
	}
	if err := l.ScanSegment(7, func(uint64, Entry) (bool, error) { return true, nil }); !errors.Is(err, ErrOutOfRange) {
		t.Fatalf("scan from inside a segment: %v", err)
	}
}

// TestRollDefersDirectorySync: a roll creates the new segment file without
// fsyncs; the first append to it syncs the directory with its own sync
// (once), or leaves it to the shared round's syncfs; a failed directory
// sync fails the append and the log.
func TestRollDefersDirectorySync(t *testing.T) {
	for _, tc := range []struct {
		name   string
		opts   func(t *testing.T) Options
		shared bool
	}{
		{"always", func(*testing.T) Options { return Options{Fsync: FsyncAlways} }, false},
		{"never", func(*testing.T) Options { return Options{Fsync: FsyncNever} }, false},
		{"shared-round", func(t *testing.T) Options {
			s, _, _ := newTestSyncer(t)
			return Options{Fsync: FsyncAlways, Syncer: s}
		}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := mustOpen(t, t.TempDir(), tc.opts(t))
			defer l.Close()
			var dirSyncs int
			l.dirSyncFn = func(dir string) error { dirSyncs++; return syncDir(dir) }
			written := map[uint64]Entry{}
			appendMixed(t, l, 3, written)
			if err := l.Roll(); err != nil {
				t.Fatal(err)
			}
			if dirSyncs != 0 || !l.dirDue {
				t.Fatalf("after the roll: %d directory syncs, due %v", dirSyncs, l.dirDue)
			}
			appendMixed(t, l, 2, written)
			appendMixed(t, l, 2, written)
			want, due := 1, false
			if tc.shared {
				// The round's syncfs covers the directory; the sync stays
				// due for an append that syncs by itself.
				want, due = 0, true
			}
			if dirSyncs != want || l.dirDue != due {
				t.Fatalf("after two appends: %d directory syncs (want %d), due %v", dirSyncs, want, l.dirDue)
			}
			if got := l.DurableIndex(); got != 7 {
				t.Fatalf("durable index %d, want 7", got)
			}
			if s := l.Segments(); len(s) != 2 || s[1].FirstIndex != 4 || s[1].LastIndex != 7 {
				t.Fatalf("segments %+v", s)
			}
			checkEntries(t, l, written)
			if tc.shared {
				return
			}
			// A directory sync that fails fails the append, and the log.
			if err := l.Roll(); err != nil {
				t.Fatal(err)
			}
			l.dirSyncFn = func(string) error { return syscall.EIO }
			e := Entry{Kind: KindData, BaseOffset: l.NextOffset(), MaxTimestamp: 1, Payload: []byte("x")}
			if _, err := l.Append(e); !errors.Is(err, syscall.EIO) {
				t.Fatalf("append after a failed directory sync: %v", err)
			}
			if _, err := l.Append(e); err == nil {
				t.Fatal("the log still appends after a failed directory sync")
			}
		})
	}
}
