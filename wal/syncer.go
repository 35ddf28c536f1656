package wal

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"sync"
	"time"
)

// Shared fsync rounds. With FsyncAlways every Append is durable before it
// returns. A produce request that touches 100 partitions appends to 100
// logs, and if each log fdatasyncs its own file the request waits for 100
// fdatasyncs: however well the filesystem's journal groups them, each is
// its own writeback, commit wait and cache flush. A Syncer shared by the
// logs (Options.Syncer) turns them into rounds of one syncfs(2): an Append
// writes its entries, releases the log's writer lock and joins the next
// round; one goroutine runs rounds back to back, each one syncfs of the
// filesystem holding the data directory, which makes every log that joined
// it durable with one journal commit and one cache flush, while the
// appends arriving meanwhile gather for the round after. Nothing is
// acknowledged before a round that began after its write has finished.
//
// syncfs flushes whatever else is dirty on that filesystem too, so it
// suits a data directory on a filesystem of its own (a dedicated volume,
// as Kafka and Redpanda deployments use): SyncAuto picks it only there
// and leaves each log to fdatasync its own file elsewhere (SyncFiles:
// concurrent appends to different logs still sync concurrently, and the
// journal groups their commits).
//
// A failed round fails each log in it, as a failed fsync of its own would
// (the log turns unusable until Recover; its waiters get the error).

// SyncMode is how the logs of a data directory share fsyncs (the
// --fsync-batch setting).
type SyncMode int

const (
	SyncAuto       SyncMode = iota // SyncFilesystem if the data directory is a mount point, else SyncFiles
	SyncFiles                      // no Syncer: each log fdatasyncs its own file per Append
	SyncFilesystem                 // a Syncer: one syncfs of the directory's filesystem per round
)

// String names the mode as the setting spells it.
func (m SyncMode) String() string {
	switch m {
	case SyncFiles:
		return "files"
	case SyncFilesystem:
		return "filesystem"
	}
	return "auto"
}

// Syncer runs the shared fsync rounds of the logs that use it.
type Syncer struct {
	dir     *os.File // the directory syncfs is called on
	onRound func(logs int, d time.Duration)
	// beforeRound, if set (tests), runs at the start of every round, once
	// its logs are fixed. syncfs is syncfs(2); tests replace it.
	beforeRound func()
	syncfs      func(*os.File) error

	mu      sync.Mutex
	next    *syncRound // the round gathering logs; nil when none waits
	wake    chan struct{}
	stopped bool
	done    chan struct{}
}

// syncRound is one round: the logs to make durable up to their index, and
// a channel closed when it has finished (their errors in errs).
type syncRound struct {
	logs map[*Log]syncTarget
	errs map[*Log]error
	done chan struct{}
}

// OwnFilesystem says whether dir is the root of a filesystem of its own
// (its device differs from its parent's), where SyncAuto means
// SyncFilesystem.
func OwnFilesystem(dir string) (bool, error) { return ownFilesystem(dir) }

// syncTarget is the last index a log's waiters need durable, written while
// its durGen was gen.
type syncTarget struct{ index, gen uint64 }

// NewSyncer starts the shared fsync rounds of the logs under dir, each
// round one syncfs of dir's filesystem (Linux only). onRound, if set, is
// called after each round with the logs it covered and how long it took
// (metrics; it must be cheap). Close stops it.
func NewSyncer(dir string, onRound func(logs int, d time.Duration)) (*Syncer, error) {
	if runtime.GOOS != "linux" {
		return nil, errSyncfsUnsupported
	}
	f, err := os.Open(dir)
	if err != nil {
		return nil, fmt.Errorf("wal: syncer: %w", err)
	}
	s := &Syncer{dir: f, onRound: onRound, syncfs: syncfs, wake: make(chan struct{}, 1), done: make(chan struct{})}
	go s.run()
	return s, nil
}

var errSyncfsUnsupported = errors.New("wal: syncfs (fsync batching by filesystem) needs Linux")

// errSyncerClosed is what an Append waiting on a closed Syncer gets.
var errSyncerClosed = errors.New("wal: syncer closed")

// Close stops the Syncer once the rounds already joined have run; later
// waits fail. Logs using it must be closed first or not append again.
// Close of a nil Syncer does nothing.
func (s *Syncer) Close() error {
	if s == nil {
		return nil
	}
	s.mu.Lock()
	if s.stopped {
		s.mu.Unlock()
		return nil
	}
	s.stopped = true
	s.mu.Unlock()
	s.signal()
	<-s.done
	return s.dir.Close()
}

func (s *Syncer) signal() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// wait makes l durable up to index (written while l.durGen was gen) in the
// next round and returns that round's error for l. The caller holds none
// of l's locks.
func (s *Syncer) wait(l *Log, index, gen uint64) error {
	s.mu.Lock()
	if s.stopped {
		s.mu.Unlock()
		return errSyncerClosed
	}
	r := s.next
	if r == nil {
		r = &syncRound{logs: map[*Log]syncTarget{}, errs: map[*Log]error{}, done: make(chan struct{})}
		s.next = r
	}
	if t, ok := r.logs[l]; !ok || t.gen != gen || t.index < index {
		// Appends to one log come in order under its wmu: a later
		// generation or a higher index replaces the earlier target.
		r.logs[l] = syncTarget{index, gen}
	}
	s.mu.Unlock()
	s.signal()
	<-r.done
	return r.errs[l]
}

// run runs rounds while logs wait, until Close.
func (s *Syncer) run() {
	defer close(s.done)
	for {
		<-s.wake
		for {
			s.mu.Lock()
			r, stopped := s.next, s.stopped
			s.next = nil
			s.mu.Unlock()
			if r == nil {
				if stopped {
					return
				}
				break
			}
			s.round(r)
		}
	}
}

// round makes every log of r durable and releases its waiters.
func (s *Syncer) round(r *syncRound) {
	if s.beforeRound != nil {
		s.beforeRound()
	}
	start := time.Now()
	err := s.syncfs(s.dir)
	for l, t := range r.logs {
		if err != nil {
			r.errs[l] = l.fail("syncfs", err)
			continue
		}
		l.markDurable(t)
	}
	if s.onRound != nil {
		s.onRound(len(r.logs), time.Since(start))
	}
	close(r.done)
}

// markDurable records that the entries of t are durable (a round covered
// them), unless durable was lowered since they were written:
// the entries now at those indexes may have been written after the round
// began, and their own round will cover them.
func (l *Log) markDurable(t syncTarget) {
	l.wmu.Lock()
	defer l.wmu.Unlock()
	if l.durGen == t.gen && l.durable.Load() < t.index {
		l.durable.Store(t.index)
	}
}
