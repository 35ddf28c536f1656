package broker

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"maps"
	"os"
	"slices"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
)

// Cluster mode's metadata: the metadata log is the controller group's raft
// log. Admin calls check under adminMu as standalone, release it, propose
// one record and wait until it is applied here; ApplyMeta, run on every
// node in log order, folds each committed record into the state and opens,
// closes or reconfigures the partitions this node hosts. Two proposals may
// race (two creates of one name): the second one's record does not apply
// (metaState.apply refuses it the same way on every node), and its proposer
// finds out by looking at the state afterwards.

// proposeTimeout bounds one metadata proposal.
// Below clients' request timeouts, so that they see NOT_CONTROLLER or
// REQUEST_TIMED_OUT and retry rather than time out themselves.
const proposeTimeout = 5 * time.Second

// openClustered is Open's cluster path: replay what is committed, open the
// hosted partitions, start the controller group, register this node.
func (b *Broker) openClustered(r Replication) error {
	ctl, committed, err := r.Controller(b.meta, b)
	if err != nil {
		return fmt.Errorf("broker: controller group: %w", err)
	}
	b.ctl = ctl
	// Before Start the controller lists the configured peers; afterwards
	// the voters, which grow from one node while the cluster forms.
	b.groups.clusterNodes = len(ctl.Nodes())
	if _, err := b.foldMeta(min(committed, b.meta.LastIndex()), false); err != nil {
		return err
	}
	b.clusterID = b.state.clusterID
	for id := range b.state.removed {
		r.NodeRemoved(id)
	}
	// This node's newest producer id block may have been used before the
	// restart: the first InitProducerID asks for a fresh one.
	b.openTopics()
	if err := ctl.Start(); err != nil {
		return fmt.Errorf("broker: start controller group: %w", err)
	}
	b.wg.Add(1)
	go b.register()
	return nil
}

// register proposes the cluster id (when none is set yet) and this node's
// Kafka address until both are in the metadata, retrying while the
// controller group has no leader.
func (b *Broker) register() {
	defer b.wg.Done()
	self := metaBroker{Node: b.cfg.NodeID, Host: b.cfg.AdvertisedHost, Port: b.cfg.AdvertisedPort}
	for delay := 50 * time.Millisecond; ; delay = min(2*delay, time.Second) {
		b.adminMu.Lock()
		needID := b.state.clusterID == ""
		registered := b.state.brokers[self.Node] == self
		// A producer id block in hand, so that InitProducerID is answered
		// here without a controller round trip (or a controller at all).
		needBlock := b.nextProducerID >= b.producerIDEnd
		b.adminMu.Unlock()
		var err error
		switch {
		case needID:
			id := b.cfg.ClusterID
			if id == "" {
				id = newClusterID()
			}
			err = b.propose(metaRecord{Type: metaClusterID, ClusterID: id})
		case !registered:
			err = b.propose(metaRecord{Type: metaBrokerRegistered, Node: self.Node, Host: self.Host, Port: self.Port})
		case needBlock:
			err = b.propose(metaRecord{Type: metaProducerIDBlock, Node: self.Node})
		default:
			b.logger.Info().Int32("node", self.Node).Str("cluster_id", b.ClusterID()).Msg("registered with the controller")
			return
		}
		if err != nil {
			b.logger.Debug().Err(err).Msg("registration not committed yet; retrying")
		}
		select {
		case <-b.stop:
			return
		case <-time.After(delay):
		}
	}
}

// propose replicates one metadata record through the controller group.
// Caller must not hold adminMu: ApplyMeta takes it.
func (b *Broker) propose(rec metaRecord) error {
	ctx, cancel := context.WithTimeout(context.Background(), proposeTimeout)
	defer cancel()
	if err := b.ctl.Propose(ctx, encodeMetaRecord(rec)); err != nil {
		var ke *kerr.Error
		if !errors.As(err, &ke) {
			err = fmt.Errorf("%w: %w", kerr.RequestTimedOut, err)
		}
		return fmt.Errorf("metadata %s: %w", rec.Type, err)
	}
	return nil
}

// proposeLocked is propose for a caller holding adminMu: it is released
// while the record replicates and held again on return.
func (b *Broker) proposeLocked(rec metaRecord) error {
	b.adminMu.Unlock()
	defer b.adminMu.Lock()
	return b.propose(rec)
}

// ApplyMeta implements ControllerEvents: one committed metadata record, on
// every node, in log order.
func (b *Broker) ApplyMeta(record []byte) {
	rec, err := decodeMetaRecord(record)
	if err != nil {
		b.logger.Error().Err(err).Msg("undecodable metadata record skipped")
		return
	}
	b.adminMu.Lock()
	defer b.adminMu.Unlock()
	if b.closed.Load() {
		return
	}
	prev := b.state.topics[rec.Topic]
	if err := b.state.apply(rec); err != nil {
		b.logger.Debug().Err(err).Str("type", rec.Type).Msg("metadata record not applied")
		return
	}
	switch rec.Type {
	case metaClusterID:
		b.mu.Lock()
		b.clusterID = b.state.clusterID
		b.mu.Unlock()
	case metaProducerIDBlock:
		if rec.Node == b.cfg.NodeID {
			b.takeProducerBlock()
		}
	case metaBrokerRemoved:
		b.mu.Lock()
		for name, t := range b.topics {
			t.meta = b.state.topics[name]
		}
		b.mu.Unlock()
		b.cfg.Replication.NodeRemoved(rec.Node)
		b.logger.Info().Int32("node", rec.Node).Msg("node removed from the cluster")
	case metaTopicCreated:
		tm := b.state.topics[rec.Topic]
		t := b.newTopic(tm)
		parts := b.openHosted(t, 0, tm.partitions)
		b.mu.Lock()
		t.partitions = parts
		b.topics[t.name], b.byID[t.id] = t, t
		b.mu.Unlock()
		b.logger.Info().Str("topic", rec.Topic).Int32("partitions", tm.partitions).Msg("topic created")
	case metaPartitionsAdded:
		tm := b.state.topics[rec.Topic]
		b.mu.Lock()
		t := b.topics[rec.Topic]
		t.meta = tm // before opening: the new partitions' groups are in it
		b.mu.Unlock()
		parts := b.openHosted(t, prev.partitions, tm.partitions)
		b.mu.Lock()
		t.partitions = append(slices.Clip(t.partitions), parts...)
		b.mu.Unlock()
	case metaConfigsAltered:
		tm := b.state.topics[rec.Topic]
		tc := effectiveTopicConfig(&b.cfg, tm.configs)
		b.mu.Lock()
		t := b.topics[rec.Topic]
		t.meta = tm
		t.cfg.Store(&tc)
		b.mu.Unlock()
	case metaTopicDeleted:
		b.mu.Lock()
		t := b.topics[rec.Topic]
		delete(b.topics, rec.Topic)
		delete(b.byID, prev.id)
		b.mu.Unlock()
		for _, p := range t.partitions {
			if p != nil {
				if err := p.close(true); err != nil {
					b.logger.Warn().Err(err).Msg("close deleted partition")
				}
			}
		}
		if err := os.RemoveAll(b.topicDir(prev.id)); err != nil {
			b.logger.Warn().Err(err).Str("topic", rec.Topic).Msg("remove deleted topic's data")
		}
		b.groups.removeTopicOffsets(rec.Topic)
		b.logger.Info().Str("topic", rec.Topic).Msg("topic deleted")
	case metaReplicasAdded:
		b.applyReplicasAdded(rec)
	}
}

// applyReplicasAdded follows a partition's grown replica list: a node that
// hosts the partition passes the list to its replica (the leader adds the
// new voters); a node that was added opens the partition, empty, and waits
// to be added. adminMu held.
func (b *Broker) applyReplicasAdded(rec metaRecord) {
	tm := b.state.topics[rec.Topic]
	b.mu.Lock()
	t := b.topics[rec.Topic]
	var p *partition
	if t != nil {
		t.meta = tm
		if int(rec.Partition) < len(t.partitions) {
			p = t.partitions[rec.Partition]
		}
	}
	b.mu.Unlock()
	if t == nil || int(rec.Partition) >= len(t.partitions) {
		return
	}
	replicas := tm.replicas[rec.Partition]
	if p != nil {
		if r := p.repl(); r != nil {
			r.SetReplicas(replicas)
		}
		return
	}
	if !slices.Contains(rec.Added, b.cfg.NodeID) {
		// Only an added node opens the partition here (and joins the
		// group); an original replica that is not open must not
		// bootstrap the group with the grown list.
		return
	}
	np, err := b.openPartition(t, rec.Partition)
	if err != nil {
		b.logger.Error().Err(err).Str("topic", rec.Topic).Int32("partition", rec.Partition).Msg("open an added replica")
		return
	}
	b.mu.Lock()
	t.partitions[rec.Partition] = np
	b.mu.Unlock()
	b.logger.Info().Str("topic", rec.Topic).Int32("partition", rec.Partition).Ints32("replicas", replicas).
		Msg("replica added here; catching up from the leader")
}

// openHosted opens the partitions in [from, to) that this node replicates;
// the others stay nil. A partition that fails to open is faulted (logged,
// retried unless corrupt): the group goes on on the other replicas.
func (b *Broker) openHosted(t *topic, from, to int32) []*partition {
	parts := make([]*partition, to-from)
	for i := from; i < to; i++ {
		if b.hosts(t.meta, i) {
			parts[i-from] = b.openOrFault(t, i)
		}
	}
	return parts
}

// hosts reports whether this node replicates partition i of a topic.
// Standalone every partition is local; so are topics created before the
// node joined a cluster (no assignment: every node).
func (b *Broker) hosts(tm *topicMeta, i int32) bool {
	if b.ctl == nil || tm.replicas == nil {
		return true
	}
	return slices.Contains(tm.replicas[i], b.cfg.NodeID)
}

// spec describes partition i of a topic: its replicas (standalone this
// node) and, in a cluster, its raft group.
func (b *Broker) spec(t *topic, i int32) ReplicaSpec {
	s := ReplicaSpec{Topic: t.name, TopicID: t.id, Partition: i}
	if int(i) < len(t.meta.groups) {
		s.Group = t.meta.groups[i]
	}
	switch {
	case b.ctl == nil:
		s.Replicas = []int32{b.cfg.NodeID}
	case t.meta.replicas != nil:
		s.Replicas = t.meta.replicas[i]
		s.Fresh = true
		if int(i) < len(t.meta.joined) && slices.Contains(t.meta.joined[i], b.cfg.NodeID) {
			s.Fresh, s.Join = false, true
		}
	default:
		s.Replicas = b.ctl.Nodes()
	}
	return s
}

// assignReplicas picks replicas for partitions [from, to) of a topic:
// consecutive nodes starting at a per-topic offset, so preferred leaders
// (the first replica) spread across nodes within and across topics.
func assignReplicas(name string, nodes []int32, rf int, from, to int32) [][]int32 {
	nodes = slices.Sorted(slices.Values(nodes))
	h := fnv.New32a()
	h.Write([]byte(name))
	start := int(h.Sum32() % uint32(len(nodes)))
	out := make([][]int32, 0, to-from)
	for i := from; i < to; i++ {
		r := make([]int32, rf)
		for k := range r {
			r[k] = nodes[(start+int(i)+k)%len(nodes)]
		}
		out = append(out, r)
	}
	return out
}

// assignable are the nodes new replicas may go to: the registered brokers
// (they have run and said where clients reach them), or the controller's
// voters before any registered. Caller holds adminMu.
func (b *Broker) assignable() []int32 {
	if len(b.state.brokers) == 0 {
		return b.ctl.Nodes()
	}
	return slices.Sorted(maps.Keys(b.state.brokers))
}

// replicationFactor checks a requested replication factor against the
// cluster (-1: min(3, nodes)).
func (b *Broker) replicationFactor(rf int16) (int, error) {
	n := len(b.assignable())
	if rf == -1 {
		return min(3, n), nil
	}
	if rf < 1 || int(rf) > n {
		return 0, fmt.Errorf("replication factor %d, the cluster has %d nodes: %w", rf, n, kerr.InvalidReplicationFactor)
	}
	return int(rf), nil
}

// createTopicClustered is CreateTopic's cluster path, after the checks
// shared with standalone. Caller holds adminMu.
func (b *Broker) createTopicClustered(info TopicInfo, rf int16, set map[string]string, validateOnly bool) (TopicInfo, error) {
	n, err := b.replicationFactor(rf)
	if err != nil {
		return TopicInfo{}, err
	}
	if validateOnly {
		return info, nil
	}
	id := newTopicID()
	rec := metaRecord{Type: metaTopicCreated, Topic: info.Name, ID: topicIDHex(id), Partitions: info.Partitions, Configs: set,
		Replicas: assignReplicas(info.Name, b.assignable(), n, 0, info.Partitions)}
	if err := b.proposeLocked(rec); err != nil {
		return TopicInfo{}, fmt.Errorf("create topic %q: %w", info.Name, err)
	}
	if tm := b.state.topics[info.Name]; tm == nil || tm.id != id {
		return TopicInfo{}, fmt.Errorf("topic %q was created concurrently: %w", info.Name, kerr.TopicAlreadyExists)
	}
	info.ID = id
	info.Configs = maps.Clone(set)
	return info, nil
}

// takeProducerBlock moves this node to the block just allocated to it.
// Caller holds adminMu.
func (b *Broker) takeProducerBlock() {
	if start, ok := b.state.nodeBlocks[b.cfg.NodeID]; ok {
		b.nextProducerID = start
		b.producerIDEnd = start + producerIDBlockSize
	}
}

// ControllerID is the controller leader's node id (standalone: this node).
func (b *Broker) ControllerID() int32 {
	if b.ctl == nil {
		return b.cfg.NodeID
	}
	return b.ctl.Leader()
}

// BrokerInfo is one node as Metadata lists it.
type BrokerInfo struct {
	NodeID int32
	Host   string
	Port   int32
}

// Brokers lists the cluster's nodes with their Kafka addresses (standalone:
// this node).
func (b *Broker) Brokers() []BrokerInfo {
	self := BrokerInfo{NodeID: b.cfg.NodeID, Host: b.cfg.AdvertisedHost, Port: b.cfg.AdvertisedPort}
	if b.ctl == nil {
		return []BrokerInfo{self}
	}
	b.adminMu.Lock()
	out := make([]BrokerInfo, 0, len(b.state.brokers)+1)
	for _, id := range slices.Sorted(maps.Keys(b.state.brokers)) {
		br := b.state.brokers[id]
		if id != self.NodeID && !b.cfg.Replication.Alive(id) {
			continue // as Kafka leaves out brokers that are not live
		}
		out = append(out, BrokerInfo{NodeID: br.Node, Host: br.Host, Port: br.Port})
	}
	b.adminMu.Unlock()
	if !slices.ContainsFunc(out, func(x BrokerInfo) bool { return x.NodeID == self.NodeID }) {
		out = append(out, self) // registration not committed yet
	}
	return out
}

// PartitionReplicas lists a partition's replicas (standalone: this node).
func (b *Broker) PartitionReplicas(topic string, partition int32) []int32 {
	b.mu.RLock()
	defer b.mu.RUnlock()
	t := b.topics[topic]
	if t == nil || partition < 0 || partition >= t.meta.partitions {
		return nil
	}
	return b.spec(t, partition).Replicas
}

// UnregisterBroker removes a node from the cluster (Kafka's
// UnregisterBroker, `chronik cluster remove-node`): it leaves the
// controller group, every partition's replica list and the broker list.
// Partitions it replicated keep one replica fewer; nothing is moved.
// Standalone there is nothing to remove: this node's own id is
// INVALID_REQUEST, any other BROKER_ID_NOT_REGISTERED.
func (b *Broker) UnregisterBroker(id int32) error {
	if b.ctl == nil {
		if id == b.cfg.NodeID {
			return fmt.Errorf("node %d is this standalone broker, the only node: %w", id, kerr.InvalidRequest)
		}
		return fmt.Errorf("node %d: %w", id, kerr.BrokerIDNotRegistered)
	}
	b.adminMu.Lock()
	defer b.adminMu.Unlock()
	if b.closed.Load() {
		return ErrClosed
	}
	nodes := b.ctl.Nodes()
	if b.state.removed[id] || !slices.Contains(nodes, id) {
		return fmt.Errorf("node %d is not a member of the cluster (%v): %w", id, nodes, kerr.BrokerIDNotRegistered)
	}
	if len(nodes) == 1 {
		return fmt.Errorf("node %d is the cluster's last node: %w", id, kerr.InvalidRequest)
	}
	before := maps.Clone(b.state.topics) // apply replaces topics, never mutates one
	if err := b.proposeLocked(metaRecord{Type: metaBrokerRemoved, Node: id}); err != nil {
		return fmt.Errorf("remove node %d: %w", id, err)
	}
	b.replaceReplicasLocked(before, id)
	return nil
}

// replaceReplicasLocked gives every partition that had node gone among its
// replicas a replacement, as decommissioning in Redpanda does: the
// registered node, not yet a replica, that hosts the fewest replicas. The
// new replica catches up from the leader (a raft snapshot if retention
// removed the start of the log). With no node to spare the partition keeps
// one replica fewer. Failures are logged: the removal stands. adminMu held
// (released while proposing).
func (b *Broker) replaceReplicasLocked(before map[string]*topicMeta, gone int32) {
	load := map[int32]int{}
	for id := range b.state.brokers {
		if !b.state.removed[id] {
			load[id] = 0
		}
	}
	for _, t := range b.state.topics {
		for _, rs := range t.replicas {
			for _, id := range rs {
				if _, ok := load[id]; ok {
					load[id]++
				}
			}
		}
	}
	type change struct {
		topic string
		id    [16]byte
		part  int32
	}
	var changes []change
	for _, name := range slices.Sorted(maps.Keys(before)) {
		old := before[name]
		for p, rs := range old.replicas {
			if slices.Contains(rs, gone) {
				changes = append(changes, change{name, old.id, int32(p)})
			}
		}
	}
	replaced := 0
	for _, c := range changes {
		t := b.state.topics[c.topic]
		if t == nil || t.id != c.id || int(c.part) >= len(t.replicas) {
			continue // deleted meanwhile
		}
		pick := int32(-1)
		for _, id := range slices.Sorted(maps.Keys(load)) {
			if !slices.Contains(t.replicas[c.part], id) && (pick < 0 || load[id] < load[pick]) {
				pick = id
			}
		}
		if pick < 0 {
			continue
		}
		err := b.proposeLocked(metaRecord{Type: metaReplicasAdded, Topic: c.topic, ID: topicIDHex(c.id), Partition: c.part, Added: []int32{pick}})
		if err != nil {
			b.logger.Warn().Err(err).Str("topic", c.topic).Int32("partition", c.part).Int32("node", pick).Msg("replace a removed node's replica")
			continue
		}
		load[pick]++
		replaced++
	}
	if len(changes) > 0 {
		b.logger.Info().Int32("node", gone).Int("partitions", len(changes)).Int("replaced", replaced).
			Msg("replicas of the removed node replaced")
	}
}
