package broker

import (
	"fmt"

	"github.com/twmb/franz-go/pkg/kerr"
)

// compactPlanner is pass 1 of a cleaning (compaction-design 2b), I/O
// free: fed the records of the dirty range [cleanedUpTo, UpTo) in log
// order, it fills the offset map with each key's latest offset, which the
// keep rule (compactKeep) then applies to every entry below UpTo. It also
// notes each producer's last data batch, for compactEntry's producerLast.
//
// Which records go into the map:
//   - keyless records do not (the cleaner drops them, as Kafka's does on
//     a compacted topic);
//   - records of control batches do not (markers are kept whole), nor
//     those of aborted transactions (they are dropped, and must not hide
//     an older committed value of their key);
//   - tombstones do: they are their key's latest value until they expire.
//
// When the map is full the planner stops at the entry it was in: every
// record of the entries before it fits, so the caller lowers UpTo to that
// entry's base offset (stoppedAt). The map then also holds some keys of
// the entry it stopped in; they are offsets above the new UpTo, whose
// records stay, so using the map as is drops only records a later
// cleaning would drop too. A caller wanting a map of exactly the records
// below the new UpTo calls restart and feeds the entries below it again:
// they fit, since they did the first time.
type compactPlanner struct {
	m *offsetMap
	c *batchCompactor
	// producers maps each producer id to the last offset of its last data
	// batch seen. It grows with the distinct producers of the range, as
	// the partition's producer state does.
	producers map[int64]int64
	entryBase int64 // base offset of the entry being fed
	full      bool
	stopAt    int64
}

// planRecord is one record of the dirty range, with its batch's flags.
type planRecord struct {
	offset     int64
	key        []byte // nil: no key
	tombstone  bool
	timestamp  int64
	producerID int64
	control    bool // the record is a transaction marker
	aborted    bool // the batch belongs to an aborted transaction
}

// newCompactPlanner returns a planner filling m (emptied first) and
// reading batches with c.
func newCompactPlanner(m *offsetMap, c *batchCompactor) *compactPlanner {
	m.reset()
	return &compactPlanner{m: m, c: c, producers: make(map[int64]int64)}
}

// restart empties the map and the producers to plan again from the start
// of the dirty range.
func (p *compactPlanner) restart() {
	p.m.reset()
	clear(p.producers)
	p.full, p.stopAt, p.entryBase = false, 0, 0
}

// beginEntry starts the wal entry whose first offset is baseOffset. It
// reports false once the map is full: the rest of the range is not
// planned.
func (p *compactPlanner) beginEntry(baseOffset int64) bool {
	if p.full {
		return false
	}
	p.entryBase = baseOffset
	return true
}

// add puts one record into the map (if it belongs there, see
// compactPlanner). It reports false when the map is full: the record and
// everything after it are not planned, and stoppedAt names the entry to
// stop before.
func (p *compactPlanner) add(r *planRecord) bool {
	if p.full {
		return false
	}
	if r.key == nil || r.control || r.aborted {
		return true
	}
	if !p.m.put(r.key, r.offset) {
		p.full, p.stopAt = true, p.entryBase
		return false
	}
	return true
}

// noteBatch notes a data batch of producerID ending at lastOffset, so that
// producerLast knows each producer's last batch. Batches must come in log
// order. Control batches and batches without a producer id are ignored.
func (p *compactPlanner) noteBatch(producerID, lastOffset int64, control bool) {
	if producerID < 0 || control {
		return
	}
	p.producers[producerID] = lastOffset
}

// producerLast reports whether the data batch of producerID ending at
// lastOffset is the last one noted for the producer: compactEntry keeps
// it, empty if need be, so the producer's epoch and sequence survive.
func (p *compactPlanner) producerLast(producerID, lastOffset int64) bool {
	last, ok := p.producers[producerID]
	return ok && last == lastOffset
}

// stoppedAt returns the base offset of the entry at which the map filled,
// if it did: the caller's new UpTo.
func (p *compactPlanner) stoppedAt() (int64, bool) { return p.stopAt, p.full }

// addEntry feeds one wal data entry (baseOffset, its payload of batches)
// of the dirty range: its batches to noteBatch and its records to add.
// aborted reports whether producerID's transactional batch at baseOffset
// belongs to an aborted transaction (nil: none does). It reports false
// when the map filled in this entry (or before): stop, UpTo is
// stoppedAt. A damaged batch is an error naming it.
func (p *compactPlanner) addEntry(baseOffset int64, payload []byte, aborted func(producerID, baseOffset int64) bool) (bool, error) {
	if !p.beginEntry(baseOffset) {
		return false, nil
	}
	for pos := 0; pos < len(payload); {
		h, err := frameBatch(payload[pos:])
		if err != nil {
			return false, fmt.Errorf("entry at offset %d: batch at byte %d: %w", baseOffset, pos, err)
		}
		b := payload[pos : pos+h.size]
		base := batchBase(b)
		p.noteBatch(h.producerID, base+int64(h.lastOffsetDelta), h.control())
		rec := planRecord{producerID: h.producerID, control: h.control()}
		rec.aborted = h.transactional() && !h.control() && aborted != nil && aborted(h.producerID, base)
		if !rec.control && !rec.aborted {
			ok := true
			err := p.c.eachRecord(&h, b, func(r *compactRecord, offset, ts int64) bool {
				rec.offset, rec.key, rec.tombstone, rec.timestamp = offset, r.key, r.tombstone, ts
				ok = p.add(&rec)
				return ok
			})
			if err != nil {
				return false, fmt.Errorf("entry at offset %d: batch at byte %d (offset %d): %w", baseOffset, pos, base, err)
			}
			if !ok {
				return false, nil
			}
		}
		pos += h.size
	}
	if len(payload) == 0 {
		return false, fmt.Errorf("entry at offset %d without a batch: %w", baseOffset, kerr.CorruptMessage)
	}
	return true, nil
}

// noteEntry feeds the batch headers of one wal data entry below the dirty
// range (already cleaned) to noteBatch, so that a producer whose last
// batch lies there keeps it. Its records are not read.
func (p *compactPlanner) noteEntry(payload []byte) error {
	for pos := 0; pos < len(payload); {
		h, err := frameBatch(payload[pos:])
		if err != nil {
			return fmt.Errorf("batch at byte %d: %w", pos, err)
		}
		b := payload[pos : pos+h.size]
		p.noteBatch(h.producerID, batchBase(b)+int64(h.lastOffsetDelta), h.control())
		pos += h.size
	}
	return nil
}
