package cluster

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.etcd.io/raft/v3/raftpb"
)

// ---------------------------------------------------------------------------
// helpers

const testCluster = "test-cluster"

// waitFor polls cond until it holds or d passes.
func waitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// checkNoLeak records the goroutine count and, at cleanup, waits for it to
// come back down.
func checkNoLeak(t *testing.T) {
	before := runtime.NumGoroutine()
	t.Cleanup(func() {
		deadline := time.Now().Add(10 * time.Second)
		for {
			n := runtime.NumGoroutine()
			if n <= before {
				return
			}
			if time.Now().After(deadline) {
				buf := make([]byte, 1<<20)
				buf = buf[:runtime.Stack(buf, true)]
				t.Fatalf("goroutines: %d before, %d after close\n%s", before, n, buf)
			}
			time.Sleep(10 * time.Millisecond)
		}
	})
}

func listen(t testing.TB) net.Listener {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// relisten listens on addr again, retrying while the port is busy.
func relisten(t testing.TB, addr string) net.Listener {
	t.Helper()
	var l net.Listener
	waitFor(t, 10*time.Second, "listening on "+addr, func() bool {
		var err error
		l, err = net.Listen("tcp", addr)
		return err == nil
	})
	return l
}

// countingListener counts the connections it accepts and keeps them, so a
// test can see which side dialed and close an accepted connection. While
// refusing, it closes what it accepts at once (the dialer's handshake
// fails), so the transport never sees those connections.
type countingListener struct {
	net.Listener
	accepts  atomic.Int64 // handed to the transport
	refusing atomic.Bool
	mu       sync.Mutex
	conns    []net.Conn
}

func newCountingListener(t testing.TB) *countingListener {
	return &countingListener{Listener: listen(t)}
}

func (l *countingListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if l.refusing.Load() {
			c.Close()
			continue
		}
		l.accepts.Add(1)
		l.mu.Lock()
		l.conns = append(l.conns, c)
		l.mu.Unlock()
		return c, nil
	}
}

// last is the connection accepted last.
func (l *countingListener) last() net.Conn {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.conns[len(l.conns)-1]
}

type recorder struct {
	mu    sync.Mutex
	msgs  map[uint64][]GroupMessage // by sender
	downs map[uint64]int
	n     atomic.Int64
}

func newRecorder() *recorder {
	return &recorder{msgs: make(map[uint64][]GroupMessage), downs: make(map[uint64]int)}
}

func (r *recorder) handle(from uint64, msgs []GroupMessage) {
	r.mu.Lock()
	r.msgs[from] = append(r.msgs[from], msgs...)
	r.mu.Unlock()
	r.n.Add(int64(len(msgs)))
}

func (r *recorder) peerDown(id uint64) {
	r.mu.Lock()
	r.downs[id]++
	r.mu.Unlock()
}

func (r *recorder) from(id uint64) []GroupMessage {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]GroupMessage(nil), r.msgs[id]...)
}

func (r *recorder) count(id uint64) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.msgs[id])
}

func (r *recorder) downCount(id uint64) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.downs[id]
}

type testNode struct {
	id    uint64
	tr    *Transport
	l     net.Listener
	rec   *recorder
	serve chan error
}

// startNode creates a transport for id on l (not yet serving if serve is
// false) with the given peers.
func startNode(t testing.TB, id uint64, l net.Listener, peers map[uint64]string, serve bool, tweak func(*TransportConfig)) *testNode {
	t.Helper()
	rec := newRecorder()
	cfg := TransportConfig{
		NodeID:         id,
		ClusterID:      testCluster,
		Peers:          peers,
		Handler:        rec.handle,
		OnPeerDown:     rec.peerDown,
		HeartbeatEvery: 50 * time.Millisecond,
		QueueMessages:  1 << 16,
		MaxFrameBytes:  4 << 20,
	}
	if tweak != nil {
		tweak(&cfg)
	}
	n := &testNode{id: id, tr: NewTransport(cfg), l: l, rec: rec, serve: make(chan error, 1)}
	if serve {
		n.startServing()
	}
	t.Cleanup(func() { n.tr.Close() })
	return n
}

func (n *testNode) startServing() {
	go func() { n.serve <- n.tr.Serve(n.l) }()
}

func (n *testNode) close(t testing.TB) {
	t.Helper()
	if err := n.tr.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-n.serve:
		if err != nil {
			t.Fatalf("Serve returned %v after Close", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return after Close")
	}
}

// cluster3 starts nodes 1..k serving on loopback, all peers of each other.
func startCluster(t testing.TB, k int, tweak func(*TransportConfig)) []*testNode {
	t.Helper()
	ls := make([]net.Listener, k)
	peers := make(map[uint64]string)
	for i := range ls {
		ls[i] = listen(t)
		peers[uint64(i+1)] = ls[i].Addr().String()
	}
	nodes := make([]*testNode, k)
	for i := range nodes {
		nodes[i] = startNode(t, uint64(i+1), ls[i], peers, true, tweak)
	}
	return nodes
}

var testPattern = func() []byte {
	b := make([]byte, 1024)
	for i := range b {
		b[i] = byte(i*7 + i/256)
	}
	return b
}()

// testMsg is a deterministic message: seq goes in Index, and the entries'
// data derive from (from, to, seq).
func testMsg(from, to, seq uint64, entries int) GroupMessage {
	m := raftpb.Message{
		Type:    raftpb.MsgApp,
		From:    from,
		To:      to,
		Term:    seq%5 + 1,
		LogTerm: seq % 5,
		Index:   seq,
		Commit:  seq / 2,
	}
	for e := 0; e < entries; e++ {
		off := (from*31 + to*7 + seq*13 + uint64(e)) % 512
		data := append([]byte(nil), testPattern[off:off+1+(seq+uint64(e))%300]...)
		m.Entries = append(m.Entries, raftpb.Entry{Term: m.Term, Index: seq + uint64(e) + 1, Data: data})
	}
	return GroupMessage{Group: GroupID(seq % 97 * (from + 3)), Msg: m}
}

func sameMsg(a, b GroupMessage) bool {
	if a.Group != b.Group {
		return false
	}
	ab, err1 := a.Msg.Marshal()
	bb, err2 := b.Msg.Marshal()
	return err1 == nil && err2 == nil && bytes.Equal(ab, bb)
}

// checkStream checks that got is exactly testMsg(from, to, first..first+len(got)-1).
func checkStream(t testing.TB, from, to uint64, got []GroupMessage, first uint64, entries int) {
	t.Helper()
	for i, m := range got {
		want := testMsg(from, to, first+uint64(i), entries)
		if !sameMsg(m, want) {
			t.Fatalf("%d->%d: message %d: got group %d index %d, want group %d index %d (or content differs)",
				from, to, i, m.Group, m.Msg.Index, want.Group, want.Msg.Index)
		}
	}
}

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
// transports over loopback

func TestTransportExchangeAllDirections(t *testing.T) {
	checkNoLeak(t)
	const k, perPair, entries = 3, 2000, 2
	// Small frames, so batches are split in the live path too.
	nodes := startCluster(t, k, func(c *TransportConfig) { c.MaxFrameBytes = 64 << 10 })
	// Connected first, so this is steady-state traffic, not a queue
	// flushed at connect (TestTransportBatchesQueuedMessages covers that).
	waitFor(t, 10*time.Second, "all connections", func() bool {
		for _, n := range nodes {
			if n.tr.Stats().PeersConnected != k-1 {
				return false
			}
		}
		return true
	})

	var wg sync.WaitGroup
	for _, src := range nodes {
		for _, dst := range nodes {
			if src == dst {
				continue
			}
			wg.Add(1)
			go func(src, dst *testNode) {
				defer wg.Done()
				seq := uint64(0)
				for batch := 1; seq < perPair; batch = batch%17 + 1 {
					var msgs []GroupMessage
					for i := 0; i < batch && seq < perPair; i++ {
						msgs = append(msgs, testMsg(src.id, dst.id, seq, entries))
						seq++
					}
					src.tr.Send(dst.id, msgs)
					if batch == 17 {
						time.Sleep(time.Millisecond) // let the writer catch up now and then
					}
				}
			}(src, dst)
		}
	}
	wg.Wait()
	for _, dst := range nodes {
		waitFor(t, 30*time.Second, fmt.Sprintf("node %d to receive everything", dst.id), func() bool {
			return dst.rec.n.Load() == int64(perPair*(k-1))
		})
	}
	var frames, msgs uint64
	for _, dst := range nodes {
		for _, src := range nodes {
			if src != dst {
				checkStream(t, src.id, dst.id, dst.rec.from(src.id), 0, entries)
			}
		}
		s := dst.tr.Stats()
		if s.Dropped != 0 {
			t.Fatalf("node %d dropped %d", dst.id, s.Dropped)
		}
		if s.PeersConnected != k-1 {
			t.Fatalf("node %d: %d peers connected", dst.id, s.PeersConnected)
		}
		if s.MessagesSent != perPair*(k-1) || s.MessagesReceived != perPair*(k-1) {
			t.Fatalf("node %d: stats %+v", dst.id, s)
		}
		frames += s.FramesSent
		msgs += s.MessagesSent
	}
	if frames >= msgs {
		t.Fatalf("%d frames for %d messages: no batching", frames, msgs)
	}
	t.Logf("%d messages in %d frames", msgs, frames)
	for _, n := range nodes {
		n.close(t)
	}
}

// Messages queued while the peer is not yet serving go out batched when it
// connects: frames < messages, deterministically.
func TestTransportBatchesQueuedMessages(t *testing.T) {
	checkNoLeak(t)
	l1, l2 := listen(t), listen(t)
	peers := map[uint64]string{1: l1.Addr().String(), 2: l2.Addr().String()}
	n1 := startNode(t, 1, l1, peers, true, nil)
	n2 := startNode(t, 2, l2, peers, false, nil)
	const total = 500
	for i := uint64(0); i < total; i++ {
		n1.tr.Send(2, []GroupMessage{testMsg(1, 2, i, 1)}) // one message per Send
	}
	n2.startServing()
	waitFor(t, 10*time.Second, "the queued messages", func() bool { return n2.rec.count(1) == total })
	checkStream(t, 1, 2, n2.rec.from(1), 0, 1)
	if s := n1.tr.Stats(); s.FramesSent >= total || s.MessagesSent != total {
		t.Fatalf("stats %+v: want fewer than %d frames", s, total)
	}
	n1.close(t)
	n2.close(t)
}

func TestTransportQueueBoundAndUnknownPeer(t *testing.T) {
	checkNoLeak(t)
	l1, l2 := listen(t), listen(t)
	peers := map[uint64]string{1: l1.Addr().String(), 2: l2.Addr().String()}
	n1 := startNode(t, 1, l1, peers, true, func(c *TransportConfig) { c.QueueMessages = 10 })
	n2 := startNode(t, 2, l2, peers, false, nil)
	var msgs []GroupMessage
	for i := uint64(0); i < 25; i++ {
		msgs = append(msgs, testMsg(1, 2, i, 0))
	}
	n1.tr.Send(2, msgs) // peer 2 not serving: 10 queued, 15 dropped
	if d := n1.tr.Stats().Dropped; d != 15 {
		t.Fatalf("dropped %d, want 15", d)
	}
	n1.tr.Send(9, msgs[:3]) // unknown peer
	n1.tr.Send(1, msgs[:2]) // itself
	if d := n1.tr.Stats().Dropped; d != 20 {
		t.Fatalf("dropped %d, want 20", d)
	}
	n2.startServing()
	waitFor(t, 10*time.Second, "the queued messages", func() bool { return n2.rec.count(1) == 10 })
	checkStream(t, 1, 2, n2.rec.from(1), 0, 0)
	n1.close(t)
	n2.close(t)
}

// probe sends fresh messages from src to dst until one arrives.
func probe(t testing.TB, src, dst *testNode, seq *uint64) {
	t.Helper()
	start := dst.rec.count(src.id)
	deadline := time.Now().Add(20 * time.Second)
	for dst.rec.count(src.id) == start {
		if time.Now().After(deadline) {
			t.Fatalf("nothing from %d reached %d", src.id, dst.id)
		}
		src.tr.Send(dst.id, []GroupMessage{testMsg(src.id, dst.id, *seq, 1)})
		*seq++
		time.Sleep(20 * time.Millisecond)
	}
}

func TestTransportReconnect(t *testing.T) {
	checkNoLeak(t)
	nodes := startCluster(t, 2, nil)
	n1, n2 := nodes[0], nodes[1]
	var s12, s21 uint64
	probe(t, n1, n2, &s12)
	probe(t, n2, n1, &s21)
	addr2 := n2.l.Addr().String()
	peers := map[uint64]string{1: n1.l.Addr().String(), 2: addr2}

	addr1 := n1.l.Addr().String()

	// Node 1 dials, node 2 accepts; restart each in turn.
	for round := 0; round < 3; round++ {
		if round%2 == 0 {
			n2.close(t)
			waitFor(t, 10*time.Second, "node 1 to notice", func() bool { return !n1.tr.Connected(2) })
			n1.tr.Send(2, []GroupMessage{testMsg(1, 2, 999, 0)}) // queued or dropped; either is fine
			n2 = startNode(t, 2, relisten(t, addr2), peers, true, nil)
		} else {
			n1.close(t)
			waitFor(t, 10*time.Second, "node 2 to notice", func() bool { return !n2.tr.Connected(1) })
			n2.tr.Send(1, []GroupMessage{testMsg(2, 1, 999, 0)})
			n1 = startNode(t, 1, relisten(t, addr1), peers, true, nil)
		}
		waitFor(t, 10*time.Second, "reconnect", func() bool { return n1.tr.Connected(2) && n2.tr.Connected(1) })
		probe(t, n1, n2, &s12)
		probe(t, n2, n1, &s21)
	}
	n1.close(t)
	n2.close(t)
}

func TestTransportFault(t *testing.T) {
	checkNoLeak(t)
	nodes := startCluster(t, 2, nil)
	n1, n2 := nodes[0], nodes[1]
	var seq uint64
	probe(t, n1, n2, &seq)
	base := n2.rec.count(1)

	// DropTo on the sender: dropped at Send.
	n1.tr.SetFault(Fault{DropTo: map[uint64]bool{2: true}})
	d0 := n1.tr.Stats().Dropped
	var cut []GroupMessage
	for i := 0; i < 10; i++ {
		cut = append(cut, testMsg(1, 2, 1000+uint64(i), 1))
	}
	n1.tr.Send(2, cut)
	if d := n1.tr.Stats().Dropped - d0; d != 10 {
		t.Fatalf("DropTo: %d dropped, want 10", d)
	}
	n1.tr.SetFault(Fault{})

	// DropFrom on the receiver: dropped on arrival.
	n2.tr.SetFault(Fault{DropFrom: map[uint64]bool{1: true}})
	d0 = n2.tr.Stats().Dropped
	n1.tr.Send(2, cut)
	waitFor(t, 10*time.Second, "node 2 to drop the messages", func() bool { return n2.tr.Stats().Dropped-d0 >= 10 })
	n2.tr.SetFault(Fault{})

	// Healed: fresh messages arrive, and none of the cut ones did (they
	// would have arrived before these, in order).
	want := []GroupMessage{testMsg(1, 2, 5000, 1), testMsg(1, 2, 5001, 1)}
	n1.tr.Send(2, want)
	waitFor(t, 10*time.Second, "traffic after healing", func() bool { return n2.rec.count(1) >= base+2 })
	got := n2.rec.from(1)[base:]
	if len(got) != 2 || !sameMsg(got[0], want[0]) || !sameMsg(got[1], want[1]) {
		t.Fatalf("after healing got %d messages (first index %d), want exactly the 2 sent after healing", len(got), got[0].Msg.Index)
	}
	n1.close(t)
	n2.close(t)
}

func TestTransportPeerDown(t *testing.T) {
	checkNoLeak(t)
	nodes := startCluster(t, 3, nil)
	n1, n2, n3 := nodes[0], nodes[1], nodes[2]
	p := func(n *testNode, id uint64) *peer {
		n.tr.mu.RLock()
		defer n.tr.mu.RUnlock()
		return n.tr.peers[id]
	}
	waitFor(t, 10*time.Second, "node 1 to see 2 and 3 up", func() bool { return p(n1, 2).alive.Load() && p(n1, 3).alive.Load() })
	waitFor(t, 10*time.Second, "node 3 to see 2 up", func() bool { return p(n3, 2).alive.Load() })

	// Killed peer: down once, up again after restart, still one down; seen
	// by node 1, which dials node 2, and by node 3, which node 2 dials.
	addr2 := n2.l.Addr().String()
	peers := map[uint64]string{1: n1.l.Addr().String(), 2: addr2, 3: n3.l.Addr().String()}
	n2.close(t)
	waitFor(t, 10*time.Second, "OnPeerDown(2)", func() bool { return n1.rec.downCount(2) > 0 && n3.rec.downCount(2) > 0 })
	n2 = startNode(t, 2, relisten(t, addr2), peers, true, nil)
	waitFor(t, 10*time.Second, "node 2 up again", func() bool { return p(n1, 2).alive.Load() && p(n3, 2).alive.Load() })
	if c1, c3 := n1.rec.downCount(2), n3.rec.downCount(2); c1 != 1 || c3 != 1 {
		t.Fatalf("OnPeerDown(2) called %d times on node 1, %d on node 3, for one down-transition", c1, c3)
	}

	// Silent peer (its frames dropped): down after ~3 heartbeats, though
	// the outgoing connection stays up.
	n1.tr.SetFault(Fault{DropFrom: map[uint64]bool{3: true}})
	waitFor(t, 10*time.Second, "OnPeerDown(3)", func() bool { return n1.rec.downCount(3) == 1 })
	n1.tr.SetFault(Fault{})
	waitFor(t, 10*time.Second, "node 3 up again", func() bool { return p(n1, 3).alive.Load() })
	if c := n1.rec.downCount(3); c != 1 {
		t.Fatalf("OnPeerDown(3) called %d times", c)
	}
	for _, n := range []*testNode{n1, n2, n3} {
		n.close(t)
	}
}

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

func TestTransportCloseNoGoroutineLeak(t *testing.T) {
	checkNoLeak(t)
	nodes := startCluster(t, 3, nil)
	var seq uint64
	probe(t, nodes[0], nodes[1], &seq)
	probe(t, nodes[2], nodes[0], &seq)
	// A peer that never answers (dial backoff running) and one removed.
	dead := listen(t)
	deadAddr := dead.Addr().String()
	dead.Close()
	nodes[0].tr.AddPeer(9, deadAddr)
	nodes[0].tr.AddPeer(8, nodes[1].l.Addr().String())
	nodes[0].tr.RemovePeer(8)
	nodes[0].tr.AddPeer(2, nodes[1].l.Addr().String()) // unchanged address: no-op
	// A half-open inbound connection stuck in the handshake.
	stuck, err := net.Dial("tcp", nodes[1].l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer stuck.Close()
	for _, n := range nodes {
		n.close(t)
	}
	if err := nodes[0].tr.Close(); err != nil {
		t.Fatal("second Close:", err)
	}
	if err := nodes[0].tr.Serve(listen(t)); !errors.Is(err, ErrStopped) {
		t.Fatalf("Serve after Close: %v", err)
	}
	nodes[0].tr.Send(2, []GroupMessage{testMsg(1, 2, 0, 0)}) // no panic
}

// ---------------------------------------------------------------------------
// benchmark

// BenchmarkTransport sends MsgApp messages of 16 x 1 KiB entries from node
// 1 to node 2 over loopback; "raw" writes the same marshalled bytes to a
// plain loopback TCP connection, for the overhead ratio.
func BenchmarkTransport(b *testing.B) {
	msg := raftpb.Message{Type: raftpb.MsgApp, From: 1, To: 2, Term: 3, LogTerm: 3, Index: 1000, Commit: 990}
	for i := 0; i < 16; i++ {
		data := make([]byte, 1024)
		for j := range data {
			data[j] = byte(i + j)
		}
		msg.Entries = append(msg.Entries, raftpb.Entry{Term: 3, Index: uint64(1001 + i), Data: data})
	}
	raw, err := msg.Marshal()
	if err != nil {
		b.Fatal(err)
	}

	b.Run("transport", func(b *testing.B) {
		l1, l2 := listen(b), listen(b)
		peers := map[uint64]string{1: l1.Addr().String(), 2: l2.Addr().String()}
		var got atomic.Int64
		wake := make(chan struct{}, 1)
		n1 := startNode(b, 1, l1, peers, true, nil)
		startNode(b, 2, l2, peers, true, func(c *TransportConfig) {
			c.Handler = func(from uint64, msgs []GroupMessage) {
				got.Add(int64(len(msgs)))
				select {
				case wake <- struct{}{}:
				default:
				}
			}
		})
		waitFor(b, 10*time.Second, "connection", func() bool { return n1.tr.Connected(2) })
		const window = 1024 // keep the queue below its bound: nothing dropped
		gm := []GroupMessage{{Group: 7, Msg: msg}}
		s0 := n1.tr.Stats()
		b.SetBytes(int64(len(raw)))
		b.ReportAllocs()
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			for int64(i)-got.Load() >= window {
				select {
				case <-wake:
				case <-time.After(time.Second):
				}
			}
			gm[0].Group = GroupID(i % 64)
			n1.tr.Send(2, gm)
		}
		deadline := time.Now().Add(time.Minute)
		for got.Load() < int64(b.N) {
			if time.Now().After(deadline) {
				b.Fatalf("received %d of %d", got.Load(), b.N)
			}
			select {
			case <-wake:
			case <-time.After(100 * time.Millisecond):
			}
		}
		b.StopTimer()
		s := n1.tr.Stats()
		if s.Dropped != s0.Dropped {
			b.Fatalf("%d dropped", s.Dropped-s0.Dropped)
		}
		b.ReportMetric(float64(s.FramesSent-s0.FramesSent)/float64(b.N), "frames/op")
		b.ReportMetric(float64(s.BytesSent-s0.BytesSent)/float64(b.N), "wirebytes/op")
	})

	b.Run("raw", func(b *testing.B) {
		l := listen(b)
		defer l.Close()
		done := make(chan int64, 1)
		go func() {
			c, err := l.Accept()
			if err != nil {
				done <- -1
				return
			}
			defer c.Close()
			n, _ := io.Copy(io.Discard, c)
			done <- n
		}()
		c, err := net.Dial("tcp", l.Addr().String())
		if err != nil {
			b.Fatal(err)
		}
		bw := bufio.NewWriterSize(c, connBufSize)
		b.SetBytes(int64(len(raw)))
		b.ReportAllocs()
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			if _, err := bw.Write(raw); err != nil {
				b.Fatal(err)
			}
		}
		if err := bw.Flush(); err != nil {
			b.Fatal(err)
		}
		c.Close()
		if n := <-done; n != int64(b.N)*int64(len(raw)) {
			b.Fatalf("raw: %d bytes arrived, want %d", n, int64(b.N)*int64(len(raw)))
		}
		b.StopTimer()
	})
}

func TestTransportAddRemovePeer(t *testing.T) {
	checkNoLeak(t)
	l1, l2 := listen(t), listen(t)
	addr1, addr2 := l1.Addr().String(), l2.Addr().String()
	gone := listen(t)
	goneAddr := gone.Addr().String()
	gone.Close()
	// Node 1 (the dialer) starts with a wrong address for node 2, then
	// learns the right one. Until then there is no connection, and what
	// node 2 sends to node 1 waits in its queue.
	n1 := startNode(t, 1, l1, map[uint64]string{2: goneAddr}, true, nil)
	n2 := startNode(t, 2, l2, map[uint64]string{1: addr1}, true, nil)
	n2.tr.Send(1, []GroupMessage{testMsg(2, 1, 0, 1), testMsg(2, 1, 1, 1)})
	if n1.tr.Connected(2) || n2.tr.Connected(1) {
		t.Fatal("connected through a closed port")
	}
	n1.tr.AddPeer(2, addr2)
	waitFor(t, 10*time.Second, "node 2's queued messages", func() bool { return n1.rec.count(2) == 2 })
	checkStream(t, 2, 1, n1.rec.from(2), 0, 1)
	seq := uint64(2)
	probe(t, n1, n2, &seq)
	probe(t, n2, n1, &seq)

	// The accepting side ignores an address change: no new connection.
	est1, est2 := n1.tr.established.Load(), n2.tr.established.Load()
	n2.tr.AddPeer(1, goneAddr)
	probe(t, n2, n1, &seq)
	probe(t, n1, n2, &seq)
	if n1.tr.established.Load() != est1 || n2.tr.established.Load() != est2 || !n2.tr.Connected(1) {
		t.Fatal("an address change on the accepting side changed the connection")
	}

	// Node 1 removes node 2: the one connection closes, both sides.
	n1.tr.RemovePeer(2)
	if n1.tr.Connected(2) {
		t.Fatal("removed peer reported connected")
	}
	d0 := n1.tr.Stats().Dropped
	n1.tr.Send(2, []GroupMessage{testMsg(1, 2, 0, 0)})
	if n1.tr.Stats().Dropped != d0+1 {
		t.Fatal("Send to a removed peer not counted as dropped")
	}
	waitFor(t, 10*time.Second, "node 2 to lose the connection", func() bool { return !n2.tr.Connected(1) })

	// Queued on node 2 meanwhile, delivered once node 1 adds node 2 back
	// and dials it again.
	base := n1.rec.count(2)
	n2.tr.Send(1, []GroupMessage{testMsg(2, 1, 5000, 1), testMsg(2, 1, 5001, 1)})
	n1.tr.AddPeer(2, addr2)
	waitFor(t, 10*time.Second, "node 2's messages queued while removed", func() bool { return n1.rec.count(2) == base+2 })
	checkStream(t, 2, 1, n1.rec.from(2)[base:], 5000, 1)
	n1.close(t)
	n2.close(t)
}

// Exactly one TCP connection per node pair, dialed by the lower id, and
// messages flow both ways over it.
func TestTransportOneConnectionPerPair(t *testing.T) {
	checkNoLeak(t)
	const k, perPair = 3, 300
	ls := make([]*countingListener, k)
	peers := make(map[uint64]string)
	for i := range ls {
		ls[i] = newCountingListener(t)
		peers[uint64(i+1)] = ls[i].Addr().String()
	}
	nodes := make([]*testNode, k)
	for i := range nodes {
		nodes[i] = startNode(t, uint64(i+1), ls[i], peers, true, nil)
	}
	// Sent before and while the connections come up: queued, then flushed
	// over whichever side's connection.
	for _, src := range nodes {
		for _, dst := range nodes {
			if src == dst {
				continue
			}
			for seq := uint64(0); seq < perPair; seq += 10 {
				var msgs []GroupMessage
				for i := seq; i < seq+10; i++ {
					msgs = append(msgs, testMsg(src.id, dst.id, i, 1))
				}
				src.tr.Send(dst.id, msgs)
			}
		}
	}
	for _, dst := range nodes {
		waitFor(t, 30*time.Second, fmt.Sprintf("node %d to receive everything", dst.id), func() bool {
			return dst.rec.n.Load() == int64(perPair*(k-1))
		})
		for _, src := range nodes {
			if src != dst {
				checkStream(t, src.id, dst.id, dst.rec.from(src.id), 0, 1)
			}
		}
	}
	for i, n := range nodes {
		// Node i+1 accepted one connection from each lower id, and
		// established one connection per peer, dialed or accepted.
		if got := ls[i].accepts.Load(); got != int64(i) {
			t.Errorf("node %d accepted %d connections, want %d", n.id, got, i)
		}
		if got := n.tr.established.Load(); got != k-1 {
			t.Errorf("node %d established %d connections, want %d", n.id, got, k-1)
		}
		if s := n.tr.Stats(); s.PeersConnected != k-1 || s.Dropped != 0 {
			t.Errorf("node %d: stats %+v", n.id, s)
		}
	}
	for _, n := range nodes {
		n.close(t)
	}
}

// A connection the accepting side (the higher id) closes is re-established
// by the dialing side, and what both sides queued meanwhile is delivered.
func TestTransportReconnectAfterAcceptorCloses(t *testing.T) {
	checkNoLeak(t)
	l1, l2 := newCountingListener(t), newCountingListener(t)
	peers := map[uint64]string{1: l1.Addr().String(), 2: l2.Addr().String()}
	n1 := startNode(t, 1, l1, peers, true, nil)
	n2 := startNode(t, 2, l2, peers, true, nil)
	var s12, s21 uint64
	probe(t, n1, n2, &s12)
	probe(t, n2, n1, &s21)
	if a := l2.accepts.Load(); a != 1 {
		t.Fatalf("node 2 accepted %d connections, want 1", a)
	}

	// Node 2 closes the connection and, for a while, refuses new ones (so
	// the messages below can only be queued).
	l2.refusing.Store(true)
	r0 := n1.tr.refused.Load()
	l2.last().Close()
	waitFor(t, 10*time.Second, "both sides to notice", func() bool { return !n1.tr.Connected(2) && !n2.tr.Connected(1) })
	base12, base21 := n2.rec.count(1), n1.rec.count(2)
	const queued = 50
	for i := uint64(0); i < queued; i++ {
		n1.tr.Send(2, []GroupMessage{testMsg(1, 2, 1000+i, 1)})
		n2.tr.Send(1, []GroupMessage{testMsg(2, 1, 1000+i, 1)})
	}
	waitFor(t, 10*time.Second, "node 1 to try again", func() bool { return n1.tr.refused.Load() > r0 })
	l2.refusing.Store(false)

	waitFor(t, 10*time.Second, "the queued messages", func() bool {
		return n2.rec.count(1) == base12+queued && n1.rec.count(2) == base21+queued
	})
	checkStream(t, 1, 2, n2.rec.from(1)[base12:], 1000, 1)
	checkStream(t, 2, 1, n1.rec.from(2)[base21:], 1000, 1)
	if a := l2.accepts.Load(); a != 2 {
		t.Fatalf("node 2 accepted %d connections, want 2", a)
	}
	if a := l1.accepts.Load(); a != 0 {
		t.Fatalf("node 1 accepted %d connections, want none", a)
	}
	n1.close(t)
	n2.close(t)
}

// A node cut off both ways by its own Fault (DropTo and DropFrom every
// peer) is seen down by its peers, which still hold or redial the
// connection, and sees them down; healed, everyone is up again.
func TestTransportIsolatedNodeSeenDown(t *testing.T) {
	checkNoLeak(t)
	nodes := startCluster(t, 3, nil)
	p := func(n *testNode, id uint64) *peer {
		n.tr.mu.RLock()
		defer n.tr.mu.RUnlock()
		return n.tr.peers[id]
	}
	allUp := func() bool {
		for _, a := range nodes {
			for _, b := range nodes {
				if a != b && !p(a, b.id).alive.Load() {
					return false
				}
			}
		}
		return true
	}
	waitFor(t, 10*time.Second, "all up", allUp)
	for _, cut := range []uint64{1, 2, 3} { // the dialer of both, of one, of none
		f := Fault{DropTo: map[uint64]bool{}, DropFrom: map[uint64]bool{}}
		for _, n := range nodes {
			if n.id != cut {
				f.DropTo[n.id], f.DropFrom[n.id] = true, true
			}
		}
		nodes[cut-1].tr.SetFault(f)
		waitFor(t, 10*time.Second, fmt.Sprintf("node %d seen down, and seeing the others down", cut), func() bool {
			for _, n := range nodes {
				if n.id != cut && (n.rec.downCount(cut) == 0 || nodes[cut-1].rec.downCount(n.id) == 0) {
					return false
				}
			}
			return true
		})
		nodes[cut-1].tr.SetFault(Fault{})
		waitFor(t, 10*time.Second, "all up after healing", allUp)
		for _, n := range nodes {
			n.rec.mu.Lock()
			clear(n.rec.downs)
			n.rec.mu.Unlock()
		}
	}
	for _, n := range nodes {
		n.close(t)
	}
}
