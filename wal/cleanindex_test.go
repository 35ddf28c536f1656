package wal

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

// TestCleanOpenReadsOnlyTail: after a clean Close, Open takes the sealed
// segments' index from the marker and reads only the tail: the index it
// builds equals a full scan's, and a sealed segment whose bytes changed
// (same size) is not read at start-up. A segment whose size changed, a
// marker of the old version and a damaged marker each fall back to reading
// the files.
func TestCleanOpenReadsOnlyTail(t *testing.T) {
	dir := t.TempDir()
	opts := Options{SegmentSize: 4 * storedEntry, Fsync: FsyncNever, IndexIntervalBytes: storedEntry}
	l := mustOpen(t, dir, opts)
	appendData(t, l, 30, 200) // 8 segments of 4 entries
	if err := l.Roll(); err != nil {
		t.Fatal(err)
	}
	appendData(t, l, 2, 200)
	segs := l.Segments()
	l.Close()
	if len(segs) < 8 {
		t.Fatalf("setup: %d segments", len(segs))
	}
	// The index a full scan builds (no marker: as after a crash).
	os.Remove(filepath.Join(dir, cleanFile))
	l = mustOpen(t, dir, opts)
	want := l.idx.segs
	l.Close()

	l = mustOpen(t, dir, opts)
	if !reflect.DeepEqual(l.idx.segs, want) {
		t.Fatalf("index from the marker differs from a scan:\n got %+v\nwant %+v", l.idx.segs, want)
	}
	var sealedBytes int64
	for _, s := range segs[:len(segs)-1] {
		sealedBytes += s.Bytes
	}
	if got := l.Unverified(); got != sealedBytes {
		t.Fatalf("unverified %d bytes after a clean open, want the sealed segments' %d", got, sealedBytes)
	}
	// A pace that says stop leaves everything unread.
	if err := l.VerifySealed(func(int64) bool { return false }); err != nil || l.Unverified() != sealedBytes {
		t.Fatalf("verify told to stop: %v, %d bytes left, want %d", err, l.Unverified(), sealedBytes)
	}
	if err := l.VerifySealed(nil); err != nil || l.Unverified() != 0 {
		t.Fatalf("verify of a sound log: %v, %d bytes left", err, l.Unverified())
	}
	for off := int64(0); off < 32; off++ {
		i, err := l.FindOffset(off)
		if err != nil {
			t.Fatalf("find offset %d: %v", off, err)
		}
		e, err := l.Read(i)
		if err != nil || e.BaseOffset != off || !bytes.Equal(e.Payload, payloadFor(uint64(off), 200)) {
			t.Fatalf("offset %d: %+v %v", off, e.BaseOffset, err)
		}
	}
	l.Close()

	// Bytes of a sealed segment replaced, size kept: not read at Open.
	bad := filepath.Join(dir, segmentName(segs[2].FirstIndex))
	raw, _ := os.ReadFile(bad)
	os.WriteFile(bad, bytes.Repeat([]byte{0xee}, len(raw)), 0o640)
	l = mustOpen(t, dir, opts)
	if _, err := l.Read(segs[2].FirstIndex); err == nil {
		t.Fatal("read of the overwritten segment: no error")
	}
	// VerifySealed reads what Open did not and names the damaged file.
	var paced int64
	var ce *CorruptError
	if err := l.VerifySealed(func(n int64) bool { paced += n; return true }); !errors.As(err, &ce) || ce.File != bad || ce.Index != segs[2].FirstIndex {
		t.Fatalf("verify: %v, want damage in %s at index %d", err, bad, segs[2].FirstIndex)
	}
	if paced != segs[0].Bytes+segs[1].Bytes+segs[2].Bytes {
		t.Fatalf("paced %d bytes, want the first three segments' %d", paced, segs[0].Bytes+segs[1].Bytes+segs[2].Bytes)
	}
	l.Close()
	os.WriteFile(bad, raw, 0o640)

	// A sealed segment of another size: it and every later file are read.
	os.WriteFile(bad, raw[:len(raw)-10], 0o640)
	if _, err := Open(dir, opts); err == nil {
		t.Fatal("open with a sealed segment cut short after a clean close: no error")
	}
	os.WriteFile(bad, raw, 0o640)

	// A version-1 marker (no segments) and a damaged marker: a full scan.
	for name, marker := range map[string][]byte{
		"version 1": encodeCleanV1(cleanMarker{lastIndex: segs[len(segs)-1].LastIndex, tailFirst: segs[len(segs)-1].FirstIndex, tailBytes: segs[len(segs)-1].Bytes}),
		"damaged":   func() []byte { b, _ := os.ReadFile(filepath.Join(dir, cleanFile)); b[50] ^= 1; return b }(),
	} {
		os.WriteFile(filepath.Join(dir, cleanFile), marker, 0o640)
		l = mustOpen(t, dir, opts)
		if !reflect.DeepEqual(l.idx.segs, want) {
			t.Fatalf("%s marker: index differs from a scan", name)
		}
		l.Close()
	}
}

// encodeCleanV1 is the marker as version 1 wrote it.
func encodeCleanV1(m cleanMarker) []byte {
	b := encodeClean(cleanMarker{lastIndex: m.lastIndex, tailFirst: m.tailFirst, tailBytes: m.tailBytes})[:32]
	b[4] = 1
	return binary.LittleEndian.AppendUint32(b, crc32.Checksum(b, castagnoli))
}

func FuzzDecodeClean(f *testing.F) {
	s := newSegment(5)
	s.next, s.bytes, s.firstOffset, s.nextOffset, s.maxTs, s.firstTs = 9, 400, 10, 20, 7, 3
	s.points = []point{{rel: 0, off: 0, maxTs: 3}, {rel: 2, off: 5, maxTs: 7}}
	f.Add(encodeClean(cleanMarker{lastIndex: 12, tailFirst: 9, tailBytes: 300, sealed: []*segment{s}}))
	f.Add(encodeClean(cleanMarker{lastIndex: 1, tailFirst: 1, tailBytes: 0}))
	f.Add(encodeCleanV1(cleanMarker{lastIndex: 1, tailFirst: 1, tailBytes: 10}))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, ok := decodeClean(b)
		if !ok || b[4] != 2 {
			return
		}
		if got := encodeClean(m); !bytes.Equal(got, b) {
			t.Fatalf("re-encoded marker differs:\n got %x\nwant %x", got, b)
		}
	})
}
