package broker

import (
	"math/rand/v2"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// groupHarness drives one GroupTable with a fake clock and collects what it
// outputs, checking the invariant every I/O loop relies on: each token is
// answered exactly once.
type groupHarness struct {
	t         *testing.T
	table     *GroupTable
	now       time.Time
	nextToken uint64
	answered  map[uint64]GroupResponse
	records   []GroupRecord // the plain records, for groupCheckReplay
	// log is everything written to the partition in order: plain and
	// transactional records and markers (group_txn_test.go).
	log []groupTestEntry
}

var groupT0 = time.Unix(1_700_000_000, 0)

const groupTestGroup = "g"

// groupFormDelay is how long a new group of several members takes to form:
// the 3s initial rebalance delay, extended once by 3s because more members
// joined during it (Kafka's InitialDelayedJoin).
const groupFormDelay = 6 * time.Second

func groupTestConfig() GroupConfig {
	return GroupConfig{
		InitialRebalanceDelay: 3 * time.Second, // Kafka's default
		Rand:                  rand.NewChaCha8([32]byte{1}),
	}
}

func groupNewHarness(t *testing.T, cfg GroupConfig) *groupHarness {
	return &groupHarness{t: t, table: NewGroupTable(cfg), now: groupT0, answered: make(map[uint64]GroupResponse)}
}

func (h *groupHarness) group() *GroupStateMachine {
	h.t.Helper()
	g, ok := h.table.Group(groupTestGroup)
	if !ok {
		h.t.Fatalf("group %q does not exist", groupTestGroup)
	}
	return g
}

func (h *groupHarness) collect(out GroupOutput) {
	h.t.Helper()
	h.records = append(h.records, out.Records...)
	for _, r := range out.Records {
		h.log = append(h.log, groupTestEntry{rec: r, producerID: -1})
	}
	for _, r := range out.TxnRecords {
		h.log = append(h.log, groupTestEntry{rec: r, producerID: out.TxnProducer.ID})
	}
	for _, r := range out.Responses {
		if _, dup := h.answered[r.Token]; dup {
			h.t.Fatalf("token %d answered twice", r.Token)
		}
		if (r.Join == nil) == (r.Sync == nil) {
			h.t.Fatalf("token %d: response must be exactly one of join or sync: %+v", r.Token, r)
		}
		h.answered[r.Token] = r
	}
}

// advance moves the clock by d the way the I/O loop does: ticking at every
// deadline on the way (timers re-armed by a tick count from that tick, as
// in Kafka), then at the target time.
func (h *groupHarness) advance(d time.Duration) {
	h.t.Helper()
	target := h.now.Add(d)
	for i := 0; ; i++ {
		at, ok := h.table.NextDeadline()
		if !ok || at.After(target) {
			break
		}
		if i > 100_000 {
			h.t.Fatalf("deadline %v keeps firing", at)
		}
		if at.After(h.now) {
			h.now = at
		}
		h.collect(h.table.Tick(h.now))
	}
	h.now = target
	h.collect(h.table.Tick(h.now))
}

// join sends a JoinGroup and returns its token.
func (h *groupHarness) join(req GroupJoinRequest) uint64 {
	h.t.Helper()
	h.nextToken++
	tok := h.nextToken
	h.collect(h.table.Join(h.now, tok, groupTestGroup, req))
	return tok
}

func (h *groupHarness) sync(req GroupSyncRequest) uint64 {
	h.t.Helper()
	h.nextToken++
	tok := h.nextToken
	h.collect(h.table.Sync(h.now, tok, groupTestGroup, req))
	return tok
}

func (h *groupHarness) heartbeat(memberID, instanceID string, gen int32) int16 {
	h.t.Helper()
	code, out := h.table.Heartbeat(h.now, groupTestGroup, GroupHeartbeatRequest{MemberID: memberID, InstanceID: instanceID, GenerationID: gen})
	h.collect(out)
	return code
}

func (h *groupHarness) leave(members ...GroupLeaveMember) GroupLeaveResponse {
	h.t.Helper()
	resp, out := h.table.Leave(h.now, groupTestGroup, members)
	h.collect(out)
	return resp
}

func (h *groupHarness) commit(req GroupCommitRequest) []int16 {
	h.t.Helper()
	codes, out := h.table.CommitOffsets(h.now, groupTestGroup, req)
	h.collect(out)
	return codes
}

func (h *groupHarness) joinResp(tok uint64) *GroupJoinResponse {
	h.t.Helper()
	r, ok := h.answered[tok]
	if !ok || r.Join == nil {
		h.t.Fatalf("join token %d not answered", tok)
	}
	return r.Join
}

func (h *groupHarness) syncResp(tok uint64) *GroupSyncResponse {
	h.t.Helper()
	r, ok := h.answered[tok]
	if !ok || r.Sync == nil {
		h.t.Fatalf("sync token %d not answered", tok)
	}
	return r.Sync
}

func (h *groupHarness) waiting(tok uint64) bool {
	_, ok := h.answered[tok]
	return !ok
}

func (h *groupHarness) wantState(want GroupState) {
	h.t.Helper()
	if got := h.group().State(); got != want {
		h.t.Fatalf("state = %v, want %v", got, want)
	}
}

func groupWantCode(t *testing.T, what string, got, want int16) {
	t.Helper()
	if got != want {
		t.Fatalf("%s: error %s (%d), want %s (%d)", what, groupCodeName(got), got, groupCodeName(want), want)
	}
}

func groupCodeName(code int16) string {
	if code == 0 {
		return "NONE"
	}
	if e := kerr.TypedErrorForCode(code); e != nil {
		return e.Message
	}
	return "?"
}

// groupConsumerMeta is a consumer-protocol subscription, so that subscribed
// topics can be derived.
func groupConsumerMeta(topics ...string) []byte {
	m := kmsg.ConsumerMemberMetadata{Version: 0, Topics: topics}
	return m.AppendTo(nil)
}

// groupJoinReq is a v4+ consumer JoinGroup with the range protocol.
func groupJoinReq(memberID, clientID string) GroupJoinRequest {
	return GroupJoinRequest{
		MemberID:             memberID,
		ClientID:             clientID,
		ClientHost:           "/127.0.0.1",
		SessionTimeoutMs:     10_000,
		RebalanceTimeoutMs:   30_000,
		ProtocolType:         "consumer",
		Protocols:            []GroupProtocol{{Name: "range", Metadata: groupConsumerMeta("t")}},
		RequireKnownMemberID: true,
	}
}

// enter runs the KIP-394 two-step join of a new dynamic member and returns
// its member id and the token of its (possibly still waiting) second join.
func (h *groupHarness) enter(req GroupJoinRequest) (memberID string, tok uint64) {
	h.t.Helper()
	req.MemberID = ""
	first := h.joinResp(h.join(req))
	groupWantCode(h.t, "first join", first.ErrorCode, kerr.MemberIDRequired.Code)
	req.MemberID = first.MemberID
	return first.MemberID, h.join(req)
}

// stableGroup forms a Stable generation of n dynamic members; the first is
// the leader and assigns "a-<id>" to each.
func (h *groupHarness) stableGroup(n int) (ids []string) {
	h.t.Helper()
	var toks []uint64
	for i := range n {
		id, tok := h.enter(groupJoinReq("", "c"+string(rune('0'+i))))
		ids = append(ids, id)
		toks = append(toks, tok)
	}
	h.advance(groupFormDelay)
	gen := h.joinResp(toks[0]).GenerationID
	var assign []GroupMemberAssignment
	for _, id := range ids {
		assign = append(assign, GroupMemberAssignment{MemberID: id, Assignment: []byte("a-" + id)})
	}
	for i, id := range ids {
		req := GroupSyncRequest{MemberID: id, GenerationID: gen}
		if i == 0 {
			req.Assignments = assign
		}
		h.sync(req)
	}
	h.wantState(GroupStable)
	return ids
}
