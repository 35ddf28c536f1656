package cluster

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"sort"
	"sync"
	"time"

	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"

	"github.com/chronik-stream/chronik/wal"
)

// Storage is raft.Storage on a wal.Log: raft index == WAL index, raft term
// == the wal entry's Term (0, a standalone entry, is reported as 1). The
// write side (Append, SetHardState, SetConfState, ApplySnapshot, CompactTo)
// is called by one goroutine at a time per group; every method is safe for
// concurrent use.
//
// In memory it keeps what raft and the high watermark ask for constantly:
//
//   - the terms as runs of (first index, term): 16 bytes per term change,
//     so Term never reads the wal;
//   - the Kafka offsets of a window of recent entries, from a little below
//     the commit index to the last index (8 bytes per entry), so
//     OffsetAtIndex and Offsets at or near the commit never read the wal;
//     older indexes fall back to reading entry headers.
//
// Raft state lives in the log's state sidecar (see encodeStorageState).
// HardState changes of Term or Vote are written before SetHardState
// returns; a change of Commit alone is not (raft.MustSync: a commit index
// may be lost and relearned) and is written with the next sidecar write,
// at most commitSaveInterval later on a busy group, or by Flush.
type Storage struct {
	log *wal.Log

	// wmu serializes the write side. Fields below that only writers change
	// may be read under wmu alone; they are changed under wmu and mu.
	wmu     sync.Mutex
	saved   raftpb.HardState // as last written to the sidecar
	dirty   bool             // hs.Commit not yet written
	savedAt time.Time

	mu        sync.RWMutex
	hs        raftpb.HardState
	cs        raftpb.ConfState
	snapIndex uint64 // the snapshot point: FirstIndex-1
	snapTerm  uint64
	snapNext  int64 // Kafka NextOffset at snapIndex
	last      uint64
	runs      []termRun // terms of (snapIndex, last]; runs[0].start == snapIndex+1
	offBase   uint64    // offs[k] is the NextOffset after entry offBase+k
	offs      []int64   // covers [offBase, last]; never empty

	// tail holds the entries Append stored last, exactly as raft handed
	// them over (Data shared, never modified), so that the reads raft
	// makes soon after an append come from memory instead of the wal: the
	// committed entries it hands to Apply a round trip later, and the
	// entries for a follower a little behind. It is contiguous and ends at
	// last (or is empty), holds at most tailMaxBytes of Data (the newest
	// entry always), and drops what was applied (Applied). Entries hands
	// out slices of it, so a slot of its backing array is never written
	// twice: the front is resliced away, a truncated tail is capped so the
	// next append reallocates, and a reset starts a new array.
	tail      []raftpb.Entry
	tailBytes int

	// observer, if set, hears of every change to the log's records (the
	// partition's view of its log follows them). Set before the group runs.
	observer LogObserver
}

// LogObserver is told what the storage, the log's only writer, did to it:
// entries appended (in order, once written) and the log cut back to a
// Kafka offset (a conflicting suffix replaced, a snapshot installed). It
// is broker.ReplicaEvents' Appended and Truncated; calls come from the
// group's worker with the write lock held and must not call back.
type LogObserver interface {
	Appended(entries []wal.Entry)
	Truncated(nextOffset int64)
}

// SetObserver sets the storage's LogObserver; call it before the group
// that writes the storage starts.
func (s *Storage) SetObserver(o LogObserver) { s.observer = o }

// termRun: the entries from start up to the next run's start have term.
type termRun struct {
	start, term uint64
}

const (
	// commitSaveInterval bounds how long a commit-only HardState change
	// stays unwritten while SetHardState keeps being called.
	commitSaveInterval = time.Second
	// offsetWindowMargin: entries below the commit index kept in the
	// offset window (HW lookups for a slightly older commit stay in memory).
	offsetWindowMargin = 64
	// maxOffsetWindow caps the window when the commit does not advance.
	maxOffsetWindow = 1 << 16
	// maxHintRuns bounds the term runs written to the sidecar as a hint.
	maxHintRuns = 1024
	// tailMaxBytes bounds the Data the tail keeps per group.
	tailMaxBytes = 8 << 20
)

// OpenStorage opens the raft storage of log: see cluster/api.go.
func OpenStorage(log *wal.Log) (*Storage, error) {
	s := &Storage{log: log}
	raw, err := log.LoadState()
	if err != nil {
		return nil, fmt.Errorf("cluster: open storage: %w", err)
	}
	var hint []termRun
	var stored raftpb.HardState // as in the sidecar
	save := false
	if raw == nil {
		first := log.FirstIndex()
		s.snapIndex = first - 1
		if first > 1 {
			s.snapTerm = 1
		}
		s.snapNext = log.StartOffset()
	} else {
		st, err := decodeStorageState(raw)
		if err != nil {
			return nil, fmt.Errorf("cluster: open storage in %s: %w", log.Dir(), err)
		}
		s.hs, s.cs, stored = st.hardState, st.confState, st.hardState
		s.snapIndex, s.snapTerm, s.snapNext = st.snapIndex, st.snapTerm, st.snapNext
		hint = st.runs
		if st.resetting { // ApplySnapshot was interrupted: finish it
			if err := log.Reset(s.snapIndex+1, s.snapNext); err != nil {
				return nil, fmt.Errorf("cluster: open storage: finish snapshot install: %w", err)
			}
			save = true
		}
		if changed, err := s.reconcile(hint); err != nil {
			return nil, fmt.Errorf("cluster: open storage in %s: %w", log.Dir(), err)
		} else if changed {
			save = true
		}
	}
	first, last := log.FirstIndex(), log.LastIndex()
	raw0, err := scanTerms(log, first, last, hint)
	if err != nil {
		return nil, fmt.Errorf("cluster: open storage in %s: %w", log.Dir(), err)
	}
	s.last = last
	s.runs = reportedRuns(raw0)
	if raw == nil {
		// A standalone log becoming a replica: what it holds was
		// acknowledged, so its term-0 prefix is committed. A log that has
		// raft entries but never got a sidecar (a crash before the first
		// SetHardState) does not get those committed.
		commit := s.snapIndex
		if len(raw0) > 0 && raw0[0].term == 0 {
			commit = last
			if len(raw0) > 1 {
				commit = raw0[1].start - 1
			}
		}
		if last > s.snapIndex || s.snapIndex > 0 {
			s.hs = raftpb.HardState{Term: max(1, s.lastTerm()), Commit: commit}
		}
	}
	// raft panics on a commit index outside [snapshot, last index].
	s.hs.Commit = min(max(s.hs.Commit, s.snapIndex), s.last)
	s.offBase, s.offs = last, []int64{log.NextOffset()}
	if raw != nil && s.hs != stored {
		save = true
	}
	s.saved = stored
	if save {
		s.wmu.Lock()
		err := s.saveLocked(false)
		s.wmu.Unlock()
		if err != nil {
			return nil, fmt.Errorf("cluster: open storage: %w", err)
		}
	}
	return s, nil
}

// reconcile makes the wal agree with the snapshot point read from the
// sidecar after a crash between the two, and reports whether the snapshot
// point changed.
func (s *Storage) reconcile(hint []termRun) (bool, error) {
	first, last := s.log.FirstIndex(), s.log.LastIndex()
	switch {
	case s.snapIndex+1 == first:
		return false, nil
	case s.snapIndex+1 < first:
		// Retention dropped entries and CompactTo did not run: the
		// snapshot point follows the wal. Its term is the hint's if the
		// hint covers it, else the first entry's (terms never decrease,
		// and a follower's entry at first-1 can only have first's term if
		// ours had it too).
		s.snapIndex = first - 1
		s.snapTerm = 0
		for _, r := range hint {
			if r.start <= s.snapIndex {
				s.snapTerm = r.term
			}
		}
		if s.snapTerm == 0 && last >= first {
			e, err := s.log.Read(first)
			if err != nil {
				return false, err
			}
			s.snapTerm = max(e.Term, 1)
		}
		s.snapNext = s.log.StartOffset()
		return true, nil
	case s.snapIndex <= last:
		// The snapshot point is inside the log: compact the wal to it.
		return false, s.log.TruncateFront(s.snapIndex + 1)
	default:
		// The wal lost entries up to the snapshot point (fsync policy
		// never/interval): restart it after the snapshot point.
		return false, s.log.Reset(s.snapIndex+1, s.snapNext)
	}
}

// scanTerms returns the runs of stored terms (0 kept distinct) of the
// entries [first, last]. Terms never decrease along a raft log, so equal
// terms at both ends of a range mean one run: a bisection reads O(runs ×
// log entries) headers, and the hint's boundaries (from the sidecar),
// probed first, usually leave nothing to bisect.
func scanTerms(log *wal.Log, first, last uint64, hint []termRun) ([]termRun, error) {
	if last < first {
		return nil, nil
	}
	var readErr error
	termAt := func(i uint64) uint64 {
		if readErr != nil {
			return 0
		}
		e, err := log.Read(i)
		if err != nil {
			readErr = err
			return 0
		}
		return e.Term
	}
	pts := []uint64{first}
	for _, r := range hint {
		if r.start > first && r.start <= last {
			if r.start-1 > pts[len(pts)-1] {
				pts = append(pts, r.start-1)
			}
			pts = append(pts, r.start)
		}
	}
	if last > pts[len(pts)-1] {
		pts = append(pts, last)
	}
	var runs []termRun
	var bad error
	emit := func(i, t uint64) {
		n := len(runs)
		switch {
		case n == 0 || t > runs[n-1].term:
			runs = append(runs, termRun{i, t})
		case t < runs[n-1].term && bad == nil:
			bad = fmt.Errorf("%w: term %d at index %d after term %d", wal.ErrCorrupt, t, i, runs[n-1].term)
		}
	}
	var fill func(lo, hi, tlo, thi uint64)
	fill = func(lo, hi, tlo, thi uint64) { // emits the boundaries in (lo, hi]
		if tlo == thi || readErr != nil {
			return
		}
		if hi == lo+1 {
			emit(hi, thi)
			return
		}
		mid := lo + (hi-lo)/2
		tm := termAt(mid)
		fill(lo, mid, tlo, tm)
		fill(mid, hi, tm, thi)
	}
	prev := termAt(pts[0])
	emit(pts[0], prev)
	for k := 1; k < len(pts); k++ {
		t := termAt(pts[k])
		fill(pts[k-1], pts[k], prev, t)
		prev = t
	}
	if readErr != nil {
		return nil, readErr
	}
	return runs, bad
}

// reportedRuns maps stored terms to reported ones (0 -> 1) and merges.
func reportedRuns(raw []termRun) []termRun {
	out := make([]termRun, 0, len(raw))
	for _, r := range raw {
		t := max(r.term, 1)
		if n := len(out); n > 0 && out[n-1].term == t {
			continue
		}
		out = append(out, termRun{r.start, t})
	}
	return out
}

func (s *Storage) lastTerm() uint64 {
	if n := len(s.runs); n > 0 {
		return s.runs[n-1].term
	}
	return s.snapTerm
}

// Log is the underlying wal.Log.
func (s *Storage) Log() *wal.Log { return s.log }

// InitialState implements raft.Storage.
func (s *Storage) InitialState() (raftpb.HardState, raftpb.ConfState, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.hs, cloneConfState(s.cs), nil
}

// FirstIndex implements raft.Storage.
func (s *Storage) FirstIndex() (uint64, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.snapIndex + 1, nil
}

// LastIndex implements raft.Storage.
func (s *Storage) LastIndex() (uint64, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.last, nil
}

// Term implements raft.Storage, from memory.
func (s *Storage) Term(i uint64) (uint64, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.termLocked(i)
}

func (s *Storage) termLocked(i uint64) (uint64, error) {
	switch {
	case i < s.snapIndex:
		return 0, raft.ErrCompacted
	case i == s.snapIndex:
		return s.snapTerm, nil
	case i > s.last:
		return 0, raft.ErrUnavailable
	}
	n := len(s.runs)
	if s.runs[n-1].start <= i {
		return s.runs[n-1].term, nil
	}
	k := sort.Search(n, func(k int) bool { return s.runs[k].start > i })
	return s.runs[k-1].term, nil
}

// Snapshot implements raft.Storage: the snapshot point with the current
// ConfState and SnapshotData saying where the log restarts.
func (s *Storage) Snapshot() (raftpb.Snapshot, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	d := SnapshotData{NextOffset: s.snapNext, LogStartOffset: s.snapNext}
	return raftpb.Snapshot{
		Data: d.Marshal(),
		Metadata: raftpb.SnapshotMetadata{
			ConfState: cloneConfState(s.cs),
			Index:     s.snapIndex,
			Term:      s.snapTerm,
		},
	}, nil
}

// Entries implements raft.Storage: entries [lo, hi) read from the wal, at
// most maxSize bytes (raftpb.Entry.Size) but always at least one.
func (s *Storage) Entries(lo, hi, maxSize uint64) ([]raftpb.Entry, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if lo <= s.snapIndex {
		return nil, raft.ErrCompacted
	}
	if hi > s.last+1 || lo > hi {
		return nil, fmt.Errorf("cluster: entries [%d, %d) out of bound, last index %d", lo, hi, s.last)
	}
	if s.last == s.snapIndex {
		return nil, raft.ErrUnavailable
	}
	if lo == hi {
		return nil, nil
	}
	if ents := s.tailEntriesLocked(lo, hi, maxSize); ents != nil {
		return ents, nil
	}
	type read struct {
		we   wal.Entry
		term uint64
	}
	reads := make([]read, 0, min(hi-lo, 64))
	var size, dataBytes uint64
	for i := lo; i < hi; i++ {
		we, err := s.log.Read(i)
		if err != nil {
			if errors.Is(err, wal.ErrNotFound) && i < s.log.FirstIndex() {
				return nil, raft.ErrCompacted // retention ran ahead of CompactTo
			}
			return nil, fmt.Errorf("cluster: entries: %w", err)
		}
		term, _ := s.termLocked(i)
		n := entryDataSize(&we)
		size += entrySize(i, term, n)
		if len(reads) > 0 && size > maxSize {
			break
		}
		reads = append(reads, read{we, term})
		dataBytes += uint64(n)
	}
	buf := make([]byte, 0, dataBytes)
	ents := make([]raftpb.Entry, len(reads))
	for k := range reads {
		ents[k] = fromWalEntry(lo+uint64(k), reads[k].we, &buf)
		ents[k].Term = reads[k].term
	}
	return ents, nil
}

// tailEntriesLocked serves Entries from the tail, or returns nil when the
// tail does not hold [lo, hi). mu held.
func (s *Storage) tailEntriesLocked(lo, hi, maxSize uint64) []raftpb.Entry {
	if len(s.tail) == 0 || lo < s.tail[0].Index || hi > s.tail[0].Index+uint64(len(s.tail)) {
		return nil
	}
	ents := s.tail[lo-s.tail[0].Index : hi-s.tail[0].Index]
	var size uint64
	n := 0
	for ; n < len(ents); n++ {
		size += uint64(ents[n].Size())
		if n > 0 && size > maxSize {
			break
		}
	}
	// The full slice expression makes raft's append to the result copy
	// instead of overwriting the tail after it.
	return ents[:n:n]
}

// tailAppendLocked adds stored entries to the tail: cacheable says each
// one's Data is what the wal holds (an entry whose batches Append had to
// restamp, or a conf change stored in another form, is not). mu held.
func (s *Storage) tailAppendLocked(entries []raftpb.Entry, cacheable []bool) {
	if len(s.tail) > 0 && s.tail[len(s.tail)-1].Index+1 != entries[0].Index {
		s.tailDropFromLocked(entries[0].Index)
		if len(s.tail) > 0 && s.tail[len(s.tail)-1].Index+1 != entries[0].Index {
			s.tailResetLocked()
		}
	}
	for i := range entries {
		if !cacheable[i] {
			s.tailResetLocked() // the tail restarts after this entry
			continue
		}
		s.tail = append(s.tail, entries[i])
		s.tailBytes += len(entries[i].Data)
	}
	k, over := 0, s.tailBytes-tailMaxBytes
	for k < len(s.tail)-1 && over > 0 {
		over -= len(s.tail[k].Data)
		k++
	}
	s.tailTrimFrontLocked(k) // subtracts what it drops from tailBytes
}

// tailDropFromLocked drops the tail's entries from index on (a conflicting
// suffix being replaced). mu held.
func (s *Storage) tailDropFromLocked(index uint64) {
	if len(s.tail) == 0 || index > s.tail[len(s.tail)-1].Index {
		return
	}
	if index <= s.tail[0].Index {
		s.tailResetLocked()
		return
	}
	keep := int(index - s.tail[0].Index)
	for i := keep; i < len(s.tail); i++ {
		s.tailBytes -= len(s.tail[i].Data)
	}
	// Capped: the next append reallocates rather than overwrite entries
	// Entries may have handed out.
	s.tail = s.tail[:keep:keep]
}

// tailTrimFrontLocked drops the tail's first k entries. mu held.
func (s *Storage) tailTrimFrontLocked(k int) {
	if k <= 0 {
		return
	}
	if k >= len(s.tail) {
		s.tailResetLocked()
		return
	}
	for i := range k {
		s.tailBytes -= len(s.tail[i].Data)
	}
	s.tail = s.tail[k:]
}

func (s *Storage) tailResetLocked() {
	s.tail, s.tailBytes = nil, 0
}

// Applied tells the storage that entries up to index were applied: the
// tail no longer needs them (a follower still behind reads the wal).
func (s *Storage) Applied(index uint64) {
	s.mu.Lock()
	if len(s.tail) > 0 && index >= s.tail[0].Index {
		s.tailTrimFrontLocked(int(min(index-s.tail[0].Index+1, uint64(len(s.tail)))))
	}
	s.mu.Unlock()
}

// entrySize is raftpb.Entry.Size() of an entry with n bytes of Data.
func entrySize(index, term uint64, n int) uint64 {
	size := 3 + sov(term) + sov(index) + 1 // Term, Index, Type (<128)
	if n > 0 {
		size += 1 + sov(uint64(n)) + n
	}
	return uint64(size)
}

func sov(x uint64) int {
	n := 1
	for x >= 0x80 {
		x >>= 7
		n++
	}
	return n
}

// Append stores entries from a Ready (see cluster/api.go): entries before
// FirstIndex are ignored, entries at or below LastIndex replace the
// conflicting suffix, a gap after LastIndex is an error. A data entry is
// stored with the offsets it carries, which must continue the log's
// (ErrBadData otherwise: the leader numbered it against another log); a
// metadata record takes the next offset. Batches are stored as they came.
func (s *Storage) Append(entries []raftpb.Entry) error {
	if len(entries) == 0 {
		return nil
	}
	s.wmu.Lock()
	defer s.wmu.Unlock()
	first, last := s.snapIndex+1, s.last
	if entries[0].Index+uint64(len(entries))-1 < first {
		return nil
	}
	if entries[0].Index < first {
		entries = entries[first-entries[0].Index:]
	}
	at := entries[0].Index
	if at > last+1 {
		return fmt.Errorf("cluster: append at index %d leaves a gap after last index %d", at, last)
	}

	// Convert and check everything before touching the log.
	wents := make([]wal.Entry, len(entries))
	for i := range entries {
		e := &entries[i]
		if i > 0 && e.Index != entries[i-1].Index+1 {
			return fmt.Errorf("cluster: append: index %d after %d", e.Index, entries[i-1].Index)
		}
		we, err := ToWalEntry(*e)
		if err != nil {
			return fmt.Errorf("cluster: append: %w", err)
		}
		if we.Kind == wal.KindMeta {
			we.LastOffsetDelta, we.MaxTimestamp = 0, -1
		}
		wents[i] = we
	}
	// The offsets to check data entries against: the log's, from the
	// conflict point on.
	s.mu.RLock()
	next := s.offsetAtLocked(at - 1)
	s.mu.RUnlock()
	nexts := make([]int64, len(wents)) // the log's next offset after each
	cacheable := make([]bool, len(wents))
	for i := range wents {
		we := &wents[i]
		switch we.Kind {
		case wal.KindData:
			if we.BaseOffset != next {
				return fmt.Errorf("cluster: append: %w: entry %d carries offset %d, the log continues at %d", ErrBadData, entries[i].Index, we.BaseOffset, next)
			}
		case wal.KindMeta:
			we.BaseOffset = next
		}
		if we.Kind.HasRecords() {
			next = we.LastOffset() + 1
		}
		nexts[i] = next
		// A v1 conf change is stored converted: not what raft holds.
		cacheable[i] = entries[i].Type != raftpb.EntryConfChange
	}

	if at <= last {
		s.mu.Lock()
		err := s.log.TruncateBack(at - 1)
		if err == nil {
			s.truncateCachesLocked(at - 1)
			s.tailDropFromLocked(at)
		}
		s.mu.Unlock()
		if err != nil {
			return fmt.Errorf("cluster: append: truncate conflicting entries after %d: %w", at-1, err)
		}
		if s.observer != nil {
			s.observer.Truncated(s.log.NextOffset())
		}
	}

	index, err := s.log.Append(wents...)
	if err != nil {
		return fmt.Errorf("cluster: append at %d: %w", at, err)
	}
	if index != at {
		return fmt.Errorf("cluster: append: wal put entry %d at index %d (written to behind the storage's back?)", at, index)
	}
	if s.observer != nil {
		s.observer.Appended(wents)
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	for i := range entries {
		t := entries[i].Term
		if n := len(s.runs); n == 0 || s.runs[n-1].term != t {
			s.runs = append(s.runs, termRun{entries[i].Index, t})
		}
	}
	s.last = entries[len(entries)-1].Index
	s.tailAppendLocked(entries, cacheable)
	s.offs = append(s.offs, nexts...)
	if len(s.offs) > maxOffsetWindow {
		s.trimWindowLocked(s.last - maxOffsetWindow/2)
	}
	return nil
}

// truncateCachesLocked drops the cached state of entries after index. mu held.
func (s *Storage) truncateCachesLocked(index uint64) {
	s.last = index
	k := sort.Search(len(s.runs), func(k int) bool { return s.runs[k].start > index })
	s.runs = s.runs[:k]
	if index >= s.offBase {
		s.offs = s.offs[:index-s.offBase+1]
	} else {
		s.offBase, s.offs = index, append(s.offs[:0], s.log.NextOffset())
	}
}

// trimWindowLocked drops offsets of entries before keep from the window,
// when that frees enough to be worth a copy. mu held.
func (s *Storage) trimWindowLocked(keep uint64) {
	keep = min(keep, s.last)
	if keep <= s.offBase {
		return
	}
	drop := int(keep - s.offBase)
	if drop < 256 && drop < len(s.offs)/2 {
		return
	}
	n := copy(s.offs, s.offs[drop:])
	s.offs = s.offs[:n]
	if cap(s.offs) > 4*n && cap(s.offs) > 1024 {
		s.offs = append(make([]int64, 0, 2*n), s.offs...)
	}
	s.offBase = keep
}

// SetHardState records hs; see Storage for when it is written.
func (s *Storage) SetHardState(hs raftpb.HardState) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if hs == s.hs {
		return nil
	}
	s.mu.Lock()
	s.hs = hs
	if hs.Commit > offsetWindowMargin {
		s.trimWindowLocked(hs.Commit - offsetWindowMargin)
	}
	s.mu.Unlock()
	if hs.Term != s.saved.Term || hs.Vote != s.saved.Vote || hs.Commit < s.saved.Commit ||
		time.Since(s.savedAt) >= commitSaveInterval {
		return s.saveLocked(false)
	}
	s.dirty = true
	return nil
}

// Flush writes a HardState change SetHardState left in memory (a commit
// index). Call it before closing the log.
func (s *Storage) Flush() error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if !s.dirty {
		return nil
	}
	return s.saveLocked(false)
}

// SetConfState records cs durably.
func (s *Storage) SetConfState(cs raftpb.ConfState) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	s.mu.Lock()
	s.cs = cloneConfState(cs)
	s.mu.Unlock()
	return s.saveLocked(false)
}

// ApplySnapshot installs snap: the log restarts empty after snap's index,
// at the Kafka offset its SnapshotData names. An interrupted install is
// finished by OpenStorage.
func (s *Storage) ApplySnapshot(snap raftpb.Snapshot) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	m := snap.Metadata
	if m.Index <= s.snapIndex {
		return raft.ErrSnapOutOfDate
	}
	var d SnapshotData
	if err := d.Unmarshal(snap.Data); err != nil {
		return fmt.Errorf("cluster: apply snapshot %d: %w", m.Index, err)
	}
	s.mu.Lock()
	s.snapIndex, s.snapTerm, s.snapNext = m.Index, m.Term, d.NextOffset
	s.cs = cloneConfState(m.ConfState)
	s.hs.Commit = max(s.hs.Commit, m.Index)
	s.hs.Term = max(s.hs.Term, m.Term)
	s.last, s.runs = m.Index, s.runs[:0]
	s.offBase, s.offs = m.Index, append(s.offs[:0], d.NextOffset)
	s.tailResetLocked()
	s.mu.Unlock()
	if err := s.saveLocked(true); err != nil {
		return fmt.Errorf("cluster: apply snapshot %d: %w", m.Index, err)
	}
	if err := s.log.Reset(m.Index+1, d.NextOffset); err != nil {
		return fmt.Errorf("cluster: apply snapshot %d: %w", m.Index, err)
	}
	if err := s.saveLocked(false); err != nil {
		return fmt.Errorf("cluster: apply snapshot %d: %w", m.Index, err)
	}
	if s.observer != nil {
		s.observer.Truncated(d.NextOffset)
	}
	return nil
}

// CompactTo moves the snapshot point to index (<= LastIndex): the wal is
// truncated to start at index+1 if retention has not already dropped
// those entries. An index at or before the snapshot point is a no-op.
func (s *Storage) CompactTo(index uint64) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if index <= s.snapIndex {
		return nil
	}
	if index > s.last {
		return fmt.Errorf("cluster: compact to %d past last index %d", index, s.last)
	}
	s.mu.RLock()
	term, _ := s.termLocked(index)
	next := s.offsetAtLocked(index)
	s.mu.RUnlock()
	if err := s.log.TruncateFront(index + 1); err != nil {
		return fmt.Errorf("cluster: compact to %d: %w", index, err)
	}
	s.mu.Lock()
	s.snapIndex, s.snapTerm, s.snapNext = index, term, next
	k := sort.Search(len(s.runs), func(k int) bool { return s.runs[k].start > index+1 })
	if k > 0 {
		s.runs = append(s.runs[:0], s.runs[k-1:]...)
		s.runs[0].start = index + 1
	}
	if index == s.last {
		s.runs = s.runs[:0]
	}
	if s.offBase < index {
		s.trimWindowLocked(index)
	}
	if len(s.tail) > 0 && index >= s.tail[0].Index {
		s.tailTrimFrontLocked(int(min(index-s.tail[0].Index+1, uint64(len(s.tail)))))
	}
	s.mu.Unlock()
	return s.saveLocked(false)
}

// EpochEnd answers OffsetForLeaderEpoch for epoch (a raft term) as
// Kafka's leader epoch cache does: the largest term at or below epoch
// among the log's entries, and the Kafka offset where the first entry of a
// later term begins. Entries written standalone (term 0, reported as 1)
// count as term 1. ok is false when no entry has a term above epoch (epoch
// is the current term or later: the answer is the log's end).
func (s *Storage) EpochEnd(epoch uint64) (floor uint64, end int64, ok bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	want := max(epoch, 1)
	k := sort.Search(len(s.runs), func(i int) bool { return s.runs[i].term > want })
	if k == len(s.runs) {
		return 0, 0, false
	}
	end = s.offsetAtLocked(s.runs[k].start - 1)
	if k == 0 {
		return epoch, end, true // older than every retained entry
	}
	return min(s.runs[k-1].term, epoch), end, true
}

// Offsets returns the Kafka offsets of the entry at index: its first and
// last record offsets. An entry without records (no-op, conf change) gets
// baseOffset = the next offset at that point and lastOffset = baseOffset-1.
func (s *Storage) Offsets(index uint64) (baseOffset int64, lastOffset int64, err error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	switch {
	case index <= s.snapIndex:
		return 0, 0, raft.ErrCompacted
	case index > s.last:
		return 0, 0, raft.ErrUnavailable
	case index > s.offBase:
		return s.offs[index-1-s.offBase], s.offs[index-s.offBase] - 1, nil
	}
	e, err := s.log.Read(index)
	if err != nil {
		return 0, 0, fmt.Errorf("cluster: offsets of %d: %w", index, err)
	}
	if e.Kind.HasRecords() {
		return e.BaseOffset, e.LastOffset(), nil
	}
	n := s.offsetAtLocked(index)
	return n, n - 1, nil
}

// LogEnd is the Kafka offset after the last record stored.
func (s *Storage) LogEnd() int64 {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.offs[len(s.offs)-1]
}

// OffsetAtIndex is the Kafka offset one past the last record at or before
// index: the high watermark for commit index `index`. Indexes past the
// last give NextOffset; indexes at or before the snapshot point give the
// offset the log restarts at.
func (s *Storage) OffsetAtIndex(index uint64) int64 {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.offsetAtLocked(index)
}

func (s *Storage) offsetAtLocked(index uint64) int64 {
	switch {
	case index >= s.last:
		return s.offs[len(s.offs)-1]
	case index >= s.offBase:
		return s.offs[index-s.offBase]
	}
	for i := index; i > s.snapIndex; i-- {
		e, err := s.log.Read(i)
		if err != nil {
			break // dropped by retention under us: the log's start
		}
		if e.Kind.HasRecords() {
			return e.LastOffset() + 1
		}
	}
	if index > s.snapIndex {
		return s.log.StartOffset()
	}
	return s.snapNext
}

// saveLocked writes the sidecar. wmu held.
func (s *Storage) saveLocked(resetting bool) error {
	s.mu.RLock()
	st := storageState{
		hardState: s.hs,
		confState: s.cs,
		snapIndex: s.snapIndex,
		snapTerm:  s.snapTerm,
		snapNext:  s.snapNext,
		resetting: resetting,
		runs:      s.runs[max(0, len(s.runs)-maxHintRuns):],
	}
	b := encodeStorageState(st)
	s.mu.RUnlock()
	if err := s.log.SaveState(b); err != nil {
		return fmt.Errorf("cluster: save raft state: %w", err)
	}
	s.saved, s.savedAt, s.dirty = st.hardState, time.Now(), false
	return nil
}

func cloneConfState(cs raftpb.ConfState) raftpb.ConfState {
	c := func(x []uint64) []uint64 {
		if x == nil {
			return nil
		}
		return append([]uint64(nil), x...)
	}
	return raftpb.ConfState{
		Voters:         c(cs.Voters),
		Learners:       c(cs.Learners),
		VotersOutgoing: c(cs.VotersOutgoing),
		LearnersNext:   c(cs.LearnersNext),
		AutoLeave:      cs.AutoLeave,
	}
}

// ---------------------------------------------------------------------------
// The sidecar.

// storageState is what the sidecar holds.
type storageState struct {
	hardState raftpb.HardState
	confState raftpb.ConfState
	snapIndex uint64
	snapTerm  uint64
	snapNext  int64
	resetting bool      // ApplySnapshot wrote this and has not finished the wal Reset
	runs      []termRun // a hint for OpenStorage's term scan, not trusted
}

// Sidecar encoding, version 1 (the wal wraps it in its own length + CRC32C):
//
//	4 bytes  magic "CRS1"
//	1 byte   flags (bit 0: resetting)
//	uvarint  term, vote, commit
//	uvarint  snapIndex, snapTerm
//	varint   snapNext
//	uvarint  n, then n bytes: the ConfState (protobuf)
//	uvarint  runs, then per run: uvarint start delta, uvarint term delta
//	         (from the previous run; the first from 0)
//
// Nothing may follow.
const stateMagic = "CRS1"

var errBadState = fmt.Errorf("%w: bad raft state sidecar", wal.ErrCorrupt)

func encodeStorageState(st storageState) []byte {
	cs, _ := st.confState.Marshal()
	b := make([]byte, 0, 64+len(cs)+4*len(st.runs))
	b = append(b, stateMagic...)
	var flags byte
	if st.resetting {
		flags |= 1
	}
	b = append(b, flags)
	b = binary.AppendUvarint(b, st.hardState.Term)
	b = binary.AppendUvarint(b, st.hardState.Vote)
	b = binary.AppendUvarint(b, st.hardState.Commit)
	b = binary.AppendUvarint(b, st.snapIndex)
	b = binary.AppendUvarint(b, st.snapTerm)
	b = binary.AppendVarint(b, st.snapNext)
	b = binary.AppendUvarint(b, uint64(len(cs)))
	b = append(b, cs...)
	b = binary.AppendUvarint(b, uint64(len(st.runs)))
	var start, term uint64
	for _, r := range st.runs {
		b = binary.AppendUvarint(b, r.start-start)
		b = binary.AppendUvarint(b, r.term-term)
		start, term = r.start, r.term
	}
	return b
}

func decodeStorageState(b []byte) (storageState, error) {
	var st storageState
	if len(b) < 5 || string(b[:4]) != stateMagic || b[4] > 1 {
		return st, errBadState
	}
	st.resetting = b[4] == 1
	b = b[5:]
	bad := false
	uv := func() uint64 {
		x, n := binary.Uvarint(b)
		if n <= 0 {
			bad = true
			return 0
		}
		b = b[n:]
		return x
	}
	st.hardState.Term, st.hardState.Vote, st.hardState.Commit = uv(), uv(), uv()
	st.snapIndex, st.snapTerm = uv(), uv()
	if !bad {
		x, n := binary.Varint(b)
		if n <= 0 {
			return st, errBadState
		}
		st.snapNext, b = x, b[n:]
	}
	csLen := uv()
	if bad || csLen > uint64(len(b)) || st.snapNext < 0 {
		return storageState{}, errBadState
	}
	if err := st.confState.Unmarshal(b[:csLen]); err != nil {
		return storageState{}, fmt.Errorf("%w: conf state: %v", errBadState, err)
	}
	b = b[csLen:]
	nruns := uv()
	if bad || nruns > uint64(len(b))/2 {
		return storageState{}, errBadState
	}
	st.runs = make([]termRun, 0, nruns)
	var start, term uint64
	for i := uint64(0); i < nruns; i++ {
		ds, dt := uv(), uv()
		if bad || (i > 0 && (ds == 0 || dt == 0)) || start+ds < start || term+dt < term {
			return storageState{}, errBadState
		}
		start, term = start+ds, term+dt
		st.runs = append(st.runs, termRun{start, term})
	}
	if len(b) != 0 {
		return storageState{}, errBadState
	}
	return st, nil
}

// ---------------------------------------------------------------------------
// SnapshotData encoding: version byte 1, varint NextOffset, varint
// LogStartOffset; nothing may follow.

// Marshal encodes d as a raft snapshot's Data.
func (d SnapshotData) Marshal() []byte {
	b := make([]byte, 0, 1+2*binary.MaxVarintLen64)
	b = append(b, 1)
	b = binary.AppendVarint(b, d.NextOffset)
	return binary.AppendVarint(b, d.LogStartOffset)
}

// Unmarshal decodes what Marshal encoded.
func (d *SnapshotData) Unmarshal(b []byte) error {
	if len(b) < 1 || b[0] != 1 {
		return fmt.Errorf("%w: snapshot data version", ErrBadData)
	}
	b = b[1:]
	next, n := binary.Varint(b)
	if n <= 0 {
		return fmt.Errorf("%w: snapshot data", ErrBadData)
	}
	b = b[n:]
	start, n := binary.Varint(b)
	if n <= 0 || n != len(b) || next < 0 || start < 0 || start > next || next == math.MaxInt64 {
		return fmt.Errorf("%w: snapshot data", ErrBadData)
	}
	d.NextOffset, d.LogStartOffset = next, start
	return nil
}
