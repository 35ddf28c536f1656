package kafka

// Authorization: every handler asks the broker's authorizer (which allows
// everything when it is off) whether the request's principal, connected
// from its client IP, may perform Kafka's operation for the API on each
// resource it names, and answers Kafka's codes where it may not
// (TOPIC_AUTHORIZATION_FAILED, GROUP_AUTHORIZATION_FAILED,
// CLUSTER_AUTHORIZATION_FAILED, TRANSACTIONAL_ID_AUTHORIZATION_FAILED).
// Decisions are never cached per connection: an ACL change applies to the
// next request of every open connection. Authorized operations, as
// Metadata, DescribeGroups and DescribeCluster report them (KIP-430), are
// computed by the same calls.
//
// What each API checks (Kafka's KafkaApis), resource: operation → code:
//
//	Produce                 topic: WRITE → TOPIC_AUTHORIZATION_FAILED per partition;
//	                        with a transactional id also WRITE on it → TRANSACTIONAL_ID_AUTHORIZATION_FAILED
//	Fetch                   topic: READ → TOPIC_AUTHORIZATION_FAILED per partition
//	ListOffsets             topic: DESCRIBE → TOPIC_AUTHORIZATION_FAILED per partition
//	Metadata                topic: DESCRIBE (all topics: filtered; named: TOPIC_AUTHORIZATION_FAILED);
//	                        auto-create: CREATE on cluster or topic
//	OffsetCommit            group: READ → GROUP_AUTHORIZATION_FAILED; topic: READ → TOPIC_AUTHORIZATION_FAILED
//	OffsetFetch             group: DESCRIBE; topic: DESCRIBE (all: filtered; named: TOPIC_AUTHORIZATION_FAILED)
//	FindCoordinator         group or transactional id: DESCRIBE
//	JoinGroup, SyncGroup,
//	Heartbeat, LeaveGroup   group: READ
//	DescribeGroups          group: DESCRIBE (per group)
//	ListGroups              cluster: DESCRIBE, else filtered to groups the principal may DESCRIBE
//	ApiVersions             none
//	CreateTopics            cluster or topic: CREATE; configs in the answer need DESCRIBE_CONFIGS on the topic
//	DeleteTopics            topic: DELETE (by ID: DESCRIBE too, else UNKNOWN_TOPIC_ID)
//	DeleteRecords           topic: DELETE
//	InitProducerID          transactional id: WRITE; idempotent: cluster IDEMPOTENT_WRITE or WRITE on any topic
//	OffsetForLeaderEpoch    topic: DESCRIBE (from a replica: cluster CLUSTER_ACTION)
//	AddPartitionsToTxn      v0-3: transactional id WRITE, topic WRITE; v4+: cluster CLUSTER_ACTION
//	AddOffsetsToTxn         transactional id: WRITE; group: READ
//	EndTxn                  transactional id: WRITE
//	WriteTxnMarkers         cluster: CLUSTER_ACTION
//	TxnOffsetCommit         transactional id: WRITE; group: READ; topic: READ
//	DescribeAcls            cluster: DESCRIBE
//	CreateAcls, DeleteAcls  cluster: ALTER
//	DescribeConfigs         topic or (broker) cluster: DESCRIBE_CONFIGS
//	AlterConfigs,
//	IncrementalAlterConfigs topic or (broker) cluster: ALTER_CONFIGS
//	DescribeLogDirs         cluster: DESCRIBE → CLUSTER_AUTHORIZATION_FAILED
//	CreatePartitions        topic: ALTER
//	DeleteGroups            group: DELETE
//	OffsetDelete            group: DELETE; topic: READ
//	DescribeCluster         none (authorized operations only with cluster DESCRIBE)
//	DescribeProducers       topic: READ
//	UnregisterBroker        cluster: ALTER
//	DescribeTransactions    transactional id: DESCRIBE; partitions filtered by topic DESCRIBE
//	ListTransactions        filtered to transactional ids the principal may DESCRIBE

import (
	"fmt"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/chronik-stream/chronik/broker"
)

// The operations that apply to each resource type (Kafka's
// AclEntry.supportedOperations), the bits an authorized-operations field
// may carry.
var (
	topicOperations = []kmsg.ACLOperation{kmsg.ACLOperationRead, kmsg.ACLOperationWrite, kmsg.ACLOperationCreate,
		kmsg.ACLOperationDelete, kmsg.ACLOperationAlter, kmsg.ACLOperationDescribe,
		kmsg.ACLOperationDescribeConfigs, kmsg.ACLOperationAlterConfigs}
	clusterOperations = []kmsg.ACLOperation{kmsg.ACLOperationCreate, kmsg.ACLOperationAlter, kmsg.ACLOperationDescribe,
		kmsg.ACLOperationClusterAction, kmsg.ACLOperationDescribeConfigs, kmsg.ACLOperationAlterConfigs,
		kmsg.ACLOperationIdempotentWrite}
	groupOperations = []kmsg.ACLOperation{kmsg.ACLOperationRead, kmsg.ACLOperationDescribe, kmsg.ACLOperationDelete}
)

// authorizedOps is the bitfield (kmsg.ACLOperation values as bit numbers)
// of the operations in ops that r's principal may perform on the resource.
func (s *Server) authorizedOps(r *request, rt kmsg.ACLResourceType, name string, ops []kmsg.ACLOperation) int32 {
	var bits int32
	for _, op := range ops {
		if s.b.Authorize(r.principal, r.clientIP, op, rt, name) {
			bits |= 1 << op
		}
	}
	return bits
}

func (s *Server) topicAuthorizedOps(r *request, topic string) int32 {
	return s.authorizedOps(r, kmsg.ACLResourceTypeTopic, topic, topicOperations)
}

// clusterAuthorizedOps is the cluster's bitfield, empty for a principal
// that may not DESCRIBE the cluster (Kafka's Metadata and DescribeCluster).
func (s *Server) clusterAuthorizedOps(r *request) int32 {
	if !s.mayCluster(r, kmsg.ACLOperationDescribe) {
		return 0
	}
	return s.authorizedOps(r, kmsg.ACLResourceTypeCluster, broker.ClusterResourceName, clusterOperations)
}

func (s *Server) groupAuthorizedOps(r *request, group string) int32 {
	return s.authorizedOps(r, kmsg.ACLResourceTypeGroup, group, groupOperations)
}

// mayTopic reports whether r's principal may perform op on a topic.
func (s *Server) mayTopic(r *request, op kmsg.ACLOperation, topic string) bool {
	return s.b.Authorize(r.principal, r.clientIP, op, kmsg.ACLResourceTypeTopic, topic)
}

// mayGroup reports whether r's principal may perform op on a group.
func (s *Server) mayGroup(r *request, op kmsg.ACLOperation, group string) bool {
	return s.b.Authorize(r.principal, r.clientIP, op, kmsg.ACLResourceTypeGroup, group)
}

// mayCluster reports whether r's principal may perform op on the cluster.
func (s *Server) mayCluster(r *request, op kmsg.ACLOperation) bool {
	return s.b.Authorize(r.principal, r.clientIP, op, kmsg.ACLResourceTypeCluster, broker.ClusterResourceName)
}

// mayTxn reports whether r's principal may perform op on a transactional id.
func (s *Server) mayTxn(r *request, op kmsg.ACLOperation, id string) bool {
	return s.b.Authorize(r.principal, r.clientIP, op, kmsg.ACLResourceTypeTransactionalId, id)
}

// Every operation of each resource type: what a principal allowed
// everything (the authorizer off, or a super user) is told.
var (
	allTopicOperations   = aclBits(topicOperations...)
	allClusterOperations = aclBits(clusterOperations...)
	allGroupOperations   = aclBits(groupOperations...)
)

// aclBits is the bitfield with the bits of ops set.
func aclBits(ops ...kmsg.ACLOperation) int32 {
	var bits int32
	for _, op := range ops {
		bits |= 1 << op
	}
	return bits
}

// configResourceDenied is the error for a config resource r's principal
// may not op (DESCRIBE_CONFIGS or ALTER_CONFIGS), nil if it may: a topic
// is checked on the topic (TOPIC_AUTHORIZATION_FAILED), a broker or broker
// logger on the cluster (CLUSTER_AUTHORIZATION_FAILED), as Kafka. Other
// types are left to the handler (INVALID_REQUEST).
func (s *Server) configResourceDenied(r *request, op kmsg.ACLOperation, typ kmsg.ConfigResourceType, name string) error {
	switch typ {
	case kmsg.ConfigResourceTypeTopic:
		if !s.mayTopic(r, op, name) {
			return fmt.Errorf("not authorized to %s topic %s: %w", op, name, kerr.TopicAuthorizationFailed)
		}
	case kmsg.ConfigResourceTypeBroker, kmsg.ConfigResourceTypeBrokerLogger:
		if !s.mayCluster(r, op) {
			return fmt.Errorf("not authorized to %s the cluster: %w", op, kerr.ClusterAuthorizationFailed)
		}
	}
	return nil
}
