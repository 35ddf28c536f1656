package broker

import (
	"encoding/hex"
	"encoding/json"
	"fmt"
	"maps"
	"path/filepath"
	"slices"

	"github.com/chronik-stream/chronik/wal"
)

// producerIDBlockSize ids are reserved in the metadata log at a time, like
// Kafka's ProducerIdManager blocks: ids never repeat across restarts and
// most InitProducerID calls write nothing.
const producerIDBlockSize = 1000

// metaLogDir is the metadata log's directory under a data directory.
func metaLogDir(dataDir string) string { return filepath.Join(dataDir, "meta") }

// openMetaLog opens the metadata log: small, and synced on every append.
func (b *Broker) openMetaLog() (*wal.Log, error) {
	log, err := wal.Open(metaLogDir(b.cfg.DataDir), wal.Options{
		Fsync:    wal.FsyncAlways,
		OnRepair: b.logRepair,
		OnSync:   b.cfg.OnFsync,
	})
	if err != nil {
		return nil, fmt.Errorf("broker: open metadata log: %w", err)
	}
	return log, nil
}

// The metadata log: one JSON record per wal entry (Kind KindMeta), replayed
// in order on Open. Records say what changed, never "set everything", so a
// replay is the history of the cluster's metadata.

const metaRecordVersion = 1

// Metadata record types.
const (
	metaClusterID       = "cluster_id"       // ClusterID
	metaTopicCreated    = "topic_created"    // Topic, ID, Partitions, Configs
	metaTopicDeleted    = "topic_deleted"    // Topic, ID
	metaPartitionsAdded = "partitions_added" // Topic, ID, Partitions (the new total)
	metaConfigsAltered  = "configs_altered"  // Topic, ID, Configs (the full new set)
	metaProducerIDs     = "producer_ids"     // ProducerIDBlockEnd: ids below it are allocated
	metaSnapshot        = "snapshot"         // Snapshot: the whole state; replaces everything before it

	// Cluster mode only.
	metaBrokerRegistered = "broker_registered" // Node, Host, Port: a node's Kafka address; Listeners: every listener's (absent in older records)
	metaProducerIDBlock  = "producer_id_block" // Node: the next block of producer ids goes to that node
	metaBrokerRemoved    = "broker_removed"    // Node: the node leaves the cluster and every replica list
	metaReplicasAdded    = "replicas_added"    // Topic, ID, Partition, Added: nodes that join a partition's replicas

	// SCRAM credentials (scram.go).
	metaUserScramSet     = "user_scram_set"     // Scram: one user's credential for one mechanism
	metaUserScramDeleted = "user_scram_deleted" // Scram (user, mechanism): that credential removed
	// ACLs (acl.go).
	metaACLsCreated = "acls_created" // ACLs: bindings added
	metaACLsDeleted = "acls_deleted" // ACLs: bindings removed
)

// metaCompactThreshold is how many records may follow the newest snapshot
// (or the start of the log) before Open writes a new one and drops them. A
// variable so that tests can lower it.
var metaCompactThreshold uint64 = 4096

type metaRecord struct {
	V                  int               `json:"v"`
	Type               string            `json:"type"`
	ClusterID          string            `json:"cluster_id,omitempty"`
	Topic              string            `json:"topic,omitempty"`
	ID                 string            `json:"id,omitempty"` // topic id, 32 hex digits
	Partitions         int32             `json:"partitions,omitempty"`
	Configs            map[string]string `json:"configs,omitempty"`
	ProducerIDBlockEnd int64             `json:"producer_id_block_end,omitempty"`
	Topics             []metaTopic       `json:"topics,omitempty"` // snapshot only

	// Cluster mode.
	Node     int32     `json:"node,omitempty"`
	Host     string    `json:"host,omitempty"`
	Port     int32     `json:"port,omitempty"`
	Replicas [][]int32 `json:"replicas,omitempty"` // topic_created, partitions_added: replicas of each new partition, preferred leader first
	// replicas_added: the partition and the nodes added to its replicas.
	Partition int32        `json:"partition,omitempty"`
	Added     []int32      `json:"added,omitempty"`
	Brokers   []metaBroker `json:"brokers,omitempty"` // snapshot only
	// Listeners (broker_registered): the node's advertised endpoints by
	// listener name.
	Listeners []Endpoint `json:"listeners,omitempty"`
	// NextRaftGroup (snapshot only) is the raft group id the next partition gets.
	NextRaftGroup uint64 `json:"next_group,omitempty"`
	// NodeBlocks (snapshot only): each node's current producer id block start.
	NodeBlocks map[int32]int64 `json:"node_blocks,omitempty"`
	Removed    []int32         `json:"removed,omitempty"` // snapshot only

	// Scram: user_scram_set, user_scram_deleted (scram.go).
	Scram *metaScramCred `json:"scram,omitempty"`
	// ScramCreds (snapshot only): every credential.
	ScramCreds []metaScramCred `json:"scram_creds,omitempty"`
	// ACLs: the bindings of acls_created and acls_deleted; in a snapshot,
	// every binding.
	ACLs []metaACL `json:"acls,omitempty"`
}

// metaBroker is one registered node.
type metaBroker struct {
	Node int32  `json:"node"`
	Host string `json:"host"`
	Port int32  `json:"port"`
	// Listeners: the advertised endpoint of every named listener; absent
	// in records written before listeners existed (then Host and Port
	// serve every listener).
	Listeners []Endpoint `json:"listeners,omitempty"`
}

func (m metaBroker) equal(o metaBroker) bool {
	return m.Node == o.Node && m.Host == o.Host && m.Port == o.Port && slices.Equal(m.Listeners, o.Listeners)
}

// metaTopic is one topic in a snapshot record.
type metaTopic struct {
	Name       string            `json:"name"`
	ID         string            `json:"id"`
	Partitions int32             `json:"partitions"`
	Configs    map[string]string `json:"configs,omitempty"`
	Replicas   [][]int32         `json:"replicas,omitempty"`
	RaftGroups []uint64          `json:"groups,omitempty"`
	Joined     [][]int32         `json:"joined,omitempty"`
}

// topicMeta is one topic as the metadata log defines it.
type topicMeta struct {
	name       string
	id         [16]byte
	partitions int32
	configs    map[string]string // normalized, never mutated once published
	// Cluster mode: each partition's replicas (preferred leader first; nil
	// for topics created standalone) and raft group id. Group ids are
	// handed out in apply order, so every node computes the same ones.
	replicas   [][]int32
	raftGroups []uint64
	// joined lists, per partition, the replicas added after the partition
	// was created (replicas_added): they start empty and wait for the
	// group's leader to add them, never bootstrapping the group. Shorter
	// than partitions, or nil, where none were added.
	joined [][]int32
}

// metaState is the metadata log folded: what Open rebuilds by replay.
type metaState struct {
	clusterID          string
	topics             map[string]*topicMeta
	producerIDBlockEnd int64

	brokers       map[int32]metaBroker // cluster mode: registered nodes
	nextRaftGroup uint64               // raft group id of the next partition (0 is the controller)
	nodeBlocks    map[int32]int64      // cluster mode: each node's producer id block start
	removed       map[int32]bool       // cluster mode: nodes removed from the cluster
	scram         scramTable           // SCRAM credentials by user and mechanism (scram.go)
	acls          map[ACL]struct{}     // the ACL bindings (acl.go)
}

func newMetaState() *metaState {
	return &metaState{topics: make(map[string]*topicMeta), brokers: make(map[int32]metaBroker), nextRaftGroup: 1, nodeBlocks: make(map[int32]int64), removed: make(map[int32]bool), acls: make(map[ACL]struct{})}
}

// newRaftGroups hands out n raft group ids.
func (s *metaState) newRaftGroups(n int32) []uint64 {
	g := make([]uint64, n)
	for i := range g {
		g[i] = s.nextRaftGroup
		s.nextRaftGroup++
	}
	return g
}

func decodeMetaRecord(b []byte) (metaRecord, error) {
	var r metaRecord
	if err := json.Unmarshal(b, &r); err != nil {
		return r, fmt.Errorf("decode metadata record: %w", err)
	}
	if r.V != metaRecordVersion {
		return r, fmt.Errorf("metadata record version %d, this build reads %d", r.V, metaRecordVersion)
	}
	return r, nil
}

func encodeMetaRecord(r metaRecord) []byte {
	r.V = metaRecordVersion
	b, err := json.Marshal(r)
	if err != nil {
		panic(err) // plain strings, ints and maps of strings always marshal
	}
	return b
}

func topicIDHex(id [16]byte) string { return hex.EncodeToString(id[:]) }

func parseTopicID(s string) ([16]byte, error) {
	var id [16]byte
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != 16 {
		return id, fmt.Errorf("bad topic id %q", s)
	}
	copy(id[:], b)
	return id, nil
}

// apply folds one record into the state. Records that contradict the state
// (a second topic of the same name, a change to an unknown topic) are
// errors: the log is written only after the same checks passed.
func (s *metaState) apply(r metaRecord) error {
	switch r.Type {
	case metaClusterID:
		if r.ClusterID == "" {
			return fmt.Errorf("empty cluster id")
		}
		if s.clusterID != "" && s.clusterID != r.ClusterID {
			// Cluster mode: several nodes may propose one; the first wins.
			return fmt.Errorf("cluster id %q already set, %q ignored", s.clusterID, r.ClusterID)
		}
		s.clusterID = r.ClusterID
	case metaTopicCreated:
		id, err := parseTopicID(r.ID)
		if err != nil {
			return err
		}
		if _, ok := s.topics[r.Topic]; ok {
			return fmt.Errorf("topic %q created twice", r.Topic)
		}
		if r.Partitions < 1 {
			return fmt.Errorf("topic %q created with %d partitions", r.Topic, r.Partitions)
		}
		if r.Replicas != nil && len(r.Replicas) != int(r.Partitions) {
			return fmt.Errorf("topic %q: %d replica lists for %d partitions", r.Topic, len(r.Replicas), r.Partitions)
		}
		s.topics[r.Topic] = &topicMeta{name: r.Topic, id: id, partitions: r.Partitions, configs: maps.Clone(r.Configs),
			replicas: r.Replicas, raftGroups: s.newRaftGroups(r.Partitions)}
	case metaTopicDeleted, metaPartitionsAdded, metaConfigsAltered:
		t, err := s.topicWithID(r.Topic, r.ID)
		if err != nil {
			return err
		}
		switch r.Type {
		case metaTopicDeleted:
			delete(s.topics, r.Topic)
		case metaPartitionsAdded:
			if r.Partitions <= t.partitions {
				return fmt.Errorf("topic %q: partitions %d not above %d", r.Topic, r.Partitions, t.partitions)
			}
			added := r.Partitions - t.partitions
			if r.Replicas != nil && len(r.Replicas) != int(added) {
				return fmt.Errorf("topic %q: %d replica lists for %d new partitions", r.Topic, len(r.Replicas), added)
			}
			nt := *t
			nt.partitions = r.Partitions
			nt.raftGroups = append(slices.Clip(t.raftGroups), s.newRaftGroups(added)...)
			if t.replicas != nil || r.Replicas != nil {
				nt.replicas = append(slices.Clip(t.replicas), r.Replicas...)
			}
			s.topics[r.Topic] = &nt
		case metaConfigsAltered:
			nt := *t
			nt.configs = maps.Clone(r.Configs)
			s.topics[r.Topic] = &nt
		}
	case metaSnapshot:
		fresh := newMetaState()
		fresh.clusterID = r.ClusterID
		fresh.producerIDBlockEnd = r.ProducerIDBlockEnd
		for _, t := range r.Topics {
			err := fresh.apply(metaRecord{Type: metaTopicCreated, Topic: t.Name, ID: t.ID, Partitions: t.Partitions, Configs: t.Configs, Replicas: t.Replicas})
			if err != nil {
				return fmt.Errorf("snapshot: %w", err)
			}
			if t.RaftGroups != nil {
				if len(t.RaftGroups) != int(t.Partitions) {
					return fmt.Errorf("snapshot: topic %q: %d groups for %d partitions", t.Name, len(t.RaftGroups), t.Partitions)
				}
				fresh.topics[t.Name].raftGroups = t.RaftGroups
			}
			if t.Joined != nil {
				fresh.topics[t.Name].joined = t.Joined
			}
		}
		for _, br := range r.Brokers {
			fresh.brokers[br.Node] = br
		}
		if r.NextRaftGroup > 0 {
			fresh.nextRaftGroup = r.NextRaftGroup
		}
		maps.Copy(fresh.nodeBlocks, r.NodeBlocks)
		for _, id := range r.Removed {
			fresh.removed[id] = true
		}
		if err := fresh.restoreScram(r.ScramCreds); err != nil {
			return fmt.Errorf("snapshot: %w", err)
		}
		if len(r.ACLs) > 0 {
			if err := fresh.applyACLsCreated(metaRecord{Type: metaACLsCreated, ACLs: r.ACLs}); err != nil {
				return fmt.Errorf("snapshot: %w", err)
			}
		}
		*s = *fresh
	case metaProducerIDs:
		if r.ProducerIDBlockEnd < s.producerIDBlockEnd {
			return fmt.Errorf("producer id block end %d below %d", r.ProducerIDBlockEnd, s.producerIDBlockEnd)
		}
		s.producerIDBlockEnd = r.ProducerIDBlockEnd
	case metaBrokerRegistered:
		if r.Node < 0 || r.Host == "" || r.Port <= 0 {
			return fmt.Errorf("broker registration %d %s:%d", r.Node, r.Host, r.Port)
		}
		for _, ep := range r.Listeners {
			if ep.Name == "" || ep.Host == "" || ep.Port <= 0 {
				return fmt.Errorf("broker registration %d: listener %q at %s:%d", r.Node, ep.Name, ep.Host, ep.Port)
			}
		}
		s.brokers[r.Node] = metaBroker{Node: r.Node, Host: r.Host, Port: r.Port, Listeners: r.Listeners}
	case metaProducerIDBlock:
		s.nodeBlocks[r.Node] = s.producerIDBlockEnd
		s.producerIDBlockEnd += producerIDBlockSize
	case metaReplicasAdded:
		t, err := s.topicWithID(r.Topic, r.ID)
		if err != nil {
			return err
		}
		p := r.Partition
		switch {
		case t.replicas == nil:
			return fmt.Errorf("replicas added to %q, created standalone (every node hosts it)", r.Topic)
		case p < 0 || p >= t.partitions:
			return fmt.Errorf("replicas added to %s-%d: no such partition", r.Topic, p)
		case len(r.Added) == 0:
			return fmt.Errorf("replicas added to %s-%d: none named", r.Topic, p)
		}
		for _, id := range r.Added {
			if _, ok := s.brokers[id]; !ok || s.removed[id] || slices.Contains(t.replicas[p], id) {
				return fmt.Errorf("replicas added to %s-%d: node %d is not a registered node outside %v", r.Topic, p, id, t.replicas[p])
			}
		}
		nt := *t
		nt.replicas = slices.Clone(t.replicas)
		nt.replicas[p] = append(slices.Clone(t.replicas[p]), r.Added...)
		nt.joined = slices.Clone(t.joined)
		for len(nt.joined) <= int(p) {
			nt.joined = append(nt.joined, nil)
		}
		nt.joined[p] = append(slices.Clone(nt.joined[p]), r.Added...)
		s.topics[r.Topic] = &nt
	case metaBrokerRemoved:
		if s.removed[r.Node] {
			return fmt.Errorf("node %d already removed", r.Node)
		}
		s.removed[r.Node] = true
		delete(s.brokers, r.Node)
		for name, t := range s.topics {
			if t.replicas == nil {
				continue
			}
			nt := *t
			nt.replicas = make([][]int32, len(t.replicas))
			for i, rs := range t.replicas {
				nt.replicas[i] = slices.DeleteFunc(slices.Clone(rs), func(id int32) bool { return id == r.Node })
			}
			s.topics[name] = &nt
		}
	case metaUserScramSet:
		return s.applyScramSet(r)
	case metaUserScramDeleted:
		return s.applyScramDeleted(r)
	case metaACLsCreated:
		return s.applyACLsCreated(r)
	case metaACLsDeleted:
		return s.applyACLsDeleted(r)
	default:
		return fmt.Errorf("unknown metadata record type %q", r.Type)
	}
	return nil
}

func (s *metaState) topicWithID(name, idHex string) (*topicMeta, error) {
	t, ok := s.topics[name]
	if !ok {
		return nil, fmt.Errorf("%s for unknown topic %q", idHex, name)
	}
	if topicIDHex(t.id) != idHex {
		return nil, fmt.Errorf("topic %q has id %s, record names %s", name, topicIDHex(t.id), idHex)
	}
	return t, nil
}

// snapshot is one record that rebuilds the whole state.
func (s *metaState) snapshot() metaRecord {
	r := metaRecord{Type: metaSnapshot, ClusterID: s.clusterID, ProducerIDBlockEnd: s.producerIDBlockEnd, NextRaftGroup: s.nextRaftGroup}
	for _, name := range slices.Sorted(maps.Keys(s.topics)) {
		t := s.topics[name]
		r.Topics = append(r.Topics, metaTopic{Name: t.name, ID: topicIDHex(t.id), Partitions: t.partitions, Configs: t.configs, Replicas: t.replicas, RaftGroups: t.raftGroups, Joined: t.joined})
	}
	for _, id := range slices.Sorted(maps.Keys(s.brokers)) {
		r.Brokers = append(r.Brokers, s.brokers[id])
	}
	if len(s.nodeBlocks) > 0 {
		r.NodeBlocks = maps.Clone(s.nodeBlocks)
	}
	r.Removed = slices.Sorted(maps.Keys(s.removed))
	r.ScramCreds = s.scramSnapshot()
	r.ACLs = s.snapshotACLs()
	return r
}

// foldMeta applies the metadata records up to index last to the state and
// returns the index of the newest snapshot record (the first index if
// none). strict (a log this node alone wrote, each record after the same
// checks) makes a record that does not apply an error; in a cluster such a
// record lost a race with another node's proposal and is skipped on every
// node alike.
func (b *Broker) foldMeta(last uint64, strict bool) (uint64, error) {
	first := b.meta.FirstIndex()
	lastSnapshot := first
	for idx := first; idx <= last; idx++ {
		e, err := b.meta.Read(idx)
		if err != nil {
			return 0, fmt.Errorf("broker: read metadata log at %d: %w", idx, err)
		}
		if e.Kind != wal.KindMeta {
			continue
		}
		rec, err := decodeMetaRecord(e.Payload)
		if err == nil {
			err = b.state.apply(rec)
		}
		switch {
		case err != nil && strict:
			return 0, fmt.Errorf("broker: metadata log at %d: %w", idx, err)
		case err != nil:
			b.logger.Debug().Err(err).Uint64("index", idx).Msg("metadata record not applied")
		case rec.Type == metaSnapshot:
			lastSnapshot = idx
		}
	}
	return lastSnapshot, nil
}

// replayed takes over what Open's replay folded into the state: the
// cluster id (a configured one must match it), the registered brokers, and
// this node's producer ids, which continue past every id reserved so far
// (the block in use before a restart may have been used up), so the first
// InitProducerID reserves a fresh block.
func (b *Broker) replayed() error {
	if id := b.state.clusterID; id != "" && b.cfg.ClusterID != "" && b.cfg.ClusterID != id {
		return fmt.Errorf("broker: configured cluster id %q, but %s belongs to cluster %q", b.cfg.ClusterID, b.cfg.DataDir, id)
	}
	b.clusterID = b.state.clusterID
	b.nextProducerID = b.state.producerIDBlockEnd
	b.producerIDEnd = b.state.producerIDBlockEnd
	b.publishBrokers()
	b.publishScram()
	b.publishACLs()
	return nil
}
