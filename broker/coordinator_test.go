package broker

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
)

// coordTestConfig is a broker whose groups form after a short initial
// rebalance delay and whose __consumer_offsets has few partitions.
func coordTestConfig() Config {
	return Config{GroupInitialRebalanceDelay: 50 * time.Millisecond, OffsetsTopicPartitions: 4}
}

// formGroup joins n dynamic members concurrently (JoinGroup v3 style,
// without MEMBER_ID_REQUIRED), syncs them with the first as the assigning
// leader and returns the member ids (leader first) and the generation.
func formGroup(t *testing.T, b *Broker, group string, n int, topics ...string) ([]string, int32) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	resps := make([]GroupJoinResponse, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resps[i], errs[i] = b.JoinGroup(ctx, group, GroupJoinRequest{
				ClientID: fmt.Sprintf("c%d", i), ClientHost: "/127.0.0.1",
				SessionTimeoutMs: 30_000, RebalanceTimeoutMs: 10_000, ProtocolType: "consumer",
				Protocols: []GroupProtocol{{Name: "range", Metadata: groupConsumerMeta(topics...)}},
			})
		}()
	}
	wg.Wait()
	// Members that joined after the first generation formed rejoin until
	// all are in one generation (bounded: each round admits everyone).
	for round := 0; ; round++ {
		gen, same := resps[0].GenerationID, true
		for i := range n {
			if errs[i] != nil {
				t.Fatalf("join %d: %v", i, errs[i])
			}
			if resps[i].ErrorCode != 0 {
				t.Fatalf("join %d: %v", i, kerr.ErrorForCode(resps[i].ErrorCode))
			}
			same = same && resps[i].GenerationID == gen
		}
		if same {
			break
		}
		if round > 5 {
			t.Fatalf("members never met in one generation: %+v", resps)
		}
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				req := GroupJoinRequest{
					MemberID: resps[i].MemberID, ClientID: fmt.Sprintf("c%d", i), ClientHost: "/127.0.0.1",
					SessionTimeoutMs: 30_000, RebalanceTimeoutMs: 10_000, ProtocolType: "consumer",
					Protocols: []GroupProtocol{{Name: "range", Metadata: groupConsumerMeta(topics...)}},
				}
				resps[i], errs[i] = b.JoinGroup(ctx, group, req)
			}()
		}
		wg.Wait()
	}
	leader := -1
	for i, r := range resps {
		if r.MemberID == r.LeaderID {
			leader = i
		}
	}
	if leader < 0 {
		t.Fatalf("no leader among %+v", resps)
	}
	ids := []string{resps[leader].MemberID}
	for i, r := range resps {
		if i != leader {
			ids = append(ids, r.MemberID)
		}
	}
	gen := resps[0].GenerationID
	var assign []GroupMemberAssignment
	for _, id := range ids {
		assign = append(assign, GroupMemberAssignment{MemberID: id, Assignment: []byte("a-" + id)})
	}
	syncs := make([]GroupSyncResponse, n)
	for i, id := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req := GroupSyncRequest{MemberID: id, GenerationID: gen}
			if i == 0 {
				req.Assignments = assign
			}
			syncs[i], errs[i] = b.SyncGroup(ctx, group, req)
		}()
	}
	wg.Wait()
	for i := range ids {
		if errs[i] != nil || syncs[i].ErrorCode != 0 || string(syncs[i].Assignment) != "a-"+ids[i] {
			t.Fatalf("sync %d: %v %+v", i, errs[i], syncs[i])
		}
	}
	return ids, gen
}

func commitOne(t *testing.T, b *Broker, group, memberID string, gen int32, topic string, p int32, offset int64) {
	t.Helper()
	codes, err := b.OffsetCommit(group, GroupCommitRequest{MemberID: memberID, GenerationID: gen,
		Offsets: []GroupOffsetCommit{{Topic: topic, Partition: p, Offset: offset, LeaderEpoch: -1, Metadata: "m"}}})
	if err != nil || codes[0] != 0 {
		t.Fatalf("commit %s %s-%d@%d: %v %v", group, topic, p, offset, err, kerr.ErrorForCode(codes[0]))
	}
}

func fetchOffsets(t *testing.T, b *Broker, group string) map[GroupTopicPartition]int64 {
	t.Helper()
	offs, err := b.OffsetFetch(group, nil, false)
	if err != nil {
		t.Fatalf("offset fetch %s: %v", group, err)
	}
	out := map[GroupTopicPartition]int64{}
	for _, o := range offs {
		out[o.GroupTopicPartition] = o.Offset
	}
	return out
}

func offsetsPartitionRecords(t *testing.T, b *Broker, group string) int64 {
	t.Helper()
	lso, hw, err := b.PartitionOffsets(offsetsTopic, GroupOffsetsPartition(group, b.cfg.OffsetsTopicPartitions))
	if err != nil {
		t.Fatal(err)
	}
	return hw - lso
}

// TestGroupCoordinatorReplay: a Stable group and its offsets survive a
// restart: same members, generation and assignments, heartbeats of the old
// generation accepted, offsets identical.
func TestGroupCoordinatorReplay(t *testing.T) {
	b := openBroker(t, coordTestConfig())
	createTopic(t, b, "t", 4, nil)
	ids, gen := formGroup(t, b, "g", 3, "t")
	for p := range int32(4) {
		commitOne(t, b, "g", ids[p%3], gen, "t", p, int64(10*p+1))
	}
	commitOne(t, b, "g", ids[0], gen, "t", 0, 99) // the latest wins
	// A "simple" group that only stores offsets.
	if codes, err := b.OffsetCommit("simple", GroupCommitRequest{GenerationID: -1,
		Offsets: []GroupOffsetCommit{{Topic: "t", Partition: 2, Offset: 7, LeaderEpoch: 3}}}); err != nil || codes[0] != 0 {
		t.Fatalf("simple commit: %v %v", err, codes)
	}
	before := fetchOffsets(t, b, "g")

	b = reopen(t, b)
	d, err := b.DescribeGroup("g")
	if err != nil || d.State != GroupStable || d.Generation != gen || len(d.Members) != 3 || d.Protocol != "range" {
		t.Fatalf("after replay: %+v, %v", d, err)
	}
	for _, m := range d.Members {
		if string(m.Assignment) != "a-"+m.MemberID {
			t.Fatalf("member %s assignment %q", m.MemberID, m.Assignment)
		}
	}
	for _, id := range ids {
		if err := b.Heartbeat("g", GroupHeartbeatRequest{MemberID: id, GenerationID: gen}); err != nil {
			t.Fatalf("heartbeat of %s after replay: %v", id, err)
		}
	}
	after := fetchOffsets(t, b, "g")
	if len(after) != 4 || after[GroupTopicPartition{"t", 0}] != 99 {
		t.Fatalf("offsets after replay %v", after)
	}
	for tp, o := range before {
		if after[tp] != o {
			t.Fatalf("offset of %v: %d after replay, %d before", tp, after[tp], o)
		}
	}
	simple, err := b.OffsetFetch("simple", []GroupFetchTopic{{Topic: "t", Partitions: []int32{2, 3}}}, true)
	if err != nil || len(simple) != 2 || simple[0].Offset != 7 || simple[0].LeaderEpoch != 3 || simple[1].Offset != -1 {
		t.Fatalf("simple group after replay: %+v %v", simple, err)
	}
	list, err := b.ListGroups([]string{"stable"}, nil)
	if err != nil || len(list) != 1 || list[0].GroupID != "g" {
		t.Fatalf("stable groups %+v %v", list, err)
	}
}

// TestGroupOffsetsExpiry drives offsets.retention.minutes with a tiny
// retention: the offsets of an Empty consumer group and of a simple group
// expire, the groups disappear, and a restart does not bring them back;
// a Stable group's offsets of subscribed topics stay.
func TestGroupOffsetsExpiry(t *testing.T) {
	cfg := coordTestConfig()
	cfg.OffsetsRetention = 20 * time.Millisecond
	b := openBroker(t, cfg)
	createTopic(t, b, "t", 2, nil)
	createTopic(t, b, "other", 1, nil)

	ids, gen := formGroup(t, b, "leaving", 1, "t")
	commitOne(t, b, "leaving", ids[0], gen, "t", 0, 5)
	resp, err := b.LeaveGroup("leaving", []GroupLeaveMember{{MemberID: ids[0]}})
	if err != nil || resp.Members[0].ErrorCode != 0 {
		t.Fatalf("leave: %+v %v", resp, err)
	}
	stableIDs, stableGen := formGroup(t, b, "stable", 1, "t")
	commitOne(t, b, "stable", stableIDs[0], stableGen, "t", 1, 6)
	commitOne(t, b, "stable", stableIDs[0], stableGen, "other", 0, 7) // not subscribed: expires
	if codes, err := b.OffsetCommit("simple", GroupCommitRequest{GenerationID: -1,
		Offsets: []GroupOffsetCommit{{Topic: "t", Partition: 0, Offset: 1}}}); err != nil || codes[0] != 0 {
		t.Fatalf("simple commit: %v %v", err, codes)
	}

	deadline := time.Now().Add(10 * time.Second)
	for {
		time.Sleep(cfg.OffsetsRetention)
		b.ExpireGroupOffsets()
		_, errLeaving := b.DescribeGroup("leaving")
		_, errSimple := b.DescribeGroup("simple")
		if errors.Is(errLeaving, kerr.GroupIDNotFound) && errors.Is(errSimple, kerr.GroupIDNotFound) && len(fetchOffsets(t, b, "stable")) == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("offsets never expired: %v %v %v", errLeaving, errSimple, fetchOffsets(t, b, "stable"))
		}
	}
	if got := fetchOffsets(t, b, "stable"); got[GroupTopicPartition{"t", 1}] != 6 {
		t.Fatalf("stable group offsets %v", got)
	}
	b = reopen(t, b)
	for _, g := range []string{"leaving", "simple"} {
		if _, err := b.DescribeGroup(g); !errors.Is(err, kerr.GroupIDNotFound) {
			t.Fatalf("group %s back after restart: %v", g, err)
		}
		if offs := fetchOffsets(t, b, g); len(offs) != 0 {
			t.Fatalf("offsets of %s back after restart: %v", g, offs)
		}
	}
	if got := fetchOffsets(t, b, "stable"); len(got) != 1 || got[GroupTopicPartition{"t", 1}] != 6 {
		t.Fatalf("stable group offsets after restart %v", got)
	}
}

// TestGroupOffsetsCompaction: many commits of few keys, compacted, leave
// only the live records above the log start; a restart replays just those
// and finds the same offsets; whole segments below the log start are gone.
func TestGroupOffsetsCompaction(t *testing.T) {
	cfg := coordTestConfig()
	cfg.SegmentBytes = 16 << 10
	b := openBroker(t, cfg)
	createTopic(t, b, "t", 4, nil)
	groups := []string{"a", "b", "c"}
	const rounds = 300
	for r := range int64(rounds) {
		for _, g := range groups {
			offs := make([]GroupOffsetCommit, 4)
			for p := range offs {
				offs[p] = GroupOffsetCommit{Topic: "t", Partition: int32(p), Offset: r*10 + int64(p), LeaderEpoch: -1}
			}
			if codes, err := b.OffsetCommit(g, GroupCommitRequest{GenerationID: -1, Offsets: offs}); err != nil || codes[0] != 0 {
				t.Fatalf("commit: %v %v", err, codes)
			}
		}
	}
	if codes, err := b.OffsetDelete("c", []GroupTopicPartition{{"t", 3}}); err != nil || codes[0] != 0 {
		t.Fatalf("offset delete: %v %v", err, codes)
	}
	want := map[string]map[GroupTopicPartition]int64{}
	recordsBefore := int64(0)
	for _, g := range groups {
		want[g] = fetchOffsets(t, b, g)
		recordsBefore += offsetsPartitionRecords(t, b, g)
	}
	filesBefore := walFiles(t, b)
	if n := b.CompactGroupOffsets(); n == 0 {
		t.Fatal("nothing compacted")
	}
	check := func(when string) {
		t.Helper()
		for _, g := range groups {
			if got := fetchOffsets(t, b, g); fmt.Sprint(got) != fmt.Sprint(want[g]) {
				t.Fatalf("%s: offsets of %s %v, want %v", when, g, got, want[g])
			}
		}
	}
	check("after compaction")
	recordsAfter := map[int32]int64{}
	for _, g := range groups {
		recordsAfter[GroupOffsetsPartition(g, cfg.OffsetsTopicPartitions)] = offsetsPartitionRecords(t, b, g)
	}
	total := int64(0)
	for _, n := range recordsAfter {
		total += n
	}
	// 4+4+3 live offsets, plus c's recent tombstone for t-3.
	if total != 12 || recordsBefore < rounds*12 {
		t.Fatalf("%d records above the log starts after compaction (%d before), want 12", total, recordsBefore)
	}
	if filesAfter := walFiles(t, b); filesAfter >= filesBefore {
		t.Fatalf("%d wal files after compaction, %d before", filesAfter, filesBefore)
	}
	// Compaction also runs by itself once enough records pile up.
	defer func(old int64) { groupCompactMinRecords = old }(groupCompactMinRecords)
	groupCompactMinRecords = 100
	b = reopen(t, b)
	check("after restart")
	for _, g := range groups {
		if n := offsetsPartitionRecords(t, b, g); n != recordsAfter[GroupOffsetsPartition(g, cfg.OffsetsTopicPartitions)] {
			t.Fatalf("restart replays %d records", n)
		}
	}
	for r := range int64(200) {
		commitOne(t, b, "a", "", -1, "t", 0, 1000+r)
	}
	if n := offsetsPartitionRecords(t, b, "a"); n > 100 {
		t.Fatalf("%d records above the log start: no automatic compaction", n)
	}
	if got := fetchOffsets(t, b, "a"); got[GroupTopicPartition{"t", 0}] != 1199 {
		t.Fatalf("offsets after automatic compaction %v", got)
	}
}

// walFiles counts the segment files of every __consumer_offsets partition.
func walFiles(t *testing.T, b *Broker) int {
	t.Helper()
	info, _ := b.Topic(offsetsTopic)
	n := 0
	for p := range info.Partitions {
		ents, err := os.ReadDir(filepath.Join(b.topicDir(info.ID), fmt.Sprint(p)))
		if err != nil {
			t.Fatal(err)
		}
		n += len(ents)
	}
	return n
}

// TestGroupCloseAnswersWaiters: a JoinGroup waiting for other members is
// answered NOT_COORDINATOR when the broker closes, and one whose context
// ends returns the context's error.
func TestGroupCloseAnswersWaiters(t *testing.T) {
	cfg := coordTestConfig()
	cfg.GroupInitialRebalanceDelay = time.Hour
	b := openBroker(t, cfg)
	join := func(ctx context.Context) (GroupJoinResponse, error) {
		return b.JoinGroup(ctx, "waiting", GroupJoinRequest{ClientID: "c", SessionTimeoutMs: 30_000, RebalanceTimeoutMs: 60_000,
			ProtocolType: "consumer", Protocols: []GroupProtocol{{Name: "range"}}})
	}
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	if _, err := join(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("join with an ending context: %v", err)
	}
	done := make(chan GroupJoinResponse, 1)
	go func() {
		r, _ := join(t.Context())
		done <- r
	}()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if d, err := b.DescribeGroup("waiting"); err == nil && len(d.Members) == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("second join never arrived")
		}
		time.Sleep(time.Millisecond)
	}
	b.Close()
	select {
	case r := <-done:
		if r.ErrorCode != kerr.NotCoordinator.Code {
			t.Fatalf("join after close: %v", kerr.ErrorForCode(r.ErrorCode))
		}
	case <-time.After(10 * time.Second):
		t.Fatal("join not answered on close")
	}
	if _, err := b.FindCoordinator(CoordinatorTypeGroup, "g"); !errors.Is(err, kerr.CoordinatorNotAvailable) {
		t.Fatalf("find coordinator after close: %v", err)
	}
}

func TestFindCoordinator(t *testing.T) {
	b := openBroker(t, Config{NodeID: 3, AdvertisedHost: "h", AdvertisedPort: 1234, OffsetsTopicPartitions: 2})
	c, err := b.FindCoordinator(CoordinatorTypeGroup, "any")
	if err != nil || c != (Coordinator{NodeID: 3, Host: "h", Port: 1234}) {
		t.Fatalf("coordinator %+v %v", c, err)
	}
	// A transactional id's coordinator: this node, once __transaction_state
	// exists (made by the first ask).
	if c, err := b.FindCoordinator(CoordinatorTypeTransaction, "tx"); err != nil || c != (Coordinator{NodeID: 3, Host: "h", Port: 1234}) {
		t.Fatalf("transaction coordinator %+v %v", c, err)
	}
	if _, ok := b.Topic(txnTopic); !ok {
		t.Fatal("__transaction_state was not created")
	}
	_, err = b.FindCoordinator(CoordinatorTypeTransaction, "")
	wantKerr(t, err, kerr.InvalidRequest)
	_, err = b.FindCoordinator(2, "share")
	wantKerr(t, err, kerr.InvalidRequest)
}

// TestGroupOffsetsOfDeletedTopic: deleting a topic removes every group's
// offsets of it, durably; a topic created again under the name starts with
// none.
func TestGroupOffsetsOfDeletedTopic(t *testing.T) {
	b := openBroker(t, coordTestConfig())
	createTopic(t, b, "gone", 2, nil)
	createTopic(t, b, "kept", 1, nil)
	commitOne(t, b, "both", "", -1, "gone", 1, 5)
	commitOne(t, b, "both", "", -1, "kept", 0, 6)
	commitOne(t, b, "only-gone", "", -1, "gone", 0, 7)
	if err := b.DeleteTopic("gone"); err != nil {
		t.Fatal(err)
	}
	check := func(when string) {
		t.Helper()
		if got := fetchOffsets(t, b, "both"); len(got) != 1 || got[GroupTopicPartition{"kept", 0}] != 6 {
			t.Fatalf("%s: offsets %v", when, got)
		}
		if _, err := b.DescribeGroup("only-gone"); !errors.Is(err, kerr.GroupIDNotFound) {
			t.Fatalf("%s: group of the deleted topic only: %v", when, err)
		}
	}
	check("after delete")
	b = reopen(t, b)
	check("after restart")
	createTopic(t, b, "gone", 2, nil)
	if got := fetchOffsets(t, b, "both"); len(got) != 1 {
		t.Fatalf("recreated topic has offsets %v", got)
	}
}

// TestGroupAppendFailure: when __consumer_offsets cannot be written, the
// call and the delayed responses waiting on the partition get
// NOT_COORDINATOR, nothing hangs, and the partition's groups are rebuilt
// from what the log holds.
func TestGroupAppendFailure(t *testing.T) {
	b := openBroker(t, coordTestConfig())
	createTopic(t, b, "t", 1, nil)
	ids, gen := formGroup(t, b, "g", 2, "t")
	// The leader rejoins: its JoinGroup waits for the other member.
	joined := make(chan error, 1)
	go func() {
		r, err := b.JoinGroup(t.Context(), "g", GroupJoinRequest{MemberID: ids[0], ClientID: "c0", SessionTimeoutMs: 30_000,
			RebalanceTimeoutMs: 10_000, ProtocolType: "consumer", Protocols: []GroupProtocol{{Name: "range", Metadata: groupConsumerMeta("t")}}})
		if err == nil && r.ErrorCode != kerr.NotCoordinator.Code {
			err = fmt.Errorf("pending join answered %v", kerr.ErrorForCode(r.ErrorCode))
		}
		joined <- err
	}()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if d, _ := b.DescribeGroup("g"); d.State == GroupPreparingRebalance {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no rebalance")
		}
		time.Sleep(time.Millisecond)
	}
	gp, _ := b.groupPartitionFor("g")
	gp.p.log.Close() // the disk goes away under the partition
	codes, err := b.OffsetCommit("g", GroupCommitRequest{MemberID: ids[1], GenerationID: gen,
		Offsets: []GroupOffsetCommit{{Topic: "t", Partition: 0, Offset: 1, LeaderEpoch: -1}}})
	wantKerr(t, err, kerr.NotCoordinator)
	if codes[0] != kerr.NotCoordinator.Code {
		t.Fatalf("commit code %v", kerr.ErrorForCode(codes[0]))
	}
	select {
	case err := <-joined:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("pending join not answered")
	}
	// The log cannot be read either: the partition stays unavailable once
	// the worker has tried to load it again (until then the table is
	// loading).
	deadline = time.Now().Add(10 * time.Second)
	for {
		err = b.Heartbeat("g", GroupHeartbeatRequest{MemberID: ids[1], GenerationID: gen})
		if !errors.Is(err, kerr.CoordinatorLoadInProgress) || time.Now().After(deadline) {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	wantKerr(t, err, kerr.CoordinatorNotAvailable)
}
