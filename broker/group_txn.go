package broker

import (
	"cmp"
	"slices"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
)

// Transactional offset commits (KIP-98, KIP-447). TxnOffsetCommit writes a
// group's offsets as part of a producer's transaction: they are written to
// __consumer_offsets at once, in a transactional batch of the producer, but
// stay pending until the transaction's marker reaches the partition. A
// commit marker materializes them, an abort marker drops them. Meanwhile
// OffsetFetch does not show them, and answers UNSTABLE_OFFSET_COMMIT for
// their partitions when asked for stable offsets (KIP-447), so that a
// consumer taking over never starts from an offset that is about to move.
//
// Kafka 4's group coordinator (OffsetMetadataManager) is the model. It
// keeps the log offset of every commit record and, at a commit marker,
// materializes a pending offset only if its record is newer than the
// record of the offset it would replace: the newest record wins, whatever
// its kind. This state machine applies records before they have offsets,
// so it keeps that order with flags instead:
//
//   - a non-transactional commit of a partition marks every pending offset
//     of that partition superseded: it is newer than all of them;
//   - a pending offset that is materialized marks the pending offsets of
//     other producers for the same partition that were written before it
//     superseded;
//   - at its commit marker a superseded offset is dropped, not
//     materialized; until then it counts as pending (requireStable, offset
//     expiry), as in Kafka;
//   - a tombstone of a partition (OffsetDelete, DeleteGroups, expiry, a
//     deleted topic) removes its pending offsets too, and OffsetDelete and
//     DeleteGroups tombstone partitions that only have pending offsets.
//
// These rules give at every marker what Kafka's comparison of record
// offsets gives, and they depend only on the order of the records, so
// replay (GroupReplayer.ApplyTxn and ApplyMarker, meeting the same records
// and markers in log order) rebuilds the same state. Compaction keeps the
// newest effective record of each partition by the same rule
// (GroupCompactor).
//
// The caller reports a marker with CompleteTxn once it is in the log. The
// table may have written records between the marker and that call; they do
// not change the outcome, because each rule above gives the same result
// whichever side of the marker such a record lies: a commit of the
// partition wins either way (it is newer), a tombstone removes the offset
// either way, another producer's pending offset is newer either way, and a
// group deleted meanwhile is gone either way. Only the same producer's
// next transaction could tell, and the transaction coordinator starts it
// only after the marker has been reported (see txnMarkerWritten).

// GroupTxnCommitRequest is a TxnOffsetCommit for one group: the commit's
// offsets, member and generation (v3+; generation -1 with no member id
// skips the member check, KIP-447) and the transactional producer.
type GroupTxnCommitRequest struct {
	ProducerID    int64
	ProducerEpoch int16
	GroupCommitRequest
}

// groupPendingOffset is one offset of an open transaction.
type groupPendingOffset struct {
	GroupCommittedOffset
	seq        uint64 // write order among the group's transactional offsets
	superseded bool   // dropped at its commit marker: a newer offset is committed
}

// groupTxnOffsets is one group's pending transactional offsets by producer
// (Kafka's pendingTransactionalOffsetCommits). The zero value is empty and
// allocates nothing, which keeps replay of groups without transactions as
// cheap as before.
type groupTxnOffsets struct {
	byProducer map[int64]map[GroupTopicPartition]groupPendingOffset
	seq        uint64
}

// len returns how many producers have pending offsets in the group.
func (x *groupTxnOffsets) len() int { return len(x.byProducer) }

// add records a pending offset of producerID, replacing the producer's
// earlier one for the partition.
func (x *groupTxnOffsets) add(producerID int64, tp GroupTopicPartition, v GroupCommittedOffset) {
	if x.byProducer == nil {
		x.byProducer = make(map[int64]map[GroupTopicPartition]groupPendingOffset)
	}
	m := x.byProducer[producerID]
	if m == nil {
		m = make(map[GroupTopicPartition]groupPendingOffset)
		x.byProducer[producerID] = m
	}
	x.seq++
	m[tp] = groupPendingOffset{GroupCommittedOffset: v, seq: x.seq}
}

// supersede marks every pending offset of tp superseded: a
// non-transactional commit of tp was just written.
func (x *groupTxnOffsets) supersede(tp GroupTopicPartition) {
	for _, m := range x.byProducer {
		if o, ok := m[tp]; ok && !o.superseded {
			o.superseded = true
			m[tp] = o
		}
	}
}

// drop removes every pending offset of tp (a tombstone of tp was written)
// and reports whether there was one.
func (x *groupTxnOffsets) drop(tp GroupTopicPartition) bool {
	found := false
	for pid, m := range x.byProducer {
		if _, ok := m[tp]; ok {
			found = true
			delete(m, tp)
			if len(m) == 0 {
				delete(x.byProducer, pid)
			}
		}
	}
	return found
}

// has reports whether any producer has a pending offset for tp.
func (x *groupTxnOffsets) has(tp GroupTopicPartition) bool {
	for _, m := range x.byProducer {
		if _, ok := m[tp]; ok {
			return true
		}
	}
	return false
}

// complete ends producerID's transaction in the group: with commit, its
// pending offsets that are not superseded go into offsets, and older
// pending offsets of other producers for those partitions become
// superseded; either way the producer's pending offsets are gone. It
// reports how many offsets it materialized.
func (x *groupTxnOffsets) complete(producerID int64, commit bool, offsets map[GroupTopicPartition]GroupCommittedOffset) int {
	mine, ok := x.byProducer[producerID]
	if !ok {
		return 0
	}
	delete(x.byProducer, producerID)
	if !commit {
		return 0
	}
	n := 0
	for tp, o := range mine {
		if o.superseded {
			continue
		}
		offsets[tp] = o.GroupCommittedOffset
		n++
		for _, m := range x.byProducer {
			if other, ok := m[tp]; ok && other.seq < o.seq && !other.superseded {
				other.superseded = true
				m[tp] = other
			}
		}
	}
	return n
}

// partitions returns the partitions with pending offsets, sorted.
func (x *groupTxnOffsets) partitions() []GroupTopicPartition {
	var out []GroupTopicPartition
	for _, m := range x.byProducer {
		for tp := range m {
			out = append(out, tp)
		}
	}
	slices.SortFunc(out, groupCompareTP)
	return slices.Compact(out)
}

func groupCompareTP(a, b GroupTopicPartition) int {
	return cmp.Or(cmp.Compare(a.Topic, b.Topic), cmp.Compare(a.Partition, b.Partition))
}

// ValidateTxnCommit applies Kafka's checks of a transactional offset
// commit (Kafka 4's ClassicGroup.validateOffsetCommit with isTransactional)
// without changing anything:
//   - a Dead group is being removed: COORDINATOR_NOT_AVAILABLE;
//   - a negative generation on an Empty group needs no member;
//   - a generation, a member id or an instance id must name a current
//     member (UNKNOWN_MEMBER_ID, FENCED_INSTANCE_ID) of the current
//     generation (ILLEGAL_GENERATION);
//   - otherwise (v0-v2 requests carry neither) nothing is checked, and,
//     unlike OffsetCommit, neither a non-empty group nor a rebalance in
//     progress refuses the commit: the transaction decides.
func (g *GroupStateMachine) ValidateTxnCommit(memberID, instanceID string, generation int32) int16 {
	if g.state == GroupDead {
		return kerr.CoordinatorNotAvailable.Code
	}
	if generation < 0 && g.state == GroupEmpty {
		return 0
	}
	if generation >= 0 || memberID != "" || instanceID != "" {
		if code := g.validateCurrentMember(memberID, instanceID); code != 0 {
			return code
		}
		if generation != g.generation {
			return kerr.IllegalGeneration.Code
		}
	}
	return 0
}

// TxnCommitOffsets handles a TxnOffsetCommit: the returned codes parallel
// req.Offsets. The accepted offsets become pending offsets of the producer
// and come out as TxnRecords, to be appended in a transactional batch of
// req.ProducerID and req.ProducerEpoch. The response is delivered once the
// output's records are durable.
func (g *GroupStateMachine) TxnCommitOffsets(now time.Time, req GroupTxnCommitRequest) ([]int16, GroupOutput) {
	g.advance(now)
	codes := g.txnCommitOffsets(now, &req)
	return codes, g.finish(now)
}

func (g *GroupStateMachine) txnCommitOffsets(now time.Time, req *GroupTxnCommitRequest) []int16 {
	codes := make([]int16, len(req.Offsets))
	if code := g.ValidateTxnCommit(req.MemberID, req.InstanceID, req.GenerationID); code != 0 {
		return fillCodes(codes, code)
	}
	ts := now.UnixMilli()
	for i, o := range req.Offsets {
		if len(o.Metadata) > g.cfg.MaxOffsetMetadataBytes {
			codes[i] = kerr.OffsetMetadataTooLarge.Code
			continue
		}
		v := GroupCommittedOffset{Offset: o.Offset, LeaderEpoch: o.LeaderEpoch, Metadata: o.Metadata, CommitTimestamp: ts, ExpireTimestamp: -1}
		g.txn.add(req.ProducerID, GroupTopicPartition{o.Topic, o.Partition}, v)
		g.out.TxnRecords = append(g.out.TxnRecords, GroupEncodeOffsetCommit(g.id, o.Topic, o.Partition, v))
	}
	if len(g.out.TxnRecords) > 0 {
		g.out.TxnProducer = GroupTxnProducer{ID: req.ProducerID, Epoch: req.ProducerEpoch}
	}
	return codes
}

// HasPendingOffset reports whether an open transaction has written an
// offset of the partition (superseded ones included, as Kafka counts
// them): OffsetFetch with requireStable answers UNSTABLE_OFFSET_COMMIT for
// it.
func (g *GroupStateMachine) HasPendingOffset(topic string, partition int32) bool {
	return g.txn.has(GroupTopicPartition{topic, partition})
}

// PendingOffsets returns the offsets producerID's open transaction wrote
// to the group, sorted, superseded ones included.
func (g *GroupStateMachine) PendingOffsets(producerID int64) []GroupOffset {
	m := g.txn.byProducer[producerID]
	out := make([]GroupOffset, 0, len(m))
	for tp, o := range m {
		out = append(out, GroupOffset{GroupTopicPartition: tp, GroupCommittedOffset: o.GroupCommittedOffset})
	}
	slices.SortFunc(out, func(a, b GroupOffset) int { return groupCompareTP(a.GroupTopicPartition, b.GroupTopicPartition) })
	return out
}

// TxnCommitOffsets handles a TxnOffsetCommit. As in Kafka 4, a group that
// does not exist is created by a commit with a negative generation (a
// "simple" group that only stores offsets); with a generation it is
// ILLEGAL_GENERATION.
func (t *GroupTable) TxnCommitOffsets(now time.Time, groupID string, req GroupTxnCommitRequest) ([]int16, GroupOutput) {
	g, created := t.groups[groupID], false
	if g == nil {
		if req.GenerationID >= 0 {
			return fillCodes(make([]int16, len(req.Offsets)), kerr.IllegalGeneration.Code), GroupOutput{}
		}
		g, created = NewGroupStateMachine(groupID, t.cfg, now), true
		t.groups[groupID] = g
	}
	codes, out := g.TxnCommitOffsets(now, req)
	if len(out.TxnRecords) > 0 {
		t.openTxn(req.ProducerID, groupID)
	}
	t.settle(g, created)
	return codes, out
}

// openTxn notes that producerID's open transaction wrote offsets of the
// group.
func (t *GroupTable) openTxn(producerID int64, groupID string) {
	if t.openTxns == nil {
		t.openTxns = make(map[int64]map[string]struct{})
	}
	groups := t.openTxns[producerID]
	if groups == nil {
		groups = make(map[string]struct{})
		t.openTxns[producerID] = groups
	}
	groups[groupID] = struct{}{}
}

// CompleteTxn applies producerID's commit (commit) or abort marker, written
// to the table's partition: in every group the producer's open transaction
// wrote to, its pending offsets are materialized or dropped. It writes
// nothing (the marker is the record) and returns how many offsets it
// materialized. A marker for a producer without pending offsets here
// changes nothing, as in Kafka.
func (t *GroupTable) CompleteTxn(producerID int64, commit bool) int {
	groups, ok := t.openTxns[producerID]
	if !ok {
		return 0
	}
	delete(t.openTxns, producerID)
	n := 0
	for id := range groups { // groups are independent: order does not matter
		g := t.groups[id]
		if g == nil {
			continue
		}
		n += g.txn.complete(producerID, commit, g.offsets)
		if g.vacant() {
			delete(t.groups, id) // replay would not build it either
		}
	}
	return n
}

// HasOpenTxns reports whether a transaction that wrote offsets to the
// table's partition has not met its marker yet. Compaction waits for none
// to be open (coordinator_log.go).
func (t *GroupTable) HasOpenTxns() bool { return len(t.openTxns) > 0 }

// OpenTxns returns the producers with open transactions, sorted.
func (t *GroupTable) OpenTxns() []int64 {
	out := make([]int64, 0, len(t.openTxns))
	for pid := range t.openTxns {
		out = append(out, pid)
	}
	slices.Sort(out)
	return out
}
