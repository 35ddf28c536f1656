package kafka

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"os"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

func withInflightRequestBytes(n int64) envOpt {
	return func(e *testEnv) { e.kcfg.MaxInflightRequestBytes = n }
}

// sendPrefix opens a raw connection that sends only the 4-byte size prefix
// of a frame of size bytes and nothing more.
func (e *testEnv) sendPrefix(size uint32) net.Conn {
	e.t.Helper()
	c, err := net.Dial("tcp", e.addr)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { c.Close() })
	c.SetWriteDeadline(time.Now().Add(30 * time.Second))
	if _, err := c.Write(binary.BigEndian.AppendUint32(nil, size)); err != nil {
		e.t.Fatalf("write prefix: %v", err)
	}
	return c
}

// waitConns waits (bounded) until the server has registered n connections.
func (e *testEnv) waitConns(n int) {
	e.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		e.srv.mu.Lock()
		got := len(e.srv.conns)
		e.srv.mu.Unlock()
		if got >= n {
			return
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("%d connections registered, want %d", got, n)
		}
		time.Sleep(time.Millisecond)
	}
}

// The hostile-user test of issue 11, scaled down: six connections announce
// frames that together are the whole in-flight budget (five of the largest
// request, one of the rest) and send nothing more. A kgo client must still
// produce and consume: each operation ends within a generous bound (hitting
// it fails the test) instead of hanging until the idle timeout, as it did
// when readers reserved the declared size up front.
func TestAnnouncedFramesDoNotBlockOthers(t *testing.T) {
	const maxReq = 3 << 20
	const budget = 16 << 20
	e := startEnv(t, withMaxRequestBytes(maxReq), withInflightRequestBytes(budget))
	e.createTopic("live", 1, nil)
	for i := 0; i < 5; i++ {
		e.sendPrefix(maxReq)
	}
	e.sendPrefix(budget - 5*maxReq)
	e.waitConns(6)

	produceConsume(t, e, "live", 10)
}

func withRequestReadTimeout(d time.Duration) envOpt {
	return func(e *testEnv) { e.kcfg.RequestReadTimeout = d }
}

func withMaxConnections(total, perIP int) envOpt {
	return func(e *testEnv) { e.kcfg.MaxConnections, e.kcfg.MaxConnectionsPerIP = total, perIP }
}

func withMetrics() envOpt {
	return func(e *testEnv) { e.kcfg.Metrics = NewMetrics(prometheus.NewRegistry()) }
}

// onlyConn returns the server's one connection, waiting (bounded) for it.
func (e *testEnv) onlyConn() *conn {
	e.t.Helper()
	e.waitConns(1)
	e.srv.mu.Lock()
	defer e.srv.mu.Unlock()
	if len(e.srv.conns) != 1 {
		e.t.Fatalf("%d connections, want 1", len(e.srv.conns))
	}
	for c := range e.srv.conns {
		return c
	}
	return nil
}

// waitFor polls cond (bounded) and fails with what if it never holds.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting: %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// A frame's body takes budget as it arrives: its size prefix alone takes
// nothing, part of it at most twice what was sent (or the first chunk),
// and all of it is given back once the request is handled.
func TestBodyReservedAsItArrives(t *testing.T) {
	e := startEnv(t, withMaxRequestBytes(8*mib), withInflightRequestBytes(64*mib))
	e.createTopic("arrive", 1, nil)
	rc := e.dial()
	batch := makeBatch(batchOpts{producerID: -1, producerEpoch: -1, baseSequence: -1},
		testRecord{value: bytes.Repeat([]byte("v"), 900<<10)})
	frame := rc.fmtr.AppendRequest(nil, produceRequest("arrive", 0, batch), 1)
	body := len(frame) - 4
	c := e.onlyConn()

	rc.write(frame[:4])
	waitFor(t, "the server reads the size prefix", func() bool { return c.frameSize.Load() == int32(body) })
	if held := e.srv.budget.inUse(); held != 0 {
		t.Fatalf("a size prefix of %d bytes holds %d budget bytes, want 0", body, held)
	}

	const part = 100 << 10
	rc.write(frame[4 : 4+part])
	waitFor(t, "the server reads the first part", func() bool { return c.bodyRead.Load() == part })
	if held := e.srv.budget.inUse(); held < part || held > max(2*part, firstBodyChunk) {
		t.Fatalf("%d of %d body bytes sent hold %d budget bytes, want %d to %d", part, body, held, part, 2*part)
	}

	rc.write(frame[4+part:])
	resp := rc.read(produceRequest("arrive", 0, batch), 1)
	if p := producePartitionResponse(t, resp); p.ErrorCode != 0 || p.BaseOffset != 0 {
		t.Fatalf("produce answered %v at offset %d", kerr.ErrorForCode(p.ErrorCode), p.BaseOffset)
	}
	waitFor(t, "the request's bytes to be given back", func() bool { return e.srv.budget.inUse() == 0 })
}

// A frame not complete within the request read timeout of its first byte
// closes its connection, whether it stopped in the body or in the size
// prefix; an idle connection is not in a frame and stays.
func TestHalfSentFrameIsClosed(t *testing.T) {
	e := startEnv(t, withRequestReadTimeout(300*time.Millisecond), withMetrics())
	idle := e.dial()
	checkAlive(t, idle)

	half := e.dial()
	frame := half.fmtr.AppendRequest(nil, metadataRequest(), 1)
	half.write(frame[:len(frame)-3])
	half.expectClosed()

	prefix := e.dial()
	prefix.write([]byte{0, 0})
	prefix.expectClosed()

	e.waitForLog("closing connection: request read timeout")
	e.waitForLog("not complete within the request read timeout (300ms, request-read-timeout): in its size prefix")
	e.waitForLog(fmt.Sprintf("(300ms, request-read-timeout): %d of %d body bytes read", len(frame)-7, len(frame)-4))
	waitFor(t, "both timeouts counted", func() bool { return testutil.ToFloat64(e.kcfg.Metrics.ReadTimeouts) == 2 })
	checkAlive(t, idle) // idle longer than the read timeout, but not in a frame
	if e.srv.budget.inUse() != 0 {
		t.Fatalf("%d budget bytes held after the half-sent frames were dropped", e.srv.budget.inUse())
	}
}

// dialFrom connects to the server from a chosen loopback address.
func (e *testEnv) dialFrom(ip string) *rawConn {
	e.t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: 30 * time.Second}
	c, err := d.Dial("tcp", e.addr)
	if err != nil {
		e.t.Fatalf("dial from %s: %v", ip, err)
	}
	e.t.Cleanup(func() { c.Close() })
	return &rawConn{t: e.t, c: c, fmtr: kmsg.NewRequestFormatter(kmsg.FormatterClientID("chronik-test"))}
}

// Connections over max-connections-per-ip or max-connections are accepted
// and closed at once, logged and counted; closing one makes room again.
func TestConnectionLimits(t *testing.T) {
	e := startEnv(t, withMaxConnections(3, 2), withMetrics())
	m := e.kcfg.Metrics
	a1, a2 := e.dialFrom("127.0.0.1"), e.dialFrom("127.0.0.1")
	checkAlive(t, a1)
	checkAlive(t, a2)

	e.dialFrom("127.0.0.1").expectClosed() // a third from one IP
	e.waitForLog("connection rejected: too many connections from this IP address (max-connections-per-ip)")

	b1 := e.dialFrom("127.0.0.2") // another IP: room for one more in all
	checkAlive(t, b1)
	e.dialFrom("127.0.0.2").expectClosed()
	e.waitForLog("connection rejected: too many connections (max-connections)")

	if got := testutil.ToFloat64(m.Rejected.WithLabelValues("max_connections_per_ip")); got != 1 {
		t.Errorf("rejected per IP: %v, want 1", got)
	}
	if got := testutil.ToFloat64(m.Rejected.WithLabelValues("max_connections")); got != 1 {
		t.Errorf("rejected in all: %v, want 1", got)
	}
	checkAlive(t, a1) // the accepted ones are unharmed
	checkAlive(t, b1)

	a2.c.Close()
	waitFor(t, "the closed connection to be gone", func() bool {
		e.srv.mu.Lock()
		defer e.srv.mu.Unlock()
		return len(e.srv.conns) == 2 && e.srv.perIP["127.0.0.1"] == 1
	})
	checkAlive(t, e.dialFrom("127.0.0.1"))
}

// Six connections send all but the last byte of frames of the largest
// request size: together more than the budget, so some wait for room. A
// kgo client's small requests still go through (the reserve for small
// holders), each within a generous bound.
func TestPartialFramesDoNotBlockOthers(t *testing.T) {
	const maxReq = 3 * mib
	e := startEnv(t, withMaxRequestBytes(maxReq), withInflightRequestBytes(16*mib))
	e.createTopic("live", 1, nil)
	part := make([]byte, maxReq-1)
	for i := 0; i < 6; i++ {
		c := e.sendPrefix(maxReq)
		go func() {
			c.SetWriteDeadline(time.Now().Add(60 * time.Second))
			c.Write(part) // blocks while the server does not read; ends when closed
		}()
	}
	// All but the reserve (2 MiB) is held, to within one frame, and a
	// partial frame waits for room.
	waitFor(t, "the partial frames to fill the budget", func() bool {
		return e.srv.budget.inUse() >= 16*mib-2*mib-maxReq && e.srv.budget.waiters() > 0
	})
	produceConsume(t, e, "live", 10)
}

// produceConsume produces n records with kgo and consumes each back; every
// operation must finish within 20 s.
func produceConsume(t *testing.T, e *testEnv, topic string, n int) {
	t.Helper()
	prod := e.client()
	cons := e.client(kgo.ConsumeTopics(topic), kgo.FetchMaxWait(200*time.Millisecond))
	for i := 0; i < n; i++ {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		value := fmt.Sprintf("record-%d", i)
		if err := prod.ProduceSync(ctx, &kgo.Record{Topic: topic, Value: []byte(value)}).FirstErr(); err != nil {
			cancel()
			t.Fatalf("produce %d: %v", i, err)
		}
		var got *kgo.Record
		for polls := 0; got == nil && polls < 1000; polls++ {
			fs := cons.PollFetches(ctx)
			if err := ctx.Err(); err != nil {
				cancel()
				t.Fatalf("consume %d: %v", i, err)
			}
			for _, fe := range fs.Errors() {
				cancel()
				t.Fatalf("consume %d: %v", i, fe.Err)
			}
			fs.EachRecord(func(r *kgo.Record) { got = r })
		}
		cancel()
		if got == nil || string(got.Value) != value || got.Offset != int64(i) {
			t.Fatalf("consumed %+v, want %q at offset %d", got, value, i)
		}
	}
}

// Shutdown lets a frame in progress finish (within the drain grace) and
// answers it; a frame that does not finish is dropped once the grace is
// over, and Shutdown returns.
func TestShutdownFinishesFrameInProgress(t *testing.T) {
	e := startEnv(t)
	finishing := e.dial()
	frame := finishing.fmtr.AppendRequest(nil, metadataRequest(), 1)
	finishing.write(frame[:len(frame)-3])
	stalled := e.dial()
	stalled.write(frame[:len(frame)-3])
	waitFor(t, "both frames in progress", func() bool {
		e.srv.mu.Lock()
		defer e.srv.mu.Unlock()
		n := 0
		for c := range e.srv.conns {
			if c.bodyRead.Load() == int64(len(frame)-7) {
				n++
			}
		}
		return n == 2
	})

	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		done <- e.srv.Shutdown(ctx)
	}()
	waitFor(t, "the server to drain", e.srv.isDraining)
	finishing.write(frame[len(frame)-3:])
	if resp := finishing.read(metadataRequest(), 1).(*kmsg.MetadataResponse); len(resp.Brokers) != 1 {
		t.Fatalf("metadata finished during shutdown: %d brokers", len(resp.Brokers))
	}
	finishing.expectClosed()
	stalled.expectClosed()
	if err := <-done; err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	e.waitForLog("frame not complete within the shutdown grace period")
}

// FuzzFraming feeds an arbitrary byte stream, in pieces of a chosen size,
// through a connection's reader (sizes, bodies, admission, the frame
// clock) over an in-memory pipe, then closes it. Nothing may panic, the
// connection must end, and afterwards no budget bytes may be held.
func FuzzFraming(f *testing.F) {
	frame := func(body []byte) []byte {
		return append(binary.BigEndian.AppendUint32(nil, uint32(len(body))), body...)
	}
	for i, file := range seedFiles(f) {
		if i%4 != 0 {
			continue
		}
		body, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(append(frame(body), frame(body)...), uint16(7))
		f.Add(frame(body)[:len(body)/2], uint16(1000))
	}
	f.Add([]byte{0, 0, 0}, uint16(1))
	f.Add([]byte{0x7f, 0xff, 0xff, 0xff}, uint16(4))
	f.Add([]byte{0, 1, 0, 0, 0, 18, 0, 3}, uint16(2))
	f.Add(binary.BigEndian.AppendUint32(nil, 0xffffffff), uint16(3))

	e := startEnv(f, withMaxRequestBytes(64<<10), withInflightRequestBytes(256<<10), withRequestReadTimeout(5*time.Second))
	e.createTopic("fuzz", 1, nil)
	e.srv.maxNewPartitions = 4

	f.Fuzz(func(t *testing.T, stream []byte, piece uint16) {
		client, server := net.Pipe()
		defer client.Close()
		e.srv.startConn(server, &listener{name: "PLAINTEXT", protocol: ProtocolPlaintext})
		drained := make(chan struct{})
		go func() {
			defer close(drained)
			io.Copy(io.Discard, client)
		}()
		step := max(int(piece), 1)
		for len(stream) > 0 {
			n := min(step, len(stream))
			client.SetWriteDeadline(time.Now().Add(10 * time.Second))
			if _, err := client.Write(stream[:n]); err != nil {
				break // the server closed the connection
			}
			stream = stream[n:]
		}
		client.Close()
		<-drained
		waitFor(t, "the connection to end", func() bool {
			e.srv.mu.Lock()
			defer e.srv.mu.Unlock()
			return len(e.srv.conns) == 0
		})
		waitFor(t, "handlers to give their bytes back", func() bool { return e.srv.budget.inUse() == 0 })
		if p := e.srv.panics.Load(); p != 0 {
			t.Fatalf("%d handler panics", p)
		}
	})
}
