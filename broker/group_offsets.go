package broker

import (
	"cmp"
	"slices"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
)

// Committed offsets of one group: OffsetCommit validation (generation
// fencing), the offsets table, OffsetDelete, DeleteGroups and the expiry of
// offsets after offsets.retention.minutes. Every change is also a record
// for __consumer_offsets.

// GroupTopicPartition names a partition whose offset a group commits.
type GroupTopicPartition struct {
	Topic     string
	Partition int32
}

// GroupCommittedOffset is one committed offset (Kafka's OffsetAndMetadata).
type GroupCommittedOffset struct {
	Offset          int64
	LeaderEpoch     int32 // -1 if unknown
	Metadata        string
	CommitTimestamp int64 // ms
	// ExpireTimestamp (ms) is only carried by v1 records written for
	// OffsetCommit v2-v4 requests with a retention time; -1 otherwise.
	ExpireTimestamp int64
}

// GroupOffset is a committed offset with its partition. OffsetFetch sets
// ErrorCode to UNSTABLE_OFFSET_COMMIT (offset -1) for a partition with
// pending transactional offsets when asked for stable offsets.
type GroupOffset struct {
	GroupTopicPartition
	GroupCommittedOffset
	ErrorCode int16
}

// GroupOffsetCommit is one partition of an OffsetCommit request.
type GroupOffsetCommit struct {
	Topic       string
	Partition   int32
	Offset      int64
	LeaderEpoch int32 // -1 if the client sent none
	Metadata    string
}

// GroupCommitRequest is an OffsetCommit request for one group.
type GroupCommitRequest struct {
	MemberID     string
	InstanceID   string
	GenerationID int32 // -1 for an admin or "simple" commit
	Offsets      []GroupOffsetCommit
}

// ValidateCommit applies Kafka's OffsetCommit rules without changing
// anything:
//   - generation -1 with no member id and no instance id is an admin or
//     "simple" commit, allowed only while the group is Empty
//     (UNKNOWN_MEMBER_ID otherwise);
//   - anything else must come from a current member (UNKNOWN_MEMBER_ID,
//     FENCED_INSTANCE_ID) of the current generation (ILLEGAL_GENERATION);
//   - while CompletingRebalance a member has its new generation but no
//     assignment yet: REBALANCE_IN_PROGRESS;
//   - a Dead group is being removed: COORDINATOR_NOT_AVAILABLE.
//
// It does not fire deadlines; CommitOffsets does, then calls it.
func (g *GroupStateMachine) ValidateCommit(memberID, instanceID string, generation int32) int16 {
	if g.state == GroupDead {
		return kerr.CoordinatorNotAvailable.Code
	}
	if generation >= 0 || memberID != "" || instanceID != "" {
		if code := g.validateCurrentMember(memberID, instanceID); code != 0 {
			return code
		}
		if generation != g.generation {
			return kerr.IllegalGeneration.Code
		}
	} else if g.state != GroupEmpty {
		return kerr.UnknownMemberID.Code
	}
	if g.state == GroupCompletingRebalance {
		return kerr.RebalanceInProgress.Code
	}
	return 0
}

// CommitOffsets handles an OffsetCommit: the returned codes parallel
// req.Offsets. The response is delivered once the output's records are
// durable.
func (g *GroupStateMachine) CommitOffsets(now time.Time, req GroupCommitRequest) ([]int16, GroupOutput) {
	g.advance(now)
	codes := g.commitOffsets(now, &req)
	return codes, g.finish(now)
}

func (g *GroupStateMachine) commitOffsets(now time.Time, req *GroupCommitRequest) []int16 {
	codes := make([]int16, len(req.Offsets))
	if code := g.ValidateCommit(req.MemberID, req.InstanceID, req.GenerationID); code != 0 {
		for i := range codes {
			codes[i] = code
		}
		return codes
	}
	if m := g.byID[req.MemberID]; m != nil {
		// A commit proves the member alive, during a rebalance too (it
		// learns of the rebalance from its next heartbeat).
		g.scheduleSession(m, now)
	}
	ts := now.UnixMilli()
	for i, o := range req.Offsets {
		if len(o.Metadata) > g.cfg.MaxOffsetMetadataBytes {
			codes[i] = kerr.OffsetMetadataTooLarge.Code
			continue
		}
		v := GroupCommittedOffset{Offset: o.Offset, LeaderEpoch: o.LeaderEpoch, Metadata: o.Metadata, CommitTimestamp: ts, ExpireTimestamp: -1}
		tp := GroupTopicPartition{o.Topic, o.Partition}
		g.offsets[tp] = v
		g.txn.supersede(tp)
		g.out.Records = append(g.out.Records, GroupEncodeOffsetCommit(g.id, o.Topic, o.Partition, v))
	}
	return codes
}

// Offset returns the committed offset of one partition.
func (g *GroupStateMachine) Offset(topic string, partition int32) (GroupCommittedOffset, bool) {
	v, ok := g.offsets[GroupTopicPartition{topic, partition}]
	return v, ok
}

// Offsets returns every committed offset, sorted by topic and partition.
func (g *GroupStateMachine) Offsets() []GroupOffset {
	out := make([]GroupOffset, 0, len(g.offsets))
	for tp, v := range g.offsets {
		out = append(out, GroupOffset{GroupTopicPartition: tp, GroupCommittedOffset: v})
	}
	slices.SortFunc(out, func(a, b GroupOffset) int {
		return cmp.Or(cmp.Compare(a.Topic, b.Topic), cmp.Compare(a.Partition, b.Partition))
	})
	return out
}

// NumOffsets returns how many partitions have a committed offset.
func (g *GroupStateMachine) NumOffsets() int { return len(g.offsets) }

// DeleteOffsets handles an OffsetDelete. An Empty group may delete any
// offset; a consumer group with members only those of topics it does not
// subscribe to (GROUP_SUBSCRIBED_TO_TOPIC); other non-empty groups none
// (NON_EMPTY_GROUP). With a group-level error the partition codes are nil.
func (g *GroupStateMachine) DeleteOffsets(now time.Time, partitions []GroupTopicPartition) (int16, []int16, GroupOutput) {
	g.advance(now)
	var codes []int16
	var eligible []GroupTopicPartition
	code := int16(0)
	switch {
	case g.state == GroupDead:
		code = kerr.GroupIDNotFound.Code
	case g.state == GroupEmpty:
		codes = make([]int16, len(partitions))
		eligible = partitions
	case g.protocolType == "consumer":
		codes = make([]int16, len(partitions))
		for i, tp := range partitions {
			if g.isSubscribedToTopic(tp.Topic) {
				codes[i] = kerr.GroupSubscribedToTopic.Code
			} else {
				eligible = append(eligible, tp)
			}
		}
	default:
		code = kerr.NonEmptyGroup.Code
	}
	removed := g.removeOffsets(eligible)
	g.cleanup(now, removed)
	return code, codes, g.finish(now)
}

// Delete handles DeleteGroups for this group: only an Empty group can be
// deleted (NON_EMPTY_GROUP); its offsets and metadata are tombstoned and
// the group becomes Dead, after which the caller forgets it.
func (g *GroupStateMachine) Delete(now time.Time) (int16, GroupOutput) {
	g.advance(now)
	switch g.state {
	case GroupDead:
		return kerr.GroupIDNotFound.Code, g.finish(now)
	case GroupEmpty:
	default:
		return kerr.NonEmptyGroup.Code, g.finish(now)
	}
	all := g.txn.partitions() // pending only: tombstoned too, as Kafka 4 does
	for tp := range g.offsets {
		all = append(all, tp)
	}
	// With no offsets left, cleanup retires the Empty group.
	g.cleanup(now, g.removeOffsets(all))
	return 0, g.finish(now)
}

// ExpireOffsets removes offsets past offsets.retention.minutes (Kafka 2.1+
// semantics, KIP-211):
//   - a group with a protocol type that is Empty: every offset, once the
//     retention has passed since the group became Empty;
//   - a Stable consumer group whose subscriptions are known: offsets of
//     topics it does not subscribe to, retention counted from the commit;
//   - a group that only stores offsets (no protocol type): each offset
//     retention after its commit.
//
// An offset from a v1 record with an explicit expire timestamp expires at
// that time instead. An Empty group left without offsets becomes Dead and
// its metadata is tombstoned. Call it periodically
// (offsets.retention.check.interval.ms).
func (g *GroupStateMachine) ExpireOffsets(now time.Time) GroupOutput {
	g.advance(now)
	g.expireOffsets(now)
	return g.finish(now)
}

func (g *GroupStateMachine) expireOffsets(now time.Time) {
	if g.state == GroupDead {
		return
	}
	nowMs := now.UnixMilli()
	retentionMs := g.cfg.OffsetsRetention.Milliseconds()
	var base func(GroupCommittedOffset) int64
	subscribed := func(string) bool { return false }
	switch {
	case g.protocolType != "" && g.state == GroupEmpty:
		base = func(o GroupCommittedOffset) int64 {
			if g.stateTimestamp >= 0 {
				return g.stateTimestamp
			}
			return o.CommitTimestamp
		}
	case g.protocolType == "consumer" && g.subscribedKnown && g.state == GroupStable:
		base = func(o GroupCommittedOffset) int64 { return o.CommitTimestamp }
		subscribed = func(t string) bool { return g.subscribedTopics[t] }
	case g.protocolType == "":
		base = func(o GroupCommittedOffset) int64 { return o.CommitTimestamp }
	}
	var expired []GroupTopicPartition
	if base != nil {
		for tp, o := range g.offsets {
			if subscribed(tp.Topic) || g.txn.has(tp) {
				continue // Kafka 4 keeps an offset an open transaction may replace
			}
			if o.ExpireTimestamp >= 0 && nowMs >= o.ExpireTimestamp ||
				o.ExpireTimestamp < 0 && nowMs-base(o) >= retentionMs {
				expired = append(expired, tp)
			}
		}
	}
	g.cleanup(now, g.removeOffsets(expired))
}

// removeOffsets deletes the committed and pending offsets of tps and
// returns the partitions that had either, sorted so that the tombstones
// come out in a deterministic order. A tombstone removes the pending
// offsets of its partition (Kafka 4's replay of a tombstone does), which
// is why a partition with only pending offsets is tombstoned too.
func (g *GroupStateMachine) removeOffsets(tps []GroupTopicPartition) []GroupTopicPartition {
	var removed []GroupTopicPartition
	for _, tp := range tps {
		_, committed := g.offsets[tp]
		delete(g.offsets, tp)
		if pending := g.txn.drop(tp); committed || pending {
			removed = append(removed, tp)
		}
	}
	slices.SortFunc(removed, func(a, b GroupTopicPartition) int {
		return cmp.Or(cmp.Compare(a.Topic, b.Topic), cmp.Compare(a.Partition, b.Partition))
	})
	return removed
}

// cleanup is Kafka's cleanupGroupMetadata: tombstone the removed offsets,
// retire an Empty group that has no offsets left (committed or pending),
// and tombstone its metadata, unless generation 0 shows it never had any
// (a group used only for offset storage).
func (g *GroupStateMachine) cleanup(now time.Time, removed []GroupTopicPartition) {
	for _, tp := range removed {
		g.out.Records = append(g.out.Records, GroupEncodeOffsetTombstone(g.id, tp.Topic, tp.Partition))
	}
	if g.state == GroupEmpty && len(g.offsets) == 0 && g.txn.len() == 0 {
		g.transition(GroupDead, now)
		if g.generation > 0 {
			g.out.Records = append(g.out.Records, GroupEncodeGroupTombstone(g.id))
		}
	}
}
