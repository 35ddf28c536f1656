package broker

import (
	"container/heap"
	"errors"
	"slices"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
)

// TxnTable holds the transactional ids of one __transaction_state
// partition: the unit a coordinator loads, replays, serves and unloads.
// See txn_machine.go for the output contract.
type TxnTable struct {
	cfg       TxnConfig
	entries   map[string]*txnmEntry
	deadlines txnmHeap // entries with a deadline, soonest first
}

// txnmEntry is one transactional id and when it next needs attention.
type txnmEntry struct {
	m        TxnMetadata
	deadline int64 // unix ms; meaningful only while index >= 0
	index    int   // position in the deadline heap, -1 if not in it
}

// NewTxnTable returns an empty table.
func NewTxnTable(cfg TxnConfig) *TxnTable {
	return &TxnTable{cfg: cfg.withDefaults(), entries: make(map[string]*txnmEntry)}
}

// Len returns the number of transactional ids.
func (t *TxnTable) Len() int { return len(t.entries) }

// InitProducerID handles InitProducerId for a transactional id (Kafka's
// handleInitProducerId): a new id gets a producer id from newPID at epoch
// 0; a known one is fenced by the next epoch, or, once its epochs are
// exhausted, by a new producer id at epoch 0 (KIP-360). An open transaction
// is aborted first: the call then answers CONCURRENT_TRANSACTIONS, and the
// producer retries once the abort completed. expectPID and expectEpoch are
// the request's producer id and epoch (KIP-360, v3+), both -1 when not
// given. newPID (TxnConfig.NewProducerID if nil) is called only when a
// producer id is needed; a *kerr.Error it returns is passed on as its code
// (e.g. COORDINATOR_LOAD_IN_PROGRESS while no id block is available), any
// other error as UNKNOWN_SERVER_ERROR. On error, pid and epoch are -1.
func (t *TxnTable) InitProducerID(now time.Time, txnID string, timeoutMs int32, expectPID int64, expectEpoch int16,
	newPID func() (int64, error)) (pid int64, epoch int16, code int16, out TxnOutput) {
	t.fire(now, &out)
	fail := func(code int16) (int64, int16, int16, TxnOutput) {
		return txnmNoProducerID, txnmNoProducerEpoch, code, out
	}
	// KafkaApis.handleInitProducerIdRequest: a producer id without an epoch
	// (or the reverse) is INVALID_REQUEST; both -1 means none.
	expect := expectPID != txnmNoProducerID || expectEpoch != txnmNoProducerEpoch
	if expect && (expectPID == txnmNoProducerID || expectEpoch == txnmNoProducerEpoch) {
		return fail(kerr.InvalidRequest.Code)
	}
	// handleInitProducerId: an empty id is INVALID_REQUEST; the timeout must
	// lie in (0, transaction.max.timeout.ms] (validateTransactionTimeoutMs).
	if txnID == "" {
		return fail(kerr.InvalidRequest.Code)
	}
	if timeoutMs <= 0 || int64(timeoutMs) > t.cfg.MaxTimeout.Milliseconds() {
		return fail(kerr.InvalidTransactionTimeout.Code)
	}
	nowMs := now.UnixMilli()
	if newPID == nil {
		newPID = t.cfg.NewProducerID
	}
	e := t.entries[txnID]
	m := TxnMetadata{}
	if e != nil {
		m = e.m
	} else {
		// A new id: Kafka creates it in Empty at epoch -1 and then bumps
		// the epoch like any other (to 0).
		id, c := txnmNewPID(newPID)
		if c != 0 {
			return fail(c)
		}
		m = TxnMetadata{
			TransactionalID: txnID, ProducerID: id, PrevProducerID: txnmNoProducerID, NextProducerID: txnmNoProducerID,
			ProducerEpoch: txnmNoProducerEpoch, LastProducerEpoch: txnmNoProducerEpoch,
			TimeoutMs: timeoutMs, State: TxnEmpty, StartMs: -1, LastUpdateMs: nowMs,
		}
	}
	// prepareInitProducerIdTransit: the expected producer must be this id's
	// current one, or a just-created id's (epoch -1), or the one before a
	// rotation that ran out of epochs (a retry); else PRODUCER_FENCED.
	if expect && !(m.ProducerEpoch == txnmNoProducerEpoch || expectPID == m.ProducerID ||
		(expectPID == m.PrevProducerID && txnmEpochExhausted(expectEpoch))) {
		return fail(kerr.ProducerFenced.Code)
	}
	switch m.State {
	case TxnPrepareCommit, TxnPrepareAbort:
		// The markers are being written: let the client back off and retry.
		return fail(kerr.ConcurrentTransactions.Code)
	case TxnOngoing:
		// Abort the open transaction, fencing its producer, and make the
		// client retry: the retry bumps the epoch once more (or rotates
		// the producer id if this exhausted it).
		t.set(e, m.toFencedAbort(nowMs), &out)
		return fail(kerr.ConcurrentTransactions.Code)
	}
	var n TxnMetadata
	switch {
	case txnmEpochExhausted(m.ProducerEpoch) && (!expect || expectEpoch == m.ProducerEpoch):
		// prepareProducerIdRotation: a new producer id at epoch 0; the last
		// epoch is kept only for a client that named it, so that its retry
		// is recognised.
		id, c := txnmNewPID(newPID)
		if c != 0 {
			return fail(c)
		}
		last := int16(txnmNoProducerEpoch)
		if expect {
			last = m.ProducerEpoch
		}
		n = m.toEmpty(id, 0, last, timeoutMs, nowMs)
	case !expect:
		// prepareIncrementProducerEpoch without an expected epoch: a new
		// producer instance fences the old one.
		n = m.toEmpty(m.ProducerID, m.ProducerEpoch+1, txnmNoProducerEpoch, timeoutMs, nowMs)
	case m.ProducerEpoch == txnmNoProducerEpoch || expectEpoch == m.ProducerEpoch:
		// The producer continues after an error (KIP-360): bump, and
		// remember the epoch it had.
		n = m.toEmpty(m.ProducerID, m.ProducerEpoch+1, m.ProducerEpoch, timeoutMs, nowMs)
	case expectEpoch == m.LastProducerEpoch && m.ProducerEpoch < txnmMaxEpoch:
		// A retry of a bump whose answer was lost: the same epoch again.
		// (Never MaxInt16, which InitProducerId never hands out: after a
		// server-side abort the last epoch is not one a client was given.
		// Kafka fails any retry at an exhausted epoch with an internal
		// error; one at MaxInt16-1 is answered here.)
		n = m.toEmpty(m.ProducerID, m.ProducerEpoch, m.LastProducerEpoch, timeoutMs, nowMs)
	default:
		return fail(kerr.ProducerFenced.Code)
	}
	if e == nil {
		e = &txnmEntry{index: -1}
		t.entries[txnID] = e
	}
	t.set(e, n, &out)
	return n.ProducerID, n.ProducerEpoch, 0, out
}

// txnmNewPID calls the producer id allocator, mapping its error to a code.
func txnmNewPID(newPID func() (int64, error)) (int64, int16) {
	if newPID == nil {
		return txnmNoProducerID, kerr.UnknownServerError.Code
	}
	id, err := newPID()
	if err != nil {
		var ke *kerr.Error
		if errors.As(err, &ke) && ke.Code != 0 {
			return txnmNoProducerID, ke.Code
		}
		return txnmNoProducerID, kerr.UnknownServerError.Code
	}
	if id < 0 {
		return txnmNoProducerID, kerr.UnknownServerError.Code
	}
	return id, 0
}

// AddPartitions handles AddPartitionsToTxn for one transaction (Kafka's
// handleAddPartitionsToTransaction), and with verifyOnly its KIP-890 part 1
// form (handleVerifyPartitionsInTransaction), which a partition leader sends
// before it accepts a transactional batch and which changes nothing. codes
// is parallel to parts. Errors apply to every partition: INVALID_REQUEST
// (no id), INVALID_PRODUCER_ID_MAPPING (unknown id or another producer id),
// PRODUCER_FENCED (another epoch), CONCURRENT_TRANSACTIONS (the last
// transaction's markers are being written). Otherwise the partitions join
// the transaction (Empty and Complete* start one, now); partitions already
// in it need no record. With verifyOnly a partition not in the transaction
// gets TRANSACTION_ABORTABLE. No partitions: nothing to do.
//
// Kafka adds partitions to what verification sees only once their record
// is durable; this table applies them at once. So the caller answers a
// verification only after every record this table returned before it is
// durable (a barrier that costs nothing while no append is in flight):
// otherwise a stray batch could be accepted for a partition whose adding
// is then lost with a failed append, and hang there.
func (t *TxnTable) AddPartitions(now time.Time, txnID string, pid int64, epoch int16, parts []TxnTopicPartition,
	verifyOnly bool) (codes []int16, out TxnOutput) {
	t.fire(now, &out)
	codes = make([]int16, len(parts))
	if len(parts) == 0 {
		return codes, out
	}
	e, code := t.check(txnID, pid, epoch)
	if code == 0 && (e.m.State == TxnPrepareCommit || e.m.State == TxnPrepareAbort) {
		code = kerr.ConcurrentTransactions.Code
	}
	if code != 0 {
		for i := range codes {
			codes[i] = code
		}
		return codes, out
	}
	if verifyOnly {
		// Partitions are in the transaction from the AddPartitions that
		// put them there until its markers; a stray or late batch for any
		// other must abort the producer's transaction, not start one.
		for i, p := range parts {
			if !txnmContains(e.m.Partitions, p) {
				codes[i] = kerr.TransactionAbortable.Code
			}
		}
		return codes, out
	}
	if e.m.State == TxnOngoing && !slices.ContainsFunc(parts, func(p TxnTopicPartition) bool { return !txnmContains(e.m.Partitions, p) }) {
		return codes, out // already there: no record (Kafka's "optimization")
	}
	t.set(e, e.m.toOngoing(parts, now.UnixMilli()), &out)
	return codes, out
}

// AddOffsets handles AddOffsetsToTxn: the group's __consumer_offsets
// partition joins the transaction like any other (Kafka's
// handleAddOffsetsToTxnRequest calls handleAddPartitionsToTransaction), so
// that the group coordinator gets its marker.
func (t *TxnTable) AddOffsets(now time.Time, txnID string, pid int64, epoch int16, offsetsPartition TxnTopicPartition) (int16, TxnOutput) {
	codes, out := t.AddPartitions(now, txnID, pid, epoch, []TxnTopicPartition{offsetsPartition}, false)
	return codes[0], out
}

// check finds the id of a request and checks its producer id and epoch
// exactly (INVALID_REQUEST, INVALID_PRODUCER_ID_MAPPING, PRODUCER_FENCED).
func (t *TxnTable) check(txnID string, pid int64, epoch int16) (*txnmEntry, int16) {
	if txnID == "" {
		return nil, kerr.InvalidRequest.Code
	}
	e := t.entries[txnID]
	switch {
	case e == nil || e.m.ProducerID != pid:
		return nil, kerr.InvalidProducerIDMapping.Code
	case e.m.ProducerEpoch != epoch:
		return nil, kerr.ProducerFenced.Code
	}
	return e, 0
}

// EndTxn handles EndTxn (Kafka's handleEndTransaction). bumpEpoch is set for
// EndTxn v5+ (KIP-890 part 2, transaction version 2): the epoch is bumped
// with the prepare (and, once the epoch runs out, the producer id replaced
// by one from TxnConfig.NewProducerID) and the producer continues with
// newPID/newEpoch; a retry is recognised by the epoch being one behind.
// Without bumpEpoch newPID and newEpoch are -1, as EndTxn before v5 has no
// such fields.
//
// An Ongoing transaction goes to Prepare{Commit,Abort} with its markers in
// out. A retry of an outcome that completed answers NONE; of one whose
// markers are being written, CONCURRENT_TRANSACTIONS; the other outcome is
// INVALID_TXN_STATE. In Empty (no partition added since InitProducerId) a
// commit is INVALID_TXN_STATE, and so is an abort on the old protocol,
// while version 2 aborts it with a bumped epoch, as Kafka 4.0 does (a
// client that does not know whether its transaction started may abort).
func (t *TxnTable) EndTxn(now time.Time, txnID string, pid int64, epoch int16, commit, bumpEpoch bool) (newPID int64, newEpoch int16, code int16, out TxnOutput) {
	t.fire(now, &out)
	if bumpEpoch {
		newPID, newEpoch, code = t.endTxnV2(now, txnID, pid, epoch, commit, &out)
	} else {
		code = t.endTxnV1(now, txnID, pid, epoch, commit, &out)
		newPID, newEpoch = txnmNoProducerID, txnmNoProducerEpoch
	}
	return newPID, newEpoch, code, out
}

// endTxnV1 is Kafka's endTransactionWithTV1 for a client's request: the
// epoch must be the current one exactly.
func (t *TxnTable) endTxnV1(now time.Time, txnID string, pid int64, epoch int16, commit bool, out *TxnOutput) int16 {
	e, code := t.check(txnID, pid, epoch)
	if code != 0 {
		return code
	}
	switch m := e.m; m.State {
	case TxnOngoing:
		t.set(e, m.toPrepare(commit, txnmTV1, txnmNoProducerID, false, now.UnixMilli()), out)
		return 0
	case TxnCompleteCommit, TxnCompleteAbort:
		return txnmSameOutcome(m.State == TxnCompleteCommit, commit, 0)
	case TxnPrepareCommit, TxnPrepareAbort:
		return txnmSameOutcome(m.State == TxnPrepareCommit, commit, kerr.ConcurrentTransactions.Code)
	}
	return kerr.InvalidTxnState.Code // Empty
}

// txnmSameOutcome answers a request for an outcome already decided: ok if
// it is the same one, else INVALID_TXN_STATE.
func txnmSameOutcome(decidedCommit, commit bool, ok int16) int16 {
	if decidedCommit == commit {
		return ok
	}
	return kerr.InvalidTxnState.Code
}

// endTxnV2 is Kafka's endTransaction for transaction version 2. Since every
// EndTxn bumps the epoch, a request one epoch behind is a retry of the last
// one, and the current epoch is the next transaction's.
func (t *TxnTable) endTxnV2(now time.Time, txnID string, pid int64, epoch int16, commit bool, out *TxnOutput) (int64, int16, int16) {
	const none = txnmNoProducerID
	if txnID == "" {
		return none, txnmNoProducerEpoch, kerr.InvalidRequest.Code
	}
	e := t.entries[txnID]
	if e == nil {
		return none, txnmNoProducerEpoch, kerr.InvalidProducerIDMapping.Code
	}
	m := e.m
	// The retry of an EndTxn that ran out of epochs names the producer id
	// that was replaced (never -1: a version 0 record has no previous id).
	retryOnOverflow := pid >= 0 && m.PrevProducerID == pid && epoch == txnmMaxEpoch-1 && m.ProducerEpoch == 0
	retryOnBump := int32(m.ProducerEpoch) == int32(epoch)+1
	if m.ProducerID != pid && !retryOnOverflow {
		return none, txnmNoProducerEpoch, kerr.InvalidProducerIDMapping.Code
	}
	if (m.State == TxnPrepareCommit || m.State == TxnPrepareAbort) && (retryOnBump || epoch == m.ProducerEpoch) {
		// The last transaction's markers are being written (Kafka's
		// pending CompleteCommit/CompleteAbort), which Kafka checks
		// before the epoch since KAFKA-18464: the producer, already at
		// the bumped epoch, may end its next transaction before they
		// are in (an abort with nothing added, say) and must not fence
		// itself. A retry of the last EndTxn, whatever its outcome,
		// waits the same way. (Kafka answers this to any epoch; an
		// epoch that is neither is fenced here at once, as Kafka
		// fences it once the markers are in.)
		return none, txnmNoProducerEpoch, kerr.ConcurrentTransactions.Code
	}
	var valid bool
	switch m.State {
	case TxnPrepareCommit, TxnPrepareAbort:
		valid = false // a stale epoch (the others wait above)
	case TxnCompleteCommit, TxnCompleteAbort:
		valid = retryOnBump || retryOnOverflow || epoch == m.ProducerEpoch
	default: // Empty, Ongoing
		valid = epoch == m.ProducerEpoch
	}
	if !valid {
		return none, txnmNoProducerEpoch, kerr.ProducerFenced.Code
	}
	retry := retryOnBump || retryOnOverflow
	nowMs := now.UnixMilli()
	prepare := func(commit, noPartitions bool) (int64, int16, int16) {
		next := int64(none)
		if txnmEpochExhausted(m.ProducerEpoch) {
			id, c := txnmNewPID(t.cfg.NewProducerID)
			if c != 0 {
				return none, txnmNoProducerEpoch, c
			}
			next = id
		}
		n := m.toPrepare(commit, txnmTV2, next, noPartitions, nowMs)
		t.set(e, n, out)
		if next != none {
			// The producer continues with the new id once this completes
			// (and a retry of this request is answered the same).
			return next, 0, 0
		}
		return n.ProducerID, n.ProducerEpoch, 0
	}
	switch m.State {
	case TxnOngoing:
		return prepare(commit, false)
	case TxnCompleteCommit, TxnCompleteAbort:
		decidedCommit := m.State == TxnCompleteCommit
		switch {
		case retry && decidedCommit == commit:
			return m.ProducerID, m.ProducerEpoch, 0
		case retry || commit:
			return none, txnmNoProducerEpoch, kerr.InvalidTxnState.Code
		}
		return prepare(false, true) // an abort with nothing added
	}
	// Empty
	if commit {
		return none, txnmNoProducerEpoch, kerr.InvalidTxnState.Code
	}
	return prepare(false, true)
}

// MarkersWritten records that the markers of a transaction (as TxnMarkers
// named them) are durable in all its partitions: Prepare* becomes
// Complete*. A call for markers that are no longer pending (the id moved
// on, or a repeated call) changes nothing.
func (t *TxnTable) MarkersWritten(now time.Time, txnID string, pid int64, epoch int16) TxnOutput {
	var out TxnOutput
	t.fire(now, &out)
	e := t.entries[txnID]
	if e == nil || e.m.ProducerID != pid || e.m.ProducerEpoch != epoch ||
		(e.m.State != TxnPrepareCommit && e.m.State != TxnPrepareAbort) {
		return out
	}
	t.set(e, e.m.toComplete(now.UnixMilli()), &out)
	return out
}

// Tick fires the deadlines due at now: a transaction Ongoing for longer
// than its timeout is aborted with its producer fenced (Kafka's
// abortTimedOutTransactions), and an id with no transaction open that was
// not used for transactional.id.expiration.ms is forgotten, with a
// tombstone (removeExpiredTransactionalIds).
func (t *TxnTable) Tick(now time.Time) TxnOutput {
	var out TxnOutput
	t.fire(now, &out)
	return out
}

// NextDeadline returns when Tick next has something to do; ok is false if
// nothing is scheduled.
func (t *TxnTable) NextDeadline() (time.Time, bool) {
	if len(t.deadlines) == 0 {
		return time.Time{}, false
	}
	return time.UnixMilli(t.deadlines[0].deadline), true
}

// PendingMarkers returns the markers of every transaction in Prepare*,
// sorted by id: after a replay, those the previous coordinator may not
// have finished (Kafka's loadTransactionsForTxnTopicPartition sends them
// again; a partition ignores a marker it already has).
func (t *TxnTable) PendingMarkers() []TxnMarkers {
	var out []TxnMarkers
	for _, id := range t.sortedIDs() {
		if m := t.entries[id].m; m.State == TxnPrepareCommit || m.State == TxnPrepareAbort {
			out = append(out, m.markers())
		}
	}
	return out
}

// Describe returns an id's metadata for DescribeTransactions; ok is false
// if the table does not have it (TRANSACTIONAL_ID_NOT_FOUND).
func (t *TxnTable) Describe(txnID string) (TxnMetadata, bool) {
	e := t.entries[txnID]
	if e == nil {
		return TxnMetadata{}, false
	}
	return e.m.clone(), true
}

// List returns the ids for ListTransactions, sorted by id: those in one of
// states (all if empty) whose producer id is one of pids (all if empty).
func (t *TxnTable) List(states []TxnState, pids []int64) []TxnMetadata {
	var out []TxnMetadata
	for _, id := range t.sortedIDs() {
		m := t.entries[id].m
		if (len(states) == 0 || slices.Contains(states, m.State)) && (len(pids) == 0 || slices.Contains(pids, m.ProducerID)) {
			out = append(out, m.clone())
		}
	}
	return out
}

func (t *TxnTable) sortedIDs() []string {
	ids := make([]string, 0, len(t.entries))
	for id := range t.entries {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

// set applies a transition: the entry takes n, its record goes to out, and
// a transition into Prepare* asks for its markers.
func (t *TxnTable) set(e *txnmEntry, n TxnMetadata, out *TxnOutput) {
	wasPrepare := e.m.State == TxnPrepareCommit || e.m.State == TxnPrepareAbort
	e.m = n
	out.Records = append(out.Records, EncodeTxnRecord(&e.m))
	if !wasPrepare && (n.State == TxnPrepareCommit || n.State == TxnPrepareAbort) {
		out.Markers = append(out.Markers, n.markers())
	}
	t.schedule(e)
}

// schedule puts the entry's next deadline in the heap: an Ongoing
// transaction times out once now passes StartMs+TimeoutMs (Kafka's
// timedOutTransactions: start + timeout < now); an id in Empty or
// Complete* expires when now reaches LastUpdateMs + IDExpiration
// (shouldExpire: lastUpdate <= now - expiration). Prepare* waits for its
// markers and has none.
func (t *TxnTable) schedule(e *txnmEntry) {
	var d int64
	switch e.m.State {
	case TxnOngoing:
		d = e.m.StartMs + int64(e.m.TimeoutMs) + 1
	case TxnEmpty, TxnCompleteCommit, TxnCompleteAbort:
		d = e.m.LastUpdateMs + t.cfg.IDExpiration.Milliseconds()
	default:
		if e.index >= 0 {
			heap.Remove(&t.deadlines, e.index)
		}
		return
	}
	e.deadline = d
	if e.index >= 0 {
		heap.Fix(&t.deadlines, e.index)
	} else {
		heap.Push(&t.deadlines, e)
	}
}

// fire handles every deadline due at now, soonest first (ties by id).
// Each one leaves the heap: a timed-out transaction goes to PrepareAbort,
// an expired id is removed.
func (t *TxnTable) fire(now time.Time, out *TxnOutput) {
	nowMs := now.UnixMilli()
	for len(t.deadlines) > 0 && t.deadlines[0].deadline <= nowMs {
		e := t.deadlines[0]
		if e.m.State == TxnOngoing {
			t.set(e, e.m.toFencedAbort(nowMs), out)
			continue
		}
		heap.Pop(&t.deadlines)
		delete(t.entries, e.m.TransactionalID)
		out.Records = append(out.Records, EncodeTxnTombstone(e.m.TransactionalID))
	}
}

// txnmHeap orders entries by deadline, then id, so that firing is
// deterministic.
type txnmHeap []*txnmEntry

func (h txnmHeap) Len() int { return len(h) }

func (h txnmHeap) Less(i, j int) bool {
	if h[i].deadline != h[j].deadline {
		return h[i].deadline < h[j].deadline
	}
	return strings.Compare(h[i].m.TransactionalID, h[j].m.TransactionalID) < 0
}

func (h txnmHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].index, h[j].index = i, j
}

func (h *txnmHeap) Push(x any) {
	e := x.(*txnmEntry)
	e.index = len(*h)
	*h = append(*h, e)
}

func (h *txnmHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	old[len(old)-1] = nil
	e.index = -1
	*h = old[:len(old)-1]
	return e
}
