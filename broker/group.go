package broker

// The classic consumer-group coordinator, written the way go.etcd.io/raft is
// written: deterministic types that take events and return decisions, with
// no clocks, goroutines, timers, sockets or files inside.
//
// Each call carries `now`. Before handling its input, a call fires every
// deadline that is due at `now` (session timeouts, the rebalance timeout,
// the initial rebalance delay, the pending-sync timeout), so the outcome
// does not depend on how often the caller ticks; Tick(now) does only that
// firing, and NextDeadline tells the caller when to call it next.
//
// JoinGroup and SyncGroup responses may be delayed (a join waits for the
// other members, a follower's sync waits for the leader's assignment), so
// those requests carry an opaque token chosen by the caller and every call
// returns a GroupOutput listing the (token, response) pairs that are now
// complete. Requests whose answer is never delayed (Heartbeat, LeaveGroup,
// OffsetCommit, DeleteGroups, OffsetDelete) return their answer directly.
//
// The output contract, like raft's Ready:
//
//  1. append out.Records, then out.TxnRecords as one transactional batch of
//     out.TxnProducer, to the group's __consumer_offsets partition and
//     wait until they are durable (committed, in cluster mode);
//  2. then deliver out.Responses and the call's direct result.
//
// Transactional offset commits (TxnCommitOffsets) stay pending until the
// producer's transaction ends: once its commit or abort marker is in the
// partition's log, the caller reports it with CompleteTxn, before the
// transaction coordinator lets that producer start another transaction.
// Replay meets the marker in log order; group_txn.go explains why the
// other groups' and producers' records the table may have written between
// the marker and CompleteTxn do not change the outcome.
//
// State is applied in memory when the call returns, before the records are
// durable. If the append fails, the caller must not deliver the responses
// (answer them with the append error mapped as Kafka does, e.g.
// NOT_COORDINATOR) and must drop this partition's GroupTable and rebuild it
// by replay, exactly as a coordinator that lost leadership does. The caller
// serialises calls per GroupTable; nothing here is safe for concurrent use.
// Byte slices in responses alias the group's state: encode them before the
// next call, never modify them. Request byte slices are copied where kept;
// request strings are kept as they are, so decode requests with kmsg's
// ReadFrom, not UnsafeReadFrom.
//
// Wiring, per __consumer_offsets partition this node leads: one goroutine
// owns a GroupTable built by GroupReplayer from the partition's records;
// FindCoordinator routes a group to GroupOffsetsPartition(id, count); the
// loop calls Tick at NextDeadline, ExpireOffsets every
// offsets.retention.check.interval.ms, Unload on losing the partition, and
// cleans the log with GroupCompactor.

import (
	"crypto/rand"
	"io"
	"time"
)

// GroupConfig holds the coordinator settings (Kafka's names in comments).
// Zero values take the documented defaults; where zero is a meaningful
// setting, a negative value selects it.
type GroupConfig struct {
	// InitialRebalanceDelay is group.initial.rebalance.delay.ms: how long the
	// first rebalance of an empty group waits for more members. Default 3s;
	// negative means no delay.
	InitialRebalanceDelay time.Duration
	// MinSessionTimeout and MaxSessionTimeout are group.min.session.timeout.ms
	// (default 6s) and group.max.session.timeout.ms (default 30m).
	MinSessionTimeout time.Duration
	MaxSessionTimeout time.Duration
	// MaxSize is group.max.size. Default (0) is unlimited.
	MaxSize int
	// NewMemberJoinTimeout bounds how long a brand-new member may wait in a
	// JoinGroup (Kafka's fixed 5 minutes).
	NewMemberJoinTimeout time.Duration
	// OffsetsRetention is offsets.retention.minutes. Default 7 days.
	OffsetsRetention time.Duration
	// MaxOffsetMetadataBytes is offset.metadata.max.bytes. Default 4096.
	MaxOffsetMetadataBytes int
	// Rand supplies the randomness of member ids. Default crypto/rand.Reader;
	// tests pass a seeded source for reproducible ids.
	Rand io.Reader
}

// Defaults, Kafka's.
const (
	groupDefaultInitialRebalanceDelay  = 3 * time.Second
	groupDefaultMinSessionTimeout      = 6 * time.Second
	groupDefaultMaxSessionTimeout      = 30 * time.Minute
	groupDefaultNewMemberJoinTimeout   = 5 * time.Minute
	groupDefaultOffsetsRetention       = 7 * 24 * time.Hour
	groupDefaultMaxOffsetMetadataBytes = 4096
)

func (c GroupConfig) withDefaults() GroupConfig {
	c.InitialRebalanceDelay = groupDurationDefault(c.InitialRebalanceDelay, groupDefaultInitialRebalanceDelay)
	c.MinSessionTimeout = groupDurationDefault(c.MinSessionTimeout, groupDefaultMinSessionTimeout)
	c.MaxSessionTimeout = groupDurationDefault(c.MaxSessionTimeout, groupDefaultMaxSessionTimeout)
	c.NewMemberJoinTimeout = groupDurationDefault(c.NewMemberJoinTimeout, groupDefaultNewMemberJoinTimeout)
	c.OffsetsRetention = groupDurationDefault(c.OffsetsRetention, groupDefaultOffsetsRetention)
	if c.MaxOffsetMetadataBytes == 0 {
		c.MaxOffsetMetadataBytes = groupDefaultMaxOffsetMetadataBytes
	}
	if c.Rand == nil {
		c.Rand = rand.Reader
	}
	return c
}

func groupDurationDefault(d, def time.Duration) time.Duration {
	switch {
	case d == 0:
		return def
	case d < 0:
		return 0
	}
	return d
}

// GroupState is a classic group's state, as DescribeGroups and ListGroups
// name it.
type GroupState int8

const (
	GroupEmpty GroupState = iota
	GroupPreparingRebalance
	GroupCompletingRebalance
	GroupStable
	GroupDead
)

func (s GroupState) String() string {
	switch s {
	case GroupEmpty:
		return "Empty"
	case GroupPreparingRebalance:
		return "PreparingRebalance"
	case GroupCompletingRebalance:
		return "CompletingRebalance"
	case GroupStable:
		return "Stable"
	case GroupDead:
		return "Dead"
	}
	return "Unknown"
}

// GroupProtocol is one (name, metadata) pair a member supports, in the
// member's order of preference.
type GroupProtocol struct {
	Name     string
	Metadata []byte
}

// GroupJoinRequest is a JoinGroup request for one group.
type GroupJoinRequest struct {
	MemberID   string // "" for a member joining for the first time
	InstanceID string // group.instance.id (KIP-345); "" for a dynamic member
	ClientID   string
	ClientHost string
	// SessionTimeoutMs must lie within [MinSessionTimeout, MaxSessionTimeout].
	SessionTimeoutMs int32
	// RebalanceTimeoutMs is v1+; v0 clients have none, and a value <= 0 is
	// taken to be the session timeout, as Kafka does for v0.
	RebalanceTimeoutMs int32
	ProtocolType       string
	Protocols          []GroupProtocol
	// RequireKnownMemberID is set for JoinGroup v4+ (KIP-394): a new dynamic
	// member is given an id with MEMBER_ID_REQUIRED and must join again.
	RequireKnownMemberID bool
	// SupportSkippingAssignment is set for JoinGroup v9+: a static leader
	// that rejoins a stable group is told it leads but must not reassign.
	SupportSkippingAssignment bool
	Reason                    string // v8+, informational
}

// GroupJoinMember is one member as the leader's JoinGroup response lists it.
type GroupJoinMember struct {
	MemberID   string
	InstanceID string // "" for dynamic members
	Metadata   []byte // the member's metadata for the selected protocol
}

// GroupJoinResponse is a JoinGroup response.
type GroupJoinResponse struct {
	ErrorCode      int16
	GenerationID   int32   // -1 with an error
	ProtocolType   *string // nil with an error
	ProtocolName   *string // nil with an error
	LeaderID       string
	SkipAssignment bool // v9+
	MemberID       string
	Members        []GroupJoinMember // to the leader only
}

// GroupMemberAssignment is one entry of the leader's SyncGroup assignment.
type GroupMemberAssignment struct {
	MemberID   string
	Assignment []byte
}

// GroupSyncRequest is a SyncGroup request for one group.
type GroupSyncRequest struct {
	MemberID     string
	InstanceID   string
	GenerationID int32
	ProtocolType *string // v5+; nil when not sent
	ProtocolName *string // v5+; nil when not sent
	Assignments  []GroupMemberAssignment
}

// GroupSyncResponse is a SyncGroup response.
type GroupSyncResponse struct {
	ErrorCode    int16
	ProtocolType *string
	ProtocolName *string
	Assignment   []byte
}

// GroupHeartbeatRequest is a Heartbeat request for one group.
type GroupHeartbeatRequest struct {
	MemberID     string
	InstanceID   string
	GenerationID int32
}

// GroupLeaveMember is one member of a (batched, v3+) LeaveGroup request.
// An empty MemberID with an InstanceID removes that static member
// (administrative removal); v0-v2 requests carry one member and no
// instance id.
type GroupLeaveMember struct {
	MemberID   string
	InstanceID string
	Reason     string
}

// GroupLeaveResult is the outcome for one GroupLeaveMember.
type GroupLeaveResult struct {
	MemberID   string
	InstanceID string
	ErrorCode  int16
}

// GroupLeaveResponse is a LeaveGroup response. For v0-v2 the handler
// reports Members[0].ErrorCode as the top-level error, as Kafka does.
type GroupLeaveResponse struct {
	ErrorCode int16
	Members   []GroupLeaveResult
}

// GroupResponse is one delayed request that is now complete: exactly one of
// Join and Sync is set.
type GroupResponse struct {
	Token uint64
	Join  *GroupJoinResponse
	Sync  *GroupSyncResponse
}

// GroupRecord is one record for __consumer_offsets, already encoded in
// Kafka's schema. A nil Value is a tombstone.
type GroupRecord struct {
	Key   []byte
	Value []byte
}

// GroupOutput is what a call decided: records to make durable, then
// responses to deliver (see the contract at the top of this file).
//
// TxnRecords are the offset commits of a TxnOffsetCommit: the caller
// appends them after Records as one transactional batch (attributes
// transactional, producer id and epoch TxnProducer), so that they stay
// pending until the producer's commit or abort marker (group_txn.go).
// Only TxnCommitOffsets sets them.
type GroupOutput struct {
	Records     []GroupRecord
	TxnProducer GroupTxnProducer
	TxnRecords  []GroupRecord
	Responses   []GroupResponse
}

// GroupTxnProducer names the transactional producer of GroupOutput's
// TxnRecords.
type GroupTxnProducer struct {
	ID    int64
	Epoch int16
}

func (o *GroupOutput) append(more GroupOutput) {
	o.Records = append(o.Records, more.Records...)
	if len(more.TxnRecords) > 0 {
		o.TxnProducer = more.TxnProducer
		o.TxnRecords = append(o.TxnRecords, more.TxnRecords...)
	}
	o.Responses = append(o.Responses, more.Responses...)
}

// GroupMemberDescription is one member in DescribeGroups.
type GroupMemberDescription struct {
	MemberID   string
	InstanceID string
	ClientID   string
	ClientHost string
	Metadata   []byte // only while Stable, as Kafka reports it
	Assignment []byte // only while Stable
}

// GroupDescription is a group in DescribeGroups.
type GroupDescription struct {
	GroupID      string
	State        GroupState
	ProtocolType string
	Protocol     string // only while Stable, as Kafka reports it
	Generation   int32
	LeaderID     string
	Members      []GroupMemberDescription
}

// GroupListing is a group in ListGroups.
type GroupListing struct {
	GroupID      string
	ProtocolType string
	State        GroupState
}
