package kafka

import (
	"context"
	"errors"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// DescribeGroups: v0-6
//
// Behaviour:
//   - Each group's state (Empty, PreparingRebalance, CompletingRebalance,
//     Stable, Dead), protocol type, members with client id and host. The
//     protocol and each member's metadata and assignment only while Stable,
//     as Kafka reports them.
//   - A group that does not exist: state Dead with no error before v6,
//     GROUP_ID_NOT_FOUND from v6 (KIP-1043). An empty group id:
//     INVALID_GROUP_ID.
//   - Authorized operations (v3+), when asked for: every group operation,
//     as there are no ACLs.
//
// Version notes:
//   - v1: ThrottleMillis
//   - v3: authorized operations
//   - v4: members' GroupInstanceID
//   - v5: flexible
//   - v6: ErrorMessage, GROUP_ID_NOT_FOUND

func (s *Server) handleDescribeGroups(_ context.Context, r *request) kmsg.Response {
	req := r.kreq.(*kmsg.DescribeGroupsRequest)
	resp := req.ResponseKind().(*kmsg.DescribeGroupsResponse)
	for _, id := range req.Groups {
		sg := kmsg.NewDescribeGroupsResponseGroup()
		sg.Group = id
		if !s.mayGroup(r, kmsg.ACLOperationDescribe, id) {
			sg.ErrorCode = s.counted(kerr.GroupAuthorizationFailed.Code)
			resp.Groups = append(resp.Groups, sg)
			continue
		}
		d, err := s.b.DescribeGroup(id)
		switch {
		case errors.Is(err, kerr.GroupIDNotFound) && req.Version < 6:
			err = nil // Dead, as older versions report an unknown group
		case err != nil:
			sg.ErrorCode, sg.ErrorMessage = s.groupCode(err, "describe group"), errorMessage(err)
			sg.State = d.State.String()
			resp.Groups = append(resp.Groups, sg)
			continue
		}
		sg.State, sg.ProtocolType, sg.Protocol = d.State.String(), d.ProtocolType, d.Protocol
		if req.IncludeAuthorizedOperations {
			sg.AuthorizedOperations = s.groupAuthorizedOps(r, id)
		}
		for _, m := range d.Members {
			sm := kmsg.NewDescribeGroupsResponseGroupMember()
			sm.MemberID, sm.InstanceID = m.MemberID, stringPtrOrNil(m.InstanceID)
			sm.ClientID, sm.ClientHost = m.ClientID, m.ClientHost
			sm.ProtocolMetadata, sm.MemberAssignment = nonNilBytes(m.Metadata), nonNilBytes(m.Assignment)
			sg.Members = append(sg.Members, sm)
		}
		resp.Groups = append(resp.Groups, sg)
	}
	return resp
}

func nonNilBytes(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}

func failDescribeGroups(kreq kmsg.Request, code int16) kmsg.Response {
	req := kreq.(*kmsg.DescribeGroupsRequest)
	resp := req.ResponseKind().(*kmsg.DescribeGroupsResponse)
	for _, id := range req.Groups {
		sg := kmsg.NewDescribeGroupsResponseGroup()
		sg.Group, sg.ErrorCode = id, code
		resp.Groups = append(resp.Groups, sg)
	}
	return resp
}
