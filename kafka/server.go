package kafka

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/chronik-stream/chronik/broker"
)

const (
	defaultMaxRequestBytes = 100 << 20
	defaultIdleTimeout     = 10 * time.Minute

	// maxPipelined bounds the requests read from one connection whose
	// responses have not been written yet. When it is reached the reader
	// stops reading: backpressure instead of unbounded memory.
	maxPipelined = 64

	readBufferSize = 64 << 10

	// drainGrace is how long a reader interrupted by Shutdown in the middle
	// of a frame may take to finish reading it.
	drainGrace = 5 * time.Second

	// defaultMaxNewPartitions caps the partitions one CreateTopics or
	// CreatePartitions request may ask for (per topic), so that a single
	// request cannot make the broker create millions of logs.
	defaultMaxNewPartitions = 100_000
)

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
	wg        sync.WaitGroup // one count per live connection

	maxNewPartitions int32

	// budget bounds request bytes held across connections.
	budget *byteBudget

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
		maxNewPartitions: defaultMaxNewPartitions,
		budget:           newByteBudget(cfg.MaxInflightRequestBytes),
	}
}

// defaultMaxInflightRequestBytes is the default of
// Config.MaxInflightRequestBytes.
const defaultMaxInflightRequestBytes = 512 << 20

// Serve accepts connections on ln until Shutdown, then returns nil. It
// returns the listener's error if accepting fails for another reason.
func (s *Server) Serve(ln net.Listener) error {
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
		s.startConn(nc)
	}
}

// Shutdown stops accepting, stops reading new requests, lets in-flight
// requests finish and their responses be written, and closes every
// connection. If ctx ends first it closes the connections at once, cancels
// the requests still running, waits for them and returns ctx.Err().
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	if !s.closed {
		s.closed = true
		close(s.draining)
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

func (s *Server) startConn(nc net.Conn) {
	ctx, cancel := context.WithCancel(s.baseCtx)
	c := &conn{
		s:      s,
		nc:     nc,
		br:     bufio.NewReaderSize(nc, readBufferSize),
		remote: nc.RemoteAddr().String(),
		host:   clientHost(nc.RemoteAddr()),
		ctx:    ctx,
		cancel: cancel,
		slots:  make(chan *slot, maxPipelined),
	}
	c.log = s.log.With().Str("remote", c.remote).Logger()

	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		cancel()
		nc.Close()
		return
	}
	s.conns[c] = struct{}{}
	s.wg.Add(1)
	s.mu.Unlock()
	s.cfg.Metrics.connOpened()

	go c.serve()
}

// conn is one client connection: one goroutine reads and dispatches
// requests, handlers run per their api.schedule, and one goroutine writes
// responses strictly in request order.
type conn struct {
	s      *Server
	nc     net.Conn
	br     *bufio.Reader
	remote string
	host   string // "/" + the client's IP, for group member descriptions
	log    zerolog.Logger

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
		c.s.mu.Unlock()
		c.s.cfg.Metrics.connClosed()
		c.s.wg.Done()
	}()

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
func (c *conn) readLoop() (reason string, err error) {
	maxBytes := c.s.cfg.MaxRequestBytes
	for {
		size, reason, err := c.readSize()
		if reason != "" || err != nil {
			return reason, err
		}
		if size < minRequestHeaderBytes {
			return "truncated frame", errors.New("frame shorter than a request header")
		}
		if size > maxBytes {
			return "frame larger than max request bytes", errFrameTooLarge(size, maxBytes)
		}
		// Room in the server-wide budget first, then the allocation.
		if err := c.s.budget.acquire(c.ctx, int64(size)); err != nil {
			return "server shutting down", nil
		}
		body := make([]byte, size)
		if err := c.readFull(body); err != nil {
			c.s.budget.release(int64(size))
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
				return "truncated frame", err
			}
			return "read failed", err
		}
		c.s.cfg.Metrics.bytesIn(4 + int(size))
		r, err := c.s.decodeRequest(body)
		if err != nil {
			c.s.budget.release(int64(size))
			return "undecodable request", err
		}
		r.budgetBytes = int64(size) // released when its handler is done
		c.dispatch(r)
	}
}

// readSize waits for and reads the next frame's size prefix, enforcing the
// idle timeout and stopping at a frame boundary when the server drains.
func (c *conn) readSize() (size int32, reason string, err error) {
	idle := c.s.cfg.IdleTimeout
	for {
		if c.s.isDraining() && c.br.Buffered() == 0 {
			return 0, "server shutting down", nil
		}
		c.nc.SetReadDeadline(time.Now().Add(idle))
		p, err := c.br.Peek(4)
		if err == nil {
			c.br.Discard(4)
			return int32(binary.BigEndian.Uint32(p)), "", nil
		}
		if !isTimeout(err) {
			if errors.Is(err, io.EOF) && c.br.Buffered() == 0 {
				return 0, "client closed the connection", nil
			}
			if errors.Is(err, io.EOF) {
				return 0, "truncated frame", io.ErrUnexpectedEOF
			}
			return 0, "read failed", err
		}
		switch {
		case c.s.isDraining():
			if c.br.Buffered() == 0 {
				return 0, "server shutting down", nil
			}
			idle = drainGrace // finish the frame already started
		case c.pending.Load() > 0:
			// Not idle: waiting on our own answers (a long poll).
		default:
			return 0, "idle timeout", nil
		}
	}
}

// readFull fills body, extending the deadline only while the server drains
// (a frame already started is finished within drainGrace).
func (c *conn) readFull(body []byte) error {
	n := 0
	for n < len(body) {
		m, err := c.br.Read(body[n:])
		n += m
		if err == nil {
			continue
		}
		if isTimeout(err) && c.s.isDraining() {
			c.nc.SetReadDeadline(time.Now().Add(drainGrace))
			continue
		}
		if errors.Is(err, io.EOF) && n < len(body) {
			return io.ErrUnexpectedEOF
		}
		return err
	}
	return nil
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

// clientHost is how Kafka names a client host: "/" and the IP address.
func clientHost(addr net.Addr) string {
	if tcp, ok := addr.(*net.TCPAddr); ok {
		return "/" + tcp.IP.String()
	}
	host, _, err := net.SplitHostPort(addr.String())
	if err != nil {
		return "/" + addr.String()
	}
	return "/" + host
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
	defer c.s.budget.release(r.budgetBytes)
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
				if sl.bufs != nil {
					n, err = sl.bufs.WriteTo(c.nc) // one writev on TCP
				} else {
					var m int
					m, err = c.nc.Write(*sl.frame)
					n = int64(m)
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

// partitionKey names a partition by topic name, or by topic ID for
// requests that carry IDs.
type partitionKey struct {
	topic     string
	topicID   [16]byte
	partition int32
}

// partitionOrder is a produce request's place in its connection's
// per-partition chains: the i-th partition of the request (in request
// order, topics flattened) may append once wait[i] is closed (nil: at
// once) and closes done[i] when it has.
type partitionOrder struct {
	wait []chan struct{}
	mu   sync.Mutex
	done []chan struct{} // set to nil once closed
}

// release closes every done channel not yet closed. Handlers defer it so
// that a panic or an early return can never stall later produces.
func (o *partitionOrder) release() {
	if o == nil {
		return
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	for i, d := range o.done {
		if d != nil {
			close(d)
			o.done[i] = nil
		}
	}
}

// finish marks partition i of the request done.
func (o *partitionOrder) finish(i int) {
	if o == nil {
		return
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.done[i] == nil {
		return
	}
	close(o.done[i])
	o.done[i] = nil
}

// await blocks until partition i may append, or ctx ends.
func (o *partitionOrder) await(ctx context.Context, i int) error {
	if o == nil || o.wait[i] == nil {
		return nil
	}
	select {
	case <-o.wait[i]:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// chainPartitions runs on the read goroutine, in request order.
func (c *conn) chainPartitions(r *request) *partitionOrder {
	keys := producePartitionKeys(r)
	if len(keys) == 0 {
		return nil
	}
	if c.partitionTail == nil {
		c.partitionTail = make(map[partitionKey]chan struct{})
	}
	if len(c.partitionTail) > 4096 {
		c.pruneTails()
	}
	o := &partitionOrder{
		wait: make([]chan struct{}, len(keys)),
		done: make([]chan struct{}, len(keys)),
	}
	for i, k := range keys {
		d := make(chan struct{})
		o.wait[i] = c.partitionTail[k]
		o.done[i] = d
		c.partitionTail[k] = d
	}
	return o
}

// pruneTails forgets partitions whose latest produce has finished.
func (c *conn) pruneTails() {
	for k, d := range c.partitionTail {
		select {
		case <-d:
			delete(c.partitionTail, k)
		default:
		}
	}
}
