package broker

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// GroupReplayer rebuilds a partition's groups and offsets from its
// __consumer_offsets records, read in log order at start-up or when this
// node becomes the partition's leader. Later records win; tombstones
// delete. As in Kafka, a group whose metadata was tombstoned but that still
// has offsets comes back as an Empty group that only stores offsets.
//
// Records of transactional batches go to ApplyTxn and commit or abort
// markers to ApplyMarker, in log order with the rest: offsets of open
// transactions stay pending, as group_txn.go describes.
//
// Replay is the hot path of recovery (a partition may hold millions of
// commits), so offset records are decoded without copying, and strings are
// allocated only the first time a group or topic is seen: topic names are
// interned, which also lets every group share them.
type GroupReplayer struct {
	cfg      GroupConfig
	groups   map[string]*groupReplayState
	topics   map[string]string // interned topic names
	skipped  int
	openTxns map[int64]map[string]struct{} // as GroupTable.openTxns

	// A commit writes all of a group's partitions in one batch, so
	// consecutive records mostly share group and topic: remember the last
	// ones and skip the map lookups.
	lastGroup string
	lastState *groupReplayState
	lastTopic string
}

type groupReplayState struct {
	id      string                   // the group id, owned
	meta    *kmsg.GroupMetadataValue // latest metadata; nil if none or deleted
	offsets map[GroupTopicPartition]GroupCommittedOffset
	txn     groupTxnOffsets
}

// NewGroupReplayer returns a replayer; cfg is given to the rebuilt groups.
func NewGroupReplayer(cfg GroupConfig) *GroupReplayer {
	return &GroupReplayer{cfg: cfg, groups: make(map[string]*groupReplayState), topics: make(map[string]string)}
}

// Apply replays one record; value nil is a tombstone. Records of types
// classic groups do not use are skipped (see Skipped). A corrupt record is
// not applied and its error (wrapping ErrGroupRecordCorrupt) returned: the
// caller decides whether to stop or to log it and go on. key and value may
// be reused after Apply returns.
func (r *GroupReplayer) Apply(key, value []byte) error {
	if len(key) >= 2 {
		if v := int16(binary.BigEndian.Uint16(key)); v == 0 || v == 1 {
			return r.applyOffset(key, value, -1)
		}
	}
	rec, err := GroupDecodeRecord(key, value)
	if errors.Is(err, ErrGroupRecordUnknown) {
		r.skipped++
		return nil
	}
	if err != nil {
		return err
	}
	st := r.state(rec.Group, true)
	st.meta = rec.Metadata // nil for a tombstone
	return nil
}

// Skipped returns how many records were skipped as unknown types.
func (r *GroupReplayer) Skipped() int { return r.skipped }

// applyOffset replays an offset commit record; pending (producerID >= 0)
// for one of a transactional batch.
func (r *GroupReplayer) applyOffset(key, value []byte, producerID int64) error {
	var k kmsg.OffsetCommitKey
	if err := k.UnsafeReadFrom(key); err != nil { // strings alias key
		return fmt.Errorf("%w: offset commit key: %v", ErrGroupRecordCorrupt, err)
	}
	if value == nil {
		// A tombstone, transactional or not, removes the committed and
		// the pending offsets (Kafka 4).
		if st := r.state(k.Group, false); st != nil {
			tp := GroupTopicPartition{k.Topic, k.Partition}
			delete(st.offsets, tp)
			if st.txn.len() > 0 {
				st.txn.drop(tp)
			}
		}
		return nil
	}
	var v kmsg.OffsetCommitValue
	if err := groupReadOffsetValue(&v, value, true); err != nil { // Metadata aliases value
		return fmt.Errorf("offset commit %s %s-%d: %w", k.Group, k.Topic, k.Partition, err)
	}
	o := groupCommittedOffsetOf(&v)
	st := r.state(k.Group, true)
	// The map key must hold the interned topic, never the aliased one:
	// assigning to an existing key may store the new key's string.
	tp := GroupTopicPartition{r.intern(k.Topic), k.Partition}
	if producerID >= 0 {
		o.Metadata = strings.Clone(o.Metadata)
		st.txn.add(producerID, tp, o)
		r.openTxn(producerID, st.id)
		return nil
	}
	if o.Metadata != "" {
		if cur, ok := st.offsets[tp]; ok && cur.Metadata == o.Metadata {
			o.Metadata = cur.Metadata
		} else {
			o.Metadata = strings.Clone(o.Metadata)
		}
	}
	st.offsets[tp] = o
	if st.txn.len() > 0 {
		st.txn.supersede(tp)
	}
	return nil
}

// ApplyTxn replays one record of a transactional batch of producerID: an
// offset commit becomes a pending offset of the producer's open
// transaction. Anything else is applied as Apply applies it (Chronik
// writes only offset commits in transactional batches; Kafka 4 replays a
// tombstone the same whatever its batch). Errors are Apply's.
func (r *GroupReplayer) ApplyTxn(producerID int64, key, value []byte) error {
	if producerID >= 0 && value != nil && len(key) >= 2 {
		if v := int16(binary.BigEndian.Uint16(key)); v == 0 || v == 1 {
			return r.applyOffset(key, value, producerID)
		}
	}
	return r.Apply(key, value)
}

// ApplyMarker replays producerID's commit (commit) or abort marker: the
// pending offsets of its open transaction are materialized or dropped
// (GroupTable.CompleteTxn).
func (r *GroupReplayer) ApplyMarker(producerID int64, commit bool) {
	groups, ok := r.openTxns[producerID]
	if !ok {
		return
	}
	delete(r.openTxns, producerID)
	for id := range groups {
		if st := r.groups[id]; st != nil {
			st.txn.complete(producerID, commit, st.offsets)
		}
	}
}

func (r *GroupReplayer) openTxn(producerID int64, groupID string) {
	if r.openTxns == nil {
		r.openTxns = make(map[int64]map[string]struct{})
	}
	groups := r.openTxns[producerID]
	if groups == nil {
		groups = make(map[string]struct{})
		r.openTxns[producerID] = groups
	}
	groups[groupID] = struct{}{}
}

// intern returns the replayer's copy of topic.
func (r *GroupReplayer) intern(topic string) string {
	if topic == r.lastTopic {
		return r.lastTopic
	}
	s, ok := r.topics[topic]
	if !ok {
		s = strings.Clone(topic)
		r.topics[s] = s
	}
	r.lastTopic = s
	return s
}

// state returns the group's replay state, creating it if create is set.
// group may alias a record: it is copied before it is stored.
func (r *GroupReplayer) state(group string, create bool) *groupReplayState {
	if r.lastState != nil && group == r.lastGroup {
		return r.lastState
	}
	st := r.groups[group]
	if st == nil {
		if !create {
			return nil
		}
		st = &groupReplayState{id: strings.Clone(group), offsets: make(map[GroupTopicPartition]GroupCommittedOffset)}
		r.groups[st.id] = st
	}
	r.lastGroup, r.lastState = st.id, st
	return st
}

// Finish builds the GroupTable. Members of restored groups get their
// session timers restarted from now, as Kafka does on load: none of them
// could heartbeat to this coordinator before.
func (r *GroupReplayer) Finish(now time.Time) *GroupTable {
	t := NewGroupTable(r.cfg)
	for id, st := range r.groups {
		if st.meta == nil && len(st.offsets) == 0 && st.txn.len() == 0 {
			continue
		}
		g := NewGroupStateMachine(id, t.cfg, now)
		g.offsets = st.offsets
		g.txn = st.txn
		if st.meta != nil {
			g.load(st.meta, now)
		}
		t.groups[id] = g
	}
	t.openTxns, r.openTxns = r.openTxns, nil
	r.groups = make(map[string]*groupReplayState)
	r.topics = make(map[string]string)
	r.lastGroup, r.lastState, r.lastTopic = "", nil, ""
	return t
}

// load restores the group recorded in v: Stable with its members and their
// assignments, or Empty. A group loaded over group.max.size rebalances so
// that the excess members are turned away when they rejoin.
func (g *GroupStateMachine) load(v *kmsg.GroupMetadataValue, now time.Time) {
	g.generation = v.Generation
	g.protocolType = v.ProtocolType
	if v.Protocol != nil && len(v.Members) > 0 {
		// Kafka writes no protocol for a group without members; one
		// that does is damaged, and an Empty group has none.
		g.protocolName, g.hasProtocol = *v.Protocol, true
	}
	if v.Leader != nil {
		g.leaderID = *v.Leader
	}
	g.stateTimestamp = v.CurrentStateTimestamp
	for _, vm := range v.Members {
		if g.byID[vm.MemberID] != nil {
			continue // a corrupt duplicate; keep the first
		}
		m := &groupMember{
			memberID:           vm.MemberID,
			clientID:           vm.ClientID,
			clientHost:         vm.ClientHost,
			rebalanceTimeoutMs: vm.RebalanceTimeoutMillis,
			sessionTimeoutMs:   vm.SessionTimeoutMillis,
			protocolType:       v.ProtocolType,
			protocols:          []GroupProtocol{{Name: g.protocolName, Metadata: vm.Subscription}},
			assignment:         vm.Assignment,
		}
		if vm.InstanceID != nil {
			m.instanceID = *vm.InstanceID
		}
		if v.Version == 0 || m.rebalanceTimeoutMs <= 0 {
			m.rebalanceTimeoutMs = m.sessionTimeoutMs // v0 has none
		}
		if m.assignment == nil {
			m.assignment = []byte{}
		}
		g.addMember(m)
		g.scheduleSession(m, now)
	}
	if g.byID[g.leaderID] == nil {
		g.leaderID = ""
		if len(g.members) > 0 {
			g.leaderID = g.members[0].memberID
		}
	}
	g.state = GroupEmpty
	if len(g.members) > 0 {
		g.state = GroupStable
	}
	g.computeSubscribedTopics()
	if g.cfg.MaxSize > 0 && len(g.members) > g.cfg.MaxSize {
		g.prepareRebalance(now)
	}
}
