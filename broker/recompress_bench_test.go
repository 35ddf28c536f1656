package broker

import (
	"bytes"
	"fmt"
	"testing"
)

// BenchmarkRecompress is recompression alone (after validation) of one
// 16 KiB batch of 16 JSON-like records, from each codec kgo sends to
// each topic codec. MB/s counts the records decompressed.
//
//	go test -run '^$' -bench Recompress -count 6 ./broker/
func BenchmarkRecompress(b *testing.B) {
	recs := textRecords(16, 1024)
	for _, src := range testCodecs {
		batch := codecBatch(b, recs, 16, src.id)
		for target := codecNone; target <= codecZstd; target++ {
			if int16(target) == src.id {
				continue
			}
			b.Run(fmt.Sprintf("from=%s/to=%s", src.name, codecNames[target]), func(b *testing.B) {
				lim := batchLimits{maxMessageBytes: 1 << 20, maxDecompressed: defaultMaxDecompressedBatchBytes}
				hs, err := parseBatches(nil, batch, lim)
				if err != nil {
					b.Fatal(err)
				}
				h := hs[0]
				b.SetBytes(int64(len(recs)))
				b.ReportAllocs()
				for b.Loop() {
					hs[0] = h
					if _, err := recompressBatches(hs, batch, target, codecDefaultLevel, lim); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// BenchmarkProduceRecompress is Produce of one 16 KiB batch (16 records of
// 1 KiB JSON-like text) sent uncompressed or with zstd to a topic whose
// compression.type differs, one caller on one partition, fsync off
// (compare with BenchmarkProduceCodec, where no recompression happens).
//
//	go test -run '^$' -bench ProduceRecompress -benchtime 5000x -count 6 ./broker/
func BenchmarkProduceRecompress(b *testing.B) {
	recs := textRecords(16, 1024)
	for _, tc := range []struct {
		sent  int16
		topic string
	}{{0, "zstd"}, {0, "lz4"}, {0, "snappy"}, {0, "gzip"}, {4, "uncompressed"}, {4, "lz4"}, {2, "zstd"}} {
		b.Run(fmt.Sprintf("sent=%s/topic=%s", codecNames[tc.sent], tc.topic), func(b *testing.B) {
			br := openBroker(b, Config{Fsync: FsyncNever})
			createTopic(b, br, "t", 1, map[string]string{cfgCompressionType: tc.topic})
			template := codecBatch(b, recs, 16, tc.sent)
			buf := bytes.Clone(template)
			b.SetBytes(int64(len(template)))
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				if !produceBench(b, br, 0, buf) {
					return
				}
			}
		})
	}
}
