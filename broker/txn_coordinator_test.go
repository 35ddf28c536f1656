package broker

import (
	"testing"
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
