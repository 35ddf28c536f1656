package wal

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// flipLastFrameByte flips one payload byte of the last entry of the tail
// segment file.
func flipByteAt(t *testing.T, path string, fromEnd int) {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	raw[len(raw)-fromEnd] ^= 0x40
	if err := os.WriteFile(path, raw, 0o640); err != nil {
		t.Fatal(err)
	}
}

// TestCleanShutdownTailDamageIsCorruption: after a clean Close, a bad last
// entry is not a torn write: Open refuses the log instead of cutting
// acknowledged entries, and RepairDir cuts exactly that entry, saying so.
func TestCleanShutdownTailDamageIsCorruption(t *testing.T) {
	dir := t.TempDir()
	l := mustOpen(t, dir, Options{Fsync: FsyncNever})
	appendData(t, l, 20, 200)
	tail := l.segPath(l.Segments()[0].FirstIndex)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, cleanFile)); err != nil {
		t.Fatalf("no clean-shutdown marker after Close: %v", err)
	}
	flipByteAt(t, tail, 50)

	_, err := Open(dir, Options{})
	var ce *CorruptError
	if !errors.As(err, &ce) || ce.Index != 20 || !strings.Contains(ce.Reason, "clean shutdown") || ce.File != tail {
		t.Fatalf("open after clean shutdown and a flipped byte: %v, want a CorruptError at index 20", err)
	}
	// Nothing was cut by the failed open.
	if fi, _ := os.Stat(tail); fi.Size() != 20*storedEntry {
		t.Fatalf("tail is %d bytes, want %d", fi.Size(), 20*storedEntry)
	}

	rep, err := RepairDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Damage == nil || rep.Damage.Index != 20 || rep.LastGoodIndex != 19 || rep.LostEntries != 1 ||
		rep.LostBytes != storedEntry || rep.LostFromOffset != 19 || rep.LostToOffset != -1 {
		t.Fatalf("repair report %+v (damage %+v)", rep, rep.Damage)
	}
	l = mustOpen(t, dir, Options{})
	defer l.Close()
	if l.LastIndex() != 19 || l.NextOffset() != 19 || len(l.Repairs()) != 0 {
		t.Fatalf("after repair: last %d next %d repairs %v", l.LastIndex(), l.NextOffset(), l.Repairs())
	}
	appendData(t, l, 1, 10)
}

// TestCleanShutdownShortTailIsCorruption: a tail that lost whole entries
// after a clean shutdown (nothing torn to see) is caught by the marker.
func TestCleanShutdownShortTailIsCorruption(t *testing.T) {
	dir := t.TempDir()
	l := mustOpen(t, dir, Options{Fsync: FsyncNever})
	appendData(t, l, 20, 200)
	tail := l.segPath(l.Segments()[0].FirstIndex)
	l.Close()
	if err := os.Truncate(tail, 18*storedEntry); err != nil {
		t.Fatal(err)
	}
	_, err := Open(dir, Options{})
	if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "closed cleanly at index 20") {
		t.Fatalf("open: %v, want corruption naming the clean index 20", err)
	}
}

// TestCleanMarkerDroppedBeforeFirstWrite: once the log changes after Open,
// a crash is a crash again: a torn tail is repaired.
func TestCleanMarkerDroppedBeforeFirstWrite(t *testing.T) {
	dir := t.TempDir()
	l := mustOpen(t, dir, Options{Fsync: FsyncNever})
	appendData(t, l, 5, 200)
	l.Close()
	l = mustOpen(t, dir, Options{Fsync: FsyncNever})
	if _, err := os.Stat(filepath.Join(dir, cleanFile)); err != nil {
		t.Fatalf("marker gone before any change: %v", err)
	}
	appendData(t, l, 5, 200)
	if _, err := os.Stat(filepath.Join(dir, cleanFile)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("marker still there after an append: %v", err)
	}
	tail := l.segPath(l.Segments()[0].FirstIndex)
	l.Sync()
	// "Crash": the files as they are, then a torn last entry.
	raw, _ := os.ReadFile(tail)
	l.Close()
	os.Remove(filepath.Join(dir, cleanFile))
	os.WriteFile(tail, raw[:len(raw)-30], 0o640)
	l = mustOpen(t, dir, Options{})
	defer l.Close()
	if r := l.Repairs(); len(r) != 1 || r[0].CutIndex != 10 || l.LastIndex() != 9 {
		t.Fatalf("repairs %+v, last %d", r, l.LastIndex())
	}
}

// TestRepairDirOldSegment: damage in a sealed segment is cut there and
// every later segment goes; the report counts what was lost.
func TestRepairDirOldSegment(t *testing.T) {
	dir := t.TempDir()
	l := mustOpen(t, dir, Options{SegmentSize: 4 * storedEntry, Fsync: FsyncNever})
	appendData(t, l, 20, 200) // segments of 4 entries
	segs := l.Segments()
	if len(segs) < 5 {
		t.Fatalf("setup: %d segments", len(segs))
	}
	bad := l.segPath(segs[1].FirstIndex) // indexes 5..8
	l.Close()
	// Flip a byte in the second entry of the second segment (index 6).
	raw, _ := os.ReadFile(bad)
	raw[storedEntry+100] ^= 0x01
	os.WriteFile(bad, raw, 0o640)

	// After a clean shutdown Open reads only the tail segment: the damage
	// is found when the entry is read.
	l = mustOpen(t, dir, Options{SegmentSize: 4 * storedEntry})
	if _, err := l.Read(5); err != nil {
		t.Fatalf("read 5: %v", err)
	}
	if _, err := l.Read(6); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("read 6: %v, want corruption", err)
	}
	l.Close()
	// After a crash (no marker) Open reads every file and finds it.
	os.Remove(filepath.Join(dir, cleanFile))
	if _, err := Open(dir, Options{SegmentSize: 4 * storedEntry}); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("open: %v, want corruption", err)
	}
	rep, err := RepairDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Damage == nil || rep.Damage.Index != 6 || rep.Damage.File != bad || rep.LastGoodIndex != 5 ||
		rep.LostEntries != 15 || rep.LostFromOffset != 5 || rep.LostToOffset != 19 {
		t.Fatalf("report %+v damage %+v", rep, rep.Damage)
	}
	l = mustOpen(t, dir, Options{SegmentSize: 4 * storedEntry})
	defer l.Close()
	if l.LastIndex() != 5 || l.NextOffset() != 5 {
		t.Fatalf("after repair: last %d next %d", l.LastIndex(), l.NextOffset())
	}
	for i := uint64(1); i <= 5; i++ {
		if _, err := l.Read(i); err != nil {
			t.Fatalf("read %d: %v", i, err)
		}
	}
	checkFiles(t, l)
	// A sound log is left alone.
	l.Close()
	rep, err = RepairDir(dir)
	if err != nil || rep.Damage != nil || rep.LastGoodIndex != 5 {
		t.Fatalf("second repair: %+v %v", rep, err)
	}
}

// TestRepairDirFirstEntry: damage in the very first entry empties the log,
// which keeps its first index.
func TestRepairDirFirstEntry(t *testing.T) {
	dir := t.TempDir()
	l := mustOpen(t, dir, Options{Fsync: FsyncNever})
	appendData(t, l, 3, 200)
	tail := l.segPath(l.Segments()[0].FirstIndex)
	l.Close()
	raw, _ := os.ReadFile(tail)
	raw[40] ^= 0x01
	os.WriteFile(tail, raw, 0o640)
	rep, err := RepairDir(dir)
	if err != nil || rep.Damage == nil || rep.Damage.Index != 1 || rep.LostEntries != 3 || rep.LostFromOffset != 0 || rep.LostToOffset != 2 {
		t.Fatalf("report %+v %v", rep, err)
	}
	l = mustOpen(t, dir, Options{})
	defer l.Close()
	if l.FirstIndex() != 1 || l.LastIndex() != 0 || l.NextOffset() != 0 {
		t.Fatalf("after repair: [%d, %d] next %d", l.FirstIndex(), l.LastIndex(), l.NextOffset())
	}
}

// TestRecoverAfterFailedSync: a failed fsync makes the log unusable; once
// the cause is gone Recover reopens it in place, without the entry whose
// sync failed (never acknowledged), and it appends and reopens normally.
func TestRecoverAfterFailedSync(t *testing.T) {
	dir := t.TempDir()
	l := mustOpen(t, dir, Options{})
	appendData(t, l, 5, 200)
	failing := true
	l.syncFn = func(f *os.File) error {
		if failing {
			return &os.PathError{Op: "fdatasync", Path: f.Name(), Err: syscall.EIO}
		}
		return fdatasync(f)
	}
	_, err := l.Append(Entry{Kind: KindData, BaseOffset: 5, Payload: []byte("lost")})
	if !errors.Is(err, syscall.EIO) {
		t.Fatalf("append with failing sync: %v", err)
	}
	if !errors.Is(l.Failed(), syscall.EIO) {
		t.Fatalf("Failed() = %v", l.Failed())
	}
	if _, err := l.Read(1); !errors.Is(err, syscall.EIO) {
		t.Fatalf("read of a failed log: %v", err)
	}
	failing = false
	if err := l.Recover(); err != nil {
		t.Fatal(err)
	}
	if l.Failed() != nil || l.LastIndex() != 5 || l.NextOffset() != 5 {
		t.Fatalf("after recover: failed %v last %d next %d", l.Failed(), l.LastIndex(), l.NextOffset())
	}
	if _, err := l.Append(Entry{Kind: KindData, BaseOffset: 5, Payload: []byte("kept")}); err != nil {
		t.Fatal(err)
	}
	l.Close()
	l = mustOpen(t, dir, Options{})
	defer l.Close()
	e, err := l.Read(6)
	if err != nil || string(e.Payload) != "kept" || l.LastIndex() != 6 {
		t.Fatalf("reopen: %q %v last %d", e.Payload, err, l.LastIndex())
	}
	if err := l.Recover(); err != nil {
		t.Fatalf("recover of a healthy log: %v", err)
	}
}

// TestRecoverKeepsSealedSegments: Recover on a multi-segment log reuses the
// index of the sealed segments and rescans the tail; every entry reads back.
func TestRecoverKeepsSealedSegments(t *testing.T) {
	dir := t.TempDir()
	l := mustOpen(t, dir, Options{SegmentSize: 4 * storedEntry})
	appendData(t, l, 18, 200)
	sealedBefore := l.idx.segs[0]
	l.syncFn = func(f *os.File) error { return &os.PathError{Op: "fdatasync", Path: f.Name(), Err: syscall.ENOSPC} }
	if _, err := l.Append(Entry{Kind: KindData, BaseOffset: 18, Payload: make([]byte, 200)}); err == nil {
		t.Fatal("append with a failing sync succeeded")
	}
	l.syncFn = nil
	if err := l.Recover(); err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if l.idx.segs[0] != sealedBefore {
		t.Fatal("the first sealed segment was scanned again")
	}
	if l.LastIndex() != 18 || l.NextOffset() != 18 || len(l.Segments()) < 4 {
		t.Fatalf("after recover: last %d next %d segments %d", l.LastIndex(), l.NextOffset(), len(l.Segments()))
	}
	for i := uint64(1); i <= 18; i++ {
		if e, err := l.Read(i); err != nil || e.BaseOffset != int64(i-1) {
			t.Fatalf("read %d: %+v %v", i, e, err)
		}
	}
	appendData(t, l, 3, 200)
	checkFiles(t, l)
}
