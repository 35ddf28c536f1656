package kafka

import (
	"context"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// DescribeTransactions: v0-0
//
// Behaviour: each transactional id's state as its coordinator holds it
// (state name, timeout, start time, producer id and epoch, partitions);
// NOT_COORDINATOR when this node is not the id's coordinator,
// TRANSACTIONAL_ID_NOT_FOUND when it is and the id is unknown,
// COORDINATOR_LOAD_IN_PROGRESS while loading.

func (s *Server) handleDescribeTransactions(_ context.Context, r *request) kmsg.Response {
	req := r.kreq.(*kmsg.DescribeTransactionsRequest)
	resp := req.ResponseKind().(*kmsg.DescribeTransactionsResponse)
	for _, id := range req.TransactionalIDs {
		st := kmsg.NewDescribeTransactionsResponseTransactionState()
		st.TransactionalID = id
		if !s.mayTxn(r, kmsg.ACLOperationDescribe, id) {
			st.ErrorCode = s.counted(kerr.TransactionalIDAuthorizationFailed.Code)
			st.ProducerID, st.ProducerEpoch, st.StartTimestamp = -1, -1, -1
			resp.TransactionStates = append(resp.TransactionStates, st)
			continue
		}
		d, err := s.b.DescribeTransactions(id)
		if err != nil {
			st.ErrorCode = s.codeOf(err, "describe transactions")
			st.ProducerID, st.ProducerEpoch, st.StartTimestamp = -1, -1, -1
			resp.TransactionStates = append(resp.TransactionStates, st)
			continue
		}
		st.State, st.TimeoutMillis, st.ProducerID, st.ProducerEpoch = d.State.String(), d.TimeoutMs, d.ProducerID, d.ProducerEpoch
		st.StartTimestamp = d.StartMs
		if d.StartMs <= 0 {
			st.StartTimestamp = -1
		}
		for _, p := range d.Partitions {
			if !s.mayTopic(r, kmsg.ACLOperationDescribe, p.Topic) {
				continue // only the partitions the principal may describe, as Kafka
			}
			n := len(st.Topics)
			if n == 0 || st.Topics[n-1].Topic != p.Topic {
				t := kmsg.NewDescribeTransactionsResponseTransactionStateTopic()
				t.Topic = p.Topic
				st.Topics = append(st.Topics, t)
				n++
			}
			st.Topics[n-1].Partitions = append(st.Topics[n-1].Partitions, p.Partition)
		}
		resp.TransactionStates = append(resp.TransactionStates, st)
	}
	return resp
}

func failDescribeTransactions(kreq kmsg.Request, code int16) kmsg.Response {
	req := kreq.(*kmsg.DescribeTransactionsRequest)
	resp := req.ResponseKind().(*kmsg.DescribeTransactionsResponse)
	for _, id := range req.TransactionalIDs {
		st := kmsg.NewDescribeTransactionsResponseTransactionState()
		st.TransactionalID, st.ErrorCode = id, code
		st.ProducerID, st.ProducerEpoch, st.StartTimestamp = -1, -1, -1
		resp.TransactionStates = append(resp.TransactionStates, st)
	}
	return resp
}
