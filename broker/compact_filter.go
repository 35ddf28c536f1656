package broker

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math"

	"github.com/twmb/franz-go/pkg/kerr"
)

// Record-level compaction of stored batches (cleanup.policy=compact): the
// filtering half of the cleaner (compaction-design, pass 2). Everything
// here is I/O free: it takes the bytes of one stored batch, or of one wal
// data entry (batches back to back), and returns them with the records
// that compaction removes taken out.
//
// Offsets are preserved: a kept batch keeps its base offset, last offset
// delta, base and max timestamps, producer id, epoch, base sequence,
// partition leader epoch and attributes (codec included), and each kept
// record keeps its bytes, so its offset and timestamp deltas; only the
// record count, the batch length and the CRC32C change, and the records
// are compressed again with the batch's own codec. Consumers see the gaps
// as they do on Kafka's compacted topics.
//
// Stored batches are read defensively: a batch that does not parse, or
// whose CRC does not match, is an error (it is damage, and recomputing a
// CRC over it would hide that), never a panic; decompression is bounded by
// maxDecompressed, and nothing is allocated from a count the batch claims.

// keepFunc decides whether the record at offset, with timestamp ts (the
// batch's max timestamp for LogAppendTime batches), key (nil: null key) and
// a null value (tombstone) survives.
type keepFunc func(offset, ts int64, key []byte, tombstone bool) bool

// compactKeep is the keep rule of a cleaning (compaction-design 2c): a
// record goes when its key has a newer record in the map (the dirty range's
// latest offsets), when it has no key (Kafka's cleaner drops those on a
// compacted topic), or when it is a tombstone whose timestamp is older than
// horizon (Now - DeleteRetention). A record whose key the map does not hold
// is kept: its key's latest record lies below the dirty range, where an
// earlier cleaning already left only the latest.
//
// A record without a timestamp (-1) is older than any horizon, so a
// tombstone without one is dropped by the first cleaning.
func compactKeep(m *offsetMap, horizon int64) keepFunc {
	return func(offset, ts int64, key []byte, tombstone bool) bool {
		if key == nil {
			return false
		}
		if latest, ok := m.get(key); ok && latest > offset {
			return false
		}
		return !tombstone || ts >= horizon
	}
}

// tombstoneHorizon is now - deleteRetention, saturating.
func tombstoneHorizon(now, deleteRetention int64) int64 { return satAdd(now, -deleteRetention) }

// batchCompactor holds the scratch buffers of a cleaner: one per cleaner,
// reused for every batch, not safe for concurrent use.
type batchCompactor struct {
	maxDecompressed int64  // most bytes a batch's records may decompress to
	raw             []byte // decompressed records of the current batch
	kept            []byte // kept records of the current batch, uncompressed
	headers         []batchHeader
}

// newBatchCompactor returns a compactor whose batches' records may
// decompress to at most maxDecompressed bytes (the broker's
// max-decompressed-batch-bytes, which every stored batch passed on produce).
func newBatchCompactor(maxDecompressed int64) *batchCompactor {
	return &batchCompactor{maxDecompressed: maxDecompressed}
}

// compactRecord is one record of a batch as the cleaner reads it.
type compactRecord struct {
	raw         []byte // the whole record, its length varint included
	offsetDelta int32
	tsDelta     int64
	key         []byte // nil: a null key
	tombstone   bool   // null value
}

var errCompactRecord = errors.New("malformed record")

// nextRecord parses the record at the start of b, returning it and the
// bytes after it. It reads only up to the value; headers are left inside
// raw, bounded by the record's length.
func nextRecord(b []byte) (compactRecord, []byte, error) {
	var r compactRecord
	length, n := binary.Varint(b)
	if n <= 0 || length < 0 || length > int64(len(b)-n) {
		return r, nil, errCompactRecord
	}
	r.raw = b[:n+int(length)]
	rec := b[n : n+int(length)]
	if len(rec) < 1 {
		return r, nil, errCompactRecord
	}
	rec = rec[1:] // attributes
	if r.tsDelta, n = binary.Varint(rec); n <= 0 {
		return r, nil, errCompactRecord
	}
	rec = rec[n:]
	delta, n := binary.Varint(rec)
	if n <= 0 || delta < math.MinInt32 || delta > math.MaxInt32 {
		return r, nil, errCompactRecord
	}
	r.offsetDelta = int32(delta)
	rec = rec[n:]
	keyLen, n := binary.Varint(rec)
	if n <= 0 || keyLen < -1 || keyLen > int64(len(rec)-n) {
		return r, nil, errCompactRecord
	}
	rec = rec[n:]
	if keyLen >= 0 {
		r.key = rec[:keyLen:keyLen] // non-nil even when empty: an empty key is a key
		rec = rec[keyLen:]
	}
	valueLen, n := binary.Varint(rec)
	if n <= 0 || valueLen < -1 || valueLen > int64(len(rec)-n) {
		return r, nil, errCompactRecord
	}
	r.tombstone = valueLen < 0
	return r, b[len(r.raw):], nil
}

// frameBatch checks the framing of the stored v2 batch at the start of b
// and returns its header (start 0, size the whole batch). The batch must
// lie wholly inside b.
func frameBatch(b []byte) (batchHeader, error) {
	if len(b) < batchHeaderSize {
		return batchHeader{}, fmt.Errorf("%d bytes, shorter than a batch header: %w", len(b), kerr.CorruptMessage)
	}
	length := int32(binary.BigEndian.Uint32(b[offBatchLength:]))
	if length < batchHeaderSize-logOverhead || int64(length) > int64(len(b)-logOverhead) {
		return batchHeader{}, fmt.Errorf("batch length %d with %d bytes: %w", length, len(b), kerr.CorruptMessage)
	}
	if magic := int8(b[offMagic]); magic != 2 {
		return batchHeader{}, fmt.Errorf("magic %d: %w", magic, kerr.CorruptMessage)
	}
	h := readBatchHeader(b)
	if c := h.compression(); c > codecZstd {
		return batchHeader{}, fmt.Errorf("unknown compression codec %d: %w", c, kerr.CorruptMessage)
	}
	return h, nil
}

// records returns the records section of batch b (header h), decompressed
// into c.raw if need be.
func (c *batchCompactor) records(h *batchHeader, b []byte) ([]byte, error) {
	recs := b[batchHeaderSize:h.size]
	if h.compression() == codecNone {
		return recs, nil
	}
	src, done, err := openRecords(h, recs, c.maxDecompressed)
	if err != nil {
		return nil, err
	}
	defer done()
	w := boundedBuffer{b: c.raw[:0], max: int(min(c.maxDecompressed, math.MaxInt32))}
	space := streamBufs.Get().(*[streamBufSize]byte)
	defer streamBufs.Put(space)
	_, err = io.CopyBuffer(&w, io.LimitReader(src, c.maxDecompressed+1), space[:])
	c.raw = w.b
	switch {
	case errors.Is(err, errRecompressedTooLarge) || errors.Is(err, errDecompressedTooLarge):
		return nil, fmt.Errorf("records decompress to more than %d bytes (max-decompressed-batch-bytes): %w", c.maxDecompressed, kerr.MessageTooLarge)
	case err != nil:
		return nil, fmt.Errorf("%s: decompress: %v: %w", codecNames[h.compression()], err, kerr.CorruptMessage)
	}
	return c.raw, nil
}

// eachRecord calls fn with every record of the stored batch b (header h,
// from frameBatch; its CRC is checked here), its absolute offset and
// timestamp, until fn returns false. The record's slices are valid until
// the next call.
func (c *batchCompactor) eachRecord(h *batchHeader, b []byte, fn func(r *compactRecord, offset, ts int64) bool) error {
	if want, got := binary.BigEndian.Uint32(b[offCRC:]), crc32.Checksum(b[offAttributes:h.size], crc32c); want != got {
		return fmt.Errorf("crc32c %08x, computed %08x: %w", want, got, kerr.CorruptMessage)
	}
	recs, err := c.records(h, b)
	if err != nil {
		return err
	}
	base := int64(binary.BigEndian.Uint64(b[offBaseOffset:]))
	for i := int32(0); i < h.numRecords; i++ {
		r, rest, err := nextRecord(recs)
		if err != nil {
			return fmt.Errorf("record %d of %d: %w: %w", i, h.numRecords, err, kerr.CorruptMessage)
		}
		recs = rest
		ts := h.baseTimestamp + r.tsDelta
		if h.logAppendTime() {
			ts = h.maxTimestamp
		}
		if !fn(&r, base+int64(r.offsetDelta), ts) {
			return nil
		}
	}
	if len(recs) != 0 {
		return fmt.Errorf("%d bytes after the %d records the batch declares: %w", len(recs), h.numRecords, kerr.CorruptMessage)
	}
	return nil
}

// batchOutcome is what filtering did to a batch.
type batchOutcome int8

const (
	batchUnchanged batchOutcome = iota // every record kept: the batch stays byte for byte
	batchRewritten                     // some records kept, or none and an empty batch
	batchDropped                       // no record kept and no empty batch wanted
)

// compactBatch filters the records of one stored v2 batch with keep and
// appends the result to dst: the batch itself when every record is kept
// (no re-encoding), nothing when none is and keepEmpty is false, an empty
// batch (emptyBatch) when none is and keepEmpty is true, and otherwise the
// batch with only the kept records, recompressed with its codec. kept is
// the number of records kept. Control batches are kept whole. On error dst
// is returned as it was.
func (c *batchCompactor) compactBatch(dst, batch []byte, keep keepFunc, keepEmpty bool) (out []byte, kept int, err error) {
	h, err := frameBatch(batch)
	if err != nil {
		return dst, 0, err
	}
	out, kept, outcome, err := c.filterBatch(dst, batch[:h.size], &h, keep, keepEmpty)
	if err == nil && outcome == batchUnchanged {
		out = append(out, batch[:h.size]...)
	}
	return out, kept, err
}

// filterBatch is compactBatch without appending an unchanged batch: b is
// exactly the batch, h its header.
func (c *batchCompactor) filterBatch(dst, b []byte, h *batchHeader, keep keepFunc, keepEmpty bool) ([]byte, int, batchOutcome, error) {
	if h.control() {
		return dst, int(h.numRecords), batchUnchanged, nil
	}
	c.kept = c.kept[:0]
	n, kept, copied := 0, 0, false
	var recsStart []byte // the records section, to copy the kept prefix from
	err := c.eachRecord(h, b, func(r *compactRecord, offset, ts int64) bool {
		if recsStart == nil {
			recsStart = r.raw
		}
		if keep(offset, ts, r.key, r.tombstone) {
			if copied {
				c.kept = append(c.kept, r.raw...)
			}
			kept++
		} else if !copied {
			// The first dropped record: the records before it are
			// the kept ones so far, contiguous from the start.
			// Both slice one array to its end, so the difference of
			// their capacities is the prefix's length.
			c.kept = append(c.kept, recsStart[:cap(recsStart)-cap(r.raw)]...)
			copied = true
		}
		n++
		return true
	})
	if err != nil {
		return dst, 0, batchDropped, err
	}
	switch {
	case kept == n && (n > 0 || keepEmpty):
		// An empty batch (from an earlier cleaning) stays only while
		// it is still wanted.
		return dst, kept, batchUnchanged, nil
	case kept == 0 && !keepEmpty:
		return dst, 0, batchDropped, nil
	case kept == 0:
		return emptyBatch(dst, b), 0, batchRewritten, nil
	}
	out, err := c.rebuild(dst, b, h, kept)
	if err != nil {
		return dst, 0, batchDropped, err
	}
	return out, kept, batchRewritten, nil
}

// rebuild appends batch b with its records replaced by c.kept (kept
// records), compressed with the batch's codec at its default level.
func (c *batchCompactor) rebuild(dst, b []byte, h *batchHeader, kept int) ([]byte, error) {
	start := len(dst)
	dst = append(dst, b[:batchHeaderSize]...)
	if h.compression() == codecNone {
		dst = append(dst, c.kept...)
	} else {
		w := boundedBuffer{b: dst, max: start + math.MaxInt32 - logOverhead}
		enc, release := openEncoder(&w, h.compression(), codecDefaultLevel)
		_, err := enc.Write(c.kept)
		if err == nil {
			err = enc.Close()
		}
		release()
		if err != nil {
			return dst[:start], fmt.Errorf("%s: compress the kept records: %w", codecNames[h.compression()], err)
		}
		dst = w.b
	}
	nb := dst[start:]
	be := binary.BigEndian
	be.PutUint32(nb[offBatchLength:], uint32(len(nb)-logOverhead))
	be.PutUint32(nb[offNumRecords:], uint32(kept))
	be.PutUint32(nb[offCRC:], crc32.Checksum(nb[offAttributes:], crc32c))
	return dst, nil
}

// emptyBatch appends batch b's header as a batch without records: count 0,
// no records section, so no codec (the attributes' codec bits cleared, as
// Kafka's DefaultRecordBatch.writeEmptyHeader writes it), every other field
// as in b. It holds the batch's offsets, producer id, epoch and sequences,
// so producer state and a consumer's position survive the records.
func emptyBatch(dst, b []byte) []byte {
	start := len(dst)
	dst = append(dst, b[:batchHeaderSize]...)
	nb := dst[start:]
	be := binary.BigEndian
	attrs := be.Uint16(nb[offAttributes:]) &^ attrCompressionMask
	be.PutUint16(nb[offAttributes:], attrs)
	be.PutUint32(nb[offBatchLength:], batchHeaderSize-logOverhead)
	be.PutUint32(nb[offNumRecords:], 0)
	be.PutUint32(nb[offCRC:], crc32.Checksum(nb[offAttributes:], crc32c))
	return dst
}

// entryRules are the rules compactEntry applies to one wal data entry's
// batches besides keep.
type entryRules struct {
	keep keepFunc
	// aborted reports whether the transactional data batch of producerID
	// at baseOffset belongs to an aborted transaction (its records are
	// then dropped). nil: none did.
	aborted func(producerID, baseOffset int64) bool
	// producerLast reports whether the data batch of producerID whose last
	// offset is lastOffset is the producer's last data batch in the
	// cleaned range (compactPlanner.producerLast). Such a batch is kept,
	// as an empty batch if no record survives, so that the producer's
	// epoch and sequence survive. nil: none is.
	producerLast func(producerID, lastOffset int64) bool
}

// compactEntry filters the batches of one wal data entry's payload with r
// (compaction-design 2c):
//
//   - control batches (transaction markers) are kept whole;
//   - data batches of aborted transactions lose every record;
//   - other records are kept or dropped by r.keep;
//   - a data batch left without records is dropped, unless it is its
//     producer's last in the cleaned range, or the entry's last batch:
//     those are kept as empty batches (emptyBatch).
//
// Keeping the entry's last batch, rather than any batch "when the entry
// would otherwise have none", makes the result independent of how often
// the entry was cleaned: which batches survive only ever shrinks as the
// cleaned range grows, and the entry's last batch is the same one in every
// cleaning, so cleaning to X1 then X2 gives the bytes cleaning to X2 once
// gives. It also keeps the entry's last offset visible to consumers.
//
// It returns payload itself when nothing changed, else the new payload
// appended to dst (pass a reused buffer's [:0]). A malformed or damaged
// batch is an error naming its position, and nothing is changed.
func (c *batchCompactor) compactEntry(dst, payload []byte, r *entryRules) ([]byte, error) {
	c.headers = c.headers[:0]
	for pos := 0; pos < len(payload); {
		h, err := frameBatch(payload[pos:])
		if err != nil {
			return nil, fmt.Errorf("batch at byte %d: %w", pos, err)
		}
		h.start = pos
		c.headers = append(c.headers, h)
		pos += h.size
	}
	if len(c.headers) == 0 {
		return nil, fmt.Errorf("entry without a batch: %w", kerr.CorruptMessage)
	}
	dropAll := func(int64, int64, []byte, bool) bool { return false }
	out := dst
	changed := false
	for i := range c.headers {
		h := &c.headers[i]
		b := payload[h.start : h.start+h.size]
		keep := r.keep
		if h.transactional() && !h.control() && r.aborted != nil && r.aborted(h.producerID, batchBase(b)) {
			keep = dropAll
		}
		keepEmpty := i == len(c.headers)-1 ||
			(h.idempotent() && !h.control() && r.producerLast != nil && r.producerLast(h.producerID, batchBase(b)+int64(h.lastOffsetDelta)))
		start := len(out)
		var outcome batchOutcome
		var err error
		out, _, outcome, err = c.filterBatch(out, b, h, keep, keepEmpty)
		if err != nil {
			return nil, fmt.Errorf("batch at byte %d (offset %d): %w", h.start, batchBase(b), err)
		}
		if outcome == batchUnchanged {
			if !changed {
				continue // copied later, only if something changes
			}
			out = append(out, b...)
			continue
		}
		if !changed {
			// The first change: the batches before this one stay as
			// they are, in front of its output.
			n := len(out) - start
			out = append(out, make([]byte, h.start)...)
			copy(out[start+h.start:], out[start:start+n])
			copy(out[start:], payload[:h.start])
			changed = true
		}
	}
	if !changed {
		return payload, nil
	}
	return out, nil
}

// batchBase is the base offset of batch b.
func batchBase(b []byte) int64 { return int64(binary.BigEndian.Uint64(b[offBaseOffset:])) }
