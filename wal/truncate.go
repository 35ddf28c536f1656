package wal

import (
	"errors"
	"fmt"
	"os"
)

// Truncations at either end of the log (raft replacing a conflicting
// tail, the log start moving) and Reset (a snapshot installed).

// TruncateFront removes the entries before index, so index becomes the first
// entry; index LastIndex()+1 empties the log. An index at or before
// FirstIndex() is a no-op; one past LastIndex()+1 is ErrOutOfRange.
func (l *Log) TruncateFront(index uint64) error {
	return l.mutate(func() error { return l.truncateFrontLocked(index) })
}

// truncateFrontLocked is TruncateFront. wmu and mu held, the log usable.
func (l *Log) truncateFrontLocked(index uint64) error {
	first, last := l.idx.firstIndex(), l.idx.lastIndex()
	if index <= first {
		return nil
	}
	if index > last+1 {
		return fmt.Errorf("%w: truncate front to %d, log is [%d, %d]", ErrOutOfRange, index, first, last)
	}
	if err := l.dropClean(); err != nil {
		return err
	}
	if err := l.moveFloor(index); err != nil {
		return err
	}
	k := l.idx.segmentOf(index)
	if l.idx.segs[k].first == index {
		return l.dropLocked(k)
	}
	// Mid-segment: tidwall rewrites the rest of segment k as a new file.
	if err := l.openCurrent(); err != nil {
		return err
	}
	l.readCache().drop(l)
	if err := l.tl.TruncateFront(index); err != nil {
		return l.failLocked("truncate front", err)
	}
	seg, err := rebuildSegment(index, l.idx.segs[k].next, l.idx.interval, l.readHeaderTL)
	if err != nil {
		return l.failLocked("truncate front", err)
	}
	if k < len(l.idx.segs)-1 {
		seg.seal()
	}
	l.idx.segs = append([]*segment{seg}, l.idx.segs[k+1:]...)
	return l.truncated("truncate front")
}

// moveFloor persists the Kafka start offset the log will have once the
// entries before index are gone, before they go: a log left without record
// entries must reopen with the right NextOffset. wmu and mu held.
func (l *Log) moveFloor(index uint64) error {
	start, err := l.idx.firstRecordFrom(index, l.readHeader)
	if err != nil {
		return err
	}
	floor := start
	if floor < 0 {
		floor = l.next
	}
	l.floor = floor
	if floor != l.metaFloor {
		return l.writeMeta(index, floor)
	}
	return nil
}

// dropLocked removes the k oldest segment files, oldest first, so that a
// crash leaves a contiguous log. wmu and mu held.
func (l *Log) dropLocked(k int) error {
	if err := l.releaseLocked(); err != nil {
		return err
	}
	for i := 0; i < k; i++ {
		if err := os.Remove(l.segPath(l.idx.segs[0].first)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return l.failLocked("drop segment", err)
		}
		l.idx.segs = l.idx.segs[1:]
	}
	l.idx.segs = append([]*segment(nil), l.idx.segs...)
	if err := syncDir(l.dir); err != nil {
		return l.failLocked("drop segment", err)
	}
	return nil
}

// TruncateBack removes the entries after index, so index becomes the last
// entry; FirstIndex()-1 empties the log. An index at or after LastIndex() is
// a no-op; one before FirstIndex()-1 is ErrOutOfRange.
func (l *Log) TruncateBack(index uint64) error {
	return l.mutate(func() error { return l.truncateBackLocked(index) })
}

// truncateBackLocked is TruncateBack. wmu and mu held.
func (l *Log) truncateBackLocked(index uint64) error {
	first, last := l.idx.firstIndex(), l.idx.lastIndex()
	if index >= last {
		return nil
	}
	if index+1 < first {
		return fmt.Errorf("%w: truncate back to %d, log is [%d, %d]", ErrOutOfRange, index, first, last)
	}
	if err := l.dropClean(); err != nil {
		return err
	}
	if err := l.openCurrent(); err != nil {
		return err
	}
	l.readCache().drop(l)
	if err := l.tl.TruncateBack(index); err != nil {
		return l.failLocked("truncate back", err)
	}
	k := max(l.idx.segmentOf(index), 0)
	seg, err := rebuildSegment(l.idx.segs[k].first, index+1, l.idx.interval, l.readHeaderTL)
	if err != nil {
		return l.failLocked("truncate back", err)
	}
	l.idx.segs = append(l.idx.segs[:k:k], seg)
	l.next = l.idx.nextOffset()
	if l.next < 0 {
		l.next = l.floor
	}
	if l.durable.Load() > index {
		l.durable.Store(index)
	}
	l.durGen++ // a Syncer round under way may hold targets past index
	return l.truncated("truncate back")
}

// truncated finishes a truncation at either end: the tail tidwall holds
// is marked as loaded from disk (untrustTail), its size reported to the
// budget, its sync handle dropped, and the directory synced. wmu and mu
// held.
func (l *Log) truncated(op string) error {
	l.untrustTail()
	l.reportTail()
	l.closeSyncFile()
	if err := syncDir(l.dir); err != nil {
		return l.failLocked(op, err)
	}
	return nil
}

// Reset drops every entry; the log restarts empty at firstIndex (>= 1) with
// NextOffset() == nextOffset (>= 0), which survives reopening. For raft
// snapshot installation.
func (l *Log) Reset(firstIndex uint64, nextOffset int64) error {
	if firstIndex == 0 || nextOffset < 0 {
		return fmt.Errorf("%w: reset to index %d offset %d", ErrOutOfRange, firstIndex, nextOffset)
	}
	return l.mutate(func() error { return l.resetLocked(firstIndex, nextOffset) })
}

// resetLocked is Reset. wmu and mu held, the log usable.
func (l *Log) resetLocked(firstIndex uint64, nextOffset int64) error {
	if err := l.dropClean(); err != nil {
		return err
	}
	m := meta{resetting: true, firstIndex: firstIndex, floorOffset: nextOffset}
	if err := writeAtomic(l.dir, metaFile, encodeMeta(m)); err != nil {
		return err
	}
	if err := l.releaseLocked(); err != nil {
		return err
	}
	if err := resetFiles(l.dir, firstIndex); err != nil {
		return l.failLocked("reset", err)
	}
	if err := l.writeMeta(firstIndex, nextOffset); err != nil {
		return l.failLocked("reset", err)
	}
	l.idx.segs = []*segment{newSegment(firstIndex)}
	l.floor, l.next = nextOffset, nextOffset
	l.durable.Store(firstIndex - 1)
	l.durGen++
	return nil
}
