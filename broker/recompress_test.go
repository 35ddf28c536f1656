package broker

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// decodedRecords returns a batch's records section decompressed, as a kgo
// consumer reads it.
func decodedRecords(t testing.TB, batch []byte) []byte {
	t.Helper()
	if err := kgoDecode(batch); err != nil {
		t.Fatalf("kgo cannot read the batch: %v", err)
	}
	var b kmsg.RecordBatch
	if err := b.ReadFrom(batch); err != nil {
		t.Fatal(err)
	}
	if c := b.Attributes & 7; c != 0 {
		out, err := kgoDecompressor.Decompress(b.Records, kgo.CompressionCodecType(c))
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	return b.Records
}

// sameHeader reports the header fields recompression must keep.
func sameHeader(a, b []byte) error {
	x, y := readBatchHeader(a), readBatchHeader(b)
	x.size, y.size = 0, 0
	x.attributes &^= attrCompressionMask
	y.attributes &^= attrCompressionMask
	if x != y {
		return fmt.Errorf("header %+v became %+v", x, y)
	}
	return nil
}

// TestRecompressEveryCodecPair: a batch sent with each codec to a topic
// of each codec is kept byte for byte when they match and otherwise
// re-encoded into a batch that validates (CRC, Kafka's frame rules), that
// kgo reads back to the same records, with every header field but the
// codec, length and CRC unchanged.
func TestRecompressEveryCodecPair(t *testing.T) {
	recs := textRecords(20, 700)
	for _, src := range testCodecs {
		s := idem(20, 7, 3, 100)
		s.attrs = attrTransactional | src.id
		s.baseTs, s.tsStep = 1_700_000_000_000, 5
		s.opaque = recs
		if src.id != 0 {
			s.opaque = kgoCompress(t, src.id, recs)
		}
		in := buildBatch(s)
		for target := codecNone; target <= codecZstd; target++ {
			t.Run(fmt.Sprintf("%s->%s", src.name, codecNames[target]), func(t *testing.T) {
				lim := testLimits(1 << 20)
				hs, err := parseBatches(nil, in, lim)
				if err != nil {
					t.Fatal(err)
				}
				out, err := recompressBatches(hs, in, target, codecDefaultLevel, lim)
				if err != nil {
					t.Fatal(err)
				}
				if int16(target) == src.id {
					if &out[0] != &in[0] || !bytes.Equal(out, in) {
						t.Fatal("a batch in the topic's codec was not kept as sent")
					}
					return
				}
				if hs[0].start != 0 || hs[0].size != len(out) || hs[0].compression() != target {
					t.Fatalf("header after recompression %+v, %d bytes", hs[0], len(out))
				}
				if _, err := parseBatches(nil, out, lim); err != nil {
					t.Fatalf("recompressed batch does not validate: %v", err)
				}
				if err := sameHeader(in, out); err != nil {
					t.Fatal(err)
				}
				if got := decodedRecords(t, out); !bytes.Equal(got, recs) {
					t.Fatal("records changed")
				}
				if target == codecSnappy && !bytes.HasPrefix(out[batchHeaderSize:], xerialMagic) {
					t.Fatal("snappy is not xerial-framed, as Kafka writes it")
				}
			})
		}
	}
}

// TestRecompressLevels: every accepted level of every codec encodes.
func TestRecompressLevels(t *testing.T) {
	recs := textRecords(8, 500)
	in := codecBatch(t, recs, 8, 0)
	for _, tc := range []struct {
		codec  int8
		levels []int
	}{
		{codecGzip, []int{-1, 1, 9}},
		{codecLz4, []int{1, 2, 3, 9, 17}},
		{codecZstd, []int{-131072, -1, 1, 3, 22}},
	} {
		for _, level := range tc.levels {
			lim := testLimits(1 << 20)
			hs, _ := parseBatches(nil, in, lim)
			out, err := recompressBatches(hs, in, tc.codec, level, lim)
			if err != nil {
				t.Fatalf("%s level %d: %v", codecNames[tc.codec], level, err)
			}
			if got := decodedRecords(t, out); !bytes.Equal(got, recs) {
				t.Fatalf("%s level %d: records changed", codecNames[tc.codec], level)
			}
		}
	}
}

// TestRecompressSeveralBatches: mixed codecs in one request; the ones in
// the topic's codec stay as sent, positions are rewritten.
func TestRecompressSeveralBatches(t *testing.T) {
	recs := textRecords(4, 300)
	a, b, c := codecBatch(t, recs, 4, 4), codecBatch(t, recs, 4, 0), codecBatch(t, recs, 4, 1)
	in := append(append(bytes.Clone(a), b...), c...)
	lim := testLimits(1 << 20)
	hs, err := parseBatches(nil, in, lim)
	if err != nil {
		t.Fatal(err)
	}
	out, err := recompressBatches(hs, in, codecZstd, codecDefaultLevel, lim)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(out[:len(a)], a) {
		t.Fatal("zstd batch not kept as sent")
	}
	pos := 0
	for i, h := range hs {
		if h.start != pos || h.compression() != codecZstd {
			t.Fatalf("batch %d: %+v at %d", i, h, pos)
		}
		if got := decodedRecords(t, out[h.start:h.start+h.size]); !bytes.Equal(got, recs) {
			t.Fatalf("batch %d: records changed", i)
		}
		pos += h.size
	}
	if pos != len(out) {
		t.Fatalf("batches cover %d of %d bytes", pos, len(out))
	}
}

// TestRecompressTooLarge: a batch that fits max.message.bytes compressed
// but not once stored uncompressed is MESSAGE_TOO_LARGE, as Kafka checks
// the size of a batch it rebuilt.
func TestRecompressTooLarge(t *testing.T) {
	recs := bigRecord(200 << 10) // zeros: compresses to almost nothing
	in := payloadBatch(kgoCompress(t, 4, recs), 1, 4)
	lim := batchLimits{maxMessageBytes: 64 << 10, maxDecompressed: 1 << 20}
	hs, err := parseBatches(nil, in, lim)
	if err != nil {
		t.Fatal(err)
	}
	_, err = recompressBatches(hs, in, codecNone, codecDefaultLevel, lim)
	wantKerrMsg(t, err, kerr.MessageTooLarge, "max.message.bytes")
}

// TestRecompressBomb: recompression bypassing validation still stops a
// decompression bomb at the bound, with a clear error.
func TestRecompressBomb(t *testing.T) {
	bomb := zstdFrame(0x38, bigRecordPrefix(1<<30), 1<<30)
	in := payloadBatch(bomb, 1, 4)
	h := readBatchHeader(in)
	h.size = len(in)
	for target := codecNone; target <= codecGzip; target++ {
		_, err := recompressBatches([]batchHeader{h}, in, target, codecDefaultLevel, batchLimits{maxMessageBytes: math.MaxInt32, maxDecompressed: 1 << 20})
		if !errors.Is(err, kerr.MessageTooLarge) {
			t.Fatalf("to %s: %v", codecNames[target], err)
		}
	}
}

func TestTimestampBounds(t *testing.T) {
	now := time.Now().UnixMilli()
	lim := func(before, after int64) batchLimits {
		tc := topicConfig{maxMessageBytes: 1 << 20, timestampBefore: before, timestampAfter: after}
		return (&Broker{cfg: Config{MaxDecompressedBatchBytes: 1 << 20}}).produceLimits(&tc)
	}
	batch := func(codec int16, base int64, deltas ...int64) []byte {
		s := plain(len(deltas))
		s.baseTs, s.tsDeltas = base, deltas
		b := buildBatch(s)
		if codec == 0 {
			return b
		}
		s.attrs, s.opaque = codec, kgoCompress(t, codec, b[batchHeaderSize:])
		return buildBatch(s)
	}
	hour := int64(time.Hour / time.Millisecond)
	for _, codec := range []int16{0, 2, 4} {
		// In range.
		if _, err := parseBatches(nil, batch(codec, now, 0, -hour/2, hour/2), lim(hour, hour)); err != nil {
			t.Fatalf("codec %d in range: %v", codec, err)
		}
		// Record 1 too old, record 2 too new.
		_, err := parseBatches(nil, batch(codec, now, 0, -2*hour, 2*hour), lim(hour, hour))
		wantKerrMsg(t, err, kerr.InvalidTimestamp, "out of range")
		if re := RecordErrors(err); len(re) != 2 || re[0].BatchIndex != 1 || re[1].BatchIndex != 2 {
			t.Fatalf("codec %d: record errors %+v", codec, re)
		}
		// Unbounded by default.
		if _, err := parseBatches(nil, batch(codec, now, 0, -100*hour, 100*hour), lim(math.MaxInt64, math.MaxInt64)); err != nil {
			t.Fatalf("codec %d unbounded: %v", codec, err)
		}
		// Only one side bounded.
		if _, err := parseBatches(nil, batch(codec, now, -100*hour), lim(math.MaxInt64, 0)); err != nil {
			t.Fatalf("codec %d old record, after=0: %v", codec, err)
		}
		_, err = parseBatches(nil, batch(codec, now, hour), lim(math.MaxInt64, 0))
		wantKerrMsg(t, err, kerr.InvalidTimestamp, "out of range")
	}
	// A record without a timestamp (-1) is not checked, as in Kafka.
	if _, err := parseBatches(nil, batch(0, -1, 0), lim(0, 0)); err != nil {
		t.Fatalf("no timestamp: %v", err)
	}
	// Extreme base timestamps do not overflow into acceptance.
	for _, base := range []int64{math.MinInt64, math.MaxInt64} {
		_, err := parseBatches(nil, batch(0, base, 0), lim(hour, hour))
		wantKerrMsg(t, err, kerr.InvalidTimestamp, "out of range")
	}
	// A LogAppendTime topic does not check producers' timestamps.
	tc := topicConfig{maxMessageBytes: 1 << 20, timestampBefore: 0, timestampAfter: 0, logAppendTime: true}
	if l := (&Broker{}).produceLimits(&tc); l.tsBounded {
		t.Fatal("LogAppendTime topic bounds timestamps")
	}
}

// FuzzRecompress: whatever validates recompresses to every codec into a
// batch that validates again and holds the same records; nothing panics,
// and a hostile stream stays within the bounds.
func FuzzRecompress(f *testing.F) {
	recs := textRecords(3, 100)
	for _, c := range testCodecs {
		f.Add(codecBatch(f, recs, 3, c.id), uint8(c.id))
	}
	f.Add(payloadBatch(xerialFrame(recs, 64), 3, 2), uint8(0))
	f.Add(payloadBatch(zstdFrame(0x38, bigRecordPrefix(300<<10), 300<<10), 1, 4), uint8(1))
	f.Fuzz(func(t *testing.T, b []byte, target uint8) {
		lim := batchLimits{maxMessageBytes: 1 << 20, maxDecompressed: 256 << 10}
		hs, err := parseBatches(nil, b, lim)
		if err != nil {
			return
		}
		tc := int8(target % 5)
		orig := make([][]byte, len(hs))
		for i, h := range hs {
			orig[i] = recordsOf(t, b[h.start:h.start+h.size])
		}
		out, err := recompressBatches(hs, b, tc, codecDefaultLevel, lim)
		if err != nil {
			if !errors.Is(err, kerr.MessageTooLarge) {
				t.Fatalf("a validated batch fails to recompress: %v", err)
			}
			return
		}
		hs2, err := parseBatches(nil, out, lim)
		if err != nil {
			t.Fatalf("recompressed batches do not validate: %v", err)
		}
		if len(hs2) != len(hs) {
			t.Fatalf("%d batches became %d", len(hs), len(hs2))
		}
		for i := range hs2 {
			if hs2[i] != hs[i] || hs[i].compression() != tc {
				t.Fatalf("batch %d: %+v, parsed again %+v", i, hs[i], hs2[i])
			}
			if got := recordsOf(t, out[hs[i].start:hs[i].start+hs[i].size]); !bytes.Equal(got, orig[i]) {
				t.Fatalf("batch %d: records changed", i)
			}
		}
	})
}

// recordsOf decompresses a validated batch's records with the broker's
// own readers.
func recordsOf(t testing.TB, batch []byte) []byte {
	h := readBatchHeader(batch)
	recs := batch[batchHeaderSize:]
	if h.compression() == codecNone {
		return recs
	}
	src, done, err := openRecords(&h, recs, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	defer done()
	out, err := io.ReadAll(io.LimitReader(src, 1<<20+1))
	if err != nil {
		t.Fatal(err)
	}
	return out
}
