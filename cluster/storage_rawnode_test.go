package cluster

import (
	"bytes"
	"testing"

	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"

	"github.com/chronik-stream/chronik/wal"
)

// TestStorageRawNode drives a single-node raft.RawNode over Storage the way
// the engine does and checks the stored batches.
func TestStorageRawNode(t *testing.T) {
	dir := t.TempDir()
	log, s := openTestStorage(t, dir, wal.Options{})
	defer func() { log.Close() }()
	newNode := func(applied uint64) *raft.RawNode {
		rn, err := raft.NewRawNode(&raft.Config{ID: 1, ElectionTick: 10, HeartbeatTick: 1, Storage: s,
			MaxSizePerMsg: 1 << 20, MaxInflightMsgs: 256, Applied: applied})
		if err != nil {
			t.Fatal(err)
		}
		return rn
	}
	var applied []raftpb.Entry
	handle := func(rn *raft.RawNode) {
		for i := 0; i < 10 && rn.HasReady(); i++ {
			rd := rn.Ready()
			if err := s.Append(rd.Entries); err != nil {
				t.Fatal(err)
			}
			if !raft.IsEmptyHardState(rd.HardState) {
				if err := s.SetHardState(rd.HardState); err != nil {
					t.Fatal(err)
				}
			}
			for _, e := range rd.CommittedEntries {
				var cc raftpb.ConfChangeI
				switch e.Type {
				case raftpb.EntryConfChange:
					var c raftpb.ConfChange
					if err := c.Unmarshal(e.Data); err != nil {
						t.Fatal(err)
					}
					cc = c
				case raftpb.EntryConfChangeV2:
					var c raftpb.ConfChangeV2
					if err := c.Unmarshal(e.Data); err != nil {
						t.Fatal(err)
					}
					cc = c
				}
				if cc != nil {
					if err := s.SetConfState(*rn.ApplyConfChange(cc)); err != nil {
						t.Fatal(err)
					}
				}
				applied = append(applied, e)
			}
			rn.Advance(rd)
		}
	}
	rn := newNode(0)
	if err := rn.Bootstrap([]raft.Peer{{ID: 1}}); err != nil {
		t.Fatal(err)
	}
	handle(rn)
	if err := rn.Campaign(); err != nil {
		t.Fatal(err)
	}
	handle(rn)
	if st := rn.Status(); st.RaftState != raft.StateLeader {
		t.Fatalf("not leader: %v", st.RaftState)
	}
	b1, b2, b3 := testBatch(3, 10, 300), testBatch(1, 20, 100), testBatch(2, 30, 200)
	// Numbered as the leader's partition numbers them: the meta record
	// takes offset 3.
	proposals := [][]byte{
		EncodeEntry(testBatchesEntry(0, b1)),
		EncodeData(wal.KindMeta, []byte("topic")),
		EncodeEntry(testBatchesEntry(4, b2, b3)),
	}
	orig := make([][]byte, len(proposals))
	for i, p := range proposals {
		orig[i] = append([]byte(nil), p...)
		if err := rn.Propose(p); err != nil {
			t.Fatal(err)
		}
	}
	handle(rn)
	for i := range proposals {
		if !bytes.Equal(proposals[i], orig[i]) {
			t.Fatal("Storage modified the proposer's data")
		}
	}
	term := rn.Status().Term
	checkData := func(index uint64, base int64, records int, epoch uint64, proposed []byte) {
		t.Helper()
		we, err := log.Read(index)
		if err != nil {
			t.Fatal(err)
		}
		if we.Term != epoch || we.BaseOffset != base || we.LastOffset() != base+int64(records)-1 {
			t.Fatalf("wal entry %d: %+v", index, we)
		}
		// Stored and read back byte for byte as proposed: the storage
		// never rewrites a batch.
		if !bytes.Equal(we.Payload, proposed[dataHeaderSize:]) {
			t.Fatalf("entry %d: stored batches differ from the proposal", index)
		}
		ents, err := s.Entries(index, index+1, 1<<20)
		if err != nil || !bytes.Equal(ents[0].Data, proposed) || ents[0].Term != epoch {
			t.Fatalf("Entries(%d): %v", index, err)
		}
	}
	commit := rn.Status().Commit
	last, _ := s.LastIndex()
	if commit != last || commit != 5 { // conf change, leader no-op, 3 proposals
		t.Fatalf("commit %d last %d", commit, last)
	}
	checkData(3, 0, 3, term, orig[0])
	checkData(5, 4, 3, term, orig[2])
	if b, l, _ := s.Offsets(4); b != 3 || l != 3 {
		t.Fatalf("meta offsets %d %d", b, l)
	}
	if hw := s.OffsetAtIndex(commit); hw != 7 {
		t.Fatalf("high watermark %d", hw)
	}
	if len(applied) != 5 {
		t.Fatalf("applied %d entries", len(applied))
	}

	// Restart: the node comes back from the wal and sidecar, campaigns in
	// a new term and continues the offsets.
	log, s = reopen(t, s, wal.Options{})
	rn = newNode(commit)
	if err := rn.Campaign(); err != nil {
		t.Fatal(err)
	}
	handle(rn)
	if st := rn.Status(); st.RaftState != raft.StateLeader || st.Term <= term {
		t.Fatalf("after restart: %v term %d", st.RaftState, st.Term)
	}
	term2 := rn.Status().Term
	p4 := EncodeEntry(testBatchesEntry(7, testBatch(4, 40, 120)))
	if err := rn.Propose(p4); err != nil {
		t.Fatal(err)
	}
	handle(rn)
	checkData(7, 7, 4, term2, p4)
	checkData(3, 0, 3, term, orig[0]) // earlier entries untouched
	if hw := s.OffsetAtIndex(rn.Status().Commit); hw != 11 {
		t.Fatalf("high watermark %d", hw)
	}
}
