package broker

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// The Broker's transaction calls, the API package kafka codes against
// (api.go lists them). A call about one transactional id runs on the table
// of the id's __transaction_state partition (txn_coordinator.go); what it
// does to the transaction is the state machine's (txn_machine.go,
// txn_table.go). The partition side (last stable offset, aborted index,
// markers, read_committed) is txn_partition.go.

// PeerCaller sends a request to another node's Kafka listener and returns
// its response (cluster mode: the transaction coordinator writes markers
// through each partition's leader, and a partition leader verifies a
// transactional write with the transaction's coordinator). Package kafka
// implements it; nil standalone, where every partition is local.
type PeerCaller interface {
	Call(ctx context.Context, node int32, req kmsg.Request) (kmsg.Response, error)
}

// TxnDescription is one transaction as DescribeTransactions reports it.
type TxnDescription = TxnMetadata

// codeErr turns a Kafka error code from the state machine into an error
// (nil for 0).
func txnCodeErr(code int16, format string, args ...any) error {
	if code == 0 {
		return nil
	}
	ke := kerr.ErrorForCode(code)
	return fmt.Errorf("%s: %w", fmt.Sprintf(format, args...), ke)
}

// txnCoord is the transaction coordinator, or an error while the broker
// closes.
func (b *Broker) txnCoord() (*txnCoordinator, error) {
	if b.txns == nil || b.closed.Load() {
		return nil, fmt.Errorf("transaction coordinator: %w: %w", kerr.CoordinatorNotAvailable, ErrClosed)
	}
	return b.txns, nil
}

// initTransactionalProducerID is InitProducerID for a transactional id:
// the coordinator gives the id a producer id and fences its earlier
// epochs (see TxnTable.InitProducerID).
func (b *Broker) initTransactionalProducerID(txnID string, timeoutMs int32, expectPID int64, expectEpoch int16) (int64, int16, error) {
	if txnID == "" {
		return -1, -1, fmt.Errorf("init producer id: empty transactional id: %w", kerr.InvalidRequest)
	}
	c, err := b.txnCoord()
	if err != nil {
		return -1, -1, err
	}
	var pid int64 = -1
	var epoch int16 = -1
	var code int16
	err = c.call(txnID, func(t *TxnTable, now time.Time) TxnOutput {
		var out TxnOutput
		pid, epoch, code, out = t.InitProducerID(now, txnID, timeoutMs, expectPID, expectEpoch, b.allocateProducerID)
		return out
	})
	if err != nil {
		return -1, -1, err
	}
	if err := txnCodeErr(code, "init producer id for %q", txnID); err != nil {
		return -1, -1, err
	}
	return pid, epoch, nil
}

// allocateProducerID hands out a producer id no producer ever had (ids are
// reserved in blocks in the metadata log).
func (b *Broker) allocateProducerID() (int64, error) {
	b.adminMu.Lock()
	defer b.adminMu.Unlock()
	if b.closed.Load() {
		return -1, ErrClosed
	}
	for b.nextProducerID >= b.producerIDEnd {
		if err := b.proposeLocked(metaRecord{Type: metaProducerIDBlock, Node: b.cfg.NodeID}); err != nil {
			return -1, fmt.Errorf("allocate producer id: %w", err)
		}
	}
	id := b.nextProducerID
	b.nextProducerID++
	return id, nil
}

// AddPartitionsToTxn adds partitions to the ongoing transaction of txnID
// (or, verifyOnly, checks that they are in it: KIP-890's verification by a
// partition leader). codes parallel parts.
func (b *Broker) AddPartitionsToTxn(txnID string, producerID int64, epoch int16, parts []TxnTopicPartition, verifyOnly bool) ([]int16, error) {
	c, err := b.txnCoord()
	if err != nil {
		return nil, err
	}
	if !verifyOnly {
		// Unknown topics and partitions are refused, the others not added
		// (Kafka answers them OPERATION_NOT_ATTEMPTED).
		codes := make([]int16, len(parts))
		bad := false
		for i, tp := range parts {
			if n, ok := b.partitionCount(tp.Topic); !ok || tp.Partition < 0 || tp.Partition >= n {
				codes[i], bad = kerr.UnknownTopicOrPartition.Code, true
			}
		}
		if bad {
			for i := range codes {
				if codes[i] == 0 {
					codes[i] = kerr.OperationNotAttempted.Code
				}
			}
			return codes, nil
		}
	}
	var codes []int16
	err = c.call(txnID, func(t *TxnTable, now time.Time) TxnOutput {
		var out TxnOutput
		codes, out = t.AddPartitions(now, txnID, producerID, epoch, parts, verifyOnly)
		return out
	})
	return codes, err
}

// partitionCount is a topic's partition count.
func (b *Broker) partitionCount(topic string) (int32, bool) {
	b.mu.RLock()
	defer b.mu.RUnlock()
	t := b.topics[topic]
	if t == nil {
		return 0, false
	}
	return t.meta.partitions, true
}

// AddOffsetsToTxn adds the group's __consumer_offsets partition to the
// transaction, so that its TxnOffsetCommit is committed or aborted with it.
func (b *Broker) AddOffsetsToTxn(txnID string, producerID int64, epoch int16, groupID string) error {
	c, err := b.txnCoord()
	if err != nil {
		return err
	}
	if groupID == "" {
		return fmt.Errorf("add offsets to transaction %q: empty group id: %w", txnID, kerr.InvalidGroupID)
	}
	n, ok := b.partitionCount(offsetsTopic)
	if !ok {
		return fmt.Errorf("add offsets to transaction %q: %s does not exist yet: %w", txnID, offsetsTopic, kerr.CoordinatorNotAvailable)
	}
	part := TxnTopicPartition{Topic: offsetsTopic, Partition: GroupOffsetsPartition(groupID, n)}
	var code int16
	err = c.call(txnID, func(t *TxnTable, now time.Time) TxnOutput {
		var out TxnOutput
		code, out = t.AddOffsets(now, txnID, producerID, epoch, part)
		return out
	})
	if err != nil {
		return err
	}
	return txnCodeErr(code, "add offsets of group %q to transaction %q", groupID, txnID)
}

// EndTxn commits or aborts the ongoing transaction of txnID: it returns
// once the decision is durable (the markers are written afterwards, as
// Kafka does). bumpEpoch is EndTxn v5+ (KIP-890 part 2, transaction
// version 2), which Kafka serves by the request's version alone: the
// coordinator bumps the producer's epoch with the decision (and, once the
// epoch runs out, gives it a new producer id) and the producer continues
// with nextPID and nextEpoch. Without bumpEpoch they are -1.
func (b *Broker) EndTxn(txnID string, producerID int64, epoch int16, commit, bumpEpoch bool) (nextPID int64, nextEpoch int16, err error) {
	c, err := b.txnCoord()
	if err != nil {
		return -1, -1, err
	}
	var code int16
	nextPID, nextEpoch = -1, -1
	err = c.call(txnID, func(t *TxnTable, now time.Time) TxnOutput {
		var out TxnOutput
		nextPID, nextEpoch, code, out = t.EndTxn(now, txnID, producerID, epoch, commit, bumpEpoch)
		return out
	})
	if err != nil {
		return -1, -1, err
	}
	what := "abort"
	if commit {
		what = "commit"
	}
	if err := txnCodeErr(code, "%s transaction %q", what, txnID); err != nil {
		return -1, -1, err
	}
	return nextPID, nextEpoch, nil
}

// DescribeTransactions describes the transactional ids this node
// coordinates; the others get NOT_COORDINATOR (or
// TRANSACTIONAL_ID_NOT_FOUND when unknown).
func (b *Broker) DescribeTransactions(txnID string) (TxnDescription, error) {
	c, err := b.txnCoord()
	if err != nil {
		return TxnDescription{}, err
	}
	var d TxnMetadata
	found := false
	err = c.call(txnID, func(t *TxnTable, _ time.Time) TxnOutput {
		d, found = t.Describe(txnID)
		return TxnOutput{}
	})
	if err != nil {
		return TxnDescription{}, err
	}
	if !found {
		return TxnDescription{}, fmt.Errorf("transactional id %q: %w", txnID, kerr.TransactionalIDNotFound)
	}
	return d, nil
}

// ListTransactions lists the transactions of the tables this node serves
// (Kafka's ListTransactions goes to every broker), filtered by states
// (Kafka's names, case-insensitive) and producer ids; empty filters match
// everything. Unknown state names match nothing, as Kafka.
func (b *Broker) ListTransactions(states []string, producerIDs []int64) ([]TxnMetadata, error) {
	c, err := b.txnCoord()
	if err != nil {
		return nil, err
	}
	var want []TxnState
	for _, s := range states {
		st, ok := ParseTxnState(s)
		if !ok {
			continue
		}
		want = append(want, st)
	}
	if len(states) > 0 && len(want) == 0 {
		return nil, nil
	}
	c.mu.Lock()
	parts := make([]*txnPartition, 0, len(c.parts))
	for _, tp := range c.parts {
		parts = append(parts, tp)
	}
	c.mu.Unlock()
	var out []TxnMetadata
	for _, tp := range parts {
		tp.mu.Lock()
		if tp.table != nil {
			out = append(out, tp.table.List(want, producerIDs)...)
		}
		tp.mu.Unlock()
	}
	slices.SortFunc(out, func(a, b TxnMetadata) int { return strings.Compare(a.TransactionalID, b.TransactionalID) })
	return out, nil
}

// TxnStats are the coordinator's counters and gauges (metrics).
type TxnStats struct {
	Open                      int   // transactions Ongoing or Prepare* in the tables this node serves
	Commits, Aborts, Timeouts int64 // since start
}

// TxnStats reports the coordinator's counters.
func (b *Broker) TxnStats() TxnStats {
	c := b.txns
	if c == nil {
		return TxnStats{}
	}
	st := TxnStats{Commits: c.commits.Load(), Aborts: c.aborts.Load(), Timeouts: c.timeouts.Load()}
	open, _ := b.ListTransactions([]string{"Ongoing", "PrepareCommit", "PrepareAbort", "PrepareEpochFence"}, nil)
	st.Open = len(open)
	return st
}

// writeMarkerVia writes a transaction marker into a partition through its
// leader: this node's own partition, or another node's WriteTxnMarkers.
// Not hosted here, the replicas are tried in order (the first is the
// preferred leader). coordinatorEpoch is the writing coordinator's epoch
// (see WriteTxnMarker).
func (b *Broker) writeMarkerVia(ctx context.Context, topic string, partition int32, producerID int64, epoch int16, commit bool, coordinatorEpoch int32) error {
	if leader, _, err := b.PartitionLeader(topic, partition); err == nil && leader == b.cfg.NodeID {
		return b.WriteTxnMarker(ctx, topic, partition, producerID, epoch, commit, coordinatorEpoch)
	}
	if _, ok := b.partitionCount(topic); !ok {
		return fmt.Errorf("marker for %s-%d: %w", topic, partition, kerr.UnknownTopicOrPartition)
	}
	candidates := b.leaderCandidates(topic, partition)
	if b.cfg.Peers == nil || len(candidates) == 0 {
		return fmt.Errorf("marker for %s-%d: no leader here: %w", topic, partition, kerr.NotLeaderForPartition)
	}
	var last error
	for _, node := range candidates {
		if node == b.cfg.NodeID {
			continue
		}
		err := b.remoteMarker(ctx, node, topic, partition, producerID, epoch, commit, coordinatorEpoch)
		if err == nil {
			return nil
		}
		last = err
		if !errors.Is(err, kerr.NotLeaderForPartition) {
			return err
		}
	}
	if last == nil {
		last = fmt.Errorf("marker for %s-%d: no leader known: %w", topic, partition, kerr.NotLeaderForPartition)
	}
	return last
}

// leaderCandidates are the nodes to ask for a partition's leader, most
// likely first: the leader this node knows (it hosts the partition), then
// the replicas in order (the first is the preferred leader), none twice.
func (b *Broker) leaderCandidates(topic string, partition int32) []int32 {
	var out []int32
	if leader, _, err := b.PartitionLeader(topic, partition); err == nil && leader >= 0 {
		out = append(out, leader)
	}
	for _, r := range b.PartitionReplicas(topic, partition) {
		if !slices.Contains(out, r) {
			out = append(out, r)
		}
	}
	return out
}

// remoteMarker sends one WriteTxnMarkers to node.
func (b *Broker) remoteMarker(ctx context.Context, node int32, topic string, partition int32, producerID int64, epoch int16, commit bool, coordinatorEpoch int32) error {
	req := kmsg.NewPtrWriteTxnMarkersRequest()
	m := kmsg.NewWriteTxnMarkersRequestMarker()
	m.ProducerID, m.ProducerEpoch, m.Committed, m.CoordinatorEpoch = producerID, epoch, commit, coordinatorEpoch
	t := kmsg.NewWriteTxnMarkersRequestMarkerTopic()
	t.Topic, t.Partitions = topic, []int32{partition}
	m.Topics = []kmsg.WriteTxnMarkersRequestMarkerTopic{t}
	req.Markers = []kmsg.WriteTxnMarkersRequestMarker{m}
	resp, err := b.cfg.Peers.Call(ctx, node, req)
	if err != nil {
		return fmt.Errorf("marker for %s-%d via node %d: %w: %w", topic, partition, node, kerr.NotLeaderForPartition, err)
	}
	r, ok := resp.(*kmsg.WriteTxnMarkersResponse)
	if !ok || len(r.Markers) != 1 || len(r.Markers[0].Topics) != 1 || len(r.Markers[0].Topics[0].Partitions) != 1 {
		return fmt.Errorf("marker for %s-%d via node %d: malformed response", topic, partition, node)
	}
	if code := r.Markers[0].Topics[0].Partitions[0].ErrorCode; code != 0 {
		return fmt.Errorf("marker for %s-%d via node %d: %w", topic, partition, node, kerr.ErrorForCode(code))
	}
	return nil
}

// verifyTxnPartition is KIP-890's check before a transactional write: the
// partition must have been added to the producer's ongoing transaction
// (else a late or stray batch would open a transaction nobody ends). The
// partition calls it only for a producer without an open transaction on
// it, so once per transaction per partition.
//
// A fenced producer (the coordinator's PRODUCER_FENCED) gets
// INVALID_PRODUCER_EPOCH, as Kafka's AddPartitionsToTxnManager answers
// the produce or TxnOffsetCommit it verifies: the error a partition gives
// a producer with an old epoch.
func (b *Broker) verifyTxnPartition(txnID string, producerID int64, epoch int16, topic string, partition int32) error {
	if b.cfg.NoTxnVerification {
		return nil
	}
	code, err := b.txnPartitionVia(txnID, producerID, epoch, topic, partition, true)
	if err != nil {
		return fmt.Errorf("verify %s-%d in transaction %q: %w", topic, partition, txnID, err)
	}
	if code == kerr.ProducerFenced.Code {
		code = kerr.InvalidProducerEpoch.Code
	}
	return txnCodeErr(code, "%s-%d is not in transaction %q", topic, partition, txnID)
}

// maxTxnVersion is the highest transaction.version this node serves and
// its default (Kafka 4.0's).
const maxTxnVersion = 2

// TxnVersion is the transaction.version feature level this node finalizes
// (Config.TxnVersion): 2, or 1 when the operator pinned the protocol
// before KIP-890 part 2.
func (b *Broker) TxnVersion() int16 { return b.cfg.TxnVersion }

// TxnWriteOp is how the first transactional write of a producer to a
// partition is checked with the transaction's coordinator, by the version
// of the request that carries it (Kafka's
// AddPartitionsToTxnManager.TransactionSupportedOperation).
type TxnWriteOp int8

const (
	// TxnVerifyOld is Produce v3-v10: the partition is verified (KIP-890
	// part 1) and one not in the transaction is INVALID_TXN_STATE, as
	// these clients do not know TRANSACTION_ABORTABLE.
	TxnVerifyOld TxnWriteOp = iota
	// TxnVerify is Produce v11: verified, TRANSACTION_ABORTABLE.
	TxnVerify
	// TxnAddPartition is Produce v12+ (KIP-890 part 2): with transaction
	// version 2 the partition leader adds the partition to the
	// transaction itself (the client sends no AddPartitionsToTxn), even
	// with verification turned off, as Kafka; with version 1 it is
	// TxnVerify.
	TxnAddPartition
)

// Kafka's add.partitions.to.txn.retry.backoff.ms and
// add.partitions.to.txn.retry.backoff.max.ms: a partition leader adding a
// partition to a transaction (TxnAddPartition) retries
// CONCURRENT_TRANSACTIONS, which is what it gets while the producer's last
// transaction's markers are written (its EndTxn bumped the epoch and the
// next transaction starts at once), rather than failing the produce,
// which is costly to retry.
const (
	txnAddRetryBackoff = 20 * time.Millisecond
	txnAddRetryMax     = 100 * time.Millisecond
)

// checkTxnWrite checks a producer's first transactional batch on a
// partition with the transaction's coordinator, as op says, and maps the
// coordinator's answer to what the producer expects (Kafka's
// AddPartitionsToTxnManager and ReplicaManager.handleProduceAppend):
// PRODUCER_FENCED is INVALID_PRODUCER_EPOCH; TRANSACTION_ABORTABLE is
// INVALID_TXN_STATE before Produce v11; a coordinator that did not answer
// (unavailable, elsewhere, loading) is NOT_ENOUGH_REPLICAS, which every
// client retries without a metadata refresh, and so is
// CONCURRENT_TRANSACTIONS except when adding (a v12+ client retries it).
func (b *Broker) checkTxnWrite(ctx context.Context, txnID string, producerID int64, epoch int16, topic string, partition int32, op TxnWriteOp) error {
	add := op == TxnAddPartition && b.cfg.TxnVersion >= maxTxnVersion
	if !add && b.cfg.NoTxnVerification {
		return nil
	}
	var code int16
	var err error
	if add {
		code, err = b.addTxnPartitionRetrying(ctx, txnID, producerID, epoch, topic, partition)
	} else {
		code, err = b.txnPartitionVia(txnID, producerID, epoch, topic, partition, true)
	}
	what := "verify"
	if add {
		what = "add"
	}
	if err != nil {
		return fmt.Errorf("%w: unable to %s %s-%d in transaction %q: %w", kerr.NotEnoughReplicas, what, topic, partition, txnID, err)
	}
	switch code {
	case 0:
		return nil
	case kerr.ProducerFenced.Code:
		code = kerr.InvalidProducerEpoch.Code
	case kerr.TransactionAbortable.Code:
		if op == TxnVerifyOld {
			code = kerr.InvalidTxnState.Code
		}
	case kerr.NotCoordinator.Code, kerr.CoordinatorLoadInProgress.Code, kerr.CoordinatorNotAvailable.Code, kerr.NetworkException.Code:
		return fmt.Errorf("%w: unable to %s %s-%d in transaction %q: %w", kerr.NotEnoughReplicas, what, topic, partition, txnID, kerr.ErrorForCode(code))
	case kerr.ConcurrentTransactions.Code:
		if !add {
			return fmt.Errorf("%w: unable to %s %s-%d in transaction %q: %w", kerr.NotEnoughReplicas, what, topic, partition, txnID, kerr.ErrorForCode(code))
		}
	}
	if code == kerr.InvalidTxnState.Code || code == kerr.TransactionAbortable.Code {
		return fmt.Errorf("%s-%d was not added to transaction %q: %w", topic, partition, txnID, kerr.ErrorForCode(code))
	}
	return txnCodeErr(code, "%s %s-%d in transaction %q", what, topic, partition, txnID)
}

// addTxnPartitionRetrying adds a partition to a transaction on its
// coordinator, retrying CONCURRENT_TRANSACTIONS every txnAddRetryBackoff
// for at most txnAddRetryMax (and not past ctx).
func (b *Broker) addTxnPartitionRetrying(ctx context.Context, txnID string, producerID int64, epoch int16, topic string, partition int32) (int16, error) {
	deadline := time.Now().Add(txnAddRetryMax)
	for {
		code, err := b.txnPartitionVia(txnID, producerID, epoch, topic, partition, false)
		if err != nil || code != kerr.ConcurrentTransactions.Code || time.Now().Add(txnAddRetryBackoff).After(deadline) {
			return code, err
		}
		t := time.NewTimer(txnAddRetryBackoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return code, nil
		case <-t.C:
		}
	}
}

// AddTxnOffsetsPartition is what a TxnOffsetCommit v5+ does before its
// offsets are written (KIP-890 part 2: "the TxnOffsetCommit request will
// also include the function for a AddOffsetsToTxn call"): the group's
// __consumer_offsets partition joins the producer's transaction on the
// transactional id's coordinator, this node or another, so that the
// transaction's marker reaches the offsets. It is a no-op for a partition
// already in the transaction (a client that sent AddOffsetsToTxn too).
//
// Errors are the ones the group coordinator's client gets in Kafka
// (AddPartitionsToTxnManager, then the group coordinator's
// normalisation): the transaction coordinator unavailable, elsewhere or
// loading is COORDINATOR_NOT_AVAILABLE (the client retries), and
// PRODUCER_FENCED is INVALID_PRODUCER_EPOCH; the others are the
// coordinator's (INVALID_PRODUCER_ID_MAPPING, CONCURRENT_TRANSACTIONS,
// INVALID_TXN_STATE, ...).
func (b *Broker) AddTxnOffsetsPartition(txnID string, producerID int64, epoch int16, groupID string) error {
	if groupID == "" {
		return fmt.Errorf("add the offsets of an empty group id to transaction %q: %w", txnID, kerr.InvalidGroupID)
	}
	n, ok := b.partitionCount(offsetsTopic)
	if !ok {
		return fmt.Errorf("add offsets of group %q to transaction %q: %s does not exist yet: %w", groupID, txnID, offsetsTopic, kerr.CoordinatorNotAvailable)
	}
	partition := GroupOffsetsPartition(groupID, n)
	code, err := b.addTxnPartitionRetrying(context.Background(), txnID, producerID, epoch, offsetsTopic, partition)
	if err != nil {
		return fmt.Errorf("add offsets of group %q to transaction %q: %w: %w", groupID, txnID, kerr.CoordinatorNotAvailable, err)
	}
	switch code {
	case kerr.NotCoordinator.Code, kerr.CoordinatorLoadInProgress.Code, kerr.CoordinatorNotAvailable.Code:
		code = kerr.CoordinatorNotAvailable.Code
	case kerr.ProducerFenced.Code:
		code = kerr.InvalidProducerEpoch.Code
	}
	return txnCodeErr(code, "add offsets of group %q to transaction %q", groupID, txnID)
}

// txnPartitionVia adds a partition to txnID's ongoing transaction or, with
// verifyOnly, checks that it is in it, on the id's coordinator: this
// node's table, or another node's AddPartitionsToTxn v4+. It returns the
// partition's code; an error means the coordinator did not answer it.
func (b *Broker) txnPartitionVia(txnID string, producerID int64, epoch int16, topic string, partition int32, verifyOnly bool) (int16, error) {
	part := []TxnTopicPartition{{Topic: topic, Partition: partition}}
	c, err := b.txnCoord()
	if err != nil {
		return 0, err
	}
	idx, err := c.partitionIndex(txnID)
	if err != nil {
		return 0, err
	}
	var codes []int16
	if leader, _, lerr := b.PartitionLeader(txnTopic, idx); lerr == nil && leader == b.cfg.NodeID {
		codes, err = b.AddPartitionsToTxn(txnID, producerID, epoch, part, verifyOnly)
	} else {
		codes, err = b.remoteAddPartition(txnID, producerID, epoch, topic, partition, idx, verifyOnly)
	}
	if err != nil {
		return 0, err
	}
	if len(codes) != 1 {
		return 0, fmt.Errorf("%d answers for one partition: %w", len(codes), kerr.UnknownServerError)
	}
	return codes[0], nil
}

// txnOpenOn reports whether a partition's view holds an open transaction
// of the producer at epoch (Kafka's UnifiedLog.hasOngoingTransaction).
// The epoch matters with transaction version 2: a producer whose EndTxn
// bumped its epoch writes its next transaction at the new one while the
// last one may still be open here, its marker not written yet; that
// batch must go to the coordinator (CONCURRENT_TRANSACTIONS until the
// markers are in), not join the transaction that is ending.
func (b *Broker) txnOpenOn(topic string, partition int32, producerID int64, epoch int16) bool {
	p, err := b.partition(topic, partition)
	if err != nil {
		return false
	}
	p.logMu.Lock()
	defer p.logMu.Unlock()
	_, open := p.txns.ongoing[producerID]
	return open && p.producers[producerID].Epoch == epoch
}

// remoteAddPartition asks the coordinator node of txnID (AddPartitionsToTxn
// v4+, the form between brokers) to add a partition or, verifyOnly, to
// check that it is in the transaction.
func (b *Broker) remoteAddPartition(txnID string, producerID int64, epoch int16, topic string, partition, idx int32, verifyOnly bool) ([]int16, error) {
	if b.cfg.Peers == nil {
		return nil, fmt.Errorf("no coordinator here: %w", kerr.NotCoordinator)
	}
	candidates := b.leaderCandidates(txnTopic, idx)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var last error = fmt.Errorf("no coordinator known: %w", kerr.CoordinatorNotAvailable)
	for _, node := range candidates {
		if node == b.cfg.NodeID {
			continue
		}
		req := kmsg.NewPtrAddPartitionsToTxnRequest()
		req.Version = 4
		tx := kmsg.NewAddPartitionsToTxnRequestTransaction()
		tx.TransactionalID, tx.ProducerID, tx.ProducerEpoch, tx.VerifyOnly = txnID, producerID, epoch, verifyOnly
		t := kmsg.NewAddPartitionsToTxnRequestTransactionTopic()
		t.Topic, t.Partitions = topic, []int32{partition}
		tx.Topics = []kmsg.AddPartitionsToTxnRequestTransactionTopic{t}
		req.Transactions = []kmsg.AddPartitionsToTxnRequestTransaction{tx}
		resp, err := b.cfg.Peers.Call(ctx, node, req)
		if err != nil {
			last = fmt.Errorf("node %d: %w: %w", node, kerr.CoordinatorNotAvailable, err)
			continue
		}
		r, ok := resp.(*kmsg.AddPartitionsToTxnResponse)
		if !ok {
			return nil, fmt.Errorf("node %d: malformed response", node)
		}
		if r.ErrorCode != 0 {
			last = fmt.Errorf("node %d: %w", node, kerr.ErrorForCode(r.ErrorCode))
			if r.ErrorCode == kerr.NotCoordinator.Code {
				continue
			}
			return nil, last
		}
		for _, rt := range r.Transactions {
			for _, top := range rt.Topics {
				for _, p := range top.Partitions {
					return []int16{p.ErrorCode}, nil
				}
			}
		}
		return nil, fmt.Errorf("node %d: malformed response", node)
	}
	return nil, last
}

// ProducerDescription is one active producer of a partition
// (DescribeProducers).
type ProducerDescription struct {
	ProducerID            int64
	ProducerEpoch         int16
	LastSequence          int32 // -1: no batch retained
	LastTimestamp         int64
	CurrentTxnStartOffset int64 // first offset of its open transaction, -1 none
}

// DescribeProducers lists a partition's producers, from its view of the log
// (the leader's).
func (b *Broker) DescribeProducers(topic string, partition int32) ([]ProducerDescription, error) {
	p, err := b.partition(topic, partition)
	if err != nil {
		return nil, err
	}
	if err := p.faultErr(); err != nil {
		return nil, err
	}
	if !p.leads() {
		return nil, p.notLeader()
	}
	p.logMu.Lock()
	defer p.logMu.Unlock()
	out := make([]ProducerDescription, 0, len(p.producers))
	for id, st := range p.producers {
		d := ProducerDescription{ProducerID: id, ProducerEpoch: st.Epoch, LastSequence: -1, LastTimestamp: st.LastTimestamp,
			CurrentTxnStartOffset: -1}
		if st.N > 0 {
			d.LastSequence = st.last().LastSeq
		}
		if first, open := p.txns.ongoing[id]; open {
			d.CurrentTxnStartOffset = first
		}
		out = append(out, d)
	}
	slices.SortFunc(out, func(a, b ProducerDescription) int { return cmp.Compare(a.ProducerID, b.ProducerID) })
	return out, nil
}
