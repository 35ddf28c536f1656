package broker

import (
	"bytes"
	"errors"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// groupSnapshot is what a group persists: for a Stable or Empty group,
// replaying its records must rebuild exactly this.
type groupSnapshot struct {
	State          GroupState
	Generation     int32
	ProtocolType   string
	Protocol       string
	HasProtocol    bool
	Leader         string
	StateTimestamp int64
	Members        []groupSnapshotMember
	Offsets        []GroupOffset
}

type groupSnapshotMember struct {
	ID, Instance, Client, Host string
	Session, Rebalance         int32
	Metadata, Assignment       []byte
}

func groupSnapshotOf(g *GroupStateMachine) groupSnapshot {
	s := groupSnapshot{
		State: g.state, Generation: g.generation, ProtocolType: g.protocolType,
		Protocol: g.protocolName, HasProtocol: g.hasProtocol, Leader: g.leaderID,
		Offsets: g.Offsets(),
	}
	if g.generation > 0 {
		// A group never written (generation 0, offsets only) is rebuilt
		// with the replay time as its state time; nothing reads it.
		s.StateTimestamp = g.stateTimestamp
	}
	for _, m := range g.members {
		s.Members = append(s.Members, groupSnapshotMember{
			ID: m.memberID, Instance: m.instanceID, Client: m.clientID, Host: m.clientHost,
			Session: m.sessionTimeoutMs, Rebalance: m.rebalanceTimeoutMs,
			Metadata: m.metadata(g.protocolName), Assignment: m.assignment,
		})
	}
	return s
}

// groupCheckReplay replays every record the harness has seen and compares
// the rebuilt group with the live one, which must be Stable or Empty.
func groupCheckReplay(t *testing.T, h *groupHarness) *GroupTable {
	t.Helper()
	r := NewGroupReplayer(h.table.cfg)
	for i, rec := range h.records {
		if err := r.Apply(rec.Key, rec.Value); err != nil {
			t.Fatalf("record %d: %v", i, err)
		}
	}
	table := r.Finish(h.now)
	live, liveOK := h.table.Group(groupTestGroup)
	if liveOK && live.state == GroupEmpty && live.generation == 0 && len(live.offsets) == 0 {
		liveOK = false // nothing about it was ever written
	}
	replayed, replayedOK := table.Group(groupTestGroup)
	if liveOK != replayedOK {
		t.Fatalf("group exists live: %v, after replay: %v", liveOK, replayedOK)
	}
	if !liveOK {
		return table
	}
	if live.state != GroupStable && live.state != GroupEmpty {
		t.Fatalf("replay compared in state %v", live.state)
	}
	want, got := groupSnapshotOf(live), groupSnapshotOf(replayed)
	if !reflect.DeepEqual(want, got) {
		t.Fatalf("replay rebuilt\n%+v\nwant\n%+v", got, want)
	}
	groupCheckInvariants(t, replayed)
	return table
}

func TestGroupReplayRoundTrip(t *testing.T) {
	h := groupNewHarness(t, groupTestConfig())
	static := groupJoinReq("", "app")
	static.InstanceID = "i-1"
	sTok := h.join(static)
	id1, t1 := h.enter(groupJoinReq("", "c1"))
	h.advance(groupFormDelay)
	sID := h.joinResp(sTok).MemberID
	h.joinResp(t1)
	h.sync(GroupSyncRequest{MemberID: sID, InstanceID: "i-1", GenerationID: 1, Assignments: []GroupMemberAssignment{
		{MemberID: sID, Assignment: []byte("p0,p1")}, {MemberID: id1, Assignment: []byte("p2")},
	}})
	h.sync(GroupSyncRequest{MemberID: id1, GenerationID: 1})
	for i, id := range []string{sID, id1} {
		inst := ""
		if i == 0 {
			inst = "i-1"
		}
		h.commit(GroupCommitRequest{MemberID: id, InstanceID: inst, GenerationID: 1, Offsets: []GroupOffsetCommit{
			{Topic: "t", Partition: int32(i), Offset: 100, LeaderEpoch: 3, Metadata: "m"},
			{Topic: "u", Partition: int32(i), Offset: 5, LeaderEpoch: -1},
		}})
	}
	h.advance(time.Second)
	h.commit(GroupCommitRequest{MemberID: id1, GenerationID: 1, Offsets: []GroupOffsetCommit{{Topic: "t", Partition: 1, Offset: 150, LeaderEpoch: 3}}})
	t.Run("stable", func(t *testing.T) { groupCheckReplay(t, h) })

	h.join(static) // the static member restarts: new id, still Stable
	h.wantState(GroupStable)
	t.Run("after static replacement", func(t *testing.T) {
		table := groupCheckReplay(t, h)
		// The rebuilt group serves its members: same generation, same
		// assignment, and sessions that run from the replay.
		g, _ := table.Group(groupTestGroup)
		code, _ := g.Heartbeat(h.now, GroupHeartbeatRequest{MemberID: id1, GenerationID: 1})
		groupWantCode(t, "heartbeat after replay", code, 0)
		out := g.Sync(h.now, 99, GroupSyncRequest{MemberID: id1, GenerationID: 1})
		if a := out.Responses[0].Sync.Assignment; string(a) != "p2" {
			t.Fatalf("assignment after replay %q", a)
		}
		g.Tick(h.now.Add(10*time.Second - time.Millisecond))
		if g.State() != GroupStable {
			t.Fatalf("restored group is %v before any session could expire", g.State())
		}
		out = g.Tick(h.now.Add(10 * time.Second))
		if g.State() != GroupEmpty || len(out.Records) != 1 {
			t.Fatalf("restored members' sessions did not expire: %v, %d records", g.State(), len(out.Records))
		}
	})

	h.leave(GroupLeaveMember{InstanceID: "i-1"}, GroupLeaveMember{MemberID: id1})
	h.wantState(GroupEmpty)
	t.Run("empty", func(t *testing.T) { groupCheckReplay(t, h) })

	code, out := h.table.Delete(h.now, groupTestGroup)
	groupWantCode(t, "delete", code, 0)
	h.collect(out)
	t.Run("deleted", func(t *testing.T) { groupCheckReplay(t, h) })
}

func TestGroupReplayRecordRules(t *testing.T) {
	off := func(group, topic string, p int32, o int64) GroupRecord {
		return GroupEncodeOffsetCommit(group, topic, p, GroupCommittedOffset{Offset: o, LeaderEpoch: -1, CommitTimestamp: 1, ExpireTimestamp: -1})
	}
	meta := func(group string, gen int32, members ...string) GroupRecord {
		v := kmsg.NewGroupMetadataValue()
		v.Version, v.ProtocolType, v.Generation = 3, "consumer", gen
		if len(members) > 0 {
			v.Protocol, v.Leader = groupStringPtr("range"), groupStringPtr(members[0])
		}
		for _, m := range members {
			vm := kmsg.NewGroupMetadataValueMember()
			vm.MemberID, vm.SessionTimeoutMillis, vm.RebalanceTimeoutMillis = m, 10_000, 20_000
			vm.Subscription, vm.Assignment = groupConsumerMeta("t"), []byte("a-"+m)
			v.Members = append(v.Members, vm)
		}
		return GroupEncodeGroupMetadata(group, &v)
	}
	unknown := GroupRecord{Key: []byte{0, 3, 0, 1, 'x'}, Value: []byte{0, 0}} // a KIP-848 record

	tests := []struct {
		name    string
		records []GroupRecord
		want    map[string]string // group -> "state gen members offsets"
		skipped int
	}{
		{"later offset wins", []GroupRecord{off("a", "t", 0, 1), off("a", "t", 0, 2)}, map[string]string{"a": "Empty 0 [] [t-0@2]"}, 0},
		{"offset tombstone", []GroupRecord{off("a", "t", 0, 1), off("a", "t", 1, 1), GroupEncodeOffsetTombstone("a", "t", 0)}, map[string]string{"a": "Empty 0 [] [t-1@1]"}, 0},
		{"all offsets deleted", []GroupRecord{off("a", "t", 0, 1), GroupEncodeOffsetTombstone("a", "t", 0)}, map[string]string{}, 0},
		{"stable group", []GroupRecord{meta("a", 4, "m1", "m2"), off("a", "t", 0, 9)}, map[string]string{"a": "Stable 4 [m1 m2] [t-0@9]"}, 0},
		{"later generation wins", []GroupRecord{meta("a", 4, "m1", "m2"), meta("a", 5)}, map[string]string{"a": "Empty 5 [] []"}, 0},
		{"group tombstone keeps later offsets", []GroupRecord{meta("a", 4, "m1"), GroupEncodeGroupTombstone("a"), off("a", "t", 0, 3)}, map[string]string{"a": "Empty 0 [] [t-0@3]"}, 0},
		{"group and offsets deleted", []GroupRecord{meta("a", 4), off("a", "t", 0, 3), GroupEncodeOffsetTombstone("a", "t", 0), GroupEncodeGroupTombstone("a")}, map[string]string{}, 0},
		{"unknown record types are skipped", []GroupRecord{unknown, off("b", "t", 0, 1)}, map[string]string{"b": "Empty 0 [] [t-0@1]"}, 1},
		{"groups are independent", []GroupRecord{meta("a", 1, "x"), meta("b", 2), off("b", "t", 0, 1)}, map[string]string{"a": "Stable 1 [x] []", "b": "Empty 2 [] [t-0@1]"}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := NewGroupReplayer(groupTestConfig())
			for _, rec := range tt.records {
				if err := r.Apply(rec.Key, rec.Value); err != nil {
					t.Fatal(err)
				}
			}
			if r.Skipped() != tt.skipped {
				t.Fatalf("skipped %d, want %d", r.Skipped(), tt.skipped)
			}
			table := r.Finish(groupT0)
			got := map[string]string{}
			for _, l := range table.List() {
				g, _ := table.Group(l.GroupID)
				var members, offsets []string
				for _, m := range g.members {
					members = append(members, m.memberID)
				}
				for _, o := range g.Offsets() {
					offsets = append(offsets, fmt.Sprintf("%s-%d@%d", o.Topic, o.Partition, o.Offset))
				}
				got[l.GroupID] = fmt.Sprintf("%v %d %v %v", g.State(), g.Generation(), members, offsets)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("replayed %v, want %v", got, tt.want)
			}
		})
	}
}

func TestGroupReplayCorruptRecord(t *testing.T) {
	good := GroupEncodeOffsetCommit("g", "t", 0, GroupCommittedOffset{Offset: 1, LeaderEpoch: -1, ExpireTimestamp: -1})
	tests := []struct {
		name       string
		key, value []byte
	}{
		{"short key", []byte{0}, good.Value},
		{"truncated key", good.Key[:len(good.Key)-1], good.Value},
		{"truncated value", good.Key, good.Value[:len(good.Value)-1]},
		{"future value version", good.Key, append([]byte{0, 9}, good.Value[2:]...)},
		{"truncated group value", groupMetadataKey("g"), []byte{0, 3, 0}},
		{"negative key version", []byte{0xff, 0xff, 0, 0}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := NewGroupReplayer(groupTestConfig())
			if err := r.Apply(tt.key, tt.value); !errors.Is(err, ErrGroupRecordCorrupt) {
				t.Fatalf("Apply: %v, want ErrGroupRecordCorrupt", err)
			}
			if _, err := GroupDecodeRecord(tt.key, tt.value); !errors.Is(err, ErrGroupRecordCorrupt) {
				t.Fatalf("GroupDecodeRecord: %v, want ErrGroupRecordCorrupt", err)
			}
		})
	}
}

// A group loaded with more members than group.max.size rebalances; the
// first members to rejoin fill it and the others are turned away.
func TestGroupReplayOverCapacity(t *testing.T) {
	v := kmsg.NewGroupMetadataValue()
	v.Version, v.ProtocolType, v.Generation, v.Protocol, v.Leader = 3, "consumer", 7, groupStringPtr("range"), groupStringPtr("m0")
	for i := range 3 {
		vm := kmsg.NewGroupMetadataValueMember()
		vm.MemberID, vm.SessionTimeoutMillis, vm.RebalanceTimeoutMillis = fmt.Sprint("m", i), 10_000, 20_000
		vm.Subscription = groupConsumerMeta("t")
		v.Members = append(v.Members, vm)
	}
	rec := GroupEncodeGroupMetadata(groupTestGroup, &v)
	cfg := groupTestConfig()
	cfg.MaxSize = 2
	r := NewGroupReplayer(cfg)
	if err := r.Apply(rec.Key, rec.Value); err != nil {
		t.Fatal(err)
	}
	h := groupNewHarness(t, cfg)
	h.table = r.Finish(h.now)
	h.wantState(GroupPreparingRebalance)
	a := h.join(groupJoinReq("m0", "c"))
	b := h.join(groupJoinReq("m1", "c"))
	groupWantCode(t, "third member", h.joinResp(h.join(groupJoinReq("m2", "c"))).ErrorCode, kerr.GroupMaxSizeReached.Code)
	for _, tok := range []uint64{a, b} {
		if r := h.joinResp(tok); r.GenerationID != 8 {
			t.Fatalf("join %+v", r)
		}
	}
	if n := len(h.joinResp(a).Members); n != 2 {
		t.Fatalf("%d members, want 2", n)
	}
}

// Kafka's oldest group metadata (v0) has no rebalance timeout: the session
// timeout stands in for it.
func TestGroupReplayV0Metadata(t *testing.T) {
	v := kmsg.NewGroupMetadataValue()
	v.Version, v.ProtocolType, v.Generation, v.Protocol, v.Leader = 0, "consumer", 2, groupStringPtr("range"), groupStringPtr("m")
	vm := kmsg.NewGroupMetadataValueMember()
	vm.MemberID, vm.SessionTimeoutMillis, vm.Subscription, vm.Assignment = "m", 7_000, groupConsumerMeta("t"), []byte("a")
	v.Members = []kmsg.GroupMetadataValueMember{vm}
	rec := GroupEncodeGroupMetadata("g", &v)
	r := NewGroupReplayer(groupTestConfig())
	if err := r.Apply(rec.Key, rec.Value); err != nil {
		t.Fatal(err)
	}
	g, _ := r.Finish(groupT0).Group("g")
	m := g.members[0]
	if m.rebalanceTimeoutMs != 7_000 || g.stateTimestamp != -1 || !bytes.Equal(m.assignment, []byte("a")) {
		t.Fatalf("v0 member %+v, state time %d", m, g.stateTimestamp)
	}
}
