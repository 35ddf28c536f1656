package kafka

import (
	"context"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/chronik-stream/chronik/broker"
)

// ListTransactions: v0-1
//
// Behaviour: the transactions this node coordinates (clients ask every
// broker and merge), filtered by state names (unknown names are listed in
// UnknownStateFilters and match nothing), producer ids and, v1, a minimum
// running time (DurationFilterMillis: transactions started at least that
// long ago; -1 or 0 none).
//
// Version notes: v1 DurationFilterMillis (KIP-994). v2's
// TransactionalIDPattern is not advertised.

func (s *Server) handleListTransactions(_ context.Context, r *request) kmsg.Response {
	req := r.kreq.(*kmsg.ListTransactionsRequest)
	resp := req.ResponseKind().(*kmsg.ListTransactionsResponse)
	for _, f := range req.StateFilters {
		if _, ok := broker.ParseTxnState(f); !ok {
			resp.UnknownStateFilters = append(resp.UnknownStateFilters, f)
		}
	}
	txns, err := s.b.ListTransactions(req.StateFilters, req.ProducerIDFilters)
	if err != nil {
		resp.ErrorCode = s.codeOf(err, "list transactions")
		return resp
	}
	cutoff := int64(-1)
	if req.Version >= 1 && req.DurationFilterMillis > 0 {
		cutoff = time.Now().UnixMilli() - req.DurationFilterMillis
	}
	for _, t := range txns {
		if cutoff >= 0 && (t.StartMs <= 0 || t.StartMs > cutoff) {
			continue
		}
		st := kmsg.NewListTransactionsResponseTransactionState()
		st.TransactionalID, st.ProducerID, st.TransactionState = t.TransactionalID, t.ProducerID, t.State.String()
		resp.TransactionStates = append(resp.TransactionStates, st)
	}
	return resp
}

func failListTransactions(kreq kmsg.Request, code int16) kmsg.Response {
	resp := kreq.ResponseKind().(*kmsg.ListTransactionsResponse)
	resp.ErrorCode = code
	return resp
}
