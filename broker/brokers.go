package broker

import (
	"fmt"
	"hash/fnv"
	"maps"
	"slices"

	"github.com/twmb/franz-go/pkg/kerr"
)

// The cluster's brokers as the metadata log records them: the broker list
// and Kafka's controller id, replica assignment for new partitions, and
// removing a node (UnregisterBroker).

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

// ControllerID is the controller leader's node id (-1 when none is known;
// a broker that is its own cluster: this node).
func (b *Broker) ControllerID() int32 { return b.metadata.Leader() }

// BrokerInfo is one node as Metadata lists it.
type BrokerInfo struct {
	NodeID int32
	Host   string // the node's default (first listener's) address
	Port   int32
	// Listeners are the node's advertised endpoints by listener name;
	// empty for a node registered before listeners were recorded.
	Listeners []Endpoint
}

// Endpoint is one listener's advertised address.
type Endpoint struct {
	Name string `json:"name"` // the listener name, e.g. "SASL_SSL"
	// Protocol is the listener's security protocol (PLAINTEXT, SSL,
	// SASL_PLAINTEXT, SASL_SSL), for nodes calling each other.
	Protocol string `json:"protocol,omitempty"`
	Host     string `json:"host"`
	Port     int32  `json:"port"`
}

// On is the node's address for clients of the listener named name: that
// listener's advertised endpoint, else (a node that registered no such
// listener, or none at all) its default address.
func (bi BrokerInfo) On(name string) (host string, port int32) {
	for _, ep := range bi.Listeners {
		if ep.Name == name {
			return ep.Host, ep.Port
		}
	}
	return bi.Host, bi.Port
}

// Brokers lists the cluster's live nodes with their Kafka addresses, this
// node always among them (a broker that is its own cluster registers no
// address: just this node). Like Topics it takes only b.mu.
func (b *Broker) Brokers() []BrokerInfo {
	self := BrokerInfo{NodeID: b.cfg.NodeID, Host: b.cfg.AdvertisedHost, Port: b.cfg.AdvertisedPort, Listeners: b.cfg.Listeners}
	b.mu.RLock()
	registered := b.brokers
	b.mu.RUnlock()
	out := make([]BrokerInfo, 0, len(registered)+1)
	for _, br := range registered {
		if br.Node != self.NodeID && !b.metadata.alive(br.Node) {
			continue // as Kafka leaves out brokers that are not live
		}
		out = append(out, BrokerInfo{NodeID: br.Node, Host: br.Host, Port: br.Port, Listeners: br.Listeners})
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
// metadata group, every partition's replica list and the broker list.
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
