package wal

import (
	"fmt"
	"math/rand/v2"
	"testing"
)

// memLog is an in-memory list of headers for testing offsetIndex without files.
type memLog struct {
	first uint64
	hdrs  []header
	sizes []int64
	reads int // record entries read
}

func (m *memLog) read(i uint64) (header, int64, error) {
	if i < m.first || i >= m.first+uint64(len(m.hdrs)) {
		return header{}, 0, fmt.Errorf("read %d outside [%d, %d)", i, m.first, m.first+uint64(len(m.hdrs)))
	}
	if m.hdrs[i-m.first].kind.HasRecords() {
		m.reads++
	}
	return m.hdrs[i-m.first], m.sizes[i-m.first], nil
}

// bruteOffset is FindOffset by linear search.
func (m *memLog) bruteOffset(o int64) (uint64, bool) {
	for i, h := range m.hdrs {
		if h.kind.HasRecords() && h.lastOffset() >= o {
			return m.first + uint64(i), true
		}
	}
	return 0, false
}

func (m *memLog) bruteTimestamp(ts int64) (uint64, bool) {
	for i, h := range m.hdrs {
		if h.kind.HasRecords() && h.maxTimestamp >= ts {
			return m.first + uint64(i), true
		}
	}
	return 0, false
}

// TestIndexLookupsWithGaps checks the sparse index against linear search
// on logs with offset gaps (as after compaction), non-monotonic timestamps,
// entries without records, and several index intervals and segment sizes.
func TestIndexLookupsWithGaps(t *testing.T) {
	for seed := uint64(1); seed <= 12; seed++ {
		rng := rand.New(rand.NewPCG(seed, 99))
		interval := []int64{1, 64, 300, 4096}[seed%4]
		segSize := []int64{200, 1000, 5000, 1 << 20}[(seed/4)%4]
		m := &memLog{first: 1 + rng.Uint64N(1000)}
		x := &offsetIndex{interval: interval, segs: []*segment{newSegment(m.first)}}
		off := rng.Int64N(100)
		ts := int64(1000)
		for range 2000 {
			h := header{kind: KindData}
			switch rng.IntN(10) {
			case 0:
				h.kind = KindNoop
			case 1:
				h.kind = KindConfChange
			case 2:
				h.kind = KindMeta
			}
			if h.kind.HasRecords() {
				if rng.IntN(4) == 0 {
					off += 1 + rng.Int64N(50) // a gap
				}
				if seed%3 == 0 && rng.IntN(50) == 0 {
					off += 1 + rng.Int64N(1<<34) // a gap too wide for a point's uint32
				}
				h.baseOffset = off
				h.lastOffsetDelta = int32(rng.IntN(10))
				off = h.lastOffset() + 1
				ts += rng.Int64N(200) - 80
				h.maxTimestamp = ts
			}
			size := int64(frameOverhead + 1 + rng.IntN(200))
			m.hdrs = append(m.hdrs, h)
			m.sizes = append(m.sizes, size)
			x.add(&h, size, segSize)
		}
		if got, want := x.lastIndex(), m.first+uint64(len(m.hdrs))-1; got != want {
			t.Fatalf("seed %d: lastIndex %d, want %d", seed, got, want)
		}
		maxScan := 0
		for range 3000 {
			o := rng.Int64N(off + 20)
			m.reads = 0
			got, ok, err := x.findOffset(o, m.read)
			want, wok := m.bruteOffset(o)
			if err != nil || ok != wok || got != want {
				t.Fatalf("seed %d: findOffset(%d) = %d %v %v, want %d %v", seed, o, got, ok, err, want, wok)
			}
			maxScan = max(maxScan, m.reads)
			q := rng.Int64N(ts+400) - 200
			got, ok, err = x.findTimestamp(q, m.read)
			want, wok = m.bruteTimestamp(q)
			if err != nil || ok != wok || got != want {
				t.Fatalf("seed %d: findTimestamp(%d) = %d %v %v, want %d %v", seed, q, got, ok, err, want, wok)
			}
			i := m.first + rng.Uint64N(uint64(len(m.hdrs))+2)
			gotStart, err := x.firstRecordFrom(i, m.read)
			wantStart := int64(-1)
			for k := int(i - m.first); k < len(m.hdrs); k++ {
				if m.hdrs[k].kind.HasRecords() {
					wantStart = m.hdrs[k].baseOffset
					break
				}
			}
			if err != nil || gotStart != wantStart {
				t.Fatalf("seed %d: firstRecordFrom(%d) = %d %v, want %d", seed, i, gotStart, err, wantStart)
			}
		}
		// A lookup scans the record entries of at most one interval (plus
		// the one that crosses it); entries are at least frameOverhead+1 bytes.
		if limit := int(interval/(frameOverhead+1)) + 2; interval > 1 && seed%3 != 0 && maxScan > limit {
			t.Fatalf("seed %d: a lookup read %d headers, interval allows %d", seed, maxScan, limit)
		}
	}
}

func TestIndexCyclesLikeTidwall(t *testing.T) {
	// tidwall closes a segment once an entry brings it to SegmentSize or
	// more, and starts a batch in a new segment if the tail is over it.
	x := &offsetIndex{interval: 4096, segs: []*segment{newSegment(1)}}
	h := header{kind: KindNoop}
	if x.add(&h, 60, 100) || x.add(&h, 39, 100) {
		t.Fatal("cycled before reaching the segment size")
	}
	if !x.add(&h, 1, 100) {
		t.Fatal("did not cycle at exactly the segment size")
	}
	if len(x.segs) != 2 || x.segs[0].next != 4 || x.tail().first != 4 || x.tail().bytes != 0 {
		t.Fatalf("segments after cycle: %+v %+v", *x.segs[0], *x.tail())
	}
	// A tail over the size (after a TruncateBack into a full segment)
	// cycles before the next entry.
	x.segs = []*segment{{first: 1, next: 3, bytes: 101, firstOffset: -1, nextOffset: -1}}
	if !x.add(&h, 5, 100) || len(x.segs) != 2 || x.tail().first != 3 || x.tail().next != 4 {
		t.Fatalf("over-size tail not cycled: %d segments, tail %+v", len(x.segs), *x.tail())
	}
}
