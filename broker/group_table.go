package broker

import (
	"slices"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
)

// GroupTable holds the groups of one __consumer_offsets partition: the
// unit a coordinator loads, replays, serves and unloads. It routes each
// request to its group and applies Kafka's rules for groups that do not
// exist (yet or any more). Like GroupStateMachine it is deterministic and
// must be driven by one goroutine; see group.go for the output contract.
type GroupTable struct {
	cfg    GroupConfig
	groups map[string]*GroupStateMachine
	// openTxns lists, per producer whose transaction wrote offsets here
	// and has not met its marker yet, the groups it wrote to (group_txn.go).
	openTxns map[int64]map[string]struct{}
}

// NewGroupTable returns an empty table.
func NewGroupTable(cfg GroupConfig) *GroupTable {
	return &GroupTable{cfg: cfg.withDefaults(), groups: make(map[string]*GroupStateMachine)}
}

// Group returns a group, for OffsetFetch and the like.
func (t *GroupTable) Group(groupID string) (*GroupStateMachine, bool) {
	g, ok := t.groups[groupID]
	return g, ok
}

// Len returns the number of groups.
func (t *GroupTable) Len() int { return len(t.groups) }

// Join handles a JoinGroup. Only a member without an id creates a group;
// a member id for a group we do not have is unknown.
func (t *GroupTable) Join(now time.Time, token uint64, groupID string, req GroupJoinRequest) GroupOutput {
	if groupID == "" {
		return groupJoinFailure(token, req.MemberID, kerr.InvalidGroupID.Code)
	}
	g, created := t.groups[groupID], false
	if g == nil {
		if req.MemberID != "" {
			return groupJoinFailure(token, req.MemberID, kerr.UnknownMemberID.Code)
		}
		g, created = NewGroupStateMachine(groupID, t.cfg, now), true
		t.groups[groupID] = g
	}
	out := g.Join(now, token, req)
	t.settle(g, created)
	return out
}

// Sync handles a SyncGroup.
func (t *GroupTable) Sync(now time.Time, token uint64, groupID string, req GroupSyncRequest) GroupOutput {
	if groupID == "" {
		return GroupOutput{Responses: []GroupResponse{{Token: token, Sync: groupSyncFailure(kerr.InvalidGroupID.Code)}}}
	}
	g := t.groups[groupID]
	if g == nil {
		return GroupOutput{Responses: []GroupResponse{{Token: token, Sync: groupSyncFailure(kerr.UnknownMemberID.Code)}}}
	}
	out := g.Sync(now, token, req)
	t.settle(g, false)
	return out
}

// Heartbeat handles a Heartbeat.
func (t *GroupTable) Heartbeat(now time.Time, groupID string, req GroupHeartbeatRequest) (int16, GroupOutput) {
	if groupID == "" {
		return kerr.InvalidGroupID.Code, GroupOutput{}
	}
	g := t.groups[groupID]
	if g == nil {
		return kerr.UnknownMemberID.Code, GroupOutput{}
	}
	code, out := g.Heartbeat(now, req)
	t.settle(g, false)
	return code, out
}

// Leave handles a LeaveGroup.
func (t *GroupTable) Leave(now time.Time, groupID string, members []GroupLeaveMember) (GroupLeaveResponse, GroupOutput) {
	if groupID == "" {
		return GroupLeaveResponse{ErrorCode: kerr.InvalidGroupID.Code}, GroupOutput{}
	}
	g := t.groups[groupID]
	if g == nil {
		resp := GroupLeaveResponse{Members: make([]GroupLeaveResult, len(members))}
		for i, l := range members {
			resp.Members[i] = GroupLeaveResult{MemberID: l.MemberID, InstanceID: l.InstanceID, ErrorCode: kerr.UnknownMemberID.Code}
		}
		return resp, GroupOutput{}
	}
	resp, out := g.Leave(now, members)
	t.settle(g, false)
	return resp, out
}

// CommitOffsets handles an OffsetCommit. A commit with a negative
// generation for a group we do not have creates it (a "simple" consumer
// that only stores offsets); any other is from a generation that no
// longer exists: ILLEGAL_GENERATION.
func (t *GroupTable) CommitOffsets(now time.Time, groupID string, req GroupCommitRequest) ([]int16, GroupOutput) {
	g, created := t.groups[groupID], false
	if g == nil {
		if req.GenerationID >= 0 {
			codes := make([]int16, len(req.Offsets))
			for i := range codes {
				codes[i] = kerr.IllegalGeneration.Code
			}
			return codes, GroupOutput{}
		}
		g, created = NewGroupStateMachine(groupID, t.cfg, now), true
		t.groups[groupID] = g
	}
	codes, out := g.CommitOffsets(now, req)
	t.settle(g, created)
	return codes, out
}

// Describe returns a group for DescribeGroups; ok is false if it does not
// exist (Kafka then reports state Dead, or GROUP_ID_NOT_FOUND from v6).
func (t *GroupTable) Describe(groupID string) (GroupDescription, bool) {
	g := t.groups[groupID]
	if g == nil {
		return GroupDescription{GroupID: groupID, State: GroupDead}, false
	}
	return g.Describe(), true
}

// List returns the groups for ListGroups, sorted by id, optionally only
// those in one of states.
func (t *GroupTable) List(states ...GroupState) []GroupListing {
	out := make([]GroupListing, 0, len(t.groups))
	for _, id := range t.sortedIDs() {
		g := t.groups[id]
		if len(states) == 0 || slices.Contains(states, g.state) {
			out = append(out, GroupListing{GroupID: id, ProtocolType: g.protocolType, State: g.state})
		}
	}
	return out
}

// Delete handles DeleteGroups for one group.
func (t *GroupTable) Delete(now time.Time, groupID string) (int16, GroupOutput) {
	g := t.groups[groupID]
	if g == nil {
		return kerr.GroupIDNotFound.Code, GroupOutput{}
	}
	code, out := g.Delete(now)
	t.settle(g, false)
	return code, out
}

// DeleteOffsets handles an OffsetDelete.
func (t *GroupTable) DeleteOffsets(now time.Time, groupID string, partitions []GroupTopicPartition) (int16, []int16, GroupOutput) {
	g := t.groups[groupID]
	if g == nil {
		return kerr.GroupIDNotFound.Code, nil, GroupOutput{}
	}
	code, codes, out := g.DeleteOffsets(now, partitions)
	t.settle(g, false)
	return code, codes, out
}

// Tick fires the deadlines due at now in every group (in group id order,
// so that the output is deterministic).
func (t *GroupTable) Tick(now time.Time) GroupOutput {
	var due []string
	for id, g := range t.groups {
		if at, ok := g.NextDeadline(); ok && !at.After(now) {
			due = append(due, id)
		}
	}
	slices.Sort(due)
	var out GroupOutput
	for _, id := range due {
		g := t.groups[id]
		out.append(g.Tick(now))
		t.settle(g, false)
	}
	return out
}

// NextDeadline returns the earliest deadline of any group.
func (t *GroupTable) NextDeadline() (at time.Time, ok bool) {
	for _, g := range t.groups {
		if d, dok := g.NextDeadline(); dok && (!ok || d.Before(at)) {
			at, ok = d, true
		}
	}
	return at, ok
}

// ExpireOffsets expires offsets in every group (see
// GroupStateMachine.ExpireOffsets) and forgets groups that end up Dead.
// Run it every offsets.retention.check.interval.ms (Kafka: 10 minutes).
func (t *GroupTable) ExpireOffsets(now time.Time) GroupOutput {
	var out GroupOutput
	for _, id := range t.sortedIDs() {
		g := t.groups[id]
		out.append(g.ExpireOffsets(now))
		t.settle(g, false)
	}
	return out
}

// Unload answers every waiting request with NOT_COORDINATOR and empties
// the table: the partition is moving to another coordinator, or the broker
// is stopping.
func (t *GroupTable) Unload() GroupOutput {
	var out GroupOutput
	for _, id := range t.sortedIDs() {
		out.append(t.groups[id].Unload())
	}
	clear(t.groups)
	return out
}

// settle forgets a group that is Dead, or that a failed first request
// created for nothing.
func (t *GroupTable) settle(g *GroupStateMachine, created bool) {
	if g.state == GroupDead || created && g.vacant() {
		delete(t.groups, g.id)
	}
}

// vacant reports whether nothing about the group was ever written or all
// of it is gone: replay would not build it.
func (g *GroupStateMachine) vacant() bool {
	return g.state == GroupEmpty && g.generation == 0 && len(g.members) == 0 &&
		len(g.pending) == 0 && len(g.offsets) == 0 && g.txn.len() == 0
}

func (t *GroupTable) sortedIDs() []string {
	ids := make([]string, 0, len(t.groups))
	for id := range t.groups {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

func groupJoinFailure(token uint64, memberID string, code int16) GroupOutput {
	r := groupJoinError(memberID, code)
	return GroupOutput{Responses: []GroupResponse{{Token: token, Join: &r}}}
}

func groupSyncFailure(code int16) *GroupSyncResponse {
	r := groupSyncError(code)
	return &r
}
