package cluster

import (
	"bufio"
	"io"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"go.etcd.io/raft/v3/raftpb"
)

// BenchmarkTransport sends MsgApp messages of 16 x 1 KiB entries from node
// 1 to node 2 over loopback ("transport-tls": over peer TLS); "raw" writes
// the same marshalled bytes to a plain loopback TCP connection, for the
// overhead ratio.
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

	transport := func(b *testing.B, tweak func(*TransportConfig)) {
		l1, l2 := listen(b), listen(b)
		peers := map[uint64]string{1: l1.Addr().String(), 2: l2.Addr().String()}
		var got atomic.Int64
		wake := make(chan struct{}, 1)
		n1 := startNode(b, 1, l1, peers, true, tweak)
		startNode(b, 2, l2, peers, true, func(c *TransportConfig) {
			if tweak != nil {
				tweak(c)
			}
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
	}
	b.Run("transport", func(b *testing.B) { transport(b, nil) })
	b.Run("transport-tls", func(b *testing.B) { transport(b, newTestPKI(b).withTLS(b)) })

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
