package cluster

// The per-peer side of the transport: the run goroutine that obtains the
// connection with a peer (dialing it, or taking the one Serve accepted) and
// writes to it, and the reader goroutine of each connection. See the
// comment at the top of transport.go.

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

type peer struct {
	t      *Transport
	id     uint64
	dialer bool            // this node dials the peer (its id is the lower one)
	ctx    context.Context // done when the peer is removed or the transport closed
	cancel context.CancelFunc

	addrMu sync.Mutex
	addr   string

	qmu      sync.Mutex
	q        []GroupMessage
	notify   chan struct{}    // cap 1: the queue has messages
	redial   chan struct{}    // cap 1: the address changed (dialer only)
	incoming chan inboundConn // connections accepted from the peer (acceptor only)

	connMu sync.Mutex
	conn   net.Conn // the current connection (dialing, or established), closed on stop

	connected atomic.Bool  // a connection is established
	lastRecv  atomic.Int64 // unix nanos of the last frame received from the peer
	alive     atomic.Bool  // written by run only
}

// inboundConn is an accepted connection; seq orders accepted connections.
type inboundConn struct {
	conn net.Conn
	seq  uint64
}

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

// setConn records the current connection; false if stopped.
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

// run obtains the connection with the peer, serves it until it fails, and
// again, until the peer is stopped. The dialing side dials with backoff;
// the accepting side waits for Serve to hand it the next connection.
func (p *peer) run() {
	t := p.t
	defer t.wg.Done()
	defer func() {
		p.setConn(nil)
		p.connected.Store(false)
		// Release what is still queued.
		p.qmu.Lock()
		p.q = nil
		p.qmu.Unlock()
	}()
	backoff := dialBackoffMin
	lastErr := ""
	var next inboundConn // an accepted connection that replaced the one served
	for p.ctx.Err() == nil {
		var cur inboundConn
		switch {
		case next.conn != nil:
			cur, next = next, inboundConn{}
			if !p.setConn(cur.conn) {
				cur.conn.Close()
				return
			}
		case p.dialer:
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
			cur.conn = conn
			t.log.Debug().Uint64("peer", p.id).Str("addr", conn.RemoteAddr().String()).Msg("connected to peer")
		default:
			select {
			case <-p.ctx.Done():
				return
			case cur = <-p.incoming:
			}
			if !p.setConn(cur.conn) {
				cur.conn.Close()
				return
			}
		}
		t.established.Add(1)
		var err error
		next, err = p.serveConn(cur)
		if next.conn != nil {
			t.log.Debug().Uint64("peer", p.id).Msg("connection with peer replaced by a newer one")
			continue
		}
		p.setConn(nil)
		p.connected.Store(false)
		p.checkLiveness()
		if p.ctx.Err() != nil {
			return
		}
		t.log.Info().Uint64("peer", p.id).Bool("dialer", p.dialer).Err(err).Msg("connection with peer lost")
		if p.dialer && !p.sleep(backoff) {
			return
		}
	}
}

// sleep waits d (jittered by up to 25%); false if the peer was stopped. An
// address change cuts it short.
func (p *peer) sleep(d time.Duration) bool {
	d += time.Duration(rand.Int64N(int64(d)/4 + 1))
	tm := time.NewTimer(d)
	defer tm.Stop()
	select {
	case <-p.ctx.Done():
		return false
	case <-p.redial:
		return true
	case <-tm.C:
		return true
	}
}

// dial connects and handshakes: TLS first if configured (the acceptor's
// certificate must name this peer's id), then the hello.
func (p *peer) dial() (net.Conn, error) {
	t := p.t
	d := net.Dialer{Timeout: t.cfg.DialTimeout}
	raw, err := d.DialContext(p.ctx, "tcp", p.getAddr())
	if err != nil {
		return nil, err
	}
	if !p.setConn(raw) {
		raw.Close()
		return nil, ErrStopped
	}
	fail := func(err error) (net.Conn, error) {
		raw.Close()
		p.setConn(nil)
		return nil, err
	}
	hb, err := appendHello(nil, hello{Version: handshakeVersion, From: t.cfg.NodeID, To: p.id, ClusterID: t.cfg.ClusterID})
	if err != nil {
		return fail(err)
	}
	raw.SetDeadline(time.Now().Add(t.cfg.HandshakeTimeout))
	conn := raw
	if t.cfg.TLS != nil {
		var verr error
		tc := tls.Client(raw, t.cfg.TLS.clientConfig(p.id, &verr))
		if err := tc.HandshakeContext(p.ctx); err != nil {
			if verr != nil && p.ctx.Err() == nil {
				t.refuseDial(refusalOf(err, verr), raw.RemoteAddr().String(), p.id, verr.Error())
			}
			return fail(fmt.Errorf("TLS handshake: %w", err))
		}
		conn = tlsConn{Conn: tc, raw: raw}
	}
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
	raw.SetDeadline(time.Time{})
	return conn, nil
}

// serveConn serves an established connection: it starts the connection's
// reader and writes frames until the connection fails, the address changes
// (dialer), a newer accepted connection replaces it (acceptor; returned as
// next) or the peer is stopped. It closes the connection and waits for the
// reader before returning.
func (p *peer) serveConn(cur inboundConn) (next inboundConn, err error) {
	t := p.t
	conn := cur.conn
	p.connected.Store(true)
	p.checkLiveness()

	dead := make(chan struct{})
	t.wg.Add(1)
	go func() {
		defer t.wg.Done()
		defer close(dead)
		p.reader(conn)
	}()
	defer func() {
		conn.Close()
		<-dead
	}()

	var redial <-chan struct{}
	var incoming <-chan inboundConn
	if p.dialer {
		redial = p.redial
	} else {
		incoming = p.incoming
	}
	bw := bufio.NewWriterSize(conn, connBufSize)
	tick := time.NewTicker(t.cfg.HeartbeatEvery)
	defer tick.Stop()
	var spare []GroupMessage
	wrote := false
	for {
		select {
		case <-p.ctx.Done():
			return inboundConn{}, ErrStopped
		case <-dead:
			return inboundConn{}, errors.New("connection closed")
		case <-redial:
			return inboundConn{}, errors.New("peer address changed")
		case in := <-incoming:
			if in.seq < cur.seq { // accepted before this one: stale
				in.conn.Close()
				continue
			}
			return in, nil
		case <-p.notify:
			batch := p.take(spare)
			err := p.writeBatch(conn, bw, batch)
			clear(batch)
			spare = batch[:0]
			if err != nil {
				return inboundConn{}, err
			}
			wrote = true
		case <-tick.C:
			if !wrote && !t.dropTo(p.id) {
				conn.SetWriteDeadline(time.Now().Add(t.writeTimeout))
				if _, err := bw.Write(heartbeatFrame); err != nil {
					return inboundConn{}, err
				}
				if err := bw.Flush(); err != nil {
					return inboundConn{}, err
				}
				t.bytesSent.Add(uint64(len(heartbeatFrame)))
			}
			wrote = false
			p.checkLiveness()
		}
	}
}

// reader reads frames from conn until it fails and logs why it did.
func (p *peer) reader(conn net.Conn) {
	t := p.t
	err := p.readLoop(conn)
	remote := conn.RemoteAddr().String()
	switch {
	case t.isClosed() || p.ctx.Err() != nil || errors.Is(err, net.ErrClosed):
	case errors.Is(err, errFrameTooLarge) || errors.Is(err, errFrameCorrupt) || errors.Is(err, errFrameChecksum):
		t.badFrames.Add(1)
		t.log.Warn().Str("remote", remote).Uint64("peer", p.id).Err(err).Msg("peer connection closed: bad frame")
	case errors.Is(err, io.EOF):
		t.log.Debug().Str("remote", remote).Uint64("peer", p.id).Msg("peer connection closed by peer")
	default:
		t.log.Info().Str("remote", remote).Uint64("peer", p.id).Err(err).Msg("peer connection closed")
	}
	conn.Close() // the writer notices at its next write; run notices dead at once
}

func (p *peer) readLoop(conn net.Conn) error {
	t := p.t
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
		if t.dropFrom(p.id) {
			t.dropped.Add(uint64(len(msgs)))
			continue
		}
		p.lastRecv.Store(time.Now().UnixNano())
		if len(msgs) == 0 {
			continue
		}
		t.framesRecv.Add(1)
		t.msgsRecv.Add(uint64(len(msgs)))
		if t.cfg.Handler != nil {
			t.cfg.Handler(p.id, msgs)
		}
	}
}

// writeBatch writes batch as few frames as the frame size allows (usually
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
