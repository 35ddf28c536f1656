package cluster

// The peer transport.
//
// Connection model: every node dials each peer for its OUTGOING traffic and
// accepts the peer's connection for its INCOMING traffic, so between two
// nodes there are two TCP connections, one per direction, each carrying the
// batched messages of every group in that direction. That is still "one
// connection per peer, not per group", and it removes a whole class of
// problems a shared bidirectional connection has: no dial race to resolve
// (both sides dialing at once, deciding which socket survives), each
// socket has exactly one writer and one reader, and only the sending side
// ever reconnects, so a broken connection is retried by exactly the node
// that has something to say.
//
// Per peer there is one goroutine (run) that dials with backoff
// (50ms doubling to 1s, jittered), handshakes, then drains the peer's queue:
// everything queued at that moment, all groups, goes out as one frame
// through a bufio.Writer (split only when it would exceed MaxFrameBytes),
// and a heartbeat frame goes out when a heartbeat interval passed without a
// frame. A second small goroutine per outgoing connection only reads, to
// notice at once when the peer closes. Per accepted connection one goroutine
// reads frames and calls Handler.
//
// Messages sent to a peer that is not connected stay queued (bounded by
// QueueMessages; beyond that new messages are dropped and counted) and go
// out once the connection is up: at start-up the first votes are sent before
// the dial completes, and raft copes with stale messages anyway. A batch
// being written when a connection fails is lost (and counted as dropped);
// raft retries.
//
// Liveness: a peer is up while its outgoing connection is established and a
// frame (data or heartbeat) arrived from it within 3 heartbeat intervals.
// OnPeerDown is called once per up->down transition, from the peer's run
// goroutine.

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
)

const (
	dialBackoffMin = 50 * time.Millisecond
	dialBackoffMax = time.Second
	connBufSize    = 64 << 10
	// downAfterBeats heartbeat intervals without a frame mark a peer down.
	downAfterBeats = 3
	// keep read buffers up to this size between frames.
	maxKeptReadBuf = 4 << 20
	// A drained queue larger than this goes out as several frames in one
	// flush (one message larger than this still gets a frame of its own,
	// up to MaxFrameBytes): buffers stay pooled instead of being allocated
	// per frame, and the reader decodes one frame while the next arrives.
	frameSoftMax = 1 << 20
)

// Transport carries raft messages of all groups between nodes. See the
// comment at the top of transport.go.
type Transport struct {
	cfg          TransportConfig
	log          zerolog.Logger
	readIdle     time.Duration // an accepted connection with no frame for this long is closed
	writeTimeout time.Duration // deadline for writing one frame
	frameTarget  int           // frames are cut at this size (min(MaxFrameBytes, frameSoftMax))

	mu        sync.RWMutex
	peers     map[uint64]*peer
	listeners map[net.Listener]struct{}
	inbound   map[net.Conn]struct{} // accepted connections
	inboundBy map[uint64]net.Conn   // the current accepted connection of each sender
	closed    bool
	wg        sync.WaitGroup

	fault atomic.Pointer[Fault]

	framesSent, framesRecv atomic.Uint64
	msgsSent, msgsRecv     atomic.Uint64
	bytesSent, bytesRecv   atomic.Uint64
	dropped                atomic.Uint64
	refused                atomic.Uint64 // handshakes refused or failed, either side
	badFrames              atomic.Uint64 // connections closed for an oversized or malformed frame
}

type peer struct {
	t      *Transport
	id     uint64
	ctx    context.Context // done when the peer is removed or the transport closed
	cancel context.CancelFunc

	addrMu sync.Mutex
	addr   string

	qmu    sync.Mutex
	q      []GroupMessage
	notify chan struct{} // cap 1: the queue has messages
	redial chan struct{} // cap 1: the address changed

	connMu sync.Mutex
	conn   net.Conn // the current outgoing connection, closed on stop

	connected atomic.Bool  // outgoing connection established
	lastRecv  atomic.Int64 // unix nanos of the last frame received from the peer
	alive     atomic.Bool  // written by run only
}

// NewTransport returns a transport and starts dialing the configured peers.
// Call Serve to accept their connections.
func NewTransport(cfg TransportConfig) *Transport {
	if cfg.MaxFrameBytes <= 0 {
		cfg.MaxFrameBytes = defaultMaxFrameBytes
	}
	if cfg.QueueMessages <= 0 {
		cfg.QueueMessages = 4096
	}
	if cfg.DialTimeout <= 0 {
		cfg.DialTimeout = time.Second
	}
	if cfg.HeartbeatEvery <= 0 {
		cfg.HeartbeatEvery = 200 * time.Millisecond
	}
	t := &Transport{
		cfg:          cfg,
		log:          cfg.Logger.With().Str("component", "transport").Uint64("node", cfg.NodeID).Logger(),
		readIdle:     max(10*cfg.HeartbeatEvery, 2*time.Second),
		writeTimeout: max(10*cfg.HeartbeatEvery, 2*time.Second),
		frameTarget:  min(cfg.MaxFrameBytes, frameSoftMax),
		peers:        make(map[uint64]*peer),
		listeners:    make(map[net.Listener]struct{}),
		inbound:      make(map[net.Conn]struct{}),
		inboundBy:    make(map[uint64]net.Conn),
	}
	for id, addr := range cfg.Peers {
		t.AddPeer(id, addr)
	}
	return t
}

// AddPeer adds a peer (or changes its address) and starts dialing it.
// The node's own id is ignored.
func (t *Transport) AddPeer(id uint64, addr string) {
	if id == t.cfg.NodeID || id == 0 {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return
	}
	if p := t.peers[id]; p != nil {
		p.addrMu.Lock()
		changed := p.addr != addr
		p.addr = addr
		p.addrMu.Unlock()
		if changed {
			select {
			case p.redial <- struct{}{}:
			default:
			}
		}
		return
	}
	p := &peer{
		t:      t,
		id:     id,
		addr:   addr,
		notify: make(chan struct{}, 1),
		redial: make(chan struct{}, 1),
	}
	p.ctx, p.cancel = context.WithCancel(context.Background())
	t.peers[id] = p
	t.wg.Add(1)
	go p.run()
}

// RemovePeer stops sending to a peer and drops what is queued for it. It
// does not wait for the peer's goroutines (Close does), so it may be called
// from Handler or OnPeerDown. Connections the peer opened to us are left
// alone.
func (t *Transport) RemovePeer(id uint64) {
	t.mu.Lock()
	p := t.peers[id]
	delete(t.peers, id)
	t.mu.Unlock()
	if p != nil {
		p.stop()
	}
}

// Connected reports whether the outgoing connection to a peer is
// established (handshake done).
func (t *Transport) Connected(id uint64) bool {
	t.mu.RLock()
	p := t.peers[id]
	t.mu.RUnlock()
	return p != nil && p.connected.Load()
}

// Stats returns the counters. Frames count data frames only; bytes count
// everything framed, heartbeats included.
func (t *Transport) Stats() TransportStats {
	s := TransportStats{
		FramesSent:       t.framesSent.Load(),
		FramesReceived:   t.framesRecv.Load(),
		MessagesSent:     t.msgsSent.Load(),
		MessagesReceived: t.msgsRecv.Load(),
		BytesSent:        t.bytesSent.Load(),
		BytesReceived:    t.bytesRecv.Load(),
		Dropped:          t.dropped.Load(),
	}
	t.mu.RLock()
	for _, p := range t.peers {
		if p.connected.Load() {
			s.PeersConnected++
		}
	}
	t.mu.RUnlock()
	return s
}

// SetFault installs a fault (a copy is kept); the zero Fault heals.
func (t *Transport) SetFault(f Fault) {
	c := Fault{DropTo: make(map[uint64]bool), DropFrom: make(map[uint64]bool)}
	for id, v := range f.DropTo {
		if v {
			c.DropTo[id] = true
		}
	}
	for id, v := range f.DropFrom {
		if v {
			c.DropFrom[id] = true
		}
	}
	if len(c.DropTo) == 0 && len(c.DropFrom) == 0 {
		t.fault.Store(nil)
		return
	}
	t.fault.Store(&c)
}

func (t *Transport) dropTo(id uint64) bool {
	f := t.fault.Load()
	return f != nil && f.DropTo[id]
}

func (t *Transport) dropFrom(id uint64) bool {
	f := t.fault.Load()
	return f != nil && f.DropFrom[id]
}

// Send queues msgs for a peer and returns at once. Messages beyond the
// peer's queue bound, to an unknown peer, or cut by a Fault are dropped and
// counted. The messages (and their entries) must not be modified afterwards.
func (t *Transport) Send(to uint64, msgs []GroupMessage) {
	if len(msgs) == 0 {
		return
	}
	if t.dropTo(to) {
		t.dropped.Add(uint64(len(msgs)))
		return
	}
	t.mu.RLock()
	p := t.peers[to]
	closed := t.closed
	t.mu.RUnlock()
	if p == nil || closed {
		t.dropped.Add(uint64(len(msgs)))
		return
	}
	p.enqueue(msgs)
}

// Close stops dialing and serving, closes every connection and waits for
// all goroutines. Handler and OnPeerDown calls in progress must return for
// Close to return.
func (t *Transport) Close() error {
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return nil
	}
	t.closed = true
	for l := range t.listeners {
		l.Close()
	}
	for c := range t.inbound {
		c.Close()
	}
	peers := make([]*peer, 0, len(t.peers))
	for _, p := range t.peers {
		peers = append(peers, p)
	}
	t.mu.Unlock()
	for _, p := range peers {
		p.stop()
	}
	t.wg.Wait()
	return nil
}

func (t *Transport) isClosed() bool {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return t.closed
}

// Serve accepts peer connections on l until Close (then it returns nil) or
// until l fails.
func (t *Transport) Serve(l net.Listener) error {
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		l.Close()
		return ErrStopped
	}
	t.listeners[l] = struct{}{}
	t.mu.Unlock()
	defer func() {
		t.mu.Lock()
		delete(t.listeners, l)
		t.mu.Unlock()
	}()
	backoff := 5 * time.Millisecond
	for {
		conn, err := l.Accept()
		if err != nil {
			if t.isClosed() {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				time.Sleep(backoff)
				backoff = min(2*backoff, time.Second)
				continue
			}
			return err
		}
		backoff = 5 * time.Millisecond
		t.mu.Lock()
		if t.closed {
			t.mu.Unlock()
			conn.Close()
			return nil
		}
		t.inbound[conn] = struct{}{}
		t.wg.Add(1)
		t.mu.Unlock()
		go t.serveInbound(conn)
	}
}

// checkHello validates a dialer's hello.
func (t *Transport) checkHello(h hello) (uint8, string) {
	switch {
	case h.Version != handshakeVersion:
		return helloBadVersion, fmt.Sprintf("version %d, want %d", h.Version, handshakeVersion)
	case h.ClusterID != t.cfg.ClusterID:
		return helloWrongCluster, fmt.Sprintf("cluster id %q, want %q", h.ClusterID, t.cfg.ClusterID)
	case h.To != t.cfg.NodeID:
		return helloWrongNode, fmt.Sprintf("addressed to node %d, this is node %d", h.To, t.cfg.NodeID)
	case h.From == 0 || h.From == t.cfg.NodeID:
		return helloBadSender, fmt.Sprintf("sender node id %d not allowed", h.From)
	}
	return helloOK, ""
}

func (t *Transport) serveInbound(conn net.Conn) {
	defer t.wg.Done()
	defer func() {
		conn.Close()
		t.mu.Lock()
		delete(t.inbound, conn)
		t.mu.Unlock()
	}()
	remote := conn.RemoteAddr().String()
	conn.SetDeadline(time.Now().Add(t.cfg.DialTimeout))
	h, err := readHello(conn)
	if err != nil {
		if t.isClosed() {
			return
		}
		t.refused.Add(1)
		t.log.Warn().Str("remote", remote).Err(err).Msg("peer connection closed: bad handshake")
		return
	}
	if status, reason := t.checkHello(h); status != helloOK {
		t.refused.Add(1)
		conn.Write(appendHelloReply(nil, status, reason))
		t.log.Warn().Str("remote", remote).Uint64("from", h.From).Str("reason", reason).Msg("peer connection refused")
		return
	}
	if _, err := conn.Write(appendHelloReply(nil, helloOK, "")); err != nil {
		t.log.Debug().Str("remote", remote).Uint64("from", h.From).Err(err).Msg("peer connection lost during handshake")
		return
	}
	conn.SetDeadline(time.Time{})

	from := h.From
	t.mu.Lock()
	if old := t.inboundBy[from]; old != nil {
		old.Close() // the peer reconnected; the old connection is dead or dying
	}
	t.inboundBy[from] = conn
	t.mu.Unlock()
	defer func() {
		t.mu.Lock()
		if t.inboundBy[from] == conn {
			delete(t.inboundBy, from)
		}
		t.mu.Unlock()
	}()
	t.log.Debug().Str("remote", remote).Uint64("from", from).Msg("peer connection accepted")

	err = t.readLoop(conn, from)
	switch {
	case t.isClosed() || errors.Is(err, net.ErrClosed):
	case errors.Is(err, errFrameTooLarge) || errors.Is(err, errFrameCorrupt) || errors.Is(err, errFrameChecksum):
		t.badFrames.Add(1)
		t.log.Warn().Str("remote", remote).Uint64("from", from).Err(err).Msg("peer connection closed: bad frame")
	case errors.Is(err, io.EOF):
		t.log.Debug().Str("remote", remote).Uint64("from", from).Msg("peer connection closed by peer")
	default:
		t.log.Info().Str("remote", remote).Uint64("from", from).Err(err).Msg("peer connection closed")
	}
}

func (t *Transport) readLoop(conn net.Conn, from uint64) error {
	br := bufio.NewReaderSize(conn, connBufSize)
	var buf []byte
	for {
		conn.SetReadDeadline(time.Now().Add(t.readIdle))
		payload, nb, err := readFrame(br, buf, t.cfg.MaxFrameBytes)
		if err != nil {
			return err
		}
		msgs, err := decodeFramePayload(payload)
		if err != nil {
			return err
		}
		if cap(nb) <= maxKeptReadBuf {
			buf = nb
		} else {
			buf = nil
		}
		t.bytesRecv.Add(uint64(frameLenSize + len(payload)))
		if t.dropFrom(from) {
			t.dropped.Add(uint64(len(msgs)))
			continue
		}
		t.mu.RLock()
		p := t.peers[from]
		t.mu.RUnlock()
		if p != nil {
			p.lastRecv.Store(time.Now().UnixNano())
		}
		if len(msgs) == 0 {
			continue
		}
		t.framesRecv.Add(1)
		t.msgsRecv.Add(uint64(len(msgs)))
		if t.cfg.Handler != nil {
			t.cfg.Handler(from, msgs)
		}
	}
}

// ---------------------------------------------------------------------------
// the outgoing side

func (p *peer) stop() {
	p.cancel()
	p.connMu.Lock()
	if p.conn != nil {
		p.conn.Close()
	}
	p.connMu.Unlock()
}

func (p *peer) getAddr() string {
	p.addrMu.Lock()
	defer p.addrMu.Unlock()
	return p.addr
}

func (p *peer) enqueue(msgs []GroupMessage) {
	p.qmu.Lock()
	n := min(len(msgs), max(p.t.cfg.QueueMessages-len(p.q), 0))
	p.q = append(p.q, msgs[:n]...)
	p.qmu.Unlock()
	if n < len(msgs) {
		p.t.dropped.Add(uint64(len(msgs) - n))
	}
	if n > 0 {
		select {
		case p.notify <- struct{}{}:
		default:
		}
	}
}

// take returns everything queued, leaving spare as the new queue.
func (p *peer) take(spare []GroupMessage) []GroupMessage {
	p.qmu.Lock()
	q := p.q
	p.q = spare[:0]
	p.qmu.Unlock()
	return q
}

// setConn records the current outgoing connection; false if stopped.
func (p *peer) setConn(c net.Conn) bool {
	p.connMu.Lock()
	defer p.connMu.Unlock()
	if c != nil && p.ctx.Err() != nil {
		return false
	}
	p.conn = c
	return true
}

// checkLiveness reports up/down transitions; called by run only.
func (p *peer) checkLiveness() {
	t := p.t
	up := p.connected.Load() &&
		time.Since(time.Unix(0, p.lastRecv.Load())) <= downAfterBeats*t.cfg.HeartbeatEvery
	switch {
	case p.alive.Load() && !up:
		p.alive.Store(false)
		t.log.Info().Uint64("peer", p.id).Bool("connected", p.connected.Load()).Msg("peer down")
		if t.cfg.OnPeerDown != nil {
			t.cfg.OnPeerDown(p.id)
		}
	case !p.alive.Load() && up:
		p.alive.Store(true)
		t.log.Info().Uint64("peer", p.id).Msg("peer up")
	}
}

func (p *peer) run() {
	t := p.t
	defer t.wg.Done()
	defer func() {
		// Release what is still queued.
		p.qmu.Lock()
		p.q = nil
		p.qmu.Unlock()
	}()
	backoff := dialBackoffMin
	lastErr := ""
	for p.ctx.Err() == nil {
		select {
		case <-p.redial: // dialing picks up the new address anyway
		default:
		}
		conn, err := p.dial()
		if err != nil {
			if p.ctx.Err() != nil {
				return
			}
			p.checkLiveness()
			ev := t.log.Debug()
			if msg := err.Error(); msg != lastErr {
				ev = t.log.Warn()
				lastErr = msg
			}
			ev.Uint64("peer", p.id).Str("addr", p.getAddr()).Err(err).Dur("retry", backoff).Msg("cannot connect to peer")
			if !p.sleep(backoff) {
				return
			}
			backoff = min(2*backoff, dialBackoffMax)
			continue
		}
		backoff, lastErr = dialBackoffMin, ""
		t.log.Debug().Uint64("peer", p.id).Str("addr", conn.RemoteAddr().String()).Msg("connected to peer")
		err = p.serveConn(conn)
		conn.Close()
		p.setConn(nil)
		p.connected.Store(false)
		p.checkLiveness()
		if p.ctx.Err() != nil {
			return
		}
		t.log.Info().Uint64("peer", p.id).Err(err).Msg("connection to peer lost")
		if !p.sleep(backoff) {
			return
		}
	}
}

// sleep waits d (jittered by up to 25%); false if the peer was stopped.
func (p *peer) sleep(d time.Duration) bool {
	d += time.Duration(rand.Int64N(int64(d)/4 + 1))
	tm := time.NewTimer(d)
	defer tm.Stop()
	select {
	case <-p.ctx.Done():
		return false
	case <-tm.C:
		return true
	}
}

// dial connects and handshakes.
func (p *peer) dial() (net.Conn, error) {
	t := p.t
	d := net.Dialer{Timeout: t.cfg.DialTimeout}
	conn, err := d.DialContext(p.ctx, "tcp", p.getAddr())
	if err != nil {
		return nil, err
	}
	if !p.setConn(conn) {
		conn.Close()
		return nil, ErrStopped
	}
	fail := func(err error) (net.Conn, error) {
		conn.Close()
		p.setConn(nil)
		return nil, err
	}
	hb, err := appendHello(nil, hello{Version: handshakeVersion, From: t.cfg.NodeID, To: p.id, ClusterID: t.cfg.ClusterID})
	if err != nil {
		return fail(err)
	}
	conn.SetDeadline(time.Now().Add(t.cfg.DialTimeout))
	if _, err := conn.Write(hb); err != nil {
		return fail(fmt.Errorf("handshake: %w", err))
	}
	status, reason, err := readHelloReply(conn)
	if err != nil {
		t.refused.Add(1)
		return fail(fmt.Errorf("handshake: %w", err))
	}
	if status != helloOK {
		t.refused.Add(1)
		return fail(fmt.Errorf("handshake refused by peer: %s", reason))
	}
	conn.SetDeadline(time.Time{})
	return conn, nil
}

// serveConn writes frames to an established connection until it fails, the
// address changes or the peer is stopped.
func (p *peer) serveConn(conn net.Conn) error {
	t := p.t
	p.connected.Store(true)
	p.checkLiveness()

	// The peer never writes after the handshake: a read returning means
	// the connection is gone.
	dead := make(chan struct{})
	t.wg.Add(1)
	go func() {
		defer t.wg.Done()
		defer close(dead)
		var b [64]byte
		for {
			if _, err := conn.Read(b[:]); err != nil {
				return
			}
		}
	}()

	bw := bufio.NewWriterSize(conn, connBufSize)
	tick := time.NewTicker(t.cfg.HeartbeatEvery)
	defer tick.Stop()
	var spare []GroupMessage
	wrote := false
	for {
		select {
		case <-p.ctx.Done():
			return ErrStopped
		case <-dead:
			return errors.New("connection closed by peer")
		case <-p.redial:
			return errors.New("peer address changed")
		case <-p.notify:
			batch := p.take(spare)
			err := p.writeBatch(conn, bw, batch)
			clear(batch)
			spare = batch[:0]
			if err != nil {
				return err
			}
			wrote = true
		case <-tick.C:
			if !wrote && !t.dropTo(p.id) {
				conn.SetWriteDeadline(time.Now().Add(t.writeTimeout))
				if _, err := bw.Write(heartbeatFrame); err != nil {
					return err
				}
				if err := bw.Flush(); err != nil {
					return err
				}
				t.bytesSent.Add(uint64(len(heartbeatFrame)))
			}
			wrote = false
			p.checkLiveness()
		}
	}
}

// writeBatch writes batch as few frames as MaxFrameBytes allows (usually
// one) and flushes.
func (p *peer) writeBatch(conn net.Conn, bw *bufio.Writer, batch []GroupMessage) error {
	t := p.t
	if len(batch) == 0 {
		return nil
	}
	if t.dropTo(p.id) {
		t.dropped.Add(uint64(len(batch)))
		return nil
	}
	enc := getEncoder()
	defer putEncoder(enc)
	conn.SetWriteDeadline(time.Now().Add(t.writeTimeout))
	var frames, msgs, bytes uint64
	for len(batch) > 0 {
		frame, n, err := enc.encode(batch, t.frameTarget)
		if errors.Is(err, errMessageTooLarge) && t.frameTarget < t.cfg.MaxFrameBytes {
			frame, n, err = enc.encode(batch[:1], t.cfg.MaxFrameBytes) // a big message alone
		}
		if err != nil {
			n = max(n, 1)
			t.dropped.Add(uint64(n))
			t.log.Warn().Uint64("peer", p.id).Uint64("group", uint64(batch[0].Group)).
				Stringer("type", batch[0].Msg.Type).Err(err).Msg("message dropped")
			batch = batch[n:]
			continue
		}
		if _, err := bw.Write(frame); err != nil {
			t.dropped.Add(uint64(len(batch)))
			return err
		}
		frames++
		msgs += uint64(n)
		bytes += uint64(len(frame))
		batch = batch[n:]
	}
	if err := bw.Flush(); err != nil {
		t.dropped.Add(msgs)
		return err
	}
	t.framesSent.Add(frames)
	t.msgsSent.Add(msgs)
	t.bytesSent.Add(bytes)
	return nil
}
