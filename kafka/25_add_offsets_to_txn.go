package kafka

import (
	"context"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// AddOffsetsToTxn: v0-4
//
// Behaviour: adds the group's __consumer_offsets partition to the
// producer's transaction on its coordinator, so that a TxnOffsetCommit for
// the group commits or aborts with it. Errors as AddPartitionsToTxn, plus
// INVALID_GROUP_ID for an empty group and COORDINATOR_NOT_AVAILABLE while
// __consumer_offsets does not exist.
//
// Version notes: v3 flexible; v4 new error code (KIP-890).

func (s *Server) handleAddOffsetsToTxn(_ context.Context, r *request) kmsg.Response {
	req := r.kreq.(*kmsg.AddOffsetsToTxnRequest)
	resp := req.ResponseKind().(*kmsg.AddOffsetsToTxnResponse)
	switch {
	case !s.mayTxn(r, kmsg.ACLOperationWrite, req.TransactionalID):
		resp.ErrorCode = s.counted(kerr.TransactionalIDAuthorizationFailed.Code)
		return resp
	case !s.mayGroup(r, kmsg.ACLOperationRead, req.Group):
		resp.ErrorCode = s.counted(kerr.GroupAuthorizationFailed.Code)
		return resp
	}
	if err := s.b.AddOffsetsToTxn(req.TransactionalID, req.ProducerID, req.ProducerEpoch, req.Group); err != nil {
		resp.ErrorCode = s.codeOf(err, "add offsets to transaction")
	}
	return resp
}

func failAddOffsetsToTxn(kreq kmsg.Request, code int16) kmsg.Response {
	resp := kreq.ResponseKind().(*kmsg.AddOffsetsToTxnResponse)
	resp.ErrorCode = code
	return resp
}
