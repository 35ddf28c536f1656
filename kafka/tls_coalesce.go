package kafka

import (
	"net"
	"sync"
)

// tlsCoalesceBytes is how much of one response a TLS connection gathers
// before writing it to the socket.
const tlsCoalesceBytes = 256 << 10

var coalescePool = sync.Pool{New: func() any { b := make([]byte, 0, tlsCoalesceBytes); return &b }}

// coalescingConn sits under a server-side *tls.Conn and gathers the TLS
// records of one response into few socket writes. crypto/tls writes every
// record (16 KiB of plaintext at most) with its own Write, so a 1 MiB
// Fetch response would otherwise cost 64 syscalls. Between begin and end
// (the connection's writer, around one response) writes are buffered, up
// to tlsCoalesceBytes at a time, and end writes what is left; outside them
// (the handshake, alerts, the key updates the reader answers) every write
// goes straight through. The buffer is pooled: an idle connection holds
// none.
type coalescingConn struct {
	net.Conn
	mu  sync.Mutex
	on  bool
	buf *[]byte // while on
}

func (c *coalescingConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.on {
		return c.Conn.Write(p)
	}
	b := *c.buf
	if len(b)+len(p) > cap(b) {
		if err := c.flushLocked(); err != nil {
			return 0, err
		}
		b = *c.buf
		if len(p) > cap(b) {
			return c.Conn.Write(p)
		}
	}
	*c.buf = append(b, p...)
	return len(p), nil
}

func (c *coalescingConn) flushLocked() error {
	b := *c.buf
	if len(b) == 0 {
		return nil
	}
	*c.buf = b[:0]
	_, err := c.Conn.Write(b)
	return err
}

// begin starts gathering writes.
func (c *coalescingConn) begin() {
	c.mu.Lock()
	c.on, c.buf = true, coalescePool.Get().(*[]byte)
	c.mu.Unlock()
}

// end writes what was gathered and stops gathering.
func (c *coalescingConn) end() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	err := c.flushLocked()
	*c.buf = (*c.buf)[:0]
	coalescePool.Put(c.buf)
	c.on, c.buf = false, nil
	return err
}
