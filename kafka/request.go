package kafka

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"runtime/debug"
	"sync"

	"github.com/rs/zerolog"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// minRequestHeaderBytes is a request header with a null client ID: api key,
// api version, correlation id, client id length.
const minRequestHeaderBytes = 2 + 2 + 4 + 2

// request is one decoded request frame.
type request struct {
	key      int16
	version  int16
	corrID   int32
	clientID string
	// clientHost is the client's address as Kafka reports it in group
	// descriptions: "/" and the IP ("" outside the connection loop).
	clientHost string
	// principal is who sent the request, as Kafka names principals
	// ("User:alice"); anonymousPrincipal until the connection
	// authenticates (TLS client certificate or SASL).
	principal string
	// listener is the name of the listener the request came in on
	// (advertised addresses are per listener); "" outside the connection
	// loop, which answers with each broker's default address.
	listener string
	// conn is the connection the request came on, nil outside the
	// connection loop (fuzzing). Only inOrder handlers, which run on the
	// connection's reader, may touch it: the SASL APIs.
	conn *conn
	// clientIP is the client's IP address as the authorizer matches ACL
	// hosts against it (Go's form: "127.0.0.1", "::1"); "" outside the
	// connection loop.
	clientIP string
	// budgetBytes is what this request holds of the server's byte budget,
	// returned when its handler is done.
	budgetBytes int64
	api         *api         // never nil once decodeRequest succeeded
	kreq        kmsg.Request // nil only for an unsupported version kmsg cannot decode

	// unsupported: the version is outside api's range; the answer is
	// UNSUPPORTED_VERSION.
	unsupported bool

	// order chains a produce's partitions behind earlier produces on the
	// same connection (nil outside the connection loop, e.g. in fuzzing).
	order *partitionOrder

	// Set by handlers: noResponse for acks=0 produce; closeReason to close
	// the connection after this request.
	noResponse  bool
	closeReason string
}

func errFrameTooLarge(size, max int32) error {
	return fmt.Errorf("frame of %d bytes exceeds max request bytes %d", size, max)
}

// decodeRequest parses one frame body (everything after the size prefix):
// the request header (v1, or v2 with tagged fields for flexible versions)
// and the request. An error means the connection must be closed: an
// unknown API key, a truncated header or an undecodable body. A version we
// do not serve is not an error: it returns a request marked unsupported.
func (s *Server) decodeRequest(body []byte) (*request, error) {
	if len(body) < minRequestHeaderBytes {
		return nil, errors.New("frame shorter than a request header")
	}
	r := &request{
		key:     int16(binary.BigEndian.Uint16(body[0:])),
		version: int16(binary.BigEndian.Uint16(body[2:])),
		corrID:  int32(binary.BigEndian.Uint32(body[4:])),
	}
	r.api = lookupAPI(r.key)
	if r.api == nil {
		return nil, fmt.Errorf("unknown or unserved API key %d (version %d, correlation id %d)", r.key, r.version, r.corrID)
	}
	rest := body[8:]
	idLen := int16(binary.BigEndian.Uint16(rest))
	rest = rest[2:]
	if idLen >= 0 {
		if int(idLen) > len(rest) {
			return nil, fmt.Errorf("%s request header: client id longer than the frame", r.api.name)
		}
		r.clientID = string(rest[:idLen])
		rest = rest[idLen:]
	}

	kreq := kmsg.RequestForKey(r.key)
	if r.version < r.api.min || r.version > r.api.max {
		r.unsupported = true
		if r.version < 0 || r.version > kreq.MaxVersion() {
			return r, nil // nothing we could decode it as
		}
	}
	kreq.SetVersion(r.version)
	if kreq.IsFlexible() {
		var err error
		if rest, err = skipTaggedFields(rest); err != nil {
			if r.unsupported {
				return r, nil
			}
			return nil, fmt.Errorf("%s v%d request header: %w", r.api.name, r.version, err)
		}
	}
	if err := kreq.ReadFrom(rest); err != nil {
		if r.unsupported {
			return r, nil
		}
		return nil, fmt.Errorf("%s v%d request body: %w", r.api.name, r.version, err)
	}
	r.kreq = kreq
	if pr, ok := kreq.(*kmsg.ProduceRequest); ok && pr.Acks == 0 {
		r.noResponse = true
	}
	return r, nil
}

// handleVec answers r. It returns the encoded response frame (nil when the
// request gets no response) and a reason to close the connection after
// it, if any. A Fetch response comes as its frame plus the pieces to write
// (bufs, non-nil when the records are not copied into the frame; see
// encodeFetchResponse). A panic in a handler is logged and answered with
// UNKNOWN_SERVER_ERROR; it never reaches the connection.
func (s *Server) handleVec(ctx context.Context, r *request, log *zerolog.Logger) (frame *[]byte, bufs net.Buffers, closeReason string) {
	var resp kmsg.Response
	switch {
	case r.unsupported && r.key == 18:
		resp = s.apiVersionsUnsupported()
	case r.unsupported && r.kreq == nil:
		return encodeBareError(r.corrID, s.counted(kerr.UnsupportedVersion.Code)), nil, ""
	case r.unsupported && r.noResponse:
		return nil, nil, fmt.Sprintf("acks=0 produce at unsupported version %d", r.version)
	case r.unsupported:
		resp = r.api.fail(r.kreq, s.counted(kerr.UnsupportedVersion.Code))
	default:
		resp = s.call(ctx, r, log)
	}
	if r.noResponse {
		return nil, nil, r.closeReason
	}
	if resp == nil {
		return nil, nil, "no response could be built after a handler panic"
	}
	if fr, ok := resp.(*kmsg.FetchResponse); ok {
		frame, bufs := encodeFetchResponse(r.corrID, fr)
		return frame, bufs, r.closeReason
	}
	return encodeResponse(r.corrID, resp), nil, r.closeReason
}

// call runs r's handler, turning a panic into an UNKNOWN_SERVER_ERROR
// response (or nil if even that fails).
func (s *Server) call(ctx context.Context, r *request, log *zerolog.Logger) (resp kmsg.Response) {
	defer func() {
		if v := recover(); v != nil {
			s.panics.Add(1)
			log.Error().
				Str("api", r.api.name).Int16("version", r.version).Int32("correlation_id", r.corrID).
				Str("panic", fmt.Sprint(v)).Bytes("stack", debug.Stack()).
				Msg("request handler panicked")
			r.order.release()
			if r.noResponse {
				r.closeReason = "acks=0 produce handler panicked"
			}
			s.counted(kerr.UnknownServerError.Code)
			resp = failSafely(r)
		}
	}()
	return r.api.handle(s, ctx, r)
}

func failSafely(r *request) (resp kmsg.Response) {
	defer func() {
		if recover() != nil {
			resp = nil
		}
	}()
	return r.api.fail(r.kreq, kerr.UnknownServerError.Code)
}

// skipTaggedFields skips a tagged-field section (KIP-482): an unsigned
// varint count, then per field a varint tag, a varint size and the bytes.
func skipTaggedFields(b []byte) ([]byte, error) {
	n, b, err := readUvarint(b)
	if err != nil {
		return nil, err
	}
	for ; n > 0; n-- {
		if _, b, err = readUvarint(b); err != nil {
			return nil, err
		}
		var size uint64
		if size, b, err = readUvarint(b); err != nil {
			return nil, err
		}
		if size > uint64(len(b)) {
			return nil, errors.New("tagged field longer than the frame")
		}
		b = b[size:]
	}
	return b, nil
}

func readUvarint(b []byte) (uint64, []byte, error) {
	v, n := binary.Uvarint(b)
	if n <= 0 {
		return 0, nil, errors.New("bad varint in tagged fields")
	}
	return v, b[n:], nil
}

// Response buffers are pooled: fetch responses are large and frequent.
// Buffers grown past maxPooledBuffer are left to the garbage collector.
const maxPooledBuffer = 8 << 20

var bufferPool = sync.Pool{New: func() any { b := make([]byte, 0, 4096); return &b }}

func getBuffer() *[]byte { return bufferPool.Get().(*[]byte) }

func putBuffer(b *[]byte) {
	if cap(*b) > maxPooledBuffer {
		return
	}
	*b = (*b)[:0]
	bufferPool.Put(b)
}

// encodeResponse returns the whole frame for resp: size, correlation id,
// the response header's tagged fields when flexible (never for ApiVersions,
// whose response header is always v0 so that a client can read it before
// it knows our versions), then the body.
func encodeResponse(corrID int32, resp kmsg.Response) *[]byte {
	bp := getBuffer()
	b := append((*bp)[:0], 0, 0, 0, 0)
	b = binary.BigEndian.AppendUint32(b, uint32(corrID))
	if resp.IsFlexible() && resp.Key() != 18 {
		b = append(b, 0)
	}
	b = resp.AppendTo(b)
	binary.BigEndian.PutUint32(b, uint32(len(b)-4))
	*bp = b
	return bp
}

// encodeBareError answers a request at a version kmsg cannot decode or
// encode, so neither side knows the response layout: the correlation id,
// intact, and the error code, which is all a client can be told.
func encodeBareError(corrID int32, code int16) *[]byte {
	bp := getBuffer()
	b := append((*bp)[:0], 0, 0, 0, 6)
	b = binary.BigEndian.AppendUint32(b, uint32(corrID))
	b = binary.BigEndian.AppendUint16(b, uint16(code))
	*bp = b
	return bp
}
