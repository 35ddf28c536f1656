package kafka

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/chronik-stream/chronik/broker"
)

func init() { versionCases[28] = txnOffsetCommitVersionCase }

func txnOffsetCommitRequest(group string, producerID int64, topic string, offsets ...int64) *kmsg.TxnOffsetCommitRequest {
	req := kmsg.NewPtrTxnOffsetCommitRequest()
	req.TransactionalID, req.Group, req.ProducerID, req.ProducerEpoch = "tx-"+group, group, producerID, 0
	rt := kmsg.NewTxnOffsetCommitRequestTopic()
	rt.Topic = topic
	for p, o := range offsets {
		rp := kmsg.NewTxnOffsetCommitRequestTopicPartition()
		rp.Partition, rp.Offset, rp.LeaderEpoch, rp.Metadata = int32(p), o, 0, kmsg.StringPtr("m")
		rt.Partitions = append(rt.Partitions, rp)
	}
	req.Topics = append(req.Topics, rt)
	return req
}

// txnOffsetCommitVersionCase commits an offset in a transaction: pending
// (invisible, unstable) until the transaction commits, then the group's.
// Below v5 the producer adds the group's offsets with AddOffsetsToTxn
// first, as clients do; v5+ adds them itself. v6 names the topic by id.
func txnOffsetCommitVersionCase(t *testing.T, e *testEnv, v int16) (kmsg.Request, func(kmsg.Response)) {
	group := fmt.Sprintf("txn-commit-v%d", v)
	id := "tx-" + group
	pid, epoch := initTxn(t, e, id)
	if v < 5 {
		if err := e.b.AddOffsetsToTxn(id, pid, epoch, group); err != nil {
			t.Fatal(err)
		}
	}
	info := ensureTopic(t, e, "v")
	req := txnOffsetCommitRequest(group, pid, "v", 5)
	req.ProducerEpoch = epoch
	req.Topics[0].TopicID = info.ID
	return req, func(r kmsg.Response) {
		resp := r.(*kmsg.TxnOffsetCommitResponse)
		if len(resp.Topics) != 1 || len(resp.Topics[0].Partitions) != 1 {
			t.Fatalf("response %+v", resp)
		}
		if v < 6 && resp.Topics[0].Topic != "v" || v >= 6 && resp.Topics[0].TopicID != info.ID {
			t.Fatalf("topic %q %x, want v %x", resp.Topics[0].Topic, resp.Topics[0].TopicID, info.ID)
		}
		wantCode(t, "txn offset commit", resp.Topics[0].Partitions[0].ErrorCode)
		// Pending until the transaction's marker: invisible, unstable.
		if got := committed(t, e, group, "v", 0); got != -1 {
			t.Fatalf("pending offset visible: %d", got)
		}
		offs, err := e.b.OffsetFetch(group, []broker.GroupFetchTopic{{Topic: "v", Partitions: []int32{0}}}, true)
		if err != nil || offs[0].ErrorCode != kerr.UnstableOffsetCommit.Code {
			t.Fatalf("stable fetch of a pending offset: %+v %v", offs, err)
		}
		want := offsetsPartitionOf(t, e, group)
		if d := describeTxn(t, e, id); d.State != broker.TxnOngoing || !slices.Equal(d.Partitions, []broker.TxnTopicPartition{want}) {
			t.Fatalf("transaction %s with %v, want Ongoing with %v", d.State, d.Partitions, want)
		}
		if _, _, err := e.b.EndTxn(id, pid, epoch, true, false); err != nil {
			t.Fatal(err)
		}
		waitUntilTxn(t, "the committed offset", func() bool { return committed(t, e, group, "v", 0) == 5 })
	}
}

func TestTxnOffsetCommitVersions(t *testing.T) {
	e := startEnv(t)
	e.createTopic("v", 1, nil)
	a := lookupAPI(28)
	for v := a.min; v <= a.max; v++ {
		t.Run(fmt.Sprintf("v%d", v), func(t *testing.T) {
			req, check := txnOffsetCommitVersionCase(t, e, v)
			req.SetVersion(v)
			rc := e.dial()
			rc.t = t
			check(rc.roundTrip(req))
		})
	}
}

// TestTxnOffsetCommitCodeByVersion: the codes a version cannot carry are
// answered as Kafka maps them.
func TestTxnOffsetCommitCodeByVersion(t *testing.T) {
	missing, present := func() bool { return true }, func() bool { return false }
	tests := []struct {
		v, code int16
		missing func() bool
		want    int16
	}{
		{1, kerr.CoordinatorLoadInProgress.Code, missing, kerr.CoordinatorNotAvailable.Code},
		{2, kerr.CoordinatorLoadInProgress.Code, missing, kerr.CoordinatorLoadInProgress.Code},
		{3, kerr.TransactionAbortable.Code, missing, kerr.InvalidTxnState.Code},
		{4, kerr.TransactionAbortable.Code, missing, kerr.TransactionAbortable.Code},
		{5, kerr.IllegalGeneration.Code, missing, kerr.IllegalGeneration.Code},
		{6, kerr.IllegalGeneration.Code, missing, kerr.GroupIDNotFound.Code},
		{6, kerr.IllegalGeneration.Code, present, kerr.IllegalGeneration.Code},
		{6, 0, missing, 0},
	}
	for _, tt := range tests {
		if got := txnOffsetCommitCode(tt.v, tt.code, tt.missing); got != tt.want {
			t.Errorf("v%d %v: %v, want %v", tt.v, kerr.ErrorForCode(tt.code), kerr.ErrorForCode(got), kerr.ErrorForCode(tt.want))
		}
	}
}

// TestTxnOffsetCommitErrors: the Kafka codes of bad TxnOffsetCommits
// over TCP, and RequireStable in OffsetFetch. Its producers are not
// registered with a transaction coordinator, so the KIP-890 check is off
// (--transaction-partition-verification=false); TestTransactionsPipeline
// and the version cases run with it.
func TestTxnOffsetCommitErrors(t *testing.T) {
	e := startEnv(t, withoutTxnVerification())
	info := e.createTopic("v", 2, nil)
	memberID, gen := stableGroup(t, e, "members")
	codesOf := func(resp kmsg.Response) []int16 {
		var codes []int16
		for _, rt := range resp.(*kmsg.TxnOffsetCommitResponse).Topics {
			for _, rp := range rt.Partitions {
				codes = append(codes, rp.ErrorCode)
			}
		}
		return codes
	}
	tests := []struct {
		name string
		req  func() *kmsg.TxnOffsetCommitRequest
		want []int16
	}{
		{"unknown topic", func() *kmsg.TxnOffsetCommitRequest { return txnOffsetCommitRequest("g", 1, "nope", 1) },
			[]int16{kerr.UnknownTopicOrPartition.Code}},
		{"unknown partition", func() *kmsg.TxnOffsetCommitRequest { return txnOffsetCommitRequest("g", 1, "v", 1, 2, 3) },
			[]int16{0, 0, kerr.UnknownTopicOrPartition.Code}},
		{"empty group", func() *kmsg.TxnOffsetCommitRequest { return txnOffsetCommitRequest("", 1, "v", 1) },
			[]int16{kerr.InvalidGroupID.Code}},
		{"no producer id", func() *kmsg.TxnOffsetCommitRequest { return txnOffsetCommitRequest("g", -1, "v", 1) },
			[]int16{kerr.InvalidProducerIDMapping.Code}},
		{"old generation (v3)", func() *kmsg.TxnOffsetCommitRequest {
			r := txnOffsetCommitRequest("members", 2, "v", 1)
			r.Generation, r.MemberID = gen-1, memberID
			return r
		}, []int16{kerr.IllegalGeneration.Code}},
		{"unknown member (v3)", func() *kmsg.TxnOffsetCommitRequest {
			r := txnOffsetCommitRequest("members", 2, "v", 1)
			r.Generation, r.MemberID = gen, "ghost"
			return r
		}, []int16{kerr.UnknownMemberID.Code}},
		{"member of the generation (v3)", func() *kmsg.TxnOffsetCommitRequest {
			r := txnOffsetCommitRequest("members", 2, "v", 7)
			r.Generation, r.MemberID = gen, memberID
			return r
		}, []int16{0}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := tt.req()
			req.SetVersion(4)
			rc := e.dial()
			rc.t = t
			if got := codesOf(rc.roundTrip(req)); fmt.Sprint(got) != fmt.Sprint(tt.want) {
				t.Fatalf("codes %v, want %v", got, tt.want)
			}
		})
	}
	// v5+ add the group's offsets to the transaction first (its errors
	// answer every partition); v6 names topics by id and tells a missing
	// group from a stale generation.
	vtests := []struct {
		name string
		v    int16
		req  func(t *testing.T) *kmsg.TxnOffsetCommitRequest
		want []int16
	}{
		{"unknown transactional producer", 5, func(t *testing.T) *kmsg.TxnOffsetCommitRequest {
			return txnOffsetCommitRequest("g5", 12345, "v", 1, 2)
		}, []int16{kerr.InvalidProducerIDMapping.Code, kerr.InvalidProducerIDMapping.Code}},
		{"fenced epoch", 5, func(t *testing.T) *kmsg.TxnOffsetCommitRequest {
			initTxn(t, e, "tx-fenced")
			pid, epoch := initTxn(t, e, "tx-fenced")
			r := txnOffsetCommitRequest("fenced", pid, "v", 1)
			r.ProducerEpoch = epoch - 1
			return r
		}, []int16{kerr.InvalidProducerEpoch.Code}},
		{"unknown partition, the others committed", 5, func(t *testing.T) *kmsg.TxnOffsetCommitRequest {
			pid, _ := initTxn(t, e, "tx-parts")
			return txnOffsetCommitRequest("parts", pid, "v", 1, 2, 3)
		}, []int16{0, 0, kerr.UnknownTopicOrPartition.Code}},
		{"a generation for a group that does not exist", 5, func(t *testing.T) *kmsg.TxnOffsetCommitRequest {
			pid, _ := initTxn(t, e, "tx-nogroup5")
			r := txnOffsetCommitRequest("nogroup5", pid, "v", 1)
			r.Generation, r.MemberID = 3, "m"
			return r
		}, []int16{kerr.IllegalGeneration.Code}},
		{"a generation for a group that does not exist", 6, func(t *testing.T) *kmsg.TxnOffsetCommitRequest {
			pid, _ := initTxn(t, e, "tx-nogroup6")
			r := txnOffsetCommitRequest("nogroup6", pid, "v", 1)
			r.Topics[0].TopicID = info.ID
			r.Generation, r.MemberID = 3, "m"
			return r
		}, []int16{kerr.GroupIDNotFound.Code}},
		{"an old generation of a group", 6, func(t *testing.T) *kmsg.TxnOffsetCommitRequest {
			pid, _ := initTxn(t, e, "tx-members")
			r := txnOffsetCommitRequest("members", pid, "v", 1)
			r.Topics[0].TopicID = info.ID
			r.Generation, r.MemberID = gen-1, memberID
			return r
		}, []int16{kerr.IllegalGeneration.Code}},
		{"topics by id, one unknown", 6, func(t *testing.T) *kmsg.TxnOffsetCommitRequest {
			pid, _ := initTxn(t, e, "tx-ids")
			r := txnOffsetCommitRequest("ids", pid, "v", 1)
			r.Topics[0].Topic, r.Topics[0].TopicID = "", info.ID
			unknown := r.Topics[0]
			unknown.TopicID = [16]byte{1, 2, 3}
			r.Topics = append(r.Topics, unknown)
			return r
		}, []int16{0, kerr.UnknownTopicID.Code}},
	}
	for _, tt := range vtests {
		t.Run(fmt.Sprintf("%s (v%d)", tt.name, tt.v), func(t *testing.T) {
			req := tt.req(t)
			req.SetVersion(tt.v)
			rc := e.dial()
			rc.t = t
			if got := codesOf(rc.roundTrip(req)); fmt.Sprint(got) != fmt.Sprint(tt.want) {
				t.Fatalf("codes %v, want %v", got, tt.want)
			}
		})
	}

	// v0-v2 carry no member fields: the member check is skipped, even if
	// the struct holds some.
	req := txnOffsetCommitRequest("members", 3, "v", 8, 9)
	req.Generation, req.MemberID = gen+5, "ghost"
	req.SetVersion(2)
	rc := e.dial()
	rc.t = t
	if got := codesOf(rc.roundTrip(req)); fmt.Sprint(got) != "[0 0]" {
		t.Fatalf("v2 commit to a live group: %v", got)
	}

	// OffsetFetch: the pending partitions are unstable with RequireStable
	// (v7+), invisible without.
	for _, v := range []int16{6, 7, 8} {
		t.Run(fmt.Sprintf("OffsetFetch v%d", v), func(t *testing.T) {
			f := kmsg.NewPtrOffsetFetchRequest()
			f.SetVersion(v)
			f.RequireStable = v >= 7
			if v >= 8 {
				g := kmsg.NewOffsetFetchRequestGroup()
				g.Group = "members"
				g.Topics = []kmsg.OffsetFetchRequestGroupTopic{{Topic: "v", Partitions: []int32{0, 1}}}
				f.Groups = append(f.Groups, g)
			} else {
				f.Group = "members"
				f.Topics = []kmsg.OffsetFetchRequestTopic{{Topic: "v", Partitions: []int32{0, 1}}}
			}
			rc := e.dial()
			rc.t = t
			resp := rc.roundTrip(f).(*kmsg.OffsetFetchResponse)
			var got []string
			if v >= 8 {
				for _, p := range resp.Groups[0].Topics[0].Partitions {
					got = append(got, fmt.Sprintf("%d/%d", p.Offset, p.ErrorCode))
				}
			} else {
				for _, p := range resp.Topics[0].Partitions {
					got = append(got, fmt.Sprintf("%d/%d", p.Offset, p.ErrorCode))
				}
			}
			want := "[-1/0 -1/0]"
			if v >= 7 {
				want = fmt.Sprintf("[-1/%d -1/%d]", kerr.UnstableOffsetCommit.Code, kerr.UnstableOffsetCommit.Code)
			}
			if fmt.Sprint(got) != want {
				t.Fatalf("offset fetch %v, want %s (offset/code)", got, want)
			}
		})
	}
}

// FuzzTxnOffsetCommitRequest feeds mutated TxnOffsetCommit frames of every
// version through the server's decode and dispatch path, as FuzzRequest
// does for the seeds of the APIs in the table.
func FuzzTxnOffsetCommitRequest(f *testing.F) {
	a := lookupAPI(28)
	for v := a.min; v <= a.max; v++ {
		req := txnOffsetCommitRequest("fuzz-group", 5, "fuzz", 1, 2)
		req.SetVersion(v)
		req.Generation, req.MemberID = -1, ""
		var body []byte
		if req.IsFlexible() {
			body = append(body, 0) // no tagged fields in the request header
		}
		f.Add(rawRequest(28, v, 7, append(body, req.AppendTo(nil)...))[4:])
	}
	e := startEnv(f)
	e.createTopic("fuzz", 2, nil)
	log := e.srv.log
	f.Fuzz(func(t *testing.T, body []byte) {
		r, err := e.srv.decodeRequest(body)
		if err != nil || r.key != 28 {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		panics := e.srv.panics.Load()
		frame, _ := e.srv.handle(ctx, r, &log)
		if e.srv.panics.Load() != panics {
			t.Fatalf("TxnOffsetCommit v%d: handler panicked: %s", r.version, lastLine(e.logs.String(), "panicked"))
		}
		if frame == nil {
			t.Fatalf("no response to TxnOffsetCommit v%d", r.version)
		}
		b := *frame
		if len(b) < 8 || int(beUint32(b)) != len(b)-4 || int32(beUint32(b[4:])) != r.corrID {
			t.Fatalf("malformed response frame to TxnOffsetCommit v%d: % x", r.version, b[:min(len(b), 16)])
		}
		putBuffer(frame)
	})
}

func withoutTxnVerification() envOpt { return func(e *testEnv) { e.bcfg.NoTxnVerification = true } }
