package kafka

import (
	"context"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/chronik-stream/chronik/broker"
)

// ListOffsets: v1-11
//
// Authorization: DESCRIBE on each topic, else TOPIC_AUTHORIZATION_FAILED
// for its partitions.
//
// Behaviour, per partition, answered as a broker without tiered storage:
//   - Timestamp -2: the log start offset; -1: the high watermark (the last
//     stable offset under read_committed); -3 (v7+): the offset of the
//     record with the largest timestamp; -4 (v8+, local log start): the log
//     start offset; -5 (v9+) and -6 (v11+), tiered-storage offsets: -1,
//     since nothing is tiered.
//   - Any other timestamp >= 0: the first offset whose record timestamp is
//     at least that, with that timestamp; -1, -1 if there is none.
//   - IsolationLevel (v2+): read_committed ends every answer at the last
//     stable offset instead of the high watermark: -1 is it, a timestamp
//     lookup answers only offsets below it (Kafka's
//     Partition.fetchOffsetForTimestamp), and -3 the largest timestamp
//     below it.
//   - A special timestamp below the version that introduced it, or any
//     other negative timestamp, is UNSUPPORTED_VERSION for the partition;
//     a partition listed twice is INVALID_REQUEST for both entries.
//   - CurrentLeaderEpoch (v4+) is checked like Fetch's; the response's
//     LeaderEpoch is the partition's current epoch.
//
// Version notes:
//   - v2: IsolationLevel
//   - v4: CurrentLeaderEpoch, LeaderEpoch
//   - v6: flexible
//   - v10: TimeoutMillis (nothing here waits on remote storage)

// listOffsetsMinVersion is the request version that introduced each special
// timestamp.
var listOffsetsMinVersion = map[int64]int16{
	broker.TimestampLatest:       1,
	broker.TimestampEarliest:     1,
	broker.TimestampMaxTimestamp: 7,
	-4:                           8,  // earliest local
	-5:                           9,  // latest tiered
	-6:                           11, // earliest pending upload
}

func (s *Server) handleListOffsets(_ context.Context, r *request) kmsg.Response {
	req := r.kreq.(*kmsg.ListOffsetsRequest)
	resp := req.ResponseKind().(*kmsg.ListOffsetsResponse)

	type tp struct {
		topic     string
		partition int32
	}
	seen := make(map[tp]int)
	for _, rt := range req.Topics {
		for _, rp := range rt.Partitions {
			seen[tp{rt.Topic, rp.Partition}]++
		}
	}

	resp.Topics = make([]kmsg.ListOffsetsResponseTopic, len(req.Topics))
	for i, rt := range req.Topics {
		st := &resp.Topics[i]
		*st = kmsg.NewListOffsetsResponseTopic()
		st.Topic = rt.Topic
		st.Partitions = make([]kmsg.ListOffsetsResponseTopicPartition, len(rt.Partitions))
		denied := !s.mayTopic(r, kmsg.ACLOperationDescribe, rt.Topic)
		for j, rp := range rt.Partitions {
			sp := &st.Partitions[j]
			*sp = kmsg.NewListOffsetsResponseTopicPartition()
			sp.Partition = rp.Partition
			if denied {
				sp.ErrorCode = s.counted(kerr.TopicAuthorizationFailed.Code)
				continue
			}
			if seen[tp{rt.Topic, rp.Partition}] > 1 {
				sp.ErrorCode = s.counted(kerr.InvalidRequest.Code)
				continue
			}
			s.listOffset(req, rt.Topic, rp, sp)
		}
	}
	return resp
}

func (s *Server) listOffset(req *kmsg.ListOffsetsRequest, topic string, rp kmsg.ListOffsetsRequestTopicPartition, sp *kmsg.ListOffsetsResponseTopicPartition) {
	ts := rp.Timestamp
	if ts < 0 {
		if v, ok := listOffsetsMinVersion[ts]; !ok || req.Version < v {
			sp.ErrorCode = s.counted(kerr.UnsupportedVersion.Code)
			return
		}
	}
	if _, ok := s.b.Topic(topic); !ok {
		sp.ErrorCode = s.counted(kerr.UnknownTopicOrPartition.Code)
		return
	}
	if req.Version >= 4 {
		if code := s.checkLeaderEpoch(topic, rp.Partition, rp.CurrentLeaderEpoch); code != 0 {
			sp.ErrorCode = code
			return
		}
	}
	switch ts {
	case -5, -6:
		// Nothing is tiered; check the partition exists, answer -1.
		if _, _, err := s.b.PartitionOffsets(topic, rp.Partition); err != nil {
			sp.ErrorCode = s.codeOf(err, "list offsets")
		}
		return
	case -4:
		ts = broker.TimestampEarliest
	}
	offset, timestamp, err := s.b.ListOffset(topic, rp.Partition, ts, req.IsolationLevel)
	if err != nil {
		sp.ErrorCode = s.codeOf(err, "list offsets")
		return
	}
	sp.Offset, sp.Timestamp = offset, timestamp
	if offset >= 0 {
		sp.LeaderEpoch = s.b.LeaderEpoch(topic, rp.Partition)
	}
}

func failListOffsets(kreq kmsg.Request, code int16) kmsg.Response {
	req := kreq.(*kmsg.ListOffsetsRequest)
	resp := req.ResponseKind().(*kmsg.ListOffsetsResponse)
	for _, rt := range req.Topics {
		st := kmsg.NewListOffsetsResponseTopic()
		st.Topic = rt.Topic
		for _, rp := range rt.Partitions {
			sp := kmsg.NewListOffsetsResponseTopicPartition()
			sp.Partition = rp.Partition
			sp.ErrorCode = code
			st.Partitions = append(st.Partitions, sp)
		}
		resp.Topics = append(resp.Topics, st)
	}
	return resp
}
