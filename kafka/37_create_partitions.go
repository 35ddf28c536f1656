package kafka

import (
	"context"
	"fmt"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// CreatePartitions: v0-3
//
// Behaviour:
//   - Grows a topic to Count partitions (INVALID_PARTITIONS if not more than
//     it has, or more than maxNewPartitions new ones at once);
//     UNKNOWN_TOPIC_OR_PARTITION for a missing topic. ValidateOnly changes
//     nothing.
//   - A manual Assignment must give one entry per new partition, each
//     naming exactly this node (else INVALID_REPLICA_ASSIGNMENT).
//   - A topic named twice in one request is INVALID_REQUEST for each entry.
//
// Version notes:
//   - v1: nothing new on the wire
//   - v2: flexible
//   - v3: nothing new on the wire

func (s *Server) handleCreatePartitions(_ context.Context, r *request) kmsg.Response {
	req := r.kreq.(*kmsg.CreatePartitionsRequest)
	resp := req.ResponseKind().(*kmsg.CreatePartitionsResponse)
	count := make(map[string]int, len(req.Topics))
	for _, rt := range req.Topics {
		count[rt.Topic]++
	}
	for _, rt := range req.Topics {
		st := kmsg.NewCreatePartitionsResponseTopic()
		st.Topic = rt.Topic
		var err error
		switch {
		case count[rt.Topic] > 1:
			err = fmt.Errorf("topic %s is named more than once in the request: %w", rt.Topic, kerr.InvalidRequest)
		case !s.mayTopic(r, kmsg.ACLOperationAlter, rt.Topic):
			err = fmt.Errorf("not authorized to ALTER topic %s: %w", rt.Topic, kerr.TopicAuthorizationFailed)
		default:
			err = s.createPartitions(rt, req.ValidateOnly)
		}
		st.ErrorCode, st.ErrorMessage = s.codeOf(err, "create partitions"), errorMessage(err)
		resp.Topics = append(resp.Topics, st)
	}
	return resp
}

func (s *Server) createPartitions(rt kmsg.CreatePartitionsRequestTopic, validateOnly bool) error {
	info, ok := s.b.Topic(rt.Topic)
	if !ok {
		return fmt.Errorf("topic %s: %w", rt.Topic, kerr.UnknownTopicOrPartition)
	}
	added := int64(rt.Count) - int64(info.Partitions)
	if added > int64(s.maxNewPartitions) {
		return fmt.Errorf("%d new partitions is more than the %d one request may create: %w", added, s.maxNewPartitions, kerr.InvalidPartitions)
	}
	if rt.Assignment != nil {
		if int64(len(rt.Assignment)) != added {
			return fmt.Errorf("%d assignments for %d new partitions: %w", len(rt.Assignment), added, kerr.InvalidReplicaAssignment)
		}
		node := s.b.Config().NodeID
		for i, a := range rt.Assignment {
			if len(a.Replicas) != 1 || a.Replicas[0] != node {
				return fmt.Errorf("new partition %d: replicas %v: the only broker is %d: %w", i, a.Replicas, node, kerr.InvalidReplicaAssignment)
			}
		}
	}
	return s.b.CreatePartitions(rt.Topic, rt.Count, validateOnly)
}

func failCreatePartitions(kreq kmsg.Request, code int16) kmsg.Response {
	req := kreq.(*kmsg.CreatePartitionsRequest)
	resp := req.ResponseKind().(*kmsg.CreatePartitionsResponse)
	for _, rt := range req.Topics {
		st := kmsg.NewCreatePartitionsResponseTopic()
		st.Topic, st.ErrorCode = rt.Topic, code
		resp.Topics = append(resp.Topics, st)
	}
	return resp
}
