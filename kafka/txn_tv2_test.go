package kafka

import (
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/twmb/franz-go/pkg/kversion"

	"github.com/chronik-stream/chronik/broker"
)

// Transaction version 2 (KIP-890 part 2): what ApiVersions finalizes, the
// partitions a Produce v12 and a TxnOffsetCommit v5 add to their
// transaction themselves, and --transaction-version 1, which keeps clients
// on the older protocol.

func withTxnVersion(v int16) envOpt { return func(e *testEnv) { e.bcfg.TxnVersion = v } }

// TestApiVersionsTransactionVersion: v3+ lists transaction.version as
// Kafka 4.0 does, supported 0-2 and finalized at the node's level with a
// positive epoch (kgo reads finalized features only when the epoch is not
// -1); --transaction-version 1 finalizes 1.
func TestApiVersionsTransactionVersion(t *testing.T) {
	for _, level := range []int16{2, 1} {
		e := startEnv(t, withTxnVersion(level))
		rc := e.dial()
		for v := int16(3); v <= 4; v++ {
			req := kmsg.NewPtrApiVersionsRequest()
			req.SetVersion(v)
			req.ClientSoftwareName, req.ClientSoftwareVersion = "chronik-test", "1"
			resp := rc.roundTrip(req).(*kmsg.ApiVersionsResponse)
			wantCode(t, "api versions", resp.ErrorCode)
			if len(resp.SupportedFeatures) != 1 || resp.SupportedFeatures[0].Name != "transaction.version" ||
				resp.SupportedFeatures[0].MinVersion != 0 || resp.SupportedFeatures[0].MaxVersion != 2 {
				t.Fatalf("level %d, v%d: supported features %+v, want transaction.version 0-2", level, v, resp.SupportedFeatures)
			}
			if len(resp.FinalizedFeatures) != 1 || resp.FinalizedFeatures[0].Name != "transaction.version" ||
				resp.FinalizedFeatures[0].MinVersionLevel != level || resp.FinalizedFeatures[0].MaxVersionLevel != level {
				t.Fatalf("level %d, v%d: finalized features %+v, want transaction.version at %d", level, v, resp.FinalizedFeatures, level)
			}
			if resp.FinalizedFeaturesEpoch <= 0 {
				t.Fatalf("level %d, v%d: finalized features epoch %d", level, v, resp.FinalizedFeaturesEpoch)
			}
		}
	}
}

// txnWire speaks one transactional id's protocol over a raw connection.
type txnWire struct {
	t     *testing.T
	rc    *rawConn
	id    string
	topic string
	pid   int64
}

// produce sends one transactional batch of keys to partition 0 at a
// Produce version and returns the partition's answer.
func (w *txnWire) produce(version, epoch int16, seq int32, keys ...string) kmsg.ProduceResponseTopicPartition {
	w.t.Helper()
	req := produceRequest(w.topic, 0, txnTestBatch(w.pid, epoch, seq, keys...))
	req.SetVersion(version)
	req.TransactionID = &w.id
	return producePartitionResponse(w.t, w.rc.roundTrip(req))
}

// end is EndTxn at version v.
func (w *txnWire) end(v, epoch int16, commit bool) *kmsg.EndTxnResponse {
	w.t.Helper()
	req := kmsg.NewPtrEndTxnRequest()
	req.SetVersion(v)
	req.TransactionalID, req.ProducerID, req.ProducerEpoch, req.Commit = w.id, w.pid, epoch, commit
	return w.rc.roundTrip(req).(*kmsg.EndTxnResponse)
}

// wantProduced checks a produce answer: no error, base offset want.
func wantProduced(t *testing.T, what string, sp kmsg.ProduceResponseTopicPartition, want int64) {
	t.Helper()
	wantCode(t, what, sp.ErrorCode)
	if sp.BaseOffset != want {
		t.Fatalf("%s: base offset %d, want %d", what, sp.BaseOffset, want)
	}
}

// TestProduceV12AddsItsPartition: a transactional Produce v12 to a
// partition no AddPartitionsToTxn named adds it to the transaction (the
// coordinator's state shows it), and EndTxn v5 commits or aborts it with a
// bumped epoch; the next transaction's first batch, at the bumped epoch
// and sequence 0, is accepted after the marker of that epoch. A
// read_committed reader sees exactly the committed records. A fenced epoch
// is INVALID_PRODUCER_EPOCH; Produce v11 and v10 only verify:
// TRANSACTION_ABORTABLE, and INVALID_TXN_STATE for clients that do not
// know it.
func TestProduceV12AddsItsPartition(t *testing.T) {
	e := startEnv(t)
	e.createTopic("txn", 1, nil)
	rc := e.dial()
	w := &txnWire{t: t, rc: rc, id: "tv2-produce", topic: "txn"}
	var e0 int16
	w.pid, e0 = initTxn(t, e, w.id)
	part := broker.TxnTopicPartition{Topic: "txn", Partition: 0}
	completed := func(state broker.TxnState) {
		t.Helper()
		waitUntilTxn(t, state.String(), func() bool { return describeTxn(t, e, w.id).State == state })
	}
	endAt := func(epoch int16, commit bool) {
		t.Helper()
		resp := w.end(5, epoch, commit)
		wantCode(t, "end transaction", resp.ErrorCode)
		if resp.ProducerID != w.pid || resp.ProducerEpoch != epoch+1 {
			t.Fatalf("end at epoch %d: producer %d epoch %d, want %d and %d", epoch, resp.ProducerID, resp.ProducerEpoch, w.pid, epoch+1)
		}
	}

	wantProduced(t, "v12 without AddPartitionsToTxn", w.produce(12, e0, 0, "c1"), 0)
	if d := describeTxn(t, e, w.id); d.State != broker.TxnOngoing || !slices.Equal(d.Partitions, []broker.TxnTopicPartition{part}) {
		t.Fatalf("after the produce: %s with %v, want Ongoing with %v", d.State, d.Partitions, part)
	}
	wantProduced(t, "second batch of the transaction", w.produce(12, e0, 1, "c2"), 1)
	endAt(e0, true)
	completed(broker.TxnCompleteCommit)

	wantProduced(t, "first batch at the bumped epoch", w.produce(12, e0+1, 0, "a1"), 3)
	endAt(e0+1, false)
	completed(broker.TxnCompleteAbort)

	wantProduced(t, "v13 names the topic by id", func() kmsg.ProduceResponseTopicPartition {
		info, _ := e.b.Topic("txn")
		req := produceRequest("", 0, txnTestBatch(w.pid, e0+2, 0, "c3"))
		req.SetVersion(13)
		req.Topics[0].TopicID = info.ID
		req.TransactionID = &w.id
		return producePartitionResponse(t, rc.roundTrip(req))
	}(), 5)
	endAt(e0+2, true)
	completed(broker.TxnCompleteCommit)

	stableEnd(t, e, "txn", 7) // c1 c2, marker, a1, marker, c3, marker
	got := txnFetch(t, rc, 0, 1)
	if keys := keysOf(t, got.RecordBatches); !slices.Equal(keys, []string{"c1", "c2", "a1", "c3"}) {
		t.Fatalf("read_committed records %v", keys)
	}
	if ab := got.AbortedTransactions; len(ab) != 1 || ab[0].ProducerID != w.pid || ab[0].FirstOffset != 3 {
		t.Fatalf("aborted transactions %+v, want producer %d from offset 3", ab, w.pid)
	}
	committed := readAll(t, e, "txn", kgo.ReadCommitted(), 3)
	if !slices.Equal(committed, []string{"v-c1", "v-c2", "v-c3"}) {
		t.Fatalf("a read_committed consumer read %v", committed)
	}

	// An epoch the coordinator fenced.
	if sp := w.produce(12, e0, 5, "zombie"); sp.ErrorCode != kerr.InvalidProducerEpoch.Code {
		t.Fatalf("v12 at a fenced epoch: %v, want INVALID_PRODUCER_EPOCH", kerr.ErrorForCode(sp.ErrorCode))
	}
	// Below v12 a partition not added is refused, by the code the
	// version's clients know; nothing is added or written.
	old := &txnWire{t: t, rc: rc, id: "tv2-old", topic: "txn"}
	var oldEpoch int16
	old.pid, oldEpoch = initTxn(t, e, old.id)
	for v, want := range map[int16]int16{11: kerr.TransactionAbortable.Code, 10: kerr.InvalidTxnState.Code, 3: kerr.InvalidTxnState.Code} {
		if sp := old.produce(v, oldEpoch, 0, "stray"); sp.ErrorCode != want {
			t.Fatalf("v%d without AddPartitionsToTxn: %v, want %v", v, kerr.ErrorForCode(sp.ErrorCode), kerr.ErrorForCode(want))
		}
	}
	if d := describeTxn(t, e, old.id); d.State != broker.TxnEmpty {
		t.Fatalf("after refused produces: %s", d.State)
	}
	stableEnd(t, e, "txn", 7)
}

// TestTransactionVersion1RefusesImplicitAdds: with --transaction-version 1
// a Produce v12 or TxnOffsetCommit v5 whose partition is not in the
// transaction is refused TRANSACTION_ABORTABLE (served as v11 and v4); once
// AddPartitionsToTxn and AddOffsetsToTxn added them, both work and commit.
func TestTransactionVersion1RefusesImplicitAdds(t *testing.T) {
	e := startEnv(t, withTxnVersion(1))
	e.createTopic("txn", 1, nil)
	rc := e.dial()
	const group = "tv1-group"
	w := &txnWire{t: t, rc: rc, id: "tx-" + group, topic: "txn"}
	var epoch int16
	w.pid, epoch = initTxn(t, e, w.id)

	if sp := w.produce(12, epoch, 0, "stray"); sp.ErrorCode != kerr.TransactionAbortable.Code {
		t.Fatalf("v12 without AddPartitionsToTxn: %v, want TRANSACTION_ABORTABLE", kerr.ErrorForCode(sp.ErrorCode))
	}
	commitOffset := func() int16 {
		req := txnOffsetCommitRequest(group, w.pid, "txn", 9)
		req.SetVersion(5)
		req.ProducerEpoch = epoch
		return rc.roundTrip(req).(*kmsg.TxnOffsetCommitResponse).Topics[0].Partitions[0].ErrorCode
	}
	if code := commitOffset(); code != kerr.TransactionAbortable.Code {
		t.Fatalf("TxnOffsetCommit v5 without AddOffsetsToTxn: %v, want TRANSACTION_ABORTABLE", kerr.ErrorForCode(code))
	}
	if d := describeTxn(t, e, w.id); d.State != broker.TxnEmpty {
		t.Fatalf("after the refusals: %s with %v, want Empty", d.State, d.Partitions)
	}

	if _, err := e.b.AddPartitionsToTxn(w.id, w.pid, epoch, []broker.TxnTopicPartition{{Topic: "txn", Partition: 0}}, false); err != nil {
		t.Fatal(err)
	}
	if err := e.b.AddOffsetsToTxn(w.id, w.pid, epoch, group); err != nil {
		t.Fatal(err)
	}
	wantProduced(t, "v12 of an added partition", w.produce(12, epoch, 0, "k"), 0)
	wantCode(t, "TxnOffsetCommit v5 of added offsets", commitOffset())
	if got := committed(t, e, group, "txn", 0); got != -1 {
		t.Fatalf("offset visible before the commit: %d", got)
	}
	wantCode(t, "commit", w.end(4, epoch, true).ErrorCode)
	waitUntilTxn(t, "the committed offset", func() bool { return committed(t, e, group, "txn", 0) == 9 })
	stableEnd(t, e, "txn", 2)
}

// requestVersions lists the versions of each API key clients sent, from a
// recordingListener's frames (request header: key, version).
func requestVersions(rec *recordingListener) map[int16][]int16 {
	out := map[int16][]int16{}
	for _, f := range rec.frames() {
		if len(f) < 4 {
			continue
		}
		key, v := int16(binary.BigEndian.Uint16(f)), int16(binary.BigEndian.Uint16(f[2:]))
		if !slices.Contains(out[key], v) {
			out[key] = append(out[key], v)
		}
	}
	return out
}

// TestKgoTransactionVersionOnTheWire runs kgo's transactions three ways
// and checks both the outcome (a read_committed reader sees the committed
// records of a producer and of a GroupTransactSession, none of the
// aborted) and the protocol on the wire:
//   - transaction version 2 (the default): Produce v12+, TxnOffsetCommit
//     v5+, EndTxn v5, and never AddPartitionsToTxn or AddOffsetsToTxn;
//   - a client whose MaxVersions caps Produce at 11 stays on the older
//     protocol: AddPartitionsToTxn and AddOffsetsToTxn, EndTxn v4;
//   - --transaction-version 1: the same older protocol.
func TestKgoTransactionVersionOnTheWire(t *testing.T) {
	capped := kversion.Stable()
	capped.SetMaxKeyVersion(int16(kmsg.Produce), 11)
	for _, tc := range []struct {
		name  string
		level int16
		opts  []kgo.Opt
		tv2   bool
	}{
		{name: "version 2", level: 2, tv2: true},
		{name: "Produce capped at v11", level: 2, opts: []kgo.Opt{kgo.MaxVersions(capped)}},
		{name: "version 1", level: 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var rec *recordingListener
			e := startEnv(t, withTxnVersion(tc.level), withListener(func(ln net.Listener) net.Listener {
				rec = &recordingListener{Listener: ln}
				return rec
			}))
			for _, topic := range []string{"src", "dst", "txn"} {
				e.createTopic(topic, 3, nil)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()

			// A producer: one transaction committed, one aborted.
			cl := e.client(append([]kgo.Opt{kgo.TransactionalID("wire-" + tc.name), kgo.DefaultProduceTopic("txn"),
				kgo.RecordPartitioner(kgo.RoundRobinPartitioner())}, tc.opts...)...)
			for _, commit := range []kgo.TransactionEndTry{kgo.TryCommit, kgo.TryAbort} {
				if err := cl.BeginTransaction(); err != nil {
					t.Fatal(err)
				}
				for i := range 6 {
					if err := cl.ProduceSync(ctx, &kgo.Record{Value: fmt.Appendf(nil, "%v-%d", bool(commit), i)}).FirstErr(); err != nil {
						t.Fatal(err)
					}
				}
				if err := cl.EndTransaction(ctx, commit); err != nil {
					t.Fatalf("end transaction (commit %v): %v", commit, err)
				}
			}
			cl.Close()
			got := readAll(t, e, "txn", kgo.ReadCommitted(), 6)
			slices.Sort(got)
			if len(got) != 6 || slices.ContainsFunc(got, func(v string) bool { return strings.HasPrefix(v, "false") }) {
				t.Fatalf("read_committed read %v, want the 6 committed records", got)
			}

			// A GroupTransactSession copies src to dst, committing its
			// consumed offsets in its transactions.
			const n = 20
			src := e.client(kgo.DefaultProduceTopic("src"))
			for i := range n {
				if err := src.ProduceSync(ctx, &kgo.Record{Value: fmt.Appendf(nil, "r%d", i)}).FirstErr(); err != nil {
					t.Fatal(err)
				}
			}
			s, err := kgo.NewGroupTransactSession(append([]kgo.Opt{kgo.SeedBrokers(e.addr), kgo.TransactionalID("session-" + tc.name),
				kgo.ConsumerGroup("wire"), kgo.ConsumeTopics("src"), kgo.FetchIsolationLevel(kgo.ReadCommitted()),
				kgo.DefaultProduceTopic("dst"), kgo.RequireStableFetchOffsets(), kgo.FetchMaxWait(200 * time.Millisecond),
				kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.RetryTimeout(30 * time.Second)}, tc.opts...)...)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			for copied := 0; copied < n; {
				fs := s.PollRecords(ctx, 7)
				if ctx.Err() != nil {
					t.Fatalf("copied %d of %d records", copied, n)
				}
				recs := fs.Records()
				if len(recs) == 0 {
					continue
				}
				if err := s.Begin(); err != nil {
					t.Fatal(err)
				}
				for _, r := range recs {
					s.Produce(ctx, &kgo.Record{Value: r.Value}, nil)
				}
				ok, err := s.End(ctx, kgo.TryCommit)
				if err != nil {
					t.Fatal(err)
				}
				if ok {
					copied += len(recs)
				}
			}
			if out := readAll(t, e, "dst", kgo.ReadCommitted(), n); len(out) != n {
				t.Fatalf("dst holds %d committed records, want %d", len(out), n)
			}

			seen := requestVersions(rec)
			t.Logf("request versions by key: %v", seen)
			maxOf := func(key kmsg.Key) int16 {
				vs := seen[int16(key)]
				if len(vs) == 0 {
					t.Fatalf("no %s request", key.Name())
				}
				return slices.Max(vs)
			}
			_, addParts := seen[int16(kmsg.AddPartitionsToTxn)]
			_, addOffsets := seen[int16(kmsg.AddOffsetsToTxn)]
			if tc.tv2 {
				if addParts || addOffsets || maxOf(kmsg.Produce) < 12 || maxOf(kmsg.TxnOffsetCommit) < 5 || maxOf(kmsg.EndTxn) != 5 {
					t.Fatalf("transaction version 2 requests: %v", seen)
				}
			} else if !addParts || !addOffsets || maxOf(kmsg.EndTxn) > 4 || maxOf(kmsg.TxnOffsetCommit) > 4 {
				t.Fatalf("older protocol requests: %v", seen)
			}
		})
	}
}
