package cluster

// Partition groups: broker.Replica, one raft group per hosted partition on
// the partition's own wal.Log. Node.Replica makes them.

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"go.etcd.io/raft/v3/raftpb"

	"github.com/chronik-stream/chronik/broker"
	"github.com/chronik-stream/chronik/wal"
)

type replica struct {
	n      *Node
	st     *Storage
	g      *RaftGroup
	id     GroupID
	events broker.ReplicaEvents
	// startApplied is the index the partition's state file covers
	// (ReplicaSpec.Applied); applied the last index applied since.
	startApplied uint64
	applied      atomic.Uint64
}

// Replica implements broker.Replication.
func (n *Node) Replica(spec broker.ReplicaSpec, log *wal.Log, events broker.ReplicaEvents) (broker.Replica, error) {
	if spec.RaftGroup == 0 {
		return nil, fmt.Errorf("cluster: %s-%d has no raft group id", spec.Topic, spec.Partition)
	}
	st, err := OpenStorage(log)
	if err != nil {
		return nil, err
	}
	st.SetObserver(events) // the partition's view of its log follows the storage's writes
	hs, _, err := st.InitialState()
	if err != nil {
		return nil, err
	}
	r := &replica{n: n, st: st, id: GroupID(spec.RaftGroup), events: events, startApplied: spec.Applied}
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
		} else if req, ok := decodeCompact(&entries[i]); ok {
			r.events.CompactRequested(req)
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
	return r.proposeControl(ctx, EncodeLogStart(offset))
}

// proposeControl proposes a control entry and waits until it is committed
// and applied here.
func (r *replica) proposeControl(ctx context.Context, data []byte) error {
	p, err := r.g.submit(ctx, &proposal{data: data})
	if err != nil {
		return mapErr(err, kerr.NotLeaderForPartition)
	}
	if _, err := r.g.wait(ctx, p); err != nil {
		return mapErr(err, kerr.NotLeaderForPartition)
	}
	return nil
}

// Compact implements broker.Replica: the request is a control entry in
// the partition's log, applied by every replica in log order.
func (r *replica) Compact(ctx context.Context, req broker.CompactRequest) error {
	return r.proposeControl(ctx, EncodeCompact(req))
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

// Replicate implements broker.Replica: every entry is one proposal,
// carrying the offsets and epoch (Term) the partition gave it; they are
// all submitted before waiting, so they share one raft Ready (one append,
// one fsync, one message per follower). A proposal numbered for another
// term or against a stale log end is refused before it enters raft
// (ErrStaleOffsets, answered NOT_LEADER_OR_FOLLOWER: the producer retries
// and the partition numbers again from its view of the log).
func (r *replica) Replicate(ctx context.Context, entries []wal.Entry, quorum bool) (int64, error) {
	if len(entries) == 0 {
		return -1, nil
	}
	ctx, cancel := context.WithTimeout(ctx, broker.ReplicateTimeout)
	defer cancel()
	start := time.Now()
	props := make([]*proposal, 0, len(entries))
	for i := range entries {
		e := &entries[i]
		p, err := r.g.submit(ctx, &proposal{data: EncodeEntry(*e), local: !quorum,
			offsets: true, epoch: e.Term, base: e.BaseOffset, next: e.LastOffset() + 1})
		if err != nil {
			return -1, mapErr(err, kerr.NotLeaderForPartition)
		}
		props = append(props, p)
	}
	for _, p := range props {
		if _, err := r.g.wait(ctx, p); err != nil {
			return -1, mapErr(err, kerr.NotLeaderForPartition)
		}
	}
	if f := r.n.cfg.OnCommit; f != nil && quorum {
		f(time.Since(start))
	}
	return entries[0].BaseOffset, nil
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
