package kafka

import (
	"context"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/chronik-stream/chronik/broker"
)

// OffsetDelete: v0-0
//
// Behaviour:
//   - Deletes committed offsets of a group (KIP-496). A group without
//     members may delete any; a consumer group with members only those of
//     topics none of them subscribes to (GROUP_SUBSCRIBED_TO_TOPIC per
//     partition otherwise). A topic that does not exist:
//     UNKNOWN_TOPIC_OR_PARTITION.
//   - Group errors (GROUP_ID_NOT_FOUND, NON_EMPTY_GROUP for a non-consumer
//     group with members, INVALID_GROUP_ID, NOT_COORDINATOR) are the
//     top-level ErrorCode, with no topics.

func (s *Server) handleOffsetDelete(_ context.Context, r *request) kmsg.Response {
	req := r.kreq.(*kmsg.OffsetDeleteRequest)
	resp := req.ResponseKind().(*kmsg.OffsetDeleteResponse)
	if !s.mayGroup(r, kmsg.ACLOperationDelete, req.Group) {
		return failOffsetDelete(req, s.counted(kerr.GroupAuthorizationFailed.Code))
	}
	// Partitions of topics the principal may not READ are not deleted:
	// they answer TOPIC_AUTHORIZATION_FAILED.
	var partitions []broker.GroupTopicPartition
	denied := make([]bool, len(req.Topics))
	for i, rt := range req.Topics {
		if denied[i] = !s.mayTopic(r, kmsg.ACLOperationRead, rt.Topic); denied[i] {
			continue
		}
		for _, rp := range rt.Partitions {
			partitions = append(partitions, broker.GroupTopicPartition{Topic: rt.Topic, Partition: rp.Partition})
		}
	}
	codes, err := s.b.OffsetDelete(req.Group, partitions)
	if err != nil {
		resp.ErrorCode = s.groupCode(err, "offset delete")
		return resp
	}
	i := 0
	for ti, rt := range req.Topics {
		st := kmsg.NewOffsetDeleteResponseTopic()
		st.Topic = rt.Topic
		for _, rp := range rt.Partitions {
			sp := kmsg.NewOffsetDeleteResponseTopicPartition()
			sp.Partition = rp.Partition
			if denied[ti] {
				sp.ErrorCode = s.counted(kerr.TopicAuthorizationFailed.Code)
			} else {
				sp.ErrorCode = codes[i]
				i++
			}
			st.Partitions = append(st.Partitions, sp)
		}
		resp.Topics = append(resp.Topics, st)
	}
	return resp
}

func failOffsetDelete(kreq kmsg.Request, code int16) kmsg.Response {
	resp := kreq.ResponseKind().(*kmsg.OffsetDeleteResponse)
	resp.ErrorCode = code
	return resp
}
