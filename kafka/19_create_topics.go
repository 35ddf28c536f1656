package kafka

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/chronik-stream/chronik/broker"
)

// CreateTopics: v2-7
//
// Behaviour:
//   - NumPartitions and ReplicationFactor -1 take the broker's defaults. The
//     replication factor must be 1 standalone (INVALID_REPLICATION_FACTOR).
//   - A manual ReplicaAssignment is accepted only when every partition's
//     replicas are exactly this node and NumPartitions and
//     ReplicationFactor are -1 (else INVALID_REPLICA_ASSIGNMENT or
//     INVALID_REQUEST, as Kafka).
//   - Configs are validated by the broker (INVALID_CONFIG); ValidateOnly
//     checks everything and creates nothing.
//   - A topic named twice in one request is INVALID_REQUEST for each entry.
//   - More than maxNewPartitions partitions is INVALID_PARTITIONS.
//   - Errors: INVALID_TOPIC_EXCEPTION, TOPIC_ALREADY_EXISTS,
//     INVALID_PARTITIONS, with ErrorMessage.
//
// Version notes:
//   - v4: -1 NumPartitions and ReplicationFactor take defaults (KIP-464)
//   - v5: flexible; the response carries NumPartitions, ReplicationFactor
//     (the created topic's, 3 for an RF=3 topic) and the topic's configs
//     (all of them, with sources)
//   - v7: TopicID in the response

func (s *Server) handleCreateTopics(_ context.Context, r *request) kmsg.Response {
	req := r.kreq.(*kmsg.CreateTopicsRequest)
	resp := req.ResponseKind().(*kmsg.CreateTopicsResponse)

	clusterCreate := s.mayCluster(r, kmsg.ACLOperationCreate)
	count := make(map[string]int, len(req.Topics))
	for _, rt := range req.Topics {
		count[rt.Topic]++
	}
	for _, rt := range req.Topics {
		st := kmsg.NewCreateTopicsResponseTopic()
		st.Topic = rt.Topic
		if count[rt.Topic] > 1 {
			st.ErrorCode = s.counted(kerr.InvalidRequest.Code)
			st.ErrorMessage = kmsg.StringPtr("topic " + rt.Topic + " is named more than once in the request")
		} else if !clusterCreate && !s.mayTopic(r, kmsg.ACLOperationCreate, rt.Topic) {
			st.ErrorCode = s.counted(kerr.TopicAuthorizationFailed.Code)
			st.ErrorMessage = kmsg.StringPtr("not authorized to CREATE topic " + rt.Topic)
		} else {
			s.createTopic(r, req, rt, &st)
		}
		resp.Topics = append(resp.Topics, st)
	}
	return resp
}

func (s *Server) createTopic(r *request, req *kmsg.CreateTopicsRequest, rt kmsg.CreateTopicsRequestTopic, st *kmsg.CreateTopicsResponseTopic) {
	fail := func(err error) {
		st.ErrorCode = s.codeOf(err, "create topic")
		st.ErrorMessage = errorMessage(err)
	}
	partitions, rf := rt.NumPartitions, rt.ReplicationFactor
	if len(rt.ReplicaAssignment) > 0 {
		if partitions != -1 || rf != -1 {
			fail(fmt.Errorf("both a replica assignment and NumPartitions/ReplicationFactor were given: %w", kerr.InvalidRequest))
			return
		}
		node := s.b.Config().NodeID
		for i, a := range rt.ReplicaAssignment {
			if a.Partition != int32(i) {
				fail(fmt.Errorf("replica assignment partitions must be 0..n-1 in order: %w", kerr.InvalidReplicaAssignment))
				return
			}
			if len(a.Replicas) != 1 || a.Replicas[0] != node {
				fail(fmt.Errorf("partition %d: replicas %v: the only broker is %d: %w", a.Partition, a.Replicas, node, kerr.InvalidReplicaAssignment))
				return
			}
		}
		partitions, rf = int32(len(rt.ReplicaAssignment)), 1
	}
	if partitions > s.maxNewPartitions {
		fail(fmt.Errorf("%d partitions is more than the %d one request may create: %w", partitions, s.maxNewPartitions, kerr.InvalidPartitions))
		return
	}
	configs := make(map[string]*string, len(rt.Configs))
	for _, c := range rt.Configs {
		configs[c.Name] = c.Value
	}

	info, err := s.b.CreateTopic(rt.Topic, partitions, rf, configs, req.ValidateOnly)
	if err != nil {
		fail(err)
		return
	}
	st.TopicID = info.ID
	st.NumPartitions = info.Partitions
	if st.NumPartitions <= 0 { // validate-only may not say
		st.NumPartitions = partitions
		if partitions == -1 {
			st.NumPartitions = s.b.Config().DefaultPartitions
		}
	}
	st.ReplicationFactor = s.createdReplicationFactor(rt.Topic, rf, req.ValidateOnly)
	if req.Version >= 5 {
		if s.mayTopic(r, kmsg.ACLOperationDescribeConfigs, rt.Topic) {
			st.Configs = s.createdTopicConfigs(rt.Topic, configs, req.ValidateOnly)
		} else {
			// Created, but its configs are not the principal's to see.
			st.ConfigErrorCode = s.counted(kerr.TopicAuthorizationFailed.Code)
		}
	}
}

// createdReplicationFactor is the replication factor of a topic just
// created: the replica count of its partition 0, as Kafka answers from the
// assignment it made. A validate-only request assigned nothing: it answers
// the factor asked for, and for -1 the broker's default, as many replicas
// as there are brokers up to 3 (broker.replicationFactor; standalone 1).
func (s *Server) createdReplicationFactor(topic string, requested int16, validateOnly bool) int16 {
	if !validateOnly {
		if replicas := s.b.PartitionReplicas(topic, 0); len(replicas) > 0 {
			return int16(len(replicas))
		}
	}
	if requested > 0 {
		return requested
	}
	return int16(min(3, len(s.b.Brokers())))
}

// createdTopicConfigs lists a new topic's configs for the v5+ response. A
// validate-only request created nothing to describe: it lists the configs
// the request set.
func (s *Server) createdTopicConfigs(topic string, requested map[string]*string, validateOnly bool) []kmsg.CreateTopicsResponseTopicConfig {
	var entries []broker.ConfigEntry
	if !validateOnly {
		var err error
		if entries, err = s.b.TopicConfigs(topic); err != nil {
			s.log.Warn().Err(err).Str("topic", topic).Msg("describe configs of a topic just created")
		}
	}
	if validateOnly {
		for name, value := range requested {
			entries = append(entries, broker.ConfigEntry{Name: name, Value: value, Source: int8(kmsg.ConfigSourceDynamicTopicConfig)})
		}
		slices.SortFunc(entries, func(a, b broker.ConfigEntry) int { return strings.Compare(a.Name, b.Name) })
	}
	out := make([]kmsg.CreateTopicsResponseTopicConfig, 0, len(entries))
	for _, e := range entries {
		c := kmsg.NewCreateTopicsResponseTopicConfig()
		c.Name, c.Value, c.ReadOnly, c.Source, c.IsSensitive = e.Name, e.Value, e.ReadOnly, e.Source, e.Sensitive
		if e.Sensitive {
			c.Value = nil
		}
		out = append(out, c)
	}
	return out
}

func failCreateTopics(kreq kmsg.Request, code int16) kmsg.Response {
	req := kreq.(*kmsg.CreateTopicsRequest)
	resp := req.ResponseKind().(*kmsg.CreateTopicsResponse)
	for _, rt := range req.Topics {
		st := kmsg.NewCreateTopicsResponseTopic()
		st.Topic, st.ErrorCode = rt.Topic, code
		resp.Topics = append(resp.Topics, st)
	}
	return resp
}
