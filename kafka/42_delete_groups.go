package kafka

import (
	"context"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// DeleteGroups: v0-3
//
// Behaviour:
//   - Deletes each group that has no members, with its committed offsets
//     (tombstones in __consumer_offsets). NON_EMPTY_GROUP while it has
//     members, GROUP_ID_NOT_FOUND if it does not exist, INVALID_GROUP_ID
//     for an empty id.
//
// Version notes:
//   - v1: nothing new on the wire
//   - v2: flexible
//   - v3: nothing new for classic groups (KIP-848 groups)

func (s *Server) handleDeleteGroups(_ context.Context, r *request) kmsg.Response {
	req := r.kreq.(*kmsg.DeleteGroupsRequest)
	resp := req.ResponseKind().(*kmsg.DeleteGroupsResponse)
	for _, id := range req.Groups {
		sg := kmsg.NewDeleteGroupsResponseGroup()
		sg.Group = id
		if !s.mayGroup(r, kmsg.ACLOperationDelete, id) {
			sg.ErrorCode = s.counted(kerr.GroupAuthorizationFailed.Code)
			resp.Groups = append(resp.Groups, sg)
			continue
		}
		if err := s.b.DeleteGroup(id); err != nil {
			sg.ErrorCode = s.groupCode(err, "delete group")
		}
		resp.Groups = append(resp.Groups, sg)
	}
	return resp
}

func failDeleteGroups(kreq kmsg.Request, code int16) kmsg.Response {
	req := kreq.(*kmsg.DeleteGroupsRequest)
	resp := req.ResponseKind().(*kmsg.DeleteGroupsResponse)
	for _, id := range req.Groups {
		sg := kmsg.NewDeleteGroupsResponseGroup()
		sg.Group, sg.ErrorCode = id, code
		resp.Groups = append(resp.Groups, sg)
	}
	return resp
}
