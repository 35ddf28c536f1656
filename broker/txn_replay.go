package broker

import (
	"errors"
	"time"
)

// TxnReplayer rebuilds a partition's transactional ids from its
// __transaction_state records, read in log order at start-up or when this
// node becomes the partition's leader (Kafka's loadTransactionMetadata):
// the last record of an id wins and a tombstone removes it.
type TxnReplayer struct {
	latest  map[string]*TxnMetadata
	skipped int
}

// NewTxnReplayer returns an empty replayer.
func NewTxnReplayer() *TxnReplayer {
	return &TxnReplayer{latest: make(map[string]*TxnMetadata)}
}

// Apply replays one record; value nil is a tombstone. A record of a key
// version this coordinator does not know is skipped (see Skipped), as
// Kafka does. A corrupt record is not applied and its error (wrapping
// ErrTxnRecordCorrupt) returned: the caller decides whether to stop or to
// log it and go on. key and value may be reused after Apply returns.
func (r *TxnReplayer) Apply(key, value []byte) error {
	id, m, err := DecodeTxnRecord(key, value)
	switch {
	case errors.Is(err, ErrTxnRecordUnknown):
		r.skipped++
		return nil
	case err != nil:
		return err
	case m == nil:
		delete(r.latest, id)
	default:
		r.latest[id] = m
	}
	return nil
}

// Skipped returns how many records were skipped as unknown types.
func (r *TxnReplayer) Skipped() int { return r.skipped }

// Table builds the TxnTable and empties the replayer. Deadlines are
// derived from the records (timeouts from StartMs, expirations from
// LastUpdateMs) and fire on the table's first call; transactions in
// Prepare* are listed by PendingMarkers.
func (r *TxnReplayer) Table(cfg TxnConfig) *TxnTable {
	t := NewTxnTable(cfg)
	for id, m := range r.latest {
		e := &txnmEntry{m: *m, index: -1}
		t.entries[id] = e
		t.schedule(e)
	}
	r.latest = make(map[string]*TxnMetadata)
	return t
}

// TxnCompactor decides which __transaction_state records log compaction
// keeps, so that replay stays bounded: only the latest record of each key
// (Kafka's cleanup.policy=compact), and a latest tombstone only until it is
// delete.retention.ms old, so that a reader part-way through the log still
// sees the removal. Use it in two passes over the segments being cleaned,
// in log order: Observe every record, then ask Keep for each. Which
// segments to clean (never the active one) is the log's decision.
type TxnCompactor struct {
	deleteRetention time.Duration
	latest          map[string]int64
}

// NewTxnCompactor returns a compactor keeping latest tombstones for
// deleteRetention after their timestamp.
func NewTxnCompactor(deleteRetention time.Duration) *TxnCompactor {
	return &TxnCompactor{deleteRetention: deleteRetention, latest: make(map[string]int64)}
}

// Observe notes the record at offset with key (first pass).
func (c *TxnCompactor) Observe(offset int64, key []byte) {
	if cur, ok := c.latest[string(key)]; !ok || offset > cur {
		c.latest[string(key)] = offset
	}
}

// Keep reports whether the record at offset survives compaction (second
// pass): it must be the latest of its key and, if a tombstone, younger
// than the delete retention. Records without a key are dropped, as Kafka's
// cleaner does on a compacted topic.
func (c *TxnCompactor) Keep(offset int64, key []byte, tombstone bool, timestamp, now time.Time) bool {
	if len(key) == 0 {
		return false
	}
	latest, ok := c.latest[string(key)]
	if !ok || latest != offset {
		return false
	}
	return !tombstone || now.Sub(timestamp) < c.deleteRetention
}

// Keys returns how many distinct keys were observed.
func (c *TxnCompactor) Keys() int { return len(c.latest) }
