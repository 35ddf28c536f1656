package cluster

import (
	"bufio"
	"errors"
	"io"
	"net"
	"testing"
	"time"
)

// The transport against hand-written peers on raw connections: refused
// handshakes, malformed frames, a replaced accepted connection.

func TestTransportHandshakeMismatch(t *testing.T) {
	checkNoLeak(t)
	// Node 5 accepts from its lower-id peers 2, 3 and 4; it would dial 6
	// (nothing listens there).
	nowhere := listen(t)
	nowhereAddr := nowhere.Addr().String()
	nowhere.Close()
	l5 := listen(t)
	addr5 := l5.Addr().String()
	n5 := startNode(t, 5, l5, map[uint64]string{2: nowhereAddr, 3: nowhereAddr, 4: nowhereAddr, 6: nowhereAddr}, true, nil)

	// Another cluster, and a node that takes node 5's address for node 7.
	other := startNode(t, 2, listen(t), map[uint64]string{5: addr5}, true, func(c *TransportConfig) { c.ClusterID = "other" })
	wrong := startNode(t, 3, listen(t), map[uint64]string{7: addr5}, true, nil)
	waitFor(t, 10*time.Second, "both refused", func() bool {
		return other.tr.refused.Load() > 0 && wrong.tr.refused.Load() > 0 && n5.tr.refused.Load() >= 2
	})
	if other.tr.Connected(5) || wrong.tr.Connected(7) || n5.tr.Connected(2) || n5.tr.Connected(3) {
		t.Fatal("a refused connection reports connected")
	}
	other.tr.Send(5, []GroupMessage{testMsg(2, 5, 0, 0)})

	// The same at the wire: the refusal names the reason, then EOF.
	for _, c := range []struct {
		h    hello
		want uint8
	}{
		{hello{Version: handshakeVersion, From: 2, To: 5, ClusterID: "other"}, helloWrongCluster},
		{hello{Version: handshakeVersion, From: 2, To: 7, ClusterID: testCluster}, helloWrongNode},
		{hello{Version: handshakeVersion + 1, From: 2, To: 5, ClusterID: testCluster}, helloBadVersion},
		{hello{Version: handshakeVersion - 1, From: 2, To: 5, ClusterID: testCluster}, helloBadVersion},
		{hello{Version: handshakeVersion, From: 5, To: 5, ClusterID: testCluster}, helloBadSender},
		{hello{Version: handshakeVersion, From: 0, To: 5, ClusterID: testCluster}, helloBadSender},
		// A configured peer with the higher id: node 5 dials it, not the
		// other way round.
		{hello{Version: handshakeVersion, From: 6, To: 5, ClusterID: testCluster}, helloWrongDirection},
		{hello{Version: handshakeVersion, From: 1, To: 5, ClusterID: testCluster}, helloUnknownPeer},
	} {
		conn, err := net.Dial("tcp", addr5)
		if err != nil {
			t.Fatal(err)
		}
		conn.SetDeadline(time.Now().Add(10 * time.Second))
		b, _ := appendHello(nil, c.h)
		conn.Write(b)
		st, reason, err := readHelloReply(conn)
		if err != nil || st != c.want || reason == "" {
			t.Fatalf("%+v: status %d %q err=%v, want %d", c.h, st, reason, err, c.want)
		}
		if _, err := conn.Read(make([]byte, 1)); err != io.EOF {
			t.Fatalf("%+v: connection not closed after refusal: %v", c.h, err)
		}
		conn.Close()
	}
	if n := n5.rec.n.Load(); n != 0 {
		t.Fatalf("node 5 received %d messages through refused connections", n)
	}
	n5.close(t)
	other.close(t)
	wrong.close(t)
}

// rawPeer dials addr and handshakes as node from.
func rawPeer(t testing.TB, addr string, from, to uint64) net.Conn {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	b, _ := appendHello(nil, hello{Version: handshakeVersion, From: from, To: to, ClusterID: testCluster})
	if _, err := conn.Write(b); err != nil {
		t.Fatal(err)
	}
	if st, reason, err := readHelloReply(conn); err != nil || st != helloOK {
		t.Fatalf("handshake: %d %q %v", st, reason, err)
	}
	return conn
}

// expectClosed reads until the transport closes the connection.
func expectClosed(t testing.TB, conn net.Conn, what string) {
	t.Helper()
	conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.Copy(io.Discard, conn); err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			t.Fatalf("%s: connection left open", what)
		}
	}
	conn.Close()
}

// readMsgs reads frames from a raw connection, skipping heartbeats, until
// it has n messages.
func readMsgs(t testing.TB, br *bufio.Reader, n int) []GroupMessage {
	t.Helper()
	var got []GroupMessage
	for frames := 0; len(got) < n; frames++ {
		if frames > 10000 {
			t.Fatalf("%d of %d messages after %d frames", len(got), n, frames)
		}
		payload, _, err := readFrame(br, nil, defaultMaxFrameBytes)
		if err != nil {
			t.Fatalf("%d of %d messages: %v", len(got), n, err)
		}
		msgs, err := decodeFramePayload(payload)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, msgs...)
	}
	return got
}

func TestTransportBadFrames(t *testing.T) {
	checkNoLeak(t)
	// Node 2 accepts from node 1, played here by raw connections, and
	// dials node 3.
	nowhere := listen(t)
	nowhereAddr := nowhere.Addr().String()
	nowhere.Close()
	l2, l3 := listen(t), listen(t)
	addr2 := l2.Addr().String()
	peers := map[uint64]string{1: nowhereAddr, 2: addr2, 3: l3.Addr().String()}
	tweak := func(c *TransportConfig) { c.MaxFrameBytes = 1 << 20 }
	n2 := startNode(t, 2, l2, peers, true, tweak)
	n3 := startNode(t, 3, l3, peers, true, tweak)
	var seq uint64
	probe(t, n3, n2, &seq)

	// A well-formed frame from a raw peer is delivered.
	conn := rawPeer(t, addr2, 1, 2)
	var e frameEncoder
	f, _, _ := e.encode([]GroupMessage{testMsg(1, 2, 0, 2)}, 1<<20)
	conn.Write(f)
	waitFor(t, 10*time.Second, "the raw peer's message", func() bool { return n2.rec.count(1) == 1 })
	checkStream(t, 1, 2, n2.rec.from(1), 0, 2)

	bad := append([]byte(nil), f...)
	bad[len(bad)-1] ^= 0x55
	cases := []struct {
		name string
		data []byte
	}{
		{"oversized length", []byte{0, 0x20, 0, 0}},
		{"huge length", []byte{0xff, 0xff, 0xff, 0xff}},
		{"bad checksum", bad},
		{"garbage body", frameWith([]byte{3, 1, 2, 3, 4, 5, 6})},
	}
	before := n2.tr.badFrames.Load()
	for _, c := range cases {
		conn.Write(c.data)
		expectClosed(t, conn, c.name)
		conn = rawPeer(t, addr2, 1, 2)
	}
	conn.Close()
	waitFor(t, 10*time.Second, "bad frames counted", func() bool { return n2.tr.badFrames.Load()-before == uint64(len(cases)) })

	// Garbage instead of a handshake.
	conn, err := net.Dial("tcp", addr2)
	if err != nil {
		t.Fatal(err)
	}
	conn.Write([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"))
	expectClosed(t, conn, "garbage handshake")

	// Node 2 still serves node 3.
	probe(t, n3, n2, &seq)
	probe(t, n2, n3, &seq)
	n2.close(t)
	n3.close(t)
}

// An accepted connection is used both ways, and a newer accepted
// connection from the same peer replaces it.
func TestTransportAcceptedConnReplaced(t *testing.T) {
	checkNoLeak(t)
	nowhere := listen(t)
	nowhereAddr := nowhere.Addr().String()
	nowhere.Close()
	l2 := listen(t)
	addr2 := l2.Addr().String()
	n2 := startNode(t, 2, l2, map[uint64]string{1: nowhereAddr, 2: addr2}, true, nil)

	// Queued before node 1 (a raw peer) connects, then sent over the
	// connection node 2 accepted.
	n2.tr.Send(1, []GroupMessage{testMsg(2, 1, 0, 1), testMsg(2, 1, 1, 1)})
	old := rawPeer(t, addr2, 1, 2)
	oldR := bufio.NewReader(old)
	checkStream(t, 2, 1, readMsgs(t, oldR, 2), 0, 1)
	waitFor(t, 10*time.Second, "node 2 connected", func() bool { return n2.tr.Connected(1) })

	// Node 1 "reconnects" without node 2 having noticed a failure: the
	// new connection replaces the old one, which node 2 closes.
	conn := rawPeer(t, addr2, 1, 2)
	expectClosed(t, old, "the replaced connection")
	var e frameEncoder
	f, _, _ := e.encode([]GroupMessage{testMsg(1, 2, 0, 1)}, defaultMaxFrameBytes)
	conn.Write(f)
	waitFor(t, 10*time.Second, "the message on the new connection", func() bool { return n2.rec.count(1) == 1 })
	checkStream(t, 1, 2, n2.rec.from(1), 0, 1)
	n2.tr.Send(1, []GroupMessage{testMsg(2, 1, 2, 1)})
	checkStream(t, 2, 1, readMsgs(t, bufio.NewReader(conn), 1), 2, 1)
	if !n2.tr.Connected(1) {
		t.Fatal("node 2 not connected after the replacement")
	}
	conn.Close()
	n2.close(t)
}
