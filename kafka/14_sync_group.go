package kafka

import (
	"context"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/chronik-stream/chronik/broker"
)

// SyncGroup: v0-5
//
// Behaviour:
//   - The leader sends every member's assignment; each member gets its own
//     once the leader's SyncGroup arrived and the generation is written to
//     __consumer_offsets. A follower's request waits for that, so it runs
//     on its own goroutine (schedule concurrentGroup). Members the leader
//     left out get an empty assignment.
//   - Errors: UNKNOWN_MEMBER_ID, ILLEGAL_GENERATION, FENCED_INSTANCE_ID,
//     REBALANCE_IN_PROGRESS (the generation was abandoned),
//     INCONSISTENT_GROUP_PROTOCOL (v5+ protocol type or name not the
//     group's), INVALID_GROUP_ID, NOT_COORDINATOR.
//
// Version notes:
//   - v1: ThrottleMillis
//   - v3: GroupInstanceID
//   - v4: flexible
//   - v5: ProtocolType and Protocol in request and response

func (s *Server) handleSyncGroup(ctx context.Context, r *request) kmsg.Response {
	req := r.kreq.(*kmsg.SyncGroupRequest)
	resp := req.ResponseKind().(*kmsg.SyncGroupResponse)
	if !s.mayGroup(r, kmsg.ACLOperationRead, req.Group) {
		return failSyncGroup(req, s.counted(kerr.GroupAuthorizationFailed.Code))
	}
	sr := broker.GroupSyncRequest{
		MemberID:     req.MemberID,
		InstanceID:   derefString(req.InstanceID),
		GenerationID: req.Generation,
		ProtocolType: req.ProtocolType,
		ProtocolName: req.Protocol,
	}
	for _, a := range req.GroupAssignment {
		sr.Assignments = append(sr.Assignments, broker.GroupMemberAssignment{MemberID: a.MemberID, Assignment: a.MemberAssignment})
	}
	ctx, stop := s.untilDraining(ctx)
	defer stop()
	out, err := s.b.SyncGroup(ctx, req.Group, sr)
	if err != nil {
		resp.ErrorCode = s.groupCode(err, "sync group")
		resp.MemberAssignment = []byte{}
		return resp
	}
	resp.ErrorCode = out.ErrorCode
	resp.ProtocolType, resp.Protocol = out.ProtocolType, out.ProtocolName
	resp.MemberAssignment = out.Assignment
	return resp
}

func failSyncGroup(kreq kmsg.Request, code int16) kmsg.Response {
	resp := kreq.ResponseKind().(*kmsg.SyncGroupResponse)
	resp.ErrorCode, resp.MemberAssignment = code, []byte{}
	return resp
}
