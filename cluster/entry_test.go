package cluster

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"math"
	"testing"

	"go.etcd.io/raft/v3/raftpb"

	"github.com/chronik-stream/chronik/broker"
	"github.com/chronik-stream/chronik/wal"
)

var testCRC = crc32.MakeTable(crc32.Castagnoli)

// Test-only: the few Kafka v2 batch header fields testBatch sets. The
// cluster layer itself never reads a batch (the broker owns the format);
// these only make realistic payloads.
const (
	tbOffLength          = 8
	tbOffLeaderEpoch     = 12
	tbOffMagic           = 16
	tbOffLastOffsetDelta = 23
	tbOffMaxTimestamp    = 35
	tbHeaderSize         = 61
	tbLogOverhead        = 12
)

// testBatch builds a Kafka v2 record batch header with records records
// (their bytes are filler: nothing here parses records), max timestamp ts,
// base offset 0, leader epoch -1 (as a producer sends it) and a valid CRC,
// padded to size bytes.
func testBatch(records int32, ts int64, size int) []byte {
	size = max(size, tbHeaderSize)
	b := make([]byte, size)
	be := binary.BigEndian
	be.PutUint32(b[tbOffLength:], uint32(size-tbLogOverhead))
	be.PutUint32(b[tbOffLeaderEpoch:], ^uint32(0))
	b[tbOffMagic] = 2
	be.PutUint32(b[tbOffLastOffsetDelta:], uint32(records-1))
	be.PutUint64(b[27:], uint64(ts-1)) // base timestamp
	be.PutUint64(b[tbOffMaxTimestamp:], uint64(ts))
	be.PutUint64(b[43:], ^uint64(0)) // producer id -1
	be.PutUint32(b[57:], uint32(records))
	for i := tbHeaderSize; i < size; i++ {
		b[i] = byte(i * 7)
	}
	be.PutUint32(b[17:], crc32.Checksum(b[21:], testCRC))
	return b
}

// testBatchesEntry is the wal entry a leader's partition would propose for
// the batches at base: offsets and max timestamp from their headers.
func testBatchesEntry(base int64, batches ...[]byte) wal.Entry {
	p := bytes.Join(batches, nil)
	var records int64
	maxTs := int64(math.MinInt64)
	for _, b := range batches {
		records += int64(int32(binary.BigEndian.Uint32(b[tbOffLastOffsetDelta:]))) + 1
		maxTs = max(maxTs, int64(binary.BigEndian.Uint64(b[tbOffMaxTimestamp:])))
	}
	return wal.Entry{Kind: wal.KindData, BaseOffset: base, LastOffsetDelta: int32(records - 1), MaxTimestamp: maxTs, Payload: p}
}

func TestDataEncodeDecode(t *testing.T) {
	batch := testBatch(3, 1000, 100)
	data := testBatchesEntry(42, batch)
	header := []byte{byte(wal.KindData), 0, 0, 0, 0, 0, 0, 0, 42, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 3, 0xe8}
	tests := []struct {
		name string
		in   wal.Entry
		want wal.Entry // DecodeData of the encoding
		data []byte    // EncodeEntry's result
	}{
		{"noop", wal.Entry{Kind: wal.KindNoop}, wal.Entry{Kind: wal.KindNoop, MaxTimestamp: -1}, nil},
		{"noop ignores payload", wal.Entry{Kind: wal.KindNoop, Payload: []byte("x")}, wal.Entry{Kind: wal.KindNoop, MaxTimestamp: -1}, nil},
		{"data carries its offsets", data, data, append(header, batch...)},
		{"meta", wal.Entry{Kind: wal.KindMeta, Payload: []byte(`{"type":"topic"}`)},
			wal.Entry{Kind: wal.KindMeta, MaxTimestamp: -1, Payload: []byte(`{"type":"topic"}`)},
			append([]byte{byte(wal.KindMeta)}, `{"type":"topic"}`...)},
		{"empty meta", wal.Entry{Kind: wal.KindMeta}, wal.Entry{Kind: wal.KindMeta, MaxTimestamp: -1}, []byte{byte(wal.KindMeta)}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := EncodeEntry(tc.in)
			if !bytes.Equal(d, tc.data) {
				t.Fatalf("EncodeEntry = %x, want %x", d, tc.data)
			}
			if tc.in.Kind != wal.KindData && !bytes.Equal(EncodeData(tc.in.Kind, tc.in.Payload), tc.data) {
				t.Fatalf("EncodeData differs from EncodeEntry")
			}
			prefix := []byte("prefix")
			a := AppendEntry(append([]byte(nil), prefix...), tc.in)
			if !bytes.Equal(a, append(prefix, tc.data...)) {
				t.Fatalf("AppendEntry = %x", a)
			}
			got, err := DecodeData(d)
			if err != nil {
				t.Fatal(err)
			}
			if got.Kind != tc.want.Kind || got.BaseOffset != tc.want.BaseOffset || got.LastOffsetDelta != tc.want.LastOffsetDelta ||
				got.MaxTimestamp != tc.want.MaxTimestamp || !bytes.Equal(got.Payload, tc.want.Payload) {
				t.Fatalf("DecodeData = %+v, want %+v", got, tc.want)
			}
		})
	}
	negDelta := EncodeEntry(wal.Entry{Kind: wal.KindData, BaseOffset: 1, LastOffsetDelta: -1, Payload: batch})
	negBase := EncodeEntry(wal.Entry{Kind: wal.KindData, BaseOffset: -5, Payload: batch})
	overflow := EncodeEntry(wal.Entry{Kind: wal.KindData, BaseOffset: math.MaxInt64 - 1, LastOffsetDelta: 5, Payload: batch})
	noBatch := header
	for _, bad := range [][]byte{{0}, {byte(wal.KindNoop)}, {byte(wal.KindConfChange), 1}, {6, 1, 2}, {255},
		{byte(wal.KindData), 0, 0}, noBatch, negDelta, negBase, overflow} {
		if _, err := DecodeData(bad); !errors.Is(err, ErrBadData) {
			t.Errorf("DecodeData(%x): %v, want ErrBadData", bad, err)
		}
	}
}

func TestEntryConversion(t *testing.T) {
	cc := raftpb.ConfChange{Type: raftpb.ConfChangeAddNode, NodeID: 7, ID: 3}
	ccData, _ := cc.Marshal()
	cc2 := raftpb.ConfChangeV2{Changes: []raftpb.ConfChangeSingle{{Type: raftpb.ConfChangeAddLearnerNode, NodeID: 9}}}
	cc2Data, _ := cc2.Marshal()
	ccAsV2 := cc.AsV2()
	v1as2, _ := ccAsV2.Marshal()
	batch := testBatch(2, 5, 80)
	data := EncodeEntry(testBatchesEntry(7, batch))
	tests := []struct {
		name    string
		in      raftpb.Entry
		kind    wal.Kind
		payload []byte
		back    raftpb.Entry // FromWalEntry of the stored entry
	}{
		{"noop", raftpb.Entry{Index: 4, Term: 2}, wal.KindNoop, nil, raftpb.Entry{Index: 4, Term: 2}},
		{"data", raftpb.Entry{Index: 5, Term: 2, Data: data}, wal.KindData, batch,
			raftpb.Entry{Index: 5, Term: 2, Data: data}},
		{"meta", raftpb.Entry{Index: 6, Term: 3, Data: EncodeData(wal.KindMeta, []byte("m"))}, wal.KindMeta, []byte("m"),
			raftpb.Entry{Index: 6, Term: 3, Data: EncodeData(wal.KindMeta, []byte("m"))}},
		{"conf change v2", raftpb.Entry{Index: 7, Term: 3, Type: raftpb.EntryConfChangeV2, Data: cc2Data}, wal.KindConfChange, cc2Data,
			raftpb.Entry{Index: 7, Term: 3, Type: raftpb.EntryConfChangeV2, Data: cc2Data}},
		{"conf change v1 stored as v2", raftpb.Entry{Index: 8, Term: 4, Type: raftpb.EntryConfChange, Data: ccData}, wal.KindConfChange, v1as2,
			raftpb.Entry{Index: 8, Term: 4, Type: raftpb.EntryConfChangeV2, Data: v1as2}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			we, err := ToWalEntry(tc.in)
			if err != nil {
				t.Fatal(err)
			}
			if we.Kind != tc.kind || we.Term != tc.in.Term || !bytes.Equal(we.Payload, tc.payload) {
				t.Fatalf("ToWalEntry = %+v", we)
			}
			back := FromWalEntry(tc.in.Index, we)
			if back.Index != tc.back.Index || back.Term != tc.back.Term || back.Type != tc.back.Type || !bytes.Equal(back.Data, tc.back.Data) {
				t.Fatalf("FromWalEntry = %+v, want %+v", back, tc.back)
			}
			if len(we.Payload) > 0 && len(back.Data) > 0 && &back.Data[len(back.Data)-1] == &we.Payload[len(we.Payload)-1] {
				t.Fatal("FromWalEntry Data aliases the wal payload")
			}
		})
	}
	// A standalone entry (term 0) is reported as term 1.
	if e := FromWalEntry(3, wal.Entry{Kind: wal.KindData, Payload: batch}); e.Term != 1 {
		t.Fatalf("term 0 reported as %d", e.Term)
	}
	for _, bad := range []raftpb.Entry{
		{Data: []byte{9}},
		{Type: raftpb.EntryConfChange, Data: []byte{0xff, 0xff}},
		{Type: raftpb.EntryType(7)},
	} {
		if _, err := ToWalEntry(bad); !errors.Is(err, ErrBadData) {
			t.Errorf("ToWalEntry(%+v): %v, want ErrBadData", bad, err)
		}
	}
}

func FuzzDecodeData(f *testing.F) {
	f.Add([]byte{})
	f.Add(EncodeEntry(testBatchesEntry(10, testBatch(2, 10, 70))))
	f.Add(EncodeEntry(testBatchesEntry(0, testBatch(2, 10, 70), testBatch(1, 3, 61))))
	f.Add(EncodeData(wal.KindMeta, []byte("meta")))
	f.Add(EncodeLogStart(77))
	f.Add(EncodeCompact(broker.CompactRequest{UpTo: 1000, Now: 1700000000000, DeleteRetentionMs: 86400000}))
	f.Add([]byte{byte(wal.KindConfChange), 1, 2})
	f.Add([]byte{byte(wal.KindData), 0, 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		we, err := DecodeData(data)
		if err != nil {
			return
		}
		if re := EncodeEntry(we); !bytes.Equal(re, data) {
			t.Fatalf("re-encoded %x, was %x", re, data)
		}
		e, err := ToWalEntry(raftpb.Entry{Index: 1, Term: 2, Data: data})
		if err != nil {
			t.Fatal(err)
		}
		if e.Kind == wal.KindData && (e.BaseOffset < 0 || e.LastOffsetDelta < 0 || e.LastOffset() < e.BaseOffset || len(e.Payload) == 0) {
			t.Fatalf("accepted data entry %+v", e)
		}
		if back := FromWalEntry(1, e); !bytes.Equal(back.Data, data) {
			t.Fatalf("FromWalEntry(ToWalEntry) = %x, was %x", back.Data, data)
		}
		re := raftpb.Entry{Data: data}
		if req, ok := decodeCompact(&re); ok {
			if req.UpTo < 0 || req.Now < 0 || req.DeleteRetentionMs < 0 || !bytes.Equal(EncodeCompact(req), data) {
				t.Fatalf("decodeCompact(%x) = %+v", data, req)
			}
		}
	})
}

// A compaction request round-trips through raft entry Data; anything
// else, or a negative field, is not one.
func TestCompactEntry(t *testing.T) {
	req := broker.CompactRequest{UpTo: 1 << 40, Now: 1765000000000, DeleteRetentionMs: 0}
	e := raftpb.Entry{Index: 5, Term: 2, Data: EncodeCompact(req)}
	if got, ok := decodeCompact(&e); !ok || got != req {
		t.Fatalf("decodeCompact = %+v, %v; want %+v", got, ok, req)
	}
	if _, ok := decodeLogStart(&e); ok {
		t.Fatal("a compaction request decoded as a log start move")
	}
	for _, bad := range []raftpb.Entry{
		{Data: EncodeLogStart(5)},
		{Data: e.Data[:25]},
		{Data: EncodeCompact(broker.CompactRequest{UpTo: -1})},
		{Data: EncodeCompact(broker.CompactRequest{DeleteRetentionMs: -5})},
		{Type: raftpb.EntryConfChangeV2, Data: e.Data},
	} {
		if got, ok := decodeCompact(&bad); ok {
			t.Fatalf("decodeCompact(%x) = %+v, true; want false", bad.Data, got)
		}
	}
}

// A log start move round-trips through raft entry Data and the wal, and
// occupies no Kafka offset.
func TestLogStartEntry(t *testing.T) {
	e := raftpb.Entry{Index: 2, Term: 1, Data: EncodeLogStart(900)}
	if off, ok := decodeLogStart(&e); !ok || off != 900 {
		t.Fatalf("decodeLogStart = %d, %v; want 900, true", off, ok)
	}
	for _, bad := range []raftpb.Entry{
		{Data: EncodeData(wal.KindMeta, e.Data[1:])},
		{Data: e.Data[:9]},
		{Data: EncodeLogStart(-1)},
		{Type: raftpb.EntryConfChangeV2, Data: e.Data},
	} {
		if off, ok := decodeLogStart(&bad); ok {
			t.Fatalf("decodeLogStart(%x) = %d, true; want false", bad.Data, off)
		}
	}
	_, s := openTestStorage(t, t.TempDir(), wal.Options{Fsync: wal.FsyncNever})
	d, _ := stamped(dataEnt(1, 1, testBatch(3, 1000, 10)), 0)
	mustAppend(t, s, d, e, metaEnt(3, 1))
	if base, last, err := s.Offsets(2); err != nil || base != 3 || last != 2 {
		t.Fatalf("Offsets(2) = %d, %d, %v; want 3, 2 (no records)", base, last, err)
	}
	if base, _, err := s.Offsets(3); err != nil || base != 3 {
		t.Fatalf("Offsets(3) = %d, %v; want 3", base, err)
	}
	s.Applied(3) // read back from the wal, not the tail
	got, err := s.Entries(2, 3, math.MaxUint64)
	if err != nil || len(got) != 1 {
		t.Fatal(got, err)
	}
	if off, ok := decodeLogStart(&got[0]); !ok || off != 900 {
		t.Fatalf("read back: decodeLogStart = %d, %v; want 900, true", off, ok)
	}
}
