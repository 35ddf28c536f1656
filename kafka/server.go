package kafka

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/rs/zerolog"

	"github.com/chronik-stream/chronik/broker"
)

const (
	defaultMaxRequestBytes     = 100 << 20
	defaultIdleTimeout         = 10 * time.Minute
	defaultRequestReadTimeout  = 30 * time.Second
	defaultMaxConnections      = 10_000
	defaultMaxConnectionsPerIP = 1000

	// maxPipelined bounds the requests read from one connection whose
	// responses have not been written yet. When it is reached the reader
	// stops reading: backpressure instead of unbounded memory.
	maxPipelined = 64

	// readBufferSize is each connection's read buffer: it holds size
	// prefixes and small requests, several per read when pipelined.
	// Larger bodies are read straight into their own buffers.
	readBufferSize = 16 << 10

	// firstBodyChunk is the least buffer a body gets when its first byte
	// arrives (the whole body if smaller). See nextBodyCap: a reader never
	// holds more for a body than what has arrived, twice what it has read,
	// or this much.
	firstBodyChunk = 4 << 10

	// drainGrace is how long a reader interrupted by Shutdown in the middle
	// of a frame may take to finish reading it.
	drainGrace = 5 * time.Second

	// defaultMaxNewPartitions caps the partitions one CreateTopics or
	// CreatePartitions request may ask for (per topic), so that a single
	// request cannot make the broker create millions of logs.
	defaultMaxNewPartitions = 100_000
)

// anonymousPrincipal is the principal of a connection that has not
// authenticated (Kafka's KafkaPrincipal.ANONYMOUS).
const anonymousPrincipal = "User:ANONYMOUS"

// Server serves the Kafka protocol for one *broker.Broker on any number of
// listeners.
type Server struct {
	cfg Config
	b   *broker.Broker
	log zerolog.Logger

	// baseCtx is the parent of every connection's context. It is cancelled
	// when Shutdown stops waiting for in-flight requests.
	baseCtx    context.Context
	cancelBase context.CancelFunc
	// draining is closed by Shutdown: readers stop at the next frame
	// boundary and long polls answer with what they have.
	draining chan struct{}

	mu        sync.Mutex
	closed    bool
	listeners map[net.Listener]struct{}
	conns     map[*conn]struct{}
	perIP     map[string]int // open connections by client IP
	wg        sync.WaitGroup // one count per live connection

	// rejectedTotal and rejectedPerIP rate-limit the log lines of refused
	// connections: a flood of them is counted, not logged one by one.
	rejectedTotal, rejectedPerIP logLimiter

	maxNewPartitions int32

	// budget bounds request bytes held across connections.
	budget *byteBudget

	// featuresEpoch is ApiVersions' FinalizedFeaturesEpoch: the time New
	// ran, in milliseconds, so that it grows across restarts.
	featuresEpoch int64
	// testPrincipal, set only by tests (no setting or wire input reaches
	// it), names a connection's principal from the client id of each
	// request, standing in for authentication.
	testPrincipal func(clientID string) string

	// panics counts handler panics recovered (and answered with
	// UNKNOWN_SERVER_ERROR); the fuzz target checks it stays zero.
	panics atomic.Int64
}

// New returns a Server for b. Call Serve to accept connections.
func New(cfg Config, b *broker.Broker) *Server {
	if cfg.MaxRequestBytes <= 0 {
		cfg.MaxRequestBytes = defaultMaxRequestBytes
	}
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = defaultIdleTimeout
	}
	if cfg.MaxInflightRequestBytes <= 0 {
		cfg.MaxInflightRequestBytes = defaultMaxInflightRequestBytes
	}
	if cfg.MaxInflightRequestBytes < int64(cfg.MaxRequestBytes) {
		cfg.MaxInflightRequestBytes = int64(cfg.MaxRequestBytes)
	}
	if cfg.RequestReadTimeout <= 0 {
		cfg.RequestReadTimeout = defaultRequestReadTimeout
	}
	if cfg.MaxConnections == 0 {
		cfg.MaxConnections = defaultMaxConnections
	}
	if cfg.MaxConnectionsPerIP == 0 {
		cfg.MaxConnectionsPerIP = defaultMaxConnectionsPerIP
	}
	if len(cfg.SASLMechanisms) == 0 {
		cfg.SASLMechanisms = defaultSASLMechanisms
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Server{
		cfg:              cfg,
		b:                b,
		log:              cfg.Logger,
		baseCtx:          ctx,
		cancelBase:       cancel,
		draining:         make(chan struct{}),
		listeners:        make(map[net.Listener]struct{}),
		conns:            make(map[*conn]struct{}),
		perIP:            make(map[string]int),
		maxNewPartitions: defaultMaxNewPartitions,
		budget:           newByteBudget(cfg.MaxInflightRequestBytes, int64(cfg.MaxRequestBytes)),
		featuresEpoch:    time.Now().UnixMilli(),
	}
}

// defaultMaxInflightRequestBytes is the default of
// Config.MaxInflightRequestBytes.
const defaultMaxInflightRequestBytes = 512 << 20

// serve accepts connections on ln for listener l (ServeListener).
func (s *Server) serve(ln net.Listener, l *listener) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		ln.Close()
		return nil
	}
	s.listeners[ln] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.listeners, ln)
		s.mu.Unlock()
	}()

	var backoff time.Duration
	for {
		nc, err := ln.Accept()
		if err != nil {
			if s.isClosed() {
				return nil
			}
			if errors.Is(err, net.ErrClosed) {
				return err
			}
			// Out of file descriptors and the like: wait and retry,
			// as net/http does, instead of spinning or giving up.
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			s.log.Warn().Err(err).Dur("retry_in", backoff).Msg("accept failed")
			time.Sleep(backoff)
			continue
		}
		backoff = 0
		s.startConn(nc, l)
	}
}

// RequestBytes is the memory that requests read but not yet answered hold
// now, all connections together (bounded by Config.MaxInflightRequestBytes).
func (s *Server) RequestBytes() int64 { return s.budget.held() }

// Shutdown stops accepting, stops reading new requests, lets in-flight
// requests finish and their responses be written, and closes every
// connection. If ctx ends first it closes the connections at once, cancels
// the requests still running, waits for them and returns ctx.Err().
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	if !s.closed {
		s.closed = true
		close(s.draining)
		// A reader waiting for budget room is not reading its socket, so
		// no read deadline ends its frame: it gives up with the grace.
		time.AfterFunc(drainGrace, s.budget.abort)
		for ln := range s.listeners {
			ln.Close()
		}
		for c := range s.conns {
			// Wake the reader; it stops at the frame boundary.
			c.nc.SetReadDeadline(time.Now())
		}
	}
	s.mu.Unlock()

	done := make(chan struct{})
	go func() {
		s.wg.Wait()
		close(done)
	}()
	defer s.budget.stop()
	select {
	case <-done:
		s.cancelBase()
		return nil
	case <-ctx.Done():
	}
	s.cancelBase()
	s.mu.Lock()
	for c := range s.conns {
		c.nc.Close()
	}
	s.mu.Unlock()
	<-done
	return ctx.Err()
}

func (s *Server) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

func (s *Server) isDraining() bool {
	select {
	case <-s.draining:
		return true
	default:
		return false
	}
}

func (s *Server) startConn(nc net.Conn, l *listener) {
	ip := clientIP(nc.RemoteAddr())
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		nc.Close()
		return
	}
	if max := s.cfg.MaxConnections; max > 0 && len(s.conns) >= max {
		s.mu.Unlock()
		s.reject(nc, &s.rejectedTotal, "max_connections", max,
			"too many connections (max-connections)")
		return
	}
	if max := s.cfg.MaxConnectionsPerIP; max > 0 && s.perIP[ip] >= max {
		s.mu.Unlock()
		s.reject(nc, &s.rejectedPerIP, "max_connections_per_ip", max,
			"too many connections from this IP address (max-connections-per-ip)")
		return
	}
	s.perIP[ip]++
	ctx, cancel := context.WithCancel(s.baseCtx)
	c := &conn{
		s:      s,
		lst:    l,
		nc:     nc,
		raw:    socketOf(nc),
		remote: nc.RemoteAddr().String(),
		ip:     ip,
		host:   "/" + ip,
		// principal: anonymous until TLS or SASL says otherwise.
		principal: anonymousPrincipal,
		ctx:       ctx,
		cancel:    cancel,
		slots:     make(chan *slot, maxPipelined),
	}
	if l.tls != nil {
		// The handshake runs on the connection's goroutine (serve).
		// raw stays the TCP socket's: what has arrived there is
		// ciphertext, a little more than the plaintext it carries.
		c.coalesce = &coalescingConn{Conn: nc}
		c.nc = tls.Server(c.coalesce, s.tlsConfigFor(l, c))
	}
	c.br = bufio.NewReaderSize(c.nc, readBufferSize)
	c.log = s.log.With().Str("remote", c.remote).Logger()
	s.conns[c] = struct{}{}
	s.wg.Add(1)
	s.mu.Unlock()
	s.cfg.Metrics.connOpened()

	go c.serve()
}

// reject closes a connection over a connection limit at once, as Kafka
// does, counting it under reason and logging it (at most once a second per
// limit, with the number left unlogged).
func (s *Server) reject(nc net.Conn, lim *logLimiter, reason string, limit int, msg string) {
	remote := nc.RemoteAddr().String()
	nc.Close()
	s.cfg.Metrics.connRejected(reason)
	if unlogged, ok := lim.allow(time.Now()); ok {
		s.log.Warn().Str("remote", remote).Int("limit", limit).Int("unlogged_since_last", unlogged).
			Msg("connection rejected: " + msg)
	}
}

// logLimiter lets one log line through per second and counts the rest.
type logLimiter struct {
	mu      sync.Mutex
	last    time.Time
	dropped int
}

// allow reports whether to log now and how many lines were dropped since
// the last one logged.
func (l *logLimiter) allow(now time.Time) (dropped int, ok bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.last.IsZero() && now.Sub(l.last) < time.Second {
		l.dropped++
		return 0, false
	}
	dropped, l.last, l.dropped = l.dropped, now, 0
	return dropped, true
}

// conn is one client connection: one goroutine reads and dispatches
// requests, handlers run per their api.schedule, and one goroutine writes
// responses strictly in request order.
type conn struct {
	s   *Server
	lst *listener // the listener the connection came in on
	nc  net.Conn  // a *tls.Conn on TLS listeners
	// coalesce, on TLS listeners, is the socket under nc: the writer
	// gathers each response's TLS records there (tls_coalesce.go).
	coalesce *coalescingConn
	raw      syscall.RawConn // nc's socket, to see how much has arrived; nil if none
	br       *bufio.Reader
	remote   string
	ip       string // the client's IP address (connection limits)
	host     string // "/" + the client's IP, for group member descriptions
	// principal is who the connection authenticated as (Kafka's
	// "User:name"), anonymousPrincipal until it does. Written only by the
	// reader goroutine, which also copies it into each request it reads.
	principal string
	// nodeID is the node of this cluster whose certificate the TLS
	// handshake verified (principal "Node:<id>"), 0 if none. Written by
	// the handshake, on the reader goroutine.
	nodeID uint64
	log    zerolog.Logger
	// sasl is the connection's SASL state (sasl.go); reader only.
	sasl saslState

	// hold is this connection's account in the server's byte budget: the
	// body being read and the requests read but not yet handled.
	hold budgetHolder
	// frameSize is the size announced by the frame being read, 0 between
	// frames; bodyRead is how much of its body has arrived. Written only
	// by the reader; read by tests and for diagnostics.
	frameSize atomic.Int32
	bodyRead  atomic.Int64
	// drainBy is when a frame interrupted by Shutdown must be read by;
	// zero until the reader notices the server draining. Reader only.
	drainBy time.Time

	// ctx is cancelled when the connection is dead (read or write failed)
	// or Shutdown gives up waiting; handlers pass it to the broker.
	ctx    context.Context
	cancel context.CancelFunc

	// slots holds one entry per request read, in request order. The
	// writer takes them in order and waits for each to be done.
	slots chan *slot
	// pending counts requests read whose slot the writer has not finished.
	pending atomic.Int32

	// produces counts produce handlers still running; inOrder requests
	// wait for it to reach zero.
	produces sync.WaitGroup
	// partitionTail holds, per partition, the channel closed when the
	// latest produce read from this connection is done with it.
	partitionTail map[partitionKey]chan struct{}
}

// slot is one request's place in the connection's response order.
type slot struct {
	done  chan struct{} // closed when frame and closeReason are set
	frame *[]byte       // the encoded response, size prefix included; nil: none
	// bufs, if not nil, is what to write instead of frame: pieces of
	// frame and buffers it does not copy (Fetch records).
	bufs net.Buffers
	// closeReason, if set, closes the connection after this slot (acks=0
	// produce that failed, as Kafka does, so the client notices).
	closeReason string
}

func (c *conn) serve() {
	defer func() {
		c.s.mu.Lock()
		delete(c.s.conns, c)
		if c.s.perIP[c.ip]--; c.s.perIP[c.ip] <= 0 {
			delete(c.s.perIP, c.ip)
		}
		c.s.mu.Unlock()
		c.s.cfg.Metrics.connClosed()
		c.s.wg.Done()
	}()

	if reason, err := c.handshakeTLS(); reason != "" {
		c.log.Info().Err(err).Str("listener", c.lst.name).Msg("closing connection: " + reason)
		c.cancel()
		c.nc.Close()
		return
	}

	writerDone := make(chan struct{})
	go func() {
		defer close(writerDone)
		c.writeLoop()
	}()

	reason, err := c.readLoop()
	close(c.slots)
	if !c.s.isDraining() {
		// The client is gone (or broke the protocol): nobody will read
		// the answers to requests still in flight.
		c.cancel()
	}
	ev := c.log.Debug()
	if err != nil && reason != "" {
		ev = c.log.Warn()
	}
	if reason == "" {
		reason = "client closed the connection"
	}
	ev.Err(err).Msg("closing connection: " + reason)
	<-writerDone
	c.cancel()
	c.nc.Close()
}

// readLoop reads frames until the connection ends. It returns why: an
// empty reason for a normal close by the client, otherwise a message for
// the log (with err non-nil for protocol violations worth a warning).
//
// Admission: nothing is reserved for a frame until its bytes arrive (a
// size prefix alone takes no memory); the body's buffer grows with what
// has arrived, each step taking its room in the server's byte budget
// (readBody). A frame must be complete within RequestReadTimeout of its
// first byte.
func (c *conn) readLoop() (reason string, err error) {
	maxBytes := c.s.cfg.MaxRequestBytes
	for {
		if reason, err := c.awaitFrame(); reason != "" || err != nil {
			return reason, err
		}
		// The frame's first byte is here: its clock starts.
		fr := frameClock{deadline: time.Now().Add(c.s.cfg.RequestReadTimeout)}
		size, reason, err := c.readSize(&fr)
		if reason != "" || err != nil {
			return reason, err
		}
		if c.sasl.rawTokens {
			// SaslHandshake v0: SASL tokens, no Kafka header.
			if reason, err := c.rawSASLFrame(size, &fr); reason != "" || err != nil {
				return reason, err
			}
			continue
		}
		if limit := c.unauthenticatedLimit(); limit > 0 && size > limit {
			return "frame larger than allowed before SASL authentication",
				fmt.Errorf("frame of %d bytes before authentication, at most %d", size, limit)
		}
		if size < minRequestHeaderBytes {
			return "truncated frame", errors.New("frame shorter than a request header")
		}
		if size > maxBytes {
			return "frame larger than max request bytes", errFrameTooLarge(size, maxBytes)
		}
		body, reason, err := c.readBody(size, &fr)
		if reason != "" || err != nil {
			return reason, err
		}
		c.s.cfg.Metrics.bytesIn(4 + int(size))
		r, err := c.s.decodeRequest(body)
		if err != nil {
			c.s.budget.release(&c.hold, int64(cap(body)))
			return "undecodable request", err
		}
		r.budgetBytes = int64(cap(body)) // released when its handler is done
		if reason, err := c.gate(r); reason != "" {
			c.s.budget.release(&c.hold, r.budgetBytes)
			return reason, err
		}
		c.dispatch(r)
		if reason := c.sasl.closeReason; reason != "" {
			// The answer is queued; the writer sends it, then closes.
			return reason, c.sasl.closeErr
		}
	}
}

// awaitFrame waits for the first byte of the next frame, enforcing the idle
// timeout (not while a long poll of this connection is pending) and
// stopping at the frame boundary when the server drains.
func (c *conn) awaitFrame() (reason string, err error) {
	for {
		if c.br.Buffered() > 0 {
			return "", nil
		}
		if c.s.isDraining() {
			return "server shutting down", nil
		}
		c.nc.SetReadDeadline(time.Now().Add(c.s.cfg.IdleTimeout))
		if c.s.isDraining() {
			// Shutdown's wake-up may have come before our deadline.
			continue
		}
		_, err := c.br.Peek(1)
		switch {
		case err == nil:
			return "", nil
		case isTimeout(err) && (c.s.isDraining() || c.pending.Load() > 0):
			// Draining: the loop stops. Pending: not idle, waiting on
			// our own answers (a long poll).
			continue
		case isTimeout(err):
			return "idle timeout", nil
		case errors.Is(err, io.EOF):
			return "client closed the connection", nil
		}
		return "read failed", err
	}
}

// frameClock is the deadline of the frame being read.
type frameClock struct {
	deadline time.Time
}

// errRequestReadTimeout closes a connection whose frame took too long.
var errRequestReadTimeout = errors.New("request frame not complete within the request read timeout")

// setFrameDeadline sets the read deadline for the frame in progress: its
// own, or, once the server drains, the end of the drain grace if earlier.
func (c *conn) setFrameDeadline(fr *frameClock) {
	c.nc.SetReadDeadline(c.frameDeadline(fr))
	if c.drainBy.IsZero() && c.s.isDraining() {
		// Shutdown's wake-up may have come before our deadline.
		c.nc.SetReadDeadline(c.frameDeadline(fr))
	}
}

func (c *conn) frameDeadline(fr *frameClock) time.Time {
	if c.drainBy.IsZero() {
		if !c.s.isDraining() {
			return fr.deadline
		}
		c.drainBy = time.Now().Add(drainGrace)
	}
	if c.drainBy.Before(fr.deadline) {
		return c.drainBy
	}
	return fr.deadline
}

// frameTimedOut handles a read of the frame in progress that timed out:
// if the frame is out of time it returns why (the connection closes);
// otherwise (Shutdown woke the reader) it re-arms the deadline.
func (c *conn) frameTimedOut(fr *frameClock) (reason string, err error) {
	d := c.frameDeadline(fr)
	if time.Now().Before(d) {
		c.setFrameDeadline(fr)
		return "", nil
	}
	if d.Equal(fr.deadline) {
		c.s.cfg.Metrics.requestReadTimeout()
		where := "in its size prefix"
		if size := c.frameSize.Load(); size > 0 {
			where = fmt.Sprintf("%d of %d body bytes read", c.bodyRead.Load(), size)
		}
		return "request read timeout", fmt.Errorf("%w (%v, request-read-timeout): %s",
			errRequestReadTimeout, c.s.cfg.RequestReadTimeout, where)
	}
	return "server shutting down", errors.New("frame not complete within the shutdown grace period")
}

// readSize reads the frame's 4-byte size prefix.
func (c *conn) readSize(fr *frameClock) (size int32, reason string, err error) {
	c.setFrameDeadline(fr)
	for {
		p, err := c.br.Peek(4)
		if err == nil {
			size = int32(binary.BigEndian.Uint32(p))
			c.br.Discard(4)
			c.bodyRead.Store(0)
			c.frameSize.Store(size)
			return size, "", nil
		}
		if isTimeout(err) {
			if reason, err := c.frameTimedOut(fr); reason != "" {
				return 0, reason, err
			}
			continue
		}
		if errors.Is(err, io.EOF) {
			return 0, "truncated frame", io.ErrUnexpectedEOF
		}
		return 0, "read failed", err
	}
}

// readBody reads a body of size bytes into a buffer that grows as bytes
// arrive: room is taken in the byte budget only once the next byte is
// there, and never for more than twice what has arrived (or
// firstBodyChunk). The returned body's capacity is what this connection
// now holds of the budget for it. Time spent waiting for budget is added
// to the frame's deadline: the client is not at fault for it.
func (c *conn) readBody(size int32, fr *frameClock) (body []byte, reason string, err error) {
	defer c.frameSize.Store(0)
	fail := func(reason string, err error) ([]byte, string, error) {
		c.s.budget.release(&c.hold, int64(cap(body)))
		return nil, reason, err
	}
	for len(body) < int(size) {
		if len(body) == cap(body) {
			if reason, err := c.awaitBody(fr); reason != "" {
				return fail(reason, err)
			}
			to := nextBodyCap(cap(body), int(size), c.arrived(int(size)-len(body)))
			start := time.Now()
			if err := c.s.budget.grow(c.ctx, &c.hold, int64(cap(body)), int64(to)); err != nil {
				// Shutdown's grace is over or it gave up waiting, or
				// the connection broke.
				return fail("cancelled while waiting for request budget", nil)
			}
			if waited := time.Since(start); waited > time.Millisecond {
				fr.deadline = fr.deadline.Add(waited)
				c.setFrameDeadline(fr)
			}
			grown := make([]byte, len(body), to)
			copy(grown, body)
			body = grown
		}
		n, err := c.br.Read(body[len(body):cap(body)])
		body = body[:len(body)+n]
		c.bodyRead.Store(int64(len(body)))
		switch {
		case n > 0 || err == nil:
			// An error with data comes back on the next read.
		case isTimeout(err):
			if reason, err := c.frameTimedOut(fr); reason != "" {
				return fail(reason, err)
			}
		case errors.Is(err, io.EOF):
			return fail("truncated frame", io.ErrUnexpectedEOF)
		default:
			return fail("read failed", err)
		}
	}
	return body, "", nil
}

// awaitBody waits until at least one more byte of the frame is buffered.
func (c *conn) awaitBody(fr *frameClock) (reason string, err error) {
	for {
		_, err := c.br.Peek(1)
		switch {
		case err == nil:
			return "", nil
		case isTimeout(err):
			if reason, err := c.frameTimedOut(fr); reason != "" {
				return reason, err
			}
		case errors.Is(err, io.EOF):
			return "truncated frame", io.ErrUnexpectedEOF
		default:
			return "read failed", err
		}
	}
}

// arrived is how many more body bytes have arrived and wait to be read:
// buffered, and (if that is not all of the rest bytes still to come) in
// the kernel's socket queue.
func (c *conn) arrived(rest int) int {
	n := c.br.Buffered()
	if n < rest {
		n += socketQueued(c.raw)
	}
	return n
}

// nextBodyCap is the next capacity of a full body buffer of capacity cur,
// for a body of size bytes of which arrived more bytes wait to be read:
// room for all of those, at least twice cur (firstBodyChunk to begin
// with), never more than size. So a body that is all here gets its buffer
// at once, and one that trickles in holds at most twice what it has read.
func nextBodyCap(cur, size, arrived int) int {
	if cur == 0 {
		return min(size, max(arrived, firstBodyChunk))
	}
	return min(size, max(2*cur, cur+arrived))
}

// socketOf returns nc's socket for socketQueued, or nil.
func socketOf(nc net.Conn) syscall.RawConn {
	sc, ok := nc.(syscall.Conn)
	if !ok {
		return nil
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	return raw
}

func isTimeout(err error) bool {
	return errors.Is(err, os.ErrDeadlineExceeded)
}

// dispatch queues r's slot in response order and starts its handler per
// its schedule. It blocks while maxPipelined responses are pending.
func (c *conn) dispatch(r *request) {
	sl := &slot{done: make(chan struct{})}
	c.pending.Add(1)
	c.slots <- sl

	r.clientHost = c.host
	if c.s.testPrincipal != nil {
		c.principal = c.s.testPrincipal(r.clientID)
	}
	r.principal = c.principal
	r.listener = c.lst.name
	r.conn = c
	r.clientIP = c.ip
	sched := inOrder
	if !r.unsupported {
		sched = r.api.schedule
	}
	switch sched {
	case concurrentProduce:
		r.order = c.chainPartitions(r)
		c.produces.Add(1)
		go func() {
			defer c.produces.Done()
			c.run(r, sl)
		}()
	case concurrentFetch, concurrentGroup:
		go c.run(r, sl)
	default:
		c.produces.Wait()
		c.run(r, sl)
	}
}

// clientIP is the client's IP address, the key of the per-IP connection
// limit; "/" and it is how Kafka names a client host.
func clientIP(addr net.Addr) string {
	if tcp, ok := addr.(*net.TCPAddr); ok {
		return tcp.IP.String()
	}
	host, _, err := net.SplitHostPort(addr.String())
	if err != nil {
		return addr.String()
	}
	return host
}

// untilDraining is ctx, also cancelled when the server starts draining: a
// request that waits on other clients (JoinGroup, SyncGroup) must not hold
// up Shutdown.
func (s *Server) untilDraining(ctx context.Context) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(ctx)
	go func() {
		select {
		case <-s.draining:
			cancel()
		case <-ctx.Done():
		}
	}()
	return ctx, cancel
}

func (c *conn) run(r *request, sl *slot) {
	defer close(sl.done)
	defer func() {
		// Drop the request's references to its body before giving its
		// bytes back: the budget counts them until a collection that
		// starts after this can free them.
		n := r.budgetBytes
		r.kreq, r.budgetBytes = nil, 0
		c.s.budget.release(&c.hold, n)
	}()
	if m := c.s.cfg.Metrics; m != nil {
		start := time.Now()
		defer func() { m.request(r.key, time.Since(start)) }()
	}
	sl.frame, sl.bufs, sl.closeReason = c.s.handleVec(c.ctx, r, &c.log)
}

// writeLoop writes responses in request order, one Write (a writev for a
// Fetch response with records) per response.
// After a failed write it keeps draining slots (so handlers are waited
// for) without writing.
func (c *conn) writeLoop() {
	dead := false
	for sl := range c.slots {
		<-sl.done
		if sl.frame != nil {
			if !dead {
				c.nc.SetWriteDeadline(time.Now().Add(c.s.cfg.IdleTimeout))
				var (
					n   int64
					err error
				)
				if c.coalesce != nil {
					c.coalesce.begin()
				}
				if sl.bufs != nil {
					n, err = sl.bufs.WriteTo(c.nc) // one writev on TCP
				} else {
					var m int
					m, err = c.nc.Write(*sl.frame)
					n = int64(m)
				}
				if c.coalesce != nil {
					if ferr := c.coalesce.end(); err == nil {
						err = ferr
					}
				}
				c.s.cfg.Metrics.bytesOut(int(n))
				if err != nil {
					dead = true
					c.log.Debug().Err(err).Msg("write failed")
					c.cancel()
					c.nc.Close()
				}
			}
			putBuffer(sl.frame)
			sl.bufs = nil
		}
		if sl.closeReason != "" && !dead {
			dead = true
			c.log.Debug().Msg("closing connection: " + sl.closeReason)
			c.cancel()
			c.nc.Close()
		}
		c.pending.Add(-1)
	}
}
