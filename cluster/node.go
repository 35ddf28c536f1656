package cluster

// Node ties the pieces together for package broker: it implements
// broker.Replication with one Transport and one Engine, a controller group
// (GroupID 0) over the metadata log and one group per hosted partition.

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"slices"
	"sync"
	"time"

	"github.com/rs/zerolog"
	"github.com/twmb/franz-go/pkg/kerr"
	"go.etcd.io/raft/v3/raftpb"

	"github.com/chronik-stream/chronik/broker"
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
// Shared by the broker adapters (controller.go, replica.go).

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
