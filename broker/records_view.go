package broker

import (
	"encoding/binary"
	"fmt"
	"io"
	"math"

	"github.com/twmb/franz-go/pkg/kerr"
)

// Reading stored records for display (the web console's message browser).
// Fetch returns whole batches as stored; ReadRecords decodes them,
// decompressing with the same pooled, bounded readers the produce path
// uses, so that a hostile batch can neither panic the broker nor make it
// allocate more than the caller allows.

// ViewRecord is one record of a stored batch. Key, Value and the header
// values alias the caller's buffer or ReadRecords' decompression buffer:
// they are valid only during the callback.
type ViewRecord struct {
	Offset    int64
	Timestamp int64
	Key       []byte // nil: a null key
	Value     []byte // nil: a null value (a tombstone)
	Headers   []ViewHeader
	// Of the batch: a control batch holds transaction markers; a
	// transactional batch belongs to ProducerID's transaction.
	Control       bool
	Transactional bool
	ProducerID    int64
	// LogAppendTime: Timestamp is the broker's append time, not the
	// producer's.
	LogAppendTime bool
}

// ViewHeader is one record header.
type ViewHeader struct {
	Key   string
	Value []byte // nil: a null value
}

// ReadRecords decodes buf, record batches back to back as Fetch returns
// them, and calls fn with each record in offset order until fn returns
// false. A compressed batch is decompressed into one buffer of at most
// maxDecompressed bytes (a larger one is an error naming the batch). A
// trailing partial batch ends the walk without error; anything malformed
// is an error wrapping CORRUPT_MESSAGE. It never panics on any input.
func ReadRecords(buf []byte, maxDecompressed int64, fn func(*ViewRecord) bool) error {
	var rec ViewRecord
	var plain []byte // decompression buffer, reused across batches
	for pos := 0; pos+logOverhead <= len(buf); {
		length := int64(int32(binary.BigEndian.Uint32(buf[pos+offBatchLength:])))
		if length < batchHeaderSize-logOverhead {
			return fmt.Errorf("batch at byte %d: length %d: %w", pos, length, kerr.CorruptMessage)
		}
		if int64(pos)+logOverhead+length > int64(len(buf)) {
			return nil // partial last batch
		}
		b := buf[pos : pos+logOverhead+int(length)]
		pos += len(b)
		if b[offMagic] != 2 {
			return fmt.Errorf("batch at offset %d: magic %d: %w", int64(binary.BigEndian.Uint64(b)), b[offMagic], kerr.CorruptMessage)
		}
		h := readBatchHeader(b)
		base := int64(binary.BigEndian.Uint64(b[offBaseOffset:]))
		recs := b[batchHeaderSize:]
		if h.compression() != codecNone {
			var err error
			if plain, err = decompressView(plain[:0], &h, recs, maxDecompressed); err != nil {
				return fmt.Errorf("batch at offset %d: %w", base, err)
			}
			recs = plain
		}
		more, err := walkViewRecords(&h, base, recs, &rec, fn)
		if err != nil {
			return fmt.Errorf("batch at offset %d: %w", base, err)
		}
		if !more {
			return nil
		}
	}
	return nil
}

// decompressView reads a compressed batch's records into dst, at most
// limit bytes.
func decompressView(dst []byte, h *batchHeader, recs []byte, limit int64) ([]byte, error) {
	if limit <= 0 {
		return dst, fmt.Errorf("compressed records: no room to decompress: %w", kerr.CorruptMessage)
	}
	r, done, err := openRecords(h, recs, limit)
	if err != nil {
		return dst, err
	}
	defer done()
	lr := &io.LimitedReader{R: r, N: limit + 1}
	for {
		if len(dst) == cap(dst) {
			dst = append(dst, 0)[:len(dst)]
		}
		n, err := lr.Read(dst[len(dst):cap(dst)])
		dst = dst[:len(dst)+n]
		if int64(len(dst)) > limit {
			return dst[:0], fmt.Errorf("records decompress to more than %d bytes: %w", limit, kerr.CorruptMessage)
		}
		if err == io.EOF {
			return dst, nil
		}
		if err != nil {
			return dst[:0], fmt.Errorf("decompress: %v: %w", err, kerr.CorruptMessage)
		}
	}
}

// walkViewRecords decodes the records of one batch.
func walkViewRecords(h *batchHeader, base int64, recs []byte, rec *ViewRecord, fn func(*ViewRecord) bool) (bool, error) {
	for i := int32(0); i < h.numRecords; i++ {
		if len(recs) == 0 {
			return true, fmt.Errorf("record %d of %d: missing: %w", i, h.numRecords, kerr.CorruptMessage)
		}
		length, n := binary.Varint(recs)
		if n <= 0 || length < 1 || length > int64(len(recs)-n) {
			return true, fmt.Errorf("record %d: bad length: %w", i, kerr.CorruptMessage)
		}
		body := recs[n : n+int(length)]
		recs = recs[n+int(length):]
		if err := decodeViewRecord(h, base, body[1:], rec); err != nil {
			return true, fmt.Errorf("record %d: %w", i, err)
		}
		if !fn(rec) {
			return false, nil
		}
	}
	return true, nil
}

// decodeViewRecord decodes one record after its attributes byte.
func decodeViewRecord(h *batchHeader, base int64, b []byte, rec *ViewRecord) error {
	d := viewDecoder{b: b}
	tsDelta := d.varint()
	offDelta := d.varint()
	key := d.bytes()
	value := d.bytes()
	count := d.varint()
	if d.bad || offDelta < 0 || offDelta > math.MaxInt32 || count < 0 || count > int64(len(d.b)) {
		return fmt.Errorf("bad record framing: %w", kerr.CorruptMessage)
	}
	headers := rec.Headers[:0]
	for j := int64(0); j < count; j++ {
		hk := d.bytes()
		hv := d.bytes()
		if d.bad || hk == nil {
			return fmt.Errorf("header %d: bad framing: %w", j, kerr.CorruptMessage)
		}
		headers = append(headers, ViewHeader{Key: string(hk), Value: hv})
	}
	ts := h.baseTimestamp + tsDelta
	if h.logAppendTime() {
		ts = h.maxTimestamp
	}
	*rec = ViewRecord{Offset: base + offDelta, Timestamp: ts, Key: key, Value: value, Headers: headers,
		Control: h.control(), Transactional: h.transactional(), ProducerID: h.producerID, LogAppendTime: h.logAppendTime()}
	return nil
}

// viewDecoder reads varints and length-prefixed byte strings; any error
// sets bad and makes later reads return zero values.
type viewDecoder struct {
	b   []byte
	bad bool
}

func (d *viewDecoder) varint() int64 {
	if d.bad {
		return 0
	}
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.bad = true
		return 0
	}
	d.b = d.b[n:]
	return v
}

// bytes reads a varint length and that many bytes; -1 is null (nil).
func (d *viewDecoder) bytes() []byte {
	n := d.varint()
	switch {
	case d.bad:
		return nil
	case n == -1:
		return nil
	case n < -1 || n > int64(len(d.b)):
		d.bad = true
		return nil
	}
	v := d.b[:n:n]
	d.b = d.b[n:]
	return v
}
