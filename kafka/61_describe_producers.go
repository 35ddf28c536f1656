package kafka

import (
	"context"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// DescribeProducers: v0-0
//
// Behaviour: the active idempotent and transactional producers of each
// partition this node leads, from the partition's producer states: id,
// epoch, last sequence, last append time and the first offset of the
// producer's open transaction (-1 when none). CoordinatorEpoch is -1
// (Chronik's markers carry no coordinator epoch). A follower answers
// NOT_LEADER_OR_FOLLOWER, an unknown partition UNKNOWN_TOPIC_OR_PARTITION.

func (s *Server) handleDescribeProducers(_ context.Context, r *request) kmsg.Response {
	req := r.kreq.(*kmsg.DescribeProducersRequest)
	resp := req.ResponseKind().(*kmsg.DescribeProducersResponse)
	for _, t := range req.Topics {
		rt := kmsg.NewDescribeProducersResponseTopic()
		rt.Topic = t.Topic
		denied := !s.mayTopic(r, kmsg.ACLOperationRead, t.Topic)
		for _, p := range t.Partitions {
			rp := kmsg.NewDescribeProducersResponseTopicPartition()
			rp.Partition = p
			if denied {
				rp.ErrorCode = s.counted(kerr.TopicAuthorizationFailed.Code)
				rt.Partitions = append(rt.Partitions, rp)
				continue
			}
			prods, err := s.b.DescribeProducers(t.Topic, p)
			if err != nil {
				rp.ErrorCode = s.codeOf(err, "describe producers")
				rp.ErrorMessage = errorMessage(err)
			}
			for _, pr := range prods {
				ap := kmsg.NewDescribeProducersResponseTopicPartitionActiveProducer()
				ap.ProducerID, ap.ProducerEpoch, ap.LastSequence = pr.ProducerID, int32(pr.ProducerEpoch), pr.LastSequence
				ap.LastTimestamp, ap.CoordinatorEpoch, ap.CurrentTxnStartOffset = pr.LastTimestamp, -1, pr.CurrentTxnStartOffset
				rp.ActiveProducers = append(rp.ActiveProducers, ap)
			}
			rt.Partitions = append(rt.Partitions, rp)
		}
		resp.Topics = append(resp.Topics, rt)
	}
	return resp
}

func failDescribeProducers(kreq kmsg.Request, code int16) kmsg.Response {
	req := kreq.(*kmsg.DescribeProducersRequest)
	resp := req.ResponseKind().(*kmsg.DescribeProducersResponse)
	for _, t := range req.Topics {
		rt := kmsg.NewDescribeProducersResponseTopic()
		rt.Topic = t.Topic
		for _, p := range t.Partitions {
			rp := kmsg.NewDescribeProducersResponseTopicPartition()
			rp.Partition, rp.ErrorCode = p, code
			rt.Partitions = append(rt.Partitions, rp)
		}
		resp.Topics = append(resp.Topics, rt)
	}
	return resp
}
