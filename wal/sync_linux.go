package wal

import (
	"os"
	"syscall"
)

// fdatasync flushes a segment's data and the metadata needed to read it
// back (its size), skipping timestamps; etcd's WAL does the same on Linux.
func fdatasync(f *os.File) error {
	for {
		err := syscall.Fdatasync(int(f.Fd()))
		if err != syscall.EINTR {
			if err != nil {
				return &os.PathError{Op: "fdatasync", Path: f.Name(), Err: err}
			}
			return nil
		}
	}
}
