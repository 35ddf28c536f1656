package wal

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"sort"
)

// VerifySealed reads the sealed segments whose index Open took from the
// clean-shutdown marker instead of reading them, oldest first, and checks
// each file against its index entry as the cleaner does before a rewrite
// (checkSegmentFile: every frame, the entry count, the size). Before
// reading a segment it calls pace with its size (a throttle; it may
// sleep), and stops, returning nil, if pace returns false (the caller is
// shutting down; that segment and the rest stay unread). A segment
// removed or rewritten meanwhile (retention, compaction) is skipped. It
// returns a *CorruptError for damage (the rest stays unread), nil when
// every segment checked or the log was closed. Files are read without the
// log's locks: appends, reads and the cleaner go on beside it.
func (l *Log) VerifySealed(pace func(bytes int64) bool) error {
	for {
		s := l.nextUnread()
		if s == nil {
			return nil
		}
		if pace != nil && !pace(s.bytes) {
			return nil // s stays unread
		}
		l.mu.Lock()
		if len(l.unread) > 0 && l.unread[0] == s {
			l.unread = l.unread[1:]
		}
		l.mu.Unlock()
		path := l.segPath(s.first)
		data, err := os.ReadFile(path)
		if !l.hasSegment(s) {
			continue // removed or replaced while it was read
		}
		if errors.Is(err, fs.ErrNotExist) {
			return &CorruptError{File: path, Index: s.first, Reason: "segment file missing"}
		}
		if err != nil {
			return fmt.Errorf("wal: verify %s: %w", path, err)
		}
		if err := checkSegmentFile(path, data, s); err != nil {
			return err
		}
	}
}

// nextUnread drops the unread segments that are no longer the log's
// (removed by retention, replaced by a rewrite) and returns the first
// still unread, or nil when none is left or the log is closed.
func (l *Log) nextUnread() *segment {
	l.mu.Lock()
	defer l.mu.Unlock()
	for len(l.unread) > 0 && !l.closed.Load() {
		if s := l.unread[0]; l.hasSegmentLocked(s) {
			return s
		}
		l.unread = l.unread[1:]
	}
	l.unread = nil
	return nil
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
	return l.hasSegmentLocked(s)
}

// hasSegmentLocked is hasSegment with mu held.
func (l *Log) hasSegmentLocked(s *segment) bool {
	segs := l.idx.segs
	i := sort.Search(len(segs), func(i int) bool { return segs[i].first >= s.first })
	return i < len(segs) && segs[i] == s
}
