package kafka

import (
	"bytes"
	"net"
	"sync"
	"testing"
)

// countingConn records each Write it gets.
type countingConn struct {
	net.Conn
	mu     sync.Mutex
	writes [][]byte
}

func (c *countingConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.writes = append(c.writes, bytes.Clone(p))
	return len(p), nil
}

// TestCoalescingConn: between begin and end, records go out in as few
// writes as the buffer allows, in order and complete; outside, every
// write goes straight through (the handshake must not wait for an end).
func TestCoalescingConn(t *testing.T) {
	under := &countingConn{}
	c := &coalescingConn{Conn: under}

	c.Write([]byte("hello")) // not gathering: straight through
	if len(under.writes) != 1 {
		t.Fatalf("a write outside begin/end was held: %d writes", len(under.writes))
	}

	var want bytes.Buffer
	rec := bytes.Repeat([]byte{'r'}, 16<<10+29) // one full TLS record
	c.begin()
	for i := range 40 { // 40 records: about 2.5 buffers
		rec[0] = byte(i)
		c.Write(rec)
		want.Write(rec)
	}
	big := bytes.Repeat([]byte{'b'}, tlsCoalesceBytes+1) // larger than the buffer
	c.Write(big)
	want.Write(big)
	c.Write([]byte("tail"))
	want.WriteString("tail")
	if err := c.end(); err != nil {
		t.Fatal(err)
	}
	got := bytes.Join(under.writes[1:], nil)
	if !bytes.Equal(got, want.Bytes()) {
		t.Fatalf("gathered writes differ from what was written (%d vs %d bytes)", len(got), want.Len())
	}
	if n := len(under.writes) - 1; n > 5 {
		t.Errorf("%d socket writes for 40 records and one large write, want at most 5", n)
	}
	if c.buf != nil {
		t.Error("the buffer is held after end")
	}
}
