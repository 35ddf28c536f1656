package wal

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func mustOpen(t testing.TB, dir string, opts Options) *Log {
	t.Helper()
	l, err := Open(dir, opts)
	if err != nil {
		t.Fatalf("open %s: %v", dir, err)
	}
	return l
}

func payloadFor(i uint64, n int) []byte {
	p := make([]byte, n)
	for k := range p {
		p[k] = byte(i*31 + uint64(k)*7)
	}
	return p
}

// appendData appends n data entries of size bytes with one offset each and
// MaxTimestamp 1000*offset, and returns the first index.
func appendData(t testing.TB, l *Log, n, size int) uint64 {
	t.Helper()
	var first uint64
	for i := 0; i < n; i++ {
		off := l.NextOffset()
		idx, err := l.Append(Entry{Kind: KindData, Term: 1, BaseOffset: off, MaxTimestamp: 1000 * off, Payload: payloadFor(uint64(off), size)})
		if err != nil {
			t.Fatalf("append %d: %v", i, err)
		}
		if i == 0 {
			first = idx
		}
	}
	return first
}

func sameEntry(a, b Entry) bool {
	return a.Kind == b.Kind && a.Term == b.Term && a.BaseOffset == b.BaseOffset &&
		a.LastOffsetDelta == b.LastOffsetDelta && a.MaxTimestamp == b.MaxTimestamp && bytes.Equal(a.Payload, b.Payload)
}

// checkFiles compares Segments() with the segment files on disk.
func checkFiles(t testing.TB, l *Log) {
	t.Helper()
	files, err := listSegments(l.Dir())
	if err != nil {
		t.Fatal(err)
	}
	segs := l.Segments()
	if len(files) != len(segs) {
		t.Fatalf("%d segment files %v, Segments() has %d: %+v", len(files), files, len(segs), segs)
	}
	for i, s := range segs {
		fi, err := os.Stat(filepath.Join(l.Dir(), segmentName(files[i])))
		if err != nil {
			t.Fatal(err)
		}
		if s.FirstIndex != files[i] || s.Bytes != fi.Size() {
			t.Fatalf("segment %d: %+v, file %d has %d bytes", i, s, files[i], fi.Size())
		}
		if i > 0 && segs[i-1].LastIndex+1 != s.FirstIndex {
			t.Fatalf("segments not contiguous: %+v", segs)
		}
		if s.Active != (i == len(segs)-1) {
			t.Fatalf("segment %d Active=%v", i, s.Active)
		}
	}
	if segs[0].FirstIndex != l.FirstIndex() || segs[len(segs)-1].LastIndex != l.LastIndex() {
		t.Fatalf("segments %+v disagree with [%d, %d]", segs, l.FirstIndex(), l.LastIndex())
	}
}

func TestAppendReadReopen(t *testing.T) {
	dir := t.TempDir()
	opts := Options{SegmentSize: 8 << 10, Fsync: FsyncNever}
	l := mustOpen(t, dir, opts)
	if l.FirstIndex() != 1 || l.LastIndex() != 0 || l.NextOffset() != 0 || l.StartOffset() != 0 {
		t.Fatalf("new log: [%d, %d] offsets [%d, %d)", l.FirstIndex(), l.LastIndex(), l.StartOffset(), l.NextOffset())
	}
	if _, err := l.Read(1); !errors.Is(err, ErrNotFound) {
		t.Fatalf("read from empty log: %v", err)
	}
	if _, err := l.FindOffset(0); !errors.Is(err, ErrOffsetNotFound) {
		t.Fatalf("find in empty log: %v", err)
	}
	// A batch mixing kinds: only record kinds consume offsets.
	batch := []Entry{
		{Kind: KindNoop, Term: 1},
		{Kind: KindData, Term: 1, BaseOffset: 0, LastOffsetDelta: 4, MaxTimestamp: 50, Payload: []byte("five records")},
		{Kind: KindConfChange, Term: 1, Payload: []byte("add node 2")},
		{Kind: KindMeta, Term: 1, BaseOffset: 5, MaxTimestamp: 40, Payload: []byte("meta")},
	}
	first, err := l.Append(batch...)
	if err != nil || first != 1 {
		t.Fatalf("append batch: %d %v", first, err)
	}
	if l.NextOffset() != 6 || l.StartOffset() != 0 || l.LastIndex() != 4 {
		t.Fatalf("after batch: next %d start %d last %d", l.NextOffset(), l.StartOffset(), l.LastIndex())
	}
	// Offsets must continue NextOffset; a bad batch writes nothing.
	if _, err := l.Append(Entry{Kind: KindData, BaseOffset: 6}, Entry{Kind: KindData, BaseOffset: 8}); !errors.Is(err, ErrOutOfRange) {
		t.Fatalf("gap in batch: %v", err)
	}
	if _, err := l.Append(Entry{Kind: KindData, BaseOffset: 5}); !errors.Is(err, ErrOutOfRange) {
		t.Fatalf("reused offset: %v", err)
	}
	for _, bad := range []Entry{{Kind: 0}, {Kind: 9}, {Kind: KindData, BaseOffset: 6, LastOffsetDelta: -1}} {
		if _, err := l.Append(bad); !errors.Is(err, ErrInvalidEntry) {
			t.Fatalf("append %+v: %v", bad, err)
		}
	}
	if l.LastIndex() != 4 {
		t.Fatalf("failed appends changed the log: last %d", l.LastIndex())
	}
	appendData(t, l, 200, 100)
	for i, want := range batch {
		got, err := l.Read(uint64(i + 1))
		if err != nil || !sameEntry(got, want) {
			t.Fatalf("read %d: %+v %v, want %+v", i+1, got, err, want)
		}
	}
	checkFiles(t, l)
	if len(l.Segments()) < 3 {
		t.Fatalf("expected several segments, got %d", len(l.Segments()))
	}
	if idx, err := l.FindOffset(3); err != nil || idx != 2 {
		t.Fatalf("FindOffset(3) = %d %v, want 2", idx, err)
	}
	if idx, err := l.FindOffset(5); err != nil || idx != 4 {
		t.Fatalf("FindOffset(5) = %d %v, want 4", idx, err)
	}
	if idx, err := l.FindTimestamp(45); err != nil || idx != 2 {
		t.Fatalf("FindTimestamp(45) = %d %v, want 2", idx, err)
	}
	wantLast, wantNext, wantSize := l.LastIndex(), l.NextOffset(), l.Size()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); !errors.Is(err, ErrClosed) {
		t.Fatalf("second close: %v", err)
	}
	if _, err := l.Read(1); !errors.Is(err, ErrClosed) {
		t.Fatalf("read after close: %v", err)
	}
	if _, err := l.Append(Entry{Kind: KindNoop}); !errors.Is(err, ErrClosed) {
		t.Fatalf("append after close: %v", err)
	}
	l = mustOpen(t, dir, opts)
	defer l.Close()
	if l.LastIndex() != wantLast || l.NextOffset() != wantNext || l.Size() != wantSize || len(l.Repairs()) != 0 {
		t.Fatalf("reopened: last %d next %d size %d repairs %v", l.LastIndex(), l.NextOffset(), l.Size(), l.Repairs())
	}
	for i := uint64(5); i <= wantLast; i++ {
		e, err := l.Read(i)
		if err != nil || e.BaseOffset != int64(i)+1 || !bytes.Equal(e.Payload, payloadFor(uint64(e.BaseOffset), 100)) {
			t.Fatalf("read %d after reopen: %+v %v", i, e, err)
		}
	}
	checkFiles(t, l)
}

func TestStateSidecar(t *testing.T) {
	dir := t.TempDir()
	l := mustOpen(t, dir, Options{})
	if b, err := l.LoadState(); b != nil || err != nil {
		t.Fatalf("no state yet: %q %v", b, err)
	}
	for _, s := range []string{"term=1 vote=1", "term=2 vote=3 commit=99", ""} {
		if err := l.SaveState([]byte(s)); err != nil {
			t.Fatal(err)
		}
		if b, err := l.LoadState(); err != nil || string(b) != s {
			t.Fatalf("load after save %q: %q %v", s, b, err)
		}
	}
	if err := l.SaveState([]byte("final")); err != nil {
		t.Fatal(err)
	}
	l.Close()
	if _, err := os.Stat(filepath.Join(dir, stateFile+tmpSuffix)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("temp file left behind: %v", err)
	}
	// A crash that left a half-written temp file changes nothing.
	os.WriteFile(filepath.Join(dir, stateFile+tmpSuffix), []byte("garbage"), 0o640)
	l = mustOpen(t, dir, Options{})
	if b, err := l.LoadState(); err != nil || string(b) != "final" {
		t.Fatalf("after reopen: %q %v", b, err)
	}
	l.Close()
	// A damaged state file is reported, not returned.
	path := filepath.Join(dir, stateFile)
	raw, _ := os.ReadFile(path)
	raw[9] ^= 1
	os.WriteFile(path, raw, 0o640)
	l = mustOpen(t, dir, Options{})
	defer l.Close()
	if b, err := l.LoadState(); !errors.Is(err, ErrCorrupt) || b != nil {
		t.Fatalf("damaged state: %q %v", b, err)
	}
}

func TestResetBeginsAnywhere(t *testing.T) {
	dir := t.TempDir()
	opts := Options{SegmentSize: 4 << 10, Fsync: FsyncNever}
	l := mustOpen(t, dir, opts)
	appendData(t, l, 100, 200)
	if err := l.Reset(0, 5); !errors.Is(err, ErrOutOfRange) {
		t.Fatalf("reset to index 0: %v", err)
	}
	if err := l.Reset(1000, 5000); err != nil {
		t.Fatal(err)
	}
	check := func(first, last uint64, start, next int64) {
		t.Helper()
		if l.FirstIndex() != first || l.LastIndex() != last || l.StartOffset() != start || l.NextOffset() != next {
			t.Fatalf("got [%d, %d] offsets [%d, %d), want [%d, %d] [%d, %d)",
				l.FirstIndex(), l.LastIndex(), l.StartOffset(), l.NextOffset(), first, last, start, next)
		}
		checkFiles(t, l)
	}
	check(1000, 999, 5000, 5000)
	if _, err := l.Read(999); !errors.Is(err, ErrNotFound) {
		t.Fatalf("read before start: %v", err)
	}
	// The empty log keeps its position across a reopen.
	l.Close()
	l = mustOpen(t, dir, opts)
	check(1000, 999, 5000, 5000)
	if _, err := l.Append(Entry{Kind: KindData, BaseOffset: 0}); !errors.Is(err, ErrOutOfRange) {
		t.Fatalf("append at old offset: %v", err)
	}
	idx, err := l.Append(Entry{Kind: KindNoop, Term: 4}, Entry{Kind: KindData, Term: 4, BaseOffset: 5000, LastOffsetDelta: 9})
	if err != nil || idx != 1000 {
		t.Fatalf("append after reset: %d %v", idx, err)
	}
	check(1000, 1001, 5000, 5010)
	appendData(t, l, 50, 200)
	l.Close()
	l = mustOpen(t, dir, opts)
	check(1000, 1051, 5000, 5060)
	// Truncating everything away keeps NextOffset, also across a reopen.
	if err := l.TruncateFront(l.LastIndex() + 1); err != nil {
		t.Fatal(err)
	}
	check(1052, 1051, 5060, 5060)
	l.Close()
	l = mustOpen(t, dir, opts)
	check(1052, 1051, 5060, 5060)
	// A Reset interrupted after its meta write is finished by Open.
	writeAtomic(dir, metaFile, encodeMeta(meta{resetting: true, firstIndex: 7, floorOffset: 70}))
	l.Close()
	l = mustOpen(t, dir, opts)
	defer l.Close()
	check(7, 6, 70, 70)
}

func TestTruncateAndRetention(t *testing.T) {
	dir := t.TempDir()
	opts := Options{SegmentSize: 4 << 10, Fsync: FsyncNever}
	l := mustOpen(t, dir, opts)
	defer l.Close()
	appendData(t, l, 120, 300) // offsets 0..119 at indexes 1..120
	segs := l.Segments()
	if len(segs) < 5 {
		t.Fatalf("want several segments, got %d", len(segs))
	}
	if err := l.TruncateFront(200); !errors.Is(err, ErrOutOfRange) {
		t.Fatalf("truncate front past end: %v", err)
	}
	if err := l.TruncateFront(10); err != nil {
		t.Fatal(err)
	}
	if l.FirstIndex() != 10 || l.StartOffset() != 9 {
		t.Fatalf("after truncate front: first %d start %d", l.FirstIndex(), l.StartOffset())
	}
	if err := l.TruncateFront(3); err != nil || l.FirstIndex() != 10 {
		t.Fatalf("truncate front before start is a no-op: %v, first %d", err, l.FirstIndex())
	}
	if err := l.TruncateBack(100); err != nil {
		t.Fatal(err)
	}
	if l.LastIndex() != 100 || l.NextOffset() != 100 {
		t.Fatalf("after truncate back: last %d next %d", l.LastIndex(), l.NextOffset())
	}
	if err := l.TruncateBack(5); !errors.Is(err, ErrOutOfRange) {
		t.Fatalf("truncate back before start: %v", err)
	}
	checkFiles(t, l)
	appendData(t, l, 10, 300)
	segs = l.Segments()
	n := len(segs)
	if err := l.DropSegments(n + 5); err != nil {
		t.Fatal(err)
	}
	segs = l.Segments()
	if len(segs) != 1 || !segs[0].Active || l.StartOffset() != segs[0].FirstOffset && segs[0].FirstOffset >= 0 {
		t.Fatalf("drop all but active: %+v start %d", segs, l.StartOffset())
	}
	checkFiles(t, l)
	appendData(t, l, 60, 300)
	segs = l.Segments()
	total := l.Size()
	// Kafka's rule: segments go while what stays is at least the limit.
	dropped, err := l.RetainBytes(total - segs[0].Bytes - segs[1].Bytes)
	if err != nil || dropped != 2 {
		t.Fatalf("RetainBytes: dropped %d %v, segments %+v", dropped, err, segs)
	}
	if l.StartOffset() != segs[2].FirstOffset || l.FirstIndex() != segs[2].FirstIndex {
		t.Fatalf("after RetainBytes: start %d first %d, segments were %+v", l.StartOffset(), l.FirstIndex(), segs)
	}
	segs = l.Segments()
	dropped, err = l.RetainAge(segs[1].MaxTimestamp + 1)
	if err != nil || dropped != 2 {
		t.Fatalf("RetainAge: dropped %d %v, segments %+v", dropped, err, segs)
	}
	if dropped, err := l.RetainAge(1 << 62); err != nil || len(l.Segments()) != 1 {
		t.Fatalf("RetainAge keeps the active segment: dropped %d %v, %d left", dropped, err, len(l.Segments()))
	}
	checkFiles(t, l)
}

// TestInterruptedTruncation leaves the .START/.END files a crash inside
// tidwall's TruncateFront/TruncateBack would, and checks that Open finishes
// the truncation the way tidwall would.
func TestInterruptedTruncation(t *testing.T) {
	build := func(t *testing.T) (string, []SegmentInfo, []Entry) {
		dir := t.TempDir()
		l := mustOpen(t, dir, Options{SegmentSize: 2 << 10, Fsync: FsyncNever})
		appendData(t, l, 40, 200)
		segs := l.Segments()
		var all []Entry
		for i := l.FirstIndex(); i <= l.LastIndex(); i++ {
			e, _ := l.Read(i)
			all = append(all, e)
		}
		l.Close()
		return dir, segs, all
	}
	frames := func(all []Entry, from, to uint64) []byte { // entries [from, to] as stored
		var b []byte
		for i := from; i <= to; i++ {
			fr := appendFrame(nil, &all[i-1])
			b = binary.AppendUvarint(b, uint64(len(fr)))
			b = append(b, fr...)
		}
		return b
	}
	t.Run("start", func(t *testing.T) {
		dir, segs, all := build(t)
		cut := segs[2].FirstIndex + 2
		os.WriteFile(filepath.Join(dir, segmentName(cut)+".START"), frames(all, cut, segs[2].LastIndex), 0o640)
		os.WriteFile(filepath.Join(dir, segmentName(cut)+".START.TEMP"), []byte("partial"), 0o640)
		l := mustOpen(t, dir, Options{SegmentSize: 2 << 10})
		defer l.Close()
		if l.FirstIndex() != cut || l.LastIndex() != uint64(len(all)) {
			t.Fatalf("after interrupted truncate front: [%d, %d], want [%d, %d]", l.FirstIndex(), l.LastIndex(), cut, len(all))
		}
		for i := cut; i <= l.LastIndex(); i++ {
			if e, err := l.Read(i); err != nil || !sameEntry(e, all[i-1]) {
				t.Fatalf("read %d: %v", i, err)
			}
		}
		checkFiles(t, l)
	})
	t.Run("end", func(t *testing.T) {
		dir, segs, all := build(t)
		cut := segs[1].FirstIndex + 1
		os.WriteFile(filepath.Join(dir, segmentName(segs[1].FirstIndex)+".END"), frames(all, segs[1].FirstIndex, cut), 0o640)
		l := mustOpen(t, dir, Options{SegmentSize: 2 << 10})
		defer l.Close()
		if l.FirstIndex() != 1 || l.LastIndex() != cut || l.NextOffset() != int64(cut) {
			t.Fatalf("after interrupted truncate back: [%d, %d] next %d, want [1, %d]", l.FirstIndex(), l.LastIndex(), l.NextOffset(), cut)
		}
		checkFiles(t, l)
	})
}

func TestIdleReleaseAndReopen(t *testing.T) {
	dir := t.TempDir()
	l := mustOpen(t, dir, Options{IdleTimeout: 20 * time.Millisecond, Fsync: FsyncInterval, FsyncInterval: time.Millisecond})
	defer l.Close()
	appendData(t, l, 300, 1000)
	waitReleased(t, l)
	if l.DurableIndex() != l.LastIndex() {
		t.Fatalf("released log not durable: %d of %d", l.DurableIndex(), l.LastIndex())
	}
	// Index-only calls do not reopen; Read and Append do.
	if idx, err := l.FindOffset(0); err != nil || idx != 1 || !l.released() {
		t.Fatalf("FindOffset(0) on idle log: %d %v released=%v", idx, err, l.released())
	}
	e, err := l.Read(150)
	if err != nil || e.BaseOffset != 149 || !bytes.Equal(e.Payload, payloadFor(149, 1000)) {
		t.Fatalf("read after release: %+v %v", e.BaseOffset, err)
	}
	if l.released() {
		t.Fatal("Read did not reopen")
	}
	waitReleased(t, l)
	appendData(t, l, 10, 1000)
	if l.LastIndex() != 310 {
		t.Fatalf("append after release: last %d", l.LastIndex())
	}
	waitReleased(t, l)
	if err := l.TruncateBack(305); err != nil || l.LastIndex() != 305 || l.NextOffset() != 305 {
		t.Fatalf("truncate back on idle log: %v last %d next %d", err, l.LastIndex(), l.NextOffset())
	}
	checkFiles(t, l)
}

func (l *Log) released() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.tl == nil
}

func waitReleased(t testing.TB, l *Log) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !l.released() {
		if time.Now().After(deadline) {
			t.Fatal("log was not released after its idle timeout")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// heapInUse returns the live heap after a full collection.
func heapInUse() uint64 {
	var ms runtime.MemStats
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// idleHeapPerLog opens n logs of about size bytes each (1 KiB entries),
// waits until they are released and returns the heap they hold, per log.
func idleHeapPerLog(t testing.TB, root string, n, size int) (perLog uint64, index int) {
	for i := 0; i < n; i++ {
		l := mustOpen(t, filepath.Join(root, fmt.Sprint(i)), Options{Fsync: FsyncNever})
		appendData(t, l, size/1024, 1024-frameOverhead)
		l.Close()
	}
	before := heapInUse()
	logs := make([]*Log, n)
	for i := range logs {
		logs[i] = mustOpen(t, filepath.Join(root, fmt.Sprint(i)), Options{IdleTimeout: 10 * time.Millisecond})
	}
	for _, l := range logs {
		waitReleased(t, l)
	}
	after := heapInUse()
	for _, l := range logs {
		l.mu.Lock()
		index += l.idx.memSize()
		l.mu.Unlock()
	}
	runtime.KeepAlive(logs)
	for _, l := range logs {
		l.Close()
	}
	if after < before {
		return 0, index / n
	}
	return (after - before) / uint64(n), index / n
}

func TestIdleHeap(t *testing.T) {
	// 8 logs of 3 MiB: while open each holds its 3 MiB tail segment; idle,
	// only the index and bookkeeping remain.
	perLog, index := idleHeapPerLog(t, t.TempDir(), 8, 3<<20)
	t.Logf("idle log heap: %d bytes (index %d bytes)", perLog, index)
	if perLog > 1<<20 {
		t.Fatalf("idle log holds %d bytes of heap, target <= 1 MiB", perLog)
	}
}

// TestConcurrentAppendRead runs appenders (offsets assigned and appended
// under a lock, as the broker's partition does), no-op appenders calling
// Append concurrently with them and each other, readers, index lookups,
// syncs and idle releases at once; run it with -race.
func TestConcurrentAppendRead(t *testing.T) {
	for _, policy := range []FsyncPolicy{FsyncAlways, FsyncInterval, FsyncNever} {
		t.Run(fmt.Sprint("policy=", policy), func(t *testing.T) {
			dir := t.TempDir()
			opts := Options{SegmentSize: 16 << 10, Fsync: policy, FsyncInterval: time.Millisecond, IdleTimeout: time.Millisecond}
			l := mustOpen(t, dir, opts)
			var (
				offMu   sync.Mutex
				nextOff int64
				acked   sync.Map // index -> Entry
				wg      sync.WaitGroup
				stop    atomic.Bool
				errs    = make(chan error, 100)
			)
			const appenders, perAppender = 8, 60
			for a := 0; a < appenders; a++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := 0; i < perAppender; i++ {
						var e Entry
						var idx uint64
						var err error
						if i%5 == 4 {
							e = Entry{Kind: KindNoop, Term: uint64(a)}
							idx, err = l.Append(e)
						} else {
							offMu.Lock()
							e = Entry{Kind: KindData, Term: uint64(a), BaseOffset: nextOff, LastOffsetDelta: int32(i % 3),
								MaxTimestamp: int64(i), Payload: payloadFor(uint64(a*1000+i), 50+i*7)}
							nextOff = e.LastOffset() + 1
							idx, err = l.Append(e)
							offMu.Unlock()
						}
						if err != nil {
							errs <- fmt.Errorf("append: %w", err)
							return
						}
						acked.Store(idx, e)
					}
				}()
			}
			var readers sync.WaitGroup
			for r := 0; r < 4; r++ {
				readers.Add(1)
				go func() {
					defer readers.Done()
					for i := 0; !stop.Load(); i++ {
						last := l.LastIndex()
						if last == 0 {
							runtime.Gosched()
							continue
						}
						idx := 1 + uint64(i*7+r)%last
						if _, err := l.Read(idx); err != nil {
							errs <- fmt.Errorf("read %d of %d: %w", idx, last, err)
							return
						}
						if next := l.NextOffset(); next > 0 {
							if _, err := l.FindOffset(int64(i) % next); err != nil {
								errs <- fmt.Errorf("find offset: %w", err)
								return
							}
						}
						l.FindTimestamp(int64(i % 60))
						l.Segments()
						if i%50 == 0 {
							l.Sync()
						}
					}
				}()
			}
			wg.Wait()
			stop.Store(true)
			readers.Wait()
			close(errs)
			for err := range errs {
				t.Fatal(err)
			}
			n := 0
			check := func(l *Log) {
				n = 0
				acked.Range(func(k, v any) bool {
					n++
					got, err := l.Read(k.(uint64))
					if err != nil || !sameEntry(got, v.(Entry)) {
						t.Fatalf("index %d: %+v %v, want %+v", k, got, err, v)
					}
					return true
				})
			}
			check(l)
			if n != appenders*perAppender || l.LastIndex() != uint64(n) || l.NextOffset() != nextOff {
				t.Fatalf("%d acked, last index %d, next offset %d want %d", n, l.LastIndex(), l.NextOffset(), nextOff)
			}
			checkFiles(t, l)
			l.Close()
			l = mustOpen(t, dir, opts)
			defer l.Close()
			check(l)
		})
	}
}

// TestSegmentsMatchFiles checks the segment bookkeeping (which mirrors
// tidwall's cycling rule) against the files for batches of every size.
func TestSegmentsMatchFiles(t *testing.T) {
	dir := t.TempDir()
	l := mustOpen(t, dir, Options{SegmentSize: 1000, Fsync: FsyncNever})
	defer l.Close()
	for i := 1; i <= 40; i++ {
		batch := make([]Entry, i%7+1)
		for k := range batch {
			batch[k] = Entry{Kind: KindNoop, Payload: make([]byte, (i*k*37)%400)}
		}
		if _, err := l.Append(batch...); err != nil {
			t.Fatal(err)
		}
		checkFiles(t, l)
	}
	segs := l.Segments()
	if len(segs) < 10 {
		t.Fatalf("only %d segments", len(segs))
	}
	for _, s := range segs[:len(segs)-1] {
		if s.Bytes < 1000 {
			t.Fatalf("closed segment below SegmentSize: %+v", s)
		}
	}
}

// TestConcurrentRetention races appends and reads with retention, front
// truncation and idle release: a Read returns the entry that was appended
// at that index or ErrNotFound, never anything else.
func TestConcurrentRetention(t *testing.T) {
	dir := t.TempDir()
	l := mustOpen(t, dir, Options{SegmentSize: 8 << 10, Fsync: FsyncNever, IdleTimeout: time.Millisecond})
	defer l.Close()
	var (
		mu      sync.Mutex // guards next and written
		next    int64
		written = map[uint64]Entry{}
		stop    atomic.Bool
		wg      sync.WaitGroup
		errs    = make(chan error, 10)
	)
	for a := 0; a < 3; a++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 300; i++ {
				mu.Lock()
				e := Entry{Kind: KindData, Term: uint64(a), BaseOffset: next, MaxTimestamp: int64(i), Payload: payloadFor(uint64(a*1000+i), 200)}
				next++
				idx, err := l.Append(e)
				if err != nil {
					mu.Unlock()
					errs <- err
					return
				}
				written[idx] = e
				mu.Unlock()
			}
		}()
	}
	var others sync.WaitGroup
	others.Add(2)
	go func() { // reader
		defer others.Done()
		for i := uint64(0); !stop.Load(); i++ {
			first, last := l.FirstIndex(), l.LastIndex()
			if last < first {
				continue
			}
			idx := first + i%(last-first+1)
			e, err := l.Read(idx)
			if errors.Is(err, ErrNotFound) {
				continue
			}
			mu.Lock()
			want, ok := written[idx]
			mu.Unlock()
			if err != nil || ok && !sameEntry(e, want) {
				errs <- fmt.Errorf("read %d: %v", idx, err)
				return
			}
		}
	}()
	go func() { // retention
		defer others.Done()
		for i := 0; !stop.Load(); i++ {
			var err error
			switch i % 3 {
			case 0:
				_, err = l.RetainBytes(64 << 10)
			case 1:
				err = l.TruncateFront(l.FirstIndex() + 3)
			case 2:
				_, err = l.RetainAge(50)
			}
			if err != nil {
				errs <- err
				return
			}
			time.Sleep(time.Millisecond)
		}
	}()
	wg.Wait()
	stop.Store(true)
	others.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if _, err := l.RetainBytes(64 << 10); err != nil || l.FirstIndex() == 1 || l.Size() > 64<<10+8<<10 {
		t.Fatalf("retention: %v, first %d, size %d", err, l.FirstIndex(), l.Size())
	}
	for i := l.FirstIndex(); i <= l.LastIndex(); i++ {
		if e, err := l.Read(i); err != nil || !sameEntry(e, written[i]) {
			t.Fatalf("index %d: %v", i, err)
		}
	}
	if l.LastIndex() != 900 || l.NextOffset() != 900 {
		t.Fatalf("last %d next %d", l.LastIndex(), l.NextOffset())
	}
	checkFiles(t, l)
}

// TestAppendOneWrite: an Append of many entries (records and no-ops
// mixed), as a partition passes its whole produce queue, is written in
// order with one fsync; an Append whose offsets do not continue the log
// fails as a whole with ErrOutOfRange, writes and syncs nothing, and leaves
// the log usable.
func TestAppendOneWrite(t *testing.T) {
	var syncs atomic.Int64
	l := mustOpen(t, t.TempDir(), Options{OnSync: func(time.Duration) { syncs.Add(1) }})
	defer l.Close()
	appendData(t, l, 1, 10)
	var batch []Entry
	next := int64(1)
	for i := 0; i < 6; i++ {
		batch = append(batch, Entry{Kind: KindData, BaseOffset: next, LastOffsetDelta: 2, Payload: []byte{byte(i)}},
			Entry{Kind: KindNoop})
		next += 3
	}
	before := syncs.Load()
	first, err := l.Append(batch...)
	if err != nil || first != 2 {
		t.Fatalf("append of %d entries: first %d, %v", len(batch), first, err)
	}
	if n := syncs.Load() - before; n != 1 {
		t.Fatalf("%d fsyncs for one Append", n)
	}
	last := first + uint64(len(batch)) - 1
	for i, want := range batch {
		if got, err := l.Read(first + uint64(i)); err != nil || !sameEntry(got, want) {
			t.Fatalf("index %d: %+v %v, want %+v", first+uint64(i), got, err, want)
		}
	}
	if l.NextOffset() != next || l.LastIndex() != last || l.DurableIndex() != last {
		t.Fatalf("next offset %d want %d, last %d durable %d want %d", l.NextOffset(), next, l.LastIndex(), l.DurableIndex(), last)
	}

	// The third entry does not continue the offsets: nothing is written.
	before = syncs.Load()
	bad := []Entry{
		{Kind: KindData, BaseOffset: next, Payload: []byte("a")},
		{Kind: KindNoop},
		{Kind: KindData, BaseOffset: next + 100, Payload: []byte("b")},
	}
	if idx, err := l.Append(bad...); !errors.Is(err, ErrOutOfRange) {
		t.Fatalf("out-of-sequence append: %d %v", idx, err)
	}
	if l.LastIndex() != last || l.NextOffset() != next || syncs.Load() != before {
		t.Fatalf("rejected append changed the log: last %d next %d, %d fsyncs", l.LastIndex(), l.NextOffset(), syncs.Load()-before)
	}
	if idx, err := l.Append(Entry{Kind: KindData, BaseOffset: next, Payload: []byte("c")}); err != nil || idx != last+1 {
		t.Fatalf("append after a rejected one: %d %v", idx, err)
	}
	if idx, err := l.Append(); idx != 0 || err != nil {
		t.Fatalf("empty append: %d %v", idx, err)
	}
	checkFiles(t, l)
}

// TestConcurrentAppendsSerialized: appenders that read NextOffset and
// Append without a common lock race; Append serializes them and checks
// each call's offsets against the log as written, so every call either
// lands whole, continuing the offsets, or fails with ErrOutOfRange and
// writes nothing. Each call that lands gets its own fsync: nothing is
// coalesced.
func TestConcurrentAppendsSerialized(t *testing.T) {
	var syncs atomic.Int64
	dir := t.TempDir()
	opts := Options{SegmentSize: 8 << 10, OnSync: func(time.Duration) { syncs.Add(1) }}
	l := mustOpen(t, dir, opts)
	const appenders, attempts = 6, 40
	var (
		mu      sync.Mutex
		written = map[uint64][]Entry{} // first index -> the call's entries
		wg      sync.WaitGroup
		errs    = make(chan error, appenders)
	)
	for a := 0; a < appenders; a++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < attempts; i++ {
				off := l.NextOffset()
				batch := []Entry{
					{Kind: KindData, Term: uint64(a), BaseOffset: off, LastOffsetDelta: int32(i % 3), Payload: payloadFor(uint64(a*100+i), 100+i)},
					{Kind: KindNoop, Term: uint64(a)},
				}
				idx, err := l.Append(batch...)
				if errors.Is(err, ErrOutOfRange) {
					continue // another appender took this offset first
				}
				if err != nil {
					errs <- err
					return
				}
				mu.Lock()
				written[idx] = batch
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if len(written) == 0 || int64(len(written)) != syncs.Load() {
		t.Fatalf("%d appends landed with %d fsyncs, want one each", len(written), syncs.Load())
	}
	check := func(l *Log) {
		next := int64(0)
		for idx := uint64(1); idx <= l.LastIndex(); idx += 2 {
			batch, ok := written[idx]
			if !ok {
				t.Fatalf("index %d does not start an acknowledged append", idx)
			}
			for k, want := range batch {
				if got, err := l.Read(idx + uint64(k)); err != nil || !sameEntry(got, want) {
					t.Fatalf("index %d: %+v %v, want %+v", idx+uint64(k), got, err, want)
				}
			}
			if batch[0].BaseOffset != next {
				t.Fatalf("index %d: base offset %d, want %d", idx, batch[0].BaseOffset, next)
			}
			next = batch[0].LastOffset() + 1
		}
		if l.LastIndex() != uint64(2*len(written)) || l.NextOffset() != next {
			t.Fatalf("last index %d for %d appends, next offset %d want %d", l.LastIndex(), len(written), l.NextOffset(), next)
		}
	}
	check(l)
	checkFiles(t, l)
	l.Close()
	l = mustOpen(t, dir, opts)
	defer l.Close()
	check(l)
}

// TestFsyncPolicies checks what DurableIndex promises under each policy.
func TestFsyncPolicies(t *testing.T) {
	for _, policy := range []FsyncPolicy{FsyncAlways, FsyncInterval, FsyncNever} {
		l := mustOpen(t, t.TempDir(), Options{Fsync: policy, FsyncInterval: 5 * time.Millisecond, IdleTimeout: -1, SegmentSize: 4 << 10})
		appendData(t, l, 50, 300) // several segments: directory fsyncs on the way
		switch policy {
		case FsyncAlways, FsyncNever:
			if l.DurableIndex() != 50 {
				t.Fatalf("policy %d: durable %d after append", policy, l.DurableIndex())
			}
		case FsyncInterval:
			deadline := time.Now().Add(20 * time.Second)
			for l.DurableIndex() != 50 {
				if time.Now().After(deadline) {
					t.Fatalf("interval sync never caught up: durable %d", l.DurableIndex())
				}
				time.Sleep(time.Millisecond)
			}
		}
		if err := l.Sync(); err != nil || l.DurableIndex() != 50 {
			t.Fatalf("policy %d: Sync: %v durable %d", policy, err, l.DurableIndex())
		}
		if err := l.TruncateBack(20); err != nil || l.DurableIndex() != 20 {
			t.Fatalf("policy %d: durable %d after truncate back: %v", policy, l.DurableIndex(), err)
		}
		checkFiles(t, l)
		l.Close()
		if err := l.Sync(); !errors.Is(err, ErrClosed) {
			t.Fatalf("sync after close: %v", err)
		}
	}
}
