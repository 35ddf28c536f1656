package kafka

import (
	"context"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/chronik-stream/chronik/broker"
)

// AddPartitionsToTxn: v0-5
//
// Behaviour:
//   - v0-v3 (clients): adds partitions to the producer's transaction on its
//     coordinator (this node must lead the id's __transaction_state
//     partition, else NOT_COORDINATOR). Unknown topics or partitions get
//     UNKNOWN_TOPIC_OR_PARTITION and the rest OPERATION_NOT_ATTEMPTED, as
//     Kafka; fencing and state errors come from the state machine
//     (INVALID_PRODUCER_ID_MAPPING, PRODUCER_FENCED / INVALID_PRODUCER_EPOCH,
//     CONCURRENT_TRANSACTIONS, INVALID_TXN_STATE).
//   - Authorization, as Kafka: v0-v3 need WRITE on the transactional id
//     (TRANSACTIONAL_ID_AUTHORIZATION_FAILED) and on each topic
//     (TOPIC_AUTHORIZATION_FAILED, the rest OPERATION_NOT_ATTEMPTED); v4+
//     is for brokers only and needs CLUSTER_ACTION on the cluster
//     (CLUSTER_AUTHORIZATION_FAILED).
//   - v4+ (between brokers, KIP-890): several transactions per request;
//     VerifyOnly checks that the partitions are in the transaction without
//     adding them (a partition leader asks before a transactional write).
//     A request-level error only when the whole request fails.
//
// Version notes:
//   - v3: flexible; v4: batched transactions, VerifyOnly, top-level
//     ErrorCode; v5: new error code TRANSACTION_ABORTABLE (KIP-890)

func (s *Server) handleAddPartitionsToTxn(_ context.Context, r *request) kmsg.Response {
	req := r.kreq.(*kmsg.AddPartitionsToTxnRequest)
	resp := req.ResponseKind().(*kmsg.AddPartitionsToTxnResponse)
	if req.Version >= 4 && !s.mayCluster(r, kmsg.ACLOperationClusterAction) {
		return failAddPartitionsToTxn(req, s.counted(kerr.ClusterAuthorizationFailed.Code))
	}
	if req.Version < 4 {
		parts := txnParts(func(yield func(string, []int32)) {
			for _, t := range req.Topics {
				yield(t.Topic, t.Partitions)
			}
		})
		var (
			codes []int16
			err   error
			code  int16
		)
		switch denied := s.deniedTxnTopics(r, parts); {
		case !s.mayTxn(r, kmsg.ACLOperationWrite, req.TransactionalID):
			code = s.counted(kerr.TransactionalIDAuthorizationFailed.Code)
		case denied != nil:
			codes = denied
		default:
			if codes, err = s.b.AddPartitionsToTxn(req.TransactionalID, req.ProducerID, req.ProducerEpoch, parts, false); err != nil {
				code = s.codeOf(err, "add partitions to transaction")
			}
		}
		txnPartsResponse(parts, codes, code, func(topic string, ps []kmsg.AddPartitionsToTxnResponseTopicPartition) {
			t := kmsg.NewAddPartitionsToTxnResponseTopic()
			t.Topic, t.Partitions = topic, ps
			resp.Topics = append(resp.Topics, t)
		})
		return resp
	}
	for _, tx := range req.Transactions {
		parts := txnParts(func(yield func(string, []int32)) {
			for _, t := range tx.Topics {
				yield(t.Topic, t.Partitions)
			}
		})
		codes, err := s.b.AddPartitionsToTxn(tx.TransactionalID, tx.ProducerID, tx.ProducerEpoch, parts, tx.VerifyOnly)
		code := int16(0)
		if err != nil {
			code = s.codeOf(err, "add partitions to transaction")
		}
		rt := kmsg.NewAddPartitionsToTxnResponseTransaction()
		rt.TransactionalID = tx.TransactionalID
		txnPartsResponse(parts, codes, code, func(topic string, ps []kmsg.AddPartitionsToTxnResponseTopicPartition) {
			t := kmsg.NewAddPartitionsToTxnResponseTransactionTopic()
			t.Topic = topic
			for _, p := range ps {
				tp := kmsg.NewAddPartitionsToTxnResponseTransactionTopicPartition()
				tp.Partition, tp.ErrorCode = p.Partition, p.ErrorCode
				t.Partitions = append(t.Partitions, tp)
			}
			rt.Topics = append(rt.Topics, t)
		})
		resp.Transactions = append(resp.Transactions, rt)
	}
	return resp
}

// txnParts flattens a request's topics and partitions.
// deniedTxnTopics returns, if r's principal may not WRITE to some of the
// topics of parts, the codes Kafka answers: TOPIC_AUTHORIZATION_FAILED for
// their partitions and OPERATION_NOT_ATTEMPTED for the others; nil if it
// may write to all.
func (s *Server) deniedTxnTopics(r *request, parts []broker.TxnTopicPartition) []int16 {
	var codes []int16
	for i, p := range parts {
		if !s.mayTopic(r, kmsg.ACLOperationWrite, p.Topic) {
			if codes == nil {
				codes = make([]int16, len(parts))
			}
			codes[i] = s.counted(kerr.TopicAuthorizationFailed.Code)
		}
	}
	for i := range codes {
		if codes[i] == 0 {
			codes[i] = kerr.OperationNotAttempted.Code
		}
	}
	return codes
}

func txnParts(each func(yield func(string, []int32))) []broker.TxnTopicPartition {
	var parts []broker.TxnTopicPartition
	each(func(topic string, ps []int32) {
		for _, p := range ps {
			parts = append(parts, broker.TxnTopicPartition{Topic: topic, Partition: p})
		}
	})
	return parts
}

// txnPartsResponse groups per-partition codes by topic, in request order
// (code, when non-zero, answers every partition) and calls add per topic.
func txnPartsResponse(parts []broker.TxnTopicPartition, codes []int16, code int16, add func(string, []kmsg.AddPartitionsToTxnResponseTopicPartition)) {
	var order []string
	by := map[string][]kmsg.AddPartitionsToTxnResponseTopicPartition{}
	for i, p := range parts {
		c := code
		if c == 0 && i < len(codes) {
			c = codes[i]
		}
		if _, ok := by[p.Topic]; !ok {
			order = append(order, p.Topic)
		}
		rp := kmsg.NewAddPartitionsToTxnResponseTopicPartition()
		rp.Partition, rp.ErrorCode = p.Partition, c
		by[p.Topic] = append(by[p.Topic], rp)
	}
	for _, t := range order {
		add(t, by[t])
	}
}

func failAddPartitionsToTxn(kreq kmsg.Request, code int16) kmsg.Response {
	req := kreq.(*kmsg.AddPartitionsToTxnRequest)
	resp := req.ResponseKind().(*kmsg.AddPartitionsToTxnResponse)
	if req.Version >= 4 {
		resp.ErrorCode = code
		return resp
	}
	for _, t := range req.Topics {
		rt := kmsg.NewAddPartitionsToTxnResponseTopic()
		rt.Topic = t.Topic
		for _, p := range t.Partitions {
			rp := kmsg.NewAddPartitionsToTxnResponseTopicPartition()
			rp.Partition, rp.ErrorCode = p, code
			rt.Partitions = append(rt.Partitions, rp)
		}
		resp.Topics = append(resp.Topics, rt)
	}
	return resp
}
