package kafka

import (
	"context"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/chronik-stream/chronik/broker"
)

// LeaveGroup: v0-5
//
// Behaviour:
//   - Removes members at once (no session timeout to wait for) and starts a
//     rebalance of the rest.
//   - v0-v2: one member by MemberID; its outcome is the top-level
//     ErrorCode.
//   - v3+: a batch of members (KIP-345), each by member id and/or instance
//     id; an instance id without a member id removes that static member
//     (an administrative removal). Each member gets its own ErrorCode; the
//     top-level ErrorCode is for the group (INVALID_GROUP_ID,
//     NOT_COORDINATOR, COORDINATOR_NOT_AVAILABLE).
//
// Version notes:
//   - v1: ThrottleMillis
//   - v3: Members (batched, with instance ids)
//   - v4: flexible
//   - v5: per-member Reason (KIP-800)

func (s *Server) handleLeaveGroup(_ context.Context, r *request) kmsg.Response {
	req := r.kreq.(*kmsg.LeaveGroupRequest)
	resp := req.ResponseKind().(*kmsg.LeaveGroupResponse)
	if !s.mayGroup(r, kmsg.ACLOperationRead, req.Group) {
		return failLeaveGroup(req, s.counted(kerr.GroupAuthorizationFailed.Code))
	}
	var members []broker.GroupLeaveMember
	if req.Version < 3 {
		members = []broker.GroupLeaveMember{{MemberID: req.MemberID}}
	}
	for _, m := range req.Members {
		members = append(members, broker.GroupLeaveMember{MemberID: m.MemberID, InstanceID: derefString(m.InstanceID), Reason: derefString(m.Reason)})
	}
	out, err := s.b.LeaveGroup(req.Group, members)
	if err != nil {
		resp.ErrorCode = s.groupCode(err, "leave group")
		return resp
	}
	resp.ErrorCode = out.ErrorCode
	if req.Version < 3 {
		if resp.ErrorCode == 0 && len(out.Members) > 0 {
			resp.ErrorCode = out.Members[0].ErrorCode
		}
		return resp
	}
	for _, m := range out.Members {
		rm := kmsg.NewLeaveGroupResponseMember()
		rm.MemberID, rm.InstanceID, rm.ErrorCode = m.MemberID, stringPtrOrNil(m.InstanceID), m.ErrorCode
		resp.Members = append(resp.Members, rm)
	}
	return resp
}

func failLeaveGroup(kreq kmsg.Request, code int16) kmsg.Response {
	resp := kreq.ResponseKind().(*kmsg.LeaveGroupResponse)
	resp.ErrorCode = code
	return resp
}
