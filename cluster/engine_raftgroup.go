package cluster

// A raft group (RaftGroup): one RawNode and the state the engine keeps
// around it.
//
// Proposals. Propose checks (lock-free) that this node leads the group, then
// appends the proposal to the group's pending list under the group's small
// mutex, schedules the group and waits on the proposal's channel. The
// worker that takes the group moves ALL pending proposals into raft
// (rn.Propose each, in order) and then handles one Ready, so a burst of
// proposals that arrived while the group was busy becomes one
// Storage.Append (one fsync) and one MsgApp per follower.
//
// Matching proposals to log indexes: with synchronous storage writes every
// Ready carries all entries appended since the previous Ready, and between
// moving the proposals into raft and taking the next Ready nothing else is
// stepped. A leader appends exactly one entry per accepted rn.Propose, so
// the k accepted proposals are the last k entries of that Ready, in order;
// each gets (index, term) from its entry and becomes a waiter. Waiters are
// resolved when their index is applied: success if the applied entry at
// that index has the waiter's term (and, for a conf change, is still a conf
// change: raft replaces a conf change it refuses with an empty normal
// entry, which resolves as ErrProposalFailed), ErrNotLeader if another
// term's entry took the index. When the node stops being leader (or its
// term moves on) every waiter fails with ErrNotLeader: the entry may still
// commit under the new leader, the caller cannot know (as with any Kafka
// NOT_LEADER_OR_FOLLOWER, the producer retries; idempotent producers
// deduplicate).
//
// If raft drops a proposal (rn.Propose returns ErrProposalDropped): while
// not leader or during a leadership transfer it fails with ErrNotLeader;
// when the leader's uncommitted bytes are over maxUncommittedBytes the
// proposal and those behind it stay held in order and go into raft as
// commits make room (backpressure instead of failure); otherwise
// ErrProposalFailed.

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/rs/zerolog"
	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
	"go.etcd.io/raft/v3/tracker"
)

// RaftGroup is one raft group on this node.
type RaftGroup struct {
	e   *Engine
	id  GroupID
	st  GroupStorage
	sm  StateMachine
	log zerolog.Logger

	// mu guards the work queued for the group and its scheduling state.
	mu         sync.Mutex
	inbox      []raftpb.Message
	inboxSpare []raftpb.Message
	pending    []*proposal
	propSpare  []*proposal
	ticks      int
	campaign   bool
	transferTo uint64
	wake       bool
	removed    bool
	scheduled  bool  // in the ready queue or being processed
	closed     bool  // accepts no more work (stopped, removed or failed)
	closedErr  error // what Propose returns once closed
	finalized  bool

	done chan struct{} // closed by finalize

	// Read by other goroutines, written by the worker.
	isLeader  atomic.Bool
	leadA     atomic.Uint64
	quiescedA atomic.Bool
	statusMu  sync.Mutex
	status    GroupStatus

	// Owned by the worker that holds the group (scheduled).
	rn           *raft.RawNode
	held         []*proposal // taken from pending, not yet in raft
	accepted     []*proposal // in raft, waiting for the next Ready to learn their index
	acceptedTerm uint64
	waiters      []*proposal // in the log at (index, term), waiting to be applied
	resolved     []*proposal // applied; finished after Advance and the status update
	lastIndex    uint64
	term         uint64
	lead         uint64
	state        raft.StateType
	reportedLead uint64
	reportedTerm uint64
	voters       []uint64
	learners     []uint64
	quiesced     bool
	idleTicks    int
	activity     bool
	quiesceReq   *raftpb.Message
	wantCampaign bool
	failed       error
	// nextOff is the Kafka offset after the last data entry in raft's log
	// while this node leads in term nextOffTerm: set from the storage when
	// the term's first Ready is stored, then moved by each accepted data
	// proposal (only the leader appends in its term). A data proposal must
	// start there (ErrStaleOffsets otherwise).
	nextOff     int64
	nextOffTerm uint64
	peers       []uint64 // scratch
	snapTo      []uint64 // scratch
}

// logEnder is a GroupStorage holding Kafka offsets (Storage): LogEnd is the
// offset after its last record.
type logEnder interface{ LogEnd() int64 }

type proposal struct {
	data []byte
	cc   raftpb.ConfChangeV2
	conf bool
	// local: finish once the entry is in this leader's log (durable), not
	// when it is committed (Kafka acks=1).
	local bool
	// offsets: a data entry numbered by the partition for term epoch,
	// covering Kafka offsets [base, next); see RaftGroup.nextOff.
	offsets    bool
	epoch      uint64
	base, next int64
	index      uint64
	term       uint64
	err        error
	done       chan struct{}
}

func (p *proposal) finish(index uint64, err error) {
	p.index, p.err = index, err
	close(p.done)
}

// AddGroup starts driving a group on st. join names the initial voters when
// the storage has no ConfState: on an empty log they are bootstrapped as
// conf change entries at indexes 1..len(join) (so a replica added later
// learns them by replaying the log); on a non-empty log without a
// ConfState (a standalone log becoming a replica) they are stored with
// SetConfState. join is ignored when the storage already has a ConfState.
// With no ConfState and no join the group waits to be contacted by a
// leader (a replica being added).
func (e *Engine) AddGroup(id GroupID, st GroupStorage, sm StateMachine, join []uint64) (*RaftGroup, error) {
	// The engine's lock (which Step needs) is not held across storage
	// calls; the checks are repeated when the group is inserted.
	if err := e.canAdd(id); err != nil {
		return nil, err
	}
	hs, cs, err := st.InitialState()
	if err != nil {
		return nil, fmt.Errorf("cluster: group %d: initial state: %w", id, err)
	}
	first, err := st.FirstIndex()
	if err != nil {
		return nil, fmt.Errorf("cluster: group %d: first index: %w", id, err)
	}
	last, err := st.LastIndex()
	if err != nil {
		return nil, fmt.Errorf("cluster: group %d: last index: %w", id, err)
	}
	bootstrap := false
	if len(cs.Voters) == 0 && len(cs.Learners) == 0 && len(join) > 0 {
		join = slices.Clone(join)
		slices.Sort(join)
		join = slices.Compact(join)
		if last == 0 && raft.IsEmptyHardState(hs) {
			bootstrap = true
		} else {
			cs = raftpb.ConfState{Voters: join}
			if err := st.SetConfState(cs); err != nil {
				return nil, fmt.Errorf("cluster: group %d: set conf state: %w", id, err)
			}
		}
	}
	var applied uint64
	if ai, ok := sm.(AppliedIndexer); ok {
		lo := first - 1
		applied = min(max(ai.AppliedIndex(), lo), max(hs.Commit, lo))
	}
	g := &RaftGroup{
		e:    e,
		id:   id,
		st:   st,
		sm:   sm,
		log:  e.log.With().Uint64("group", uint64(id)).Logger(),
		done: make(chan struct{}),
		// Nobody else can see g yet; it goes on the queue below.
		scheduled: true,
	}
	rc := &raft.Config{
		ID:                        e.cfg.NodeID,
		ElectionTick:              e.cfg.ElectionTicks,
		HeartbeatTick:             e.cfg.HeartbeatTick,
		Storage:                   st,
		Applied:                   applied,
		MaxSizePerMsg:             e.cfg.MaxSizePerMsg,
		MaxCommittedSizePerReady:  4 * e.cfg.MaxSizePerMsg,
		MaxUncommittedEntriesSize: maxUncommittedBytes,
		MaxInflightMsgs:           e.cfg.MaxInflight,
		CheckQuorum:               true,
		PreVote:                   true,
		DisableProposalForwarding: true,
		Logger:                    raftLogger{l: g.log},
	}
	rn, err := raft.NewRawNode(rc)
	if err != nil {
		return nil, fmt.Errorf("cluster: group %d: %w", id, err)
	}
	if bootstrap {
		peers := make([]raft.Peer, len(join))
		for i, v := range join {
			peers[i] = raft.Peer{ID: v}
		}
		if err := rn.Bootstrap(peers); err != nil {
			return nil, fmt.Errorf("cluster: group %d: bootstrap: %w", id, err)
		}
		cs = raftpb.ConfState{Voters: join}
	}
	g.rn = rn
	g.lastIndex = last
	g.term = hs.Term
	g.state = raft.StateFollower
	g.setConf(cs)
	// A single voter elects itself at once instead of after an election
	// timeout.
	g.wantCampaign = len(cs.Voters) == 1 && cs.Voters[0] == e.cfg.NodeID && len(cs.VotersOutgoing) == 0
	g.updateStatus()
	e.mu.Lock()
	defer e.mu.Unlock()
	if err := e.canAddLocked(id); err != nil {
		return nil, err
	}
	e.groups[id] = g
	e.setActive(g, true)
	e.q.push(g)
	return g, nil
}

func (e *Engine) canAdd(id GroupID) error {
	e.mu.RLock()
	defer e.mu.RUnlock()
	return e.canAddLocked(id)
}

func (e *Engine) canAddLocked(id GroupID) error {
	if e.state == engineStopped {
		return ErrStopped
	}
	if e.groups[id] != nil {
		return fmt.Errorf("cluster: group %d already exists", id)
	}
	return nil
}

// ID is the group's id.
func (g *RaftGroup) ID() GroupID { return g.id }

// Propose replicates data (raft entry Data; for a partition group the
// encoding of entry.go) and returns its raft index once it is committed and
// applied locally. ErrNotLeader if this node is not the leader or loses
// leadership before the entry is applied; ErrProposalFailed if raft drops
// it; ErrStopped / ErrUnknownGroup once the engine stops or the group is
// removed; ctx's error if ctx ends first (the entry may still commit).
// data must not be modified afterwards.
func (g *RaftGroup) Propose(ctx context.Context, data []byte) (uint64, error) {
	p, err := g.submit(ctx, &proposal{data: data})
	if err != nil {
		return 0, err
	}
	return g.wait(ctx, p)
}

// ProposeConfChange proposes a membership change and returns once it is
// committed and applied locally. ErrProposalFailed if raft refused it
// (another conf change still pending, not in or already in a joint state).
func (g *RaftGroup) ProposeConfChange(ctx context.Context, cc raftpb.ConfChangeV2) error {
	p, err := g.submit(ctx, &proposal{cc: cc, conf: true})
	if err != nil {
		return err
	}
	_, err = g.wait(ctx, p)
	return err
}

func (g *RaftGroup) submit(ctx context.Context, p *proposal) (*proposal, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if !g.isLeader.Load() {
		g.mu.Lock()
		closed, cerr := g.closed, g.closedErr
		g.mu.Unlock()
		if closed {
			return nil, cerr
		}
		return nil, ErrNotLeader
	}
	p.done = make(chan struct{})
	g.mu.Lock()
	if g.closed {
		err := g.closedErr
		g.mu.Unlock()
		return nil, err
	}
	g.pending = append(g.pending, p)
	push := !g.scheduled
	g.scheduled = true
	g.mu.Unlock()
	if push {
		g.e.q.push(g)
	}
	return p, nil
}

func (g *RaftGroup) wait(ctx context.Context, p *proposal) (uint64, error) {
	select {
	case <-p.done:
		return p.index, p.err
	case <-ctx.Done():
		return 0, ctx.Err()
	}
}

// Status is the group's state as this node sees it (updated after every
// worker pass).
func (g *RaftGroup) Status() GroupStatus {
	g.statusMu.Lock()
	s := g.status
	g.statusMu.Unlock()
	s.Voters = slices.Clone(s.Voters)
	s.Learners = slices.Clone(s.Learners)
	return s
}

// TransferLeadership asks the leader to hand leadership to `to` (a no-op on
// a follower). Proposals during the transfer fail with ErrNotLeader.
func (g *RaftGroup) TransferLeadership(to uint64) {
	g.request(func() { g.transferTo = to })
}

// Campaign makes this node start an election for the group now.
func (g *RaftGroup) Campaign() {
	g.request(func() { g.campaign = true })
}

func (g *RaftGroup) request(set func()) {
	g.mu.Lock()
	if g.closed {
		g.mu.Unlock()
		return
	}
	set()
	push := !g.scheduled
	g.scheduled = true
	g.mu.Unlock()
	if push {
		g.e.q.push(g)
	}
}

// requestWake asks the worker to unquiesce the group; true if the caller
// must push it on the queue.
func (g *RaftGroup) requestWake() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return false
	}
	g.wake = true
	push := !g.scheduled
	g.scheduled = true
	return push
}

// enqueueMsg queues an incoming message; ok false if dropped, sched true if
// the caller must push the group on the queue.
func (g *RaftGroup) enqueueMsg(m raftpb.Message) (ok, sched bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed || len(g.inbox) >= maxInbox {
		return false, false
	}
	g.inbox = append(g.inbox, m)
	sched = !g.scheduled
	g.scheduled = true
	return true, sched
}

// markTick records a due tick; true if the caller must push the group.
func (g *RaftGroup) markTick() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return false
	}
	g.ticks++
	push := !g.scheduled
	g.scheduled = true
	return push
}

// process is one worker pass over the group.
func (g *RaftGroup) process() {
	g.mu.Lock()
	if g.finalized {
		g.mu.Unlock()
		return
	}
	if g.removed {
		g.mu.Unlock()
		g.finalize(ErrUnknownGroup)
		return
	}
	inbox := g.inbox
	g.inbox, g.inboxSpare = g.inboxSpare, nil
	props := g.pending
	g.pending, g.propSpare = g.propSpare, nil
	ticks := g.ticks
	g.ticks = 0
	campaign, transfer, wake := g.campaign, g.transferTo, g.wake
	g.campaign, g.transferTo, g.wake = false, 0, false
	g.mu.Unlock()

	more := g.drive(inbox, props, ticks, campaign, transfer, wake)

	clear(inbox)
	clear(props)
	g.updateStatus()

	if g.failed != nil {
		return // finalized by fail; stays "scheduled" so nobody queues it again
	}
	g.mu.Lock()
	if g.inboxSpare == nil && cap(inbox) <= 1024 {
		g.inboxSpare = inbox[:0]
	}
	if g.propSpare == nil && cap(props) <= 1024 {
		g.propSpare = props[:0]
	}
	if g.quiesced {
		g.ticks = 0
	}
	again := more || len(g.inbox) > 0 || len(g.pending) > 0 || g.ticks > 0 ||
		g.campaign || g.transferTo != 0 || g.wake || g.removed
	if !again {
		g.scheduled = false
	}
	g.mu.Unlock()
	if again {
		g.e.q.push(g)
	}
}

// lostEntries handles a replica whose log ends before entries it once
// acknowledged: one that `chronik repair` cut after its last good entry (or
// that lost unsynced entries under fsync never). Raft assumes this never
// happens: a leader never lowers what it knows a follower holds (its
// Match), so it would never send the lost entries again, and its
// heartbeats would carry a commit index past the follower's log, which raft
// on the follower answers with a panic. So:
//   - as a follower, a heartbeat's commit index is clamped to the log end:
//     the entries up to it match the leader's (they are a prefix of what
//     this replica acknowledged), so they are committed;
//   - as the leader, an append rejected with a hint below the follower's
//     Match means the follower lost entries: leadership is handed to an
//     up-to-date voter, whose fresh progress finds the follower's real log
//     end and sends it the rest.
func (g *RaftGroup) lostEntries(m *raftpb.Message) {
	switch {
	case m.Type == raftpb.MsgHeartbeat && m.Commit > g.lastIndex:
		m.Commit = g.lastIndex
	case m.Type == raftpb.MsgAppResp && m.Reject:
		st := g.rn.Status()
		pr, ok := st.Progress[m.From]
		if st.RaftState != raft.StateLeader || !ok || m.RejectHint >= pr.Match || st.LeadTransferee != 0 {
			return
		}
		var to, best uint64
		for id, other := range st.Progress {
			if id != m.From && id != st.ID && !other.IsLearner && other.Match >= best {
				to, best = id, other.Match
			}
		}
		if to != 0 {
			// raft sends the transferee what it lacks first, if anything.
			g.log.Warn().Uint64("follower", m.From).Uint64("follower_log_end", m.RejectHint).Uint64("acknowledged", pr.Match).Uint64("to", to).
				Msg("a follower lost entries it acknowledged (a repaired replica?); handing leadership over so that it is sent them again")
			g.rn.TransferLeader(to)
			return
		}
		g.log.Warn().Uint64("follower", m.From).Uint64("follower_log_end", m.RejectHint).Uint64("acknowledged", pr.Match).
			Msg("a follower lost entries it acknowledged and no other voter is up to date to take over; it catches up after the next leader change")
	}
}

// drive does the raft work of one pass; it reports whether the group has
// more to do right away.
func (g *RaftGroup) drive(inbox []raftpb.Message, props []*proposal, ticks int, campaign bool, transfer uint64, wake bool) bool {
	if wake || campaign || transfer != 0 || len(props) > 0 {
		g.unquiesce()
	}

	// Incoming messages, in order. The quiesce signal is intercepted.
	woken := false
	for i := range inbox {
		m := &inbox[i]
		if m.Type == msgQuiesce {
			g.quiesceReq = m
			continue
		}
		if m.Type != raftpb.MsgHeartbeatResp && m.Type != raftpb.MsgAppResp {
			woken = true
			g.quiesceReq = nil // the signal is stale once anything follows it
		}
		g.lostEntries(m)
		if err := g.rn.Step(*m); err != nil {
			g.log.Debug().Err(err).Stringer("type", m.Type).Uint64("from", m.From).Msg("raft step")
		}
	}
	if g.quiesced && (woken || g.rn.HasReady()) {
		g.unquiesce()
	}

	ticked := false
	if !g.quiesced && ticks > 0 {
		for range min(ticks, maxTicksPerPass) {
			g.rn.Tick()
		}
		ticked = true
	}
	if campaign {
		g.wantCampaign = true
	}
	if transfer != 0 {
		g.rn.TransferLeader(transfer)
	}
	g.held = append(g.held, props...)

	more := false
	for n := 0; ; n++ {
		if g.wantCampaign {
			if bs := g.rn.BasicStatus(); bs.Applied >= bs.Commit {
				g.wantCampaign = false
				if bs.RaftState != raft.StateLeader {
					if err := g.rn.Campaign(); err != nil {
						g.log.Debug().Err(err).Msg("campaign")
					}
				}
			}
		}
		if n == maxReadiesPerPass {
			more = g.rn.HasReady() || len(g.held) > 0
			break
		}
		if len(g.held) > 0 {
			g.proposeHeld()
		}
		if !g.rn.HasReady() {
			break
		}
		if err := g.handleReady(); err != nil {
			g.fail(err)
			return false
		}
	}

	if ticked {
		g.afterTick()
	}
	if g.quiesceReq != nil {
		g.followerQuiesce(g.quiesceReq)
		g.quiesceReq = nil
	}
	return more
}

// proposeHeld moves the held proposals into raft, in order.
func (g *RaftGroup) proposeHeld() {
	bs := g.rn.BasicStatus()
	if bs.RaftState != raft.StateLeader {
		g.failList(&g.held, ErrNotLeader)
		return
	}
	if len(g.accepted) == 0 {
		g.acceptedTerm = bs.Term
	}
	i := 0
	for ; i < len(g.held); i++ {
		p := g.held[i]
		if p.offsets && (p.epoch != bs.Term || g.nextOffTerm != bs.Term || p.base != g.nextOff) {
			p.finish(0, ErrStaleOffsets)
			continue
		}
		var err error
		if p.conf {
			err = g.rn.ProposeConfChange(p.cc)
		} else {
			err = g.rn.Propose(p.data)
		}
		if err == nil {
			g.accepted = append(g.accepted, p)
			g.e.proposals.Add(1)
			if p.offsets {
				g.nextOff = p.next
			}
			continue
		}
		if errors.Is(err, raft.ErrProposalDropped) {
			bs = g.rn.BasicStatus()
			switch {
			case bs.RaftState != raft.StateLeader || bs.LeadTransferee != 0:
				p.finish(0, ErrNotLeader)
				continue
			case len(g.waiters) > 0 || len(g.accepted) > 0 || bs.Applied < g.lastIndex:
				// Over the uncommitted-bytes bound: keep this and the
				// rest for when commits make room. raft frees the
				// room when entries are applied, and acks=1 proposals
				// leave no waiters: entries not applied yet say that
				// room is still to come.
				n := copy(g.held, g.held[i:])
				clear(g.held[n:])
				g.held = g.held[:n]
				return
			default:
				p.finish(0, ErrProposalFailed)
				continue
			}
		}
		p.finish(0, fmt.Errorf("%w: %w", ErrProposalFailed, err))
	}
	clear(g.held)
	g.held = g.held[:0]
}

// handleReady handles one Ready per raft's contract.
func (g *RaftGroup) handleReady() error {
	rd := g.rn.Ready()
	g.e.readies.Add(1)

	// A leader sends before it persists (etcd does the same; Raft thesis
	// 10.2.1): followers write their copy while this node writes its own.
	// Nothing commits early: the leader's own acknowledgement is stepped
	// at Advance and the followers' only after this Ready is handled, so
	// after the append below is durable. Every other state sends after persisting (a vote
	// or an append acknowledgement must be durable before it is sent).
	leader := g.state == raft.StateLeader
	if rd.SoftState != nil {
		leader = rd.SoftState.RaftState == raft.StateLeader
	}
	if leader {
		g.send(rd.Messages)
	}

	if !raft.IsEmptySnap(rd.Snapshot) {
		if err := g.st.ApplySnapshot(rd.Snapshot); err != nil {
			return fmt.Errorf("apply snapshot: %w", err)
		}
		if err := g.sm.Restore(rd.Snapshot); err != nil {
			return fmt.Errorf("restore snapshot: %w", err)
		}
		g.lastIndex = rd.Snapshot.Metadata.Index
		g.setConf(rd.Snapshot.Metadata.ConfState)
		g.activity = true
	}
	if len(rd.Entries) > 0 {
		if err := g.st.Append(rd.Entries); err != nil {
			return fmt.Errorf("append: %w", err)
		}
		g.e.appends.Add(1)
		g.lastIndex = rd.Entries[len(rd.Entries)-1].Index
		g.activity = true
	}
	if !raft.IsEmptyHardState(rd.HardState) {
		if err := g.st.SetHardState(rd.HardState); err != nil {
			return fmt.Errorf("set hard state: %w", err)
		}
		g.term = rd.HardState.Term
	}
	g.assignAccepted(rd.Entries)

	if !leader {
		// Durable: now the messages may go.
		g.send(rd.Messages)
	}

	if rd.SoftState != nil {
		g.lead = rd.SoftState.Lead
		g.state = rd.SoftState.RaftState
		g.isLeader.Store(g.state == raft.StateLeader)
		g.leadA.Store(g.lead)
	}
	if g.state == raft.StateLeader && g.nextOffTerm != g.term {
		// Everything raft's log holds is stored now, and in this term
		// only this node's proposals add to it.
		if lo, ok := g.st.(logEnder); ok {
			g.nextOff, g.nextOffTerm = lo.LogEnd(), g.term
		}
	}
	if len(rd.CommittedEntries) > 0 {
		if err := g.apply(rd.CommittedEntries); err != nil {
			return err
		}
		g.activity = true
	}
	if g.state != raft.StateLeader {
		g.failList(&g.waiters, ErrNotLeader)
		g.failList(&g.accepted, ErrNotLeader)
	} else if len(g.waiters) > 0 && g.waiters[0].term != g.term {
		g.failOlderTerms()
	}
	if g.lead != g.reportedLead || (g.lead != 0 && g.term != g.reportedTerm) {
		g.reportedLead, g.reportedTerm = g.lead, g.term
		g.sm.LeaderChanged(g.lead, g.term)
	}
	g.rn.Advance(rd)
	for _, to := range g.snapTo {
		g.rn.ReportSnapshot(to, raft.SnapshotFinish)
	}
	g.snapTo = g.snapTo[:0]
	if len(g.resolved) > 0 {
		// Status().Applied covers the index before Propose returns it.
		g.updateStatus()
		for _, p := range g.resolved {
			close(p.done)
		}
		clear(g.resolved)
		g.resolved = g.resolved[:0]
	}
	return nil
}

// assignAccepted gives the proposals moved into raft before this Ready their
// (index, term): they are the last len(accepted) entries of the Ready.
func (g *RaftGroup) assignAccepted(ents []raftpb.Entry) {
	k := len(g.accepted)
	if k == 0 {
		return
	}
	if len(ents) < k {
		g.log.Error().Int("proposals", k).Int("entries", len(ents)).Msg("raft: proposals missing from Ready")
		g.failList(&g.accepted, ErrProposalFailed)
		return
	}
	base := len(ents) - k
	for i, p := range g.accepted {
		e := &ents[base+i]
		if e.Term != g.acceptedTerm {
			p.finish(0, ErrNotLeader)
			continue
		}
		p.index, p.term = e.Index, e.Term
		if p.local {
			// In this node's log, durable: all acks=1 waits for.
			p.finish(e.Index, nil)
			continue
		}
		g.waiters = append(g.waiters, p)
	}
	clear(g.accepted)
	g.accepted = g.accepted[:0]
}

// send passes the Ready's messages to the transport, one Send per
// destination, in order.
func (g *RaftGroup) send(msgs []raftpb.Message) {
	if len(msgs) == 0 {
		return
	}
	tr := g.e.cfg.Transport
	type batch struct {
		to   uint64
		msgs []GroupMessage
	}
	var stack [4]batch
	batches := stack[:0]
	for i := range msgs {
		m := &msgs[i]
		if m.To == g.e.cfg.NodeID {
			continue // impossible without AsyncStorageWrites
		}
		if m.Type == raftpb.MsgSnap {
			g.snapTo = append(g.snapTo, m.To)
		}
		j := 0
		for j < len(batches) && batches[j].to != m.To {
			j++
		}
		if j == len(batches) {
			batches = append(batches, batch{to: m.To})
		}
		batches[j].msgs = append(batches[j].msgs, GroupMessage{Group: g.id, Msg: *m})
	}
	for _, b := range batches {
		g.e.msgsSent.Add(uint64(len(b.msgs)))
		if tr != nil {
			tr.Send(b.to, b.msgs)
		}
	}
}

// apply applies committed entries: conf changes to raft and the storage's
// ConfState first, then every entry to the state machine in one call, then
// resolves the waiters up to the last one.
func (g *RaftGroup) apply(ents []raftpb.Entry) error {
	for i := range ents {
		e := &ents[i]
		var cc raftpb.ConfChangeI
		switch e.Type {
		case raftpb.EntryConfChange:
			var c raftpb.ConfChange
			if err := c.Unmarshal(e.Data); err != nil {
				return fmt.Errorf("conf change at %d: %w", e.Index, err)
			}
			cc = c
		case raftpb.EntryConfChangeV2:
			var c raftpb.ConfChangeV2
			if err := c.Unmarshal(e.Data); err != nil {
				return fmt.Errorf("conf change at %d: %w", e.Index, err)
			}
			cc = c
		default:
			continue
		}
		cs := g.rn.ApplyConfChange(cc)
		if err := g.st.SetConfState(*cs); err != nil {
			return fmt.Errorf("set conf state: %w", err)
		}
		g.setConf(*cs)
	}
	aerr := g.sm.Apply(ents)
	if aerr != nil {
		g.log.Error().Err(aerr).Uint64("first", ents[0].Index).Uint64("last", ents[len(ents)-1].Index).Msg("state machine apply")
	}
	g.resolve(ents, aerr)
	if a, ok := g.st.(interface{ Applied(uint64) }); ok {
		a.Applied(ents[len(ents)-1].Index)
	}
	return nil
}

// resolve finishes the waiters whose index is in ents.
func (g *RaftGroup) resolve(ents []raftpb.Entry, aerr error) {
	first, last := ents[0].Index, ents[len(ents)-1].Index
	n := 0
	for ; n < len(g.waiters) && g.waiters[n].index <= last; n++ {
		w := g.waiters[n]
		var err error
		if w.index < first {
			err = ErrProposalFailed
		} else {
			e := &ents[w.index-first]
			switch {
			case e.Term != w.term:
				err = ErrNotLeader
			case w.conf && e.Type != raftpb.EntryConfChangeV2 && e.Type != raftpb.EntryConfChange:
				err = ErrProposalFailed
			case aerr != nil:
				err = aerr
			}
		}
		if err != nil {
			w.index = 0
		}
		w.err = err
		g.resolved = append(g.resolved, w)
	}
	if n > 0 {
		m := copy(g.waiters, g.waiters[n:])
		clear(g.waiters[m:])
		g.waiters = g.waiters[:m]
	}
}

func (g *RaftGroup) failOlderTerms() {
	j := 0
	for _, w := range g.waiters {
		if w.term != g.term {
			w.finish(0, ErrNotLeader)
			continue
		}
		g.waiters[j] = w
		j++
	}
	clear(g.waiters[j:])
	g.waiters = g.waiters[:j]
}

func (g *RaftGroup) failList(l *[]*proposal, err error) {
	for _, p := range *l {
		p.finish(0, err)
	}
	clear(*l)
	*l = (*l)[:0]
}

func (g *RaftGroup) setConf(cs raftpb.ConfState) {
	g.voters = slices.Clone(cs.Voters)
	slices.Sort(g.voters)
	g.learners = slices.Clone(cs.Learners)
	slices.Sort(g.learners)
}

// afterTick counts idle ticks on a leader and quiesces the group after
// quiesceAfterTicks of them.
func (g *RaftGroup) afterTick() {
	if g.activity {
		g.activity = false
		g.idleTicks = 0
		return
	}
	if !g.leaderCanQuiesce() {
		g.idleTicks = 0
		return
	}
	g.idleTicks++
	if g.idleTicks < quiesceAfterTicks {
		return
	}
	bs := g.rn.BasicStatus()
	g.setQuiesced(true)
	for _, to := range g.peers {
		g.e.msgsSent.Add(1)
		if tr := g.e.cfg.Transport; tr != nil {
			tr.Send(to, []GroupMessage{{Group: g.id, Msg: raftpb.Message{
				Type:   msgQuiesce,
				To:     to,
				From:   g.e.cfg.NodeID,
				Term:   bs.Term,
				Commit: bs.Commit,
				Index:  g.lastIndex,
			}}})
		}
	}
}

// leaderCanQuiesce: this node leads, nothing is in flight, and every peer
// not known to be down has everything. Fills g.peers with the peers.
func (g *RaftGroup) leaderCanQuiesce() bool {
	bs := g.rn.BasicStatus()
	if bs.RaftState != raft.StateLeader || bs.LeadTransferee != 0 {
		return false
	}
	if len(g.held) > 0 || len(g.accepted) > 0 || len(g.waiters) > 0 || g.wantCampaign {
		return false
	}
	if g.lastIndex != bs.Commit || bs.Applied != bs.Commit || g.rn.HasReady() {
		return false
	}
	ok := true
	g.peers = g.peers[:0]
	self := g.e.cfg.NodeID
	g.rn.WithProgress(func(id uint64, _ raft.ProgressType, pr tracker.Progress) {
		if id != self {
			g.peers = append(g.peers, id)
		}
		if !ok || (id != self && g.e.isDown(id)) {
			return
		}
		if pr.Match != g.lastIndex || pr.State != tracker.StateReplicate {
			ok = false
		}
	})
	return ok
}

// followerQuiesce honours a leader's quiesce signal if this node is exactly
// caught up with that leader.
func (g *RaftGroup) followerQuiesce(m *raftpb.Message) {
	if g.quiesced {
		return
	}
	bs := g.rn.BasicStatus()
	if bs.RaftState != raft.StateFollower || bs.Lead != m.From || bs.Term != m.Term {
		return
	}
	if bs.Commit != m.Commit || bs.Applied != bs.Commit || g.lastIndex != m.Index || g.rn.HasReady() {
		return
	}
	g.setQuiesced(true)
}

func (g *RaftGroup) unquiesce() {
	if g.quiesced {
		g.setQuiesced(false)
	}
}

func (g *RaftGroup) setQuiesced(q bool) {
	g.quiesced = q
	g.idleTicks = 0
	g.quiescedA.Store(q)
	g.e.setActive(g, !q)
}

func (g *RaftGroup) updateStatus() {
	bs := g.rn.BasicStatus()
	g.statusMu.Lock()
	g.status = GroupStatus{
		ID:        g.id,
		Leader:    bs.Lead,
		Term:      bs.Term,
		Commit:    bs.Commit,
		Applied:   bs.Applied,
		IsLeader:  bs.RaftState == raft.StateLeader,
		Quiesced:  g.quiesced,
		Voters:    g.voters,
		Learners:  g.learners,
		LastIndex: g.lastIndex,
	}
	g.statusMu.Unlock()
}

// fail stops the group after a storage or apply error: raft's state can no
// longer be trusted, so the group is finalized with the error.
func (g *RaftGroup) fail(err error) {
	g.log.Error().Err(err).Msg("raft group failed; it is stopped")
	g.failed = fmt.Errorf("cluster: group %d: %w", g.id, err)
	g.finalize(g.failed)
}

// finalize closes the group to new work and fails everything pending with
// err. Called by the worker holding the group, or by Stop after the workers
// are gone; idempotent.
func (g *RaftGroup) finalize(err error) {
	g.mu.Lock()
	if g.finalized {
		g.mu.Unlock()
		return
	}
	g.finalized = true
	g.closed = true
	if g.closedErr == nil {
		g.closedErr = err
	}
	pending := g.pending
	g.pending = nil
	g.inbox = nil
	g.mu.Unlock()

	g.isLeader.Store(false)
	g.quiescedA.Store(false)
	g.e.setActive(g, false)
	g.failList(&pending, err)
	g.failList(&g.held, err)
	g.failList(&g.accepted, err)
	g.failList(&g.waiters, err)
	g.failList(&g.resolved, err)
	close(g.done)
}
