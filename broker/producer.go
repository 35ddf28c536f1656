package broker

import (
	"encoding/binary"
	"fmt"
	"math"

	"github.com/twmb/franz-go/pkg/kerr"

	"github.com/chronik-stream/chronik/wal"
)

// Idempotent producer state, per partition, written like Kafka's
// ProducerStateManager / ProducerAppendInfo but without I/O: the partition
// asks check() about an incoming batch and, once the batch is durably
// appended, records it with push(). Restart recovery replays the same
// push() calls from a snapshot plus the batch headers after it.

// producerBatchesRetained is how many recent batches per producer are kept
// for duplicate detection (Kafka's ProducerStateEntry.NUM_BATCHES_TO_RETAIN,
// which matches the client's max.in.flight.requests.per.connection of 5).
const producerBatchesRetained = 5

// producerIDExpirationMs is Kafka's producer.id.expiration.ms default: the
// state of a producer that has not written to a partition for this long is
// dropped.
const producerIDExpirationMs = 24 * 60 * 60 * 1000

// cachedBatch is one recently appended batch of a producer.
type cachedBatch struct {
	FirstSeq        int32 `json:"f"`
	LastSeq         int32 `json:"l"`
	BaseOffset      int64 `json:"o"`
	LastOffsetDelta int32 `json:"d"`
}

// producerState is a producer's state on one partition.
type producerState struct {
	Epoch         int16                                `json:"e"`
	Batches       [producerBatchesRetained]cachedBatch `json:"b"` // Batches[:N], oldest first
	N             uint8                                `json:"n"`
	LastTimestamp int64                                `json:"t"` // append time (ms) of the newest batch or marker, for expiry
	// CoordEpoch is the coordinator epoch of the producer's last
	// transaction marker plus one, so that 0, what state files written
	// before transactions hold, means none (Kafka's -1). int32 wraps both
	// ways, so every epoch round-trips.
	CoordEpoch int32 `json:"c,omitempty"`
}

// coordinatorEpoch is the coordinator epoch of the last marker, -1 if none.
func (s *producerState) coordinatorEpoch() int32 { return s.CoordEpoch - 1 }

// applyMarker records a transaction marker (Kafka's
// ProducerStateEntry.update): a marker of a new epoch (KIP-890 bumps the
// epoch with every transaction) forgets the cached batches, so the
// producer's next batch starts at sequence 0; one of the current epoch
// (the protocol before KIP-890) leaves the sequences alone. A marker
// never adds a batch.
func (s *producerState) applyMarker(epoch int16, coordinatorEpoch int32, ts int64) {
	if epoch != s.Epoch {
		s.Epoch = epoch
		s.N = 0
	}
	s.CoordEpoch = coordinatorEpoch + 1
	if ts > s.LastTimestamp {
		s.LastTimestamp = ts
	}
}

func (s *producerState) last() cachedBatch { return s.Batches[s.N-1] }

// push records an appended batch; a new epoch forgets the old batches.
func (s *producerState) push(epoch int16, b cachedBatch, now int64) {
	if epoch != s.Epoch || s.N == 0 {
		s.Epoch = epoch
		s.N = 0
	}
	if int(s.N) == producerBatchesRetained {
		copy(s.Batches[:], s.Batches[1:])
		s.N--
	}
	s.Batches[s.N] = b
	s.N++
	if now > s.LastTimestamp {
		s.LastTimestamp = now
	}
}

// findDuplicate returns the cached batch with exactly this sequence range in
// this epoch (Kafka's ProducerStateEntry.findDuplicateBatch).
func (s *producerState) findDuplicate(epoch int16, firstSeq, lastSeq int32) (cachedBatch, bool) {
	if epoch != s.Epoch {
		return cachedBatch{}, false
	}
	for _, b := range s.Batches[:s.N] {
		if b.FirstSeq == firstSeq && b.LastSeq == lastSeq {
			return b, true
		}
	}
	return cachedBatch{}, false
}

// inSequence is Kafka's ProducerAppendInfo.inSequence.
func inSequence(lastSeq, nextSeq int32) bool {
	return int64(nextSeq) == int64(lastSeq)+1 || (nextSeq == 0 && lastSeq == math.MaxInt32)
}

// sequenceVerdict is check's answer.
type sequenceVerdict int

const (
	seqAppend    sequenceVerdict = iota // write the batch
	seqDuplicate                        // already written: answer with the cached base offset, write nothing
)

// checkSequence decides about an incoming idempotent batch, in the order
// Kafka's UnifiedLog.analyzeAndValidateProducerState and
// ProducerAppendInfo apply their checks:
//
//  1. same epoch and a cached batch with the same sequence range: duplicate;
//  2. epoch older than the known one: INVALID_PRODUCER_EPOCH (since Kafka 2.7
//     for produce, instead of the fatal PRODUCER_FENCED);
//  3. newer epoch: the first sequence must be 0, else OUT_OF_ORDER_SEQUENCE_NUMBER;
//  4. same epoch: the first sequence must follow the last one (wrapping at
//     int32 max), else OUT_OF_ORDER_SEQUENCE_NUMBER;
//  5. unknown producer: any sequence is accepted (Kafka since 2.5, KIP-360:
//     state may have been expired or removed by retention), except on a
//     partition that has never held a record, where only sequence 0 is
//     (KAFKA-15591, Kafka 4.5): otherwise two in-flight batches of a new
//     producer could be written out of order;
//  6. a producer known only by its epoch (a transaction marker set it and
//     no batch of that epoch is cached): an older epoch is
//     INVALID_PRODUCER_EPOCH, and the batch must start at sequence 0, as
//     Kafka's checkSequence decides for an entry without batches.
//
// known says whether st holds state for the producer.
func checkSequence(st *producerState, known bool, epoch int16, firstSeq, lastSeq int32, partitionEverWritten bool) (sequenceVerdict, cachedBatch, error) {
	if !known {
		if !partitionEverWritten && firstSeq != 0 {
			return 0, cachedBatch{}, fmt.Errorf("first sequence %d of an unknown producer on an empty partition, expected 0: %w", firstSeq, kerr.OutOfOrderSequenceNumber)
		}
		return seqAppend, cachedBatch{}, nil
	}
	if st.N == 0 {
		if epoch < st.Epoch {
			return 0, cachedBatch{}, fmt.Errorf("producer epoch %d older than %d: %w", epoch, st.Epoch, kerr.InvalidProducerEpoch)
		}
		if firstSeq != 0 {
			return 0, cachedBatch{}, fmt.Errorf("sequence %d after a transaction marker of epoch %d, expected 0: %w", firstSeq, st.Epoch, kerr.OutOfOrderSequenceNumber)
		}
		return seqAppend, cachedBatch{}, nil
	}
	if dup, ok := st.findDuplicate(epoch, firstSeq, lastSeq); ok {
		return seqDuplicate, dup, nil
	}
	switch {
	case epoch < st.Epoch:
		return 0, cachedBatch{}, fmt.Errorf("producer epoch %d older than %d: %w", epoch, st.Epoch, kerr.InvalidProducerEpoch)
	case epoch > st.Epoch:
		if firstSeq != 0 {
			return 0, cachedBatch{}, fmt.Errorf("sequence %d for new epoch %d (was %d), expected 0: %w", firstSeq, epoch, st.Epoch, kerr.OutOfOrderSequenceNumber)
		}
	default:
		if last := st.last().LastSeq; !inSequence(last, firstSeq) {
			return 0, cachedBatch{}, fmt.Errorf("sequence %d after %d: %w", firstSeq, last, kerr.OutOfOrderSequenceNumber)
		}
	}
	return seqAppend, cachedBatch{}, nil
}

// producerStates is one partition's producers by id.
type producerStates map[int64]producerState

// expire drops producers that have not written since cutoff (ms), except
// those with a transaction open (in ongoing), as Kafka keeps them.
func (m producerStates) expire(cutoff int64, ongoing map[int64]int64) (dropped int) {
	for id, st := range m {
		if _, open := ongoing[id]; open {
			continue
		}
		if st.LastTimestamp < cutoff {
			delete(m, id)
			dropped++
		}
	}
	return dropped
}

// applyEntry adds the batches of a stored data entry (in log order,
// offsets assigned) to the view: idempotent batches to their producers'
// states, transactional ones and markers to txns (see txnState.applyBatch).
// Every replica applies the same entries in the same order, so every
// replica's view is the same.
func (m producerStates) applyEntry(e *wal.Entry, txns *txnState) {
	base := e.BaseOffset
	for pos := 0; pos+batchHeaderSize <= len(e.Payload); {
		h := readBatchHeader(e.Payload[pos:])
		n := int(int32(binary.BigEndian.Uint32(e.Payload[pos+offBatchLength:]))) + logOverhead
		if n <= logOverhead || h.lastOffsetDelta < 0 {
			return
		}
		switch {
		case h.control():
			if h.idempotent() && pos+n <= len(e.Payload) {
				if kind, coordinatorEpoch, ok := parseControlRecord(e.Payload[pos : pos+n]); ok && (kind == controlAbort || kind == controlCommit) {
					st := m[h.producerID]
					st.applyMarker(h.producerEpoch, coordinatorEpoch, e.MaxTimestamp)
					m[h.producerID] = st
					txns.end(h.producerID, base, kind == controlAbort)
				}
			}
		case h.idempotent():
			st := m[h.producerID]
			st.push(h.producerEpoch, cachedBatch{
				FirstSeq:        h.baseSequence,
				LastSeq:         h.lastSequence(),
				BaseOffset:      base,
				LastOffsetDelta: h.lastOffsetDelta,
			}, e.MaxTimestamp)
			m[h.producerID] = st
			if h.transactional() {
				txns.begin(h.producerID, base)
			}
		}
		base += int64(h.lastOffsetDelta) + 1
		pos += n
	}
}

// pendingProducer is a producer state updated by a batch that is about to be
// appended but is not durable yet. A group of appends accumulates these in
// order; the newest entry for a producer wins; a failed request is rolled
// back by truncating the slice to where it started.
type pendingProducer struct {
	id int64
	st producerState
	// txnOpen: the producer has a transaction open after this batch (a
	// transactional batch opens one, a marker closes it).
	txnOpen bool
}

// lookupProducer returns the newest pending state for id, else the one in
// the log's view; known is false for a producer neither has.
func lookupProducer(committed producerStates, ongoing map[int64]int64, pending []pendingProducer, id int64) (pp pendingProducer, known bool) {
	for i := len(pending) - 1; i >= 0; i-- {
		if pending[i].id == id {
			return pending[i], true
		}
	}
	st, ok := committed[id]
	_, open := ongoing[id]
	return pendingProducer{id: id, st: st, txnOpen: open}, ok
}
