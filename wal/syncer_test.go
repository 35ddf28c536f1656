package wal

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// newTestSyncer starts a Syncer whose rounds are counted.
func newTestSyncer(t *testing.T) (*Syncer, *atomic.Int64, *atomic.Int64) {
	t.Helper()
	var rounds, logs atomic.Int64
	s, err := NewSyncer(t.TempDir(), func(n int, _ time.Duration) {
		rounds.Add(1)
		logs.Add(int64(n))
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, &rounds, &logs
}

// TestSyncerManyLogs appends to 50 logs from 50 goroutines through one
// Syncer: every Append returns with its entries durable (DurableIndex),
// the rounds never outnumber the appends, and everything reads back after
// reopening.
func TestSyncerManyLogs(t *testing.T) {
	s, rounds, _ := newTestSyncer(t)
	const logs, appends = 50, 20
	dirs := appendOnLogs(t, s, logs, appends, 16<<10, nil)
	if r := rounds.Load(); r < 1 || r > logs*appends {
		t.Errorf("%d rounds for %d appends", r, logs*appends)
	}
	checkReopened(t, dirs, appends)
}

// appendOnLogs opens logs logs (segments of segSize bytes) sharing s and
// appends to each from a goroutine of its own, appends times, each append
// checked durable (appendDurable) and preceded by a call of before unless
// it is nil; it fails the test unless every append succeeded, and returns
// the logs' directories (the logs are closed).
func appendOnLogs(t *testing.T, s *Syncer, logs, appends, segSize int, before func()) []string {
	t.Helper()
	base := t.TempDir()
	dirs := make([]string, logs)
	var wg sync.WaitGroup
	var appended atomic.Int64
	for i := range logs {
		dirs[i] = filepath.Join(base, fmt.Sprint(i))
		l := mustOpen(t, dirs[i], Options{Syncer: s, SegmentSize: segSize})
		wg.Go(func() {
			defer l.Close()
			for range appends {
				if before != nil {
					before()
				}
				if !appendDurable(t, l) {
					return
				}
				appended.Add(1)
			}
		})
	}
	wg.Wait()
	if n := appended.Load(); n != int64(logs*appends) {
		t.Fatalf("%d appends of %d", n, logs*appends)
	}
	return dirs
}

// appendDurable appends the next payloadFor entry to l and checks that it
// is durable once Append returns; false if the append failed.
func appendDurable(t *testing.T, l *Log) bool {
	t.Helper()
	off := l.NextOffset()
	idx, err := l.Append(Entry{Kind: KindData, Term: 1, BaseOffset: off, Payload: payloadFor(uint64(off), 1000)})
	if err != nil {
		t.Errorf("append: %v", err)
		return false
	}
	if d := l.DurableIndex(); d < idx {
		t.Errorf("append returned index %d with durable index %d", idx, d)
	}
	return true
}

// checkReopened reopens each of dirs and checks that it holds the first
// appends entries appendDurable writes, and nothing else.
func checkReopened(t *testing.T, dirs []string, appends int) {
	t.Helper()
	for _, dir := range dirs {
		l := mustOpen(t, dir, Options{})
		if l.NextOffset() != int64(appends) || l.LastIndex() != uint64(appends) {
			t.Errorf("%s: next offset %d, last index %d after reopening; want %d", dir, l.NextOffset(), l.LastIndex(), appends)
		}
		for i := uint64(1); i <= uint64(appends); i++ {
			e, err := l.Read(i)
			if err != nil || !sameEntry(e, Entry{Kind: KindData, Term: 1, BaseOffset: int64(i - 1), Payload: payloadFor(i-1, 1000)}) {
				t.Errorf("%s: entry %d: %v", dir, i, err)
			}
		}
		l.Close()
	}
}

// TestSyncerCoalesces holds the first round back while appends to ten
// other logs arrive: they all join the next round, one round for ten logs.
func TestSyncerCoalesces(t *testing.T) {
	s, rounds, logsSynced := newTestSyncer(t)
	release := make(chan struct{})
	var first sync.Once
	started := make(chan struct{})
	s.beforeRound = func() {
		first.Do(func() {
			close(started)
			<-release
		})
	}
	base := t.TempDir()
	open := func(i int) *Log {
		l := mustOpen(t, filepath.Join(base, fmt.Sprint(i)), Options{Syncer: s})
		t.Cleanup(func() { l.Close() })
		return l
	}
	l0 := open(0)
	done0 := make(chan error, 1)
	go func() { _, err := l0.Append(Entry{Kind: KindData, Term: 1, Payload: []byte("first")}); done0 <- err }()
	<-started // the first round is under way, holding l0 only
	var wg sync.WaitGroup
	for i := 1; i <= 10; i++ {
		l := open(i)
		wg.Go(func() {
			if _, err := l.Append(Entry{Kind: KindData, Term: 1, Payload: []byte("next")}); err != nil {
				t.Errorf("append: %v", err)
			}
		})
	}
	// The ten appends wait for a round; let them all join the next
	// one before the first ends (bounded wait on the round's size).
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		s.mu.Lock()
		n := 0
		if s.next != nil {
			n = len(s.next.logs)
		}
		s.mu.Unlock()
		if n == 10 {
			break
		}
	}
	close(release)
	if err := <-done0; err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	if r, n := rounds.Load(), logsSynced.Load(); r != 2 || n != 11 {
		t.Errorf("%d rounds covering %d logs; want 2 rounds covering 11 (1, then the 10 that arrived meanwhile)", r, n)
	}
}

// TestSyncerTruncationDuringRound: a round under way when the log is
// truncated and written again must not mark the new entries durable (in
// filesystem mode the round only records indexes; the new entries were
// written after its syncfs may have run).
func TestSyncerTruncationDuringRound(t *testing.T) {
	s, _, _ := newTestSyncer(t)
	hold, entered, hold2 := make(chan struct{}), make(chan struct{}), make(chan struct{})
	var armed atomic.Bool
	var held atomic.Int64
	s.beforeRound = func() {
		if !armed.Load() {
			return
		}
		switch held.Add(1) {
		case 1:
			close(entered)
			<-hold // waits until the log was truncated and written again
		case 2:
			<-hold2 // the new entry's round waits until checked
		}
	}
	l := mustOpen(t, t.TempDir(), Options{Syncer: s})
	defer l.Close()
	for i := range 5 {
		if _, err := l.Append(Entry{Kind: KindData, Term: 1, BaseOffset: int64(i), Payload: []byte("a")}); err != nil {
			t.Fatal(err)
		}
	}
	if l.DurableIndex() != 5 {
		t.Fatalf("durable index %d after 5 appends", l.DurableIndex())
	}
	// The held round has a target of index 6 (generation 0); meanwhile the
	// log is truncated to 5 and entry 6 is written again.
	armed.Store(true)
	errs := make(chan error, 2)
	go func() {
		_, err := l.Append(Entry{Kind: KindData, Term: 1, BaseOffset: 5, Payload: []byte("old")})
		errs <- err
	}()
	<-entered
	if err := l.TruncateBack(5); err != nil {
		t.Fatal(err)
	}
	go func() {
		_, err := l.Append(Entry{Kind: KindData, Term: 2, BaseOffset: 5, Payload: []byte("new")})
		errs <- err
	}()
	// The held round ends (the old entry's Append returns): it must not
	// mark the new entry 6 durable; the new entry's round is held.
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		s.mu.Lock()
		joined := s.next != nil
		s.mu.Unlock()
		if joined {
			break
		}
	}
	close(hold)
	if err := <-errs; err != nil {
		t.Fatal(err)
	}
	if d := l.DurableIndex(); d != 5 {
		t.Errorf("durable index %d after a round that began before the truncation; want 5", d)
	}
	close(hold2)
	if err := <-errs; err != nil {
		t.Fatal(err)
	}
	if l.DurableIndex() != 6 {
		t.Errorf("durable index %d once both rounds ran; want 6", l.DurableIndex())
	}
}

// TestSyncerFailedSync: a failed syncfs fails the Appends of its round and
// leaves their logs unusable until Recover, as a failed fsync of their own
// would; the next round (the disk recovered) serves other logs again.
func TestSyncerFailedSync(t *testing.T) {
	s, _, _ := newTestSyncer(t)
	bad := mustOpen(t, t.TempDir(), Options{Syncer: s})
	defer bad.Close()
	good := mustOpen(t, t.TempDir(), Options{Syncer: s})
	defer good.Close()
	var fail atomic.Bool
	fail.Store(true)
	s.syncfs = func(f *os.File) error {
		if fail.Load() {
			return syscall.EIO
		}
		return syncfs(f)
	}
	if _, err := bad.Append(Entry{Kind: KindData, Term: 1, Payload: []byte("x")}); !errors.Is(err, syscall.EIO) {
		t.Fatalf("append with a failing syncfs: %v, want EIO", err)
	}
	if bad.Failed() == nil {
		t.Error("the log is not marked failed")
	}
	fail.Store(false)
	if _, err := good.Append(Entry{Kind: KindData, Term: 1, Payload: []byte("y")}); err != nil {
		t.Errorf("the other log: %v", err)
	}
	if bad.DurableIndex() != 0 {
		t.Errorf("durable index %d after a failed sync", bad.DurableIndex())
	}
}

// TestSyncerClosed: an Append on a closed Syncer fails rather than hangs.
func TestSyncerClosed(t *testing.T) {
	s, _, _ := newTestSyncer(t)
	l := mustOpen(t, t.TempDir(), Options{Syncer: s})
	defer l.Close()
	s.Close()
	if _, err := l.Append(Entry{Kind: KindData, Term: 1, Payload: []byte("x")}); !errors.Is(err, errSyncerClosed) {
		t.Fatalf("append after the Syncer closed: %v", err)
	}
}

// newTestQuietSyncer starts a gated Syncer whose page cache reading is
// *dirty (bytes; negative: unreadable), looked at on every append, with
// 1 MiB as the most it joins rounds at. Rounds and syncfs calls are
// counted.
func newTestQuietSyncer(t *testing.T) (s *Syncer, dirty, rounds, syncfsCalls *atomic.Int64) {
	t.Helper()
	dirty, rounds, syncfsCalls = new(atomic.Int64), new(atomic.Int64), new(atomic.Int64)
	read := func() (int64, error) {
		if n := dirty.Load(); n >= 0 {
			return n, nil
		}
		return 0, errors.New("unreadable")
	}
	s, err := newGatedSyncer(t.TempDir(), SyncerGate{MaxDirty: 1 << 20}, read, func(int, time.Duration) { rounds.Add(1) })
	if err != nil {
		t.Fatal(err)
	}
	s.checkEvery = 0
	s.syncfs = func(f *os.File) error {
		syncfsCalls.Add(1)
		return syncfs(f)
	}
	t.Cleanup(func() { s.Close() })
	return s, dirty, rounds, syncfsCalls
}

// TestQuietSyncer: appends join rounds while the page cache holds little
// dirty data and fdatasync their own files while it holds much (or cannot
// be read); a round whose logs joined while it was quiet but that finds it
// busy syncs each log's files (directory included after a roll) instead of
// calling syncfs. Every Append returns durable either way, and the entries
// read back after reopening.
func TestQuietSyncer(t *testing.T) {
	s, dirty, rounds, syncfsCalls := newTestQuietSyncer(t)
	dir := t.TempDir()
	var ownSyncs atomic.Int64
	l := mustOpen(t, dir, Options{Syncer: s, OnSync: func(time.Duration) { ownSyncs.Add(1) }})
	var dirSyncs atomic.Int64
	l.dirSyncFn = func(d string) error { dirSyncs.Add(1); return syncDir(d) }
	written := map[uint64]Entry{}
	appendOne := func(what string) {
		t.Helper()
		e := Entry{Kind: KindData, Term: 1, BaseOffset: l.NextOffset(), Payload: payloadFor(uint64(l.NextOffset()), 100)}
		idx, err := l.Append(e)
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if l.DurableIndex() < idx {
			t.Fatalf("%s: returned index %d with durable index %d", what, idx, l.DurableIndex())
		}
		written[idx] = e
	}
	check := func(what string, wantRounds, wantSyncfs, wantOwn, wantDir int64) {
		t.Helper()
		if rounds.Load() != wantRounds || syncfsCalls.Load() != wantSyncfs || ownSyncs.Load() != wantOwn || dirSyncs.Load() != wantDir {
			t.Fatalf("%s: %d rounds, %d syncfs, %d own syncs, %d directory syncs; want %d, %d, %d, %d", what,
				rounds.Load(), syncfsCalls.Load(), ownSyncs.Load(), dirSyncs.Load(), wantRounds, wantSyncfs, wantOwn, wantDir)
		}
	}

	appendOne("quiet")
	check("quiet", 1, 1, 0, 0)

	dirty.Store(2 << 20)
	appendOne("busy")
	check("busy", 1, 1, 1, 0)

	dirty.Store(-1)
	appendOne("unreadable")
	check("unreadable", 1, 1, 2, 0)
	if s.PageCacheErr() != nil {
		t.Errorf("PageCacheErr %v: the first reading succeeded", s.PageCacheErr())
	}

	// Quiet when the append joins, busy when its round starts; after a
	// roll, so the directory is due as well.
	dirty.Store(0)
	if err := l.Roll(); err != nil {
		t.Fatal(err)
	}
	s.beforeRound = func() { dirty.Store(2 << 20) }
	appendOne("busy by the round")
	check("busy by the round", 1, 1, 3, 1)
	s.beforeRound = nil

	// A roll in quiet times leaves the directory due for the first append
	// that syncs by itself.
	dirty.Store(0)
	if err := l.Roll(); err != nil {
		t.Fatal(err)
	}
	appendOne("quiet after a roll")
	check("quiet after a roll", 2, 2, 3, 1)
	dirty.Store(2 << 20)
	appendOne("busy after a quiet roll")
	check("busy after a quiet roll", 2, 2, 4, 2)

	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l = mustOpen(t, dir, Options{})
	defer l.Close()
	checkEntries(t, l, written)
}

// A gated Syncer that cannot read the page cache when it starts says why,
// and takes no appends until it can.
func TestQuietSyncerUnreadable(t *testing.T) {
	s, err := newGatedSyncer(t.TempDir(), SyncerGate{MaxDirty: 1 << 20}, func() (int64, error) { return 0, os.ErrPermission }, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if !errors.Is(s.PageCacheErr(), os.ErrPermission) || s.takesAppends() {
		t.Fatalf("PageCacheErr %v, takes appends %v", s.PageCacheErr(), s.takesAppends())
	}
}

// TestQuietSyncerManyLogs: 20 logs append at once while the page cache
// reading flips between quiet and busy: every Append returns durable, and
// everything reads back after reopening.
func TestQuietSyncerManyLogs(t *testing.T) {
	s, dirty, rounds, _ := newTestQuietSyncer(t)
	const logs, appends = 20, 30
	var flips atomic.Int64
	dirs := appendOnLogs(t, s, logs, appends, 4<<10, func() {
		if flips.Add(1)%7 == 0 {
			dirty.Store((2 << 20) - dirty.Load()) // 0 <-> 2 MiB
		}
	})
	if rounds.Load() == 0 {
		t.Error("no round ran")
	}
	checkReopened(t, dirs, appends)
}

// The page cache reading: Dirty plus Writeback of /proc/meminfo, and an
// error for anything else than two well-formed lines.
func TestParseMeminfoDirty(t *testing.T) {
	good := "MemTotal:       24604808 kB\nDirty:              1024 kB\nWriteback:            8 kB\nAnonPages:      1 kB\n"
	if n, err := parseMeminfoDirty(strings.NewReader(good)); err != nil || n != (1024+8)<<10 {
		t.Errorf("good meminfo: %d, %v", n, err)
	}
	for _, bad := range []string{
		"",
		"Dirty: 1 kB\n",
		"Dirty: 1 kB\nWriteback: x kB\n",
		"Dirty: 1 MB\nWriteback: 1 kB\n",
		"Dirty: -1 kB\nWriteback: 1 kB\n",
		"Dirty: 1\nWriteback: 1 kB\n",
		"Dirty: 99999999999999999999 kB\nWriteback: 1 kB\n",
	} {
		if n, err := parseMeminfoDirty(strings.NewReader(bad)); err == nil {
			t.Errorf("%q: %d, want an error", bad, n)
		}
	}
	if runtime.GOOS == "linux" {
		if n, err := pageCacheDirty(); err != nil || n < 0 {
			t.Errorf("this machine's page cache: %d, %v", n, err)
		}
	}
}

func FuzzParseMeminfoDirty(f *testing.F) {
	f.Add([]byte("Dirty:  12 kB\nWriteback:  0 kB\n"))
	f.Add([]byte("Dirty:  12 kB\nDirty:  12 kB\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		n, err := parseMeminfoDirty(bytes.NewReader(b))
		if err == nil && (n < 0 || n > 2<<50) {
			t.Fatalf("%q: %d", b, n)
		}
	})
}

// TestSyncerMinAppends: with MinAppends 2 an append alone fdatasyncs its
// own file, and one made while another is under way joins a round.
func TestSyncerMinAppends(t *testing.T) {
	var rounds atomic.Int64
	s, err := NewGatedSyncer(t.TempDir(), SyncerGate{MinAppends: 2}, func(int, time.Duration) { rounds.Add(1) })
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var ownSyncs atomic.Int64
	a := mustOpen(t, t.TempDir(), Options{Syncer: s, OnSync: func(time.Duration) { ownSyncs.Add(1) }})
	defer a.Close()
	b := mustOpen(t, t.TempDir(), Options{Syncer: s, OnSync: func(time.Duration) { ownSyncs.Add(1) }})
	defer b.Close()
	entry := func(l *Log) Entry {
		return Entry{Kind: KindData, Term: 1, BaseOffset: l.NextOffset(), Payload: []byte("x")}
	}
	if _, err := a.Append(entry(a)); err != nil {
		t.Fatal(err)
	}
	if rounds.Load() != 0 || ownSyncs.Load() != 1 {
		t.Fatalf("an append alone: %d rounds, %d own syncs; want 0, 1", rounds.Load(), ownSyncs.Load())
	}
	// a's next append holds its own sync until b has appended.
	syncing, release := make(chan struct{}), make(chan struct{})
	a.syncFn = func(f *os.File) error {
		close(syncing)
		<-release
		return fdatasync(f)
	}
	done := make(chan error, 1)
	go func() {
		_, err := a.Append(entry(a))
		done <- err
	}()
	<-syncing
	idx, err := b.Append(entry(b))
	if err != nil {
		t.Fatal(err)
	}
	if rounds.Load() != 1 || b.DurableIndex() < idx {
		t.Fatalf("an append beside another: %d rounds, durable %d of %d; want a round", rounds.Load(), b.DurableIndex(), idx)
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if ownSyncs.Load() != 2 || a.DurableIndex() != 2 {
		t.Fatalf("%d own syncs, a durable at %d; want 2, 2", ownSyncs.Load(), a.DurableIndex())
	}
}
