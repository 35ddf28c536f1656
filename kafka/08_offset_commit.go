package kafka

import (
	"context"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/chronik-stream/chronik/broker"
)

// OffsetCommit: v2-10
//
// Behaviour:
//   - Stores the offsets in __consumer_offsets and answers once they are
//     durable. A member must be of the current generation
//     (ILLEGAL_GENERATION, UNKNOWN_MEMBER_ID, FENCED_INSTANCE_ID;
//     REBALANCE_IN_PROGRESS while its generation awaits the leader's
//     assignment). Generation -1 with no member id is a "simple" commit,
//     allowed while the group has no members (it creates a group that only
//     stores offsets).
//   - A topic that does not exist: UNKNOWN_TOPIC_OR_PARTITION (v10: an
//     unknown topic id, UNKNOWN_TOPIC_ID); metadata longer than 4096 bytes:
//     OFFSET_METADATA_TOO_LARGE; an empty group id: INVALID_GROUP_ID.
//   - RetentionTimeMillis (v2-v4) is ignored: offsets expire per
//     offsets.retention.minutes once the group is empty, as Kafka does
//     since 2.1 for v5+.
//
// Version notes:
//   - v2: RetentionTimeMillis (v0-v1 are below the Kafka 4.0 floor)
//   - v3: ThrottleMillis
//   - v5: RetentionTimeMillis removed
//   - v6: LeaderEpoch
//   - v7: GroupInstanceID
//   - v8: flexible
//   - v9: nothing new for classic groups (KIP-848 members)
//   - v10: topic ids instead of names

func (s *Server) handleOffsetCommit(_ context.Context, r *request) kmsg.Response {
	req := r.kreq.(*kmsg.OffsetCommitRequest)
	resp := req.ResponseKind().(*kmsg.OffsetCommitResponse)
	if !s.mayGroup(r, kmsg.ACLOperationRead, req.Group) {
		return failOffsetCommit(req, s.counted(kerr.GroupAuthorizationFailed.Code))
	}
	cr := broker.GroupCommitRequest{MemberID: req.MemberID, InstanceID: derefString(req.InstanceID), GenerationID: req.Generation}
	type slot struct{ topic, partition, commit int } // commit: index into cr.Offsets, -1 if none
	var slots []slot
	for ti, rt := range req.Topics {
		st := kmsg.NewOffsetCommitResponseTopic()
		st.Topic, st.TopicID = rt.Topic, rt.TopicID
		name, topicCode := rt.Topic, int16(0)
		if req.Version >= 10 {
			if info, ok := s.b.TopicByID(rt.TopicID); ok {
				name = info.Name
			} else {
				topicCode = s.counted(kerr.UnknownTopicID.Code)
			}
		}
		if topicCode == 0 && !s.mayTopic(r, kmsg.ACLOperationRead, name) {
			topicCode = s.counted(kerr.TopicAuthorizationFailed.Code)
		}
		for pi, rp := range rt.Partitions {
			sp := kmsg.NewOffsetCommitResponseTopicPartition()
			sp.Partition, sp.ErrorCode = rp.Partition, topicCode
			st.Partitions = append(st.Partitions, sp)
			sl := slot{ti, pi, -1}
			if topicCode == 0 {
				sl.commit = len(cr.Offsets)
				leaderEpoch := int32(-1)
				if req.Version >= 6 {
					leaderEpoch = rp.LeaderEpoch
				}
				cr.Offsets = append(cr.Offsets, broker.GroupOffsetCommit{
					Topic: name, Partition: rp.Partition, Offset: rp.Offset,
					LeaderEpoch: leaderEpoch, Metadata: derefString(rp.Metadata),
				})
			}
			slots = append(slots, sl)
		}
		resp.Topics = append(resp.Topics, st)
	}
	if len(cr.Offsets) == 0 {
		return resp
	}
	// On an error the broker fills codes with it.
	codes, _ := s.b.OffsetCommit(req.Group, cr)
	for _, sl := range slots {
		if sl.commit >= 0 {
			resp.Topics[sl.topic].Partitions[sl.partition].ErrorCode = codes[sl.commit]
		}
	}
	return resp
}

func failOffsetCommit(kreq kmsg.Request, code int16) kmsg.Response {
	req := kreq.(*kmsg.OffsetCommitRequest)
	resp := req.ResponseKind().(*kmsg.OffsetCommitResponse)
	for _, rt := range req.Topics {
		st := kmsg.NewOffsetCommitResponseTopic()
		st.Topic, st.TopicID = rt.Topic, rt.TopicID
		for _, rp := range rt.Partitions {
			sp := kmsg.NewOffsetCommitResponseTopicPartition()
			sp.Partition, sp.ErrorCode = rp.Partition, code
			st.Partitions = append(st.Partitions, sp)
		}
		resp.Topics = append(resp.Topics, st)
	}
	return resp
}
