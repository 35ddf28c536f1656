package kafka

import (
	"context"
	"fmt"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// DeleteTopics: v1-6
//
// Behaviour:
//   - Deletes by name (TopicNames before v6, Topics[].Topic from v6) or by
//     topic ID (v6+). An unknown name is UNKNOWN_TOPIC_OR_PARTITION, an
//     unknown ID UNKNOWN_TOPIC_ID; naming a topic both ways, or neither, is
//     INVALID_REQUEST.
//   - Deletion is synchronous: TimeoutMillis has nothing to wait for.
//
// Version notes:
//   - v4: flexible
//   - v5: ErrorMessage
//   - v6: topics by name or ID, TopicID in the response

func (s *Server) handleDeleteTopics(_ context.Context, r *request) kmsg.Response {
	req := r.kreq.(*kmsg.DeleteTopicsRequest)
	resp := req.ResponseKind().(*kmsg.DeleteTopicsResponse)
	for _, rt := range deleteTopicsTargets(req) {
		st := kmsg.NewDeleteTopicsResponseTopic()
		st.Topic, st.TopicID = rt.Topic, rt.TopicID
		err := s.deleteTopic(r, rt, &st)
		st.ErrorCode = s.codeOf(err, "delete topic")
		if req.Version >= 5 {
			st.ErrorMessage = errorMessage(err)
		}
		resp.Topics = append(resp.Topics, st)
	}
	return resp
}

// deleteTopicsTargets returns the request's topics in the v6 shape.
func deleteTopicsTargets(req *kmsg.DeleteTopicsRequest) []kmsg.DeleteTopicsRequestTopic {
	if req.Version >= 6 {
		return req.Topics
	}
	out := make([]kmsg.DeleteTopicsRequestTopic, len(req.TopicNames))
	for i := range req.TopicNames {
		out[i] = kmsg.NewDeleteTopicsRequestTopic()
		out[i].Topic = &req.TopicNames[i]
	}
	return out
}

func (s *Server) deleteTopic(r *request, rt kmsg.DeleteTopicsRequestTopic, st *kmsg.DeleteTopicsResponseTopic) error {
	byID := rt.TopicID != [16]byte{}
	switch {
	case rt.Topic != nil && byID:
		return fmt.Errorf("topic named by both name and ID: %w", kerr.InvalidRequest)
	case byID:
		info, ok := s.b.TopicByID(rt.TopicID)
		if !ok || !s.mayTopic(r, kmsg.ACLOperationDescribe, info.Name) {
			// A topic the principal may not describe does not exist for it.
			return fmt.Errorf("no topic with ID %x: %w", rt.TopicID, kerr.UnknownTopicID)
		}
		if !s.mayTopic(r, kmsg.ACLOperationDelete, info.Name) {
			return fmt.Errorf("not authorized to DELETE topic %x: %w", rt.TopicID, kerr.TopicAuthorizationFailed)
		}
		st.Topic = &info.Name
		return s.b.DeleteTopic(info.Name)
	case rt.Topic != nil:
		if !s.mayTopic(r, kmsg.ACLOperationDelete, *rt.Topic) {
			return fmt.Errorf("not authorized to DELETE topic %s: %w", *rt.Topic, kerr.TopicAuthorizationFailed)
		}
		if info, ok := s.b.Topic(*rt.Topic); ok {
			st.TopicID = info.ID
		}
		return s.b.DeleteTopic(*rt.Topic)
	}
	return fmt.Errorf("topic named by neither name nor ID: %w", kerr.InvalidRequest)
}

func failDeleteTopics(kreq kmsg.Request, code int16) kmsg.Response {
	req := kreq.(*kmsg.DeleteTopicsRequest)
	resp := req.ResponseKind().(*kmsg.DeleteTopicsResponse)
	for _, rt := range deleteTopicsTargets(req) {
		st := kmsg.NewDeleteTopicsResponseTopic()
		st.Topic, st.TopicID, st.ErrorCode = rt.Topic, rt.TopicID, code
		resp.Topics = append(resp.Topics, st)
	}
	return resp
}
