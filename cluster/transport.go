package cluster

// The peer transport.
//
// Connection model: between two nodes there is exactly one TCP connection,
// used in both directions and carrying the batched messages of every group
// both ways. The node with the LOWER id dials it; the higher id only
// accepts it. A node accepts a handshake only from a configured peer with
// a lower id than its own, so there is never a dial race to resolve (two
// sockets opened at once, one to be chosen), and only the dialing side
// ever reconnects, with backoff (50ms doubling to 1s, jittered). If an
// accepted connection arrives from a peer that already has one (the dialer
// reconnected after a failure the acceptor has not noticed yet), the new
// connection replaces the old one, which is closed; connections are ordered
// by when they were accepted, so an older one never replaces a newer one.
//
// Per peer there is one goroutine (run, transport_conn.go). On the dialing
// side it dials and handshakes; on the accepting side it waits for the
// connection that Serve accepted and handshook. Once a connection is
// established both sides use it the same way: run is its only writer,
// draining the peer's queue (everything queued at that moment, all groups,
// goes out as one frame through a bufio.Writer, split at 1 MiB and never
// above MaxFrameBytes) and writing a heartbeat frame when a heartbeat
// interval passed without a frame; a second goroutine per connection is its
// only reader, decoding frames and calling Handler. A connection with no
// frame from the peer for max(10 heartbeats, 2s) is closed.
//
// Messages sent to a peer that is not connected stay queued (bounded by
// QueueMessages; beyond that new messages are dropped and counted) and go
// out once a connection is up, whichever side established it: at start-up
// the first votes are sent before the dial completes, and raft copes with
// stale messages anyway. A batch being written when a connection fails is
// lost (and counted as dropped); raft retries.
//
// Liveness: a peer is up while a connection with it is established and a
// frame (data or heartbeat) arrived from it within 3 heartbeat intervals.
// A Fault applies to heartbeats as to data (DropTo sends none, DropFrom
// ignores those received), so a node cut off both ways is seen down by
// its peers. OnPeerDown is called once per up->down transition, from the
// peer's run goroutine; a connection replaced by a newer one is not a
// transition.
//
// Accepting: Serve only accepts; each accepted connection is handshaken
// (TLS, then hello) on a goroutine of its own within HandshakeTimeout, so
// a silent or slow dialer holds neither the accept loop nor anything past
// the timeout. At most maxPendingHandshakes connections are handshaking at
// once, maxPendingPerIP from one address; more are closed at once
// (refusal reason "busy"), so a flood from one address cannot keep the
// real peers out. A refused connection is closed alone: the established
// connections are not touched. Refusals are counted by reason and logged
// (once per reason per refusalLogEvery, with how many were not logged).

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
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

	maxPendingHandshakes = 64
	maxPendingPerIP      = 8
	refusalLogEvery      = 10 * time.Second
)

// Transport carries raft messages of all groups between nodes. See the
// comment at the top of transport.go.
type Transport struct {
	cfg          TransportConfig
	log          zerolog.Logger
	readIdle     time.Duration // a connection with no frame from the peer for this long is closed
	writeTimeout time.Duration // deadline for writing one frame
	frameTarget  int           // frames are cut at this size (min(MaxFrameBytes, frameSoftMax))

	mu        sync.RWMutex
	peers     map[uint64]*peer
	listeners map[net.Listener]struct{}
	inbound   map[net.Conn]struct{} // accepted connections not yet handed to their peer
	pendingIP map[string]int        // inbound by remote IP
	closed    bool
	wg        sync.WaitGroup

	acceptSeq atomic.Uint64 // orders accepted connections

	fault atomic.Pointer[Fault]

	framesSent, framesRecv atomic.Uint64
	msgsSent, msgsRecv     atomic.Uint64
	bytesSent, bytesRecv   atomic.Uint64
	dropped                atomic.Uint64
	refused                atomic.Uint64 // handshakes refused or failed, either side
	badFrames              atomic.Uint64 // connections closed for an oversized or malformed frame
	established            atomic.Uint64 // connections established (handshake done), dialed or accepted

	// Refusals by reason (keys fixed at construction, so read without a lock).
	acceptRefused, dialRefused map[string]*atomic.Uint64
	refusalLogMu               sync.Mutex
	refusalLogged              map[string]time.Time // message/reason -> last logged
	refusalUnlogged            map[string]uint64    // message/reason -> refusals since then, not logged
}

// NewTransport returns a transport and starts dialing the configured peers
// with higher ids than this node's. Call Serve to accept the connections of
// the peers with lower ids.
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
	if cfg.HandshakeTimeout <= 0 {
		cfg.HandshakeTimeout = 5 * time.Second
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
		pendingIP:    make(map[string]int),

		acceptRefused:   make(map[string]*atomic.Uint64),
		dialRefused:     make(map[string]*atomic.Uint64),
		refusalLogged:   make(map[string]time.Time),
		refusalUnlogged: make(map[string]uint64),
	}
	for _, r := range AcceptRefusalReasons {
		t.acceptRefused[r] = new(atomic.Uint64)
	}
	for _, r := range DialRefusalReasons {
		t.dialRefused[r] = new(atomic.Uint64)
	}
	for id, addr := range cfg.Peers {
		t.AddPeer(id, addr)
	}
	return t
}

// AddPeer adds a peer (or changes its address). If the peer's id is higher
// than this node's, this node dials it (and redials when the address
// changed); otherwise the peer dials this node and the address is only
// recorded. The node's own id is ignored.
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
		if changed && p.dialer {
			select {
			case p.redial <- struct{}{}:
			default:
			}
		}
		return
	}
	p := &peer{
		t:        t,
		id:       id,
		dialer:   t.cfg.NodeID < id,
		addr:     addr,
		notify:   make(chan struct{}, 1),
		redial:   make(chan struct{}, 1),
		incoming: make(chan inboundConn),
	}
	p.ctx, p.cancel = context.WithCancel(context.Background())
	t.peers[id] = p
	t.wg.Add(1)
	go p.run()
}

// RemovePeer stops sending to a peer, drops what is queued for it and
// closes the connection with it; handshakes from it are refused from then
// on. It does not wait for the peer's goroutines (Close does), so it may be
// called from Handler or OnPeerDown.
func (t *Transport) RemovePeer(id uint64) {
	t.mu.Lock()
	p := t.peers[id]
	delete(t.peers, id)
	t.mu.Unlock()
	if p != nil {
		p.stop()
	}
}

// Connected reports whether the connection with a peer is established
// (handshake done), whichever side dialed it.
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
		AcceptRefused:    make(map[string]uint64, len(t.acceptRefused)),
		DialRefused:      make(map[string]uint64, len(t.dialRefused)),
	}
	for r, n := range t.acceptRefused {
		s.AcceptRefused[r] = n.Load()
	}
	for r, n := range t.dialRefused {
		s.DialRefused[r] = n.Load()
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
		ip := remoteIP(conn)
		t.mu.Lock()
		if t.closed {
			t.mu.Unlock()
			conn.Close()
			return nil
		}
		if len(t.inbound) >= maxPendingHandshakes || t.pendingIP[ip] >= maxPendingPerIP {
			n, nip := len(t.inbound), t.pendingIP[ip]
			t.mu.Unlock()
			conn.Close()
			t.refuseAccept(RefusedBusy, conn.RemoteAddr().String(), 0,
				fmt.Sprintf("%d handshakes in progress, %d from %s (at most %d, %d per address)", n, nip, ip, maxPendingHandshakes, maxPendingPerIP))
			continue
		}
		t.inbound[conn] = struct{}{}
		t.pendingIP[ip]++
		t.wg.Add(1)
		t.mu.Unlock()
		go t.serveInbound(inboundConn{conn: conn, seq: t.acceptSeq.Add(1)}, ip)
	}
}

// remoteIP is the IP address a connection comes from (its whole remote
// address if that has no port).
func remoteIP(c net.Conn) string {
	a := c.RemoteAddr().String()
	if host, _, err := net.SplitHostPort(a); err == nil {
		return host
	}
	return a
}

// refuseAccept counts a refused accepted connection and logs it, at most
// once per reason per refusalLogEvery (a flood of refused connections
// must not flood the log).
func (t *Transport) refuseAccept(reason, remote string, from uint64, detail string) {
	t.refused.Add(1)
	t.acceptRefused[reason].Add(1)
	t.logRefusal("peer connection refused", reason, remote, from, detail)
}

// refuseDial counts a dial this node gave up because of the acceptor's
// certificate and logs it as refuseAccept does.
func (t *Transport) refuseDial(reason, remote string, to uint64, detail string) {
	t.refused.Add(1)
	t.dialRefused[reason].Add(1)
	t.logRefusal("peer refused: its certificate does not prove the node dialed", reason, remote, to, detail)
}

func (t *Transport) logRefusal(msg, reason, remote string, node uint64, detail string) {
	t.refusalLogMu.Lock()
	now := time.Now()
	key := msg + "/" + reason
	if last, ok := t.refusalLogged[key]; ok && now.Sub(last) < refusalLogEvery {
		t.refusalUnlogged[key]++
		t.refusalLogMu.Unlock()
		return
	}
	unlogged := t.refusalUnlogged[key]
	t.refusalLogged[key] = now
	delete(t.refusalUnlogged, key)
	t.refusalLogMu.Unlock()
	ev := t.log.Warn().Str("remote", remote).Str("reason", reason)
	if node != 0 {
		ev = ev.Uint64("peer", node)
	}
	if unlogged > 0 {
		ev = ev.Uint64("not_logged", unlogged)
	}
	ev.Str("detail", detail).Msg(msg)
}

// checkHello validates a dialer's hello and returns the peer it comes from.
func (t *Transport) checkHello(h hello) (*peer, uint8, string) {
	switch {
	case h.Version != handshakeVersion:
		return nil, helloBadVersion, fmt.Sprintf("version %d, want %d", h.Version, handshakeVersion)
	case h.ClusterID != t.cfg.ClusterID:
		return nil, helloWrongCluster, fmt.Sprintf("cluster id %q, want %q", h.ClusterID, t.cfg.ClusterID)
	case h.To != t.cfg.NodeID:
		return nil, helloWrongNode, fmt.Sprintf("addressed to node %d, this is node %d", h.To, t.cfg.NodeID)
	case h.From == 0 || h.From == t.cfg.NodeID:
		return nil, helloBadSender, fmt.Sprintf("sender node id %d not allowed", h.From)
	case h.From > t.cfg.NodeID:
		return nil, helloWrongDirection, fmt.Sprintf("node %d has the higher id: node %d dials it", h.From, t.cfg.NodeID)
	}
	t.mu.RLock()
	p := t.peers[h.From]
	t.mu.RUnlock()
	if p == nil {
		return nil, helloUnknownPeer, fmt.Sprintf("node %d is not a peer of node %d", h.From, t.cfg.NodeID)
	}
	return p, helloOK, ""
}

// serveInbound handshakes an accepted connection (TLS if configured, then
// the hello) and hands it to its peer's run goroutine, which serves it
// from then on.
func (t *Transport) serveInbound(in inboundConn, ip string) {
	defer t.wg.Done()
	raw := in.conn
	handedOff := false
	defer func() {
		t.mu.Lock()
		delete(t.inbound, raw)
		if t.pendingIP[ip]--; t.pendingIP[ip] <= 0 {
			delete(t.pendingIP, ip)
		}
		t.mu.Unlock()
		if !handedOff {
			raw.Close()
		}
	}()
	remote := raw.RemoteAddr().String()
	raw.SetDeadline(time.Now().Add(t.cfg.HandshakeTimeout))
	conn, certID, reason, err := t.acceptTLS(raw)
	if err != nil {
		if !t.isClosed() {
			t.refuseAccept(reason, remote, 0, err.Error())
		}
		return
	}
	h, err := readHello(conn)
	if err != nil {
		if t.isClosed() {
			return
		}
		detail := err.Error()
		if errors.Is(err, errTLSHello) {
			detail = fmt.Sprintf("the dialer speaks TLS; node %d has no peer TLS configured", t.cfg.NodeID)
		}
		t.refuseAccept(RefusedBadHello, remote, 0, detail)
		return
	}
	var p *peer
	status, detail := helloOK, ""
	if t.cfg.TLS != nil && h.From != certID {
		// Before anything else: a dialer is the node its certificate
		// names, whatever its hello claims.
		status, detail = helloIDMismatch, fmt.Sprintf("hello from node %d, the certificate names node %d", h.From, certID)
	} else {
		p, status, detail = t.checkHello(h)
	}
	if status != helloOK {
		conn.Write(appendHelloReply(nil, status, detail))
		t.refuseAccept(helloRefusal(status), remote, h.From, detail)
		return
	}
	if _, err := conn.Write(appendHelloReply(nil, helloOK, "")); err != nil {
		t.log.Debug().Str("remote", remote).Uint64("from", h.From).Err(err).Msg("peer connection lost during handshake")
		return
	}
	raw.SetDeadline(time.Time{})
	in.conn = conn
	select {
	case p.incoming <- in:
		handedOff = true
		t.log.Debug().Str("remote", remote).Uint64("from", h.From).Bool("tls", t.cfg.TLS != nil).Msg("peer connection accepted")
	case <-p.ctx.Done(): // the peer was removed or the transport closed
	}
}

// acceptTLS runs the acceptor's side of the TLS handshake on raw (under
// its deadline) and returns the connection to use from then on and the
// node id the dialer's certificate proves. Without TLS it returns raw.
// On failure, reason is the refusal reason.
func (t *Transport) acceptTLS(raw net.Conn) (conn net.Conn, id uint64, reason string, err error) {
	if t.cfg.TLS == nil {
		return raw, 0, "", nil
	}
	var first [1]byte
	if _, err := io.ReadFull(raw, first[:]); err != nil {
		return nil, 0, RefusedTLS, fmt.Errorf("TLS handshake: %w", err)
	}
	if first[0] == handshakeMagic[0] {
		// A plaintext hello: answer in plaintext, so that the dialer logs
		// why, after reading its hello (closing with unread bytes would
		// reset the connection before the answer arrives).
		pc := &prefixConn{Conn: raw, prefix: first[:]}
		h, herr := readHello(pc)
		detail := fmt.Sprintf("node %d requires peer TLS: the dialer sent a plaintext hello", t.cfg.NodeID)
		if herr == nil {
			raw.Write(appendHelloReply(nil, helloTLSRequired, detail))
			detail += fmt.Sprintf(" (from node %d)", h.From)
		}
		return nil, 0, RefusedPlaintext, errors.New(detail)
	}
	var verr error
	tc := tls.Server(&prefixConn{Conn: raw, prefix: first[:]}, t.cfg.TLS.serverConfig(&verr))
	if err := tc.Handshake(); err != nil {
		return nil, 0, refusalOf(err, verr), fmt.Errorf("TLS handshake: %w", err)
	}
	id, err = NodeIDOf(tc.ConnectionState().PeerCertificates[0]) // verified by the handshake
	if err != nil {
		return nil, 0, RefusedNoNodeID, err
	}
	return tlsConn{Conn: tc, raw: raw}, id, "", nil
}
