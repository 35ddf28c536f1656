package broker

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
)

// The Broker's consumer-group calls, the API package kafka codes against
// (api.go lists them). A call about one group routes its group id to the
// __consumer_offsets partition that holds the group (groupPartitionFor)
// and runs on that partition's GroupTable under its mutex: withGroupTable
// for calls that answer at once, waitGroupResponse for JoinGroup and
// SyncGroup, whose answer may be delayed. ListGroups, ExpireGroupOffsets
// and CompactGroupOffsets visit every partition this node serves. How the tables are loaded, written and followed
// across leadership changes is the coordinator's business (coordinator.go,
// coordinator_cluster.go, coordinator_log.go); what a call does to a group
// is the state machine's (group.go and group_*.go).

// Coordinator types of FindCoordinator.
const (
	CoordinatorTypeGroup       int8 = 0
	CoordinatorTypeTransaction int8 = 1
)

// Coordinator is the node FindCoordinator names.
type Coordinator struct {
	NodeID int32
	Host   string
	Port   int32
}

// GroupFetchTopic is one topic of an OffsetFetch: nil Partitions means
// every committed partition of the topic.
type GroupFetchTopic struct {
	Topic      string
	Partitions []int32
}

// errNotCoordinator is what calls get while a table is unavailable.
func errNotCoordinator(groupID string, cause error) error {
	if cause == nil {
		return fmt.Errorf("group %q: %w", groupID, kerr.NotCoordinator)
	}
	return fmt.Errorf("group %q: %w: %w", groupID, kerr.NotCoordinator, cause)
}

// groupPartitionFor routes a group id to its table.
func (b *Broker) groupPartitionFor(groupID string) (*groupPartition, error) {
	c := b.groups
	if c == nil || b.closed.Load() {
		return nil, errNotCoordinator(groupID, ErrClosed)
	}
	parts := c.partitions()
	if len(parts) == 0 {
		return nil, fmt.Errorf("group %q: %s does not exist yet: %w", groupID, offsetsTopic, kerr.CoordinatorNotAvailable)
	}
	return parts[GroupOffsetsPartition(groupID, int32(len(parts)))], nil
}

// FindCoordinator answers where the coordinator of key is: the leader of
// the key's partition of __consumer_offsets (groups) or of
// __transaction_state (transactional ids; the topic is created on the
// first ask, as Kafka does). Standalone that is this node; in a cluster
// the partition's raft leader, its preferred replica when this node does
// not host it. Other key types are INVALID_REQUEST.
func (b *Broker) FindCoordinator(keyType int8, key string) (Coordinator, error) {
	none := Coordinator{NodeID: -1, Port: -1}
	switch keyType {
	case CoordinatorTypeGroup:
		if b.groups == nil || b.closed.Load() {
			return none, fmt.Errorf("coordinator for %q: %w", key, kerr.CoordinatorNotAvailable)
		}
		return b.findCoordinatorOf(offsetsTopic, key)
	case CoordinatorTypeTransaction:
		c, err := b.txnCoord()
		if err != nil {
			return none, err
		}
		if key == "" {
			return none, fmt.Errorf("coordinator for an empty transactional id: %w", kerr.InvalidRequest)
		}
		if _, err := c.topicPartitions(); err != nil {
			return none, err
		}
		return b.findCoordinatorOf(txnTopic, key)
	default:
		return none, fmt.Errorf("coordinator type %d: %w", keyType, kerr.InvalidRequest)
	}
}

// findCoordinatorOf names the leader of key's partition of topic (an
// internal topic partitioned by GroupOffsetsPartition).
func (b *Broker) findCoordinatorOf(topic, key string) (Coordinator, error) {
	none := Coordinator{NodeID: -1, Port: -1}
	n, ok := b.partitionCount(topic)
	if !ok || n == 0 {
		return none, fmt.Errorf("coordinator for %q: %s does not exist yet: %w", key, topic, kerr.CoordinatorNotAvailable)
	}
	idx := GroupOffsetsPartition(key, n)
	leader, _, err := b.PartitionLeader(topic, idx)
	if err != nil {
		// Not hosted here: the preferred leader, as Metadata answers.
		leader = -1
		if r := b.PartitionReplicas(topic, idx); len(r) > 0 {
			leader = r[0]
		}
	}
	if leader < 0 {
		return none, fmt.Errorf("coordinator for %q: %s-%d has no leader: %w", key, topic, idx, kerr.CoordinatorNotAvailable)
	}
	for _, bi := range b.Brokers() {
		if bi.NodeID == leader {
			return Coordinator{NodeID: bi.NodeID, Host: bi.Host, Port: bi.Port}, nil
		}
	}
	return none, fmt.Errorf("coordinator for %q: node %d, the leader of %s-%d, is not registered: %w", key, leader, topic, idx, kerr.CoordinatorNotAvailable)
}

// waitGroupResponse registers a token for a delayed response, runs call
// (which hands the token to the table) and settles its output, then waits
// for the token's response or ctx.
func (b *Broker) waitGroupResponse(ctx context.Context, groupID string, call func(t *GroupTable, now time.Time, token uint64) GroupOutput) (GroupResponse, error) {
	gp, err := b.groupPartitionFor(groupID)
	if err != nil {
		return GroupResponse{}, err
	}
	ch := make(chan GroupResponse, 1)
	gp.mu.Lock()
	t, err := gp.available(groupID)
	if err != nil {
		gp.mu.Unlock()
		return GroupResponse{}, err
	}
	gp.token++
	token := gp.token
	gp.waiters[token] = ch
	err = gp.settle(call(t, time.Now(), token))
	gp.mu.Unlock()
	if err != nil {
		return GroupResponse{}, errNotCoordinator(groupID, err)
	}
	select {
	case r := <-ch:
		return r, nil
	case <-ctx.Done():
		gp.mu.Lock()
		delete(gp.waiters, token)
		gp.mu.Unlock()
		select {
		case r := <-ch: // answered meanwhile
			return r, nil
		default:
		}
		return GroupResponse{}, ctx.Err()
	}
}

// JoinGroup joins a member to a group and returns when the join completes
// (the rebalance is done, or the request failed), or when ctx ends. Errors
// are for the request as a whole (NOT_COORDINATOR, ctx.Err()); group
// errors come back as the response's ErrorCode.
func (b *Broker) JoinGroup(ctx context.Context, groupID string, req GroupJoinRequest) (GroupJoinResponse, error) {
	r, err := b.waitGroupResponse(ctx, groupID, func(t *GroupTable, now time.Time, token uint64) GroupOutput {
		return t.Join(now, token, groupID, req)
	})
	if err != nil {
		return groupJoinError(req.MemberID, errorCodeOf(err)), err
	}
	return *r.Join, nil
}

// SyncGroup syncs a member and returns its assignment once the leader has
// sent it (or the request failed), or when ctx ends.
func (b *Broker) SyncGroup(ctx context.Context, groupID string, req GroupSyncRequest) (GroupSyncResponse, error) {
	r, err := b.waitGroupResponse(ctx, groupID, func(t *GroupTable, now time.Time, token uint64) GroupOutput {
		return t.Sync(now, token, groupID, req)
	})
	if err != nil {
		return groupSyncError(errorCodeOf(err)), err
	}
	return *r.Sync, nil
}

// errorCodeOf is the Kafka code an error of this file wraps.
func errorCodeOf(err error) int16 {
	var ke *kerr.Error
	if errors.As(err, &ke) {
		return ke.Code
	}
	return kerr.NotCoordinator.Code
}

// withGroupTable runs call on the group's table under its mutex and
// settles the output. The call's result is only valid with a nil error.
func (b *Broker) withGroupTable(groupID string, call func(t *GroupTable, now time.Time) GroupOutput) error {
	return b.withGroupPartition(groupID, func(_ *groupPartition, t *GroupTable, now time.Time) (GroupOutput, error) {
		return call(t, now), nil
	})
}

// withGroupPartition is withGroupTable for calls that also look at the
// partition and may refuse before touching the table: an error of call is
// returned as it is, and nothing is written.
func (b *Broker) withGroupPartition(groupID string, call func(gp *groupPartition, t *GroupTable, now time.Time) (GroupOutput, error)) error {
	gp, err := b.groupPartitionFor(groupID)
	if err != nil {
		return err
	}
	gp.mu.Lock()
	defer gp.mu.Unlock()
	t, err := gp.available(groupID)
	if err != nil {
		return err
	}
	out, err := call(gp, t, time.Now())
	if err != nil {
		return err
	}
	if err := gp.settle(out); err != nil {
		return errNotCoordinator(groupID, err)
	}
	return nil
}

// codeErr turns a group error code into an error wrapping its *kerr.Error.
func codeErr(what string, code int16) error {
	if code == 0 {
		return nil
	}
	return fmt.Errorf("%s: %w", what, kerr.ErrorForCode(code))
}

// Heartbeat keeps a member's session alive. The error wraps the group
// error (REBALANCE_IN_PROGRESS, ILLEGAL_GENERATION, UNKNOWN_MEMBER_ID,
// FENCED_INSTANCE_ID, ...).
func (b *Broker) Heartbeat(groupID string, req GroupHeartbeatRequest) error {
	var code int16
	err := b.withGroupTable(groupID, func(t *GroupTable, now time.Time) GroupOutput {
		var out GroupOutput
		code, out = t.Heartbeat(now, groupID, req)
		return out
	})
	if err != nil {
		return err
	}
	return codeErr(fmt.Sprintf("heartbeat of %q in group %q", req.MemberID, groupID), code)
}

// LeaveGroup removes members (a batch, v3+). The response carries the
// group-level code and one code per member.
func (b *Broker) LeaveGroup(groupID string, members []GroupLeaveMember) (GroupLeaveResponse, error) {
	var resp GroupLeaveResponse
	err := b.withGroupTable(groupID, func(t *GroupTable, now time.Time) GroupOutput {
		var out GroupOutput
		resp, out = t.Leave(now, groupID, members)
		return out
	})
	return resp, err
}

// OffsetCommit commits offsets; the codes parallel req.Offsets. Offsets of
// topics that do not exist get UNKNOWN_TOPIC_OR_PARTITION (Kafka checks the
// topic, not the partition); an empty group id is INVALID_GROUP_ID.
func (b *Broker) OffsetCommit(groupID string, req GroupCommitRequest) ([]int16, error) {
	codes := make([]int16, len(req.Offsets))
	if groupID == "" {
		return fillCodes(codes, kerr.InvalidGroupID.Code), fmt.Errorf("offset commit: empty group id: %w", kerr.InvalidGroupID)
	}
	var known []int
	valid := req
	valid.Offsets = nil
	for i, o := range req.Offsets {
		if _, ok := b.Topic(o.Topic); !ok {
			codes[i] = kerr.UnknownTopicOrPartition.Code
			continue
		}
		known = append(known, i)
		valid.Offsets = append(valid.Offsets, o)
	}
	if len(known) == 0 {
		return codes, nil
	}
	var got []int16
	err := b.withGroupTable(groupID, func(t *GroupTable, now time.Time) GroupOutput {
		var out GroupOutput
		got, out = t.CommitOffsets(now, groupID, valid)
		return out
	})
	return scatterCodes(codes, known, got, err)
}

// TxnOffsetCommit commits offsets as part of producerID's transaction
// (KIP-98, KIP-447): they are written at once, in a transactional batch of
// the producer, and become visible to OffsetFetch when the transaction's
// commit marker reaches the group's partition (txnMarkerWritten); an
// abort drops them. The codes parallel offsets:
//   - an empty group id: INVALID_GROUP_ID; a negative producer id:
//     INVALID_PRODUCER_ID_MAPPING; a negative epoch, or one older than the
//     producer's on the group's partition: INVALID_PRODUCER_EPOCH;
//   - a topic or partition that does not exist: UNKNOWN_TOPIC_OR_PARTITION
//     (Kafka checks both for this API);
//   - member and generation as GroupStateMachine.ValidateTxnCommit
//     (UNKNOWN_MEMBER_ID, FENCED_INSTANCE_ID, ILLEGAL_GENERATION; a
//     generation of a group that does not exist: ILLEGAL_GENERATION);
//     metadata too long: OFFSET_METADATA_TOO_LARGE;
//   - coordinator errors as for OffsetCommit (NOT_COORDINATOR,
//     COORDINATOR_LOAD_IN_PROGRESS, COORDINATOR_NOT_AVAILABLE), and
//     NOT_COORDINATOR with an error wrapping ctx.Err() when ctx ended
//     before anything was written.
//
// transactionalID names the transaction; the group's __consumer_offsets
// partition must be part of it (AddOffsetsToTxn), checked with the
// transaction coordinator as a transactional produce is (KIP-890), unless
// the partition already holds an open transaction of the producer.
func (b *Broker) TxnOffsetCommit(ctx context.Context, groupID, transactionalID string, producerID int64, producerEpoch int16,
	generation int32, memberID string, groupInstanceID *string, offsets []GroupOffsetCommit) ([]int16, error) {
	codes := make([]int16, len(offsets))
	fail := func(code int16, err error) ([]int16, error) {
		return fillCodes(codes, code), fmt.Errorf("txn offset commit of %q for %q (producer %d, epoch %d): %w", groupID, transactionalID, producerID, producerEpoch, err)
	}
	switch {
	case groupID == "":
		return fail(kerr.InvalidGroupID.Code, kerr.InvalidGroupID)
	case producerID < 0:
		return fail(kerr.InvalidProducerIDMapping.Code, kerr.InvalidProducerIDMapping)
	case producerEpoch < 0:
		return fail(kerr.InvalidProducerEpoch.Code, kerr.InvalidProducerEpoch)
	}
	if err := ctx.Err(); err != nil {
		return fail(kerr.NotCoordinator.Code, err) // as kafka's groupCode answers an ended call
	}
	req := GroupTxnCommitRequest{ProducerID: producerID, ProducerEpoch: producerEpoch,
		GroupCommitRequest: GroupCommitRequest{MemberID: memberID, GenerationID: generation}}
	if groupInstanceID != nil {
		req.InstanceID = *groupInstanceID
	}
	var known []int
	for i, o := range offsets {
		if info, ok := b.Topic(o.Topic); !ok || o.Partition < 0 || o.Partition >= info.Partitions {
			codes[i] = kerr.UnknownTopicOrPartition.Code
			continue
		}
		known = append(known, i)
		req.Offsets = append(req.Offsets, o)
	}
	if len(known) == 0 {
		return codes, nil
	}
	if n, ok := b.partitionCount(offsetsTopic); ok && transactionalID != "" {
		idx := GroupOffsetsPartition(groupID, n)
		if !b.txnOpenOn(offsetsTopic, idx, producerID, producerEpoch) {
			if err := b.verifyTxnPartition(transactionalID, producerID, producerEpoch, offsetsTopic, idx); err != nil {
				return fail(errorCodeOf(err), err)
			}
		}
	}
	var got []int16
	err := b.withGroupPartition(groupID, func(gp *groupPartition, t *GroupTable, now time.Time) (GroupOutput, error) {
		// Refuse a fenced producer before the table applies anything: a
		// refused append would cost a reload of every group here.
		if _, err := gp.p.groupTxnSequence(producerID, producerEpoch); err != nil {
			return GroupOutput{}, err
		}
		var out GroupOutput
		got, out = t.TxnCommitOffsets(now, groupID, req)
		return out, nil
	})
	return scatterCodes(codes, known, got, err)
}

// scatterCodes puts the table's codes for the known offsets (got, parallel
// to known) into codes, or err's code when the call failed as a whole.
func scatterCodes(codes []int16, known []int, got []int16, err error) ([]int16, error) {
	if err != nil {
		code := errorCodeOf(err)
		for _, i := range known {
			codes[i] = code
		}
		return codes, err
	}
	for j, i := range known {
		codes[i] = got[j]
	}
	return codes, nil
}

func fillCodes(codes []int16, code int16) []int16 {
	for i := range codes {
		codes[i] = code
	}
	return codes
}

// OffsetFetch returns committed offsets: for the requested partitions in
// request order (offset -1 where nothing is committed), or every committed
// offset of the group, sorted, when topics is nil (a topic with nil
// partitions lists that topic's committed partitions). Offsets of open
// transactions are not shown; with requireStable (KIP-447) a partition
// that has some is answered with ErrorCode UNSTABLE_OFFSET_COMMIT and
// offset -1, as Kafka 4 answers, so that the consumer retries once the
// transaction is over.
func (b *Broker) OffsetFetch(groupID string, topics []GroupFetchTopic, requireStable bool) ([]GroupOffset, error) {
	if groupID == "" {
		return nil, fmt.Errorf("offset fetch: empty group id: %w", kerr.InvalidGroupID)
	}
	var out []GroupOffset
	err := b.withGroupTable(groupID, func(t *GroupTable, _ time.Time) GroupOutput {
		g, ok := t.Group(groupID)
		var all []GroupOffset
		if ok {
			all = g.Offsets()
		}
		unstable := func(o GroupOffset) GroupOffset {
			if requireStable && ok && g.HasPendingOffset(o.Topic, o.Partition) {
				o.GroupCommittedOffset = GroupCommittedOffset{Offset: -1, LeaderEpoch: -1, ExpireTimestamp: -1}
				o.ErrorCode = kerr.UnstableOffsetCommit.Code
			}
			return o
		}
		if topics == nil {
			out = all // Offsets returned a fresh slice
			for i := range out {
				out[i] = unstable(out[i])
			}
			return GroupOutput{}
		}
		for _, ft := range topics {
			if ft.Partitions == nil {
				for _, o := range all {
					if o.Topic == ft.Topic {
						out = append(out, unstable(o))
					}
				}
				continue
			}
			for _, p := range ft.Partitions {
				o := GroupOffset{
					GroupTopicPartition:  GroupTopicPartition{ft.Topic, p},
					GroupCommittedOffset: GroupCommittedOffset{Offset: -1, LeaderEpoch: -1, ExpireTimestamp: -1},
				}
				if ok {
					if v, found := g.Offset(ft.Topic, p); found {
						o.GroupCommittedOffset = v
					}
				}
				out = append(out, unstable(o))
			}
		}
		return GroupOutput{}
	})
	return out, err
}

// DescribeGroup describes one group. A group that does not exist is
// reported with State GroupDead and an error wrapping GROUP_ID_NOT_FOUND
// (DescribeGroups v6+ reports that code; older versions just the state).
func (b *Broker) DescribeGroup(groupID string) (GroupDescription, error) {
	if groupID == "" {
		return GroupDescription{GroupID: groupID, State: GroupDead}, fmt.Errorf("describe group: empty group id: %w", kerr.InvalidGroupID)
	}
	var (
		d     GroupDescription
		found bool
	)
	err := b.withGroupTable(groupID, func(t *GroupTable, _ time.Time) GroupOutput {
		d, found = t.Describe(groupID)
		return GroupOutput{}
	})
	if err != nil {
		return GroupDescription{GroupID: groupID, State: GroupDead}, err
	}
	d.Members = slices.Clone(d.Members)
	for i := range d.Members {
		d.Members[i].Metadata = bytes.Clone(d.Members[i].Metadata)
		d.Members[i].Assignment = bytes.Clone(d.Members[i].Assignment)
	}
	if !found {
		return d, fmt.Errorf("group %q: %w", groupID, kerr.GroupIDNotFound)
	}
	return d, nil
}

// ListGroups lists every group, sorted by id. states and types filter
// (case-insensitively, as Kafka): states by GroupState names, types by
// group type, which is "classic" for every group here.
func (b *Broker) ListGroups(states, types []string) ([]GroupListing, error) {
	c := b.groups
	if c == nil || b.closed.Load() {
		return nil, fmt.Errorf("list groups: %w", kerr.CoordinatorNotAvailable)
	}
	if len(types) > 0 && !slices.ContainsFunc(types, func(t string) bool { return strings.EqualFold(t, "classic") }) {
		return nil, nil
	}
	var filter []GroupState
	for _, s := range states {
		for st := GroupEmpty; st <= GroupDead; st++ {
			if strings.EqualFold(s, st.String()) {
				filter = append(filter, st)
			}
		}
	}
	if len(states) > 0 && len(filter) == 0 {
		return nil, nil
	}
	var out []GroupListing
	for _, gp := range c.partitions() {
		gp.mu.Lock()
		if gp.active() {
			out = append(out, gp.table.List(filter...)...)
		}
		gp.mu.Unlock()
	}
	slices.SortFunc(out, func(x, y GroupListing) int { return strings.Compare(x.GroupID, y.GroupID) })
	return out, nil
}

// DeleteGroup deletes an Empty group and its offsets: NON_EMPTY_GROUP while
// it has members, GROUP_ID_NOT_FOUND if there is none.
func (b *Broker) DeleteGroup(groupID string) error {
	if groupID == "" {
		return fmt.Errorf("delete group: empty group id: %w", kerr.InvalidGroupID)
	}
	var code int16
	err := b.withGroupTable(groupID, func(t *GroupTable, now time.Time) GroupOutput {
		var out GroupOutput
		code, out = t.Delete(now, groupID)
		return out
	})
	if err != nil {
		return err
	}
	return codeErr(fmt.Sprintf("delete group %q", groupID), code)
}

// OffsetDelete deletes committed offsets of a group. The error is the
// group-level one (GROUP_ID_NOT_FOUND, NON_EMPTY_GROUP, ...); otherwise the
// codes parallel partitions (GROUP_SUBSCRIBED_TO_TOPIC for topics the
// group's members consume; UNKNOWN_TOPIC_OR_PARTITION for topics that do
// not exist, as Kafka).
func (b *Broker) OffsetDelete(groupID string, partitions []GroupTopicPartition) ([]int16, error) {
	if groupID == "" {
		return nil, fmt.Errorf("offset delete: empty group id: %w", kerr.InvalidGroupID)
	}
	codes := make([]int16, len(partitions))
	var known []int
	var valid []GroupTopicPartition
	for i, tp := range partitions {
		if _, ok := b.Topic(tp.Topic); !ok {
			codes[i] = kerr.UnknownTopicOrPartition.Code
			continue
		}
		known = append(known, i)
		valid = append(valid, tp)
	}
	var (
		code int16
		got  []int16
	)
	err := b.withGroupTable(groupID, func(t *GroupTable, now time.Time) GroupOutput {
		var out GroupOutput
		code, got, out = t.DeleteOffsets(now, groupID, valid)
		return out
	})
	if err != nil {
		return nil, err
	}
	if code != 0 {
		return nil, codeErr(fmt.Sprintf("offset delete in group %q", groupID), code)
	}
	for j, i := range known {
		codes[i] = got[j]
	}
	return codes, nil
}

// ExpireGroupOffsets applies offsets.retention.minutes now (the background
// worker does every OffsetsRetentionCheckInterval) and returns how many
// records (tombstones) it wrote.
func (b *Broker) ExpireGroupOffsets() int {
	if b.groups == nil || b.closed.Load() {
		return 0
	}
	return b.groups.expireOffsets()
}

// CompactGroupOffsets compacts every __consumer_offsets partition that
// holds more records than live keys now (normally compaction runs by
// itself, see coordinator_log.go) and returns how many it compacted.
func (b *Broker) CompactGroupOffsets() int {
	if b.groups == nil || b.closed.Load() {
		return 0
	}
	n := 0
	for _, gp := range b.groups.partitions() {
		gp.mu.Lock()
		if gp.active() {
			records := gp.p.highWatermark.Load() - gp.p.logStartOffset.Load()
			if records > groupLiveKeys(gp.table) && gp.compact(time.Now()) {
				n++
			}
		}
		gp.mu.Unlock()
	}
	return n
}
