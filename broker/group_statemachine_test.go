package broker

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
)

func TestGroupJoinMemberIDRequired(t *testing.T) {
	h := groupNewHarness(t, groupTestConfig())
	req := groupJoinReq("", "client-1")
	first := h.joinResp(h.join(req))
	groupWantCode(t, "first join", first.ErrorCode, kerr.MemberIDRequired.Code)
	if !strings.HasPrefix(first.MemberID, "client-1-") || len(first.MemberID) != len("client-1-")+36 {
		t.Fatalf("member id %q is not client id + uuid", first.MemberID)
	}
	if first.GenerationID != -1 || first.LeaderID != "" || first.ProtocolName != nil {
		t.Fatalf("error response carries group data: %+v", first)
	}
	h.wantState(GroupEmpty) // the handed-out id alone starts nothing

	req.MemberID = first.MemberID
	tok := h.join(req)
	h.wantState(GroupPreparingRebalance)
	h.advance(3*time.Second - time.Millisecond)
	if !h.waiting(tok) {
		t.Fatal("join answered before the initial rebalance delay")
	}
	h.advance(time.Millisecond)
	r := h.joinResp(tok)
	groupWantCode(t, "second join", r.ErrorCode, 0)
	if r.GenerationID != 1 || r.LeaderID != first.MemberID || r.MemberID != first.MemberID ||
		*r.ProtocolType != "consumer" || *r.ProtocolName != "range" {
		t.Fatalf("join response %+v", r)
	}
	if len(r.Members) != 1 || r.Members[0].MemberID != first.MemberID || !bytes.Equal(r.Members[0].Metadata, groupConsumerMeta("t")) {
		t.Fatalf("leader's member list %+v", r.Members)
	}
	h.wantState(GroupCompletingRebalance)
}

func TestGroupJoinV0JoinsWithoutMemberIDRequired(t *testing.T) {
	h := groupNewHarness(t, groupTestConfig())
	req := groupJoinReq("", "old")
	req.RequireKnownMemberID = false // JoinGroup v0-v3
	tok := h.join(req)
	h.advance(3 * time.Second)
	r := h.joinResp(tok)
	groupWantCode(t, "join", r.ErrorCode, 0)
	if !strings.HasPrefix(r.MemberID, "old-") || r.LeaderID != r.MemberID {
		t.Fatalf("join response %+v", r)
	}
}

func TestGroupJoinErrors(t *testing.T) {
	tests := []struct {
		name  string
		setup func(h *groupHarness) // may form a group first
		req   func() GroupJoinRequest
		want  int16
	}{
		{"session timeout too short", nil, func() GroupJoinRequest {
			r := groupJoinReq("", "c")
			r.SessionTimeoutMs = 5_999
			return r
		}, kerr.InvalidSessionTimeout.Code},
		{"session timeout too long", nil, func() GroupJoinRequest {
			r := groupJoinReq("", "c")
			r.SessionTimeoutMs = 30*60*1000 + 1
			return r
		}, kerr.InvalidSessionTimeout.Code},
		{"first member without protocol type", nil, func() GroupJoinRequest {
			r := groupJoinReq("", "c")
			r.ProtocolType = ""
			return r
		}, kerr.InconsistentGroupProtocol.Code},
		{"first member without protocols", nil, func() GroupJoinRequest {
			r := groupJoinReq("", "c")
			r.Protocols = nil
			return r
		}, kerr.InconsistentGroupProtocol.Code},
		{"unknown member id, no group", nil, func() GroupJoinRequest { return groupJoinReq("ghost", "c") }, kerr.UnknownMemberID.Code},
		{"unknown member id", func(h *groupHarness) { h.stableGroup(1) }, func() GroupJoinRequest { return groupJoinReq("ghost", "c") }, kerr.UnknownMemberID.Code},
		{"other protocol type", func(h *groupHarness) { h.stableGroup(1) }, func() GroupJoinRequest {
			r := groupJoinReq("", "c")
			r.ProtocolType = "connect"
			return r
		}, kerr.InconsistentGroupProtocol.Code},
		{"no common protocol", func(h *groupHarness) { h.stableGroup(1) }, func() GroupJoinRequest {
			r := groupJoinReq("", "c")
			r.Protocols = []GroupProtocol{{Name: "sticky"}}
			return r
		}, kerr.InconsistentGroupProtocol.Code},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := groupNewHarness(t, groupTestConfig())
			if tt.setup != nil {
				tt.setup(h)
			}
			r := h.joinResp(h.join(tt.req()))
			groupWantCode(t, "join", r.ErrorCode, tt.want)
		})
	}

	t.Run("invalid group id", func(t *testing.T) {
		table := NewGroupTable(groupTestConfig())
		out := table.Join(groupT0, 1, "", groupJoinReq("", "c"))
		groupWantCode(t, "join", out.Responses[0].Join.ErrorCode, kerr.InvalidGroupID.Code)
		if table.Len() != 0 {
			t.Fatal("failed join left a group behind")
		}
	})
}

func TestGroupInitialRebalanceDelay(t *testing.T) {
	tests := []struct {
		name             string
		rebalanceTimeout int32
		joinsAt          []time.Duration // besides the first member at 0
		wantDoneAt       time.Duration
	}{
		{"alone", 30_000, nil, 3 * time.Second},
		{"a newcomer extends the delay", 30_000, []time.Duration{2 * time.Second}, 6 * time.Second},
		{"newcomers keep extending it", 30_000, []time.Duration{2 * time.Second, 5 * time.Second}, 9 * time.Second},
		{"capped by the rebalance timeout", 5_000, []time.Duration{2 * time.Second, 4 * time.Second}, 5 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := groupNewHarness(t, groupTestConfig())
			req := groupJoinReq("", "first")
			req.RebalanceTimeoutMs = tt.rebalanceTimeout
			_, tok := h.enter(req)
			joins := tt.joinsAt
			for elapsed := time.Duration(0); ; {
				if len(joins) > 0 && joins[0] == elapsed {
					later := groupJoinReq("", "later")
					later.RebalanceTimeoutMs = tt.rebalanceTimeout
					h.enter(later)
					joins = joins[1:]
				}
				if !h.waiting(tok) {
					if elapsed != tt.wantDoneAt {
						t.Fatalf("rebalance completed after %v, want %v", elapsed, tt.wantDoneAt)
					}
					return
				}
				if elapsed > time.Minute {
					t.Fatal("rebalance never completed")
				}
				h.advance(500 * time.Millisecond)
				elapsed += 500 * time.Millisecond
			}
		})
	}
}

// Three members join, the followers' syncs wait for the leader, and the
// leader's assignment reaches everyone.
func TestGroupThreeMembersJoinAndSync(t *testing.T) {
	h := groupNewHarness(t, groupTestConfig())
	var ids []string
	var toks []uint64
	for _, c := range []string{"c0", "c1", "c2"} {
		id, tok := h.enter(groupJoinReq("", c))
		ids, toks = append(ids, id), append(toks, tok)
	}
	for _, tok := range toks {
		if !h.waiting(tok) {
			t.Fatal("join answered during the initial delay")
		}
	}
	h.advance(groupFormDelay)
	h.wantState(GroupCompletingRebalance)
	leader := h.joinResp(toks[0])
	if leader.GenerationID != 1 || leader.LeaderID != ids[0] || len(leader.Members) != 3 {
		t.Fatalf("leader's join response %+v", leader)
	}
	for i, m := range leader.Members {
		if m.MemberID != ids[i] {
			t.Fatalf("leader's member list is not in join order: %+v", leader.Members)
		}
	}
	for _, tok := range toks[1:] {
		r := h.joinResp(tok)
		if r.GenerationID != 1 || r.LeaderID != ids[0] || r.Members != nil {
			t.Fatalf("follower's join response %+v", r)
		}
	}

	// A follower syncing first waits; meanwhile members may heartbeat but
	// not commit (they have no assignment yet).
	f1 := h.sync(GroupSyncRequest{MemberID: ids[1], GenerationID: 1})
	if !h.waiting(f1) {
		t.Fatal("follower's sync answered before the leader's")
	}
	groupWantCode(t, "heartbeat while completing", h.heartbeat(ids[2], "", 1), 0)
	codes := h.commit(GroupCommitRequest{MemberID: ids[1], GenerationID: 1, Offsets: []GroupOffsetCommit{{Topic: "t", Offset: 1}}})
	groupWantCode(t, "commit while completing", codes[0], kerr.RebalanceInProgress.Code)

	rtype, rname := "consumer", "range"
	l := h.sync(GroupSyncRequest{MemberID: ids[0], GenerationID: 1, ProtocolType: &rtype, ProtocolName: &rname, Assignments: []GroupMemberAssignment{
		{MemberID: ids[0], Assignment: []byte("p0")},
		{MemberID: ids[1], Assignment: []byte("p1")},
		{MemberID: "stranger", Assignment: []byte("x")}, // ignored
	}})
	h.wantState(GroupStable)
	for tok, want := range map[uint64]string{l: "p0", f1: "p1"} {
		r := h.syncResp(tok)
		groupWantCode(t, "sync", r.ErrorCode, 0)
		if string(r.Assignment) != want || *r.ProtocolName != "range" || *r.ProtocolType != "consumer" {
			t.Fatalf("sync response %+v, want assignment %q", r, want)
		}
	}
	f2 := h.syncResp(h.sync(GroupSyncRequest{MemberID: ids[2], GenerationID: 1}))
	if f2.ErrorCode != 0 || f2.Assignment == nil || len(f2.Assignment) != 0 {
		t.Fatalf("member left out by the leader: %+v, want an empty assignment", f2)
	}

	// The generation was persisted once, with everyone's assignment.
	if len(h.records) != 1 {
		t.Fatalf("%d records, want 1 group metadata record", len(h.records))
	}
	rec, err := GroupDecodeRecord(h.records[0].Key, h.records[0].Value)
	if err != nil {
		t.Fatal(err)
	}
	v := rec.Metadata
	if rec.Kind != GroupRecordGroupMetadata || v.Version != 3 || v.Generation != 1 || *v.Leader != ids[0] || *v.Protocol != "range" || len(v.Members) != 3 {
		t.Fatalf("group metadata %+v", v)
	}
	for i, want := range []string{"p0", "p1", ""} {
		if string(v.Members[i].Assignment) != want || !bytes.Equal(v.Members[i].Subscription, groupConsumerMeta("t")) {
			t.Fatalf("member %d recorded as %+v", i, v.Members[i])
		}
	}

	d := h.group().Describe()
	if d.State != GroupStable || d.Protocol != "range" || len(d.Members) != 3 || string(d.Members[1].Assignment) != "p1" {
		t.Fatalf("describe %+v", d)
	}
}

func TestGroupSyncErrors(t *testing.T) {
	h := groupNewHarness(t, groupTestConfig())
	ids := h.stableGroup(2)
	other := "roundrobin"
	tests := []struct {
		name string
		req  GroupSyncRequest
		want int16
	}{
		{"unknown member", GroupSyncRequest{MemberID: "ghost", GenerationID: 1}, kerr.UnknownMemberID.Code},
		{"old generation", GroupSyncRequest{MemberID: ids[1], GenerationID: 0}, kerr.IllegalGeneration.Code},
		{"other protocol", GroupSyncRequest{MemberID: ids[1], GenerationID: 1, ProtocolName: &other}, kerr.InconsistentGroupProtocol.Code},
		{"unknown instance id", GroupSyncRequest{MemberID: ids[1], InstanceID: "i", GenerationID: 1}, kerr.UnknownMemberID.Code},
		{"stable: current assignment", GroupSyncRequest{MemberID: ids[1], GenerationID: 1}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			groupWantCode(t, "sync", h.syncResp(h.sync(tt.req)).ErrorCode, tt.want)
		})
	}
	// While preparing a rebalance, syncs are turned back.
	h.join(groupJoinReq(ids[0], "c0")) // the leader rejoins: rebalance
	groupWantCode(t, "sync while preparing", h.syncResp(h.sync(GroupSyncRequest{MemberID: ids[1], GenerationID: 1})).ErrorCode, kerr.RebalanceInProgress.Code)
	if got := h.syncResp(h.sync(GroupSyncRequest{MemberID: "ghost"})).ErrorCode; got != kerr.UnknownMemberID.Code {
		t.Fatalf("sync to unknown member: %d", got)
	}
}

// A new member joining a Stable group starts a rebalance: members learn of
// it from heartbeats, rejoin, and the generation completes once all have.
func TestGroupRebalanceOnNewMember(t *testing.T) {
	h := groupNewHarness(t, groupTestConfig())
	ids := h.stableGroup(2)
	_, newTok := h.enter(groupJoinReq("", "c-new"))
	h.wantState(GroupPreparingRebalance)

	groupWantCode(t, "heartbeat", h.heartbeat(ids[0], "", 1), kerr.RebalanceInProgress.Code)
	groupWantCode(t, "heartbeat", h.heartbeat(ids[1], "", 1), kerr.RebalanceInProgress.Code)
	// Commits are still accepted from the current generation while preparing.
	codes := h.commit(GroupCommitRequest{MemberID: ids[1], GenerationID: 1, Offsets: []GroupOffsetCommit{{Topic: "t", Offset: 7}}})
	groupWantCode(t, "commit while preparing", codes[0], 0)

	t0 := h.join(groupJoinReq(ids[0], "c0"))
	if !h.waiting(t0) || !h.waiting(newTok) {
		t.Fatal("rebalance completed before every member rejoined")
	}
	t1 := h.join(groupJoinReq(ids[1], "c1"))
	h.wantState(GroupCompletingRebalance)
	for _, tok := range []uint64{t0, t1, newTok} {
		if r := h.joinResp(tok); r.ErrorCode != 0 || r.GenerationID != 2 || r.LeaderID != ids[0] {
			t.Fatalf("join response %+v", r)
		}
	}
	if n := len(h.joinResp(t0).Members); n != 3 {
		t.Fatalf("leader sees %d members, want 3", n)
	}
}

// Members that rejoin a group that has a generation: with unchanged
// metadata a follower gets the current generation back; changed metadata
// starts a rebalance, and so does the leader rejoining a Stable group
// (that is how it reacts to changes invisible in member metadata, such as
// new partitions).
func TestGroupRejoin(t *testing.T) {
	tests := []struct {
		name          string
		completing    bool // rejoin while CompletingRebalance instead of Stable
		member        int  // index into the group's members
		changeMeta    bool
		wantRebalance bool
	}{
		{"stable, follower, same metadata", false, 1, false, false},
		{"stable, follower, new metadata", false, 1, true, true},
		{"stable, leader, same metadata", false, 0, false, true},
		{"completing, follower, same metadata", true, 1, false, false},
		{"completing, leader, same metadata", true, 0, false, false},
		{"completing, follower, new metadata", true, 1, true, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := groupNewHarness(t, groupTestConfig())
			ids := h.stableGroup(2)
			gen := int32(1)
			var waitingSync uint64
			if tt.completing {
				h.join(groupJoinReq(ids[0], "c0"))
				h.join(groupJoinReq(ids[1], "c1"))
				h.wantState(GroupCompletingRebalance)
				gen = 2
				waitingSync = h.sync(GroupSyncRequest{MemberID: ids[1], GenerationID: gen})
			}
			req := groupJoinReq(ids[tt.member], "c")
			if tt.changeMeta {
				req.Protocols = []GroupProtocol{{Name: "range", Metadata: groupConsumerMeta("t", "u")}}
			}
			tok := h.join(req)
			if tt.wantRebalance {
				h.wantState(GroupPreparingRebalance)
				if !h.waiting(tok) {
					t.Fatal("rejoin answered before the rebalance")
				}
				if tt.completing {
					groupWantCode(t, "waiting sync", h.syncResp(waitingSync).ErrorCode, kerr.RebalanceInProgress.Code)
				}
				return
			}
			r := h.joinResp(tok)
			isLeader := tt.member == 0
			if r.ErrorCode != 0 || r.GenerationID != gen || r.LeaderID != ids[0] || (r.Members != nil) != isLeader {
				t.Fatalf("join response %+v", r)
			}
			if tt.completing && !h.waiting(waitingSync) {
				t.Fatal("a repeated join disturbed a waiting sync")
			}
		})
	}
}

func TestGroupHeartbeat(t *testing.T) {
	h := groupNewHarness(t, groupTestConfig())
	ids := h.stableGroup(2)
	tests := []struct {
		name       string
		memberID   string
		instanceID string
		generation int32
		want       int16
	}{
		{"ok", ids[0], "", 1, 0},
		{"unknown member", "ghost", "", 1, kerr.UnknownMemberID.Code},
		{"old generation", ids[1], "", 0, kerr.IllegalGeneration.Code},
		{"future generation", ids[1], "", 2, kerr.IllegalGeneration.Code},
		{"unknown instance id", ids[1], "i-9", 1, kerr.UnknownMemberID.Code},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			groupWantCode(t, "heartbeat", h.heartbeat(tt.memberID, tt.instanceID, tt.generation), tt.want)
		})
	}
	t.Run("no such group", func(t *testing.T) {
		code, _ := h.table.Heartbeat(h.now, "nope", GroupHeartbeatRequest{MemberID: ids[0], GenerationID: 1})
		groupWantCode(t, "heartbeat", code, kerr.UnknownMemberID.Code)
	})
	t.Run("empty group", func(t *testing.T) {
		h.leave(GroupLeaveMember{MemberID: ids[0]}, GroupLeaveMember{MemberID: ids[1]})
		h.wantState(GroupEmpty)
		groupWantCode(t, "heartbeat", h.heartbeat(ids[0], "", 1), kerr.UnknownMemberID.Code)
	})
}

func TestGroupLeaveBatched(t *testing.T) {
	h := groupNewHarness(t, groupTestConfig())
	ids := h.stableGroup(3)
	pending := h.joinResp(h.join(groupJoinReq("", "c-pending"))).MemberID // MEMBER_ID_REQUIRED

	resp := h.leave(
		GroupLeaveMember{MemberID: ids[1], Reason: "shutdown"},
		GroupLeaveMember{MemberID: ids[2]},
		GroupLeaveMember{MemberID: "ghost"},
		GroupLeaveMember{MemberID: pending},
		GroupLeaveMember{InstanceID: "no-such-instance"},
	)
	want := []int16{0, 0, kerr.UnknownMemberID.Code, 0, kerr.UnknownMemberID.Code}
	if resp.ErrorCode != 0 || len(resp.Members) != len(want) {
		t.Fatalf("leave response %+v", resp)
	}
	for i, w := range want {
		groupWantCode(t, "leave member "+resp.Members[i].MemberID, resp.Members[i].ErrorCode, w)
	}
	h.wantState(GroupPreparingRebalance)
	groupWantCode(t, "heartbeat", h.heartbeat(ids[0], "", 1), kerr.RebalanceInProgress.Code)

	// The only member left rejoins: nobody else to wait for.
	tok := h.join(groupJoinReq(ids[0], "c0"))
	if r := h.joinResp(tok); r.GenerationID != 2 || len(r.Members) != 1 {
		t.Fatalf("join response %+v", r)
	}
	h.sync(GroupSyncRequest{MemberID: ids[0], GenerationID: 2, Assignments: []GroupMemberAssignment{{MemberID: ids[0], Assignment: []byte("all")}}})
	h.wantState(GroupStable)

	// The last member leaves: the group is Empty in a new generation, and
	// that is persisted.
	h.records = nil
	h.leave(GroupLeaveMember{MemberID: ids[0]})
	h.wantState(GroupEmpty)
	if g := h.group(); g.Generation() != 3 || g.LeaderID() != "" {
		t.Fatalf("empty group: generation %d, leader %q", g.Generation(), g.LeaderID())
	}
	if len(h.records) != 1 {
		t.Fatalf("%d records, want 1", len(h.records))
	}
	rec, _ := GroupDecodeRecord(h.records[0].Key, h.records[0].Value)
	if v := rec.Metadata; v.Generation != 3 || len(v.Members) != 0 || v.Protocol != nil || v.ProtocolType != "consumer" || v.CurrentStateTimestamp != h.now.UnixMilli() {
		t.Fatalf("empty group recorded as %+v", v)
	}

	t.Run("no such group", func(t *testing.T) {
		resp, _ := h.table.Leave(h.now, "nope", []GroupLeaveMember{{MemberID: "a"}, {MemberID: "b"}})
		if resp.ErrorCode != 0 || len(resp.Members) != 2 || resp.Members[1].ErrorCode != kerr.UnknownMemberID.Code {
			t.Fatalf("leave response %+v", resp)
		}
	})
}

func TestGroupSessionTimeout(t *testing.T) {
	h := groupNewHarness(t, groupTestConfig())
	ids := h.stableGroup(2) // session timeout 10s, started at the sync
	h.advance(6 * time.Second)
	groupWantCode(t, "heartbeat", h.heartbeat(ids[0], "", 1), 0)
	if at, _ := h.table.NextDeadline(); !at.Equal(h.now.Add(4 * time.Second)) {
		t.Fatalf("next deadline %v, want the silent member's session end", at.Sub(h.now))
	}
	h.advance(4*time.Second - time.Millisecond)
	h.wantState(GroupStable)
	h.advance(time.Millisecond) // ids[1] has been silent for 10s
	h.wantState(GroupPreparingRebalance)
	groupWantCode(t, "expired member", h.heartbeat(ids[1], "", 1), kerr.UnknownMemberID.Code)
	groupWantCode(t, "survivor", h.heartbeat(ids[0], "", 1), kerr.RebalanceInProgress.Code)
	r := h.joinResp(h.join(groupJoinReq(ids[0], "c0")))
	if r.GenerationID != 2 || len(r.Members) != 1 {
		t.Fatalf("join response %+v", r)
	}
}

// Members that do not rejoin within the rebalance timeout are dropped,
// except static members, which keep their place until their session
// expires.
func TestGroupRebalanceTimeout(t *testing.T) {
	for _, static := range []bool{false, true} {
		name := "dynamic"
		if static {
			name = "static"
		}
		t.Run(name, func(t *testing.T) {
			h := groupNewHarness(t, groupTestConfig())
			leaderTok := func() uint64 { _, tok := h.enter(groupJoinReq("", "leader")); return tok }()
			slowReq := groupJoinReq("", "slow")
			if static {
				slowReq.InstanceID = "slow-1"
			}
			var slowTok uint64
			if static {
				slowTok = h.join(slowReq) // static members get no MEMBER_ID_REQUIRED
			} else {
				_, slowTok = h.enter(slowReq)
			}
			h.advance(groupFormDelay)
			leaderID := h.joinResp(leaderTok).MemberID
			slowID := h.joinResp(slowTok).MemberID
			h.sync(GroupSyncRequest{MemberID: leaderID, GenerationID: 1})
			h.sync(GroupSyncRequest{MemberID: slowID, InstanceID: slowReq.InstanceID, GenerationID: 1})
			h.wantState(GroupStable)

			tok := h.join(groupJoinReq(leaderID, "leader")) // rebalance
			// The slow member keeps heartbeating but never rejoins.
			for range 5 {
				h.advance(5 * time.Second)
				groupWantCode(t, "slow heartbeat", h.heartbeat(slowID, slowReq.InstanceID, 1), kerr.RebalanceInProgress.Code)
			}
			h.advance(5*time.Second - time.Millisecond)
			if !h.waiting(tok) {
				t.Fatal("rebalance completed before the rebalance timeout")
			}
			h.advance(time.Millisecond)
			r := h.joinResp(tok)
			if r.GenerationID != 2 || r.LeaderID != leaderID {
				t.Fatalf("join response %+v", r)
			}
			if static {
				if len(r.Members) != 2 || r.Members[1].InstanceID != "slow-1" {
					t.Fatalf("static member not kept: %+v", r.Members)
				}
				groupWantCode(t, "static member, next generation", h.heartbeat(slowID, "slow-1", 2), 0)
				return
			}
			if len(r.Members) != 1 {
				t.Fatalf("dynamic member not dropped: %+v", r.Members)
			}
			groupWantCode(t, "dropped member", h.heartbeat(slowID, "", 1), kerr.UnknownMemberID.Code)
		})
	}
}

// A member of a new generation that never syncs is removed after the
// rebalance timeout, and the others rebalance without it.
func TestGroupSyncTimeout(t *testing.T) {
	h := groupNewHarness(t, groupTestConfig())
	id0, t0 := h.enter(groupJoinReq("", "c0"))
	id1, _ := h.enter(groupJoinReq("", "c1"))
	h.advance(groupFormDelay)
	h.joinResp(t0)
	h.sync(GroupSyncRequest{MemberID: id0, GenerationID: 1})
	h.wantState(GroupStable)
	for range 6 { // id0 heartbeats; id1 does neither
		h.advance(5 * time.Second)
		h.heartbeat(id0, "", 1)
	}
	h.wantState(GroupPreparingRebalance)
	groupWantCode(t, "unsynced member", h.heartbeat(id1, "", 1), kerr.UnknownMemberID.Code)
}

func TestGroupStaticMemberReplacement(t *testing.T) {
	h := groupNewHarness(t, groupTestConfig())
	static := groupJoinReq("", "app")
	static.InstanceID = "i-1"
	sTok := h.join(static) // static members skip MEMBER_ID_REQUIRED
	if !h.waiting(sTok) {
		t.Fatalf("static member asked for a member id: %+v", h.joinResp(sTok))
	}
	dynID, dTok := h.enter(groupJoinReq("", "dyn"))
	h.advance(groupFormDelay)
	oldID := h.joinResp(sTok).MemberID
	if !strings.HasPrefix(oldID, "i-1-") || h.joinResp(sTok).LeaderID != oldID {
		t.Fatalf("static leader's join %+v", h.joinResp(sTok))
	}
	h.joinResp(dTok)
	h.sync(GroupSyncRequest{MemberID: oldID, InstanceID: "i-1", GenerationID: 1, Assignments: []GroupMemberAssignment{
		{MemberID: oldID, Assignment: []byte("s")}, {MemberID: dynID, Assignment: []byte("d")},
	}})
	h.sync(GroupSyncRequest{MemberID: dynID, GenerationID: 1})
	h.wantState(GroupStable)

	// The static member restarts: a new member id, same generation, no
	// rebalance, and (before JoinGroup v9) the previous leader id so that
	// it does not run the assignor.
	h.records = nil
	r := h.joinResp(h.join(static))
	newID := r.MemberID
	if r.ErrorCode != 0 || newID == oldID || r.GenerationID != 1 || r.LeaderID != oldID || r.Members != nil || r.SkipAssignment {
		t.Fatalf("replacement join %+v", r)
	}
	h.wantState(GroupStable)
	if h.group().LeaderID() != newID {
		t.Fatalf("leader %q, want the new id %q", h.group().LeaderID(), newID)
	}
	if len(h.records) != 1 {
		t.Fatalf("%d records, want the new member id persisted", len(h.records))
	}
	if s := h.syncResp(h.sync(GroupSyncRequest{MemberID: newID, InstanceID: "i-1", GenerationID: 1})); string(s.Assignment) != "s" {
		t.Fatalf("replaced member's assignment %q, want its old one", s.Assignment)
	}

	// The old instance is fenced everywhere.
	groupWantCode(t, "old heartbeat", h.heartbeat(oldID, "i-1", 1), kerr.FencedInstanceID.Code)
	old := static
	old.MemberID = oldID
	groupWantCode(t, "old join", h.joinResp(h.join(old)).ErrorCode, kerr.FencedInstanceID.Code)
	groupWantCode(t, "old sync", h.syncResp(h.sync(GroupSyncRequest{MemberID: oldID, InstanceID: "i-1", GenerationID: 1})).ErrorCode, kerr.FencedInstanceID.Code)
	codes := h.commit(GroupCommitRequest{MemberID: oldID, InstanceID: "i-1", GenerationID: 1, Offsets: []GroupOffsetCommit{{Topic: "t"}}})
	groupWantCode(t, "old commit", codes[0], kerr.FencedInstanceID.Code)
	codes = h.commit(GroupCommitRequest{MemberID: newID, InstanceID: "i-1", GenerationID: 1, Offsets: []GroupOffsetCommit{{Topic: "t"}}})
	groupWantCode(t, "new commit", codes[0], 0)
	groupWantCode(t, "old leave", h.leave(GroupLeaveMember{MemberID: oldID, InstanceID: "i-1"}).Members[0].ErrorCode, kerr.FencedInstanceID.Code)

	// JoinGroup v9+: the static leader is told it leads but must skip the
	// assignment.
	static.SupportSkippingAssignment = true
	r = h.joinResp(h.join(static))
	if r.ErrorCode != 0 || r.LeaderID != r.MemberID || !r.SkipAssignment || len(r.Members) != 2 || r.GenerationID != 1 {
		t.Fatalf("v9 replacement join %+v", r)
	}
	h.wantState(GroupStable)

	// Administrative removal by instance id.
	resp := h.leave(GroupLeaveMember{InstanceID: "i-1"})
	groupWantCode(t, "leave by instance id", resp.Members[0].ErrorCode, 0)
	h.wantState(GroupPreparingRebalance)
}

// A static member replaced while the group completes a rebalance: its old
// waiting sync is fenced and the group starts over, since the leader may
// be assigning to the old id.
func TestGroupStaticReplacementDuringCompletingRebalance(t *testing.T) {
	h := groupNewHarness(t, groupTestConfig())
	_, lTok := h.enter(groupJoinReq("", "leader"))
	static := groupJoinReq("", "app")
	static.InstanceID = "i-1"
	sTok := h.join(static)
	h.advance(groupFormDelay)
	oldID := h.joinResp(sTok).MemberID
	leaderID := h.joinResp(lTok).MemberID
	waitingSync := h.sync(GroupSyncRequest{MemberID: oldID, InstanceID: "i-1", GenerationID: 1})
	h.wantState(GroupCompletingRebalance)

	newTok := h.join(static)
	groupWantCode(t, "old member's sync", h.syncResp(waitingSync).ErrorCode, kerr.FencedInstanceID.Code)
	h.wantState(GroupPreparingRebalance)
	if !h.waiting(newTok) {
		t.Fatal("replacement answered before the rebalance")
	}
	groupWantCode(t, "leader's heartbeat", h.heartbeat(leaderID, "", 1), kerr.RebalanceInProgress.Code)
	lt := h.join(groupJoinReq(leaderID, "leader"))
	if r := h.joinResp(newTok); r.GenerationID != 2 || r.MemberID == oldID {
		t.Fatalf("replacement join %+v", r)
	}
	if r := h.joinResp(lt); len(r.Members) != 2 {
		t.Fatalf("leader's join %+v", r)
	}
}

func TestGroupProtocolSelection(t *testing.T) {
	p := func(names ...string) []GroupProtocol {
		var out []GroupProtocol
		for _, n := range names {
			out = append(out, GroupProtocol{Name: n, Metadata: []byte(n)})
		}
		return out
	}
	tests := []struct {
		name    string
		members [][]GroupProtocol
		want    string
	}{
		{"single", [][]GroupProtocol{p("range", "cooperative-sticky")}, "range"},
		{"majority preference", [][]GroupProtocol{p("range", "roundrobin"), p("roundrobin", "range"), p("roundrobin", "range")}, "roundrobin"},
		{"only common protocol", [][]GroupProtocol{p("cooperative-sticky", "range"), p("range")}, "range"},
		{"tie broken by name", [][]GroupProtocol{p("roundrobin", "range"), p("range", "roundrobin")}, "range"},
		{"upgrade to cooperative", [][]GroupProtocol{p("cooperative-sticky", "range"), p("cooperative-sticky", "range"), p("range", "cooperative-sticky")}, "cooperative-sticky"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := groupNewHarness(t, groupTestConfig())
			var toks []uint64
			for i, protos := range tt.members {
				req := groupJoinReq("", "c"+string(rune('0'+i)))
				req.Protocols = protos
				_, tok := h.enter(req)
				toks = append(toks, tok)
			}
			h.advance(groupFormDelay)
			r := h.joinResp(toks[0])
			if *r.ProtocolName != tt.want {
				t.Fatalf("selected %q, want %q", *r.ProtocolName, tt.want)
			}
			if !bytes.Equal(r.Members[len(r.Members)-1].Metadata, []byte(tt.want)) {
				t.Fatalf("leader got metadata %q, want that of %q", r.Members[len(r.Members)-1].Metadata, tt.want)
			}
		})
	}
}

func TestGroupMaxSize(t *testing.T) {
	cfg := groupTestConfig()
	cfg.MaxSize = 2
	h := groupNewHarness(t, cfg)
	h.stableGroup(2)
	// A full group turns a newcomer away before giving it a member id.
	r := h.joinResp(h.join(groupJoinReq("", "third")))
	groupWantCode(t, "third member", r.ErrorCode, kerr.GroupMaxSizeReached.Code)
	if r.MemberID != "" {
		t.Fatalf("rejected member was given id %q", r.MemberID)
	}
	h.wantState(GroupStable)
}

func TestGroupUnload(t *testing.T) {
	h := groupNewHarness(t, groupTestConfig())
	ids := h.stableGroup(2)
	j := h.join(groupJoinReq(ids[0], "c0")) // waiting in a rebalance
	h.collect(h.table.Unload())
	groupWantCode(t, "waiting join", h.joinResp(j).ErrorCode, kerr.NotCoordinator.Code)
	if h.table.Len() != 0 {
		t.Fatal("unloaded table still has groups")
	}
}

// A brand-new member may wait in a JoinGroup for at most
// NewMemberJoinTimeout, even if the rebalance is held open longer (here by
// a static member that heartbeats but does not rejoin).
func TestGroupNewMemberJoinTimeout(t *testing.T) {
	h := groupNewHarness(t, groupTestConfig())
	st := groupJoinReq("", "s")
	st.InstanceID = "s-1"
	st.RebalanceTimeoutMs = 10 * 60 * 1000
	sTok := h.join(st)
	aID, aTok := h.enter(groupJoinReq("", "a"))
	h.advance(groupFormDelay)
	sID := h.joinResp(sTok).MemberID
	h.joinResp(aTok)
	h.sync(GroupSyncRequest{MemberID: sID, InstanceID: "s-1", GenerationID: 1})
	h.sync(GroupSyncRequest{MemberID: aID, GenerationID: 1})
	h.wantState(GroupStable)

	_, nTok := h.enter(groupJoinReq("", "n"))
	start := h.now
	aRejoin := h.join(groupJoinReq(aID, "a"))
	for h.waiting(nTok) {
		h.advance(5 * time.Second)
		groupWantCode(t, "static heartbeat", h.heartbeat(sID, "s-1", 1), kerr.RebalanceInProgress.Code)
		if h.now.Sub(start) > 6*time.Minute {
			t.Fatal("new member never expired")
		}
	}
	if r := h.joinResp(nTok); r.ErrorCode != kerr.UnknownMemberID.Code || h.now.Sub(start) != 5*time.Minute {
		t.Fatalf("new member's join %+v after %v", r, h.now.Sub(start))
	}
	if !h.waiting(aRejoin) {
		t.Fatal("rebalance completed without the static member")
	}
	for h.waiting(aRejoin) {
		h.advance(5 * time.Second)
		h.heartbeat(sID, "s-1", 1)
	}
	if r := h.joinResp(aRejoin); r.GenerationID != 2 || len(r.Members) != 2 || h.now.Sub(start) != 10*time.Minute {
		t.Fatalf("join %+v after %v", r, h.now.Sub(start))
	}
}
