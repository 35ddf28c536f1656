package broker

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math"
	"testing"

	"github.com/twmb/franz-go/pkg/kerr"
)

func TestParseBatchesValidation(t *testing.T) {
	good := buildBatch(plain(3))
	edit := func(f func(b []byte), recrc bool) []byte {
		b := bytes.Clone(good)
		f(b)
		if recrc {
			fixCRC(b)
		}
		return b
	}
	put32 := func(off int, v int32) func([]byte) {
		return func(b []byte) { binary.BigEndian.PutUint32(b[off:], uint32(v)) }
	}
	put16 := func(off int, v int16) func([]byte) {
		return func(b []byte) { binary.BigEndian.PutUint16(b[off:], uint16(v)) }
	}
	tests := []struct {
		name    string
		buf     []byte
		max     int32
		want    *kerr.Error
		batches int
	}{
		{"one batch", good, 1 << 20, nil, 1},
		{"two batches", append(bytes.Clone(good), good...), 1 << 20, nil, 2},
		{"empty", nil, 1 << 20, kerr.InvalidRecord, 0},
		{"shorter than log overhead", good[:11], 1 << 20, kerr.CorruptMessage, 0},
		{"length past end", good[:len(good)-1], 1 << 20, kerr.CorruptMessage, 0},
		{"negative length", edit(put32(offBatchLength, -5), false), 1 << 20, kerr.CorruptMessage, 0},
		{"length too short for magic", edit(put32(offBatchLength, 2), false), 1 << 20, kerr.CorruptMessage, 0},
		{"magic 1", edit(func(b []byte) { b[offMagic] = 1 }, false), 1 << 20, kerr.InvalidRecord, 0},
		{"magic 0", edit(func(b []byte) { b[offMagic] = 0 }, false), 1 << 20, kerr.InvalidRecord, 0},
		{"length shorter than v2 header", func() []byte {
			b := bytes.Clone(good[:40])
			binary.BigEndian.PutUint32(b[offBatchLength:], 40-12)
			return b
		}(), 1 << 20, kerr.CorruptMessage, 0},
		{"base offset not zero", edit(func(b []byte) { binary.BigEndian.PutUint64(b, 7) }, false), 1 << 20, kerr.InvalidRecord, 0},
		{"too large", good, int32(len(good) - 1), kerr.MessageTooLarge, 0},
		{"exactly max", good, int32(len(good)), nil, 1},
		{"crc mismatch", edit(func(b []byte) { b[len(b)-1] ^= 0xff }, false), 1 << 20, kerr.CorruptMessage, 0},
		{"crc field corrupt", edit(func(b []byte) { b[offCRC] ^= 1 }, false), 1 << 20, kerr.CorruptMessage, 0},
		{"unknown codec", edit(put16(offAttributes, 5), true), 1 << 20, kerr.CorruptMessage, 0},
		{"zero records", edit(func(b []byte) { put32(offNumRecords, 0)(b); put32(offLastOffsetDelta, -1)(b) }, true), 1 << 20, kerr.InvalidRecord, 0},
		{"last offset delta mismatch", edit(put32(offLastOffsetDelta, 5), true), 1 << 20, kerr.InvalidRecord, 0},
		{"control batch", edit(put16(offAttributes, attrControl), true), 1 << 20, kerr.InvalidRecord, 0},
		{"producer id without sequence", buildBatch(idem(1, 4, 0, -1)), 1 << 20, kerr.InvalidRecord, 0},
		{"trailing bytes", append(bytes.Clone(good), 1, 2, 3), 1 << 20, kerr.CorruptMessage, 0},
		{"second batch corrupt", append(bytes.Clone(good), edit(func(b []byte) { b[70] ^= 1 }, false)...), 1 << 20, kerr.CorruptMessage, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			hs, err := parseBatches(nil, tt.buf, testLimits(tt.max))
			if tt.want == nil {
				if err != nil {
					t.Fatalf("unexpected error %v", err)
				}
				if len(hs) != tt.batches {
					t.Fatalf("got %d batches, want %d", len(hs), tt.batches)
				}
				return
			}
			var ke *kerr.Error
			if !errors.As(err, &ke) || ke != tt.want {
				t.Fatalf("got %v, want %v", err, tt.want)
			}
		})
	}
}

func TestParseBatchesHeader(t *testing.T) {
	s := idem(4, 77, 3, 10)
	s.baseTs, s.tsStep = 5000, 10
	s.opaque = kgoCompress(t, 2, buildBatch(s)[batchHeaderSize:]) // snappy
	s.attrs = 2
	one := buildBatch(s)
	buf := append(buildBatch(plain(1)), one...)
	hs, err := parseBatches(nil, buf, testLimits(1<<20))
	if err != nil {
		t.Fatal(err)
	}
	h := hs[1]
	want := batchHeader{start: len(buf) - len(one), size: len(one), attributes: 2, lastOffsetDelta: 3,
		baseTimestamp: 5000, maxTimestamp: 5000, producerID: 77, producerEpoch: 3, baseSequence: 10, numRecords: 4}
	if h != want {
		t.Fatalf("got %+v\nwant %+v", h, want)
	}
	if h.lastSequence() != 13 || h.compression() != 2 || !h.idempotent() {
		t.Fatalf("derived fields wrong: %+v", h)
	}
}

func TestIncrementSequence(t *testing.T) {
	tests := []struct{ seq, inc, want int32 }{
		{0, 0, 0},
		{0, 4, 4},
		{math.MaxInt32 - 1, 1, math.MaxInt32},
		{math.MaxInt32, 1, 0},
		{math.MaxInt32 - 2, 5, 2},
	}
	for _, tt := range tests {
		if got := incrementSequence(tt.seq, tt.inc); got != tt.want {
			t.Errorf("incrementSequence(%d, %d) = %d, want %d", tt.seq, tt.inc, got, tt.want)
		}
	}
}

func TestAssignOffsetKeepsCRC(t *testing.T) {
	b := buildBatch(plain(5))
	orig := bytes.Clone(b)
	assignOffset(b, 1234567, 0)
	if !crcOK(b) {
		t.Fatal("crc broken by assignOffset")
	}
	if got := int64(binary.BigEndian.Uint64(b)); got != 1234567 {
		t.Fatalf("base offset %d", got)
	}
	if got := int32(binary.BigEndian.Uint32(b[offLeaderEpoch:])); got != 0 {
		t.Fatalf("leader epoch %d", got)
	}
	if !bytes.Equal(b[offMagic:], orig[offMagic:]) {
		t.Fatal("bytes after the leader epoch changed")
	}
}

func TestStampLogAppendTime(t *testing.T) {
	b := buildBatch(plain(2))
	orig := bytes.Clone(b)
	stampLogAppendTime(b, 99999)
	if !crcOK(b) {
		t.Fatal("crc not recomputed")
	}
	h := readBatchHeader(b)
	if !h.logAppendTime() || h.maxTimestamp != 99999 || h.baseTimestamp != 1000 {
		t.Fatalf("header after stamp: %+v", h)
	}
	if !bytes.Equal(b[batchHeaderSize:], orig[batchHeaderSize:]) {
		t.Fatal("records changed")
	}
}

func TestScanRecords(t *testing.T) {
	s := plain(4)
	s.baseTs = 10_000
	s.tsDeltas = []int64{0, 50, 20, 70}
	b := buildBatch(s)
	var got []recordPosition
	if err := scanRecords(b, func(r recordPosition) bool { got = append(got, r); return true }); err != nil {
		t.Fatal(err)
	}
	want := []recordPosition{{0, 10_000}, {1, 10_050}, {2, 10_020}, {3, 10_070}}
	if len(got) != len(want) {
		t.Fatalf("got %v", got)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("record %d: got %+v want %+v", i, got[i], want[i])
		}
	}
	// Stops when told.
	n := 0
	scanRecords(b, func(recordPosition) bool { n++; return n < 2 })
	if n != 2 {
		t.Fatalf("scan did not stop: %d", n)
	}
	// Truncated records end with an error, not a panic.
	if err := scanRecords(b[:len(b)-3], func(recordPosition) bool { return true }); err == nil {
		t.Fatal("no error for truncated records")
	}
	// Compressed batches are not scanned.
	c := plain(1)
	c.attrs, c.opaque = 4, []byte{1, 2, 3}
	if err := scanRecords(buildBatch(c), func(recordPosition) bool { return true }); err == nil {
		t.Fatal("compressed batch scanned")
	}
}
