package broker

import (
	"bytes"
	"fmt"
	"testing"
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
	err = forEachBatchRecord(b, func(delta int32, ts int64, key, value []byte) error {
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
	forEachBatchRecord(now, func(_ int32, ts int64, _, _ []byte) error {
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
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		forEachBatchRecord(b, func(_ int32, _ int64, key, value []byte) error {
			_, _ = bytes.Clone(key), bytes.Clone(value)
			return nil
		})
	})
}
