package broker

import (
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
)

// GroupStateMachine is one classic consumer group: Kafka's GroupCoordinator
// and GroupMetadata for that group, minus the I/O. It implements the eager
// rebalance protocol (Empty -> PreparingRebalance -> CompletingRebalance ->
// Stable), KIP-394 member ids, KIP-345 static membership and the generation
// fencing of commits; KIP-429 cooperative rebalancing needs nothing more
// from the broker because it is built by the clients out of eager
// generations. It also holds the group's committed offsets.
//
// See group.go for how calls, time and outputs work.
type GroupStateMachine struct {
	id  string
	cfg GroupConfig

	state GroupState
	// stateTimestamp is the time (ms) of the last state change, Kafka's
	// currentStateTimestamp; -1 if unknown (loaded from an old record).
	// While Empty it is when the group became empty, which is what offset
	// expiry counts from.
	stateTimestamp int64
	generation     int32
	protocolType   string // "" until the first member joins
	protocolName   string // valid when hasProtocol
	hasProtocol    bool
	leaderID       string

	members         []*groupMember // join order: deterministic leaders and listings
	byID            map[string]*groupMember
	static          map[string]string    // group.instance.id -> member id
	pending         map[string]time.Time // ids given out with MEMBER_ID_REQUIRED -> expiry
	pendingSync     map[string]bool      // members of this generation yet to SyncGroup
	numAwaitingJoin int
	supported       map[string]int // protocol name -> members supporting it

	// newMemberAdded extends the initial rebalance delay: set when a member
	// joins a group rebalancing for the first time (generation 0).
	newMemberAdded bool
	join           groupJoinTimer
	// syncDeadline is when members of a new generation that have not sent
	// SyncGroup are removed (rebalance timeout after the join completed).
	syncDeadline time.Time

	// subscribedTopics is the union of the consumer-protocol subscriptions
	// of this generation, when known (Kafka's subscribedTopics): offsets of
	// topics nobody subscribes to may expire or be deleted while Stable.
	subscribedTopics map[string]bool
	subscribedKnown  bool

	offsets map[GroupTopicPartition]GroupCommittedOffset
	// txn holds the offsets of open transactions (group_txn.go).
	txn groupTxnOffsets

	out GroupOutput // accumulated during one call
}

// groupJoinTimer is the pending rebalance: Kafka's DelayedJoin, or, for a
// group rebalancing out of Empty, its InitialDelayedJoin.
type groupJoinTimer struct {
	deadline time.Time // zero: no rebalance in preparation
	// initial marks the initial delay: it never completes early, and is
	// extended (up to the rebalance timeout) while new members keep coming.
	initial   bool
	delay     time.Duration
	remaining time.Duration
}

// NewGroupStateMachine returns an empty group.
func NewGroupStateMachine(groupID string, cfg GroupConfig, now time.Time) *GroupStateMachine {
	return &GroupStateMachine{
		id:             groupID,
		cfg:            cfg.withDefaults(),
		state:          GroupEmpty,
		stateTimestamp: now.UnixMilli(),
		byID:           make(map[string]*groupMember),
		static:         make(map[string]string),
		pending:        make(map[string]time.Time),
		pendingSync:    make(map[string]bool),
		supported:      make(map[string]int),
		offsets:        make(map[GroupTopicPartition]GroupCommittedOffset),
	}
}

// ID returns the group id.
func (g *GroupStateMachine) ID() string { return g.id }

// State returns the group's state.
func (g *GroupStateMachine) State() GroupState { return g.state }

// Generation returns the current generation id.
func (g *GroupStateMachine) Generation() int32 { return g.generation }

// ProtocolType returns the group's protocol type ("consumer", "connect", ...).
func (g *GroupStateMachine) ProtocolType() string { return g.protocolType }

// LeaderID returns the current leader's member id ("" without members).
func (g *GroupStateMachine) LeaderID() string { return g.leaderID }

// Join handles a JoinGroup. Its response, and those of other members'
// pending joins, arrive in the returned output (now or in a later call).
func (g *GroupStateMachine) Join(now time.Time, token uint64, req GroupJoinRequest) GroupOutput {
	g.advance(now)
	g.handleJoin(now, token, &req)
	return g.finish(now)
}

// Sync handles a SyncGroup. A follower's response waits for the leader's.
func (g *GroupStateMachine) Sync(now time.Time, token uint64, req GroupSyncRequest) GroupOutput {
	g.advance(now)
	g.handleSync(now, token, &req)
	return g.finish(now)
}

// Heartbeat handles a Heartbeat and returns its error code.
func (g *GroupStateMachine) Heartbeat(now time.Time, req GroupHeartbeatRequest) (int16, GroupOutput) {
	g.advance(now)
	code := g.handleHeartbeat(now, &req)
	return code, g.finish(now)
}

// Leave handles a LeaveGroup for a batch of members.
func (g *GroupStateMachine) Leave(now time.Time, members []GroupLeaveMember) (GroupLeaveResponse, GroupOutput) {
	g.advance(now)
	resp := g.handleLeave(now, members)
	return resp, g.finish(now)
}

// Tick fires the deadlines due at now.
func (g *GroupStateMachine) Tick(now time.Time) GroupOutput {
	g.advance(now)
	return g.finish(now)
}

// Unload answers every pending JoinGroup and SyncGroup with NOT_COORDINATOR
// and marks the group Dead: the coordinator is moving (lost leadership of
// the partition) or shutting down.
func (g *GroupStateMachine) Unload() GroupOutput {
	for _, m := range g.members {
		g.completeJoin(m, groupJoinError(m.memberID, kerr.NotCoordinator.Code))
		g.completeSync(m, groupSyncError(kerr.NotCoordinator.Code))
	}
	g.state = GroupDead
	out := g.out
	g.out = GroupOutput{}
	return out
}

// finish runs the deadlines the call itself made due (a zero initial delay
// completes the rebalance at once) and hands the output over.
func (g *GroupStateMachine) finish(now time.Time) GroupOutput {
	g.advance(now)
	out := g.out
	g.out = GroupOutput{}
	return out
}

// Describe returns the group as DescribeGroups reports it.
func (g *GroupStateMachine) Describe() GroupDescription {
	d := GroupDescription{
		GroupID:      g.id,
		State:        g.state,
		ProtocolType: g.protocolType,
		Generation:   g.generation,
		LeaderID:     g.leaderID,
		Members:      make([]GroupMemberDescription, len(g.members)),
	}
	stable := g.state == GroupStable
	if stable {
		d.Protocol = g.protocolName
	}
	for i, m := range g.members {
		md := GroupMemberDescription{MemberID: m.memberID, InstanceID: m.instanceID, ClientID: m.clientID, ClientHost: m.clientHost}
		if stable {
			md.Metadata = m.metadata(g.protocolName)
			md.Assignment = m.assignment
		}
		d.Members[i] = md
	}
	return d
}

// Deletable reports whether DeleteGroups may delete the group now.
func (g *GroupStateMachine) Deletable() bool { return g.state == GroupEmpty }
