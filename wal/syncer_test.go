package wal

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
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
	dirs := make([]string, logs)
	var wg sync.WaitGroup
	var appended atomic.Int64
	base := t.TempDir()
	for i := range logs {
		dirs[i] = filepath.Join(base, fmt.Sprint(i))
		l := mustOpen(t, dirs[i], Options{Syncer: s, SegmentSize: 16 << 10})
		wg.Go(func() {
			defer l.Close()
			for range appends {
				off := l.NextOffset()
				idx, err := l.Append(Entry{Kind: KindData, Term: 1, BaseOffset: off, Payload: payloadFor(uint64(off), 1000)})
				if err != nil {
					t.Errorf("append: %v", err)
					return
				}
				if d := l.DurableIndex(); d < idx {
					t.Errorf("append returned index %d with durable index %d", idx, d)
				}
				appended.Add(1)
			}
		})
	}
	wg.Wait()
	if appended.Load() != logs*appends {
		t.Fatalf("%d appends of %d", appended.Load(), logs*appends)
	}
	if r := rounds.Load(); r < 1 || r > logs*appends {
		t.Errorf("%d rounds for %d appends", r, logs*appends)
	}
	for _, dir := range dirs {
		l := mustOpen(t, dir, Options{})
		if l.NextOffset() != appends || l.LastIndex() != appends {
			t.Errorf("%s: next offset %d, last index %d after reopening; want %d", dir, l.NextOffset(), l.LastIndex(), appends)
		}
		for i := uint64(1); i <= appends; i++ {
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
