package wal

import (
	"os"
	"path/filepath"
	"syscall"

	"golang.org/x/sys/unix"
)

// fdatasync flushes a segment's data and the metadata needed to read it
// back (its size), skipping timestamps; etcd's WAL does the same on Linux.
func fdatasync(f *os.File) error {
	return retrySync(f, "fdatasync", syscall.Fdatasync)
}

// syncfs flushes every dirty file of the filesystem holding f (syncfs(2);
// since Linux 5.8 it reports writeback errors of that filesystem met
// since f was opened).
func syncfs(f *os.File) error { return retrySync(f, "syncfs", unix.Syncfs) }

// retrySync calls sync on f's descriptor until it is not interrupted.
func retrySync(f *os.File, op string, sync func(fd int) error) error {
	for {
		err := sync(int(f.Fd()))
		if err != syscall.EINTR {
			if err != nil {
				return &os.PathError{Op: op, Path: f.Name(), Err: err}
			}
			return nil
		}
	}
}

// ownFilesystem says whether dir is the root of a filesystem: its device
// differs from its parent's (or it is /).
func ownFilesystem(dir string) (bool, error) {
	var st, parent unix.Stat_t
	if err := unix.Stat(dir, &st); err != nil {
		return false, &os.PathError{Op: "stat", Path: dir, Err: err}
	}
	if err := unix.Stat(filepath.Join(dir, ".."), &parent); err != nil {
		return false, &os.PathError{Op: "stat", Path: filepath.Join(dir, ".."), Err: err}
	}
	return st.Dev != parent.Dev || st.Ino == parent.Ino, nil
}

// pageCacheDirty is the system's page cache waiting for writeback or being
// written back: Dirty plus Writeback in /proc/meminfo, in bytes.
func pageCacheDirty() (int64, error) {
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return 0, err
	}
	defer f.Close()
	return parseMeminfoDirty(f)
}
