package kafka

import (
	"context"
	"regexp"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/chronik-stream/chronik/broker"
)

// ListTransactions: v0-2
//
// Behaviour: the transactions this node coordinates (clients ask every
// broker and merge), filtered by state names (unknown names are listed in
// UnknownStateFilters and match nothing), producer ids and, v1, a minimum
// running time (DurationFilterMillis: transactions started at least that
// long ago; -1 or 0 none), and v2 a transactional id pattern; the filters
// are ANDed.
//
// Version notes:
//   - v1: DurationFilterMillis (KIP-994)
//   - v2: TransactionalIDPattern (KIP-1152), a regular expression the
//     whole transactional id must match (as Java's Matcher.matches); null
//     or empty: no filter. Kafka compiles it with RE2/J, whose syntax is
//     Go's regexp's (RE2). A pattern that does not compile answers
//     INVALID_REGULAR_EXPRESSION with no transactions, as Kafka does.

func (s *Server) handleListTransactions(_ context.Context, r *request) kmsg.Response {
	req := r.kreq.(*kmsg.ListTransactionsRequest)
	resp := req.ResponseKind().(*kmsg.ListTransactionsResponse)
	var idMatches func(string) bool
	if req.Version >= 2 && req.TransactionalIDPattern != nil && *req.TransactionalIDPattern != "" {
		m, err := wholeMatch(*req.TransactionalIDPattern)
		if err != nil {
			resp.ErrorCode = s.counted(kerr.InvalidRegularExpression.Code)
			return resp
		}
		idMatches = m
	}
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
		if idMatches != nil && !idMatches(t.TransactionalID) {
			continue
		}
		if !s.mayTxn(r, kmsg.ACLOperationDescribe, t.TransactionalID) {
			continue
		}
		st := kmsg.NewListTransactionsResponseTransactionState()
		st.TransactionalID, st.ProducerID, st.TransactionState = t.TransactionalID, t.ProducerID, t.State.String()
		resp.TransactionStates = append(resp.TransactionStates, st)
	}
	return resp
}

// wholeMatch compiles a pattern that must match a whole string, as Java's
// Matcher.matches() requires. A string is matched whole exactly when the
// leftmost-longest match in it starts at 0 and ends at its end (if a match
// spans it, the leftmost match starts at 0 and the longest from there is
// all of it). Wrapping the text in ^(?:...)$ instead would be wrong for
// patterns such as `\Q...` (quoted to the end) or "a)|(b".
func wholeMatch(pattern string) (func(string) bool, error) {
	re, err := regexp.Compile(pattern)
	if err != nil {
		return nil, err
	}
	re.Longest()
	return func(s string) bool {
		loc := re.FindStringIndex(s)
		return loc != nil && loc[0] == 0 && loc[1] == len(s)
	}, nil
}

func failListTransactions(kreq kmsg.Request, code int16) kmsg.Response {
	resp := kreq.ResponseKind().(*kmsg.ListTransactionsResponse)
	resp.ErrorCode = code
	return resp
}
