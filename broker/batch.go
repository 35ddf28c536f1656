package broker

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"math"

	"github.com/twmb/franz-go/pkg/kerr"
)

// Kafka v2 record batch header layout (all big endian). Everything from
// attributes to the end of the batch is covered by the CRC32C; the base
// offset, batch length, partition leader epoch, magic and the CRC itself
// are not, which is why the broker may rewrite the base offset and leader
// epoch without touching the CRC.
const (
	offBaseOffset      = 0  // int64
	offBatchLength     = 8  // int32: bytes after this field
	offLeaderEpoch     = 12 // int32
	offMagic           = 16 // int8
	offCRC             = 17 // uint32
	offAttributes      = 21 // int16
	offLastOffsetDelta = 23 // int32
	offBaseTimestamp   = 27 // int64
	offMaxTimestamp    = 35 // int64
	offProducerID      = 43 // int64
	offProducerEpoch   = 51 // int16
	offBaseSequence    = 53 // int32
	offNumRecords      = 57 // int32
	batchHeaderSize    = 61 // first record starts here

	logOverhead = 12 // base offset + batch length: the bytes not counted by batchLength

	attrCompressionMask = 0x07
	attrLogAppendTime   = 0x08
	attrTransactional   = 0x10
	attrControl         = 0x20
)

var crc32c = crc32.MakeTable(crc32.Castagnoli)

// batchHeader is the parsed header of one v2 record batch inside a produce
// buffer. start/size locate the whole batch (log overhead included).
type batchHeader struct {
	start           int
	size            int
	attributes      int16
	lastOffsetDelta int32
	baseTimestamp   int64
	maxTimestamp    int64
	producerID      int64
	producerEpoch   int16
	baseSequence    int32
	numRecords      int32
}

func (h *batchHeader) compression() int8   { return int8(h.attributes & attrCompressionMask) }
func (h *batchHeader) logAppendTime() bool { return h.attributes&attrLogAppendTime != 0 }
func (h *batchHeader) transactional() bool { return h.attributes&attrTransactional != 0 }
func (h *batchHeader) control() bool       { return h.attributes&attrControl != 0 }
func (h *batchHeader) idempotent() bool    { return h.producerID >= 0 }

// lastSequence is the sequence of the batch's last record, wrapping at
// int32 max exactly like Kafka's DefaultRecordBatch.incrementSequence.
func (h *batchHeader) lastSequence() int32 {
	return incrementSequence(h.baseSequence, h.lastOffsetDelta)
}

func incrementSequence(seq, inc int32) int32 {
	if seq > math.MaxInt32-inc {
		return inc - (math.MaxInt32 - seq) - 1
	}
	return seq + inc
}

// readBatchHeader decodes the fixed header of the batch at the start of b.
// b must hold at least batchHeaderSize bytes.
func readBatchHeader(b []byte) batchHeader {
	be := binary.BigEndian
	return batchHeader{
		size:            logOverhead + int(int32(be.Uint32(b[offBatchLength:]))),
		attributes:      int16(be.Uint16(b[offAttributes:])),
		lastOffsetDelta: int32(be.Uint32(b[offLastOffsetDelta:])),
		baseTimestamp:   int64(be.Uint64(b[offBaseTimestamp:])),
		maxTimestamp:    int64(be.Uint64(b[offMaxTimestamp:])),
		producerID:      int64(be.Uint64(b[offProducerID:])),
		producerEpoch:   int16(be.Uint16(b[offProducerEpoch:])),
		baseSequence:    int32(be.Uint32(b[offBaseSequence:])),
		numRecords:      int32(be.Uint32(b[offNumRecords:])),
	}
}

// parseBatches splits a produce buffer into its record batches and validates
// each one the way Kafka's UnifiedLog.analyzeAndValidateRecords and
// LogValidator do for appends from clients. It appends the headers to dst
// and never modifies buf. Errors wrap the Kafka error code:
//
//   - framing (short buffer, length past the end, header too short), bad
//     CRC32C, unknown compression codec: CORRUPT_MESSAGE
//   - magic != 2: INVALID_RECORD (Kafka 4's ProduceRequest.validateRecords
//     throws InvalidRecordException for produce v3+; v0-v2 produce, the only
//     carriers of magic 0/1, no longer exist)
//   - base offset != 0, numRecords < 1, lastOffsetDelta != numRecords-1,
//     control batch, producer id without a sequence: INVALID_RECORD
//   - batch larger than lim.maxMessageBytes: MESSAGE_TOO_LARGE
//   - the records themselves, decompressed if need be: see validateRecords
//
// Transactional batches are not rejected here; Produce decides.
//
// Kafka 4 accepts exactly one batch per partition in produce v3+; Chronik
// accepts several back to back (a superset) and validates each.
func parseBatches(dst []batchHeader, buf []byte, lim batchLimits) ([]batchHeader, error) {
	if len(buf) == 0 {
		return dst, fmt.Errorf("no record batch: %w", kerr.InvalidRecord)
	}
	for pos := 0; pos < len(buf); {
		rest := buf[pos:]
		if len(rest) < logOverhead {
			return dst, fmt.Errorf("batch at byte %d: %d trailing bytes: %w", pos, len(rest), kerr.CorruptMessage)
		}
		batchLength := int32(binary.BigEndian.Uint32(rest[offBatchLength:]))
		if batchLength < 0 || int64(batchLength) > int64(len(rest)-logOverhead) {
			return dst, fmt.Errorf("batch at byte %d: length %d past the end of %d bytes: %w", pos, batchLength, len(rest), kerr.CorruptMessage)
		}
		if batchLength <= offMagic-logOverhead {
			return dst, fmt.Errorf("batch at byte %d: length %d too short: %w", pos, batchLength, kerr.CorruptMessage)
		}
		if magic := int8(rest[offMagic]); magic != 2 {
			return dst, fmt.Errorf("batch at byte %d: magic %d, produce requires magic 2: %w", pos, magic, kerr.InvalidRecord)
		}
		if batchLength < batchHeaderSize-logOverhead {
			return dst, fmt.Errorf("batch at byte %d: length %d shorter than a v2 header: %w", pos, batchLength, kerr.CorruptMessage)
		}
		h := readBatchHeader(rest)
		h.start = pos
		if err := validateBatch(&h, rest[:h.size], lim.maxMessageBytes); err != nil {
			return dst, fmt.Errorf("batch at byte %d: %w", pos, err)
		}
		if err := validateRecords(&h, rest[:h.size], lim); err != nil {
			return dst, fmt.Errorf("batch at byte %d: %w", pos, err)
		}
		dst = append(dst, h)
		pos += h.size
	}
	return dst, nil
}

// validateBatch checks one whole batch's header (b is exactly the batch)
// in Kafka's order: base offset, size, CRC, codec, record count, control,
// sequence.
func validateBatch(h *batchHeader, b []byte, maxMessageBytes int32) error {
	if base := int64(binary.BigEndian.Uint64(b[offBaseOffset:])); base != 0 {
		return fmt.Errorf("base offset %d, clients must send 0: %w", base, kerr.InvalidRecord)
	}
	if int64(h.size) > int64(maxMessageBytes) {
		return fmt.Errorf("batch of %d bytes exceeds max.message.bytes %d: %w", h.size, maxMessageBytes, kerr.MessageTooLarge)
	}
	if want, got := binary.BigEndian.Uint32(b[offCRC:]), crc32.Checksum(b[offAttributes:], crc32c); want != got {
		return fmt.Errorf("crc32c %08x, computed %08x: %w", want, got, kerr.CorruptMessage)
	}
	if c := h.compression(); c > 4 {
		return fmt.Errorf("unknown compression codec %d: %w", c, kerr.CorruptMessage)
	}
	if h.numRecords < 1 {
		return fmt.Errorf("record count %d: %w", h.numRecords, kerr.InvalidRecord)
	}
	if h.lastOffsetDelta != h.numRecords-1 {
		return fmt.Errorf("last offset delta %d inconsistent with %d records: %w", h.lastOffsetDelta, h.numRecords, kerr.InvalidRecord)
	}
	if h.control() {
		return fmt.Errorf("clients may not write control batches: %w", kerr.InvalidRecord)
	}
	if h.idempotent() && h.baseSequence < 0 {
		return fmt.Errorf("producer id %d with sequence %d: %w", h.producerID, h.baseSequence, kerr.InvalidRecord)
	}
	return nil
}

// assignOffset rewrites the fields of a validated batch (b is exactly the
// batch) that lie outside the CRC: the base offset and the partition leader
// epoch. The records are untouched.
func assignOffset(b []byte, baseOffset int64, leaderEpoch int32) {
	binary.BigEndian.PutUint64(b[offBaseOffset:], uint64(baseOffset))
	binary.BigEndian.PutUint32(b[offLeaderEpoch:], uint32(leaderEpoch))
}

// stampLogAppendTime marks a batch as LogAppendTime with max timestamp now,
// as Kafka's in-place validation does (DefaultRecordBatch.setMaxTimestamp).
// Both fields are inside the CRC, so it is recomputed; the records, their
// deltas and the base timestamp are left alone (consumers use the max
// timestamp for every record of a LogAppendTime batch).
func stampLogAppendTime(b []byte, now int64) {
	be := binary.BigEndian
	attrs := be.Uint16(b[offAttributes:]) | attrLogAppendTime
	be.PutUint16(b[offAttributes:], attrs)
	be.PutUint64(b[offMaxTimestamp:], uint64(now))
	be.PutUint32(b[offCRC:], crc32.Checksum(b[offAttributes:], crc32c))
}

// recordPosition is what ListOffsets needs from one record.
type recordPosition struct {
	offsetDelta int32
	timestamp   int64
}

// scanRecords walks the records of an uncompressed v2 batch (b is exactly
// the batch, as stored) and calls fn with each record's offset delta and
// absolute timestamp until fn returns false. It decodes only the record
// framing (length, attributes, timestamp delta, offset delta) and skips
// keys, values and headers by length. A malformed record ends the walk with
// an error; it never panics.
func scanRecords(b []byte, fn func(recordPosition) bool) error {
	if len(b) < batchHeaderSize {
		return fmt.Errorf("batch of %d bytes: %w", len(b), kerr.CorruptMessage)
	}
	h := readBatchHeader(b)
	if h.compression() != 0 {
		return fmt.Errorf("compressed batch: records not scanned")
	}
	rest := b[batchHeaderSize:]
	for i := int32(0); i < h.numRecords && len(rest) > 0; i++ {
		length, n := binary.Varint(rest)
		if n <= 0 || length < 0 || length > int64(len(rest)-n) {
			return fmt.Errorf("record %d: bad length: %w", i, kerr.CorruptMessage)
		}
		rec := rest[n : n+int(length)]
		rest = rest[n+int(length):]
		if len(rec) < 1 {
			return fmt.Errorf("record %d: empty: %w", i, kerr.CorruptMessage)
		}
		rec = rec[1:] // attributes
		tsDelta, n := binary.Varint(rec)
		if n <= 0 {
			return fmt.Errorf("record %d: bad timestamp delta: %w", i, kerr.CorruptMessage)
		}
		rec = rec[n:]
		offDelta, n := binary.Varint(rec)
		if n <= 0 || offDelta < math.MinInt32 || offDelta > math.MaxInt32 {
			return fmt.Errorf("record %d: bad offset delta: %w", i, kerr.CorruptMessage)
		}
		if !fn(recordPosition{offsetDelta: int32(offDelta), timestamp: h.baseTimestamp + tsDelta}) {
			return nil
		}
	}
	return nil
}
