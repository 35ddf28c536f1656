package broker

import (
	"context"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
)

// TestTxnStateCompaction: a __transaction_state partition whose log grew
// past txnCompactRatio times its live ids is compacted (the live records
// written again, the log start moved past the old ones), and a reload
// after a restart finds every id as it was.
func TestTxnStateCompaction(t *testing.T) {
	b := openBroker(t, Config{TxnStatePartitions: 1})
	ids := []string{"a", "b", "c"}
	var pids []int64
	for _, id := range ids {
		pid, _, err := b.InitProducerID(&id, 60000, -1, -1)
		if err != nil {
			t.Fatal(err)
		}
		pids = append(pids, pid)
	}
	// Each re-init bumps the epoch: one record each, far more than 3 ids.
	for range txnCompactMinRecords / len(ids) {
		for _, id := range ids {
			if _, _, err := b.InitProducerID(&id, 60000, -1, -1); err != nil {
				t.Fatal(err)
			}
		}
	}
	lso, hw, _ := b.PartitionOffsets(txnTopic, 0)
	if lso == 0 || hw-lso > txnCompactMinRecords {
		t.Fatalf("__transaction_state not compacted: log start %d, high watermark %d", lso, hw)
	}
	want := map[string]TxnMetadata{}
	for _, id := range ids {
		d, err := b.DescribeTransactions(id)
		if err != nil {
			t.Fatal(err)
		}
		want[id] = d
	}
	b = reopen(t, b)
	for i, id := range ids {
		d, err := b.DescribeTransactions(id)
		if err != nil || d.ProducerID != pids[i] || d.ProducerEpoch != want[id].ProducerEpoch || d.State != want[id].State {
			t.Fatalf("%s after compaction and restart: %+v %v, want %+v", id, d, err, want[id])
		}
	}
}

// TestTxnMarkersCarryCoordinatorEpoch: the markers a coordinator writes
// carry its epoch (the leader epoch of the id's __transaction_state
// partition), so that a partition refuses a late marker of a coordinator
// that has since lost the partition (TRANSACTION_COORDINATOR_FENCED), as
// Kafka's do. Without it, on the old protocol (the epoch stays the same
// across the producer's transactions) such a marker, held up while the new
// coordinator completed the transaction and the producer began its next
// one, would commit or abort that next transaction's records in the
// partition before the producer ended it.
func TestTxnMarkersCarryCoordinatorEpoch(t *testing.T) {
	repl := &localReplication{replicas: map[string]*localReplica{}}
	b := openBroker(t, Config{NodeID: 1, Replication: repl, TxnStatePartitions: 1, NoTxnVerification: true})
	if _, err := b.CreateTopic("t", 1, -1, nil, false); err != nil {
		t.Fatal(err)
	}
	repl.replicas["t"].lead(1, 1)
	id := txnTestID
	// The first call creates __transaction_state; this node leads it at
	// epoch 7.
	b.InitProducerID(&id, 60000, -1, -1)
	waitFor(t, func() bool { return repl.replica(txnTopic, 0) != nil })
	repl.replica(txnTopic, 0).lead(1, 7)
	var pid int64
	var epoch int16
	if err := whileLoading(func() (err error) { pid, epoch, err = b.InitProducerID(&id, 60000, -1, -1); return err }); err != nil {
		t.Fatal(err)
	}

	// txn runs one transaction of a record on t-0 to its marker and
	// returns the marker's coordinator epoch.
	txn := func(seq int32, commit bool) int32 {
		t.Helper()
		if err := whileLoading(func() error {
			codes, err := b.AddPartitionsToTxn(id, pid, epoch, []TxnTopicPartition{{"t", 0}}, false)
			if err == nil && codes[0] != 0 {
				t.Fatalf("add partition: code %d", codes[0])
			}
			return err
		}); err != nil {
			t.Fatal(err)
		}
		mustProduceTxn(t, b, "t", 0, buildBatch(txnSpec(1, pid, epoch, seq)))
		if _, _, err := b.EndTxn(id, pid, epoch, commit, false); err != nil {
			t.Fatal(err)
		}
		waitFor(t, func() bool {
			d, err := b.DescribeTransactions(id)
			return err == nil && (d.State == TxnCompleteCommit || d.State == TxnCompleteAbort)
		})
		got := fetchAll(t, b, "t", 0, 0)
		kind, ce, ok := parseControlRecord(got[len(got)-1].bytes)
		if !ok || (kind == controlCommit) != commit {
			t.Fatalf("last batch of t-0 is not the marker: %d %v", kind, ok)
		}
		return ce
	}
	if ce := txn(0, true); ce != 7 {
		t.Fatalf("marker of the coordinator at epoch 7 carries coordinator epoch %d", ce)
	}
	// The coordinator moves (here: this node again, at a new epoch, which
	// reloads the table).
	repl.replica(txnTopic, 0).lead(1, 8)
	if ce := txn(1, false); ce != 8 {
		t.Fatalf("marker of the coordinator at epoch 8 carries coordinator epoch %d", ce)
	}
	// The producer's next transaction is open on t-0 when a marker of the
	// coordinator at epoch 7 arrives: refused, the transaction stays open.
	if err := whileLoading(func() error {
		_, err := b.AddPartitionsToTxn(id, pid, epoch, []TxnTopicPartition{{"t", 0}}, false)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	open := mustProduceTxn(t, b, "t", 0, buildBatch(txnSpec(1, pid, epoch, 2)))
	err := b.WriteTxnMarker(context.Background(), "t", 0, pid, epoch, true, 7)
	wantKerr(t, err, kerr.TransactionCoordinatorFenced)
	if lso, _, err := b.ListOffset("t", 0, TimestampLatest, IsolationReadCommitted); err != nil || lso > open.BaseOffset {
		t.Fatalf("last stable offset %d past the open transaction at %d", lso, open.BaseOffset)
	}
}

// TestTxnCoordinatorFinishesAfterFailover: a transaction whose coordinator
// lost its partition between the commit decision and the markers is
// finished by the partition's next leader without any client calling it
// (Kafka loads a __transaction_state partition when it is elected and
// sends the pending markers). Otherwise nothing finishes it while its
// producer waits elsewhere: here, the consumer of the transaction's group
// waits for its offsets to become stable (UNSTABLE_OFFSET_COMMIT) before
// it produces or ends anything, and the partitions' last stable offsets
// stay behind the transaction.
func TestTxnCoordinatorFinishesAfterFailover(t *testing.T) {
	repl := &localReplication{replicas: map[string]*localReplica{}}
	b := openBroker(t, Config{NodeID: 1, Replication: repl, TxnStatePartitions: 1, NoTxnVerification: true})
	if _, err := b.CreateTopic("t", 1, -1, nil, false); err != nil {
		t.Fatal(err)
	}
	data := repl.replicas["t"]
	data.lead(1, 1)
	id := txnTestID
	b.InitProducerID(&id, 60000, -1, -1) // creates __transaction_state
	waitFor(t, func() bool { return repl.replica(txnTopic, 0) != nil })
	state := repl.replica(txnTopic, 0)
	state.lead(1, 7)
	var pid int64
	var epoch int16
	if err := whileLoading(func() (err error) { pid, epoch, err = b.InitProducerID(&id, 60000, -1, -1); return err }); err != nil {
		t.Fatal(err)
	}
	if err := whileLoading(func() error {
		_, err := b.AddPartitionsToTxn(id, pid, epoch, []TxnTopicPartition{{"t", 0}}, false)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	open := mustProduceTxn(t, b, "t", 0, buildBatch(txnSpec(1, pid, epoch, 0)))
	// t-0 moves to node 2 (which this test does not run): the marker
	// cannot be written, the commit is decided.
	data.lead(2, 2)
	if _, _, err := b.EndTxn(id, pid, epoch, true, false); err != nil {
		t.Fatal(err)
	}
	// The coordinator moves away and comes back at a new epoch while t-0
	// returns to this node; no client calls.
	state.lead(2, 8)
	b.txns.mu.Lock()
	tp := b.txns.parts[0]
	b.txns.mu.Unlock()
	waitFor(t, func() bool {
		tp.mu.Lock()
		defer tp.mu.Unlock()
		return tp.table == nil && len(tp.sending) == 0 // dropped, its marker writer gone
	})
	data.lead(1, 3)
	state.lead(1, 9)
	deadline := time.Now().Add(10 * time.Second)
	for {
		lso, _, err := b.ListOffset("t", 0, TimestampLatest, IsolationReadCommitted)
		if err == nil && lso > open.BaseOffset {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("t-0's last stable offset %d (%v) still at the transaction committed at %d after 10s", lso, err, open.BaseOffset)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if d, err := b.DescribeTransactions(id); err != nil || d.State != TxnCompleteCommit {
		t.Fatalf("after the markers: %+v %v", d, err)
	}
}
