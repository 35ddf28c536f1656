package kafka

import (
	"context"
	"slices"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/chronik-stream/chronik/broker"
)

// DescribeUserSCRAMCredentials: v0-0
//
// Behaviour (Kafka's, KIP-554):
//   - No users named (null or empty): every user with a credential, each
//     with its mechanisms and iterations (never salts or keys).
//   - A named user without credentials: RESOURCE_NOT_FOUND in its result.
//   - A user named twice: DUPLICATE_RESOURCE in its one result.
//
// Version notes:
//   - v0: flexible from the start

func (s *Server) handleDescribeUserScramCredentials(_ context.Context, r *request) kmsg.Response {
	req := r.kreq.(*kmsg.DescribeUserSCRAMCredentialsRequest)
	resp := req.ResponseKind().(*kmsg.DescribeUserSCRAMCredentialsResponse)
	if !s.mayCluster(r, kmsg.ACLOperationDescribe) {
		// Kafka: DESCRIBE on the cluster, else a top-level error.
		resp.ErrorCode = s.counted(kerr.ClusterAuthorizationFailed.Code)
		resp.ErrorMessage = kmsg.StringPtr("describing SCRAM credentials needs DESCRIBE on the cluster")
		return resp
	}
	users := s.b.ScramUsers()
	if len(req.Users) == 0 {
		for _, u := range users {
			resp.Results = append(resp.Results, scramResult(u))
		}
		return resp
	}
	count := map[string]int{}
	for _, u := range req.Users {
		count[u.Name]++
	}
	for _, u := range req.Users {
		n := count[u.Name]
		if n == 0 {
			continue // a duplicate already answered
		}
		count[u.Name] = 0
		res := kmsg.NewDescribeUserSCRAMCredentialsResponseResult()
		res.User = u.Name
		i := slices.IndexFunc(users, func(x broker.ScramUser) bool { return x.Name == u.Name })
		switch {
		case n > 1:
			res.ErrorCode = s.counted(kerr.DuplicateResource.Code)
			res.ErrorMessage = kmsg.StringPtr("Cannot describe SCRAM credentials for the same user twice in a single request: " + u.Name)
		case i < 0:
			res.ErrorCode = s.counted(kerr.ResourceNotFound.Code)
			res.ErrorMessage = kmsg.StringPtr("Attempt to describe a user credential that does not exist: " + u.Name)
		default:
			res = scramResult(users[i])
		}
		resp.Results = append(resp.Results, res)
	}
	return resp
}

func scramResult(u broker.ScramUser) kmsg.DescribeUserSCRAMCredentialsResponseResult {
	res := kmsg.NewDescribeUserSCRAMCredentialsResponseResult()
	res.User = u.Name
	for _, m := range u.Mechanisms {
		ci := kmsg.NewDescribeUserSCRAMCredentialsResponseResultCredentialInfo()
		ci.Mechanism, ci.Iterations = int8(m.Mechanism), m.Iterations
		res.CredentialInfos = append(res.CredentialInfos, ci)
	}
	return res
}

func failDescribeUserScramCredentials(kreq kmsg.Request, code int16) kmsg.Response {
	resp := kreq.ResponseKind().(*kmsg.DescribeUserSCRAMCredentialsResponse)
	resp.ErrorCode = code
	return resp
}
