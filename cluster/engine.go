package cluster

// The engine: a RawNode per raft group, driven by a fixed pool of worker
// goroutines (DESIGN.md, "Cluster rules"; the contract is in api.go).
//
// Scheduling. Every group has a small mutex guarding its inbox of incoming
// raft messages, its list of pending proposals, a count of due ticks, a few
// request flags (campaign, transfer, wake, remove) and a "scheduled" flag.
// Whoever adds work to a group (Engine.Step on the transport's reader
// goroutine, Propose, the ticker, PeerDown, ...) sets scheduled and pushes
// the group on the engine's ready queue if it was not already set. A worker
// pops a group, takes all of its queued work in one swap, drives the RawNode
// (step messages, tick, propose, then handle Readies until none is left) and
// at the end either clears scheduled or, if new work arrived meanwhile,
// pushes the group again. So a group is in the queue at most once and is
// handled by at most one worker at a time; all raft state of a group is
// owned by whichever worker holds it. Nobody else touches a RawNode.
//
// There is no goroutine per group, per message or per proposal: Workers
// goroutines plus one ticker goroutine, that's all.
//
// Ticks. The ticker marks every active (non-quiesced) group as having a due
// tick; the engine keeps the set of active groups, so a tick costs
// O(active groups), and quiesced groups cost nothing at all.
//
// Quiescence. A leader whose group is idle for quiesceAfterTicks ticks in a
// row (no pending or in-flight proposals, last index == commit == applied,
// every voter and learner not known to be down has Match == last index and
// is in StateReplicate, no leadership transfer, nothing left to send) stops
// ticking and sends each follower a quiesce signal. The signal is a
// raftpb.Message of type MsgUnreachable (msgQuiesce) carrying the leader's
// term (Term), commit index (Commit) and last index (Index). MsgUnreachable
// is a raft-local message type: raft itself never puts one on the wire, and
// RawNode.Step refuses one that comes from a peer (ErrStepLocalMsg), so even
// a node that did not intercept it could not be confused by it. The engine
// intercepts it before rn.Step. A follower honours the signal only if it
// comes from the leader it knows, in its current term, and its own log and
// apply state are caught up to exactly the leader's (commit == applied ==
// signal.Commit, last index == signal.Index); then it stops ticking too.
// Otherwise it keeps ticking, and if the leader really stopped, its
// election timeout fires, its (pre)vote wakes the leader, and the leader
// catches it up and quiesces again.
//
// A quiesced group wakes (starts ticking again) on: a proposal, Campaign,
// TransferLeadership, any incoming raft message except an echo (a
// MsgHeartbeatResp or MsgAppResp that gives raft nothing to do: those are
// the late answers to the leader's last heartbeats and must not wake it, or
// leader and followers would wake each other forever), PeerDown of the
// group's leader (followers resume ticking and elect a new leader within an
// election timeout), and PeerUp of a node (groups this node leads wake, so
// a follower that was away while they were quiesced gets caught up).
// A node that sends us anything after PeerDown counts as up again.
//
// Ready handling follows raft's contract (doc.go) with synchronous storage
// writes: snapshot (Storage.ApplySnapshot, StateMachine.Restore), then
// Storage.Append(rd.Entries), Storage.SetHardState, and only then
// Transport.Send of rd.Messages (one Send per destination per Ready), then
// the committed entries (conf changes through rn.ApplyConfChange and
// Storage.SetConfState, then every committed entry in one
// StateMachine.Apply call), StateMachine.LeaderChanged, rn.Advance.
//
// Proposal batching and matching: see engine_raftgroup.go.

import (
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
)

const (
	defaultTickInterval  = 100 * time.Millisecond
	defaultElectionTicks = 10
	defaultHeartbeatTick = 1
	defaultMaxSizePerMsg = 1 << 20
	defaultMaxInflight   = 256
	defaultMinWorkers    = 8
	workersPerCPU        = 4

	// quiesceAfterTicks: ticks in a row a leader must find its group idle
	// before it quiesces it.
	quiesceAfterTicks = 2
	// maxReadiesPerPass bounds the Readies one worker pass handles for one
	// group before the group goes back to the queue (fairness).
	maxReadiesPerPass = 16
	// maxTicksPerPass: ticks that accumulated while a group waited for a
	// worker are applied at most this many at a time.
	maxTicksPerPass = 2
	// maxInbox bounds the raft messages queued for one group; beyond it
	// Step drops (raft retransmits).
	maxInbox = 8192

	// msgQuiesce is the quiesce signal a leader sends its followers (see
	// above). Never handed to raft.
	msgQuiesce = raftpb.MsgUnreachable
)

// AppliedIndexer may be implemented by a StateMachine whose applied state
// survives restarts. AppliedIndex is read once, by AddGroup, and becomes
// raft's Config.Applied (clamped to the storage's [FirstIndex-1, Commit]):
// committed entries up to it are not handed to Apply again. Without it
// every committed entry still in the log is applied again after a restart.
// (Addition to the contract in api.go.)
type AppliedIndexer interface {
	AppliedIndex() uint64
}

// EngineStats are counters for metrics and tests. (Addition to api.go.)
type EngineStats struct {
	Groups           int    // groups hosted
	ActiveGroups     int    // groups not quiesced (ticking)
	Proposals        uint64 // proposals handed to raft
	Appends          uint64 // Storage.Append calls
	Readies          uint64 // Readies handled
	MessagesSent     uint64 // raft messages passed to Transport.Send (quiesce signals included)
	MessagesReceived uint64 // raft messages passed to Step
	MessagesDropped  uint64 // received for an unknown or closed group, or beyond maxInbox
}

// Engine drives the raft groups of one node. See api.go and the comment at
// the top of this file.
type Engine struct {
	cfg EngineConfig
	log zerolog.Logger

	mu     sync.RWMutex
	groups map[GroupID]*RaftGroup
	state  int // engineNew, engineRunning, engineStopped

	// down: peers reported down (PeerDown) and not heard from since.
	// Copy on write under mu, read lock-free by workers and Step.
	down atomic.Pointer[map[uint64]struct{}]

	activeMu sync.Mutex
	active   map[*RaftGroup]struct{}

	q      readyQueue
	stopCh chan struct{}
	wg     sync.WaitGroup

	proposals, appends, readies     atomic.Uint64
	msgsSent, msgsRecv, msgsDropped atomic.Uint64
}

const (
	engineNew = iota
	engineRunning
	engineStopped
)

// NewEngine returns an engine with cfg's zero fields defaulted. Groups may be
// added before Start; nothing runs until Start.
func NewEngine(cfg EngineConfig) *Engine {
	if cfg.TickInterval <= 0 {
		cfg.TickInterval = defaultTickInterval
	}
	if cfg.ElectionTicks <= 0 {
		cfg.ElectionTicks = defaultElectionTicks
	}
	if cfg.HeartbeatTick <= 0 {
		cfg.HeartbeatTick = defaultHeartbeatTick
	}
	if cfg.HeartbeatTick >= cfg.ElectionTicks {
		cfg.HeartbeatTick = max(1, cfg.ElectionTicks/2)
	}
	if cfg.Workers <= 0 {
		// A worker spends most of a busy group's turn in the fsync of its
		// append, not on a CPU: with only GOMAXPROCS workers, a node's
		// groups waited for each other's fsyncs instead of syncing
		// together.
		cfg.Workers = max(defaultMinWorkers, workersPerCPU*runtime.GOMAXPROCS(0))
	}
	if cfg.MaxSizePerMsg == 0 {
		cfg.MaxSizePerMsg = defaultMaxSizePerMsg
	}
	if cfg.MaxInflight <= 0 {
		cfg.MaxInflight = defaultMaxInflight
	}
	e := &Engine{
		cfg:    cfg,
		log:    cfg.Logger.With().Str("component", "raft").Uint64("node", cfg.NodeID).Logger(),
		groups: make(map[GroupID]*RaftGroup),
		active: make(map[*RaftGroup]struct{}),
		stopCh: make(chan struct{}),
	}
	e.q.cond.L = &e.q.mu
	return e
}

// maxUncommittedBytes bounds the bytes of a group's proposals that the
// leader has appended but not committed; beyond it raft drops proposals and
// the engine holds the rest back until commits catch up. A variable so that
// tests can lower it.
var maxUncommittedBytes uint64 = 64 << 20

// Start starts the workers and the ticker. Calling it again does nothing.
func (e *Engine) Start() {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.state != engineNew {
		return
	}
	e.state = engineRunning
	for i := 0; i < e.cfg.Workers; i++ {
		e.wg.Add(1)
		go e.worker()
	}
	e.wg.Add(1)
	go e.ticker()
}

// Stop stops the ticker and the workers (a worker finishes the group it is
// handling first), waits for them, then fails every pending proposal with
// ErrStopped. Groups stay registered (Group and Status still answer) but
// accept nothing. Calling it again does nothing.
func (e *Engine) Stop() {
	e.mu.Lock()
	if e.state == engineStopped {
		e.mu.Unlock()
		return
	}
	wasRunning := e.state == engineRunning
	e.state = engineStopped
	e.mu.Unlock()

	if wasRunning {
		close(e.stopCh)
		e.q.close()
		e.wg.Wait()
	}
	e.mu.RLock()
	groups := make([]*RaftGroup, 0, len(e.groups))
	for _, g := range e.groups {
		groups = append(groups, g)
	}
	e.mu.RUnlock()
	for _, g := range groups {
		g.finalize(ErrStopped)
	}
}

// Group returns the group with this id, or nil.
func (e *Engine) Group(id GroupID) *RaftGroup {
	e.mu.RLock()
	g := e.groups[id]
	e.mu.RUnlock()
	return g
}

// RemoveGroup stops driving the group: its pending proposals fail with
// ErrUnknownGroup and messages for it are dropped from then on. It returns
// once no worker touches the group any more, so the caller may close its
// storage.
func (e *Engine) RemoveGroup(id GroupID) error {
	e.mu.RLock()
	g := e.groups[id]
	running := e.state == engineRunning
	e.mu.RUnlock()
	if g == nil {
		return ErrUnknownGroup
	}
	g.mu.Lock()
	finalized := g.finalized
	push := false
	if !finalized {
		g.removed = true
		push = !g.scheduled
		g.scheduled = true
	}
	g.mu.Unlock()
	if !finalized {
		if running {
			if push {
				e.q.push(g)
			}
			<-g.done // closed by the worker, or by Stop's sweep
		} else {
			g.finalize(ErrUnknownGroup)
		}
	}
	e.mu.Lock()
	if e.groups[id] == g {
		delete(e.groups, id)
	}
	e.mu.Unlock()
	return nil
}

// Step hands messages received from peer `from` to their groups. It only
// queues them and schedules the groups; it never blocks on raft work. This
// is the transport's Handler.
func (e *Engine) Step(from uint64, msgs []GroupMessage) {
	if d := e.down.Load(); d != nil {
		if _, ok := (*d)[from]; ok {
			e.PeerUp(from)
		}
	}
	e.msgsRecv.Add(uint64(len(msgs)))
	var stack [16]*RaftGroup
	push := stack[:0]
	var last *RaftGroup
	e.mu.RLock()
	for i := range msgs {
		gm := &msgs[i]
		g := last
		if g == nil || g.id != gm.Group {
			g = e.groups[gm.Group]
			if g == nil {
				e.msgsDropped.Add(1)
				continue
			}
			last = g
		}
		ok, sched := g.enqueueMsg(gm.Msg)
		if !ok {
			e.msgsDropped.Add(1)
		}
		if sched {
			push = append(push, g)
		}
	}
	e.mu.RUnlock()
	e.q.pushMany(push)
}

// PeerDown is the transport's OnPeerDown: followers of quiesced groups led
// by that node wake and resume ticking, so they elect a new leader within
// an election timeout. Leaders stop waiting for that node's
// acknowledgement before they quiesce.
func (e *Engine) PeerDown(id uint64) {
	e.mu.Lock()
	if id == e.cfg.NodeID {
		e.mu.Unlock()
		return
	}
	nd := map[uint64]struct{}{id: {}}
	if d := e.down.Load(); d != nil {
		for k := range *d {
			nd[k] = struct{}{}
		}
	}
	e.down.Store(&nd)
	var push []*RaftGroup
	for _, g := range e.groups {
		if g.quiescedA.Load() && g.leadA.Load() == id {
			if g.requestWake() {
				push = append(push, g)
			}
		}
	}
	e.mu.Unlock()
	e.q.pushMany(push)
}

// PeerUp says peer id is reachable again (the engine also infers it from
// any message the peer sends after PeerDown). Quiesced groups this node
// leads wake for a few ticks, so a follower that missed entries while it
// was away is caught up, then quiesce again. (Addition to api.go: the
// transport or broker may call it on reconnect.)
func (e *Engine) PeerUp(id uint64) {
	e.mu.Lock()
	d := e.down.Load()
	if d == nil {
		e.mu.Unlock()
		return
	}
	if _, ok := (*d)[id]; !ok {
		e.mu.Unlock()
		return
	}
	if len(*d) == 1 {
		e.down.Store(nil)
	} else {
		nd := make(map[uint64]struct{}, len(*d)-1)
		for k := range *d {
			if k != id {
				nd[k] = struct{}{}
			}
		}
		e.down.Store(&nd)
	}
	var push []*RaftGroup
	for _, g := range e.groups {
		if g.quiescedA.Load() && g.isLeader.Load() {
			if g.requestWake() {
				push = append(push, g)
			}
		}
	}
	e.mu.Unlock()
	e.q.pushMany(push)
}

// Stats returns the engine's counters.
func (e *Engine) Stats() EngineStats {
	e.mu.RLock()
	n := len(e.groups)
	e.mu.RUnlock()
	e.activeMu.Lock()
	a := len(e.active)
	e.activeMu.Unlock()
	return EngineStats{
		Groups:           n,
		ActiveGroups:     a,
		Proposals:        e.proposals.Load(),
		Appends:          e.appends.Load(),
		Readies:          e.readies.Load(),
		MessagesSent:     e.msgsSent.Load(),
		MessagesReceived: e.msgsRecv.Load(),
		MessagesDropped:  e.msgsDropped.Load(),
	}
}

func (e *Engine) isDown(id uint64) bool {
	d := e.down.Load()
	if d == nil {
		return false
	}
	_, ok := (*d)[id]
	return ok
}

func (e *Engine) setActive(g *RaftGroup, active bool) {
	e.activeMu.Lock()
	if active {
		e.active[g] = struct{}{}
	} else {
		delete(e.active, g)
	}
	e.activeMu.Unlock()
}

func (e *Engine) worker() {
	defer e.wg.Done()
	for {
		g := e.q.pop()
		if g == nil {
			return
		}
		g.process()
	}
}

func (e *Engine) ticker() {
	defer e.wg.Done()
	t := time.NewTicker(e.cfg.TickInterval)
	defer t.Stop()
	var buf []*RaftGroup
	for {
		select {
		case <-e.stopCh:
			return
		case <-t.C:
		}
		buf = buf[:0]
		e.activeMu.Lock()
		for g := range e.active {
			if g.markTick() {
				buf = append(buf, g)
			}
		}
		e.activeMu.Unlock()
		e.q.pushMany(buf)
		clear(buf)
	}
}

// readyQueue is the FIFO of groups that have work. A group is in it at most
// once (RaftGroup.scheduled).
type readyQueue struct {
	mu     sync.Mutex
	cond   sync.Cond
	items  []*RaftGroup
	head   int
	closed bool
}

func (q *readyQueue) push(g *RaftGroup) {
	q.mu.Lock()
	q.items = append(q.items, g)
	q.mu.Unlock()
	q.cond.Signal()
}

func (q *readyQueue) pushMany(gs []*RaftGroup) {
	switch len(gs) {
	case 0:
		return
	case 1:
		q.push(gs[0])
		return
	}
	q.mu.Lock()
	q.items = append(q.items, gs...)
	q.mu.Unlock()
	q.cond.Broadcast()
}

// pop blocks until a group is queued or the queue is closed (nil).
func (q *readyQueue) pop() *RaftGroup {
	q.mu.Lock()
	defer q.mu.Unlock()
	for q.head == len(q.items) && !q.closed {
		q.cond.Wait()
	}
	if q.closed {
		return nil
	}
	g := q.items[q.head]
	q.items[q.head] = nil
	q.head++
	if q.head == len(q.items) {
		q.items = q.items[:0]
		q.head = 0
	} else if q.head >= 1024 && q.head*2 >= len(q.items) {
		n := copy(q.items, q.items[q.head:])
		clear(q.items[n:])
		q.items = q.items[:n]
		q.head = 0
	}
	return g
}

func (q *readyQueue) close() {
	q.mu.Lock()
	q.closed = true
	q.mu.Unlock()
	q.cond.Broadcast()
}

// raftLogger adapts zerolog to raft.Logger. raft's Info (elections, term
// changes, conf changes) goes out at Debug, so Info stays quiet.
type raftLogger struct{ l zerolog.Logger }

var _ raft.Logger = raftLogger{}

func (r raftLogger) Debug(v ...any) { r.emit(r.l.Debug(), v...) }
func (r raftLogger) Debugf(format string, v ...any) {
	r.emitf(r.l.Debug(), format, v...)
}
func (r raftLogger) Info(v ...any) { r.emit(r.l.Debug(), v...) }
func (r raftLogger) Infof(format string, v ...any) {
	r.emitf(r.l.Debug(), format, v...)
}
func (r raftLogger) Warning(v ...any) { r.emit(r.l.Warn(), v...) }
func (r raftLogger) Warningf(format string, v ...any) {
	r.emitf(r.l.Warn(), format, v...)
}
func (r raftLogger) Error(v ...any) { r.emit(r.l.Error(), v...) }
func (r raftLogger) Errorf(format string, v ...any) {
	r.emitf(r.l.Error(), format, v...)
}
func (r raftLogger) Fatal(v ...any) {
	s := fmt.Sprint(v...)
	r.l.Error().Msg(s)
	panic(s)
}
func (r raftLogger) Fatalf(format string, v ...any) {
	s := fmt.Sprintf(format, v...)
	r.l.Error().Msg(s)
	panic(s)
}
func (r raftLogger) Panic(v ...any) {
	s := fmt.Sprint(v...)
	r.l.Error().Msg(s)
	panic(s)
}
func (r raftLogger) Panicf(format string, v ...any) {
	s := fmt.Sprintf(format, v...)
	r.l.Error().Msg(s)
	panic(s)
}

func (raftLogger) emit(ev *zerolog.Event, v ...any) {
	if ev != nil {
		ev.Msg(fmt.Sprint(v...))
	}
}

func (raftLogger) emitf(ev *zerolog.Event, format string, v ...any) {
	if ev != nil {
		ev.Msg(fmt.Sprintf(format, v...))
	}
}
