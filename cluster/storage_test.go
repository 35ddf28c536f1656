package cluster

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"

	"github.com/chronik-stream/chronik/wal"
)

func openTestLog(t testing.TB, dir string, opts wal.Options) *wal.Log {
	t.Helper()
	l, err := wal.Open(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func openTestStorage(t testing.TB, dir string, opts wal.Options) (*wal.Log, *Storage) {
	t.Helper()
	l := openTestLog(t, dir, opts)
	s, err := OpenStorage(l)
	if err != nil {
		l.Close()
		t.Fatal(err)
	}
	return l, s
}

// reopen flushes s, closes its log and opens both again.
func reopen(t testing.TB, s *Storage, opts wal.Options) (*wal.Log, *Storage) {
	t.Helper()
	if err := s.Flush(); err != nil {
		t.Fatal(err)
	}
	dir := s.Log().Dir()
	if err := s.Log().Close(); err != nil {
		t.Fatal(err)
	}
	return openTestStorage(t, dir, opts)
}

// dataEnt is a data entry for batches, numbered from offset 0: mustAppend
// and stamped number it where it goes, as the leader's partition would.
func dataEnt(index, term uint64, batches ...[]byte) raftpb.Entry {
	return raftpb.Entry{Index: index, Term: term, Data: EncodeEntry(testBatchesEntry(0, batches...))}
}

func metaEnt(index, term uint64) raftpb.Entry {
	return raftpb.Entry{Index: index, Term: term, Data: EncodeData(wal.KindMeta, []byte(fmt.Sprintf("meta-%d", index)))}
}

func noopEnt(index, term uint64) raftpb.Entry { return raftpb.Entry{Index: index, Term: term} }

func confEnt(index, term uint64) raftpb.Entry {
	cc := raftpb.ConfChangeV2{Changes: []raftpb.ConfChangeSingle{{Type: raftpb.ConfChangeAddNode, NodeID: index}}}
	b, _ := cc.Marshal()
	return raftpb.Entry{Index: index, Term: term, Type: raftpb.EntryConfChangeV2, Data: b}
}

// stamped is e numbered from next, as the leader's partition numbers a
// data entry (a metadata record takes one offset); it returns the entry and
// the next offset after it.
func stamped(e raftpb.Entry, next int64) (raftpb.Entry, int64) {
	if e.Type != raftpb.EntryNormal || len(e.Data) == 0 {
		return e, next
	}
	we, err := DecodeData(e.Data)
	if err != nil {
		return e, next // bad data: left for Append to refuse
	}
	switch we.Kind {
	case wal.KindMeta:
		return e, next + 1
	case wal.KindData:
		we.BaseOffset = next
		e.Data = EncodeEntry(we)
		return e, we.LastOffset() + 1
	}
	return e, next
}

// numbered is ents with their data entries numbered to continue s's log at
// ents[0].Index.
func numbered(s *Storage, ents []raftpb.Entry) []raftpb.Entry {
	if len(ents) == 0 {
		return ents
	}
	s.mu.RLock()
	next := s.offsetAtLocked(max(ents[0].Index, s.snapIndex+1) - 1)
	s.mu.RUnlock()
	out := make([]raftpb.Entry, len(ents))
	for i, e := range ents {
		if e.Index <= s.snapIndex {
			out[i] = e
			continue
		}
		out[i], next = stamped(e, next)
	}
	return out
}

// mustAppend numbers ents' data entries (numbered) and appends them.
func mustAppend(t testing.TB, s *Storage, ents ...raftpb.Entry) {
	t.Helper()
	if err := s.Append(numbered(s, ents)); err != nil {
		t.Fatal(err)
	}
}

func entriesEqual(a, b []raftpb.Entry) error {
	if len(a) != len(b) {
		return fmt.Errorf("%d entries, want %d", len(a), len(b))
	}
	for i := range a {
		if a[i].Index != b[i].Index || a[i].Term != b[i].Term || a[i].Type != b[i].Type || !bytes.Equal(a[i].Data, b[i].Data) {
			return fmt.Errorf("entry %d: index %d term %d type %v data %x, want index %d term %d type %v data %x",
				i, a[i].Index, a[i].Term, a[i].Type, a[i].Data, b[i].Index, b[i].Term, b[i].Type, b[i].Data)
		}
	}
	return nil
}

func TestStorageAppendCases(t *testing.T) {
	b := testBatch(2, 10, 80)
	tests := []struct {
		name     string
		base     []raftpb.Entry // appended first (entries 1..)
		compact  uint64         // CompactTo after base, if > 0
		app      []raftpb.Entry
		wantErr  bool
		last     uint64
		terms    []uint64 // Term(1..last) (compacted ones skipped as 0)
		nextOffs int64
	}{
		{"continue", []raftpb.Entry{dataEnt(1, 1, b)}, 0, []raftpb.Entry{dataEnt(2, 1, b)}, false, 2, []uint64{1, 1}, 4},
		{"new term", []raftpb.Entry{dataEnt(1, 1, b)}, 0, []raftpb.Entry{noopEnt(2, 3), dataEnt(3, 3, b)}, false, 3, []uint64{1, 3, 3}, 4},
		{"gap", []raftpb.Entry{dataEnt(1, 1, b)}, 0, []raftpb.Entry{dataEnt(3, 1, b)}, true, 1, []uint64{1}, 2},
		{"overlap replaces suffix", []raftpb.Entry{dataEnt(1, 1, b), dataEnt(2, 1, b), dataEnt(3, 1, b)}, 0,
			[]raftpb.Entry{noopEnt(2, 2), metaEnt(3, 2)}, false, 3, []uint64{1, 2, 2}, 3},
		{"overlap shorter than the log", []raftpb.Entry{dataEnt(1, 1, b), dataEnt(2, 1, b), dataEnt(3, 1, b), dataEnt(4, 1, b)}, 0,
			[]raftpb.Entry{dataEnt(2, 2, b)}, false, 2, []uint64{1, 2}, 4},
		{"overlap everything", []raftpb.Entry{dataEnt(1, 1, b), dataEnt(2, 1, b)}, 0,
			[]raftpb.Entry{metaEnt(1, 2)}, false, 1, []uint64{2}, 1},
		{"entirely compacted", []raftpb.Entry{dataEnt(1, 1, b), dataEnt(2, 1, b), dataEnt(3, 1, b)}, 2,
			[]raftpb.Entry{dataEnt(1, 1, b), dataEnt(2, 1, b)}, false, 3, []uint64{0, 0, 1}, 6},
		{"partly compacted", []raftpb.Entry{dataEnt(1, 1, b), dataEnt(2, 1, b), dataEnt(3, 1, b)}, 2,
			[]raftpb.Entry{dataEnt(2, 1, b), dataEnt(3, 2, b), dataEnt(4, 2, b)}, false, 4, []uint64{0, 0, 2, 2}, 8},
		{"bad data changes nothing", []raftpb.Entry{dataEnt(1, 1, b), dataEnt(2, 1, b)}, 0,
			[]raftpb.Entry{dataEnt(2, 2, b), {Index: 3, Term: 2, Data: []byte{9}}}, true, 2, []uint64{1, 1}, 4},
		{"bad batch", nil, 0, []raftpb.Entry{{Index: 1, Term: 1, Data: []byte{byte(wal.KindData), 1, 2}}}, true, 0, nil, 0},
		{"not contiguous", nil, 0, []raftpb.Entry{dataEnt(1, 1, b), dataEnt(3, 1, b)}, true, 0, nil, 0},
	}
	// Data entries that do not continue the log's offsets (numbered by a
	// leader against another log) are refused, nothing written.
	stale, _ := stamped(dataEnt(2, 1, b), 5)
	overlap, _ := stamped(dataEnt(2, 1, b), 0)
	unnumbered := []struct {
		name string
		app  []raftpb.Entry
	}{{"offset past the log end", []raftpb.Entry{stale}}, {"offset inside the log", []raftpb.Entry{overlap}}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			log, s := openTestStorage(t, t.TempDir(), wal.Options{})
			defer log.Close()
			if len(tc.base) > 0 {
				mustAppend(t, s, tc.base...)
			}
			if tc.compact > 0 {
				if err := s.CompactTo(tc.compact); err != nil {
					t.Fatal(err)
				}
			}
			err := s.Append(numbered(s, tc.app))
			if (err != nil) != tc.wantErr {
				t.Fatalf("Append: %v, want error %v", err, tc.wantErr)
			}
			for pass := 0; pass < 2; pass++ {
				if last, _ := s.LastIndex(); last != tc.last {
					t.Fatalf("pass %d: last index %d, want %d", pass, last, tc.last)
				}
				for i, want := range tc.terms {
					if want == 0 {
						continue
					}
					if got, err := s.Term(uint64(i + 1)); got != want || err != nil {
						t.Fatalf("pass %d: Term(%d) = %d %v, want %d", pass, i+1, got, err, want)
					}
				}
				if got := s.OffsetAtIndex(tc.last); got != tc.nextOffs || log.NextOffset() != tc.nextOffs {
					t.Fatalf("pass %d: OffsetAtIndex(last) %d, wal NextOffset %d, want %d", pass, got, log.NextOffset(), tc.nextOffs)
				}
				log, s = reopen(t, s, wal.Options{})
			}
		})
	}
	for _, tc := range unnumbered {
		t.Run(tc.name, func(t *testing.T) {
			log, s := openTestStorage(t, t.TempDir(), wal.Options{})
			defer log.Close()
			mustAppend(t, s, dataEnt(1, 1, b))
			if err := s.Append(tc.app); !errors.Is(err, ErrBadData) {
				t.Fatalf("Append: %v, want ErrBadData", err)
			}
			if last, _ := s.LastIndex(); last != 1 || log.NextOffset() != 2 {
				t.Fatalf("last index %d, next offset %d after a refused append", last, log.NextOffset())
			}
		})
	}
}

// TestStorageTruncateNextOffset checks that wal.TruncateBack keeps Kafka's
// NextOffset right for the offsets Append assigns after a conflict,
// including truncation into an earlier segment and back to before the
// first record.
func TestStorageTruncateNextOffset(t *testing.T) {
	opts := wal.Options{SegmentSize: 2 << 10, IndexIntervalBytes: 256}
	log, s := openTestStorage(t, t.TempDir(), opts)
	defer func() { log.Close() }()
	mustAppend(t, s, noopEnt(1, 1), confEnt(2, 1))
	var ents []raftpb.Entry
	for i := uint64(3); i <= 40; i++ {
		ents = append(ents, dataEnt(i, 1, testBatch(3, 1, 200)))
	}
	mustAppend(t, s, ents...)
	for _, to := range []uint64{35, 20, 4, 2, 1} {
		mustAppend(t, s, metaEnt(to+1, 2+to)) // conflicts with term 1 or an older term-(2+x) entry
		want := int64(0)
		if to >= 3 {
			want = int64(to-2) * 3
		}
		if got := log.NextOffset(); got != want+1 {
			t.Fatalf("after truncating to %d: wal NextOffset %d, want %d", to, got, want+1)
		}
		if b, l, err := s.Offsets(to + 1); err != nil || b != want || l != want {
			t.Fatalf("meta entry %d offsets %d %d %v, want %d", to+1, b, l, err, want)
		}
		log, s = reopen(t, s, opts)
		if got := s.OffsetAtIndex(to + 1); got != want+1 {
			t.Fatalf("after reopen: OffsetAtIndex(%d) = %d, want %d", to+1, got, want+1)
		}
	}
}

func TestStorageReopen(t *testing.T) {
	dir := t.TempDir()
	log, s := openTestStorage(t, dir, wal.Options{})
	b := testBatch(4, 100, 200)
	mustAppend(t, s, noopEnt(1, 1), dataEnt(2, 1, b), metaEnt(3, 1))
	mustAppend(t, s, noopEnt(4, 3), dataEnt(5, 3, b, b), confEnt(6, 3))
	hs := raftpb.HardState{Term: 3, Vote: 1, Commit: 5}
	cs := raftpb.ConfState{Voters: []uint64{1, 2, 3}, Learners: []uint64{4}}
	if err := s.SetHardState(hs); err != nil {
		t.Fatal(err)
	}
	if err := s.SetConfState(cs); err != nil {
		t.Fatal(err)
	}
	before, err := s.Entries(1, 7, 1<<30)
	if err != nil {
		t.Fatal(err)
	}
	log.Close()
	log, s = openTestStorage(t, dir, wal.Options{})
	defer func() { log.Close() }()
	ghs, gcs, _ := s.InitialState()
	if ghs != hs || !reflect.DeepEqual(gcs, cs) {
		t.Fatalf("state %+v %+v, want %+v %+v", ghs, gcs, hs, cs)
	}
	after, err := s.Entries(1, 7, 1<<30)
	if err != nil {
		t.Fatal(err)
	}
	if err := entriesEqual(after, before); err != nil {
		t.Fatal(err)
	}
	wantTerms := []uint64{1, 1, 1, 3, 3, 3}
	wantOffs := [][2]int64{{0, -1}, {0, 3}, {4, 4}, {5, 4}, {5, 12}, {13, 12}}
	for i := uint64(1); i <= 6; i++ {
		if tm, _ := s.Term(i); tm != wantTerms[i-1] {
			t.Fatalf("Term(%d) = %d", i, tm)
		}
		bo, lo, err := s.Offsets(i)
		if err != nil || bo != wantOffs[i-1][0] || lo != wantOffs[i-1][1] {
			t.Fatalf("Offsets(%d) = %d %d %v, want %v", i, bo, lo, err, wantOffs[i-1])
		}
	}

	// A commit-only change is not written at once (raft.MustSync); Flush
	// writes it. Term/Vote changes are written at once.
	hs.Commit = 6
	if err := s.SetHardState(hs); err != nil {
		t.Fatal(err)
	}
	log.Close()
	log, s = openTestStorage(t, dir, wal.Options{})
	if got, _, _ := s.InitialState(); got.Commit != 5 && got.Commit != 6 {
		t.Fatalf("commit %d after reopen without Flush", got.Commit)
	}
	if err := s.SetHardState(raftpb.HardState{Term: 4, Vote: 2, Commit: 6}); err != nil {
		t.Fatal(err)
	}
	log.Close()
	log, s = openTestStorage(t, dir, wal.Options{})
	if got, _, _ := s.InitialState(); got != (raftpb.HardState{Term: 4, Vote: 2, Commit: 6}) {
		t.Fatalf("hard state %+v after a term change", got)
	}
}

// TestStorageStandalone opens logs written by a standalone broker (term 0,
// offsets assigned by the writer, no sidecar) as raft storage.
func TestStorageStandalone(t *testing.T) {
	b := testBatch(3, 50, 100)
	standalone := func(t *testing.T, dir string) *wal.Log {
		log := openTestLog(t, dir, wal.Options{SegmentSize: 1 << 10})
		next := int64(0)
		for i := 0; i < 30; i++ {
			if _, err := log.Append(testBatchesEntry(next, b)); err != nil {
				t.Fatal(err)
			}
			next += 3
		}
		if _, err := log.Append(wal.Entry{Kind: wal.KindMeta, BaseOffset: next, MaxTimestamp: 60, Payload: []byte("m")}); err != nil {
			t.Fatal(err)
		}
		return log
	}
	t.Run("whole log", func(t *testing.T) {
		log := standalone(t, t.TempDir())
		defer log.Close()
		s, err := OpenStorage(log)
		if err != nil {
			t.Fatal(err)
		}
		hs, cs, _ := s.InitialState()
		if hs != (raftpb.HardState{Term: 1, Commit: 31}) || len(cs.Voters) != 0 {
			t.Fatalf("state %+v %+v", hs, cs)
		}
		if f, _ := s.FirstIndex(); f != 1 {
			t.Fatalf("first %d", f)
		}
		if tm, err := s.Term(0); tm != 0 || err != nil {
			t.Fatalf("Term(0) = %d %v", tm, err)
		}
		for i := uint64(1); i <= 31; i++ {
			if tm, err := s.Term(i); tm != 1 || err != nil {
				t.Fatalf("Term(%d) = %d %v", i, tm, err)
			}
		}
		if bo, lo, _ := s.Offsets(31); bo != 90 || lo != 90 {
			t.Fatalf("meta offsets %d %d", bo, lo)
		}
		if bo, lo, _ := s.Offsets(5); bo != 12 || lo != 14 {
			t.Fatalf("Offsets(5) = %d %d", bo, lo)
		}
		if got := s.OffsetAtIndex(10); got != 30 {
			t.Fatalf("OffsetAtIndex(10) = %d", got)
		}
		ents, err := s.Entries(1, 3, 1<<20)
		if err != nil || len(ents) != 2 || ents[1].Term != 1 {
			t.Fatalf("Entries: %v %+v", err, ents)
		}
		if we, err := DecodeData(ents[1].Data); err != nil || we.BaseOffset != 3 || !bytes.Equal(we.Payload, b) {
			t.Fatalf("standalone entry read back as %+v, %v", we, err)
		}
		// Raft entries continue the offsets.
		mustAppend(t, s, noopEnt(32, 2), dataEnt(33, 2, b))
		if bo, lo, _ := s.Offsets(33); bo != 91 || lo != 93 {
			t.Fatalf("Offsets(33) = %d %d", bo, lo)
		}
		if tm, _ := s.Term(31); tm != 1 {
			t.Fatal("term of a standalone entry changed")
		}
	})
	t.Run("front truncated", func(t *testing.T) {
		log := standalone(t, t.TempDir())
		defer log.Close()
		if err := log.TruncateFront(11); err != nil {
			t.Fatal(err)
		}
		s, err := OpenStorage(log)
		if err != nil {
			t.Fatal(err)
		}
		snap, _ := s.Snapshot()
		var d SnapshotData
		if err := d.Unmarshal(snap.Data); err != nil {
			t.Fatal(err)
		}
		if snap.Metadata.Index != 10 || snap.Metadata.Term != 1 || d.NextOffset != 30 {
			t.Fatalf("snapshot %+v %+v", snap.Metadata, d)
		}
		if _, err := s.Term(9); err != raft.ErrCompacted {
			t.Fatalf("Term(9): %v", err)
		}
		if _, err := s.Entries(10, 12, 1<<20); err != raft.ErrCompacted {
			t.Fatalf("Entries(10): %v", err)
		}
		if hs, _, _ := s.InitialState(); hs.Commit != 31 {
			t.Fatalf("commit %d", hs.Commit)
		}
		if got := s.OffsetAtIndex(10); got != 30 {
			t.Fatalf("OffsetAtIndex(10) = %d", got)
		}
	})
	t.Run("raft entries without a sidecar", func(t *testing.T) {
		log := standalone(t, t.TempDir())
		defer log.Close()
		if _, err := log.Append(wal.Entry{Kind: wal.KindNoop, Term: 3}, wal.Entry{Kind: wal.KindNoop, Term: 4}); err != nil {
			t.Fatal(err)
		}
		s, err := OpenStorage(log)
		if err != nil {
			t.Fatal(err)
		}
		if hs, _, _ := s.InitialState(); hs != (raftpb.HardState{Term: 4, Commit: 31}) {
			t.Fatalf("hard state %+v: only the standalone prefix is committed", hs)
		}
		if tm, _ := s.Term(32); tm != 3 {
			t.Fatalf("Term(32) = %d", tm)
		}
	})
	t.Run("empty", func(t *testing.T) {
		log := openTestLog(t, t.TempDir(), wal.Options{})
		defer log.Close()
		s, err := OpenStorage(log)
		if err != nil {
			t.Fatal(err)
		}
		hs, _, _ := s.InitialState()
		f, _ := s.FirstIndex()
		l, _ := s.LastIndex()
		if !raft.IsEmptyHardState(hs) || f != 1 || l != 0 {
			t.Fatalf("hs %+v first %d last %d", hs, f, l)
		}
		if _, err := s.Entries(1, 1, 10); err != raft.ErrUnavailable {
			t.Fatalf("Entries on an empty log: %v", err)
		}
	})
}

func TestStorageApplySnapshot(t *testing.T) {
	dir := t.TempDir()
	log, s := openTestStorage(t, dir, wal.Options{})
	defer func() { log.Close() }()
	b := testBatch(2, 7, 90)
	mustAppend(t, s, dataEnt(1, 1, b), dataEnt(2, 1, b))
	cs := raftpb.ConfState{Voters: []uint64{1, 2, 3}}
	snap := raftpb.Snapshot{
		Data:     SnapshotData{NextOffset: 1000, LogStartOffset: 900}.Marshal(),
		Metadata: raftpb.SnapshotMetadata{Index: 50, Term: 4, ConfState: cs},
	}
	if err := s.ApplySnapshot(snap); err != nil {
		t.Fatal(err)
	}
	check := func() {
		t.Helper()
		f, _ := s.FirstIndex()
		l, _ := s.LastIndex()
		tm, _ := s.Term(50)
		hs, gcs, _ := s.InitialState()
		if f != 51 || l != 50 || tm != 4 || hs.Commit != 50 || hs.Term != 4 || !reflect.DeepEqual(gcs, cs) {
			t.Fatalf("first %d last %d term %d hs %+v cs %+v", f, l, tm, hs, gcs)
		}
		if log.NextOffset() != 1000 || s.OffsetAtIndex(50) != 1000 {
			t.Fatalf("next offset %d / %d", log.NextOffset(), s.OffsetAtIndex(50))
		}
	}
	check()
	log, s = reopen(t, s, wal.Options{})
	check()
	for _, old := range []uint64{50, 10} {
		snap.Metadata.Index = old
		if err := s.ApplySnapshot(snap); err != raft.ErrSnapOutOfDate {
			t.Fatalf("snapshot at %d: %v", old, err)
		}
	}
	if err := s.ApplySnapshot(raftpb.Snapshot{Metadata: raftpb.SnapshotMetadata{Index: 60, Term: 5}}); !errors.Is(err, ErrBadData) {
		t.Fatalf("snapshot without data: %v", err)
	}
	mustAppend(t, s, noopEnt(51, 5), dataEnt(52, 5, b))
	if bo, lo, _ := s.Offsets(52); bo != 1000 || lo != 1001 {
		t.Fatalf("Offsets(52) = %d %d", bo, lo)
	}
	ents, _ := s.Entries(52, 53, 1<<20)
	if we, err := DecodeData(ents[0].Data); err != nil || we.BaseOffset != 1000 || !bytes.Equal(we.Payload, b) {
		t.Fatalf("entry 52 read back as %+v, %v", we, err)
	}

	// An install interrupted after the sidecar write is finished on open.
	st := storageState{hardState: raftpb.HardState{Term: 6, Commit: 80}, confState: cs,
		snapIndex: 80, snapTerm: 6, snapNext: 5000, resetting: true}
	if err := log.SaveState(encodeStorageState(st)); err != nil {
		t.Fatal(err)
	}
	log.Close()
	log, s = openTestStorage(t, dir, wal.Options{})
	if f, _ := s.FirstIndex(); f != 81 || log.FirstIndex() != 81 || log.NextOffset() != 5000 {
		t.Fatalf("interrupted install: first %d wal first %d next %d", f, log.FirstIndex(), log.NextOffset())
	}
	raw, _ := log.LoadState()
	if got, err := decodeStorageState(raw); err != nil || got.resetting {
		t.Fatalf("sidecar after finishing the install: %+v %v", got, err)
	}
}

// TestStorageRetention covers retention dropping segments under the
// storage: Entries reports ErrCompacted, CompactTo catches up, and a
// reopen without CompactTo follows the wal.
func TestStorageRetention(t *testing.T) {
	opts := wal.Options{SegmentSize: 1 << 10}
	dir := t.TempDir()
	log, s := openTestStorage(t, dir, opts)
	defer func() { log.Close() }()
	for i := uint64(1); i <= 60; i++ {
		mustAppend(t, s, dataEnt(i, 1+i/20, testBatch(2, int64(i), 150)))
	}
	if err := s.SetHardState(raftpb.HardState{Term: 4, Commit: 60}); err != nil {
		t.Fatal(err)
	}
	s.Applied(60) // the in-memory tail no longer serves them
	if err := log.DropSegments(3); err != nil {
		t.Fatal(err)
	}
	wf := log.FirstIndex()
	if wf <= 2 {
		t.Fatalf("nothing dropped: first %d", wf)
	}
	if _, err := s.Entries(1, 3, 1<<20); err != raft.ErrCompacted {
		t.Fatalf("Entries over dropped segments: %v", err)
	}
	log, s = reopen(t, s, opts)
	snap, _ := s.Snapshot()
	var d SnapshotData
	_ = d.Unmarshal(snap.Data)
	if snap.Metadata.Index != wf-1 || snap.Metadata.Term != 1+(wf-1)/20 || d.NextOffset != int64(wf-1)*2 {
		t.Fatalf("snapshot after reopen %+v %+v, wal first %d", snap.Metadata, d, wf)
	}
	if err := log.DropSegments(2); err != nil {
		t.Fatal(err)
	}
	wf = log.FirstIndex()
	if err := s.CompactTo(wf - 1); err != nil {
		t.Fatal(err)
	}
	if f, _ := s.FirstIndex(); f != wf {
		t.Fatalf("first %d, wal first %d", f, wf)
	}
	for i := wf - 1; i <= 60; i++ {
		if tm, err := s.Term(i); err != nil || tm != 1+i/20 {
			t.Fatalf("Term(%d) = %d %v", i, tm, err)
		}
		if got := s.OffsetAtIndex(i); got != int64(i)*2 {
			t.Fatalf("OffsetAtIndex(%d) = %d", i, got)
		}
	}
}

// TestStorageTermScan reopens a log of many terms with a good, a missing
// and a wrong term hint in the sidecar.
func TestStorageTermScan(t *testing.T) {
	opts := wal.Options{SegmentSize: 4 << 10, Fsync: wal.FsyncNever}
	dir := t.TempDir()
	log, s := openTestStorage(t, dir, opts)
	rng := rand.New(rand.NewPCG(7, 7))
	var terms []uint64 // terms[i-1] is Term(i)
	term := uint64(1)
	for len(terms) < 3000 {
		term += uint64(1 + rng.IntN(3))
		n := 1 + rng.IntN([]int{2, 30, 300}[rng.IntN(3)])
		var ents []raftpb.Entry
		for k := 0; k < n; k++ {
			ents = append(ents, noopEnt(uint64(len(terms)+1), term))
			terms = append(terms, term)
		}
		mustAppend(t, s, ents...)
	}
	if err := s.SetHardState(raftpb.HardState{Term: term, Commit: 10}); err != nil {
		t.Fatal(err)
	}
	verify := func(name string) {
		t.Helper()
		for i, want := range terms {
			if got, err := s.Term(uint64(i + 1)); got != want || err != nil {
				t.Fatalf("%s: Term(%d) = %d %v, want %d", name, i+1, got, err, want)
			}
		}
	}
	verify("written")
	rewrite := func(f func(*storageState)) {
		raw, err := log.LoadState()
		if err != nil {
			t.Fatal(err)
		}
		st, err := decodeStorageState(raw)
		if err != nil {
			t.Fatal(err)
		}
		f(&st)
		if err := log.SaveState(encodeStorageState(st)); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		name string
		f    func(*storageState)
	}{
		{"hint", func(*storageState) {}},
		{"no hint", func(st *storageState) { st.runs = nil }},
		{"partial hint", func(st *storageState) { st.runs = st.runs[len(st.runs)/2:] }},
		{"wrong hint", func(st *storageState) {
			for i := range st.runs {
				st.runs[i].start += uint64(i % 3)
			}
		}},
		{"hint past the end", func(st *storageState) {
			st.runs = append(st.runs, termRun{5000, term + 1}, termRun{6000, term + 5})
		}},
	} {
		rewrite(tc.f)
		log.Close()
		log, s = openTestStorage(t, dir, opts)
		verify(tc.name)
	}
	log.Close()
}

func TestStorageOffsetsKinds(t *testing.T) {
	log, s := openTestStorage(t, t.TempDir(), wal.Options{})
	defer log.Close()
	ents := []raftpb.Entry{
		noopEnt(1, 1),
		dataEnt(2, 1, testBatch(5, 100, 100)),
		metaEnt(3, 1),
		confEnt(4, 1),
		dataEnt(5, 2, testBatch(1, 200, 70), testBatch(3, 150, 80)),
		noopEnt(6, 2),
		metaEnt(7, 2),
	}
	mustAppend(t, s, ents...)
	want := []struct {
		kind         wal.Kind
		base, last   int64
		maxTimestamp int64
	}{
		{wal.KindNoop, 0, -1, -1},
		{wal.KindData, 0, 4, 100},
		{wal.KindMeta, 5, 5, -1},
		{wal.KindConfChange, 6, 5, -1},
		{wal.KindData, 6, 9, 200},
		{wal.KindNoop, 10, 9, -1},
		{wal.KindMeta, 10, 10, -1},
	}
	for i, w := range want {
		idx := uint64(i + 1)
		b, l, err := s.Offsets(idx)
		if err != nil || b != w.base || l != w.last {
			t.Errorf("Offsets(%d) = %d %d %v, want %d %d", idx, b, l, err, w.base, w.last)
		}
		if got := s.OffsetAtIndex(idx); got != w.last+1 {
			t.Errorf("OffsetAtIndex(%d) = %d, want %d", idx, got, w.last+1)
		}
		we, err := log.Read(idx)
		if err != nil {
			t.Fatal(err)
		}
		if we.Kind != w.kind || we.Term != ents[i].Term || we.MaxTimestamp != w.maxTimestamp {
			t.Errorf("wal entry %d: %+v", idx, we)
		}
		if we.Kind.HasRecords() && (we.BaseOffset != w.base || we.LastOffset() != w.last) {
			t.Errorf("wal entry %d offsets %d %d", idx, we.BaseOffset, we.LastOffset())
		}
	}
	// The second data entry's batches are stored as proposed.
	we, _ := log.Read(5)
	if orig, _ := DecodeData(ents[4].Data); !bytes.Equal(we.Payload, orig.Payload) {
		t.Fatalf("entry 5's batches were rewritten")
	}
	// Offsets below the in-memory window come from the wal.
	s.mu.Lock()
	s.trimWindowLocked(7)
	s.mu.Unlock()
	for i, w := range want {
		if b, l, _ := s.Offsets(uint64(i + 1)); b != w.base || l != w.last {
			t.Errorf("from the wal: Offsets(%d) = %d %d, want %d %d", i+1, b, l, w.base, w.last)
		}
		if got := s.OffsetAtIndex(uint64(i + 1)); got != w.last+1 {
			t.Errorf("from the wal: OffsetAtIndex(%d) = %d", i+1, got)
		}
	}
}

func TestStorageStateEncoding(t *testing.T) {
	for _, st := range []storageState{
		{},
		{hardState: raftpb.HardState{Term: 5, Vote: 2, Commit: 1 << 40}, confState: raftpb.ConfState{Voters: []uint64{1, 2}, VotersOutgoing: []uint64{3}, AutoLeave: true},
			snapIndex: 99, snapTerm: 4, snapNext: 12345, resetting: true, runs: []termRun{{100, 4}, {150, 5}, {1 << 50, 9}}},
	} {
		got, err := decodeStorageState(encodeStorageState(st))
		if err != nil {
			t.Fatal(err)
		}
		if got.confState.Voters == nil && st.confState.Voters == nil {
			got.confState, st.confState = raftpb.ConfState{}, raftpb.ConfState{}
		}
		if len(got.runs) == 0 && len(st.runs) == 0 {
			got.runs, st.runs = nil, nil
		}
		if !reflect.DeepEqual(got, st) {
			t.Fatalf("round trip %+v, want %+v", got, st)
		}
	}
	for _, d := range []SnapshotData{{}, {NextOffset: 1 << 40, LogStartOffset: 7}} {
		var got SnapshotData
		if err := got.Unmarshal(d.Marshal()); err != nil || got != d {
			t.Fatalf("snapshot data %+v %v, want %+v", got, err, d)
		}
	}
	for _, bad := range [][]byte{nil, {2, 0, 0}, {1, 0}, {1, 0, 0, 0}, {1, 1, 0}, {1, 4, 6}} {
		var d SnapshotData
		if err := d.Unmarshal(bad); err == nil {
			t.Errorf("snapshot data %x accepted: %+v", bad, d)
		}
	}
}

// TestStorageConcurrentReaders runs Term/OffsetAtIndex/Entries readers
// against an appender (for -race).
func TestStorageConcurrentReaders(t *testing.T) {
	log, s := openTestStorage(t, t.TempDir(), wal.Options{Fsync: wal.FsyncNever, SegmentSize: 8 << 10})
	defer log.Close()
	done := make(chan struct{})
	errc := make(chan error, 1)
	go func() {
		defer close(errc)
		for {
			select {
			case <-done:
				return
			default:
			}
			l, _ := s.LastIndex()
			f, _ := s.FirstIndex()
			if l < f {
				continue
			}
			if _, err := s.Term(l); err != nil {
				errc <- err
				return
			}
			prev := int64(-1)
			for i := f; i <= l; i += 7 {
				o := s.OffsetAtIndex(i)
				if o < prev {
					errc <- fmt.Errorf("OffsetAtIndex(%d) = %d after %d", i, o, prev)
					return
				}
				prev = o
			}
			lo := f
			if l > f+3 {
				lo = l - 3
			}
			if _, err := s.Entries(lo, l+1, 1<<20); err != nil && err != raft.ErrCompacted {
				errc <- err
				return
			}
		}
	}()
	for i := uint64(1); i <= 400; i++ {
		mustAppend(t, s, dataEnt(i, 1+i/50, testBatch(2, 1, 100)))
		if i%50 == 0 {
			if err := s.SetHardState(raftpb.HardState{Term: 1 + i/50, Commit: i}); err != nil {
				t.Fatal(err)
			}
			if err := s.CompactTo(i - 20); err != nil {
				t.Fatal(err)
			}
		}
	}
	close(done)
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	_ = os.Remove(filepath.Join(log.Dir(), "nothing"))
}

// TestStorageReconcile: a sidecar whose snapshot point is ahead of the wal
// (a crash between the sidecar write and the wal change, or a wal that
// lost its tail) is honoured on open.
func TestStorageReconcile(t *testing.T) {
	b := testBatch(2, 1, 80)
	tests := []struct {
		name      string
		snapIndex uint64
		first     uint64
		last      uint64
		next      int64
	}{
		{"inside the log: compact", 5, 6, 10, 20},
		{"at the end: compact to empty", 10, 11, 10, 20},
		{"past the end: reset", 30, 31, 30, 500},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			log, s := openTestStorage(t, dir, wal.Options{})
			for i := uint64(1); i <= 10; i++ {
				mustAppend(t, s, dataEnt(i, 2, b))
			}
			st := storageState{hardState: raftpb.HardState{Term: 3, Commit: 10}, snapIndex: tc.snapIndex, snapTerm: 2, snapNext: 500}
			if tc.snapIndex <= 10 {
				st.snapNext = int64(tc.snapIndex) * 2
			}
			if err := log.SaveState(encodeStorageState(st)); err != nil {
				t.Fatal(err)
			}
			log.Close()
			log, s = openTestStorage(t, dir, wal.Options{})
			defer log.Close()
			f, _ := s.FirstIndex()
			l, _ := s.LastIndex()
			if f != tc.first || l != tc.last || log.FirstIndex() != tc.first || log.NextOffset() != tc.next {
				t.Fatalf("first %d last %d wal first %d next %d", f, l, log.FirstIndex(), log.NextOffset())
			}
			if tm, _ := s.Term(tc.snapIndex); tm != 2 {
				t.Fatalf("snapshot term %d", tm)
			}
			if hs, _, _ := s.InitialState(); hs.Commit < tc.snapIndex || hs.Commit > l {
				t.Fatalf("commit %d outside [%d, %d]", hs.Commit, tc.snapIndex, l)
			}
		})
	}
}

// The tail (recent entries kept in memory) answers exactly what the wal
// does, and slices it handed out never change afterwards: not when the
// front is dropped (Applied), not when a conflicting suffix is replaced.
func TestStorageTail(t *testing.T) {
	opts := wal.Options{Fsync: wal.FsyncNever, SegmentSize: 4 << 10}
	_, s := openTestStorage(t, t.TempDir(), opts)
	_, w := openTestStorage(t, t.TempDir(), opts) // the same entries, read from its wal
	both := func(ents ...raftpb.Entry) {
		t.Helper()
		mustAppend(t, s, ents...)
		mustAppend(t, w, ents...)
		w.Applied(w.last) // empties w's tail
	}
	b := testBatch(2, 1000, 100)
	var ents []raftpb.Entry
	next := int64(0)
	for i := uint64(1); i <= 12; i++ {
		var e raftpb.Entry
		switch i % 4 {
		case 0:
			e = metaEnt(i, 1)
		case 1:
			e = dataEnt(i, 1, b) // unstamped: stored restamped, so not kept
		case 2:
			e = noopEnt(i, 1)
		default:
			e = dataEnt(i, 1, b)
		}
		st, n := stamped(e, next)
		if i%4 == 3 {
			e = st // stamped, as a follower receives it: kept
		}
		next = n
		ents = append(ents, e)
	}
	both(ents...)
	both(confEnt(13, 1), metaEnt(14, 1), metaEnt(15, 1))
	if len(s.tail) == 0 || len(w.tail) != 0 {
		t.Fatalf("tails of %d and %d entries, want some and none", len(s.tail), len(w.tail))
	}

	check := func(last uint64) {
		t.Helper()
		for lo := uint64(1); lo <= last; lo++ {
			for hi := lo + 1; hi <= last+1; hi++ {
				got, err := s.Entries(lo, hi, math.MaxUint64)
				if err != nil {
					t.Fatal(err)
				}
				want, err := w.Entries(lo, hi, math.MaxUint64)
				if err != nil {
					t.Fatal(err)
				}
				if err := entriesEqual(got, want); err != nil {
					t.Fatalf("[%d, %d): %v", lo, hi, err)
				}
				one, err := s.Entries(lo, hi, 0)
				if err != nil || len(one) != 1 || one[0].Index != lo {
					t.Fatalf("[%d, %d) with maxSize 0: %d entries, %v; want the first alone", lo, hi, len(one), err)
				}
			}
		}
	}
	check(15)

	// Hold a slice from the tail, then drop the front and replace a suffix.
	held, err := s.Entries(14, 16, math.MaxUint64)
	if err != nil {
		t.Fatal(err)
	}
	heldCopy := make([]raftpb.Entry, len(held))
	for i, e := range held {
		e.Data = append([]byte(nil), e.Data...)
		heldCopy[i] = e
	}
	s.Applied(13)
	both(metaEnt(15, 2), metaEnt(16, 2), metaEnt(17, 2))
	both(metaEnt(18, 2))
	if err := entriesEqual(held, heldCopy); err != nil {
		t.Fatalf("a slice Entries returned changed: %v", err)
	}
	check(18)
}

// EpochEnd answers OffsetForLeaderEpoch from the log's terms: the largest
// term at or below the one asked and the offset where the next began.
func TestStorageEpochEnd(t *testing.T) {
	_, s := openTestStorage(t, t.TempDir(), wal.Options{Fsync: wal.FsyncNever})
	next := int64(0)
	add := func(e raftpb.Entry) {
		t.Helper()
		st, n := stamped(e, next)
		next = n
		mustAppend(t, s, st)
	}
	add(dataEnt(1, 1, testBatch(3, 1000, 10))) // offsets 0-2
	add(dataEnt(2, 1, testBatch(2, 1000, 10))) // 3-4
	add(noopEnt(3, 3))
	add(dataEnt(4, 3, testBatch(4, 1000, 10))) // 5-8
	add(noopEnt(5, 5))
	add(dataEnt(6, 5, testBatch(1, 1000, 10))) // 9
	for _, c := range []struct {
		epoch, floor uint64
		end          int64
		ok           bool
	}{
		{0, 0, 5, true}, // standalone data (term 0) counts as term 1
		{1, 1, 5, true},
		{2, 1, 5, true},
		{3, 3, 9, true},
		{4, 3, 9, true},
		{5, 0, 0, false},
		{9, 0, 0, false},
	} {
		floor, end, ok := s.EpochEnd(c.epoch)
		if floor != c.floor || end != c.end || ok != c.ok {
			t.Errorf("EpochEnd(%d) = %d, %d, %v; want %d, %d, %v", c.epoch, floor, end, ok, c.floor, c.end, c.ok)
		}
	}
}

// The tail keeps at most tailMaxBytes of Data (and always the newest
// entry), whatever is not applied yet.
func TestStorageTailBound(t *testing.T) {
	_, s := openTestStorage(t, t.TempDir(), wal.Options{Fsync: wal.FsyncNever})
	const size = 3 << 20
	for i := uint64(1); i <= 20; i++ {
		mustAppend(t, s, raftpb.Entry{Index: i, Term: 1, Data: EncodeData(wal.KindMeta, make([]byte, size))})
		sum := 0
		for _, e := range s.tail {
			sum += len(e.Data)
		}
		if sum != s.tailBytes || sum > tailMaxBytes+size+1 || len(s.tail) == 0 || s.tail[len(s.tail)-1].Index != i {
			t.Fatalf("after %d entries of %d bytes: tail of %d entries, %d bytes counted as %d (bound %d)", i, size, len(s.tail), sum, s.tailBytes, tailMaxBytes)
		}
	}
}
