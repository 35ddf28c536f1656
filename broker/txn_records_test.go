package broker

import (
	"encoding/hex"
	"errors"
	"reflect"
	"testing"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// The bytes Kafka 4.0 writes (TransactionLogKey v0, TransactionLogValue v1),
// spelled out field by field.
func TestTxnRecordGoldenBytes(t *testing.T) {
	m := TxnMetadata{
		TransactionalID: "t", ProducerID: 0x0102, PrevProducerID: 0x0102, NextProducerID: -1,
		ProducerEpoch: 3, LastProducerEpoch: -1, TimeoutMs: 60000, State: TxnOngoing,
		Partitions: []TxnTopicPartition{{"a", 0}, {"a", 2}, {"b", 1}},
		StartMs:    9, LastUpdateMs: 10,
	}
	rec := EncodeTxnRecord(&m)
	if got, want := hex.EncodeToString(rec.Key), "0000"+"0001"+"74"; got != want {
		t.Fatalf("key %s, want %s", got, want)
	}
	want := "0001" + // value version 1 (flexible)
		"0000000000000102" + "0003" + "0000ea60" + "01" + // producer id, epoch, timeout, state Ongoing
		"03" + // two topics (compact array)
		"0261" + "03" + "00000000" + "00000002" + "00" + // "a": 0, 2; no tags
		"0262" + "02" + "00000001" + "00" + // "b": 1
		"000000000000000a" + "0000000000000009" + // last update, start
		"01" + "00" + "08" + "0000000000000102" // one tag: 0 (previous producer id); next -1 and version 0 are defaults
	if got := hex.EncodeToString(rec.Value); got != want {
		t.Fatalf("value\n%s, want\n%s", got, want)
	}

	// Empty writes a null partition list; the client version is a tag.
	m = TxnMetadata{TransactionalID: "t", ProducerID: 1, PrevProducerID: -1, NextProducerID: 2, ProducerEpoch: 0,
		TimeoutMs: 1, State: TxnEmpty, StartMs: -1, LastUpdateMs: 0, ClientTransactionVersion: 2}
	want = "0001" + "0000000000000001" + "0000" + "00000001" + "00" + "00" +
		"0000000000000000" + "ffffffffffffffff" +
		"02" + "01" + "08" + "0000000000000002" + "02" + "02" + "0002"
	if got := hex.EncodeToString(EncodeTxnRecord(&m).Value); got != want {
		t.Fatalf("empty value\n%s, want\n%s", got, want)
	}

	tomb := EncodeTxnTombstone("ab")
	if got := hex.EncodeToString(tomb.Key); got != "0000"+"0002"+"6162" || tomb.Value != nil {
		t.Fatalf("tombstone %x / %x", tomb.Key, tomb.Value)
	}
}

// Version 0 values (Kafka before 4.0, or 4.0 on transaction version 1) have
// no tags: previous and next producer ids read as -1. Partitions listed for
// Empty are ignored, as Kafka does, and for Complete*; others are sorted
// and deduplicated.
func TestTxnDecodeRecordVersions(t *testing.T) {
	v := kmsg.NewTxnMetadataValue()
	v.Version, v.ProducerID, v.ProducerEpoch, v.TimeoutMillis, v.State = 0, 7, 2, 1000, kmsg.TransactionState(TxnPrepareCommit)
	v.Topics = []kmsg.TxnMetadataValueTopic{{Topic: "b", Partitions: []int32{1, 0, 1}}, {Topic: "a", Partitions: []int32{5}}}
	v.LastUpdateTimestamp, v.StartTimestamp = 20, 10
	id, m, err := DecodeTxnRecord(txnmKey("x"), v.AppendTo(nil))
	if err != nil {
		t.Fatal(err)
	}
	want := TxnMetadata{TransactionalID: "x", ProducerID: 7, PrevProducerID: -1, NextProducerID: -1, ProducerEpoch: 2,
		LastProducerEpoch: -1, TimeoutMs: 1000, State: TxnPrepareCommit,
		Partitions: []TxnTopicPartition{{"a", 5}, {"b", 0}, {"b", 1}}, StartMs: 10, LastUpdateMs: 20}
	if id != "x" || !reflect.DeepEqual(*m, want) {
		t.Fatalf("decoded %q %+v\nwant %+v", id, *m, want)
	}

	v.State = kmsg.TransactionState(TxnEmpty)
	_, m, err = DecodeTxnRecord(txnmKey("x"), v.AppendTo(nil))
	if err != nil || m.State != TxnEmpty || m.Partitions != nil {
		t.Fatalf("empty with partitions: %+v, %v", m, err)
	}

	v.State = kmsg.TransactionState(TxnCompleteCommit)
	_, m, err = DecodeTxnRecord(txnmKey("x"), v.AppendTo(nil))
	if err != nil || m.State != TxnCompleteCommit || m.Partitions != nil {
		t.Fatalf("complete with partitions: %+v, %v", m, err)
	}

	id, m, err = DecodeTxnRecord(txnmKey("gone"), nil)
	if err != nil || id != "gone" || m != nil {
		t.Fatalf("tombstone: %q %+v %v", id, m, err)
	}
}

func TestTxnDecodeRecordErrors(t *testing.T) {
	good := EncodeTxnRecord(&TxnMetadata{TransactionalID: "x", ProducerID: 1, PrevProducerID: -1, NextProducerID: -1, State: TxnOngoing})
	value := func(edit func(v *kmsg.TxnMetadataValue)) []byte {
		var v kmsg.TxnMetadataValue
		if err := v.ReadFrom(good.Value); err != nil {
			t.Fatal(err)
		}
		edit(&v)
		return v.AppendTo(nil)
	}
	tests := []struct {
		name       string
		key, value []byte
		want       error
	}{
		{"short key", []byte{0}, good.Value, ErrTxnRecordCorrupt},
		{"negative key version", []byte{0xff, 0xff, 0, 0}, good.Value, ErrTxnRecordCorrupt},
		{"key version 1", []byte{0, 1, 0, 1, 'x'}, good.Value, ErrTxnRecordUnknown},
		{"truncated key", []byte{0, 0, 0, 5, 'x'}, good.Value, ErrTxnRecordCorrupt},
		{"short value", good.Key, []byte{0}, ErrTxnRecordCorrupt},
		{"value version 2", good.Key, value(func(v *kmsg.TxnMetadataValue) { v.Version = 2 }), ErrTxnRecordCorrupt},
		{"truncated value", good.Key, good.Value[:len(good.Value)-3], ErrTxnRecordCorrupt},
		{"state Dead", good.Key, value(func(v *kmsg.TxnMetadataValue) { v.State = 6 }), ErrTxnRecordCorrupt},
		{"state PrepareEpochFence", good.Key, value(func(v *kmsg.TxnMetadataValue) { v.State = 7 }), ErrTxnRecordCorrupt},
		{"state 9", good.Key, value(func(v *kmsg.TxnMetadataValue) { v.State = 9 }), ErrTxnRecordCorrupt},
		{"negative producer id", good.Key, value(func(v *kmsg.TxnMetadataValue) { v.ProducerID = -1 }), ErrTxnRecordCorrupt},
		{"negative epoch", good.Key, value(func(v *kmsg.TxnMetadataValue) { v.ProducerEpoch = -1 }), ErrTxnRecordCorrupt},
		{"bad next producer id", good.Key, value(func(v *kmsg.TxnMetadataValue) { v.NextProducerID = -2 }), ErrTxnRecordCorrupt},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, m, err := DecodeTxnRecord(tt.key, tt.value)
			if !errors.Is(err, tt.want) || m != nil {
				t.Fatalf("got %+v, %v; want %v", m, err, tt.want)
			}
		})
	}
}

// Decoded strings must not alias the record: replay reuses its buffers.
func TestTxnDecodeRecordCopies(t *testing.T) {
	rec := EncodeTxnRecord(&TxnMetadata{TransactionalID: "id", ProducerID: 1, PrevProducerID: -1, NextProducerID: -1,
		State: TxnOngoing, Partitions: []TxnTopicPartition{{"topic", 1}}})
	id, m, err := DecodeTxnRecord(rec.Key, rec.Value)
	if err != nil {
		t.Fatal(err)
	}
	clear(rec.Key)
	clear(rec.Value)
	if id != "id" || m.TransactionalID != "id" || m.Partitions[0].Topic != "topic" {
		t.Fatalf("decoded record changed with its input: %q %+v", id, m)
	}
}

func txnFuzzSeeds() []TxnRecord {
	ms := []TxnMetadata{
		{TransactionalID: "t", ProducerID: 5, PrevProducerID: 5, NextProducerID: -1, ProducerEpoch: 1, TimeoutMs: 60000,
			State: TxnEmpty, StartMs: -1, LastUpdateMs: 1},
		{TransactionalID: "t", ProducerID: 5, PrevProducerID: 5, NextProducerID: 9, ProducerEpoch: 32767, TimeoutMs: 60000,
			State: TxnPrepareCommit, Partitions: []TxnTopicPartition{{"a", 0}, {"b", 3}}, StartMs: 1, LastUpdateMs: 2, ClientTransactionVersion: 2},
		{TransactionalID: "", ProducerID: 0, PrevProducerID: -1, NextProducerID: -1, State: TxnCompleteAbort},
	}
	var recs []TxnRecord
	for i := range ms {
		recs = append(recs, EncodeTxnRecord(&ms[i]))
	}
	return append(recs, EncodeTxnTombstone("t"))
}

// FuzzDecodeTxnRecord: any input decodes or fails with a named error, never
// panics, and whatever decodes re-encodes to a record that decodes to the
// same metadata.
func FuzzDecodeTxnRecord(f *testing.F) {
	for _, r := range txnFuzzSeeds() {
		f.Add(r.Key, r.Value, r.Value == nil)
	}
	v0 := kmsg.NewTxnMetadataValue()
	v0.State, v0.Topics = 1, []kmsg.TxnMetadataValueTopic{{Topic: "x", Partitions: []int32{1}}}
	f.Add(txnmKey("t"), v0.AppendTo(nil), false)
	f.Add([]byte{0, 1, 0, 1, 'x'}, []byte{0}, false)
	f.Fuzz(func(t *testing.T, key, value []byte, tombstone bool) {
		if tombstone {
			value = nil
		} else if value == nil {
			value = []byte{}
		}
		id, m, err := DecodeTxnRecord(key, value)
		if err != nil {
			if !errors.Is(err, ErrTxnRecordCorrupt) && !errors.Is(err, ErrTxnRecordUnknown) {
				t.Fatalf("unnamed error %v", err)
			}
			return
		}
		var again TxnRecord
		if m == nil {
			again = EncodeTxnTombstone(id)
		} else {
			if m.TransactionalID != id {
				t.Fatalf("metadata of %q names %q", id, m.TransactionalID)
			}
			if !txnSortedUnique(m.Partitions) || (len(m.Partitions) > 0 && m.State != TxnOngoing && m.State != TxnPrepareCommit && m.State != TxnPrepareAbort) {
				t.Fatalf("decoded partitions %v in %v", m.Partitions, m.State)
			}
			again = EncodeTxnRecord(m)
		}
		id2, m2, err := DecodeTxnRecord(again.Key, again.Value)
		if err != nil {
			t.Fatalf("re-encoded record does not decode: %v", err)
		}
		if id2 != id || !reflect.DeepEqual(m, m2) {
			t.Fatalf("round trip changed the record:\n%q %+v\n%q %+v", id, m, id2, m2)
		}
	})
}

// FuzzTxnReplayerApply: replay accepts exactly what DecodeTxnRecord
// accepts (skipping unknown key versions), and a table built from arbitrary
// records serves requests without breaking its invariants.
func FuzzTxnReplayerApply(f *testing.F) {
	for _, r := range txnFuzzSeeds() {
		f.Add(r.Key, r.Value, r.Value == nil)
	}
	// Found by the fuzzer: Empty starting at 0, where Kafka writes -1.
	f.Add([]byte{0, 0, 0, 0}, make([]byte, 37), false)
	f.Fuzz(func(t *testing.T, key, value []byte, tombstone bool) {
		if tombstone {
			value = nil
		} else if value == nil {
			value = []byte{}
		}
		r := NewTxnReplayer()
		applyErr := r.Apply(key, value)
		_, _, decodeErr := DecodeTxnRecord(key, value)
		if errors.Is(decodeErr, ErrTxnRecordUnknown) {
			decodeErr = nil
		}
		if (applyErr == nil) != (decodeErr == nil) {
			t.Fatalf("Apply: %v, DecodeTxnRecord: %v", applyErr, decodeErr)
		}
		clear(key)
		clear(value)
		table := r.Table(TxnConfig{})
		pids := func() (int64, error) { return 1 << 40, nil }
		for _, m := range table.List(nil, nil) {
			txnCheckLoaded(t, m)
			now := txnT0
			table.AddPartitions(now, m.TransactionalID, m.ProducerID, m.ProducerEpoch, []TxnTopicPartition{{"t", 0}}, false)
			table.EndTxn(now, m.TransactionalID, m.ProducerID, m.ProducerEpoch, true, true)
			table.InitProducerID(now, m.TransactionalID, 1000, m.ProducerID, m.ProducerEpoch, pids)
			for _, mk := range table.PendingMarkers() {
				table.MarkersWritten(now, mk.TransactionalID, mk.ProducerID, mk.ProducerEpoch)
			}
			table.Tick(now.AddDate(1, 0, 0))
			for _, m := range table.List(nil, nil) {
				txnCheckLoaded(t, m)
			}
		}
	})
}
