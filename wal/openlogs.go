package wal

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// An open log holds file descriptors: tidwall's handle on the tail segment
// and, once it synced, a second one for fdatasync. A log whose tidwall is
// released (idle, or evicted here) holds none and reopens on its next use.
// OpenLogs caps how many logs sharing it may hold their files open at once,
// so that thousands of partitions never run the process out of
// descriptors: a log that opens past the cap first releases the least
// recently used open logs that are not in use at that moment. If every
// other open log is busy the open fails with ErrTooManyOpenLogs, a clear
// error instead of EMFILE halfway through some unrelated call.

// ErrTooManyOpenLogs is returned when a log must open its files and the
// OpenLogs cap is reached by logs that are all in use.
var ErrTooManyOpenLogs = errors.New("wal: open-file budget reached: every open log is in use")

// FilesPerOpenLog is the most file descriptors one open log holds.
const FilesPerOpenLog = 2

// OpenLogs is a cap on the logs holding their files open, shared by every
// log opened with it (Options.OpenLogs).
type OpenLogs struct {
	limit int
	wait  time.Duration // reserveWait; tests shorten it

	mu   sync.Mutex
	open map[*Log]struct{}

	evictions atomic.Int64
}

// NewOpenLogs returns a cap of limit open logs (at least 1).
func NewOpenLogs(limit int) *OpenLogs {
	return &OpenLogs{limit: max(limit, 1), wait: reserveWait, open: make(map[*Log]struct{})}
}

// Limit is the cap.
func (o *OpenLogs) Limit() int { return o.limit }

// Open is how many logs hold their files open now.
func (o *OpenLogs) Open() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return len(o.open)
}

// Evictions counts logs released to make room.
func (o *OpenLogs) Evictions() int64 { return o.evictions.Load() }

// reserveWait bounds how long a log waits for room when every open log is
// in use, and reserveRetry how often it tries again meanwhile: a produce
// touching more partitions at once than the cap (10,000 partitions under a
// cap of 1,536) opens them in waves as the appends before finish, instead
// of failing the ones past the cap.
const (
	reserveWait  = 10 * time.Second
	reserveRetry = 2 * time.Millisecond
)

// reserve makes room for l, which is about to open its files, releasing
// least recently used open logs if the cap is reached. l.mu held (and
// perhaps l.wmu); victims are only tried (TryLock), never waited for, so two
// logs making room at once cannot deadlock. If every open log is in use it
// tries again until one can be released, for up to reserveWait.
func (o *OpenLogs) reserve(l *Log) error {
	deadline := time.Now().Add(o.wait)
	for {
		err := o.tryReserve(l)
		if !errors.Is(err, ErrTooManyOpenLogs) || time.Now().After(deadline) {
			return err
		}
		time.Sleep(reserveRetry)
	}
}

// tryReserve is one attempt of reserve.
func (o *OpenLogs) tryReserve(l *Log) error {
	o.mu.Lock()
	if _, ok := o.open[l]; ok || len(o.open) < o.limit {
		o.open[l] = struct{}{}
		o.mu.Unlock()
		return nil
	}
	// Make room for a tenth of the cap at once, so that a burst of opens
	// (a topic created, a restart) does not sort the set on every one.
	victims := make([]*Log, 0, len(o.open))
	for v := range o.open {
		victims = append(victims, v)
	}
	o.mu.Unlock()
	slices.SortFunc(victims, func(a, b *Log) int { return int(a.lastUse.Load() - b.lastUse.Load()) })
	want := max(1, o.limit/10)
	freed := 0
	for _, v := range victims {
		if freed >= want {
			break
		}
		if v != l && v.tryEvict() {
			freed++
			o.evictions.Add(1)
		}
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if len(o.open) >= o.limit {
		return fmt.Errorf("%w (%d logs open, the cap)", ErrTooManyOpenLogs, o.limit)
	}
	o.open[l] = struct{}{}
	return nil
}

// release records that l closed its files. Safe to call for a log that is
// not open.
func (o *OpenLogs) release(l *Log) {
	o.mu.Lock()
	delete(o.open, l)
	o.mu.Unlock()
}

// openLogs is the cap l uses, nil for none.
func (l *Log) openLogs() *OpenLogs { return l.opts.OpenLogs }

// tryEvict releases l's files if nobody is using it right now.
func (l *Log) tryEvict() bool {
	if !l.wmu.TryLock() {
		return false
	}
	defer l.wmu.Unlock()
	if !l.mu.TryLock() {
		return false
	}
	defer l.mu.Unlock()
	if l.closed.Load() || l.tl == nil {
		return false
	}
	return l.releaseLocked() == nil
}
