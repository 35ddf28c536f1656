package broker

// JoinGroup and the rebalance it drives: PreparingRebalance, the initial
// rebalance delay, the end of the join phase and the next generation.

import (
	"slices"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
)

func (g *GroupStateMachine) handleJoin(now time.Time, token uint64, req *GroupJoinRequest) {
	session := time.Duration(req.SessionTimeoutMs) * time.Millisecond
	if session < g.cfg.MinSessionTimeout || session > g.cfg.MaxSessionTimeout {
		g.respondJoin(token, groupJoinError(req.MemberID, kerr.InvalidSessionTimeout.Code))
		return
	}
	if req.RebalanceTimeoutMs <= 0 {
		req.RebalanceTimeoutMs = req.SessionTimeoutMs
	}
	switch {
	case !g.acceptJoiningMember(req.MemberID):
		// An existing member over the limit is removed: this is how a group
		// loaded over capacity shrinks back.
		if m := g.byID[req.MemberID]; m != nil {
			g.removeMember(m)
		}
		g.respondJoin(token, groupJoinError("", kerr.GroupMaxSizeReached.Code))
	case req.MemberID == "":
		g.joinNewMember(now, token, req)
	default:
		g.joinCurrentMember(now, token, req)
	}
	if g.state == GroupPreparingRebalance {
		g.maybeCompleteJoin(now)
	}
}

// acceptJoiningMember applies group.max.size: members already counted in
// the next generation are always accepted.
func (g *GroupStateMachine) acceptJoiningMember(memberID string) bool {
	if g.cfg.MaxSize <= 0 {
		return true
	}
	m := g.byID[memberID]
	switch g.state {
	case GroupPreparingRebalance:
		return (m != nil && m.joinWaiting) || g.numAwaitingJoin < g.cfg.MaxSize
	case GroupCompletingRebalance, GroupStable:
		return m != nil || len(g.members) < g.cfg.MaxSize
	}
	return true
}

// supportsProtocols: the first member fixes the protocol type; later ones
// must share it and support at least one protocol every member supports.
func (g *GroupStateMachine) supportsProtocols(protocolType string, protocols []GroupProtocol) bool {
	if len(protocols) == 0 {
		return false
	}
	if g.state == GroupEmpty {
		return protocolType != ""
	}
	if protocolType != g.protocolType {
		return false
	}
	for _, p := range protocols {
		if g.supported[p.Name] == len(g.members) {
			return true
		}
	}
	return false
}

func (g *GroupStateMachine) joinNewMember(now time.Time, token uint64, req *GroupJoinRequest) {
	if g.state == GroupDead {
		g.respondJoin(token, groupJoinError("", kerr.CoordinatorNotAvailable.Code))
		return
	}
	if !g.supportsProtocols(req.ProtocolType, req.Protocols) {
		g.respondJoin(token, groupJoinError("", kerr.InconsistentGroupProtocol.Code))
		return
	}
	prefix := req.ClientID
	if req.InstanceID != "" {
		prefix = req.InstanceID
	}
	memberID := groupNewMemberID(g.cfg.Rand, prefix)
	switch {
	case req.InstanceID != "":
		if old, ok := g.static[req.InstanceID]; ok {
			g.replaceStaticMember(now, token, req, old, memberID)
		} else {
			g.addMemberAndRebalance(now, token, req, memberID)
		}
	case req.RequireKnownMemberID:
		// KIP-394: hand out the id and wait for the member to come back
		// with it, so that a client whose first join times out does not
		// leave an unknown member behind. The pending id holds back the
		// rebalance until it rejoins or its session timeout passes.
		g.pending[memberID] = now.Add(time.Duration(req.SessionTimeoutMs) * time.Millisecond)
		g.respondJoin(token, groupJoinError(memberID, kerr.MemberIDRequired.Code))
	default:
		g.addMemberAndRebalance(now, token, req, memberID)
	}
}

func (g *GroupStateMachine) joinCurrentMember(now time.Time, token uint64, req *GroupJoinRequest) {
	if g.state == GroupDead {
		g.respondJoin(token, groupJoinError(req.MemberID, kerr.CoordinatorNotAvailable.Code))
		return
	}
	if !g.supportsProtocols(req.ProtocolType, req.Protocols) {
		g.respondJoin(token, groupJoinError(req.MemberID, kerr.InconsistentGroupProtocol.Code))
		return
	}
	if _, ok := g.pending[req.MemberID]; ok {
		if req.InstanceID != "" {
			// Pending ids are only handed to dynamic members; Kafka treats
			// this as an internal error too.
			g.respondJoin(token, groupJoinError(req.MemberID, kerr.UnknownServerError.Code))
			return
		}
		g.addMemberAndRebalance(now, token, req, req.MemberID)
		return
	}
	if cur, ok := g.static[req.InstanceID]; req.InstanceID != "" && ok && cur != req.MemberID {
		g.respondJoin(token, groupJoinError(req.MemberID, kerr.FencedInstanceID.Code))
		return
	}
	m := g.byID[req.MemberID]
	if _, ok := g.static[req.InstanceID]; m == nil || (req.InstanceID != "" && !ok) {
		g.respondJoin(token, groupJoinError(req.MemberID, kerr.UnknownMemberID.Code))
		return
	}
	switch g.state {
	case GroupPreparingRebalance:
		g.updateMemberAndRebalance(now, m, token, req)
	case GroupCompletingRebalance:
		if m.matches(req.Protocols) {
			// The member lost our JoinGroup response: repeat it.
			g.respondJoin(token, g.joinResult(m, g.leaderID, m.memberID == g.leaderID, false))
		} else {
			g.updateMemberAndRebalance(now, m, token, req)
		}
	case GroupStable:
		// A rejoining leader forces a rebalance: that is how it reacts to
		// changes that do not show in member metadata (new partitions).
		if m.memberID == g.leaderID || !m.matches(req.Protocols) {
			g.updateMemberAndRebalance(now, m, token, req)
		} else {
			g.respondJoin(token, g.joinResult(m, g.leaderID, false, false))
		}
	default: // Empty: a member id from an older incarnation of the group
		g.respondJoin(token, groupJoinError(req.MemberID, kerr.UnknownMemberID.Code))
	}
}

func (g *GroupStateMachine) addMemberAndRebalance(now time.Time, token uint64, req *GroupJoinRequest, memberID string) {
	m := &groupMember{
		memberID:           memberID,
		instanceID:         req.InstanceID,
		clientID:           req.ClientID,
		clientHost:         req.ClientHost,
		rebalanceTimeoutMs: req.RebalanceTimeoutMs,
		sessionTimeoutMs:   req.SessionTimeoutMs,
		protocolType:       req.ProtocolType,
		protocols:          groupCloneProtocols(req.Protocols),
		joinWaiting:        true,
		joinToken:          token,
		isNew:              true,
		sessionDeadline:    now.Add(g.cfg.NewMemberJoinTimeout),
	}
	if g.state == GroupPreparingRebalance && g.generation == 0 {
		g.newMemberAdded = true
	}
	g.addMember(m)
	g.maybePrepareRebalance(now)
}

func (g *GroupStateMachine) updateMemberAndRebalance(now time.Time, m *groupMember, token uint64, req *GroupJoinRequest) {
	g.updateMember(m, req, token)
	g.maybePrepareRebalance(now)
}

// updateMember records a member's new join. A join that replaces one still
// waiting (the client gave up on it and retried) answers the old token
// with REBALANCE_IN_PROGRESS, which makes a client that still listens
// simply rejoin: no token is ever left unanswered.
func (g *GroupStateMachine) updateMember(m *groupMember, req *GroupJoinRequest, token uint64) {
	g.countProtocols(m, -1)
	m.protocols = groupCloneProtocols(req.Protocols)
	g.countProtocols(m, +1)
	m.rebalanceTimeoutMs = req.RebalanceTimeoutMs
	m.sessionTimeoutMs = req.SessionTimeoutMs
	if m.joinWaiting {
		g.respondJoin(m.joinToken, groupJoinError(m.memberID, kerr.RebalanceInProgress.Code))
	} else {
		g.numAwaitingJoin++
	}
	m.joinWaiting = true
	m.joinToken = token
}

// replaceStaticMember gives a known group.instance.id a new member id
// (KIP-345): the old id is fenced, and a Stable group whose protocol choice
// is unchanged keeps its generation and assignment without a rebalance.
func (g *GroupStateMachine) replaceStaticMember(now time.Time, token uint64, req *GroupJoinRequest, oldID, newID string) {
	previousLeader := g.leaderID
	m := g.byID[oldID]
	g.completeJoin(m, groupJoinError(oldID, kerr.FencedInstanceID.Code))
	g.completeSync(m, groupSyncError(kerr.FencedInstanceID.Code))
	delete(g.byID, oldID)
	m.memberID = newID
	g.byID[newID] = m
	g.static[m.instanceID] = newID
	if g.leaderID == oldID {
		g.leaderID = newID
	}
	if g.pendingSync[oldID] {
		delete(g.pendingSync, oldID)
		g.pendingSync[newID] = true
	}
	g.scheduleSession(m, now)
	g.updateMember(m, req, token)

	switch g.state {
	case GroupStable:
		if g.selectProtocol() != g.protocolName {
			g.maybePrepareRebalance(now)
			return
		}
		// Persist the new member id; the response is delivered only once
		// the record is durable (the output contract), as Kafka does.
		g.emitGroupMetadata()
		var resp GroupJoinResponse
		if req.SupportSkippingAssignment {
			// v9+: tell a static leader it leads (so it keeps watching
			// metadata) but must not run the assignor: the group is stable
			// and would ignore a new assignment.
			isLeader := g.leaderID == newID
			resp = g.joinResult(m, g.leaderID, isLeader, isLeader)
		} else {
			// Before v9, report the previous leader id so that a rejoining
			// leader does not believe it leads and compute an assignment
			// that a stable group would never propagate.
			resp = g.joinResult(m, previousLeader, false, false)
		}
		g.completeJoin(m, resp)
	case GroupCompletingRebalance:
		// The leader may be assigning to the old id: start over.
		g.prepareRebalance(now)
	case GroupPreparingRebalance:
		// The member now awaits the join under its new id.
	}
}

// maybeCompleteJoin completes the rebalance once every member has rejoined
// and no MEMBER_ID_REQUIRED id is outstanding (Kafka's DelayedJoin
// tryComplete). The initial delay never completes early.
func (g *GroupStateMachine) maybeCompleteJoin(now time.Time) {
	if g.state != GroupPreparingRebalance || g.join.deadline.IsZero() || g.join.initial {
		return
	}
	if len(g.members) == g.numAwaitingJoin && len(g.pending) == 0 {
		g.join = groupJoinTimer{}
		g.completeJoinPhase(now)
	}
}

// onJoinTimer fires the rebalance (or initial delay) deadline.
func (g *GroupStateMachine) onJoinTimer(now time.Time) {
	t := g.join
	if t.initial && g.newMemberAdded && t.remaining != 0 {
		g.newMemberAdded = false
		delay := min(g.cfg.InitialRebalanceDelay, t.remaining)
		g.join = groupJoinTimer{
			deadline:  now.Add(delay),
			initial:   true,
			delay:     delay,
			remaining: max(t.remaining-t.delay, 0),
		}
		return
	}
	g.join = groupJoinTimer{}
	g.completeJoinPhase(now)
}

// completeJoinPhase ends PreparingRebalance (Kafka's onCompleteJoin).
func (g *GroupStateMachine) completeJoinPhase(now time.Time) {
	// Dynamic members that did not rejoin in time are gone; static members
	// stay (their session timeout decides), so that a bouncing static
	// member keeps its place.
	for _, m := range slices.Clone(g.members) {
		if !m.joinWaiting && m.instanceID == "" {
			g.removeMember(m)
		}
	}
	if g.state == GroupDead {
		return
	}
	if !g.electJoinedLeader() && len(g.members) > 0 {
		// Only static members that have not rejoined remain: wait another
		// rebalance timeout for them or for their sessions to expire.
		g.join = groupJoinTimer{deadline: now.Add(g.rebalanceTimeout())}
		return
	}
	g.initNextGeneration(now)
	if g.state == GroupEmpty {
		g.emitGroupMetadata()
		return
	}
	for _, m := range g.members {
		g.completeJoin(m, g.joinResult(m, g.leaderID, m.memberID == g.leaderID, false))
		g.scheduleSession(m, now)
		m.isNew = false
		g.pendingSync[m.memberID] = true
	}
	g.syncDeadline = now.Add(g.rebalanceTimeout())
}

// electJoinedLeader keeps the leader if it rejoined, else picks the first
// member (in join order) that did; false if none did.
func (g *GroupStateMachine) electJoinedLeader() bool {
	leader := g.byID[g.leaderID]
	if leader == nil {
		return false
	}
	if leader.joinWaiting {
		return true
	}
	for _, m := range g.members {
		if m.joinWaiting {
			g.leaderID = m.memberID
			return true
		}
	}
	return false
}

func (g *GroupStateMachine) initNextGeneration(now time.Time) {
	g.generation++
	if len(g.members) > 0 {
		g.protocolName = g.selectProtocol()
		g.hasProtocol = true
		g.transition(GroupCompletingRebalance, now)
	} else {
		g.protocolName = ""
		g.hasProtocol = false
		g.transition(GroupEmpty, now)
	}
	g.computeSubscribedTopics()
	clear(g.pendingSync)
	g.syncDeadline = time.Time{}
}

// selectProtocol picks, among the protocols every member supports, the one
// most members prefer (each member votes for its first such protocol).
// Kafka breaks ties by hash order; we break them by name so that the result
// is deterministic.
func (g *GroupStateMachine) selectProtocol() string {
	candidates := make(map[string]bool)
	for name, n := range g.supported {
		if n == len(g.members) {
			candidates[name] = true
		}
	}
	votes := make(map[string]int, len(candidates))
	for _, m := range g.members {
		votes[m.vote(candidates)]++
	}
	best, bestVotes := "", -1
	for name, n := range votes {
		if n > bestVotes || (n == bestVotes && name < best) {
			best, bestVotes = name, n
		}
	}
	return best
}

// rebalanceTimeout is the largest rebalance timeout of the members.
func (g *GroupStateMachine) rebalanceTimeout() time.Duration {
	var d time.Duration
	for _, m := range g.members {
		d = max(d, m.rebalanceTimeout())
	}
	return d
}

func (g *GroupStateMachine) maybePrepareRebalance(now time.Time) {
	switch g.state {
	case GroupStable, GroupCompletingRebalance, GroupEmpty:
		g.prepareRebalance(now)
	}
}

func (g *GroupStateMachine) prepareRebalance(now time.Time) {
	if g.state == GroupCompletingRebalance {
		// Members waiting for the assignment of a generation that will
		// never complete must rejoin.
		g.resetAndPropagateAssignmentError(now, kerr.RebalanceInProgress.Code)
	}
	// The generation being replaced no longer waits for anyone's sync.
	clear(g.pendingSync)
	g.syncDeadline = time.Time{}
	if g.state == GroupEmpty {
		delay := g.cfg.InitialRebalanceDelay
		g.join = groupJoinTimer{
			deadline:  now.Add(delay),
			initial:   true,
			delay:     delay,
			remaining: max(g.rebalanceTimeout()-delay, 0),
		}
	} else {
		g.join = groupJoinTimer{deadline: now.Add(g.rebalanceTimeout())}
	}
	g.transition(GroupPreparingRebalance, now)
	g.maybeCompleteJoin(now)
}

func (g *GroupStateMachine) transition(s GroupState, now time.Time) {
	g.state = s
	g.stateTimestamp = now.UnixMilli()
}
