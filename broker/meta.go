package broker

import (
	"encoding/hex"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
)

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
}

// metaTopic is one topic in a snapshot record.
type metaTopic struct {
	Name       string            `json:"name"`
	ID         string            `json:"id"`
	Partitions int32             `json:"partitions"`
	Configs    map[string]string `json:"configs,omitempty"`
}

// topicMeta is one topic as the metadata log defines it.
type topicMeta struct {
	name       string
	id         [16]byte
	partitions int32
	configs    map[string]string // normalized, never mutated once published
}

// metaState is the metadata log folded: what Open rebuilds by replay.
type metaState struct {
	clusterID          string
	topics             map[string]*topicMeta
	producerIDBlockEnd int64
}

func newMetaState() *metaState { return &metaState{topics: make(map[string]*topicMeta)} }

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
		s.topics[r.Topic] = &topicMeta{name: r.Topic, id: id, partitions: r.Partitions, configs: maps.Clone(r.Configs)}
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
			nt := *t
			nt.partitions = r.Partitions
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
			err := fresh.apply(metaRecord{Type: metaTopicCreated, Topic: t.Name, ID: t.ID, Partitions: t.Partitions, Configs: t.Configs})
			if err != nil {
				return fmt.Errorf("snapshot: %w", err)
			}
		}
		*s = *fresh
	case metaProducerIDs:
		if r.ProducerIDBlockEnd < s.producerIDBlockEnd {
			return fmt.Errorf("producer id block end %d below %d", r.ProducerIDBlockEnd, s.producerIDBlockEnd)
		}
		s.producerIDBlockEnd = r.ProducerIDBlockEnd
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
	r := metaRecord{Type: metaSnapshot, ClusterID: s.clusterID, ProducerIDBlockEnd: s.producerIDBlockEnd}
	for _, name := range slices.Sorted(maps.Keys(s.topics)) {
		t := s.topics[name]
		r.Topics = append(r.Topics, metaTopic{Name: t.name, ID: topicIDHex(t.id), Partitions: t.partitions, Configs: t.configs})
	}
	return r
}
