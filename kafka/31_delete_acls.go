package kafka

import (
	"context"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/chronik-stream/chronik/broker"
)

// DeleteACLs: v1-3
//
// Behaviour:
//   - Needs ALTER on the cluster (CLUSTER_AUTHORIZATION_FAILED for every
//     filter).
//   - Deletes every binding each filter matches (DescribeACLs' matching)
//     and answers, per filter, the bindings it matched; a binding matched
//     by two filters is listed under both. A filter with an UNKNOWN (or
//     undefined) code is INVALID_REQUEST and deletes nothing. The deletion
//     is committed to the metadata log and applies to every open
//     connection.
//
// Version notes:
//   - v1: pattern types; Kafka 4.0's floor
//   - v2: flexible
//   - v3: resource type USER (accepted in filters; no binding has it)

func (s *Server) handleDeleteACLs(ctx context.Context, r *request) kmsg.Response {
	req := r.kreq.(*kmsg.DeleteACLsRequest)
	if !s.mayCluster(r, kmsg.ACLOperationAlter) {
		return failDeleteACLs(req, s.counted(kerr.ClusterAuthorizationFailed.Code))
	}
	resp := req.ResponseKind().(*kmsg.DeleteACLsResponse)
	filters := make([]broker.ACLFilter, len(req.Filters))
	for i, f := range req.Filters {
		filters[i] = aclFilter(f.ResourceType, f.ResourceName, f.ResourcePatternType, f.Principal, f.Host, f.Operation, f.PermissionType)
	}
	matched, errs := s.b.DeleteACLs(ctx, filters)
	for i := range filters {
		rr := kmsg.NewDeleteACLsResponseResult()
		if err := errs[i]; err != nil {
			rr.ErrorCode, rr.ErrorMessage = s.codeOf(err, "delete acls"), errorMessage(err)
		}
		for _, a := range matched[i] {
			m := kmsg.NewDeleteACLsResponseResultMatchingACL()
			m.ResourceType, m.ResourceName, m.ResourcePatternType = a.ResourceType, a.ResourceName, a.PatternType
			m.Principal, m.Host, m.Operation, m.PermissionType = a.Principal, a.Host, a.Operation, a.Permission
			rr.MatchingACLs = append(rr.MatchingACLs, m)
		}
		resp.Results = append(resp.Results, rr)
	}
	return resp
}

func failDeleteACLs(kreq kmsg.Request, code int16) kmsg.Response {
	req := kreq.(*kmsg.DeleteACLsRequest)
	resp := req.ResponseKind().(*kmsg.DeleteACLsResponse)
	for range req.Filters {
		rr := kmsg.NewDeleteACLsResponseResult()
		rr.ErrorCode = code
		resp.Results = append(resp.Results, rr)
	}
	return resp
}
