package wal

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
)

// Frame layout (version 1), all integers little-endian. One frame is the data
// of one tidwall entry; tidwall itself prefixes it with uvarint(len(frame)).
//
//	offset  size  field
//	     0     1  version          (1)
//	     1     1  kind             (Kind: 1 data, 2 no-op, 3 conf change, 4 meta)
//	     2     8  term             u64, raft term (0 standalone)
//	    10     8  baseOffset       i64, Kafka offset of the first record
//	    18     4  lastOffsetDelta  i32, last offset = baseOffset + delta
//	    22     8  maxTimestamp     i64, ms
//	    30     n  payload
//	  30+n     4  crc              u32, CRC32C (Castagnoli) of bytes [0, 30+n)
//
// The checksum is last so that a torn write can never look complete. The
// header has a fixed size so the index can be rebuilt from headers alone.
const (
	frameVersion  = 1
	headerSize    = 30
	crcSize       = 4
	frameOverhead = headerSize + crcSize

	// maxPayload bounds one entry. tidwall keeps whole segments in memory
	// and the index stores in-segment byte positions as uint32.
	maxPayload = 256 << 20
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Frame decoding errors; all wrap ErrCorrupt.
var (
	errShortFrame  = fmt.Errorf("%w: frame too short", ErrCorrupt)
	errVersion     = fmt.Errorf("%w: unknown frame version", ErrCorrupt)
	errKind        = fmt.Errorf("%w: unknown entry kind", ErrCorrupt)
	errChecksum    = fmt.Errorf("%w: checksum mismatch", ErrCorrupt)
	errFrameLength = fmt.Errorf("%w: bad length prefix", ErrCorrupt)
)

// header is a decoded frame header: everything but the payload.
type header struct {
	kind            Kind
	term            uint64
	baseOffset      int64
	lastOffsetDelta int32
	maxTimestamp    int64
}

func (h *header) lastOffset() int64 { return h.baseOffset + int64(h.lastOffsetDelta) }

// header is the frame header of e.
func (e *Entry) header() header {
	return header{kind: e.Kind, term: e.Term, baseOffset: e.BaseOffset,
		lastOffsetDelta: e.LastOffsetDelta, maxTimestamp: e.MaxTimestamp}
}

func (k Kind) valid() bool { return k >= KindData && k <= KindControl }

// frameSize is the encoded size of e.
func frameSize(e *Entry) int { return frameOverhead + len(e.Payload) }

// appendFrame appends the frame of e to dst.
func appendFrame(dst []byte, e *Entry) []byte {
	start := len(dst)
	var h [headerSize]byte
	h[0] = frameVersion
	h[1] = byte(e.Kind)
	binary.LittleEndian.PutUint64(h[2:], e.Term)
	binary.LittleEndian.PutUint64(h[10:], uint64(e.BaseOffset))
	binary.LittleEndian.PutUint32(h[18:], uint32(e.LastOffsetDelta))
	binary.LittleEndian.PutUint64(h[22:], uint64(e.MaxTimestamp))
	dst = append(dst, h[:]...)
	dst = append(dst, e.Payload...)
	crc := crc32.Checksum(dst[start:], castagnoli)
	return binary.LittleEndian.AppendUint32(dst, crc)
}

// decodeHeader decodes the header of frame b without verifying the checksum.
func decodeHeader(b []byte) (header, error) {
	if len(b) < frameOverhead {
		return header{}, errShortFrame
	}
	if b[0] != frameVersion {
		return header{}, errVersion
	}
	h := header{
		kind:            Kind(b[1]),
		term:            binary.LittleEndian.Uint64(b[2:]),
		baseOffset:      int64(binary.LittleEndian.Uint64(b[10:])),
		lastOffsetDelta: int32(binary.LittleEndian.Uint32(b[18:])),
		maxTimestamp:    int64(binary.LittleEndian.Uint64(b[22:])),
	}
	if !h.kind.valid() {
		return header{}, errKind
	}
	return h, nil
}

// checkFrame verifies the checksum of frame b.
func checkFrame(b []byte) error {
	if len(b) < frameOverhead {
		return errShortFrame
	}
	n := len(b) - crcSize
	if crc32.Checksum(b[:n], castagnoli) != binary.LittleEndian.Uint32(b[n:]) {
		return errChecksum
	}
	return nil
}

// decodeFrame decodes and verifies a whole frame. The payload aliases b.
func decodeFrame(b []byte) (Entry, error) {
	h, err := decodeHeader(b)
	if err != nil {
		return Entry{}, err
	}
	if err := checkFrame(b); err != nil {
		return Entry{}, err
	}
	return h.entry(b), nil
}

// entry is the entry of frame b, whose header is h. The payload aliases b.
func (h *header) entry(b []byte) Entry {
	return Entry{
		Kind:            h.kind,
		Term:            h.term,
		BaseOffset:      h.baseOffset,
		LastOffsetDelta: h.lastOffsetDelta,
		MaxTimestamp:    h.maxTimestamp,
		Payload:         b[headerSize : len(b)-crcSize],
	}
}

// uvarintLen is the size of tidwall's length prefix for n bytes of data.
func uvarintLen(n int) int {
	l := 1
	for x := uint64(n); x >= 0x80; x >>= 7 {
		l++
	}
	return l
}

// storedSize is the number of segment-file bytes a frame of n bytes takes.
func storedSize(n int) int64 { return int64(uvarintLen(n) + n) }
