package kafka

import (
	"context"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"reflect"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/chronik-stream/chronik/broker"
)

// txnTestBatch is a transactional batch of one producer: makeBatch's with
// the transactional attribute (and its CRC redone).
func txnTestBatch(pid int64, epoch int16, seq int32, keys ...string) []byte {
	recs := make([]testRecord, len(keys))
	for i, k := range keys {
		recs[i] = testRecord{key: []byte(k), value: []byte("v-" + k)}
	}
	raw := makeBatch(batchOpts{firstTimestamp: time.Now().UnixMilli(), producerID: pid, producerEpoch: epoch, baseSequence: seq}, recs...)
	binary.BigEndian.PutUint16(raw[21:], 0x10)
	binary.BigEndian.PutUint32(raw[17:], crc32.Checksum(raw[21:], crc32c))
	return raw
}

func keyedBatch(keys ...string) []byte {
	recs := make([]testRecord, len(keys))
	for i, k := range keys {
		recs[i] = testRecord{key: []byte(k), value: []byte("v-" + k)}
	}
	return makeBatch(batchOpts{firstTimestamp: time.Now().UnixMilli(), producerID: -1, producerEpoch: -1, baseSequence: -1}, recs...)
}

// txnFetch is a raw fetch of txn-0 from offset at an isolation level.
func txnFetch(t *testing.T, rc *rawConn, offset int64, isolation int8) kmsg.FetchResponseTopicPartition {
	t.Helper()
	req := fetchRequest("txn", 0, offset)
	req.IsolationLevel = isolation
	resp := rc.roundTrip(req).(*kmsg.FetchResponse)
	sp := resp.Topics[0].Partitions[0]
	wantCode(t, fmt.Sprintf("fetch at %d, isolation %d", offset, isolation), sp.ErrorCode)
	return sp
}

// keysOf lists the keys of the data records in fetched batches.
func keysOf(t *testing.T, raw []byte) []string {
	t.Helper()
	var keys []string
	for _, b := range decodeBatches(t, raw) {
		if b.Attributes&0x20 != 0 {
			continue // control batch
		}
		recs := b.Records
		for range b.NumRecords {
			var r kmsg.Record
			if err := r.ReadFrom(recs); err != nil {
				t.Fatal(err)
			}
			keys = append(keys, string(r.Key))
			l, n := binary.Varint(recs)
			recs = recs[n+int(l):]
		}
	}
	return keys
}

// TestReadCommittedEndToEnd writes an aborted, a committed and an open
// transaction with plain records between them (the transactional produce
// over the wire, the markers as the coordinator writes them), then checks
// what Kafka's read_committed readers depend on: a raw Fetch's last stable
// offset and aborted transactions (null for read_uncommitted, an array for
// read_committed), ListOffsets by isolation, a kgo read_committed consumer
// that never sees an aborted or undecided record, and the same answers
// after a restart.
func TestReadCommittedEndToEnd(t *testing.T) {
	e := startEnv(t)
	e.createTopic("txn", 1, nil)
	rc := e.dial()
	tid := "txn-e2e"
	init := kmsg.NewPtrInitProducerIDRequest()
	init.SetVersion(4)
	init.TransactionalID, init.TransactionTimeoutMillis = &tid, txnTestTimeoutMs
	ir := rc.roundTrip(init).(*kmsg.InitProducerIDResponse)
	wantCode(t, "init producer id", ir.ErrorCode)
	pid, epoch := ir.ProducerID, ir.ProducerEpoch
	// The partition is in the producer's transaction as far as the
	// coordinator knows (it verifies the first transactional write of each
	// transaction, KIP-890); the markers below are written directly.
	if codes, err := e.b.AddPartitionsToTxn(tid, pid, epoch, []broker.TxnTopicPartition{{Topic: "txn", Partition: 0}}, false); err != nil || codes[0] != 0 {
		t.Fatalf("add txn-0 to the transaction: %v %v", codes, err)
	}
	produce := func(what string, records []byte, txn bool) int64 {
		t.Helper()
		req := produceRequest("txn", 0, records)
		if txn {
			req.TransactionID = &tid
		}
		p := producePartitionResponse(t, rc.roundTrip(req))
		wantCode(t, what, p.ErrorCode)
		return p.BaseOffset
	}
	ctx := context.Background()

	produce("aborted transaction", txnTestBatch(pid, epoch, 0, "a1", "a2"), true)   // 0-1
	produce("plain", keyedBatch("p1"), false)                                       // 2
	if err := e.b.WriteTxnMarker(ctx, "txn", 0, pid, epoch, false, 0); err != nil { // 3
		t.Fatal(err)
	}
	produce("committed transaction", txnTestBatch(pid, epoch, 2, "c1", "c2"), true) // 4-5
	if err := e.b.WriteTxnMarker(ctx, "txn", 0, pid, epoch, true, 0); err != nil {  // 6
		t.Fatal(err)
	}
	produce("plain", keyedBatch("p2"), false)                                    // 7
	open := produce("open transaction", txnTestBatch(pid, epoch, 4, "o1"), true) // 8
	if open != 8 {
		t.Fatalf("open transaction at %d, want 8", open)
	}

	// A transactional batch without the transactional id.
	bad := producePartitionResponse(t, rc.roundTrip(produceRequest("txn", 0, txnTestBatch(pid, epoch, 5, "x"))))
	if bad.ErrorCode != kerr.TransactionalIDAuthorizationFailed.Code {
		t.Fatalf("transactional batch without an id: %v", kerr.ErrorForCode(bad.ErrorCode))
	}

	check := func(when string) {
		t.Helper()
		committed := txnFetch(t, rc, 0, 1)
		if committed.HighWatermark != 9 || committed.LastStableOffset != 8 {
			t.Fatalf("%s: read_committed hw %d lso %d, want 9 and 8", when, committed.HighWatermark, committed.LastStableOffset)
		}
		if got, want := keysOf(t, committed.RecordBatches), []string{"a1", "a2", "p1", "c1", "c2", "p2"}; !reflect.DeepEqual(got, want) {
			t.Fatalf("%s: read_committed records %v, want %v (up to the last stable offset)", when, got, want)
		}
		wantAborted := []kmsg.FetchResponseTopicPartitionAbortedTransaction{{ProducerID: pid, FirstOffset: 0}}
		if len(committed.AbortedTransactions) != 1 || committed.AbortedTransactions[0].ProducerID != pid || committed.AbortedTransactions[0].FirstOffset != 0 {
			t.Fatalf("%s: aborted transactions %+v, want %+v", when, committed.AbortedTransactions, wantAborted)
		}
		past := txnFetch(t, rc, 4, 1)
		if past.AbortedTransactions == nil || len(past.AbortedTransactions) != 0 {
			t.Fatalf("%s: read_committed past the abort: aborted %#v, want an empty array", when, past.AbortedTransactions)
		}
		uncommitted := txnFetch(t, rc, 0, 0)
		if uncommitted.AbortedTransactions != nil || uncommitted.LastStableOffset != 8 || uncommitted.HighWatermark != 9 {
			t.Fatalf("%s: read_uncommitted: aborted %#v (want null), lso %d, hw %d", when, uncommitted.AbortedTransactions, uncommitted.LastStableOffset, uncommitted.HighWatermark)
		}
		if got := keysOf(t, uncommitted.RecordBatches); len(got) != 7 || got[6] != "o1" {
			t.Fatalf("%s: read_uncommitted records %v", when, got)
		}

		for _, iso := range []int8{0, 1} {
			lo := kmsg.NewPtrListOffsetsRequest()
			lo.SetVersion(7)
			lo.IsolationLevel = iso
			lt := kmsg.NewListOffsetsRequestTopic()
			lt.Topic = "txn"
			lp := kmsg.NewListOffsetsRequestTopicPartition()
			lp.Partition, lp.Timestamp, lp.CurrentLeaderEpoch = 0, -1, -1
			lt.Partitions = append(lt.Partitions, lp)
			lo.Topics = append(lo.Topics, lt)
			sp := rc.roundTrip(lo).(*kmsg.ListOffsetsResponse).Topics[0].Partitions[0]
			wantCode(t, "list offsets", sp.ErrorCode)
			if want := map[int8]int64{0: 9, 1: 8}[iso]; sp.Offset != want {
				t.Fatalf("%s: latest offset %d at isolation %d, want %d", when, sp.Offset, iso, want)
			}
		}
	}
	check("before restart")
	e.restart()
	rc = e.dial()
	check("after restart")

	// kgo's read_committed consumer: once the open transaction commits
	// it reads every committed record once and none of the aborted ones.
	if err := e.b.WriteTxnMarker(ctx, "txn", 0, pid, epoch, true, 0); err != nil {
		t.Fatal(err)
	}
	cl := e.client(kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{"txn": {0: kgo.NewOffset().AtStart()}}),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()))
	var got []string
	pollCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for len(got) < 5 && pollCtx.Err() == nil {
		fs := cl.PollFetches(pollCtx)
		for _, err := range fs.Errors() {
			if pollCtx.Err() == nil {
				t.Fatalf("poll: %v", err)
			}
		}
		fs.EachRecord(func(r *kgo.Record) { got = append(got, string(r.Key)) })
	}
	if want := []string{"p1", "c1", "c2", "p2", "o1"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("read_committed consumer got %v, want %v", got, want)
	}
}
