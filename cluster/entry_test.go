package cluster

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"math"
	"testing"

	"go.etcd.io/raft/v3/raftpb"

	"github.com/chronik-stream/chronik/wal"
)

var testCRC = crc32.MakeTable(crc32.Castagnoli)

// testBatch builds a Kafka v2 record batch header with records records
// (their bytes are filler: nothing here parses records), max timestamp ts,
// base offset 0, leader epoch -1 (as a producer sends it) and a valid CRC,
// padded to size bytes.
func testBatch(records int32, ts int64, size int) []byte {
	size = max(size, batchHeaderSize)
	b := make([]byte, size)
	be := binary.BigEndian
	be.PutUint32(b[batchOffLength:], uint32(size-batchLogOverhead))
	be.PutUint32(b[batchOffLeaderEpoch:], ^uint32(0))
	b[batchOffMagic] = 2
	be.PutUint32(b[batchOffLastOffsetDelta:], uint32(records-1))
	be.PutUint64(b[27:], uint64(ts-1)) // base timestamp
	be.PutUint64(b[batchOffMaxTimestamp:], uint64(ts))
	be.PutUint64(b[43:], ^uint64(0)) // producer id -1
	be.PutUint32(b[57:], uint32(records))
	for i := batchHeaderSize; i < size; i++ {
		b[i] = byte(i * 7)
	}
	be.PutUint32(b[17:], crc32.Checksum(b[21:], testCRC))
	return b
}

// batchFields returns base offset and leader epoch of each batch in p, and
// checks every CRC.
func batchFields(t testing.TB, p []byte) (bases []int64, epochs []int32) {
	t.Helper()
	be := binary.BigEndian
	for pos := 0; pos < len(p); {
		b := p[pos:]
		n := int(be.Uint32(b[batchOffLength:])) + batchLogOverhead
		if got, want := crc32.Checksum(b[21:n], testCRC), be.Uint32(b[17:]); got != want {
			t.Fatalf("batch at %d: crc %08x, header says %08x", pos, got, want)
		}
		bases = append(bases, int64(be.Uint64(b[batchOffBaseOffset:])))
		epochs = append(epochs, int32(be.Uint32(b[batchOffLeaderEpoch:])))
		pos += n
	}
	return bases, epochs
}

func TestDataEncodeDecode(t *testing.T) {
	batch := testBatch(3, 1000, 100)
	tests := []struct {
		name    string
		kind    wal.Kind
		payload []byte
		data    []byte // EncodeData's result
	}{
		{"noop", wal.KindNoop, nil, nil},
		{"noop ignores payload", wal.KindNoop, []byte("x"), nil},
		{"data", wal.KindData, batch, append([]byte{byte(wal.KindData)}, batch...)},
		{"meta", wal.KindMeta, []byte(`{"type":"topic"}`), append([]byte{byte(wal.KindMeta)}, `{"type":"topic"}`...)},
		{"empty meta", wal.KindMeta, nil, []byte{byte(wal.KindMeta)}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := EncodeData(tc.kind, tc.payload)
			if !bytes.Equal(d, tc.data) {
				t.Fatalf("EncodeData = %x, want %x", d, tc.data)
			}
			prefix := []byte("prefix")
			a := AppendData(append([]byte(nil), prefix...), tc.kind, tc.payload)
			if !bytes.Equal(a, append(prefix, tc.data...)) {
				t.Fatalf("AppendData = %x", a)
			}
			k, p, err := DecodeData(d)
			if err != nil {
				t.Fatal(err)
			}
			wantP := tc.payload
			if tc.kind == wal.KindNoop {
				wantP = nil
			}
			if k != tc.kind || !bytes.Equal(p, wantP) {
				t.Fatalf("DecodeData = %d %x", k, p)
			}
		})
	}
	for _, bad := range [][]byte{{0}, {byte(wal.KindNoop)}, {byte(wal.KindConfChange), 1}, {6, 1, 2}, {255}} {
		if _, _, err := DecodeData(bad); !errors.Is(err, ErrBadData) {
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
	tests := []struct {
		name    string
		in      raftpb.Entry
		kind    wal.Kind
		payload []byte
		back    raftpb.Entry // FromWalEntry of the stored entry
	}{
		{"noop", raftpb.Entry{Index: 4, Term: 2}, wal.KindNoop, nil, raftpb.Entry{Index: 4, Term: 2}},
		{"data", raftpb.Entry{Index: 5, Term: 2, Data: EncodeData(wal.KindData, batch)}, wal.KindData, batch,
			raftpb.Entry{Index: 5, Term: 2, Data: EncodeData(wal.KindData, batch)}},
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

func TestDataScanAndStampBatches(t *testing.T) {
	two := append(testBatch(3, 100, 90), testBatch(5, 50, 70)...)
	tests := []struct {
		name    string
		payload []byte
		delta   int32
		maxTs   int64
		ok      bool
	}{
		{"one batch", testBatch(1, 7, 61), 0, 7, true},
		{"two batches", two, 7, 100, true},
		{"empty", nil, 0, 0, false},
		{"short", testBatch(1, 7, 61)[:60], 0, 0, false},
		{"trailing bytes", append(testBatch(1, 7, 61), 1, 2, 3), 0, 0, false},
		{"bad magic", func() []byte { b := testBatch(1, 7, 61); b[batchOffMagic] = 1; return b }(), 0, 0, false},
		{"length past end", func() []byte { b := testBatch(1, 7, 61); b[batchOffLength+3]++; return b }(), 0, 0, false},
		{"negative length", func() []byte { b := testBatch(1, 7, 61); b[batchOffLength] = 0x80; return b }(), 0, 0, false},
		{"negative delta", func() []byte { b := testBatch(1, 7, 61); b[batchOffLastOffsetDelta] = 0x80; return b }(), 0, 0, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			delta, ts, err := scanBatches(tc.payload)
			if !tc.ok {
				if !errors.Is(err, ErrBadData) {
					t.Fatalf("scanBatches: %v, want ErrBadData", err)
				}
				return
			}
			if err != nil || delta != tc.delta || ts != tc.maxTs {
				t.Fatalf("scanBatches = %d %d %v", delta, ts, err)
			}
			p := append([]byte(nil), tc.payload...)
			stampBatches(p, 1000, 9)
			bases, epochs := batchFields(t, p) // CRCs still valid
			want := int64(1000)
			for i := range bases {
				if bases[i] != want || epochs[i] != 9 {
					t.Fatalf("batch %d: base %d epoch %d, want %d 9", i, bases[i], epochs[i], want)
				}
				want = bases[i] + int64(int32(binary.BigEndian.Uint32(batchAt(p, i)[batchOffLastOffsetDelta:]))) + 1
			}
			if !batchesStamped(p, 1000, 9) || batchesStamped(p, 1001, 9) || batchesStamped(tc.payload, 1000, 9) {
				t.Fatal("batchesStamped")
			}
			// An epoch already stamped (by the proposing leader, or 0 by a
			// standalone node) is kept; only the base offset moves.
			stampBatches(p, 2000, 11)
			if bases, epochs := batchFields(t, p); bases[0] != 2000 || epochs[0] != 9 {
				t.Fatalf("restamped batch: base %d epoch %d, want 2000 9", bases[0], epochs[0])
			}
		})
	}
}

// batchAt is the i-th batch of p.
func batchAt(p []byte, i int) []byte {
	pos := 0
	for ; i > 0; i-- {
		pos += int(binary.BigEndian.Uint32(p[pos+batchOffLength:])) + batchLogOverhead
	}
	return p[pos:]
}

func FuzzDecodeData(f *testing.F) {
	f.Add([]byte{})
	f.Add(EncodeData(wal.KindData, testBatch(2, 10, 70)))
	f.Add(EncodeData(wal.KindData, append(testBatch(2, 10, 70), testBatch(1, 3, 61)...)))
	f.Add(EncodeData(wal.KindMeta, []byte("meta")))
	f.Add([]byte{byte(wal.KindConfChange), 1, 2})
	f.Add([]byte{byte(wal.KindData), 0, 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		k, p, err := DecodeData(data)
		if err != nil {
			return
		}
		if re := AppendData(nil, k, p); !bytes.Equal(re, data) {
			t.Fatalf("re-encoded %x, was %x", re, data)
		}
		e, err := ToWalEntry(raftpb.Entry{Index: 1, Term: 2, Data: data})
		if err != nil {
			t.Fatal(err)
		}
		if k != wal.KindData {
			return
		}
		delta, _, err := scanBatches(e.Payload)
		if err != nil {
			return
		}
		q := append([]byte(nil), e.Payload...)
		stampBatches(q, 42, 2)
		if !batchesStamped(q, 42, 2) {
			t.Fatal("stamped batches do not read back")
		}
		if delta < 0 {
			t.Fatal("negative delta")
		}
	})
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
