package kafka

import (
	"context"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// EndTxn: v0-4
//
// Behaviour: commits (Commit true) or aborts the producer's ongoing
// transaction on its coordinator. The answer comes once the decision is
// durable in __transaction_state; the markers are written into the
// transaction's partitions afterwards, as Kafka does (a read_committed
// consumer sees the records once the marker of their partition is in).
// A retry of a finished commit or abort answers NONE; the other outcome
// INVALID_TXN_STATE; fencing errors as AddPartitionsToTxn.
//
// Version notes: v3 flexible; v4 new error code (KIP-890). v5 (the epoch
// bumped on every transaction, KIP-890 part 2) is not advertised: clients
// keep the transaction protocol of version 1.

func (s *Server) handleEndTxn(_ context.Context, r *request) kmsg.Response {
	req := r.kreq.(*kmsg.EndTxnRequest)
	resp := req.ResponseKind().(*kmsg.EndTxnResponse)
	if err := s.b.EndTxn(req.TransactionalID, req.ProducerID, req.ProducerEpoch, req.Commit); err != nil {
		resp.ErrorCode = s.codeOf(err, "end transaction")
	}
	return resp
}

func failEndTxn(kreq kmsg.Request, code int16) kmsg.Response {
	resp := kreq.ResponseKind().(*kmsg.EndTxnResponse)
	resp.ErrorCode = code
	return resp
}
