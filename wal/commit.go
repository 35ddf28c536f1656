package wal

import (
	"fmt"
	"runtime"
	"sync"
	"time"

	tidwall "github.com/tidwall/wal"
)

// Group commit, leader/follower, without a goroutine per log.
//
// Enqueue frames the entries (CRC included) in the caller's goroutine and
// puts them on the pending list. A Wait that finds no commit round running
// runs one itself: it takes every pending request, checks their Kafka
// offsets in order, writes them as one tidwall WriteBatch, fsyncs once per
// the policy and wakes each waiter. Requests that arrived meanwhile are
// handed to one of their waiters, whose Wait runs the next round; if none of
// their owners is waiting yet, the first to call Wait will. So any order of
// Enqueue and Wait calls makes progress.
//
// Before a round, its leader yields briefly while the waiters just woken by
// the previous round come back (see gather), so that a stream of appenders
// forms one full group per fsync rather than alternating full and tiny ones.
// Readers are only blocked while the batch is copied into tidwall, not
// during the fsync: the fsync goes through our own handle on the tail file.

// Pending is an enqueued append. Call Wait for its result.
type Pending struct {
	l      *Log
	frames []byte   // the encoded frames, back to back
	ends   []int    // end of each frame in frames
	hdrs   []header // for the offset check and the index
	oneEnd [1]int
	oneHdr [1]header
	wake   chan bool // true: run the next round; false: finished
	ok     bool      // accepted into the round's batch
	first  uint64
	err    error

	// Guarded by l.cmu.
	finished bool // first and err are final
	waiting  bool // the owner is blocked in Wait

	done bool // the owner has seen the result
}

// Append appends entries and returns the index of the first, once they are
// durable per the fsync policy. Concurrent calls are coalesced into one
// write and one fsync. Entries of a HasRecords kind must continue the Kafka
// offsets: BaseOffset == NextOffset() when written, else ErrOutOfRange.
func (l *Log) Append(entries ...Entry) (uint64, error) {
	return l.Enqueue(entries...).Wait()
}

// Enqueue queues entries for the next group commit and returns without
// waiting; their position relative to other appends is fixed when it
// returns. This lets a caller assign Kafka offsets under its own lock,
// Enqueue, release the lock, and only then Wait, so that appends made under
// the lock still share fsyncs. NextOffset() counts written entries only, so
// such a caller keeps its own next offset. The entries are copied; the
// caller may reuse their payloads at once. The entries are written when some
// caller of Wait runs a commit round, so every Enqueue must be followed by a
// Wait.
func (l *Log) Enqueue(entries ...Entry) *Pending {
	p := &Pending{l: l}
	if len(entries) == 0 {
		p.done = true
		return p
	}
	if err := p.encode(entries); err != nil {
		p.done, p.err = true, err
		return p
	}
	p.wake = make(chan bool, 1)
	l.touch()
	l.cmu.Lock()
	if l.closed.Load() {
		l.cmu.Unlock()
		p.done, p.err = true, ErrClosed
		return p
	}
	l.pending = append(l.pending, p)
	l.npending.Store(int64(len(l.pending)))
	l.cmu.Unlock()
	return p
}

func (p *Pending) encode(entries []Entry) error {
	size := 0
	for i := range entries {
		e := &entries[i]
		switch {
		case !e.Kind.valid():
			return fmt.Errorf("%w: kind %d", ErrInvalidEntry, e.Kind)
		case e.Kind.HasRecords() && (e.BaseOffset < 0 || e.LastOffsetDelta < 0):
			return fmt.Errorf("%w: base offset %d, last offset delta %d", ErrInvalidEntry, e.BaseOffset, e.LastOffsetDelta)
		case len(e.Payload) > maxPayload:
			return fmt.Errorf("%w: payload of %d bytes", ErrInvalidEntry, len(e.Payload))
		}
		size += frameSize(e)
	}
	p.frames = getFrameBuf(size)
	if len(entries) == 1 { // the common case: no slices to allocate
		p.ends, p.hdrs = p.oneEnd[:], p.oneHdr[:]
	} else {
		p.ends = make([]int, len(entries))
		p.hdrs = make([]header, len(entries))
	}
	for i := range entries {
		e := &entries[i]
		p.frames = appendFrame(p.frames, e)
		p.ends[i] = len(p.frames)
		p.hdrs[i] = header{kind: e.Kind, term: e.Term, baseOffset: e.BaseOffset,
			lastOffsetDelta: e.LastOffsetDelta, maxTimestamp: e.MaxTimestamp}
	}
	return nil
}

// Frame buffers are reused: an append's frames are copied into the tidwall
// batch by its commit round, and a fresh multi-MiB buffer per append cost
// page faults and zeroing on every large produce. Buffers up to
// maxPooledFrameBuf are kept.
const maxPooledFrameBuf = 8 << 20

var frameBufPool sync.Pool // *[]byte

func getFrameBuf(size int) []byte {
	if bp, ok := frameBufPool.Get().(*[]byte); ok {
		if cap(*bp) >= size {
			return (*bp)[:0]
		}
		frameBufPool.Put(bp)
	}
	return make([]byte, 0, size)
}

func putFrameBuf(b []byte) {
	if cap(b) == 0 || cap(b) > maxPooledFrameBuf {
		return
	}
	b = b[:0]
	frameBufPool.Put(&b)
}

// Wait returns the index of the first entry once the append is durable per
// the fsync policy, or why it failed. For zero entries it returns 0, nil.
// Calling it again returns the same result.
func (p *Pending) Wait() (uint64, error) {
	if p.done {
		return p.first, p.err
	}
	l, handedOff := p.l, false
	l.cmu.Lock()
	for !p.finished {
		if !l.running {
			l.running = true
			l.cmu.Unlock()
			l.gather(handedOff)
			l.commitRound() // p is pending, so this round finishes it
			l.cmu.Lock()
			continue
		}
		p.waiting = true
		l.cmu.Unlock()
		lead := <-p.wake
		l.cmu.Lock()
		if lead { // running was left set for us
			l.cmu.Unlock()
			l.gather(true)
			l.commitRound()
			l.cmu.Lock()
		}
	}
	l.cmu.Unlock()
	p.done = true
	return p.first, p.err
}

// gather lets a new leader wait a moment for company. When appends are
// streaming in, the waiters of the round that just ended are runnable and
// about to append again; yielding until they are back (or stop coming) lets
// them share this round's fsync instead of leaving it to a batch of one.
// It never sleeps, and a lone appender does not yield. handedOff says the
// leader was queued during the last round (so it is not one of its waiters).
func (l *Log) gather(handedOff bool) {
	if monotime()-l.lastRound.Load() > int64(time.Millisecond) {
		return
	}
	n, still := l.npending.Load(), 0
	want := n + l.lastWoken.Load()
	if !handedOff {
		want-- // the leader itself is one of the woken
	}
	for i := 0; i < 32 && n < want && still < 2; i++ {
		runtime.Gosched()
		m := l.npending.Load()
		if m == n {
			still++
		} else {
			still = 0
		}
		n = m
	}
}

// commitRound writes and syncs everything pending, then hands the next
// round to a waiter, if one is waiting. The caller set l.running.
func (l *Log) commitRound() {
	l.cmu.Lock()
	batch := l.pending
	l.pending, l.spare = l.spare, nil
	l.npending.Store(0)
	l.cmu.Unlock()

	l.wmu.Lock()
	l.writeGroup(batch)
	l.wmu.Unlock()
	l.lastRound.Store(monotime())
	l.lastWoken.Store(int64(len(batch)))

	l.cmu.Lock()
	for _, p := range batch {
		p.finished = true
		if p.waiting {
			p.waiting = false
			p.wake <- false
		}
	}
	clear(batch)
	if l.spare == nil {
		l.spare = batch[:0]
	}
	l.running = false
	for _, p := range l.pending {
		if p.waiting {
			p.waiting = false
			l.running = true
			p.wake <- true
			break
		}
	}
	l.cmu.Unlock()
}

// writeGroup writes one group commit. wmu held.
func (l *Log) writeGroup(batch []*Pending) {
	l.mu.Lock()
	err := l.usable()
	if err == nil {
		err = l.dropClean()
	}
	if err == nil {
		err = l.ensureOpen()
	}
	l.mu.Unlock()
	if err != nil {
		for _, p := range batch {
			p.err = err
		}
		return
	}
	// Everything a round reads of the log changes only under wmu, which we
	// hold; readers are locked out only for the write itself.
	next := l.next
	index := l.idx.lastIndex() + 1
	wb := batchPool.Get().(*tidwall.Batch)
	accepted, bytes := 0, 0
	defer func() { putBatch(wb, bytes) }()
	for _, p := range batch {
		n, err := checkOffsets(p.hdrs, next)
		if err != nil {
			p.err = err
			continue
		}
		next = n
		p.ok, p.first = true, index
		start := 0
		for _, end := range p.ends {
			wb.Write(index, p.frames[start:end])
			index++
			start = end
		}
		accepted++
		bytes += len(p.frames)
		// The batch copied the frames: their buffer serves the next append.
		putFrameBuf(p.frames)
		p.frames = nil
	}
	if accepted == 0 {
		return
	}
	l.mu.Lock()
	if err := l.tl.WriteBatch(wb); err != nil {
		err = l.failLocked("write", err)
		l.mu.Unlock()
		failAccepted(batch, err)
		return
	}
	l.commits.Add(1)
	cycled := false
	segSize := int64(l.opts.SegmentSize)
	for _, p := range batch {
		if !p.ok {
			continue
		}
		start := 0
		for i, end := range p.ends {
			if l.idx.add(&p.hdrs[i], storedSize(end-start), segSize) {
				cycled = true
			}
			start = end
		}
	}
	l.next = next
	l.mu.Unlock()

	if err := l.afterWrite(cycled); err != nil {
		failAccepted(batch, err)
	}
}

func failAccepted(batch []*Pending, err error) {
	for _, p := range batch {
		if p.ok {
			p.err = err
		}
	}
}

// checkOffsets checks that the record entries of one append continue the
// Kafka offsets from next, and returns the offset after them.
func checkOffsets(hdrs []header, next int64) (int64, error) {
	for i := range hdrs {
		h := &hdrs[i]
		if !h.kind.HasRecords() {
			continue
		}
		if h.baseOffset != next {
			return 0, fmt.Errorf("%w: base offset %d, next offset is %d", ErrOutOfRange, h.baseOffset, next)
		}
		next = h.lastOffset() + 1
	}
	return next, nil
}

// afterWrite applies the fsync policy to what was just written. A new
// segment file makes the directory fsync due (tidwall already synced the
// segment it closed). wmu held.
func (l *Log) afterWrite(cycled bool) error {
	if cycled {
		l.closeSyncFile()
		if err := syncDir(l.dir); err != nil {
			return l.fail("sync directory", err)
		}
	}
	switch l.opts.Fsync {
	case FsyncAlways:
		return l.syncLocked()
	case FsyncInterval:
		l.dirty = true
		if !l.syncArmed {
			l.syncArmed = true
			if l.syncTimer == nil {
				l.syncTimer = time.AfterFunc(l.opts.FsyncInterval, l.intervalSync)
			} else {
				l.syncTimer.Reset(l.opts.FsyncInterval)
			}
		}
	default:
		l.dirty = true
		l.durable.Store(l.idx.lastIndex())
	}
	return nil
}

// intervalSync runs on the FsyncInterval timer, armed only while something
// is unsynced.
func (l *Log) intervalSync() {
	l.wmu.Lock()
	defer l.wmu.Unlock()
	l.syncArmed = false
	if l.closed.Load() || !l.dirty {
		return
	}
	l.syncLocked()
}

// batchPool holds the tidwall batches that commit rounds copy frames into.
// Shared by every log, so memory follows the number of concurrent commits,
// not the number of logs, and a busy log does not regrow its batch buffer
// on every round.
var batchPool = sync.Pool{New: func() any { return new(tidwall.Batch) }}

// maxPooledBatch is the largest batch buffer kept for reuse.
const maxPooledBatch = 16 << 20

// putBatch returns b to the pool unless it grew past maxPooledBatch
// (bytes is what this round put in it).
func putBatch(b *tidwall.Batch, bytes int) {
	b.Clear()
	if bytes <= maxPooledBatch {
		batchPool.Put(b)
	}
}
