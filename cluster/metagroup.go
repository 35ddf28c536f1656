package cluster

// The metadata group: the raft group over the metadata log (GroupID
// ControllerGroup, 0), which package broker uses as its broker.MetaLog.
// Node.MetaLog makes it. Its leader is the cluster's controller in
// Kafka's sense (clients hear NOT_CONTROLLER when there is none, or it
// moved); ControllerGroup, Node.MetaLog and the log and error texts
// use the word in that sense only.

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

// metaGroup is the metadata log's raft group.
type metaGroup struct {
	n       *Node
	st      *Storage
	events  broker.MetaLogEvents
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

// MetaLog implements broker.Replication.
func (n *Node) MetaLog(log *wal.Log, events broker.MetaLogEvents) (broker.MetaLog, uint64, error) {
	st, err := OpenStorage(log)
	if err != nil {
		return nil, 0, err
	}
	hs, cs, err := st.InitialState()
	if err != nil {
		return nil, 0, err
	}
	// Only the lowest node id starts the metadata group, as its sole
	// voter; it adds the others by conf change. Every other node waits to
	// be added. A standalone node joining a cluster therefore has to be
	// the lowest id: its metadata log becomes the group's log.
	lowest := n.peerIDs()[0]
	standalone := len(cs.Voters) == 0 && log.LastIndex() >= log.FirstIndex()
	if standalone && n.cfg.NodeID != lowest {
		return nil, 0, fmt.Errorf("cluster: %s holds a standalone node's metadata; to bring that data into a cluster, give this node the lowest node id among the peers (%d)", log.Dir(), lowest)
	}
	m := &metaGroup{n: n, st: st, events: events, applied: hs.Commit}
	m.leader.Store(-1)
	return m, hs.Commit, nil
}

func (m *metaGroup) Start() error {
	join, err := m.n.startAlone(m.st)
	if err != nil {
		return err
	}
	g, err := m.n.eng.AddGroup(ControllerGroup, m.st, m, join)
	if err != nil {
		return err
	}
	m.g = g
	m.n.want(ControllerGroup, m.n.peerIDs())
	return nil
}

func (m *metaGroup) AppliedIndex() uint64 { return m.applied }

func (m *metaGroup) Apply(entries []raftpb.Entry) error {
	for i := range entries {
		e := &entries[i]
		if e.Type != raftpb.EntryNormal || len(e.Data) == 0 {
			continue
		}
		we, err := DecodeData(e.Data)
		if err != nil || we.Kind != wal.KindMeta {
			m.n.log.Error().Uint64("index", e.Index).Msg("controller: entry is not a metadata record; skipped")
			continue
		}
		m.events.ApplyMeta(we.Payload)
		m.resolveForwarded(e.Data)
	}
	return nil
}

func (m *metaGroup) resolveForwarded(data []byte) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for i, f := range m.waiting {
		if bytes.Equal(f.data, data) {
			close(f.done)
			m.waiting = slices.Delete(m.waiting, i, i+1)
			return
		}
	}
}

func (m *metaGroup) LeaderChanged(leader, term uint64) {
	if leader == 0 {
		m.leader.Store(-1)
	} else {
		m.leader.Store(int64(leader))
	}
	// A proposal forwarded to the previous leader may be lost with it:
	// its caller hears NOT_CONTROLLER now instead of at its timeout.
	m.mu.Lock()
	for _, f := range m.waiting {
		f.err = fmt.Errorf("controller leader changed to %d: %w", leader, kerr.NotController)
		close(f.done)
	}
	m.waiting = nil
	m.mu.Unlock()
}

func (m *metaGroup) SnapshotData() ([]byte, error) { return nil, nil }

func (m *metaGroup) Restore(raftpb.Snapshot) error {
	return errors.New("controller: snapshots of the metadata log are not supported yet")
}

func (m *metaGroup) Nodes() []int32 {
	var voters []uint64
	if m.g != nil {
		voters = m.g.Status().Voters
	}
	if len(voters) == 0 {
		voters = m.n.peerIDs()
	}
	out := make([]int32, len(voters))
	for i, v := range voters {
		out[i] = int32(v)
	}
	return out
}

func (m *metaGroup) Leader() int32 { return int32(m.leader.Load()) }

func (m *metaGroup) Close() error {
	if m.g == nil {
		return nil
	}
	m.n.want(ControllerGroup, nil)
	if err := m.st.Flush(); err != nil {
		m.n.log.Warn().Err(err).Msg("flush controller raft state")
	}
	err := m.n.eng.RemoveGroup(ControllerGroup)
	if errors.Is(err, ErrStopped) || errors.Is(err, ErrUnknownGroup) {
		err = nil
	}
	return err
}

// Propose implements broker.MetaLog: on the leader through the engine,
// on a follower forwarded to the leader.
func (m *metaGroup) Propose(ctx context.Context, record []byte) error {
	data := EncodeData(wal.KindMeta, record)
	leader := m.leader.Load()
	switch {
	case leader < 0:
		return fmt.Errorf("controller has no leader: %w", kerr.NotController)
	case uint64(leader) == m.n.cfg.NodeID:
		_, err := m.g.Propose(ctx, data)
		return mapErr(err, kerr.NotController)
	}
	f := &forwarded{data: data, done: make(chan struct{})}
	m.mu.Lock()
	m.waiting = append(m.waiting, f)
	m.mu.Unlock()
	m.n.tr.Send(uint64(leader), []GroupMessage{{Group: ControllerGroup, Msg: raftpb.Message{
		Type:    raftpb.MsgProp,
		From:    m.n.cfg.NodeID,
		To:      uint64(leader),
		Entries: []raftpb.Entry{{Data: data}},
	}}})
	select {
	case <-f.done:
		return f.err
	case <-ctx.Done():
		m.mu.Lock()
		if i := slices.Index(m.waiting, f); i >= 0 {
			m.waiting = slices.Delete(m.waiting, i, i+1)
		}
		m.mu.Unlock()
		return mapErr(ctx.Err(), kerr.NotController)
	}
}
