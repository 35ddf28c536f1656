package broker

import "testing"

// TestPartitionHealthStandalone: a standalone broker leads every partition
// it hosts (the internal topics' too), none under-replicated or without a
// leader.
func TestPartitionHealthStandalone(t *testing.T) {
	b := openBroker(t, Config{})
	base := b.PartitionHealth() // the internal topics
	if base.Hosted != base.Leaders || base.UnderReplicated != 0 || base.Leaderless != 0 {
		t.Fatalf("internal topics only: %+v", base)
	}
	for name, n := range map[string]int32{"a": 3, "b": 2} {
		if _, err := b.CreateTopic(name, n, -1, nil, false); err != nil {
			t.Fatal(err)
		}
	}
	if h, want := b.PartitionHealth(), (PartitionHealth{Hosted: base.Hosted + 5, Leaders: base.Leaders + 5}); h != want {
		t.Fatalf("two topics of 5 partitions: %+v, want %+v", h, want)
	}
}

// TestPartitionHealthReplicated: in a cluster, a partition counts as
// leaderless until its group reports a leader, then as led here or not.
func TestPartitionHealthReplicated(t *testing.T) {
	repl := &localReplication{replicas: map[string]*localReplica{}}
	b := openBroker(t, Config{NodeID: 1, Replication: repl})
	if _, err := b.CreateTopic("t", 1, -1, nil, false); err != nil {
		t.Fatal(err)
	}
	rep := repl.replicas["t"]
	if h, want := b.PartitionHealth(), (PartitionHealth{Hosted: 1, Leaderless: 1}); h != want {
		t.Fatalf("before an election: %+v, want %+v", h, want)
	}
	rep.lead(1, 1)
	if h, want := b.PartitionHealth(), (PartitionHealth{Hosted: 1, Leaders: 1}); h != want {
		t.Fatalf("led here: %+v, want %+v", h, want)
	}
	rep.lead(2, 2)
	if h, want := b.PartitionHealth(), (PartitionHealth{Hosted: 1}); h != want {
		t.Fatalf("led by node 2: %+v, want %+v", h, want)
	}
	rep.lead(-1, 2)
	if h, want := b.PartitionHealth(), (PartitionHealth{Hosted: 1, Leaderless: 1}); h != want {
		t.Fatalf("leader lost: %+v, want %+v", h, want)
	}
}
