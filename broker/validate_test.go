package broker

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/s2"
	"github.com/klauspost/compress/snappy"
	"github.com/pierrec/lz4/v4"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// testLimits are produce limits with a 1 MiB decompressed bound.
func testLimits(maxMessageBytes int32) batchLimits {
	return batchLimits{maxMessageBytes: maxMessageBytes, maxDecompressed: 1 << 20}
}

// rawRecord encodes r with its length prefix (r.Length is ignored).
func rawRecord(r kmsg.Record) []byte {
	r.Length = 0
	body := r.AppendTo(nil)[1:] // drop the one-byte zero length
	return append(binary.AppendVarint(nil, int64(len(body))), body...)
}

// recordsBatch is a batch declaring n records whose records section is
// recs, compressed with codec by kgo (0: as is).
func recordsBatch(t testing.TB, recs []byte, n int, codec int16) []byte {
	t.Helper()
	if codec == 0 {
		s := plain(n)
		s.opaque = append([]byte{}, recs...) // non-nil even when empty
		return buildBatch(s)
	}
	return payloadBatch(kgoCompress(t, codec, recs), n, codec)
}

// payloadBatch is a batch declaring n records whose records section is the
// already compressed payload.
func payloadBatch(payload []byte, n int, codec int16) []byte {
	s := plain(n)
	s.attrs = codec
	s.opaque = append([]byte{}, payload...)
	return buildBatch(s)
}

// kgoDecompressor decompresses as a kgo consumer does.
var kgoDecompressor = kgo.DefaultDecompressor()

// kgoDecode decodes a batch the way a franz-go consumer does
// (kmsg.RecordBatch, kgo's decompressor, kmsg.Record) and returns an error
// unless every declared record decodes with offset delta == its index and
// the records use exactly the decompressed bytes.
func kgoDecode(batch []byte) error {
	var b kmsg.RecordBatch
	if err := b.ReadFrom(batch); err != nil {
		return fmt.Errorf("batch: %w", err)
	}
	raw := b.Records
	if codec := b.Attributes & 7; codec != 0 {
		var err error
		if raw, err = kgoDecompressor.Decompress(raw, kgo.CompressionCodecType(codec)); err != nil {
			return fmt.Errorf("decompress: %w", err)
		}
	}
	for i := range int(b.NumRecords) {
		l, n := binary.Varint(raw)
		if n <= 0 || l < 0 || l > int64(len(raw)-n) {
			return fmt.Errorf("record %d: length", i)
		}
		var r kmsg.Record
		if err := r.ReadFrom(raw[:n+int(l)]); err != nil {
			return fmt.Errorf("record %d: %w", i, err)
		}
		if r.OffsetDelta != int32(i) {
			return fmt.Errorf("record %d: offset delta %d", i, r.OffsetDelta)
		}
		raw = raw[n+int(l):]
	}
	if len(raw) != 0 {
		return fmt.Errorf("%d bytes after the records", len(raw))
	}
	return nil
}

// validRecordSets are record sections kgo and Kafka accept, with their
// record counts.
func validRecordSets() []struct {
	name string
	n    int
	recs []byte
} {
	var sets []struct {
		name string
		n    int
		recs []byte
	}
	add := func(name string, rs ...kmsg.Record) {
		var recs []byte
		for i, r := range rs {
			r.OffsetDelta = int32(i)
			recs = append(recs, rawRecord(r)...)
		}
		sets = append(sets, struct {
			name string
			n    int
			recs []byte
		}{name, len(rs), recs})
	}
	add("one empty record", kmsg.Record{})
	add("keys values headers", kmsg.Record{Key: []byte("k"), Value: []byte("v"), TimestampDelta64: -5,
		Headers: []kmsg.Header{{Key: "h", Value: []byte("x")}, {Key: "", Value: nil}}},
		kmsg.Record{Key: []byte{}, Value: nil, TimestampDelta64: 1 << 40})
	big := make([]kmsg.Record, 1000)
	for i := range big {
		big[i].Value = []byte(fmt.Sprint(i))
	}
	add("1000 records", big...)
	add("100 KiB value", kmsg.Record{Value: bytes.Repeat([]byte("0123456789abcdef"), 6400)})
	sets = append(sets, struct {
		name string
		n    int
		recs []byte
	}{"text", 16, textRecords(16, 1024)})
	return sets
}

func TestValidateAcceptsKgoBatches(t *testing.T) {
	for _, set := range validRecordSets() {
		for _, c := range testCodecs {
			t.Run(set.name+"/"+c.name, func(t *testing.T) {
				b := recordsBatch(t, set.recs, set.n, c.id)
				if err := kgoDecode(b); err != nil {
					t.Fatalf("test batch: %v", err)
				}
				hs, err := parseBatches(nil, b, testLimits(1<<30))
				if err != nil || len(hs) != 1 || hs[0].numRecords != int32(set.n) {
					t.Fatalf("refused a batch kgo built: %v", err)
				}
			})
		}
	}
}

// xerialFrame frames data as the Java producer does (snappy-java's
// SnappyOutputStream): header, then blocks of blockSize.
func xerialFrame(data []byte, blockSize int) []byte {
	out := append(append([]byte{}, xerialMagic...), 0, 0, 0, 1, 0, 0, 0, 1)
	for len(data) > 0 {
		n := min(blockSize, len(data))
		block := snappy.Encode(nil, data[:n])
		out = binary.BigEndian.AppendUint32(out, uint32(len(block)))
		out = append(out, block...)
		data = data[n:]
	}
	return out
}

func TestValidateXerialSnappy(t *testing.T) {
	recs := textRecords(64, 1024)
	for _, blockSize := range []int{32 << 10, 1000, 1} {
		b := payloadBatch(xerialFrame(recs, blockSize), 64, 2)
		if err := kgoDecode(b); err != nil {
			t.Fatalf("test batch: %v", err)
		}
		if _, err := parseBatches(nil, b, testLimits(1<<30)); err != nil {
			t.Fatalf("blocks of %d: %v", blockSize, err)
		}
	}
}

// wantKerrMsg checks that err wraps want and mentions substr.
func wantKerrMsg(t *testing.T, err error, want *kerr.Error, substr string) {
	t.Helper()
	wantKerr(t, err, want)
	if !strings.Contains(err.Error(), substr) {
		t.Fatalf("error %q does not mention %q", err, substr)
	}
}

// gzipOf and lz4Of compress with the libraries' stream writers.
func gzipOf(data []byte) []byte {
	var buf bytes.Buffer
	w := gzip.NewWriter(&buf)
	w.Write(data)
	w.Close()
	return buf.Bytes()
}

func lz4Of(data []byte) []byte {
	var buf bytes.Buffer
	w := lz4.NewWriter(&buf)
	w.Write(data)
	w.Close()
	return buf.Bytes()
}

func TestValidateRejectsBadRecords(t *testing.T) {
	one := rawRecord(kmsg.Record{Value: []byte("v")})
	two := append(bytes.Clone(one), rawRecord(kmsg.Record{OffsetDelta: 1, Value: []byte("w")})...)
	random := make([]byte, 100)
	for i := range random {
		random[i] = byte(i*151 + 7)
	}
	// field builds one record by hand: length, then the given body.
	field := func(body ...byte) []byte { return append(binary.AppendVarint(nil, int64(len(body))), body...) }
	// kgo decodes some of them: Kafka's broker refuses those (record
	// length, header count and key), and librdkafka the lengths below -1.
	kgoTakes := map[string]bool{"length longer than the fields": true, "key length -2": true, "negative header count": true,
		"null header key": true, "header value -2": true, "offset deltas swapped": true}
	tests := []struct {
		name   string
		recs   []byte
		n      int
		want   *kerr.Error
		substr string
	}{
		{"random bytes", random, 1, kerr.InvalidRecord, "record 0"},
		{"claims 1000 holds 1", one, 1000, kerr.InvalidRecord, "record 1: the records end"},
		{"claims 1 holds 2", two, 1, kerr.InvalidRecord, "bytes after the 1 records"},
		{"trailing byte", append(bytes.Clone(one), 0), 1, kerr.InvalidRecord, "bytes after"},
		{"offset deltas swapped", append(rawRecord(kmsg.Record{OffsetDelta: 1}), rawRecord(kmsg.Record{OffsetDelta: 0})...), 2, kerr.InvalidRecord, "offset delta"},
		{"negative length", []byte{0x01}, 1, kerr.InvalidRecord, "length -1"},
		{"length past the end", []byte{0x7e, 0, 0, 0, 1, 1, 0}, 1, kerr.InvalidRecord, "length 63"},
		{"length longer than the fields", field(0, 0, 0, 1, 1, 0, 9), 1, kerr.InvalidRecord, "fields take 6 bytes"},
		{"fields longer than the length", field(0, 0, 0, 1, 2, 'x', 0)[:6], 1, kerr.InvalidRecord, "record 0"},
		{"key length -2", field(0, 0, 0, 3, 1, 0), 1, kerr.InvalidRecord, "key length -2"},
		{"value past the record", field(0, 0, 0, 1, 20, 0), 1, kerr.InvalidRecord, "value of 10 bytes"},
		{"negative header count", field(0, 0, 0, 1, 1, 1), 1, kerr.InvalidRecord, "header count -1"},
		{"header count beyond the record", field(0, 0, 0, 1, 1, 40), 1, kerr.InvalidRecord, "header count 20"},
		{"null header key", field(0, 0, 0, 1, 1, 2, 1, 1), 1, kerr.InvalidRecord, "header key length -1"},
		{"header value -2", field(0, 0, 0, 1, 1, 2, 0, 3), 1, kerr.InvalidRecord, "header value length -2"},
		{"5-byte varint past 32 bits", field(0, 0, 0x80, 0x80, 0x80, 0x80, 0x10, 1, 1, 0), 1, kerr.InvalidRecord, "offset delta"},
		{"10-byte varlong past 64 bits", field(0, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x02, 0, 1, 1, 0), 1, kerr.InvalidRecord, "timestamp delta"},
	}
	for _, tt := range tests {
		for _, c := range testCodecs {
			t.Run(tt.name+"/"+c.name, func(t *testing.T) {
				b := recordsBatch(t, tt.recs, tt.n, c.id)
				_, err := parseBatches(nil, b, testLimits(1<<30))
				wantKerrMsg(t, err, tt.want, tt.substr)
				if kgoDecode(b) == nil && !kgoTakes[tt.name] {
					t.Fatalf("kgo decodes it: the case tests nothing")
				}
			})
		}
	}
}

func TestValidateOffsetDeltaRecordErrors(t *testing.T) {
	var recs []byte
	for _, d := range []int32{0, 5, 2, 2} {
		recs = append(recs, rawRecord(kmsg.Record{OffsetDelta: d})...)
	}
	_, err := parseBatches(nil, recordsBatch(t, recs, 4, 0), testLimits(1<<20))
	wantKerrMsg(t, err, kerr.InvalidRecord, "2 records with an offset delta")
	got := RecordErrors(err)
	if len(got) != 2 || got[0].BatchIndex != 1 || got[1].BatchIndex != 3 || !strings.Contains(got[0].Message, "offset delta 5, expected 1") {
		t.Fatalf("record errors %+v", got)
	}
}

func TestValidateRejectsBadCompression(t *testing.T) {
	recs := textRecords(4, 200)
	gz, lz := gzipOf(recs), lz4Of(recs)
	random := bytes.Repeat([]byte{0x5a, 0x17, 0xc3}, 40)
	s2Block := s2.Encode(nil, bytes.Repeat([]byte("abcdefgh12345678"), 200)) // repeat offsets: S2, not snappy
	if _, err := s2.Decode(nil, s2Block); err != nil {
		t.Fatal(err)
	}
	if _, err := snappy.DecodeStrict(nil, s2Block); err == nil {
		t.Fatal("the S2 block is plain snappy: the case tests nothing")
	}
	xerial := xerialFrame(recs, 1000)
	xerialV0 := bytes.Clone(xerial)
	xerialV0[11] = 0
	twoFrames := append(bytes.Clone(lz), lz...)
	dependent := bytes.Clone(lz)
	dependent[4] &^= 0x20
	tests := []struct {
		name   string
		codec  int16
		data   []byte
		want   *kerr.Error
		substr string
	}{
		{"gzip random", 1, random, kerr.CorruptMessage, "gzip"},
		{"gzip truncated", 1, gz[:len(gz)-10], kerr.CorruptMessage, "decompress"},
		{"gzip checksum", 1, append(bytes.Clone(gz[:len(gz)-8]), 1, 2, 3, 4, 5, 6, 7, 8), kerr.CorruptMessage, "decompress"},
		{"gzip trailing garbage", 1, append(bytes.Clone(gz), 1, 2, 3), kerr.CorruptMessage, "decompress"},
		{"gzip empty", 1, nil, kerr.CorruptMessage, "gzip"},
		{"snappy random", 2, random, kerr.CorruptMessage, "snappy"},
		{"snappy claims more than it can encode", 2, append(binary.AppendUvarint(nil, 1<<19), 0, 'x'), kerr.CorruptMessage, "claims"},
		{"snappy S2 extension", 2, s2Block, kerr.CorruptMessage, "snappy"},
		{"xerial version 0", 2, xerialV0, kerr.CorruptMessage, "xerial version 0"},
		{"xerial block past the end", 2, xerial[:len(xerial)-3], kerr.CorruptMessage, "xerial"},
		{"xerial zero block", 2, append(bytes.Clone(xerial), 0, 0, 0, 0), kerr.CorruptMessage, "xerial"},
		{"lz4 random", 3, random, kerr.CorruptMessage, "lz4"},
		{"lz4 two frames", 3, twoFrames, kerr.CorruptMessage, "after the frame"},
		{"lz4 dependent blocks", 3, dependent, kerr.CorruptMessage, "frame descriptor"},
		{"lz4 truncated", 3, lz[:len(lz)-6], kerr.CorruptMessage, "lz4"},
		{"lz4 corrupt block", 3, func() []byte { b := bytes.Clone(lz); b[len(b)/2] ^= 0xff; return b }(), kerr.CorruptMessage, "decompress"},
		{"zstd random", 4, random, kerr.CorruptMessage, "decompress"},
		{"zstd truncated", 4, func() []byte { b := kgoCompress(t, 4, recs); return b[:len(b)-5] }(), kerr.CorruptMessage, "decompress"},
		{"zstd window above 8 MiB", 4, zstdFrame(0x70, recs, 0), kerr.MessageTooLarge, "window"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := payloadBatch(tt.data, 4, tt.codec)
			_, err := parseBatches(nil, b, testLimits(1<<30))
			wantKerrMsg(t, err, tt.want, tt.substr)
		})
	}
}

// zstdFrame is a hand-made zstd frame: window descriptor wd, a raw block
// holding prefix, then zeros bytes of zeros in RLE blocks (4 bytes per
// 128 KiB: the cheapest zstd bomb), then a last raw block holding a 0
// (a record's header count).
func zstdFrame(wd byte, prefix []byte, zeros int64) []byte {
	out := []byte{0x28, 0xb5, 0x2f, 0xfd, 0x00, wd} // magic, no content size, no checksum
	block := func(typ int, size int, last bool) {
		h := uint32(size)<<3 | uint32(typ)<<1
		if last {
			h |= 1
		}
		out = append(out, byte(h), byte(h>>8), byte(h>>16))
	}
	block(0, len(prefix), false)
	out = append(out, prefix...)
	for zeros > 0 {
		n := min(zeros, 128<<10)
		block(1, int(n), false)
		out = append(out, 0)
		zeros -= n
	}
	block(0, 1, true)
	return append(out, 0)
}

// bigRecordPrefix is the start of record 0 whose value is valueLen bytes:
// everything before the value. After the value, one 0 byte (no headers)
// ends the record.
func bigRecordPrefix(valueLen int64) []byte {
	body := []byte{0, 0, 0, 1} // attributes, timestamp delta, offset delta, null key
	body = binary.AppendVarint(body, valueLen)
	length := int64(len(body)) + valueLen + 1
	return append(binary.AppendVarint(nil, length), body...)
}

// bigRecord is that record whole.
func bigRecord(valueLen int) []byte {
	r := append(bigRecordPrefix(int64(valueLen)), make([]byte, valueLen)...)
	return append(r, 0)
}

func TestValidateDecompressedBound(t *testing.T) {
	const limit = 256 << 10
	lim := batchLimits{maxMessageBytes: 1 << 30, maxDecompressed: limit}
	under, over := bigRecord(limit-100), bigRecord(limit)
	payloads := map[string]func([]byte) []byte{
		"gzip":          gzipOf,
		"snappy raw":    func(b []byte) []byte { return snappy.Encode(nil, b) },
		"snappy xerial": func(b []byte) []byte { return xerialFrame(b, 32<<10) },
		"lz4":           lz4Of,
		"zstd":          func(b []byte) []byte { return kgoCompress(t, 4, b) },
	}
	codecs := map[string]int16{"gzip": 1, "snappy raw": 2, "snappy xerial": 2, "lz4": 3, "zstd": 4}
	for name, compress := range payloads {
		t.Run(name, func(t *testing.T) {
			if _, err := parseBatches(nil, payloadBatch(compress(under), 1, codecs[name]), lim); err != nil {
				t.Fatalf("%d bytes under a %d bound: %v", len(under), limit, err)
			}
			_, err := parseBatches(nil, payloadBatch(compress(over), 1, codecs[name]), lim)
			wantKerrMsg(t, err, kerr.MessageTooLarge, "more than 262144 bytes")
		})
	}
	// A 32 KiB zstd frame that expands to 1 GiB stops at the bound.
	bomb := zstdFrame(0x38, bigRecordPrefix(1<<30), 1<<30)
	if len(bomb) > 40<<10 {
		t.Fatalf("bomb of %d bytes", len(bomb))
	}
	_, err := parseBatches(nil, payloadBatch(bomb, 1, 4), lim)
	wantKerrMsg(t, err, kerr.MessageTooLarge, "more than 262144 bytes")
	// The same frame shape within the bound is a valid record.
	if _, err := parseBatches(nil, payloadBatch(zstdFrame(0x38, bigRecordPrefix(limit-100), limit-100), 1, 4), lim); err != nil {
		t.Fatalf("hand-made zstd frame: %v", err)
	}
}

func TestValidateLogAppendTimeFromProducer(t *testing.T) {
	s := plain(3)
	s.attrs = attrLogAppendTime
	lat := buildBatch(s)
	_, err := parseBatches(nil, lat, batchLimits{maxMessageBytes: 1 << 20, maxDecompressed: 1 << 20, logAppendTime: true})
	wantKerrMsg(t, err, kerr.InvalidTimestamp, "LogAppendTime")
	if re := RecordErrors(err); len(re) != 3 || re[2].BatchIndex != 2 {
		t.Fatalf("record errors %+v", re)
	}
	// On a CreateTime topic Kafka takes it while it carries a timestamp.
	if _, err := parseBatches(nil, lat, testLimits(1<<20)); err != nil {
		t.Fatal(err)
	}
	s.baseTs = -1
	noTs := buildBatch(s)
	binary.BigEndian.PutUint64(noTs[offMaxTimestamp:], ^uint64(0))
	fixCRC(noTs)
	_, err = parseBatches(nil, noTs, testLimits(1<<20))
	wantKerrMsg(t, err, kerr.InvalidTimestamp, "LogAppendTime")
}

// TestProduceRefusesBadRecords goes through Broker.Produce: the refused
// batch leaves the log as it was.
func TestProduceRefusesBadRecords(t *testing.T) {
	b := openBroker(t, Config{MaxDecompressedBatchBytes: 1 << 20})
	createTopic(t, b, "t", 1, nil)
	mustProduce(t, b, "t", 0, codecBatch(t, textRecords(2, 50), 2, 4))
	one := rawRecord(kmsg.Record{Value: []byte("v")})
	for _, bad := range [][]byte{
		recordsBatch(t, one, 1000, 0),
		recordsBatch(t, one, 1000, 1),
		payloadBatch(zstdFrame(0x38, bigRecordPrefix(1<<30), 1<<30), 1, 4),
	} {
		if _, err := b.Produce(context.Background(), "t", 0, bad, -1, nil); err == nil {
			t.Fatal("bad batch accepted")
		}
	}
	if _, hw, _ := b.PartitionOffsets("t", 0); hw != 2 {
		t.Fatalf("high watermark %d after refused batches, want 2", hw)
	}
	// The topic's max.message.bytes raises the decompressed bound.
	createTopic(t, b, "big", 1, map[string]string{cfgMaxMessageBytes: "4194304"})
	mustProduce(t, b, "big", 0, payloadBatch(zstdFrame(0x38, bigRecordPrefix(3<<20), 3<<20), 1, 4))
}

func TestRecordStreamReadsAcrossRefills(t *testing.T) {
	// A stream that yields one byte per Read crosses every field boundary.
	recs := append(textRecords(3, 40000), rawRecord(kmsg.Record{OffsetDelta: 3, Key: []byte("k"),
		Headers: []kmsg.Header{{Key: "a", Value: []byte("b")}}})...)
	h := batchHeader{numRecords: 4}
	s := recordStream{src: iotestOneByte{bytes.NewReader(recs)}, limit: 1 << 30, space: make([]byte, 64)}
	s.buf = s.space[:0]
	if err := s.walk(&h); err != nil {
		t.Fatal(err)
	}
	if s.offset() != int64(len(recs)) {
		t.Fatalf("walked %d of %d bytes", s.offset(), len(recs))
	}
	// Exactly at the bound is fine; a byte less is not.
	for _, limit := range []int64{int64(len(recs)), int64(len(recs)) - 1} {
		s := recordStream{src: bytes.NewReader(recs), limit: limit, space: make([]byte, 100)}
		s.buf = s.space[:0]
		err := s.walk(&h)
		if (err == nil) != (limit == int64(len(recs))) {
			t.Fatalf("limit %d of %d: %v", limit, len(recs), err)
		}
	}
}

type iotestOneByte struct{ r io.Reader }

func (o iotestOneByte) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	return o.r.Read(p[:1])
}

func TestValidateUncompressedAllocatesNothing(t *testing.T) {
	b := buildBatch(plain(16))
	dst := make([]batchHeader, 0, 1)
	allocs := testing.AllocsPerRun(100, func() {
		if _, err := parseBatches(dst, b, testLimits(1<<20)); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per uncompressed batch", allocs)
	}
}

// fuzzValidate is the property every validator fuzz target checks: a batch
// is refused with a Kafka error code or is one kgo decodes completely.
func fuzzValidate(t *testing.T, codec int16, payload []byte, n uint8) {
	b := payloadBatch(payload, int(n%64)+1, codec)
	_, err := parseBatches(nil, b, testLimits(1<<30))
	if err != nil {
		var ke *kerr.Error
		if !errors.As(err, &ke) {
			t.Fatalf("error without a Kafka code: %v", err)
		}
		return
	}
	if err := kgoDecode(b); err != nil {
		t.Fatalf("accepted a batch kgo cannot decode: %v", err)
	}
}

// fuzzSeeds adds valid record sections compressed with codec, and damaged
// copies of them.
func fuzzSeeds(f *testing.F, codec int16) {
	for _, set := range validRecordSets() {
		if len(set.recs) > 20000 {
			continue
		}
		p := set.recs
		if codec != 0 {
			p = kgoCompress(f, codec, set.recs)
		}
		f.Add(p, uint8(set.n-1))
		f.Add(p[:len(p)/2], uint8(set.n-1))
		flipped := bytes.Clone(p)
		flipped[len(flipped)*2/3] ^= 0x41
		f.Add(flipped, uint8(set.n-1))
		f.Add(p, uint8(set.n)) // one record more than there is
	}
	f.Add([]byte{}, uint8(0))
}

func FuzzValidateRecordsNone(f *testing.F) {
	fuzzSeeds(f, 0)
	f.Fuzz(func(t *testing.T, p []byte, n uint8) { fuzzValidate(t, 0, p, n) })
}

func FuzzValidateRecordsGzip(f *testing.F) {
	fuzzSeeds(f, 1)
	f.Fuzz(func(t *testing.T, p []byte, n uint8) { fuzzValidate(t, 1, p, n) })
}

func FuzzValidateRecordsSnappy(f *testing.F) {
	fuzzSeeds(f, 2)
	for _, set := range validRecordSets()[:3] {
		f.Add(xerialFrame(set.recs, 100), uint8(set.n-1))
	}
	f.Fuzz(func(t *testing.T, p []byte, n uint8) { fuzzValidate(t, 2, p, n) })
}

func FuzzValidateRecordsLz4(f *testing.F) {
	fuzzSeeds(f, 3)
	f.Fuzz(func(t *testing.T, p []byte, n uint8) { fuzzValidate(t, 3, p, n) })
}

func FuzzValidateRecordsZstd(f *testing.F) {
	fuzzSeeds(f, 4)
	f.Add(zstdFrame(0x38, bigRecordPrefix(1000), 1000), uint8(0))
	f.Fuzz(func(t *testing.T, p []byte, n uint8) { fuzzValidate(t, 4, p, n) })
}

// BenchmarkParseBatches is the validation alone (header, CRC, records) of
// one 16 KiB batch of 16 JSON-like records, per codec.
//
//	go test -run '^$' -bench ParseBatches ./broker/
func BenchmarkParseBatches(b *testing.B) {
	recs := textRecords(16, 1024)
	for _, c := range testCodecs {
		b.Run("codec="+c.name, func(b *testing.B) {
			batch := codecBatch(b, recs, 16, c.id)
			dst := make([]batchHeader, 0, 1)
			lim := batchLimits{maxMessageBytes: 1 << 20, maxDecompressed: defaultMaxDecompressedBatchBytes}
			b.SetBytes(int64(len(recs)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := parseBatches(dst, batch, lim); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
