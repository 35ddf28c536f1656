package kafka

import (
	"context"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// InitProducerID: v0-5
//
// Behaviour:
//   - Without a transactional ID: a new producer ID at epoch 0, for
//     idempotent producers. With ProducerID/ProducerEpoch (v3+) the broker
//     bumps the epoch of that producer, or answers INVALID_PRODUCER_EPOCH /
//     UNKNOWN_PRODUCER_ID.
//   - With a transactional ID: the id's transaction coordinator (this node
//     must lead its __transaction_state partition, else NOT_COORDINATOR)
//     fences earlier epochs of the id and aborts its open transaction first
//     (CONCURRENT_TRANSACTIONS: the client retries);
//     INVALID_TRANSACTION_TIMEOUT above --transaction-max-timeout.
//
// Version notes:
//   - v2: flexible
//   - v3: ProducerID and ProducerEpoch in the request (KIP-360)
//   - v4, v5: new error codes for transactional producers (KIP-588,
//     KIP-890); nothing new on the wire

func (s *Server) handleInitProducerID(_ context.Context, r *request) kmsg.Response {
	req := r.kreq.(*kmsg.InitProducerIDRequest)
	resp := req.ResponseKind().(*kmsg.InitProducerIDResponse)
	switch id := req.TransactionalID; {
	case id != nil && *id != "":
		if !s.mayTxn(r, kmsg.ACLOperationWrite, *id) {
			resp.ErrorCode = s.counted(kerr.TransactionalIDAuthorizationFailed.Code)
			return resp
		}
	case !s.mayCluster(r, kmsg.ACLOperationIdempotentWrite) &&
		!s.b.AuthorizeAny(r.principal, r.clientIP, kmsg.ACLOperationWrite, kmsg.ACLResourceTypeTopic):
		// An idempotent producer: IDEMPOTENT_WRITE on the cluster, or
		// WRITE on some topic (KIP-679).
		resp.ErrorCode = s.counted(kerr.ClusterAuthorizationFailed.Code)
		return resp
	}
	pid, epoch := int64(-1), int16(-1)
	if req.Version >= 3 {
		pid, epoch = req.ProducerID, req.ProducerEpoch
	}
	id, ep, err := s.b.InitProducerID(req.TransactionalID, req.TransactionTimeoutMillis, pid, epoch)
	if err != nil {
		resp.ErrorCode = s.codeOf(err, "init producer id")
		return resp
	}
	resp.ProducerID, resp.ProducerEpoch = id, ep
	return resp
}

func failInitProducerID(kreq kmsg.Request, code int16) kmsg.Response {
	resp := kreq.ResponseKind().(*kmsg.InitProducerIDResponse)
	resp.ErrorCode = code
	return resp
}
