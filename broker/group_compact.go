package broker

import "time"

// GroupCompactor decides which __consumer_offsets records log compaction
// keeps, so that replay stays bounded: only the latest record of each key
// (Kafka's cleanup.policy=compact). A tombstone that is the latest for its
// key is kept for a while longer (delete.retention.ms, default 24h) so that
// a reader part-way through the log still sees the deletion; after that,
// nothing older for the key remains and the tombstone goes too.
//
// Transactions: "latest" means the newest record that takes effect. An
// offset commit of a transactional batch takes effect at its producer's
// commit marker, and only if no newer record of its key took effect
// before (the rule of group_txn.go); records of aborted transactions never
// do. Kept records are written as ordinary records, since their
// transactions are over: the caller compacts only when Open is 0 after the
// first pass (a transaction still open could not be resolved by a marker
// written after its records were rewritten), and drops the markers.
//
// Use it in two passes over the segments being cleaned, in log order:
// Observe, ObserveTxn or ObserveMarker every record, then ask Keep for
// each data record. Offset commit keys of versions 0 and 1 that name the
// same partition are one key. Which segments to clean (never the active
// one) is the log's decision.
type GroupCompactor struct {
	deleteRetention time.Duration
	latest          map[string]int64
	// pending holds, per producer with an open transaction, the newest
	// offset of each key it wrote.
	pending map[int64]map[string]int64
}

// NewGroupCompactor returns a compactor keeping latest tombstones for
// deleteRetention after their timestamp.
func NewGroupCompactor(deleteRetention time.Duration) *GroupCompactor {
	return &GroupCompactor{deleteRetention: deleteRetention, latest: make(map[string]int64)}
}

// Observe notes the record at offset with key (first pass).
func (c *GroupCompactor) Observe(offset int64, key []byte) {
	c.observe(offset, groupCanonicalKey(key))
}

func (c *GroupCompactor) observe(offset int64, k string) {
	if cur, ok := c.latest[k]; !ok || offset > cur {
		c.latest[k] = offset
	}
}

// ObserveTxn notes the record at offset of a transactional batch of
// producerID (first pass). As in replay, only offset commits wait for the
// marker; tombstones and other records take effect at once.
func (c *GroupCompactor) ObserveTxn(offset, producerID int64, key []byte, tombstone bool) {
	if tombstone || len(key) < 2 || key[0] != 0 || key[1] > 1 {
		c.Observe(offset, key)
		return
	}
	if c.pending == nil {
		c.pending = make(map[int64]map[string]int64)
	}
	m := c.pending[producerID]
	if m == nil {
		m = make(map[string]int64)
		c.pending[producerID] = m
	}
	m[groupCanonicalKey(key)] = offset
}

// ObserveMarker notes producerID's commit (commit) or abort marker (first
// pass): a commit makes the transaction's records take effect where no
// newer record of their key already has.
func (c *GroupCompactor) ObserveMarker(producerID int64, commit bool) {
	if commit {
		for k, offset := range c.pending[producerID] {
			c.observe(offset, k)
		}
	}
	delete(c.pending, producerID)
}

// Open returns how many transactions are still open after the records
// observed.
func (c *GroupCompactor) Open() int { return len(c.pending) }

// Keep reports whether the record at offset survives compaction (second
// pass): it must be the latest of its key and, if a tombstone (nil value),
// younger than the delete retention. Records without a key are dropped, as
// Kafka's cleaner does on a compacted topic.
func (c *GroupCompactor) Keep(offset int64, key []byte, tombstone bool, timestamp, now time.Time) bool {
	if len(key) == 0 {
		return false
	}
	latest, ok := c.latest[groupCanonicalKey(key)]
	if !ok || latest != offset {
		return false
	}
	return !tombstone || now.Sub(timestamp) < c.deleteRetention
}

// Keys returns how many distinct keys were observed.
func (c *GroupCompactor) Keys() int { return len(c.latest) }
