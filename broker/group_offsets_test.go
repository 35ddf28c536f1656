package broker

import (
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
)

func TestGroupCommitFencing(t *testing.T) {
	h := groupNewHarness(t, groupTestConfig())
	ids := h.stableGroup(2)
	big := string(make([]byte, 4097))
	tests := []struct {
		name string
		req  GroupCommitRequest
		want []int16
	}{
		{"member of the generation", GroupCommitRequest{MemberID: ids[1], GenerationID: 1}, []int16{0}},
		{"admin commit to a live group", GroupCommitRequest{GenerationID: -1}, []int16{kerr.UnknownMemberID.Code}},
		{"old generation", GroupCommitRequest{MemberID: ids[1], GenerationID: 0}, []int16{kerr.IllegalGeneration.Code}},
		{"future generation", GroupCommitRequest{MemberID: ids[1], GenerationID: 2}, []int16{kerr.IllegalGeneration.Code}},
		{"generation -1 from a member", GroupCommitRequest{MemberID: ids[1], GenerationID: -1}, []int16{kerr.IllegalGeneration.Code}},
		{"unknown member", GroupCommitRequest{MemberID: "ghost", GenerationID: 1}, []int16{kerr.UnknownMemberID.Code}},
		{"unknown instance id", GroupCommitRequest{MemberID: ids[1], InstanceID: "i", GenerationID: 1}, []int16{kerr.UnknownMemberID.Code}},
		{"metadata too large", GroupCommitRequest{MemberID: ids[0], GenerationID: 1, Offsets: []GroupOffsetCommit{{Topic: "t", Partition: 9, Metadata: big}}}, []int16{0, kerr.OffsetMetadataTooLarge.Code}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := tt.req
			req.Offsets = append([]GroupOffsetCommit{{Topic: "t", Partition: 0, Offset: 10, LeaderEpoch: -1}}, req.Offsets...)
			before := len(h.records)
			codes := h.commit(req)
			written := 0
			for i, want := range tt.want {
				groupWantCode(t, "commit", codes[i], want)
				if want == 0 {
					written++
				}
			}
			if got := len(h.records) - before; got != written {
				t.Fatalf("%d records written, want %d", got, written)
			}
		})
	}

	t.Run("Describe-independent validation", func(t *testing.T) {
		g := h.group()
		groupWantCode(t, "ValidateCommit", g.ValidateCommit(ids[0], "", 1), 0)
		groupWantCode(t, "ValidateCommit", g.ValidateCommit(ids[0], "", 3), kerr.IllegalGeneration.Code)
	})

	t.Run("admin commit to an empty group", func(t *testing.T) {
		h.leave(GroupLeaveMember{MemberID: ids[0]}, GroupLeaveMember{MemberID: ids[1]})
		h.wantState(GroupEmpty)
		codes := h.commit(GroupCommitRequest{GenerationID: -1, Offsets: []GroupOffsetCommit{{Topic: "t", Offset: 77, LeaderEpoch: -1}}})
		groupWantCode(t, "commit", codes[0], 0)
		if o, _ := h.group().Offset("t", 0); o.Offset != 77 || o.CommitTimestamp != h.now.UnixMilli() {
			t.Fatalf("offset %+v", o)
		}
		// A member of a finished generation is told so.
		codes = h.commit(GroupCommitRequest{MemberID: ids[0], GenerationID: 1, Offsets: []GroupOffsetCommit{{Topic: "t"}}})
		groupWantCode(t, "commit", codes[0], kerr.UnknownMemberID.Code)
	})

	t.Run("no such group", func(t *testing.T) {
		codes, _ := h.table.CommitOffsets(h.now, "simple", GroupCommitRequest{GenerationID: 1, Offsets: []GroupOffsetCommit{{Topic: "t"}}})
		groupWantCode(t, "generation 1", codes[0], kerr.IllegalGeneration.Code)
		if _, ok := h.table.Group("simple"); ok {
			t.Fatal("a rejected commit created the group")
		}
		codes, out := h.table.CommitOffsets(h.now, "simple", GroupCommitRequest{GenerationID: -1, Offsets: []GroupOffsetCommit{{Topic: "t", Offset: 3}}})
		groupWantCode(t, "simple consumer", codes[0], 0)
		if g, ok := h.table.Group("simple"); !ok || g.State() != GroupEmpty || len(out.Records) != 1 {
			t.Fatal("a simple consumer's commit did not create an offsets-only group")
		}
	})
}

func TestGroupCommitDuringRebalance(t *testing.T) {
	h := groupNewHarness(t, groupTestConfig())
	ids := h.stableGroup(2)
	h.join(groupJoinReq(ids[0], "c0")) // PreparingRebalance
	codes := h.commit(GroupCommitRequest{MemberID: ids[1], GenerationID: 1, Offsets: []GroupOffsetCommit{{Topic: "t"}}})
	groupWantCode(t, "preparing", codes[0], 0)
	h.join(groupJoinReq(ids[1], "c1")) // CompletingRebalance, generation 2
	codes = h.commit(GroupCommitRequest{MemberID: ids[1], GenerationID: 2, Offsets: []GroupOffsetCommit{{Topic: "t"}}})
	groupWantCode(t, "completing", codes[0], kerr.RebalanceInProgress.Code)
	codes = h.commit(GroupCommitRequest{MemberID: ids[1], GenerationID: 1, Offsets: []GroupOffsetCommit{{Topic: "t"}}})
	groupWantCode(t, "completing, old generation", codes[0], kerr.IllegalGeneration.Code)
}

func TestGroupDelete(t *testing.T) {
	h := groupNewHarness(t, groupTestConfig())
	ids := h.stableGroup(2)
	h.commit(GroupCommitRequest{MemberID: ids[0], GenerationID: 1, Offsets: []GroupOffsetCommit{{Topic: "t", Partition: 0}, {Topic: "t", Partition: 1}}})

	code, _ := h.table.Delete(h.now, groupTestGroup)
	groupWantCode(t, "delete stable group", code, kerr.NonEmptyGroup.Code)
	h.join(groupJoinReq(ids[0], "c0"))
	code, _ = h.table.Delete(h.now, groupTestGroup)
	groupWantCode(t, "delete rebalancing group", code, kerr.NonEmptyGroup.Code)

	h.leave(GroupLeaveMember{MemberID: ids[0]}, GroupLeaveMember{MemberID: ids[1]})
	h.wantState(GroupEmpty)
	if !h.group().Deletable() {
		t.Fatal("empty group not deletable")
	}
	code, out := h.table.Delete(h.now, groupTestGroup)
	groupWantCode(t, "delete empty group", code, 0)
	want := []string{"t-0 tombstone", "t-1 tombstone", "group tombstone"}
	if len(out.Records) != len(want) {
		t.Fatalf("%d records, want %v", len(out.Records), want)
	}
	for i, rec := range out.Records {
		r, err := GroupDecodeRecord(rec.Key, rec.Value)
		if err != nil || !r.Tombstone || (i < 2) != (r.Kind == GroupRecordOffsetCommit) {
			t.Fatalf("record %d: %+v, %v, want %s", i, r, err, want[i])
		}
	}
	if _, ok := h.table.Group(groupTestGroup); ok {
		t.Fatal("deleted group still listed")
	}
	code, _ = h.table.Delete(h.now, groupTestGroup)
	groupWantCode(t, "delete again", code, kerr.GroupIDNotFound.Code)

	// A group that only ever stored offsets (generation 0) has no metadata
	// to tombstone.
	h.table.CommitOffsets(h.now, "simple", GroupCommitRequest{GenerationID: -1, Offsets: []GroupOffsetCommit{{Topic: "t"}}})
	_, out = h.table.Delete(h.now, "simple")
	if len(out.Records) != 1 {
		t.Fatalf("%d records deleting an offsets-only group, want 1", len(out.Records))
	}
}

func TestGroupDeleteOffsets(t *testing.T) {
	h := groupNewHarness(t, groupTestConfig()) // members subscribe to topic "t"
	ids := h.stableGroup(1)
	h.commit(GroupCommitRequest{MemberID: ids[0], GenerationID: 1, Offsets: []GroupOffsetCommit{{Topic: "t"}, {Topic: "old"}}})
	code, codes, out := h.table.DeleteOffsets(h.now, groupTestGroup, []GroupTopicPartition{{"t", 0}, {"old", 0}, {"never", 0}})
	groupWantCode(t, "group", code, 0)
	groupWantCode(t, "subscribed topic", codes[0], kerr.GroupSubscribedToTopic.Code)
	groupWantCode(t, "unsubscribed topic", codes[1], 0)
	groupWantCode(t, "no offset", codes[2], 0)
	if len(out.Records) != 1 || h.group().NumOffsets() != 1 {
		t.Fatalf("%d records, %d offsets left", len(out.Records), h.group().NumOffsets())
	}
	code, _, _ = h.table.DeleteOffsets(h.now, "nope", nil)
	groupWantCode(t, "no such group", code, kerr.GroupIDNotFound.Code)

	// Deleting the last offset of an Empty group retires it.
	h.leave(GroupLeaveMember{MemberID: ids[0]})
	_, _, out = h.table.DeleteOffsets(h.now, groupTestGroup, []GroupTopicPartition{{"t", 0}})
	if len(out.Records) != 2 || h.table.Len() != 0 {
		t.Fatalf("%d records, %d groups", len(out.Records), h.table.Len())
	}
}

func TestGroupOffsetExpiry(t *testing.T) {
	const retention = 24 * time.Hour
	cfg := groupTestConfig()
	cfg.OffsetsRetention = retention

	t.Run("empty group: counted from when it became empty", func(t *testing.T) {
		const retention = time.Minute // short enough to heartbeat through
		cfg := cfg
		cfg.OffsetsRetention = retention
		h := groupNewHarness(t, cfg)
		ids := h.stableGroup(1)
		h.commit(GroupCommitRequest{MemberID: ids[0], GenerationID: 1, Offsets: []GroupOffsetCommit{{Topic: "t"}, {Topic: "u"}}})
		// Stable for two retention periods: the subscribed topic's offset
		// stays, the other one's expires.
		for range 2 * retention / (5 * time.Second) {
			h.advance(5 * time.Second)
			groupWantCode(t, "heartbeat", h.heartbeat(ids[0], "", 1), 0)
			h.collect(h.table.ExpireOffsets(h.now))
		}
		if h.group().NumOffsets() != 1 {
			t.Fatalf("%d offsets while stable, want only the subscribed topic's", h.group().NumOffsets())
		}
		h.leave(GroupLeaveMember{MemberID: ids[0]})
		emptySince := h.now
		h.advance(retention - time.Millisecond)
		before := len(h.records)
		h.collect(h.table.ExpireOffsets(h.now))
		if len(h.records) != before {
			t.Fatalf("expired %d records before the retention", len(h.records)-before)
		}

		// The clock of an Empty group survives a restart: replay and
		// expire there.
		h.table = groupCheckReplay(t, h)
		h.advance(time.Millisecond)
		if got := h.now.Sub(emptySince); got != retention {
			t.Fatalf("test clock: %v", got)
		}
		h.collect(h.table.ExpireOffsets(h.now))
		expired := h.records[before:]
		if len(expired) != 2 || h.table.Len() != 0 {
			t.Fatalf("%d records, %d groups: want the offset and the group tombstoned", len(expired), h.table.Len())
		}
		for _, rec := range expired {
			if rec.Value != nil {
				t.Fatalf("expiry wrote a non-tombstone")
			}
		}
	})

	t.Run("offsets-only group: counted from each commit", func(t *testing.T) {
		h := groupNewHarness(t, cfg)
		h.commit(GroupCommitRequest{GenerationID: -1, Offsets: []GroupOffsetCommit{{Topic: "t", Partition: 0}}})
		h.advance(retention / 2)
		h.commit(GroupCommitRequest{GenerationID: -1, Offsets: []GroupOffsetCommit{{Topic: "t", Partition: 1}}})
		h.advance(retention / 2)
		h.records = nil
		h.collect(h.table.ExpireOffsets(h.now))
		if len(h.records) != 1 || h.group().NumOffsets() != 1 {
			t.Fatalf("%d tombstones, %d offsets left; want partition 0 expired only", len(h.records), h.group().NumOffsets())
		}
		h.advance(retention / 2)
		h.collect(h.table.ExpireOffsets(h.now))
		if h.table.Len() != 0 || len(h.records) != 2 {
			t.Fatalf("%d groups, %d records: the group should be gone without a group tombstone", h.table.Len(), len(h.records))
		}
	})

	t.Run("explicit expire timestamp from a v1 record", func(t *testing.T) {
		rec := GroupEncodeOffsetCommit("g", "t", 0, GroupCommittedOffset{Offset: 1, CommitTimestamp: groupT0.UnixMilli(), ExpireTimestamp: groupT0.Add(time.Hour).UnixMilli()})
		r := NewGroupReplayer(cfg)
		if err := r.Apply(rec.Key, rec.Value); err != nil {
			t.Fatal(err)
		}
		table := r.Finish(groupT0)
		if out := table.ExpireOffsets(groupT0.Add(time.Hour - time.Millisecond)); len(out.Records) != 0 {
			t.Fatal("expired early")
		}
		if out := table.ExpireOffsets(groupT0.Add(time.Hour)); len(out.Records) != 1 {
			t.Fatal("explicit expire timestamp ignored")
		}
	})
}

func TestGroupCompaction(t *testing.T) {
	now := groupT0
	type logRec struct {
		GroupRecord
		ts time.Time
	}
	off := func(p int32, o int64) GroupRecord {
		return GroupEncodeOffsetCommit("g", "t", p, GroupCommittedOffset{Offset: o, LeaderEpoch: -1, ExpireTimestamp: -1})
	}
	v0Key := GroupRecord{Key: []byte{0, 0, 0, 1, 'g', 0, 1, 't', 0, 0, 0, 2}, Value: off(2, 1).Value} // same partition as off(2, …)
	log := []logRec{
		{off(0, 1), now.Add(-48 * time.Hour)},                                        // 0: superseded by 2
		{off(1, 1), now.Add(-48 * time.Hour)},                                        // 1: latest for t-1
		{off(0, 2), now.Add(-47 * time.Hour)},                                        // 2: latest for t-0
		{v0Key, now.Add(-47 * time.Hour)},                                            // 3: superseded by 4 (v0 key, same partition)
		{off(2, 5), now.Add(-46 * time.Hour)},                                        // 4: latest for t-2
		{GroupEncodeOffsetCommit("g", "t", 3, GroupCommittedOffset{}), now},          // 5: superseded by 6
		{GroupEncodeOffsetTombstone("g", "t", 3), now.Add(-30 * time.Hour)},          // 6: old tombstone: dropped
		{GroupEncodeGroupTombstone("h"), now.Add(-time.Hour)},                        // 7: recent tombstone: kept
		{GroupRecord{Key: nil, Value: []byte{1}}, now},                               // 8: no key: dropped
		{GroupEncodeOffsetCommit("g", "t", 4, GroupCommittedOffset{}), now},          // 9: superseded by 10
		{GroupEncodeOffsetCommit("g", "t", 4, GroupCommittedOffset{Offset: 8}), now}, // 10: latest
	}
	wantKept := []int{1, 2, 4, 7, 10}

	c := NewGroupCompactor(24 * time.Hour)
	for i, r := range log {
		c.Observe(int64(i), r.Key)
	}
	var kept []int
	for i, r := range log {
		if c.Keep(int64(i), r.Key, r.Value == nil, r.ts, now) {
			kept = append(kept, i)
		}
	}
	if len(kept) != len(wantKept) {
		t.Fatalf("kept %v, want %v", kept, wantKept)
	}
	for i := range kept {
		if kept[i] != wantKept[i] {
			t.Fatalf("kept %v, want %v", kept, wantKept)
		}
	}

	// Replaying the compacted log gives what replaying everything gives.
	full, compacted := NewGroupReplayer(GroupConfig{}), NewGroupReplayer(GroupConfig{})
	for i, r := range log {
		if r.Key == nil {
			continue
		}
		full.Apply(r.Key, r.Value)
		for _, k := range kept {
			if k == i {
				compacted.Apply(r.Key, r.Value)
			}
		}
	}
	a, _ := full.Finish(now).Group("g")
	b, _ := compacted.Finish(now).Group("g")
	if got, want := b.Offsets(), a.Offsets(); len(got) != len(want) || len(got) != 4 {
		t.Fatalf("compacted replay %v, full replay %v", got, want)
	}
	for i := range a.Offsets() {
		if a.Offsets()[i] != b.Offsets()[i] {
			t.Fatalf("compacted replay %v, full replay %v", b.Offsets(), a.Offsets())
		}
	}
}
