package kafka

import (
	"context"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// schedule says how a connection runs a request relative to the others
// read from the same connection. Responses always go out in request order;
// this only decides when the work starts.
type schedule uint8

const (
	// inOrder requests run on the connection's read goroutine after every
	// earlier produce has finished, so they observe the effects of all
	// earlier requests and later requests observe theirs. Reading pauses
	// while they run; they are short.
	inOrder schedule = iota
	// concurrentProduce requests run on their own goroutine. Partitions
	// are chained per connection: a partition's append waits for the same
	// partition's append in every earlier request on the connection, which
	// keeps idempotent sequence numbers in order.
	concurrentProduce
	// concurrentFetch requests run on their own goroutine and order with
	// nothing: they only read, and a long poll must not hold up the
	// requests behind it.
	concurrentFetch
	// concurrentGroup requests (JoinGroup, SyncGroup) run on their own
	// goroutine and order with nothing: the broker answers them when other
	// members have joined or the leader has assigned, which may take a
	// rebalance timeout, and the connection's other requests (a client's
	// heartbeats, commits, metadata) must not wait behind them. Kafka
	// itself processes one request per connection at a time, so clients
	// already send these on a connection of their own or wait for them.
	concurrentGroup
)

// api is one Kafka API this server implements: the versions it advertises
// in ApiVersions and accepts, and the functions that answer it.
type api struct {
	key      int16
	name     string
	min, max int16 // the advertised (and accepted) version range
	schedule schedule

	// handle answers a decoded request whose version is in [min, max].
	handle func(s *Server, ctx context.Context, r *request) kmsg.Response
	// fail answers a decoded request of any version with code in every
	// error slot: UNSUPPORTED_VERSION for versions outside [min, max],
	// UNKNOWN_SERVER_ERROR after a handler panicked.
	fail func(kreq kmsg.Request, code int16) kmsg.Response
}

// apis is THE table of what Chronik speaks: ApiVersions advertises exactly
// these ranges, the connection loop accepts exactly these keys and
// versions, and the tests exercise every version listed. Each API's file
// (00_produce.go, ...) opens with a comment naming the same range.
//
// Minimums are the Kafka 4.0 floor (KIP-896 removed older versions);
// maximums are the newest version kmsg encodes and that we implement. It is
// filled in init because ApiVersions' handler reads it.
var apis []api

// apiByKey indexes apis by key; nil for keys we do not serve.
var apiByKey [128]*api

func init() {
	apis = []api{
		{key: 0, name: "Produce", min: 3, max: 13, schedule: concurrentProduce, handle: (*Server).handleProduce, fail: failProduce},
		{key: 1, name: "Fetch", min: 4, max: 18, schedule: concurrentFetch, handle: (*Server).handleFetch, fail: failFetch},
		{key: 2, name: "ListOffsets", min: 1, max: 11, handle: (*Server).handleListOffsets, fail: failListOffsets},
		{key: 3, name: "Metadata", min: 0, max: 13, handle: (*Server).handleMetadata, fail: failMetadata},
		{key: 8, name: "OffsetCommit", min: 2, max: 10, handle: (*Server).handleOffsetCommit, fail: failOffsetCommit},
		{key: 9, name: "OffsetFetch", min: 1, max: 10, handle: (*Server).handleOffsetFetch, fail: failOffsetFetch},
		{key: 10, name: "FindCoordinator", min: 0, max: 6, handle: (*Server).handleFindCoordinator, fail: failFindCoordinator},
		{key: 11, name: "JoinGroup", min: 2, max: 9, schedule: concurrentGroup, handle: (*Server).handleJoinGroup, fail: failJoinGroup},
		{key: 12, name: "Heartbeat", min: 0, max: 4, handle: (*Server).handleHeartbeat, fail: failHeartbeat},
		{key: 13, name: "LeaveGroup", min: 0, max: 5, handle: (*Server).handleLeaveGroup, fail: failLeaveGroup},
		{key: 14, name: "SyncGroup", min: 0, max: 5, schedule: concurrentGroup, handle: (*Server).handleSyncGroup, fail: failSyncGroup},
		{key: 15, name: "DescribeGroups", min: 0, max: 6, handle: (*Server).handleDescribeGroups, fail: failDescribeGroups},
		{key: 16, name: "ListGroups", min: 0, max: 5, handle: (*Server).handleListGroups, fail: failListGroups},
		{key: 17, name: "SASLHandshake", min: 0, max: 1, handle: (*Server).handleSaslHandshake, fail: failSaslHandshake},
		{key: 18, name: "ApiVersions", min: 0, max: 5, handle: (*Server).handleApiVersions, fail: failApiVersions},
		{key: 19, name: "CreateTopics", min: 2, max: 7, handle: (*Server).handleCreateTopics, fail: failCreateTopics},
		{key: 20, name: "DeleteTopics", min: 1, max: 6, handle: (*Server).handleDeleteTopics, fail: failDeleteTopics},
		{key: 21, name: "DeleteRecords", min: 0, max: 2, handle: (*Server).handleDeleteRecords, fail: failDeleteRecords},
		{key: 22, name: "InitProducerID", min: 0, max: 5, handle: (*Server).handleInitProducerID, fail: failInitProducerID},
		{key: 23, name: "OffsetForLeaderEpoch", min: 2, max: 4, handle: (*Server).handleOffsetForLeaderEpoch, fail: failOffsetForLeaderEpoch},
		{key: 24, name: "AddPartitionsToTxn", min: 0, max: 5, handle: (*Server).handleAddPartitionsToTxn, fail: failAddPartitionsToTxn},
		{key: 25, name: "AddOffsetsToTxn", min: 0, max: 4, handle: (*Server).handleAddOffsetsToTxn, fail: failAddOffsetsToTxn},
		{key: 26, name: "EndTxn", min: 0, max: 5, handle: (*Server).handleEndTxn, fail: failEndTxn},
		{key: 27, name: "WriteTxnMarkers", min: 1, max: 2, handle: (*Server).handleWriteTxnMarkers, fail: failWriteTxnMarkers},
		{key: 28, name: "TxnOffsetCommit", min: 0, max: 6, handle: (*Server).handleTxnOffsetCommit, fail: failTxnOffsetCommit},
		{key: 29, name: "DescribeACLs", min: 1, max: 3, handle: (*Server).handleDescribeACLs, fail: failDescribeACLs},
		{key: 30, name: "CreateACLs", min: 1, max: 3, handle: (*Server).handleCreateACLs, fail: failCreateACLs},
		{key: 31, name: "DeleteACLs", min: 1, max: 3, handle: (*Server).handleDeleteACLs, fail: failDeleteACLs},
		{key: 32, name: "DescribeConfigs", min: 1, max: 4, handle: (*Server).handleDescribeConfigs, fail: failDescribeConfigs},
		{key: 33, name: "AlterConfigs", min: 0, max: 2, handle: (*Server).handleAlterConfigs, fail: failAlterConfigs},
		{key: 35, name: "DescribeLogDirs", min: 1, max: 5, handle: (*Server).handleDescribeLogDirs, fail: failDescribeLogDirs},
		{key: 36, name: "SASLAuthenticate", min: 0, max: 2, handle: (*Server).handleSaslAuthenticate, fail: failSaslAuthenticate},
		{key: 37, name: "CreatePartitions", min: 0, max: 3, handle: (*Server).handleCreatePartitions, fail: failCreatePartitions},
		{key: 42, name: "DeleteGroups", min: 0, max: 3, handle: (*Server).handleDeleteGroups, fail: failDeleteGroups},
		{key: 44, name: "IncrementalAlterConfigs", min: 0, max: 1, handle: (*Server).handleIncrementalAlterConfigs, fail: failIncrementalAlterConfigs},
		{key: 47, name: "OffsetDelete", min: 0, max: 0, handle: (*Server).handleOffsetDelete, fail: failOffsetDelete},
		{key: 50, name: "DescribeUserSCRAMCredentials", min: 0, max: 0, handle: (*Server).handleDescribeUserScramCredentials, fail: failDescribeUserScramCredentials},
		{key: 51, name: "AlterUserSCRAMCredentials", min: 0, max: 0, handle: (*Server).handleAlterUserScramCredentials, fail: failAlterUserScramCredentials},
		{key: 60, name: "DescribeCluster", min: 0, max: 2, handle: (*Server).handleDescribeCluster, fail: failDescribeCluster},
		{key: 61, name: "DescribeProducers", min: 0, max: 0, handle: (*Server).handleDescribeProducers, fail: failDescribeProducers},
		{key: 64, name: "UnregisterBroker", min: 0, max: 0, handle: (*Server).handleUnregisterBroker, fail: failUnregisterBroker},
		{key: 65, name: "DescribeTransactions", min: 0, max: 0, handle: (*Server).handleDescribeTransactions, fail: failDescribeTransactions},
		{key: 66, name: "ListTransactions", min: 0, max: 2, handle: (*Server).handleListTransactions, fail: failListTransactions},
	}
	for i := range apis {
		a := &apis[i]
		if kreq := kmsg.RequestForKey(a.key); kreq == nil || a.max > kreq.MaxVersion() || a.min > a.max {
			panic("kafka: api table entry out of kmsg's range: " + a.name)
		}
		apiByKey[a.key] = a
	}
}

// lookupAPI returns the table entry for key, or nil if we do not serve it.
func lookupAPI(key int16) *api {
	if key < 0 || int(key) >= len(apiByKey) {
		return nil
	}
	return apiByKey[key]
}
