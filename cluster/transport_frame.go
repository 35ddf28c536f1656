package cluster

// Wire format of the peer transport.
//
// With peer TLS (peer_tls.go) all of this runs inside a TLS 1.3 session
// with certificates on both sides, unchanged; the acceptor then also
// refuses a hello whose sender is not the node the dialer's certificate
// names. A connection opens with a handshake. The dialer sends
//
//	magic "CHRT" | version u8 | sender node id u64 | receiver node id u64 | cluster id length u8 | cluster id
//
// (integers big-endian) and the acceptor answers
//
//	status u8 | reason length u8 | reason
//
// where status 0 accepts and anything else refuses (the acceptor then
// closes the connection). Only the node with the lower id dials: the
// acceptor refuses a hello from a higher id or from a node that is not
// one of its peers. After that the connection carries a stream of frames
// in each direction, both sides writing the same format:
//
//	length u32 | CRC32C u32 | count uvarint | count x (group uvarint | size uvarint | raftpb.Message bytes)
//
// length counts the bytes after itself (CRC and body), the CRC32C
// (Castagnoli) covers the body (count and messages). A frame with count 0
// is a heartbeat. A whole frame, length field included, is at most
// MaxFrameBytes; the reader checks that before allocating anything.

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math/bits"
	"sync"
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

const (
	frameLenSize   = 4                // the length prefix
	frameHeaderLen = frameLenSize + 4 // length prefix + CRC32C
	minFrameLen    = 4 + 1            // CRC + a count of 0: a heartbeat

	defaultMaxFrameBytes = 64 << 20

	handshakeMagic = "CHRT"
	// 3: a data entry's raft Data carries its Kafka offsets and max
	// timestamp (entry.go), so nodes of version 2, which number entries
	// themselves, must not replicate with it. 2: one connection per node
	// pair, dialed by the lower id, frames both ways (1: one connection
	// per direction, frames from the dialer only).
	handshakeVersion = 3
	helloFixedLen    = 4 + 1 + 8 + 8 + 1
	maxClusterIDLen  = 255
	maxReasonLen     = 255

	// encoder buffers larger than this are not kept in the pool.
	maxPooledFrameBuf = 4 << 20
)

var (
	errFrameTooLarge   = errors.New("cluster: frame larger than the maximum frame size")
	errFrameCorrupt    = errors.New("cluster: malformed frame")
	errFrameChecksum   = errors.New("cluster: frame checksum mismatch")
	errMessageTooLarge = errors.New("cluster: message does not fit in a frame")
	errBadHandshake    = errors.New("cluster: malformed handshake")
	// A TLS record (content type 22, handshake) where a hello should be: a
	// dialer with peer TLS reached an acceptor without it.
	errTLSHello = fmt.Errorf("%w: a TLS handshake, not a hello", errBadHandshake)
)

// heartbeatFrame is the frame with no messages.
var heartbeatFrame = func() []byte {
	var e frameEncoder
	f, _, _ := e.encode(nil, defaultMaxFrameBytes)
	return append([]byte(nil), f...)
}()

func uvarintLen(x uint64) int { return (bits.Len64(x|1) + 6) / 7 }

// frameEncoder encodes message batches into frames in a reusable buffer.
type frameEncoder struct {
	buf   []byte
	sizes []int
}

var encoderPool = sync.Pool{New: func() any { return new(frameEncoder) }}

func getEncoder() *frameEncoder { return encoderPool.Get().(*frameEncoder) }

func putEncoder(e *frameEncoder) {
	if cap(e.buf) > maxPooledFrameBuf {
		e.buf = nil
	}
	if cap(e.sizes) > 1<<16 {
		e.sizes = nil
	}
	encoderPool.Put(e)
}

// encode encodes as many leading messages of msgs as fit into one frame of
// at most maxFrame bytes and returns the frame (valid until the next call)
// and how many messages it holds. With no messages it returns a heartbeat.
// If msgs[0] alone does not fit, it returns errMessageTooLarge and n = 1, so
// the caller can drop that message and go on.
func (e *frameEncoder) encode(msgs []GroupMessage, maxFrame int) (frame []byte, n int, err error) {
	const countReserve = binary.MaxVarintLen64
	e.sizes = e.sizes[:0]
	total := frameHeaderLen + countReserve
	for i := range msgs {
		sz := msgs[i].Msg.Size()
		rec := uvarintLen(uint64(msgs[i].Group)) + uvarintLen(uint64(sz)) + sz
		if total+rec > maxFrame {
			if i == 0 {
				return nil, 1, fmt.Errorf("%w: %d bytes, maximum frame %d", errMessageTooLarge, rec, maxFrame)
			}
			break
		}
		total += rec
		e.sizes = append(e.sizes, sz)
	}
	n = len(e.sizes)
	total += uvarintLen(uint64(n)) - countReserve
	if cap(e.buf) < total {
		e.buf = make([]byte, total, total+total/4)
	}
	b := e.buf[:total]
	off := frameHeaderLen
	off += binary.PutUvarint(b[off:], uint64(n))
	for i, sz := range e.sizes {
		off += binary.PutUvarint(b[off:], uint64(msgs[i].Group))
		off += binary.PutUvarint(b[off:], uint64(sz))
		w, err := msgs[i].Msg.MarshalToSizedBuffer(b[off : off+sz])
		if err != nil {
			return nil, 0, err
		}
		if w != sz {
			return nil, 0, fmt.Errorf("cluster: message marshalled to %d bytes, sized %d", w, sz)
		}
		off += sz
	}
	if off != total {
		return nil, 0, fmt.Errorf("cluster: frame encoded to %d bytes, sized %d", off, total)
	}
	binary.BigEndian.PutUint32(b[0:], uint32(total-frameLenSize))
	binary.BigEndian.PutUint32(b[frameLenSize:], crc32.Checksum(b[frameHeaderLen:], castagnoli))
	return b, n, nil
}

// checkFrameLen validates a frame's length prefix against the maximum.
func checkFrameLen(n uint32, maxFrame int) error {
	if n < minFrameLen {
		return fmt.Errorf("%w: length %d", errFrameCorrupt, n)
	}
	if uint64(n)+frameLenSize > uint64(maxFrame) {
		return fmt.Errorf("%w: %d bytes, maximum %d", errFrameTooLarge, uint64(n)+frameLenSize, maxFrame)
	}
	return nil
}

// readFrame reads one frame from r. It checks the length prefix against
// maxFrame before allocating, reads the rest into buf (grown if needed) and
// returns the frame's payload (CRC and body) and the buffer to reuse.
func readFrame(r io.Reader, buf []byte, maxFrame int) (payload, newBuf []byte, err error) {
	var lb [frameLenSize]byte
	if _, err := io.ReadFull(r, lb[:]); err != nil {
		return nil, buf, err
	}
	n := binary.BigEndian.Uint32(lb[:])
	if err := checkFrameLen(n, maxFrame); err != nil {
		return nil, buf, err
	}
	if uint64(cap(buf)) < uint64(n) {
		buf = make([]byte, n)
	}
	payload = buf[:n]
	if _, err := io.ReadFull(r, payload); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return nil, buf, err
	}
	return payload, buf, nil
}

// decodeFramePayload checks the CRC of a frame's payload (what follows the
// length prefix) and decodes its messages. The messages do not alias p
// (raftpb's Unmarshal copies byte fields), so p may be reused. A heartbeat
// decodes to no messages.
func decodeFramePayload(p []byte) ([]GroupMessage, error) {
	if len(p) < minFrameLen {
		return nil, fmt.Errorf("%w: payload of %d bytes", errFrameCorrupt, len(p))
	}
	body := p[4:]
	if got, want := crc32.Checksum(body, castagnoli), binary.BigEndian.Uint32(p); got != want {
		return nil, fmt.Errorf("%w: computed %08x, frame says %08x", errFrameChecksum, got, want)
	}
	count, k := binary.Uvarint(body)
	if k <= 0 {
		return nil, fmt.Errorf("%w: bad message count", errFrameCorrupt)
	}
	body = body[k:]
	// Every message takes at least two bytes (group and size).
	if count > uint64(len(body)/2) {
		return nil, fmt.Errorf("%w: %d messages in %d bytes", errFrameCorrupt, count, len(body))
	}
	if count == 0 {
		if len(body) != 0 {
			return nil, fmt.Errorf("%w: %d trailing bytes", errFrameCorrupt, len(body))
		}
		return nil, nil
	}
	msgs := make([]GroupMessage, count)
	for i := range msgs {
		g, k := binary.Uvarint(body)
		if k <= 0 {
			return nil, fmt.Errorf("%w: message %d: bad group id", errFrameCorrupt, i)
		}
		body = body[k:]
		sz, k := binary.Uvarint(body)
		if k <= 0 || sz > uint64(len(body)-k) {
			return nil, fmt.Errorf("%w: message %d: bad size", errFrameCorrupt, i)
		}
		body = body[k:]
		mb := body[:sz]
		body = body[sz:]
		if err := checkMessageWire(mb); err != nil {
			return nil, fmt.Errorf("%w: message %d: %v", errFrameCorrupt, i, err)
		}
		if err := msgs[i].Msg.Unmarshal(mb); err != nil {
			return nil, fmt.Errorf("%w: message %d: %v", errFrameCorrupt, i, err)
		}
		msgs[i].Group = GroupID(g)
	}
	if len(body) != 0 {
		return nil, fmt.Errorf("%w: %d trailing bytes", errFrameCorrupt, len(body))
	}
	return msgs, nil
}

// raftpb.Message field 14 (Responses) holds nested Messages. Raft only fills
// it in local storage messages, never in messages to peers, and
// Unmarshal recurses into it: a frame of a few MiB nesting Responses
// millions deep would exhaust the stack (a fatal error, not a panic). So
// the top-level fields are checked, and Responses refused, before
// Unmarshal sees the bytes. The other nested types (Entry, Snapshot) do not
// recurse; unknown fields inside them are skipped iteratively.
const messageResponsesField = 14

func checkMessageWire(b []byte) error {
	for len(b) > 0 {
		tag, n := binary.Uvarint(b)
		if n <= 0 {
			return errors.New("bad field tag")
		}
		b = b[n:]
		field, wireType := tag>>3, tag&7
		if field == messageResponsesField {
			return errors.New("responses field not allowed on the wire")
		}
		switch wireType {
		case 0: // varint
			_, n := binary.Uvarint(b)
			if n <= 0 {
				return errors.New("bad varint field")
			}
			b = b[n:]
		case 1: // fixed64
			if len(b) < 8 {
				return errors.New("short fixed64 field")
			}
			b = b[8:]
		case 2: // length-delimited
			l, n := binary.Uvarint(b)
			if n <= 0 || l > uint64(len(b)-n) {
				return errors.New("bad length-delimited field")
			}
			b = b[n+int(l):]
		case 5: // fixed32
			if len(b) < 4 {
				return errors.New("short fixed32 field")
			}
			b = b[4:]
		default:
			return fmt.Errorf("wire type %d not allowed", wireType)
		}
	}
	return nil
}

// hello is the dialer's half of the handshake.
type hello struct {
	Version   uint8
	From, To  uint64
	ClusterID string
}

// Handshake answers.
const (
	helloOK uint8 = iota
	helloBadVersion
	helloWrongCluster
	helloWrongNode
	helloBadSender
	helloWrongDirection // the sender has the higher id: the receiver dials it
	helloUnknownPeer    // the sender is not a peer of the receiver
	helloIDMismatch     // the sender is not the node its TLS certificate names
	helloTLSRequired    // a plaintext hello to a node that requires peer TLS
)

func appendHello(dst []byte, h hello) ([]byte, error) {
	if len(h.ClusterID) > maxClusterIDLen {
		return dst, fmt.Errorf("cluster: cluster id longer than %d bytes", maxClusterIDLen)
	}
	dst = append(dst, handshakeMagic...)
	dst = append(dst, h.Version)
	dst = binary.BigEndian.AppendUint64(dst, h.From)
	dst = binary.BigEndian.AppendUint64(dst, h.To)
	dst = append(dst, byte(len(h.ClusterID)))
	return append(dst, h.ClusterID...), nil
}

// decodeHello decodes a hello at the start of b and returns how many bytes
// it took.
func decodeHello(b []byte) (hello, int, error) {
	if len(b) < helloFixedLen {
		return hello{}, 0, fmt.Errorf("%w: %d bytes", errBadHandshake, len(b))
	}
	if string(b[:4]) != handshakeMagic {
		return hello{}, 0, fmt.Errorf("%w: bad magic %q", errBadHandshake, b[:4])
	}
	h := hello{
		Version: b[4],
		From:    binary.BigEndian.Uint64(b[5:]),
		To:      binary.BigEndian.Uint64(b[13:]),
	}
	l := int(b[21])
	if len(b) < helloFixedLen+l {
		return hello{}, 0, fmt.Errorf("%w: cluster id of %d bytes, %d present", errBadHandshake, l, len(b)-helloFixedLen)
	}
	h.ClusterID = string(b[helloFixedLen : helloFixedLen+l])
	return h, helloFixedLen + l, nil
}

// readHello reads a hello from r; it never reads past it.
func readHello(r io.Reader) (hello, error) {
	var b [helloFixedLen + maxClusterIDLen]byte
	if _, err := io.ReadFull(r, b[:helloFixedLen]); err != nil {
		return hello{}, err
	}
	if b[0] == 22 {
		return hello{}, errTLSHello
	}
	if string(b[:4]) != handshakeMagic {
		return hello{}, fmt.Errorf("%w: bad magic %q", errBadHandshake, b[:4])
	}
	l := int(b[helloFixedLen-1])
	if _, err := io.ReadFull(r, b[helloFixedLen:helloFixedLen+l]); err != nil {
		return hello{}, err
	}
	h, _, err := decodeHello(b[:helloFixedLen+l])
	return h, err
}

func appendHelloReply(dst []byte, status uint8, reason string) []byte {
	if len(reason) > maxReasonLen {
		reason = reason[:maxReasonLen]
	}
	dst = append(dst, status, byte(len(reason)))
	return append(dst, reason...)
}

func decodeHelloReply(b []byte) (status uint8, reason string, n int, err error) {
	if len(b) < 2 {
		return 0, "", 0, fmt.Errorf("%w: reply of %d bytes", errBadHandshake, len(b))
	}
	l := int(b[1])
	if len(b) < 2+l {
		return 0, "", 0, fmt.Errorf("%w: reason of %d bytes, %d present", errBadHandshake, l, len(b)-2)
	}
	return b[0], string(b[2 : 2+l]), 2 + l, nil
}

func readHelloReply(r io.Reader) (status uint8, reason string, err error) {
	var b [2 + maxReasonLen]byte
	if _, err := io.ReadFull(r, b[:2]); err != nil {
		return 0, "", err
	}
	l := int(b[1])
	if _, err := io.ReadFull(r, b[2:2+l]); err != nil {
		return 0, "", err
	}
	status, reason, _, err = decodeHelloReply(b[:2+l])
	return status, reason, err
}
