package broker

import (
	"bytes"
	"fmt"
	"testing"
	"unsafe"
)

// TestCompactEntryUnchanged: an entry nothing is dropped from comes back
// as the same slice; a changed one keeps the untouched batches byte for
// byte around the rewritten ones.
func TestCompactEntryUnchanged(t *testing.T) {
	a := tBatch{base: 10, codec: 2, pid: -1, epoch: -1, seq: -1, recs: []tRec{{key: []byte("a"), value: []byte("1")}, {key: []byte("b"), value: []byte("2")}}}
	b := tBatch{base: 12, codec: 0, pid: 5, epoch: 0, seq: 0, recs: []tRec{{key: []byte("c"), value: []byte("3")}}}
	m := markerBatch(t, 13, 5, true, 0)
	payload := append(append(a.build(t), b.build(t)...), m...)
	c := newBatchCompactor(1 << 20)
	all := entryRules{keep: func(int64, int64, []byte, bool) bool { return true }}
	out, err := c.compactEntry(make([]byte, 0, 10), payload, &all)
	if err != nil || unsafe.SliceData(out) != unsafe.SliceData(payload) || len(out) != len(payload) {
		t.Fatalf("unchanged entry: %v, same slice %v", err, unsafe.SliceData(out) == unsafe.SliceData(payload))
	}
	// Drop offset 11 only: batch a is rewritten, b and the marker stay.
	drop11 := entryRules{keep: func(off int64, _ int64, _ []byte, _ bool) bool { return off != 11 }}
	out, err = c.compactEntry(nil, payload, &drop11)
	if err != nil {
		t.Fatal(err)
	}
	ab := a.build(t)
	if !bytes.HasSuffix(out, payload[len(ab):]) {
		t.Fatal("the batches after the rewritten one changed")
	}
	_, recs := decodeBatchKmsg(t, out[:len(out)-(len(payload)-len(ab))])
	if len(recs) != 1 || string(recs[0].Key) != "a" {
		t.Fatalf("rewritten batch records %+v", recs)
	}
	// Drop everything: the marker stays whole; b is dropped (not its
	// producer's last: producerLast says so) and a too.
	none := entryRules{keep: func(int64, int64, []byte, bool) bool { return false }}
	out, err = c.compactEntry(nil, payload, &none)
	if err != nil || !bytes.Equal(out, m) {
		t.Fatalf("all dropped: %d bytes, %v; want the marker alone", len(out), err)
	}
	none.producerLast = func(pid, last int64) bool { return pid == 5 && last == 12 }
	out, err = c.compactEntry(nil, payload, &none)
	if err != nil || len(out) != batchHeaderSize+len(m) || batchBase(out) != 12 {
		t.Fatalf("producer's last batch: %d bytes, %v", len(out), err)
	}
	// A rewritten entry in front of a dst prefix.
	out, err = c.compactEntry([]byte("xy"), payload, &drop11)
	if err != nil || string(out[:2]) != "xy" {
		t.Fatalf("dst prefix lost: %v", err)
	}
	// Damage is an error, not a panic, and names the batch.
	bad := bytes.Clone(payload)
	bad[len(ab)+30] ^= 1
	if _, err := c.compactEntry(nil, bad, &drop11); err == nil {
		t.Fatal("damaged batch accepted")
	}
	if _, err := c.compactEntry(nil, nil, &drop11); err == nil {
		t.Fatal("empty entry accepted")
	}
}

// fuzzKeep is a deterministic keep rule that depends on everything it is
// given.
func fuzzKeep(off, ts int64, key []byte, tomb bool) bool {
	return (off+ts+int64(len(key)))%3 != 0 && !(tomb && off%2 == 0)
}

func compactFuzzSeeds(f *testing.F) {
	for codec := int16(0); codec <= 4; codec++ {
		b := tBatch{base: 3, codec: codec, pid: 1, epoch: 0, seq: 0, baseTs: 100}
		for i := range 5 {
			r := tRec{key: fmt.Appendf(nil, "k%d", i%3), value: bytes.Repeat([]byte("v"), i*7), tsDelta: int64(i)}
			if i == 2 {
				r.value = nil
			}
			b.recs = append(b.recs, r)
		}
		one := b.build(f)
		f.Add(one)
		f.Add(append(bytes.Clone(one), markerBatch(f, 8, 1, false, 1)...))
	}
	f.Add([]byte{})
	f.Add(make([]byte, batchHeaderSize))
}

// FuzzCompactBatch: arbitrary bytes never panic; when a batch comes out,
// it frames, its CRC holds and cleaning it again changes nothing.
func FuzzCompactBatch(f *testing.F) {
	compactFuzzSeeds(f)
	c := newBatchCompactor(1 << 20)
	f.Fuzz(func(t *testing.T, in []byte) {
		for _, keepEmpty := range []bool{false, true} {
			out, kept, err := c.compactBatch(nil, in, fuzzKeep, keepEmpty)
			if err != nil || len(out) == 0 {
				continue
			}
			h, err := frameBatch(out)
			if err != nil || h.size != len(out) {
				t.Fatalf("output does not frame: %v", err)
			}
			if h.numRecords != int32(kept) && !h.control() {
				t.Fatalf("count %d, kept %d", h.numRecords, kept)
			}
			again, _, err := c.compactBatch(nil, out, fuzzKeep, keepEmpty)
			if err != nil || !bytes.Equal(again, out) {
				t.Fatalf("cleaning the output again: %v, changed %v", err, !bytes.Equal(again, out))
			}
		}
	})
}

// FuzzCompactEntry: arbitrary payloads never panic; an output is never
// empty and is stable under a second cleaning.
func FuzzCompactEntry(f *testing.F) {
	compactFuzzSeeds(f)
	c := newBatchCompactor(1 << 20)
	rules := entryRules{
		keep:         fuzzKeep,
		aborted:      func(pid, base int64) bool { return (pid+base)%2 == 0 },
		producerLast: func(pid, last int64) bool { return last%4 == 0 },
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		out, err := c.compactEntry(nil, in, &rules)
		if err != nil {
			return
		}
		if len(out) == 0 {
			t.Fatal("entry left empty")
		}
		again, err := c.compactEntry(nil, out, &rules)
		if err != nil || !bytes.Equal(again, out) {
			t.Fatalf("cleaning the output again: %v", err)
		}
		// The planner reads whatever the filter reads.
		p := newCompactPlanner(newOffsetMap(offsetMapMin), c)
		if _, err := p.addEntry(0, in, rules.aborted); err != nil {
			t.Fatalf("planner refused an entry the filter took: %v", err)
		}
	})
}

// BenchmarkCompactBatch filters a zstd batch of 100 records of 1 KiB,
// keeping every other one (decompress, filter, recompress).
func BenchmarkCompactBatch(b *testing.B) {
	src := tBatch{base: 0, codec: 4, pid: -1, epoch: -1, seq: -1, baseTs: 1}
	for i := range 100 {
		var v []byte
		for j := 0; len(v) < 1024; j++ {
			v = fmt.Appendf(v, `{"id":%d,"user":"u%07d","event":"click","score":%d},`, i*1000+j, (i*7919+j*104729)%9999991, (i*31+j*17)%997)
		}
		src.recs = append(src.recs, tRec{key: fmt.Appendf(nil, "key-%d", i), value: v[:1024], tsDelta: int64(i)})
	}
	batch := src.build(b)
	c := newBatchCompactor(1 << 20)
	keep := func(off, _ int64, _ []byte, _ bool) bool { return off%2 == 0 }
	var dst []byte
	b.SetBytes(100 * 1024)
	b.ReportAllocs()
	for b.Loop() {
		var err error
		dst, _, err = c.compactBatch(dst[:0], batch, keep, false)
		if err != nil {
			b.Fatal(err)
		}
	}
}
