package kafka

import (
	"context"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/chronik-stream/chronik/broker"
)

// CreateACLs: v1-3
//
// Behaviour:
//   - Needs ALTER on the cluster (CLUSTER_AUTHORIZATION_FAILED for every
//     creation).
//   - Each binding is checked as Kafka checks it and refused with
//     INVALID_REQUEST and a message: resource type topic, group, cluster or
//     transactional id (delegation tokens and users are not supported);
//     pattern LITERAL or PREFIXED; an operation (or ALL) and ALLOW or DENY,
//     never ANY or UNKNOWN; a non-empty name, "kafka-cluster" for the
//     cluster; a "Type:name" principal; host "*" or an IP address (kept in
//     canonical form). Valid bindings are committed to the metadata log
//     and apply to every open connection; creating an existing one is a
//     no-op, as in Kafka.
//
// Version notes:
//   - v1: pattern types; Kafka 4.0's floor
//   - v2: flexible
//   - v3: resource type USER (refused: not supported)

func (s *Server) handleCreateACLs(ctx context.Context, r *request) kmsg.Response {
	req := r.kreq.(*kmsg.CreateACLsRequest)
	if !s.mayCluster(r, kmsg.ACLOperationAlter) {
		return failCreateACLs(req, s.counted(kerr.ClusterAuthorizationFailed.Code))
	}
	resp := req.ResponseKind().(*kmsg.CreateACLsResponse)
	acls := make([]broker.ACL, len(req.Creations))
	for i, c := range req.Creations {
		acls[i] = broker.ACL{ResourceType: c.ResourceType, ResourceName: c.ResourceName, PatternType: c.ResourcePatternType,
			Principal: c.Principal, Host: broker.CanonicalHost(c.Host), Operation: c.Operation, Permission: c.PermissionType}
	}
	for _, err := range s.b.CreateACLs(ctx, acls) {
		rr := kmsg.NewCreateACLsResponseResult()
		if err != nil {
			rr.ErrorCode, rr.ErrorMessage = s.codeOf(err, "create acls"), errorMessage(err)
		}
		resp.Results = append(resp.Results, rr)
	}
	return resp
}

func failCreateACLs(kreq kmsg.Request, code int16) kmsg.Response {
	req := kreq.(*kmsg.CreateACLsRequest)
	resp := req.ResponseKind().(*kmsg.CreateACLsResponse)
	for range req.Creations {
		rr := kmsg.NewCreateACLsResponseResult()
		rr.ErrorCode = code
		resp.Results = append(resp.Results, rr)
	}
	return resp
}
