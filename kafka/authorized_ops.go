package kafka

// Authorized operations, as Metadata, DescribeGroups and DescribeCluster
// report them (KIP-430).

import "github.com/twmb/franz-go/pkg/kmsg"

// Authorized-operation bitfields for a broker without ACLs: every operation
// that applies to the resource (kmsg.ACLOperation values as bit numbers).
var (
	allTopicOperations = aclBits(kmsg.ACLOperationRead, kmsg.ACLOperationWrite, kmsg.ACLOperationCreate,
		kmsg.ACLOperationDelete, kmsg.ACLOperationAlter, kmsg.ACLOperationDescribe,
		kmsg.ACLOperationDescribeConfigs, kmsg.ACLOperationAlterConfigs)
	allClusterOperations = aclBits(kmsg.ACLOperationCreate, kmsg.ACLOperationAlter, kmsg.ACLOperationDescribe,
		kmsg.ACLOperationClusterAction, kmsg.ACLOperationDescribeConfigs, kmsg.ACLOperationAlterConfigs,
		kmsg.ACLOperationIdempotentWrite)
	allGroupOperations = aclBits(kmsg.ACLOperationRead, kmsg.ACLOperationDescribe, kmsg.ACLOperationDelete)
)

// aclBits is the bitfield with the bits of ops set.
func aclBits(ops ...kmsg.ACLOperation) int32 {
	var bits int32
	for _, op := range ops {
		bits |= 1 << op
	}
	return bits
}
