package broker

// The transaction coordinator's state machine: Kafka's TransactionCoordinator
// and TransactionMetadata, written like the group coordinator (group.go):
// deterministic types that take requests and return decisions, with no
// clocks, goroutines, timers, sockets or files inside.
//
// One TxnTable holds the transactional ids of one __transaction_state
// partition. Each call carries `now`; before handling its input a call fires
// every deadline that is due at `now` (a transaction open past its timeout
// is aborted, an id idle past transactional.id.expiration.ms is removed), so
// the outcome does not depend on how often the caller ticks; Tick(now) does
// only that firing and NextDeadline tells the caller when to call it next.
//
// The output contract, like the group's:
//
//  1. append out.Records to the id's __transaction_state partition and wait
//     until they are durable (committed, in cluster mode);
//  2. then answer the caller;
//  3. then write out.Markers: for each TxnMarkers, a COMMIT or ABORT control
//     batch with its producer id and epoch into each of its partitions (none
//     for an empty transaction);
//  4. once every partition of a TxnMarkers has its marker durably, call
//     MarkersWritten and append its records (step 1 again).
//
// State is applied in memory when a call returns, before its records are
// durable. If an append fails, the caller must not answer with success and
// must drop the table and rebuild it by replay (TxnReplayer), exactly as a
// coordinator that lost leadership does; a rebuilt table lists the
// transactions whose markers are still to be written in PendingMarkers.
// The caller serialises calls per TxnTable; nothing here is safe for
// concurrent use. Strings passed in are kept as they are, so decode
// requests with kmsg's ReadFrom, not UnsafeReadFrom.
//
// The rules are Kafka 4.0's (TransactionCoordinator.scala,
// TransactionMetadata): every check, transition and error code below names
// the Kafka rule it follows. Error codes are the coordinator's; the wire
// handlers map PRODUCER_FENCED to INVALID_PRODUCER_EPOCH for the request
// versions that predate it (InitProducerId < 4, AddPartitionsToTxn < 2,
// AddOffsetsToTxn < 2, EndTxn < 2), as KafkaApis does, and a partition
// leader verifying a produce maps TRANSACTION_ABORTABLE to INVALID_TXN_STATE
// for producers too old to know it and PRODUCER_FENCED to
// INVALID_PRODUCER_EPOCH (AddPartitionsToTxnManager).
//
// Server-side aborts (InitProducerId fencing an open transaction, a
// transaction past its timeout) follow Kafka 4.0 with transaction.version 2,
// its default: the epoch is bumped once to fence the producer and once more
// by the abort itself, so that no request of the fenced producer can pass
// for a retry of it.

import (
	"math"
	"slices"
	"strings"
	"time"
)

// TxnState is a transactional id's state, with Kafka's ids (the value of
// the state field in __transaction_state records).
type TxnState int8

const (
	TxnEmpty             TxnState = 0
	TxnOngoing           TxnState = 1
	TxnPrepareCommit     TxnState = 2
	TxnPrepareAbort      TxnState = 3
	TxnCompleteCommit    TxnState = 4
	TxnCompleteAbort     TxnState = 5
	TxnDead              TxnState = 6
	TxnPrepareEpochFence TxnState = 7
)

// String returns Kafka's name of the state, as DescribeTransactions and
// ListTransactions report it.
func (s TxnState) String() string {
	switch s {
	case TxnEmpty:
		return "Empty"
	case TxnOngoing:
		return "Ongoing"
	case TxnPrepareCommit:
		return "PrepareCommit"
	case TxnPrepareAbort:
		return "PrepareAbort"
	case TxnCompleteCommit:
		return "CompleteCommit"
	case TxnCompleteAbort:
		return "CompleteAbort"
	case TxnDead:
		return "Dead"
	case TxnPrepareEpochFence:
		return "PrepareEpochFence"
	}
	return "Unknown"
}

// ParseTxnState returns the state with Kafka's name s (ListTransactions
// state filters); ok is false for an unknown name.
func ParseTxnState(s string) (TxnState, bool) {
	for st := TxnEmpty; st <= TxnPrepareEpochFence; st++ {
		if st.String() == s {
			return st, true
		}
	}
	return 0, false
}

// TxnTopicPartition is one partition of a transaction.
type TxnTopicPartition struct {
	Topic     string
	Partition int32
}

func txnmComparePartitions(a, b TxnTopicPartition) int {
	if c := strings.Compare(a.Topic, b.Topic); c != 0 {
		return c
	}
	switch {
	case a.Partition < b.Partition:
		return -1
	case a.Partition > b.Partition:
		return 1
	}
	return 0
}

// TxnMetadata is a transactional id's state, as __transaction_state
// records it (Kafka's TransactionMetadata).
type TxnMetadata struct {
	TransactionalID string
	ProducerID      int64
	// PrevProducerID is the producer id before the last transition (Kafka
	// records it so that a retry after a producer id rotation is known).
	PrevProducerID int64
	// NextProducerID is the producer id a transaction whose epoch ran out
	// continues with once it completes (KIP-890, transaction version 2); -1
	// when none.
	NextProducerID int64
	ProducerEpoch  int16
	// LastProducerEpoch is the epoch before the last bump, for recognising a
	// retried InitProducerId (KIP-360). Kafka does not write it to the log,
	// so a table rebuilt by replay has -1 here, as Kafka's does after a load.
	LastProducerEpoch int16
	TimeoutMs         int32
	State             TxnState
	// Partitions of the transaction, sorted, without duplicates; empty
	// unless Ongoing or Prepare*.
	Partitions []TxnTopicPartition
	// StartMs is when the transaction began (its first partition was
	// added), -1 in Empty.
	StartMs      int64
	LastUpdateMs int64
	// ClientTransactionVersion is the transaction version of the last
	// EndTxn: 2 for EndTxn v5+ (the epoch is bumped with every transaction),
	// 0 before.
	ClientTransactionVersion int16
}

func (m TxnMetadata) clone() TxnMetadata {
	m.Partitions = slices.Clone(m.Partitions)
	return m
}

// TxnConfig holds the coordinator settings (Kafka's names in comments).
// Zero or negative values take the defaults.
type TxnConfig struct {
	// MaxTimeout is transaction.max.timeout.ms: the longest transaction
	// timeout a producer may ask for. Default 15 minutes.
	MaxTimeout time.Duration
	// IDExpiration is transactional.id.expiration.ms: how long an id with no
	// transaction open may stay unused before it is forgotten. Default 7
	// days.
	IDExpiration time.Duration
	// NewProducerID allocates a producer id, for an EndTxn v5+ whose epoch
	// ran out (and for InitProducerID when called without an allocator).
	// Errors are mapped as InitProducerID describes. Nil: such requests
	// fail with UNKNOWN_SERVER_ERROR.
	NewProducerID func() (int64, error)
}

// Defaults, Kafka's.
const (
	txnmDefaultMaxTimeout   = 15 * time.Minute
	txnmDefaultIDExpiration = 7 * 24 * time.Hour
)

func (c TxnConfig) withDefaults() TxnConfig {
	if c.MaxTimeout <= 0 {
		c.MaxTimeout = txnmDefaultMaxTimeout
	}
	if c.IDExpiration <= 0 {
		c.IDExpiration = txnmDefaultIDExpiration
	}
	return c
}

// TxnRecord is one record for __transaction_state, already encoded in
// Kafka's schema. A nil Value is a tombstone.
type TxnRecord struct {
	Key   []byte
	Value []byte
}

// TxnMarkers asks the caller to write a transaction's end: a control batch
// (COMMIT if Commit, else ABORT) with this producer id and epoch into each
// of Partitions, then to call MarkersWritten with the same id, producer id
// and epoch.
type TxnMarkers struct {
	TransactionalID string
	ProducerID      int64
	ProducerEpoch   int16
	Commit          bool
	Partitions      []TxnTopicPartition
}

// TxnOutput is what a call decided: records to make durable, then markers
// to write (see the contract at the top of this file).
type TxnOutput struct {
	Records []TxnRecord
	Markers []TxnMarkers
}

// Producer epochs. Kafka never hands a client an epoch of MaxInt16 or
// MaxInt16-1 by InitProducerId, so that the coordinator can always fence
// (TransactionMetadata.isEpochExhausted).
const (
	txnmNoProducerID    = -1
	txnmNoProducerEpoch = -1
	txnmMaxEpoch        = math.MaxInt16
)

func txnmEpochExhausted(epoch int16) bool { return epoch >= txnmMaxEpoch-1 }

// Client transaction versions (Kafka's TransactionVersion feature levels):
// version 2 bumps the epoch with every transaction (KIP-890 part 2).
const (
	txnmTV1 int16 = 0
	txnmTV2 int16 = 2
)

// The transitions below are Kafka's TransactionMetadata.prepare* methods.
// Each returns the metadata after the transition; every transition
// records the producer id it leaves as PrevProducerID and stamps
// LastUpdateMs, as Kafka's prepareTransitionTo does.

func (m TxnMetadata) transit(state TxnState, nowMs int64) TxnMetadata {
	m.PrevProducerID = m.ProducerID
	m.State = state
	m.LastUpdateMs = nowMs
	return m
}

// toEmpty is InitProducerId's transition (prepareIncrementProducerEpoch and
// prepareProducerIdRotation): a new producer id or epoch, no transaction.
func (m TxnMetadata) toEmpty(pid int64, epoch, lastEpoch int16, timeoutMs int32, nowMs int64) TxnMetadata {
	n := m.transit(TxnEmpty, nowMs)
	n.ProducerID, n.ProducerEpoch, n.LastProducerEpoch = pid, epoch, lastEpoch
	n.TimeoutMs = timeoutMs
	n.Partitions = nil
	n.StartMs = -1
	return n
}

// toOngoing adds partitions (prepareAddPartitions); a transaction that
// starts here starts now.
func (m TxnMetadata) toOngoing(parts []TxnTopicPartition, nowMs int64) TxnMetadata {
	n := m.transit(TxnOngoing, nowMs)
	if m.State != TxnOngoing {
		n.StartMs = nowMs
	}
	n.Partitions = txnmUnion(m.Partitions, parts)
	return n
}

// toPrepare ends the transaction (prepareAbortOrCommit). With transaction
// version 2 the epoch is bumped (never past MaxInt16: an abort at MaxInt16
// keeps it, as Kafka does to recover from that state) and nextPID, if not
// -1, is the producer id to continue with. An abort of a transaction with
// no partitions (version 2 only) starts and ends now.
func (m TxnMetadata) toPrepare(commit bool, tv int16, nextPID int64, noPartitions bool, nowMs int64) TxnMetadata {
	state := TxnPrepareAbort
	if commit {
		state = TxnPrepareCommit
	}
	n := m.transit(state, nowMs)
	if tv >= txnmTV2 {
		if m.ProducerEpoch < txnmMaxEpoch {
			n.ProducerEpoch = m.ProducerEpoch + 1
		}
		n.LastProducerEpoch = m.ProducerEpoch
	}
	if noPartitions {
		n.StartMs = nowMs
	}
	n.NextProducerID = nextPID
	n.ClientTransactionVersion = tv
	return n
}

// toComplete records that the markers are written (prepareComplete); a
// transaction that exhausted its epoch under version 2 continues with the
// next producer id at epoch 0.
func (m TxnMetadata) toComplete(nowMs int64) TxnMetadata {
	state := TxnCompleteAbort
	if m.State == TxnPrepareCommit {
		state = TxnCompleteCommit
	}
	n := m.transit(state, nowMs)
	if m.ClientTransactionVersion >= txnmTV2 && m.NextProducerID != txnmNoProducerID {
		n.ProducerID, n.ProducerEpoch = m.NextProducerID, 0
	}
	n.NextProducerID = txnmNoProducerID
	n.Partitions = nil
	return n
}

// toFencedAbort is a server-side abort (prepareFenceProducerEpoch, then
// endTransaction with the server's transaction version 2): the epoch is
// bumped to fence the producer (not past MaxInt16), then the abort bumps it
// again.
func (m TxnMetadata) toFencedAbort(nowMs int64) TxnMetadata {
	if m.ProducerEpoch < txnmMaxEpoch {
		m.ProducerEpoch++
	}
	m.LastProducerEpoch = txnmNoProducerEpoch
	return m.toPrepare(false, txnmTV2, txnmNoProducerID, false, nowMs)
}

func (m TxnMetadata) markers() TxnMarkers {
	return TxnMarkers{
		TransactionalID: m.TransactionalID,
		ProducerID:      m.ProducerID,
		ProducerEpoch:   m.ProducerEpoch,
		Commit:          m.State == TxnPrepareCommit,
		Partitions:      slices.Clone(m.Partitions),
	}
}

// txnmUnion returns the sorted union of a sorted, duplicate-free set and
// any list, as a new slice.
func txnmUnion(set, add []TxnTopicPartition) []TxnTopicPartition {
	out := make([]TxnTopicPartition, 0, len(set)+len(add))
	out = append(out, set...)
	out = append(out, add...)
	slices.SortFunc(out, txnmComparePartitions)
	return slices.Compact(out)
}

// txnmContains reports whether the sorted set holds p.
func txnmContains(set []TxnTopicPartition, p TxnTopicPartition) bool {
	_, ok := slices.BinarySearchFunc(set, p, txnmComparePartitions)
	return ok
}
