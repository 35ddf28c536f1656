package broker

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"runtime"
	"sync/atomic"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"
)

// This file uses only what the broker package had before produce
// validated records (Broker.Produce and the batch helpers), so that the
// benchmark runs on the code before and after the change and benchstat can
// compare the two.

// testCodecs are Kafka's compression codecs by attribute id, compressed
// the way franz-go (kgo) compresses produced batches.
var testCodecs = []struct {
	name  string
	id    int16
	codec kgo.CompressionCodec
}{
	{"none", 0, kgo.NoCompression()},
	{"gzip", 1, kgo.GzipCompression()},
	{"snappy", 2, kgo.SnappyCompression()},
	{"lz4", 3, kgo.Lz4Compression()},
	{"zstd", 4, kgo.ZstdCompression()},
}

// kgoCompress compresses b with codec id as a kgo producer does.
func kgoCompress(t testing.TB, id int16, b []byte) []byte {
	t.Helper()
	for _, c := range testCodecs {
		if c.id != id {
			continue
		}
		comp, err := kgo.DefaultCompressor(c.codec)
		if err != nil {
			t.Fatal(err)
		}
		out, used := comp.Compress(new(bytes.Buffer), b)
		if int16(used) != id {
			t.Fatalf("kgo compressed with codec %d, want %d", used, id)
		}
		return bytes.Clone(out)
	}
	t.Fatalf("no codec %d", id)
	return nil
}

// textRecords encodes n records whose values are size bytes of JSON-like
// text that compresses as real payloads do (a few times, not a thousand).
func textRecords(n, size int) []byte {
	var recs []byte
	for i := range n {
		var v []byte
		for j := 0; len(v) < size; j++ {
			v = fmt.Appendf(v, `{"id":%d,"user":"u%07d","event":"click","ts":%d,"score":%d.%03d},`,
				i*1000+j, (i*7919+j*104729)%9999991, 1700000000000+int64(i*j), (i*31+j*17)%997, (i+j)%1000)
		}
		recs = encodeRecord(recs, 0, int32(i), v[:size])
	}
	return recs
}

// codecBatch is a batch of n records (recs, uncompressed) with them
// compressed by codec id.
func codecBatch(t testing.TB, recs []byte, n int, id int16) []byte {
	t.Helper()
	s := plain(n)
	s.opaque = recs
	if id != 0 {
		s.attrs = id
		s.opaque = kgoCompress(t, id, recs)
	}
	return buildBatch(s)
}

// produceBench produces buf to partition p of topic t, as a client
// would send it (base offset 0: Produce wrote the assigned one into buf).
// It reports failure with b.Error, which callers on any goroutine may use.
func produceBench(b *testing.B, br *Broker, p int32, buf []byte) bool {
	binary.BigEndian.PutUint64(buf, 0)
	if _, err := br.Produce(context.Background(), "t", p, buf, -1, nil); err != nil {
		b.Error(err)
		return false
	}
	return true
}

// BenchmarkProduceCodec measures Produce of one 16 KiB batch (16 records of
// 1 KiB JSON-like text) per op, for each codec: one caller on 1 partition
// and at least 8 concurrent callers spread over 8 partitions. Fsync is off so that the CPU cost of
// validating the records is not hidden behind the disk. MB/s counts the
// batch bytes as sent (compressed).
//
//	go test -run '^$' -bench ProduceCodec -benchtime 5000x -count 6 ./broker/
func BenchmarkProduceCodec(b *testing.B) {
	recs := textRecords(16, 1024)
	for _, c := range testCodecs {
		for _, partitions := range []int{1, 8} {
			b.Run(fmt.Sprintf("codec=%s/partitions=%d", c.name, partitions), func(b *testing.B) {
				br := openBroker(b, Config{Fsync: FsyncNever})
				createTopic(b, br, "t", int32(partitions), nil)
				template := codecBatch(b, recs, 16, c.id)
				b.SetBytes(int64(len(template)))
				b.ReportAllocs()
				if partitions == 1 {
					buf := bytes.Clone(template)
					b.ResetTimer()
					for range b.N {
						if !produceBench(b, br, 0, buf) {
							return
						}
					}
					return
				}
				// RunParallel starts parallelism*GOMAXPROCS callers: at
				// least one per partition.
				procs := runtime.GOMAXPROCS(0)
				b.SetParallelism((partitions + procs - 1) / procs)
				var caller atomic.Int32
				b.ResetTimer()
				b.RunParallel(func(pb *testing.PB) {
					p := (caller.Add(1) - 1) % int32(partitions)
					buf := bytes.Clone(template)
					for pb.Next() {
						if !produceBench(b, br, p, buf) {
							return
						}
					}
				})
			})
		}
	}
}
