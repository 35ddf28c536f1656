package broker

import (
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
)

// groupTestEntry is one entry of a __consumer_offsets log as the harness
// writes it: a plain record, a record of a transactional batch, or a
// transaction marker.
type groupTestEntry struct {
	rec        GroupRecord
	producerID int64 // -1: a plain record
	marker     bool  // a commit (commit) or abort marker of producerID
	commit     bool
}

// txnCommit sends a TxnOffsetCommit of producerID (epoch 0) for group.
func (h *groupHarness) txnCommit(group string, producerID int64, req GroupCommitRequest) []int16 {
	h.t.Helper()
	codes, out := h.table.TxnCommitOffsets(h.now, group, GroupTxnCommitRequest{ProducerID: producerID, GroupCommitRequest: req})
	if len(out.TxnRecords) > 0 && out.TxnProducer != (GroupTxnProducer{ID: producerID}) {
		h.t.Fatalf("transactional records of %+v, want producer %d", out.TxnProducer, producerID)
	}
	h.collect(out)
	return codes
}

// writeMarker puts producerID's marker in the log without telling the
// table (the marker writer has not reported it yet).
func (h *groupHarness) writeMarker(producerID int64, commit bool) {
	h.log = append(h.log, groupTestEntry{producerID: producerID, marker: true, commit: commit})
}

// marker writes producerID's marker and reports it, as txnMarkerWritten.
func (h *groupHarness) marker(producerID int64, commit bool) {
	h.writeMarker(producerID, commit)
	h.table.CompleteTxn(producerID, commit)
}

// groupReplayLog replays a log as replayGroups does.
func groupReplayLog(t *testing.T, cfg GroupConfig, log []groupTestEntry, now time.Time) *GroupTable {
	t.Helper()
	r := NewGroupReplayer(cfg)
	for i, e := range log {
		var err error
		switch {
		case e.marker:
			r.ApplyMarker(e.producerID, e.commit)
		case e.producerID >= 0:
			err = r.ApplyTxn(e.producerID, e.rec.Key, e.rec.Value)
		default:
			err = r.Apply(e.rec.Key, e.rec.Value)
		}
		if err != nil {
			t.Fatalf("entry %d: %v", i, err)
		}
	}
	return r.Finish(now)
}

// groupTxnView is what a table holds about offsets, comparable between a
// live table and a replayed one (the order numbers of pending offsets are
// internal and left out).
type groupTxnView struct {
	Groups map[string]groupTxnGroupView
	Open   []int64
}

type groupTxnGroupView struct {
	Offsets []GroupOffset
	Pending map[int64][]groupTxnPendingView
}

type groupTxnPendingView struct {
	GroupOffset
	Superseded bool
}

func groupTxnViewOf(t *GroupTable) groupTxnView {
	v := groupTxnView{Groups: map[string]groupTxnGroupView{}, Open: t.OpenTxns()}
	for id, g := range t.groups {
		gv := groupTxnGroupView{Offsets: g.Offsets(), Pending: map[int64][]groupTxnPendingView{}}
		for pid, m := range g.txn.byProducer {
			var ps []groupTxnPendingView
			for tp, o := range m {
				ps = append(ps, groupTxnPendingView{GroupOffset{GroupTopicPartition: tp, GroupCommittedOffset: o.GroupCommittedOffset}, o.superseded})
			}
			slices.SortFunc(ps, func(a, b groupTxnPendingView) int {
				return groupCompareTP(a.GroupTopicPartition, b.GroupTopicPartition)
			})
			gv.Pending[pid] = ps
		}
		v.Groups[id] = gv
	}
	return v
}

func groupWantOffset(t *testing.T, g *GroupStateMachine, topic string, partition int32, want int64) {
	t.Helper()
	o, ok := g.Offset(topic, partition)
	switch {
	case want < 0 && ok:
		t.Fatalf("%s-%d: offset %d committed, want none", topic, partition, o.Offset)
	case want >= 0 && (!ok || o.Offset != want):
		t.Fatalf("%s-%d: offset %d (committed %v), want %d", topic, partition, o.Offset, ok, want)
	}
}

func groupTxnOffsets1(topic string, partition int32, offset int64) []GroupOffsetCommit {
	return []GroupOffsetCommit{{Topic: topic, Partition: partition, Offset: offset, LeaderEpoch: -1}}
}

func TestGroupTxnCommitAndAbort(t *testing.T) {
	h := groupNewHarness(t, groupTestConfig())
	simple := GroupCommitRequest{GenerationID: -1}

	req := simple
	req.Offsets = append(groupTxnOffsets1("t", 0, 10), groupTxnOffsets1("t", 1, 11)...)
	codes := h.txnCommit(groupTestGroup, 7, req)
	groupWantCode(t, "txn commit", codes[0], 0)
	groupWantCode(t, "txn commit", codes[1], 0)
	if n := len(h.records); n != 0 {
		t.Fatalf("%d plain records for a transactional commit", n)
	}
	g := h.group()
	groupWantOffset(t, g, "t", 0, -1) // pending: invisible
	if !g.HasPendingOffset("t", 0) || !g.HasPendingOffset("t", 1) || g.HasPendingOffset("t", 2) {
		t.Fatal("pending offsets not reported")
	}
	if got := h.table.OpenTxns(); !reflect.DeepEqual(got, []int64{7}) {
		t.Fatalf("open transactions %v", got)
	}

	// Another producer's transaction on the same group and partition.
	req.Offsets = groupTxnOffsets1("t", 1, 21)
	h.txnCommit(groupTestGroup, 8, req)

	h.marker(7, true)
	groupWantOffset(t, g, "t", 0, 10)
	groupWantOffset(t, g, "t", 1, 11)
	if g.HasPendingOffset("t", 0) || !g.HasPendingOffset("t", 1) {
		t.Fatal("producer 7's commit touched producer 8's pending offset or kept its own")
	}
	if got := g.PendingOffsets(8); len(got) != 1 || got[0].Offset != 21 {
		t.Fatalf("producer 8's pending offsets %+v", got)
	}

	h.marker(8, false)
	groupWantOffset(t, g, "t", 1, 11) // aborted: unchanged
	if g.HasPendingOffset("t", 1) || h.table.HasOpenTxns() {
		t.Fatal("an abort left pending offsets")
	}
	// A marker of a producer without offsets here changes nothing.
	if n := h.table.CompleteTxn(99, true); n != 0 {
		t.Fatalf("a foreign marker materialized %d offsets", n)
	}
	groupCheckTxnReplay(t, h)
}

func TestGroupTxnCommitOrder(t *testing.T) {
	simple := GroupCommitRequest{GenerationID: -1}
	tx := func(h *groupHarness, pid int64, offset int64) {
		req := simple
		req.Offsets = groupTxnOffsets1("t", 0, offset)
		h.txnCommit(groupTestGroup, pid, req)
	}
	plain := func(h *groupHarness, offset int64) {
		req := simple
		req.Offsets = groupTxnOffsets1("t", 0, offset)
		h.commit(req)
	}
	tests := []struct {
		name string
		run  func(h *groupHarness)
		want int64
	}{
		{"a later plain commit wins over the transaction", func(h *groupHarness) {
			tx(h, 1, 100)
			plain(h, 150)
			h.marker(1, true)
		}, 150},
		{"a transaction written after the plain commit wins", func(h *groupHarness) {
			plain(h, 150)
			tx(h, 1, 100)
			h.marker(1, true)
		}, 100},
		{"the newer transaction wins, committed first", func(h *groupHarness) {
			tx(h, 1, 100)
			tx(h, 2, 200)
			h.marker(2, true)
			h.marker(1, true)
		}, 200},
		{"the newer transaction wins, committed last", func(h *groupHarness) {
			tx(h, 1, 100)
			tx(h, 2, 200)
			h.marker(1, true)
			h.marker(2, true)
		}, 200},
		{"the older transaction wins when the newer aborts", func(h *groupHarness) {
			plain(h, 50)
			tx(h, 1, 100)
			tx(h, 2, 200)
			h.marker(2, false)
			h.marker(1, true)
		}, 100},
		{"a rewrite in the same transaction is newer", func(h *groupHarness) {
			tx(h, 1, 100)
			plain(h, 150)
			tx(h, 1, 120)
			h.marker(1, true)
		}, 120},
		{"the marker reported after a plain commit written behind it", func(h *groupHarness) {
			tx(h, 1, 100)
			h.writeMarker(1, true)
			plain(h, 150)
			h.table.CompleteTxn(1, true)
		}, 150},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := groupNewHarness(t, groupTestConfig())
			tt.run(h)
			groupWantOffset(t, h.group(), "t", 0, tt.want)
			groupCheckTxnReplay(t, h)
		})
	}
}

func TestGroupTxnTombstones(t *testing.T) {
	h := groupNewHarness(t, groupTestConfig())
	simple := GroupCommitRequest{GenerationID: -1}
	req := simple
	req.Offsets = groupTxnOffsets1("t", 0, 5)
	h.commit(req)
	req.Offsets = append(groupTxnOffsets1("t", 0, 10), groupTxnOffsets1("u", 0, 20)...)
	h.txnCommit(groupTestGroup, 1, req)

	// OffsetDelete tombstones a partition that has only a pending offset
	// too, and the tombstone removes it.
	code, codes, out := h.table.DeleteOffsets(h.now, groupTestGroup, []GroupTopicPartition{{"u", 0}})
	h.collect(out)
	groupWantCode(t, "offset delete", code, 0)
	groupWantCode(t, "offset delete", codes[0], 0)
	if len(out.Records) != 1 || out.Records[0].Value != nil {
		t.Fatalf("offset delete wrote %+v, want one tombstone", out.Records)
	}
	g := h.group()
	if g.HasPendingOffset("u", 0) || !g.HasPendingOffset("t", 0) {
		t.Fatal("the tombstone did not remove exactly its partition's pending offset")
	}
	groupCheckTxnReplay(t, h)

	// Expiry keeps an offset an open transaction may replace.
	h.advance(8 * 24 * time.Hour)
	h.collect(h.table.ExpireOffsets(h.now))
	groupWantOffset(t, h.group(), "t", 0, 5)
	h.marker(1, true)
	groupWantOffset(t, h.group(), "t", 0, 10)
	groupCheckTxnReplay(t, h)

	// DeleteGroups removes pending offsets with the group.
	req.Offsets = groupTxnOffsets1("v", 3, 30)
	h.txnCommit(groupTestGroup, 2, req)
	code, out = h.table.Delete(h.now, groupTestGroup)
	h.collect(out)
	groupWantCode(t, "delete", code, 0)
	if _, ok := h.table.Group(groupTestGroup); ok {
		t.Fatal("deleted group still there")
	}
	if n := len(out.Records); n != 2 { // t-0 and the pending v-3
		t.Fatalf("delete wrote %d records, want 2 tombstones", n)
	}
	h.marker(2, true)
	if _, ok := h.table.Group(groupTestGroup); ok {
		t.Fatal("a commit marker brought a deleted group back")
	}
	groupCheckTxnReplay(t, h)
}

func TestGroupTxnVacantGroup(t *testing.T) {
	h := groupNewHarness(t, groupTestConfig())
	req := GroupCommitRequest{GenerationID: -1, Offsets: groupTxnOffsets1("t", 0, 1)}
	h.txnCommit("only-txn", 3, req)
	if _, ok := h.table.Group("only-txn"); !ok {
		t.Fatal("a transactional commit did not create the group")
	}
	groupCheckTxnReplay(t, h)
	h.marker(3, false)
	if _, ok := h.table.Group("only-txn"); ok {
		t.Fatal("the group of an aborted transaction's offsets only is still there")
	}
	groupCheckTxnReplay(t, h)

	// A group emptied by expiry stays while a transaction has offsets in it.
	h.txnCommit("kept", 4, req)
	req2 := GroupCommitRequest{GenerationID: -1, Offsets: groupTxnOffsets1("u", 0, 1)}
	h.commit2("kept", req2)
	h.advance(8 * 24 * time.Hour)
	h.collect(h.table.ExpireOffsets(h.now))
	g, ok := h.table.Group("kept")
	if !ok || g.NumOffsets() != 0 || !g.HasPendingOffset("t", 0) {
		t.Fatal("expiry retired a group with pending offsets")
	}
	h.marker(4, true)
	groupWantOffset(t, g, "t", 0, 1)
	groupCheckTxnReplay(t, h)
}

func (h *groupHarness) commit2(group string, req GroupCommitRequest) []int16 {
	h.t.Helper()
	codes, out := h.table.CommitOffsets(h.now, group, req)
	h.collect(out)
	return codes
}

func TestGroupTxnCommitValidation(t *testing.T) {
	h := groupNewHarness(t, groupTestConfig())
	ids := h.stableGroup(2)
	big := string(make([]byte, 4097))
	tests := []struct {
		name string
		req  GroupCommitRequest
		want []int16
	}{
		{"member of the generation", GroupCommitRequest{MemberID: ids[1], GenerationID: 1}, []int16{0}},
		// KIP-447: v0-v2 carry no member; unlike OffsetCommit, a live
		// group takes them.
		{"no member, no generation", GroupCommitRequest{GenerationID: -1}, []int16{0}},
		{"old generation", GroupCommitRequest{MemberID: ids[1], GenerationID: 0}, []int16{kerr.IllegalGeneration.Code}},
		{"generation -1 from a member", GroupCommitRequest{MemberID: ids[1], GenerationID: -1}, []int16{kerr.IllegalGeneration.Code}},
		{"unknown member", GroupCommitRequest{MemberID: "ghost", GenerationID: 1}, []int16{kerr.UnknownMemberID.Code}},
		{"unknown instance id", GroupCommitRequest{MemberID: ids[1], InstanceID: "i", GenerationID: 1}, []int16{kerr.UnknownMemberID.Code}},
		{"metadata too large", GroupCommitRequest{MemberID: ids[0], GenerationID: 1, Offsets: []GroupOffsetCommit{{Topic: "t", Partition: 9, Metadata: big}}}, []int16{0, kerr.OffsetMetadataTooLarge.Code}},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := tt.req
			req.Offsets = append(groupTxnOffsets1("t", 0, 10), req.Offsets...)
			before := len(h.log)
			pid := int64(100 + i)
			codes := h.txnCommit(groupTestGroup, pid, req)
			written := 0
			for i, want := range tt.want {
				groupWantCode(t, "txn commit", codes[i], want)
				if want == 0 {
					written++
				}
			}
			if got := len(h.log) - before; got != written {
				t.Fatalf("%d records written, want %d", got, written)
			}
			if open := slices.Contains(h.table.OpenTxns(), pid); open != (written > 0) {
				t.Fatalf("producer open: %v after %d records", open, written)
			}
		})
	}

	t.Run("static member fenced", func(t *testing.T) {
		h := groupNewHarness(t, groupTestConfig())
		static := groupJoinReq("", "app")
		static.InstanceID = "i-1"
		tok := h.join(static)
		h.advance(groupFormDelay)
		id := h.joinResp(tok).MemberID
		h.sync(GroupSyncRequest{MemberID: id, InstanceID: "i-1", GenerationID: 1, Assignments: []GroupMemberAssignment{{MemberID: id}}})
		codes := h.txnCommit(groupTestGroup, 1, GroupCommitRequest{MemberID: "old-id", InstanceID: "i-1", GenerationID: 1, Offsets: groupTxnOffsets1("t", 0, 1)})
		groupWantCode(t, "txn commit", codes[0], kerr.FencedInstanceID.Code)
	})

	t.Run("during a rebalance", func(t *testing.T) {
		h := groupNewHarness(t, groupTestConfig())
		ids := h.stableGroup(1)
		// A second member's join moves the group on: the first member's
		// new generation awaits its assignment (CompletingRebalance).
		_, tok := h.enter(groupJoinReq("", "c9"))
		tok0 := h.join(GroupJoinRequest{MemberID: ids[0], ClientID: "c0", ClientHost: "/127.0.0.1", SessionTimeoutMs: 10_000, RebalanceTimeoutMs: 30_000,
			ProtocolType: "consumer", Protocols: []GroupProtocol{{Name: "range", Metadata: groupConsumerMeta("t")}}})
		h.joinResp(tok)
		gen := h.joinResp(tok0).GenerationID
		h.wantState(GroupCompletingRebalance)
		codes := h.txnCommit(groupTestGroup, 1, GroupCommitRequest{MemberID: ids[0], GenerationID: gen, Offsets: groupTxnOffsets1("t", 0, 1)})
		groupWantCode(t, "txn commit while completing", codes[0], 0) // OffsetCommit: REBALANCE_IN_PROGRESS
	})

	t.Run("no such group", func(t *testing.T) {
		codes, out := h.table.TxnCommitOffsets(h.now, "nobody", GroupTxnCommitRequest{ProducerID: 1, GroupCommitRequest: GroupCommitRequest{GenerationID: 1, Offsets: groupTxnOffsets1("t", 0, 1)}})
		groupWantCode(t, "generation 1", codes[0], kerr.IllegalGeneration.Code)
		if _, ok := h.table.Group("nobody"); ok || len(out.TxnRecords) != 0 {
			t.Fatal("a rejected commit created the group or wrote")
		}
	})
}

// groupCheckTxnReplay replays the harness's log and compares the offsets,
// pending offsets and open transactions with the live table's, and with
// Kafka's rule (groupKafkaOffsets).
func groupCheckTxnReplay(t *testing.T, h *groupHarness) {
	t.Helper()
	replayed := groupReplayLog(t, h.table.cfg, h.log, h.now)
	if want, got := groupTxnViewOf(h.table), groupTxnViewOf(replayed); !reflect.DeepEqual(want, got) {
		t.Fatalf("replay rebuilt\n%+v\nlive\n%+v", got, want)
	}
	groupCheckKafkaRule(t, h.table, h.log)
}

// groupKafkaOffsets replays a log by Kafka 4's rule
// (OffsetMetadataManager.replay and replayEndTransactionMarker): every
// offset carries the log position of its record, a tombstone removes the
// committed and the pending offsets of its partition, and a commit marker
// materializes a pending offset only if its record is newer than the
// committed one's. It returns the committed offsets and the partitions
// with pending offsets, by group.
func groupKafkaOffsets(t *testing.T, log []groupTestEntry) (committed map[string]map[GroupTopicPartition]int64, pending map[string]map[GroupTopicPartition]bool) {
	t.Helper()
	type at struct{ offset, pos int64 }
	comm := map[string]map[GroupTopicPartition]at{}
	pend := map[int64]map[string]map[GroupTopicPartition]at{}
	for pos, e := range log {
		if e.marker {
			mine := pend[e.producerID]
			delete(pend, e.producerID)
			if !e.commit {
				continue
			}
			for g, m := range mine {
				for tp, o := range m {
					if cur, ok := comm[g][tp]; !ok || o.pos > cur.pos {
						if comm[g] == nil {
							comm[g] = map[GroupTopicPartition]at{}
						}
						comm[g][tp] = o
					}
				}
			}
			continue
		}
		rec, err := GroupDecodeRecord(e.rec.Key, e.rec.Value)
		if err != nil {
			t.Fatalf("entry %d: %v", pos, err)
		}
		if rec.Kind != GroupRecordOffsetCommit {
			continue
		}
		tp := GroupTopicPartition{rec.Topic, rec.Partition}
		switch {
		case rec.Tombstone:
			delete(comm[rec.Group], tp)
			for _, gm := range pend {
				delete(gm[rec.Group], tp)
			}
		case e.producerID >= 0:
			if pend[e.producerID] == nil {
				pend[e.producerID] = map[string]map[GroupTopicPartition]at{}
			}
			if pend[e.producerID][rec.Group] == nil {
				pend[e.producerID][rec.Group] = map[GroupTopicPartition]at{}
			}
			pend[e.producerID][rec.Group][tp] = at{rec.Offset.Offset, int64(pos)}
		default:
			if comm[rec.Group] == nil {
				comm[rec.Group] = map[GroupTopicPartition]at{}
			}
			comm[rec.Group][tp] = at{rec.Offset.Offset, int64(pos)}
		}
	}
	committed, pending = map[string]map[GroupTopicPartition]int64{}, map[string]map[GroupTopicPartition]bool{}
	for g, m := range comm {
		for tp, o := range m {
			if committed[g] == nil {
				committed[g] = map[GroupTopicPartition]int64{}
			}
			committed[g][tp] = o.offset
		}
	}
	for _, gm := range pend {
		for g, m := range gm {
			for tp := range m {
				if pending[g] == nil {
					pending[g] = map[GroupTopicPartition]bool{}
				}
				pending[g][tp] = true
			}
		}
	}
	return committed, pending
}

func groupCheckKafkaRule(t *testing.T, table *GroupTable, log []groupTestEntry) {
	t.Helper()
	committed, pending := groupKafkaOffsets(t, log)
	live := map[string]map[GroupTopicPartition]int64{}
	livePending := map[string]map[GroupTopicPartition]bool{}
	for id, g := range table.groups {
		for _, o := range g.Offsets() {
			if live[id] == nil {
				live[id] = map[GroupTopicPartition]int64{}
			}
			live[id][o.GroupTopicPartition] = o.Offset
		}
		for _, tp := range g.txn.partitions() {
			if !g.HasPendingOffset(tp.Topic, tp.Partition) {
				t.Fatalf("group %s: %v listed but not pending", id, tp)
			}
			if livePending[id] == nil {
				livePending[id] = map[GroupTopicPartition]bool{}
			}
			livePending[id][tp] = true
		}
	}
	if !reflect.DeepEqual(live, committed) {
		t.Fatalf("committed offsets\n%v\nKafka's rule gives\n%v", live, committed)
	}
	if !reflect.DeepEqual(livePending, pending) {
		t.Fatalf("pending partitions\n%v\nKafka's rule gives\n%v", livePending, pending)
	}
}

// TestGroupTxnRandomized drives simple groups with random plain and
// transactional commits, markers (some reported late, with other writes
// in between), offset deletes, group deletes, expiry and topic removal,
// and checks at every quiet point that the live table equals its replay
// and Kafka's rule, and that compaction keeps exactly that state.
func TestGroupTxnRandomized(t *testing.T) {
	for seed := uint64(1); seed <= 40; seed++ {
		t.Run(fmt.Sprint(seed), func(t *testing.T) { groupTxnRandomRun(t, seed, 400) })
	}
}

func groupTxnRandomRun(t *testing.T, seed uint64, steps int) {
	rng := rand.New(rand.NewPCG(seed, 13))
	cfg := groupTestConfig()
	cfg.OffsetsRetention = 20 * time.Second
	h := groupNewHarness(t, cfg)
	groups := []string{"g1", "g2", "g3"}
	topics := []string{"a", "b"}
	randTPs := func() []GroupOffsetCommit {
		var out []GroupOffsetCommit
		for range 1 + rng.IntN(3) {
			out = append(out, GroupOffsetCommit{Topic: topics[rng.IntN(2)], Partition: int32(rng.IntN(3)), Offset: int64(rng.IntN(1000)), LeaderEpoch: -1})
		}
		return out
	}
	type late struct {
		pid    int64
		commit bool
	}
	var unreported []late
	reported := func(pid int64) bool {
		return !slices.ContainsFunc(unreported, func(l late) bool { return l.pid == pid })
	}
	compactions := 0
	for step := range steps {
		g := groups[rng.IntN(len(groups))]
		pid := int64(1 + rng.IntN(3))
		switch op := rng.IntN(20); {
		case op < 5:
			h.commit2(g, GroupCommitRequest{GenerationID: -1, Offsets: randTPs()})
		case op < 10:
			if reported(pid) {
				h.txnCommit(g, pid, GroupCommitRequest{GenerationID: -1, Offsets: randTPs()})
			}
		case op < 13:
			if reported(pid) {
				commit := rng.IntN(3) > 0
				h.writeMarker(pid, commit)
				unreported = append(unreported, late{pid, commit})
			}
		case op < 15:
			if len(unreported) > 0 {
				l := unreported[0]
				unreported = unreported[1:]
				h.table.CompleteTxn(l.pid, l.commit)
			}
		case op == 15:
			var tps []GroupTopicPartition
			for _, o := range randTPs() {
				tps = append(tps, GroupTopicPartition{o.Topic, o.Partition})
			}
			_, _, out := h.table.DeleteOffsets(h.now, g, tps)
			h.collect(out)
		case op == 16:
			if rng.IntN(4) == 0 {
				_, out := h.table.Delete(h.now, g)
				h.collect(out)
			}
		case op == 17:
			h.advance(time.Duration(rng.IntN(8)) * time.Second)
			h.collect(h.table.ExpireOffsets(h.now))
		case op == 18:
			if rng.IntN(4) == 0 {
				h.collect(h.table.RemoveTopicOffsets(h.now, topics[rng.IntN(2)]))
			}
		case op == 19 && rng.IntN(2) == 0:
			// Every transaction ends (the coordinator aborts it at the
			// latest after its timeout).
			for _, l := range unreported {
				h.table.CompleteTxn(l.pid, l.commit)
			}
			unreported = nil
			for _, pid := range h.table.OpenTxns() {
				h.marker(pid, rng.IntN(2) == 0)
			}
		default:
			h.advance(time.Duration(rng.IntN(3)) * time.Second)
		}
		if len(unreported) > 0 {
			continue // the live table does not know everything in the log yet
		}
		groupCheckTxnReplay(t, h)
		if !h.table.HasOpenTxns() && rng.IntN(2) == 0 {
			h.log = groupCompactLog(t, h.log, h.now)
			compactions++
			replayed := groupReplayLog(t, cfg, h.log, h.now)
			if want, got := groupTxnViewOf(h.table), groupTxnViewOf(replayed); !reflect.DeepEqual(want, got) {
				t.Fatalf("step %d: the compacted log rebuilt\n%+v\nlive\n%+v", step, got, want)
			}
		}
	}
	if compactions == 0 {
		t.Fatal("no quiet point to compact at")
	}
}

// groupCompactLog compacts a log as compactGroupLog does (positions are
// the offsets): kept records become plain records, markers go.
func groupCompactLog(t *testing.T, log []groupTestEntry, now time.Time) []groupTestEntry {
	t.Helper()
	c := NewGroupCompactor(time.Hour)
	for pos, e := range log {
		switch {
		case e.marker:
			c.ObserveMarker(e.producerID, e.commit)
		case e.producerID >= 0:
			c.ObserveTxn(int64(pos), e.producerID, e.rec.Key, e.rec.Value == nil)
		default:
			c.Observe(int64(pos), e.rec.Key)
		}
	}
	if n := c.Open(); n != 0 {
		t.Fatalf("compacting with %d transactions open", n)
	}
	var out []groupTestEntry
	for pos, e := range log {
		if !e.marker && c.Keep(int64(pos), e.rec.Key, e.rec.Value == nil, now, now) {
			out = append(out, groupTestEntry{rec: e.rec, producerID: -1})
		}
	}
	return out
}

func TestGroupCompactorOpenTxn(t *testing.T) {
	key := GroupEncodeOffsetCommit("g", "t", 0, GroupCommittedOffset{}).Key
	c := NewGroupCompactor(time.Hour)
	c.Observe(0, key)
	c.ObserveTxn(1, 5, key, false)
	c.ObserveTxn(2, 6, key, false)
	if c.Open() != 2 {
		t.Fatalf("open %d, want 2", c.Open())
	}
	c.ObserveMarker(6, false)
	c.ObserveMarker(5, true)
	if c.Open() != 0 {
		t.Fatalf("open %d after the markers", c.Open())
	}
	now := time.Now()
	for off, want := range []bool{false, true, false} { // the committed transaction's record wins
		if got := c.Keep(int64(off), key, false, now, now); got != want {
			t.Fatalf("offset %d kept %v, want %v", off, got, want)
		}
	}
}
