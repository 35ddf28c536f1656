package broker

import "time"

// GroupCompactor decides which __consumer_offsets records log compaction
// keeps, so that replay stays bounded: only the latest record of each key
// (Kafka's cleanup.policy=compact). A tombstone that is the latest for its
// key is kept for a while longer (delete.retention.ms, default 24h) so that
// a reader part-way through the log still sees the deletion; after that,
// nothing older for the key remains and the tombstone goes too.
//
// Use it in two passes over the segments being cleaned, in log order:
// Observe every record, then ask Keep for each. Offset commit keys of
// versions 0 and 1 that name the same partition are one key. Which
// segments to clean (never the active one) is the log's decision.
type GroupCompactor struct {
	deleteRetention time.Duration
	latest          map[string]int64
}

// NewGroupCompactor returns a compactor keeping latest tombstones for
// deleteRetention after their timestamp.
func NewGroupCompactor(deleteRetention time.Duration) *GroupCompactor {
	return &GroupCompactor{deleteRetention: deleteRetention, latest: make(map[string]int64)}
}

// Observe notes the record at offset with key (first pass).
func (c *GroupCompactor) Observe(offset int64, key []byte) {
	k := groupCanonicalKey(key)
	if cur, ok := c.latest[k]; !ok || offset > cur {
		c.latest[k] = offset
	}
}

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
