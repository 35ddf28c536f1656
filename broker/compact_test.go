package broker

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"hash/crc32"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// ---- building stored batches ----

// tRec is one record of a test batch. key nil: null key; value nil:
// tombstone.
type tRec struct {
	key, value []byte
	tsDelta    int64
	header     bool
}

// tBatch is a stored batch to build.
type tBatch struct {
	base        int64
	codec       int16
	attrs       int16 // besides the codec: transactional, control, log append time
	pid         int64
	epoch       int16
	seq         int32
	baseTs      int64
	leaderEpoch int32
	recs        []tRec
}

// build encodes b as the log stores it: offsets assigned, records
// compressed as a kgo producer compresses them.
func (b *tBatch) build(t testing.TB) []byte {
	t.Helper()
	var recs []byte
	maxTs := b.baseTs
	for i, r := range b.recs {
		kr := kmsg.Record{TimestampDelta64: r.tsDelta, OffsetDelta: int32(i), Key: r.key, Value: r.value}
		if r.header {
			kr.Headers = []kmsg.Header{{Key: "h", Value: []byte{byte(i)}}}
		}
		recs = append(recs, rawRecord(kr)...)
		maxTs = max(maxTs, b.baseTs+r.tsDelta)
	}
	if b.codec != 0 {
		recs = kgoCompress(t, b.codec, recs)
	}
	rb := kmsg.RecordBatch{
		FirstOffset:          b.base,
		PartitionLeaderEpoch: b.leaderEpoch,
		Magic:                2,
		Attributes:           b.attrs | b.codec,
		LastOffsetDelta:      int32(len(b.recs) - 1),
		FirstTimestamp:       b.baseTs,
		MaxTimestamp:         maxTs,
		ProducerID:           b.pid,
		ProducerEpoch:        b.epoch,
		FirstSequence:        b.seq,
		NumRecords:           int32(len(b.recs)),
		Records:              recs,
	}
	out := rb.AppendTo(nil)
	binary.BigEndian.PutUint32(out[offBatchLength:], uint32(len(out)-logOverhead))
	binary.BigEndian.PutUint32(out[offCRC:], crc32.Checksum(out[offAttributes:], crc32c))
	return out
}

// markerBatch is a transaction marker of pid at offset.
func markerBatch(t testing.TB, base, pid int64, commit bool, ts int64) []byte {
	typ := byte(0)
	if commit {
		typ = 1
	}
	b := tBatch{base: base, attrs: attrControl | attrTransactional, pid: pid, epoch: 1, seq: -1, baseTs: ts,
		recs: []tRec{{key: []byte{0, 0, 0, typ}, value: []byte{0, 0, 0, 0, 0, 0}}}}
	return b.build(t)
}

// ---- offset map ----

func TestOffsetMap(t *testing.T) {
	m := newOffsetMap(100 * offsetMapSlot)
	if m.capacity() != 90 {
		t.Fatalf("capacity %d, want 90 (100 slots at 0.9)", m.capacity())
	}
	for i := range 90 {
		if !m.put(fmt.Appendf(nil, "k%d", i), int64(i)) {
			t.Fatalf("put %d refused below capacity", i)
		}
	}
	if m.put([]byte("new"), 1000) {
		t.Fatal("put of a new key accepted in a full map")
	}
	if !m.put([]byte("k5"), 500) || !m.put([]byte("k6"), 2) {
		t.Fatal("put of a present key refused in a full map")
	}
	if off, ok := m.get([]byte("k5")); !ok || off != 500 {
		t.Fatalf("k5 = %d, %v; want 500 (larger offset)", off, ok)
	}
	if off, ok := m.get([]byte("k6")); !ok || off != 6 {
		t.Fatalf("k6 = %d, %v; want 6 (the larger offset stays)", off, ok)
	}
	if _, ok := m.get([]byte("new")); ok {
		t.Fatal("refused key found")
	}
	// Offset 0 and an empty key are ordinary.
	m.reset()
	if m.len() != 0 {
		t.Fatalf("len %d after reset", m.len())
	}
	if _, ok := m.get([]byte("k1")); ok {
		t.Fatal("key found after reset")
	}
	m.put([]byte{}, 0)
	if off, ok := m.get([]byte{}); !ok || off != 0 || m.len() != 1 {
		t.Fatalf("empty key at 0: %d, %v, len %d", off, ok, m.len())
	}
	// The hash is MD5: the same on every replica.
	h := hashKey([]byte("a"))
	if got := hex.EncodeToString(h[:]); got != "0cc175b9c0f1b6a831c399e269772661" {
		t.Fatalf("hash of a = %s", got)
	}
	// Budgets are clamped: a tiny one still holds keys.
	if c := newOffsetMap(0).capacity(); c < 1 {
		t.Fatalf("capacity %d of the smallest map", c)
	}
}

func TestOffsetMapAgainstMap(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	m := newOffsetMap(1000 * offsetMapSlot)
	for round := range 3 {
		m.reset()
		want := map[string]int64{}
		for range 5000 {
			k := fmt.Sprintf("key-%d", rng.IntN(1200))
			off := rng.Int64N(1 << 40)
			_, had := want[k]
			ok := m.put([]byte(k), off)
			if had != true && len(want) >= m.capacity() {
				if ok {
					t.Fatalf("round %d: new key accepted past capacity", round)
				}
				continue
			}
			if !ok {
				t.Fatalf("round %d: put refused with %d of %d keys", round, len(want), m.capacity())
			}
			want[k] = max(want[k], off)
		}
		if m.len() != len(want) {
			t.Fatalf("len %d, want %d", m.len(), len(want))
		}
		for k, off := range want {
			if got, ok := m.get([]byte(k)); !ok || got != off {
				t.Fatalf("%s = %d, %v; want %d", k, got, ok, off)
			}
		}
	}
}

// TestOffsetMapReset: after a cleaning of few keys (slots cleared one by
// one) and of many (the array cleared in chunks), in any order, the map is
// empty: no slot holds a key, and every key put afterwards is found.
func TestOffsetMapReset(t *testing.T) {
	m := newOffsetMap(64 << 10) // 2730 slots: 85 tracked
	empty := func(round int) {
		t.Helper()
		if m.len() != 0 {
			t.Fatalf("round %d: len %d after reset", round, m.len())
		}
		for i := range m.slots {
			if m.slots[i] != 0 {
				t.Fatalf("round %d: byte %d of the slots is %d after reset", round, i, m.slots[i])
			}
		}
	}
	for round, keys := range []int{10, 2000, 85, 86, 3, 2400, 0, 1} {
		for k := range keys {
			if !m.put(fmt.Appendf(nil, "r%d-k%d", round, k), int64(k)) {
				t.Fatalf("round %d: put %d refused", round, k)
			}
		}
		if tracked := m.used != nil; tracked != (keys <= 85) {
			t.Fatalf("round %d: %d keys, slot list kept = %v", round, keys, tracked)
		}
		for k := range keys {
			if off, ok := m.get(fmt.Appendf(nil, "r%d-k%d", round, k)); !ok || off != int64(k) {
				t.Fatalf("round %d: key %d = %d, %v", round, k, off, ok)
			}
		}
		m.reset()
		empty(round)
	}
}

// ---- filtering one batch ----

// decodeBatchKmsg decodes a stored batch with kmsg and kgo's decompressor
// and returns its records.
func decodeBatchKmsg(t testing.TB, b []byte) (kmsg.RecordBatch, []kmsg.Record) {
	t.Helper()
	var rb kmsg.RecordBatch
	if err := rb.ReadFrom(b); err != nil {
		t.Fatalf("kmsg: %v", err)
	}
	if int(rb.Length)+logOverhead != len(b) {
		t.Fatalf("batch length %d for %d bytes", rb.Length, len(b))
	}
	if crc32.Checksum(b[offAttributes:], crc32c) != uint32(rb.CRC) {
		t.Fatal("bad CRC")
	}
	raw := rb.Records
	if c := rb.Attributes & 7; c != 0 {
		var err error
		if raw, err = kgoDecompressor.Decompress(raw, kgo.CompressionCodecType(c)); err != nil {
			t.Fatalf("kgo decompress: %v", err)
		}
	}
	var recs []kmsg.Record
	for i := range int(rb.NumRecords) {
		l, n := binary.Varint(raw)
		if n <= 0 || l < 0 || l > int64(len(raw)-n) {
			t.Fatalf("record %d: length", i)
		}
		var r kmsg.Record
		if err := r.ReadFrom(raw[:n+int(l)]); err != nil {
			t.Fatalf("record %d: %v", i, err)
		}
		recs = append(recs, r)
		raw = raw[n+int(l):]
	}
	if len(raw) != 0 {
		t.Fatalf("%d bytes after the records", len(raw))
	}
	return rb, recs
}

func TestCompactBatch(t *testing.T) {
	for codec := int16(0); codec <= 4; codec++ {
		t.Run(codecNames[codec], func(t *testing.T) {
			src := tBatch{base: 100, codec: codec, pid: 7, epoch: 3, seq: 40, baseTs: 5000, leaderEpoch: 9}
			for i := range 6 {
				r := tRec{key: fmt.Appendf(nil, "k%d", i), value: bytes.Repeat([]byte{byte(i)}, 100), tsDelta: int64(i * 10), header: i%2 == 0}
				if i == 3 {
					r.value = nil
				}
				src.recs = append(src.recs, r)
			}
			b := src.build(t)
			c := newBatchCompactor(1 << 20)
			prefix := []byte("prefix")

			// All kept: the same bytes.
			out, kept, err := c.compactBatch(prefix, b, func(int64, int64, []byte, bool) bool { return true }, false)
			if err != nil || kept != 6 || !bytes.Equal(out, append(bytes.Clone(prefix), b...)) {
				t.Fatalf("all kept: %d, %v, changed=%v", kept, err, !bytes.Equal(out[len(prefix):], b))
			}

			// Keep offsets 101, 103 (tombstone) and 105.
			var seen []int64
			keep := func(off, ts int64, key []byte, tomb bool) bool {
				seen = append(seen, off)
				if ts != 5000+(off-100)*10 || string(key) != fmt.Sprint("k", off-100) || tomb != (off == 103) {
					t.Errorf("record %d: ts %d key %q tombstone %v", off, ts, key, tomb)
				}
				return off%2 == 1
			}
			out, kept, err = c.compactBatch(prefix[:len(prefix):len(prefix)], b, keep, false)
			if err != nil || kept != 3 {
				t.Fatalf("kept %d, %v", kept, err)
			}
			if !slices.Equal(seen, []int64{100, 101, 102, 103, 104, 105}) {
				t.Fatalf("keep saw %v", seen)
			}
			if !bytes.Equal(out[:len(prefix)], prefix) {
				t.Fatal("dst prefix changed")
			}
			nb := out[len(prefix):]
			rb, recs := decodeBatchKmsg(t, nb)
			if rb.NumRecords != 3 || rb.FirstOffset != 100 || rb.LastOffsetDelta != 5 || rb.FirstTimestamp != 5000 || rb.MaxTimestamp != 5050 ||
				rb.PartitionLeaderEpoch != 9 || rb.ProducerID != 7 || rb.ProducerEpoch != 3 || rb.FirstSequence != 40 || rb.Attributes&7 != codec {
				t.Fatalf("header %+v", rb)
			}
			for j, r := range recs {
				i := 2*j + 1
				if r.OffsetDelta != int32(i) || r.TimestampDelta64 != int64(i*10) || string(r.Key) != fmt.Sprint("k", i) ||
					!bytes.Equal(r.Value, src.recs[i].value) || len(r.Headers) != 0 {
					t.Fatalf("record %d: %+v", j, r)
				}
			}
			// Cleaning the result again changes nothing.
			again, _, err := c.compactBatch(nil, nb, keep, false)
			if err != nil || !bytes.Equal(again, nb) {
				t.Fatalf("second cleaning changed the batch: %v", err)
			}

			// None kept: nothing, or an empty batch.
			none := func(int64, int64, []byte, bool) bool { return false }
			out, kept, err = c.compactBatch(nil, b, none, false)
			if err != nil || kept != 0 || len(out) != 0 {
				t.Fatalf("none kept: %d bytes, %v", len(out), err)
			}
			out, _, err = c.compactBatch(nil, b, none, true)
			if err != nil || len(out) != batchHeaderSize {
				t.Fatalf("empty batch: %d bytes, %v", len(out), err)
			}
			rb, recs = decodeBatchKmsg(t, out)
			if rb.NumRecords != 0 || len(recs) != 0 || rb.Attributes&7 != 0 || rb.FirstOffset != 100 || rb.LastOffsetDelta != 5 ||
				rb.ProducerID != 7 || rb.FirstSequence != 40 || rb.MaxTimestamp != 5050 {
				t.Fatalf("empty batch header %+v", rb)
			}
		})
	}
}

func TestCompactBatchLogAppendTime(t *testing.T) {
	src := tBatch{base: 0, attrs: attrLogAppendTime, pid: -1, epoch: -1, seq: -1, baseTs: 10,
		recs: []tRec{{key: []byte("a"), value: []byte("1"), tsDelta: 1}, {key: []byte("b"), value: nil, tsDelta: 2}}}
	b := src.build(t)
	binary.BigEndian.PutUint64(b[offMaxTimestamp:], 999) // the broker's stamp
	fixCRC(b)
	c := newBatchCompactor(1 << 20)
	var ts []int64
	if _, _, err := c.compactBatch(nil, b, func(_, t int64, _ []byte, _ bool) bool { ts = append(ts, t); return true }, false); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(ts, []int64{999, 999}) {
		t.Fatalf("timestamps %v, want the batch's LogAppendTime", ts)
	}
}

func TestCompactBatchRefusesDamage(t *testing.T) {
	src := tBatch{base: 0, codec: 1, pid: -1, epoch: -1, seq: -1, recs: []tRec{{key: []byte("a"), value: []byte("1")}}}
	b := src.build(t)
	c := newBatchCompactor(1 << 20)
	keep := func(int64, int64, []byte, bool) bool { return false }
	damaged := bytes.Clone(b)
	damaged[len(damaged)-3] ^= 0xff
	if _, _, err := c.compactBatch(nil, damaged, keep, true); !errorsIsKerr(err, kerr.CorruptMessage) {
		t.Fatalf("bad CRC: %v", err)
	}
	fixCRC(damaged)
	if _, _, err := c.compactBatch(nil, damaged, keep, true); err == nil {
		t.Fatal("damaged gzip accepted")
	}
	for _, n := range []int{0, 10, batchHeaderSize - 1, len(b) - 1} {
		if _, _, err := c.compactBatch(nil, b[:n], keep, true); err == nil {
			t.Fatalf("batch cut to %d bytes accepted", n)
		}
	}
	// A count the records do not back.
	more := bytes.Clone(b)
	binary.BigEndian.PutUint32(more[offNumRecords:], 1<<30)
	fixCRC(more)
	if _, _, err := c.compactBatch(nil, more, keep, true); err == nil {
		t.Fatal("record count past the records accepted")
	}
}

func errorsIsKerr(err error, want *kerr.Error) bool {
	for e := err; e != nil; {
		if e == want {
			return true
		}
		u, ok := e.(interface{ Unwrap() error })
		if !ok {
			ws, ok := e.(interface{ Unwrap() []error })
			if !ok {
				return false
			}
			for _, w := range ws.Unwrap() {
				if errorsIsKerr(w, want) {
					return true
				}
			}
			return false
		}
		e = u.Unwrap()
	}
	return false
}

// ---- the produce path ----

func TestCompactedTopicRefusesKeylessRecords(t *testing.T) {
	if tc := effectiveTopicConfig(&Config{}, map[string]string{cfgCleanupPolicy: "compact,delete"}); !tc.compact {
		t.Fatal("compact,delete not compacted")
	}
	if tc := effectiveTopicConfig(&Config{}, map[string]string{cfgCleanupPolicy: "delete"}); tc.compact {
		t.Fatal("delete compacted")
	}
	b := openBroker(t, Config{MaxDecompressedBatchBytes: 1 << 20})
	createTopic(t, b, "t", 1, nil)
	createTopic(t, b, "open", 1, nil)
	// cleanup.policy=compact is refused until the cleaner is wired; set
	// the effective config directly.
	p, err := b.partition("t", 0)
	if err != nil {
		t.Fatal(err)
	}
	tc := *p.topic.config()
	tc.compact = true
	p.topic.cfg.Store(&tc)

	for codec := int16(0); codec <= 4; codec++ {
		keyless := tBatch{codec: codec, pid: -1, epoch: -1, seq: -1, baseTs: 1,
			recs: []tRec{{key: []byte("a"), value: []byte("1")}, {value: []byte("2")}, {key: []byte{}, value: []byte("3")}, {value: nil}}}
		_, err := produce(t, b, "t", 0, keyless.build(t))
		wantKerrMsg(t, err, kerr.InvalidRecord, "Compacted topic cannot accept message without key in topic partition t-0")
		res := RecordErrors(err)
		if len(res) != 2 || res[0].BatchIndex != 1 || res[1].BatchIndex != 3 ||
			res[0].Message != "Compacted topic cannot accept message without key in topic partition t-0" || res[1].Message != res[0].Message {
			t.Fatalf("%s: record errors %+v", codecNames[codec], res)
		}
		// The same records on a topic that is not compacted are taken.
		mustProduce(t, b, "open", 0, keyless.build(t))
		// Every record with a key, an empty one included: taken.
		keyed := tBatch{codec: codec, pid: -1, epoch: -1, seq: -1, baseTs: 1,
			recs: []tRec{{key: []byte("a"), value: []byte("1")}, {key: []byte{}, value: nil}}}
		mustProduce(t, b, "t", 0, keyed.build(t))
	}
	if _, hw, _ := b.PartitionOffsets("t", 0); hw != 10 {
		t.Fatalf("high watermark %d, want 10 (5 keyed batches of 2)", hw)
	}
}

// TestKeylessAndTimestampErrors: as Kafka's LogValidator, a record without
// a key has that error only; any timestamp error makes the refusal
// INVALID_TIMESTAMP, listing every record's error in order.
func TestKeylessAndTimestampErrors(t *testing.T) {
	lim := testLimits(1 << 20)
	lim.keys = keyRule{on: true, topic: "x", partition: 3}
	lim.tsBounded, lim.tsLow, lim.tsHigh = true, 100, 200
	b := tBatch{pid: -1, epoch: -1, seq: -1, baseTs: 150,
		recs: []tRec{{value: []byte("1"), tsDelta: 1000}, {key: []byte("k"), tsDelta: 1000}, {key: []byte("k")}, {tsDelta: 0}}}
	batch := b.build(t)
	binary.BigEndian.PutUint64(batch, 0)
	_, err := parseBatches(nil, batch, lim)
	wantKerr(t, err, kerr.InvalidTimestamp)
	res := RecordErrors(err)
	if len(res) != 3 || res[0].BatchIndex != 0 || res[1].BatchIndex != 1 || res[2].BatchIndex != 3 ||
		res[0].Message != "Compacted topic cannot accept message without key in topic partition x-3" || res[2].Message != res[0].Message {
		t.Fatalf("record errors %+v", res)
	}
	lim.tsBounded = false
	_, err = parseBatches(nil, batch, lim)
	wantKerr(t, err, kerr.InvalidRecord)
	if res := RecordErrors(err); len(res) != 2 || res[0].BatchIndex != 0 || res[1].BatchIndex != 3 {
		t.Fatalf("record errors %+v", res)
	}
	lim.keys.on = false
	if _, err := parseBatches(nil, batch, lim); err != nil {
		t.Fatal(err)
	}
}

var _ = context.Background

// ---- randomized: whole logs against a "latest per key" model ----

// tEntry is one wal data entry: its first and last offsets and payload.
type tEntry struct {
	base, last int64
	payload    []byte
}

// modelRec is what the model knows of one record.
type modelRec struct {
	offset    int64
	key       []byte
	value     []byte
	ts        int64
	control   bool
	aborted   bool
	batchBase int64
}

// tLog is a generated log.
type tLog struct {
	entries []tEntry
	recs    []modelRec
	aborted map[int64]bool // base offsets of aborted transactional data batches
	bounds  []int64        // entry boundaries with no transaction open: UpTo candidates
	end     int64
	// per batch (by base offset): its header as written, to check kept
	// batches against
	headers map[int64]kmsg.RecordBatch
}

func (l *tLog) isAborted(_, base int64) bool { return l.aborted[base] }

// genLog writes a random log of n entries over nkeys keys: plain,
// idempotent and transactional producers, commits and aborts, tombstones,
// keyless and empty keys, every codec.
func genLog(t testing.TB, rng *rand.Rand, n, nkeys int) *tLog {
	l := &tLog{aborted: map[int64]bool{}, headers: map[int64]kmsg.RecordBatch{}}
	off, ts := int64(0), int64(1000)
	open := map[int64][]int64{} // pid -> its open transaction's batch bases
	seqs := map[int64]int32{}
	addBatch := func(e *tEntry, b []byte, recs []modelRec) {
		var rb kmsg.RecordBatch
		if err := rb.ReadFrom(b); err != nil {
			t.Fatal(err)
		}
		l.headers[rb.FirstOffset] = rb
		e.payload = append(e.payload, b...)
		l.recs = append(l.recs, recs...)
		off += int64(rb.LastOffsetDelta) + 1
		ts += 100
	}
	marker := func(e *tEntry, pid int64) {
		commit := rng.IntN(2) == 0
		if !commit {
			for _, base := range open[pid] {
				l.aborted[base] = true
				for i := range l.recs {
					if l.recs[i].batchBase == base {
						l.recs[i].aborted = true
					}
				}
			}
		}
		delete(open, pid)
		addBatch(e, markerBatch(t, off, pid, commit, ts), []modelRec{{offset: off, control: true, ts: ts, batchBase: off}})
	}
	for range n {
		e := tEntry{base: off}
		for range 1 + rng.IntN(3) {
			if len(open) > 0 && rng.IntN(10) < 3 {
				pids := make([]int64, 0, len(open))
				for pid := range open {
					pids = append(pids, pid)
				}
				slices.Sort(pids)
				marker(&e, pids[rng.IntN(len(pids))])
				continue
			}
			b := tBatch{base: off, codec: int16(rng.IntN(5)), pid: -1, epoch: -1, seq: -1, baseTs: ts, leaderEpoch: int32(rng.IntN(3))}
			switch k := rng.IntN(10); {
			case k < 3:
			case k < 6:
				b.pid, b.epoch = 1+rng.Int64N(3), 1
			default:
				b.pid, b.epoch, b.attrs = 10+rng.Int64N(3), 1, attrTransactional
			}
			nrec := 1 + rng.IntN(5)
			if b.pid >= 0 {
				b.seq = seqs[b.pid]
				seqs[b.pid] += int32(nrec)
			}
			var recs []modelRec
			for i := range nrec {
				r := tRec{key: fmt.Appendf(nil, "k%d", rng.IntN(nkeys)), tsDelta: rng.Int64N(50), header: rng.IntN(4) == 0}
				switch rng.IntN(20) {
				case 0:
					r.key = nil
				case 1:
					r.key = []byte{}
				}
				if rng.IntN(5) > 0 {
					r.value = make([]byte, rng.IntN(30))
					for j := range r.value {
						r.value[j] = byte('a' + rng.IntN(3)) // compressible
					}
				}
				b.recs = append(b.recs, r)
				recs = append(recs, modelRec{offset: off + int64(i), key: r.key, value: r.value, ts: ts + r.tsDelta, batchBase: off})
			}
			if b.attrs&attrTransactional != 0 {
				open[b.pid] = append(open[b.pid], off)
			}
			addBatch(&e, b.build(t), recs)
		}
		e.last = off - 1
		l.entries = append(l.entries, e)
		if len(open) == 0 {
			l.bounds = append(l.bounds, off)
		}
	}
	if len(open) > 0 {
		e := tEntry{base: off}
		pids := make([]int64, 0, len(open))
		for pid := range open {
			pids = append(pids, pid)
		}
		slices.Sort(pids)
		for _, pid := range pids {
			marker(&e, pid)
		}
		e.last = off - 1
		l.entries = append(l.entries, e)
		l.bounds = append(l.bounds, off)
	}
	l.end = off
	return l
}

// cleanTestLog is one cleaning as the cleaner will run it: plan the dirty
// range [cleanedUpTo, upTo) (and note the producers of the entries below
// it), then filter every entry below upTo. It returns the new entries and,
// if the map filled, the offset to stop at.
func cleanTestLog(t testing.TB, entries []tEntry, cleanedUpTo, upTo, now, retention int64, aborted func(int64, int64) bool, budget int64) ([]tEntry, int64, bool) {
	t.Helper()
	c := newBatchCompactor(1 << 20)
	p := newCompactPlanner(newOffsetMap(budget), c)
	for _, e := range entries {
		if e.last >= upTo {
			break
		}
		if e.base < cleanedUpTo {
			if err := p.noteEntry(e.payload); err != nil {
				t.Fatal(err)
			}
			continue
		}
		ok, err := p.addEntry(e.base, e.payload, aborted)
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			stop, full := p.stoppedAt()
			if !full || stop != e.base {
				t.Fatalf("planner stopped in entry %d at %d (full %v)", e.base, stop, full)
			}
			return nil, stop, true
		}
	}
	rules := entryRules{keep: compactKeep(p.m, tombstoneHorizon(now, retention)), aborted: aborted, producerLast: p.producerLast}
	out := make([]tEntry, 0, len(entries))
	for _, e := range entries {
		if e.last < upTo {
			payload, err := c.compactEntry(nil, e.payload, &rules)
			if err != nil {
				t.Fatalf("entry %d: %v", e.base, err)
			}
			e.payload = payload
		}
		out = append(out, e)
	}
	return out, 0, false
}

func sameEntries(a, b []tEntry) error {
	if len(a) != len(b) {
		return fmt.Errorf("%d entries, want %d", len(a), len(b))
	}
	for i := range a {
		if a[i].base != b[i].base || !bytes.Equal(a[i].payload, b[i].payload) {
			return fmt.Errorf("entry %d (offset %d) differs", i, a[i].base)
		}
	}
	return nil
}

// checkCleaned checks a log cleaned below upTo at now against the model:
// every record visible (through kgo) is exactly one the model keeps, at its
// offset with its key, value and timestamp; kept batches keep their header
// fields; no entry is empty; entries and producers keep their last batch.
func checkCleaned(t testing.TB, l *tLog, got []tEntry, upTo, now, retention int64) {
	t.Helper()
	horizon := tombstoneHorizon(now, retention)
	latest := map[string]int64{}
	for _, r := range l.recs {
		if r.offset < upTo && !r.control && !r.aborted && r.key != nil {
			latest[string(r.key)] = r.offset
		}
	}
	var want []modelRec
	for _, r := range l.recs {
		if r.control {
			continue // kgo hides markers
		}
		if r.offset < upTo && (r.aborted || r.key == nil || latest[string(r.key)] != r.offset || (r.value == nil && r.ts < horizon)) {
			continue
		}
		want = append(want, r)
	}
	// Producer's last data batch below upTo.
	producerLast := map[int64]int64{}
	for base, h := range l.headers {
		if h.ProducerID >= 0 && h.Attributes&attrControl == 0 && base < upTo {
			producerLast[h.ProducerID] = max(producerLast[h.ProducerID], base)
		}
	}
	var all []byte
	for i, e := range got {
		if len(e.payload) == 0 {
			t.Fatalf("entry %d left empty", e.base)
		}
		var bases []int64
		for pos := 0; pos < len(e.payload); {
			h, err := frameBatch(e.payload[pos:])
			if err != nil {
				t.Fatal(err)
			}
			b := e.payload[pos : pos+h.size]
			rb, _ := decodeBatchKmsg(t, b)
			orig, ok := l.headers[rb.FirstOffset]
			if !ok {
				t.Fatalf("batch at %d is no batch of the log", rb.FirstOffset)
			}
			wantAttrs := orig.Attributes
			if rb.NumRecords == 0 {
				wantAttrs &^= attrCompressionMask
			}
			if rb.LastOffsetDelta != orig.LastOffsetDelta || rb.FirstTimestamp != orig.FirstTimestamp || rb.MaxTimestamp != orig.MaxTimestamp ||
				rb.ProducerID != orig.ProducerID || rb.ProducerEpoch != orig.ProducerEpoch || rb.FirstSequence != orig.FirstSequence ||
				rb.PartitionLeaderEpoch != orig.PartitionLeaderEpoch || rb.Attributes != wantAttrs {
				t.Fatalf("batch at %d: header %+v, was %+v", rb.FirstOffset, rb, orig)
			}
			bases = append(bases, rb.FirstOffset)
			pos += h.size
		}
		// The entry's last batch and the producers' last batches stay.
		origLast := int64(-1)
		for base := range l.headers {
			if base >= e.base && base <= e.last {
				origLast = max(origLast, base)
			}
			if h := l.headers[base]; base >= e.base && base <= e.last && h.ProducerID >= 0 && producerLast[h.ProducerID] == base && !slices.Contains(bases, base) {
				t.Fatalf("entry %d: producer %d's last batch %d dropped", i, h.ProducerID, base)
			}
		}
		if bases[len(bases)-1] != origLast {
			t.Fatalf("entry %d: last batch %d, was %d", e.base, bases[len(bases)-1], origLast)
		}
		all = append(all, e.payload...)
	}
	fp, next := kgo.ProcessFetchPartition(kgo.ProcessFetchPartitionOpts{Topic: "t"},
		&kmsg.FetchResponseTopicPartition{HighWatermark: l.end, LastStableOffset: l.end, RecordBatches: all}, kgoDecompressor, nil)
	if fp.Err != nil {
		t.Fatalf("kgo: %v", fp.Err)
	}
	if next != l.end {
		t.Fatalf("kgo's next offset %d, want %d", next, l.end)
	}
	if len(fp.Records) != len(want) {
		t.Fatalf("kgo read %d records, the model keeps %d", len(fp.Records), len(want))
	}
	for i, r := range fp.Records {
		w := want[i]
		if r.Offset != w.offset || !bytes.Equal(r.Key, w.key) || (r.Key == nil) != (w.key == nil) ||
			!bytes.Equal(r.Value, w.value) || (r.Value == nil) != (w.value == nil) || r.Timestamp.UnixMilli() != w.ts {
			t.Fatalf("record %d: offset %d key %q value %q ts %d; want offset %d key %q value %q ts %d",
				i, r.Offset, r.Key, r.Value, r.Timestamp.UnixMilli(), w.offset, w.key, w.value, w.ts)
		}
	}
}

// compactSeeds is how many random logs the randomized test cleans.
var compactSeeds = uint64(40)

func TestCompactRandomAgainstModel(t *testing.T) {
	const retention = 300
	for seed := range compactSeeds {
		rng := rand.New(rand.NewPCG(seed, 15))
		l := genLog(t, rng, 10+rng.IntN(30), 2+rng.IntN(10))
		const big = 1 << 16
		x1 := l.bounds[rng.IntN(len(l.bounds))]
		x2 := l.bounds[rng.IntN(len(l.bounds))]
		if x1 > x2 {
			x1, x2 = x2, x1
		}
		t1 := 1000 + rng.Int64N(l.end*100+1)
		t2 := t1 + rng.Int64N(2*retention)

		c1, _, full := cleanTestLog(t, l.entries, 0, x1, t1, retention, l.isAborted, big)
		if full {
			t.Fatal("map filled")
		}
		checkCleaned(t, l, c1, x1, t1, retention)

		// Idempotent: nothing dirty left, or planned again from scratch.
		again, _, _ := cleanTestLog(t, c1, x1, x1, t1, retention, l.isAborted, big)
		if err := sameEntries(again, c1); err != nil {
			t.Fatalf("seed %d: cleaning twice: %v", seed, err)
		}
		again, _, _ = cleanTestLog(t, c1, 0, x1, t1, retention, l.isAborted, big)
		if err := sameEntries(again, c1); err != nil {
			t.Fatalf("seed %d: cleaning twice from scratch: %v", seed, err)
		}

		// clean(clean(L, X1, T1), X2, T2) == clean(L, X2, T2).
		c2, _, _ := cleanTestLog(t, l.entries, 0, x2, t2, retention, l.isAborted, big)
		checkCleaned(t, l, c2, x2, t2, retention)
		c12, _, _ := cleanTestLog(t, c1, x1, x2, t2, retention, l.isAborted, big)
		if err := sameEntries(c12, c2); err != nil {
			t.Fatalf("seed %d: cleaning to %d then %d differs from cleaning to %d: %v", seed, x1, x2, x2, err)
		}
	}
}

// TestCompactPlannerFull: a map too small for the dirty range stops at an
// entry; planned again up to it, the cleaning is the one of that UpTo.
func TestCompactPlannerFull(t *testing.T) {
	for seed := range uint64(10) {
		rng := rand.New(rand.NewPCG(seed, 16))
		l := genLog(t, rng, 40, 200)
		small := int64(offsetMapMin * 2) // 28 keys
		_, stop, full := cleanTestLog(t, l.entries, 0, l.end, 5000, 300, l.isAborted, small)
		if !full {
			t.Fatalf("seed %d: a 28-key map took 200 keys", seed)
		}
		// Plan again below stop with the same small map: it fits.
		got, _, full := cleanTestLog(t, l.entries, 0, stop, 5000, 300, l.isAborted, small)
		if full {
			t.Fatalf("seed %d: the range before the stop did not fit again", seed)
		}
		want, _, _ := cleanTestLog(t, l.entries, 0, stop, 5000, 300, l.isAborted, 1<<16)
		if err := sameEntries(got, want); err != nil {
			t.Fatal(err)
		}
		checkCleaned(t, l, got, stop, 5000, 300)
	}
	// The planner itself: stoppedAt names the entry, add refuses after.
	c := newBatchCompactor(1 << 20)
	p := newCompactPlanner(newOffsetMap(offsetMapMin), c)
	limit := p.m.capacity()
	p.beginEntry(0)
	for i := range limit {
		if !p.add(&planRecord{offset: int64(i), key: fmt.Appendf(nil, "%d", i)}) {
			t.Fatalf("add %d refused", i)
		}
	}
	p.beginEntry(100)
	if !p.add(&planRecord{offset: 100, key: nil}) || !p.add(&planRecord{offset: 101, key: []byte("x"), aborted: true}) ||
		!p.add(&planRecord{offset: 102, key: []byte("y"), control: true}) || !p.add(&planRecord{offset: 103, key: []byte("0")}) {
		t.Fatal("a record that takes no new slot was refused")
	}
	if p.add(&planRecord{offset: 104, key: []byte("new")}) {
		t.Fatal("a new key was taken by a full map")
	}
	if stop, full := p.stoppedAt(); !full || stop != 100 {
		t.Fatalf("stopped at %d, %v; want 100", stop, full)
	}
	if p.beginEntry(200) || p.add(&planRecord{offset: 200, key: []byte("0")}) {
		t.Fatal("planner went on after it stopped")
	}
	p.restart()
	if p.m.len() != 0 || !p.beginEntry(0) {
		t.Fatal("restart did not empty the planner")
	}
}
