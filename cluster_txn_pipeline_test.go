package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// pipelineStage is one stage of the cluster pipeline and what it did.
type pipelineStage struct {
	index            int
	from, to, suffix string
	// committed counts the records of the stage's committed transactions.
	committed atomic.Int64
	// sessions counts the GroupTransactSessions the stage created.
	sessions atomic.Int64
	log      *os.File
	// failures are the errors that ended its sessions.
	mu       sync.Mutex
	failures []string
}

func (st *pipelineStage) txnID() string { return fmt.Sprintf("cpipe-%d", st.index) }

// TestClusterTransactionsPipeline is TestTransactionsPipeline (kafka/) on
// three `chronik serve --peers` processes, through failures: input -> stage
// 0 -> mid1 -> stage 1 -> mid2 -> stage 2 -> out, every topic 3 partitions
// at RF=3, each stage a kgo GroupTransactSession that aborts one
// transaction on purpose and restarts its consumer once. A source feeds
// the input throughout. While the stages run:
//
//   - the node coordinating stage 1's transactional id is SIGKILLed while
//     that id has a transaction open, and restarted once the pipeline went
//     on without it;
//   - the node leading most partitions of mid1 and out is SIGKILLed and
//     restarted, then the one leading most of the others.
//
// A stage whose session fails (End or Begin returns an error: kgo found
// its producer fenced, or gave up retrying) closes it and starts a new one
// with the same transactional id, as a restarted exactly-once application
// would; the new producer's InitProducerID fences the old one.
//
// Then, with the source stopped and the stages drained and stopped: no
// transaction is left open in mid1, mid2 or out (the last stable offset
// reached the high watermark), and a read_committed consumer of each sees
// every input record exactly once, with the stages' suffixes, and no
// record of an aborted transaction.
func TestClusterTransactionsPipeline(t *testing.T) {
	c := startCluster(t, 3)
	topics := []string{"in", "mid1", "mid2", "out"}
	for _, topic := range topics {
		c.createTopic(topic, 3, 3)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()

	// The source: small acks=all idempotent batches, paced, until told to
	// stop. A batch that failed may or may not be in the log; the input
	// topic says which records exist.
	stopSource := make(chan struct{})
	var sourceDone sync.WaitGroup
	var produced, failed atomic.Int64
	src := c.client(kgo.DefaultProduceTopic("in"), kgo.RetryTimeout(60*time.Second))
	sourceDone.Add(1)
	go func() {
		defer sourceDone.Done()
		for i := 0; ; {
			select {
			case <-stopSource:
				return
			case <-time.After(20 * time.Millisecond):
			}
			var rs []*kgo.Record
			for range 4 {
				v := []byte(strconv.Itoa(i))
				rs = append(rs, &kgo.Record{Key: v, Value: v})
				i++
			}
			if err := src.ProduceSync(ctx, rs...).FirstErr(); err != nil {
				failed.Add(int64(len(rs)))
				if ctx.Err() != nil {
					return
				}
				continue
			}
			produced.Add(int64(len(rs)))
		}
	}()

	stages := []*pipelineStage{
		{index: 0, from: "in", to: "mid1", suffix: "-s1"},
		{index: 1, from: "mid1", to: "mid2", suffix: "-s2"},
		{index: 2, from: "mid2", to: "out", suffix: "-s3"},
	}
	stopStages := make(chan struct{})
	var stagesDone sync.WaitGroup
	stageErrs := make(chan error, len(stages))
	for _, st := range stages {
		f, err := os.Create(filepath.Join(c.dir, fmt.Sprintf("stage%d.log", st.index)))
		if err != nil {
			t.Fatal(err)
		}
		st.log = f
		t.Cleanup(func() { f.Close() })
		stagesDone.Add(1)
		go func() {
			defer stagesDone.Done()
			stageErrs <- runClusterStage(ctx, stopStages, c.kafka, st)
		}()
	}
	var closeSource, closeStages sync.Once
	stopAll := func() {
		closeStages.Do(func() { close(stopStages) })
		closeSource.Do(func() { close(stopSource) })
		stagesDone.Wait()
		sourceDone.Wait()
	}
	defer stopAll()
	defer func() {
		if t.Failed() {
			for _, st := range stages {
				b, _ := os.ReadFile(st.log.Name())
				if len(b) > 6000 {
					b = b[len(b)-6000:]
				}
				t.Logf("stage %d log tail:\n%s", st.index, b)
			}
		}
	}()

	// progress waits until every stage committed more records (a bounded
	// wait: the outcome is checked at the end, whatever happens here).
	progress := func(what string, more int64) {
		t.Helper()
		var want []int64
		for _, st := range stages {
			want = append(want, st.committed.Load()+more)
		}
		start := time.Now()
		deadline := start.Add(45 * time.Second)
		for i, st := range stages {
			for st.committed.Load() < want[i] && time.Now().Before(deadline) && ctx.Err() == nil {
				time.Sleep(50 * time.Millisecond)
			}
		}
		var got []string
		for _, st := range stages {
			got = append(got, fmt.Sprintf("stage %d: %d", st.index, st.committed.Load()))
		}
		t.Logf("%s: committed %s (waited %v)", what, strings.Join(got, ", "), time.Since(start).Round(100*time.Millisecond))
	}
	progress("before any failure", 100)

	// The coordinator of stage 1's transactional id dies with a
	// transaction open (or as close to that as the polling catches).
	adm := kadm.NewClient(c.client(kgo.RetryTimeout(30 * time.Second)))
	coord, state := -1, ""
	for range 500 {
		dctx, dcancel := context.WithTimeout(ctx, 5*time.Second)
		d, err := adm.DescribeTransactions(dctx, stages[1].txnID())
		dcancel()
		if err == nil && d[stages[1].txnID()].Err == nil {
			coord, state = int(d[stages[1].txnID()].Coordinator), d[stages[1].txnID()].State
			if state == "Ongoing" {
				break
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
	if coord < 1 {
		t.Fatalf("no coordinator found for %s", stages[1].txnID())
	}
	t.Logf("killing node %d, the coordinator of %s (state %s)", coord, stages[1].txnID(), state)
	c.kill(coord)
	progress(fmt.Sprintf("node %d (coordinator) down", coord), 100)
	c.start(coord)
	c.waitUp(coord)
	progress(fmt.Sprintf("node %d back", coord), 50)

	// The leaders: the node leading most partitions of mid1 and out, then
	// the one leading most of the others.
	var killed []int
	for range 2 {
		count := map[int]int{}
		for _, topic := range []string{"mid1", "out"} {
			for _, p := range c.topicMetadata(topic).Partitions {
				if !slices.Contains(killed, int(p.Leader)) && p.Leader > 0 {
					count[int(p.Leader)]++
				}
			}
		}
		victim := -1
		for id := 1; id <= 3; id++ {
			if !slices.Contains(killed, id) && (victim < 0 || count[id] > count[victim]) {
				victim = id
			}
		}
		t.Logf("killing node %d, leader of %d partitions of mid1 and out", victim, count[victim])
		killed = append(killed, victim)
		c.kill(victim)
		progress(fmt.Sprintf("node %d (leader) down", victim), 100)
		c.start(victim)
		c.waitUp(victim)
		progress(fmt.Sprintf("node %d back", victim), 50)
	}

	// Stop the source; the stages drain what it wrote.
	closeSource.Do(func() { close(stopSource) })
	sourceDone.Wait()
	input := readCommittedAll(t, c, "in")
	inputSeen := map[string]int{}
	for _, v := range input {
		inputSeen[v]++
		if inputSeen[v] == 2 {
			t.Errorf("input record %s written twice by an idempotent producer", v)
		}
	}
	t.Logf("source: %d records acknowledged, %d in batches that failed; the input holds %d", produced.Load(), failed.Load(), len(input))
	if int64(len(inputSeen)) < produced.Load() {
		t.Errorf("the input holds %d distinct records, fewer than the %d acknowledged", len(inputSeen), produced.Load())
	}
	// The stages drain: a read_committed consumer of the last topic sees
	// every input record arrive. (The stages' own counters cannot say
	// this: an End that failed, say to dial a killed coordinator, may
	// have committed its transaction anyway, and then its records are
	// in the output but counted nowhere.)
	last := stages[len(stages)-1]
	allSuffixes := ""
	for _, st := range stages {
		allSuffixes += st.suffix
	}
	outSeen := map[string]bool{}
	drain := c.client(kgo.ConsumeTopics(last.to), kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchMaxWait(200*time.Millisecond))
	deadline := time.Now().Add(90 * time.Second)
	for time.Now().Before(deadline) {
		if countSeen(inputSeen, outSeen, allSuffixes) == len(inputSeen) {
			break
		}
		pctx, pcancel := context.WithTimeout(ctx, time.Second)
		fs := drain.PollFetches(pctx)
		pcancel()
		fs.EachRecord(func(r *kgo.Record) { outSeen[string(r.Value)] = true })
	}
	drain.Close()
	if missing := len(inputSeen) - countSeen(inputSeen, outSeen, allSuffixes); missing > 0 {
		t.Errorf("%s lacks %d of the %d input records 90s after the source stopped (the last stage counted %d committed)", last.to, missing, len(inputSeen), last.committed.Load())
	}
	closeStages.Do(func() { close(stopStages) })
	stagesDone.Wait()
	close(stageErrs)
	for err := range stageErrs {
		if err != nil {
			t.Errorf("stage: %v", err)
		}
	}
	for _, st := range stages {
		t.Logf("stage %d: %d records committed, %d sessions; failed sessions: %q", st.index, st.committed.Load(), st.sessions.Load(), st.failures)
	}

	// Exactly once, in every topic a stage wrote.
	suffix := ""
	for _, st := range stages {
		suffix += st.suffix
		got := readCommittedAll(t, c, st.to)
		seen := map[string]int{}
		for _, v := range got {
			seen[v]++
			if strings.Contains(v, "aborted") {
				t.Errorf("%s: a record of an aborted transaction is visible: %s", st.to, v)
			}
		}
		missing, dups := 0, 0
		for v := range inputSeen {
			switch n := seen[v+suffix]; {
			case n == 0:
				missing++
			case n > 1:
				dups++
			}
		}
		if missing > 0 || dups > 0 || len(got) != len(inputSeen) {
			t.Errorf("%s: %d records for %d inputs: %d inputs missing, %d more than once", st.to, len(got), len(inputSeen), missing, dups)
		}
	}
}

// countSeen counts the input records seen (with suffix) in out.
func countSeen(input map[string]int, out map[string]bool, suffix string) int {
	n := 0
	for v := range input {
		if out[v+suffix] {
			n++
		}
	}
	return n
}

// runClusterStage runs one stage until stop is closed (after finishing
// the transaction under way) or ctx ends. A session aborts the stage's
// third transaction (with a poison record), and the first is replaced by
// a new one (a consumer restart) once 200 records were committed; a
// session whose Begin or End fails is replaced as well.
func runClusterStage(ctx context.Context, stop <-chan struct{}, seeds []string, st *pipelineStage) error {
	aborted, restarted := false, false
	logf := func(format string, args ...any) {
		fmt.Fprintf(st.log, "%s stage %d: %s\n", time.Now().Format("15:04:05.000"), st.index, fmt.Sprintf(format, args...))
	}
	for ctx.Err() == nil {
		select {
		case <-stop:
			return nil
		default:
		}
		st.sessions.Add(1)
		s, err := kgo.NewGroupTransactSession(kgo.SeedBrokers(seeds...), kgo.TransactionalID(st.txnID()),
			kgo.ConsumerGroup(fmt.Sprintf("cpipe-stage-%d", st.index)), kgo.ConsumeTopics(st.from),
			kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.RequireStableFetchOffsets(),
			kgo.DefaultProduceTopic(st.to), kgo.FetchMaxWait(200*time.Millisecond),
			kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.RetryTimeout(30*time.Second),
			kgo.SessionTimeout(10*time.Second), kgo.HeartbeatInterval(time.Second), kgo.RebalanceTimeout(20*time.Second),
			kgo.WithLogger(kgo.BasicLogger(st.log, kgo.LogLevelInfo, func() string {
				return time.Now().Format("15:04:05.000 ") + fmt.Sprintf("stage %d: ", st.index)
			})))
		if err != nil {
			return err
		}
		err = runSession(ctx, stop, s, st, &aborted, &restarted)
		s.Close()
		switch {
		case err == nil:
			return nil // stopped
		case errors.Is(err, errStageRestart):
			logf("restarting the consumer (planned)")
		case ctx.Err() != nil:
			return ctx.Err()
		default:
			logf("session failed, starting a new one: %v", err)
			st.mu.Lock()
			st.failures = append(st.failures, err.Error())
			st.mu.Unlock()
		}
	}
	return ctx.Err()
}

var errStageRestart = errors.New("planned consumer restart")

// runSession runs one GroupTransactSession of a stage: nil once stop is
// closed, errStageRestart for the planned restart, or the error that ended
// its transactions.
func runSession(ctx context.Context, stop <-chan struct{}, s *kgo.GroupTransactSession, st *pipelineStage, aborted, restarted *bool) error {
	txns := 0
	sessionCommitted := 0
	for {
		select {
		case <-stop:
			return nil
		default:
		}
		pctx, pcancel := context.WithTimeout(ctx, time.Second)
		fs := s.PollRecords(pctx, 50)
		pcancel()
		if ctx.Err() != nil {
			return ctx.Err()
		}
		var recs []*kgo.Record
		fs.EachRecord(func(r *kgo.Record) { recs = append(recs, r) })
		if len(recs) == 0 {
			continue
		}
		if err := s.Begin(); err != nil {
			return fmt.Errorf("begin: %w", err)
		}
		txns++
		abort := !*aborted && txns == 3
		for _, r := range recs {
			s.Produce(ctx, &kgo.Record{Key: r.Key, Value: append(slices.Clone(r.Value), st.suffix...)}, nil)
		}
		if abort {
			s.Produce(ctx, &kgo.Record{Value: []byte("aborted" + st.suffix)}, nil)
		}
		ok, err := s.End(ctx, kgo.TransactionEndTry(!abort))
		if err != nil {
			return fmt.Errorf("end: %w", err)
		}
		if abort {
			*aborted = true
			continue
		}
		if ok {
			st.committed.Add(int64(len(recs)))
			sessionCommitted += len(recs)
		}
		if !*restarted && sessionCommitted >= 200 {
			*restarted = true
			return errStageRestart
		}
	}
}

// readCommittedAll reads a topic from the start as a read_committed
// consumer, once no transaction is open in it (its last stable offsets
// reached the high watermarks: every transaction ended and its markers
// were written), until the reads fall quiet.
func readCommittedAll(t *testing.T, c *testCluster, topic string) []string {
	t.Helper()
	adm := kadm.NewClient(c.client())
	deadline := time.Now().Add(60 * time.Second)
	var total int64
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		hw, err1 := adm.ListEndOffsets(ctx, topic)
		lso, err2 := adm.ListCommittedOffsets(ctx, topic)
		cancel()
		open := []string{}
		if err := errors.Join(err1, err2, hw.Error(), lso.Error()); err == nil {
			total = 0
			hw.Each(func(o kadm.ListedOffset) {
				total += o.Offset
				if l, ok := lso.Lookup(topic, o.Partition); !ok || l.Offset != o.Offset {
					open = append(open, fmt.Sprintf("%s-%d: last stable offset %d, high watermark %d", topic, o.Partition, l.Offset, o.Offset))
				}
			})
			if len(open) == 0 {
				break
			}
		} else {
			open = append(open, err.Error())
		}
		if time.Now().After(deadline) {
			t.Errorf("%s still has open transactions after 60s: %s", topic, strings.Join(open, "; "))
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	cl := c.client(kgo.ConsumeTopics(topic), kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchMaxWait(200*time.Millisecond))
	var got []string
	// Every record is below the high watermarks, so the reads end once
	// a few polls in a row bring nothing (bounded by the deadline and by
	// the log's size: no read brings more records than the logs hold).
	for quiet := 0; quiet < 5 && time.Now().Before(deadline.Add(30*time.Second)) && int64(len(got)) <= total; {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		fs := cl.PollFetches(ctx)
		cancel()
		n := 0
		fs.EachRecord(func(r *kgo.Record) { got = append(got, string(r.Value)); n++ })
		if n == 0 {
			quiet++
		} else {
			quiet = 0
		}
	}
	return got
}
