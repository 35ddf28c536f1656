package kafka

import (
	"context"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// OffsetForLeaderEpoch: v2-4
//
// Behaviour:
//   - For the partition's current leader epoch (the only one a standalone
//     broker ever has) the end offset is the log end (standalone, the high
//     watermark).
//   - In cluster mode the leader epoch is the raft term, and an older
//     epoch is answered from the terms of the partition's log: the largest
//     epoch at or below it and the offset where the next epoch began (not
//     capped at the high watermark, which trails on a new leader). Followers
//     answer NOT_LEADER_OR_FOLLOWER.
//   - An epoch above the current one, or below zero, is answered with
//     epoch -1 and offset -1 (UNDEFINED), as Kafka answers an epoch it has
//     no entry for.
//   - Authorization: DESCRIBE on each topic (TOPIC_AUTHORIZATION_FAILED);
//     a request from a replica (ReplicaID >= 0) needs CLUSTER_ACTION on the
//     cluster instead (CLUSTER_AUTHORIZATION_FAILED for all), as Kafka.
//   - CurrentLeaderEpoch is checked like Fetch's: FENCED_LEADER_EPOCH or
//     UNKNOWN_LEADER_EPOCH; -1 skips the check.
//
// Version notes:
//   - v2: CurrentLeaderEpoch, ThrottleMillis
//   - v3: ReplicaID
//   - v4: flexible

func (s *Server) handleOffsetForLeaderEpoch(_ context.Context, r *request) kmsg.Response {
	req := r.kreq.(*kmsg.OffsetForLeaderEpochRequest)
	resp := req.ResponseKind().(*kmsg.OffsetForLeaderEpochResponse)
	follower := req.Version >= 3 && req.ReplicaID >= 0
	if follower && !s.mayCluster(r, kmsg.ACLOperationClusterAction) {
		return failOffsetForLeaderEpoch(req, s.counted(kerr.ClusterAuthorizationFailed.Code))
	}
	for _, rt := range req.Topics {
		st := kmsg.NewOffsetForLeaderEpochResponseTopic()
		st.Topic = rt.Topic
		_, known := s.b.Topic(rt.Topic)
		denied := !follower && !s.mayTopic(r, kmsg.ACLOperationDescribe, rt.Topic)
		for _, rp := range rt.Partitions {
			sp := kmsg.NewOffsetForLeaderEpochResponseTopicPartition()
			sp.Partition = rp.Partition
			switch {
			case denied:
				sp.ErrorCode = s.counted(kerr.TopicAuthorizationFailed.Code)
			case !known:
				sp.ErrorCode = s.counted(kerr.UnknownTopicOrPartition.Code)
			default:
				sp.ErrorCode = s.checkLeaderEpoch(rt.Topic, rp.Partition, rp.CurrentLeaderEpoch)
			}
			if sp.ErrorCode == 0 {
				s.epochEndOffset(rt.Topic, rp, &sp)
			}
			st.Partitions = append(st.Partitions, sp)
		}
		resp.Topics = append(resp.Topics, st)
	}
	return resp
}

func (s *Server) epochEndOffset(topic string, rp kmsg.OffsetForLeaderEpochRequestTopicPartition, sp *kmsg.OffsetForLeaderEpochResponseTopicPartition) {
	epoch, end, err := s.b.EpochEndOffset(topic, rp.Partition, rp.LeaderEpoch)
	if err != nil {
		sp.ErrorCode = s.codeOf(err, "offset for leader epoch")
		return
	}
	sp.LeaderEpoch, sp.EndOffset = epoch, end // -1, -1: UNDEFINED
}

func failOffsetForLeaderEpoch(kreq kmsg.Request, code int16) kmsg.Response {
	req := kreq.(*kmsg.OffsetForLeaderEpochRequest)
	resp := req.ResponseKind().(*kmsg.OffsetForLeaderEpochResponse)
	for _, rt := range req.Topics {
		st := kmsg.NewOffsetForLeaderEpochResponseTopic()
		st.Topic = rt.Topic
		for _, rp := range rt.Partitions {
			sp := kmsg.NewOffsetForLeaderEpochResponseTopicPartition()
			sp.Partition, sp.ErrorCode = rp.Partition, code
			st.Partitions = append(st.Partitions, sp)
		}
		resp.Topics = append(resp.Topics, st)
	}
	return resp
}
