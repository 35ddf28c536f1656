package wal

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	tidwall "github.com/tidwall/wal"
)

// Benchmarks. Compare BenchmarkAppend/batch=N/fsync=always with
// BenchmarkRawTidwall/batch=N/sync: both write N 1 KiB entries with one
// WriteBatch and one fsync. A Log has one writer and does no group commit
// of its own; the caller batches (a partition passes its whole produce
// queue to one Append), which batch=16 stands for.
//
//	go test -run '^$' -bench . -benchtime 2s -count 5 ./wal/

const benchPayload = 1024

func BenchmarkAppend(b *testing.B) {
	for _, batch := range []int{1, 16} {
		for _, fs := range []struct {
			name   string
			policy FsyncPolicy
		}{{"always", FsyncAlways}, {"never", FsyncNever}} {
			b.Run(fmt.Sprintf("batch=%d/fsync=%s", batch, fs.name), func(b *testing.B) {
				benchAppend(b, batch, fs.policy)
			})
		}
	}
}

func benchAppend(b *testing.B, batch int, policy FsyncPolicy) {
	l := mustOpen(b, b.TempDir(), Options{Fsync: policy})
	defer l.Close()
	payload := make([]byte, benchPayload)
	entries := make([]Entry, batch)
	var next int64
	b.SetBytes(benchPayload)
	b.ResetTimer()
	for n := 0; n < b.N; n += batch {
		k := min(batch, b.N-n)
		for i := range k {
			entries[i] = Entry{Kind: KindData, BaseOffset: next, MaxTimestamp: next, Payload: payload}
			next++
		}
		if _, err := l.Append(entries[:k]...); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRawTidwall is the baseline: tidwall/wal alone, WriteBatch of
// batch 1 KiB entries, fsync per batch (sync) or never (nosync).
func BenchmarkRawTidwall(b *testing.B) {
	for _, batch := range []int{1, 16} {
		for _, sync := range []bool{true, false} {
			name := "nosync"
			if sync {
				name = "sync"
			}
			b.Run(fmt.Sprintf("batch=%d/%s", batch, name), func(b *testing.B) {
				tl, err := tidwall.Open(b.TempDir(), &tidwall.Options{
					NoSync: !sync, SegmentSize: defaultSegmentSize, SegmentCacheSize: 1, NoCopy: true,
				})
				if err != nil {
					b.Fatal(err)
				}
				defer tl.Close()
				payload := make([]byte, benchPayload)
				var wb tidwall.Batch
				index := uint64(1)
				b.SetBytes(benchPayload)
				b.ResetTimer()
				for n := 0; n < b.N; n += batch {
					for i := 0; i < min(batch, b.N-n); i++ {
						wb.Write(index, payload)
						index++
					}
					if err := tl.WriteBatch(&wb); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// BenchmarkPaired alternates chunks of Appends of N entries with chunks of
// raw tidwall WriteBatch of N entries, both with an fsync per call, so that
// both see the same disk: on a shared machine the fsync latency drifts too
// much between separate benchmarks for their ratio to mean anything. It
// reports both rates and their ratio.
func BenchmarkPaired(b *testing.B) {
	for _, n := range []int{1, 16} {
		b.Run(fmt.Sprintf("batch=%d/fsync", n), func(b *testing.B) {
			l := mustOpen(b, b.TempDir(), Options{Fsync: FsyncAlways})
			defer l.Close()
			tl, err := tidwall.Open(b.TempDir(), &tidwall.Options{
				SegmentSize: defaultSegmentSize, SegmentCacheSize: 1, NoCopy: true,
			})
			if err != nil {
				b.Fatal(err)
			}
			defer tl.Close()
			payload := make([]byte, benchPayload)
			var (
				next      int64
				entries   = make([]Entry, n)
				rawIndex  = uint64(1)
				wb        tidwall.Batch
				ours, raw time.Duration
			)
			runOurs := func(k int) {
				for i := 0; i < k; i += n {
					m := min(n, k-i)
					for j := range m {
						entries[j] = Entry{Kind: KindData, BaseOffset: next, Payload: payload}
						next++
					}
					if _, err := l.Append(entries[:m]...); err != nil {
						b.Fatal(err)
					}
				}
			}
			runRaw := func(k int) {
				for i := 0; i < k; i += n {
					for j := i; j < min(i+n, k); j++ {
						wb.Write(rawIndex, payload)
						rawIndex++
					}
					if err := tl.WriteBatch(&wb); err != nil {
						b.Fatal(err)
					}
				}
			}
			timed := func(f func(int), k int) time.Duration {
				start := time.Now()
				f(k)
				return time.Since(start)
			}
			chunk := 128 * n
			b.SetBytes(benchPayload)
			for done, round := 0, 0; done < b.N; done, round = done+chunk, round+1 {
				k := min(chunk, b.N-done)
				if round%2 == 0 { // alternate which goes first
					ours += timed(runOurs, k)
					raw += timed(runRaw, k)
				} else {
					raw += timed(runRaw, k)
					ours += timed(runOurs, k)
				}
			}
			mb := func(d time.Duration) float64 { return float64(b.N) * benchPayload / d.Seconds() / 1e6 }
			b.ReportMetric(mb(ours), "ours-MB/s")
			b.ReportMetric(mb(raw), "raw-MB/s")
			b.ReportMetric(raw.Seconds()/ours.Seconds(), "ours/raw")
		})
	}
}

var idleHeap struct {
	once          sync.Once
	perLog, index int
}

// BenchmarkIdleHeap reports the heap held by an open, idle (released) log
// of 3 MiB of 1 KiB entries; the work is done once and reported per run.
func BenchmarkIdleHeap(b *testing.B) {
	idleHeap.once.Do(func() {
		p, ix := idleHeapPerLog(b, b.TempDir(), 8, 3<<20)
		idleHeap.perLog, idleHeap.index = int(p), ix
	})
	for range b.N {
	}
	b.ReportMetric(float64(idleHeap.perLog), "idle-heap-B/log")
	b.ReportMetric(float64(idleHeap.index), "index-B/log")
}

var reopenLog struct {
	once    sync.Once
	dir     string
	bytes   int64
	entries uint64
	err     error
}

func benchCleanup() {
	if reopenLog.dir != "" {
		os.RemoveAll(filepath.Dir(reopenLog.dir))
	}
}

// BenchmarkReopen measures Open (tail repair scan, CRC of every entry,
// index rebuild, tidwall open) of a log of CHRONIK_BENCH_REOPEN_BYTES
// (default 256 MiB) of 1 KiB entries, built once. The files are in the page
// cache, so this is the CPU and memory-copy cost of recovery.
func BenchmarkReopen(b *testing.B) {
	size := int64(256 << 20)
	if s := os.Getenv("CHRONIK_BENCH_REOPEN_BYTES"); s != "" {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			b.Fatalf("CHRONIK_BENCH_REOPEN_BYTES: %v", err)
		}
		size = n
	}
	reopenLog.once.Do(func() {
		dir, err := os.MkdirTemp("", "chronik-wal-reopen-")
		if err != nil {
			reopenLog.err = err
			return
		}
		reopenLog.dir = filepath.Join(dir, "log")
		l, err := Open(reopenLog.dir, Options{Fsync: FsyncNever})
		if err != nil {
			reopenLog.err = err
			return
		}
		payload := make([]byte, benchPayload)
		batch := make([]Entry, 64)
		for l.Size() < size {
			for i := range batch {
				off := l.NextOffset() + int64(i)
				batch[i] = Entry{Kind: KindData, BaseOffset: off, MaxTimestamp: off, Payload: payload}
			}
			if _, err := l.Append(batch...); err != nil {
				reopenLog.err = err
				return
			}
		}
		reopenLog.bytes, reopenLog.entries = l.Size(), l.LastIndex()
		reopenLog.err = l.Close()
	})
	if reopenLog.err != nil {
		b.Fatal(reopenLog.err)
	}
	b.SetBytes(reopenLog.bytes)
	var index int
	b.ResetTimer()
	for range b.N {
		l, err := Open(reopenLog.dir, Options{IdleTimeout: -1})
		if err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		index = l.idx.memSize()
		l.Close()
		b.StartTimer()
	}
	b.StopTimer()
	perOpen := b.Elapsed() / time.Duration(b.N)
	b.ReportMetric(float64(perOpen)/float64(reopenLog.bytes)*float64(1<<30)/1e6, "ms/GiB")
	b.ReportMetric(float64(index)/float64(reopenLog.entries), "index-B/entry")
}

// BenchmarkRawFdatasync is the disk's own floor for a durable append: a
// 4 KiB write followed by fdatasync, on 1 file and on 8 files in parallel
// (8 partitions), and on 100 (100 partitions). It reports the p50/p99 latency of one write+sync, the
// figure to hold Chronik's acks=all produce latency against.
//
//	go test -run '^$' -bench RawFdatasync -benchtime 2000x ./wal/
func BenchmarkRawFdatasync(b *testing.B) {
	for _, files := range []int{1, 8, 100} {
		b.Run(fmt.Sprintf("files=%d", files), func(b *testing.B) {
			dir := b.TempDir()
			buf := make([]byte, 4096)
			lat := make([]time.Duration, b.N)
			var next atomic.Int64
			var wg sync.WaitGroup
			b.SetBytes(int64(len(buf)))
			b.ResetTimer()
			for f := range files {
				wg.Add(1)
				go func() {
					defer wg.Done()
					fh, err := os.Create(filepath.Join(dir, strconv.Itoa(f)))
					if err != nil {
						b.Error(err)
						return
					}
					defer fh.Close()
					for {
						i := next.Add(1) - 1
						if i >= int64(b.N) {
							return
						}
						start := time.Now()
						if _, err := fh.Write(buf); err != nil {
							b.Error(err)
							return
						}
						if err := fdatasync(fh); err != nil {
							b.Error(err)
							return
						}
						lat[i] = time.Since(start)
					}
				}()
			}
			wg.Wait()
			b.StopTimer()
			slices.Sort(lat)
			b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
			b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
		})
	}
}

// BenchmarkReadSequential reads a 64 MiB log of 64 KiB entries from start
// to end over and over, as a consumer catching up does: sealed segments
// come from the read cache (cached) or are loaded and verified for every
// pass (budget of one segment, as a consumer reading more than the cache
// holds sees).
func BenchmarkReadSequential(b *testing.B) {
	const (
		entrySize = 64 << 10
		entries   = 1024
	)
	l := mustOpen(b, b.TempDir(), Options{Fsync: FsyncNever})
	defer l.Close()
	for range entries {
		off := l.NextOffset()
		if _, err := l.Append(Entry{Kind: KindData, BaseOffset: off, Payload: payloadFor(uint64(off), entrySize)}); err != nil {
			b.Fatal(err)
		}
	}
	for _, bc := range []struct {
		name   string
		budget int64
	}{{"cached", 256 << 20}, {"uncached", 1}} {
		b.Run(bc.name, func(b *testing.B) {
			l.opts.ReadCache = NewReadCache(bc.budget)
			first, last := l.FirstIndex(), l.LastIndex()
			b.SetBytes(entrySize)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if _, err := l.Read(first + uint64(i)%(last-first+1)); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
