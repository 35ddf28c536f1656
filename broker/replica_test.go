package broker

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"

	"github.com/chronik-stream/chronik/wal"
)

// localReplication stands in for a one-node raft group: Replicate writes
// the entries to the log itself (term = the current epoch), as the raft
// storage would, and commits at once. The test drives leadership through
// the events. It checks the broker's side of the seam; package cluster's
// tests check the real groups.
type localReplication struct {
	mu       sync.Mutex
	replicas map[string]*localReplica
	byPart   map[string]*localReplica // every replica, by "topic-partition"
}

type localReplica struct {
	log    *wal.Log
	events ReplicaEvents
	epoch  int32
	// fenced makes Replicate fail with NOT_LEADER_OR_FOLLOWER, as a
	// leader that lost its group while the partition still thinks it leads.
	fenced atomic.Bool
	// local counts Replicate calls that did not ask for a quorum (acks=1).
	local atomic.Int64
}

func (r *localReplication) NodeID() int32 { return 1 }

func (r *localReplication) NodeRemoved(int32) {}

func (r *localReplication) Alive(int32) bool { return true }

func (r *localReplication) MetaLog(log *wal.Log, events MetaLogEvents) (MetaLog, uint64, error) {
	return &localController{log: log, events: events}, log.LastIndex(), nil
}

// localController commits a record by appending it to the metadata log and
// applying it at once, as a one-node metadata group would.
type localController struct {
	mu     sync.Mutex
	log    *wal.Log
	events MetaLogEvents
}

func (c *localController) Start() error   { return nil }
func (c *localController) Nodes() []int32 { return []int32{1} }
func (c *localController) Leader() int32  { return 1 }
func (c *localController) Close() error   { return nil }

func (c *localController) Propose(ctx context.Context, record []byte) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, err := c.log.Append(wal.Entry{Kind: wal.KindMeta, BaseOffset: c.log.NextOffset(), Payload: record}); err != nil {
		return err
	}
	c.events.ApplyMeta(record)
	return nil
}

func (r *localReplication) Replica(spec ReplicaSpec, log *wal.Log, events ReplicaEvents) (Replica, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	rep := &localReplica{log: log, events: events}
	if spec.Topic == "t" {
		r.replicas[spec.Topic] = rep
	}
	if r.byPart == nil {
		r.byPart = make(map[string]*localReplica)
	}
	r.byPart[fmt.Sprintf("%s-%d", spec.Topic, spec.Partition)] = rep
	return rep, nil
}

// replica returns a partition's replica (nil until it is opened).
func (r *localReplication) replica(topic string, partition int32) *localReplica {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.byPart[fmt.Sprintf("%s-%d", topic, partition)]
}

func (l *localReplica) Replicate(ctx context.Context, entries []wal.Entry, quorum bool) (int64, error) {
	if l.fenced.Load() {
		return -1, fmt.Errorf("local replica fenced: %w", kerr.NotLeaderForPartition)
	}
	if !quorum {
		l.local.Add(1)
	}
	base := l.log.NextOffset()
	for i := range entries {
		entries[i].Term = uint64(l.epoch)
	}
	if _, err := l.log.Append(entries...); err != nil {
		return -1, err
	}
	l.events.Appended(entries)
	l.events.Committed(l.log.NextOffset())
	return base, nil
}

// follow writes an entry another leader numbered, as the group's storage
// does on a follower, and reports it.
func (l *localReplica) follow(t testing.TB, e wal.Entry) {
	t.Helper()
	if _, err := l.log.Append(e); err != nil {
		t.Fatal(err)
	}
	l.events.Appended([]wal.Entry{e})
}

func (l *localReplica) MoveLogStart(ctx context.Context, offset int64) error {
	if l.fenced.Load() {
		return fmt.Errorf("local replica fenced: %w", kerr.NotLeaderForPartition)
	}
	l.events.LogStartMoved(offset)
	return nil
}

func (l *localReplica) Compact(ctx context.Context, req CompactRequest) error {
	if l.fenced.Load() {
		return fmt.Errorf("local replica fenced: %w", kerr.NotLeaderForPartition)
	}
	l.events.CompactRequested(req)
	return nil
}

func (l *localReplica) SetReplicas([]int32)                 {}
func (l *localReplica) Applied() uint64                     { return l.log.LastIndex() }
func (l *localReplica) EpochEnd(int32) (int32, int64, bool) { return -1, -1, false }
func (l *localReplica) Close() error                        { return nil }
func (l *localReplica) CommittedIndex() uint64              { return l.log.LastIndex() }
func (l *localReplica) Compacted() error                    { return nil }

// lead makes node the leader at epoch.
func (l *localReplica) lead(node, epoch int32) {
	l.epoch = epoch
	l.events.LeaderChanged(node, epoch)
}

func TestReplicaSeam(t *testing.T) {
	repl := &localReplication{replicas: map[string]*localReplica{}}
	b := openBroker(t, Config{NodeID: 1, Replication: repl})
	if _, err := b.CreateTopic("t", 1, -1, nil, false); err != nil {
		t.Fatal(err)
	}
	rep := repl.replicas["t"]
	ctx := context.Background()

	// No leader yet: produce and fetch are refused, Metadata says -1.
	if _, err := b.Produce(ctx, "t", 0, buildBatch(plain(2)), -1, nil); !errors.Is(err, kerr.NotLeaderForPartition) {
		t.Fatalf("produce before an election: %v", err)
	}
	if _, err := b.Fetch("t", 0, 0, 1<<20, 0); !errors.Is(err, kerr.NotLeaderForPartition) {
		t.Fatalf("fetch before an election: %v", err)
	}
	if leader, _, _ := b.PartitionLeader("t", 0); leader != -1 {
		t.Fatalf("leader before an election: %d", leader)
	}

	// This node leads at epoch 3: the stored batch carries the epoch.
	rep.lead(1, 3)
	res, err := b.Produce(ctx, "t", 0, buildBatch(idem(2, 7, 0, 0)), -1, nil)
	if err != nil || res.BaseOffset != 0 {
		t.Fatalf("produce as leader: %+v %v", res, err)
	}
	if e := b.LeaderEpoch("t", 0); e != 3 {
		t.Fatalf("leader epoch %d, want 3", e)
	}
	f, err := b.Fetch("t", 0, 0, 1<<20, 0)
	if err != nil || f.HighWatermark != 2 {
		t.Fatalf("fetch as leader: hw %d, %v", f.HighWatermark, err)
	}
	if e := int32(binary.BigEndian.Uint32(f.Records[offLeaderEpoch:])); e != 3 {
		t.Fatalf("stored leader epoch %d, want 3", e)
	}

	// Node 2 takes over: this node refuses, while the group writes what
	// node 2's producers sent (producer 8) into the local log.
	rep.lead(2, 4)
	if _, err := b.Produce(ctx, "t", 0, buildBatch(plain(1)), -1, nil); !errors.Is(err, kerr.NotLeaderForPartition) {
		t.Fatalf("produce as follower: %v", err)
	}
	if _, err := b.Fetch("t", 0, 0, 1<<20, 0); !errors.Is(err, kerr.NotLeaderForPartition) {
		t.Fatalf("fetch as follower: %v", err)
	}
	fromOther := buildBatch(idem(3, 8, 0, 0))
	assignOffset(fromOther, 2, 4)
	rep.follow(t, wal.Entry{Kind: wal.KindData, Term: 4, BaseOffset: 2, LastOffsetDelta: 2, MaxTimestamp: 1000, Payload: fromOther})
	rep.events.Committed(5)

	// Back to this node: the log end and producer 8's state come from the
	// log, so its retry is a duplicate and new records follow offset 5.
	rep.lead(1, 5)
	res, err = b.Produce(ctx, "t", 0, buildBatch(idem(3, 8, 0, 0)), -1, nil)
	if err != nil || res.BaseOffset != 2 {
		t.Fatalf("retry of a batch the previous leader stored: %+v %v, want the original offset 2", res, err)
	}
	res, err = b.Produce(ctx, "t", 0, buildBatch(plain(1)), -1, nil)
	if err != nil || res.BaseOffset != 5 {
		t.Fatalf("produce after regaining leadership: %+v %v, want offset 5", res, err)
	}
	if lso, hw, _ := b.PartitionOffsets("t", 0); lso != 0 || hw != 6 {
		t.Fatalf("offsets [%d, %d), want [0, 6)", lso, hw)
	}
}

// In cluster mode every metadata change is a proposal applied through
// ApplyMeta; the state survives a reopen by replay up to the committed
// index.
func TestClusteredMetadata(t *testing.T) {
	dir := t.TempDir()
	repl := &localReplication{replicas: map[string]*localReplica{}}
	b := openBroker(t, Config{DataDir: dir, NodeID: 1, AdvertisedHost: "h1", AdvertisedPort: 9001, Replication: repl})
	waitFor(t, func() bool { return b.ClusterID() != "" && len(b.Brokers()) == 1 && b.Brokers()[0].Host == "h1" })

	if _, err := b.CreateTopic("t", 3, 2, nil, false); !errors.Is(err, kerr.InvalidReplicationFactor) {
		t.Fatalf("RF 2 on one node: %v", err)
	}
	info, err := b.CreateTopic("t", 3, -1, nil, false)
	if err != nil || info.Partitions != 3 {
		t.Fatalf("create: %+v %v", info, err)
	}
	if _, err := b.CreateTopic("t", 3, -1, nil, false); !errors.Is(err, kerr.TopicAlreadyExists) {
		t.Fatalf("create twice: %v", err)
	}
	if r := b.PartitionReplicas("t", 2); len(r) != 1 || r[0] != 1 {
		t.Fatalf("replicas %v", r)
	}
	if err := b.CreatePartitions("t", 4, false); err != nil {
		t.Fatal(err)
	}
	v := "1000"
	if err := b.IncrementalAlterTopicConfigs("t", []ConfigOp{{Name: "retention.ms", Op: 0, Value: &v}}, false); err != nil {
		t.Fatal(err)
	}
	if _, err := b.CreateTopic("gone", 1, -1, nil, false); err != nil {
		t.Fatal(err)
	}
	if err := b.DeleteTopic("gone"); err != nil {
		t.Fatal(err)
	}
	id1, _, err := b.InitProducerID(nil, 0, -1, -1)
	if err != nil {
		t.Fatal(err)
	}
	clusterID := b.ClusterID()

	b = reopen(t, b)
	if b.ClusterID() != clusterID {
		t.Fatalf("cluster id %q after reopen, was %q", b.ClusterID(), clusterID)
	}
	ti, ok := b.Topic("t")
	if !ok || ti.Partitions != 4 || ti.Configs["retention.ms"] != "1000" {
		t.Fatalf("topic after reopen: %+v %v", ti, ok)
	}
	if _, ok := b.Topic("gone"); ok {
		t.Fatal("deleted topic back after reopen")
	}
	id2, _, err := b.InitProducerID(nil, 0, -1, -1)
	if err != nil || id2 <= id1 {
		t.Fatalf("producer id after reopen %d (%v), first was %d", id2, err, id1)
	}
}

// waitFor polls cond for up to 10 seconds.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 10s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// A new leader's high watermark can trail its log end until it commits an
// entry of its own term; a consumer positioned by the old leader's high
// watermark gets no records and no error meanwhile, and OFFSET_OUT_OF_RANGE
// only past the log end.
func TestReplicaFetchAboveHighWatermark(t *testing.T) {
	repl := &localReplication{replicas: map[string]*localReplica{}}
	b := openBroker(t, Config{NodeID: 1, Replication: repl})
	if _, err := b.CreateTopic("t", 1, -1, nil, false); err != nil {
		t.Fatal(err)
	}
	rep := repl.replicas["t"]
	batch := buildBatch(plain(5))
	assignOffset(batch, 0, 2)
	rep.follow(t, wal.Entry{Kind: wal.KindData, Term: 2, BaseOffset: 0, LastOffsetDelta: 4, MaxTimestamp: 1000, Payload: batch})
	rep.events.Committed(2) // known committed here: 2 of the 5
	rep.lead(1, 3)
	res, err := b.Fetch("t", 0, 4, 1<<20, 0)
	if err != nil || len(res.Records) != 0 || res.HighWatermark != 2 {
		t.Fatalf("fetch at 4, high watermark 2, log end 5: %d bytes, hw %d, %v; want nothing and no error", len(res.Records), res.HighWatermark, err)
	}
	if _, err := b.Fetch("t", 0, 6, 1<<20, 0); !errors.Is(err, kerr.OffsetOutOfRange) {
		t.Fatalf("fetch past the log end: %v, want OFFSET_OUT_OF_RANGE", err)
	}
	rep.events.Committed(5)
	if res, err := b.Fetch("t", 0, 4, 1<<20, 0); err != nil || len(res.Records) == 0 {
		t.Fatalf("fetch at 4 once committed: %d bytes, %v", len(res.Records), err)
	}
}

// TestReplicaTruncationRollsBackProducers: a follower's view of its log
// covers entries the old leader had not committed. When the new leader's
// log replaces them (the replica cuts the log and reports Truncated), the
// producer states of the cut batches go too, in memory and in the state
// file, so that the producer's retry is written rather than taken for a
// duplicate of a batch that no longer exists.
func TestReplicaTruncationRollsBackProducers(t *testing.T) {
	repl := &localReplication{replicas: map[string]*localReplica{}}
	b := openBroker(t, Config{NodeID: 1, Replication: repl})
	if _, err := b.CreateTopic("t", 1, -1, nil, false); err != nil {
		t.Fatal(err)
	}
	rep := repl.replicas["t"]
	p, err := b.partition("t", 0)
	if err != nil {
		t.Fatal(err)
	}

	// Node 2 leads at epoch 1 and sends producer 9's batch (offsets 0-2).
	rep.lead(2, 1)
	old := buildBatch(idem(3, 9, 0, 0))
	assignOffset(old, 0, 1)
	rep.follow(t, wal.Entry{Kind: wal.KindData, Term: 1, BaseOffset: 0, LastOffsetDelta: 2, MaxTimestamp: 1000, Payload: old})
	b.SnapshotState()
	if snap, err := loadSnapshot(p.statePath()); err != nil || snap.NextOffset != 3 || len(snap.Producers) != 1 {
		t.Fatalf("state file before the cut: %+v %v, want producer 9 up to offset 3", snap, err)
	}

	// Node 3 wins epoch 2 without that entry: its log replaces ours from
	// offset 0 with producer 10's five records.
	if err := rep.log.TruncateBack(0); err != nil {
		t.Fatal(err)
	}
	rep.events.Truncated(rep.log.NextOffset())
	if snap, err := loadSnapshot(p.statePath()); err != nil || snap.NextOffset != 0 || len(snap.Producers) != 0 {
		t.Fatalf("state file after the cut: %+v %v, want no producers at offset 0", snap, err)
	}
	other := buildBatch(idem(5, 10, 0, 0))
	assignOffset(other, 0, 2)
	rep.follow(t, wal.Entry{Kind: wal.KindData, Term: 2, BaseOffset: 0, LastOffsetDelta: 4, MaxTimestamp: 1000, Payload: other})
	rep.events.Committed(5)

	// This node leads at epoch 3: producer 9's retry is new data at 5.
	rep.lead(1, 3)
	res, err := b.Produce(context.Background(), "t", 0, buildBatch(idem(3, 9, 0, 0)), -1, nil)
	if err != nil || res.BaseOffset != 5 {
		t.Fatalf("retry of the cut batch: %+v %v, want it written at offset 5", res, err)
	}
	// And producer 10's batch, which the log holds, is a duplicate.
	res, err = b.Produce(context.Background(), "t", 0, buildBatch(idem(5, 10, 0, 0)), -1, nil)
	if err != nil || res.BaseOffset != 0 {
		t.Fatalf("retry of producer 10's batch: %+v %v, want the duplicate at offset 0", res, err)
	}
	if _, hw, _ := b.PartitionOffsets("t", 0); hw != 8 {
		t.Fatalf("high watermark %d, want 8", hw)
	}
}
