package cluster

import (
	"bytes"
	"errors"
	"fmt"
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
		// A node counts what it sent once the flush returned, which may
		// be after the receiver counted it.
		waitFor(t, 10*time.Second, fmt.Sprintf("node %d's counts", dst.id), func() bool {
			s := dst.tr.Stats()
			return s.MessagesSent == perPair*(k-1) && s.MessagesReceived == perPair*(k-1)
		})
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
	// The sender counts a batch once its flush returned, which may be
	// after the receiver has read it.
	waitFor(t, 10*time.Second, "the sender's count", func() bool { return n1.tr.Stats().MessagesSent == total })
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
