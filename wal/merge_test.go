package wal

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// mergeAll merges the sealed segments of l in runs of n (the last run may
// be shorter) with rewrite, and returns how many runs it merged.
func mergeAll(t testing.TB, l *Log, n int, rewrite func(uint64, Entry) ([]byte, error)) int {
	t.Helper()
	runs := 0
	segs := l.Segments()
	sealed := segs[:len(segs)-1]
	for i := 0; i < len(sealed); i += n {
		k := min(n, len(sealed)-i)
		var want int64
		for _, s := range sealed[i : i+k] {
			want += s.Bytes
		}
		before, _, err := l.RewriteSegments(sealed[i].FirstIndex, k, rewrite)
		if err != nil {
			t.Fatalf("merge %d segments from %d: %v", k, sealed[i].FirstIndex, err)
		}
		if before != want {
			t.Fatalf("merge from %d: before %d, the segments hold %d", sealed[i].FirstIndex, before, want)
		}
		runs++
	}
	return runs
}

// TestRewriteSegmentsMerges: merging runs of sealed segments leaves one
// file per run holding every entry with its index and header (rewritten
// or not), FindOffset and FindTimestamp answering the same entries, and
// the same log after a clean reopen and after a crash's full scan.
func TestRewriteSegmentsMerges(t *testing.T) {
	for _, name := range []string{"rewritten", "unchanged"} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			opts := Options{SegmentSize: 4 << 10, Fsync: FsyncNever, IndexIntervalBytes: 300, ReadCache: NewReadCache(1 << 20)}
			l := mustOpen(t, dir, opts)
			written := map[uint64]Entry{}
			appendMixed(t, l, 200, written)
			segs := l.Segments()
			if len(segs) < 8 {
				t.Fatalf("want several segments, got %d", len(segs))
			}
			lk := takeLookups(t, l)
			checkEntries(t, l, written) // the caches hold the old files
			rewrite := func(_ uint64, e Entry) ([]byte, error) { return e.Payload, nil }
			if name == "rewritten" {
				rewrite = shrink
				for i := range written {
					if i < segs[len(segs)-1].FirstIndex {
						written[i] = rewritten(i, written[i])
					}
				}
			}
			runs := mergeAll(t, l, 3, rewrite)
			if got, want := len(l.Segments()), runs+1; got != want {
				t.Fatalf("%d segments after %d merges, want %d", got, runs, want)
			}
			checkEntries(t, l, written)
			checkLookups(t, l, lk)
			checkFiles(t, l)
			noTempFiles(t, dir)

			appendMixed(t, l, 20, written)
			wantSegs := l.Segments()
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}
			for _, crash := range []bool{false, true} {
				if crash {
					os.Remove(filepath.Join(dir, cleanFile)) // every file scanned
				}
				l = mustOpen(t, dir, opts)
				if len(l.Repairs()) != 0 {
					t.Fatalf("crash=%v: repairs %v", crash, l.Repairs())
				}
				if got := l.Segments(); len(got) != len(wantSegs) {
					t.Fatalf("crash=%v: reopened with %d segments, want %d", crash, len(got), len(wantSegs))
				}
				checkEntries(t, l, written)
				checkLookups(t, l, lk)
				checkFiles(t, l)
				if err := l.Close(); err != nil {
					t.Fatal(err)
				}
			}
		})
	}
}

// TestRewriteSegmentsRefuses: a run that is empty, reaches the active
// segment or starts where no segment does is ErrOutOfRange, and a run that
// changed meanwhile is ErrSegmentChanged; each leaves the files as they were.
func TestRewriteSegmentsRefuses(t *testing.T) {
	dir := t.TempDir()
	l := mustOpen(t, dir, Options{SegmentSize: 4 << 10, Fsync: FsyncNever})
	defer l.Close()
	written := map[uint64]Entry{}
	appendMixed(t, l, 100, written)
	segs := l.Segments()
	sealed := len(segs) - 1
	for _, c := range []struct {
		first uint64
		n     int
	}{{segs[0].FirstIndex, 0}, {segs[0].FirstIndex, sealed + 1}, {segs[1].FirstIndex, sealed}, {segs[0].FirstIndex + 1, 2}} {
		if _, _, err := l.RewriteSegments(c.first, c.n, shrink); !errors.Is(err, ErrOutOfRange) {
			t.Fatalf("RewriteSegments(%d, %d): %v, want ErrOutOfRange", c.first, c.n, err)
		}
	}
	// The callback drops the second segment of the run (retention).
	_, _, err := l.RewriteSegments(segs[1].FirstIndex, 2, func(i uint64, e Entry) ([]byte, error) {
		if i == segs[1].FirstIndex+1 {
			if err := l.DropSegments(2); err != nil {
				t.Fatal(err)
			}
			delete(written, segs[0].FirstIndex)
			for i := segs[0].FirstIndex; i <= segs[1].LastIndex; i++ {
				delete(written, i)
			}
		}
		return shrink(i, e)
	})
	if !errors.Is(err, ErrSegmentChanged) {
		t.Fatalf("merge of a dropped segment: %v, want ErrSegmentChanged", err)
	}
	checkEntries(t, l, written)
	checkFiles(t, l)
	noTempFiles(t, dir)
}

// TestRewriteSegmentsCrashAfterRename: a crash after the merged file took
// the first segment's name but before the others' files were removed
// (all of them, or some) leaves files whose entries the merged one holds;
// Open removes them, reports each, and the log is whole.
func TestRewriteSegmentsCrashAfterRename(t *testing.T) {
	opts := Options{SegmentSize: 4 << 10, Fsync: FsyncNever}
	dir := t.TempDir()
	l := mustOpen(t, dir, opts)
	written := map[uint64]Entry{}
	appendMixed(t, l, 200, written)
	segs := l.Segments()
	if len(segs) < 6 {
		t.Fatalf("want several segments, got %d", len(segs))
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	// The merged file of segments 1-3, as RewriteSegments leaves it, made
	// in a copy of the log.
	copyDir := t.TempDir()
	copyFiles(t, dir, copyDir)
	c := mustOpen(t, copyDir, opts)
	if _, _, err := c.RewriteSegments(segs[1].FirstIndex, 3, shrink); err != nil {
		t.Fatal(err)
	}
	c.Close()
	merged, err := os.ReadFile(filepath.Join(copyDir, segmentName(segs[1].FirstIndex)))
	if err != nil {
		t.Fatal(err)
	}
	for i := segs[1].FirstIndex; i <= segs[3].LastIndex; i++ {
		written[i] = rewritten(i, written[i])
	}
	original := t.TempDir()
	copyFiles(t, dir, original)

	for _, removed := range []int{0, 1} { // how many of the others' files the crash let go
		os.RemoveAll(dir)
		os.MkdirAll(dir, 0o750)
		copyFiles(t, original, dir)
		os.Remove(filepath.Join(dir, cleanFile))
		if err := os.WriteFile(filepath.Join(dir, segmentName(segs[1].FirstIndex)), merged, 0o640); err != nil {
			t.Fatal(err)
		}
		for _, s := range segs[2 : 2+removed] {
			os.Remove(filepath.Join(dir, segmentName(s.FirstIndex)))
		}
		l = mustOpen(t, dir, opts)
		var want []Repair
		for _, s := range segs[2+removed : 4] {
			want = append(want, Repair{File: filepath.Join(dir, segmentName(s.FirstIndex)), CutIndex: s.FirstIndex, CutBytes: s.Bytes, Reason: reasonMergeLeftover})
		}
		if got := l.Repairs(); len(got) != len(want) || len(got) > 0 && (got[0] != want[0] || got[len(got)-1] != want[len(want)-1]) {
			t.Fatalf("removed %d: repairs %+v, want %+v", removed, got, want)
		}
		if got := len(l.Segments()); got != len(segs)-2 {
			t.Fatalf("removed %d: %d segments, want %d", removed, got, len(segs)-2)
		}
		checkEntries(t, l, written)
		checkFiles(t, l)
		appendMixed(t, l, 5, written)
		checkEntries(t, l, written)
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
		for i := range written {
			if i > segs[len(segs)-1].LastIndex {
				delete(written, i) // the next round starts from the original files
			}
		}
	}
}

// TestDropSegmentsBefore: leading whole segments before the index go, a
// segment reaching it stays, and so does a merged segment that now
// reaches it although the segments it was made of did not.
func TestDropSegmentsBefore(t *testing.T) {
	dir := t.TempDir()
	l := mustOpen(t, dir, Options{SegmentSize: 4 << 10, Fsync: FsyncNever})
	defer l.Close()
	written := map[uint64]Entry{}
	appendMixed(t, l, 200, written)
	segs := l.Segments()
	if len(segs) < 8 {
		t.Fatalf("want several segments, got %d", len(segs))
	}
	// Segments 0 and 1 are before segs[2].FirstIndex; merge 1-3 first.
	if _, _, err := l.RewriteSegments(segs[1].FirstIndex, 3, shrink); err != nil {
		t.Fatal(err)
	}
	for i := segs[1].FirstIndex; i <= segs[3].LastIndex; i++ {
		written[i] = rewritten(i, written[i])
	}
	n, err := l.DropSegmentsBefore(segs[2].FirstIndex)
	if err != nil || n != 1 {
		t.Fatalf("dropped %d, %v; want only segment 0 (the merged one reaches the index)", n, err)
	}
	for i := segs[0].FirstIndex; i <= segs[0].LastIndex; i++ {
		delete(written, i)
	}
	if l.FirstIndex() != segs[1].FirstIndex {
		t.Fatalf("first index %d, want %d", l.FirstIndex(), segs[1].FirstIndex)
	}
	// Never the active segment.
	n, err = l.DropSegmentsBefore(l.LastIndex() + 10)
	if err != nil || len(l.Segments()) != 1 {
		t.Fatalf("dropped %d, %v; %d segments left, want the active one", n, err, len(l.Segments()))
	}
	for i := range written {
		if i < l.FirstIndex() {
			delete(written, i)
		}
	}
	checkEntries(t, l, written)
	checkFiles(t, l)
}
