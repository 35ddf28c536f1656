//go:build !linux

package kafka

import "syscall"

// socketQueued is unknown on this platform: bodies grow by doubling.
func socketQueued(syscall.RawConn) int { return 0 }
