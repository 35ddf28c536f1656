package wal

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// damagedLog builds a log of n data entries (200-byte payloads, so each is
// stored in 236 bytes), closes it as a crash after the last sync would
// (no clean-shutdown marker) and returns its entries and the path of its
// tail segment.
func damagedLog(t *testing.T, n int, segSize int) (dir string, all []Entry, tail string) {
	t.Helper()
	dir = t.TempDir()
	l := mustOpen(t, dir, Options{SegmentSize: segSize, Fsync: FsyncNever})
	appendData(t, l, n, 200)
	for i := l.FirstIndex(); i <= l.LastIndex(); i++ {
		e, err := l.Read(i)
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, e)
	}
	segs := l.Segments()
	tail = l.segPath(segs[len(segs)-1].FirstIndex)
	crashClose(t, l)
	return dir, all, tail
}

// crashClose closes l and removes its clean-shutdown marker: the files as a
// crash after the last sync leaves them.
func crashClose(t testing.TB, l *Log) {
	t.Helper()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(l.Dir(), cleanFile)); err != nil {
		t.Fatal(err)
	}
}

const storedEntry = 236 // uvarint(234) + 34-byte frame overhead + 200-byte payload

func TestTailRepair(t *testing.T) {
	const n = 20
	cases := []struct {
		name     string
		damage   func(b []byte) []byte
		cutIndex uint64 // first index removed
		cutBytes int64
		reason   string
	}{
		{"torn in crc", func(b []byte) []byte { return b[:len(b)-1] }, n, storedEntry - 1, reasonTorn},
		{"torn in payload", func(b []byte) []byte { return b[:len(b)-100] }, n, storedEntry - 100, reasonTorn},
		{"torn in header", func(b []byte) []byte { return b[:len(b)-storedEntry+10] }, n, 10, reasonTorn},
		{"torn in length prefix", func(b []byte) []byte { return b[:len(b)-storedEntry+1] }, n, 1, reasonTorn},
		{"zero-filled tail", func(b []byte) []byte { return append(b, make([]byte, 4096)...) }, n + 1, 4096, reasonZeros},
		{"torn then zero-filled", func(b []byte) []byte {
			return append(b[:len(b)-100], make([]byte, 8192)...)
		}, n, storedEntry - 100 + 8192, reasonChecksum},
		{"bit flip in last payload", func(b []byte) []byte { b[len(b)-50] ^= 0x10; return b }, n, storedEntry, reasonChecksum},
		{"bit flip in last crc", func(b []byte) []byte { b[len(b)-1] ^= 0x01; return b }, n, storedEntry, reasonChecksum},
		{"bit flip in last length", func(b []byte) []byte { b[len(b)-storedEntry] ^= 0x02; return b }, n, storedEntry, reasonChecksum},
		{"bit flip in last version", func(b []byte) []byte { b[len(b)-storedEntry+2] ^= 0x04; return b }, n, storedEntry, reasonBadFrame},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir, all, tail := damagedLog(t, n, 0)
			raw, _ := os.ReadFile(tail)
			damaged := c.damage(bytes.Clone(raw))
			os.WriteFile(tail, damaged, 0o640)

			var reported []Repair
			opts := Options{OnRepair: func(r Repair) { reported = append(reported, r) }}
			l := mustOpen(t, dir, opts)
			want := Repair{File: tail, CutIndex: c.cutIndex, CutBytes: c.cutBytes, Reason: c.reason}
			if got := l.Repairs(); len(got) != 1 || got[0] != want || len(reported) != 1 || reported[0] != want {
				t.Fatalf("repairs %+v, reported %+v, want %+v", got, reported, want)
			}
			kept := int(c.cutIndex - 1)
			if l.LastIndex() != uint64(kept) || l.NextOffset() != int64(kept) {
				t.Fatalf("after repair: last %d next %d, want %d", l.LastIndex(), l.NextOffset(), kept)
			}
			for i := 1; i <= kept; i++ {
				if e, err := l.Read(uint64(i)); err != nil || !sameEntry(e, all[i-1]) {
					t.Fatalf("entry %d lost: %v", i, err)
				}
			}
			if fi, _ := os.Stat(tail); fi.Size() != int64(len(damaged))-c.cutBytes {
				t.Fatalf("tail file is %d bytes, want %d", fi.Size(), int64(len(damaged))-c.cutBytes)
			}
			// Still appendable, and a second open finds nothing to repair.
			appendData(t, l, 3, 200)
			l.Close()
			l = mustOpen(t, dir, Options{})
			defer l.Close()
			if len(l.Repairs()) != 0 || l.LastIndex() != uint64(kept+3) {
				t.Fatalf("second open: repairs %v, last %d", l.Repairs(), l.LastIndex())
			}
			checkFiles(t, l)
		})
	}
}

// TestTailRepairEmptiesTailSegment cuts the only entry of the tail segment
// of a multi-segment log.
func TestTailRepairEmptiesTailSegment(t *testing.T) {
	dir, all, _ := damagedLog(t, 9, 3*storedEntry) // segments of 3 entries, then an empty tail
	l := mustOpen(t, dir, Options{SegmentSize: 3 * storedEntry, Fsync: FsyncNever})
	if _, err := l.Append(Entry{Kind: KindData, BaseOffset: 9, Payload: make([]byte, 200)}); err != nil {
		t.Fatal(err)
	}
	segs := l.Segments()
	tail := l.segPath(segs[len(segs)-1].FirstIndex)
	crashClose(t, l)
	if segs[len(segs)-1].FirstIndex != 10 {
		t.Fatalf("setup: segments %+v", segs)
	}
	raw, _ := os.ReadFile(tail)
	os.WriteFile(tail, raw[:100], 0o640)
	l = mustOpen(t, dir, Options{SegmentSize: 3 * storedEntry})
	defer l.Close()
	if r := l.Repairs(); len(r) != 1 || r[0].CutIndex != 10 || r[0].CutBytes != 100 || r[0].File != tail {
		t.Fatalf("repairs %+v", r)
	}
	if l.LastIndex() != 9 || l.NextOffset() != 9 || len(l.Segments()) != len(segs) {
		t.Fatalf("last %d next %d segments %+v", l.LastIndex(), l.NextOffset(), l.Segments())
	}
	for i := 1; i <= 9; i++ {
		if e, err := l.Read(uint64(i)); err != nil || !sameEntry(e, all[i-1]) {
			t.Fatalf("entry %d lost: %v", i, err)
		}
	}
	appendData(t, l, 1, 200)
	checkFiles(t, l)
}

// TestCorruptionBeforeTail flips a bit in an entry that is followed by valid
// entries, in the tail segment and in an earlier one: Open must fail with an
// error naming the file and index, and must not touch the files.
func TestCorruptionBeforeTail(t *testing.T) {
	cases := []struct {
		name    string
		segSize int
		segment int // which segment file (0-based) to damage
		entry   int // which entry of it (0-based; -1: its last)
	}{
		{"tail segment, middle entry", 0, 0, 5},
		{"tail segment, first entry", 0, 0, 0},
		{"earlier segment, last entry", 4 * storedEntry, 1, -1},
		{"earlier segment, first entry", 4 * storedEntry, 0, 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir, all, _ := damagedLog(t, 20, c.segSize)
			files, _ := listSegments(dir)
			path := filepath.Join(dir, segmentName(files[c.segment]))
			raw, _ := os.ReadFile(path)
			entries := len(raw) / storedEntry
			k := c.entry
			if k < 0 {
				k = entries - 1
			}
			index := files[c.segment] + uint64(k)
			damaged := bytes.Clone(raw)
			damaged[k*storedEntry+100] ^= 0x08
			os.WriteFile(path, damaged, 0o640)

			_, err := Open(dir, Options{SegmentSize: c.segSize})
			var ce *CorruptError
			if !errors.Is(err, ErrCorrupt) || !errors.As(err, &ce) {
				t.Fatalf("open: %v, want a *CorruptError", err)
			}
			if ce.File != path || ce.Index != index || ce.Reason != reasonChecksum {
				t.Fatalf("error names %s index %d (%s), want %s index %d", ce.File, ce.Index, ce.Reason, path, index)
			}
			if msg := err.Error(); !strings.Contains(msg, path) || !strings.Contains(msg, "index "+itoa(index)) {
				t.Fatalf("message %q does not name the file and index", msg)
			}
			if now, _ := os.ReadFile(path); !bytes.Equal(now, damaged) {
				t.Fatal("open modified a segment with corruption before its tail")
			}
			// Nothing is lost: with the bit restored every entry is back.
			os.WriteFile(path, raw, 0o640)
			l := mustOpen(t, dir, Options{SegmentSize: c.segSize})
			defer l.Close()
			if len(l.Repairs()) != 0 || l.LastIndex() != 20 {
				t.Fatalf("restored: repairs %v last %d", l.Repairs(), l.LastIndex())
			}
			for i := 1; i <= 20; i++ {
				if e, err := l.Read(uint64(i)); err != nil || !sameEntry(e, all[i-1]) {
					t.Fatalf("entry %d: %v", i, err)
				}
			}
		})
	}
}

// TestMissingSegment removes a middle segment file: a gap is corruption.
func TestMissingSegment(t *testing.T) {
	dir, _, _ := damagedLog(t, 20, 4*storedEntry)
	files, _ := listSegments(dir)
	os.Remove(filepath.Join(dir, segmentName(files[2])))
	_, err := Open(dir, Options{})
	var ce *CorruptError
	if !errors.As(err, &ce) || ce.Index != files[3] {
		t.Fatalf("open with a missing segment: %v", err)
	}
}

func itoa(i uint64) string { return strings.TrimLeft(segmentName(i), "0") }

// TestReadDetectsLaterDamage damages a closed segment while the log is
// open: Read verifies every frame it returns and reports the damage instead.
func TestReadDetectsLaterDamage(t *testing.T) {
	dir := t.TempDir()
	l := mustOpen(t, dir, Options{SegmentSize: 4 * storedEntry, Fsync: FsyncNever})
	defer l.Close()
	appendData(t, l, 20, 200)
	path := l.segPath(1)
	raw, _ := os.ReadFile(path)
	raw[storedEntry+60] ^= 0x40 // entry 2's payload
	os.WriteFile(path, raw, 0o640)
	if e, err := l.Read(1); err != nil || e.BaseOffset != 0 {
		t.Fatalf("undamaged entry: %v", err)
	}
	_, err := l.Read(2)
	var ce *CorruptError
	if !errors.As(err, &ce) || !errors.Is(err, ErrCorrupt) || ce.File != path || ce.Index != 2 {
		t.Fatalf("read of damaged entry: %v", err)
	}
	if _, err := l.Read(10); err != nil {
		t.Fatalf("other segments still readable: %v", err)
	}
}
