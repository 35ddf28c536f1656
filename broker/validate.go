package broker

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"runtime"
	"sync"
	"time"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/snappy"
	"github.com/klauspost/compress/zstd"
	"github.com/pierrec/lz4/v4"
	"github.com/twmb/franz-go/pkg/kerr"
)

// Record validation on produce, as Kafka's LogValidator and
// DefaultRecord.readFrom do it. A batch whose header and CRC are right can
// still hold records no consumer can read: random bytes, fewer records
// than it claims, a compressed stream that does not decompress or that
// decompresses to gigabytes. Consumers then loop at that offset forever
// (librdkafka, kgo) or run out of memory, so every record is checked
// before a batch is accepted. Validation only reads: the batch is stored
// byte for byte as sent.
//
// Compressed records are decompressed as a stream through a small pooled
// buffer and checked as they come out; keys, values and headers are
// skipped, never collected. At most limits.maxDecompressed bytes are
// decompressed per batch. Codec state (gzip, lz4 and zstd readers, snappy
// block buffers) is pooled.
//
// Error codes, as Kafka answers where it has an answer:
//   - records that do not parse, a record count that does not match the
//     records (too few, or bytes left over), wrong offset deltas:
//     INVALID_RECORD (Kafka's InvalidRecordException "Found invalid record
//     structure", "Incorrect declared batch size")
//   - a compressed stream that does not decompress (bad header, checksum,
//     truncated, framing Kafka's clients cannot read): CORRUPT_MESSAGE
//   - decompressing past the bound: MESSAGE_TOO_LARGE. Kafka has no bound;
//     this is the code for "batch too large", it is not retriable (a
//     retriable CORRUPT_MESSAGE would have clients resend the same batch
//     forever), and the Java producer answers it by splitting the batch.
//   - a producer's LogAppendTime batch where Kafka refuses one:
//     INVALID_TIMESTAMP with the records listed.

const (
	// defaultMaxDecompressedBatchBytes bounds what the records of one
	// compressed batch may decompress to: 32 times the default
	// max.message.bytes. kgo and librdkafka bound their batches before
	// compression (1 MB by default), so they stay far below it; the Java
	// producer sizes batch.size by an estimated compression ratio and can
	// reach several times max.message.bytes with compressible data, and
	// when it does get MESSAGE_TOO_LARGE it splits the batch and resets its
	// estimate. 32 MiB bounds the decompression work of one batch (tens of
	// milliseconds) and the memory a consumer needs to decode it.
	defaultMaxDecompressedBatchBytes int64 = 32 << 20

	// zstdMaxWindow is the largest zstd window accepted, the limit the
	// zstd format recommends decoders support ("up to 8 MB"); the stream
	// decoder keeps a buffer of the window's size. Encoders stay within
	// it below level 20, and with a known content size, at any level for
	// contents up to 8 MiB.
	zstdMaxWindow = 8 << 20

	// streamBufSize is the buffer decompressed records are read through.
	streamBufSize = 32 << 10

	// snappyMaxRatio bounds what standard snappy can decode from n bytes:
	// its best element is a 3-byte copy of 64 bytes. A larger claim is
	// corrupt and is refused before anything is allocated for it.
	snappyMaxRatio = 22

	// maxRecordErrors caps the per-record errors one answer lists.
	maxRecordErrors = 1000

	// pooledBufMax is the largest snappy buffer kept for reuse.
	pooledBufMax = 4 << 20
)

// batchLimits are the bounds a produce applies to each batch.
type batchLimits struct {
	maxMessageBytes int32 // the topic's max.message.bytes
	maxDecompressed int64 // most bytes the records of a compressed batch may decompress to
	logAppendTime   bool  // the topic stamps LogAppendTime itself
	// CreateTime records must lie in [tsLow, tsHigh] when tsBounded
	// (message.timestamp.before/after.max.ms around the broker's clock).
	tsBounded     bool
	tsLow, tsHigh int64
	// keys, when on, refuses records without a key (compacted topics).
	keys keyRule
}

// keyRule refuses records with a null key, as Kafka's
// LogValidator.validateKey does on a topic whose cleanup.policy includes
// compact: the cleaner could only drop them. An empty key is a key. The
// topic and partition name the partition in the record errors, as
// Kafka's message does.
type keyRule struct {
	on        bool
	topic     string
	partition int32
}

// message is Kafka's per-record message (LogValidator.validateKey).
func (k *keyRule) message() string {
	return fmt.Sprintf("Compacted topic cannot accept message without key in topic partition %s-%d", k.topic, k.partition)
}

// produceLimits are the bounds for a client's produce to a topic: the
// decompressed bound is never below the topic's max.message.bytes, so a
// batch accepted uncompressed is also accepted compressed.
func (b *Broker) produceLimits(tc *topicConfig) batchLimits {
	lim := batchLimits{
		maxMessageBytes: tc.maxMessageBytes,
		maxDecompressed: max(b.cfg.MaxDecompressedBatchBytes, int64(tc.maxMessageBytes)),
		logAppendTime:   tc.logAppendTime,
	}
	if !tc.logAppendTime && (tc.timestampBefore != math.MaxInt64 || tc.timestampAfter != math.MaxInt64) {
		now := time.Now().UnixMilli()
		lim.tsBounded = true
		lim.tsLow, lim.tsHigh = satAdd(now, -tc.timestampBefore), satAdd(now, tc.timestampAfter)
	}
	return lim
}

// satAdd is a+b, saturating at the int64 bounds.
func satAdd(a, b int64) int64 {
	c := a + b
	switch {
	case b > 0 && c < a:
		return math.MaxInt64
	case b < 0 && c > a:
		return math.MinInt64
	}
	return c
}

// tsWindow is the range of timestamp deltas a batch's records may carry
// (lim's timestamp bounds relative to the batch's base timestamp), so
// that each record costs one comparison.
type tsWindow struct {
	on     bool
	lo, hi int64 // deltas
	base   int64 // the batch's base timestamp
	low    int64 // the absolute bounds, for messages
	high   int64
}

func timestampWindow(h *batchHeader, lim batchLimits) tsWindow {
	if !lim.tsBounded {
		return tsWindow{}
	}
	w := tsWindow{on: true, base: h.baseTimestamp, low: lim.tsLow, high: lim.tsHigh}
	// delta d is in range when low <= base+d <= high.
	w.lo, w.hi = subBound(lim.tsLow, h.baseTimestamp), subBound(lim.tsHigh, h.baseTimestamp)
	return w
}

// subBound is x-base, saturating: a bound that does not fit an int64
// delta admits (or excludes) every delta, as the exact bound would.
func subBound(x, base int64) int64 {
	if base == math.MinInt64 {
		if x >= 0 {
			return math.MaxInt64
		}
		return x - base
	}
	return satAdd(x, -base)
}

// internalLimits are the bounds for batches the broker builds itself
// (consumer group records): no size limit; they are still validated.
var internalLimits = batchLimits{maxMessageBytes: math.MaxInt32, maxDecompressed: defaultMaxDecompressedBatchBytes}

// RecordError names one record of a batch that was refused because of it:
// an entry of Kafka's ProduceResponse RecordErrors (Produce v8+).
type RecordError struct {
	BatchIndex int32  // the record's position in its batch, from 0
	Message    string // why
}

// RecordErrors returns the records a produce error names, nil if none.
func RecordErrors(err error) []RecordError {
	var re *recordsError
	if errors.As(err, &re) {
		return re.records
	}
	return nil
}

// recordsError is a refusal of a whole batch that names its bad records,
// as Kafka's RecordValidationException does.
type recordsError struct {
	code    *kerr.Error
	msg     string
	records []RecordError
}

func (e *recordsError) Error() string { return e.msg + ": " + e.code.Error() }
func (e *recordsError) Unwrap() error { return e.code }

// errDecompressedTooLarge ends a stream that went past its bound.
var errDecompressedTooLarge = errors.New("decompressed past the bound")

// validateRecords checks every record of one batch whose header already
// passed validateBatch (b is exactly the batch).
func validateRecords(h *batchHeader, b []byte, lim batchLimits) error {
	recs := b[batchHeaderSize:]
	var err error
	switch h.compression() {
	case 0:
		s := recordStream{buf: recs, ts: timestampWindow(h, lim), keys: lim.keys}
		err = s.walk(h)
	case 1:
		err = walkGzip(h, recs, lim)
	case 2:
		err = walkSnappy(h, recs, lim)
	case 3:
		err = walkLz4(h, recs, lim)
	case 4:
		err = walkZstd(h, recs, lim)
	}
	if err != nil {
		return err
	}
	return checkTimestampType(h, lim)
}

// checkTimestampType refuses a producer's LogAppendTime batch where Kafka's
// LogValidator.validateTimestamp does: on a LogAppendTime topic, and on a
// CreateTime topic when the batch has no timestamp (every record then reads
// as the batch's max timestamp, -1). Kafka lists every record.
func checkTimestampType(h *batchHeader, lim batchLimits) error {
	if !h.logAppendTime() || (!lim.logAppendTime && h.maxTimestamp != -1) {
		return nil
	}
	const why = "producers may not set the LogAppendTime timestamp type"
	n := min(h.numRecords, maxRecordErrors)
	errs := make([]RecordError, n)
	for i := range errs {
		errs[i] = RecordError{BatchIndex: int32(i), Message: why}
	}
	return &recordsError{code: kerr.InvalidTimestamp, msg: fmt.Sprintf("%d records: %s", h.numRecords, why), records: errs}
}

// recordStream is the records section of one batch as a stream of bytes:
// the slice itself for uncompressed records, or a decompressor read
// through a buffer. buf[pos:] is what is available; offsets are counted
// from the start of the (decompressed) records.
type recordStream struct {
	buf   []byte
	pos   int
	base  int64     // offset of buf[0]
	src   io.Reader // nil: buf holds every record
	limit int64     // most bytes src may yield
	err   error     // why src stopped (io.EOF at the end)
	space []byte    // the buffer src is read into
	zeros int       // consecutive empty reads
	codec string    // src's codec, for errors
	ts    tsWindow  // the timestamp bounds, when on
	badTS []RecordError
	nBadT int32   // records out of the timestamp bounds
	keys  keyRule // refuse null keys, when on
	noKey []RecordError
	nNoK  int32 // records without a key
}

func (s *recordStream) offset() int64 { return s.base + int64(s.pos) }

// fill makes n bytes available unless the stream ends first, and reports
// whether it did.
func (s *recordStream) fill(n int) bool {
	if len(s.buf)-s.pos >= n {
		return true
	}
	if s.src == nil || s.err != nil {
		return false
	}
	return s.refill(n)
}

// refill moves what is left to the front of the buffer and reads from src
// until n bytes are available or src stops. It never asks src for more
// than limit+1 bytes in all: one byte past the bound proves the batch is
// too large, and decompressing stops there.
func (s *recordStream) refill(n int) bool {
	left := copy(s.space, s.buf[s.pos:])
	s.base += int64(s.pos)
	s.buf, s.pos = s.space[:left], 0
	for len(s.buf) < n && s.err == nil {
		end := s.base + int64(len(s.buf))
		if end > s.limit {
			s.err = errDecompressedTooLarge
			break
		}
		room := min(int64(len(s.space)-len(s.buf)), s.limit+1-end)
		m, err := s.src.Read(s.space[len(s.buf) : len(s.buf)+int(room)])
		s.buf = s.space[:len(s.buf)+m]
		switch {
		case err != nil:
			s.err = err
		case m > 0:
			s.zeros = 0
		default:
			if s.zeros++; s.zeros > 100 {
				s.err = io.ErrNoProgress
			}
		}
	}
	if s.base+int64(len(s.buf)) > s.limit {
		s.err = errDecompressedTooLarge
		return false
	}
	return len(s.buf) >= n
}

// skip discards n bytes, reporting whether the stream had them.
func (s *recordStream) skip(n int64) bool {
	for {
		avail := int64(len(s.buf) - s.pos)
		if n <= avail {
			s.pos += int(n)
			return true
		}
		n -= avail
		s.pos = len(s.buf)
		if !s.fill(1) {
			return false
		}
	}
}

// byte1 reads one byte.
func (s *recordStream) byte1() (byte, bool) {
	if !s.fill(1) {
		return 0, false
	}
	c := s.buf[s.pos]
	s.pos++
	return c, true
}

// varint reads a zigzag varint of Kafka's int32 kind: at most 5 bytes,
// the last with no bits past 32 (kbin.Varint's rule, which kgo decodes
// with).
func (s *recordStream) varint() (int32, bool) {
	if len(s.buf)-s.pos < 5 {
		s.fill(5) // fewer at the end of the stream is fine if the varint is shorter
	}
	b := s.buf[s.pos:]
	var x uint32
	for i := 0; i < len(b) && i < 5; i++ {
		c := b[i]
		if i == 4 {
			if c > 0x0f {
				return 0, false
			}
			x |= uint32(c) << 28
			s.pos += 5
			return int32(x>>1) ^ -int32(x&1), true
		}
		x |= uint32(c&0x7f) << (7 * i)
		if c < 0x80 {
			s.pos += i + 1
			return int32(x>>1) ^ -int32(x&1), true
		}
	}
	return 0, false
}

// varlong reads a zigzag varint of Kafka's int64 kind: at most 10 bytes,
// the last at most 1.
func (s *recordStream) varlong() (int64, bool) {
	if len(s.buf)-s.pos < 10 {
		s.fill(10)
	}
	b := s.buf[s.pos:]
	var x uint64
	for i := 0; i < len(b) && i < 10; i++ {
		c := b[i]
		if i == 9 {
			if c > 1 {
				return 0, false
			}
			x |= uint64(c) << 63
			s.pos += 10
			return int64(x>>1) ^ -int64(x&1), true
		}
		x |= uint64(c&0x7f) << (7 * i)
		if c < 0x80 {
			s.pos += i + 1
			return int64(x>>1) ^ -int64(x&1), true
		}
	}
	return 0, false
}

// walk reads the batch's records and checks them as Kafka's
// DefaultRecord.readFrom does, and that the offset deltas are 0..n-1 in
// order (Chronik stores batches as sent, so it cannot renumber records as
// Kafka does for compressed batches). Exactly numRecords records, and
// nothing after them.
func (s *recordStream) walk(h *batchHeader) error {
	var badDeltas []RecordError
	nBad := 0
	for i := int32(0); i < h.numRecords; i++ {
		delta, err := s.record(i)
		if err != nil {
			return err
		}
		if delta != i {
			if nBad++; len(badDeltas) < maxRecordErrors {
				badDeltas = append(badDeltas, RecordError{BatchIndex: i, Message: fmt.Sprintf("offset delta %d, expected %d", delta, i)})
			}
		}
	}
	if s.fill(1) {
		return fmt.Errorf("bytes after the %d records the batch declares: %w", h.numRecords, kerr.InvalidRecord)
	}
	if err := s.streamErr(); err != nil {
		return err
	}
	if nBad > 0 {
		return &recordsError{code: kerr.InvalidRecord, records: badDeltas,
			msg: fmt.Sprintf("%d records with an offset delta other than their index (first: record %d, %s)", nBad, badDeltas[0].BatchIndex, badDeltas[0].Message)}
	}
	if s.nBadT > 0 {
		// Kafka's processRecordErrors: any timestamp error makes the
		// whole refusal INVALID_TIMESTAMP, listing every record's error.
		return &recordsError{code: kerr.InvalidTimestamp, records: mergeRecordErrors(s.badTS, s.noKey),
			msg: fmt.Sprintf("%d records with a timestamp out of range (first: record %d, %s)", s.nBadT, s.badTS[0].BatchIndex, s.badTS[0].Message)}
	}
	if s.nNoK > 0 {
		return &recordsError{code: kerr.InvalidRecord, records: s.noKey,
			msg: fmt.Sprintf("%d records without a key (first: record %d): %s", s.nNoK, s.noKey[0].BatchIndex, s.noKey[0].Message)}
	}
	return nil
}

// keyless notes that record i has no key on a topic that requires one.
// The message is built once per batch.
func (s *recordStream) keyless(i int32) {
	if s.nNoK++; len(s.noKey) < maxRecordErrors {
		msg := ""
		if len(s.noKey) > 0 {
			msg = s.noKey[0].Message
		} else {
			msg = s.keys.message()
		}
		s.noKey = append(s.noKey, RecordError{BatchIndex: i, Message: msg})
	}
}

// mergeRecordErrors merges two lists of record errors, each in record
// order, into one in record order, at most maxRecordErrors long.
func mergeRecordErrors(a, b []RecordError) []RecordError {
	if len(b) == 0 {
		return a
	}
	out := make([]RecordError, 0, min(len(a)+len(b), maxRecordErrors))
	for len(out) < cap(out) {
		if len(b) == 0 || (len(a) > 0 && a[0].BatchIndex < b[0].BatchIndex) {
			out, a = append(out, a[0]), a[1:]
		} else {
			out, b = append(out, b[0]), b[1:]
		}
	}
	return out
}

// badTimestamp notes that record i's timestamp is outside the topic's
// message.timestamp.before/after.max.ms bounds, unless it has none (-1),
// as Kafka's LogValidator.validateTimestamp.
func (s *recordStream) badTimestamp(i int32, delta int64) {
	ts := s.ts.base + delta
	if ts == -1 {
		return
	}
	if s.nBadT++; len(s.badTS) < maxRecordErrors {
		s.badTS = append(s.badTS, RecordError{BatchIndex: i, Message: fmt.Sprintf(
			"timestamp %d is out of range, it must be within [%d, %d] (message.timestamp.before.max.ms and message.timestamp.after.max.ms around the broker's clock)",
			ts, s.ts.low, s.ts.high)})
	}
}

// record reads record i and returns its offset delta.
func (s *recordStream) record(i int32) (int32, error) {
	length, ok := s.varint()
	if !ok {
		return 0, s.fail(i, "length")
	}
	if length < 0 {
		return 0, fmt.Errorf("record %d: length %d: %w", i, length, kerr.InvalidRecord)
	}
	if s.src == nil && int(length) > len(s.buf)-s.pos {
		return 0, fmt.Errorf("record %d: length %d past the end of the records (%d bytes left): %w", i, length, len(s.buf)-s.pos, kerr.InvalidRecord)
	}
	end := s.offset() + int64(length)
	if _, ok := s.byte1(); !ok {
		return 0, s.fail(i, "attributes")
	}
	tsDelta, ok := s.varlong()
	if !ok {
		return 0, s.fail(i, "timestamp delta")
	}
	tsBad := s.ts.on && (tsDelta < s.ts.lo || tsDelta > s.ts.hi)
	delta, ok := s.varint()
	if !ok {
		return 0, s.fail(i, "offset delta")
	}
	if err := s.within(i, end, "offset delta"); err != nil {
		return 0, err
	}
	keyLen, err := s.bytesField(i, end, "key", -1)
	if err != nil {
		return 0, err
	}
	// As Kafka's LogValidator.validateRecord: a record without a key
	// has that error only, not also its timestamp's.
	if keyLen < 0 && s.keys.on {
		s.keyless(i)
	} else if tsBad {
		s.badTimestamp(i, tsDelta)
	}
	if _, err := s.bytesField(i, end, "value", -1); err != nil {
		return 0, err
	}
	headers, ok := s.varint()
	if !ok {
		return 0, s.fail(i, "header count")
	}
	if err := s.within(i, end, "header count"); err != nil {
		return 0, err
	}
	if headers < 0 || int64(headers) > end-s.offset() {
		return 0, fmt.Errorf("record %d: header count %d with %d bytes left in the record: %w", i, headers, end-s.offset(), kerr.InvalidRecord)
	}
	for j := int32(0); j < headers; j++ {
		if _, err := s.bytesField(i, end, "header key", 0); err != nil {
			return 0, err
		}
		if _, err := s.bytesField(i, end, "header value", -1); err != nil {
			return 0, err
		}
	}
	if got := s.offset(); got != end {
		return 0, fmt.Errorf("record %d: length %d but its fields take %d bytes: %w", i, length, int64(length)-(end-got), kerr.InvalidRecord)
	}
	return delta, nil
}

// bytesField reads a length-prefixed field of record i that must end by
// end; minLen is -1 where null is allowed, 0 where it is not. Kafka reads
// any negative length as null; only -1 is accepted here, which is what
// librdkafka accepts. It returns the field's length (-1: null).
func (s *recordStream) bytesField(i int32, end int64, what string, minLen int32) (int32, error) {
	n, ok := s.varint()
	if !ok {
		return 0, s.fail(i, what+" length")
	}
	if s.offset() > end { // what+" length" allocates: only on failure
		return 0, s.within(i, end, what+" length")
	}
	if n < minLen {
		return 0, fmt.Errorf("record %d: %s length %d: %w", i, what, n, kerr.InvalidRecord)
	}
	if n <= 0 {
		return n, nil
	}
	if int64(n) > end-s.offset() {
		return 0, fmt.Errorf("record %d: %s of %d bytes with %d left in the record: %w", i, what, n, end-s.offset(), kerr.InvalidRecord)
	}
	if !s.skip(int64(n)) {
		return 0, s.fail(i, what)
	}
	return n, nil
}

// within checks that field what of record i, just read, ended inside the
// record, which ends at end.
func (s *recordStream) within(i int32, end int64, what string) error {
	if s.offset() > end {
		return fmt.Errorf("record %d: %s ends %d bytes past the record: %w", i, what, s.offset()-end, kerr.InvalidRecord)
	}
	return nil
}

// fail explains why field what of record i could not be read: the
// decompressor failed or hit the bound, or the records ended or hold a
// malformed varint.
func (s *recordStream) fail(i int32, what string) error {
	if err := s.streamErr(); err != nil {
		return fmt.Errorf("record %d: %s: %w", i, what, err)
	}
	if s.pos == len(s.buf) {
		return fmt.Errorf("record %d: the records end before its %s: %w", i, what, kerr.InvalidRecord)
	}
	return fmt.Errorf("record %d: malformed or truncated %s: %w", i, what, kerr.InvalidRecord)
}

// streamErr is the decompressor's failure, if any, as a Kafka error.
func (s *recordStream) streamErr() error {
	switch err := s.err; {
	case err == nil || err == io.EOF:
		return nil
	case errors.Is(err, errDecompressedTooLarge):
		return fmt.Errorf("records decompress to more than %d bytes (max-decompressed-batch-bytes): %w", s.limit, kerr.MessageTooLarge)
	case errors.Is(err, zstd.ErrWindowSizeExceeded), errors.Is(err, zstd.ErrDecoderSizeExceeded):
		return fmt.Errorf("zstd: %v (windows are limited to %d bytes): %w", err, zstdMaxWindow, kerr.MessageTooLarge)
	default:
		return fmt.Errorf("%s: decompress: %v: %w", s.codec, err, kerr.CorruptMessage)
	}
}

// streamBufs are the buffers decompressed records are read through.
var streamBufs = sync.Pool{New: func() any { return new([streamBufSize]byte) }}

// walkStream walks records read from src through a pooled buffer.
func walkStream(h *batchHeader, codec string, src io.Reader, lim batchLimits) error {
	space := streamBufs.Get().(*[streamBufSize]byte)
	defer streamBufs.Put(space)
	s := recordStream{src: src, limit: lim.maxDecompressed, space: space[:], codec: codec, ts: timestampWindow(h, lim), keys: lim.keys}
	s.buf = s.space[:0]
	return s.walk(h)
}

// gzipSource is a pooled gzip reader with the reader of its input.
type gzipSource struct {
	r   gzip.Reader
	src bytes.Reader
}

var gzipSources = sync.Pool{New: func() any { return new(gzipSource) }}

func walkGzip(h *batchHeader, recs []byte, lim batchLimits) error {
	g := gzipSources.Get().(*gzipSource)
	defer gzipSources.Put(g)
	g.src.Reset(recs)
	if err := g.r.Reset(&g.src); err != nil {
		return fmt.Errorf("gzip: %v: %w", err, kerr.CorruptMessage)
	}
	return walkStream(h, "gzip", &g.r, lim)
}

// lz4Source is a pooled lz4 frame reader with the reader of its input.
type lz4Source struct {
	r   *lz4.Reader
	src bytes.Reader
}

var lz4Sources = sync.Pool{New: func() any { return &lz4Source{r: lz4.NewReader(nil)} }}

func walkLz4(h *batchHeader, recs []byte, lim batchLimits) error {
	if err := checkLz4Frame(recs); err != nil {
		return fmt.Errorf("lz4: %v: %w", err, kerr.CorruptMessage)
	}
	l := lz4Sources.Get().(*lz4Source)
	defer lz4Sources.Put(l)
	l.src.Reset(recs)
	l.r.Reset(&l.src)
	return walkStream(h, "lz4", l.r, lim)
}

// checkLz4Frame checks that b is exactly one LZ4 frame that Kafka's Java
// client can read (Lz4BlockInputStream, Lz4BlockOutputStream.FLG/BD):
// version 1, independent blocks, no preset dictionary, reserved bits
// clear, a block size of 64 KiB to 4 MiB and no block above it, and
// nothing after the end mark. The Java reader stops at the first end mark
// while pierrec/lz4 (kgo) goes on to a second frame, so a batch spanning
// two frames would read differently. Checksums are left to the decoder.
func checkLz4Frame(b []byte) error {
	const magic = 0x184D2204
	if len(b) < 7 {
		return errors.New("frame shorter than its header")
	}
	if binary.LittleEndian.Uint32(b) != magic {
		return fmt.Errorf("magic %#x, want %#x", binary.LittleEndian.Uint32(b), magic)
	}
	flg, bd := b[4], b[5]
	if flg>>6 != 1 || flg&0x20 == 0 || flg&0x03 != 0 || bd&0x8f != 0 || bd>>4 < 4 {
		return fmt.Errorf("frame descriptor %#02x %#02x: Kafka's clients read version 1 frames of independent blocks of 64 KiB to 4 MiB without a dictionary", flg, bd)
	}
	maxBlock := 1 << (8 + 2*(bd>>4))
	pos := 7 // magic, FLG, BD, header checksum
	if flg&0x08 != 0 {
		pos += 8 // content size
	}
	blockChecksum := flg&0x10 != 0
	for {
		if len(b)-pos < 4 {
			return errors.New("frame ends before its end mark")
		}
		size := binary.LittleEndian.Uint32(b[pos:])
		pos += 4
		if size == 0 {
			break
		}
		n := int(size &^ (1 << 31))
		if n > maxBlock {
			return fmt.Errorf("block of %d bytes in a frame of %d-byte blocks", n, maxBlock)
		}
		if blockChecksum {
			n += 4
		}
		if n > len(b)-pos {
			return errors.New("block past the end of the frame")
		}
		pos += n
	}
	if flg&0x04 != 0 {
		pos += 4 // content checksum
	}
	if pos != len(b) {
		return fmt.Errorf("%d bytes after the frame", len(b)-pos)
	}
	return nil
}

// zstdSource is a pooled zstd stream decoder with the reader of its input.
type zstdSource struct {
	d   *zstd.Decoder
	src bytes.Reader
}

var zstdSources = sync.Pool{New: func() any {
	// Concurrency 1 decodes synchronously, without goroutines; lowmem
	// grows buffers as needed. The window bound is what the decoder may
	// allocate up front; the decompressed bound is the stream's.
	d, err := zstd.NewReader(nil,
		zstd.WithDecoderConcurrency(1),
		zstd.WithDecoderLowmem(true),
		zstd.WithDecoderMaxWindow(zstdMaxWindow),
		zstd.WithDecoderMaxMemory(zstdMaxWindow),
	)
	if err != nil {
		panic(fmt.Sprintf("zstd decoder options: %v", err)) // constant options
	}
	z := &zstdSource{d: d}
	runtime.AddCleanup(z, func(d *zstd.Decoder) { d.Close() }, d)
	return z
}}

func walkZstd(h *batchHeader, recs []byte, lim batchLimits) error {
	z := zstdSources.Get().(*zstdSource)
	defer zstdSources.Put(z)
	z.src.Reset(recs)
	// A *bytes.Reader, unlike a *bytes.Buffer, is decoded as a stream, not
	// all at once into a buffer the decoder keeps.
	if err := z.d.Reset(&z.src); err != nil {
		return fmt.Errorf("zstd: %v: %w", err, kerr.CorruptMessage)
	}
	return walkStream(h, "zstd", z.d, lim)
}

// xerialMagic starts snappy data framed by the Java snappy library
// (snappy-java's SnappyOutputStream, what the Java producer writes): the
// magic, a version and a minimum compatible version (4 bytes each), then
// blocks of a 4-byte big-endian length and a raw snappy block.
var xerialMagic = []byte{0x82, 'S', 'N', 'A', 'P', 'P', 'Y', 0}

const xerialHeaderSize = 16

// snappyBufs holds decoded snappy blocks for reuse.
var snappyBufs = sync.Pool{New: func() any { return new([]byte) }}

func getSnappyBuf() *[]byte { return snappyBufs.Get().(*[]byte) }

func putSnappyBuf(b *[]byte) {
	if cap(*b) <= pooledBufMax {
		snappyBufs.Put(b)
	}
}

// walkSnappy walks xerial-framed snappy (Java producers) block by block,
// or raw snappy (kgo, librdkafka) decoded whole, since a raw block may
// copy from anywhere before. Either way as kgo tells them apart (the
// xerial magic on more than a header's worth of bytes), and with the
// standard snappy decoder: the S2 extensions kgo's decoder also takes are
// refused, because Java and librdkafka consumers cannot read them.
func walkSnappy(h *batchHeader, recs []byte, lim batchLimits) error {
	limit := lim.maxDecompressed
	buf := getSnappyBuf()
	defer putSnappyBuf(buf)
	if len(recs) > xerialHeaderSize && bytes.HasPrefix(recs, xerialMagic) {
		if v := int32(binary.BigEndian.Uint32(recs[8:])); v < 1 {
			return fmt.Errorf("snappy: xerial version %d, Java clients read 1 and above: %w", v, kerr.CorruptMessage)
		}
		x := xerialReader{blocks: recs[xerialHeaderSize:], buf: buf, left: limit + 1}
		return walkStream(h, "snappy", &x, lim)
	}
	out, err := decodeSnappy(buf, recs, limit)
	if err != nil {
		return snappyErr(err, limit)
	}
	s := recordStream{buf: out, ts: timestampWindow(h, lim), keys: lim.keys}
	return s.walk(h)
}

func snappyErr(err error, limit int64) error {
	if errors.Is(err, errDecompressedTooLarge) {
		return fmt.Errorf("records decompress to more than %d bytes (max-decompressed-batch-bytes): %w", limit, kerr.MessageTooLarge)
	}
	return fmt.Errorf("snappy: %v: %w", err, kerr.CorruptMessage)
}

// decodeSnappy decodes one raw snappy block into *buf, refusing to
// allocate for a decoded length above left or above what the block can
// encode.
func decodeSnappy(buf *[]byte, block []byte, left int64) ([]byte, error) {
	n, err := snappy.DecodedLen(block)
	if err != nil {
		return nil, err
	}
	if int64(n) > left {
		return nil, errDecompressedTooLarge
	}
	if n > snappyMaxRatio*len(block) {
		return nil, fmt.Errorf("block of %d bytes claims %d decoded", len(block), n)
	}
	if cap(*buf) < n {
		*buf = make([]byte, n)
	}
	out, err := snappy.DecodeStrict((*buf)[:0], block)
	if err != nil {
		return nil, err
	}
	return out, nil
}

// xerialReader decodes xerial-framed snappy one block at a time.
type xerialReader struct {
	blocks []byte  // the framed blocks not decoded yet
	buf    *[]byte // holds the current block
	block  []byte  // the current block's unread bytes
	left   int64   // decoded bytes still allowed
}

var errXerialFraming = errors.New("malformed xerial framing")

func (x *xerialReader) Read(p []byte) (int, error) {
	for len(x.block) == 0 {
		if len(x.blocks) == 0 {
			return 0, io.EOF
		}
		if len(x.blocks) < 4 {
			return 0, errXerialFraming
		}
		size := int32(binary.BigEndian.Uint32(x.blocks))
		x.blocks = x.blocks[4:]
		if size <= 0 || int(size) > len(x.blocks) {
			return 0, errXerialFraming
		}
		out, err := decodeSnappy(x.buf, x.blocks[:size], x.left)
		if err != nil {
			return 0, err
		}
		x.blocks = x.blocks[size:]
		x.left -= int64(len(out))
		x.block = out
	}
	n := copy(p, x.block)
	x.block = x.block[n:]
	return n, nil
}
