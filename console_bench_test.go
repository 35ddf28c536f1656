package main

import (
	"context"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"runtime"
	"testing"

	"github.com/rs/zerolog"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/chronik-stream/chronik/broker"
)

// BenchmarkConsolePage: the message browser answering one page (50
// records, as the console asks by default) from a partition of 1 GiB:
// from an offset in the middle, from a timestamp in the middle, from the
// end, and with a key filter that matches nothing (the scan bound). The
// "browse" case pages forward 200 times and reports the largest heap seen
// (peak-heap-MiB): the console holds a page, not the partition.
//
//	go test -run '^$' -bench BenchmarkConsolePage -benchtime=1x .
//
// Writing the partition takes a while (about 1 GiB to disk); the pages
// are what is timed.
func BenchmarkConsolePage(b *testing.B) {
	const (
		valueSize       = 1000
		recordsPerBatch = 1000
		batches         = 1100 // ~1.03 GiB of values
		baseTs          = int64(1_700_000_000_000)
	)
	// Default segment size (4 MiB) and caches: the read cache (256 MiB)
	// and tail buffers are the broker's, shared, bounded by their settings;
	// they are in peak-heap-MiB too.
	br, err := broker.Open(broker.Config{DataDir: b.TempDir(), Logger: zerolog.Nop(), Fsync: broker.FsyncNever})
	if err != nil {
		b.Fatal(err)
	}
	defer br.Close()
	if _, err := br.CreateTopic("big", 1, -1, nil, false); err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	for i := 0; i < batches; i++ {
		batch := benchBatch(baseTs+int64(i*recordsPerBatch), recordsPerBatch, valueSize, i)
		if _, err := br.Produce(ctx, "big", 0, batch, 1, nil); err != nil {
			b.Fatalf("produce batch %d: %v", i, err)
		}
	}
	logStart, hw, _, err := br.FetchOffsets("big", 0)
	if err != nil || hw != batches*recordsPerBatch {
		b.Fatalf("offsets %d..%d, %v", logStart, hw, err)
	}
	_, parts := br.LogDirs()
	b.Logf("partition big-0: %d records, %d MiB", hw, parts[0].Size>>20)

	page := func(b *testing.B, pq pageQuery) *ConsolePage {
		pg, err := readPage(br, "big", 0, pq)
		if err != nil {
			b.Fatal(err)
		}
		return pg
	}
	b.Run("offset-middle", func(b *testing.B) {
		for b.Loop() {
			if pg := page(b, pageQuery{from: "offset", offset: hw / 2, limit: 50}); len(pg.Records) != 50 {
				b.Fatalf("%d records", len(pg.Records))
			}
		}
	})
	b.Run("timestamp-middle", func(b *testing.B) {
		for b.Loop() {
			if pg := page(b, pageQuery{from: "timestamp", timestamp: baseTs + hw/2 + 17, limit: 50}); len(pg.Records) != 50 || pg.Records[0].Offset != hw/2+17 {
				b.Fatalf("%d records from %d", len(pg.Records), pg.StartOffset)
			}
		}
	})
	b.Run("end", func(b *testing.B) {
		for b.Loop() {
			if pg := page(b, pageQuery{from: "end", limit: 50}); len(pg.Records) != 50 || pg.NextOffset != hw {
				b.Fatalf("%d records to %d", len(pg.Records), pg.NextOffset)
			}
		}
	})
	b.Run("key-filter-no-match", func(b *testing.B) {
		for b.Loop() {
			if pg := page(b, pageQuery{from: "offset", offset: hw / 4, limit: 50, key: []byte("absent")}); pg.Stopped != "scan" {
				b.Fatalf("stopped: %s", pg.Stopped)
			}
		}
	})
	b.Run("browse", func(b *testing.B) {
		var peak uint64
		var ms runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&ms)
		before := ms.HeapInuse
		for b.Loop() {
			next := hw / 3
			for range 200 {
				pg := page(b, pageQuery{from: "offset", offset: next, limit: 50})
				next = pg.NextOffset
				runtime.ReadMemStats(&ms)
				peak = max(peak, ms.HeapInuse)
			}
		}
		b.ReportMetric(float64(peak)/(1<<20), "peak-heap-MiB")
		runtime.GC()
		runtime.ReadMemStats(&ms)
		// Heap kept after 200 pages: flat means about 0.
		b.ReportMetric((float64(ms.HeapInuse)-float64(before))/(1<<20), "heap-growth-MiB")
	})
}

// benchBatch is an uncompressed v2 batch of n records with keys
// "key-<batch>-<i>", values of size bytes and timestamps ts, ts+1, ...
func benchBatch(ts int64, n, size, batch int) []byte {
	value := make([]byte, size)
	for i := range value {
		value[i] = 'a' + byte(i%26)
	}
	var recs []byte
	for i := 0; i < n; i++ {
		r := kmsg.Record{TimestampDelta64: int64(i), OffsetDelta: int32(i), Key: []byte(fmt.Sprintf("key-%d-%d", batch, i)), Value: value}
		body := r.AppendTo(nil)[1:]
		recs = binary.AppendVarint(recs, int64(len(body)))
		recs = append(recs, body...)
	}
	rb := kmsg.RecordBatch{PartitionLeaderEpoch: -1, Magic: 2, LastOffsetDelta: int32(n - 1), FirstTimestamp: ts,
		MaxTimestamp: ts + int64(n-1), ProducerID: -1, ProducerEpoch: -1, FirstSequence: -1, NumRecords: int32(n),
		Records: recs, Length: int32(49 + len(recs))}
	raw := rb.AppendTo(nil)
	binary.BigEndian.PutUint32(raw[17:], crc32.Checksum(raw[21:], crc32.MakeTable(crc32.Castagnoli)))
	return raw
}
