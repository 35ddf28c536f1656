package broker

// SyncGroup, Heartbeat and LeaveGroup.

import (
	"bytes"
	"slices"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
)

func (g *GroupStateMachine) handleSync(now time.Time, token uint64, req *GroupSyncRequest) {
	if code := g.validateSync(req); code != 0 {
		g.respondSync(token, groupSyncError(code))
		return
	}
	m := g.byID[req.MemberID]
	switch g.state {
	case GroupEmpty:
		g.respondSync(token, groupSyncError(kerr.UnknownMemberID.Code))
	case GroupPreparingRebalance:
		g.respondSync(token, groupSyncError(kerr.RebalanceInProgress.Code))
	case GroupCompletingRebalance:
		if m.syncWaiting {
			g.respondSync(m.syncToken, groupSyncError(kerr.RebalanceInProgress.Code))
		}
		m.syncWaiting = true
		m.syncToken = token
		g.removePendingSync(m.memberID)
		if m.memberID == g.leaderID {
			g.installAssignment(now, req.Assignments)
		}
	case GroupStable:
		g.removePendingSync(m.memberID)
		g.respondSync(token, g.syncResult(m))
		g.scheduleSession(m, now)
	}
}

func (g *GroupStateMachine) validateSync(req *GroupSyncRequest) int16 {
	if g.state == GroupDead {
		return kerr.CoordinatorNotAvailable.Code
	}
	if code := g.validateCurrentMember(req.MemberID, req.InstanceID); code != 0 {
		return code
	}
	if req.GenerationID != g.generation {
		return kerr.IllegalGeneration.Code
	}
	if req.ProtocolType != nil && *req.ProtocolType != g.protocolType {
		return kerr.InconsistentGroupProtocol.Code
	}
	if req.ProtocolName != nil && (!g.hasProtocol || *req.ProtocolName != g.protocolName) {
		return kerr.InconsistentGroupProtocol.Code
	}
	return 0
}

// installAssignment takes the leader's assignment: members it left out get
// an empty one, ids that are not members are ignored. The generation is
// persisted and every waiting member answered; the group is Stable.
func (g *GroupStateMachine) installAssignment(now time.Time, assignments []GroupMemberAssignment) {
	byMember := make(map[string][]byte, len(assignments))
	for _, a := range assignments {
		byMember[a.MemberID] = a.Assignment
	}
	for _, m := range g.members {
		m.assignment = bytes.Clone(byMember[m.memberID])
		if m.assignment == nil {
			m.assignment = []byte{}
		}
	}
	g.transition(GroupStable, now)
	g.emitGroupMetadata()
	for _, m := range g.members {
		if g.completeSync(m, g.syncResult(m)) {
			// The member could not heartbeat while it waited: its session
			// starts now.
			g.scheduleSession(m, now)
		}
	}
}

// resetAndPropagateAssignmentError answers waiting syncs with code and
// forgets the assignment of a generation that will not complete.
func (g *GroupStateMachine) resetAndPropagateAssignmentError(now time.Time, code int16) {
	for _, m := range g.members {
		m.assignment = []byte{}
		if g.completeSync(m, groupSyncError(code)) {
			g.scheduleSession(m, now)
		}
	}
}

func (g *GroupStateMachine) removePendingSync(memberID string) {
	delete(g.pendingSync, memberID)
	if len(g.pendingSync) == 0 {
		g.syncDeadline = time.Time{}
	}
}

// onSyncTimer removes members of the new generation that never sent
// SyncGroup and rebalances without them.
func (g *GroupStateMachine) onSyncTimer(now time.Time) {
	g.syncDeadline = time.Time{}
	if g.state != GroupCompletingRebalance && g.state != GroupStable || len(g.pendingSync) == 0 {
		return
	}
	for _, m := range slices.Clone(g.members) {
		if g.pendingSync[m.memberID] {
			g.removeMember(m)
		}
	}
	g.prepareRebalance(now)
}

func (g *GroupStateMachine) handleHeartbeat(now time.Time, req *GroupHeartbeatRequest) int16 {
	switch g.state {
	case GroupDead:
		return kerr.CoordinatorNotAvailable.Code
	case GroupEmpty:
		return kerr.UnknownMemberID.Code
	}
	if code := g.validateCurrentMember(req.MemberID, req.InstanceID); code != 0 {
		return code
	}
	if req.GenerationID != g.generation {
		return kerr.IllegalGeneration.Code
	}
	g.scheduleSession(g.byID[req.MemberID], now)
	if g.state == GroupPreparingRebalance {
		return kerr.RebalanceInProgress.Code
	}
	return 0
}

// validateCurrentMember checks that memberID is a member and, for a static
// member, that its group.instance.id still maps to it.
func (g *GroupStateMachine) validateCurrentMember(memberID, instanceID string) int16 {
	if instanceID != "" {
		cur, ok := g.static[instanceID]
		if !ok {
			return kerr.UnknownMemberID.Code
		}
		if cur != memberID {
			return kerr.FencedInstanceID.Code
		}
	}
	if g.byID[memberID] == nil {
		return kerr.UnknownMemberID.Code
	}
	return 0
}

func (g *GroupStateMachine) handleLeave(now time.Time, leaving []GroupLeaveMember) GroupLeaveResponse {
	if g.state == GroupDead {
		return GroupLeaveResponse{ErrorCode: kerr.CoordinatorNotAvailable.Code}
	}
	resp := GroupLeaveResponse{Members: make([]GroupLeaveResult, len(leaving))}
	for i, l := range leaving {
		resp.Members[i] = GroupLeaveResult{MemberID: l.MemberID, InstanceID: l.InstanceID, ErrorCode: g.leaveOne(now, l)}
	}
	return resp
}

func (g *GroupStateMachine) leaveOne(now time.Time, l GroupLeaveMember) int16 {
	if l.MemberID == "" {
		// Administrative removal of a static member by instance id.
		id, ok := g.static[l.InstanceID]
		if l.InstanceID == "" || !ok {
			return kerr.UnknownMemberID.Code
		}
		g.removeMemberAndUpdateGroup(now, g.byID[id])
		return 0
	}
	if _, ok := g.pending[l.MemberID]; ok {
		delete(g.pending, l.MemberID)
		if g.state == GroupPreparingRebalance {
			g.maybeCompleteJoin(now)
		}
		return 0
	}
	if code := g.validateCurrentMember(l.MemberID, l.InstanceID); code != 0 {
		return code
	}
	g.removeMemberAndUpdateGroup(now, g.byID[l.MemberID])
	return 0
}
