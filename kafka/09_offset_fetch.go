package kafka

import (
	"context"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/chronik-stream/chronik/broker"
)

// OffsetFetch: v1-10
//
// Behaviour:
//   - Committed offsets of the requested partitions: offset -1, leader
//     epoch -1 and metadata "" where nothing is committed (or the group
//     does not exist), as Kafka answers.
//   - Null topics (v2+; per group in v8+): every committed offset of the
//     group.
//   - Offsets a transaction committed (TxnOffsetCommit) show once its
//     commit marker is written; until then the previous offset shows.
//     RequireStable (v7+, KIP-447): a partition with offsets of an open
//     transaction gets UNSTABLE_OFFSET_COMMIT (offset -1), as Kafka 4
//     answers, and the consumer retries.
//   - v8+: several groups per request, each with its own ErrorCode.
//   - Group errors (INVALID_GROUP_ID for an empty id, NOT_COORDINATOR):
//     v1 on every requested partition, v2-v7 the top-level ErrorCode, v8+
//     the group's ErrorCode.
//   - v9+ MemberID/MemberEpoch identify KIP-848 members; classic groups
//     ignore them, as Kafka does.
//
// Version notes:
//   - v2: null topics means all, top-level ErrorCode (v0 is below the
//     Kafka 4.0 floor)
//   - v3: ThrottleMillis
//   - v5: LeaderEpoch
//   - v6: flexible
//   - v7: RequireStable
//   - v8: Groups (batched)
//   - v9: MemberID, MemberEpoch
//   - v10: topic ids instead of names

func (s *Server) handleOffsetFetch(_ context.Context, r *request) kmsg.Response {
	req := r.kreq.(*kmsg.OffsetFetchRequest)
	resp := req.ResponseKind().(*kmsg.OffsetFetchResponse)
	if req.Version < 8 && !s.mayGroup(r, kmsg.ACLOperationDescribe, req.Group) {
		return failOffsetFetch(req, s.counted(kerr.GroupAuthorizationFailed.Code))
	}
	if req.Version < 8 {
		var topics []broker.GroupFetchTopic
		if req.Topics != nil || req.Version < 2 {
			topics = make([]broker.GroupFetchTopic, 0, len(req.Topics))
			for _, rt := range req.Topics {
				topics = append(topics, broker.GroupFetchTopic{Topic: rt.Topic, Partitions: nonNil(rt.Partitions)})
			}
		}
		offsets, err := s.b.OffsetFetch(req.Group, topics, req.RequireStable)
		code := int16(0)
		if err != nil {
			code = s.groupCode(err, "offset fetch")
			if req.Version >= 2 {
				resp.ErrorCode = code
				return resp
			}
			offsets = unfetched(topics) // v1: the error goes on every partition
		}
		offsets = s.authorizeOffsets(r, offsets, topics != nil)
		for _, o := range offsets {
			if n := len(resp.Topics); n == 0 || resp.Topics[n-1].Topic != o.Topic {
				st := kmsg.NewOffsetFetchResponseTopic()
				st.Topic = o.Topic
				resp.Topics = append(resp.Topics, st)
			}
			sp := kmsg.NewOffsetFetchResponseTopicPartition()
			sp.Partition, sp.Offset, sp.LeaderEpoch, sp.ErrorCode = o.Partition, o.Offset, o.LeaderEpoch, code
			if code == 0 {
				sp.ErrorCode = o.ErrorCode
			}
			sp.Metadata = kmsg.StringPtr(o.Metadata)
			st := &resp.Topics[len(resp.Topics)-1]
			st.Partitions = append(st.Partitions, sp)
		}
		return resp
	}
	for _, rg := range req.Groups {
		if !s.mayGroup(r, kmsg.ACLOperationDescribe, rg.Group) {
			sg := kmsg.NewOffsetFetchResponseGroup()
			sg.Group, sg.ErrorCode = rg.Group, s.counted(kerr.GroupAuthorizationFailed.Code)
			resp.Groups = append(resp.Groups, sg)
			continue
		}
		resp.Groups = append(resp.Groups, s.fetchGroupOffsets(r, req, rg))
	}
	return resp
}

// fetchGroupOffsets answers one group of a v8+ request.
func (s *Server) fetchGroupOffsets(r *request, req *kmsg.OffsetFetchRequest, rg kmsg.OffsetFetchRequestGroup) kmsg.OffsetFetchResponseGroup {
	sg := kmsg.NewOffsetFetchResponseGroup()
	sg.Group = rg.Group
	var (
		topics  []broker.GroupFetchTopic
		unknown []kmsg.OffsetFetchResponseGroupTopic // v10: ids we do not know
		ids     = map[string][16]byte{}
	)
	if rg.Topics != nil {
		topics = make([]broker.GroupFetchTopic, 0, len(rg.Topics))
	}
	for _, rt := range rg.Topics {
		name := rt.Topic
		if req.Version >= 10 {
			info, ok := s.b.TopicByID(rt.TopicID)
			if !ok {
				st := kmsg.NewOffsetFetchResponseGroupTopic()
				st.TopicID = rt.TopicID
				for _, p := range rt.Partitions {
					sp := kmsg.NewOffsetFetchResponseGroupTopicPartition()
					sp.Partition, sp.Offset, sp.Metadata, sp.ErrorCode = p, -1, kmsg.StringPtr(""), kerr.UnknownTopicID.Code
					st.Partitions = append(st.Partitions, sp)
				}
				unknown = append(unknown, st)
				continue
			}
			name = info.Name
			ids[name] = rt.TopicID
		}
		topics = append(topics, broker.GroupFetchTopic{Topic: name, Partitions: nonNil(rt.Partitions)})
	}
	offsets, err := s.b.OffsetFetch(rg.Group, topics, req.RequireStable)
	if err != nil {
		sg.ErrorCode = s.groupCode(err, "offset fetch")
		return sg
	}
	offsets = s.authorizeOffsets(r, offsets, topics != nil)
	for _, o := range offsets {
		if n := len(sg.Topics); n == 0 || sg.Topics[n-1].Topic != o.Topic {
			st := kmsg.NewOffsetFetchResponseGroupTopic()
			st.Topic = o.Topic
			if req.Version >= 10 {
				id, ok := ids[o.Topic]
				if !ok {
					info, exists := s.b.Topic(o.Topic)
					if !exists {
						continue // committed for a topic deleted since: no id to name it by
					}
					id = info.ID
				}
				st.TopicID = id
			}
			sg.Topics = append(sg.Topics, st)
		}
		sp := kmsg.NewOffsetFetchResponseGroupTopicPartition()
		sp.Partition, sp.Offset, sp.LeaderEpoch, sp.ErrorCode = o.Partition, o.Offset, o.LeaderEpoch, o.ErrorCode
		sp.Metadata = kmsg.StringPtr(o.Metadata)
		st := &sg.Topics[len(sg.Topics)-1]
		st.Partitions = append(st.Partitions, sp)
	}
	sg.Topics = append(sg.Topics, unknown...)
	return sg
}

// nonNil keeps a requested topic with no partitions from meaning "every
// partition" (nil Partitions) to the broker.
func nonNil(ps []int32) []int32 {
	if ps == nil {
		return []int32{}
	}
	return ps
}

// unfetched lists the requested partitions with nothing committed.
// authorizeOffsets applies DESCRIBE on topics to a group's offsets, as
// Kafka: asked for by name, a topic the principal may not describe gets
// TOPIC_AUTHORIZATION_FAILED and no offset; asked for all, it is left out.
func (s *Server) authorizeOffsets(r *request, offsets []broker.GroupOffset, named bool) []broker.GroupOffset {
	out := offsets[:0:0]
	for _, o := range offsets {
		if !s.mayTopic(r, kmsg.ACLOperationDescribe, o.Topic) {
			if !named {
				continue
			}
			o.GroupCommittedOffset = broker.GroupCommittedOffset{Offset: -1, LeaderEpoch: -1, ExpireTimestamp: -1}
			o.ErrorCode = s.counted(kerr.TopicAuthorizationFailed.Code)
		}
		out = append(out, o)
	}
	return out
}

func unfetched(topics []broker.GroupFetchTopic) []broker.GroupOffset {
	var out []broker.GroupOffset
	for _, t := range topics {
		for _, p := range t.Partitions {
			out = append(out, broker.GroupOffset{
				GroupTopicPartition:  broker.GroupTopicPartition{Topic: t.Topic, Partition: p},
				GroupCommittedOffset: broker.GroupCommittedOffset{Offset: -1, LeaderEpoch: -1, ExpireTimestamp: -1},
			})
		}
	}
	return out
}

func failOffsetFetch(kreq kmsg.Request, code int16) kmsg.Response {
	req := kreq.(*kmsg.OffsetFetchRequest)
	resp := req.ResponseKind().(*kmsg.OffsetFetchResponse)
	switch {
	case req.Version >= 8:
		for _, rg := range req.Groups {
			sg := kmsg.NewOffsetFetchResponseGroup()
			sg.Group, sg.ErrorCode = rg.Group, code
			resp.Groups = append(resp.Groups, sg)
		}
	case req.Version >= 2:
		resp.ErrorCode = code
	default:
		for _, rt := range req.Topics {
			st := kmsg.NewOffsetFetchResponseTopic()
			st.Topic = rt.Topic
			for _, p := range rt.Partitions {
				sp := kmsg.NewOffsetFetchResponseTopicPartition()
				sp.Partition, sp.Offset, sp.ErrorCode = p, -1, code
				st.Partitions = append(st.Partitions, sp)
			}
			resp.Topics = append(resp.Topics, st)
		}
	}
	return resp
}
