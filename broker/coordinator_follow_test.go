package broker

import (
	"errors"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"

	"github.com/chronik-stream/chronik/wal"
)

// In cluster mode a group's coordinator is the leader of its
// __consumer_offsets partition: calls elsewhere answer NOT_COORDINATOR,
// losing leadership fails waiting joins, and regaining it replays the log,
// including what another leader committed meanwhile, but only once the
// high watermark covers the log end.
func TestClusteredCoordinatorFollowsLeader(t *testing.T) {
	repl := &localReplication{replicas: map[string]*localReplica{}}
	b := openBroker(t, Config{NodeID: 1, AdvertisedHost: "h1", AdvertisedPort: 9001, Replication: repl,
		OffsetsTopicPartitions: 2, GroupInitialRebalanceDelay: time.Hour})
	const group = "g"
	idx := GroupOffsetsPartition(group, 2)
	// __consumer_offsets is created through the controller after Open.
	waitFor(t, func() bool { return repl.replica(offsetsTopic, idx) != nil && len(b.groups.partitions()) == 2 })
	rep := repl.replica(offsetsTopic, idx)
	if r := b.PartitionReplicas(offsetsTopic, idx); len(r) != 1 || r[0] != 1 {
		t.Fatalf("%s replicas %v", offsetsTopic, r)
	}
	if _, err := b.CreateTopic("t", 1, -1, nil, false); err != nil {
		t.Fatal(err)
	}
	if err := b.propose(metaRecord{Type: metaBrokerRegistered, Node: 2, Host: "h2", Port: 9002}); err != nil {
		t.Fatal(err)
	}
	commit := func(offset int64) ([]int16, error) { return commitT0(b, group, offset) }
	fetched := func() (int64, error) { return fetchedT0(b, group) }
	waitServed := func(call func() error) {
		t.Helper()
		if err := whileLoading(call); err != nil {
			t.Fatal(err)
		}
	}

	// No leader yet.
	if _, err := b.FindCoordinator(CoordinatorTypeGroup, group); !errors.Is(err, kerr.CoordinatorNotAvailable) {
		t.Fatalf("find coordinator without a leader: %v", err)
	}
	if codes, err := commit(1); !errors.Is(err, kerr.NotCoordinator) || codes[0] != kerr.NotCoordinator.Code {
		t.Fatalf("commit without a leader: %v %v", codes, err)
	}

	// This node leads at epoch 1: it coordinates.
	rep.lead(1, 1)
	if c, err := b.FindCoordinator(CoordinatorTypeGroup, group); err != nil || c != (Coordinator{NodeID: 1, Host: "h1", Port: 9001}) {
		t.Fatalf("find coordinator as leader: %+v %v", c, err)
	}
	waitServed(func() error { _, err := commit(10); return err })
	if o, err := fetched(); err != nil || o != 10 {
		t.Fatalf("fetch as leader: %d %v", o, err)
	}
	// A join that waits (the initial rebalance delay is an hour).
	joined := make(chan GroupJoinResponse, 1)
	go func() {
		r, _ := b.JoinGroup(t.Context(), group, GroupJoinRequest{
			ClientID: "c", ClientHost: "/127.0.0.1", SessionTimeoutMs: 30_000, RebalanceTimeoutMs: 10_000,
			ProtocolType: "consumer", Protocols: []GroupProtocol{{Name: "range", Metadata: groupConsumerMeta("t")}},
		})
		joined <- r
	}()
	waitFor(t, func() bool {
		d, err := b.DescribeGroup(group)
		return err == nil && d.State == GroupPreparingRebalance && len(d.Members) == 1
	})

	// Node 2 takes over: the waiting join fails with NOT_COORDINATOR and
	// every call here is refused; FindCoordinator names node 2.
	rep.lead(2, 2)
	select {
	case r := <-joined:
		if r.ErrorCode != kerr.NotCoordinator.Code {
			t.Fatalf("waiting join after losing leadership: %v", kerr.ErrorForCode(r.ErrorCode))
		}
	case <-time.After(10 * time.Second):
		t.Fatal("waiting join not answered after losing leadership")
	}
	if _, err := fetched(); !errors.Is(err, kerr.NotCoordinator) {
		t.Fatalf("fetch as follower: %v", err)
	}
	if _, err := b.DescribeGroup(group); !errors.Is(err, kerr.NotCoordinator) {
		t.Fatalf("describe as follower: %v", err)
	}
	if gs, err := b.ListGroups(nil, nil); err != nil || len(gs) != 0 {
		t.Fatalf("list groups as follower: %v %v", gs, err)
	}
	if c, err := b.FindCoordinator(CoordinatorTypeGroup, group); err != nil || c != (Coordinator{NodeID: 2, Host: "h2", Port: 9002}) {
		t.Fatalf("find coordinator as follower: %+v %v", c, err)
	}

	// Node 2's coordinator commits offset 20; the group writes it here,
	// not committed yet.
	now := time.Now().UnixMilli()
	rec := GroupEncodeOffsetCommit(group, "t", 0, GroupCommittedOffset{Offset: 20, LeaderEpoch: -1, CommitTimestamp: now, ExpireTimestamp: -1})
	batch := encodeGroupBatch([]groupLogRecord{{key: rec.Key, value: rec.Value}}, now)
	next := rep.log.NextOffset()
	assignOffset(batch, next, 2)
	rep.follow(t, wal.Entry{Kind: wal.KindData, Term: 2, BaseOffset: next, MaxTimestamp: now, Payload: batch})

	// Back to this node at epoch 3: until the high watermark covers the
	// log end the partition does not serve (it would miss offset 20).
	rep.lead(1, 3)
	for range 10 {
		if o, err := fetched(); !errors.Is(err, kerr.CoordinatorLoadInProgress) {
			t.Fatalf("fetch before the log end is committed: %d %v, want COORDINATOR_LOAD_IN_PROGRESS", o, err)
		}
		time.Sleep(5 * time.Millisecond)
	}
	rep.events.Committed(next + 1)
	var o int64
	waitServed(func() (err error) { o, err = fetched(); return err })
	if o != 20 {
		t.Fatalf("offset after regaining leadership %d, want 20 (committed by the other leader)", o)
	}

	// An append that fails because the group moved on answers
	// NOT_COORDINATOR; the partition is loaded again while this node leads.
	rep.fenced.Store(true)
	if codes, err := commit(30); !errors.Is(err, kerr.NotCoordinator) || codes[0] != kerr.NotCoordinator.Code {
		t.Fatalf("commit through a fenced replica: %v %v", codes, err)
	}
	rep.fenced.Store(false)
	waitServed(func() error { _, err := commit(30); return err })
	if o, err := fetched(); err != nil || o != 30 {
		t.Fatalf("fetch after the reload: %d %v", o, err)
	}

	// The state survives a reopen: replayed once this node leads again.
	b = reopen(t, b)
	rep = repl.replica(offsetsTopic, idx)
	waitFor(t, func() bool { return len(b.groups.partitions()) == 2 })
	if _, err := fetched(); !errors.Is(err, kerr.NotCoordinator) {
		t.Fatalf("fetch after reopen, before an election: %v", err)
	}
	rep.events.Committed(rep.log.NextOffset())
	rep.lead(1, 4)
	waitServed(func() (err error) { o, err = fetched(); return err })
	if o != 30 {
		t.Fatalf("offset after reopen %d, want 30", o)
	}
}

// In cluster mode __consumer_offsets is compacted as standalone: the live
// records are written again and the log start moves past the old ones,
// through the replica (MoveLogStart), so every replica and the next
// leader's replay start there.
func TestClusteredCoordinatorCompacts(t *testing.T) {
	defer func(old int64) { groupCompactMinRecords = old }(groupCompactMinRecords)
	groupCompactMinRecords = 100
	repl := &localReplication{replicas: map[string]*localReplica{}}
	b := openBroker(t, Config{NodeID: 1, AdvertisedHost: "h1", AdvertisedPort: 9001, Replication: repl, OffsetsTopicPartitions: 1})
	const group = "g"
	waitFor(t, func() bool { return repl.replica(offsetsTopic, 0) != nil && len(b.groups.partitions()) == 1 })
	rep := repl.replica(offsetsTopic, 0)
	if _, err := b.CreateTopic("t", 1, -1, nil, false); err != nil {
		t.Fatal(err)
	}
	rep.lead(1, 1)
	commit := func(offset int64) error {
		return whileLoading(func() error { _, err := commitT0(b, group, offset); return err })
	}
	fetched := func() (o int64, err error) {
		err = whileLoading(func() error { o, err = fetchedT0(b, group); return err })
		return o, err
	}
	for i := range int64(300) {
		if err := commit(i); err != nil {
			t.Fatalf("commit %d: %v", i, err)
		}
	}
	if n := rep.local.Load(); n != 0 {
		t.Fatalf("%d coordinator appends answered before their commit, want all on commit (acks=all)", n)
	}
	lso, hw, err := b.PartitionOffsets(offsetsTopic, 0)
	if err != nil || lso == 0 || hw-lso >= 300 {
		t.Fatalf("%s-0 after 300 commits: log start %d, high watermark %d, %v; want compacted", offsetsTopic, lso, hw, err)
	}
	if o, err := fetched(); err != nil || o != 299 {
		t.Fatalf("offset after compaction: %d %v, want 299", o, err)
	}
	// Another leader, then this node again at a new epoch: the replay
	// starts at the moved log start and finds the latest offset.
	rep.lead(2, 2)
	rep.lead(1, 3)
	if o, err := fetched(); err != nil || o != 299 {
		t.Fatalf("offset after reloading the compacted partition: %d %v, want 299", o, err)
	}
}

// commitT0 commits offset for t-0 in group, outside any generation.
func commitT0(b *Broker, group string, offset int64) ([]int16, error) {
	return b.OffsetCommit(group, GroupCommitRequest{GenerationID: -1,
		Offsets: []GroupOffsetCommit{{Topic: "t", Partition: 0, Offset: offset, LeaderEpoch: -1}}})
}

// fetchedT0 is group's committed offset for t-0.
func fetchedT0(b *Broker, group string) (int64, error) {
	o, err := b.OffsetFetch(group, []GroupFetchTopic{{Topic: "t", Partitions: []int32{0}}}, false)
	if err != nil {
		return -1, err
	}
	return o[0].Offset, nil
}

// whileLoading calls call again while the coordinator answers
// COORDINATOR_LOAD_IN_PROGRESS (for up to about 10 s) and returns its
// last error.
func whileLoading(call func() error) error {
	var err error
	for range 2000 {
		if err = call(); !errors.Is(err, kerr.CoordinatorLoadInProgress) {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	return err
}
