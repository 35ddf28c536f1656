package cluster

import (
	"bytes"
	"encoding/binary"
	"testing"

	"go.etcd.io/raft/v3/raftpb"
)

// FuzzDecodeFrame: decoding arbitrary bytes never panics, never accepts a
// frame over the maximum, and what it accepts re-encodes to a frame that
// decodes to the same number of messages.
func FuzzDecodeFrame(f *testing.F) {
	const maxFrame = 1 << 20
	var e frameEncoder
	add := func(msgs []GroupMessage) {
		fr, _, err := e.encode(msgs, maxFrame)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(append([]byte(nil), fr...))
	}
	add(nil)
	add([]GroupMessage{{}})
	add([]GroupMessage{testMsg(1, 2, 3, 2), testMsg(1, 2, 4, 0)})
	add([]GroupMessage{{Group: 1 << 50, Msg: raftpb.Message{Type: raftpb.MsgSnap, Term: 4,
		Snapshot: &raftpb.Snapshot{Data: []byte("s"), Metadata: raftpb.SnapshotMetadata{Index: 9, Term: 3,
			ConfState: raftpb.ConfState{Voters: []uint64{1, 2}}}}}}})
	add([]GroupMessage{{Group: 3, Msg: raftpb.Message{Type: raftpb.MsgHeartbeat, Context: []byte("c"), Commit: 5}}})
	f.Add([]byte{})
	f.Add([]byte{0, 0, 0, 5, 0, 0, 0, 0, 0})
	f.Add([]byte{0xff, 0xff, 0xff, 0xff})
	f.Add(frameWith([]byte{1, 1, 2, 14<<3 | 2, 0}))
	f.Add([]byte{1, 1, 2, 14<<3 | 2, 0}) // bodies, framed by the target
	f.Add([]byte{2, 5, 2, 8, 3, 0, 0})
	f.Add(frameWith([]byte{1, 1, 1, 3<<3 | 3}))
	f.Add(frameWith(binary.AppendUvarint(nil, 1<<40)))

	f.Fuzz(func(t *testing.T, data []byte) {
		checkFrame(t, data, maxFrame)
		// Most mutations break the CRC; decoding the input as a body, in a
		// frame with a correct CRC, reaches the message parsing.
		if len(data) < maxFrame-frameHeaderLen {
			checkFrame(t, frameWith(data), maxFrame)
		}
	})
}

func checkFrame(t *testing.T, data []byte, maxFrame int) {
	{
		msgs, n, err := decodeFrame(data, maxFrame)
		// The stream reader must agree with the whole-frame decoder.
		payload, _, rerr := readFrame(bytes.NewReader(data), nil, maxFrame)
		if rerr == nil {
			if _, perr := decodeFramePayload(payload); (perr == nil) != (err == nil) {
				t.Fatalf("readFrame+decodeFramePayload err=%v, decodeFrame err=%v", perr, err)
			}
		} else if err == nil {
			t.Fatalf("decodeFrame accepted what readFrame refused: %v", rerr)
		}
		if err != nil {
			return
		}
		if n > maxFrame || n > len(data) {
			t.Fatalf("consumed %d of %d bytes (max %d)", n, len(data), maxFrame)
		}
		var e2 frameEncoder
		fr, k, err := e2.encode(msgs, 4*maxFrame)
		if err != nil || k != len(msgs) {
			t.Fatalf("re-encode: %d of %d, %v", k, len(msgs), err)
		}
		again, _, err := decodeFrame(fr, 4*maxFrame)
		if err != nil || len(again) != len(msgs) {
			t.Fatalf("re-decode: %d of %d messages, %v", len(again), len(msgs), err)
		}
		for i := range msgs {
			if again[i].Group != msgs[i].Group || again[i].Msg.Size() != msgs[i].Msg.Size() {
				t.Fatalf("message %d changed in a round trip", i)
			}
		}
	}
}

// FuzzDecodeHandshake: the hello and reply decoders never panic, and what
// they accept re-encodes byte for byte.
func FuzzDecodeHandshake(f *testing.F) {
	h, _ := appendHello(nil, hello{Version: handshakeVersion, From: 1, To: 2, ClusterID: "c"})
	f.Add(h)
	h, _ = appendHello(nil, hello{Version: 9, From: 1 << 63, ClusterID: string(make([]byte, 255))})
	f.Add(h)
	f.Add(appendHelloReply(nil, helloOK, ""))
	f.Add(appendHelloReply(nil, helloWrongCluster, "cluster id \"x\", want \"y\""))
	f.Add([]byte("CHRT"))
	f.Add([]byte{})
	f.Add(append([]byte{22, 3, 1, 0, 200, 1}, make([]byte, 30)...)) // a TLS ClientHello's start
	f.Add(appendHelloReply(nil, helloTLSRequired, "node 5 requires peer TLS"))

	f.Fuzz(func(t *testing.T, data []byte) {
		if h, n, err := decodeHello(data); err == nil {
			b, err := appendHello(nil, h)
			if err != nil || !bytes.Equal(b, data[:n]) {
				t.Fatalf("hello %+v re-encodes to %x, was %x (%v)", h, b, data[:n], err)
			}
			if h2, err := readHello(bytes.NewReader(data)); err != nil || h2 != h {
				t.Fatalf("readHello disagrees: %+v %v", h2, err)
			}
		} else if _, err := readHello(bytes.NewReader(data)); err == nil {
			t.Fatal("readHello accepted what decodeHello refused")
		}
		if st, reason, n, err := decodeHelloReply(data); err == nil {
			if b := appendHelloReply(nil, st, reason); !bytes.Equal(b, data[:n]) {
				t.Fatalf("reply re-encodes to %x, was %x", b, data[:n])
			}
			if st2, r2, err := readHelloReply(bytes.NewReader(data)); err != nil || st2 != st || r2 != reason {
				t.Fatalf("readHelloReply disagrees: %d %q %v", st2, r2, err)
			}
		}
	})
}
