package wal

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"
)

// model is the obvious in-memory log that Log must agree with.
type model struct {
	first   uint64
	entries []Entry
	floor   int64 // NextOffset while there are no record entries
}

func (m *model) last() uint64 { return m.first + uint64(len(m.entries)) - 1 }

func (m *model) next() int64 {
	for i := len(m.entries) - 1; i >= 0; i-- {
		if m.entries[i].Kind.HasRecords() {
			return m.entries[i].LastOffset() + 1
		}
	}
	return m.floor
}

func (m *model) start() int64 {
	for _, e := range m.entries {
		if e.Kind.HasRecords() {
			return e.BaseOffset
		}
	}
	return m.next()
}

func (m *model) findOffset(o int64) (uint64, error) {
	if o >= m.next() {
		return 0, ErrOffsetNotFound
	}
	for i, e := range m.entries {
		if e.Kind.HasRecords() && e.LastOffset() >= o {
			return m.first + uint64(i), nil
		}
	}
	return 0, ErrOffsetNotFound
}

func (m *model) findTimestamp(ts int64) (uint64, error) {
	for i, e := range m.entries {
		if e.Kind.HasRecords() && e.MaxTimestamp >= ts {
			return m.first + uint64(i), nil
		}
	}
	return 0, ErrOffsetNotFound
}

func (m *model) truncateFront(index uint64) {
	if index <= m.first {
		return
	}
	next := m.next()
	m.entries = m.entries[index-m.first:]
	m.first = index
	m.floor = next
	if s := m.start(); s != next {
		m.floor = s
	}
}

// TestRandomizedAgainstModel drives a Log with seeded random appends,
// truncations, retention, resets and reopens, and after every step checks
// it against the model: Read, FirstIndex/LastIndex, StartOffset/NextOffset,
// FindOffset, FindTimestamp, and the segment files.
func TestRandomizedAgainstModel(t *testing.T) {
	for seed := uint64(1); seed <= 6; seed++ {
		t.Run(fmt.Sprint("seed=", seed), func(t *testing.T) { runModel(t, seed, 400) })
	}
}

func runModel(t *testing.T, seed uint64, steps int) {
	rng := rand.New(rand.NewPCG(seed, 7))
	dir := t.TempDir()
	opts := Options{
		SegmentSize:        []int{600, 2000, 5000}[seed%3],
		IndexIntervalBytes: []int{1, 300, 4096}[seed%3],
		Fsync:              FsyncNever,
		SegmentCacheSize:   1 + int(seed%2),
	}
	l := mustOpen(t, dir, opts)
	defer func() { l.Close() }()
	m := &model{first: 1}
	ts := int64(1_000_000)

	randEntry := func(off int64) Entry {
		e := Entry{Kind: KindData, Term: rng.Uint64N(5), Payload: make([]byte, rng.IntN(300))}
		for i := range e.Payload {
			e.Payload[i] = byte(rng.Uint32())
		}
		switch rng.IntN(10) {
		case 0:
			e.Kind = KindNoop
		case 1:
			e.Kind = KindConfChange
		case 2:
			e.Kind = KindMeta
		}
		if e.Kind.HasRecords() {
			e.BaseOffset = off
			e.LastOffsetDelta = int32(rng.IntN(5))
			ts += rng.Int64N(1000) - 300 // not monotonic
			e.MaxTimestamp = ts
		}
		return e
	}

	for step := 0; step < steps; step++ {
		var op string
		switch r := rng.IntN(100); {
		case r < 55:
			n := 1 + rng.IntN(6)
			batch := make([]Entry, n)
			off := m.next()
			for i := range batch {
				batch[i] = randEntry(off)
				if batch[i].Kind.HasRecords() {
					off = batch[i].LastOffset() + 1
				}
			}
			bad := rng.IntN(20) == 0
			if bad {
				for i := range batch {
					if batch[i].Kind.HasRecords() {
						batch[i].BaseOffset += 1 + rng.Int64N(3)
						break
					}
				}
			}
			op = fmt.Sprintf("append %d (bad=%v)", n, bad)
			first, err := l.Append(batch...)
			hasRecords := false
			for _, e := range batch {
				hasRecords = hasRecords || e.Kind.HasRecords()
			}
			if bad && hasRecords {
				if !errors.Is(err, ErrOutOfRange) {
					t.Fatalf("step %d %s: %v, want ErrOutOfRange", step, op, err)
				}
				break
			}
			if err != nil || first != m.last()+1 {
				t.Fatalf("step %d %s: first %d %v, want %d", step, op, first, err, m.last()+1)
			}
			m.entries = append(m.entries, batch...)
		case r < 65:
			index := m.first + uint64(rng.IntN(len(m.entries)+3)) - 1
			op = fmt.Sprintf("truncate front %d", index)
			err := l.TruncateFront(index)
			if index > m.last()+1 {
				if !errors.Is(err, ErrOutOfRange) {
					t.Fatalf("step %d %s: %v", step, op, err)
				}
				break
			}
			if err != nil {
				t.Fatalf("step %d %s: %v", step, op, err)
			}
			m.truncateFront(index)
		case r < 75:
			index := max(m.first+uint64(rng.IntN(len(m.entries)+3)), 2) - 2
			op = fmt.Sprintf("truncate back %d", index)
			err := l.TruncateBack(index)
			if index+1 < m.first {
				if !errors.Is(err, ErrOutOfRange) {
					t.Fatalf("step %d %s: %v", step, op, err)
				}
				break
			}
			if err != nil {
				t.Fatalf("step %d %s: %v", step, op, err)
			}
			if index < m.last() {
				m.entries = m.entries[:index+1-m.first]
			}
		case r < 82:
			op = "reopen"
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}
			l = mustOpen(t, dir, opts)
			if len(l.Repairs()) != 0 {
				t.Fatalf("step %d: clean reopen repaired %v", step, l.Repairs())
			}
		case r < 94:
			segs := l.Segments()
			var n int
			var err error
			switch rng.IntN(3) {
			case 0:
				n = rng.IntN(3)
				op = fmt.Sprintf("drop %d segments", n)
				err = l.DropSegments(n)
				n = min(n, len(segs)-1)
			case 1:
				var total int64
				for _, s := range segs {
					total += s.Bytes
				}
				limit := total - rng.Int64N(int64(opts.SegmentSize)*3)
				op = fmt.Sprintf("retain %d bytes", limit)
				var got int
				got, err = l.RetainBytes(limit)
				for n < len(segs)-1 && total-segs[n].Bytes >= limit {
					total -= segs[n].Bytes
					n++
				}
				if got != n {
					t.Fatalf("step %d %s: dropped %d, want %d of %+v", step, op, got, n, segs)
				}
			case 2:
				cutoff := ts - rng.Int64N(3000)
				op = fmt.Sprintf("retain age %d", cutoff)
				var got int
				got, err = l.RetainAge(cutoff)
				for n < len(segs)-1 && segs[n].MaxTimestamp < cutoff {
					n++
				}
				if got != n {
					t.Fatalf("step %d %s: dropped %d, want %d of %+v", step, op, got, n, segs)
				}
			}
			if err != nil {
				t.Fatalf("step %d %s: %v", step, op, err)
			}
			if n > 0 {
				m.truncateFront(segs[n].FirstIndex)
			}
		default:
			first := 1 + rng.Uint64N(1<<40)
			next := rng.Int64N(1 << 50)
			op = fmt.Sprintf("reset %d %d", first, next)
			if err := l.Reset(first, next); err != nil {
				t.Fatalf("step %d %s: %v", step, op, err)
			}
			m = &model{first: first, floor: next}
		}
		checkModel(t, rng, l, m, fmt.Sprintf("step %d (%s)", step, op))
	}
}

func checkModel(t *testing.T, rng *rand.Rand, l *Log, m *model, where string) {
	t.Helper()
	if l.FirstIndex() != m.first || l.LastIndex() != m.last() {
		t.Fatalf("%s: log [%d, %d], model [%d, %d]", where, l.FirstIndex(), l.LastIndex(), m.first, m.last())
	}
	if l.StartOffset() != m.start() || l.NextOffset() != m.next() {
		t.Fatalf("%s: offsets [%d, %d), model [%d, %d)", where, l.StartOffset(), l.NextOffset(), m.start(), m.next())
	}
	for _, i := range []uint64{m.first - 1, m.last() + 1} {
		if _, err := l.Read(i); !errors.Is(err, ErrNotFound) {
			t.Fatalf("%s: read %d outside the log: %v", where, i, err)
		}
	}
	for k := 0; k < 5 && len(m.entries) > 0; k++ {
		i := rng.IntN(len(m.entries))
		if e, err := l.Read(m.first + uint64(i)); err != nil || !sameEntry(e, m.entries[i]) {
			t.Fatalf("%s: read %d: %+v %v, want %+v", where, m.first+uint64(i), e, err, m.entries[i])
		}
	}
	start, next := m.start(), m.next()
	for k := 0; k < 8; k++ {
		o := start - 3 + rng.Int64N(next-start+6)
		got, err := l.FindOffset(o)
		want, werr := m.findOffset(o)
		if got != want || !errors.Is(err, werr) {
			t.Fatalf("%s: FindOffset(%d) = %d %v, model %d %v", where, o, got, err, want, werr)
		}
	}
	var lo, hi int64 = 1 << 62, -1 << 62
	for _, e := range m.entries {
		if e.Kind.HasRecords() {
			lo, hi = min(lo, e.MaxTimestamp), max(hi, e.MaxTimestamp)
		}
	}
	if hi >= lo {
		for k := 0; k < 8; k++ {
			ts := lo - 10 + rng.Int64N(hi-lo+20)
			got, err := l.FindTimestamp(ts)
			want, werr := m.findTimestamp(ts)
			if got != want || !errors.Is(err, werr) {
				t.Fatalf("%s: FindTimestamp(%d) = %d %v, model %d %v", where, ts, got, err, want, werr)
			}
		}
	}
	// Segment summaries agree with the entries they cover.
	for _, s := range l.Segments() {
		wantTs, wantFirst, wantNext := int64(-1<<63), int64(-1), int64(-1)
		for i := s.FirstIndex; i <= s.LastIndex; i++ {
			e := m.entries[i-m.first]
			if e.Kind.HasRecords() {
				if wantFirst < 0 {
					wantFirst = e.BaseOffset
				}
				wantNext = e.LastOffset() + 1
				wantTs = max(wantTs, e.MaxTimestamp)
			}
		}
		if wantFirst < 0 {
			wantTs = -1
		}
		if s.FirstOffset != wantFirst || s.NextOffset != wantNext || s.MaxTimestamp != wantTs {
			t.Fatalf("%s: segment %+v, want offsets [%d, %d) max ts %d", where, s, wantFirst, wantNext, wantTs)
		}
	}
	checkFiles(t, l)
}
