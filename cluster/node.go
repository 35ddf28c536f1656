package cluster

// Node ties the pieces together for package broker: it implements
// broker.Replication with one Transport and one Engine, a controller group
// (GroupID 0) over the metadata log and one group per hosted partition.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"math"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
	"github.com/twmb/franz-go/pkg/kerr"
	"go.etcd.io/raft/v3/raftpb"

	"github.com/chronik-stream/chronik/broker"
	"github.com/chronik-stream/chronik/wal"
)

// NodeConfig configures a Node.
type NodeConfig struct {
	NodeID uint64
	// Peers are every node's raft address, this node's included.
	Peers map[uint64]string
	// Listener is the raft listener; nil listens on Peers[NodeID].
	Listener      net.Listener
	TickInterval  time.Duration // default 100ms
	ElectionTicks int           // default 10
	// OnCommit, if set, gets the time from proposing a partition's acks=all
	// entries to their commit on this leader (metrics; must be cheap).
	OnCommit func(time.Duration)
	Logger   zerolog.Logger
}

// Node is one cluster member's raft layer.
type Node struct {
	cfg NodeConfig
	log zerolog.Logger
	tr  *Transport
	eng *Engine
	ln  net.Listener

	served chan error
	stop   chan struct{}
	wg     sync.WaitGroup

	mu     sync.Mutex
	closed bool
	// desired are the voters each group should have; the reconciler makes
	// the groups this node leads converge to them by conf change.
	desired map[GroupID][]uint64
	// preferred is each partition group's preferred leader (its first
	// replica); the reconciler hands leadership back to it when it is
	// connected, so leaders spread across nodes again after a node returns.
	preferred    map[GroupID]uint64
	lastTransfer map[GroupID]time.Time // reconciler only
	removed      map[uint64]bool       // nodes removed from the cluster
}

var _ broker.Replication = (*Node)(nil)

// StartNode listens on this node's raft address and starts the transport
// and the engine. Groups are added as the broker opens its logs.
func StartNode(cfg NodeConfig) (*Node, error) {
	if _, ok := cfg.Peers[cfg.NodeID]; !ok || cfg.NodeID == 0 {
		return nil, fmt.Errorf("cluster: node id %d is not one of the peers", cfg.NodeID)
	}
	ln := cfg.Listener
	if ln == nil {
		var err error
		ln, err = net.Listen("tcp", cfg.Peers[cfg.NodeID])
		if err != nil {
			return nil, fmt.Errorf("cluster: raft listener: %w", err)
		}
	}
	n := &Node{cfg: cfg, log: cfg.Logger, ln: ln, served: make(chan error, 1), stop: make(chan struct{}),
		desired: map[GroupID][]uint64{}, preferred: map[GroupID]uint64{}, lastTransfer: map[GroupID]time.Time{},
		removed: map[uint64]bool{}}
	n.eng = NewEngine(EngineConfig{
		NodeID:        cfg.NodeID,
		TickInterval:  cfg.TickInterval,
		ElectionTicks: cfg.ElectionTicks,
		Logger:        cfg.Logger,
	})
	n.tr = NewTransport(TransportConfig{
		NodeID:     cfg.NodeID,
		Peers:      cfg.Peers,
		Handler:    n.eng.Step,
		OnPeerDown: n.eng.PeerDown,
		Logger:     cfg.Logger,
	})
	n.eng.cfg.Transport = n.tr
	n.eng.Start()
	go func() { n.served <- n.tr.Serve(ln) }()
	n.wg.Add(1)
	go n.reconcile()
	return n, nil
}

// Close stops the engine and the transport.
func (n *Node) Close() error {
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		return nil
	}
	n.closed = true
	n.mu.Unlock()
	close(n.stop)
	n.wg.Wait()
	n.eng.Stop()
	err := n.tr.Close()
	n.ln.Close()
	<-n.served
	return err
}

// Leaders counts the groups this node leads.
func (n *Node) Leaders() int {
	n.mu.Lock()
	ids := make([]GroupID, 0, len(n.desired))
	for id := range n.desired {
		ids = append(ids, id)
	}
	n.mu.Unlock()
	count := 0
	for _, id := range ids {
		if g := n.eng.Group(id); g != nil && g.isLeader.Load() {
			count++
		}
	}
	return count
}

// Engine and Transport are exposed for metrics and tests.
func (n *Node) Engine() *Engine       { return n.eng }
func (n *Node) Transport() *Transport { return n.tr }

// NodeID implements broker.Replication.
func (n *Node) NodeID() int32 { return int32(n.cfg.NodeID) }

func (n *Node) peerIDs() []uint64 {
	ids := make([]uint64, 0, len(n.cfg.Peers))
	for id := range n.cfg.Peers {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

// ---------------------------------------------------------------------------
// The controller group.

// controller is the metadata log's group.
type controller struct {
	n       *Node
	st      *Storage
	events  broker.ControllerEvents
	applied uint64 // replayed by the broker before Start
	g       *Group
	leader  atomic.Int64

	// Proposals made on a follower travel to the leader as a raft MsgProp
	// and are recognized when their record is applied here.
	mu      sync.Mutex
	waiting []*forwarded
}

type forwarded struct {
	data []byte
	done chan struct{}
	err  error // set before done is closed
}

// Controller implements broker.Replication.
func (n *Node) Controller(log *wal.Log, events broker.ControllerEvents) (broker.Controller, uint64, error) {
	st, err := OpenStorage(log)
	if err != nil {
		return nil, 0, err
	}
	hs, cs, err := st.InitialState()
	if err != nil {
		return nil, 0, err
	}
	// Only the lowest node id starts the controller group, as its sole
	// voter; it adds the others by conf change. Every other node waits to
	// be added. A standalone node joining a cluster therefore has to be
	// the lowest id: its metadata log becomes the group's log.
	lowest := n.peerIDs()[0]
	standalone := len(cs.Voters) == 0 && log.LastIndex() >= log.FirstIndex()
	if standalone && n.cfg.NodeID != lowest {
		return nil, 0, fmt.Errorf("cluster: %s holds a standalone node's metadata; to bring that data into a cluster, give this node the lowest node id among the peers (%d)", log.Dir(), lowest)
	}
	c := &controller{n: n, st: st, events: events, applied: hs.Commit}
	c.leader.Store(-1)
	return c, hs.Commit, nil
}

func (c *controller) Start() error {
	join, err := c.n.startAlone(c.st)
	if err != nil {
		return err
	}
	g, err := c.n.eng.AddGroup(ControllerGroup, c.st, c, join)
	if err != nil {
		return err
	}
	c.g = g
	c.n.want(ControllerGroup, c.n.peerIDs())
	return nil
}

func (c *controller) AppliedIndex() uint64 { return c.applied }

func (c *controller) Apply(entries []raftpb.Entry) error {
	for i := range entries {
		e := &entries[i]
		if e.Type != raftpb.EntryNormal || len(e.Data) == 0 {
			continue
		}
		kind, payload, err := DecodeData(e.Data)
		if err != nil || kind != wal.KindMeta {
			c.n.log.Error().Uint64("index", e.Index).Msg("controller: entry is not a metadata record; skipped")
			continue
		}
		c.events.ApplyMeta(payload)
		c.resolveForwarded(e.Data)
	}
	return nil
}

func (c *controller) resolveForwarded(data []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i, f := range c.waiting {
		if bytes.Equal(f.data, data) {
			close(f.done)
			c.waiting = slices.Delete(c.waiting, i, i+1)
			return
		}
	}
}

func (c *controller) LeaderChanged(leader, term uint64) {
	if leader == 0 {
		c.leader.Store(-1)
	} else {
		c.leader.Store(int64(leader))
	}
	// A proposal forwarded to the previous leader may be lost with it:
	// its caller hears NOT_CONTROLLER now instead of at its timeout.
	c.mu.Lock()
	for _, f := range c.waiting {
		f.err = fmt.Errorf("controller leader changed to %d: %w", leader, kerr.NotController)
		close(f.done)
	}
	c.waiting = nil
	c.mu.Unlock()
}

func (c *controller) SnapshotData() ([]byte, error) { return nil, nil }

func (c *controller) Restore(raftpb.Snapshot) error {
	return errors.New("controller: snapshots of the metadata log are not supported yet")
}

func (c *controller) Nodes() []int32 {
	var voters []uint64
	if c.g != nil {
		voters = c.g.Status().Voters
	}
	if len(voters) == 0 {
		voters = c.n.peerIDs()
	}
	out := make([]int32, len(voters))
	for i, v := range voters {
		out[i] = int32(v)
	}
	return out
}

func (c *controller) Leader() int32 { return int32(c.leader.Load()) }

func (c *controller) Close() error {
	if c.g == nil {
		return nil
	}
	c.n.want(ControllerGroup, nil)
	if err := c.st.Flush(); err != nil {
		c.n.log.Warn().Err(err).Msg("flush controller raft state")
	}
	err := c.n.eng.RemoveGroup(ControllerGroup)
	if errors.Is(err, ErrStopped) || errors.Is(err, ErrUnknownGroup) {
		err = nil
	}
	return err
}

// Propose implements broker.Controller: on the leader through the engine,
// on a follower forwarded to the leader.
func (c *controller) Propose(ctx context.Context, record []byte) error {
	data := EncodeData(wal.KindMeta, record)
	leader := c.leader.Load()
	switch {
	case leader < 0:
		return fmt.Errorf("controller has no leader: %w", kerr.NotController)
	case uint64(leader) == c.n.cfg.NodeID:
		_, err := c.g.Propose(ctx, data)
		return mapErr(err, kerr.NotController)
	}
	f := &forwarded{data: data, done: make(chan struct{})}
	c.mu.Lock()
	c.waiting = append(c.waiting, f)
	c.mu.Unlock()
	c.n.tr.Send(uint64(leader), []GroupMessage{{Group: ControllerGroup, Msg: raftpb.Message{
		Type:    raftpb.MsgProp,
		From:    c.n.cfg.NodeID,
		To:      uint64(leader),
		Entries: []raftpb.Entry{{Data: data}},
	}}})
	select {
	case <-f.done:
		return f.err
	case <-ctx.Done():
		c.mu.Lock()
		if i := slices.Index(c.waiting, f); i >= 0 {
			c.waiting = slices.Delete(c.waiting, i, i+1)
		}
		c.mu.Unlock()
		return mapErr(ctx.Err(), kerr.NotController)
	}
}

// mapErr turns cluster and context errors into the Kafka error a client
// retries on.
func mapErr(err error, notLeader *kerr.Error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		return fmt.Errorf("%w: %w", kerr.RequestTimedOut, err)
	default:
		return fmt.Errorf("%w: %w", notLeader, err)
	}
}

// ---------------------------------------------------------------------------
// Partition groups.

type replica struct {
	n      *Node
	st     *Storage
	g      *Group
	id     GroupID
	events broker.ReplicaEvents
	// startApplied is the index the partition's state file covers
	// (ReplicaSpec.Applied); applied the last index applied since.
	startApplied uint64
	applied      atomic.Uint64
}

// Replica implements broker.Replication.
func (n *Node) Replica(spec broker.ReplicaSpec, log *wal.Log, events broker.ReplicaEvents) (broker.Replica, error) {
	if spec.Group == 0 {
		return nil, fmt.Errorf("cluster: %s-%d has no raft group id", spec.Topic, spec.Partition)
	}
	st, err := OpenStorage(log)
	if err != nil {
		return nil, err
	}
	hs, _, err := st.InitialState()
	if err != nil {
		return nil, err
	}
	r := &replica{n: n, st: st, id: GroupID(spec.Group), events: events, startApplied: spec.Applied}
	if spec.Applied > 0 {
		r.applied.Store(min(spec.Applied, hs.Commit)) // raft applies the rest again
	} else {
		r.applied.Store(hs.Commit)
	}
	replicas := make([]uint64, len(spec.Replicas))
	for i, id := range spec.Replicas {
		replicas[i] = uint64(id)
	}
	// A topic created in the cluster starts empty everywhere: all replicas
	// bootstrap the same voters. A topic created standalone has its data
	// on the node that was standalone: that node starts the group alone and
	// adds the others; empty replicas wait to be added.
	join := replicas
	switch {
	case spec.Join:
		join = nil // added to a running group: the leader adds us
	case !spec.Fresh:
		if join, err = n.startAlone(st); err != nil {
			return nil, err
		}
	}
	events.Committed(st.OffsetAtIndex(hs.Commit))
	g, err := n.eng.AddGroup(r.id, st, r, join)
	if err != nil {
		return nil, err
	}
	r.g = g
	n.want(r.id, replicas)
	if len(replicas) > 0 {
		n.mu.Lock()
		n.preferred[r.id] = replicas[0]
		n.mu.Unlock()
		// A new group's preferred leader campaigns at once, before the
		// others' election timeouts: it wins, and no leadership transfer
		// (which clients see as NOT_LEADER) follows.
		if spec.Fresh && replicas[0] == n.cfg.NodeID && hs.Term == 0 {
			g.Campaign()
		}
	}
	return r, nil
}

// AppliedIndex: a partition's log is its state, and what applying adds
// to it (a log start move) is in the partition's state file up to the
// index that file names; raft applies the committed entries after it
// again. A state file from before that index existed re-applies nothing.
func (r *replica) AppliedIndex() uint64 {
	if r.startApplied == 0 {
		return math.MaxUint64
	}
	return r.startApplied
}

// Applied implements broker.Replica.
func (r *replica) Applied() uint64 { return r.applied.Load() }

func (r *replica) Apply(entries []raftpb.Entry) error {
	if len(entries) > 0 {
		r.events.Committed(r.st.OffsetAtIndex(entries[len(entries)-1].Index))
		defer r.applied.Store(entries[len(entries)-1].Index)
	}
	for i := range entries {
		if off, ok := decodeLogStart(&entries[i]); ok {
			r.events.LogStartMoved(off)
		}
	}
	return nil
}

// EpochEnd implements broker.Replica (OffsetForLeaderEpoch).
func (r *replica) EpochEnd(epoch int32) (int32, int64, bool) {
	if epoch < 0 {
		return -1, -1, false
	}
	t, end, ok := r.st.EpochEnd(uint64(epoch))
	return int32(t), end, ok
}

// SetReplicas implements broker.Replica: the reconciler of the group's
// leader makes the voters follow.
func (r *replica) SetReplicas(replicas []int32) {
	voters := make([]uint64, len(replicas))
	for i, id := range replicas {
		voters[i] = uint64(id)
	}
	r.n.want(r.id, voters)
	if len(voters) > 0 {
		r.n.mu.Lock()
		r.n.preferred[r.id] = voters[0]
		r.n.mu.Unlock()
	}
}

// MoveLogStart implements broker.Replica: the move is a control entry in
// the partition's log, applied by every replica in log order.
func (r *replica) MoveLogStart(ctx context.Context, offset int64) error {
	p, err := r.g.submit(ctx, &proposal{data: EncodeLogStart(offset)})
	if err != nil {
		return mapErr(err, kerr.NotLeaderForPartition)
	}
	if _, err := r.g.wait(ctx, p); err != nil {
		return mapErr(err, kerr.NotLeaderForPartition)
	}
	return nil
}

func (r *replica) LeaderChanged(leader, term uint64) {
	l := int32(-1)
	if leader != 0 {
		l = int32(leader)
	}
	r.events.LeaderChanged(l, int32(term))
}

func (r *replica) SnapshotData() ([]byte, error) {
	return SnapshotData{NextOffset: r.st.OffsetAtIndex(r.st.log.FirstIndex() - 1)}.Marshal(), nil
}

func (r *replica) Restore(snap raftpb.Snapshot) error {
	r.events.Committed(r.st.OffsetAtIndex(snap.Metadata.Index))
	defer r.applied.Store(snap.Metadata.Index)
	return nil
}

// Replicate implements broker.Replica: every entry is one proposal; they
// are all submitted before waiting, so they share one raft Ready (one
// append, one fsync, one message per follower).
func (r *replica) Replicate(ctx context.Context, entries []wal.Entry, quorum bool) (int64, error) {
	ctx, cancel := context.WithTimeout(ctx, broker.ReplicateTimeout)
	defer cancel()
	start := time.Now()
	props := make([]*proposal, 0, len(entries))
	for i := range entries {
		p, err := r.g.submit(ctx, &proposal{data: EncodeData(wal.KindData, entries[i].Payload), local: !quorum})
		if err != nil {
			return -1, mapErr(err, kerr.NotLeaderForPartition)
		}
		props = append(props, p)
	}
	var first uint64
	for i, p := range props {
		idx, err := r.g.wait(ctx, p)
		if err != nil {
			return -1, mapErr(err, kerr.NotLeaderForPartition)
		}
		if i == 0 {
			first = idx
		}
	}
	base, _, err := r.st.Offsets(first)
	if err != nil {
		return -1, mapErr(err, kerr.NotLeaderForPartition)
	}
	if f := r.n.cfg.OnCommit; f != nil && quorum {
		f(time.Since(start))
	}
	return base, nil
}

// CommittedIndex implements broker.Replica.
func (r *replica) CommittedIndex() uint64 {
	hs, _, _ := r.st.InitialState()
	return hs.Commit
}

// Compacted implements broker.Replica: the snapshot point follows the
// log's first index after retention dropped segments.
func (r *replica) Compacted() error {
	first := r.st.log.FirstIndex()
	if first <= 1 {
		return nil
	}
	return r.st.CompactTo(first - 1)
}

func (r *replica) Close() error {
	r.n.want(r.id, nil)
	if err := r.st.Flush(); err != nil {
		r.n.log.Warn().Err(err).Uint64("group", uint64(r.id)).Msg("flush raft state")
	}
	err := r.n.eng.RemoveGroup(r.id)
	if errors.Is(err, ErrStopped) || errors.Is(err, ErrUnknownGroup) {
		err = nil
	}
	return err
}

// startAlone prepares a group that one node starts alone and grows by conf
// change (the controller; a partition created standalone): that node is
// the lowest node id, and the join list it returns makes it the sole voter.
// Every other node gets the same one-voter configuration without joining
// (it is not a voter, so it never campaigns): when the leader's conf change
// naming all voters reaches it, it applies that change on the same base as
// the leader. raft cannot apply a joint change to an empty configuration.
func (n *Node) startAlone(st *Storage) ([]uint64, error) {
	lowest := n.peerIDs()[0]
	if n.cfg.NodeID == lowest {
		return []uint64{lowest}, nil
	}
	_, cs, err := st.InitialState()
	if err != nil {
		return nil, err
	}
	if len(cs.Voters) == 0 && len(cs.Learners) == 0 {
		if err := st.SetConfState(raftpb.ConfState{Voters: []uint64{lowest}}); err != nil {
			return nil, err
		}
	}
	return nil, nil
}

// ---------------------------------------------------------------------------
// Voter reconciliation.

// want records the voters a group should have (nil forgets the group).
func (n *Node) want(id GroupID, voters []uint64) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if voters == nil {
		delete(n.desired, id)
		delete(n.preferred, id)
		return
	}
	n.desired[id] = slices.DeleteFunc(slices.Sorted(slices.Values(voters)), func(v uint64) bool { return n.removed[v] })
}

// Alive implements broker.Replication: this node, or a peer our
// connection to is up.
func (n *Node) Alive(id int32) bool {
	return uint64(id) == n.cfg.NodeID || n.tr.Connected(uint64(id))
}

// NodeRemoved implements broker.Replication: the node leaves every group's
// desired voters; the reconciler removes it from the groups this node
// leads.
func (n *Node) NodeRemoved(id int32) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.removed[uint64(id)] = true
	for g, voters := range n.desired {
		// A new slice: the reconciler reads the old one without the lock.
		n.desired[g] = slices.DeleteFunc(slices.Clone(voters), func(v uint64) bool { return v == uint64(id) })
	}
	for g, p := range n.preferred {
		if p == uint64(id) {
			delete(n.preferred, g)
		}
	}
}

// removeExtra removes one voter the group should not have (a removed
// node), as a simple conf change; the next pass removes the next one.
func (n *Node) removeExtra(g *Group, st GroupStatus, voters []uint64) {
	for _, v := range st.Voters {
		if slices.Contains(voters, v) || len(voters) == 0 {
			continue
		}
		cc := raftpb.ConfChangeV2{Changes: []raftpb.ConfChangeSingle{{Type: raftpb.ConfChangeRemoveNode, NodeID: v}}}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err := g.ProposeConfChange(ctx, cc)
		cancel()
		if err != nil {
			n.log.Debug().Err(err).Uint64("group", uint64(g.ID())).Uint64("node", v).Msg("removing a voter not committed yet")
			return
		}
		n.log.Info().Uint64("group", uint64(g.ID())).Uint64("node", v).Msg("voter removed")
		return
	}
}

// transferCooldown spaces out leadership transfers of one group: a
// preferred leader that cannot take over (still catching up, flapping) is
// not asked again at once.
const transferCooldown = 10 * time.Second

// rebalance hands a group this node leads to its preferred leader when that
// node is a voter and connected. raft brings it up to date first and
// aborts the transfer if it cannot within an election timeout.
func (n *Node) rebalance(g *Group, st GroupStatus, pref uint64) {
	if pref == 0 || pref == n.cfg.NodeID || !slices.Contains(st.Voters, pref) || !n.tr.Connected(pref) {
		return
	}
	if time.Since(n.lastTransfer[g.ID()]) < transferCooldown {
		return
	}
	n.lastTransfer[g.ID()] = time.Now()
	n.log.Debug().Uint64("group", uint64(g.ID())).Uint64("to", pref).Msg("handing leadership back to the preferred leader")
	g.TransferLeadership(pref)
}

// reconcileInterval is how often the groups this node leads are checked
// against their desired voters.
const reconcileInterval = 250 * time.Millisecond

// reconcile adds missing voters to the groups this node leads, one conf
// change per group at a time (several additions at once go through joint
// consensus, which raft leaves on its own).
func (n *Node) reconcile() {
	defer n.wg.Done()
	t := time.NewTicker(reconcileInterval)
	defer t.Stop()
	for {
		select {
		case <-n.stop:
			return
		case <-t.C:
		}
		n.mu.Lock()
		work := make(map[GroupID][]uint64, len(n.desired))
		for id, v := range n.desired {
			work[id] = v
		}
		preferred := maps.Clone(n.preferred)
		n.mu.Unlock()
		for id, voters := range work {
			g := n.eng.Group(id)
			if g == nil || !g.isLeader.Load() {
				continue // followers have nothing to reconcile: skip Status's copy
			}
			st := g.Status()
			if !st.IsLeader {
				continue
			}
			n.rebalance(g, st, preferred[id])
			missing, extra := false, false
			for _, v := range voters {
				missing = missing || !slices.Contains(st.Voters, v)
			}
			for _, v := range st.Voters {
				extra = extra || !slices.Contains(voters, v)
			}
			if extra || !missing {
				// Removals first: a removed node that is still a
				// voter while a new, empty one is added would make
				// every commit wait for the newcomer's catch-up.
				n.removeExtra(g, st, voters)
				continue
			}
			// The change names every desired voter, present ones too
			// (adding a voter twice is a no-op): a replica that joins
			// with no configuration of its own (the group began from a
			// standalone log, whose voters are not in the log) then
			// learns the whole set from this one entry.
			var cc raftpb.ConfChangeV2
			for _, v := range voters {
				cc.Changes = append(cc.Changes, raftpb.ConfChangeSingle{Type: raftpb.ConfChangeAddNode, NodeID: v})
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			err := g.ProposeConfChange(ctx, cc)
			cancel()
			if err != nil {
				n.log.Debug().Err(err).Uint64("group", uint64(id)).Msg("adding voters not committed yet")
				continue
			}
			n.log.Info().Uint64("group", uint64(id)).Any("added", cc.Changes).Msg("voters added")
		}
	}
}
