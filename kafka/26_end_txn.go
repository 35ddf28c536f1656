package kafka

import (
	"context"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// EndTxn: v0-5
//
// Behaviour: commits (Commit true) or aborts the producer's ongoing
// transaction on its coordinator. The answer comes once the decision is
// durable in __transaction_state; the markers are written into the
// transaction's partitions afterwards, as Kafka does (a read_committed
// consumer sees the records once the marker of their partition is in).
// A retry of a finished commit or abort answers NONE; the other outcome
// INVALID_TXN_STATE; fencing errors as AddPartitionsToTxn.
//
// Version notes:
//   - v3: flexible; v4: new error code TRANSACTION_ABORTABLE (KIP-890)
//   - v5 (KIP-890 part 2, transaction version 2): the coordinator bumps the
//     producer's epoch with every EndTxn (the markers carry the new epoch)
//     and answers the ProducerID and ProducerEpoch the producer continues
//     with: the same id at epoch+1, or a new id at epoch 0 once the epoch
//     ran out. A retry is recognised by its epoch being one behind and
//     gets the same answer. An abort with nothing added succeeds (bumping
//     the epoch). As in Kafka, the version alone selects this protocol
//     (whatever --transaction-version says); clients send v5 only when
//     ApiVersions finalizes transaction.version 2, as Chronik does by
//     default (franz-go and Java's client then also skip
//     AddPartitionsToTxn and AddOffsetsToTxn: Produce v12 and
//     TxnOffsetCommit v5 add their partitions).
//     On an error ProducerID and ProducerEpoch are -1.

func (s *Server) handleEndTxn(_ context.Context, r *request) kmsg.Response {
	req := r.kreq.(*kmsg.EndTxnRequest)
	resp := req.ResponseKind().(*kmsg.EndTxnResponse)
	if !s.mayTxn(r, kmsg.ACLOperationWrite, req.TransactionalID) {
		resp.ErrorCode = s.counted(kerr.TransactionalIDAuthorizationFailed.Code)
		return resp
	}
	bump := req.Version >= 5
	pid, epoch, err := s.b.EndTxn(req.TransactionalID, req.ProducerID, req.ProducerEpoch, req.Commit, bump)
	if err != nil {
		resp.ErrorCode = s.codeOf(err, "end transaction")
		return resp
	}
	if bump {
		resp.ProducerID, resp.ProducerEpoch = pid, epoch
	}
	return resp
}

func failEndTxn(kreq kmsg.Request, code int16) kmsg.Response {
	resp := kreq.ResponseKind().(*kmsg.EndTxnResponse)
	resp.ErrorCode = code
	return resp
}
