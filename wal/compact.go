package wal

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
)

// Compaction support (issue 15): the wal rewrites a sealed segment with new
// payloads, and seals the active segment on demand. What the payloads
// become is the caller's business (the broker's cleaner filters Kafka
// record batches); the wal keeps every entry's index and header, so the
// offset/time index, raft indexes and the files' framing stay valid.
//
// A rewrite is crash-safe: the new file is written next to the segment as
// "<segment name>.rewrite" (a name tidwall and listSegments ignore), synced,
// and renamed over the segment; the directory is synced last. A crash
// leaves either the old file (and perhaps a temp file, which Open removes
// and reports as a Repair) or the new one, each a complete segment.
//
// It never holds the log's locks while reading the old file, calling the
// callback or writing the new file; it takes wmu and mu only to check that
// the segment is still the one it read and to swap it in. Every mutation
// that changes a sealed segment file (truncation, retention, Reset,
// Recover's rescan, another rewrite) replaces or removes the index's
// *segment, so pointer identity tells whether the segment changed.

// ErrSegmentChanged is returned by RewriteSegment when the segment was
// dropped, truncated or rewritten while the rewrite was being prepared;
// nothing was changed and the caller may plan again.
var ErrSegmentChanged = errors.New("wal: segment changed during rewrite")

// rewriteSuffix names the temp file of a segment rewrite. tidwall only
// loads names of 20 digits optionally followed by .START or .END.
const rewriteSuffix = ".rewrite"

// reasonRewriteLeftover is the Repair reason for a removed temp file.
const reasonRewriteLeftover = "interrupted segment rewrite: temp file removed, segment intact"

// reasonMergeLeftover is the Repair reason for a segment file removed
// because the merged segment before it holds its entries.
const reasonMergeLeftover = "interrupted segment merge: merged file holds this segment's entries, removed"

// readSealedFile reads and verifies the file of the sealed segment whose
// first index is first, without the read cache: ErrOutOfRange if there is
// none, ErrSegmentChanged if it went away meanwhile, a *CorruptError if
// the file does not match the index.
func (l *Log) readSealedFile(first uint64) (seg *segment, path string, data []byte, err error) {
	if seg, err = l.sealedSegment(first); err != nil {
		return nil, "", nil, err
	}
	path, data, err = l.readSealedSegment(seg)
	return seg, path, data, err
}

// readSealedSegment reads and verifies the file of seg, a sealed segment
// of the index when it was looked up: ErrSegmentChanged if it went away
// meanwhile, a *CorruptError if the file does not match it.
func (l *Log) readSealedSegment(seg *segment) (path string, data []byte, err error) {
	path = l.segPath(seg.first)
	if data, err = os.ReadFile(path); err != nil {
		if errors.Is(err, os.ErrNotExist) && !l.isCurrent(seg) {
			return "", nil, l.segmentChanged(seg.first)
		}
		return "", nil, fmt.Errorf("wal: read segment %s: %w", path, err)
	}
	if err := checkSegmentFile(path, data, seg); err != nil {
		if !l.isCurrent(seg) {
			return "", nil, l.segmentChanged(seg.first)
		}
		return "", nil, err
	}
	return path, data, nil
}

// ScanSegment calls fn with every entry of the sealed segment whose first
// index is first, in index order, until fn returns false or an error. It
// reads the segment file itself, not through the read cache: a pass over
// a whole log (the log cleaner's) must not evict what consumers read, nor
// hold the cache's memory. e.Payload is valid only during the call.
// Errors as RewriteSegment's (ErrOutOfRange, ErrSegmentChanged, a
// *CorruptError), or fn's.
func (l *Log) ScanSegment(first uint64, fn func(index uint64, e Entry) (bool, error)) error {
	seg, _, data, err := l.readSealedFile(first)
	if err != nil {
		return err
	}
	off := 0
	for i := seg.first; i < seg.next; i++ {
		n, raw, _ := nextEntry(data[off:]) // verified by readSealedFile
		h, _ := decodeHeader(raw)
		off += n
		if ok, err := fn(i, h.entry(raw)); err != nil || !ok {
			return err
		}
	}
	return nil
}

// RewriteSegment rewrites the sealed segment whose first index is first,
// replacing the payload of every entry of a HasRecords kind with what
// rewrite returns for it (called in index order; returning e.Payload, or
// equal bytes, leaves the entry unchanged). Entries of other kinds are
// copied as they are. Every entry keeps its index, Kind, Term, BaseOffset,
// LastOffsetDelta and MaxTimestamp, so FindOffset and FindTimestamp answer
// the same entries afterwards. It returns the file size before and after;
// if no payload changed nothing is written and after == before.
//
// e.Payload is read-only; the returned slice is copied before rewrite is
// called again, so the callback may reuse its buffer. Appends, reads and
// other writers are not blocked while the callback runs. ErrOutOfRange if
// first is not the first index of a sealed segment; ErrSegmentChanged if
// the segment was dropped, truncated or rewritten meanwhile; a payload
// over the entry limit wraps ErrInvalidEntry; damage in the segment is a
// *CorruptError. On those errors the segment is left as it was. Only a
// failed directory sync after the swap returns an error with the new file
// in place (both files are whole; which one a crash keeps is then
// undecided, so the caller must not record the rewrite as done).
//
// The callback may call the log (append, read, truncate, ...), but not
// RewriteSegment: rewrites of one log are serialized.
func (l *Log) RewriteSegment(first uint64, rewrite func(index uint64, e Entry) ([]byte, error)) (before, after int64, err error) {
	return l.RewriteSegments(first, 1, rewrite)
}

// RewriteSegments is RewriteSegment for the n consecutive sealed segments
// starting with the one whose first index is first: their entries,
// rewritten, become one segment file named after the first (Kafka's
// cleaner groups small segments the same way), so that a log cleaned
// often does not keep one small file per roll. With n > 1 the file is
// written even if no payload changed. The caller bounds the group's size:
// the merged file may not exceed 4 GiB (ErrInvalidEntry).
//
// The merge is crash-safe as a rewrite is: the merged file replaces the
// first segment's by rename, and only then are the others removed, so a
// crash leaves either the old files or the merged one followed by old
// files whose entries it already holds; Open removes those (a Repair).
// This relies on the file system making directory changes durable in the
// order they were made, as journaling file systems (ext4, xfs) do.
func (l *Log) RewriteSegments(first uint64, n int, rewrite func(index uint64, e Entry) ([]byte, error)) (before, after int64, err error) {
	if rewrite == nil {
		return 0, 0, fmt.Errorf("%w: rewrite of segment %d without a rewrite function", ErrInvalidEntry, first)
	}
	if n < 1 {
		return 0, 0, fmt.Errorf("%w: rewrite of %d segments", ErrOutOfRange, n)
	}
	l.rewriteMu.Lock() // one temp file per segment name: one rewrite at a time
	defer l.rewriteMu.Unlock()
	segs, err := l.sealedRun(first, n)
	if err != nil {
		return 0, 0, err
	}
	path := l.segPath(first)
	tmp := path + rewriteSuffix
	// One segment's file in memory at a time: a run may hold up to the
	// topic's segment.bytes in many files.
	w := newRewriter(tmp, first, int64(l.opts.IndexIntervalBytes), n > 1)
	for _, seg := range segs {
		_, data, err := l.readSealedSegment(seg)
		if err != nil {
			w.abort()
			return 0, 0, err
		}
		before += seg.bytes
		if err := w.add(seg, data, rewrite); err != nil {
			w.abort()
			return 0, 0, fmt.Errorf("wal: rewrite segment %s: %w", path, err)
		}
	}
	newSeg, err := w.finish()
	if err != nil {
		w.abort()
		return 0, 0, fmt.Errorf("wal: rewrite segment %s: %w", path, err)
	}
	if newSeg == nil {
		return before, before, nil // nothing changed, nothing written
	}
	if err := l.swapSegments(segs, newSeg, tmp, path); err != nil {
		os.Remove(tmp)
		return 0, 0, err
	}
	// The rename is durable once the directory is. Not under the locks:
	// a crash before this leaves the old or the new file, both whole.
	if err := syncDir(l.dir); err != nil {
		return 0, 0, fmt.Errorf("wal: rewrite segment %s: sync directory: %w", path, err)
	}
	return before, newSeg.bytes, nil
}

// sealedRun returns the index's n consecutive sealed segments starting at
// first.
func (l *Log) sealedRun(first uint64, n int) ([]*segment, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := l.usable(); err != nil {
		return nil, err
	}
	k := l.idx.segmentOf(first)
	if k < 0 || l.idx.segs[k].first != first || k+n > len(l.idx.segs)-1 {
		return nil, fmt.Errorf("%w: no %d sealed segments start at index %d in %s", ErrOutOfRange, n, first, l.dir)
	}
	return append([]*segment(nil), l.idx.segs[k:k+n]...), nil
}

// sealedSegment returns the index's sealed segment starting at first.
func (l *Log) sealedSegment(first uint64) (*segment, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := l.usable(); err != nil {
		return nil, err
	}
	k := l.idx.segmentOf(first)
	if k < 0 || l.idx.segs[k].first != first || k == len(l.idx.segs)-1 {
		return nil, fmt.Errorf("%w: no sealed segment starts at index %d in %s", ErrOutOfRange, first, l.dir)
	}
	return l.idx.segs[k], nil
}

// isCurrent reports whether seg is still a sealed segment of the index.
func (l *Log) isCurrent(seg *segment) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.currentLocked(seg) >= 0
}

// currentLocked returns the position of seg in the index if it is still
// there and sealed, else -1. mu held.
func (l *Log) currentLocked(seg *segment) int {
	k := l.idx.segmentOf(seg.first)
	if k < 0 || k == len(l.idx.segs)-1 || l.idx.segs[k] != seg {
		return -1
	}
	return k
}

func (l *Log) segmentChanged(first uint64) error {
	return fmt.Errorf("%w: segment %s", ErrSegmentChanged, l.segPath(first))
}

// checkSegmentFile verifies that data, the file of seg, holds exactly the
// entries the index describes and that every frame checks.
func checkSegmentFile(path string, data []byte, seg *segment) error {
	pos := 0
	for i := seg.first; i < seg.next; i++ {
		n, _, reason := nextEntry(data[pos:])
		if reason != "" {
			return &CorruptError{File: path, Index: i, Pos: int64(pos), Reason: reason}
		}
		pos += n
	}
	if pos != len(data) || int64(pos) != seg.bytes {
		return &CorruptError{File: path, Index: seg.next, Pos: int64(pos),
			Reason: fmt.Sprintf("segment file has %d bytes, the index describes %d bytes in %d entries", len(data), seg.bytes, seg.next-seg.first)}
	}
	return nil
}

// rewriter writes the rewritten entries of one or more consecutive
// segments to tmp as one segment file, segment by segment (add), and syncs
// it (finish). Unless forced (a merge), tmp is created only at the first
// changed payload, and finish returns nil, nil if there was none.
type rewriter struct {
	tmp      string
	interval int64
	force    bool
	f        *os.File
	w        *bufio.Writer
	frame    []byte
	seg      *segment // the new segment's index summary
}

func newRewriter(tmp string, first uint64, interval int64, force bool) *rewriter {
	return &rewriter{tmp: tmp, interval: interval, force: force, seg: newSegment(first)}
}

func (r *rewriter) create() error {
	f, err := os.OpenFile(r.tmp, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o640)
	if err != nil {
		return err
	}
	r.f, r.w = f, bufio.NewWriterSize(f, 256<<10)
	return nil
}

// add rewrites the entries of seg, whose verified file is data, calling
// rewrite for each entry of a HasRecords kind.
func (r *rewriter) add(seg *segment, data []byte, rewrite func(uint64, Entry) ([]byte, error)) error {
	if r.force && r.f == nil {
		if err := r.create(); err != nil {
			return err
		}
	}
	off := 0
	for i := seg.first; i < seg.next; i++ {
		n, raw, _ := nextEntry(data[off:]) // verified by checkSegmentFile
		h, _ := decodeHeader(raw)
		stored := data[off : off+n]
		off += n
		e := h.entry(raw)
		payload := e.Payload
		if h.kind.HasRecords() {
			p, err := rewrite(i, e)
			if err != nil {
				return fmt.Errorf("index %d: %w", i, err)
			}
			if len(p) > maxPayload {
				return fmt.Errorf("%w: index %d: rewritten payload of %d bytes", ErrInvalidEntry, i, len(p))
			}
			payload = p
		}
		changed := !bytes.Equal(payload, e.Payload)
		if r.f == nil && !changed {
			r.seg.add(&h, int64(n), r.interval)
			continue
		}
		if r.f == nil {
			// The first change: the entries before it go as they were.
			if err := r.create(); err != nil {
				return err
			}
			if _, err := r.w.Write(data[:off-n]); err != nil {
				return err
			}
		}
		if !changed {
			if _, err := r.w.Write(stored); err != nil {
				return err
			}
			r.seg.add(&h, int64(n), r.interval)
		} else {
			e.Payload = payload
			r.frame = appendFrame(binary.AppendUvarint(r.frame[:0], uint64(frameSize(&e))), &e)
			if _, err := r.w.Write(r.frame); err != nil {
				return err
			}
			r.seg.add(&h, int64(len(r.frame)), r.interval)
		}
		if r.seg.bytes > math.MaxUint32 {
			// The read cache locates entries with uint32 positions.
			return fmt.Errorf("%w: rewritten segment over %d bytes", ErrInvalidEntry, uint64(math.MaxUint32))
		}
	}
	return nil
}

// finish syncs and closes the file and returns the new segment's index
// summary, sealed; nil, nil if nothing was written.
func (r *rewriter) finish() (*segment, error) {
	if r.f == nil {
		return nil, nil
	}
	err := r.w.Flush()
	if err == nil {
		err = r.f.Sync()
	}
	if cerr := r.f.Close(); err == nil {
		err = cerr
	}
	r.f = nil
	if err != nil {
		return nil, err
	}
	r.seg.seal()
	return r.seg, nil
}

// abort closes and removes the temp file, if any.
func (r *rewriter) abort() {
	if r.f != nil {
		r.f.Close()
		r.f = nil
	}
	os.Remove(r.tmp)
}

// swapSegments renames the synced rewrite tmp over path, the file of
// segs[0], removes the files of the other segs, and puts newSeg in the
// index in their place, if segs are still consecutive sealed segments of
// the log.
func (l *Log) swapSegments(segs []*segment, newSeg *segment, tmp, path string) error {
	return l.mutate(func() error { return l.swapSegmentsLocked(segs, newSeg, tmp, path) })
}

// swapSegmentsLocked is swapSegments. wmu and mu held, the log usable.
func (l *Log) swapSegmentsLocked(segs []*segment, newSeg *segment, tmp, path string) error {
	k := l.currentLocked(segs[0])
	if k < 0 || k+len(segs) > len(l.idx.segs)-1 {
		return l.segmentChanged(segs[0].first)
	}
	for i, seg := range segs {
		if l.idx.segs[k+i] != seg {
			return l.segmentChanged(seg.first)
		}
	}
	if err := l.dropClean(); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		// Nothing changed: the old file is in place.
		return fmt.Errorf("wal: rewrite segment %s: %w", path, err)
	}
	// The merged file holds every entry of segs now; the others' files go
	// after it (a crash in between leaves duplicates, which Open removes).
	for _, seg := range segs[1:] {
		if err := os.Remove(l.segPath(seg.first)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return l.failLocked("merge segments", err)
		}
	}
	idx := make([]*segment, 0, len(l.idx.segs)-len(segs)+1)
	idx = append(append(append(idx, l.idx.segs[:k]...), newSeg), l.idx.segs[k+len(segs):]...)
	l.idx.segs = idx
	// No stale copy of the old files may be read, or written back by
	// tidwall (its truncations rewrite files from its cached parse).
	for _, seg := range segs {
		l.readCache().dropSegment(l, seg.first)
	}
	if l.tl != nil {
		if len(segs) > 1 {
			l.tlStale = true // its list of files still has the removed ones
		}
		if err := l.tl.ClearCache(); err != nil {
			return l.failLocked("rewrite segment: clear tidwall cache", err)
		}
	}
	return nil
}

// removeRewriteTemps removes the temp files of segment rewrites a crash
// interrupted (the segment files are intact) and reports each as a Repair.
func removeRewriteTemps(dir string) ([]Repair, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var repairs []Repair
	for _, e := range ents {
		name := e.Name()
		if e.IsDir() || !strings.HasSuffix(name, rewriteSuffix) {
			continue
		}
		index, suffix, ok := parseSegmentName(strings.TrimSuffix(name, rewriteSuffix))
		if !ok || suffix != "" {
			continue
		}
		path := filepath.Join(dir, name)
		var size int64
		if fi, err := e.Info(); err == nil {
			size = fi.Size()
		}
		if err := os.Remove(path); err != nil {
			return nil, err
		}
		repairs = append(repairs, Repair{File: path, CutIndex: index, CutBytes: size, Reason: reasonRewriteLeftover})
	}
	if len(repairs) > 0 {
		if err := syncDir(dir); err != nil {
			return nil, err
		}
	}
	return repairs, nil
}

// Roll seals the active segment if it holds entries, so that the next
// Append starts a new segment file; a no-op on an empty active segment.
// The compaction cleaner rolls so that every entry it cleans lies in a
// sealed segment, and the broker rolls by age (Kafka's segment.ms).
//
// tidwall cycles only when a segment is full, so Roll closes the tidwall
// log (syncing the tail), creates the next, empty segment file (not
// synced: the first append to it syncs the directory, rollLocked) and
// leaves tidwall to reopen on the next use, which then writes to the new
// file. A crash after the file is created reopens with an empty tail, as
// after tidwall's own cycle; one before the file reached the disk, with
// the sealed segment as the tail, as before the roll.
func (l *Log) Roll() error {
	return l.mutate(l.rollLocked)
}

// rollLocked is Roll. wmu and mu held, the log usable.
func (l *Log) rollLocked() error {
	tail := l.idx.tail()
	if tail.next == tail.first {
		return nil
	}
	if err := l.dropClean(); err != nil {
		return err
	}
	if err := l.releaseLocked(); err != nil {
		return err
	}
	// The new file is not synced here: until an entry is written to it,
	// losing it in a crash loses nothing (the sealed segment ends the log
	// as before the roll). The append that writes the first entry syncs
	// the directory with its own sync, or its shared round does
	// (afterWrite); so a roll costs the tidwall close and a create, not
	// three fsyncs, and the roller keeps up with appends over many logs.
	f, err := createSegmentFile(l.dir, tail.next)
	if err == nil {
		err = f.Close()
	}
	if err != nil {
		// The file may exist: tidwall would write to it while the index
		// does not know it. Recover rescans the files.
		return l.failLocked("roll segment", err)
	}
	l.dirDue = true
	l.idx.cycle()
	return nil
}
