package kafka

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/chronik-stream/chronik/broker"
)

// joinRequest is a JoinGroup v9 of a consumer subscribed to topic "t".
func joinRequest(group, memberID string, instanceID *string) *kmsg.JoinGroupRequest {
	req := kmsg.NewPtrJoinGroupRequest()
	req.SetVersion(9)
	req.Group, req.MemberID, req.InstanceID = group, memberID, instanceID
	req.SessionTimeoutMillis, req.RebalanceTimeoutMillis = 30_000, 30_000
	req.ProtocolType = "consumer"
	p := kmsg.NewJoinGroupRequestProtocol()
	p.Name, p.Metadata = "range", consumerMeta("t")
	req.Protocols = append(req.Protocols, p)
	return req
}

func heartbeatRequest(group, memberID string, instanceID *string, gen int32) *kmsg.HeartbeatRequest {
	req := kmsg.NewPtrHeartbeatRequest()
	req.SetVersion(4)
	req.Group, req.MemberID, req.InstanceID, req.Generation = group, memberID, instanceID, gen
	return req
}

func syncRequest(group, memberID string, gen int32, assign map[string]string) *kmsg.SyncGroupRequest {
	req := kmsg.NewPtrSyncGroupRequest()
	req.SetVersion(5)
	req.Group, req.MemberID, req.Generation = group, memberID, gen
	for id, a := range assign {
		ga := kmsg.NewSyncGroupRequestGroupAssignment()
		ga.MemberID, ga.MemberAssignment = id, []byte(a)
		req.GroupAssignment = append(req.GroupAssignment, ga)
	}
	return req
}

func commitRequest(group, memberID string, gen int32, topic string, offset int64) *kmsg.OffsetCommitRequest {
	req := kmsg.NewPtrOffsetCommitRequest()
	req.SetVersion(9)
	req.Group, req.MemberID, req.Generation = group, memberID, gen
	rt := kmsg.NewOffsetCommitRequestTopic()
	rt.Topic = topic
	rp := kmsg.NewOffsetCommitRequestTopicPartition()
	rp.Offset = offset
	rt.Partitions = append(rt.Partitions, rp)
	req.Topics = append(req.Topics, rt)
	return req
}

func wantErr(t *testing.T, what string, got int16, want *kerr.Error) {
	t.Helper()
	if (want == nil && got != 0) || (want != nil && got != want.Code) {
		t.Fatalf("%s: %v, want %v", what, kerr.ErrorForCode(got), want)
	}
}

// stableMembers forms a Stable group of n members through the broker API
// and returns their member ids (leader first) and the generation.
func stableMembers(t *testing.T, e *testEnv, group string, n int) ([]string, int32) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	joins := make([]broker.GroupJoinResponse, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			joins[i], _ = e.b.JoinGroup(ctx, group, broker.GroupJoinRequest{ClientID: fmt.Sprint("m", i), SessionTimeoutMs: 30_000,
				RebalanceTimeoutMs: 30_000, ProtocolType: "consumer", Protocols: []broker.GroupProtocol{{Name: "range", Metadata: consumerMeta("t")}}})
		}()
	}
	wg.Wait()
	var ids []string
	for _, j := range joins {
		if j.ErrorCode != 0 || j.GenerationID != joins[0].GenerationID {
			t.Fatalf("joins %+v", joins)
		}
		if j.MemberID == j.LeaderID {
			ids = append([]string{j.MemberID}, ids...)
		} else {
			ids = append(ids, j.MemberID)
		}
	}
	gen := joins[0].GenerationID
	for i, id := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req := broker.GroupSyncRequest{MemberID: id, GenerationID: gen}
			if i == 0 {
				for _, m := range ids {
					req.Assignments = append(req.Assignments, broker.GroupMemberAssignment{MemberID: m, Assignment: []byte("a")})
				}
			}
			if s, err := e.b.SyncGroup(ctx, group, req); err != nil || s.ErrorCode != 0 {
				t.Errorf("sync %d: %v %v", i, err, s.ErrorCode)
			}
		}()
	}
	wg.Wait()
	return ids, gen
}

// TestGroupMembershipErrors drives the error paths of the membership APIs
// over raw connections.
func TestGroupMembershipErrors(t *testing.T) {
	e := startEnv(t)
	e.createTopic("t", 2, nil)
	rc := e.dial()

	t.Run("MEMBER_ID_REQUIRED", func(t *testing.T) {
		rc.t = t
		first := rc.roundTrip(joinRequest("kip394", "", nil)).(*kmsg.JoinGroupResponse)
		wantErr(t, "first join", first.ErrorCode, kerr.MemberIDRequired)
		if first.MemberID == "" || first.Generation != -1 {
			t.Fatalf("first join: member %q generation %d", first.MemberID, first.Generation)
		}
		second := rc.roundTrip(joinRequest("kip394", first.MemberID, nil)).(*kmsg.JoinGroupResponse)
		wantErr(t, "second join", second.ErrorCode, nil)
		if second.MemberID != first.MemberID || second.LeaderID != first.MemberID || second.Generation != 1 {
			t.Fatalf("second join %+v", second)
		}
		d, err := e.b.DescribeGroup("kip394")
		if err != nil || len(d.Members) != 1 || d.Members[0].ClientID != "chronik-test" || d.Members[0].ClientHost != "/127.0.0.1" {
			t.Fatalf("member %+v %v", d.Members, err)
		}
	})

	t.Run("join errors", func(t *testing.T) {
		rc.t = t
		short := joinRequest("short", "", nil)
		short.SessionTimeoutMillis = 1000 // below group.min.session.timeout.ms
		wantErr(t, "short session", rc.roundTrip(short).(*kmsg.JoinGroupResponse).ErrorCode, kerr.InvalidSessionTimeout)
		wantErr(t, "empty group id", rc.roundTrip(joinRequest("", "", nil)).(*kmsg.JoinGroupResponse).ErrorCode, kerr.InvalidGroupID)
		wantErr(t, "unknown member", rc.roundTrip(joinRequest("kip394", "nobody", nil)).(*kmsg.JoinGroupResponse).ErrorCode, kerr.UnknownMemberID)
		other := joinRequest("kip394", "", nil)
		other.ProtocolType = "connect"
		wantErr(t, "other protocol type", rc.roundTrip(other).(*kmsg.JoinGroupResponse).ErrorCode, kerr.InconsistentGroupProtocol)
	})

	ids, gen := stableMembers(t, e, "g", 2)
	t.Run("ILLEGAL_GENERATION and UNKNOWN_MEMBER_ID", func(t *testing.T) {
		rc.t = t
		wantErr(t, "heartbeat", rc.roundTrip(heartbeatRequest("g", ids[0], nil, gen)).(*kmsg.HeartbeatResponse).ErrorCode, nil)
		wantErr(t, "old generation", rc.roundTrip(heartbeatRequest("g", ids[0], nil, gen-1)).(*kmsg.HeartbeatResponse).ErrorCode, kerr.IllegalGeneration)
		wantErr(t, "unknown member", rc.roundTrip(heartbeatRequest("g", "nobody", nil, gen)).(*kmsg.HeartbeatResponse).ErrorCode, kerr.UnknownMemberID)
		wantErr(t, "sync of old generation", rc.roundTrip(syncRequest("g", ids[1], gen+1, nil)).(*kmsg.SyncGroupResponse).ErrorCode, kerr.IllegalGeneration)
		wantErr(t, "sync of unknown member", rc.roundTrip(syncRequest("g", "nobody", gen, nil)).(*kmsg.SyncGroupResponse).ErrorCode, kerr.UnknownMemberID)
		commit := rc.roundTrip(commitRequest("g", ids[0], gen+5, "t", 1)).(*kmsg.OffsetCommitResponse)
		wantErr(t, "commit of another generation", commit.Topics[0].Partitions[0].ErrorCode, kerr.IllegalGeneration)
		commit = rc.roundTrip(commitRequest("g", "", -1, "t", 1)).(*kmsg.OffsetCommitResponse)
		wantErr(t, "simple commit to a group with members", commit.Topics[0].Partitions[0].ErrorCode, kerr.UnknownMemberID)
		commit = rc.roundTrip(commitRequest("g", ids[0], gen, "missing", 1)).(*kmsg.OffsetCommitResponse)
		wantErr(t, "commit to a missing topic", commit.Topics[0].Partitions[0].ErrorCode, kerr.UnknownTopicOrPartition)
		big := commitRequest("g", ids[0], gen, "t", 1)
		big.Topics[0].Partitions[0].Metadata = kmsg.StringPtr(string(make([]byte, 5000)))
		commit = rc.roundTrip(big).(*kmsg.OffsetCommitResponse)
		wantErr(t, "large metadata", commit.Topics[0].Partitions[0].ErrorCode, kerr.OffsetMetadataTooLarge)
		byID := commitRequest("g", ids[0], gen, "", 1)
		byID.SetVersion(10)
		byID.Topics[0].TopicID = [16]byte{1, 2, 3}
		commit = rc.roundTrip(byID).(*kmsg.OffsetCommitResponse)
		wantErr(t, "commit to an unknown topic id", commit.Topics[0].Partitions[0].ErrorCode, kerr.UnknownTopicID)
	})

	t.Run("REBALANCE_IN_PROGRESS, and a pending join blocks nobody", func(t *testing.T) {
		rc.t = t
		// The leader rejoins on a connection of its own; its join waits
		// for the other member.
		joinConn := e.dial()
		joinConn.t = t
		corr := joinConn.send(joinRequest("g", ids[0], nil))
		deadline := time.Now().Add(10 * time.Second)
		for {
			d, _ := e.b.DescribeGroup("g")
			if d.State == broker.GroupPreparingRebalance {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("no rebalance: %+v", d)
			}
			time.Sleep(time.Millisecond)
		}
		// The joining member's own heartbeat and commit are answered on
		// another connection while its join waits.
		wantErr(t, "heartbeat during the rebalance", rc.roundTrip(heartbeatRequest("g", ids[0], nil, gen)).(*kmsg.HeartbeatResponse).ErrorCode, kerr.RebalanceInProgress)
		commit := rc.roundTrip(commitRequest("g", ids[0], gen, "t", 7)).(*kmsg.OffsetCommitResponse)
		wantErr(t, "commit during the rebalance", commit.Topics[0].Partitions[0].ErrorCode, nil)
		// The other member rejoins; both get the next generation.
		other := rc.roundTrip(joinRequest("g", ids[1], nil)).(*kmsg.JoinGroupResponse)
		leader := joinConn.read(joinRequest("g", ids[0], nil), corr).(*kmsg.JoinGroupResponse)
		wantErr(t, "rejoin", other.ErrorCode, nil)
		wantErr(t, "leader's rejoin", leader.ErrorCode, nil)
		if leader.Generation != gen+1 || other.Generation != gen+1 || len(leader.Members) != 2 {
			t.Fatalf("generations %d %d, leader sees %d members", leader.Generation, other.Generation, len(leader.Members))
		}
		// A sync from a member while the generation awaits the leader's
		// assignment waits; the leader's answers both.
		syncConn := e.dial()
		syncConn.t = t
		syncCorr := syncConn.send(syncRequest("g", ids[1], gen+1, nil))
		commit = rc.roundTrip(commitRequest("g", ids[1], gen+1, "t", 8)).(*kmsg.OffsetCommitResponse)
		wantErr(t, "commit before the assignment", commit.Topics[0].Partitions[0].ErrorCode, kerr.RebalanceInProgress)
		s := rc.roundTrip(syncRequest("g", ids[0], gen+1, map[string]string{ids[0]: "x", ids[1]: "y"})).(*kmsg.SyncGroupResponse)
		wantErr(t, "leader sync", s.ErrorCode, nil)
		follower := syncConn.read(syncRequest("g", ids[1], gen+1, nil), syncCorr).(*kmsg.SyncGroupResponse)
		if follower.ErrorCode != 0 || string(follower.MemberAssignment) != "y" || string(s.MemberAssignment) != "x" {
			t.Fatalf("assignments %q %q (%v)", s.MemberAssignment, follower.MemberAssignment, kerr.ErrorForCode(follower.ErrorCode))
		}
		gen++
	})

	t.Run("FENCED_INSTANCE_ID", func(t *testing.T) {
		rc.t = t
		inst := kmsg.StringPtr("instance-1")
		first := rc.roundTrip(joinRequest("static", "", inst)).(*kmsg.JoinGroupResponse)
		wantErr(t, "static join", first.ErrorCode, nil)
		wantErr(t, "static sync", rc.roundTrip(syncRequest("static", first.MemberID, first.Generation, map[string]string{first.MemberID: "p0"})).(*kmsg.SyncGroupResponse).ErrorCode, nil)
		// The same instance restarts: it joins without a member id and
		// takes over, keeping the generation and its assignment.
		again := rc.roundTrip(joinRequest("static", "", inst)).(*kmsg.JoinGroupResponse)
		wantErr(t, "static rejoin", again.ErrorCode, nil)
		if again.MemberID == first.MemberID || again.Generation != first.Generation {
			t.Fatalf("replacement %+v", again)
		}
		wantErr(t, "old instance heartbeat", rc.roundTrip(heartbeatRequest("static", first.MemberID, inst, first.Generation)).(*kmsg.HeartbeatResponse).ErrorCode, kerr.FencedInstanceID)
		wantErr(t, "new instance heartbeat", rc.roundTrip(heartbeatRequest("static", again.MemberID, inst, again.Generation)).(*kmsg.HeartbeatResponse).ErrorCode, nil)
		s := rc.roundTrip(syncRequest("static", again.MemberID, again.Generation, nil)).(*kmsg.SyncGroupResponse)
		if s.ErrorCode != 0 || string(s.MemberAssignment) != "p0" {
			t.Fatalf("replacement's assignment %q (%v)", s.MemberAssignment, kerr.ErrorForCode(s.ErrorCode))
		}
		wantErr(t, "old instance join", rc.roundTrip(joinRequest("static", first.MemberID, inst)).(*kmsg.JoinGroupResponse).ErrorCode, kerr.FencedInstanceID)
		// Batched leave: the static member by instance id alone (an
		// administrative removal) and an unknown member.
		leave := kmsg.NewPtrLeaveGroupRequest()
		leave.SetVersion(5)
		leave.Group = "static"
		byInstance := kmsg.NewLeaveGroupRequestMember()
		byInstance.InstanceID = inst
		unknown := kmsg.NewLeaveGroupRequestMember()
		unknown.MemberID = "nobody"
		leave.Members = append(leave.Members, byInstance, unknown)
		lr := rc.roundTrip(leave).(*kmsg.LeaveGroupResponse)
		wantErr(t, "leave", lr.ErrorCode, nil)
		if len(lr.Members) != 2 || lr.Members[0].ErrorCode != 0 || lr.Members[1].ErrorCode != kerr.UnknownMemberID.Code {
			t.Fatalf("leave members %+v", lr.Members)
		}
		if d, _ := e.b.DescribeGroup("static"); d.State != broker.GroupEmpty {
			t.Fatalf("static group after leave: %v", d.State)
		}
	})

	t.Run("leave v0", func(t *testing.T) {
		rc.t = t
		leave := kmsg.NewPtrLeaveGroupRequest()
		leave.SetVersion(0)
		leave.Group, leave.MemberID = "g", "nobody"
		wantErr(t, "leave of an unknown member", rc.roundTrip(leave).(*kmsg.LeaveGroupResponse).ErrorCode, kerr.UnknownMemberID)
	})
}

// TestGroupAdminErrors covers DeleteGroups, OffsetDelete, DescribeGroups
// and ListGroups filters, batched FindCoordinator and multi-group
// OffsetFetch.
func TestGroupAdminErrors(t *testing.T) {
	e := startEnv(t)
	info := e.createTopic("t", 2, nil)
	e.createTopic("u", 1, nil)
	rc := e.dial()
	ids, gen := stableMembers(t, e, "busy", 1)
	for _, topic := range []string{"t", "u"} {
		commit := rc.roundTrip(commitRequest("busy", ids[0], gen, topic, 3)).(*kmsg.OffsetCommitResponse)
		wantErr(t, "commit", commit.Topics[0].Partitions[0].ErrorCode, nil)
	}
	simpleCommit(t, e, "idle", "t", 1, 11)

	t.Run("DeleteGroups", func(t *testing.T) {
		rc.t = t
		req := kmsg.NewPtrDeleteGroupsRequest()
		req.SetVersion(3)
		req.Groups = []string{"busy", "missing", "", "idle"}
		got := rc.roundTrip(req).(*kmsg.DeleteGroupsResponse).Groups
		for i, want := range []*kerr.Error{kerr.NonEmptyGroup, kerr.GroupIDNotFound, kerr.InvalidGroupID, nil} {
			if got[i].Group != req.Groups[i] {
				t.Fatalf("group %d is %q", i, got[i].Group)
			}
			wantErr(t, "delete "+req.Groups[i], got[i].ErrorCode, want)
		}
		simpleCommit(t, e, "idle", "t", 1, 11) // back for the tests below
	})

	t.Run("OffsetDelete", func(t *testing.T) {
		rc.t = t
		del := func(group string, topics ...string) *kmsg.OffsetDeleteResponse {
			req := kmsg.NewPtrOffsetDeleteRequest()
			req.Group = group
			for _, topic := range topics {
				rt := kmsg.NewOffsetDeleteRequestTopic()
				rt.Topic = topic
				rt.Partitions = append(rt.Partitions, kmsg.NewOffsetDeleteRequestTopicPartition())
				req.Topics = append(req.Topics, rt)
			}
			return rc.roundTrip(req).(*kmsg.OffsetDeleteResponse)
		}
		r := del("busy", "t", "u", "missing")
		wantErr(t, "offset delete", r.ErrorCode, nil)
		wantErr(t, "subscribed topic", r.Topics[0].Partitions[0].ErrorCode, kerr.GroupSubscribedToTopic)
		wantErr(t, "unsubscribed topic", r.Topics[1].Partitions[0].ErrorCode, nil)
		wantErr(t, "missing topic", r.Topics[2].Partitions[0].ErrorCode, kerr.UnknownTopicOrPartition)
		if committed(t, e, "busy", "u", 0) != -1 || committed(t, e, "busy", "t", 0) != 3 {
			t.Fatal("wrong offsets deleted")
		}
		wantErr(t, "unknown group", del("missing", "t").ErrorCode, kerr.GroupIDNotFound)
		wantErr(t, "empty group id", del("", "t").ErrorCode, kerr.InvalidGroupID)
	})

	t.Run("DescribeGroups and ListGroups", func(t *testing.T) {
		rc.t = t
		desc := kmsg.NewPtrDescribeGroupsRequest()
		desc.SetVersion(6)
		desc.Groups = []string{"busy", "idle", "missing", ""}
		gs := rc.roundTrip(desc).(*kmsg.DescribeGroupsResponse).Groups
		if gs[0].State != "Stable" || len(gs[0].Members) != 1 || string(gs[0].Members[0].MemberAssignment) != "a" {
			t.Fatalf("busy: %+v", gs[0])
		}
		if gs[1].State != "Empty" || gs[1].ProtocolType != "" || len(gs[1].Members) != 0 {
			t.Fatalf("idle: %+v", gs[1])
		}
		wantErr(t, "missing", gs[2].ErrorCode, kerr.GroupIDNotFound)
		wantErr(t, "empty id", gs[3].ErrorCode, kerr.InvalidGroupID)

		list := func(states ...string) []string {
			req := kmsg.NewPtrListGroupsRequest()
			req.SetVersion(5)
			req.StatesFilter = states
			resp := rc.roundTrip(req).(*kmsg.ListGroupsResponse)
			wantErr(t, "list groups", resp.ErrorCode, nil)
			var out []string
			for _, g := range resp.Groups {
				out = append(out, g.Group+":"+g.GroupState)
			}
			return out
		}
		all := list()
		if !slices.Contains(all, "busy:Stable") || !slices.Contains(all, "idle:Empty") {
			t.Fatalf("all groups %v", all)
		}
		if got := list("Empty"); !slices.Contains(got, "idle:Empty") || slices.Contains(got, "busy:Stable") {
			t.Fatalf("Empty groups %v", got)
		}
		if got := list("STABLE", "Dead"); !slices.Contains(got, "busy:Stable") || slices.Contains(got, "idle:Empty") {
			t.Fatalf("Stable groups %v", got)
		}
		if got := list("NoSuchState"); len(got) != 0 {
			t.Fatalf("unknown state lists %v", got)
		}
		typed := kmsg.NewPtrListGroupsRequest()
		typed.SetVersion(5)
		typed.TypesFilter = []string{"consumer"} // KIP-848 groups: there are none
		if resp := rc.roundTrip(typed).(*kmsg.ListGroupsResponse); len(resp.Groups) != 0 {
			t.Fatalf("consumer-type groups %+v", resp.Groups)
		}
	})

	t.Run("FindCoordinator batched", func(t *testing.T) {
		rc.t = t
		req := kmsg.NewPtrFindCoordinatorRequest()
		req.SetVersion(4)
		req.CoordinatorKeys = []string{"busy", "idle", ""}
		resp := rc.roundTrip(req).(*kmsg.FindCoordinatorResponse)
		if len(resp.Coordinators) != 3 {
			t.Fatalf("coordinators %+v", resp.Coordinators)
		}
		for i, c := range resp.Coordinators {
			if c.Key != req.CoordinatorKeys[i] || c.ErrorCode != 0 || c.NodeID != 0 || c.Port != e.b.Config().AdvertisedPort {
				t.Fatalf("coordinator %d: %+v", i, c)
			}
		}
		req.CoordinatorType = 1 // transactional ids: "" is INVALID_REQUEST
		for i, c := range rc.roundTrip(req).(*kmsg.FindCoordinatorResponse).Coordinators {
			if req.CoordinatorKeys[i] == "" {
				wantErr(t, "transaction coordinator of an empty id", c.ErrorCode, kerr.InvalidRequest)
			} else if c.Key != req.CoordinatorKeys[i] || c.ErrorCode != 0 || c.NodeID != 0 || c.Port != e.b.Config().AdvertisedPort {
				t.Fatalf("transaction coordinator %d: %+v", i, c)
			}
		}
		req.CoordinatorType = 2
		for _, c := range rc.roundTrip(req).(*kmsg.FindCoordinatorResponse).Coordinators {
			wantErr(t, "share coordinator", c.ErrorCode, kerr.InvalidRequest)
		}
		old := kmsg.NewPtrFindCoordinatorRequest()
		old.SetVersion(1)
		old.CoordinatorKey, old.CoordinatorType = "tx", 1
		if resp := rc.roundTrip(old).(*kmsg.FindCoordinatorResponse); resp.ErrorCode != 0 || resp.NodeID != 0 || resp.Port != e.b.Config().AdvertisedPort {
			t.Fatalf("v1 transaction coordinator: %v node %d port %d", kerr.ErrorForCode(resp.ErrorCode), resp.NodeID, resp.Port)
		}
	})

	t.Run("OffsetFetch multi-group", func(t *testing.T) {
		rc.t = t
		req := kmsg.NewPtrOffsetFetchRequest()
		req.SetVersion(8)
		req.RequireStable = true
		for _, g := range []string{"busy", "idle", "missing", ""} {
			rg := kmsg.NewOffsetFetchRequestGroup()
			rg.Group = g
			if g == "idle" {
				rt := kmsg.NewOffsetFetchRequestGroupTopic()
				rt.Topic, rt.Partitions = "t", []int32{0, 1}
				rg.Topics = append(rg.Topics, rt)
			} // else null topics: everything committed
			req.Groups = append(req.Groups, rg)
		}
		gs := rc.roundTrip(req).(*kmsg.OffsetFetchResponse).Groups
		summary := func(g kmsg.OffsetFetchResponseGroup) string {
			s := fmt.Sprint(g.Group, " ", g.ErrorCode, ":")
			for _, t := range g.Topics {
				for _, p := range t.Partitions {
					s += fmt.Sprintf(" %s-%d@%d/%d", t.Topic, p.Partition, p.Offset, p.ErrorCode)
				}
			}
			return s
		}
		var got []string
		for _, g := range gs {
			got = append(got, summary(g))
		}
		want := []string{
			"busy 0: t-0@3/0", // u's offset was deleted above
			"idle 0: t-0@-1/0 t-1@11/0",
			"missing 0:",
			fmt.Sprint(" ", kerr.InvalidGroupID.Code, ":"),
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("fetched\n%v\nwant\n%v", got, want)
		}
		// v10 names topics by id, and answers UNKNOWN_TOPIC_ID for ids it
		// does not know.
		req.SetVersion(10)
		req.Groups = req.Groups[:1]
		rt := kmsg.NewOffsetFetchRequestGroupTopic()
		rt.TopicID, rt.Partitions = info.ID, []int32{0}
		bad := kmsg.NewOffsetFetchRequestGroupTopic()
		bad.TopicID, bad.Partitions = [16]byte{9}, []int32{0}
		req.Groups[0].Topics = append(req.Groups[0].Topics, rt, bad)
		g := rc.roundTrip(req).(*kmsg.OffsetFetchResponse).Groups[0]
		if len(g.Topics) != 2 || g.Topics[0].TopicID != info.ID || g.Topics[0].Partitions[0].Offset != 3 ||
			g.Topics[1].Partitions[0].ErrorCode != kerr.UnknownTopicID.Code {
			t.Fatalf("v10 fetch %+v", g)
		}
		// Before v8, a group error is the top-level code.
		old := kmsg.NewPtrOffsetFetchRequest()
		old.SetVersion(7)
		old.Topics = nil
		wantErr(t, "v7 empty group id", rc.roundTrip(old).(*kmsg.OffsetFetchResponse).ErrorCode, kerr.InvalidGroupID)
	})
}

// TestPendingJoinDoesNotHoldShutdown: a JoinGroup waiting for a rebalance
// (here a one-minute initial delay) is answered NOT_COORDINATOR when the
// server shuts down, instead of holding Shutdown for the rebalance.
func TestPendingJoinDoesNotHoldShutdown(t *testing.T) {
	e := startEnv(t)
	e.bcfg.GroupInitialRebalanceDelay = time.Minute
	e.restart()
	rc := e.dial()
	join := joinRequest("slow", "", nil)
	join.SetVersion(3) // no MEMBER_ID_REQUIRED: the first join waits
	corr := rc.send(join)
	e.waitPending()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	start := time.Now()
	if err := e.srv.Shutdown(ctx); err != nil {
		t.Fatalf("shutdown: %v after %v", err, time.Since(start))
	}
	resp := rc.read(join, corr).(*kmsg.JoinGroupResponse)
	wantErr(t, "pending join at shutdown", resp.ErrorCode, kerr.NotCoordinator)
}
