package kafka

import (
	"context"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/chronik-stream/chronik/broker"
)

// JoinGroup: v2-9
//
// Behaviour:
//   - The classic group protocol's join: the answer comes when the
//     rebalance completes (every member rejoined, the rebalance timeout
//     passed, or the initial rebalance delay of a new group ended), so the
//     request runs on its own goroutine (schedule concurrentGroup) and the
//     connection keeps serving what follows it.
//   - The broker picks the protocol every member supports that most members
//     prefer; the leader gets every member's metadata for it, and
//     assignments stay opaque bytes (range, roundrobin, sticky,
//     cooperative-sticky: client-side assignors all work).
//   - v4+: a new dynamic member gets MEMBER_ID_REQUIRED with its member id
//     and must join again with it (KIP-394).
//   - v5+: static members (GroupInstanceID, KIP-345): a known instance
//     joining without a member id replaces the old member, which is fenced
//     with FENCED_INSTANCE_ID; a Stable group keeps its assignment.
//   - Errors: INVALID_GROUP_ID, INVALID_SESSION_TIMEOUT (outside the
//     broker's min and max), INCONSISTENT_GROUP_PROTOCOL, UNKNOWN_MEMBER_ID,
//     FENCED_INSTANCE_ID, GROUP_MAX_SIZE_REACHED, REBALANCE_IN_PROGRESS (a
//     join replaced by a newer one from the same member), and
//     NOT_COORDINATOR when the coordinator stopped (shutdown) or could not
//     write the group.
//
// Version notes:
//   - v2: ThrottleMillis (v0-v1 are below the Kafka 4.0 floor)
//   - v4: MEMBER_ID_REQUIRED
//   - v5: GroupInstanceID, members' instance ids in the response
//   - v6: flexible
//   - v7: ProtocolType in the response, nullable Protocol
//   - v8: Reason (KIP-800)
//   - v9: SkipAssignment for a static leader rejoining a Stable group (KIP-814)

func (s *Server) handleJoinGroup(ctx context.Context, r *request) kmsg.Response {
	req := r.kreq.(*kmsg.JoinGroupRequest)
	resp := req.ResponseKind().(*kmsg.JoinGroupResponse)
	if !s.mayGroup(r, kmsg.ACLOperationRead, req.Group) {
		return failJoinGroup(req, s.counted(kerr.GroupAuthorizationFailed.Code))
	}
	jr := broker.GroupJoinRequest{
		MemberID:                  req.MemberID,
		InstanceID:                derefString(req.InstanceID),
		ClientID:                  r.clientID,
		ClientHost:                r.clientHost,
		SessionTimeoutMs:          req.SessionTimeoutMillis,
		RebalanceTimeoutMs:        req.RebalanceTimeoutMillis,
		ProtocolType:              req.ProtocolType,
		RequireKnownMemberID:      req.Version >= 4,
		SupportSkippingAssignment: req.Version >= 9,
		Reason:                    derefString(req.Reason),
	}
	for _, p := range req.Protocols {
		jr.Protocols = append(jr.Protocols, broker.GroupProtocol{Name: p.Name, Metadata: p.Metadata})
	}
	ctx, stop := s.untilDraining(ctx)
	defer stop()
	out, err := s.b.JoinGroup(ctx, req.Group, jr)
	if err != nil {
		resp.ErrorCode = s.groupCode(err, "join group")
		resp.Generation, resp.MemberID = -1, req.MemberID
		return resp
	}
	resp.ErrorCode = out.ErrorCode
	resp.Generation = out.GenerationID
	resp.ProtocolType = out.ProtocolType
	resp.Protocol = out.ProtocolName
	resp.LeaderID = out.LeaderID
	resp.SkipAssignment = out.SkipAssignment
	resp.MemberID = out.MemberID
	for _, m := range out.Members {
		rm := kmsg.NewJoinGroupResponseMember()
		rm.MemberID, rm.ProtocolMetadata = m.MemberID, m.Metadata
		if m.InstanceID != "" {
			rm.InstanceID = kmsg.StringPtr(m.InstanceID)
		}
		resp.Members = append(resp.Members, rm)
	}
	return resp
}

func failJoinGroup(kreq kmsg.Request, code int16) kmsg.Response {
	resp := kreq.ResponseKind().(*kmsg.JoinGroupResponse)
	resp.ErrorCode, resp.Generation = code, -1
	return resp
}
