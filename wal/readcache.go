package wal

import (
	"encoding/binary"
	"fmt"
	"os"
	"sync"
)

// Reads of sealed segments (every segment but the tail) do not go through
// tidwall: a sealed segment file is read whole, every frame's checksum is
// verified once, and the verified copy is kept in a ReadCache shared by the
// logs that use it. Reads served from the cache check no checksum: the bytes
// are the ones verified when they came off the disk, and nothing writes to
// them. A frame that fails the check is never served: its reads fail with a
// *CorruptError, as do those of every entry after a break in the framing,
// while the entries that checked stay readable.
//
// The tail segment is read through tidwall, which holds it in memory.
// Entries appended through this tidwall instance came from memory and are
// trusted; the part of the tail that tidwall loaded from disk (when it was
// opened, or rewrote the tail on truncation) is verified on the first read
// that reaches it (see (*Log).readTail).

// DefaultReadCacheBytes is the budget of the cache shared by logs opened
// without Options.ReadCache.
const DefaultReadCacheBytes = 256 << 20

// ReadCache holds verified copies of sealed segments for any number of logs,
// least recently used first out once their bytes exceed the budget. The
// segment each log read last is kept whatever the budget (as tidwall kept
// one segment per log), so consumers of many logs reading in turn never
// evict each other's current segment; a log's copies go when it is
// released for idleness or closed. Payloads handed out by Read keep their
// segment's buffer alive after eviction.
type ReadCache struct {
	mu     sync.Mutex
	budget int64
	used   int64
	logs   map[*Log]*logSegs
	head   sealedSeg // sentinel of the LRU ring: head.next is the most recent
	loads  int64     // segments loaded (for tests and benchmarks)
}

// logSegs are one log's cached segments and the one it read last.
type logSegs struct {
	segs map[uint64]*sealedSeg
	last *sealedSeg
}

// NewReadCache returns a cache holding up to budget bytes of segments
// (at least one segment whatever the budget).
func NewReadCache(budget int64) *ReadCache {
	c := &ReadCache{budget: budget, logs: make(map[*Log]*logSegs)}
	c.head.prev, c.head.next = &c.head, &c.head
	return c
}

var defaultReadCache = NewReadCache(DefaultReadCacheBytes)

// Bytes is the size of the segments the cache holds.
func (c *ReadCache) Bytes() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.used
}

// sealedSeg is the verified content of one sealed segment file.
type sealedSeg struct {
	log   *Log
	path  string
	first uint64
	buf   []byte   // the file
	ends  []uint32 // ends[i]: end of entry first+i in buf; entry i starts at ends[i-1] (0 for i == 0)
	// Damage: the entries whose frames did not check, and where the
	// framing broke (entries from first+len(ends) on cannot be located).
	bad        map[uint64]string
	stopReason string
	prev, next *sealedSeg
}

// frame returns the frame of entry index, or a *CorruptError if it did
// not check.
func (s *sealedSeg) frame(index uint64) ([]byte, error) {
	i := index - s.first
	if i >= uint64(len(s.ends)) {
		pos := int64(0)
		if len(s.ends) > 0 {
			pos = int64(s.ends[len(s.ends)-1])
		}
		return nil, &CorruptError{File: s.path, Index: s.first + uint64(len(s.ends)), Pos: pos, Reason: s.stopReason}
	}
	start := uint32(0)
	if i > 0 {
		start = s.ends[i-1]
	}
	if reason, bad := s.bad[index]; bad {
		return nil, &CorruptError{File: s.path, Index: index, Pos: int64(start), Reason: reason}
	}
	entry := s.buf[start:s.ends[i]]
	_, n := binary.Uvarint(entry) // validated at load
	return entry[n:], nil
}

func (c *ReadCache) get(l *Log, first uint64) *sealedSeg {
	c.mu.Lock()
	defer c.mu.Unlock()
	ls := c.logs[l]
	if ls == nil {
		return nil
	}
	s := ls.segs[first]
	if s != nil && ls.last != s {
		ls.last = s
		c.unlink(s)
		c.pushFront(s)
	}
	return s
}

func (c *ReadCache) put(s *sealedSeg) {
	c.mu.Lock()
	defer c.mu.Unlock()
	ls := c.logs[s.log]
	if ls == nil {
		ls = &logSegs{segs: make(map[uint64]*sealedSeg)}
		c.logs[s.log] = ls
	}
	if old := ls.segs[s.first]; old != nil {
		c.remove(old)
	}
	ls.segs[s.first] = s
	ls.last = s
	c.pushFront(s)
	c.used += int64(len(s.buf))
	c.loads++
	// Least recently used first, sparing each log's last read segment.
	for v := c.head.prev; c.used > c.budget && v != &c.head; {
		prev := v.prev
		if c.logs[v.log].last != v {
			c.remove(v)
		}
		v = prev
	}
}

// drop forgets every segment of l.
func (c *ReadCache) drop(l *Log) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if ls := c.logs[l]; ls != nil {
		for _, s := range ls.segs {
			c.unlink(s)
			c.used -= int64(len(s.buf))
		}
	}
	delete(c.logs, l)
}

// dropSegment forgets l's copy of the segment starting at first (its file
// was rewritten).
func (c *ReadCache) dropSegment(l *Log, first uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if ls := c.logs[l]; ls != nil {
		if s := ls.segs[first]; s != nil {
			c.remove(s)
		}
	}
}

// remove unlinks s and forgets it; never the log's last read. c.mu held.
func (c *ReadCache) remove(s *sealedSeg) {
	c.unlink(s)
	c.used -= int64(len(s.buf))
	ls := c.logs[s.log]
	delete(ls.segs, s.first)
	if ls.last == s {
		ls.last = nil
	}
	if len(ls.segs) == 0 {
		delete(c.logs, s.log)
	}
}

func (c *ReadCache) unlink(s *sealedSeg) {
	s.prev.next, s.next.prev = s.next, s.prev
	s.prev, s.next = nil, nil
}

func (c *ReadCache) pushFront(s *sealedSeg) {
	s.prev, s.next = &c.head, c.head.next
	c.head.next.prev = s
	c.head.next = s
}

// readCache is the cache l uses.
func (l *Log) readCache() *ReadCache {
	if l.opts.ReadCache != nil {
		return l.opts.ReadCache
	}
	return defaultReadCache
}

// readSealed returns the frame at index, which lies in the sealed segment
// seg, from the read cache, loading and verifying the segment file if it is
// not cached. mu held.
func (l *Log) readSealed(seg *segment, index uint64) ([]byte, error) {
	c := l.readCache()
	s := c.get(l, seg.first)
	if s == nil {
		var err error
		if s, err = l.loadSealed(seg); err != nil {
			return nil, err
		}
		c.put(s)
	}
	return s.frame(index)
}

// loadSealed reads the file of the sealed segment seg and verifies every
// frame. mu held.
func (l *Log) loadSealed(seg *segment) (*sealedSeg, error) {
	path := l.segPath(seg.first)
	buf, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("wal: read %s: %w", path, err)
	}
	n := seg.next - seg.first
	s := &sealedSeg{log: l, path: path, first: seg.first, buf: buf, ends: make([]uint32, 0, n)}
	pos := 0
	for i := uint64(0); i < n; i++ {
		size, reason := checkEntry(buf[pos:])
		if size == 0 {
			s.stopReason = reason
			return s, nil
		}
		if reason != "" {
			if s.bad == nil {
				s.bad = make(map[uint64]string)
			}
			s.bad[seg.first+i] = reason
		}
		pos += size
		s.ends = append(s.ends, uint32(pos))
	}
	if pos != len(buf) {
		// The index and the file disagree: serve none of it.
		s.ends, s.stopReason = s.ends[:0], fmt.Sprintf("segment file holds %d bytes after its %d entries", len(buf)-pos, n)
	}
	return s, nil
}

// checkEntry checks the entry at the start of b. It returns its stored size
// and, if its frame is bad, why; size 0 if the entry cannot be delimited.
func checkEntry(b []byte) (int, string) {
	l, n := binary.Uvarint(b)
	if n <= 0 || l > uint64(len(b)-n) {
		if len(b) == 0 {
			return 0, "segment file ends early"
		}
		return 0, reasonTorn
	}
	frame := b[n : n+int(l)]
	if _, err := decodeHeader(frame); err != nil {
		return n + int(l), reasonBadFrame
	}
	if err := checkFrame(frame); err != nil {
		return n + int(l), reasonChecksum
	}
	return n + int(l), ""
}

// readTail returns the frame at index in the tail segment from tidwall,
// whose copy of the tail holds what this instance appended (trusted: it
// never left memory) after what it loaded from disk when it opened or
// rewrote the tail (entries before l.trustFrom). The loaded part is
// verified, all of it, by the first read that reaches it. mu held.
func (l *Log) readTail(index uint64) ([]byte, error) {
	data, err := l.readRaw(index)
	if err != nil || index >= l.trustFrom {
		return data, err
	}
	if err := l.verifyTail(); err != nil {
		// Serve nothing unverified: check this frame alone, so a
		// damaged entry does not make the good ones unreadable.
		if err := checkFrame(data); err != nil {
			return nil, l.corruptAt(index, err)
		}
		return data, nil
	}
	return data, nil
}

// verifyTail checks the frames of the tail loaded from disk and, if they
// are all good, trusts the whole tail. mu held.
func (l *Log) verifyTail() error {
	for i := max(l.idx.tail().first, l.idx.firstIndex()); i < l.trustFrom; i++ {
		data, err := l.readRaw(i)
		if err != nil {
			return err
		}
		if err := checkFrame(data); err != nil {
			return l.corruptAt(i, err)
		}
	}
	l.trustFrom = 0
	return nil
}

// untrustTail marks the tail tidwall holds as loaded from disk, after
// tidwall (re)opened or rewrote it. mu held.
func (l *Log) untrustTail() { l.trustFrom = l.idx.lastIndex() + 1 }
