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

// Metadata changes take one path in both modes. An admin call checks the
// change against the state (under proposeMu and adminMu), proposes one
// record through b.metadata and waits until it is applied here; ApplyMeta,
// run on every node in log order, folds each committed record into the
// state and opens, closes or reconfigures the partitions this node hosts.
// b.metadata is chosen once, in Open: localMeta (meta_local.go) appends to the
// local metadata log and applies at once; with Replication it is the
// controller raft group. Two proposals from different nodes may race (two
// creates of one name): the second one's record does not apply
// (metaState.apply refuses it the same way on every node), and its
// proposer finds out by looking at the state afterwards. Proposals from
// one node never race: proposeMu makes the check and the proposal one step.

// proposeTimeout bounds one metadata proposal.
// Below clients' request timeouts, so that they see NOT_CONTROLLER or
// REQUEST_TIMED_OUT and retry rather than time out themselves.
const proposeTimeout = 5 * time.Second

// metaController is the metadata log's Controller as the broker drives it,
// plus the few facts about the cluster that metadata decisions ask. Open
// picks the implementation once: localMeta for a broker that is its own
// cluster, replicatedMeta for the controller raft group.
type metaController interface {
	Controller
	// alive reports whether a node is reachable from here now: Metadata
	// lists only live brokers, so that clients do not pick a dead one.
	alive(id int32) bool
	// nodeRemoved tells the replication layer that a node left the
	// cluster (Replication.NodeRemoved).
	nodeRemoved(id int32)
	// assignsReplicas reports whether a new topic's partitions get replica
	// lists. Without them (nil) a partition lives on every node.
	assignsReplicas() bool
}

// replicatedMeta is the controller raft group (Replication.Controller).
type replicatedMeta struct {
	Controller
	r Replication
}

func (c replicatedMeta) alive(id int32) bool { return c.r.Alive(id) }

func (c replicatedMeta) nodeRemoved(id int32) { c.r.NodeRemoved(id) }

// assignsReplicas: nodes join and leave, so every partition says where it
// lives.
func (replicatedMeta) assignsReplicas() bool { return true }

// openReplicated is Open for a node of a cluster: replay what is
// committed, open the hosted partitions, start the controller group,
// register this node, and let the group coordinator follow the leaders of
// __consumer_offsets.
func (b *Broker) openReplicated(r Replication) error {
	// The coordinator exists before any partition opens: leadership
	// events of __consumer_offsets partitions find it.
	b.groups = b.newGroupCoordinator()
	ctl, committed, err := r.Controller(b.meta, b)
	if err != nil {
		return fmt.Errorf("broker: controller group: %w", err)
	}
	b.metadata = replicatedMeta{Controller: ctl, r: r}
	fail := func(err error) error {
		if cerr := ctl.Close(); cerr != nil {
			b.logger.Warn().Err(cerr).Msg("close controller group")
		}
		return err
	}
	// Before Start the controller lists the configured peers; afterwards
	// the voters, which grow from one node while the cluster forms.
	b.groups.clusterNodes = len(ctl.Nodes())
	// Not strict: a record that lost a race with another node's proposal
	// is skipped on every node alike.
	if _, err := b.foldMeta(min(committed, b.meta.LastIndex()), false); err != nil {
		return fail(err)
	}
	if err := b.replayed(); err != nil {
		return fail(err)
	}
	for id := range b.state.removed {
		r.NodeRemoved(id)
	}
	b.openTopics()
	if err := ctl.Start(); err != nil {
		return fail(fmt.Errorf("broker: start controller group: %w", err))
	}
	b.wg.Add(1)
	go b.register()
	b.startClusterGroups()
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
			err = b.propose(metaRecord{Type: metaClusterID, ClusterID: b.newClusterID()})
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

// newClusterID is the configured cluster id, else a new one.
func (b *Broker) newClusterID() string {
	if b.cfg.ClusterID != "" {
		return b.cfg.ClusterID
	}
	return newClusterID()
}

// lockAdmin takes proposeMu, then adminMu, for an admin call that checks a
// change and proposes it: no other proposal of this node comes between
// the check and the record, so a record this node proposes after its
// checks always applies (a broker that is its own cluster relies on it:
// its replay is strict). unlockAdmin releases both.
func (b *Broker) lockAdmin() {
	b.proposeMu.Lock()
	b.adminMu.Lock()
}

func (b *Broker) unlockAdmin() {
	b.adminMu.Unlock()
	b.proposeMu.Unlock()
}

// propose commits one metadata record through the controller and returns
// once it is applied here. Caller must not hold adminMu: ApplyMeta takes
// it. Errors wrap a *kerr.Error for what a client may retry (NOT_CONTROLLER,
// REQUEST_TIMED_OUT); an error of the metadata log itself is passed on as
// it is (UNKNOWN_SERVER_ERROR, logged).
func (b *Broker) propose(rec metaRecord) error {
	ctx, cancel := context.WithTimeout(context.Background(), proposeTimeout)
	defer cancel()
	if err := b.metadata.Propose(ctx, encodeMetaRecord(rec)); err != nil {
		var ke *kerr.Error
		if !errors.As(err, &ke) && (errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled)) {
			err = fmt.Errorf("%w: %w", kerr.RequestTimedOut, err)
		}
		return fmt.Errorf("metadata %s: %w", rec.Type, err)
	}
	return nil
}

// proposeLocked is propose for a caller holding adminMu: it is released
// while the record is committed and applied, and held again on return.
// A broker closed meanwhile may not have applied the record: ErrClosed.
func (b *Broker) proposeLocked(rec metaRecord) error {
	b.adminMu.Unlock()
	err := b.propose(rec)
	b.adminMu.Lock()
	if err == nil && b.closed.Load() {
		err = ErrClosed
	}
	return err
}

// ApplyMeta implements ControllerEvents: one committed metadata record, on
// every node, in log order. It is the one place where metadata takes
// effect: the state, the published topics and their partitions.
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
	case metaBrokerRegistered:
		b.publishBrokers()
	case metaBrokerRemoved:
		b.mu.Lock()
		for name, t := range b.topics {
			t.meta = b.state.topics[name]
		}
		b.mu.Unlock()
		b.publishBrokers()
		b.metadata.nodeRemoved(rec.Node)
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
		b.logger.Info().Str("topic", rec.Topic).Int32("partitions", tm.partitions).Msg("partitions added")
	case metaConfigsAltered:
		tm := b.state.topics[rec.Topic]
		tc := effectiveTopicConfig(&b.cfg, tm.configs)
		b.mu.Lock()
		t := b.topics[rec.Topic]
		t.meta = tm
		t.cfg.Store(&tc)
		b.mu.Unlock()
	case metaTopicDeleted:
		b.applyTopicDeleted(rec.Topic, prev.id)
	case metaReplicasAdded:
		b.applyReplicasAdded(rec)
	}
}

// applyTopicDeleted unpublishes a deleted topic, closes its partitions,
// removes its data (Open removes what a crash leaves behind) and its
// committed group offsets. adminMu held.
func (b *Broker) applyTopicDeleted(name string, id [16]byte) {
	b.mu.Lock()
	t := b.topics[name]
	delete(b.topics, name)
	delete(b.byID, id)
	b.mu.Unlock()
	for _, p := range t.partitions {
		if p != nil {
			if err := p.close(true); err != nil {
				b.logger.Warn().Err(err).Msg("close deleted partition")
			}
		}
	}
	if err := os.RemoveAll(b.topicDir(id)); err != nil {
		b.logger.Warn().Err(err).Str("topic", name).Msg("remove deleted topic's data")
	}
	b.groups.removeTopicOffsets(name)
	b.logger.Info().Str("topic", name).Msg("topic deleted")
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

// openHosted opens the partitions in [from, to) that this node hosts, a
// few at a time (creating a log is mostly waiting for directory fsyncs);
// the others stay nil. A partition that fails to open is faulted (logged,
// retried unless corrupt): the proposer checked beforehand that it could
// make and hold them (prepareLogs), and in a cluster the group goes on on
// the other replicas.
func (b *Broker) openHosted(t *topic, from, to int32) []*partition {
	parts := make([]*partition, to-from)
	inParallel(int(to-from), func(k int) {
		if i := from + int32(k); b.hosts(t.meta, i) {
			parts[k] = b.openOrFault(t, i)
		}
	})
	return parts
}

// hosts reports whether this node replicates partition i of a topic. A
// topic without replica lists (created by a broker that was its own
// cluster) lives on every node.
func (b *Broker) hosts(tm *topicMeta, i int32) bool {
	return tm.replicas == nil || slices.Contains(tm.replicas[i], b.cfg.NodeID)
}

// spec describes partition i of a topic: its raft group and replicas
// (every node for a topic without replica lists).
func (b *Broker) spec(t *topic, i int32) ReplicaSpec {
	s := ReplicaSpec{Topic: t.name, TopicID: t.id, Partition: i}
	if int(i) < len(t.meta.groups) {
		s.Group = t.meta.groups[i]
	}
	if t.meta.replicas == nil {
		s.Replicas = b.metadata.Nodes()
		return s
	}
	s.Replicas = t.meta.replicas[i]
	s.Fresh = true
	if int(i) < len(t.meta.joined) && slices.Contains(t.meta.joined[i], b.cfg.NodeID) {
		s.Fresh, s.Join = false, true
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
		return b.metadata.Nodes()
	}
	return slices.Sorted(maps.Keys(b.state.brokers))
}

// replicationFactor checks a requested replication factor against the
// cluster's nodes (-1: min(3, nodes)). A broker that is its own cluster has
// one node, so it accepts -1 and 1. Caller holds adminMu.
func (b *Broker) replicationFactor(rf int16) (int, error) {
	n := len(b.assignable())
	if rf == -1 {
		return min(3, n), nil
	}
	if rf < 1 || int(rf) > n {
		nodes := "nodes"
		if n == 1 {
			nodes = "node"
		}
		return 0, fmt.Errorf("replication factor %d, but the cluster has %d %s: %w", rf, n, nodes, kerr.InvalidReplicationFactor)
	}
	return int(rf), nil
}

// takeProducerBlock moves this node to the block just allocated to it.
// Caller holds adminMu.
func (b *Broker) takeProducerBlock() {
	if start, ok := b.state.nodeBlocks[b.cfg.NodeID]; ok {
		b.nextProducerID = start
		b.producerIDEnd = start + producerIDBlockSize
	}
}

// ControllerID is the controller leader's node id (-1 when none is known;
// a broker that is its own cluster: this node).
func (b *Broker) ControllerID() int32 { return b.metadata.Leader() }

// BrokerInfo is one node as Metadata lists it.
type BrokerInfo struct {
	NodeID int32
	Host   string
	Port   int32
}

// Brokers lists the cluster's live nodes with their Kafka addresses, this
// node always among them (a broker that is its own cluster registers no
// address: just this node). Like Topics it takes only b.mu.
func (b *Broker) Brokers() []BrokerInfo {
	self := BrokerInfo{NodeID: b.cfg.NodeID, Host: b.cfg.AdvertisedHost, Port: b.cfg.AdvertisedPort}
	b.mu.RLock()
	registered := b.brokers
	b.mu.RUnlock()
	out := make([]BrokerInfo, 0, len(registered)+1)
	for _, br := range registered {
		if br.Node != self.NodeID && !b.metadata.alive(br.Node) {
			continue // as Kafka leaves out brokers that are not live
		}
		out = append(out, BrokerInfo{NodeID: br.Node, Host: br.Host, Port: br.Port})
	}
	if !slices.ContainsFunc(out, func(x BrokerInfo) bool { return x.NodeID == self.NodeID }) {
		out = append(out, self) // registration not committed yet
	}
	return out
}

// publishBrokers makes the registered brokers visible to Brokers, by node
// id. Caller holds adminMu.
func (b *Broker) publishBrokers() {
	registered := make([]metaBroker, 0, len(b.state.brokers))
	for _, id := range slices.Sorted(maps.Keys(b.state.brokers)) {
		registered = append(registered, b.state.brokers[id])
	}
	b.mu.Lock()
	b.brokers = registered
	b.mu.Unlock()
}

// PartitionReplicas lists a partition's replicas.
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
// A node that is not a member is BROKER_ID_NOT_REGISTERED; the last node
// (a broker that is its own cluster is one) is INVALID_REQUEST.
func (b *Broker) UnregisterBroker(id int32) error {
	b.lockAdmin()
	defer b.unlockAdmin()
	if b.closed.Load() {
		return ErrClosed
	}
	nodes := b.metadata.Nodes()
	if b.state.removed[id] || !slices.Contains(nodes, id) {
		return fmt.Errorf("node %d is not a member of the cluster (nodes %v): %w", id, nodes, kerr.BrokerIDNotRegistered)
	}
	if len(nodes) == 1 {
		return fmt.Errorf("node %d is the cluster's only node, it cannot leave: %w", id, kerr.InvalidRequest)
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
