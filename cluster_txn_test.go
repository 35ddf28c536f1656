package main

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// readCommitted reads a topic from the start as a read_committed consumer
// until want records arrived or 30s passed.
func readCommitted(t *testing.T, c *testCluster, topic string, want int) []string {
	t.Helper()
	cl := c.client(kgo.ConsumeTopics(topic), kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchMaxWait(200*time.Millisecond))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var got []string
	for len(got) < want && ctx.Err() == nil {
		fs := cl.PollFetches(ctx)
		fs.EachRecord(func(r *kgo.Record) { got = append(got, string(r.Value)) })
	}
	return got
}

// TestClusterTransactions: three `chronik serve --peers` processes, a
// topic of 3 RF=3 partitions whose leaders are spread over the nodes, so
// that the transaction coordinator writes most markers and answers most
// verifications through other nodes (WriteTxnMarkers, AddPartitionsToTxn
// verify-only). A kgo transactional producer commits one transaction and
// aborts one; then the coordinator's node is SIGKILLed with a transaction
// open and the producer abandoned; a new producer with the same id fences
// it through the new coordinator (aborting the open transaction) and
// commits a last one. A read_committed consumer sees exactly the committed
// records.
func TestClusterTransactions(t *testing.T) {
	c := startCluster(t, 3)
	c.createTopic("ctxn", 3, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	prod := c.client(kgo.TransactionalID("cluster-txn"), kgo.DefaultProduceTopic("ctxn"),
		kgo.RecordPartitioner(kgo.RoundRobinPartitioner()), kgo.RetryTimeout(60*time.Second),
		kgo.TransactionTimeout(20*time.Second))
	txn := func(prefix string, n int, end kgo.TransactionEndTry) error {
		if err := prod.BeginTransaction(); err != nil {
			return err
		}
		for i := range n {
			if err := prod.ProduceSync(ctx, &kgo.Record{Value: fmt.Appendf(nil, "%s-%d", prefix, i)}).FirstErr(); err != nil {
				return err
			}
		}
		return prod.EndTransaction(ctx, end)
	}
	if err := txn("a", 30, kgo.TryCommit); err != nil {
		t.Fatal(err)
	}
	if err := txn("b", 30, kgo.TryAbort); err != nil {
		t.Fatal(err)
	}

	// The coordinator dies with a transaction open.
	adm := kadm.NewClient(c.client())
	d, err := adm.DescribeTransactions(ctx, "cluster-txn")
	if err != nil || d["cluster-txn"].Err != nil {
		t.Fatalf("describe: %v %v", err, d["cluster-txn"].Err)
	}
	coord := int(d["cluster-txn"].Coordinator)
	if err := prod.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	for i := range 9 {
		if err := prod.ProduceSync(ctx, &kgo.Record{Value: fmt.Appendf(nil, "killed-%d", i)}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	c.kill(coord)
	// The producer is abandoned with its transaction open, as a producer
	// process that died with the coordinator would be. Its replacement,
	// with the same transactional id, finds the new coordinator: its
	// InitProducerID fences the old epoch and aborts the open transaction,
	// then it commits a transaction of its own.
	prod.Close()
	prod = c.client(kgo.TransactionalID("cluster-txn"), kgo.DefaultProduceTopic("ctxn"),
		kgo.RecordPartitioner(kgo.RoundRobinPartitioner()), kgo.RetryTimeout(60*time.Second),
		kgo.TransactionTimeout(20*time.Second))
	if err := txn("c", 30, kgo.TryCommit); err != nil {
		t.Fatalf("a transaction after the coordinator died: %v", err)
	}
	c.start(coord)
	c.waitUp(coord)

	got := readCommitted(t, c, "ctxn", 60)
	seen := map[string]int{}
	for _, v := range got {
		seen[v]++
		if strings.HasPrefix(v, "b-") || strings.HasPrefix(v, "killed-") {
			t.Errorf("read_committed saw %s of an aborted transaction", v)
		}
	}
	for _, p := range []string{"a", "c"} {
		for i := range 30 {
			if n := seen[fmt.Sprintf("%s-%d", p, i)]; n != 1 {
				t.Errorf("%s-%d seen %d times", p, i, n)
			}
		}
	}
}
