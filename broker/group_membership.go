package broker

// Membership bookkeeping, timers of members, responses and the group
// metadata record.

import (
	"slices"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

func (g *GroupStateMachine) addMember(m *groupMember) {
	if m.instanceID != "" {
		g.static[m.instanceID] = m.memberID
	}
	if len(g.members) == 0 {
		g.protocolType = m.protocolType
	}
	if g.leaderID == "" {
		g.leaderID = m.memberID
	}
	g.members = append(g.members, m)
	g.byID[m.memberID] = m
	g.countProtocols(m, +1)
	if m.joinWaiting {
		g.numAwaitingJoin++
	}
	delete(g.pending, m.memberID)
}

// removeMember drops m. A removed member's waiting requests are answered
// with UNKNOWN_MEMBER_ID so that no token is left hanging.
func (g *GroupStateMachine) removeMember(m *groupMember) {
	g.completeJoin(m, groupJoinError("", kerr.UnknownMemberID.Code))
	g.completeSync(m, groupSyncError(kerr.UnknownMemberID.Code))
	if i := slices.Index(g.members, m); i >= 0 {
		g.members = slices.Delete(g.members, i, i+1)
	}
	delete(g.byID, m.memberID)
	g.countProtocols(m, -1)
	if m.instanceID != "" && g.static[m.instanceID] == m.memberID {
		delete(g.static, m.instanceID)
	}
	if g.leaderID == m.memberID {
		g.leaderID = ""
		if len(g.members) > 0 {
			g.leaderID = g.members[0].memberID
		}
	}
	delete(g.pending, m.memberID)
	if g.pendingSync[m.memberID] {
		g.removePendingSync(m.memberID)
	}
	m.sessionDeadline = time.Time{}
}

// removeMemberAndUpdateGroup removes a member that left or failed and lets
// the group react: a stable group rebalances; a preparing one may now have
// everyone it waits for.
func (g *GroupStateMachine) removeMemberAndUpdateGroup(now time.Time, m *groupMember) {
	g.removeMember(m)
	switch g.state {
	case GroupStable, GroupCompletingRebalance:
		g.maybePrepareRebalance(now)
	case GroupPreparingRebalance:
		g.maybeCompleteJoin(now)
	}
}

func (g *GroupStateMachine) countProtocols(m *groupMember, delta int) {
	groupDistinctProtocols(m.protocols, func(name string) {
		g.supported[name] += delta
		if g.supported[name] == 0 {
			delete(g.supported, name)
		}
	})
}

// scheduleSession restarts m's session timer (Kafka's
// completeAndScheduleNextHeartbeatExpiration).
func (g *GroupStateMachine) scheduleSession(m *groupMember, now time.Time) {
	m.sessionDeadline = now.Add(m.sessionTimeout())
}

// onSessionTimer fires m's session deadline.
func (g *GroupStateMachine) onSessionTimer(now time.Time, m *groupMember) {
	m.sessionDeadline = time.Time{}
	if !m.isNew && (m.joinWaiting || m.syncWaiting) {
		return // waiting on a delayed response counts as a heartbeat
	}
	g.removeMemberAndUpdateGroup(now, m)
}

// onPendingTimer drops a MEMBER_ID_REQUIRED id that never came back.
func (g *GroupStateMachine) onPendingTimer(now time.Time, memberID string) {
	delete(g.pending, memberID)
	if g.state == GroupPreparingRebalance {
		g.maybeCompleteJoin(now)
	}
}

func (g *GroupStateMachine) respondJoin(token uint64, r GroupJoinResponse) {
	g.out.Responses = append(g.out.Responses, GroupResponse{Token: token, Join: &r})
}

func (g *GroupStateMachine) respondSync(token uint64, r GroupSyncResponse) {
	g.out.Responses = append(g.out.Responses, GroupResponse{Token: token, Sync: &r})
}

// completeJoin answers m's waiting JoinGroup, if any.
func (g *GroupStateMachine) completeJoin(m *groupMember, r GroupJoinResponse) {
	if !m.joinWaiting {
		return
	}
	m.joinWaiting = false
	g.numAwaitingJoin--
	g.respondJoin(m.joinToken, r)
}

// completeSync answers m's waiting SyncGroup, if any.
func (g *GroupStateMachine) completeSync(m *groupMember, r GroupSyncResponse) bool {
	if !m.syncWaiting {
		return false
	}
	m.syncWaiting = false
	g.respondSync(m.syncToken, r)
	return true
}

func groupJoinError(memberID string, code int16) GroupJoinResponse {
	return GroupJoinResponse{ErrorCode: code, GenerationID: -1, MemberID: memberID}
}

func groupSyncError(code int16) GroupSyncResponse {
	return GroupSyncResponse{ErrorCode: code, Assignment: []byte{}}
}

// joinResult is a successful JoinGroup response for m in the current
// generation. Byte slices alias the group's state: encode, don't modify.
func (g *GroupStateMachine) joinResult(m *groupMember, leaderID string, withMembers, skipAssignment bool) GroupJoinResponse {
	r := GroupJoinResponse{
		GenerationID:   g.generation,
		ProtocolType:   groupStringPtr(g.protocolType),
		LeaderID:       leaderID,
		SkipAssignment: skipAssignment,
		MemberID:       m.memberID,
	}
	if g.hasProtocol {
		r.ProtocolName = groupStringPtr(g.protocolName)
	}
	if withMembers {
		r.Members = make([]GroupJoinMember, len(g.members))
		for i, o := range g.members {
			r.Members[i] = GroupJoinMember{MemberID: o.memberID, InstanceID: o.instanceID, Metadata: o.metadata(g.protocolName)}
		}
	}
	return r
}

func (g *GroupStateMachine) syncResult(m *groupMember) GroupSyncResponse {
	r := GroupSyncResponse{ProtocolType: groupStringPtr(g.protocolType), Assignment: m.assignment}
	if g.hasProtocol {
		r.ProtocolName = groupStringPtr(g.protocolName)
	}
	return r
}

func groupStringPtr(s string) *string { return &s }

// groupMetadataValue is the group as Kafka writes it to __consumer_offsets
// (GroupMetadataValue v3): per member only the metadata of the selected
// protocol is kept, which is all a reloaded group needs.
func (g *GroupStateMachine) groupMetadataValue() kmsg.GroupMetadataValue {
	v := kmsg.NewGroupMetadataValue()
	v.Version = 3
	v.ProtocolType = g.protocolType
	v.Generation = g.generation
	if g.hasProtocol {
		v.Protocol = groupStringPtr(g.protocolName)
	}
	if g.leaderID != "" {
		v.Leader = groupStringPtr(g.leaderID)
	}
	v.CurrentStateTimestamp = g.stateTimestamp
	v.Members = make([]kmsg.GroupMetadataValueMember, len(g.members))
	for i, m := range g.members {
		vm := kmsg.NewGroupMetadataValueMember()
		vm.MemberID = m.memberID
		if m.instanceID != "" {
			vm.InstanceID = groupStringPtr(m.instanceID)
		}
		vm.ClientID = m.clientID
		vm.ClientHost = m.clientHost
		vm.RebalanceTimeoutMillis = m.rebalanceTimeoutMs
		vm.SessionTimeoutMillis = m.sessionTimeoutMs
		vm.Subscription = m.metadata(g.protocolName)
		vm.Assignment = m.assignment
		v.Members[i] = vm
	}
	return v
}

func (g *GroupStateMachine) emitGroupMetadata() {
	v := g.groupMetadataValue()
	g.out.Records = append(g.out.Records, GroupEncodeGroupMetadata(g.id, &v))
}

// computeSubscribedTopics derives the topics a consumer group subscribes
// to from its members' metadata; unknown for other protocol types or
// metadata we cannot parse.
func (g *GroupStateMachine) computeSubscribedTopics() {
	g.subscribedTopics, g.subscribedKnown = nil, false
	if g.protocolType != "consumer" {
		return
	}
	if len(g.members) == 0 {
		g.subscribedTopics, g.subscribedKnown = map[string]bool{}, true
		return
	}
	if !g.hasProtocol {
		return
	}
	topics := make(map[string]bool)
	for _, m := range g.members {
		var meta kmsg.ConsumerMemberMetadata
		if err := meta.ReadFrom(m.metadata(g.protocolName)); err != nil {
			return
		}
		for _, t := range meta.Topics {
			topics[t] = true
		}
	}
	g.subscribedTopics, g.subscribedKnown = topics, true
}

// isSubscribedToTopic is conservative: unknown subscriptions count as
// subscribed.
func (g *GroupStateMachine) isSubscribedToTopic(topic string) bool {
	return !g.subscribedKnown || g.subscribedTopics[topic]
}
