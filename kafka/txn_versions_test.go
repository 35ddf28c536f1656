package kafka

import (
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/chronik-stream/chronik/broker"
)

// The version cases of the transactional APIs (TxnOffsetCommit's is in
// txn_offsets_test.go). Each sets up what its request needs through the
// broker (a transactional id's producer, partitions in its transaction, a
// transactional batch) and checks the request's effect at every version.
func init() { maps.Copy(versionCases, txnVersionCases) }

// txnTestTimeoutMs is the transaction timeout of the cases' producers:
// longer than any test, so that no transaction is aborted by the
// coordinator (and no abort marker written) while a test runs.
const txnTestTimeoutMs = 600_000

// ensureTopic creates a one-partition topic unless it exists.
func ensureTopic(t testing.TB, e *testEnv, name string) broker.TopicInfo {
	t.Helper()
	if info, ok := e.b.Topic(name); ok {
		return info
	}
	return e.createTopic(name, 1, nil)
}

// initTxn is InitProducerID for a transactional id, through the broker.
func initTxn(t testing.TB, e *testEnv, txnID string) (int64, int16) {
	t.Helper()
	pid, epoch, err := e.b.InitProducerID(&txnID, txnTestTimeoutMs, -1, -1)
	if err != nil {
		t.Fatalf("init producer id for %q: %v", txnID, err)
	}
	return pid, epoch
}

// openTxn is initTxn, then AddPartitionsToTxn of parts.
func openTxn(t testing.TB, e *testEnv, txnID string, parts ...broker.TxnTopicPartition) (int64, int16) {
	t.Helper()
	pid, epoch := initTxn(t, e, txnID)
	codes, err := e.b.AddPartitionsToTxn(txnID, pid, epoch, parts, false)
	if err != nil {
		t.Fatalf("add partitions to %q: %v", txnID, err)
	}
	for i, c := range codes {
		if c != 0 {
			t.Fatalf("add %v to %q: %v", parts[i], txnID, kerr.ErrorForCode(c))
		}
	}
	return pid, epoch
}

// txnProduce appends a transactional batch of keys to partition 0 of
// topic and returns its base offset.
func txnProduce(t testing.TB, e *testEnv, txnID, topic string, pid int64, epoch int16, seq int32, keys ...string) int64 {
	t.Helper()
	res, err := e.b.Produce(t.Context(), topic, 0, txnTestBatch(pid, epoch, seq, keys...), -1, &txnID)
	if err != nil {
		t.Fatalf("transactional produce to %s: %v", topic, err)
	}
	return res.BaseOffset
}

// describeTxn is the coordinator's state of a transactional id.
func describeTxn(t testing.TB, e *testEnv, txnID string) broker.TxnDescription {
	t.Helper()
	d, err := e.b.DescribeTransactions(txnID)
	if err != nil {
		t.Fatalf("describe %q: %v", txnID, err)
	}
	return d
}

// producerOf is a partition's state of one producer (DescribeProducers).
func producerOf(t testing.TB, e *testEnv, topic string, pid int64) broker.ProducerDescription {
	t.Helper()
	prods, err := e.b.DescribeProducers(topic, 0)
	if err != nil {
		t.Fatalf("describe producers of %s: %v", topic, err)
	}
	i := slices.IndexFunc(prods, func(p broker.ProducerDescription) bool { return p.ProducerID == pid })
	if i < 0 {
		t.Fatalf("producer %d not among %s's %+v", pid, topic, prods)
	}
	return prods[i]
}

// stableEnd checks that a partition's last stable offset is its high
// watermark, want.
func stableEnd(t testing.TB, e *testEnv, topic string, want int64) {
	t.Helper()
	_, hw, lso, err := e.b.FetchOffsets(topic, 0)
	if err != nil {
		t.Fatal(err)
	}
	if hw != want || lso != want {
		t.Fatalf("%s: high watermark %d, last stable offset %d, want both %d", topic, hw, lso, want)
	}
}

func offsetsPartitionOf(t testing.TB, e *testEnv, group string) broker.TxnTopicPartition {
	t.Helper()
	info, ok := e.b.Topic("__consumer_offsets")
	if !ok {
		t.Fatal("no __consumer_offsets")
	}
	return broker.TxnTopicPartition{Topic: "__consumer_offsets", Partition: broker.GroupOffsetsPartition(group, info.Partitions)}
}

var txnVersionCases = map[int16]versionCase{
	// AddPartitionsToTxn: v0-3 a client adds a partition to its
	// transaction; v4-5 (between brokers) one request adds for one
	// transaction and verifies for two others, one of which does not have
	// the partition.
	24: func(t *testing.T, e *testEnv, v int16) (kmsg.Request, func(kmsg.Response)) {
		ensureTopic(t, e, "txv")
		part := broker.TxnTopicPartition{Topic: "txv", Partition: 0}
		req := kmsg.NewPtrAddPartitionsToTxnRequest()
		rt := kmsg.NewAddPartitionsToTxnRequestTopic()
		rt.Topic, rt.Partitions = "txv", []int32{0}
		if v < 4 {
			id := fmt.Sprintf("apt-v%d", v)
			pid, epoch := initTxn(t, e, id)
			req.TransactionalID, req.ProducerID, req.ProducerEpoch = id, pid, epoch
			req.Topics = append(req.Topics, rt)
			return req, func(r kmsg.Response) {
				resp := r.(*kmsg.AddPartitionsToTxnResponse)
				if len(resp.Topics) != 1 || resp.Topics[0].Topic != "txv" || len(resp.Topics[0].Partitions) != 1 {
					t.Fatalf("response %+v", resp)
				}
				wantCode(t, "add partitions to transaction", resp.Topics[0].Partitions[0].ErrorCode)
				if d := describeTxn(t, e, id); d.State != broker.TxnOngoing || !slices.Contains(d.Partitions, part) {
					t.Fatalf("after the add: %s with %v", d.State, d.Partitions)
				}
			}
		}
		add, in, out := fmt.Sprintf("apt-v%d-add", v), fmt.Sprintf("apt-v%d-in", v), fmt.Sprintf("apt-v%d-out", v)
		txn := func(id string, verifyOnly bool, pid int64, epoch int16) kmsg.AddPartitionsToTxnRequestTransaction {
			tx := kmsg.NewAddPartitionsToTxnRequestTransaction()
			tx.TransactionalID, tx.ProducerID, tx.ProducerEpoch, tx.VerifyOnly = id, pid, epoch, verifyOnly
			tt := kmsg.NewAddPartitionsToTxnRequestTransactionTopic()
			tt.Topic, tt.Partitions = "txv", []int32{0}
			tx.Topics = append(tx.Topics, tt)
			return tx
		}
		addPID, addEpoch := initTxn(t, e, add)
		inPID, inEpoch := openTxn(t, e, in, part)
		outPID, outEpoch := initTxn(t, e, out)
		req.Transactions = append(req.Transactions, txn(add, false, addPID, addEpoch), txn(in, true, inPID, inEpoch), txn(out, true, outPID, outEpoch))
		return req, func(r kmsg.Response) {
			resp := r.(*kmsg.AddPartitionsToTxnResponse)
			wantCode(t, "add partitions to transactions", resp.ErrorCode)
			got := map[string]int16{}
			for _, tx := range resp.Transactions {
				if len(tx.Topics) != 1 || tx.Topics[0].Topic != "txv" || len(tx.Topics[0].Partitions) != 1 || tx.Topics[0].Partitions[0].Partition != 0 {
					t.Fatalf("%s: %+v", tx.TransactionalID, tx.Topics)
				}
				got[tx.TransactionalID] = tx.Topics[0].Partitions[0].ErrorCode
			}
			want := map[string]int16{add: 0, in: 0, out: kerr.TransactionAbortable.Code}
			if !maps.Equal(got, want) {
				t.Fatalf("codes %v, want %v (adding, verifying one in, verifying one out)", got, want)
			}
			if d := describeTxn(t, e, add); d.State != broker.TxnOngoing || !slices.Contains(d.Partitions, part) {
				t.Errorf("%s after the add: %s with %v", add, d.State, d.Partitions)
			}
			if d := describeTxn(t, e, out); d.State != broker.TxnEmpty || len(d.Partitions) != 0 {
				t.Errorf("%s after a verification: %s with %v, want Empty (verification adds nothing)", out, d.State, d.Partitions)
			}
		}
	},
	// AddOffsetsToTxn: the group's __consumer_offsets partition joins the
	// transaction.
	25: func(t *testing.T, e *testEnv, v int16) (kmsg.Request, func(kmsg.Response)) {
		id, group := fmt.Sprintf("ao-v%d", v), fmt.Sprintf("ao-group-v%d", v)
		pid, epoch := initTxn(t, e, id)
		req := kmsg.NewPtrAddOffsetsToTxnRequest()
		req.TransactionalID, req.ProducerID, req.ProducerEpoch, req.Group = id, pid, epoch, group
		return req, func(r kmsg.Response) {
			wantCode(t, "add offsets to transaction", r.(*kmsg.AddOffsetsToTxnResponse).ErrorCode)
			want := offsetsPartitionOf(t, e, group)
			if d := describeTxn(t, e, id); d.State != broker.TxnOngoing || !slices.Equal(d.Partitions, []broker.TxnTopicPartition{want}) {
				t.Fatalf("after the add: %s with %v, want Ongoing with %v", d.State, d.Partitions, want)
			}
		}
	},
	// EndTxn commits a transaction with a batch in a partition: the
	// commit marker makes the partition stable. v5 bumps the epoch: the
	// response names the next one and the marker carries it.
	26: func(t *testing.T, e *testEnv, v int16) (kmsg.Request, func(kmsg.Response)) {
		topic := fmt.Sprintf("end-v%d", v)
		ensureTopic(t, e, topic)
		id := topic
		pid, epoch := openTxn(t, e, id, broker.TxnTopicPartition{Topic: topic, Partition: 0})
		txnProduce(t, e, id, topic, pid, epoch, 0, "a", "b")
		req := kmsg.NewPtrEndTxnRequest()
		req.TransactionalID, req.ProducerID, req.ProducerEpoch, req.Commit = id, pid, epoch, true
		return req, func(r kmsg.Response) {
			resp := r.(*kmsg.EndTxnResponse)
			wantCode(t, "end transaction", resp.ErrorCode)
			nextEpoch := epoch
			if v >= 5 {
				nextEpoch = epoch + 1
				if resp.ProducerID != pid || resp.ProducerEpoch != nextEpoch {
					t.Fatalf("v5 answer: producer %d epoch %d, want %d and %d", resp.ProducerID, resp.ProducerEpoch, pid, nextEpoch)
				}
			}
			waitUntilTxn(t, "the commit to complete", func() bool { return describeTxn(t, e, id).State == broker.TxnCompleteCommit })
			if d := describeTxn(t, e, id); d.ProducerID != pid || d.ProducerEpoch != nextEpoch {
				t.Fatalf("coordinator: producer %d epoch %d, want %d and %d", d.ProducerID, d.ProducerEpoch, pid, nextEpoch)
			}
			stableEnd(t, e, topic, 3) // two records and the marker
			if p := producerOf(t, e, topic, pid); p.ProducerEpoch != nextEpoch || p.CurrentTxnStartOffset != -1 {
				t.Fatalf("partition's producer after the marker: %+v, want epoch %d and no open transaction", p, nextEpoch)
			}
		}
	},
	// WriteTxnMarkers writes a commit marker for a transaction with a
	// batch in a partition: the partition becomes stable and the producer
	// has no open transaction there.
	27: func(t *testing.T, e *testEnv, v int16) (kmsg.Request, func(kmsg.Response)) {
		topic := fmt.Sprintf("marked-v%d", v)
		ensureTopic(t, e, topic)
		id := topic
		pid, epoch := openTxn(t, e, id, broker.TxnTopicPartition{Topic: topic, Partition: 0})
		txnProduce(t, e, id, topic, pid, epoch, 0, "a", "b")
		req := kmsg.NewPtrWriteTxnMarkersRequest()
		m := kmsg.NewWriteTxnMarkersRequestMarker()
		m.ProducerID, m.ProducerEpoch, m.Committed, m.CoordinatorEpoch, m.TransactionVersion = pid, epoch, true, 0, 1
		mt := kmsg.NewWriteTxnMarkersRequestMarkerTopic()
		mt.Topic, mt.Partitions = topic, []int32{0}
		m.Topics = append(m.Topics, mt)
		req.Markers = append(req.Markers, m)
		return req, func(r kmsg.Response) {
			resp := r.(*kmsg.WriteTxnMarkersResponse)
			if len(resp.Markers) != 1 || resp.Markers[0].ProducerID != pid || len(resp.Markers[0].Topics) != 1 ||
				resp.Markers[0].Topics[0].Topic != topic || len(resp.Markers[0].Topics[0].Partitions) != 1 {
				t.Fatalf("response %+v", resp)
			}
			wantCode(t, "write transaction marker", resp.Markers[0].Topics[0].Partitions[0].ErrorCode)
			stableEnd(t, e, topic, 3)
			if p := producerOf(t, e, topic, pid); p.CurrentTxnStartOffset != -1 {
				t.Fatalf("partition's producer after the marker: %+v, want no open transaction", p)
			}
		}
	},
	// DescribeProducers lists a producer with an open transaction in the
	// partition, and answers an unknown partition with its error.
	61: func(t *testing.T, e *testEnv, v int16) (kmsg.Request, func(kmsg.Response)) {
		topic := fmt.Sprintf("described-v%d", v)
		ensureTopic(t, e, topic)
		id := topic
		pid, epoch := openTxn(t, e, id, broker.TxnTopicPartition{Topic: topic, Partition: 0})
		if _, err := e.b.Produce(t.Context(), topic, 0, keyedBatch("plain"), -1, nil); err != nil {
			t.Fatal(err)
		}
		base := txnProduce(t, e, id, topic, pid, epoch, 0, "a", "b", "c")
		req := kmsg.NewPtrDescribeProducersRequest()
		rt := kmsg.NewDescribeProducersRequestTopic()
		rt.Topic, rt.Partitions = topic, []int32{0, 7}
		req.Topics = append(req.Topics, rt)
		return req, func(r kmsg.Response) {
			resp := r.(*kmsg.DescribeProducersResponse)
			if len(resp.Topics) != 1 || len(resp.Topics[0].Partitions) != 2 {
				t.Fatalf("response %+v", resp)
			}
			p0, p7 := resp.Topics[0].Partitions[0], resp.Topics[0].Partitions[1]
			wantCode(t, "describe producers", p0.ErrorCode)
			if p7.Partition != 7 || p7.ErrorCode != kerr.UnknownTopicOrPartition.Code {
				t.Errorf("partition 7 of a one-partition topic: %d %v", p7.Partition, kerr.ErrorForCode(p7.ErrorCode))
			}
			if len(p0.ActiveProducers) != 1 {
				t.Fatalf("active producers %+v, want one", p0.ActiveProducers)
			}
			got := p0.ActiveProducers[0]
			if got.ProducerID != pid || got.ProducerEpoch != int32(epoch) || got.LastSequence != 2 ||
				got.CurrentTxnStartOffset != base || base != 1 || got.CoordinatorEpoch != -1 || got.LastTimestamp <= 0 {
				t.Fatalf("producer %+v, want id %d epoch %d last sequence 2, its transaction open from 1 (batch at %d)", got, pid, epoch, base)
			}
		}
	},
	// DescribeTransactions describes an open transaction and answers an
	// unknown id TRANSACTIONAL_ID_NOT_FOUND.
	65: func(t *testing.T, e *testEnv, v int16) (kmsg.Request, func(kmsg.Response)) {
		ensureTopic(t, e, "txv")
		id := fmt.Sprintf("dt-v%d", v)
		pid, epoch := openTxn(t, e, id, broker.TxnTopicPartition{Topic: "txv", Partition: 0})
		req := kmsg.NewPtrDescribeTransactionsRequest()
		req.TransactionalIDs = []string{id, "dt-unknown"}
		return req, func(r kmsg.Response) {
			resp := r.(*kmsg.DescribeTransactionsResponse)
			if len(resp.TransactionStates) != 2 {
				t.Fatalf("response %+v", resp)
			}
			st, unknown := resp.TransactionStates[0], resp.TransactionStates[1]
			wantCode(t, "describe "+id, st.ErrorCode)
			if st.TransactionalID != id || st.State != "Ongoing" || st.ProducerID != pid || st.ProducerEpoch != epoch ||
				st.TimeoutMillis != txnTestTimeoutMs || st.StartTimestamp <= 0 ||
				len(st.Topics) != 1 || st.Topics[0].Topic != "txv" || !slices.Equal(st.Topics[0].Partitions, []int32{0}) {
				t.Fatalf("state %+v, want Ongoing, producer %d epoch %d, txv [0]", st, pid, epoch)
			}
			if unknown.TransactionalID != "dt-unknown" || unknown.ErrorCode != kerr.TransactionalIDNotFound.Code {
				t.Fatalf("unknown id: %s %v", unknown.TransactionalID, kerr.ErrorForCode(unknown.ErrorCode))
			}
		}
	},
	// ListTransactions finds an Ongoing transaction by state and producer
	// id (an Empty one with a listed producer id is filtered out by
	// state); v1 a duration longer than the test filters it out; v2 a
	// pattern lists by transactional id, matching whole ids.
	66: func(t *testing.T, e *testEnv, v int16) (kmsg.Request, func(kmsg.Response)) {
		ensureTopic(t, e, "txv")
		a, b := fmt.Sprintf("lt-v%d-a", v), fmt.Sprintf("lt-v%d-b", v)
		pidA, _ := openTxn(t, e, a, broker.TxnTopicPartition{Topic: "txv", Partition: 0})
		pidB, _ := initTxn(t, e, b)
		list := func(mod func(*kmsg.ListTransactionsRequest)) *kmsg.ListTransactionsRequest {
			req := kmsg.NewPtrListTransactionsRequest()
			req.ProducerIDFilters = []int64{pidA, pidB}
			if mod != nil {
				mod(req)
			}
			return req
		}
		listed := func(resp *kmsg.ListTransactionsResponse) []string {
			wantCode(t, "list transactions", resp.ErrorCode)
			var out []string
			for _, st := range resp.TransactionStates {
				out = append(out, fmt.Sprintf("%s/%d/%s", st.TransactionalID, st.ProducerID, st.TransactionState))
			}
			return out
		}
		again := func(mod func(*kmsg.ListTransactionsRequest)) []string {
			req := list(mod)
			req.SetVersion(v)
			rc := e.dial()
			rc.t = t
			return listed(rc.roundTrip(req).(*kmsg.ListTransactionsResponse))
		}
		req := list(func(r *kmsg.ListTransactionsRequest) {
			r.StateFilters = []string{"Ongoing", "Nonsense"}
			r.TransactionalIDPattern = kmsg.StringPtr(fmt.Sprintf("lt-v%d-.*", v))
		})
		return req, func(r kmsg.Response) {
			resp := r.(*kmsg.ListTransactionsResponse)
			if !slices.Equal(resp.UnknownStateFilters, []string{"Nonsense"}) {
				t.Errorf("unknown state filters %v", resp.UnknownStateFilters)
			}
			ongoingA := fmt.Sprintf("%s/%d/Ongoing", a, pidA)
			if got := listed(resp); !slices.Equal(got, []string{ongoingA}) {
				t.Fatalf("listed %v, want [%s]", got, ongoingA)
			}
			both := []string{ongoingA, fmt.Sprintf("%s/%d/Empty", b, pidB)}
			if got := again(nil); !slices.Equal(got, both) {
				t.Fatalf("by producer id only: %v, want %v", got, both)
			}
			if v >= 1 {
				if got := again(func(r *kmsg.ListTransactionsRequest) { r.DurationFilterMillis = 3_600_000 }); len(got) != 0 {
					t.Errorf("running for an hour: %v, want none", got)
				}
				if got := again(func(r *kmsg.ListTransactionsRequest) { r.DurationFilterMillis = -1 }); !slices.Equal(got, both) {
					t.Errorf("duration -1: %v, want %v", got, both)
				}
			}
			if v >= 2 {
				for pattern, want := range map[string][]string{
					fmt.Sprintf("lt-v%d-b", v): both[1:],
					fmt.Sprintf("lt-v%d", v):   nil, // a prefix is not a whole id
					"":                         both,
				} {
					got := again(func(r *kmsg.ListTransactionsRequest) { r.TransactionalIDPattern = kmsg.StringPtr(pattern) })
					if !slices.Equal(got, want) {
						t.Errorf("pattern %q: %v, want %v", pattern, got, want)
					}
				}
			}
		}
	},
}

// TestListTransactionsPatterns: v2's patterns that do not compile answer
// INVALID_REGULAR_EXPRESSION (nothing listed), and a null pattern is no
// filter.
func TestListTransactionsPatterns(t *testing.T) {
	e := startEnv(t)
	e.createTopic("txv", 1, nil)
	pid, _ := openTxn(t, e, "pattern-a", broker.TxnTopicPartition{Topic: "txv", Partition: 0})
	rc := e.dial()
	for _, bad := range []string{"(", "a)|(b", `\`, "[z-a]", "x{2,1}"} {
		req := kmsg.NewPtrListTransactionsRequest()
		req.SetVersion(2)
		req.TransactionalIDPattern = kmsg.StringPtr(bad)
		resp := rc.roundTrip(req).(*kmsg.ListTransactionsResponse)
		if resp.ErrorCode != kerr.InvalidRegularExpression.Code || len(resp.TransactionStates) != 0 {
			t.Errorf("pattern %q: %v with %d transactions, want INVALID_REGULAR_EXPRESSION and none", bad, kerr.ErrorForCode(resp.ErrorCode), len(resp.TransactionStates))
		}
	}
	for _, p := range []*string{nil, kmsg.StringPtr("pattern-.*"), kmsg.StringPtr("pattern-a|other")} {
		req := kmsg.NewPtrListTransactionsRequest()
		req.SetVersion(2)
		req.TransactionalIDPattern = p
		resp := rc.roundTrip(req).(*kmsg.ListTransactionsResponse)
		wantCode(t, "list transactions", resp.ErrorCode)
		if len(resp.TransactionStates) != 1 || resp.TransactionStates[0].ProducerID != pid {
			t.Errorf("pattern %v: %+v, want pattern-a", p, resp.TransactionStates)
		}
	}
}

// TestEndTxnV5Protocol runs transactions the way a client of transaction
// version 2 ends them, over the wire: every EndTxn v5 bumps the epoch and
// names it, a retry is answered the same, the next transaction runs at the
// new epoch (the old one is fenced), and read_committed readers are told
// to drop the aborted one. An abort with nothing added succeeds and bumps too.
func TestEndTxnV5Protocol(t *testing.T) {
	e := startEnv(t)
	e.createTopic("txn", 1, nil)
	rc := e.dial()
	const id = "tv2"
	pid, e0 := initTxn(t, e, id)
	end := func(epoch int16, commit bool) *kmsg.EndTxnResponse {
		t.Helper()
		req := kmsg.NewPtrEndTxnRequest()
		req.SetVersion(5)
		req.TransactionalID, req.ProducerID, req.ProducerEpoch, req.Commit = id, pid, epoch, commit
		return rc.roundTrip(req).(*kmsg.EndTxnResponse)
	}
	wantEnd := func(what string, resp *kmsg.EndTxnResponse, epoch int16) {
		t.Helper()
		wantCode(t, what, resp.ErrorCode)
		if resp.ProducerID != pid || resp.ProducerEpoch != epoch {
			t.Fatalf("%s: producer %d epoch %d, want %d and %d", what, resp.ProducerID, resp.ProducerEpoch, pid, epoch)
		}
	}
	add := func(epoch int16) int16 {
		t.Helper()
		req := kmsg.NewPtrAddPartitionsToTxnRequest()
		req.SetVersion(3)
		req.TransactionalID, req.ProducerID, req.ProducerEpoch = id, pid, epoch
		rt := kmsg.NewAddPartitionsToTxnRequestTopic()
		rt.Topic, rt.Partitions = "txn", []int32{0}
		req.Topics = append(req.Topics, rt)
		return rc.roundTrip(req).(*kmsg.AddPartitionsToTxnResponse).Topics[0].Partitions[0].ErrorCode
	}
	completed := func(state broker.TxnState) {
		t.Helper()
		waitUntilTxn(t, state.String(), func() bool { return describeTxn(t, e, id).State == state })
	}

	wantCode(t, "add at the first epoch", add(e0))
	txnProduce(t, e, id, "txn", pid, e0, 0, "c1")
	wantEnd("commit", end(e0, true), e0+1)
	completed(broker.TxnCompleteCommit)
	wantEnd("commit retried", end(e0, true), e0+1)
	if code := end(e0, false).ErrorCode; code != kerr.InvalidTxnState.Code {
		t.Fatalf("abort of the committed transaction: %v, want INVALID_TXN_STATE", kerr.ErrorForCode(code))
	}

	if code := add(e0); code != kerr.ProducerFenced.Code {
		t.Fatalf("add at the old epoch: %v, want PRODUCER_FENCED", kerr.ErrorForCode(code))
	}
	wantCode(t, "add at the bumped epoch", add(e0+1))
	txnProduce(t, e, id, "txn", pid, e0+1, 0, "a1")
	wantEnd("abort", end(e0+1, false), e0+2)
	completed(broker.TxnCompleteAbort)

	stableEnd(t, e, "txn", 4) // c1, its marker, a1, its marker
	// A read_committed fetch returns the records up to the last stable
	// offset with the aborted transactions its reader drops: a1's.
	committed := txnFetch(t, rc, 0, 1)
	if got := keysOf(t, committed.RecordBatches); !slices.Equal(got, []string{"c1", "a1"}) {
		t.Fatalf("read_committed records %v, want [c1 a1]", got)
	}
	if ab := committed.AbortedTransactions; len(ab) != 1 || ab[0].ProducerID != pid || ab[0].FirstOffset != 2 {
		t.Fatalf("aborted transactions %+v, want producer %d from offset 2 (a1)", ab, pid)
	}
	if p := producerOf(t, e, "txn", pid); p.ProducerEpoch != e0+2 {
		t.Fatalf("the partition's producer is at epoch %d, want %d (the abort marker's)", p.ProducerEpoch, e0+2)
	}

	// Nothing added: a v5 abort still ends the (empty) transaction with a
	// bump; a commit of it is INVALID_TXN_STATE.
	wantEnd("abort with nothing added", end(e0+2, false), e0+3)
	completed(broker.TxnCompleteAbort)
	if resp := end(e0+3, true); resp.ErrorCode != kerr.InvalidTxnState.Code || resp.ProducerID != -1 || resp.ProducerEpoch != -1 {
		t.Fatalf("commit with nothing added: %v, producer %d epoch %d; want INVALID_TXN_STATE, -1, -1",
			kerr.ErrorForCode(resp.ErrorCode), resp.ProducerID, resp.ProducerEpoch)
	}
}

// FuzzWholeMatch: ListTransactions' pattern compiles exactly when Go's
// regexp compiles it, and matches a string exactly when the pattern
// wrapped as ^(?:...)$ does (where that wrapping is sound: no \Q, and the
// wrapped text compiles).
func FuzzWholeMatch(f *testing.F) {
	for _, seed := range [][2]string{
		{"lt-.*", "lt-a"}, {"lt", "lt-a"}, {"a)|(b", "a"}, {"a|b", "ab"}, {"(?m)^x$", "x"},
		{"(?i)TX", "tx"}, {"x*", ""}, {`\\`, `\\`}, {"[", "["}, {"a{2,1}", "aa"}, {`\Q`, "0"}, {`\Qa.b`, "a.b"},
		{"a|ab", "ab"}, {"(a|ab)(c|bcd)", "abcd"},
	} {
		f.Add(seed[0], seed[1])
	}
	f.Fuzz(func(t *testing.T, pattern, s string) {
		_, aloneErr := regexp.Compile(pattern)
		matches, err := wholeMatch(pattern)
		if (err == nil) != (aloneErr == nil) {
			t.Fatalf("%q: wholeMatch error %v, regexp.Compile %v", pattern, err, aloneErr)
		}
		if err != nil || strings.Contains(pattern, `\Q`) {
			return
		}
		wrapped, err := regexp.Compile(`^(?:` + pattern + `)$`)
		if err != nil {
			t.Fatalf("%q compiles but not wrapped: %v", pattern, err)
		}
		if got, want := matches(s), wrapped.MatchString(s); got != want {
			t.Fatalf("%q on %q: %v, wrapped %v", pattern, s, got, want)
		}
	})
}
