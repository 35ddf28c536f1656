package broker

import (
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"math"
	"slices"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
)

// The partition side of transactions: what a partition learns from its log
// about the transactions in it (Kafka's ProducerStateManager ongoing and
// unreplicated transactions, and the per-segment aborted-transaction
// index), the last stable offset, the aborted transactions a
// read_committed fetch lists, and the commit and abort markers the
// transaction coordinator writes.
//
// Everything here is built from the log in log order by the partition's
// view (applyEntry, on Appended and when the view is rebuilt from the state
// file and the log after it), never from what a request asked for, so it is
// the same on every replica, on leaders and followers alike, and after a
// restart.

// Control record types (Kafka's ControlRecordType) this broker acts on.
const (
	controlAbort  int16 = 0
	controlCommit int16 = 1
)

// txnState is a partition's knowledge of the transactions in its log.
// Guarded by the partition's logMu.
type txnState struct {
	// ongoing maps a producer with a transaction open to the offset of
	// the transaction's first batch.
	ongoing map[int64]int64
	// ended holds transactions whose marker is in the log but perhaps not
	// yet below the high watermark (Kafka's unreplicatedTxns): until it
	// is, the marker may still be replaced (a new leader), so they hold
	// the last stable offset back as open ones do.
	ended []txnSpan
	// aborted is the aborted-transaction index, in marker (LastOffset)
	// order, from the first one whose marker is at or above the log start.
	aborted []abortedTxn
	// changed: ongoing or ended changed since the partition last
	// published them for fetches (publishTxnsLocked).
	changed bool
}

// txnSpan is a transaction's first offset and the offset of its marker
// (math.MaxInt64 while it is open).
type txnSpan struct{ First, Last int64 }

// abortedTxn is one entry of the aborted-transaction index.
type abortedTxn struct {
	ProducerID  int64
	FirstOffset int64 // the transaction's first batch
	LastOffset  int64 // its ABORT marker
	// FirstOpen is the first offset of the earliest transaction open when
	// the marker was written, this one included (<= FirstOffset). A
	// transaction whose marker comes later and that began before an
	// offset u was open then if this marker is at or past u, so
	// FirstOpen <= u. A search for the transactions overlapping [start, u)
	// therefore stops at the first marker at or past u whose FirstOpen is
	// too (collectAborted), instead of reading every later entry.
	FirstOpen int64
}

// begin notes a transactional batch of producer pid at offset: the first
// one opens the producer's transaction.
func (t *txnState) begin(pid, offset int64) {
	if _, open := t.ongoing[pid]; open {
		return
	}
	if t.ongoing == nil {
		t.ongoing = make(map[int64]int64)
	}
	t.ongoing[pid] = offset
	t.changed = true
}

// end notes producer pid's marker at offset. A marker without an open
// transaction changes nothing here (Kafka emits no completed transaction
// for it); an ABORT adds the transaction to the aborted index.
func (t *txnState) end(pid, marker int64, abort bool) {
	first, open := t.ongoing[pid]
	if !open {
		return
	}
	if abort {
		firstOpen := first
		for _, f := range t.ongoing {
			firstOpen = min(firstOpen, f)
		}
		t.aborted = append(t.aborted, abortedTxn{ProducerID: pid, FirstOffset: first, LastOffset: marker, FirstOpen: firstOpen})
	}
	delete(t.ongoing, pid)
	t.ended = append(t.ended, txnSpan{First: first, Last: marker})
	t.changed = true
}

// trim drops the aborted transactions whose marker is below the log start
// (retention, DeleteRecords): an entry stays while any of its range can
// still be fetched. Ended transactions below it no longer matter either.
func (t *txnState) trim(logStart int64) {
	i, _ := slices.BinarySearchFunc(t.aborted, logStart, func(a abortedTxn, off int64) int { return cmp.Compare(a.LastOffset, off) })
	if i > 0 {
		t.aborted = slices.Delete(t.aborted, 0, i)
	}
	n := len(t.ended)
	t.ended = slices.DeleteFunc(t.ended, func(s txnSpan) bool { return s.Last < logStart })
	t.changed = t.changed || len(t.ended) != n
}

// collectAborted lists the aborted transactions that overlap [start, upper)
// (Kafka's collectAbortedTransactions): marker at or after start, first
// batch before upper. A consumer needs exactly these to drop the aborted
// batches among records it was sent from start: one whose marker is below
// start would make it drop the producer's later committed batches.
func (t *txnState) collectAborted(start, upper int64) []AbortedTransaction {
	i, _ := slices.BinarySearchFunc(t.aborted, start, func(a abortedTxn, off int64) int { return cmp.Compare(a.LastOffset, off) })
	var out []AbortedTransaction
	for ; i < len(t.aborted); i++ {
		a := &t.aborted[i]
		if a.FirstOffset < upper {
			out = append(out, AbortedTransaction{ProducerID: a.ProducerID, FirstOffset: a.FirstOffset})
		}
		if a.LastOffset >= upper && a.FirstOpen >= upper {
			break // no later entry began before upper (see FirstOpen)
		}
	}
	return out
}

// fromSnapshot restores the state a state file holds.
func (t *txnState) fromSnapshot(snap *partitionSnapshot) error {
	aborted, err := decodeAbortedIndex(snap.AbortedTxns)
	if err != nil {
		return err
	}
	*t = txnState{aborted: aborted, changed: true}
	if len(snap.OngoingTxns) > 0 {
		t.ongoing = make(map[int64]int64, len(snap.OngoingTxns))
		for pid, first := range snap.OngoingTxns {
			t.ongoing[pid] = first
		}
	}
	for _, s := range snap.EndedTxns {
		t.ended = append(t.ended, txnSpan{First: s[0], Last: s[1]})
	}
	return nil
}

// validateTxnSnapshot checks the transactions of a state file being
// decoded, so that a damaged one is not loaded (the view is then rebuilt
// from the log).
func validateTxnSnapshot(s *partitionSnapshot) error {
	for id, first := range s.OngoingTxns {
		if id < 0 || first < 0 {
			return fmt.Errorf("partition state: open transaction of producer %d at offset %d", id, first)
		}
	}
	for _, e := range s.EndedTxns {
		if e[0] < 0 || e[1] <= e[0] {
			return fmt.Errorf("partition state: ended transaction [%d, %d]", e[0], e[1])
		}
	}
	_, err := decodeAbortedIndex(s.AbortedTxns)
	return err
}

// toSnapshot adds the state to a state file about to be written.
func (t *txnState) toSnapshot(snap *partitionSnapshot) {
	if len(t.ongoing) > 0 {
		snap.OngoingTxns = make(map[int64]int64, len(t.ongoing))
		for pid, first := range t.ongoing {
			snap.OngoingTxns[pid] = first
		}
	}
	for _, s := range t.ended {
		snap.EndedTxns = append(snap.EndedTxns, [2]int64{s.First, s.Last})
	}
	snap.AbortedTxns = encodeAbortedIndex(t.aborted)
}

// publishTxnsLocked publishes the transactions that may hold the last
// stable offset back, for fetches to read without logMu: the open ones and
// the ended ones whose marker is not yet below the high watermark. logMu
// held.
func (p *partition) publishTxnsLocked() {
	t := &p.txns
	if !t.changed {
		return
	}
	t.changed = false
	hw := p.highWatermark.Load()
	t.ended = slices.DeleteFunc(t.ended, func(s txnSpan) bool { return s.Last < hw })
	if len(t.ongoing) == 0 && len(t.ended) == 0 {
		p.unstable.Store(nil)
		return
	}
	spans := make([]txnSpan, 0, len(t.ongoing)+len(t.ended))
	for _, first := range t.ongoing {
		spans = append(spans, txnSpan{First: first, Last: math.MaxInt64})
	}
	spans = append(spans, t.ended...)
	p.unstable.Store(&spans)
}

// lastStable is the last stable offset for the high watermark hw and log
// start logStart: the first offset of the earliest transaction still open
// at hw (open, or its marker not below hw), at least the log start (as
// Kafka's maybeIncrementFirstUnstableOffset), and at most hw. Lock-free.
func (p *partition) lastStable(hw, logStart int64) int64 {
	spans := p.unstable.Load()
	if spans == nil {
		return hw
	}
	lso := hw
	for _, s := range *spans {
		if s.Last >= hw && s.First < lso {
			lso = s.First
		}
	}
	return min(hw, max(lso, logStart))
}

// abortedIn lists the aborted transactions overlapping [start, upper).
func (p *partition) abortedIn(start, upper int64) []AbortedTransaction {
	p.logMu.Lock()
	defer p.logMu.Unlock()
	return p.txns.collectAborted(start, upper)
}

// WriteTxnMarker writes a transaction's COMMIT (commit) or ABORT marker
// into a partition for the transaction coordinator: a control batch of the
// producer's id and epoch carrying coordinatorEpoch, appended through the
// partition's append queue like a produce with acks=all (numbered once, in
// order with produces, returned once committed). It ends the producer's
// open transaction in every replica's view when they apply it.
//
// As Kafka's ProducerAppendInfo.appendEndTxnMarker with the coordinator as
// origin, it refuses a marker whose producer epoch is older than the
// producer's current one on the partition (INVALID_PRODUCER_EPOCH) or
// whose coordinator epoch is older than that of the producer's last marker
// there (TRANSACTION_COORDINATOR_FENCED); the coordinator's epoch must
// therefore never go down for a producer (Kafka: the __transaction_state
// partition's leader epoch). Both tell the coordinator to stop sending
// this transaction's markers. A marker for a producer without an open
// transaction is still written (Kafka does); a marker never advances the
// producer's sequences, but a marker of a newer epoch becomes the
// producer's epoch (KIP-890 bumps it on every commit and abort), after
// which its next batch starts at sequence 0.
//
// Errors: NOT_LEADER_OR_FOLLOWER on a follower, UNKNOWN_TOPIC_OR_PARTITION,
// INVALID_REQUEST for a negative producer id or epoch, and the append's
// errors (REQUEST_TIMED_OUT, KAFKA_STORAGE_ERROR, ...).
func (b *Broker) WriteTxnMarker(ctx context.Context, topic string, partition int32, producerID int64, producerEpoch int16, commit bool, coordinatorEpoch int32) error {
	if producerID < 0 || producerEpoch < 0 {
		return fmt.Errorf("transaction marker for %s-%d: producer id %d epoch %d: %w", topic, partition, producerID, producerEpoch, kerr.InvalidRequest)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if b.closed.Load() {
		return ErrClosed
	}
	p, err := b.partition(topic, partition)
	if err != nil {
		return err
	}
	if err := p.faultErr(); err != nil {
		return err
	}
	if !p.leads() {
		return p.notLeader()
	}
	kind := controlAbort
	if commit {
		kind = controlCommit
	}
	h := produceReqPool.Get().(*ProduceHandle)
	h.buf = controlBatch(producerID, producerEpoch, kind, coordinatorEpoch, time.Now().UnixMilli())
	h.hdrs[0] = readBatchHeader(h.buf)
	h.batches = h.hdrs[:1]
	h.acks = -1
	h.coordinatorEpoch = coordinatorEpoch
	p.enqueue(h)
	if _, err := h.Wait(); err != nil {
		return fmt.Errorf("transaction marker for producer %d: %w", producerID, err)
	}
	if topic == offsetsTopic && b.groups != nil {
		// The transaction's offset commits in this partition become the
		// groups' committed offsets (commit) or are dropped (abort).
		b.groups.txnMarkerWritten(partition, producerID, commit)
	}
	return nil
}

// checkMarker decides about a marker about to be appended for the
// producer pp (Kafka's checkProducerEpoch and checkCoordinatorEpoch) and
// applies it to pp.
func checkMarker(pp *pendingProducer, known bool, h *batchHeader, coordinatorEpoch int32, ts int64) error {
	if known && h.producerEpoch < pp.st.Epoch {
		return fmt.Errorf("marker epoch %d older than the producer's epoch %d: %w", h.producerEpoch, pp.st.Epoch, kerr.InvalidProducerEpoch)
	}
	if known && coordinatorEpoch < pp.st.coordinatorEpoch() {
		return fmt.Errorf("coordinator epoch %d older than %d of the producer's last marker: %w", coordinatorEpoch, pp.st.coordinatorEpoch(), kerr.TransactionCoordinatorFenced)
	}
	pp.st.applyMarker(h.producerEpoch, coordinatorEpoch, ts)
	pp.txnOpen = false
	return nil
}

// controlBatchSize is the size of a transaction marker batch: the header
// and one record of 1 (length) + 1 (attributes) + 1 (timestamp delta) +
// 1 (offset delta) + 1+4 (key) + 1+6 (value) + 1 (headers) bytes.
const controlBatchSize = batchHeaderSize + 17

// controlBatch builds a transaction marker as Kafka writes one
// (MemoryRecords.withEndTransactionMarker): a v2 batch with the
// transactional and control attributes, the producer's id and epoch, base
// sequence -1, timestamp now, and one record whose key is the control
// record key (version 0, type) and whose value is the end-transaction
// marker (version 0, coordinator epoch). Base offset and leader epoch are
// set when it is appended.
func controlBatch(producerID int64, producerEpoch int16, kind int16, coordinatorEpoch int32, now int64) []byte {
	be := binary.BigEndian
	b := make([]byte, batchHeaderSize, controlBatchSize)
	be.PutUint32(b[offBatchLength:], uint32(controlBatchSize-logOverhead))
	be.PutUint32(b[offLeaderEpoch:], math.MaxUint32) // -1
	b[offMagic] = 2
	be.PutUint16(b[offAttributes:], attrTransactional|attrControl)
	be.PutUint64(b[offBaseTimestamp:], uint64(now))
	be.PutUint64(b[offMaxTimestamp:], uint64(now))
	be.PutUint64(b[offProducerID:], uint64(producerID))
	be.PutUint16(b[offProducerEpoch:], uint16(producerEpoch))
	be.PutUint32(b[offBaseSequence:], math.MaxUint32) // -1
	be.PutUint32(b[offNumRecords:], 1)
	// Varints are zigzag: 2n encodes n.
	b = append(b, 16*2, 0, 0, 0) // record length 16, attributes, timestamp delta, offset delta
	b = append(b, 4*2)           // key length 4
	b = be.AppendUint16(b, 0)    // key version
	b = be.AppendUint16(b, uint16(kind))
	b = append(b, 6*2)        // value length 6
	b = be.AppendUint16(b, 0) // value version
	b = be.AppendUint32(b, uint32(coordinatorEpoch))
	b = append(b, 0) // no headers
	be.PutUint32(b[offCRC:], crc32.Checksum(b[offAttributes:], crc32c))
	return b
}

// parseControlRecord reads the type and, for a transaction marker, the
// coordinator epoch of a stored control batch (b is exactly the batch): the
// first record's key is [version int16, type int16] and a marker's value
// [version int16, coordinator epoch int32] (Kafka's ControlRecordType and
// EndTransactionMarker; later versions may append fields, which are
// ignored). ok is false for anything else: a compressed or malformed batch
// is not taken for a marker. It never panics.
func parseControlRecord(b []byte) (kind int16, coordinatorEpoch int32, ok bool) {
	if len(b) < batchHeaderSize {
		return 0, 0, false
	}
	h := readBatchHeader(b)
	if h.compression() != 0 || h.numRecords < 1 {
		return 0, 0, false
	}
	rest := b[batchHeaderSize:]
	length, n := binary.Varint(rest)
	if n <= 0 || length < 0 || length > int64(len(rest)-n) {
		return 0, 0, false
	}
	rec := rest[n : n+int(length)]
	if len(rec) < 1 {
		return 0, 0, false
	}
	rec = rec[1:] // attributes
	for range 2 { // timestamp delta, offset delta
		_, n := binary.Varint(rec)
		if n <= 0 {
			return 0, 0, false
		}
		rec = rec[n:]
	}
	key, rec, ok := varintBytes(rec)
	if !ok || len(key) < 4 || int16(binary.BigEndian.Uint16(key)) < 0 {
		return 0, 0, false
	}
	kind = int16(binary.BigEndian.Uint16(key[2:]))
	if kind != controlAbort && kind != controlCommit {
		return kind, -1, true
	}
	value, _, ok := varintBytes(rec)
	if !ok || len(value) < 6 || int16(binary.BigEndian.Uint16(value)) < 0 {
		return 0, 0, false
	}
	return kind, int32(binary.BigEndian.Uint32(value[2:])), true
}

// varintBytes splits a varint-length-prefixed field off b (null is not a
// field here).
func varintBytes(b []byte) (field, rest []byte, ok bool) {
	l, n := binary.Varint(b)
	if n <= 0 || l < 0 || l > int64(len(b)-n) {
		return nil, nil, false
	}
	return b[n : n+int(l)], b[n+int(l):], true
}

// The aborted index in the state file: a version byte, the entry count,
// then per entry, as varints, the producer id, the marker's distance from
// the previous marker (from 0 for the first), the distance from the
// transaction's first offset to its marker, and from FirstOpen to the
// first offset. Most entries take a few bytes.
const abortedIndexVersion = 1

// minAbortedEntrySize is the fewest bytes an encoded entry takes: it
// bounds the count a decoder believes before allocating.
const minAbortedEntrySize = 4

func encodeAbortedIndex(aborted []abortedTxn) []byte {
	if len(aborted) == 0 {
		return nil
	}
	b := make([]byte, 0, 2+8*len(aborted))
	b = append(b, abortedIndexVersion)
	b = binary.AppendUvarint(b, uint64(len(aborted)))
	prev := int64(0)
	for _, a := range aborted {
		b = binary.AppendVarint(b, a.ProducerID)
		b = binary.AppendUvarint(b, uint64(a.LastOffset-prev))
		b = binary.AppendUvarint(b, uint64(a.LastOffset-a.FirstOffset))
		b = binary.AppendUvarint(b, uint64(a.FirstOffset-a.FirstOpen))
		prev = a.LastOffset
	}
	return b
}

var errAbortedIndex = errors.New("partition state: malformed aborted-transaction index")

// decodeAbortedIndex reads what encodeAbortedIndex wrote and checks what
// the view relies on: producer ids and offsets not negative, markers in
// increasing order, 0 <= FirstOpen <= FirstOffset < LastOffset. It never
// allocates more than the input can describe.
func decodeAbortedIndex(b []byte) ([]abortedTxn, error) {
	if len(b) == 0 {
		return nil, nil
	}
	if b[0] != abortedIndexVersion {
		return nil, fmt.Errorf("%w: version %d, this build reads %d", errAbortedIndex, b[0], abortedIndexVersion)
	}
	b = b[1:]
	count, n := binary.Uvarint(b)
	if n <= 0 || count > uint64(len(b)/minAbortedEntrySize) {
		return nil, fmt.Errorf("%w: bad count", errAbortedIndex)
	}
	b = b[n:]
	out := make([]abortedTxn, 0, count)
	prev := int64(-1)
	for i := range count {
		pid, n := binary.Varint(b)
		if n <= 0 || pid < 0 {
			return nil, fmt.Errorf("%w: entry %d: producer id", errAbortedIndex, i)
		}
		b = b[n:]
		var d [3]uint64
		for j := range d {
			v, n := binary.Uvarint(b)
			if n <= 0 || v > math.MaxInt64 {
				return nil, fmt.Errorf("%w: entry %d: offsets", errAbortedIndex, i)
			}
			d[j], b = v, b[n:]
		}
		base := max(prev, 0)
		if d[0] > uint64(math.MaxInt64-base) {
			return nil, fmt.Errorf("%w: entry %d: marker offset overflows", errAbortedIndex, i)
		}
		last := base + int64(d[0])
		first := last - int64(d[1])
		firstOpen := first - int64(d[2])
		if last <= prev || d[1] == 0 || d[1] > uint64(last) || d[2] > uint64(first) || firstOpen < 0 {
			return nil, fmt.Errorf("%w: entry %d: offsets out of order", errAbortedIndex, i)
		}
		out = append(out, abortedTxn{ProducerID: pid, FirstOffset: first, LastOffset: last, FirstOpen: firstOpen})
		prev = last
	}
	if len(b) != 0 {
		return nil, fmt.Errorf("%w: %d trailing bytes", errAbortedIndex, len(b))
	}
	return out, nil
}
