package kafka

import (
	"context"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// DeleteRecords: v0-2
//
// Behaviour:
//   - Moves each partition's log start offset up to Offset (-1: the high
//     watermark) and answers the new low watermark. Whole segments below it
//     are removed by the broker; reads below it are OFFSET_OUT_OF_RANGE.
//   - An offset past the high watermark is OFFSET_OUT_OF_RANGE; an unknown
//     partition UNKNOWN_TOPIC_OR_PARTITION.
//
// Version notes:
//   - v1: nothing new on the wire
//   - v2: flexible

func (s *Server) handleDeleteRecords(_ context.Context, r *request) kmsg.Response {
	req := r.kreq.(*kmsg.DeleteRecordsRequest)
	resp := req.ResponseKind().(*kmsg.DeleteRecordsResponse)
	for _, rt := range req.Topics {
		st := kmsg.NewDeleteRecordsResponseTopic()
		st.Topic = rt.Topic
		denied := !s.mayTopic(r, kmsg.ACLOperationDelete, rt.Topic)
		for _, rp := range rt.Partitions {
			sp := kmsg.NewDeleteRecordsResponseTopicPartition()
			sp.Partition = rp.Partition
			if denied {
				sp.ErrorCode, sp.LowWatermark = s.counted(kerr.TopicAuthorizationFailed.Code), -1
				st.Partitions = append(st.Partitions, sp)
				continue
			}
			low, err := s.b.DeleteRecords(rt.Topic, rp.Partition, rp.Offset)
			if err != nil {
				sp.ErrorCode, sp.LowWatermark = s.codeOf(err, "delete records"), -1
			} else {
				sp.LowWatermark = low
			}
			st.Partitions = append(st.Partitions, sp)
		}
		resp.Topics = append(resp.Topics, st)
	}
	return resp
}

func failDeleteRecords(kreq kmsg.Request, code int16) kmsg.Response {
	req := kreq.(*kmsg.DeleteRecordsRequest)
	resp := req.ResponseKind().(*kmsg.DeleteRecordsResponse)
	for _, rt := range req.Topics {
		st := kmsg.NewDeleteRecordsResponseTopic()
		st.Topic = rt.Topic
		for _, rp := range rt.Partitions {
			sp := kmsg.NewDeleteRecordsResponseTopicPartition()
			sp.Partition, sp.ErrorCode, sp.LowWatermark = rp.Partition, code, -1
			st.Partitions = append(st.Partitions, sp)
		}
		resp.Topics = append(resp.Topics, st)
	}
	return resp
}
