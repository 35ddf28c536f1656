package kafka

import (
	"context"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/chronik-stream/chronik/broker"
)

// Heartbeat: v0-4
//
// Behaviour:
//   - Restarts the member's session timer. REBALANCE_IN_PROGRESS tells a
//     member of the current generation to rejoin; ILLEGAL_GENERATION,
//     UNKNOWN_MEMBER_ID and FENCED_INSTANCE_ID that it is out of the group.
//   - Never waits for another member: a member's heartbeats are answered
//     while its own JoinGroup waits on another connection.
//
// Version notes:
//   - v1: ThrottleMillis
//   - v3: GroupInstanceID
//   - v4: flexible

func (s *Server) handleHeartbeat(_ context.Context, r *request) kmsg.Response {
	req := r.kreq.(*kmsg.HeartbeatRequest)
	resp := req.ResponseKind().(*kmsg.HeartbeatResponse)
	if !s.mayGroup(r, kmsg.ACLOperationRead, req.Group) {
		return failHeartbeat(req, s.counted(kerr.GroupAuthorizationFailed.Code))
	}
	err := s.b.Heartbeat(req.Group, broker.GroupHeartbeatRequest{
		MemberID:     req.MemberID,
		InstanceID:   derefString(req.InstanceID),
		GenerationID: req.Generation,
	})
	resp.ErrorCode = s.groupCode(err, "heartbeat")
	return resp
}

func failHeartbeat(kreq kmsg.Request, code int16) kmsg.Response {
	resp := kreq.ResponseKind().(*kmsg.HeartbeatResponse)
	resp.ErrorCode = code
	return resp
}
