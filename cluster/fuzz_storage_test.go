package cluster

import (
	"reflect"
	"testing"

	"go.etcd.io/raft/v3/raftpb"
)

// FuzzDecodeStorageState: the raft state sidecar decoder never panics or
// over-allocates, and what it accepts re-encodes to the same bytes.
func FuzzDecodeStorageState(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte(stateMagic))
	f.Add(encodeStorageState(storageState{}))
	f.Add(encodeStorageState(storageState{
		hardState: raftpb.HardState{Term: 7, Vote: 3, Commit: 1 << 33},
		confState: raftpb.ConfState{Voters: []uint64{1, 2, 3}, Learners: []uint64{4}, VotersOutgoing: []uint64{1, 5}, LearnersNext: []uint64{5}, AutoLeave: true},
		snapIndex: 1 << 20, snapTerm: 6, snapNext: 1 << 40, resetting: true,
		runs: []termRun{{1<<20 + 1, 6}, {1<<20 + 500, 7}},
	}))
	f.Add(append([]byte(stateMagic), 0, 1, 2, 3, 4, 5, 2, 0x08, 0x01, 0xff, 0xff, 0xff, 0xff, 0x0f))
	f.Fuzz(func(t *testing.T, b []byte) {
		st, err := decodeStorageState(b)
		if err != nil {
			return
		}
		again, err := decodeStorageState(encodeStorageState(st))
		if err != nil {
			t.Fatalf("re-encoded state does not decode: %v", err)
		}
		if !reflect.DeepEqual(normState(again), normState(st)) {
			t.Fatalf("round trip %+v, was %+v", again, st)
		}
		for i := 1; i < len(st.runs); i++ {
			if st.runs[i].start <= st.runs[i-1].start || st.runs[i].term <= st.runs[i-1].term {
				t.Fatalf("runs not increasing: %v", st.runs)
			}
		}
	})
}

// normState maps empty slices to nil so DeepEqual compares content.
func normState(st storageState) storageState {
	if len(st.runs) == 0 {
		st.runs = nil
	}
	cs := &st.confState
	for _, p := range []*[]uint64{&cs.Voters, &cs.Learners, &cs.VotersOutgoing, &cs.LearnersNext} {
		if len(*p) == 0 {
			*p = nil
		}
	}
	return st
}
