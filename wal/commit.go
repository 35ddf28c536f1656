package wal

import (
	"fmt"
	"sync"
	"time"

	tidwall "github.com/tidwall/wal"
)

// Appends: one write and one fsync per call, no commit round.
//
// A Log expects one writer: a partition's append (which takes the
// partition's whole produce queue as one Append), a raft group's storage
// worker, the metadata log's writer. Group commit happens above, where the
// work queues up (the partition's queue, the raft group's Ready); the wal
// writes what it is given with one tidwall WriteBatch and one fsync.
// Concurrent calls are safe but serialized on wmu: each gets its own write
// and its own fsync, and nothing is coalesced, so a caller that wants to
// share an fsync passes the entries in one call.
//
// Append frames the entries (CRC included) before it takes wmu. Under wmu
// it checks the Kafka offsets, copies the frames into a tidwall batch and
// writes it holding mu, so readers are locked out only for the write
// itself; the index is updated in the same critical section. The fsync
// runs after mu is released, through our own handle on the tail file.

// Append appends entries and returns the index of the first, once they are
// durable per the fsync policy: one tidwall WriteBatch and, with
// FsyncAlways, one fsync per call. Concurrent calls are serialized, not
// coalesced (see above). Entries of a HasRecords kind must continue the
// Kafka offsets: BaseOffset == NextOffset() when written, else the whole
// call fails with ErrOutOfRange and writes nothing. Zero entries return
// 0, nil. The entries are copied; the caller may reuse their payloads once
// Append returns.
func (l *Log) Append(entries ...Entry) (uint64, error) {
	if len(entries) == 0 {
		return 0, nil
	}
	frames, err := encodeFrames(entries)
	if err != nil {
		return 0, err
	}
	l.touch()
	l.opts.Syncer.startAppend()
	l.wmu.Lock()
	first, shared, err := l.write(entries, frames)
	last, gen := l.idx.lastIndex(), l.durGen
	l.wmu.Unlock()
	if shared {
		err = l.opts.Syncer.wait(l, last, gen)
	}
	l.opts.Syncer.endAppend()
	if err == nil {
		l.waitTailBudget()
	}
	return first, err
}

// sharedSync says whether an append now is made durable by the shared
// Syncer's rounds (syncer.go) rather than by an fsync of its own. A gated
// Syncer (NewGatedSyncer) may say yes to one append and no to the next, so
// one append asks once and keeps the answer.
func (l *Log) sharedSync() bool {
	return l.opts.Fsync == FsyncAlways && l.opts.Syncer != nil && l.opts.Syncer.takesAppends()
}

// encodeFrames checks entries and frames them back to back into a pooled
// buffer, which write gives back.
func encodeFrames(entries []Entry) ([]byte, error) {
	size := 0
	for i := range entries {
		e := &entries[i]
		switch {
		case !e.Kind.valid():
			return nil, fmt.Errorf("%w: kind %d", ErrInvalidEntry, e.Kind)
		case e.Kind.HasRecords() && (e.BaseOffset < 0 || e.LastOffsetDelta < 0):
			return nil, fmt.Errorf("%w: base offset %d, last offset delta %d", ErrInvalidEntry, e.BaseOffset, e.LastOffsetDelta)
		case len(e.Payload) > maxPayload:
			return nil, fmt.Errorf("%w: payload of %d bytes", ErrInvalidEntry, len(e.Payload))
		}
		size += frameSize(e)
	}
	frames := getFrameBuf(size)
	for i := range entries {
		frames = appendFrame(frames, &entries[i])
	}
	return frames, nil
}

// write writes the frames of entries as one batch, updates the index and
// applies the fsync policy; shared says the caller must wait for the
// Syncer's round. It gives frames back to the pool as soon as the batch
// holds a copy. wmu held.
func (l *Log) write(entries []Entry, frames []byte) (first uint64, shared bool, err error) {
	l.mu.Lock()
	err = l.usable()
	if err == nil {
		err = l.dropClean()
	}
	if err == nil {
		err = l.ensureOpen()
	}
	l.mu.Unlock()
	if err != nil {
		putFrameBuf(frames)
		return 0, false, err
	}
	// Everything read here of the log changes only under wmu, which we
	// hold; mu is needed only where readers could see the change.
	next, err := checkOffsets(entries, l.next)
	if err != nil {
		putFrameBuf(frames)
		return 0, false, err
	}
	first = l.idx.lastIndex() + 1
	wb := batchPool.Get().(*tidwall.Batch)
	index, start := first, 0
	for i := range entries {
		end := start + frameSize(&entries[i])
		wb.Write(index, frames[start:end])
		index++
		start = end
	}
	bytes := len(frames)
	putFrameBuf(frames) // the batch holds a copy

	l.mu.Lock()
	err = l.tl.WriteBatch(wb)
	putBatch(wb, bytes) // tidwall holds a copy (or the write failed)
	if err != nil {
		err = l.failLocked("write", err)
		l.mu.Unlock()
		return 0, false, err
	}
	cycled := false
	segSize := int64(l.opts.SegmentSize)
	for i := range entries {
		e := &entries[i]
		h := e.header()
		if l.idx.add(&h, storedSize(frameSize(e)), segSize) {
			cycled = true
		}
	}
	l.next = next
	if cycled {
		// tidwall keeps the segment it just sealed in its cache; reads of
		// sealed segments go through the ReadCache, so that copy only
		// costs memory (tailbudget.go).
		l.tl.ClearCache()
	}
	l.reportTail()
	l.mu.Unlock()

	shared = l.sharedSync()
	if err := l.afterWrite(cycled, shared); err != nil {
		return 0, false, err
	}
	return first, shared, nil
}

// checkOffsets checks that the record entries of one append continue the
// Kafka offsets from next, and returns the offset after them.
func checkOffsets(entries []Entry, next int64) (int64, error) {
	for i := range entries {
		e := &entries[i]
		if !e.Kind.HasRecords() {
			continue
		}
		if e.BaseOffset != next {
			return 0, fmt.Errorf("%w: base offset %d, next offset is %d", ErrOutOfRange, e.BaseOffset, next)
		}
		next = e.LastOffset() + 1
	}
	return next, nil
}

// afterWrite applies the fsync policy to what was just written; shared
// says a Syncer round makes it durable. A new segment file (tidwall
// cycled, or a roll created it since the last append) makes the directory
// fsync due (tidwall already synced the segment it closed). A shared round
// covers the directory too (syncfs), but the fsync stays due: a later
// append that syncs by itself (a gated Syncer turned it away) marks the
// log durable up to its own entries, which may follow these before their
// round has run, so it syncs the directory first; so does a round that
// found the page cache busy and syncs its logs' files (syncOwn). wmu
// held.
func (l *Log) afterWrite(cycled, shared bool) error {
	if cycled {
		l.closeSyncFile()
		l.dirDue = true
	}
	if !shared {
		if err := l.syncDueDir(); err != nil {
			return err
		}
	}
	switch l.opts.Fsync {
	case FsyncAlways:
		if shared {
			l.dirty = true // Append waits for the Syncer's round
			return nil
		}
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

// syncDueDir fsyncs the log's directory if a segment file was created
// since it was last synced. wmu held.
func (l *Log) syncDueDir() error {
	if !l.dirDue {
		return nil
	}
	sync := syncDir
	if l.dirSyncFn != nil {
		sync = l.dirSyncFn
	}
	if err := sync(l.dir); err != nil {
		return l.fail("sync directory", err)
	}
	l.dirDue = false
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

// Buffers. An append's bytes are copied twice before tidwall's own segment
// buffer: framed (header, payload, CRC) into a frame buffer, then into the
// tidwall batch. Both buffers come from process-wide pools rather than
// from the Log: with thousands of partitions each having one writer, a
// per-Log buffer would pin its largest append (MiBs) in every log that ever
// saw a big produce, while the pools hold about as many buffers as there
// are appends in flight across the process. Reusing them matters: a fresh
// multi-MiB buffer per append costs page faults and zeroing on every large
// produce.

// maxPooledFrameBuf is the largest frame buffer kept for reuse.
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

// batchPool holds the tidwall batches appends copy frames into.
var batchPool = sync.Pool{New: func() any { return new(tidwall.Batch) }}

// maxPooledBatch is the largest batch buffer kept for reuse.
const maxPooledBatch = 16 << 20

// putBatch returns b to the pool unless it grew past maxPooledBatch
// (bytes is what this append put in it).
func putBatch(b *tidwall.Batch, bytes int) {
	b.Clear()
	if bytes <= maxPooledBatch {
		batchPool.Put(b)
	}
}
