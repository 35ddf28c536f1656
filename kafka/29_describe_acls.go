package kafka

import (
	"context"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/chronik-stream/chronik/broker"
)

// DescribeACLs: v1-3
//
// Behaviour:
//   - Needs DESCRIBE on the cluster (CLUSTER_AUTHORIZATION_FAILED).
//   - Lists the ACL bindings the filter matches (Kafka's AclBindingFilter:
//     ANY resource type, pattern type, operation and permission and a null
//     name, principal or host match everything; pattern type MATCH selects
//     the bindings that apply to the named resource: its literal name, the
//     literal "*" and every prefix), grouped by resource pattern, sorted.
//     A filter with an UNKNOWN (or undefined) code is INVALID_REQUEST.
//   - ACLs can be listed, created and deleted whether or not the authorizer
//     is on (as Redpanda; Kafka answers SECURITY_DISABLED without one), so
//     that they can be in place before it is turned on.
//
// Version notes:
//   - v1: pattern types (PREFIXED, ANY, MATCH); Kafka 4.0's floor
//   - v2: flexible
//   - v3: resource type USER (accepted in filters; no binding has it)

func (s *Server) handleDescribeACLs(_ context.Context, r *request) kmsg.Response {
	req := r.kreq.(*kmsg.DescribeACLsRequest)
	resp := req.ResponseKind().(*kmsg.DescribeACLsResponse)
	if !s.mayCluster(r, kmsg.ACLOperationDescribe) {
		resp.ErrorCode = s.counted(kerr.ClusterAuthorizationFailed.Code)
		return resp
	}
	f := aclFilter(req.ResourceType, req.ResourceName, req.ResourcePatternType, req.Principal, req.Host, req.Operation, req.PermissionType)
	if err := f.Validate(); err != nil {
		resp.ErrorCode, resp.ErrorMessage = s.counted(kerr.InvalidRequest.Code), errorMessage(err)
		return resp
	}
	for _, a := range s.b.DescribeACLs(f) {
		n := len(resp.Resources)
		if n == 0 || resp.Resources[n-1].ResourceType != a.ResourceType || resp.Resources[n-1].ResourceName != a.ResourceName ||
			resp.Resources[n-1].ResourcePatternType != a.PatternType {
			rr := kmsg.NewDescribeACLsResponseResource()
			rr.ResourceType, rr.ResourceName, rr.ResourcePatternType = a.ResourceType, a.ResourceName, a.PatternType
			resp.Resources = append(resp.Resources, rr)
			n++
		}
		ra := kmsg.NewDescribeACLsResponseResourceACL()
		ra.Principal, ra.Host, ra.Operation, ra.PermissionType = a.Principal, a.Host, a.Operation, a.Permission
		resp.Resources[n-1].ACLs = append(resp.Resources[n-1].ACLs, ra)
	}
	return resp
}

// aclFilter makes a broker filter from a request's fields: null strings
// match anything, a host is compared in canonical form.
func aclFilter(rt kmsg.ACLResourceType, name *string, pt kmsg.ACLResourcePatternType, principal, host *string,
	op kmsg.ACLOperation, perm kmsg.ACLPermissionType) broker.ACLFilter {
	f := broker.ACLFilter{ResourceType: rt, PatternType: pt, Operation: op, Permission: perm}
	if name != nil {
		f.ResourceName = *name
	}
	if principal != nil {
		f.Principal = *principal
	}
	if host != nil {
		f.Host = broker.CanonicalHost(*host)
	}
	return f
}

func failDescribeACLs(kreq kmsg.Request, code int16) kmsg.Response {
	resp := kreq.ResponseKind().(*kmsg.DescribeACLsResponse)
	resp.ErrorCode = code
	return resp
}
