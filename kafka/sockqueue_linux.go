package kafka

import (
	"syscall"

	"golang.org/x/sys/unix"
)

// socketQueued returns the bytes the kernel holds received on raw's socket
// and not yet read (SIOCINQ), or 0 if unknown. They have arrived: a reader
// may take budget room for them, so a fast client's large frame gets its
// buffer in one or two steps instead of doubling from the first chunk.
func socketQueued(raw syscall.RawConn) int {
	if raw == nil {
		return 0
	}
	n := 0
	raw.Control(func(fd uintptr) {
		if v, err := unix.IoctlGetInt(int(fd), unix.SIOCINQ); err == nil && v > 0 {
			n = v
		}
	})
	return n
}
