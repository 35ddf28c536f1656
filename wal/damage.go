package wal

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
)

// A clean-shutdown marker tells Open that the log was closed on purpose:
// every entry was synced and the tail segment ended where the marker says.
// Tail repair exists for writes a crash interrupted; after a clean shutdown
// there are none, so a tail that does not check is damage (a flipped bit, a
// truncated file) and Open reports it as corruption instead of cutting
// acknowledged entries.
//
// Close writes the marker after its final sync. The first change to the log
// after Open removes it durably (unlink + directory fsync) before anything
// is written, so a marker never describes a log that has changed since.
// Writing it is cheap (no fsync): a marker lost in a crash only means the
// next Open repairs the tail as after a crash, and a marker that reached the
// disk describes entries that were synced before it was written.
//
// The marker also carries the index of the sealed segments (version 2),
// so that Open after a clean shutdown reads only the tail segment instead
// of every file: a sealed segment named in the marker whose file still has
// the recorded size keeps its recorded index entry (the same prefix test
// Recover uses for the segments it already knows). Sealed segments were
// synced when they were sealed and are never written again (a rewrite
// replaces a file whole, and changes the log, which removes the marker
// first); their frames are still checked whenever they are read, as after
// any Open, so damage there is found on read, not at start-up (Kafka does
// not read its segments at start-up after a clean shutdown either).
//
// Encoding (little-endian):
//
//	0  4  magic "CHWC"
//	4  1  version (1: 36 bytes, no segments; 2: with segments)
//	5  3  zero
//	8  8  lastIndex u64 (LastIndex at Close)
//	16 8  tailFirst u64 (first index of the tail segment)
//	24 8  tailBytes i64 (size of the tail segment file)
//	version 2 only:
//	32 4  number of sealed segments, then each: first, next u64; bytes,
//	      maxTs, firstOffset, nextOffset, firstTs, pointPos i64; number of
//	      points u32, then each point: rel, off u32, maxTs i64
//	end-4 4  CRC32C of every byte before it
const (
	cleanFile  = "chronik.clean"
	cleanMagic = "CHWC"
	cleanSize  = 36 // version 1
)

type cleanMarker struct {
	lastIndex uint64
	tailFirst uint64
	tailBytes int64
	sealed    []*segment // version 2: the sealed segments' index, in order
}

const (
	cleanSegSize   = 2*8 + 6*8 + 4
	cleanPointSize = 4 + 4 + 8
)

func encodeClean(m cleanMarker) []byte {
	n := 40 + 4
	for _, s := range m.sealed {
		n += cleanSegSize + cleanPointSize*len(s.points)
	}
	b := make([]byte, 0, n)
	b = append(b, cleanMagic...)
	b = append(b, 2, 0, 0, 0)
	b = binary.LittleEndian.AppendUint64(b, m.lastIndex)
	b = binary.LittleEndian.AppendUint64(b, m.tailFirst)
	b = binary.LittleEndian.AppendUint64(b, uint64(m.tailBytes))
	b = binary.LittleEndian.AppendUint32(b, uint32(len(m.sealed)))
	for _, s := range m.sealed {
		b = binary.LittleEndian.AppendUint64(b, s.first)
		b = binary.LittleEndian.AppendUint64(b, s.next)
		for _, v := range [...]int64{s.bytes, s.maxTs, s.firstOffset, s.nextOffset, s.firstTs, s.pointPos} {
			b = binary.LittleEndian.AppendUint64(b, uint64(v))
		}
		b = binary.LittleEndian.AppendUint32(b, uint32(len(s.points)))
		for _, p := range s.points {
			b = binary.LittleEndian.AppendUint32(b, p.rel)
			b = binary.LittleEndian.AppendUint32(b, p.off)
			b = binary.LittleEndian.AppendUint64(b, uint64(p.maxTs))
		}
	}
	return binary.LittleEndian.AppendUint32(b, crc32.Checksum(b, castagnoli))
}

// decodeClean returns the marker; ok is false for anything that is not a
// whole, checked marker (a marker cut short by a crash counts as absent).
// Segments that do not follow each other make the marker invalid too.
func decodeClean(b []byte) (cleanMarker, bool) {
	if len(b) < cleanSize || string(b[:4]) != cleanMagic || b[5] != 0 || b[6] != 0 || b[7] != 0 {
		return cleanMarker{}, false
	}
	body := b[:len(b)-4]
	if crc32.Checksum(body, castagnoli) != binary.LittleEndian.Uint32(b[len(b)-4:]) {
		return cleanMarker{}, false
	}
	m := cleanMarker{
		lastIndex: binary.LittleEndian.Uint64(b[8:]),
		tailFirst: binary.LittleEndian.Uint64(b[16:]),
		tailBytes: int64(binary.LittleEndian.Uint64(b[24:])),
	}
	switch b[4] {
	case 1:
		return m, len(b) == cleanSize
	case 2:
	default:
		return cleanMarker{}, false
	}
	r := body[32:]
	u32 := func() (uint32, bool) {
		if len(r) < 4 {
			return 0, false
		}
		v := binary.LittleEndian.Uint32(r)
		r = r[4:]
		return v, true
	}
	u64 := func() uint64 {
		v := binary.LittleEndian.Uint64(r)
		r = r[8:]
		return v
	}
	count, ok := u32()
	if !ok || uint64(count) > uint64(len(r))/cleanSegSize {
		return cleanMarker{}, false
	}
	m.sealed = make([]*segment, 0, count)
	for range count {
		if len(r) < cleanSegSize {
			return cleanMarker{}, false
		}
		s := &segment{first: u64(), next: u64()}
		for _, v := range [...]*int64{&s.bytes, &s.maxTs, &s.firstOffset, &s.nextOffset, &s.firstTs, &s.pointPos} {
			*v = int64(u64())
		}
		np, _ := u32()
		if uint64(np) > uint64(len(r))/cleanPointSize {
			return cleanMarker{}, false
		}
		s.points = make([]point, np)
		for i := range s.points {
			s.points[i].rel, _ = u32()
			s.points[i].off, _ = u32()
			s.points[i].maxTs = int64(u64())
		}
		if s.next < s.first || s.bytes < 0 || len(m.sealed) > 0 && m.sealed[len(m.sealed)-1].next != s.first {
			return cleanMarker{}, false
		}
		m.sealed = append(m.sealed, s)
	}
	if len(r) != 0 || len(m.sealed) > 0 && m.sealed[len(m.sealed)-1].next != m.tailFirst {
		return cleanMarker{}, false
	}
	return m, true
}

// readClean reads the marker in dir. present says whether a marker file
// exists at all (it must be removed before the log changes); ok whether it
// is a valid one.
func readClean(dir string) (m cleanMarker, present, ok bool, err error) {
	raw, err := readSidecar(dir, cleanFile)
	if err != nil || raw == nil {
		return cleanMarker{}, false, false, err
	}
	m, ok = decodeClean(raw)
	return m, true, ok, nil
}

// writeClean writes the marker for the log as it is now. wmu and mu held,
// after the final sync.
func (l *Log) writeClean() error {
	tail := l.idx.tail()
	m := cleanMarker{lastIndex: l.idx.lastIndex(), tailFirst: tail.first, tailBytes: tail.bytes}
	if n := len(l.idx.segs); n > 1 {
		m.sealed = l.idx.segs[:n-1]
	}
	path := filepath.Join(l.dir, cleanFile)
	tmp := path + tmpSuffix
	if err := os.WriteFile(tmp, encodeClean(m), 0o640); err != nil {
		os.Remove(tmp)
		return err
	}
	return os.Rename(tmp, path)
}

// checkClean compares the scanned log with the marker Open found. mu held
// (or not yet shared).
func (l *Log) checkClean(m cleanMarker) error {
	tail := l.idx.tail()
	switch {
	case l.idx.lastIndex() != m.lastIndex:
		return &CorruptError{File: l.segPath(tail.first), Index: l.idx.lastIndex() + 1, Pos: tail.bytes,
			Reason: fmt.Sprintf("log ends at index %d, but it was closed cleanly at index %d", l.idx.lastIndex(), m.lastIndex)}
	case tail.first != m.tailFirst || tail.bytes != m.tailBytes:
		return &CorruptError{File: l.segPath(tail.first), Index: l.idx.lastIndex(), Pos: tail.bytes,
			Reason: fmt.Sprintf("tail segment is %d bytes from index %d, but it was closed cleanly at %d bytes from index %d", tail.bytes, tail.first, m.tailBytes, m.tailFirst)}
	}
	return nil
}

// dropClean removes the clean-shutdown marker durably before the first
// change after Open. wmu and mu held.
func (l *Log) dropClean() error {
	if !l.hasClean {
		return nil
	}
	if err := os.Remove(filepath.Join(l.dir, cleanFile)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return l.failLocked("remove clean-shutdown marker", err)
	}
	if err := syncDir(l.dir); err != nil {
		return l.failLocked("remove clean-shutdown marker", err)
	}
	l.hasClean = false
	return nil
}

// Failed returns the error that made the log unusable (a failed write,
// sync or truncation), or nil. Recover clears it.
func (l *Log) Failed() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.failed
}

// Recover reopens a log that a failed write, sync or truncation left
// unusable, in place: the files are scanned again as by Open (a torn tail
// is cut), and entries after the last index that was durable before the
// failure are removed, since a failed fsync may have lost them while their
// pages still read back (they were never acknowledged as durable). It is a
// no-op on a healthy log. If the cause persists (the disk is still full or
// failing) it returns the error and the log stays failed; call it again
// later. Damage it finds before the tail is a *CorruptError.
func (l *Log) Recover() error {
	l.wmu.Lock()
	defer l.wmu.Unlock()
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed.Load() {
		return ErrClosed
	}
	if l.failed == nil {
		return nil
	}
	durable := l.durable.Load()
	l.closeSyncFile()
	l.readCache().drop(l)
	if l.tl != nil {
		l.tl.Close() // its state is unknown; the files are rescanned
		l.tl, l.tlStale = nil, false
		l.releaseSlot()
		l.reportTail()
	}
	fresh := &Log{dir: l.dir, opts: l.opts}
	fresh.idx.interval = l.idx.interval
	// Sealed segments were verified and are never written again (a
	// rewrite replaces the file whole and its index segment with it):
	// only files that changed (the tail, a segment cut short) are scanned.
	var sealed []*segment
	if n := len(l.idx.segs); n > 1 {
		sealed = l.idx.segs[:n-1]
	}
	if err := fresh.recover(sealed); err != nil {
		return fmt.Errorf("wal: recover %s: %w (after %v)", l.dir, err, l.failed)
	}
	l.idx, l.next, l.floor, l.metaFloor = fresh.idx, fresh.next, fresh.floor, fresh.metaFloor
	l.repairs = append(l.repairs, fresh.repairs...)
	l.hasClean = false
	l.dirty = false
	l.durable.Store(l.idx.lastIndex())
	l.durGen++
	if err := l.ensureOpen(); err != nil {
		return fmt.Errorf("wal: recover %s: %w", l.dir, err)
	}
	l.failed = nil
	if last := l.idx.lastIndex(); last > durable && durable+1 >= l.idx.firstIndex() {
		if err := l.truncateBackLocked(durable); err != nil {
			return fmt.Errorf("wal: recover %s: drop entries after durable index %d: %w", l.dir, durable, err)
		}
	}
	if l.opts.OnRepair != nil {
		for _, r := range fresh.repairs {
			l.opts.OnRepair(r)
		}
	}
	return nil
}

// RepairReport says what RepairDir removed from a log.
type RepairReport struct {
	Dir    string
	Damage *CorruptError // the first bad entry; nil if the log was sound
	// LastGoodIndex is the last entry kept (FirstIndex-1 if none).
	LastGoodIndex uint64
	// LostEntries counts the entries removed that could still be
	// delimited (the damaged one included); LostBytes the bytes removed.
	LostEntries int
	LostBytes   int64
	// LostFromOffset is the Kafka offset the log continues at (the first
	// offset that was removed); LostToOffset the last offset of the
	// removed entries that could still be read, or -1 if none could.
	LostFromOffset int64
	LostToOffset   int64
}

// RepairDir cuts the log in dir after its last good entry, wherever the first
// damage is (not only in the tail): the damaged segment is cut at the bad
// entry and every later segment file is removed, newest first, so a crash
// during RepairDir leaves a prefix of the log that RepairDir or Open
// finishes. A sound log is left alone. The log must not be open. The report
// says exactly what was removed.
func RepairDir(dir string) (RepairReport, error) { return repairDir(dir, false) }

// CheckDir reports what RepairDir would remove, changing nothing.
func CheckDir(dir string) (RepairReport, error) { return repairDir(dir, true) }

func repairDir(dir string, dryRun bool) (RepairReport, error) {
	rep := RepairReport{Dir: dir, LostFromOffset: -1, LostToOffset: -1}
	if !dryRun {
		if _, err := cleanDir(dir); err != nil {
			return rep, err
		}
	}
	files, err := listSegments(dir)
	if err != nil {
		return rep, err
	}
	l := &Log{dir: dir}
	l.idx.interval = defaultIndexInterval
	var (
		buf      []byte
		damageAt = -1 // file holding the damage
		cutPos   int64
	)
	for i, first := range files {
		path := l.segPath(first)
		data, err := readFileInto(path, buf)
		if err != nil {
			return rep, err
		}
		buf = data[:0]
		if damageAt >= 0 {
			// Past the damage: count what goes.
			countLost(&rep, data)
			rep.LostBytes += int64(len(data))
			continue
		}
		seg, stop := scanSegment(data, first, l.idx.interval)
		if stop == nil && i > 0 && len(l.idx.segs) > 0 && l.idx.tail().next != first {
			stop = &scanStop{index: first, pos: 0, reason: fmt.Sprintf("segment does not follow index %d", l.idx.tail().next-1)}
			seg = newSegment(first)
		}
		if stop == nil {
			l.idx.segs = append(l.idx.segs, seg)
			continue
		}
		damageAt, cutPos = i, stop.pos
		rep.Damage = &CorruptError{File: path, Index: stop.index, Pos: stop.pos, Reason: stop.reason}
		if seg.next > seg.first || stop.pos > 0 || len(l.idx.segs) == 0 {
			l.idx.segs = append(l.idx.segs, seg)
		}
		rest := data[stop.pos:]
		rep.LostBytes += int64(len(rest))
		rep.LostEntries++ // the damaged entry itself
		if q := nextValidFrame(rest, 0); q > 0 {
			countLost(&rep, rest[q:])
		}
	}
	if rep.Damage == nil {
		if len(l.idx.segs) > 0 {
			rep.LastGoodIndex = l.idx.lastIndex()
		}
		return rep, nil
	}
	if len(l.idx.segs) > 0 {
		rep.LastGoodIndex = l.idx.lastIndex()
		if next := l.idx.nextOffset(); next >= 0 {
			rep.LostFromOffset = next
		}
	}
	if rep.LostFromOffset < 0 {
		raw, err := readSidecar(dir, metaFile)
		if err != nil {
			return rep, err
		}
		rep.LostFromOffset = 0
		if raw != nil {
			if m, err := decodeMeta(raw); err == nil {
				rep.LostFromOffset = m.floorOffset
			}
		}
	}
	if dryRun {
		return rep, nil
	}
	// Newest first: every step leaves a contiguous prefix.
	for i := len(files) - 1; i > damageAt; i-- {
		if err := os.Remove(l.segPath(files[i])); err != nil {
			return rep, err
		}
	}
	if cutPos == 0 && damageAt > 0 {
		// The damaged file holds nothing good: remove it too.
		if err := os.Remove(l.segPath(files[damageAt])); err != nil {
			return rep, err
		}
	} else if err := cutFile(l.segPath(files[damageAt]), cutPos); err != nil {
		return rep, err
	}
	if err := os.Remove(filepath.Join(dir, cleanFile)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return rep, err
	}
	return rep, syncDir(dir)
}

// countLost adds the entries of b that can still be delimited and checked
// to the report, with their offsets.
func countLost(rep *RepairReport, b []byte) {
	for pos := 0; pos < len(b); {
		n, frame, reason := nextEntry(b[pos:])
		if reason != "" {
			q := nextValidFrame(b, pos)
			if q < 0 {
				return
			}
			rep.LostEntries++ // the bad entry we skipped over
			pos = q
			continue
		}
		rep.LostEntries++
		if h, err := decodeHeader(frame); err == nil && h.kind.HasRecords() {
			rep.LostToOffset = max(rep.LostToOffset, h.lastOffset())
		}
		pos += n
	}
}
