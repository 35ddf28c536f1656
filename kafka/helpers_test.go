package kafka

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/chronik-stream/chronik/broker"
)

// testEnv is a real broker on a temp dir served on a real 127.0.0.1
// listener.
type testEnv struct {
	t      testing.TB
	dir    string
	bcfg   broker.Config
	kcfg   Config
	b      *broker.Broker
	srv    *Server
	addr   string
	served chan error
	logs   *syncBuffer
	wrap   func(net.Listener) net.Listener // optional, e.g. to record traffic
	listen string                          // address to listen on; default 127.0.0.1:0
	// lcfg, if set, is the listener's configuration (ServeListener).
	lcfg *ListenerConfig
	// principalOf, if set, names each connection's principal from its
	// client id (Server.testPrincipal).
	principalOf func(clientID string) string
}

type envOpt func(*testEnv)

func withAutoCreate() envOpt { return func(e *testEnv) { e.bcfg.AutoCreateTopics = true } }

func withMaxRequestBytes(n int32) envOpt { return func(e *testEnv) { e.kcfg.MaxRequestBytes = n } }

func withIdleTimeout(d time.Duration) envOpt { return func(e *testEnv) { e.kcfg.IdleTimeout = d } }

func withListener(wrap func(net.Listener) net.Listener) envOpt {
	return func(e *testEnv) { e.wrap = wrap }
}

func startEnv(t testing.TB, opts ...envOpt) *testEnv {
	t.Helper()
	e := &testEnv{t: t, dir: t.TempDir(), logs: &syncBuffer{}}
	// Groups form after 100ms instead of Kafka's 3s initial rebalance
	// delay: tests join their members at once anyway.
	e.bcfg = broker.Config{DataDir: e.dir, AdvertisedHost: "127.0.0.1", GroupInitialRebalanceDelay: 100 * time.Millisecond}
	for _, o := range opts {
		o(e)
	}
	e.start()
	t.Cleanup(e.stop)
	return e
}

func (e *testEnv) start() {
	e.t.Helper()
	addr := e.listen
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		e.t.Fatal(err)
	}
	logger := zerolog.New(e.logs).With().Timestamp().Logger()
	bcfg := e.bcfg
	bcfg.AdvertisedPort = int32(ln.Addr().(*net.TCPAddr).Port)
	bcfg.Logger = logger.With().Str("component", "broker").Logger()
	b, err := broker.Open(bcfg)
	if err != nil {
		ln.Close()
		e.t.Fatalf("open broker: %v", err)
	}
	kcfg := e.kcfg
	kcfg.Logger = logger.With().Str("component", "kafka").Logger()
	e.b, e.srv, e.addr = b, New(kcfg, b), ln.Addr().String()
	e.srv.testPrincipal = e.principalOf
	e.served = make(chan error, 1)
	if e.wrap != nil {
		ln = e.wrap(ln)
	}
	if e.lcfg != nil {
		lc := *e.lcfg
		go func() { e.served <- e.srv.ServeListener(ln, lc) }()
		return
	}
	go func() { e.served <- e.srv.Serve(ln) }()
}

// stop shuts the server down and closes the broker; it checks that Serve
// returned nil, as the contract says.
func (e *testEnv) stop() {
	if e.srv == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := e.srv.Shutdown(ctx); err != nil {
		e.t.Errorf("shutdown: %v", err)
	}
	if err := <-e.served; err != nil {
		e.t.Errorf("serve returned %v after shutdown", err)
	}
	if err := e.b.Close(); err != nil {
		e.t.Errorf("close broker: %v", err)
	}
	e.srv = nil
}

// restart is a clean server restart on the same data directory.
func (e *testEnv) restart() {
	e.t.Helper()
	e.stop()
	e.start()
}

func (e *testEnv) client(opts ...kgo.Opt) *kgo.Client {
	e.t.Helper()
	opts = append([]kgo.Opt{kgo.SeedBrokers(e.addr), kgo.RetryTimeout(30 * time.Second)}, opts...)
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(cl.Close)
	return cl
}

func (e *testEnv) admin() *kadm.Client { return kadm.NewClient(e.client()) }

func (e *testEnv) createTopic(name string, partitions int32, configs map[string]*string) broker.TopicInfo {
	e.t.Helper()
	info, err := e.b.CreateTopic(name, partitions, -1, configs, false)
	if err != nil {
		e.t.Fatalf("create topic %s: %v", name, err)
	}
	return info
}

// rawConn speaks the protocol by hand: kmsg requests at chosen versions.
type rawConn struct {
	t    testing.TB
	c    net.Conn
	corr int32
	fmtr *kmsg.RequestFormatter
}

func (e *testEnv) dial() *rawConn {
	e.t.Helper()
	c, err := net.Dial("tcp", e.addr)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { c.Close() })
	return &rawConn{t: e.t, c: c, fmtr: kmsg.NewRequestFormatter(kmsg.FormatterClientID("chronik-test"))}
}

// send writes req (at its set version) and returns its correlation id.
func (rc *rawConn) send(req kmsg.Request) int32 {
	rc.t.Helper()
	rc.corr++
	rc.write(rc.fmtr.AppendRequest(nil, req, rc.corr))
	return rc.corr
}

func (rc *rawConn) write(b []byte) {
	rc.t.Helper()
	rc.c.SetWriteDeadline(time.Now().Add(30 * time.Second))
	if _, err := rc.c.Write(b); err != nil {
		rc.t.Fatalf("write: %v", err)
	}
}

// readFrame returns the next response frame body (after the size).
func (rc *rawConn) readFrame() ([]byte, error) {
	rc.c.SetReadDeadline(time.Now().Add(60 * time.Second))
	var size [4]byte
	if _, err := io.ReadFull(rc.c, size[:]); err != nil {
		return nil, err
	}
	body := make([]byte, binary.BigEndian.Uint32(size[:]))
	_, err := io.ReadFull(rc.c, body)
	return body, err
}

// read reads the response to a request sent as req with correlation id
// corr and decodes it.
func (rc *rawConn) read(req kmsg.Request, corr int32) kmsg.Response {
	rc.t.Helper()
	body, err := rc.readFrame()
	if err != nil {
		rc.t.Fatalf("%s v%d: read response: %v", kmsg.NameForKey(req.Key()), req.GetVersion(), err)
	}
	return rc.decode(req, corr, body)
}

func (rc *rawConn) decode(req kmsg.Request, corr int32, body []byte) kmsg.Response {
	rc.t.Helper()
	if got := int32(binary.BigEndian.Uint32(body)); got != corr {
		rc.t.Fatalf("%s v%d: correlation id %d, want %d", kmsg.NameForKey(req.Key()), req.GetVersion(), got, corr)
	}
	body = body[4:]
	resp := req.ResponseKind()
	if resp.IsFlexible() && req.Key() != 18 {
		var err error
		if body, err = skipTaggedFields(body); err != nil {
			rc.t.Fatalf("response header tags: %v", err)
		}
	}
	if err := resp.ReadFrom(body); err != nil {
		rc.t.Fatalf("%s v%d: decode response: %v", kmsg.NameForKey(req.Key()), req.GetVersion(), err)
	}
	return resp
}

func (rc *rawConn) roundTrip(req kmsg.Request) kmsg.Response {
	rc.t.Helper()
	return rc.read(req, rc.send(req))
}

// expectClosed checks that the server closes the connection without
// sending anything more.
func (rc *rawConn) expectClosed() {
	rc.t.Helper()
	body, err := rc.readFrame()
	if err == nil {
		rc.t.Fatalf("expected the connection to be closed, got a %d byte frame", len(body))
	}
	if !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) && !isConnReset(err) {
		rc.t.Fatalf("expected the connection to be closed, got %v", err)
	}
}

func isConnReset(err error) bool {
	return err != nil && strings.Contains(err.Error(), "connection reset")
}

// syncBuffer collects log output from many goroutines.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// waitForLog waits (generously) until the server logs a line containing
// substr: connection closes are logged by the connection goroutine after
// the client may already have seen the close.
func (e *testEnv) waitForLog(substr string) {
	e.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(e.logs.String(), substr) {
		if time.Now().After(deadline) {
			e.t.Fatalf("no log line containing %q; logs:\n%s", substr, e.logs.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

var crc32c = crc32.MakeTable(crc32.Castagnoli)

// testRecord is one record for makeBatch.
type testRecord struct {
	key, value []byte
	headers    []kmsg.Header
	timestamp  int64 // delta from the batch's first timestamp
}

// batchOpts are the producer fields of a record batch.
type batchOpts struct {
	firstTimestamp int64
	producerID     int64
	producerEpoch  int16
	baseSequence   int32
}

// makeBatch encodes an uncompressed v2 record batch with a correct CRC.
func makeBatch(o batchOpts, recs ...testRecord) []byte {
	var records []byte
	maxTs := o.firstTimestamp
	for i, r := range recs {
		rec := kmsg.Record{
			TimestampDelta64: r.timestamp,
			OffsetDelta:      int32(i),
			Key:              r.key,
			Value:            r.value,
			Headers:          r.headers,
		}
		if maxTs < o.firstTimestamp+r.timestamp {
			maxTs = o.firstTimestamp + r.timestamp
		}
		records = appendRecord(records, rec)
	}
	b := kmsg.RecordBatch{
		FirstOffset:          0,
		PartitionLeaderEpoch: -1,
		Magic:                2,
		LastOffsetDelta:      int32(len(recs) - 1),
		FirstTimestamp:       o.firstTimestamp,
		MaxTimestamp:         maxTs,
		ProducerID:           o.producerID,
		ProducerEpoch:        o.producerEpoch,
		FirstSequence:        o.baseSequence,
		NumRecords:           int32(len(recs)),
		Records:              records,
	}
	raw := b.AppendTo(nil)
	binary.BigEndian.PutUint32(raw[8:], uint32(len(raw)-12))
	binary.BigEndian.PutUint32(raw[17:], crc32.Checksum(raw[21:], crc32c))
	return raw
}

// appendRecord appends rec with its correct length prefix.
func appendRecord(dst []byte, rec kmsg.Record) []byte {
	rec.Length = 0
	body := rec.AppendTo(nil)[1:] // drop the placeholder length (0: one varint byte)
	dst = binary.AppendVarint(dst, int64(len(body)))
	return append(dst, body...)
}

func plainBatch(n int, firstTs int64) []byte {
	recs := make([]testRecord, n)
	for i := range recs {
		recs[i] = testRecord{key: []byte(fmt.Sprintf("k%d", i)), value: []byte(fmt.Sprintf("value-%d", i)), timestamp: int64(i)}
	}
	return makeBatch(batchOpts{firstTimestamp: firstTs, producerID: -1, producerEpoch: -1, baseSequence: -1}, recs...)
}

// batchRecords decodes the records of an uncompressed batch.
func batchRecords(t testing.TB, b kmsg.RecordBatch) []kmsg.Record {
	t.Helper()
	var out []kmsg.Record
	raw := b.Records
	for len(raw) > 0 {
		l, n := binary.Varint(raw)
		if n <= 0 || int(l) > len(raw)-n {
			t.Fatalf("bad record length")
		}
		var r kmsg.Record
		if err := r.ReadFrom(raw[:n+int(l)]); err != nil {
			t.Fatalf("decode record: %v", err)
		}
		out = append(out, r)
		raw = raw[n+int(l):]
	}
	return out
}

// decodeBatches splits fetched record bytes into batches and their records.
func decodeBatches(t testing.TB, raw []byte) []kmsg.RecordBatch {
	t.Helper()
	var out []kmsg.RecordBatch
	for len(raw) > 0 {
		if len(raw) < 12 {
			t.Fatalf("trailing %d bytes after batches", len(raw))
		}
		size := 12 + int(binary.BigEndian.Uint32(raw[8:]))
		if size > len(raw) {
			t.Fatalf("partial batch: %d of %d bytes", len(raw), size)
		}
		var b kmsg.RecordBatch
		if err := b.ReadFrom(raw[:size]); err != nil {
			t.Fatalf("decode batch: %v", err)
		}
		if crc := crc32.Checksum(raw[21:size], crc32c); uint32(b.CRC) != crc {
			t.Fatalf("batch at offset %d: stored CRC %x, computed %x", b.FirstOffset, uint32(b.CRC), crc)
		}
		out = append(out, b)
		raw = raw[size:]
	}
	return out
}

func beUint32(b []byte) uint32 { return binary.BigEndian.Uint32(b) }
func beUint16(b []byte) uint16 { return binary.BigEndian.Uint16(b) }

// rawRequest builds a request frame by hand: header v1 with a null client
// id, then body.
func rawRequest(key, version int16, corr int32, body []byte) []byte {
	b := make([]byte, 4, 14+len(body))
	b = binary.BigEndian.AppendUint16(b, uint16(key))
	b = binary.BigEndian.AppendUint16(b, uint16(version))
	b = binary.BigEndian.AppendUint32(b, uint32(corr))
	b = binary.BigEndian.AppendUint16(b, 0xffff) // null client id
	b = append(b, body...)
	binary.BigEndian.PutUint32(b, uint32(len(b)-4))
	return b
}

// metadataRequest asks for the given topics (none: all) at v12.
func metadataRequest(topics ...string) *kmsg.MetadataRequest {
	req := kmsg.NewPtrMetadataRequest()
	req.SetVersion(12)
	if len(topics) == 0 {
		req.Topics = nil
	}
	for _, name := range topics {
		rt := kmsg.NewMetadataRequestTopic()
		rt.Topic = kmsg.StringPtr(name)
		req.Topics = append(req.Topics, rt)
	}
	return req
}

// checkAlive checks that rc still gets answers.
func checkAlive(t testing.TB, rc *rawConn) {
	t.Helper()
	resp := rc.roundTrip(metadataRequest()).(*kmsg.MetadataResponse)
	if len(resp.Brokers) != 1 {
		t.Fatalf("metadata after the bad request: %d brokers", len(resp.Brokers))
	}
}

// waitPending waits until some connection has a request in flight.
func (e *testEnv) waitPending() {
	e.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		e.srv.mu.Lock()
		n := int32(0)
		for c := range e.srv.conns {
			n += c.pending.Load()
		}
		e.srv.mu.Unlock()
		if n > 0 {
			return
		}
		if time.Now().After(deadline) {
			e.t.Fatal("no request in flight")
		}
		time.Sleep(time.Millisecond)
	}
}

// handle is handleVec with the response in one frame (a Fetch response's
// record pieces copied in), for tests that look at whole responses.
func (s *Server) handle(ctx context.Context, r *request, log *zerolog.Logger) (frame *[]byte, closeReason string) {
	frame, bufs, closeReason := s.handleVec(ctx, r, log)
	if bufs != nil {
		whole := getBuffer()
		for _, b := range bufs {
			*whole = append(*whole, b...)
		}
		putBuffer(frame)
		frame = whole
	}
	return frame, closeReason
}
