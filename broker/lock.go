package broker

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/chronik-stream/chronik/wal"
)

// lockFile is the file in the data directory that the broker holds an
// exclusive flock on for its whole life: two processes on one data
// directory would assign the same offsets and corrupt each other's logs.
const lockFile = ".lock"

// ErrLocked is returned (wrapped in a *LockedError) when another process
// holds the data directory.
var ErrLocked = errors.New("data directory is in use")

// LockedError names the data directory and, when it could be read, the pid
// of the process holding it.
type LockedError struct {
	Dir string
	PID int // 0 if unknown
}

func (e *LockedError) Error() string {
	if e.PID > 0 {
		return fmt.Sprintf("data directory %s is locked by another chronik process (pid %d); stop it first, or use another --data-dir", e.Dir, e.PID)
	}
	return fmt.Sprintf("data directory %s is locked by another chronik process; stop it first, or use another --data-dir", e.Dir)
}

func (e *LockedError) Unwrap() error { return ErrLocked }

// DirLock is an exclusive lock on a data directory. The kernel releases it
// when the process exits, however it exits.
type DirLock struct {
	f *os.File
}

// LockDataDir creates dir if needed and takes its lock without waiting. It
// returns a *LockedError if another process (or another DirLock in this
// one) holds it. The lock file records this process's pid for the error
// message of the next one.
func LockDataDir(dir string) (*DirLock, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	path := filepath.Join(dir, lockFile)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o640)
	if err != nil {
		return nil, fmt.Errorf("lock data directory: %w", err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, &LockedError{Dir: dir, PID: readLockPID(path)}
		}
		return nil, fmt.Errorf("lock data directory %s: %w", dir, err)
	}
	// Best effort: the pid is only for the message.
	if err := f.Truncate(0); err == nil {
		f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return &DirLock{f: f}, nil
}

// Check says whether the lock still guards the data directory: its lock
// file must still be the file this lock holds. If the directory was
// removed (or its lock file deleted or replaced) while the broker runs, a
// second process can lock a new file there and both would write the same
// paths; the lock no longer protects anything.
func (l *DirLock) Check() error {
	var held, now unix.Stat_t
	if err := unix.Fstat(int(l.f.Fd()), &held); err != nil {
		return fmt.Errorf("data directory lock %s: %w", l.f.Name(), err)
	}
	if err := unix.Stat(l.f.Name(), &now); err != nil {
		return fmt.Errorf("data directory lock %s is gone (%w): the data directory was removed or replaced while in use", l.f.Name(), err)
	}
	if held.Dev != now.Dev || held.Ino != now.Ino {
		return fmt.Errorf("data directory lock %s is another file now: the data directory was removed or replaced while in use", l.f.Name())
	}
	return nil
}

func readLockPID(path string) int {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return 0
	}
	return pid
}

// Unlock releases the lock. Safe on nil and to call twice.
func (l *DirLock) Unlock() error {
	if l == nil || l.f == nil {
		return nil
	}
	err := l.f.Close() // closing the descriptor releases the flock
	l.f = nil
	return err
}

// DefaultMaxOpenLogs is the open-log cap derived from the process's
// open-file limit (RLIMIT_NOFILE, which Go raises to its hard limit at
// start): reserve descriptors are left for connections and everything else
// (a quarter of the limit, at most 4096, when reserve is 0 or more than half
// of it), and the rest is shared by the logs at wal.FilesPerOpenLog each.
func DefaultMaxOpenLogs(reserve int) int {
	var rl unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &rl); err != nil || rl.Cur == unix.RLIM_INFINITY || rl.Cur > 1<<24 {
		return 1 << 22 / wal.FilesPerOpenLog
	}
	n := int(rl.Cur)
	if reserve <= 0 || reserve > n/2 {
		reserve = min(n/4, 4096)
	}
	return max(64, (n-reserve)/wal.FilesPerOpenLog)
}
