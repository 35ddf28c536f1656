package kafka

import (
	"context"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// UnregisterBroker: v0-0
//
// Behaviour:
//   - In a cluster, removes a node: it leaves the controller group, the
//     broker list and every partition's replicas (which keep one replica
//     fewer; nothing is moved). BROKER_ID_NOT_REGISTERED for a node that is
//     not a member, INVALID_REQUEST for the last node, NOT_CONTROLLER or
//     REQUEST_TIMED_OUT while the controller group has no leader.
//   - Standalone: INVALID_REQUEST for this node's own id,
//     BROKER_ID_NOT_REGISTERED for any other.
//   - `chronik cluster remove-node ID` sends it.
//
// Version notes:
//   - v0: flexible from the start

func (s *Server) handleUnregisterBroker(_ context.Context, r *request) kmsg.Response {
	req := r.kreq.(*kmsg.UnregisterBrokerRequest)
	resp := req.ResponseKind().(*kmsg.UnregisterBrokerResponse)
	if !s.mayCluster(r, kmsg.ACLOperationAlter) {
		resp.ErrorCode = s.counted(kerr.ClusterAuthorizationFailed.Code)
		return resp
	}
	if err := s.b.UnregisterBroker(req.BrokerID); err != nil {
		resp.ErrorCode = s.codeOf(err, "unregister broker")
		resp.ErrorMessage = errorMessage(err)
	}
	return resp
}

func failUnregisterBroker(kreq kmsg.Request, code int16) kmsg.Response {
	resp := kreq.ResponseKind().(*kmsg.UnregisterBrokerResponse)
	resp.ErrorCode = code
	return resp
}
