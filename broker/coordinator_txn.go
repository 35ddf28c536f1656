package broker

import (
	"fmt"

	"github.com/twmb/franz-go/pkg/kerr"
)

// The group coordinator's side of transactions: how a TxnOffsetCommit's
// records are written (a transactional batch of the producer, see
// coordinator_log.go) and how a transaction marker written to a
// __consumer_offsets partition reaches the partition's groups
// (txnMarkerWritten). What the markers do to the groups is the state
// machine's business (group_txn.go).

// txnMarkerWritten applies a transaction marker that landed in
// __consumer_offsets partition `partition` on this node: the pending
// offsets producerID's transaction wrote to that partition's groups are
// materialized (commit) or dropped. The marker writer calls it once the
// marker is durable, and before the transaction coordinator completes the
// transaction (MarkersWritten): the producer must not start another
// transaction whose offsets this marker could be taken for.
//
// A partition this node does not serve now needs nothing: whoever loads
// it next replays the marker from the log. Calling it again for the same
// marker, or after a load that replayed it, changes nothing.
func (c *groupCoordinator) txnMarkerWritten(partition int32, producerID int64, commit bool) {
	if c == nil {
		return
	}
	parts := c.partitions()
	if partition < 0 || int(partition) >= len(parts) {
		return
	}
	gp := parts[partition]
	gp.mu.Lock()
	defer gp.mu.Unlock()
	if !gp.active() {
		return
	}
	gp.table.CompleteTxn(producerID, commit)
	// Compaction waited for the open transactions (coordinator_log.go).
	if !gp.table.HasOpenTxns() {
		gp.maybeCompact()
	}
}

// groupTxnSequence is the base sequence that the partition's producer
// check accepts for the next transactional batch of producerID at epoch.
//
// Kafka writes the coordinator's transactional batches with sequence 0 and
// skips the sequence check for them (AppendOrigin.COORDINATOR), keeping
// only the epoch check. Chronik's append path checks every batch with a
// producer id alike, so the coordinator continues the producer's sequence
// on this partition: 0 for a producer it does not know or at a newer
// epoch, the next sequence at the same epoch. The coordinator is the only
// writer of data batches to __consumer_offsets and holds the table's mutex
// from here to the append, so nothing moves the sequence in between. An
// epoch older than the partition's is INVALID_PRODUCER_EPOCH, as Kafka's
// ProducerAppendInfo.checkProducerEpoch answers a coordinator's write.
func (p *partition) groupTxnSequence(producerID int64, epoch int16) (int32, error) {
	p.logMu.Lock()
	st, known := p.producers[producerID]
	p.logMu.Unlock()
	switch {
	case !known:
		return 0, nil
	case epoch < st.Epoch:
		return 0, fmt.Errorf("producer %d epoch %d is older than %d on %s-%d: %w", producerID, epoch, st.Epoch, p.topic.name, p.index, kerr.InvalidProducerEpoch)
	case epoch > st.Epoch || st.N == 0:
		return 0, nil
	}
	return incrementSequence(st.last().LastSeq, 1), nil
}
