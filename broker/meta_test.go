package broker

import (
	"testing"
)

func TestMetaStateReplay(t *testing.T) {
	id := [16]byte{1, 2, 3}
	idHex := topicIDHex(id)
	recs := []metaRecord{
		{Type: metaClusterID, ClusterID: "abc"},
		{Type: metaTopicCreated, Topic: "t", ID: idHex, Partitions: 2, Configs: map[string]string{cfgRetentionMs: "5"}},
		{Type: metaPartitionsAdded, Topic: "t", ID: idHex, Partitions: 4},
		{Type: metaConfigsAltered, Topic: "t", ID: idHex, Configs: map[string]string{cfgRetentionBytes: "9"}},
		{Type: metaProducerIDs, ProducerIDBlockEnd: 1000},
		{Type: metaTopicCreated, Topic: "gone", ID: topicIDHex([16]byte{9}), Partitions: 1},
		{Type: metaTopicDeleted, Topic: "gone", ID: topicIDHex([16]byte{9})},
	}
	s := newMetaState()
	for i, r := range recs {
		dec, err := decodeMetaRecord(encodeMetaRecord(r))
		if err != nil {
			t.Fatalf("record %d: %v", i, err)
		}
		if err := s.apply(dec); err != nil {
			t.Fatalf("record %d: %v", i, err)
		}
	}
	tm := s.topics["t"]
	if s.clusterID != "abc" || len(s.topics) != 1 || tm == nil || tm.id != id || tm.partitions != 4 ||
		len(tm.configs) != 1 || tm.configs[cfgRetentionBytes] != "9" || s.producerIDBlockEnd != 1000 {
		t.Fatalf("state %+v topic %+v", s, tm)
	}
}

func TestMetaStateRejects(t *testing.T) {
	idHex := topicIDHex([16]byte{1})
	setup := []metaRecord{{Type: metaTopicCreated, Topic: "t", ID: idHex, Partitions: 2}, {Type: metaProducerIDs, ProducerIDBlockEnd: 2000}}
	bad := []metaRecord{
		{Type: "nonsense"},
		{Type: metaClusterID},
		{Type: metaTopicCreated, Topic: "t", ID: idHex, Partitions: 1},
		{Type: metaTopicCreated, Topic: "u", ID: "zz", Partitions: 1},
		{Type: metaTopicCreated, Topic: "u", ID: idHex, Partitions: 0},
		{Type: metaTopicDeleted, Topic: "nope", ID: idHex},
		{Type: metaTopicDeleted, Topic: "t", ID: topicIDHex([16]byte{2})},
		{Type: metaPartitionsAdded, Topic: "t", ID: idHex, Partitions: 2},
		{Type: metaProducerIDs, ProducerIDBlockEnd: 1000},
	}
	for i, r := range bad {
		s := newMetaState()
		for _, r := range setup {
			if err := s.apply(r); err != nil {
				t.Fatal(err)
			}
		}
		if err := s.apply(r); err == nil {
			t.Errorf("bad record %d (%s) accepted", i, r.Type)
		}
	}
	if _, err := decodeMetaRecord([]byte(`{"v":2,"type":"cluster_id"}`)); err == nil {
		t.Error("future version accepted")
	}
	if _, err := decodeMetaRecord([]byte(`{`)); err == nil {
		t.Error("garbage accepted")
	}
}

func TestMetaSnapshotRecord(t *testing.T) {
	s := newMetaState()
	for _, r := range []metaRecord{
		{Type: metaClusterID, ClusterID: "c"},
		{Type: metaTopicCreated, Topic: "b", ID: topicIDHex([16]byte{2}), Partitions: 3, Configs: map[string]string{cfgRetentionMs: "1"}},
		{Type: metaTopicCreated, Topic: "a", ID: topicIDHex([16]byte{1}), Partitions: 1},
		{Type: metaProducerIDs, ProducerIDBlockEnd: 3000},
	} {
		if err := s.apply(r); err != nil {
			t.Fatal(err)
		}
	}
	rec, err := decodeMetaRecord(encodeMetaRecord(s.snapshot()))
	if err != nil {
		t.Fatal(err)
	}
	// Applied over a state with history, the snapshot replaces it.
	other := newMetaState()
	other.apply(metaRecord{Type: metaTopicCreated, Topic: "old", ID: topicIDHex([16]byte{9}), Partitions: 1})
	if err := other.apply(rec); err != nil {
		t.Fatal(err)
	}
	if other.clusterID != "c" || other.producerIDBlockEnd != 3000 || len(other.topics) != 2 ||
		other.topics["b"].partitions != 3 || other.topics["b"].configs[cfgRetentionMs] != "1" || other.topics["a"].id != ([16]byte{1}) {
		t.Fatalf("state from snapshot: %+v", other)
	}
}

// replicas_added grows one partition's replica list by registered nodes,
// records them as joined (so they never bootstrap the group), survives a
// snapshot, and refuses anything else.
func TestMetaReplicasAdded(t *testing.T) {
	idHex := topicIDHex([16]byte{7})
	setup := []metaRecord{
		{Type: metaBrokerRegistered, Node: 1, Host: "h", Port: 1},
		{Type: metaBrokerRegistered, Node: 2, Host: "h", Port: 2},
		{Type: metaBrokerRegistered, Node: 3, Host: "h", Port: 3},
		{Type: metaBrokerRegistered, Node: 4, Host: "h", Port: 4},
		{Type: metaTopicCreated, Topic: "t", ID: idHex, Partitions: 2, Replicas: [][]int32{{1, 2, 3}, {2, 3, 1}}},
		{Type: metaTopicCreated, Topic: "standalone", ID: topicIDHex([16]byte{8}), Partitions: 1},
		{Type: metaBrokerRemoved, Node: 3},
	}
	fresh := func() *metaState {
		s := newMetaState()
		for _, r := range setup {
			if err := s.apply(r); err != nil {
				t.Fatal(err)
			}
		}
		return s
	}
	for i, r := range []metaRecord{
		{Type: metaReplicasAdded, Topic: "t", ID: idHex, Partition: 1, Added: []int32{1}},     // already a replica
		{Type: metaReplicasAdded, Topic: "t", ID: idHex, Partition: 0, Added: []int32{3}},     // removed
		{Type: metaReplicasAdded, Topic: "t", ID: idHex, Partition: 0, Added: []int32{9}},     // never registered
		{Type: metaReplicasAdded, Topic: "t", ID: idHex, Partition: 2, Added: []int32{4}},     // no such partition
		{Type: metaReplicasAdded, Topic: "t", ID: idHex, Partition: 0},                        // nobody
		{Type: metaReplicasAdded, Topic: "t", ID: topicIDHex([16]byte{1}), Added: []int32{4}}, // wrong id
		{Type: metaReplicasAdded, Topic: "standalone", ID: topicIDHex([16]byte{8}), Added: []int32{4}},
	} {
		if err := fresh().apply(r); err == nil {
			t.Errorf("bad record %d accepted: %+v", i, r)
		}
	}
	s := fresh()
	if err := s.apply(metaRecord{Type: metaReplicasAdded, Topic: "t", ID: idHex, Partition: 1, Added: []int32{4}}); err != nil {
		t.Fatal(err)
	}
	check := func(what string, s *metaState) {
		t.Helper()
		tm := s.topics["t"]
		if got := tm.replicas; len(got) != 2 || len(got[0]) != 2 || len(got[1]) != 3 || got[1][2] != 4 {
			t.Fatalf("%s: replicas %v, want [[1 2] [2 1 4]]", what, got)
		}
		if len(tm.joined) != 2 || len(tm.joined[0]) != 0 || len(tm.joined[1]) != 1 || tm.joined[1][0] != 4 {
			t.Fatalf("%s: joined %v, want [[] [4]]", what, tm.joined)
		}
	}
	check("applied", s)
	rec, err := decodeMetaRecord(encodeMetaRecord(s.snapshot()))
	if err != nil {
		t.Fatal(err)
	}
	other := newMetaState()
	if err := other.apply(rec); err != nil {
		t.Fatal(err)
	}
	check("from a snapshot", other)
}
