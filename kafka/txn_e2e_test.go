package kafka

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// readAll reads a topic from the start with the given isolation until
// want records arrived (or the deadline), and returns the values by
// partition order of arrival.
func readAll(t *testing.T, e *testEnv, topic string, isolation kgo.IsolationLevel, want int) []string {
	t.Helper()
	cl := e.client(kgo.ConsumeTopics(topic), kgo.FetchIsolationLevel(isolation),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchMaxWait(200*time.Millisecond))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var got []string
	for len(got) < want && ctx.Err() == nil {
		fs := cl.PollFetches(ctx)
		fs.EachError(func(tp string, p int32, err error) {
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("fetch %s-%d: %v", tp, p, err)
			}
		})
		fs.EachRecord(func(r *kgo.Record) { got = append(got, string(r.Value)) })
	}
	return got
}

// TestTransactionsCommitAndAbort: a kgo transactional producer commits one
// transaction and aborts another; a read_committed consumer sees exactly
// the committed records, a read_uncommitted one sees both, and after the
// markers the last stable offset reaches the log end. Then a restart: the
// aborted transactions stay invisible (the aborted index survives).
func TestTransactionsCommitAndAbort(t *testing.T) {
	e := startEnv(t)
	e.createTopic("txn", 3, nil)
	cl := e.client(kgo.TransactionalID("tx-1"), kgo.DefaultProduceTopic("txn"), kgo.RecordPartitioner(kgo.RoundRobinPartitioner()))
	ctx := context.Background()
	produce := func(prefix string, n int, commit kgo.TransactionEndTry) {
		t.Helper()
		if err := cl.BeginTransaction(); err != nil {
			t.Fatal(err)
		}
		for i := range n {
			if err := cl.ProduceSync(ctx, &kgo.Record{Value: fmt.Appendf(nil, "%s-%d", prefix, i)}).FirstErr(); err != nil {
				t.Fatal(err)
			}
		}
		if err := cl.EndTransaction(ctx, commit); err != nil {
			t.Fatalf("end transaction %s: %v", prefix, err)
		}
	}
	produce("a", 30, kgo.TryCommit)
	produce("b", 30, kgo.TryAbort)
	produce("c", 30, kgo.TryCommit)

	check := func() {
		t.Helper()
		committed := readAll(t, e, "txn", kgo.ReadCommitted(), 60)
		slices.Sort(committed)
		if len(committed) != 60 {
			t.Fatalf("read_committed saw %d records, want 60", len(committed))
		}
		for _, v := range committed {
			if strings.HasPrefix(v, "b-") {
				t.Fatalf("read_committed saw aborted record %s", v)
			}
		}
		all := readAll(t, e, "txn", kgo.ReadUncommitted(), 90)
		if len(all) != 90 {
			t.Fatalf("read_uncommitted saw %d records, want 90", len(all))
		}
	}
	check()
	e.restart()
	check()

	// A transaction left open holds the last stable offset back.
	cl2 := e.client(kgo.TransactionalID("tx-2"), kgo.DefaultProduceTopic("txn"), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err := cl2.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	if err := cl2.ProduceSync(ctx, &kgo.Record{Value: []byte("open"), Partition: 0}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	lso, hw := partitionOffsets(t, e, "txn", 0)
	if lso >= hw {
		t.Fatalf("with an open transaction: last stable offset %d, high watermark %d", lso, hw)
	}
	if err := cl2.EndTransaction(ctx, kgo.TryCommit); err != nil {
		t.Fatal(err)
	}
	waitUntilTxn(t, "the commit marker", func() bool { lso, hw := partitionOffsets(t, e, "txn", 0); return lso == hw })
}

// partitionOffsets asks ListOffsets for the committed (LSO) and
// uncommitted (HW) ends of a partition.
func partitionOffsets(t *testing.T, e *testEnv, topic string, p int32) (lso, hw int64) {
	t.Helper()
	cl := e.client()
	get := func(iso int8) int64 {
		req := kmsg.NewPtrListOffsetsRequest()
		req.IsolationLevel = iso
		rt := kmsg.NewListOffsetsRequestTopic()
		rt.Topic = topic
		rp := kmsg.NewListOffsetsRequestTopicPartition()
		rp.Partition, rp.Timestamp = p, -1
		rt.Partitions = append(rt.Partitions, rp)
		req.Topics = append(req.Topics, rt)
		resp, err := req.RequestWith(context.Background(), cl)
		if err != nil {
			t.Fatal(err)
		}
		pr := resp.Topics[0].Partitions[0]
		if pr.ErrorCode != 0 {
			t.Fatalf("list offsets: %v", kerr.ErrorForCode(pr.ErrorCode))
		}
		return pr.Offset
	}
	return get(1), get(0)
}

func waitUntilTxn(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestTransactionsFencing: a second producer with the same transactional
// id fences the first (its next transactional call fails with a fencing
// error), and the first's open transaction is aborted.
func TestTransactionsFencing(t *testing.T) {
	e := startEnv(t)
	e.createTopic("fence", 1, nil)
	ctx := context.Background()
	old := e.client(kgo.TransactionalID("same"), kgo.DefaultProduceTopic("fence"))
	if err := old.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	if err := old.ProduceSync(ctx, &kgo.Record{Value: []byte("zombie")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	young := e.client(kgo.TransactionalID("same"), kgo.DefaultProduceTopic("fence"))
	if err := young.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	if err := young.ProduceSync(ctx, &kgo.Record{Value: []byte("young")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	if err := young.EndTransaction(ctx, kgo.TryCommit); err != nil {
		t.Fatal(err)
	}
	err := old.EndTransaction(ctx, kgo.TryCommit)
	if err == nil || !(errors.Is(err, kerr.ProducerFenced) || errors.Is(err, kerr.InvalidProducerEpoch) || errors.Is(err, kerr.InvalidProducerIDMapping)) {
		t.Fatalf("the fenced producer's commit: %v, want a fencing error", err)
	}
	got := readAll(t, e, "fence", kgo.ReadCommitted(), 1)
	if len(got) != 1 || got[0] != "young" {
		t.Fatalf("read_committed saw %q, want only the young producer's record", got)
	}
	// The admin view of the id: its coordinator knows it, Empty or
	// CompleteCommit with no partitions.
	adm := kadm.NewClient(e.client())
	d, err := adm.DescribeTransactions(ctx, "same")
	if err != nil || d["same"].Err != nil {
		t.Fatalf("describe: %v %v", err, d["same"].Err)
	}
	if st := d["same"].State; st != "CompleteCommit" && st != "Empty" {
		t.Fatalf("state %s after the commit", st)
	}
	l, err := adm.ListTransactions(ctx, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := l["same"]; !ok {
		t.Fatalf("list transactions: %v", l)
	}
}

// TestTransactionsPipeline is the exactly-once pipeline: input -> stage 1
// -> mid1 -> stage 2 -> mid2 -> stage 3 -> output, each stage a kgo
// GroupTransactSession (consume read_committed, produce and commit the
// consumed offsets in one transaction). Each stage aborts one transaction
// on purpose and is restarted once half way. Every input record must reach
// the output exactly once for a read_committed consumer, with every
// stage's suffix, and nothing an aborted transaction wrote may show.
func TestTransactionsPipeline(t *testing.T) {
	const n = 300
	e := startEnv(t)
	for _, topic := range []string{"in", "mid1", "mid2", "out"} {
		e.createTopic(topic, 3, nil)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	src := e.client(kgo.DefaultProduceTopic("in"))
	for i := range n {
		src.Produce(ctx, &kgo.Record{Key: []byte(strconv.Itoa(i)), Value: []byte(strconv.Itoa(i))}, nil)
	}
	if err := src.Flush(ctx); err != nil {
		t.Fatal(err)
	}

	stages := []struct{ from, to, suffix string }{{"in", "mid1", "-s1"}, {"mid1", "mid2", "-s2"}, {"mid2", "out", "-s3"}}
	var wg sync.WaitGroup
	errs := make(chan error, len(stages))
	for si, st := range stages {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- runStage(ctx, e, si, st.from, st.to, st.suffix, n)
		}()
	}
	got := readAll(t, e, "out", kgo.ReadCommitted(), n)
	cancel()
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil && !errors.Is(err, context.Canceled) {
			t.Errorf("stage: %v", err)
		}
	}
	seen := map[string]int{}
	for _, v := range got {
		seen[v]++
	}
	for i := range n {
		v := strconv.Itoa(i) + "-s1-s2-s3"
		if seen[v] != 1 {
			t.Errorf("record %d reached the output %d times", i, seen[v])
		}
	}
	for v := range seen {
		if strings.Contains(v, "aborted") {
			t.Errorf("an aborted record is visible: %s", v)
		}
	}
	if len(got) != n {
		t.Errorf("output holds %d records, want %d", len(got), n)
	}
}

// runStage runs one pipeline stage until ctx ends: a session that aborts
// its third transaction (after producing a poison record), and is closed
// and replaced by a new one (a consumer restart) once it has committed
// about half of the records.
func runStage(ctx context.Context, e *testEnv, stage int, from, to, suffix string, n int) error {
	group := fmt.Sprintf("stage-%d", stage)
	txnID := fmt.Sprintf("pipeline-%d", stage)
	committed := 0
	aborted := false
	for restart := 0; ctx.Err() == nil; restart++ {
		s, err := kgo.NewGroupTransactSession(kgo.SeedBrokers(e.addr), kgo.TransactionalID(txnID),
			kgo.ConsumerGroup(group), kgo.ConsumeTopics(from), kgo.FetchIsolationLevel(kgo.ReadCommitted()),
			kgo.DefaultProduceTopic(to), kgo.RequireStableFetchOffsets(), kgo.FetchMaxWait(200*time.Millisecond),
			kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.RetryTimeout(30*time.Second))
		if err != nil {
			return err
		}
		txns := 0
		for ctx.Err() == nil {
			fs := s.PollRecords(ctx, 40)
			if ctx.Err() != nil {
				break
			}
			var recs []*kgo.Record
			fs.EachRecord(func(r *kgo.Record) { recs = append(recs, r) })
			if len(recs) == 0 {
				continue
			}
			if err := s.Begin(); err != nil {
				s.Close()
				return fmt.Errorf("stage %d begin: %w", stage, err)
			}
			txns++
			abort := !aborted && txns == 3
			for _, r := range recs {
				s.Produce(ctx, &kgo.Record{Key: r.Key, Value: append(slices.Clone(r.Value), suffix...)}, nil)
			}
			if abort {
				s.Produce(ctx, &kgo.Record{Value: []byte("aborted" + suffix)}, nil)
			}
			ok, err := s.End(ctx, kgo.TransactionEndTry(!abort))
			if err != nil {
				s.Close()
				if ctx.Err() != nil {
					return ctx.Err()
				}
				return fmt.Errorf("stage %d end: %w", stage, err)
			}
			if abort {
				aborted = true
				continue
			}
			if ok {
				committed += len(recs)
			}
			if restart == 0 && committed >= n/2 {
				break // restart the consumer
			}
		}
		s.Close()
	}
	return ctx.Err()
}
