package cluster

// The controller group: broker.Controller over the metadata log, as the
// raft group ControllerGroup (GroupID 0). Node.Controller makes it.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/twmb/franz-go/pkg/kerr"
	"go.etcd.io/raft/v3/raftpb"

	"github.com/chronik-stream/chronik/broker"
	"github.com/chronik-stream/chronik/wal"
)

// controller is the metadata log's group.
type controller struct {
	n       *Node
	st      *Storage
	events  broker.ControllerEvents
	applied uint64 // replayed by the broker before Start
	g       *RaftGroup
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
