package wal

import (
	"math"
	"sort"
)

// The offset/time index is sparse, like Kafka's index.interval.bytes: every
// segment keeps one point for its first record entry and then one for the
// first record entry after every Options.IndexIntervalBytes of log (default
// 32 KiB). A point is 16 bytes, so the index costs about 0.5 KiB per MiB of
// log (0.5 bytes per 1 KiB entry; a 1 GiB log ≈ 0.5 MiB) plus ~100 bytes per
// segment. Lookups binary search the points and then scan forward over at
// most one interval of frame headers through a headerReader; no payload is
// parsed. The interval is larger than Kafka's 4 KiB because the scan reads
// headers from the segment buffer that tidwall loads for the Read that
// follows a lookup anyway, not from disk.
//
// Kafka offsets increase strictly from entry to entry but may have gaps, so
// everything here searches and nothing computes an offset from an index.
// MaxTimestamp need not be monotonic; each point keeps the maximum of its
// block so FindTimestamp can skip whole segments and blocks.

// point indexes one record entry and the block of entries up to the next point.
type point struct {
	rel   uint32 // WAL index - segment first index
	off   uint32 // Kafka base offset - segment firstOffset
	maxTs int64  // max MaxTimestamp of the record entries of the block
}

// segment summarizes one segment file: entries [first, next).
type segment struct {
	first, next uint64
	bytes       int64 // file size
	maxTs       int64 // math.MinInt64 when no record entries
	firstOffset int64 // -1 when no record entries
	nextOffset  int64 // -1 when no record entries
	firstTs     int64 // MaxTimestamp of the first record entry; -1 when none
	pointPos    int64 // byte position of the last point's entry
	points      []point
}

func newSegment(first uint64) *segment {
	return &segment{first: first, next: first, maxTs: math.MinInt64, firstOffset: -1, nextOffset: -1, firstTs: -1}
}

func (s *segment) hasRecords() bool { return s.firstOffset >= 0 }

// add appends the entry with header h, stored in size file bytes, at index s.next.
func (s *segment) add(h *header, size int64, interval int64) {
	if h.kind.HasRecords() {
		if s.firstOffset < 0 {
			s.firstOffset = h.baseOffset
			s.firstTs = h.maxTimestamp
		}
		s.nextOffset = h.lastOffset() + 1
		if h.maxTimestamp > s.maxTs {
			s.maxTs = h.maxTimestamp
		}
		n := len(s.points)
		// A point's offset is stored relative to the segment; in the
		// (compacted, huge-gap) case where it does not fit, the entry
		// joins the previous block instead.
		rel := h.baseOffset - s.firstOffset
		if n == 0 || s.bytes-s.pointPos >= interval && rel <= math.MaxUint32 {
			s.points = append(s.points, point{
				rel:   uint32(s.next - s.first),
				off:   uint32(rel),
				maxTs: h.maxTimestamp,
			})
			s.pointPos = s.bytes
		} else if h.maxTimestamp > s.points[n-1].maxTs {
			s.points[n-1].maxTs = h.maxTimestamp
		}
	}
	s.bytes += size
	s.next++
}

// seal trims the points slice once the segment is complete.
func (s *segment) seal() {
	if cap(s.points) > len(s.points) {
		s.points = append([]point(nil), s.points...)
	}
}

func (s *segment) info(active bool) SegmentInfo {
	si := SegmentInfo{
		FirstIndex:     s.first,
		LastIndex:      s.next - 1,
		Bytes:          s.bytes,
		MaxTimestamp:   -1,
		FirstTimestamp: s.firstTs,
		FirstOffset:    s.firstOffset,
		NextOffset:     s.nextOffset,
		Active:         active,
	}
	if s.hasRecords() {
		si.MaxTimestamp = s.maxTs
	}
	return si
}

// memSize estimates the heap bytes held by s.
func (s *segment) memSize() int { return 96 + 16*cap(s.points) }

func (s *segment) pointOffset(p int) int64 { return s.firstOffset + int64(s.points[p].off) }

// headerReader returns the header of the entry at index and its stored size.
type headerReader func(index uint64) (header, int64, error)

// rebuildSegment summarizes entries [first, next) from their headers.
func rebuildSegment(first, next uint64, interval int64, read headerReader) (*segment, error) {
	s := newSegment(first)
	for i := first; i < next; i++ {
		h, size, err := read(i)
		if err != nil {
			return nil, err
		}
		s.add(&h, size, interval)
	}
	return s, nil
}

// offsetIndex is the ordered list of segments of one log.
type offsetIndex struct {
	segs     []*segment // never empty; the last is the active tail
	interval int64
}

func (x *offsetIndex) tail() *segment     { return x.segs[len(x.segs)-1] }
func (x *offsetIndex) firstIndex() uint64 { return x.segs[0].first }
func (x *offsetIndex) lastIndex() uint64  { return x.tail().next - 1 }

// startOffset is the base offset of the first record entry, or -1.
func (x *offsetIndex) startOffset() int64 {
	for _, s := range x.segs {
		if s.hasRecords() {
			return s.firstOffset
		}
	}
	return -1
}

// nextOffset is one past the last record offset, or -1 without records.
func (x *offsetIndex) nextOffset() int64 {
	for i := len(x.segs) - 1; i >= 0; i-- {
		if x.segs[i].hasRecords() {
			return x.segs[i].nextOffset
		}
	}
	return -1
}

// segmentOf returns the position in segs of the segment holding index.
func (x *offsetIndex) segmentOf(index uint64) int {
	i := sort.Search(len(x.segs), func(i int) bool { return x.segs[i].first > index })
	return i - 1
}

// add appends an entry at lastIndex()+1, cycling segments with tidwall's
// rule (a batch starts a new segment when the tail is over segSize, and an
// entry that brings the tail to segSize or more closes it). It reports
// whether a segment file was created.
func (x *offsetIndex) add(h *header, size int64, segSize int64) (cycled bool) {
	t := x.tail()
	if t.bytes > segSize {
		t = x.cycle()
		cycled = true
	}
	t.add(h, size, x.interval)
	if t.bytes >= segSize {
		x.cycle()
		cycled = true
	}
	return cycled
}

func (x *offsetIndex) cycle() *segment {
	t := x.tail()
	t.seal()
	n := newSegment(t.next)
	x.segs = append(x.segs, n)
	return n
}

// findOffset returns the index of the record entry containing offset, or of
// the first record entry after it; ok is false when there is none.
func (x *offsetIndex) findOffset(offset int64, read headerReader) (uint64, bool, error) {
	for _, s := range x.segs {
		if !s.hasRecords() || s.nextOffset <= offset {
			continue
		}
		// The last point at or before offset; scanning starts there.
		p := sort.Search(len(s.points), func(i int) bool { return s.pointOffset(i) > offset }) - 1
		if p < 0 || s.pointOffset(p) == offset {
			return s.first + uint64(s.points[max(p, 0)].rel), true, nil
		}
		for i := s.first + uint64(s.points[p].rel); i < s.next; i++ {
			h, _, err := read(i)
			if err != nil {
				return 0, false, err
			}
			if h.kind.HasRecords() && h.lastOffset() >= offset {
				return i, true, nil
			}
		}
		return 0, false, errIndexInconsistent
	}
	return 0, false, nil
}

// findTimestamp returns the index of the first record entry whose
// MaxTimestamp >= ts; ok is false when there is none.
func (x *offsetIndex) findTimestamp(ts int64, read headerReader) (uint64, bool, error) {
	for _, s := range x.segs {
		if !s.hasRecords() || s.maxTs < ts {
			continue
		}
		for p := range s.points {
			if s.points[p].maxTs < ts {
				continue
			}
			end := s.next
			if p+1 < len(s.points) {
				end = s.first + uint64(s.points[p+1].rel)
			}
			for i := s.first + uint64(s.points[p].rel); i < end; i++ {
				h, _, err := read(i)
				if err != nil {
					return 0, false, err
				}
				if h.kind.HasRecords() && h.maxTimestamp >= ts {
					return i, true, nil
				}
			}
			return 0, false, errIndexInconsistent
		}
		return 0, false, errIndexInconsistent
	}
	return 0, false, nil
}

// firstRecordFrom returns the base offset of the first record entry at or
// after index, or -1.
func (x *offsetIndex) firstRecordFrom(index uint64, read headerReader) (int64, error) {
	for k := max(x.segmentOf(index), 0); k < len(x.segs); k++ {
		s := x.segs[k]
		if !s.hasRecords() {
			continue
		}
		from := max(index, s.first)
		// Points after from bound the scan; the entry may precede them.
		p := sort.Search(len(s.points), func(i int) bool { return s.first+uint64(s.points[i].rel) >= from })
		end := s.next
		if p < len(s.points) {
			end = s.first + uint64(s.points[p].rel)
		}
		for i := from; i < end; i++ {
			h, _, err := read(i)
			if err != nil {
				return 0, err
			}
			if h.kind.HasRecords() {
				return h.baseOffset, nil
			}
		}
		if p < len(s.points) {
			return s.pointOffset(p), nil
		}
	}
	return -1, nil
}

// memSize estimates the heap bytes held by the index.
func (x *offsetIndex) memSize() int {
	n := 24 + 8*cap(x.segs)
	for _, s := range x.segs {
		n += s.memSize()
	}
	return n
}
