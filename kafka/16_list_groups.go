package kafka

import (
	"context"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// ListGroups: v0-5
//
// Behaviour:
//   - Every group this node coordinates (all of them), sorted by id, with
//     its protocol type ("" for groups that only store offsets).
//   - v4+ StatesFilter and v5 TypesFilter keep the groups in one of the
//     states / of one of the types, compared case-insensitively as Kafka
//     does; every group here is of type "classic".
//
// Version notes:
//   - v1: ThrottleMillis
//   - v3: flexible
//   - v4: StatesFilter, GroupState (KIP-518)
//   - v5: TypesFilter, GroupType (KIP-848)

func (s *Server) handleListGroups(_ context.Context, r *request) kmsg.Response {
	req := r.kreq.(*kmsg.ListGroupsRequest)
	resp := req.ResponseKind().(*kmsg.ListGroupsResponse)
	groups, err := s.b.ListGroups(req.StatesFilter, req.TypesFilter)
	if err != nil {
		resp.ErrorCode = s.groupCode(err, "list groups")
		return resp
	}
	all := s.mayCluster(r, kmsg.ACLOperationDescribe)
	for _, g := range groups {
		if !all && !s.mayGroup(r, kmsg.ACLOperationDescribe, g.GroupID) {
			continue
		}
		sg := kmsg.NewListGroupsResponseGroup()
		sg.Group, sg.ProtocolType, sg.GroupState, sg.GroupType = g.GroupID, g.ProtocolType, g.State.String(), "classic"
		resp.Groups = append(resp.Groups, sg)
	}
	return resp
}

func failListGroups(kreq kmsg.Request, code int16) kmsg.Response {
	resp := kreq.ResponseKind().(*kmsg.ListGroupsResponse)
	resp.ErrorCode = code
	return resp
}
