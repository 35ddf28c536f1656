package kafka

import (
	"context"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// FindCoordinator: v0-6
//
// Behaviour:
//   - Groups (key type 0): the group's state lives in __consumer_offsets
//     partition broker.GroupOffsetsPartition(key, partitions), and its
//     coordinator is that partition's leader: standalone this node for
//     every group; in a cluster the partition's raft leader (its preferred
//     replica when this node does not host it), COORDINATOR_NOT_AVAILABLE
//     while the topic does not exist or no leader is known. Group calls on
//     a node that does not lead the partition answer NOT_COORDINATOR.
//   - Transactional ids (key type 1): the leader of the id's partition of
//     __transaction_state, created on the first ask (INVALID_REQUEST for
//     an empty id).
//   - Any other key type (share groups are type 2): INVALID_REQUEST.
//
// Version notes:
//   - v1: CoordinatorType, ErrorMessage, ThrottleMillis
//   - v3: flexible
//   - v4: batched CoordinatorKeys, one Coordinators entry per key (KIP-699)
//   - v5, v6: new error codes and the share coordinator type; nothing new
//     for groups

func (s *Server) handleFindCoordinator(_ context.Context, r *request) kmsg.Response {
	req := r.kreq.(*kmsg.FindCoordinatorRequest)
	resp := req.ResponseKind().(*kmsg.FindCoordinatorResponse)
	keys := req.CoordinatorKeys
	if req.Version < 4 {
		keys = []string{req.CoordinatorKey}
	}
	for _, key := range keys {
		sc := kmsg.NewFindCoordinatorResponseCoordinator()
		sc.Key = key
		if code := s.coordinatorKeyDenied(r, req.CoordinatorType, key); code != 0 {
			sc.ErrorCode, sc.NodeID, sc.Port = code, -1, -1
			resp.Coordinators = append(resp.Coordinators, sc)
			continue
		}
		c, err := s.b.FindCoordinator(req.CoordinatorType, key)
		if err != nil {
			sc.ErrorCode, sc.ErrorMessage = s.codeOf(err, "find coordinator"), errorMessage(err)
			sc.NodeID, sc.Port = -1, -1
		} else {
			sc.NodeID, sc.Host, sc.Port = c.NodeID, c.Host, c.Port
			sc.Host, sc.Port = s.addressOn(r.listener, c.NodeID, c.Host, c.Port)
		}
		resp.Coordinators = append(resp.Coordinators, sc)
	}
	if req.Version < 4 {
		sc := resp.Coordinators[0]
		resp.ErrorCode, resp.ErrorMessage = sc.ErrorCode, sc.ErrorMessage
		resp.NodeID, resp.Host, resp.Port = sc.NodeID, sc.Host, sc.Port
		resp.Coordinators = nil
	}
	return resp
}

func failFindCoordinator(kreq kmsg.Request, code int16) kmsg.Response {
	req := kreq.(*kmsg.FindCoordinatorRequest)
	resp := req.ResponseKind().(*kmsg.FindCoordinatorResponse)
	if req.Version < 4 {
		resp.ErrorCode, resp.NodeID, resp.Port = code, -1, -1
		return resp
	}
	for _, key := range req.CoordinatorKeys {
		sc := kmsg.NewFindCoordinatorResponseCoordinator()
		sc.Key, sc.ErrorCode, sc.NodeID, sc.Port = key, code, -1, -1
		resp.Coordinators = append(resp.Coordinators, sc)
	}
	return resp
}

// coordinatorKeyDenied is the code for a FindCoordinator key r's principal
// may not DESCRIBE (a group, or a transactional id), 0 if it may.
func (s *Server) coordinatorKeyDenied(r *request, coordinatorType int8, key string) int16 {
	switch coordinatorType {
	case 0:
		if !s.mayGroup(r, kmsg.ACLOperationDescribe, key) {
			return s.counted(kerr.GroupAuthorizationFailed.Code)
		}
	case 1:
		if !s.mayTxn(r, kmsg.ACLOperationDescribe, key) {
			return s.counted(kerr.TransactionalIDAuthorizationFailed.Code)
		}
	}
	return 0
}
