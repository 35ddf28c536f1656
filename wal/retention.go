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
	l.wmu.Lock()
	defer l.wmu.Unlock()
	l.mu.Lock()
	defer l.mu.Unlock()
	segs := make([]SegmentInfo, len(l.idx.segs))
	for i, s := range l.idx.segs {
		segs[i] = s.info(i == len(l.idx.segs)-1)
	}
	return l.dropLeading(r.Count(segs))
}
