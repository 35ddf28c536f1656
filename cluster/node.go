package cluster

// Node ties the pieces together for package broker: it implements
// broker.Replication with one Transport and one Engine, a metadata group
// (ControllerGroup, GroupID 0) over the metadata log and one raft group per
// hosted partition.

import (
	"context"
	"errors"
	"fmt"
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
	// TLS, if set, runs the peer transport over mutual TLS; its
	// certificate must name NodeID. Nil is plaintext.
	TLS *PeerTLS
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
	if cfg.TLS != nil && cfg.TLS.NodeID() != cfg.NodeID {
		return nil, fmt.Errorf("cluster: the peer TLS certificate names node %d, this is node %d", cfg.TLS.NodeID(), cfg.NodeID)
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
		TLS:        cfg.TLS,
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

// PeerTLS is the node's peer TLS material, nil when plaintext.
func (n *Node) PeerTLS() *PeerTLS { return n.cfg.TLS }

// NodeID implements broker.Replication.
func (n *Node) NodeID() int32 { return int32(n.cfg.NodeID) }

// Alive implements broker.Replication: this node, or a peer our
// connection to is up.
func (n *Node) Alive(id int32) bool {
	return uint64(id) == n.cfg.NodeID || n.tr.Connected(uint64(id))
}

func (n *Node) peerIDs() []uint64 {
	ids := make([]uint64, 0, len(n.cfg.Peers))
	for id := range n.cfg.Peers {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

// ---------------------------------------------------------------------------
// Shared by the broker adapters (metagroup.go, replica.go).

// startAlone prepares a group that one node starts alone and grows by conf
// change (the metadata group; a partition created standalone): that node is
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
