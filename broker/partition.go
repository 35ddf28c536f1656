package broker

import (
	"cmp"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"

	"github.com/chronik-stream/chronik/wal"
)

// partition is one topic partition: a wal.Log plus the state that decides
// offsets and idempotence.
//
// Appends use group commit at this level, the only one on the produce
// path: every Produce queues its parsed request, then takes appendMu.
// Whoever holds appendMu takes the whole queue, assigns offsets in queue
// order, checks producer sequences, and hands all batches of all queued
// requests to one Replicate (standalone: one wal Append, one write and one
// fsync; in a cluster: proposals sharing one raft Ready).
// A Produce that gets appendMu after its request was handled by an earlier
// holder just returns. Offsets are thus assigned and written in one order
// without holding a lock for longer than one Append, and concurrent
// producers to one partition share fsyncs.
type partition struct {
	b     *Broker
	topic *topic
	index int32
	dir   string // the wal directory
	// log is nil only while the partition is faulted because its log
	// never opened (fault.go); every path that uses it checks faultErr
	// first, and retry sets it before clearing the fault.
	log   *wal.Log
	fault atomic.Pointer[fault] // nil while healthy
	// lastWriteErr is when a failed append was last logged (unix ns).
	lastWriteErr atomic.Int64

	highWatermark  atomic.Int64 // log end offset of acknowledged appends
	logStartOffset atomic.Int64
	lsoMoved       atomic.Bool // cluster mode: a replicated log start move not yet in the state file

	replica replicaState // cluster mode: the partition's raft group

	qmu   sync.Mutex
	queue []*produceReq

	appendMu sync.Mutex // held by the appending group leader; guards the fields below
	closed   bool
	deleted  bool
	spare    []*produceReq     // the other queue buffer
	pending  []pendingProducer // scratch: producer states of the group
	entries  []wal.Entry       // scratch: the group's wal entries

	// logMu guards the partition's view of its log: the log end, the
	// producer states of the batches in it and its transactions. The
	// view follows what the log's only writer, the replica, reports
	// (Appended, Truncated), on the leader and on followers alike; an
	// append reads it under appendMu and never changes it. Lock order:
	// appendMu, logMu, stateMu.
	logMu      sync.Mutex
	nextOffset int64
	producers  producerStates
	txns       txnState
	dirty      bool // changed since the last snapshot

	// unstable is what of txns a fetch needs for the last stable offset,
	// published under logMu (publishTxnsLocked) and read without it; nil
	// when no transaction can hold it back.
	unstable atomic.Pointer[[]txnSpan]

	stateMu sync.Mutex // orders writes of the state file
	// stateSum is the SHA-256 of the state file's content as last read or
	// written (stateMu): a state that encodes the same is not written
	// again, so closing thousands of idle partitions writes nothing.
	stateSum [32]byte

	// Compaction (cleaner.go): the request the cleaner is to carry out,
	// and the offset below which this replica's log was last cleaned (in
	// the state file).
	compactReq  atomic.Pointer[CompactRequest]
	cleanedUpTo atomic.Int64
	// tombstoneExpiry: when the oldest tombstone the last cleaning kept
	// passes delete.retention.ms (unix ms; 0: none kept).
	tombstoneExpiry atomic.Int64
}

// produceReq is one Produce call for one partition.
type produceReq = ProduceHandle

// ProduceHandle is a Produce whose place in its partition's append order is
// fixed; see (*Broker).ProduceStart.
type ProduceHandle struct {
	p       *partition // nil when the request failed before it was queued
	buf     []byte
	batches []batchHeader
	hdrs    [1]batchHeader // inline storage for the usual single batch
	res     ProduceResult
	err     error
	acks    int16
	done    bool // set by the group leader under appendMu
	// coordinatorEpoch of a transaction marker (WriteTxnMarker), the
	// only source of control batches.
	coordinatorEpoch int32
}

var produceReqPool = sync.Pool{New: func() any { return new(ProduceHandle) }}

// enqueue fixes the request's place in the append order.
func (p *partition) enqueue(r *produceReq) {
	r.p = p
	p.qmu.Lock()
	p.queue = append(p.queue, r)
	p.qmu.Unlock()
}

// await returns once the request is appended (or failed), appending it and
// everything queued with it unless an earlier group leader already did.
func (p *partition) await(r *produceReq) {
	p.appendMu.Lock()
	defer p.appendMu.Unlock()
	if r.done {
		return
	}
	p.qmu.Lock()
	group := p.queue
	p.queue = p.spare[:0]
	p.qmu.Unlock()

	p.appendGroup(group)

	clear(group)
	p.spare = group[:0]
}

// appendGroup assigns offsets to the queued requests, checks them, writes
// them with one Append and answers each. Caller holds appendMu.
func (p *partition) appendGroup(group []*produceReq) {
	defer func() {
		for _, r := range group {
			r.done = true
		}
	}()
	if p.closed {
		err := p.closedErr()
		for _, r := range group {
			r.err = err
		}
		return
	}
	if err := p.faultErr(); err != nil {
		for _, r := range group {
			r.err = err
		}
		return
	}
	if !p.leads() {
		err := p.notLeader()
		for _, r := range group {
			r.err = err
		}
		return
	}

	tc := p.topic.config()
	now := time.Now().UnixMilli()
	epoch := p.replica.epoch.Load()
	// The offsets and sequence checks read the log's view; the replica
	// updates it when the entries are in the log (Appended), so it is
	// not held while they are written.
	p.logMu.Lock()
	next := p.nextOffset
	p.pending = p.pending[:0]
	p.entries = p.entries[:0]
	written := false
	quorum := false // a written request has acks=all
	for _, r := range group {
		if r.err != nil {
			continue
		}
		pendingMark, entriesMark, nextMark := len(p.pending), len(p.entries), next
		r.res = ProduceResult{BaseOffset: next, LogAppendTime: -1}
		for i := range r.batches {
			h := &r.batches[i]
			maxTimestamp := h.maxTimestamp
			if tc.logAppendTime {
				maxTimestamp = now
			}
			switch {
			case h.control():
				// A transaction marker (clients cannot send control
				// batches): epochs checked, sequences untouched.
				pp, known := lookupProducer(p.producers, p.txns.ongoing, p.pending, h.producerID)
				if err := checkMarker(&pp, known, h, r.coordinatorEpoch, maxTimestamp); err != nil {
					r.err = fmt.Errorf("producer %d: %w", h.producerID, err)
				} else {
					p.pending = append(p.pending, pp)
				}
			case h.idempotent():
				pp, known := lookupProducer(p.producers, p.txns.ongoing, p.pending, h.producerID)
				verdict, cached, err := checkSequence(&pp.st, known, h.producerEpoch, h.baseSequence, h.lastSequence(), next > 0)
				if err == nil && pp.txnOpen && !h.transactional() {
					// Kafka's ProducerAppendInfo.appendDataBatch.
					err = fmt.Errorf("non-transactional batch while the producer's transaction is open: %w", kerr.InvalidTxnState)
				}
				if err != nil {
					r.err = fmt.Errorf("producer %d: %w", h.producerID, err)
					break
				}
				if verdict == seqDuplicate {
					// Kafka answers the whole append as the duplicate
					// and writes nothing (LogAppendTime -1).
					r.res.BaseOffset = cached.BaseOffset
					r.res.LogAppendTime = -1
					r.done = true
					break
				}
				pp.st.push(h.producerEpoch, cachedBatch{
					FirstSeq:        h.baseSequence,
					LastSeq:         h.lastSequence(),
					BaseOffset:      next,
					LastOffsetDelta: h.lastOffsetDelta,
				}, maxTimestamp)
				pp.txnOpen = pp.txnOpen || h.transactional()
				p.pending = append(p.pending, pp)
			}
			if r.err != nil || r.done {
				break
			}
			b := r.buf[h.start : h.start+h.size]
			assignOffset(b, next, epoch)
			if tc.logAppendTime {
				stampLogAppendTime(b, now)
				r.res.LogAppendTime = now
			}
			p.entries = append(p.entries, wal.Entry{
				Kind:            wal.KindData,
				Term:            uint64(epoch),
				BaseOffset:      next,
				LastOffsetDelta: h.lastOffsetDelta,
				MaxTimestamp:    maxTimestamp,
				Payload:         b,
			})
			next += int64(h.lastOffsetDelta) + 1
		}
		if r.err != nil || r.done {
			// Roll back this request's share; earlier ones stand.
			p.pending, p.entries, next = p.pending[:pendingMark], p.entries[:entriesMark], nextMark
			continue
		}
		written = true
		quorum = quorum || r.acks == -1
	}
	p.logMu.Unlock()
	if written {
		// One acks=all request makes the whole group wait for the
		// commit; acks=1 alone returns once the leader's log has it.
		err := p.replicate(p.entries, quorum)
		clear(p.entries) // do not keep request buffers alive
		if err != nil {
			// The entries may still commit (under a new leader), or a
			// failed write left the log reopened without them: the log's
			// view, which the replica keeps, decides the next offsets and
			// producer states, not this attempt.
			err = p.appendFailed(err)
			for _, r := range group {
				if r.err == nil && !r.done {
					r.err = err
				}
			}
			return
		}
		if quorum {
			p.Committed(next)
		} // else the replica reports the commit (Committed) when it happens
	}
	lso := p.logStartOffset.Load()
	for _, r := range group {
		r.res.LogStartOffset = lso
	}
}

func (p *partition) closedErr() error {
	if p.deleted {
		return fmt.Errorf("%s-%d deleted: %w", p.topic.name, p.index, kerr.UnknownTopicOrPartition)
	}
	return fmt.Errorf("%s-%d: %w", p.topic.name, p.index, ErrClosed)
}

// readErr maps a wal read error, which after a concurrent close or delete
// is ErrClosed.
func (p *partition) readErr(err error) error {
	if errors.Is(err, wal.ErrClosed) {
		p.appendMu.Lock()
		closed := p.closed
		p.appendMu.Unlock()
		if closed {
			return p.closedErr()
		}
	}
	return fmt.Errorf("read: %w", p.storageFailed(err))
}

func outOfRange(p *partition, offset, lso, hw int64) error {
	return fmt.Errorf("offset %d outside [%d, %d] of %s-%d: %w", offset, lso, hw, p.topic.name, p.index, kerr.OffsetOutOfRange)
}

// IsolationReadCommitted is the isolation level of Fetch and ListOffsets
// that stops at the last stable offset (Kafka's read_committed, 1);
// read_uncommitted (0) stops at the high watermark.
const IsolationReadCommitted int8 = 1

// fetch returns whole stored batches from the one containing offset up to
// maxBytes (at least one batch, KIP-74), never at or past the high
// watermark, nor, for read_committed, at or past the last stable offset;
// read_committed also lists the aborted transactions the records overlap.
func (p *partition) fetch(offset int64, maxBytes int32, isolation int8) (FetchResult, error) {
	for attempt := 0; ; attempt++ {
		if err := p.faultErr(); err != nil {
			return FetchResult{HighWatermark: -1, LastStableOffset: -1, LogStartOffset: -1}, err
		}
		if !p.leads() {
			return FetchResult{HighWatermark: -1, LastStableOffset: -1, LogStartOffset: -1}, p.notLeader()
		}
		hw, lso := p.highWatermark.Load(), p.logStartOffset.Load()
		stable := p.lastStable(hw, lso)
		res := FetchResult{HighWatermark: hw, LastStableOffset: stable, LogStartOffset: lso}
		if offset > hw && offset <= p.log.NextOffset() {
			// Written but not known committed here yet: a new leader's
			// high watermark trails until it commits an entry of its
			// term, while the consumer's position came from the old
			// leader's. Nothing yet, as Kafka answers, not out of range.
			return res, nil
		}
		if offset < lso || offset > hw {
			return res, outOfRange(p, offset, lso, hw)
		}
		bound := hw
		if isolation == IsolationReadCommitted {
			bound = stable
		}
		if offset >= bound {
			return res, nil
		}
		records, end, err := p.readFrom(offset, bound, maxBytes)
		if err == nil {
			res.Records = records
			if isolation == IsolationReadCommitted && len(records) > 0 {
				res.AbortedTransactions = p.abortedIn(offset, end)
			}
			return res, nil
		}
		// Retention or DeleteRecords may have dropped the segment
		// between the offset check and the read: check again.
		if (errors.Is(err, wal.ErrNotFound) || errors.Is(err, wal.ErrOffsetNotFound)) && attempt < 2 {
			continue
		}
		return res, p.readErr(err)
	}
}

// readFrom concatenates the payloads of the record entries from the one
// holding offset, stopping before bound and before exceeding maxBytes (but
// always including the first), and returns the offset after the last one.
func (p *partition) readFrom(offset, bound int64, maxBytes int32) ([]byte, int64, error) {
	idx, err := p.log.FindOffset(offset)
	if err != nil {
		return nil, 0, err
	}
	var (
		payloads [][]byte
		total    int
		end      int64
	)
	for ; ; idx++ {
		e, err := p.log.Read(idx)
		if err != nil {
			if errors.Is(err, wal.ErrNotFound) && len(payloads) > 0 {
				break
			}
			return nil, 0, err
		}
		if e.Kind != wal.KindData {
			continue
		}
		if e.BaseOffset >= bound {
			break
		}
		if len(payloads) > 0 && total+len(e.Payload) > int(maxBytes) {
			break
		}
		payloads = append(payloads, e.Payload)
		total += len(e.Payload)
		end = e.LastOffset() + 1
		if total >= int(maxBytes) {
			break
		}
	}
	if len(payloads) == 1 {
		return payloads[0], end, nil
	}
	out := make([]byte, 0, total)
	for _, pl := range payloads {
		out = append(out, pl...)
	}
	return out, end, nil
}

// listOffset answers ListOffsets for one partition. Offsets end at the high
// watermark, for read_committed at the last stable offset (Kafka's
// Partition.fetchOffsetForTimestamp: Latest is it, and a lookup answers
// only offsets below it).
func (p *partition) listOffset(timestamp int64, isolation int8) (int64, int64, error) {
	if err := p.faultErr(); err != nil {
		return -1, -1, err
	}
	hw, lso := p.highWatermark.Load(), p.logStartOffset.Load()
	end := hw
	if isolation == IsolationReadCommitted {
		end = p.lastStable(hw, lso)
	}
	switch timestamp {
	case TimestampLatest:
		return end, -1, nil
	case TimestampEarliest, TimestampEarliestLocal:
		return lso, -1, nil
	case TimestampLatestTiered:
		return -1, -1, nil
	case TimestampMaxTimestamp:
		return p.maxTimestampOffset(lso, end)
	}
	if timestamp < 0 {
		return -1, -1, fmt.Errorf("list offsets timestamp %d: %w", timestamp, kerr.InvalidRequest)
	}
	return p.offsetForTimestamp(timestamp, lso, end)
}

// offsetForTimestamp is the first offset in [lso, hw) whose record timestamp
// is >= ts: the first entry whose max timestamp reaches ts, then, for an
// uncompressed CreateTime batch, its first record that does. For a
// compressed batch the records are not decoded and the batch's first offset
// (at or above lso) is returned with the batch's max timestamp.
func (p *partition) offsetForTimestamp(ts, lso, hw int64) (int64, int64, error) {
	idx, err := p.log.FindTimestamp(ts)
	if errors.Is(err, wal.ErrOffsetNotFound) {
		return -1, -1, nil
	}
	if err != nil {
		return -1, -1, p.readErr(err)
	}
	if lso >= hw {
		return -1, -1, nil
	}
	// Entries below the log start offset need not be read.
	if first, err := p.log.FindOffset(lso); err == nil && first > idx {
		idx = first
	}
	for ; ; idx++ {
		e, err := p.log.Read(idx)
		if errors.Is(err, wal.ErrNotFound) {
			return -1, -1, nil
		}
		if err != nil {
			return -1, -1, p.readErr(err)
		}
		if e.Kind != wal.KindData || e.LastOffset() < lso || e.MaxTimestamp < ts {
			continue
		}
		if e.BaseOffset >= hw {
			return -1, -1, nil
		}
		if off, rts, ok := firstRecordAtOrAfter(e, ts, lso); ok {
			return off, rts, nil
		}
	}
}

// firstRecordAtOrAfter finds in one stored batch the first record at or
// above lso with timestamp >= ts.
func firstRecordAtOrAfter(e wal.Entry, ts, lso int64) (int64, int64, bool) {
	if len(e.Payload) < batchHeaderSize {
		return 0, 0, false
	}
	h := readBatchHeader(e.Payload)
	if h.logAppendTime() || h.compression() != 0 {
		return max(e.BaseOffset, lso), e.MaxTimestamp, true
	}
	var off, rts int64
	found := false
	err := scanRecords(e.Payload, func(r recordPosition) bool {
		o := e.BaseOffset + int64(r.offsetDelta)
		if o >= lso && r.timestamp >= ts {
			off, rts, found = o, r.timestamp, true
			return false
		}
		return true
	})
	if err != nil {
		return max(e.BaseOffset, lso), e.MaxTimestamp, true
	}
	return off, rts, found
}

// maxTimestampOffset is the offset and timestamp of the record with the
// largest timestamp in [lso, hw), the earliest such record on ties, as
// Kafka. Segments are visited by descending max timestamp (from segment
// metadata) until none can hold a larger one, usually just one segment;
// within the best batch an uncompressed CreateTime batch is scanned for the
// exact record, a LogAppendTime batch answers its first offset, and a
// compressed one its last offset (Kafka's pre-3.7 shallow answer: the
// records are never decompressed).
func (p *partition) maxTimestampOffset(lso, hw int64) (int64, int64, error) {
	var segs []wal.SegmentInfo
	for _, s := range p.log.Segments() {
		if s.FirstOffset >= 0 && s.NextOffset > lso && s.FirstOffset < hw {
			segs = append(segs, s)
		}
	}
	slices.SortStableFunc(segs, func(a, b wal.SegmentInfo) int { return cmp.Compare(b.MaxTimestamp, a.MaxTimestamp) })
	var (
		best  wal.Entry
		found bool
	)
	for _, s := range segs {
		if found && s.MaxTimestamp < best.MaxTimestamp {
			break
		}
		for idx := s.FirstIndex; idx <= s.LastIndex; idx++ {
			e, err := p.log.Read(idx)
			if errors.Is(err, wal.ErrNotFound) {
				continue // dropped meanwhile
			}
			if err != nil {
				return -1, -1, p.readErr(err)
			}
			if e.Kind != wal.KindData || e.LastOffset() < lso || e.BaseOffset >= hw {
				continue
			}
			if !found || e.MaxTimestamp > best.MaxTimestamp || (e.MaxTimestamp == best.MaxTimestamp && e.BaseOffset < best.BaseOffset) {
				best, found = e, true
			}
		}
	}
	if !found {
		return -1, -1, nil
	}
	if len(best.Payload) >= batchHeaderSize {
		if h := readBatchHeader(best.Payload); h.compression() != 0 && !h.logAppendTime() {
			return best.LastOffset(), best.MaxTimestamp, nil
		}
	}
	if off, ts, ok := firstRecordAtOrAfter(best, best.MaxTimestamp, lso); ok {
		return off, ts, nil
	}
	return best.LastOffset(), best.MaxTimestamp, nil
}

// deleteRecords moves the log start offset to offset (-1: the high
// watermark), persists it, then drops whole segments below it.
func (p *partition) deleteRecords(offset int64) (int64, error) {
	p.appendMu.Lock()
	if p.closed {
		err := p.closedErr()
		p.appendMu.Unlock()
		return -1, err
	}
	if err := p.faultErr(); err != nil {
		p.appendMu.Unlock()
		return -1, err
	}
	if !p.leads() {
		err := p.notLeader()
		p.appendMu.Unlock()
		return -1, err
	}
	hw, lso := p.highWatermark.Load(), p.logStartOffset.Load()
	if offset == -1 {
		offset = hw
	}
	if offset < 0 || offset > hw {
		p.appendMu.Unlock()
		return -1, outOfRange(p, offset, lso, hw)
	}
	if offset <= lso {
		p.appendMu.Unlock()
		return lso, nil
	}
	// Every replica moves its log start when the move commits, so a new
	// leader does not bring the deleted records back. Not under appendMu:
	// the move waits for the replication layer.
	p.appendMu.Unlock()
	repl := p.repl()
	if repl == nil {
		return -1, p.notLeader()
	}
	ctx, cancel := context.WithTimeout(p.replica.ctx, ReplicateTimeout)
	err := repl.MoveLogStart(ctx, offset)
	cancel()
	if err != nil {
		var ke *kerr.Error
		if !errors.As(err, &ke) {
			err = fmt.Errorf("%w: %w", kerr.KafkaStorageError, err)
		}
		return -1, fmt.Errorf("delete records of %s-%d: %w", p.topic.name, p.index, err)
	}
	p.appendMu.Lock()
	if p.closed {
		err := p.closedErr()
		p.appendMu.Unlock()
		return -1, err
	}
	offset = max(offset, p.logStartOffset.Load())
	p.raiseLogStart(offset)
	if err := p.saveStateLocked(); err != nil {
		return -1, err
	}
	if err := p.dropSegmentsBelow(offset); err != nil {
		return offset, err
	}
	return offset, nil
}

// dropSegmentsBelow removes the leading whole segments that hold only
// offsets below lso.
func (p *partition) dropSegmentsBelow(lso int64) error {
	repl := p.repl()
	if repl == nil {
		return nil
	}
	committed := repl.CommittedIndex()
	keep := uint64(0) // first index of the first segment kept
	for _, s := range p.log.Segments() {
		if s.Active || (s.NextOffset >= 0 && s.NextOffset > lso) || s.LastIndex > committed {
			break
		}
		keep = s.LastIndex + 1
	}
	if keep == 0 {
		return nil
	}
	// By index, not by count: the cleaner may merge segments meanwhile.
	if _, err := p.log.DropSegmentsBefore(keep); err != nil && !errors.Is(err, wal.ErrClosed) {
		return fmt.Errorf("drop segments of %s-%d: %w", p.topic.name, p.index, err)
	}
	// A raft log's snapshot point follows, as after retention.
	if err := repl.Compacted(); err != nil {
		return fmt.Errorf("drop segments of %s-%d: move the snapshot point: %w", p.topic.name, p.index, err)
	}
	return nil
}

// enforceRetention applies retention.ms and retention.bytes and expires
// idle producers. It returns the number of segments dropped.
func (p *partition) enforceRetention(now int64) (int, error) {
	if p.fault.Load() != nil {
		return 0, nil // offline; retention resumes once it serves again
	}
	tc := *p.topic.config()
	if isInternalTopic(p.topic.name) || !tc.delete {
		// __consumer_offsets, and a topic whose cleanup.policy is compact
		// only, are bounded by compaction, never by time or size:
		// dropping their records would lose the latest value of keys.
		tc.retentionMs, tc.retentionBytes = -1, -1
	}
	dropped, err := p.retain(tc, now)
	if err != nil {
		return dropped, err
	}
	// dropSegmentsBelow too keeps uncommitted segments.
	if err := p.dropSegmentsBelow(p.logStartOffset.Load()); err != nil {
		return dropped, err
	}

	p.appendMu.Lock()
	defer p.appendMu.Unlock()
	if p.closed {
		return dropped, nil
	}
	if start := p.log.StartOffset(); start > p.logStartOffset.Load() {
		p.raiseLogStart(min(start, p.highWatermark.Load()))
	}
	p.logMu.Lock()
	if p.producers.expire(now-producerIDExpirationMs, p.txns.ongoing) > 0 {
		p.dirty = true
	}
	n := len(p.txns.aborted)
	p.txns.trim(p.logStartOffset.Load())
	if len(p.txns.aborted) != n {
		p.dirty = true
	}
	p.publishTxnsLocked()
	p.logMu.Unlock()
	return dropped, nil
}

// partitionSnapshot is the state file beside the partition's wal directory:
// the log start offset and the producer states and transactions covering
// every batch below NextOffset. It is not the wal's own state sidecar,
// which is reserved for raft's HardState and ConfState. Fields added later
// are omitempty, so files written before them load as their zero value.
type partitionSnapshot struct {
	V              int   `json:"v"`
	LogStartOffset int64 `json:"log_start_offset"`
	// AppliedIndex (cluster mode): the raft index applied when the file
	// was written; later entries are applied again at open.
	AppliedIndex uint64                  `json:"applied_index,omitempty"`
	NextOffset   int64                   `json:"next_offset"`
	Producers    map[int64]producerState `json:"producers,omitempty"`
	// OngoingTxns: producer id -> first offset of its open transaction.
	OngoingTxns map[int64]int64 `json:"ongoing_txns,omitempty"`
	// EndedTxns: [first offset, marker offset] of transactions whose
	// marker was perhaps not yet committed (txnState.ended).
	EndedTxns [][2]int64 `json:"ended_txns,omitempty"`
	// AbortedTxns: the aborted-transaction index (encodeAbortedIndex).
	AbortedTxns []byte `json:"aborted_txns,omitempty"`
	// CleanedUpTo: the log was cleaned below this offset (compaction);
	// TombstoneExpiry: when its oldest kept tombstone expires (unix ms).
	CleanedUpTo     int64 `json:"cleaned_up_to,omitempty"`
	TombstoneExpiry int64 `json:"tombstone_expiry,omitempty"`
}

const partitionSnapshotVersion = 1

// saveStateLocked snapshots the state (appendMu held), releases appendMu,
// and writes the file in order with other snapshots.
func (p *partition) saveStateLocked() error {
	p.logMu.Lock()
	p.appendMu.Unlock()
	return p.writeStateViewLocked()
}

// writeStateViewLocked encodes the state (logMu held), releases logMu and
// writes the file; stateMu, taken before logMu is released, keeps the
// writes in the order of their views.
func (p *partition) writeStateViewLocked() error {
	p.lsoMoved.Store(false) // before the load: a later move sets it again
	var applied uint64
	if r := p.repl(); r != nil {
		applied = r.Applied() // before the log start: a move applied in between is in both or applied again
	}
	snap := partitionSnapshot{
		V:               partitionSnapshotVersion,
		AppliedIndex:    applied,
		LogStartOffset:  p.logStartOffset.Load(),
		NextOffset:      p.nextOffset,
		Producers:       p.producers,
		CleanedUpTo:     p.cleanedUpTo.Load(),
		TombstoneExpiry: p.tombstoneExpiry.Load(),
	}
	p.txns.trim(snap.LogStartOffset)
	p.txns.toSnapshot(&snap)
	data, err := encodeSnapshot(snap)
	p.dirty = false
	p.stateMu.Lock()
	p.logMu.Unlock()
	defer p.stateMu.Unlock()
	if err != nil {
		return err
	}
	sum := sha256.Sum256(data)
	if sum == p.stateSum {
		return nil
	}
	if err := writeFileAtomic(p.statePath(), data); err != nil {
		p.stateSum = [32]byte{} // the file is unknown now
		return fmt.Errorf("save state of %s-%d: %w", p.topic.name, p.index, err)
	}
	p.stateSum = sum
	return nil
}

// snapshotIfDirty writes the state file if anything changed since the last.
func (p *partition) snapshotIfDirty() error {
	p.appendMu.Lock()
	if p.closed || p.log == nil {
		p.appendMu.Unlock()
		return nil
	}
	p.logMu.Lock()
	dirty := p.dirty
	p.logMu.Unlock()
	if !dirty && !p.lsoMoved.Load() {
		p.appendMu.Unlock()
		return nil
	}
	return p.saveStateLocked()
}

func (p *partition) statePath() string { return p.dir + ".state" }

// recoverProducersLocked builds the log's view: the log end, and the
// producer states and transactions of the snapshot plus every batch after
// it still in the log. A snapshot that claims more than the log holds (the
// tail was cut after it was written) is ignored and the whole log is
// scanned. The replica may append meanwhile: the view ends at the log end
// read first, and Appended adds the rest. logMu held.
func (p *partition) recoverProducersLocked(snap partitionSnapshot) error {
	end := p.log.NextOffset()
	from := p.log.StartOffset()
	producers := make(producerStates)
	var txns txnState
	if snap.NextOffset <= end {
		for id, st := range snap.Producers {
			producers[id] = st
		}
		if err := txns.fromSnapshot(&snap); err != nil {
			return fmt.Errorf("recover transactions of %s-%d: %w", p.topic.name, p.index, err)
		}
		from = max(from, snap.NextOffset)
	}
	if from < end {
		idx, err := p.log.FindOffset(from)
		if err != nil {
			return fmt.Errorf("recover producers of %s-%d: %w", p.topic.name, p.index, err)
		}
		for ; idx <= p.log.LastIndex(); idx++ {
			e, err := p.log.Read(idx)
			if err != nil {
				return fmt.Errorf("recover producers of %s-%d at index %d: %w", p.topic.name, p.index, idx, err)
			}
			if !e.Kind.HasRecords() || e.BaseOffset < from {
				continue
			}
			if e.BaseOffset >= end {
				break
			}
			if e.Kind == wal.KindData {
				producers.applyEntry(&e, &txns)
			}
		}
		p.dirty = true
	}
	p.producers, p.txns, p.nextOffset = producers, txns, end
	p.txns.changed = true
	p.publishTxnsLocked()
	return nil
}

// neverWritten reports a partition whose state is the zero state, which a
// missing state file also means: nothing to save (most __consumer_offsets
// partitions, every Close). Caller holds appendMu.
func (p *partition) neverWritten() bool {
	p.logMu.Lock()
	defer p.logMu.Unlock()
	return !p.dirty && p.nextOffset == 0 && p.logStartOffset.Load() == 0 && len(p.producers) == 0
}

// close snapshots the state (unless the partition is being deleted) and
// closes the log. Safe to call twice.
func (p *partition) close(deleting bool) error {
	if p.replica.cancel != nil {
		p.replica.cancel() // a Replicate waiting for a quorum gives up
	}
	p.appendMu.Lock()
	if p.closed {
		p.appendMu.Unlock()
		return nil
	}
	var saveErr error
	if !deleting && p.log != nil && !p.neverWritten() {
		saveErr = p.saveStateLocked() // releases appendMu
		p.appendMu.Lock()
	}
	p.closed, p.deleted = true, deleting
	if repl := p.repl(); repl != nil {
		if err := repl.Close(); err != nil {
			p.b.logger.Warn().Err(err).Str("topic", p.topic.name).Int32("partition", p.index).Msg("close replica")
		}
	}
	var err error
	if p.log != nil {
		err = p.log.Close()
	}
	p.appendMu.Unlock()
	if err != nil && !errors.Is(err, wal.ErrClosed) {
		return fmt.Errorf("close %s-%d: %w", p.topic.name, p.index, err)
	}
	return saveErr
}
