package kafka

import (
	"context"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/chronik-stream/chronik/broker"
)

// TxnOffsetCommit: v0-4
//
// Behaviour:
//   - Writes the offsets at once, in a transactional batch of the producer
//     in the group's __consumer_offsets partition, and answers once they
//     are durable; they become the group's committed offsets when the
//     transaction's commit marker reaches that partition (an abort drops
//     them). Until then OffsetFetch shows the previous offsets, or
//     UNSTABLE_OFFSET_COMMIT with RequireStable (KIP-447).
//   - Member checks (v3+, KIP-447): a member id, instance id or a
//     generation must name a current member of the current generation
//     (UNKNOWN_MEMBER_ID, FENCED_INSTANCE_ID, ILLEGAL_GENERATION);
//     generation -1 with no member checks nothing, which is also what
//     v0-v2 send. A rebalance in progress does not refuse the commit.
//   - A topic or partition that does not exist: UNKNOWN_TOPIC_OR_PARTITION;
//     metadata longer than 4096 bytes: OFFSET_METADATA_TOO_LARGE; an
//     empty group id: INVALID_GROUP_ID; a negative producer id:
//     INVALID_PRODUCER_ID_MAPPING; an epoch older than the producer's on
//     the group's partition: INVALID_PRODUCER_EPOCH; the coordinator
//     errors of OffsetCommit (NOT_COORDINATOR, ...).
//
// Version notes:
//   - v1: throttled after the response
//   - v2: LeaderEpoch; v0-v1 get COORDINATOR_NOT_AVAILABLE for
//     COORDINATOR_LOAD_IN_PROGRESS, which clients before 2.0 did not
//     expect (Kafka's KAFKA-7296 workaround)
//   - v3: flexible; Generation, MemberID, InstanceID
//   - v4: the code TRANSACTION_ABORTABLE may be returned (KIP-890)

func (s *Server) handleTxnOffsetCommit(ctx context.Context, r *request) kmsg.Response {
	req := r.kreq.(*kmsg.TxnOffsetCommitRequest)
	resp := req.ResponseKind().(*kmsg.TxnOffsetCommitResponse)
	generation, memberID, instanceID := int32(-1), "", (*string)(nil)
	if req.Version >= 3 {
		generation, memberID, instanceID = req.Generation, req.MemberID, req.InstanceID
	}
	var offsets []broker.GroupOffsetCommit
	for _, rt := range req.Topics {
		st := kmsg.NewTxnOffsetCommitResponseTopic()
		st.Topic = rt.Topic
		for _, rp := range rt.Partitions {
			sp := kmsg.NewTxnOffsetCommitResponseTopicPartition()
			sp.Partition = rp.Partition
			st.Partitions = append(st.Partitions, sp)
			leaderEpoch := int32(-1)
			if req.Version >= 2 {
				leaderEpoch = rp.LeaderEpoch
			}
			offsets = append(offsets, broker.GroupOffsetCommit{
				Topic: rt.Topic, Partition: rp.Partition, Offset: rp.Offset,
				LeaderEpoch: leaderEpoch, Metadata: derefString(rp.Metadata),
			})
		}
		resp.Topics = append(resp.Topics, st)
	}
	if len(offsets) == 0 {
		return resp
	}
	// On an error the broker fills codes with it, as for OffsetCommit.
	codes, _ := s.b.TxnOffsetCommit(ctx, req.Group, req.TransactionalID, req.ProducerID, req.ProducerEpoch,
		generation, memberID, instanceID, offsets)
	i := 0
	for ti := range resp.Topics {
		for pi := range resp.Topics[ti].Partitions {
			code := codes[i]
			if code == kerr.CoordinatorLoadInProgress.Code && req.Version < 2 {
				code = kerr.CoordinatorNotAvailable.Code
			}
			resp.Topics[ti].Partitions[pi].ErrorCode = code
			i++
		}
	}
	return resp
}

func failTxnOffsetCommit(kreq kmsg.Request, code int16) kmsg.Response {
	req := kreq.(*kmsg.TxnOffsetCommitRequest)
	resp := req.ResponseKind().(*kmsg.TxnOffsetCommitResponse)
	for _, rt := range req.Topics {
		st := kmsg.NewTxnOffsetCommitResponseTopic()
		st.Topic = rt.Topic
		for _, rp := range rt.Partitions {
			sp := kmsg.NewTxnOffsetCommitResponseTopicPartition()
			sp.Partition, sp.ErrorCode = rp.Partition, code
			st.Partitions = append(st.Partitions, sp)
		}
		resp.Topics = append(resp.Topics, st)
	}
	return resp
}
