package wal

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
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
// as Kafka and Redpanda deployments use): SyncAuto gives every append to
// a round only there. Elsewhere it uses a gated Syncer (NewGatedSyncer):
// appends join rounds only while several are under way and the page
// cache holds little dirty data, and otherwise fdatasync their own files
// as with SyncFiles (concurrent appends to different logs still sync
// concurrently, and the journal groups their commits).
//
// A failed round fails each log in it, as a failed fsync of its own would
// (the log turns unusable until Recover; its waiters get the error).

// SyncMode is how the logs of a data directory share fsyncs (the
// --fsync-batch setting).
type SyncMode int

const (
	SyncAuto       SyncMode = iota // SyncFilesystem if the data directory is a mount point, else a gated Syncer (the broker's)
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

	// The gate (NewGatedSyncer): appends join rounds only while at least
	// minAppends appends to its logs are under way (appending counts
	// them), and, with dirty set, while the page cache's dirty and
	// writeback bytes, looked at no more often than every checkEvery, are
	// at most maxDirty.
	minAppends int64
	appending  atomic.Int64
	dirty      func() (int64, error)
	maxDirty   int64
	checkEvery time.Duration // quietCheckEvery; tests shorten it
	checked    atomic.Int64  // monotime of the last look
	quiet      atomic.Bool   // what it found
	firstLook  error         // the first look's error (PageCacheErr)

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
// SyncFilesystem (elsewhere, a gated Syncer).
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

// SyncerGate says when appends join a gated Syncer's rounds; an append
// turned away fdatasyncs its own file, as without a Syncer.
type SyncerGate struct {
	// MinAppends: join only while at least this many appends to the
	// Syncer's logs are under way, this one included. One append alone
	// gets its fdatasync sooner than a round (which may have to wait for
	// the round before it); many share one syncfs. 0 or 1: always.
	MinAppends int
	// MaxDirty: join only while the system's dirty and writeback page
	// cache (/proc/meminfo) is at most this many bytes, looked at every
	// quietCheckEvery at most; 0: no limit. For a data directory that
	// shares its filesystem with other programs: a syncfs also writes back
	// and waits for whatever they dirtied there, so a round behind a large
	// copy would take as long as the copy's writeback (seconds). A round
	// looks again before its syncfs: if the page cache filled since its
	// logs joined, it syncs each log's own files instead (ownSyncs).
	MaxDirty int64
}

// NewGatedSyncer is NewSyncer whose rounds take appends only as gate says.
func NewGatedSyncer(dir string, gate SyncerGate, onRound func(logs int, d time.Duration)) (*Syncer, error) {
	return newGatedSyncer(dir, gate, pageCacheDirty, onRound)
}

func newGatedSyncer(dir string, gate SyncerGate, dirty func() (int64, error), onRound func(logs int, d time.Duration)) (*Syncer, error) {
	s, err := NewSyncer(dir, onRound)
	if err != nil {
		return nil, err
	}
	s.minAppends = int64(gate.MinAppends)
	if gate.MaxDirty > 0 {
		s.dirty, s.maxDirty, s.checkEvery = dirty, gate.MaxDirty, quietCheckEvery
		s.firstLook = s.look(monotime())
	}
	return s, nil
}

// PageCacheErr is why a gated Syncer could not read the page cache's
// dirty bytes when it started (nil if it could, or has no MaxDirty): while
// that lasts, every append fdatasyncs its own file.
func (s *Syncer) PageCacheErr() error { return s.firstLook }

// quietCheckEvery is how often at most a gated Syncer reads the page
// cache's dirty bytes (a read of /proc/meminfo, tens of microseconds).
const quietCheckEvery = 50 * time.Millisecond

// startAppend and endAppend bracket an append to one of s's logs (the gate
// counts them). s may be nil.
func (s *Syncer) startAppend() {
	if s != nil {
		s.appending.Add(1)
	}
}

func (s *Syncer) endAppend() {
	if s != nil {
		s.appending.Add(-1)
	}
}

// takesAppends says whether an append now joins a round (true) or syncs
// its own file.
func (s *Syncer) takesAppends() bool {
	if s.appending.Load() < s.minAppends {
		return false
	}
	if s.dirty == nil {
		return true
	}
	now := monotime()
	if last := s.checked.Load(); now-last >= int64(s.checkEvery) && s.checked.CompareAndSwap(last, now) {
		s.look(now)
	}
	return s.quiet.Load()
}

// look reads the page cache's dirty bytes: quiet if at most maxDirty, not
// quiet if more or if they cannot be read (the error).
func (s *Syncer) look(now int64) error {
	n, err := s.dirty()
	s.quiet.Store(err == nil && n <= s.maxDirty)
	s.checked.Store(now)
	return err
}

// parseMeminfoDirty sums the Dirty and Writeback lines of a
// /proc/meminfo ("Dirty:    1234 kB").
func parseMeminfoDirty(r io.Reader) (int64, error) {
	var total int64
	var dirty, writeback bool
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		name, rest, ok := bytes.Cut(sc.Bytes(), []byte(":"))
		if !ok || (string(name) != "Dirty" && string(name) != "Writeback") {
			continue
		}
		fields := bytes.Fields(rest)
		if len(fields) != 2 || string(fields[1]) != "kB" {
			return 0, fmt.Errorf("meminfo: %s: %q", name, rest)
		}
		kb, err := strconv.ParseInt(string(fields[0]), 10, 64)
		if err != nil || kb < 0 || kb > 1<<40 {
			return 0, fmt.Errorf("meminfo: %s: %q", name, rest)
		}
		total += kb << 10
		if string(name) == "Dirty" {
			dirty = true
		} else {
			writeback = true
		}
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	if !dirty || !writeback {
		return 0, fmt.Errorf("meminfo: Dirty and Writeback not both found")
	}
	return total, nil
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
	if s.dirty != nil {
		if s.look(monotime()); !s.quiet.Load() {
			// The page cache filled since these logs joined: a syncfs
			// would wait for its writeback too.
			s.ownSyncs(r)
			close(r.done)
			return
		}
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

// ownSyncWorkers is how many logs of a round ownSyncs syncs at once.
const ownSyncWorkers = 16

// ownSyncs makes every log of r durable with its own fsyncs instead of a
// syncfs, ownSyncWorkers at a time.
func (s *Syncer) ownSyncs(r *syncRound) {
	type member struct {
		l   *Log
		t   syncTarget
		err error
	}
	members := make([]member, 0, len(r.logs))
	for l, t := range r.logs {
		members = append(members, member{l: l, t: t})
	}
	inParallel(len(members), ownSyncWorkers, func(i int) { members[i].err = members[i].l.syncOwn(members[i].t) })
	for _, m := range members {
		if m.err != nil {
			r.errs[m.l] = m.err
		}
	}
}

// inParallel calls f(0..n-1) on up to workers goroutines and returns once
// every call has.
func inParallel(n, workers int, f func(i int)) {
	var (
		wg   sync.WaitGroup
		next atomic.Int64
	)
	for range min(n, workers) {
		wg.Go(func() {
			for i := next.Add(1) - 1; i < int64(n); i = next.Add(1) - 1 {
				f(int(i))
			}
		})
	}
	wg.Wait()
}

// syncOwn makes the entries of t durable as an append that syncs by itself
// does: the directory if a segment file was created since it was synced,
// then the tail file (the segments before it were synced when they were
// sealed). Nothing is done if they are durable already (a later append
// synced them, or closing the log did) or were truncated (durGen moved:
// their successors' own rounds cover those).
func (l *Log) syncOwn(t syncTarget) error {
	l.wmu.Lock()
	defer l.wmu.Unlock()
	if l.durGen != t.gen || l.durable.Load() >= t.index {
		return nil
	}
	if l.closed.Load() {
		return ErrClosed
	}
	l.mu.Lock()
	err := l.usable()
	l.mu.Unlock()
	if err != nil {
		return err
	}
	if err := l.syncDueDir(); err != nil {
		return err
	}
	return l.syncLocked()
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
