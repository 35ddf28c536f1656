package kafka

import (
	"bytes"
	"encoding/binary"
	"hash/crc32"
	"io"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/klauspost/compress/gzip"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// Bad record batches a client can build by hand (kgo will not send them):
// a correct header and CRC around records no consumer can read. Each is
// refused, the log does not move, and kgo consumers read the partition's
// valid records afterwards (issue 11, item 3).

// codecBatch wraps a records section (compressed with codec, or plain) in
// a v2 batch header declaring n records, with a correct CRC.
func codecBatch(payload []byte, n int32, codec int16) []byte {
	b := kmsg.RecordBatch{
		PartitionLeaderEpoch: -1,
		Magic:                2,
		Attributes:           codec,
		LastOffsetDelta:      n - 1,
		FirstTimestamp:       1_700_000_000_000,
		MaxTimestamp:         1_700_000_000_000,
		ProducerID:           -1,
		ProducerEpoch:        -1,
		FirstSequence:        -1,
		NumRecords:           n,
		Records:              payload,
	}
	raw := b.AppendTo(nil)
	binary.BigEndian.PutUint32(raw[8:], uint32(len(raw)-12))
	binary.BigEndian.PutUint32(raw[17:], crc32.Checksum(raw[21:], crc32c))
	return raw
}

// kgoCompressed compresses records as a kgo producer does.
func kgoCompressed(t *testing.T, codec kgo.CompressionCodec, records []byte) []byte {
	t.Helper()
	c, err := kgo.DefaultCompressor(codec)
	if err != nil {
		t.Fatal(err)
	}
	out, _ := c.Compress(new(bytes.Buffer), records)
	return bytes.Clone(out)
}

// bombPrefix is the start of one record whose value is n bytes: what comes
// before the value. One 0 byte (no headers) after the value ends it.
func bombPrefix(n int64) []byte {
	body := binary.AppendVarint([]byte{0, 0, 0, 1}, n) // attributes, timestamp and offset delta 0, null key, value length
	return append(binary.AppendVarint(nil, int64(len(body))+n+1), body...)
}

// zstdBomb is a hand-made zstd frame of one record with a value of n zero
// bytes: 4 bytes per 128 KiB of zeros in RLE blocks, 32 KiB for 1 GiB.
func zstdBomb(n int64) []byte {
	out := []byte{0x28, 0xb5, 0x2f, 0xfd, 0x00, 0x38} // magic; no content size; 128 KiB window
	block := func(typ, size int, last bool) {
		h := uint32(size)<<3 | uint32(typ)<<1
		if last {
			h |= 1
		}
		out = append(out, byte(h), byte(h>>8), byte(h>>16))
	}
	prefix := bombPrefix(n)
	block(0, len(prefix), false)
	out = append(out, prefix...)
	for left := n; left > 0; left -= 128 << 10 {
		block(1, int(min(left, 128<<10)), false)
		out = append(out, 0)
	}
	block(0, 1, true)
	return append(out, 0)
}

// gzipBomb is one record with a value of n zero bytes, gzipped as a
// stream (never held in memory whole).
func gzipBomb(t *testing.T, n int64) []byte {
	var buf bytes.Buffer
	w, _ := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	w.Write(bombPrefix(n))
	if _, err := io.CopyN(w, zeroReader{}, n); err != nil {
		t.Fatal(err)
	}
	w.Write([]byte{0})
	w.Close()
	return buf.Bytes()
}

type zeroReader struct{}

func (zeroReader) Read(p []byte) (int, error) { clear(p); return len(p), nil }

func TestProduceRefusesBadRecords(t *testing.T) {
	ctx := testContext(t)
	e := startEnv(t)
	e.createTopic("v", 1, nil)

	var produced []*kgo.Record
	produceValid := func(seed uint64) {
		for _, codec := range []kgo.CompressionCodec{kgo.NoCompression(), kgo.GzipCompression(), kgo.SnappyCompression(), kgo.Lz4Compression(), kgo.ZstdCompression()} {
			recs := makeRecords("v", 4, seed)
			produceAll(ctx, t, e.client(kgo.ProducerBatchCompression(codec)), recs)
			produced = append(produced, recs...)
			seed++
		}
	}
	produceValid(1)

	rng := rand.New(rand.NewPCG(11, 3))
	random := make([]byte, 100)
	for i := range random {
		random[i] = byte(rng.Uint32())
	}
	one := appendRecord(nil, kmsg.Record{Value: []byte("only one")})
	var swapped []byte
	for _, d := range []int32{0, 2, 1} {
		swapped = appendRecord(swapped, kmsg.Record{OffsetDelta: d, Value: []byte("v")})
	}
	const bound = 32 << 20 // the broker's default max-decompressed-batch-bytes
	const none, gz, snappy, lz4, zstd = 0, 1, 2, 3, 4
	tests := []struct {
		name    string
		batch   []byte
		want    *kerr.Error
		message string
	}{
		{"random bytes as records", codecBatch(random, 1, none), kerr.InvalidRecord, "record 0"},
		{"random bytes as gzip", codecBatch(random, 1, gz), kerr.CorruptMessage, "gzip"},
		{"random bytes as snappy", codecBatch(random, 1, snappy), kerr.CorruptMessage, "snappy"},
		{"random bytes as lz4", codecBatch(random, 1, lz4), kerr.CorruptMessage, "lz4"},
		{"random bytes as zstd", codecBatch(random, 1, zstd), kerr.CorruptMessage, "zstd"},
		{"random bytes gzipped", codecBatch(kgoCompressed(t, kgo.GzipCompression(), random), 1, gz), kerr.InvalidRecord, "record 0"},
		{"random bytes snappy-compressed", codecBatch(kgoCompressed(t, kgo.SnappyCompression(), random), 1, snappy), kerr.InvalidRecord, "record 0"},
		{"random bytes lz4-compressed", codecBatch(kgoCompressed(t, kgo.Lz4Compression(), random), 1, lz4), kerr.InvalidRecord, "record 0"},
		{"random bytes zstd-compressed", codecBatch(kgoCompressed(t, kgo.ZstdCompression(), random), 1, zstd), kerr.InvalidRecord, "record 0"},
		{"claims 1000 records, holds 1", codecBatch(one, 1000, none), kerr.InvalidRecord, "record 1: the records end"},
		{"claims 1000 records, holds 1, zstd", codecBatch(kgoCompressed(t, kgo.ZstdCompression(), one), 1000, zstd), kerr.InvalidRecord, "record 1: the records end"},
		{"offset deltas out of order", codecBatch(swapped, 3, none), kerr.InvalidRecord, "offset delta"},
		{"zstd bomb, 1 GiB", codecBatch(zstdBomb(1<<30), 1, zstd), kerr.MessageTooLarge, "max-decompressed-batch-bytes"},
		{"gzip bomb, twice the bound", codecBatch(gzipBomb(t, 2*bound), 1, gz), kerr.MessageTooLarge, "max-decompressed-batch-bytes"},
	}
	rc := e.dial()
	for _, tt := range tests {
		if len(tt.batch) > 200<<10 {
			t.Fatalf("%s: a %d-byte batch is no bomb", tt.name, len(tt.batch))
		}
		p := producePartitionResponse(t, rc.roundTrip(produceRequest("v", 0, tt.batch)))
		if p.ErrorCode != tt.want.Code {
			t.Fatalf("%s: %v, want %s", tt.name, kerr.ErrorForCode(p.ErrorCode), tt.want.Message)
		}
		if p.ErrorMessage == nil || !strings.Contains(*p.ErrorMessage, tt.message) {
			t.Fatalf("%s: error message %v does not mention %q", tt.name, p.ErrorMessage, tt.message)
		}
		if tt.name == "offset deltas out of order" {
			// Produce v8+ names the records, as Kafka's RecordErrors.
			if len(p.ErrorRecords) != 2 || p.ErrorRecords[0].RelativeOffset != 1 || p.ErrorRecords[1].RelativeOffset != 2 {
				t.Fatalf("%s: record errors %+v", tt.name, p.ErrorRecords)
			}
		}
		if _, hw, _ := e.b.PartitionOffsets("v", 0); hw != int64(len(produced)) {
			t.Fatalf("%s: log end %d, want %d", tt.name, hw, len(produced))
		}
	}
	checkAlive(t, rc)

	produceValid(100)
	got := consumeAll(ctx, t, e, "v", 1, len(produced))
	sameRecords(t, produced, got)
}
