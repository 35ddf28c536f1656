package broker

import (
	"testing"
)

func TestGroupRemoveTopicOffsets(t *testing.T) {
	h := groupNewHarness(t, groupTestConfig())
	ids := h.stableGroup(1)
	gen := h.group().Generation()
	for _, topic := range []string{"gone", "kept"} {
		codes := h.commit(GroupCommitRequest{MemberID: ids[0], GenerationID: gen, Offsets: []GroupOffsetCommit{{Topic: topic, Partition: 0, Offset: 5, LeaderEpoch: -1}}})
		groupWantCode(t, "commit", codes[0], 0)
	}
	// A group that only stores offsets of the deleted topic.
	_, out := h.table.CommitOffsets(h.now, "only-gone", GroupCommitRequest{GenerationID: -1, Offsets: []GroupOffsetCommit{{Topic: "gone", Partition: 3, Offset: 1}}})
	h.collect(out)
	if !h.table.OffsetTopics()["gone"] {
		t.Fatal("offset topics miss gone")
	}
	h.records = nil
	h.collect(h.table.RemoveTopicOffsets(h.now, "gone"))
	if _, ok := h.group().Offset("gone", 0); ok {
		t.Fatal("offset of the deleted topic survived")
	}
	if _, ok := h.group().Offset("kept", 0); !ok {
		t.Fatal("offset of another topic removed")
	}
	if _, ok := h.table.Group("only-gone"); ok {
		t.Fatal("a group left without offsets survived")
	}
	// Two offset tombstones; the simple group had no metadata to tombstone.
	if len(h.records) != 2 {
		t.Fatalf("%d records", len(h.records))
	}
	for _, r := range h.records {
		d, err := GroupDecodeRecord(r.Key, r.Value)
		if err != nil || !d.Tombstone || d.Topic != "gone" {
			t.Fatalf("record %+v %v", d, err)
		}
	}
	groupWantCode(t, "heartbeat", h.heartbeat(ids[0], "", gen), 0)
}
