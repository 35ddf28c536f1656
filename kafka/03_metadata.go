package kafka

import (
	"context"
	"slices"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/chronik-stream/chronik/broker"
)

// Metadata: v0-13
//
// Behaviour:
//   - Standalone, one broker: this node, at the broker's advertised host and
//     port, the controller and the leader, only replica and only in-sync
//     replica of every partition at leader epoch 0.
//   - In a cluster, every registered broker; the controller group's leader
//     as controller; each partition's raft leader (LEADER_NOT_AVAILABLE
//     while none is known) at leader epoch = raft term, its replicas, and
//     the same list as ISR (raft needs no ISR: a committed entry is on a
//     majority). A partition this node does not host names its preferred
//     replica as leader.
//   - All topics (internal ones included) for null topics (v1+) or an empty
//     list (v0); no topics for an empty list (v1+).
//   - An unknown topic is created when the request allows it
//     (AllowAutoTopicCreation, always before v4) and the broker has
//     auto-creation on; otherwise UNKNOWN_TOPIC_OR_PARTITION, or
//     INVALID_TOPIC_EXCEPTION if the name could never be a topic.
//   - Topics may be named by ID (v10+, null name): UNKNOWN_TOPIC_ID if
//     there is no such topic.
//   - Authorization, as Kafka: all topics lists only those the principal
//     may DESCRIBE; a topic named (or ID given) that it may not describe is
//     TOPIC_AUTHORIZATION_FAILED, whether it exists or not; auto-creation
//     also needs CREATE on the cluster or on the topic
//     (TOPIC_AUTHORIZATION_FAILED).
//   - Authorized operations (v8+), when asked for: the principal's, per
//     topic and (v8-10) for the cluster.
//
// Version notes:
//   - v1: null topics means all, IsInternal, ControllerID, Rack
//   - v2: ClusterID
//   - v4: AllowAutoTopicCreation
//   - v5: OfflineReplicas
//   - v7: LeaderEpoch
//   - v8: authorized operations (cluster-level until v10)
//   - v9: flexible
//   - v10: topic IDs
//   - v13: top-level ErrorCode

func (s *Server) handleMetadata(_ context.Context, r *request) kmsg.Response {
	req := r.kreq.(*kmsg.MetadataRequest)
	resp := req.ResponseKind().(*kmsg.MetadataResponse)
	for _, bi := range s.brokersOn(r.listener) {
		b := kmsg.NewMetadataResponseBroker()
		b.NodeID, b.Host, b.Port = bi.NodeID, bi.Host, bi.Port
		resp.Brokers = append(resp.Brokers, b)
	}
	clusterID := s.b.ClusterID()
	resp.ClusterID = &clusterID
	resp.ControllerID = s.b.ControllerID()
	if req.Version >= 8 && req.Version <= 10 && req.IncludeClusterAuthorizedOperations {
		resp.AuthorizedOperations = s.clusterAuthorizedOps(r)
	}

	describe := func(info broker.TopicInfo) kmsg.MetadataResponseTopic {
		st := kmsg.NewMetadataResponseTopic()
		name := info.Name
		st.Topic, st.TopicID, st.IsInternal = &name, info.ID, info.Internal
		if req.IncludeTopicAuthorizedOperations {
			st.AuthorizedOperations = s.topicAuthorizedOps(r, name)
		}
		st.Partitions = make([]kmsg.MetadataResponseTopicPartition, info.Partitions)
		for p := range st.Partitions {
			sp := &st.Partitions[p]
			*sp = kmsg.NewMetadataResponseTopicPartition()
			sp.Partition = int32(p)
			replicas := s.b.PartitionReplicas(info.Name, int32(p))
			leader, epoch, err := s.b.PartitionLeader(info.Name, int32(p))
			if err != nil && len(replicas) > 0 {
				// Not hosted here (cluster mode, fewer replicas than
				// nodes): point at the preferred leader.
				leader, epoch = replicas[0], -1
			}
			sp.Leader, sp.LeaderEpoch = leader, epoch
			if leader < 0 {
				sp.ErrorCode = kerr.LeaderNotAvailable.Code
			}
			sp.Replicas, sp.ISR, sp.OfflineReplicas = replicas, replicas, []int32{}
			if _, offline := s.b.PartitionFault(info.Name, int32(p)); offline {
				// This node's replica cannot serve: its log is damaged or
				// failed (Kafka's offline log dir). Produce and fetch
				// here answer the same code.
				self := s.b.Config().NodeID
				sp.ErrorCode = kerr.KafkaStorageError.Code
				sp.OfflineReplicas = []int32{self}
				sp.ISR = slices.DeleteFunc(slices.Clone(replicas), func(r int32) bool { return r == self })
			}
		}
		return st
	}
	failed := func(name *string, id [16]byte, code int16) kmsg.MetadataResponseTopic {
		st := kmsg.NewMetadataResponseTopic()
		st.Topic, st.TopicID, st.ErrorCode = name, id, code
		return st
	}
	mayDescribe := func(name string) bool { return s.mayTopic(r, kmsg.ACLOperationDescribe, name) }

	if req.Topics == nil || (req.Version == 0 && len(req.Topics) == 0) {
		// All topics: only those the principal may describe, silently.
		for _, info := range s.b.Topics() {
			if mayDescribe(info.Name) {
				resp.Topics = append(resp.Topics, describe(info))
			}
		}
		return resp
	}

	autoCreate := req.Version < 4 || req.AllowAutoTopicCreation
	seen := make(map[string]bool, len(req.Topics))
	for _, rt := range req.Topics {
		if rt.Topic == nil {
			// By ID (v10+). A null name below v10 cannot be decoded.
			switch info, ok := s.b.TopicByID(rt.TopicID); {
			case !ok:
				resp.Topics = append(resp.Topics, failed(nil, rt.TopicID, kerr.UnknownTopicID.Code))
			case !mayDescribe(info.Name):
				resp.Topics = append(resp.Topics, failed(nil, rt.TopicID, s.counted(kerr.TopicAuthorizationFailed.Code)))
			default:
				resp.Topics = append(resp.Topics, describe(info))
			}
			continue
		}
		name := *rt.Topic
		if seen[name] {
			continue
		}
		seen[name] = true
		if !mayDescribe(name) {
			// Before anything else: whether the topic exists is not
			// disclosed.
			resp.Topics = append(resp.Topics, failed(&name, [16]byte{}, s.counted(kerr.TopicAuthorizationFailed.Code)))
			continue
		}
		info, ok := s.b.Topic(name)
		switch {
		case ok:
		case broker.ValidateTopicName(name) != nil:
			resp.Topics = append(resp.Topics, failed(&name, [16]byte{}, kerr.InvalidTopicException.Code))
			continue
		case !autoCreate || !s.b.Config().AutoCreateTopics:
			resp.Topics = append(resp.Topics, failed(&name, [16]byte{}, kerr.UnknownTopicOrPartition.Code))
			continue
		case !s.mayCluster(r, kmsg.ACLOperationCreate) && !s.mayTopic(r, kmsg.ACLOperationCreate, name):
			resp.Topics = append(resp.Topics, failed(&name, [16]byte{}, s.counted(kerr.TopicAuthorizationFailed.Code)))
			continue
		default:
			var err error
			if info, err = s.b.AutoCreateTopic(name); err != nil {
				code := s.codeOf(err, "auto-create topic")
				if code == kerr.TopicAlreadyExists.Code { // created meanwhile by another request
					if info, ok = s.b.Topic(name); ok {
						break
					}
				}
				resp.Topics = append(resp.Topics, failed(&name, [16]byte{}, code))
				continue
			}
		}
		resp.Topics = append(resp.Topics, describe(info))
	}
	return resp
}

func failMetadata(kreq kmsg.Request, code int16) kmsg.Response {
	req := kreq.(*kmsg.MetadataRequest)
	resp := req.ResponseKind().(*kmsg.MetadataResponse)
	resp.ErrorCode = code
	for _, rt := range req.Topics {
		st := kmsg.NewMetadataResponseTopic()
		st.Topic, st.TopicID, st.ErrorCode = rt.Topic, rt.TopicID, code
		resp.Topics = append(resp.Topics, st)
	}
	return resp
}
