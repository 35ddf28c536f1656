package broker

import (
	"bytes"
	"errors"
	"fmt"
	"testing"
	"time"
)

func TestGroupBatchRoundTrip(t *testing.T) {
	in := []groupLogRecord{
		{key: []byte("offset-key"), value: []byte("value"), timestamp: 1_700_000_000_500},
		{key: []byte("tombstone"), timestamp: 1_700_000_000_000}, // older than the first: a negative delta
		{key: []byte("empty-value"), value: []byte{}, timestamp: 1_700_000_000_900},
	}
	b := encodeGroupBatch(in, 0)
	hdrs, err := parseBatches(nil, b, internalLimits)
	if err != nil || len(hdrs) != 1 || hdrs[0].numRecords != 3 || hdrs[0].maxTimestamp != 1_700_000_000_900 || hdrs[0].idempotent() {
		t.Fatalf("not a valid client-style batch: %+v %v", hdrs, err)
	}
	var out []groupLogRecord
	err = forEachBatchRecord(b, func(m groupBatchMeta, delta int32, ts int64, key, value []byte) error {
		if m != (groupBatchMeta{producerID: -1, producerEpoch: -1}) {
			return fmt.Errorf("batch meta %+v of a plain batch", m)
		}
		if int(delta) != len(out) {
			return fmt.Errorf("offset delta %d at record %d", delta, len(out))
		}
		out = append(out, groupLogRecord{key: key, value: value, timestamp: ts})
		return nil
	})
	if err != nil || len(out) != len(in) {
		t.Fatalf("decoded %d records: %v", len(out), err)
	}
	for i := range in {
		if !bytes.Equal(out[i].key, in[i].key) || !bytes.Equal(out[i].value, in[i].value) ||
			(out[i].value == nil) != (in[i].value == nil) || out[i].timestamp != in[i].timestamp {
			t.Fatalf("record %d: %+v, want %+v", i, out[i], in[i])
		}
	}
	// Records without a timestamp take now.
	now := encodeGroupBatch([]groupLogRecord{{key: []byte("k")}}, 42)
	forEachBatchRecord(now, func(_ groupBatchMeta, _ int32, ts int64, _, _ []byte) error {
		if ts != 42 {
			t.Fatalf("timestamp %d, want now", ts)
		}
		return nil
	})
}

// FuzzGroupBatch feeds arbitrary bytes to the __consumer_offsets batch
// decoder replay and compaction use: errors, never panics.
func FuzzGroupBatch(f *testing.F) {
	f.Add(encodeGroupBatch([]groupLogRecord{{key: []byte("k"), value: []byte("v"), timestamp: 5}, {key: []byte("t"), timestamp: 7}}, 1))
	f.Add(encodeGroupBatch([]groupLogRecord{{key: GroupEncodeGroupTombstone("g").Key}}, 1))
	f.Add(encodeGroupTxnBatch([]groupLogRecord{{key: []byte("k"), value: []byte("v"), timestamp: 5}}, 1, 7, 2, 11))
	f.Add(groupTestMarkerBatch(7, 2, true))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		r := NewGroupReplayer(GroupConfig{})
		c := NewGroupCompactor(time.Hour)
		forEachBatchRecord(b, func(m groupBatchMeta, delta int32, _ int64, key, value []byte) error {
			_, _ = bytes.Clone(key), bytes.Clone(value)
			replayGroupRecord(r, m, key, value)
			switch {
			case m.control:
				if commit, known, err := groupMarkerType(key); err == nil && known {
					c.ObserveMarker(m.producerID, commit)
				}
			case m.transactional:
				c.ObserveTxn(int64(delta), m.producerID, key, value == nil)
			default:
				c.Observe(int64(delta), key)
			}
			return nil
		})
		r.Finish(time.Unix(0, 0))
	})
}

// groupTestMarkerBatch is a transaction marker as the transaction
// coordinator writes it: a control batch of the producer (attributes
// transactional|control, base sequence -1) with one record, key [version
// 0, type 0 ABORT / 1 COMMIT], value [version 0, coordinator epoch].
func groupTestMarkerBatch(producerID int64, epoch int16, commit bool) []byte {
	key := []byte{0, 0, 0, 0}
	if commit {
		key[3] = 1
	}
	value := []byte{0, 0, 0, 0, 0, 3}
	return encodeGroupBatchOf([]groupLogRecord{{key: key, value: value, timestamp: 1}}, 1, producerID, epoch, -1, attrTransactional|attrControl)
}

func TestGroupTxnBatchMeta(t *testing.T) {
	txn := encodeGroupTxnBatch([]groupLogRecord{{key: []byte("k"), value: []byte("v")}, {key: []byte("k2"), value: []byte("v2")}}, 9, 42, 3, 17)
	hdrs, err := parseBatches(nil, txn, internalLimits)
	if err != nil || len(hdrs) != 1 || !hdrs[0].transactional() || hdrs[0].control() ||
		hdrs[0].producerID != 42 || hdrs[0].producerEpoch != 3 || hdrs[0].baseSequence != 17 || hdrs[0].lastSequence() != 18 {
		t.Fatalf("transactional batch: %+v %v", hdrs, err)
	}
	var metas []groupBatchMeta
	collect := func(m groupBatchMeta, _ int32, _ int64, _, _ []byte) error {
		metas = append(metas, m)
		return nil
	}
	if err := forEachBatchRecord(txn, collect); err != nil {
		t.Fatal(err)
	}
	if err := forEachBatchRecord(groupTestMarkerBatch(42, 3, false), collect); err != nil {
		t.Fatal(err)
	}
	want := []groupBatchMeta{
		{producerID: 42, producerEpoch: 3, transactional: true},
		{producerID: 42, producerEpoch: 3, transactional: true},
		{producerID: 42, producerEpoch: 3, transactional: true, control: true},
	}
	if fmt.Sprint(metas) != fmt.Sprint(want) {
		t.Fatalf("metas %+v, want %+v", metas, want)
	}
	for _, tt := range []struct {
		key           []byte
		commit, known bool
		corrupt       bool
	}{
		{key: []byte{0, 0, 0, 1}, commit: true, known: true},
		{key: []byte{0, 0, 0, 0}, known: true},
		{key: []byte{0, 1, 0, 1, 9}, commit: true, known: true}, // a newer version reads as version 0
		{key: []byte{0, 0, 0, 2}},                               // a leader change: not a marker
		{key: []byte{0, 0, 0}, corrupt: true},
		{key: []byte{0xff, 0xff, 0, 1}, corrupt: true},
	} {
		commit, known, err := groupMarkerType(tt.key)
		if commit != tt.commit || known != tt.known || (err != nil) != tt.corrupt || err != nil && !errors.Is(err, ErrGroupRecordCorrupt) {
			t.Errorf("key %v: commit %v known %v err %v", tt.key, commit, known, err)
		}
	}
}
