package broker

import (
	"fmt"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"

	"github.com/chronik-stream/chronik/wal"
)

// groupTestWriteMarker writes producerID's transaction marker to the
// __consumer_offsets partition of group, as the transaction coordinator's
// marker writer does (a control batch appended by the partition's leader,
// committed), without reporting it to the group coordinator. It returns
// the partition's index.
func groupTestWriteMarker(t *testing.T, b *Broker, group string, producerID int64, epoch int16, commit bool) int32 {
	t.Helper()
	gp, err := b.groupPartitionFor(group)
	if err != nil {
		t.Fatal(err)
	}
	p := gp.p
	batch := groupTestMarkerBatch(producerID, epoch, commit)
	p.appendMu.Lock()
	defer p.appendMu.Unlock()
	p.logMu.Lock()
	next := p.nextOffset
	p.logMu.Unlock()
	leaderEpoch := p.replica.epoch.Load()
	assignOffset(batch, next, leaderEpoch)
	e := wal.Entry{Kind: wal.KindData, Term: uint64(leaderEpoch), BaseOffset: next, MaxTimestamp: 1, Payload: batch}
	if err := p.replicate([]wal.Entry{e}, true); err != nil {
		t.Fatalf("write marker: %v", err)
	}
	p.Committed(next + 1)
	return gp.index
}

// groupTestMarker writes the marker and reports it (txnMarkerWritten).
func groupTestMarker(t *testing.T, b *Broker, group string, producerID int64, epoch int16, commit bool) {
	t.Helper()
	idx := groupTestWriteMarker(t, b, group, producerID, epoch, commit)
	b.groups.txnMarkerWritten(idx, producerID, commit)
}

func groupTestTxnCommit(t *testing.T, b *Broker, group string, producerID int64, epoch int16, offsets ...GroupOffsetCommit) {
	t.Helper()
	codes, err := b.TxnOffsetCommit(t.Context(), group, "tx", producerID, epoch, -1, "", nil, offsets)
	if err != nil {
		t.Fatalf("txn offset commit of producer %d epoch %d: %v", producerID, epoch, err)
	}
	for i, c := range codes {
		if c != 0 {
			t.Fatalf("txn offset commit of producer %d epoch %d, offset %d: %v", producerID, epoch, i, kerr.ErrorForCode(c))
		}
	}
}

// groupTestFetch returns OffsetFetch's answer for t-0 and t-1 as
// offset, or -2 for UNSTABLE_OFFSET_COMMIT.
func groupTestFetch(t *testing.T, b *Broker, group string, requireStable bool) [2]int64 {
	t.Helper()
	offs, err := b.OffsetFetch(group, []GroupFetchTopic{{Topic: "t", Partitions: []int32{0, 1}}}, requireStable)
	if err != nil || len(offs) != 2 {
		t.Fatalf("offset fetch: %+v %v", offs, err)
	}
	var out [2]int64
	for i, o := range offs {
		switch o.ErrorCode {
		case 0:
			out[i] = o.Offset
		case kerr.UnstableOffsetCommit.Code:
			if o.Offset != -1 {
				t.Fatalf("unstable offset answered with offset %d", o.Offset)
			}
			out[i] = -2
		default:
			t.Fatalf("offset fetch of t-%d: %v", i, kerr.ErrorForCode(o.ErrorCode))
		}
	}
	return out
}

func groupTestWant(t *testing.T, what string, got, want [2]int64) {
	t.Helper()
	if got != want {
		t.Fatalf("%s: offsets %v, want %v (-2: unstable)", what, got, want)
	}
}

func tOffset(partition int32, offset int64) GroupOffsetCommit {
	return GroupOffsetCommit{Topic: "t", Partition: partition, Offset: offset, LeaderEpoch: -1}
}

// TestGroupTxnOffsetCommitMarkers drives the coordinator end to end:
// TxnOffsetCommit, the transaction's marker in __consumer_offsets
// (commit and abort), OffsetFetch with and without requireStable, and
// restarts with a transaction open, with a marker written but not
// reported, and after everything.
func TestGroupTxnOffsetCommitMarkers(t *testing.T) {
	b := openBroker(t, coordTxnTestConfig())
	createTopic(t, b, "t", 2, nil)
	const g = "g"

	groupTestTxnCommit(t, b, g, 1000, 0, tOffset(0, 10), tOffset(1, 11))
	groupTestWant(t, "pending", groupTestFetch(t, b, g, false), [2]int64{-1, -1})
	groupTestWant(t, "pending, stable", groupTestFetch(t, b, g, true), [2]int64{-2, -2})
	groupTestMarker(t, b, g, 1000, 0, true)
	groupTestWant(t, "committed", groupTestFetch(t, b, g, true), [2]int64{10, 11})

	groupTestTxnCommit(t, b, g, 1001, 0, tOffset(0, 20))
	groupTestWant(t, "other producer pending", groupTestFetch(t, b, g, true), [2]int64{-2, 11})
	groupTestMarker(t, b, g, 1001, 0, false)
	groupTestWant(t, "aborted", groupTestFetch(t, b, g, true), [2]int64{10, 11})

	// The next transaction of producer 1000 at the same epoch (the
	// protocol before KIP-890), in two TxnOffsetCommits: the batches
	// continue the producer's sequence on the partition.
	groupTestTxnCommit(t, b, g, 1000, 0, tOffset(1, 30))
	groupTestTxnCommit(t, b, g, 1000, 0, tOffset(1, 31))
	b = reopen(t, b)
	groupTestWant(t, "pending after restart", groupTestFetch(t, b, g, true), [2]int64{10, -2})
	groupTestWant(t, "pending after restart, unstable allowed", groupTestFetch(t, b, g, false), [2]int64{10, 11})
	all, err := b.OffsetFetch(g, nil, true) // every committed partition
	if err != nil || len(all) != 2 || all[0].Offset != 10 || all[0].ErrorCode != 0 ||
		all[1].Offset != -1 || all[1].ErrorCode != kerr.UnstableOffsetCommit.Code {
		t.Fatalf("stable fetch of all offsets: %+v %v", all, err)
	}
	groupTestMarker(t, b, g, 1000, 0, true)
	groupTestWant(t, "committed after restart", groupTestFetch(t, b, g, true), [2]int64{10, 31})

	// A bumped epoch (KIP-890) starts over at sequence 0. The marker
	// lands but the node stops before reporting it: replay applies it.
	groupTestTxnCommit(t, b, g, 1000, 1, tOffset(0, 40))
	groupTestWriteMarker(t, b, g, 1000, 1, true)
	b = reopen(t, b)
	groupTestWant(t, "marker replayed", groupTestFetch(t, b, g, true), [2]int64{40, 31})

	// A fenced epoch is refused before the table changes: nothing
	// pending, and the table still serves (no reload).
	codes, err := b.TxnOffsetCommit(t.Context(), g, "tx", 1000, 0, -1, "", nil, []GroupOffsetCommit{tOffset(0, 50)})
	wantKerr(t, err, kerr.InvalidProducerEpoch)
	if codes[0] != kerr.InvalidProducerEpoch.Code {
		t.Fatalf("fenced commit code %v", kerr.ErrorForCode(codes[0]))
	}
	groupTestWant(t, "after a fenced commit", groupTestFetch(t, b, g, true), [2]int64{40, 31})
	// A marker reported twice (or after the load replayed it) changes
	// nothing.
	b.groups.txnMarkerWritten(GroupOffsetsPartition(g, b.cfg.OffsetsTopicPartitions), 1000, true)
	b = reopen(t, b)
	groupTestWant(t, "after the last restart", groupTestFetch(t, b, g, true), [2]int64{40, 31})
}

func TestGroupTxnOffsetCommitErrors(t *testing.T) {
	b := openBroker(t, coordTxnTestConfig())
	createTopic(t, b, "t", 2, nil)
	ids, gen := formGroup(t, b, "members", 1, "t")
	str := func(s string) *string { return &s }
	tests := []struct {
		name       string
		group      string
		pid        int64
		epoch      int16
		generation int32
		member     string
		instance   *string
		offsets    []GroupOffsetCommit
		want       []int16
		wantErr    *kerr.Error
	}{
		{name: "empty group id", pid: 1, offsets: []GroupOffsetCommit{tOffset(0, 1)}, generation: -1,
			want: []int16{kerr.InvalidGroupID.Code}, wantErr: kerr.InvalidGroupID},
		{name: "no producer id", group: "g", pid: -1, generation: -1, offsets: []GroupOffsetCommit{tOffset(0, 1)},
			want: []int16{kerr.InvalidProducerIDMapping.Code}, wantErr: kerr.InvalidProducerIDMapping},
		{name: "negative epoch", group: "g", pid: 1, epoch: -1, generation: -1, offsets: []GroupOffsetCommit{tOffset(0, 1)},
			want: []int16{kerr.InvalidProducerEpoch.Code}, wantErr: kerr.InvalidProducerEpoch},
		{name: "unknown topic and partition", group: "g", pid: 1, generation: -1,
			offsets: []GroupOffsetCommit{{Topic: "nope", LeaderEpoch: -1}, tOffset(2, 1), tOffset(-1, 1), tOffset(1, 5)},
			want:    []int16{kerr.UnknownTopicOrPartition.Code, kerr.UnknownTopicOrPartition.Code, kerr.UnknownTopicOrPartition.Code, 0}},
		{name: "generation of a group that does not exist", group: "ghost", pid: 1, generation: 3, member: "m",
			offsets: []GroupOffsetCommit{tOffset(0, 1)}, want: []int16{kerr.IllegalGeneration.Code}},
		{name: "member of the generation", group: "members", pid: 2, generation: gen, member: ids[0],
			offsets: []GroupOffsetCommit{tOffset(0, 1)}, want: []int16{0}},
		{name: "old generation", group: "members", pid: 2, generation: gen - 1, member: ids[0],
			offsets: []GroupOffsetCommit{tOffset(0, 1)}, want: []int16{kerr.IllegalGeneration.Code}},
		{name: "unknown member", group: "members", pid: 2, generation: gen, member: "ghost",
			offsets: []GroupOffsetCommit{tOffset(0, 1)}, want: []int16{kerr.UnknownMemberID.Code}},
		{name: "unknown instance", group: "members", pid: 2, generation: gen, member: ids[0], instance: str("i-9"),
			offsets: []GroupOffsetCommit{tOffset(0, 1)}, want: []int16{kerr.UnknownMemberID.Code}},
		{name: "no member on a live group (v0-v2)", group: "members", pid: 3, generation: -1,
			offsets: []GroupOffsetCommit{tOffset(1, 1)}, want: []int16{0}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			codes, err := b.TxnOffsetCommit(t.Context(), tt.group, "tx", tt.pid, tt.epoch, tt.generation, tt.member, tt.instance, tt.offsets)
			if tt.wantErr != nil {
				wantKerr(t, err, tt.wantErr)
			} else if err != nil {
				t.Fatal(err)
			}
			if len(codes) != len(tt.want) {
				t.Fatalf("%d codes for %d offsets", len(codes), len(tt.want))
			}
			for i := range codes {
				if codes[i] != tt.want[i] {
					t.Fatalf("offset %d: %v, want %v", i, kerr.ErrorForCode(codes[i]), kerr.ErrorForCode(tt.want[i]))
				}
			}
		})
	}
	groupTestWant(t, "members' pending offsets", groupTestFetch(t, b, "members", true), [2]int64{-2, -2})
}

// TestGroupTxnCompactionWaits: compaction does not run while a
// transaction has offsets in the partition; the marker that closes the
// last one lets it run, and the compacted log replays to the same
// offsets.
func TestGroupTxnCompactionWaits(t *testing.T) {
	defer func(old int64) { groupCompactMinRecords = old }(groupCompactMinRecords)
	groupCompactMinRecords = 50
	b := openBroker(t, coordTxnTestConfig())
	createTopic(t, b, "t", 2, nil)
	const g = "g"
	groupTestTxnCommit(t, b, g, 7, 0, tOffset(0, 1))
	for i := range int64(200) {
		commitOne(t, b, g, "", -1, "t", 1, i)
	}
	if n := offsetsPartitionRecords(t, b, g); n < 200 {
		t.Fatalf("%d records: compacted with a transaction open", n)
	}
	if n := b.CompactGroupOffsets(); n != 0 {
		t.Fatalf("%d partitions compacted with a transaction open", n)
	}
	groupTestMarker(t, b, g, 7, 0, true)
	if n := offsetsPartitionRecords(t, b, g); n > 10 {
		t.Fatalf("%d records above the log start after the marker: no compaction", n)
	}
	groupTestWant(t, "after compaction", groupTestFetch(t, b, g, true), [2]int64{1, 199})
	b = reopen(t, b)
	groupTestWant(t, "after compaction and restart", groupTestFetch(t, b, g, true), [2]int64{1, 199})
}

// TestGroupTxnAppendMixed: an output with plain records (a deadline that
// fired during the call) and transactional ones is one append of two
// batches, which replay reads as one committed and one pending offset.
func TestGroupTxnAppendMixed(t *testing.T) {
	b := openBroker(t, coordTxnTestConfig())
	createTopic(t, b, "t", 2, nil)
	gp, err := b.groupPartitionFor("g")
	if err != nil {
		t.Fatal(err)
	}
	v := func(o int64) GroupCommittedOffset {
		return GroupCommittedOffset{Offset: o, LeaderEpoch: -1, CommitTimestamp: 1, ExpireTimestamp: -1}
	}
	out := GroupOutput{
		Records:     []GroupRecord{GroupEncodeOffsetCommit("g", "t", 0, v(5))},
		TxnProducer: GroupTxnProducer{ID: 9, Epoch: 2},
		TxnRecords:  []GroupRecord{GroupEncodeOffsetCommit("g", "t", 1, v(6)), GroupEncodeOffsetCommit("g", "t", 0, v(7))},
	}
	gp.mu.Lock()
	defer gp.mu.Unlock()
	before := gp.p.highWatermark.Load()
	if err := gp.append(out); err != nil {
		t.Fatal(err)
	}
	if got := gp.p.highWatermark.Load() - before; got != 3 {
		t.Fatalf("%d records appended, want 3", got)
	}
	res, err := replayGroups(gp.p, gp.c.cfg, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	g, ok := res.table.Group("g")
	if !ok {
		t.Fatal("no group after replay")
	}
	groupWantOffset(t, g, "t", 0, 5)
	groupWantOffset(t, g, "t", 1, -1)
	if !g.HasPendingOffset("t", 0) || !g.HasPendingOffset("t", 1) || fmt.Sprint(res.table.OpenTxns()) != "[9]" {
		t.Fatalf("pending after replay: %+v, open %v", g.PendingOffsets(9), res.table.OpenTxns())
	}
}

// coordTxnTestConfig is coordTestConfig for tests of the group side alone:
// their producers are not registered with a transaction coordinator.
func coordTxnTestConfig() Config {
	c := coordTestConfig()
	c.NoTxnVerification = true
	return c
}
