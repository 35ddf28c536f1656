package broker

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
)

// TestEndTxnBumpRunsOutOfEpochs: an EndTxn v5 (bumpEpoch) of a producer at
// the last epoch it may bump from continues the transactional id with a
// producer id from the broker's allocator (TxnConfig.NewProducerID) at
// epoch 0; a retry gets the same answer, the id is one no other producer
// gets, and the table rebuilt from the log after a restart agrees.
func TestEndTxnBumpRunsOutOfEpochs(t *testing.T) {
	b := openBroker(t, Config{})
	const id = "exhausted"
	txnID := id
	pid, _, err := b.InitProducerID(&txnID, 60_000, -1, -1)
	if err != nil {
		t.Fatal(err)
	}
	// As if the producer had been initialised 32766 times: the record is
	// written, so the log agrees with the table.
	last := int16(txnmMaxEpoch - 1)
	c, err := b.txnCoord()
	if err != nil {
		t.Fatal(err)
	}
	if err := c.call(id, func(tt *TxnTable, _ time.Time) TxnOutput {
		var out TxnOutput
		e := tt.entries[id]
		n := e.m
		n.ProducerEpoch = last
		tt.set(e, n, &out)
		return out
	}); err != nil {
		t.Fatal(err)
	}

	// An abort with nothing added bumps the epoch too (transaction version 2).
	next, epoch, err := b.EndTxn(id, pid, last, false, true)
	if err != nil {
		t.Fatal(err)
	}
	if next < 0 || next == pid || epoch != 0 {
		t.Fatalf("after the last epoch: producer %d epoch %d, want a new id (not %d) at epoch 0", next, epoch, pid)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		d, err := b.DescribeTransactions(id)
		if err != nil {
			t.Fatal(err)
		}
		if d.State == TxnCompleteAbort {
			if d.ProducerID != next || d.ProducerEpoch != 0 {
				t.Fatalf("completed with producer %d epoch %d, want %d and 0", d.ProducerID, d.ProducerEpoch, next)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("still %s", d.State)
		}
		time.Sleep(10 * time.Millisecond)
	}
	// The retry names the replaced id and its last epoch.
	if rp, re, err := b.EndTxn(id, pid, last, false, true); err != nil || rp != next || re != 0 {
		t.Fatalf("retry: producer %d epoch %d, %v; want %d and 0", rp, re, err, next)
	}
	// The commit of the finished abort is the other outcome.
	if _, _, err := b.EndTxn(id, pid, last, true, true); !errors.Is(err, kerr.InvalidTxnState) {
		t.Fatalf("commit retry of an abort: %v, want INVALID_TXN_STATE", err)
	}
	// The id came from the allocator: nobody else gets it.
	if other, _, err := b.InitProducerID(nil, 0, -1, -1); err != nil || other == next {
		t.Fatalf("an idempotent producer got %d (%v), the transactional id has %d", other, err, next)
	}

	b = reopen(t, b)
	deadline = time.Now().Add(10 * time.Second)
	for {
		d, err := b.DescribeTransactions(id)
		if err == nil {
			if d.State != TxnCompleteAbort || d.ProducerID != next || d.ProducerEpoch != 0 {
				t.Fatalf("after a restart: %s, producer %d epoch %d; want CompleteAbort, %d, 0", d.State, d.ProducerID, d.ProducerEpoch, next)
			}
			break
		}
		if !errors.Is(err, kerr.CoordinatorLoadInProgress) || time.Now().After(deadline) {
			t.Fatalf("describe after a restart: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestTxnOpenOnlyAtItsEpoch: with transaction version 2 a producer writes
// its next transaction at the epoch its EndTxn bumped, possibly before the
// last transaction's marker reached a partition. A transaction open on the
// partition counts only at its own epoch: the batch of the new epoch goes
// to the coordinator (here one that knows no such producer) instead of
// joining the transaction that is ending, and its add is not skipped.
func TestTxnOpenOnlyAtItsEpoch(t *testing.T) {
	// Verification off: the first batch opens a transaction on the
	// partition without a coordinator, as a marker not written yet
	// would leave it.
	b := openBroker(t, Config{NoTxnVerification: true})
	if _, err := b.CreateTopic("t", 1, -1, nil, false); err != nil {
		t.Fatal(err)
	}
	const pid = 7
	mustProduceTxn(t, b, "t", 0, buildBatch(txnSpec(2, pid, 3, 0)))
	if !b.txnOpenOn("t", 0, pid, 3) || b.txnOpenOn("t", 0, pid, 4) {
		t.Fatalf("open at epoch 3: %v, at 4: %v; want true, false", b.txnOpenOn("t", 0, pid, 3), b.txnOpenOn("t", 0, pid, 4))
	}
	tid := "tx"
	// The same epoch continues the open transaction without a round trip,
	// even when adding (Produce v12).
	if _, err := b.ProduceStartTxn(context.Background(), "t", 0, buildBatch(txnSpec(1, pid, 3, 2)), -1, &tid, TxnAddPartition).Wait(); err != nil {
		t.Fatalf("next batch of the open transaction: %v", err)
	}
	// The bumped epoch asks the coordinator, which does not know the id.
	_, err := b.ProduceStartTxn(context.Background(), "t", 0, buildBatch(txnSpec(1, pid, 4, 0)), -1, &tid, TxnAddPartition).Wait()
	if !errors.Is(err, kerr.InvalidProducerIDMapping) {
		t.Fatalf("batch of the bumped epoch: %v, want INVALID_PRODUCER_ID_MAPPING from the coordinator", err)
	}
	if !b.txnOpenOn("t", 0, pid, 3) {
		t.Fatal("the refused batch changed the open transaction")
	}
}

// TestTxnVerificationFencedIsInvalidProducerEpoch: a partition leader
// whose KIP-890 verification finds the producer fenced (a newer producer
// initialised the transactional id) answers INVALID_PRODUCER_EPOCH, for a
// transactional produce and a TxnOffsetCommit alike, as Kafka's
// AddPartitionsToTxnManager maps the coordinator's PRODUCER_FENCED
// ("producers expect to handle INVALID_PRODUCER_EPOCH in this scenario").
func TestTxnVerificationFencedIsInvalidProducerEpoch(t *testing.T) {
	b := openBroker(t, coordTestConfig())
	createTopic(t, b, "t", 1, nil)
	id := txnTestID
	pid, old, err := b.InitProducerID(&id, 60_000, -1, -1)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := b.InitProducerID(&id, 60_000, -1, -1); err != nil {
		t.Fatal(err)
	}
	_, err = produceTxn(t, b, "t", 0, buildBatch(txnSpec(1, pid, old, 0)))
	wantKerr(t, err, kerr.InvalidProducerEpoch)
	codes, err := b.TxnOffsetCommit(t.Context(), "g", id, pid, old, -1, "", nil, []GroupOffsetCommit{tOffset(0, 1)})
	wantKerr(t, err, kerr.InvalidProducerEpoch)
	if codes[0] != kerr.InvalidProducerEpoch.Code {
		t.Fatalf("TxnOffsetCommit code %d", codes[0])
	}
}
