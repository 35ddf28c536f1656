package kafka

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/chronik-stream/chronik/broker"
)

func init() { maps.Copy(versionCases, groupVersionCases) }

// consumerMeta is a consumer-protocol subscription.
func consumerMeta(topics ...string) []byte {
	m := kmsg.NewConsumerMemberMetadata()
	m.Topics = topics
	return m.AppendTo(nil)
}

// stableGroup makes group a Stable one-member group through the broker API
// (the leader assigns "assigned") and returns its member id and generation.
func stableGroup(t testing.TB, e *testEnv, group string) (string, int32) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	j, err := e.b.JoinGroup(ctx, group, broker.GroupJoinRequest{
		ClientID: "builder", ClientHost: "/127.0.0.1", SessionTimeoutMs: 30_000, RebalanceTimeoutMs: 30_000,
		ProtocolType: "consumer", Protocols: []broker.GroupProtocol{{Name: "range", Metadata: consumerMeta("v")}},
	})
	if err != nil || j.ErrorCode != 0 {
		t.Fatalf("join %s: %v %v", group, err, kerr.ErrorForCode(j.ErrorCode))
	}
	s, err := e.b.SyncGroup(ctx, group, broker.GroupSyncRequest{MemberID: j.MemberID, GenerationID: j.GenerationID,
		Assignments: []broker.GroupMemberAssignment{{MemberID: j.MemberID, Assignment: []byte("assigned")}}})
	if err != nil || s.ErrorCode != 0 {
		t.Fatalf("sync %s: %v %v", group, err, kerr.ErrorForCode(s.ErrorCode))
	}
	return j.MemberID, j.GenerationID
}

// simpleCommit stores an offset for a group without members.
func simpleCommit(t testing.TB, e *testEnv, group, topic string, p int32, offset int64) {
	t.Helper()
	codes, err := e.b.OffsetCommit(group, broker.GroupCommitRequest{GenerationID: -1,
		Offsets: []broker.GroupOffsetCommit{{Topic: topic, Partition: p, Offset: offset, LeaderEpoch: 0, Metadata: "meta"}}})
	if err != nil || codes[0] != 0 {
		t.Fatalf("commit %s: %v %v", group, err, codes)
	}
}

func committed(t testing.TB, e *testEnv, group, topic string, p int32) int64 {
	t.Helper()
	offs, err := e.b.OffsetFetch(group, []broker.GroupFetchTopic{{Topic: topic, Partitions: []int32{p}}}, false)
	if err != nil {
		t.Fatal(err)
	}
	return offs[0].Offset
}

var groupVersionCases = map[int16]versionCase{
	8: func(t *testing.T, e *testEnv, v int16) (kmsg.Request, func(kmsg.Response)) {
		info, _ := e.b.Topic("v")
		group := fmt.Sprintf("commit-v%d", v)
		req := kmsg.NewPtrOffsetCommitRequest()
		req.Group, req.Generation = group, -1
		rt := kmsg.NewOffsetCommitRequestTopic()
		rt.Topic, rt.TopicID = "v", info.ID
		rp := kmsg.NewOffsetCommitRequestTopicPartition()
		rp.Offset, rp.LeaderEpoch, rp.Metadata = int64(v), 0, kmsg.StringPtr("m")
		rt.Partitions = append(rt.Partitions, rp)
		req.Topics = append(req.Topics, rt)
		return req, func(r kmsg.Response) {
			resp := r.(*kmsg.OffsetCommitResponse)
			wantCode(t, "offset commit", resp.Topics[0].Partitions[0].ErrorCode)
			if v >= 10 && resp.Topics[0].TopicID != info.ID {
				t.Errorf("topic id not echoed")
			}
			if got := committed(t, e, group, "v", 0); got != int64(v) {
				t.Errorf("committed %d, want %d", got, v)
			}
		}
	},
	9: func(t *testing.T, e *testEnv, v int16) (kmsg.Request, func(kmsg.Response)) {
		info, _ := e.b.Topic("v")
		simpleCommit(t, e, "fetched", "v", 0, 42)
		req := kmsg.NewPtrOffsetFetchRequest()
		req.Group, req.RequireStable = "fetched", true
		rt := kmsg.NewOffsetFetchRequestTopic()
		rt.Topic, rt.Partitions = "v", []int32{0, 7}
		req.Topics = append(req.Topics, rt)
		for _, g := range []string{"fetched", "nobody"} {
			rg := kmsg.NewOffsetFetchRequestGroup()
			rg.Group = g
			gt := kmsg.NewOffsetFetchRequestGroupTopic()
			gt.Topic, gt.TopicID, gt.Partitions = "v", info.ID, []int32{0, 7}
			rg.Topics = append(rg.Topics, gt)
			req.Groups = append(req.Groups, rg)
		}
		return req, func(r kmsg.Response) {
			resp := r.(*kmsg.OffsetFetchResponse)
			type part struct {
				offset int64
				epoch  int32
				meta   string
			}
			var got [][]part
			if v < 8 {
				wantCode(t, "offset fetch", resp.ErrorCode)
				var ps []part
				for _, p := range resp.Topics[0].Partitions {
					wantCode(t, "offset fetch partition", p.ErrorCode)
					ps = append(ps, part{p.Offset, p.LeaderEpoch, *p.Metadata})
				}
				got = append(got, ps)
			} else {
				for _, g := range resp.Groups {
					wantCode(t, "offset fetch group "+g.Group, g.ErrorCode)
					if v >= 10 && g.Topics[0].TopicID != info.ID {
						t.Errorf("topic id not echoed")
					}
					var ps []part
					for _, p := range g.Topics[0].Partitions {
						wantCode(t, "offset fetch partition", p.ErrorCode)
						ps = append(ps, part{p.Offset, p.LeaderEpoch, *p.Metadata})
					}
					got = append(got, ps)
				}
			}
			epoch := int32(0)
			if v < 5 {
				epoch = -1 // not on the wire: kmsg's default
			}
			want := [][]part{{{42, epoch, "meta"}, {-1, -1, ""}}}
			if v >= 8 {
				want = append(want, []part{{-1, -1, ""}, {-1, -1, ""}})
			}
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Errorf("fetched %v, want %v", got, want)
			}
		}
	},
	10: func(t *testing.T, e *testEnv, v int16) (kmsg.Request, func(kmsg.Response)) {
		req := kmsg.NewPtrFindCoordinatorRequest()
		req.CoordinatorKey = "g"
		req.CoordinatorKeys = []string{"g", "h"}
		return req, func(r kmsg.Response) {
			resp := r.(*kmsg.FindCoordinatorResponse)
			cs := resp.Coordinators
			if v < 4 {
				cs = []kmsg.FindCoordinatorResponseCoordinator{{Key: "g", NodeID: resp.NodeID, Host: resp.Host, Port: resp.Port, ErrorCode: resp.ErrorCode}}
			} else if len(cs) != 2 || cs[0].Key != "g" || cs[1].Key != "h" {
				t.Fatalf("coordinators %+v", cs)
			}
			for _, c := range cs {
				wantCode(t, "find coordinator "+c.Key, c.ErrorCode)
				if c.NodeID != 0 || c.Host != "127.0.0.1" || c.Port != e.b.Config().AdvertisedPort {
					t.Errorf("coordinator %+v", c)
				}
			}
		}
	},
	11: func(t *testing.T, e *testEnv, v int16) (kmsg.Request, func(kmsg.Response)) {
		req := kmsg.NewPtrJoinGroupRequest()
		req.Group = fmt.Sprintf("join-v%d", v)
		req.SessionTimeoutMillis, req.RebalanceTimeoutMillis = 30_000, 30_000
		req.ProtocolType = "consumer"
		p := kmsg.NewJoinGroupRequestProtocol()
		p.Name, p.Metadata = "range", consumerMeta("v")
		req.Protocols = append(req.Protocols, p)
		req.Reason = kmsg.StringPtr("version test")
		if v >= 4 {
			// KIP-394: the first join only hands out the member id.
			first := *req
			first.SetVersion(v)
			rc := e.dial()
			rc.t = t
			resp := rc.roundTrip(&first).(*kmsg.JoinGroupResponse)
			if resp.ErrorCode != kerr.MemberIDRequired.Code || resp.MemberID == "" {
				t.Fatalf("first join: %v, member id %q", kerr.ErrorForCode(resp.ErrorCode), resp.MemberID)
			}
			req.MemberID = resp.MemberID
		}
		return req, func(r kmsg.Response) {
			resp := r.(*kmsg.JoinGroupResponse)
			wantCode(t, "join group", resp.ErrorCode)
			if resp.Generation != 1 || resp.LeaderID != resp.MemberID || resp.Protocol == nil || *resp.Protocol != "range" ||
				len(resp.Members) != 1 || string(resp.Members[0].ProtocolMetadata) != string(consumerMeta("v")) {
				t.Fatalf("join response %+v", resp)
			}
			if v >= 4 && resp.MemberID != req.MemberID {
				t.Errorf("member id %q, joined as %q", resp.MemberID, req.MemberID)
			}
			if v >= 7 && (resp.ProtocolType == nil || *resp.ProtocolType != "consumer") {
				t.Errorf("protocol type %v", resp.ProtocolType)
			}
		}
	},
	12: func(t *testing.T, e *testEnv, v int16) (kmsg.Request, func(kmsg.Response)) {
		group := fmt.Sprintf("heartbeat-v%d", v)
		member, gen := stableGroup(t, e, group)
		req := kmsg.NewPtrHeartbeatRequest()
		req.Group, req.MemberID, req.Generation = group, member, gen
		return req, func(r kmsg.Response) {
			wantCode(t, "heartbeat", r.(*kmsg.HeartbeatResponse).ErrorCode)
		}
	},
	13: func(t *testing.T, e *testEnv, v int16) (kmsg.Request, func(kmsg.Response)) {
		group := fmt.Sprintf("leave-v%d", v)
		member, _ := stableGroup(t, e, group)
		req := kmsg.NewPtrLeaveGroupRequest()
		req.Group, req.MemberID = group, member
		m := kmsg.NewLeaveGroupRequestMember()
		m.MemberID, m.Reason = member, kmsg.StringPtr("version test")
		req.Members = append(req.Members, m)
		return req, func(r kmsg.Response) {
			resp := r.(*kmsg.LeaveGroupResponse)
			wantCode(t, "leave group", resp.ErrorCode)
			if v >= 3 && (len(resp.Members) != 1 || resp.Members[0].MemberID != member || resp.Members[0].ErrorCode != 0) {
				t.Errorf("members %+v", resp.Members)
			}
			if d, _ := e.b.DescribeGroup(group); d.State != broker.GroupEmpty || len(d.Members) != 0 {
				t.Errorf("group after leave: %+v", d)
			}
		}
	},
	14: func(t *testing.T, e *testEnv, v int16) (kmsg.Request, func(kmsg.Response)) {
		group := fmt.Sprintf("sync-v%d", v)
		ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
		defer cancel()
		j, err := e.b.JoinGroup(ctx, group, broker.GroupJoinRequest{ClientID: "c", SessionTimeoutMs: 30_000, RebalanceTimeoutMs: 30_000,
			ProtocolType: "consumer", Protocols: []broker.GroupProtocol{{Name: "range", Metadata: consumerMeta("v")}}})
		if err != nil || j.ErrorCode != 0 {
			t.Fatalf("join: %v %v", err, j.ErrorCode)
		}
		req := kmsg.NewPtrSyncGroupRequest()
		req.Group, req.MemberID, req.Generation = group, j.MemberID, j.GenerationID
		req.ProtocolType, req.Protocol = kmsg.StringPtr("consumer"), kmsg.StringPtr("range")
		a := kmsg.NewSyncGroupRequestGroupAssignment()
		a.MemberID, a.MemberAssignment = j.MemberID, []byte("yours")
		req.GroupAssignment = append(req.GroupAssignment, a)
		return req, func(r kmsg.Response) {
			resp := r.(*kmsg.SyncGroupResponse)
			wantCode(t, "sync group", resp.ErrorCode)
			if string(resp.MemberAssignment) != "yours" {
				t.Errorf("assignment %q", resp.MemberAssignment)
			}
			if v >= 5 && (resp.Protocol == nil || *resp.Protocol != "range") {
				t.Errorf("protocol %v", resp.Protocol)
			}
		}
	},
	15: func(t *testing.T, e *testEnv, v int16) (kmsg.Request, func(kmsg.Response)) {
		group := fmt.Sprintf("described-v%d", v)
		member, _ := stableGroup(t, e, group)
		req := kmsg.NewPtrDescribeGroupsRequest()
		req.Groups = []string{group, "missing"}
		req.IncludeAuthorizedOperations = true
		return req, func(r kmsg.Response) {
			resp := r.(*kmsg.DescribeGroupsResponse)
			g := resp.Groups[0]
			wantCode(t, "describe group", g.ErrorCode)
			if g.Group != group || g.State != "Stable" || g.ProtocolType != "consumer" || g.Protocol != "range" ||
				len(g.Members) != 1 || g.Members[0].MemberID != member || g.Members[0].ClientID != "builder" ||
				string(g.Members[0].MemberAssignment) != "assigned" {
				t.Fatalf("described %+v", g)
			}
			if v >= 3 && g.AuthorizedOperations != allGroupOperations {
				t.Errorf("authorized operations %d", g.AuthorizedOperations)
			}
			missing := resp.Groups[1]
			wantMissing := int16(0)
			if v >= 6 {
				wantMissing = kerr.GroupIDNotFound.Code
			}
			if missing.ErrorCode != wantMissing || missing.State != "Dead" {
				t.Errorf("missing group: %v state %q", kerr.ErrorForCode(missing.ErrorCode), missing.State)
			}
		}
	},
	16: func(t *testing.T, e *testEnv, v int16) (kmsg.Request, func(kmsg.Response)) {
		group := fmt.Sprintf("listed-v%d", v)
		stableGroup(t, e, group)
		simpleCommit(t, e, fmt.Sprintf("listed-empty-v%d", v), "v", 0, 1)
		req := kmsg.NewPtrListGroupsRequest()
		req.StatesFilter = []string{"stable"}
		req.TypesFilter = []string{"Classic"}
		return req, func(r kmsg.Response) {
			resp := r.(*kmsg.ListGroupsResponse)
			wantCode(t, "list groups", resp.ErrorCode)
			i := slices.IndexFunc(resp.Groups, func(g kmsg.ListGroupsResponseGroup) bool { return g.Group == group })
			if i < 0 || resp.Groups[i].ProtocolType != "consumer" {
				t.Fatalf("%s not listed: %+v", group, resp.Groups)
			}
			empty := slices.ContainsFunc(resp.Groups, func(g kmsg.ListGroupsResponseGroup) bool { return g.Group == fmt.Sprintf("listed-empty-v%d", v) })
			if v >= 4 {
				if resp.Groups[i].GroupState != "Stable" || empty {
					t.Errorf("state filter: %+v", resp.Groups)
				}
			} else if !empty {
				t.Errorf("v%d lists every group: %+v", v, resp.Groups)
			}
			if v >= 5 && resp.Groups[i].GroupType != "classic" {
				t.Errorf("group type %q", resp.Groups[i].GroupType)
			}
		}
	},
	42: func(t *testing.T, e *testEnv, v int16) (kmsg.Request, func(kmsg.Response)) {
		group := fmt.Sprintf("deleted-v%d", v)
		simpleCommit(t, e, group, "v", 0, 9)
		req := kmsg.NewPtrDeleteGroupsRequest()
		req.Groups = []string{group}
		return req, func(r kmsg.Response) {
			g := r.(*kmsg.DeleteGroupsResponse).Groups[0]
			wantCode(t, "delete group", g.ErrorCode)
			if committed(t, e, group, "v", 0) != -1 {
				t.Errorf("offsets survived the delete")
			}
		}
	},
	47: func(t *testing.T, e *testEnv, v int16) (kmsg.Request, func(kmsg.Response)) {
		group := fmt.Sprintf("offsets-deleted-v%d", v)
		simpleCommit(t, e, group, "v", 0, 9)
		req := kmsg.NewPtrOffsetDeleteRequest()
		req.Group = group
		rt := kmsg.NewOffsetDeleteRequestTopic()
		rt.Topic = "v"
		rt.Partitions = append(rt.Partitions, kmsg.NewOffsetDeleteRequestTopicPartition())
		req.Topics = append(req.Topics, rt)
		return req, func(r kmsg.Response) {
			resp := r.(*kmsg.OffsetDeleteResponse)
			wantCode(t, "offset delete", resp.ErrorCode)
			wantCode(t, "offset delete partition", resp.Topics[0].Partitions[0].ErrorCode)
			if committed(t, e, group, "v", 0) != -1 {
				t.Errorf("offset survived the delete")
			}
		}
	},
}
