package cluster

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"testing"

	"go.etcd.io/raft/v3/raftpb"
)

// Frame and handshake encoding, without sockets.

// ---------------------------------------------------------------------------
// frames

func TestFrameRoundTrip(t *testing.T) {
	var batches [][]GroupMessage
	batches = append(batches, nil) // heartbeat
	batches = append(batches, []GroupMessage{{}})
	one := testMsg(1, 2, 7, 3)
	batches = append(batches, []GroupMessage{one})
	var many []GroupMessage
	for i := uint64(0); i < 500; i++ {
		many = append(many, testMsg(1, 2, i, int(i%4)))
	}
	batches = append(batches, many)
	snap := GroupMessage{Group: 1 << 40, Msg: raftpb.Message{Type: raftpb.MsgSnap, From: 3, To: 1, Term: 9,
		Snapshot: &raftpb.Snapshot{Data: []byte("snapshot data"), Metadata: raftpb.SnapshotMetadata{
			Index: 100, Term: 8, ConfState: raftpb.ConfState{Voters: []uint64{1, 2, 3}}}}}}
	batches = append(batches, []GroupMessage{snap, one, {Group: 5, Msg: raftpb.Message{Type: raftpb.MsgHeartbeat, Context: []byte("ctx")}}})

	var stream bytes.Buffer
	var e frameEncoder
	for bi, batch := range batches {
		frame, n, err := e.encode(batch, defaultMaxFrameBytes)
		if err != nil || n != len(batch) {
			t.Fatalf("batch %d: encode: n=%d err=%v", bi, n, err)
		}
		stream.Write(frame)
		got, used, err := decodeFrame(frame, defaultMaxFrameBytes)
		if err != nil || used != len(frame) {
			t.Fatalf("batch %d: decode: used %d of %d, err=%v", bi, used, len(frame), err)
		}
		if len(got) != len(batch) {
			t.Fatalf("batch %d: %d messages decoded, %d encoded", bi, len(got), len(batch))
		}
		for i := range got {
			if !sameMsg(got[i], batch[i]) {
				t.Fatalf("batch %d message %d differs", bi, i)
			}
		}
	}
	// The same frames read back from a stream through one reused buffer.
	r := bufio.NewReader(&stream)
	var buf []byte
	for bi, batch := range batches {
		payload, nb, err := readFrame(r, buf, defaultMaxFrameBytes)
		if err != nil {
			t.Fatalf("batch %d: readFrame: %v", bi, err)
		}
		buf = nb
		got, err := decodeFramePayload(payload)
		if err != nil || len(got) != len(batch) {
			t.Fatalf("batch %d: %d messages, err=%v", bi, len(got), err)
		}
		for i := range got {
			if !sameMsg(got[i], batch[i]) {
				t.Fatalf("batch %d message %d differs after buffer reuse", bi, i)
			}
		}
	}
	if _, _, err := readFrame(r, buf, defaultMaxFrameBytes); err != io.EOF {
		t.Fatalf("after the last frame: %v, want EOF", err)
	}
}

func TestFrameSplitAtMaxSize(t *testing.T) {
	var msgs []GroupMessage
	for i := uint64(0); i < 200; i++ {
		msgs = append(msgs, testMsg(2, 1, i, 4))
	}
	const maxFrame = 8 << 10
	var e frameEncoder
	var got []GroupMessage
	rest := msgs
	for frames := 0; len(rest) > 0; frames++ {
		if frames > len(msgs) {
			t.Fatal("no progress")
		}
		frame, n, err := e.encode(rest, maxFrame)
		if err != nil || n == 0 {
			t.Fatalf("encode: n=%d err=%v", n, err)
		}
		if len(frame) > maxFrame {
			t.Fatalf("frame of %d bytes, max %d", len(frame), maxFrame)
		}
		dec, _, err := decodeFrame(frame, maxFrame)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, dec...)
		rest = rest[n:]
	}
	checkStream(t, 2, 1, got, 0, 4)

	big := GroupMessage{Msg: raftpb.Message{Entries: []raftpb.Entry{{Data: make([]byte, maxFrame)}}}}
	if _, n, err := e.encode([]GroupMessage{big, msgs[0]}, maxFrame); !errors.Is(err, errMessageTooLarge) || n != 1 {
		t.Fatalf("oversized message: n=%d err=%v", n, err)
	}
}

// frameWith builds a frame around body with a correct CRC and length.
func frameWith(body []byte) []byte {
	f := make([]byte, frameHeaderLen, frameHeaderLen+len(body))
	binary.BigEndian.PutUint32(f, uint32(4+len(body)))
	binary.BigEndian.PutUint32(f[4:], crc32.Checksum(body, castagnoli))
	return append(f, body...)
}

// nestedResponses is a Message nesting Responses depth levels deep.
func nestedResponses(depth int) []byte {
	// Built back to front: each level is tag 14/bytes, length, inner.
	b := make([]byte, 0, depth*6)
	inner := 0
	var tmp [binary.MaxVarintLen64]byte
	for i := 0; i < depth; i++ {
		n := binary.PutUvarint(tmp[:], uint64(inner))
		for j := n - 1; j >= 0; j-- {
			b = append(b, tmp[j])
		}
		b = append(b, 14<<3|2)
		inner += n + 1
	}
	for i, j := 0, len(b)-1; i < j; i, j = i+1, j-1 {
		b[i], b[j] = b[j], b[i]
	}
	return b
}

func TestFrameRejects(t *testing.T) {
	var e frameEncoder
	good, _, _ := e.encode([]GroupMessage{testMsg(1, 2, 3, 2)}, defaultMaxFrameBytes)
	good = append([]byte(nil), good...)
	flip := append([]byte(nil), good...)
	flip[len(flip)-1] ^= 1

	nested := nestedResponses(1 << 20)
	var nb []byte
	nb = binary.AppendUvarint(nb, 1)
	nb = binary.AppendUvarint(nb, 1)
	nb = binary.AppendUvarint(nb, uint64(len(nested)))
	nb = append(nb, nested...)

	cases := map[string]struct {
		frame []byte
		want  error
	}{
		"empty":            {nil, errFrameCorrupt},
		"short length":     {[]byte{0, 0}, errFrameCorrupt},
		"length too small": {[]byte{0, 0, 0, 4, 0, 0, 0, 0}, errFrameCorrupt},
		"length too large": {[]byte{0xff, 0xff, 0xff, 0xff}, errFrameTooLarge},
		"truncated":        {good[:len(good)-1], errFrameCorrupt},
		"bad crc":          {flip, errFrameChecksum},
		"huge count":       {frameWith(binary.AppendUvarint(nil, 1<<40)), errFrameCorrupt},
		"trailing bytes":   {frameWith([]byte{0, 1, 2}), errFrameCorrupt},
		"size past end":    {frameWith([]byte{1, 1, 9, 0}), errFrameCorrupt},
		"garbage message":  {frameWith([]byte{1, 1, 3, 0xff, 0xff, 0xff}), errFrameCorrupt},
		"nested responses": {frameWith(nb), errFrameCorrupt},
		"wire type group":  {frameWith([]byte{1, 1, 1, 3<<3 | 3}), errFrameCorrupt},
	}
	for name, c := range cases {
		_, _, err := decodeFrame(c.frame, 16<<20)
		if !errors.Is(err, c.want) {
			t.Errorf("%s: err=%v, want %v", name, err, c.want)
		}
	}
	// readFrame refuses an oversized length having read only the prefix.
	r := &countingReader{r: bytes.NewReader([]byte{0, 0x10, 0, 0, 1, 2, 3})}
	if _, _, err := readFrame(r, nil, 1<<20); !errors.Is(err, errFrameTooLarge) || r.n != 4 {
		t.Fatalf("oversized frame: err=%v after %d bytes read", err, r.n)
	}
}

type countingReader struct {
	r io.Reader
	n int
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += n
	return n, err
}

func TestHandshakeRoundTrip(t *testing.T) {
	h := hello{Version: handshakeVersion, From: 3, To: 1 << 60, ClusterID: "prod-eu"}
	b, err := appendHello(nil, h)
	if err != nil {
		t.Fatal(err)
	}
	got, n, err := decodeHello(b)
	if err != nil || n != len(b) || got != h {
		t.Fatalf("decodeHello: %+v n=%d err=%v", got, n, err)
	}
	got, err = readHello(bytes.NewReader(append(b, "next"...)))
	if err != nil || got != h {
		t.Fatalf("readHello: %+v err=%v", got, err)
	}
	if _, err := appendHello(nil, hello{ClusterID: string(make([]byte, 256))}); err == nil {
		t.Fatal("cluster id of 256 bytes accepted")
	}
	bad := append([]byte("XXXX"), b[4:]...)
	if _, err := readHello(bytes.NewReader(bad)); !errors.Is(err, errBadHandshake) {
		t.Fatalf("bad magic: %v", err)
	}
	if _, err := readHello(bytes.NewReader(b[:len(b)-1])); err == nil {
		t.Fatal("truncated hello accepted")
	}
	rb := appendHelloReply(nil, helloWrongCluster, "nope")
	st, reason, n, err := decodeHelloReply(rb)
	if err != nil || st != helloWrongCluster || reason != "nope" || n != len(rb) {
		t.Fatalf("reply: %d %q %d %v", st, reason, n, err)
	}
	st, reason, err = readHelloReply(bytes.NewReader(rb))
	if err != nil || st != helloWrongCluster || reason != "nope" {
		t.Fatalf("readHelloReply: %d %q %v", st, reason, err)
	}
}

// ---------------------------------------------------------------------------
// helpers

// decodeFrame decodes one whole frame (length prefix included) at the start
// of b and returns its messages and how many bytes it took. Only tests and
// FuzzDecodeFrame use it: the transport reads a frame with readFrame and
// decodes it with decodeFramePayload, which do the same checks.
func decodeFrame(b []byte, maxFrame int) ([]GroupMessage, int, error) {
	if len(b) < frameLenSize {
		return nil, 0, fmt.Errorf("%w: %d bytes, no length", errFrameCorrupt, len(b))
	}
	n := binary.BigEndian.Uint32(b)
	if err := checkFrameLen(n, maxFrame); err != nil {
		return nil, 0, err
	}
	if uint64(len(b)-frameLenSize) < uint64(n) {
		return nil, 0, fmt.Errorf("%w: length %d, %d bytes present", errFrameCorrupt, n, len(b)-frameLenSize)
	}
	msgs, err := decodeFramePayload(b[frameLenSize : frameLenSize+int(n)])
	if err != nil {
		return nil, 0, err
	}
	return msgs, frameLenSize + int(n), nil
}
