package broker

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"hash/crc32"
	"math/rand/v2"
	"os"
	"runtime"
	"runtime/metrics"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// BenchmarkCleaner times one full cleaning of a compacted partition: about
// 1 GiB of log (1 KiB values in batches of 16 records, each record's key
// drawn at random from 100,000), every segment sealed, cleaned by the
// broker's own cleaner goroutine through the partition's replica
// (Replica.Compact -> CompactRequested), the way the leader's scheduler
// asks for it. It reports MB/s of log cleaned (the sealed segments
// rewritten, b.SetBytes), their bytes before and after, the bytes the
// cleaner read (the dirty range twice: plan, then rewrite), the peak heap
// in use while it cleaned (runtime/metrics sampled every 2 ms; it includes
// the wal's shared read cache, ReadCacheBytes, which the cleaner's reads
// fill), the offset map's size, budget and use. The log is written just
// before, so the cleaning reads it from the page cache.
//
// Building the log is not timed but takes a while: run one cleaning.
//
//	go test -run '^$' -bench '^BenchmarkCleaner$' -benchtime 1x ./broker/
//
// Knobs (environment): CHRONIK_BENCH_CLEANER_BYTES (log size; a number
// with an optional KiB, MiB or GiB suffix; default 1GiB),
// CHRONIK_BENCH_CLEANER_KEYS (default 100000), CHRONIK_BENCH_CLEANER_CODEC
// (none, gzip, snappy, lz4, zstd; default none) and
// CHRONIK_BENCH_CLEANER_DEDUPE (the offset map budget,
// --compaction-dedupe-buffer-bytes; default the broker's 32 MiB). A quick
// check that it works:
//
//	CHRONIK_BENCH_CLEANER_BYTES=64MiB CHRONIK_BENCH_CLEANER_KEYS=10000 \
//	  go test -run '^$' -bench '^BenchmarkCleaner$' -benchtime 1x ./broker/
func BenchmarkCleaner(b *testing.B) {
	cfg := cleanerBenchConfig(b)
	b.Logf("log %d MiB, %d keys, codec %s, offset map budget %d MiB",
		cfg.bytes>>20, cfg.keys, cfg.codecName, cfg.dedupe>>20)
	for range b.N {
		b.StopTimer()
		cleanerBenchOnce(b, cfg)
	}
}

// cleanerBenchKnobs is BenchmarkCleaner's configuration.
type cleanerBenchKnobs struct {
	bytes     int64
	keys      int
	codec     int16
	codecName string
	dedupe    int64
}

func cleanerBenchConfig(b *testing.B) cleanerBenchKnobs {
	cfg := cleanerBenchKnobs{bytes: 1 << 30, keys: 100_000, codecName: "none", dedupe: defaultCompactionDedupeBytes}
	var err error
	if v := os.Getenv("CHRONIK_BENCH_CLEANER_BYTES"); v != "" {
		if cfg.bytes, err = parseBenchSize(v); err != nil || cfg.bytes <= 0 {
			b.Fatalf("CHRONIK_BENCH_CLEANER_BYTES=%q: want a positive size like 64MiB", v)
		}
	}
	if v := os.Getenv("CHRONIK_BENCH_CLEANER_KEYS"); v != "" {
		if cfg.keys, err = strconv.Atoi(v); err != nil || cfg.keys <= 0 {
			b.Fatalf("CHRONIK_BENCH_CLEANER_KEYS=%q: want a positive count", v)
		}
	}
	if v := os.Getenv("CHRONIK_BENCH_CLEANER_DEDUPE"); v != "" {
		if cfg.dedupe, err = parseBenchSize(v); err != nil || cfg.dedupe <= 0 {
			b.Fatalf("CHRONIK_BENCH_CLEANER_DEDUPE=%q: want a positive size like 32MiB", v)
		}
	}
	if v := os.Getenv("CHRONIK_BENCH_CLEANER_CODEC"); v != "" {
		found := false
		for _, c := range testCodecs {
			if c.name == v {
				cfg.codec, cfg.codecName, found = c.id, c.name, true
			}
		}
		if !found {
			b.Fatalf("CHRONIK_BENCH_CLEANER_CODEC=%q: want none, gzip, snappy, lz4 or zstd", v)
		}
	}
	return cfg
}

// parseBenchSize reads a byte count with an optional KiB/MiB/GiB suffix.
func parseBenchSize(s string) (int64, error) {
	mult := int64(1)
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}} {
		if strings.HasSuffix(s, u.suffix) {
			s, mult = strings.TrimSuffix(s, u.suffix), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	return n * mult, err
}

// cleanerBenchOnce builds a fresh compacted partition (timer stopped),
// times one cleaning of all of it, checks the result and reports.
func cleanerBenchOnce(b *testing.B, cfg cleanerBenchKnobs) {
	dir, err := os.MkdirTemp("", "chronik-cleaner-bench-")
	if err != nil {
		b.Fatal(err)
	}
	defer os.RemoveAll(dir)
	logs := &lockedBuffer{}
	br, err := Open(Config{
		DataDir: dir,
		Fsync:   FsyncNever,
		// The scheduler never runs on its own: the benchmark asks for
		// the one cleaning it times.
		CompactionCheckInterval: time.Hour,
		CompactionDedupeBytes:   cfg.dedupe,
		Logger:                  zerolog.New(logs).Level(zerolog.InfoLevel),
	})
	if err != nil {
		b.Fatal(err)
	}
	defer br.Close()
	createTopic(b, br, "t", 1, map[string]string{cfgCleanupPolicy: "compact"})
	p, err := br.partition("t", 0)
	if err != nil {
		b.Fatal(err)
	}

	built := time.Now()
	records, distinct := writeCleanerLog(b, br, cfg)
	// Seal the active segment, as segment.ms would, so that the whole
	// log is cleanable.
	if err := p.log.Roll(); err != nil {
		b.Fatal(err)
	}
	_, hw, _ := br.PartitionOffsets("t", 0)
	req, ok := p.compactionDue(time.Now().UnixMilli())
	if !ok || req.UpTo != hw {
		b.Fatalf("scheduler: due %v up to %d, want due up to the high watermark %d", ok, req.UpTo, hw)
	}
	b.Logf("built %d records (%d distinct keys) in %v", records, distinct, time.Since(built).Round(time.Millisecond))

	c := br.cleaner
	runs, failures, read := c.runs.Load(), c.failures.Load(), c.bytesRead.Load()
	runtime.GC()
	before := heapInUse()
	sampler := startHeapSampler(2 * time.Millisecond)

	b.StartTimer()
	if err := p.repl().Compact(context.Background(), req); err != nil {
		b.Fatal(err)
	}
	deadline := time.Now().Add(time.Hour)
	for c.runs.Load() == runs && c.failures.Load() == failures {
		if time.Now().After(deadline) {
			b.Fatal("no cleaning within an hour")
		}
		time.Sleep(time.Millisecond)
	}
	b.StopTimer()
	peak := sampler.stop()
	if c.failures.Load() != failures {
		b.Fatalf("cleaning failed:\n%s", logs.String())
	}

	st := compactedLogLine(b, logs.String())
	if st.UpTo != hw {
		b.Fatalf("cleaned up to %d, want %d (the offset map filled: raise CHRONIK_BENCH_CLEANER_DEDUPE)", st.UpTo, hw)
	}
	if kept := countRecords(b, br, hw); kept != distinct {
		b.Fatalf("%d records after cleaning, want %d (one per key)", kept, distinct)
	}
	b.SetBytes(st.BytesBefore)
	const mib = 1 << 20
	b.ReportMetric(float64(st.BytesBefore)/mib, "before-MiB")
	b.ReportMetric(float64(st.BytesAfter)/mib, "after-MiB")
	b.ReportMetric(float64(st.Segments), "segments")
	b.ReportMetric(float64(c.bytesRead.Load()-read)/mib, "read-MiB")
	b.ReportMetric(float64(before)/mib, "heap-before-MiB")
	b.ReportMetric(float64(peak)/mib, "peak-heap-MiB")
	b.ReportMetric(float64(len(c.m.slots))/mib, "map-MiB")
	b.ReportMetric(float64(c.m.len()), "map-keys")
	b.ReportMetric(float64(c.m.capacity()), "map-cap-keys")
	b.ReportMetric(float64(records), "records")
	b.Logf("cleaned %d segments up to offset %d: %d -> %d bytes in %s; peak heap %.1f MiB (%.1f MiB before); offset map %.1f MiB (budget %.1f MiB) holds %d of %d keys",
		st.Segments, st.UpTo, st.BytesBefore, st.BytesAfter, st.Took, float64(peak)/mib, float64(before)/mib,
		float64(len(c.m.slots))/mib, float64(cfg.dedupe)/mib, c.m.len(), c.m.capacity())
}

// writeCleanerLog produces about cfg.bytes of keyed 1 KiB records in
// batches of 16 through the broker's produce path, several in flight, and
// returns how many records and distinct keys it wrote.
func writeCleanerLog(b *testing.B, br *Broker, cfg cleanerBenchKnobs) (records int64, distinct int) {
	// A few dozen distinct JSON-like values: compressible the way
	// application records are.
	values := make([][]byte, 64)
	for i := range values {
		var v []byte
		for j := 0; len(v) < 1024; j++ {
			v = fmt.Appendf(v, `{"id":%d,"user":"u%07d","event":"click","score":%d},`, i*1000+j, (i*7919+j*104729)%9999991, (i*31+j*17)%997)
		}
		values[i] = v[:1024]
	}
	var err error
	seen := make([]bool, cfg.keys)
	rng := rand.New(rand.NewPCG(1, 2))
	handles := make(chan *ProduceHandle, 8)
	var (
		wg      sync.WaitGroup
		failure error
	)
	wg.Go(func() {
		for h := range handles {
			if _, err := h.Wait(); err != nil && failure == nil {
				failure = err
			}
		}
	})
	var comp kgo.Compressor
	if cfg.codec != 0 {
		// One compressor for the whole log, as a client keeps one.
		for _, c := range testCodecs {
			if c.id == cfg.codec {
				if comp, err = kgo.DefaultCompressor(c.codec); err != nil {
					b.Fatal(err)
				}
			}
		}
	}
	var (
		recs []byte
		zbuf bytes.Buffer
	)
	now := time.Now().UnixMilli()
	for written := int64(0); written < cfg.bytes; {
		recs = recs[:0]
		for i := range 16 {
			k := rng.IntN(cfg.keys)
			if !seen[k] {
				seen[k] = true
				distinct++
			}
			recs = append(recs, rawRecord(kmsg.Record{TimestampDelta64: int64(i), OffsetDelta: int32(i),
				Key: fmt.Appendf(nil, "key-%08d", k), Value: values[rng.IntN(len(values))]})...)
		}
		section := recs
		if comp != nil {
			zbuf.Reset()
			out, used := comp.Compress(&zbuf, recs)
			if int16(used) != cfg.codec {
				b.Fatalf("kgo compressed with codec %d, want %d", used, cfg.codec)
			}
			section = out
		}
		batch := (&kmsg.RecordBatch{PartitionLeaderEpoch: -1, Magic: 2, Attributes: cfg.codec, LastOffsetDelta: 15,
			FirstTimestamp: now, MaxTimestamp: now + 15, ProducerID: -1, ProducerEpoch: -1, FirstSequence: -1,
			NumRecords: 16, Records: section}).AppendTo(nil)
		binary.BigEndian.PutUint32(batch[offBatchLength:], uint32(len(batch)-logOverhead))
		binary.BigEndian.PutUint32(batch[offCRC:], crc32.Checksum(batch[offAttributes:], crc32c))
		written += int64(len(batch))
		records += 16
		handles <- br.ProduceStart(context.Background(), "t", 0, batch, -1, nil)
	}
	close(handles)
	wg.Wait()
	if failure != nil {
		b.Fatalf("produce: %v", failure)
	}
	return records, distinct
}

// countRecords counts the records in partition t-0 below hw (empty
// batches a cleaning keeps count none).
func countRecords(b testing.TB, br *Broker, hw int64) int {
	n := 0
	for off := int64(0); off < hw; {
		res, err := br.Fetch("t", 0, off, 8<<20, 0)
		if err != nil {
			b.Fatal(err)
		}
		batches := splitStored(b, res.Records)
		if len(batches) == 0 {
			b.Fatalf("fetch at %d below the high watermark %d returned nothing", off, hw)
		}
		for _, s := range batches {
			n += int(int32(binary.BigEndian.Uint32(s.bytes[offNumRecords:])))
			off = s.last + 1
		}
	}
	return n
}

// compactedStats is the cleaner's "compacted" log line.
type compactedStats struct {
	UpTo        int64   `json:"up_to"`
	BytesBefore int64   `json:"bytes_before"`
	BytesAfter  int64   `json:"bytes_after"`
	Segments    int     `json:"segments"`
	TookMs      float64 `json:"took"` // zerolog's default: milliseconds
	Took        time.Duration
}

func compactedLogLine(b *testing.B, logs string) compactedStats {
	for line := range strings.Lines(logs) {
		if !strings.Contains(line, `"message":"compacted"`) {
			continue
		}
		var st compactedStats
		if err := json.Unmarshal([]byte(line), &st); err != nil {
			b.Fatalf("cleaner log line %q: %v", line, err)
		}
		st.Took = time.Duration(st.TookMs * float64(time.Millisecond)).Round(time.Millisecond)
		return st
	}
	b.Fatalf("no compacted line in the broker's log:\n%s", logs)
	return compactedStats{}
}

// heapMetrics are the runtime/metrics whose sum is MemStats.HeapInuse;
// reading them does not stop the world.
var heapMetrics = []string{"/memory/classes/heap/objects:bytes", "/memory/classes/heap/unused:bytes"}

func heapInUse() uint64 {
	s := make([]metrics.Sample, len(heapMetrics))
	for i, name := range heapMetrics {
		s[i].Name = name
	}
	metrics.Read(s)
	var n uint64
	for _, m := range s {
		n += m.Value.Uint64()
	}
	return n
}

// heapSampler records the highest heapInUse seen until stop.
type heapSampler struct {
	done chan struct{}
	peak chan uint64
}

func startHeapSampler(every time.Duration) *heapSampler {
	h := &heapSampler{done: make(chan struct{}), peak: make(chan uint64, 1)}
	go func() {
		t := time.NewTicker(every)
		defer t.Stop()
		peak := heapInUse()
		for {
			select {
			case <-t.C:
				peak = max(peak, heapInUse())
			case <-h.done:
				h.peak <- max(peak, heapInUse())
				return
			}
		}
	}()
	return h
}

func (h *heapSampler) stop() uint64 {
	close(h.done)
	return <-h.peak
}

// lockedBuffer is a log sink safe for the broker's goroutines.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}
