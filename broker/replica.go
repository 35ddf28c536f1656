package broker

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"

	"github.com/chronik-stream/chronik/wal"
)

// Replication is how cluster mode plugs into the broker (Config.Replication;
// nil runs standalone). Package cluster implements it; broker never imports
// cluster (DESIGN.md, "Layout").
//
// A partition always goes through a Replica. Standalone it is a
// standaloneReplica (standalone.go): Replicate appends to the partition's
// wal.Log, and "committed" means written and synced per the fsync policy.
// With Replication, a partition's log is the raft log of the partition's
// group: the replica writes it (raft index == WAL index), the partition only
// proposes, and the high watermark follows the raft commit index.
type Replication interface {
	// Replica makes a partition's open log the storage of its raft group
	// and returns the group's handle. Events for the partition arrive on
	// events, from the replication layer's goroutines: implementations of
	// ReplicaEvents never block and never call back into the Replica.
	Replica(spec ReplicaSpec, log *wal.Log, events ReplicaEvents) (Replica, error)
	// NodeID is this node's id (Kafka broker id == raft node id).
	NodeID() int32
	// MetaLog makes the metadata log the raft log of the metadata group
	// (whose leader is Kafka's controller).
	// It returns the index through which the log is known committed; Open
	// replays the records up to it, then calls Start, after which every
	// record committed later is applied through events on every node, in
	// log order.
	MetaLog(log *wal.Log, events MetaLogEvents) (ml MetaLog, committed uint64, err error)
	// NodeRemoved tells the replication layer that a node left the
	// cluster (applied on every node, in metadata order, and at Open for
	// every node removed before): the groups this node leads drop it from
	// their voters.
	NodeRemoved(id int32)
	// Alive reports whether a node is reachable from here now: Metadata
	// lists only live brokers, so that clients do not pick a dead one.
	Alive(id int32) bool
}

// MetaLog is the metadata log as the broker commits to it: the metadata
// raft group in a cluster, the local log standalone (meta_local.go).
type MetaLog interface {
	// Start runs the group from the replayed index on.
	Start() error
	// Propose appends a metadata record and returns once it is committed
	// and applied on this node. Errors wrap a *kerr.Error
	// (NOT_CONTROLLER without a leader, REQUEST_TIMED_OUT).
	Propose(ctx context.Context, record []byte) error
	// Nodes lists the metadata group's voters: the cluster's nodes.
	Nodes() []int32
	// Leader is the controller leader's node id, -1 when none is known.
	Leader() int32
	Close() error
}

// MetaLogEvents receives committed metadata records.
type MetaLogEvents interface {
	ApplyMeta(record []byte)
}

// ReplicaSpec names a partition and its replicas.
type ReplicaSpec struct {
	Topic     string
	TopicID   [16]byte
	Partition int32
	RaftGroup uint64  // the partition's raft group id, unique in the cluster
	Replicas  []int32 // node ids, preferred leader first
	// Fresh: the topic was created in cluster mode, so every replica's
	// log starts empty and all of them may bootstrap the group together.
	// Otherwise the topic was created standalone: only a node holding its
	// data may start the group (alone), and adds the others.
	Fresh bool
	// Join: this node was added to the partition's replicas after the
	// group formed (replicas_added). Its log starts empty and it waits
	// for the leader to add it; it never bootstraps the group.
	Join bool
	// Applied is the raft index the partition's state file covers
	// (Replica.Applied when it was written; 0: unknown). Committed
	// entries after it are applied again at open, so that a log start
	// move applied but not yet in the state file is not lost.
	Applied uint64
}

// Replica is one partition's raft group as the broker sees it.
type Replica interface {
	// Replicate proposes entries whose Kafka offsets the partition
	// assigned (from the log end it tracks while leader) and returns
	// with the base offset the first entry was stored at: with quorum
	// (acks=all) once they are committed and in the local log; without
	// (acks=1 and 0) once they are durable in this leader's log, when a
	// new leader may still replace them. Errors wrap a *kerr.Error:
	// NOT_LEADER_OR_FOLLOWER when this node is not (or stopped being) the
	// leader, REQUEST_TIMED_OUT when ctx ended or ReplicateTimeout passed
	// first. A failed Replicate
	// may still have been appended and be committed later by a new leader;
	// idempotent producers retry and are deduplicated.
	Replicate(ctx context.Context, entries []wal.Entry, quorum bool) (baseOffset int64, err error)
	// MoveLogStart makes offset the log start on every replica
	// (DeleteRecords): it returns once the move is committed and applied
	// here (ReplicaEvents.LogStartMoved). Errors as for Replicate.
	MoveLogStart(ctx context.Context, offset int64) error
	// Compact asks every replica to clean its log below req.UpTo
	// (compaction, cleaner.go): it returns once the request is committed
	// and applied here (ReplicaEvents.CompactRequested), not once the
	// cleaning is done. Errors as for Replicate.
	Compact(ctx context.Context, req CompactRequest) error
	// Applied is the last WAL index applied here (ReplicaEvents called
	// for it).
	Applied() uint64
	// CommittedIndex is the last WAL index known committed here: what
	// retention may drop up to.
	CommittedIndex() uint64
	// EpochEnd answers OffsetForLeaderEpoch for an epoch older than the
	// current one: the largest leader epoch at or below it among the
	// log's entries and the offset where the next epoch's entries begin.
	// ok is false when the log has no entry of a later epoch.
	EpochEnd(epoch int32) (leaderEpoch int32, endOffset int64, ok bool)
	// SetReplicas tells the replica that the partition's replicas changed
	// (nodes were added): the leader adds them to the group.
	SetReplicas(replicas []int32)
	// Compacted tells the replica that the log's leading segments were
	// dropped (retention): the group's snapshot point moves to the new
	// first index, and followers that need older entries get a snapshot.
	Compacted() error
	// Close stops the replica (the group goes on elsewhere).
	Close() error
}

// ReplicaEvents receives a replica's state changes. Each call must return
// quickly: it runs on a replication worker.
type ReplicaEvents interface {
	// Committed reports the high watermark: the Kafka offset one past the
	// last committed record entry. It never decreases.
	Committed(highWatermark int64)
	// LeaderChanged reports the group's leader (-1 when none is known) and
	// its leader epoch (the raft term).
	LeaderChanged(leader int32, epoch int32)
	// LogStartMoved reports a committed log start move (MoveLogStart on
	// the leader), after Committed covered the records before it.
	LogStartMoved(offset int64)
	// CompactRequested reports a committed compaction request (Compact
	// on the leader), in log order, on every replica.
	CompactRequested(req CompactRequest)
	// Appended reports entries the replica wrote to the partition's log,
	// in log order, once they are in it: this node's own as leader and
	// the leader's as follower. The replica is the log's only writer;
	// the partition's log end, producer states and transactions (open
	// ones, the aborted index) follow these reports,
	// so a follower that becomes leader already has them. Entries below
	// the log end already reported are reported again harmlessly.
	Appended(entries []wal.Entry)
	// Truncated reports that the log lost its entries from nextOffset on
	// (a deposed leader's uncommitted suffix replaced, a snapshot
	// installed, a failed write cut): the partition takes its log end
	// and producer states from the log again. The log is already in its
	// new state.
	Truncated(nextOffset int64)
}

// CompactRequest is a compaction request as the partition's leader decided
// it and every replica applies it: clean every entry whose last offset is
// below UpTo, with Now (unix ms) as the clock and DeleteRetentionMs as the
// topic's delete.retention.ms. Carrying the clock and the setting makes
// every replica's cleaning of the same log come out the same.
type CompactRequest struct {
	UpTo              int64
	Now               int64
	DeleteRetentionMs int64
}

// ReplicateTimeout bounds one Replicate or MoveLogStart that waits for
// other nodes: a group without a quorum answers REQUEST_TIMED_OUT instead
// of holding the partition (Kafka's produce timeout; clients retry). The
// replication layer applies it to Replicate (the standalone one never
// waits), so the produce path makes no timer per append.
const ReplicateTimeout = 30 * time.Second

// replicaState is a partition's view of its group. Standalone partitions
// are their own leader at epoch 0.
type replicaState struct {
	r      atomic.Pointer[Replica]
	ctx    context.Context // ends when the partition closes
	cancel context.CancelFunc
	self   int32
	leader atomic.Int32
	epoch  atomic.Int32
}

// leads reports whether this node may append to and serve the partition.
func (p *partition) leads() bool {
	return p.replica.leader.Load() == p.replica.self
}

// repl is the partition's Replica: nil standalone, and nil for a moment
// while a replicated partition opens.
func (p *partition) repl() Replica {
	if r := p.replica.r.Load(); r != nil {
		return *r
	}
	return nil
}

// notLeader is the error for produce and fetch on a follower.
func (p *partition) notLeader() error {
	return fmt.Errorf("%s-%d: this node is not the leader (leader %d): %w", p.topic.name, p.index, p.replica.leader.Load(), kerr.NotLeaderForPartition)
}

// Committed implements ReplicaEvents.
func (p *partition) Committed(hw int64) {
	for {
		cur := p.highWatermark.Load()
		if hw <= cur || p.highWatermark.CompareAndSwap(cur, hw) {
			break
		}
	}
	p.b.appendSignal.notify()
}

// LogStartMoved implements ReplicaEvents. It runs on a replication worker,
// which must not wait for appendMu (a Replicate holding it waits for that
// worker): the offset is stored atomically, lsoMoved makes the next state
// snapshot write it, and retention drops the segments below it.
func (p *partition) LogStartMoved(offset int64) {
	p.raiseLogStart(offset)
	p.lsoMoved.Store(true)
}

// raiseLogStart moves the log start offset up to offset, never down: the
// replication worker (LogStartMoved), DeleteRecords and retention may
// move it at the same time.
func (p *partition) raiseLogStart(offset int64) {
	for {
		cur := p.logStartOffset.Load()
		if offset <= cur || p.logStartOffset.CompareAndSwap(cur, offset) {
			return
		}
	}
}

// LeaderChanged implements ReplicaEvents.
func (p *partition) LeaderChanged(leader, epoch int32) {
	p.replica.epoch.Store(epoch)
	p.replica.leader.Store(leader)
	p.b.appendSignal.notify() // long polls on a follower return NOT_LEADER
	p.b.groupLeaderChanged(p) // __consumer_offsets: the coordinator follows
	p.b.txnLeaderChanged(p)   // __transaction_state: so does this one
}

// Appended implements ReplicaEvents: the log's view follows its writer.
func (p *partition) Appended(entries []wal.Entry) {
	p.logMu.Lock()
	defer p.logMu.Unlock()
	for i := range entries {
		e := &entries[i]
		if !e.Kind.HasRecords() || e.BaseOffset < p.nextOffset {
			continue
		}
		if e.Kind == wal.KindData {
			p.producers.applyEntry(e, &p.txns)
		}
		p.nextOffset = e.LastOffset() + 1
		p.dirty = true
	}
	p.publishTxnsLocked()
}

// Truncated implements ReplicaEvents: the view is rebuilt from the state
// file and the log. Rare (a deposed leader's uncommitted suffix, a failed
// write, a snapshot install), so it may read the log.
func (p *partition) Truncated(nextOffset int64) {
	p.logMu.Lock()
	p.rebuildViewLocked()
	// A leader's log holds every committed entry, so the high watermark
	// is never past it; after a failed write was cut (fsync interval) it
	// may have been.
	if hw := p.highWatermark.Load(); hw > p.nextOffset {
		p.highWatermark.CompareAndSwap(hw, p.nextOffset)
	}
	if p.replica.ctx == nil || p.replica.ctx.Err() != nil {
		p.logMu.Unlock() // closing: close writes the state file
		return
	}
	// The state file may hold producer states of the entries just cut
	// (a follower's view covers uncommitted entries): replace it now, so
	// that a restart never takes a lost batch for a duplicate.
	if err := p.writeStateViewLocked(); err != nil {
		p.b.logger.Warn().Err(err).Str("topic", p.topic.name).Int32("partition", p.index).Msg("save state after truncation")
	}
}

// rebuildViewLocked takes the log end, the producer states and the
// transactions from the state file and the log. logMu held.
func (p *partition) rebuildViewLocked() {
	snap, err := loadSnapshot(p.statePath())
	if err != nil {
		snap = partitionSnapshot{}
	}
	if err := p.recoverProducersLocked(snap); err != nil {
		// The log could not be read: start over from its end with no
		// producer state (a producer then restarts its sequences, as after
		// its state expired) rather than keep a view of entries it lost.
		p.b.logger.Warn().Err(err).Str("topic", p.topic.name).Int32("partition", p.index).Msg("rebuild producer state")
		p.producers = make(producerStates)
		p.txns = txnState{changed: true}
		p.publishTxnsLocked()
		p.nextOffset = p.log.NextOffset()
	}
}

// replicate writes the group's entries through the replica, waiting for
// their commit when quorum is set. Caller holds appendMu.
func (p *partition) replicate(entries []wal.Entry, quorum bool) error {
	repl := p.repl()
	if repl == nil {
		return fmt.Errorf("%s-%d is still opening: %w", p.topic.name, p.index, kerr.NotLeaderForPartition)
	}
	base, err := repl.Replicate(p.replica.ctx, entries, quorum)
	if err != nil {
		var ke *kerr.Error
		if !errors.As(err, &ke) {
			err = fmt.Errorf("%w: %w", kerr.KafkaStorageError, err)
		}
		return fmt.Errorf("replicate to %s-%d: %w", p.topic.name, p.index, err)
	}
	if len(entries) > 0 && base != entries[0].BaseOffset {
		return fmt.Errorf("replicate to %s-%d: stored at offset %d, expected %d: %w", p.topic.name, p.index, base, entries[0].BaseOffset, kerr.NotLeaderForPartition)
	}
	return nil
}

// retain applies retention.ms and retention.bytes (wal.Retention, the one
// rule): each replica decides for its own log, as Kafka replicas do, but
// drops only whole segments that are committed, then moves a raft group's
// snapshot point.
func (p *partition) retain(tc topicConfig, now int64) (int, error) {
	repl := p.repl()
	if repl == nil || (tc.retentionMs < 0 && tc.retentionBytes < 0) {
		return 0, nil
	}
	r := wal.Retention{AgeCutoff: wal.NoAgeLimit, MaxBytes: tc.retentionBytes, Through: repl.CommittedIndex()}
	if tc.retentionMs >= 0 {
		r.AgeCutoff = now - tc.retentionMs
	}
	n, err := p.log.Retain(r)
	if err != nil {
		return n, fmt.Errorf("retention of %s-%d: %w", p.topic.name, p.index, err)
	}
	if n == 0 {
		return 0, nil
	}
	if err := repl.Compacted(); err != nil {
		return n, fmt.Errorf("retention of %s-%d: move the snapshot point: %w", p.topic.name, p.index, err)
	}
	return n, nil
}
