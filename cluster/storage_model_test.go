package cluster

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"testing"

	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"

	"github.com/chronik-stream/chronik/wal"
)

// TestStorageModel runs random operation sequences against Storage and
// raft.MemoryStorage (holding the entries as Storage should store them)
// and compares every raft.Storage answer, the Kafka offsets, and the state
// across reopening.
func TestStorageModel(t *testing.T) {
	steps := 1000
	if testing.Short() {
		steps = 200
	}
	for seed := uint64(1); seed <= 3; seed++ {
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) { testStorageModel(t, seed, steps) })
	}
}

func testStorageModel(t *testing.T, seed uint64, steps int) {
	rng := rand.New(rand.NewPCG(seed, 99))
	opts := wal.Options{SegmentSize: 8 << 10, IndexIntervalBytes: 1 << 10, Fsync: wal.FsyncNever}
	log, st := openTestStorage(t, t.TempDir(), opts)
	defer func() { log.Close() }()
	ms := raft.NewMemoryStorage()
	next := map[uint64]int64{0: 0} // Kafka NextOffset after each index >= the snapshot point
	var hs raftpb.HardState
	var cs raftpb.ConfState
	curTerm := uint64(1)

	check := func(step int, what string) {
		t.Helper()
		fail := func(format string, args ...any) {
			t.Helper()
			t.Fatalf("step %d (%s): %s", step, what, fmt.Sprintf(format, args...))
		}
		mf, _ := ms.FirstIndex()
		ml, _ := ms.LastIndex()
		sf, _ := st.FirstIndex()
		sl, _ := st.LastIndex()
		if mf != sf || ml != sl {
			fail("first/last %d/%d, want %d/%d", sf, sl, mf, ml)
		}
		for i := max(mf, 2) - 2; i <= ml+2; i++ {
			mt, merr := ms.Term(i)
			stt, serr := st.Term(i)
			if mt != stt || merr != serr {
				fail("Term(%d) = %d %v, want %d %v", i, stt, serr, mt, merr)
			}
		}
		for k := 0; k < 4; k++ {
			lo := mf - 1 + uint64(rng.IntN(int(ml-mf)+3))
			if lo > ml+1 {
				lo = ml + 1
			}
			hi := lo + uint64(rng.IntN(int(ml+2-lo)))
			maxSize := []uint64{0, 100, 500, 4000, 1 << 30}[rng.IntN(5)]
			me, merr := ms.Entries(lo, hi, maxSize)
			se, serr := st.Entries(lo, hi, maxSize)
			if merr != serr {
				fail("Entries(%d, %d, %d) err %v, want %v", lo, hi, maxSize, serr, merr)
			}
			if err := entriesEqual(se, me); err != nil {
				fail("Entries(%d, %d, %d): %v", lo, hi, maxSize, err)
			}
		}
		// MemoryStorage.Compact leaves its Snapshot() alone; Storage's
		// snapshot is always the compaction point.
		mterm, _ := ms.Term(mf - 1)
		ssnap, _ := st.Snapshot()
		if ssnap.Metadata.Index != mf-1 || ssnap.Metadata.Term != mterm || !reflect.DeepEqual(ssnap.Metadata.ConfState, cs) {
			fail("snapshot %+v, want index %d term %d", ssnap.Metadata, mf-1, mterm)
		}
		var sd SnapshotData
		if err := sd.Unmarshal(ssnap.Data); err != nil || sd.NextOffset != next[mf-1] {
			fail("snapshot data %+v %v, want next offset %d", sd, err, next[mf-1])
		}
		shs, scs, _ := st.InitialState()
		if shs != hs {
			fail("hard state %+v, want %+v", shs, hs)
		}
		if !reflect.DeepEqual(scs, cs) {
			fail("conf state %+v, want %+v", scs, cs)
		}
		for i := mf - 1; i <= ml+1; i++ {
			want := next[min(i, ml)]
			if got := st.OffsetAtIndex(i); got != want {
				fail("OffsetAtIndex(%d) = %d, want %d", i, got, want)
			}
		}
		for i := mf; i <= ml; i++ {
			b, l, err := st.Offsets(i)
			if err != nil || b != next[i-1] || l != next[i]-1 {
				fail("Offsets(%d) = %d %d %v, want %d %d", i, b, l, err, next[i-1], next[i]-1)
			}
		}
		if _, _, err := st.Offsets(ml + 1); !errors.Is(err, raft.ErrUnavailable) {
			fail("Offsets past the end: %v", err)
		}
		if mf > 1 {
			if _, _, err := st.Offsets(mf - 1); !errors.Is(err, raft.ErrCompacted) {
				fail("Offsets at the snapshot point: %v", err)
			}
		}
		if got := log.NextOffset(); got != next[ml] {
			fail("wal NextOffset %d, want %d", got, next[ml])
		}
	}

	check(0, "open")
	for step := 1; step <= steps; step++ {
		first, _ := ms.FirstIndex()
		last, _ := ms.LastIndex()
		var what string
		switch op := rng.IntN(100); {
		case op < 55: // append, maybe overlapping, maybe partly compacted
			lowest := max(hs.Commit+1, 1)
			back := uint64(0)
			if rng.IntN(4) == 0 {
				back = uint64(1 + rng.IntN(4))
			}
			at := last + 1
			if back > 0 && last+1 > lowest {
				at = max(last+1-back, lowest)
			}
			if rng.IntN(10) == 0 && first > 2 {
				at = first - uint64(1+rng.IntN(2)) // starts in the compacted part
				if at <= hs.Commit {
					at = last + 1
				}
			}
			if at <= last || rng.IntN(4) == 0 {
				curTerm++
			}
			n := 1 + rng.IntN(16)
			var in, want []raftpb.Entry
			nx := next[max(at, first)-1]
			for i := 0; i < n; i++ {
				idx := at + uint64(i)
				var e raftpb.Entry
				switch k := rng.IntN(20); {
				case k < 14:
					bs := [][]byte{testBatch(int32(1+rng.IntN(5)), int64(rng.IntN(1e6)), 61+rng.IntN(300))}
					if k == 0 {
						bs = append(bs, testBatch(int32(1+rng.IntN(3)), 5, 70))
					}
					e = dataEnt(idx, curTerm, bs...)
				case k < 16:
					e = metaEnt(idx, curTerm)
				case k < 18:
					e = noopEnt(idx, curTerm)
				default:
					e = confEnt(idx, curTerm)
				}
				if idx >= first {
					// Numbered as the leader's partition numbers it.
					e, nx = stamped(e, nx)
					want = append(want, e)
					next[idx] = nx
				}
				in = append(in, e)
			}
			orig := make([][]byte, len(in))
			for i := range in {
				orig[i] = append([]byte(nil), in[i].Data...)
			}
			what = fmt.Sprintf("append %d entries at %d term %d", n, at, curTerm)
			if err := ms.Append(want); err != nil {
				t.Fatal(err)
			}
			if err := st.Append(in); err != nil {
				t.Fatalf("step %d (%s): %v", step, what, err)
			}
			for i := range in {
				if !bytes.Equal(in[i].Data, orig[i]) {
					t.Fatalf("step %d: Append modified the caller's entry %d", step, in[i].Index)
				}
			}
			newLast := at + uint64(n) - 1
			for i := newLast + 1; i <= last; i++ {
				delete(next, i)
			}
		case op < 63: // compact
			if hs.Commit < first {
				continue
			}
			i := first + uint64(rng.IntN(int(hs.Commit-first)+1))
			what = fmt.Sprint("compact to ", i)
			if err := ms.Compact(i); err != nil {
				t.Fatal(err)
			}
			if err := st.CompactTo(i); err != nil {
				t.Fatalf("step %d (%s): %v", step, what, err)
			}
			for j := first - 1; j < i; j++ {
				delete(next, j)
			}
		case op < 67: // install a snapshot
			snapIdx := first - 1
			if rng.IntN(8) > 0 {
				snapIdx = max(hs.Commit, first-1) + 1 + uint64(rng.IntN(20))
			}
			curTerm++
			nextOff := next[last] + int64(rng.IntN(100))
			cs = raftpb.ConfState{Voters: []uint64{1, 2, uint64(3 + rng.IntN(3))}}
			snap := raftpb.Snapshot{
				Data:     SnapshotData{NextOffset: nextOff, LogStartOffset: nextOff}.Marshal(),
				Metadata: raftpb.SnapshotMetadata{Index: snapIdx, Term: curTerm, ConfState: cs},
			}
			what = fmt.Sprintf("snapshot at %d term %d next %d", snapIdx, curTerm, nextOff)
			if snapIdx <= first-1 { // older than the compaction point
				if err := st.ApplySnapshot(snap); err != raft.ErrSnapOutOfDate {
					t.Fatalf("step %d (%s): %v, want ErrSnapOutOfDate", step, what, err)
				}
				_, cs, _ = st.InitialState()
				continue
			}
			if err := ms.ApplySnapshot(snap); err != nil {
				t.Fatal(err)
			}
			if err := st.ApplySnapshot(snap); err != nil {
				t.Fatalf("step %d (%s): %v", step, what, err)
			}
			next = map[uint64]int64{snapIdx: nextOff}
			hs.Commit = max(hs.Commit, snapIdx)
			hs.Term = max(hs.Term, curTerm)
			ms.SetHardState(hs)
		case op < 82: // hard state
			if rng.IntN(3) == 0 {
				hs.Term, hs.Vote = curTerm, uint64(rng.IntN(4))
			}
			hs.Commit = max(hs.Commit, first-1) + uint64(rng.IntN(int(last-max(hs.Commit, first-1))+1))
			what = fmt.Sprintf("hard state %+v", hs)
			ms.SetHardState(hs)
			if err := st.SetHardState(hs); err != nil {
				t.Fatal(err)
			}
		case op < 85: // conf state
			cs = raftpb.ConfState{Voters: []uint64{1, uint64(2 + rng.IntN(5))}, Learners: []uint64{9}}
			what = "conf state"
			if err := st.SetConfState(cs); err != nil {
				t.Fatal(err)
			}
		case op < 92:
			what = "reopen"
			log, st = reopen(t, st, opts)
		default:
			what = "check"
		}
		check(step, what)
	}
}
