package broker

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"reflect"
	"slices"
	"testing"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/chronik-stream/chronik/wal"
)

func txnSpec(n int, pid int64, epoch int16, seq int32) batchSpec {
	s := idem(n, pid, epoch, seq)
	s.attrs = attrTransactional
	return s
}

// produceTxn sends a transactional batch under transactional id "tx".
func produceTxn(t testing.TB, b *Broker, topic string, p int32, batch []byte) (ProduceResult, error) {
	t.Helper()
	tid := "tx"
	return b.Produce(context.Background(), topic, p, bytes.Clone(batch), -1, &tid)
}

func mustProduceTxn(t testing.TB, b *Broker, topic string, p int32, batch []byte) ProduceResult {
	t.Helper()
	res, err := produceTxn(t, b, topic, p, batch)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func mustMarker(t testing.TB, b *Broker, topic string, p int32, pid int64, epoch int16, commit bool) {
	t.Helper()
	if err := b.WriteTxnMarker(context.Background(), topic, p, pid, epoch, commit, 0); err != nil {
		t.Fatalf("marker for producer %d: %v", pid, err)
	}
}

// fetchCommitted is a read_committed fetch of everything from offset.
func fetchCommitted(t testing.TB, b *Broker, topic string, p int32, offset int64) FetchResult {
	t.Helper()
	res, err := b.Fetch(topic, p, offset, 1<<30, IsolationReadCommitted)
	if err != nil {
		t.Fatalf("read_committed fetch at %d: %v", offset, err)
	}
	return res
}

func wantStable(t testing.TB, b *Broker, topic string, p int32, wantLSO, wantHW int64) {
	t.Helper()
	for _, iso := range []int8{0, IsolationReadCommitted} {
		res, err := b.Fetch(topic, p, 0, 1, iso)
		if err != nil {
			t.Fatal(err)
		}
		if res.LastStableOffset != wantLSO || res.HighWatermark != wantHW {
			t.Fatalf("isolation %d: last stable offset %d, high watermark %d; want %d, %d", iso, res.LastStableOffset, res.HighWatermark, wantLSO, wantHW)
		}
	}
	if off, _, err := b.ListOffset(topic, p, TimestampLatest, IsolationReadCommitted); err != nil || off != wantLSO {
		t.Fatalf("read_committed latest offset %d %v, want %d", off, err, wantLSO)
	}
	if off, _, err := b.ListOffset(topic, p, TimestampLatest, 0); err != nil || off != wantHW {
		t.Fatalf("read_uncommitted latest offset %d %v, want %d", off, err, wantHW)
	}
}

// lastOffset is the offset after the last stored batch in records.
func lastOffset(t testing.TB, records []byte) int64 {
	t.Helper()
	got := splitStored(t, records)
	if len(got) == 0 {
		return -1
	}
	return got[len(got)-1].last + 1
}

// TestTxnLastStableOffset follows the last stable offset and the aborted
// index through two interleaved transactions, one aborted and one
// committed, plain records between them and a third left open.
func TestTxnLastStableOffset(t *testing.T) {
	b := openBroker(t, Config{NoTxnVerification: true})
	createTopic(t, b, "t", 1, nil)
	a, ae, _ := b.InitProducerID(nil, 0, -1, -1)
	c, ce, _ := b.InitProducerID(nil, 0, -1, -1)

	mustProduceTxn(t, b, "t", 0, buildBatch(txnSpec(2, a, ae, 0))) // 0-1: a's transaction
	wantStable(t, b, "t", 0, 0, 2)
	mustProduce(t, b, "t", 0, buildBatch(plain(1)))                // 2
	mustProduceTxn(t, b, "t", 0, buildBatch(txnSpec(1, c, ce, 0))) // 3: c's transaction
	mustProduceTxn(t, b, "t", 0, buildBatch(txnSpec(1, a, ae, 2))) // 4
	if res := fetchCommitted(t, b, "t", 0, 0); len(res.Records) != 0 || res.AbortedTransactions != nil {
		t.Fatalf("read_committed fetch with a's transaction open at 0: %d bytes, aborted %v", len(res.Records), res.AbortedTransactions)
	}
	if res, err := b.Fetch("t", 0, 0, 1<<30, 0); err != nil || lastOffset(t, res.Records) != 5 || res.AbortedTransactions != nil {
		t.Fatalf("read_uncommitted fetch: %v, up to %d, aborted %v", err, lastOffset(t, res.Records), res.AbortedTransactions)
	}

	mustMarker(t, b, "t", 0, a, ae, false) // 5: abort a
	wantStable(t, b, "t", 0, 3, 6)
	res := fetchCommitted(t, b, "t", 0, 0)
	if got := lastOffset(t, res.Records); got != 3 {
		t.Fatalf("read_committed fetch ends at %d, want 3 (c's transaction)", got)
	}
	if want := []AbortedTransaction{{ProducerID: a, FirstOffset: 0}}; !reflect.DeepEqual(res.AbortedTransactions, want) {
		t.Fatalf("aborted %v, want %v", res.AbortedTransactions, want)
	}

	mustProduceTxn(t, b, "t", 0, buildBatch(txnSpec(2, c, ce, 1))) // 6-7
	mustMarker(t, b, "t", 0, c, ce, true)                          // 8: commit c
	wantStable(t, b, "t", 0, 9, 9)
	mustProduce(t, b, "t", 0, buildBatch(plain(1)))                // 9
	mustProduceTxn(t, b, "t", 0, buildBatch(txnSpec(1, a, ae, 3))) // 10: a's next transaction, left open
	wantStable(t, b, "t", 0, 10, 11)

	res = fetchCommitted(t, b, "t", 0, 0)
	if got := lastOffset(t, res.Records); got != 10 {
		t.Fatalf("read_committed fetch ends at %d, want 10", got)
	}
	if want := []AbortedTransaction{{ProducerID: a, FirstOffset: 0}}; !reflect.DeepEqual(res.AbortedTransactions, want) {
		t.Fatalf("aborted %v, want %v", res.AbortedTransactions, want)
	}
	// From a's abort marker (5) on it is listed, past it not: a consumer
	// that never sees the marker would drop a's later batches with it.
	if res := fetchCommitted(t, b, "t", 0, 5); len(res.AbortedTransactions) != 1 || lastOffset(t, res.Records) != 10 {
		t.Fatalf("from the marker on: aborted %v, up to %d", res.AbortedTransactions, lastOffset(t, res.Records))
	}
	if res := fetchCommitted(t, b, "t", 0, 6); len(res.AbortedTransactions) != 0 {
		t.Fatalf("past the marker: aborted %v", res.AbortedTransactions)
	}
	// At and past the LSO: nothing, no error; past the HW: out of range.
	if res := fetchCommitted(t, b, "t", 0, 10); len(res.Records) != 0 || res.LastStableOffset != 10 {
		t.Fatalf("at the last stable offset: %d bytes, lso %d", len(res.Records), res.LastStableOffset)
	}
	if res := fetchCommitted(t, b, "t", 0, 11); len(res.Records) != 0 {
		t.Fatalf("at the high watermark: %d bytes", len(res.Records))
	}
	_, err := b.Fetch("t", 0, 12, 1<<20, IsolationReadCommitted)
	wantKerr(t, err, kerr.OffsetOutOfRange)

	// Timestamp lookups end at the last stable offset for read_committed.
	if off, _, err := b.ListOffset("t", 0, 1000, IsolationReadCommitted); err != nil || off != 0 {
		t.Fatalf("first offset at ts 1000: %d %v", off, err)
	}
	if off, _, _ := b.ListOffset("t", 0, TimestampMaxTimestamp, IsolationReadCommitted); off >= 10 {
		t.Fatalf("read_committed max timestamp offset %d at or past the last stable offset", off)
	}

	mustMarker(t, b, "t", 0, a, ae, true) // 11: commit a's second
	wantStable(t, b, "t", 0, 12, 12)
	if res := fetchCommitted(t, b, "t", 0, 10); lastOffset(t, res.Records) != 12 || len(res.AbortedTransactions) != 0 {
		t.Fatalf("after the commit: up to %d, aborted %v", lastOffset(t, res.Records), res.AbortedTransactions)
	}
	if ls, hw, lso, err := b.FetchOffsets("t", 0); err != nil || ls != 0 || hw != 12 || lso != 12 {
		t.Fatalf("fetch offsets %d %d %d %v", ls, hw, lso, err)
	}
}

// TestTxnMarkerStored checks the marker as stored: Kafka's control batch,
// which kmsg decodes as one.
func TestTxnMarkerStored(t *testing.T) {
	b := openBroker(t, Config{NoTxnVerification: true})
	createTopic(t, b, "t", 1, nil)
	pid, epoch, _ := b.InitProducerID(nil, 0, -1, -1)
	mustProduceTxn(t, b, "t", 0, buildBatch(txnSpec(1, pid, epoch, 0)))
	if err := b.WriteTxnMarker(context.Background(), "t", 0, pid, epoch, true, 42); err != nil {
		t.Fatal(err)
	}
	got := fetchAll(t, b, "t", 0, 0)
	if len(got) != 2 || got[1].base != 1 || got[1].last != 1 {
		t.Fatalf("stored %+v", got)
	}
	var rb kmsg.RecordBatch
	if err := rb.ReadFrom(got[1].bytes); err != nil {
		t.Fatal(err)
	}
	if rb.Attributes != 0x30 || rb.ProducerID != pid || rb.ProducerEpoch != epoch || rb.FirstSequence != -1 || rb.NumRecords != 1 || rb.Magic != 2 {
		t.Fatalf("control batch header %+v", rb)
	}
	var rec kmsg.Record
	if err := rec.ReadFrom(rb.Records); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(rec.Key, []byte{0, 0, 0, 1}) || !bytes.Equal(rec.Value, []byte{0, 0, 0, 0, 0, 42}) {
		t.Fatalf("control record key %x value %x", rec.Key, rec.Value)
	}
	var key kmsg.ControlRecordKey
	if err := key.ReadFrom(rec.Key); err != nil || key.Type != kmsg.ControlRecordKeyTypeCommit {
		t.Fatalf("control key %+v %v", key, err)
	}
	if kind, ce, ok := parseControlRecord(got[1].bytes); !ok || kind != controlCommit || ce != 42 {
		t.Fatalf("parsed %d %d %v", kind, ce, ok)
	}
	// Clients may not send one.
	_, err := produceTxn(t, b, "t", 0, controlBatch(pid, epoch, controlAbort, 0, 1000))
	wantKerr(t, err, kerr.InvalidRecord)
}

// TestTxnProduceAndMarkerChecks: the errors Kafka's partition answers.
func TestTxnProduceAndMarkerChecks(t *testing.T) {
	b := openBroker(t, Config{NoTxnVerification: true})
	createTopic(t, b, "t", 1, nil)
	ctx := context.Background()
	a, ae, _ := b.InitProducerID(nil, 0, -1, -1)
	c, ce, _ := b.InitProducerID(nil, 0, -1, -1)

	// One producer's transactional batches per request.
	two := append(buildBatch(txnSpec(1, a, ae, 0)), buildBatch(txnSpec(1, c, ce, 0))...)
	_, err := produceTxn(t, b, "t", 0, two)
	wantKerr(t, err, kerr.InvalidProducerIDMapping)

	mustProduceTxn(t, b, "t", 0, buildBatch(txnSpec(1, a, ae, 0)))
	// A non-transactional batch while the transaction is open.
	_, err = produce(t, b, "t", 0, buildBatch(idem(1, a, ae, 1)))
	wantKerr(t, err, kerr.InvalidTxnState)
	// ... also when it opened earlier in the same request.
	_, err = produceTxn(t, b, "t", 0, append(buildBatch(txnSpec(1, c, ce, 0)), buildBatch(idem(1, c, ce, 1))...))
	wantKerr(t, err, kerr.InvalidTxnState)
	// A transactional id with plain batches is accepted, as Kafka does.
	if _, err := produceTxn(t, b, "t", 0, buildBatch(plain(1))); err != nil {
		t.Fatalf("transactional id with a plain batch: %v", err)
	}

	// Markers: an older producer epoch, an older coordinator epoch.
	if err := b.WriteTxnMarker(ctx, "t", 0, a, ae, false, 5); err != nil {
		t.Fatal(err)
	}
	err = b.WriteTxnMarker(ctx, "t", 0, a, ae, true, 4)
	wantKerr(t, err, kerr.TransactionCoordinatorFenced)
	// KIP-890: the abort bumped the epoch; the next transaction's batch
	// starts at sequence 0 of the new epoch.
	if err := b.WriteTxnMarker(ctx, "t", 0, a, ae+1, false, 5); err != nil {
		t.Fatalf("marker of a bumped epoch for a producer without an open transaction: %v", err)
	}
	err = b.WriteTxnMarker(ctx, "t", 0, a, ae, false, 5)
	wantKerr(t, err, kerr.InvalidProducerEpoch)
	_, err = produceTxn(t, b, "t", 0, buildBatch(txnSpec(1, a, ae+1, 1)))
	wantKerr(t, err, kerr.OutOfOrderSequenceNumber)
	_, err = produceTxn(t, b, "t", 0, buildBatch(txnSpec(1, a, ae, 1)))
	wantKerr(t, err, kerr.InvalidProducerEpoch)
	first := mustProduceTxn(t, b, "t", 0, buildBatch(txnSpec(1, a, ae+1, 0)))
	// Its retry is a duplicate.
	if res := mustProduceTxn(t, b, "t", 0, buildBatch(txnSpec(1, a, ae+1, 0))); res.BaseOffset != first.BaseOffset {
		t.Fatalf("retry at %d, want %d", res.BaseOffset, first.BaseOffset)
	}
	// A marker for a producer the partition never saw is written.
	_, hwBefore, _ := b.PartitionOffsets("t", 0)
	if err := b.WriteTxnMarker(ctx, "t", 0, c+100, 0, false, 0); err != nil {
		t.Fatal(err)
	}
	if _, hw, _ := b.PartitionOffsets("t", 0); hw != hwBefore+1 {
		t.Fatalf("high watermark %d after a marker at %d", hw, hwBefore)
	}
	p, _ := b.partition("t", 0)
	p.logMu.Lock()
	aborted := slices.Clone(p.txns.aborted)
	p.logMu.Unlock()
	if len(aborted) != 1 || aborted[0].ProducerID != a || aborted[0].FirstOffset != 0 {
		t.Fatalf("aborted index %+v: markers without an open transaction add nothing", aborted)
	}

	err = b.WriteTxnMarker(ctx, "t", 0, -1, 0, true, 0)
	wantKerr(t, err, kerr.InvalidRequest)
	err = b.WriteTxnMarker(ctx, "nope", 0, a, ae, true, 0)
	wantKerr(t, err, kerr.UnknownTopicOrPartition)
}

// TestTxnHookCalled: the stub verifyTxnPartition accepts, so
// transactional batches with a transactional id are appended on every
// partition (the coordinator's replacement brings its own tests).
func TestTxnHookCalled(t *testing.T) {
	b := openBroker(t, Config{NoTxnVerification: true})
	createTopic(t, b, "t", 2, nil)
	pid, epoch, _ := b.InitProducerID(nil, 0, -1, -1)
	for p := range int32(2) {
		if res := mustProduceTxn(t, b, "t", p, buildBatch(txnSpec(3, pid, epoch, 0))); res.BaseOffset != 0 {
			t.Fatalf("partition %d: %+v", p, res)
		}
	}
	if err := b.verifyTxnPartition("tx", pid, epoch, "t", 0); err != nil {
		t.Fatalf("stub: %v", err)
	}
}

// txnScript writes a fixed mix of transactional, plain and marker batches
// of producers a and c (epoch 0) to t-0; TestTxnScriptView spells out the
// view it leaves.
func txnScript(t testing.TB, b *Broker, a, c int64) {
	t.Helper()
	mustProduceTxn(t, b, "t", 0, buildBatch(txnSpec(2, a, 0, 0)))
	mustProduceTxn(t, b, "t", 0, buildBatch(txnSpec(1, c, 0, 0)))
	mustProduce(t, b, "t", 0, buildBatch(plain(3)))
	mustMarker(t, b, "t", 0, a, 0, false)
	mustProduceTxn(t, b, "t", 0, buildBatch(txnSpec(1, a, 0, 2)))
	mustMarker(t, b, "t", 0, c, 0, false)
	mustMarker(t, b, "t", 0, a, 0, true)
	mustProduceTxn(t, b, "t", 0, buildBatch(txnSpec(1, c, 0, 1)))
}

type txnView struct {
	Next     int64
	Ongoing  map[int64]int64
	Aborted  []abortedTxn
	Stable   int64
	Fetch    []AbortedTransaction
	Visible  int64
	Producer map[int64]producerState
}

func viewOf(t testing.TB, b *Broker) txnView {
	t.Helper()
	p, err := b.partition("t", 0)
	if err != nil {
		t.Fatal(err)
	}
	p.logMu.Lock()
	v := txnView{Next: p.nextOffset, Ongoing: copyOngoing(p.txns.ongoing), Aborted: slices.Clone(p.txns.aborted), Producer: map[int64]producerState{}}
	for id, st := range p.producers {
		st.LastTimestamp = 0 // markers carry the wall clock
		v.Producer[id] = st
	}
	p.logMu.Unlock()
	res := fetchCommitted(t, b, "t", 0, p.logStartOffset.Load())
	v.Stable, v.Fetch, v.Visible = res.LastStableOffset, res.AbortedTransactions, lastOffset(t, res.Records)
	return v
}

func copyOngoing(m map[int64]int64) map[int64]int64 {
	out := map[int64]int64{}
	for k, v := range m {
		out[k] = v
	}
	return out
}

func TestTxnScriptView(t *testing.T) {
	b := openBroker(t, Config{NoTxnVerification: true})
	createTopic(t, b, "t", 1, nil)
	txnScript(t, b, 7, 8)
	v := viewOf(t, b)
	want := txnView{
		Next:    11,
		Ongoing: map[int64]int64{8: 10},
		Aborted: []abortedTxn{{ProducerID: 7, FirstOffset: 0, LastOffset: 6, FirstOpen: 0}, {ProducerID: 8, FirstOffset: 2, LastOffset: 8, FirstOpen: 2}},
		Stable:  10,
		Fetch:   []AbortedTransaction{{ProducerID: 7, FirstOffset: 0}, {ProducerID: 8, FirstOffset: 2}},
		Visible: 10,
	}
	v.Producer = nil
	if !reflect.DeepEqual(v, want) {
		t.Fatalf("view\n%+v\nwant\n%+v", v, want)
	}
}

// TestTxnViewSurvivesRestart: the open transactions and the aborted index
// come back from the state file (clean close) and from the state file plus
// the log after it (crash after a snapshot), and are the same as before.
func TestTxnViewSurvivesRestart(t *testing.T) {
	for _, crash := range []bool{false, true} {
		t.Run(map[bool]string{false: "clean close", true: "crash"}[crash], func(t *testing.T) {
			b := openBroker(t, Config{NoTxnVerification: true})
			createTopic(t, b, "t", 1, nil)
			mustProduceTxn(t, b, "t", 0, buildBatch(txnSpec(2, 7, 0, 0)))
			mustProduceTxn(t, b, "t", 0, buildBatch(txnSpec(1, 8, 0, 0)))
			b.SnapshotState() // producer 7 and 8 open in the file
			mustProduce(t, b, "t", 0, buildBatch(plain(3)))
			mustMarker(t, b, "t", 0, 7, 0, false)
			mustProduceTxn(t, b, "t", 0, buildBatch(txnSpec(1, 7, 0, 2)))
			mustMarker(t, b, "t", 0, 8, 0, false)
			mustMarker(t, b, "t", 0, 7, 0, true)
			mustProduceTxn(t, b, "t", 0, buildBatch(txnSpec(1, 8, 0, 1)))
			before := viewOf(t, b)
			if len(before.Aborted) != 2 {
				t.Fatalf("view before the restart %+v", before)
			}
			if crash {
				dir := t.TempDir()
				copyDir(t, b.cfg.DataDir, dir)
				b.Close()
				b = openBroker(t, Config{DataDir: dir, NoTxnVerification: true})
			} else {
				b = reopen(t, b)
				snap, err := loadSnapshot(func() string { p, _ := b.partition("t", 0); return p.statePath() }())
				if err != nil || len(snap.AbortedTxns) == 0 || len(snap.OngoingTxns) != 1 {
					t.Fatalf("state file %+v %v", snap, err)
				}
			}
			if after := viewOf(t, b); !reflect.DeepEqual(after, before) {
				t.Fatalf("view after restart\n%+v\nbefore\n%+v", after, before)
			}
			// Producer 8's open transaction still holds the LSO until its marker.
			mustMarker(t, b, "t", 0, 8, 0, true)
			wantStable(t, b, "t", 0, 12, 12)
		})
	}
}

// TestTxnIndexRetention: DeleteRecords and retention drop the aborted
// transactions whose marker is below the new log start, in memory and in
// the state file, and keep one whose marker can still be fetched.
func TestTxnIndexRetention(t *testing.T) {
	b := openBroker(t, Config{SegmentBytes: 512, NoTxnVerification: true})
	createTopic(t, b, "t", 1, nil)
	// Producer 1: aborted at 0-1, marker 2. Producer 2: opens at 3,
	// plain batches, aborted with its marker far later.
	mustProduceTxn(t, b, "t", 0, buildBatch(txnSpec(2, 1, 0, 0)))
	mustMarker(t, b, "t", 0, 1, 0, false)
	mustProduceTxn(t, b, "t", 0, buildBatch(txnSpec(1, 2, 0, 0)))
	for range 20 {
		mustProduce(t, b, "t", 0, buildBatch(plain(2)))
	}
	mustMarker(t, b, "t", 0, 2, 0, false) // 44
	mustProduce(t, b, "t", 0, buildBatch(plain(1)))
	p, _ := b.partition("t", 0)
	count := func() int {
		p.logMu.Lock()
		defer p.logMu.Unlock()
		return len(p.txns.aborted)
	}
	if n := count(); n != 2 {
		t.Fatalf("%d aborted transactions", n)
	}
	if _, err := b.DeleteRecords("t", 0, 20); err != nil {
		t.Fatal(err)
	}
	if n := count(); n != 1 {
		t.Fatalf("%d aborted transactions after the log start passed the first marker", n)
	}
	res := fetchCommitted(t, b, "t", 0, 20)
	if want := []AbortedTransaction{{ProducerID: 2, FirstOffset: 3}}; !reflect.DeepEqual(res.AbortedTransactions, want) {
		t.Fatalf("from the log start: aborted %v, want %v", res.AbortedTransactions, want)
	}
	b = reopen(t, b)
	if res := fetchCommitted(t, b, "t", 0, 20); len(res.AbortedTransactions) != 1 {
		t.Fatalf("after restart: aborted %v", res.AbortedTransactions)
	}
	p, _ = b.partition("t", 0)
	if snap, _ := loadSnapshot(p.statePath()); len(snap.AbortedTxns) == 0 {
		t.Fatal("aborted index missing from the state file")
	}
	// Retention past the second marker empties the index.
	if _, err := b.DeleteRecords("t", 0, 45); err != nil {
		t.Fatal(err)
	}
	b.RunRetention()
	if n := count(); n != 0 {
		t.Fatalf("%d aborted transactions below the log start", n)
	}
	b = reopen(t, b)
	p, _ = b.partition("t", 0)
	if snap, _ := loadSnapshot(p.statePath()); len(snap.AbortedTxns) != 0 {
		t.Fatalf("state file keeps %d bytes of aborted index", len(snap.AbortedTxns))
	}
}

// TestTxnFollowerView: a follower builds the same view from the entries
// its replica reports (Appended) as the leader that wrote them, and serves
// the same read_committed answers once it leads.
func TestTxnFollowerView(t *testing.T) {
	leader := openBroker(t, Config{NoTxnVerification: true})
	createTopic(t, leader, "t", 1, nil)
	txnScript(t, leader, 7, 8)
	want := viewOf(t, leader)

	repl := &localReplication{replicas: map[string]*localReplica{}}
	f := openBroker(t, Config{NodeID: 1, Replication: repl, NoTxnVerification: true})
	createTopic(t, f, "t", 1, nil)
	rep := repl.replicas["t"]
	rep.lead(2, 1)
	for _, sb := range fetchAll(t, leader, "t", 0, 0) {
		rep.follow(t, wal.Entry{Kind: wal.KindData, Term: 1, BaseOffset: sb.base, LastOffsetDelta: int32(sb.last - sb.base),
			MaxTimestamp: readBatchHeader(sb.bytes).maxTimestamp, Payload: bytes.Clone(sb.bytes)})
	}
	rep.events.Committed(want.Next)
	rep.lead(1, 2)
	if got := viewOf(t, f); !reflect.DeepEqual(got, want) {
		t.Fatalf("follower's view\n%+v\nleader's\n%+v", got, want)
	}
	// As leader it ends producer 8's transaction like the other would.
	if err := f.WriteTxnMarker(context.Background(), "t", 0, 8, 0, true, 0); err != nil {
		t.Fatal(err)
	}
	wantStable(t, f, "t", 0, 12, 12)

	// A follower refuses markers.
	rep.lead(2, 3)
	err := f.WriteTxnMarker(context.Background(), "t", 0, 8, 0, true, 0)
	wantKerr(t, err, kerr.NotLeaderForPartition)
}

// TestTxnMarkerUncommitted: until the high watermark passes a marker (a
// new leader may still replace it), the transaction holds the last stable
// offset back, and a truncation that cuts the marker reopens it.
func TestTxnMarkerUncommitted(t *testing.T) {
	repl := &localReplication{replicas: map[string]*localReplica{}}
	b := openBroker(t, Config{NodeID: 1, Replication: repl, NoTxnVerification: true})
	createTopic(t, b, "t", 1, nil)
	rep := repl.replicas["t"]
	rep.lead(2, 1)
	data := buildBatch(txnSpec(2, 7, 0, 0))
	assignOffset(data, 0, 1)
	rep.follow(t, wal.Entry{Kind: wal.KindData, Term: 1, BaseOffset: 0, LastOffsetDelta: 1, MaxTimestamp: 1000, Payload: data})
	plainB := buildBatch(plain(1))
	assignOffset(plainB, 2, 1)
	rep.follow(t, wal.Entry{Kind: wal.KindData, Term: 1, BaseOffset: 2, LastOffsetDelta: 0, MaxTimestamp: 1000, Payload: plainB})
	marker := controlBatch(7, 0, controlCommit, 0, 1000)
	assignOffset(marker, 3, 1)
	rep.follow(t, wal.Entry{Kind: wal.KindData, Term: 1, BaseOffset: 3, LastOffsetDelta: 0, MaxTimestamp: 1000, Payload: marker})
	rep.events.Committed(3) // the marker is not committed yet
	rep.lead(1, 2)
	if res := fetchCommitted(t, b, "t", 0, 0); res.LastStableOffset != 0 || len(res.Records) != 0 {
		t.Fatalf("marker above the high watermark: lso %d, %d bytes", res.LastStableOffset, len(res.Records))
	}
	rep.events.Committed(4)
	if res := fetchCommitted(t, b, "t", 0, 0); res.LastStableOffset != 4 || lastOffset(t, res.Records) != 4 {
		t.Fatalf("marker committed: lso %d, up to %d", res.LastStableOffset, lastOffset(t, res.Records))
	}

	// Cut the marker: the transaction is open again.
	if err := rep.log.TruncateBack(rep.log.LastIndex() - 1); err != nil {
		t.Fatal(err)
	}
	rep.events.Truncated(rep.log.NextOffset())
	p, _ := b.partition("t", 0)
	p.logMu.Lock()
	first, open := p.txns.ongoing[7]
	p.logMu.Unlock()
	if !open || first != 0 {
		t.Fatalf("after the marker was cut: open %v at %d", open, first)
	}
}

// TestCollectAbortedMatchesBruteForce drives random interleavings of
// transactions through a txnState and checks collectAborted, which stops
// early (FirstOpen), against the plain definition for many ranges.
func TestCollectAbortedMatchesBruteForce(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for round := range 200 {
		var ts txnState
		producers := 1 + rng.IntN(6)
		off := int64(0)
		for range 60 + rng.IntN(100) {
			pid := int64(rng.IntN(producers))
			switch rng.IntN(4) {
			case 0, 1:
				ts.begin(pid, off)
			case 2:
				ts.end(pid, off, true)
			case 3:
				ts.end(pid, off, false)
			}
			off += 1 + int64(rng.IntN(3))
		}
		if enc, err := decodeAbortedIndex(encodeAbortedIndex(ts.aborted)); err != nil || !reflect.DeepEqual(enc, ts.aborted) && len(ts.aborted) > 0 {
			t.Fatalf("round %d: index round trip: %v", round, err)
		}
		for range 50 {
			start := int64(rng.IntN(int(off) + 2))
			upper := start + int64(rng.IntN(int(off)+2-int(start)))
			got := ts.collectAborted(start, upper)
			var want []AbortedTransaction
			for _, a := range ts.aborted {
				if a.LastOffset >= start && a.FirstOffset < upper {
					want = append(want, AbortedTransaction{ProducerID: a.ProducerID, FirstOffset: a.FirstOffset})
				}
			}
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("round %d: [%d, %d): got %v, want %v (index %+v)", round, start, upper, got, want, ts.aborted)
			}
		}
	}
}

func TestAbortedIndexDecodeErrors(t *testing.T) {
	good := encodeAbortedIndex([]abortedTxn{{ProducerID: 3, FirstOffset: 5, LastOffset: 9, FirstOpen: 1}, {ProducerID: 4, FirstOffset: 6, LastOffset: 12, FirstOpen: 6}})
	if got, err := decodeAbortedIndex(good); err != nil || len(got) != 2 || got[1].LastOffset != 12 || got[0].FirstOpen != 1 {
		t.Fatalf("decode: %+v %v", got, err)
	}
	for name, b := range map[string][]byte{
		"version":        append([]byte{9}, good[1:]...),
		"trailing":       append(slices.Clone(good), 0),
		"truncated":      good[:len(good)-1],
		"huge count":     {abortedIndexVersion, 0xff, 0xff, 0xff, 0xff, 0x0f},
		"marker repeats": encodeAbortedIndexRaw(1, 9, 4, 0, 1, 0, 4, 0),
		"first after":    encodeAbortedIndexRaw(1, 9, 0, 0),
		"negative first": encodeAbortedIndexRaw(1, 9, 10, 0),
		"negative open":  encodeAbortedIndexRaw(1, 9, 4, 6),
		"negative pid":   encodeAbortedIndexRaw(-1, 9, 4, 0),
	} {
		if _, err := decodeAbortedIndex(b); !errors.Is(err, errAbortedIndex) {
			t.Errorf("%s: %v", name, err)
		}
	}
	// A state file with a damaged index is refused as a whole.
	snap, _ := encodeSnapshot(partitionSnapshot{V: 1, AbortedTxns: good[:3]})
	if _, err := decodeSnapshot(snap); err == nil {
		t.Fatal("damaged index accepted")
	}
	// One written before transactions loads.
	if s, err := decodeSnapshot([]byte(`{"v":1,"log_start_offset":0,"next_offset":3,"producers":{"1":{"e":0,"b":[],"n":0,"t":5}}}`)); err != nil || func() int32 { st := s.Producers[1]; return st.coordinatorEpoch() }() != -1 {
		t.Fatalf("old state file: %+v %v", s, err)
	}
}

// encodeAbortedIndexRaw writes entries given as (pid, marker delta, span,
// open gap) groups, without the encoder's care.
func encodeAbortedIndexRaw(vals ...int64) []byte {
	b := []byte{abortedIndexVersion}
	b = binary.AppendUvarint(b, uint64(len(vals)/4))
	for i := 0; i+3 < len(vals); i += 4 {
		b = binary.AppendVarint(b, vals[i])
		for _, v := range vals[i+1 : i+4] {
			b = binary.AppendUvarint(b, uint64(v))
		}
	}
	return b
}

func FuzzDecodeAbortedIndex(f *testing.F) {
	f.Add(encodeAbortedIndex([]abortedTxn{{ProducerID: 3, FirstOffset: 5, LastOffset: 9, FirstOpen: 1}, {ProducerID: 1 << 40, FirstOffset: 6, LastOffset: 1 << 50, FirstOpen: 6}}))
	f.Add([]byte{abortedIndexVersion, 1, 0, 0, 0, 0})
	f.Add([]byte{abortedIndexVersion, 0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Fuzz(func(t *testing.T, b []byte) {
		got, err := decodeAbortedIndex(b)
		if err != nil {
			return
		}
		for i, a := range got {
			if a.ProducerID < 0 || a.FirstOpen < 0 || a.FirstOpen > a.FirstOffset || a.FirstOffset >= a.LastOffset || (i > 0 && a.LastOffset <= got[i-1].LastOffset) {
				t.Fatalf("decoded entry %d breaks the index's order: %+v", i, got)
			}
		}
		again, err := decodeAbortedIndex(encodeAbortedIndex(got))
		if err != nil || (len(got) > 0 && !reflect.DeepEqual(again, got)) {
			t.Fatalf("round trip: %v", err)
		}
		var ts txnState
		ts.aborted = got
		ts.collectAborted(0, 1<<62)
		ts.trim(1 << 20)
	})
}

func FuzzParseControlRecord(f *testing.F) {
	f.Add(controlBatch(1, 2, controlAbort, 3, 1000))
	f.Add(controlBatch(1, 2, controlCommit, -1, 1000))
	f.Add(buildBatch(plain(1)))
	f.Fuzz(func(t *testing.T, b []byte) {
		parseControlRecord(b)
		// And as a stored entry the view applies.
		if len(b) >= batchHeaderSize {
			m := producerStates{}
			var ts txnState
			m.applyEntry(&wal.Entry{Kind: wal.KindData, Payload: b}, &ts)
		}
	})
}

func TestControlBatchRoundTrip(t *testing.T) {
	for _, kind := range []int16{controlAbort, controlCommit} {
		for _, ce := range []int32{-1, 0, 7, 1 << 30} {
			b := controlBatch(5, 9, kind, ce, 1234)
			if len(b) != controlBatchSize || !crcOK(b) {
				t.Fatalf("batch of %d bytes, crc ok %v", len(b), crcOK(b))
			}
			if k, e, ok := parseControlRecord(b); !ok || k != kind || e != ce {
				t.Fatalf("parsed %d %d %v, want %d %d", k, e, ok, kind, ce)
			}
		}
	}
	// Not a marker: another control type, a compressed batch, garbage.
	other := controlBatch(5, 9, 3, 0, 1234)
	if k, _, ok := parseControlRecord(other); !ok || k != 3 {
		t.Fatalf("control type 3: %d %v", k, ok)
	}
	comp := controlBatch(5, 9, controlAbort, 0, 1234)
	comp[offAttributes+1] |= 1
	if _, _, ok := parseControlRecord(comp); ok {
		t.Fatal("compressed control batch parsed")
	}
	for n := range controlBatchSize {
		parseControlRecord(controlBatch(5, 9, controlAbort, 0, 1)[:n])
	}
}
