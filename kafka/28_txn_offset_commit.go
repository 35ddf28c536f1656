package kafka

import (
	"context"
	"errors"
	"sync"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/chronik-stream/chronik/broker"
)

// TxnOffsetCommit: v0-6
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
//     v0-v2 send. A rebalance in progress does not refuse the commit. A
//     group that does not exist is created by a commit with generation
//     -1 (a group that only stores offsets); with a generation it is
//     ILLEGAL_GENERATION (v6: GROUP_ID_NOT_FOUND).
//   - A topic or partition that does not exist: UNKNOWN_TOPIC_OR_PARTITION
//     (v6: a topic id that does not exist, UNKNOWN_TOPIC_ID); metadata
//     longer than 4096 bytes: OFFSET_METADATA_TOO_LARGE; an empty group
//     id: INVALID_GROUP_ID; a negative producer id:
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
//   - v4: the code TRANSACTION_ABORTABLE may be returned (KIP-890); v0-v3
//     get INVALID_TXN_STATE for it, as Kafka maps it for them
//   - v5 (KIP-890 part 2): the request also does what AddOffsetsToTxn did
//     (Kafka: "the TxnOffsetCommit request will also include the function
//     for a AddOffsetsToTxn call"): before the offsets are written the
//     group's __consumer_offsets partition joins the producer's
//     transaction on its coordinator (nothing changes if it is in it
//     already). Its errors answer every partition: the transaction
//     coordinator unavailable COORDINATOR_NOT_AVAILABLE, a fenced epoch
//     INVALID_PRODUCER_EPOCH, an unknown producer
//     INVALID_PRODUCER_ID_MAPPING, CONCURRENT_TRANSACTIONS while the
//     previous transaction's markers are written (retried for up to
//     100 ms first). Clients send v5 only with transaction.version 2,
//     which Chronik finalizes by default; with --transaction-version 1 a
//     v5 request is served as v4: the group's partition must have been
//     added with AddOffsetsToTxn (else TRANSACTION_ABORTABLE).
//   - v6 (KIP-1319): topics by TopicID instead of name (an unknown id:
//     UNKNOWN_TOPIC_ID); GROUP_ID_NOT_FOUND for a commit with a
//     generation to a group that does not exist, where earlier versions
//     get ILLEGAL_GENERATION. (Its STALE_MEMBER_EPOCH is for KIP-848
//     consumer groups, which Chronik does not have.)

func (s *Server) handleTxnOffsetCommit(ctx context.Context, r *request) kmsg.Response {
	req := r.kreq.(*kmsg.TxnOffsetCommitRequest)
	resp := req.ResponseKind().(*kmsg.TxnOffsetCommitResponse)
	switch {
	case !s.mayTxn(r, kmsg.ACLOperationWrite, req.TransactionalID):
		return failTxnOffsetCommit(req, s.counted(kerr.TransactionalIDAuthorizationFailed.Code))
	case !s.mayGroup(r, kmsg.ACLOperationRead, req.Group):
		return failTxnOffsetCommit(req, s.counted(kerr.GroupAuthorizationFailed.Code))
	}
	generation, memberID, instanceID := int32(-1), "", (*string)(nil)
	if req.Version >= 3 {
		generation, memberID, instanceID = req.Generation, req.MemberID, req.InstanceID
	}
	type slot struct{ topic, partition, commit int } // commit: index into offsets, -1 if none
	var slots []slot
	var offsets []broker.GroupOffsetCommit
	for ti, rt := range req.Topics {
		st := kmsg.NewTxnOffsetCommitResponseTopic()
		st.Topic, st.TopicID = rt.Topic, rt.TopicID
		info, known := s.topicOf(req.Version, rt)
		denied := known && !s.mayTopic(r, kmsg.ACLOperationRead, info.Name) ||
			!known && req.Version < 6 && !s.mayTopic(r, kmsg.ACLOperationRead, rt.Topic)
		for pi, rp := range rt.Partitions {
			sp := kmsg.NewTxnOffsetCommitResponseTopicPartition()
			sp.Partition = rp.Partition
			sl := slot{ti, pi, -1}
			switch {
			case denied:
				sp.ErrorCode = s.counted(kerr.TopicAuthorizationFailed.Code)
			case !known && req.Version >= 6:
				sp.ErrorCode = s.counted(kerr.UnknownTopicID.Code)
			case !known || rp.Partition < 0 || rp.Partition >= info.Partitions:
				sp.ErrorCode = s.counted(kerr.UnknownTopicOrPartition.Code)
			default:
				sl.commit = len(offsets)
				leaderEpoch := int32(-1)
				if req.Version >= 2 {
					leaderEpoch = rp.LeaderEpoch
				}
				offsets = append(offsets, broker.GroupOffsetCommit{
					Topic: info.Name, Partition: rp.Partition, Offset: rp.Offset,
					LeaderEpoch: leaderEpoch, Metadata: derefString(rp.Metadata),
				})
			}
			st.Partitions = append(st.Partitions, sp)
			slots = append(slots, sl)
		}
		resp.Topics = append(resp.Topics, st)
	}
	if len(offsets) == 0 {
		return resp
	}
	var codes []int16
	if req.Version >= 5 && s.b.TxnVersion() >= 2 {
		if err := s.b.AddTxnOffsetsPartition(req.TransactionalID, req.ProducerID, req.ProducerEpoch, req.Group); err != nil {
			code := s.codeOf(err, "add the group's offsets to the transaction")
			codes = make([]int16, len(offsets))
			for i := range codes {
				codes[i] = code
			}
		}
	}
	if codes == nil {
		// On an error the broker fills codes with it, as for OffsetCommit.
		codes, _ = s.b.TxnOffsetCommit(ctx, req.Group, req.TransactionalID, req.ProducerID, req.ProducerEpoch,
			generation, memberID, instanceID, offsets)
	}
	missing := groupMissing(s.b, req.Group)
	for _, sl := range slots {
		if sl.commit >= 0 {
			resp.Topics[sl.topic].Partitions[sl.partition].ErrorCode = txnOffsetCommitCode(req.Version, codes[sl.commit], missing)
		}
	}
	return resp
}

// topicOf finds a request topic: by name, v6+ by id.
func (s *Server) topicOf(version int16, rt kmsg.TxnOffsetCommitRequestTopic) (broker.TopicInfo, bool) {
	if version >= 6 {
		return s.b.TopicByID(rt.TopicID)
	}
	return s.b.Topic(rt.Topic)
}

// txnOffsetCommitCode is a partition's code as version v answers it (the
// broker's codes are the newest version's, but for GROUP_ID_NOT_FOUND:
// the group state machine answers ILLEGAL_GENERATION for a group that does
// not exist, and missing tells that case apart).
func txnOffsetCommitCode(v, code int16, missing func() bool) int16 {
	switch {
	case code == kerr.CoordinatorLoadInProgress.Code && v < 2:
		return kerr.CoordinatorNotAvailable.Code
	case code == kerr.TransactionAbortable.Code && v < 4:
		return kerr.InvalidTxnState.Code
	case code == kerr.IllegalGeneration.Code && v >= 6 && missing():
		return kerr.GroupIDNotFound.Code
	}
	return code
}

// groupMissing reports, once asked and then from memory, whether the group
// does not exist. Asked after a commit that was refused with
// ILLEGAL_GENERATION (which creates nothing), it tells a missing group
// from a stale generation; a group created or deleted between the two
// calls is answered as it is at the second.
func groupMissing(b *broker.Broker, group string) func() bool {
	return sync.OnceValue(func() bool {
		_, err := b.DescribeGroup(group)
		return errors.Is(err, kerr.GroupIDNotFound)
	})
}

func failTxnOffsetCommit(kreq kmsg.Request, code int16) kmsg.Response {
	req := kreq.(*kmsg.TxnOffsetCommitRequest)
	resp := req.ResponseKind().(*kmsg.TxnOffsetCommitResponse)
	for _, rt := range req.Topics {
		st := kmsg.NewTxnOffsetCommitResponseTopic()
		st.Topic, st.TopicID = rt.Topic, rt.TopicID
		for _, rp := range rt.Partitions {
			sp := kmsg.NewTxnOffsetCommitResponseTopicPartition()
			sp.Partition, sp.ErrorCode = rp.Partition, code
			st.Partitions = append(st.Partitions, sp)
		}
		resp.Topics = append(resp.Topics, st)
	}
	return resp
}
