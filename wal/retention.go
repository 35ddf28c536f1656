package wal

import "math"

// Retention is the one rule for which leading segments retention removes,
// a pure function of segment metadata: the broker applies it to every
// partition, standalone or replicated (where only committed segments may
// go), and RetainAge and RetainBytes are it with one limit each.
//
// Leading segments are dropped, oldest first, while one of the limits says
// so, never the active (tail) segment and never a segment reaching past
// Through. A segment goes by age when its max timestamp is below
// AgeCutoff: a segment without records (MaxTimestamp -1, only raft no-ops
// and conf changes) counts as expired, as Kafka treats a segment without a
// timestamp. It goes by size when what stays is still at least MaxBytes
// (Kafka's retention.bytes: the log never shrinks below it).
type Retention struct {
	AgeCutoff int64  // ms; math.MinInt64 for no time limit
	MaxBytes  int64  // -1 for no size limit
	Through   uint64 // last WAL index that may be dropped; math.MaxUint64 for all
}

// NoAgeLimit is Retention.AgeCutoff without a time limit.
const NoAgeLimit = math.MinInt64

// Count returns how many leading segments of segs (oldest first, as
// Segments returns them) the rule drops.
func (r Retention) Count(segs []SegmentInfo) int {
	var total int64
	for _, s := range segs {
		total += s.Bytes
	}
	n := 0
	for _, s := range segs {
		if s.Active || s.LastIndex > r.Through {
			break
		}
		byAge := r.AgeCutoff != NoAgeLimit && s.MaxTimestamp < r.AgeCutoff
		bySize := r.MaxBytes >= 0 && total-s.Bytes >= r.MaxBytes
		if !byAge && !bySize {
			break
		}
		total -= s.Bytes
		n++
	}
	return n
}

// Retain drops the leading segments the rule chooses, as one step, and
// returns how many it dropped.
func (l *Log) Retain(r Retention) (int, error) {
	return l.dropLeading(func() int {
		segs := make([]SegmentInfo, len(l.idx.segs))
		for i, s := range l.idx.segs {
			segs[i] = s.info(i == len(l.idx.segs)-1)
		}
		return r.Count(segs)
	})
}

// DropSegments removes the n oldest whole segments, never the active one.
func (l *Log) DropSegments(n int) error {
	_, err := l.dropLeading(func() int { return n })
	return err
}

// DropSegmentsBefore removes the leading whole segments that hold only
// entries before index (never the active one) and returns how many went.
// Unlike DropSegments it stays right when segments were merged
// (RewriteSegments) since the caller looked at them: a merged segment
// reaching index stays.
func (l *Log) DropSegmentsBefore(index uint64) (int, error) {
	return l.dropLeading(func() int {
		n := 0
		for n < len(l.idx.segs) && l.idx.segs[n].next <= index {
			n++
		}
		return n
	})
}

// dropLeading drops up to count() leading segments (never the active
// one), count choosing them from the index under the log's locks, and
// returns how many went.
func (l *Log) dropLeading(count func() int) (dropped int, err error) {
	err = l.mutate(func() error {
		n := min(count(), len(l.idx.segs)-1)
		if n <= 0 {
			return nil
		}
		if err := l.dropClean(); err != nil {
			return err
		}
		if err := l.moveFloor(l.idx.segs[n].first); err != nil {
			return err
		}
		dropped = n
		return l.dropLocked(n)
	})
	return dropped, err
}

// RetainBytes drops leading segments while the log without them is still
// at least maxBytes, as Kafka applies retention.bytes (Retention).
func (l *Log) RetainBytes(maxBytes int64) (int, error) {
	return l.Retain(Retention{AgeCutoff: NoAgeLimit, MaxBytes: max(maxBytes, 0), Through: math.MaxUint64})
}

// RetainAge drops leading segments whose MaxTimestamp < cutoff (ms), as
// Segments reports it (-1 for a segment without record entries); see
// Retention.
func (l *Log) RetainAge(cutoff int64) (int, error) {
	return l.Retain(Retention{AgeCutoff: cutoff, MaxBytes: -1, Through: math.MaxUint64})
}
