package wal

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"sort"
)

// VerifySealed reads the sealed segments whose index Open took from the
// clean-shutdown marker instead of reading them, and checks every frame
// and the index against the file, oldest first. Before reading a segment
// it calls pace with the segment's size (a throttle; it may sleep), and
// stops, returning nil, if pace returns false (the caller is shutting
// down; the segments not read stay unread). A
// segment removed or rewritten meanwhile (retention, compaction) is
// skipped. It returns a *CorruptError for damage (the rest stays unread),
// nil when every segment checked or the log was closed; the segments it
// read are not read again. Reads take no lock of the log: appends, reads
// and the cleaner go on beside it.
func (l *Log) VerifySealed(pace func(bytes int64) bool) error {
	for {
		l.mu.Lock()
		if l.closed.Load() || len(l.unread) == 0 {
			l.unread = nil
			l.mu.Unlock()
			return nil
		}
		s := l.unread[0]
		interval := l.idx.interval
		l.mu.Unlock()
		if l.hasSegment(s) && pace != nil && !pace(s.bytes) {
			return nil // s stays unread
		}
		l.mu.Lock()
		if len(l.unread) > 0 && l.unread[0] == s {
			l.unread = l.unread[1:]
		}
		l.mu.Unlock()
		if !l.hasSegment(s) {
			continue
		}
		path := l.segPath(s.first)
		data, err := os.ReadFile(path)
		if !l.hasSegment(s) {
			continue // gone or replaced while it was read
		}
		if errors.Is(err, fs.ErrNotExist) {
			return &CorruptError{File: path, Index: s.first, Reason: "segment file missing"}
		}
		if err != nil {
			return fmt.Errorf("wal: verify %s: %w", path, err)
		}
		seg, stop := scanSegment(data, s.first, interval)
		if stop != nil {
			return &CorruptError{File: path, Index: stop.index, Pos: stop.pos, Reason: stop.reason}
		}
		if seg.next != s.next || seg.bytes != s.bytes || seg.firstOffset != s.firstOffset || seg.nextOffset != s.nextOffset {
			return &CorruptError{File: path, Index: s.first, Reason: fmt.Sprintf(
				"segment holds indexes [%d, %d) and offsets [%d, %d) in %d bytes; its index at the clean shutdown said [%d, %d), [%d, %d), %d bytes",
				seg.first, seg.next, seg.firstOffset, seg.nextOffset, seg.bytes, s.first, s.next, s.firstOffset, s.nextOffset, s.bytes)}
		}
	}
}

// Unverified is how many bytes of sealed segments VerifySealed has yet to
// read.
func (l *Log) Unverified() int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	var n int64
	for _, s := range l.unread {
		n += s.bytes
	}
	return n
}

// hasSegment reports whether s is still one of the log's index segments.
func (l *Log) hasSegment(s *segment) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	segs := l.idx.segs
	i := sort.Search(len(segs), func(i int) bool { return segs[i].first >= s.first })
	return i < len(segs) && segs[i] == s
}
