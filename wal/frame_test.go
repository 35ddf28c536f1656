package wal

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math"
	"testing"
)

func sampleEntries() []Entry {
	return []Entry{
		{Kind: KindData, Term: 0, BaseOffset: 0, LastOffsetDelta: 0, MaxTimestamp: 0, Payload: nil},
		{Kind: KindData, Term: 7, BaseOffset: 1 << 40, LastOffsetDelta: 99, MaxTimestamp: 1_700_000_000_000, Payload: []byte("a record batch")},
		{Kind: KindNoop, Term: math.MaxUint64, BaseOffset: -1, LastOffsetDelta: -1, MaxTimestamp: -1},
		{Kind: KindConfChange, Term: 3, Payload: bytes.Repeat([]byte{0xff}, 300)},
		{Kind: KindMeta, Term: 1, BaseOffset: 42, MaxTimestamp: math.MinInt64, Payload: []byte{0}},
	}
}

func TestFrameRoundTrip(t *testing.T) {
	for _, e := range sampleEntries() {
		b := appendFrame(nil, &e)
		if len(b) != frameSize(&e) {
			t.Fatalf("frame size %d, want %d", len(b), frameSize(&e))
		}
		got, err := decodeFrame(b)
		if err != nil {
			t.Fatalf("decode %+v: %v", e, err)
		}
		if got.Kind != e.Kind || got.Term != e.Term || got.BaseOffset != e.BaseOffset ||
			got.LastOffsetDelta != e.LastOffsetDelta || got.MaxTimestamp != e.MaxTimestamp ||
			!bytes.Equal(got.Payload, e.Payload) {
			t.Fatalf("round trip: got %+v, want %+v", got, e)
		}
	}
}

func TestFrameRejects(t *testing.T) {
	e := Entry{Kind: KindData, BaseOffset: 5, LastOffsetDelta: 2, MaxTimestamp: 9, Payload: []byte("payload")}
	good := appendFrame(nil, &e)
	mutate := func(f func(b []byte) []byte) []byte { return f(bytes.Clone(good)) }
	cases := []struct {
		name string
		b    []byte
		want error
	}{
		{"short", good[:frameOverhead-1], errShortFrame},
		{"version", mutate(func(b []byte) []byte { b[0] = 2; return b }), errVersion},
		{"kind zero", mutate(func(b []byte) []byte { b[1] = 0; return b }), errKind},
		{"kind unknown", mutate(func(b []byte) []byte { b[1] = 9; return b }), errKind},
		{"payload bit", mutate(func(b []byte) []byte { b[headerSize] ^= 1; return b }), errChecksum},
		{"header bit", mutate(func(b []byte) []byte { b[12] ^= 0x80; return b }), errChecksum},
		{"crc bit", mutate(func(b []byte) []byte { b[len(b)-1] ^= 1; return b }), errChecksum},
		{"truncated", good[:len(good)-1], errChecksum},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := decodeFrame(c.b)
			if !errors.Is(err, c.want) || !errors.Is(err, ErrCorrupt) {
				t.Fatalf("got %v, want %v wrapping ErrCorrupt", err, c.want)
			}
		})
	}
}

func TestUvarintLen(t *testing.T) {
	for _, n := range []int{0, 1, 127, 128, 16383, 16384, 1 << 21, 1<<28 + 5} {
		var buf [binary.MaxVarintLen64]byte
		if got, want := uvarintLen(n), binary.PutUvarint(buf[:], uint64(n)); got != want {
			t.Fatalf("uvarintLen(%d) = %d, want %d", n, got, want)
		}
	}
}

func TestMetaAndStateRoundTrip(t *testing.T) {
	for _, m := range []meta{{}, {resetting: true, firstIndex: 77, floorOffset: 1 << 50}, {firstIndex: 1, floorOffset: 0}} {
		got, err := decodeMeta(encodeMeta(m))
		if err != nil || got != m {
			t.Fatalf("meta %+v: got %+v, %v", m, got, err)
		}
	}
	b := encodeMeta(meta{firstIndex: 3})
	b[10] ^= 4
	if _, err := decodeMeta(b); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("flipped meta: %v", err)
	}
	for _, blob := range [][]byte{{}, []byte("hard state"), bytes.Repeat([]byte{7}, 5000)} {
		got, err := decodeState(encodeState(blob))
		if err != nil || !bytes.Equal(got, blob) {
			t.Fatalf("state %q: got %q, %v", blob, got, err)
		}
	}
	s := encodeState([]byte("x"))
	s[8] = 'y'
	if _, err := decodeState(s); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("flipped state: %v", err)
	}
}

func FuzzDecodeFrame(f *testing.F) {
	for _, e := range sampleEntries() {
		f.Add(appendFrame(nil, &e))
	}
	f.Add([]byte{})
	f.Add(make([]byte, frameOverhead))
	f.Fuzz(func(t *testing.T, b []byte) {
		h, herr := decodeHeader(b)
		e, err := decodeFrame(b)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("error %v does not wrap ErrCorrupt", err)
			}
			return
		}
		if herr != nil || h.kind != e.Kind || h.baseOffset != e.BaseOffset || h.maxTimestamp != e.MaxTimestamp {
			t.Fatalf("header %+v (%v) disagrees with frame %+v", h, herr, e)
		}
		if re := appendFrame(nil, &e); !bytes.Equal(re, b) {
			t.Fatalf("re-encode differs:\n got %x\nwant %x", re, b)
		}
	})
}

func FuzzDecodeMeta(f *testing.F) {
	f.Add(encodeMeta(meta{}))
	f.Add(encodeMeta(meta{resetting: true, firstIndex: 1 << 33, floorOffset: 12345}))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := decodeMeta(b)
		if err != nil {
			return
		}
		if re := encodeMeta(m); !bytes.Equal(re, b) {
			t.Fatalf("re-encode differs: %x vs %x", re, b)
		}
	})
}

func FuzzDecodeState(f *testing.F) {
	f.Add(encodeState(nil))
	f.Add(encodeState([]byte("term=3 vote=2 commit=10")))
	f.Fuzz(func(t *testing.T, b []byte) {
		blob, err := decodeState(b)
		if err != nil {
			return
		}
		if re := encodeState(blob); !bytes.Equal(re, b) {
			t.Fatalf("re-encode differs: %x vs %x", re, b)
		}
	})
}

// FuzzScanSegment feeds arbitrary segment-file bytes to the open-time
// scanner: it must never panic, and what it accepts must account for every
// byte up to where it stopped.
func FuzzScanSegment(f *testing.F) {
	var seg []byte
	for _, e := range sampleEntries() {
		fr := appendFrame(nil, &e)
		seg = binary.AppendUvarint(seg, uint64(len(fr)))
		seg = append(seg, fr...)
	}
	f.Add(seg)
	f.Add(seg[:len(seg)-3])
	f.Add(append(bytes.Clone(seg), make([]byte, 100)...))
	f.Fuzz(func(t *testing.T, data []byte) {
		s, stop := scanSegment(data, 1, 64)
		switch {
		case stop == nil && s.bytes != int64(len(data)):
			t.Fatalf("clean scan covered %d of %d bytes", s.bytes, len(data))
		case stop != nil && stop.pos != s.bytes:
			t.Fatalf("stopped at %d after %d valid bytes", stop.pos, s.bytes)
		case stop != nil && stop.index != s.next:
			t.Fatalf("stopped at index %d, next is %d", stop.index, s.next)
		}
		if stop != nil {
			validFrameAfter(data, int(stop.pos))
		}
	})
}
