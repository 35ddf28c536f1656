package broker

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/chronik-stream/chronik/wal"
)

// The log cleaner: cleanup.policy=compact keeps the latest record of each
// key, at its original offset (a consumer sees gaps), written once for
// both modes through the replicated-log seam.
//
// The leader of a compacted partition decides when and how far: every
// CompactionCheckInterval it measures the partition (dirty ratio: the
// share of its sealed bytes written since the last cleaning; the oldest
// uncleaned record against max.compaction.lag.ms; the active segment's age
// against segment.ms) and, when due, proposes a CompactRequest through its
// Replica: clean below UpTo (at most the last stable offset, the start of
// the active segment and the offset min.compaction.lag.ms allows) with
// its clock and delete.retention.ms. Every replica applies the request in
// log order (CompactRequested) and its own cleaner goroutine then cleans
// its own log: the same records below the same offset with the same clock,
// so replicas keep the same visible records, and a follower that fetches
// old entries from the leader gets cleaned ones with their raft indexes
// intact (cleaning twice is cleaning once).
//
// Cleaning a partition (clean): roll the active segment if UpTo reaches
// into it; read the dirty records (from the last cleaning's UpTo) into a
// fixed-size key -> offset map (a full map lowers UpTo to where it
// filled); then rewrite every sealed segment below UpTo (wal
// RewriteSegment: a new file beside the old, renamed over it, so a crash
// leaves one or the other) keeping a record unless a newer one of its key
// is in the map, it is a tombstone older than delete.retention.ms, it has
// no key, or its transaction aborted (compact_filter.go). The cleaner runs
// on one goroutine per broker, reads and writes at most
// CompactionMaxBytesPerSec, and never holds the partition's append or
// fetch locks while it reads or writes.

const (
	defaultCompactionCheckInterval = 15 * time.Second
	defaultCompactionDedupeBytes   = 32 << 20
)

// compactPolicy is the cleanup.policy the internal topics are created with.
var compactPolicy = "compact"

// cleaner is the broker's log cleaner.
type cleaner struct {
	b *Broker

	mu     sync.Mutex
	queue  []*partition // partitions with a request to carry out, in order
	queued map[*partition]bool
	wake   chan struct{}

	m    *offsetMap      // allocated on first use
	bc   *batchCompactor // scratch buffers, on first use
	rate *byteRate

	runs         atomic.Int64 // cleanings done
	failures     atomic.Int64 // cleanings that failed
	bytesRead    atomic.Int64
	bytesCleaned atomic.Int64 // bytes removed from segments
}

func newCleaner(b *Broker) *cleaner {
	return &cleaner{b: b, queued: make(map[*partition]bool), wake: make(chan struct{}, 1),
		rate: newByteRate(b.cfg.CompactionMaxBytesPerSec)}
}

// enqueue schedules p's pending request (from a replication worker: never
// blocks).
func (c *cleaner) enqueue(p *partition) {
	c.mu.Lock()
	if !c.queued[p] {
		c.queued[p] = true
		c.queue = append(c.queue, p)
	}
	c.mu.Unlock()
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

func (c *cleaner) next() *partition {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.queue) == 0 {
		return nil
	}
	p := c.queue[0]
	c.queue = c.queue[1:]
	delete(c.queued, p)
	return p
}

// run is the cleaner goroutine.
func (c *cleaner) run() {
	defer c.b.wg.Done()
	tick := time.NewTicker(c.b.cfg.CompactionCheckInterval)
	defer tick.Stop()
	for {
		for p := c.next(); p != nil; p = c.next() {
			c.carryOut(p)
			if c.stopped() {
				return
			}
		}
		select {
		case <-c.b.stop:
			return
		case <-c.wake:
		case <-tick.C:
			c.RunScheduler(time.Now().UnixMilli())
		}
	}
}

func (c *cleaner) stopped() bool {
	select {
	case <-c.b.stop:
		return true
	default:
		return false
	}
}

// RunScheduler proposes a compaction request for every compacted
// partition this node leads that is due, and returns how many it proposed.
func (c *cleaner) RunScheduler(now int64) int {
	n := 0
	for _, p := range c.b.allPartitions() {
		if c.stopped() {
			return n
		}
		req, ok := p.compactionDue(now)
		if !ok {
			continue
		}
		repl := p.repl()
		if repl == nil {
			continue
		}
		ctx, cancel := context.WithTimeout(p.replica.ctx, ReplicateTimeout)
		err := repl.Compact(ctx, req)
		cancel()
		if err != nil {
			c.b.logger.Warn().Err(err).Str("topic", p.topic.name).Int32("partition", p.index).Msg("propose compaction")
			continue
		}
		n++
	}
	return n
}

// carryOut cleans p as its latest request asks.
func (c *cleaner) carryOut(p *partition) {
	req := p.compactReq.Swap(nil)
	if req == nil || p.fault.Load() != nil {
		return
	}
	c.b.logger.Info().Str("topic", p.topic.name).Int32("partition", p.index).Int64("up_to", req.UpTo).Msg("compacting")
	start := time.Now()
	st, err := c.clean(p, *req)
	if err != nil {
		if errors.Is(err, wal.ErrClosed) || c.stopped() {
			return
		}
		c.failures.Add(1)
		c.b.logger.Error().Err(err).Str("topic", p.topic.name).Int32("partition", p.index).Msg("compaction")
		return
	}
	c.runs.Add(1)
	c.b.logger.Info().Str("topic", p.topic.name).Int32("partition", p.index).Int64("up_to", st.upTo).
		Int64("bytes_before", st.before).Int64("bytes_after", st.after).Int("segments", st.segments).
		Dur("took", time.Since(start)).Msg("compacted")
}

// cleanStats is what one cleaning did.
type cleanStats struct {
	upTo          int64
	before, after int64 // bytes of the segments rewritten
	segments      int
}

// CompactRequested implements ReplicaEvents: the latest request wins (a
// later one covers at least as much); the cleaner goroutine carries it out.
func (p *partition) CompactRequested(req CompactRequest) {
	for {
		cur := p.compactReq.Load()
		r := req
		if cur != nil && cur.UpTo > r.UpTo {
			r.UpTo = cur.UpTo
		}
		if p.compactReq.CompareAndSwap(cur, &r) {
			break
		}
	}
	p.b.cleaner.enqueue(p)
}

// compactionDue decides, on the leader, whether p should be cleaned now
// and how far.
func (p *partition) compactionDue(now int64) (CompactRequest, bool) {
	tc := p.topic.config()
	// __consumer_offsets and __transaction_state are compacted topics
	// too (whatever the configs of one created before this cleaner said);
	// their coordinators also rewrite their live records at the log end
	// and move the log start, which bounds what in-place cleaning cannot
	// (a cleaned entry keeps one batch header).
	compacted := tc.compact || isInternalTopic(p.topic.name)
	if !compacted || !p.leads() || p.fault.Load() != nil || p.compactReq.Load() != nil || p.log == nil {
		return CompactRequest{}, false
	}
	segs := p.log.Segments()
	if len(segs) == 0 {
		return CompactRequest{}, false
	}
	cleaned := p.cleanedUpTo.Load()
	active := segs[len(segs)-1]
	// segment.ms, and max.compaction.lag.ms for records in the active
	// segment: roll it so that its records become cleanable.
	if active.Active && active.FirstOffset >= 0 && active.FirstTimestamp >= 0 &&
		(now-active.FirstTimestamp >= tc.segmentMs || lagExceeded(now, active.FirstTimestamp, tc.maxCompactionLagMs)) {
		if err := p.log.Roll(); err != nil {
			p.b.logger.Warn().Err(err).Str("topic", p.topic.name).Int32("partition", p.index).Msg("roll segment for compaction")
		} else {
			segs = p.log.Segments()
		}
	}
	hw := p.highWatermark.Load()
	upTo := min(hw, p.lastStable(hw, p.logStartOffset.Load()))
	if a := segs[len(segs)-1]; a.Active && a.FirstOffset >= 0 {
		upTo = min(upTo, a.FirstOffset)
	}
	if tc.minCompactionLagMs > 0 {
		if idx, err := p.log.FindTimestamp(now - tc.minCompactionLagMs); err == nil {
			if e, err := p.log.Read(idx); err == nil {
				upTo = min(upTo, e.BaseOffset)
			}
		}
	}
	// A kept tombstone's delete.retention.ms has passed: clean again even
	// if nothing was written since, or it would stay until the next write.
	tombstoneDue := false
	if te := p.tombstoneExpiry.Load(); te > 0 && now >= te {
		tombstoneDue = true
		upTo = max(upTo, cleaned)
	}
	if upTo <= cleaned && !tombstoneDue {
		return CompactRequest{}, false
	}
	var dirty, total int64
	forced := false
	for _, s := range segs {
		if s.Active || s.FirstOffset < 0 || s.FirstOffset >= upTo {
			continue
		}
		total += s.Bytes
		if s.NextOffset > cleaned {
			dirty += s.Bytes
			if s.FirstTimestamp >= 0 && lagExceeded(now, s.FirstTimestamp, tc.maxCompactionLagMs) {
				forced = true
			}
		}
	}
	if total == 0 || (dirty == 0 && !tombstoneDue) {
		return CompactRequest{}, false
	}
	if !forced && !tombstoneDue && float64(dirty)/float64(total) < tc.minCleanableRatio {
		return CompactRequest{}, false
	}
	return CompactRequest{UpTo: upTo, Now: now, DeleteRetentionMs: tc.deleteRetentionMs}, true
}

func lagExceeded(now, ts, maxLag int64) bool {
	return maxLag != math.MaxInt64 && now-ts >= maxLag
}

// DirtyRatio is the share of p's sealed bytes not yet cleaned (what
// min.cleanable.dirty.ratio is compared with); 0 for an empty log.
func (p *partition) dirtyRatio() float64 {
	if p.log == nil {
		return 0
	}
	cleaned := p.cleanedUpTo.Load()
	var dirty, total int64
	for _, s := range p.log.Segments() {
		if s.Active || s.FirstOffset < 0 {
			continue
		}
		total += s.Bytes
		if s.NextOffset > cleaned {
			dirty += s.Bytes
		}
	}
	if total == 0 {
		return 0
	}
	return float64(dirty) / float64(total)
}

// byteRate throttles the cleaner's I/O to a rate in bytes per second
// (0: unlimited): wait blocks for as long as n more bytes take at it.
type byteRate struct {
	perSec int64
	start  time.Time
	done   int64
}

func newByteRate(perSec int64) *byteRate { return &byteRate{perSec: perSec} }

// wait accounts n bytes and sleeps until they fit the rate, or stop closes.
func (r *byteRate) wait(n int64, stop <-chan struct{}) {
	if r.perSec <= 0 {
		return
	}
	now := time.Now()
	if r.start.IsZero() || now.Sub(r.start) > time.Second {
		// A fresh window after a pause: no credit for idle time.
		r.start, r.done = now, 0
	}
	r.done += n
	due := r.start.Add(time.Duration(float64(r.done) / float64(r.perSec) * float64(time.Second)))
	if d := due.Sub(now); d > 0 {
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-t.C:
		case <-stop:
		}
	}
}

var errCleanerStopped = fmt.Errorf("log cleaner stopped: %w", wal.ErrClosed)

// clean carries out req on p's log (every replica: the leader and the
// followers alike). It reads and rewrites without p's locks; appends,
// fetches, retention and truncation go on meanwhile (a segment they
// change is skipped and cleaned next time).
func (c *cleaner) clean(p *partition, req CompactRequest) (cleanStats, error) {
	log := p.log
	st := cleanStats{upTo: req.UpTo}
	// Every entry below UpTo must lie in a sealed segment.
	if segs := log.Segments(); len(segs) > 0 {
		if a := segs[len(segs)-1]; a.Active && a.FirstOffset >= 0 && a.FirstOffset < st.upTo {
			if err := log.Roll(); err != nil {
				return st, fmt.Errorf("roll the active segment: %w", err)
			}
		}
		segs = log.Segments()
		if a := segs[len(segs)-1]; a.Active && a.FirstOffset >= 0 && a.FirstOffset < st.upTo {
			st.upTo = a.FirstOffset // rolled meanwhile by nobody: clean what is sealed
		}
	}
	if c.m == nil {
		c.m = newOffsetMap(c.b.cfg.CompactionDedupeBytes)
	}
	if c.bc == nil {
		c.bc = newBatchCompactor(c.b.cfg.MaxDecompressedBatchBytes)
	}
	if mm := int64(p.topic.config().maxMessageBytes); mm > c.bc.maxDecompressed {
		c.bc.maxDecompressed = mm
	}
	aborted := p.abortedSpans(st.upTo)
	isAborted := func(pid, base int64) bool {
		for _, s := range aborted[pid] {
			if s.First <= base && base < s.Last {
				return true
			}
		}
		return false
	}

	// Pass 1: the dirty records into the map; the producers' last batches
	// from the whole range.
	plan := newCompactPlanner(c.m, c.bc)
	cleaned := p.cleanedUpTo.Load()
	start := p.logStartOffset.Load()
	err := c.eachEntry(p, start, st.upTo, func(e *wal.Entry) (bool, error) {
		if e.LastOffset() < cleaned {
			return true, plan.noteEntry(e.Payload)
		}
		return plan.addEntry(e.BaseOffset, e.Payload, isAborted)
	})
	if err != nil {
		return st, fmt.Errorf("plan: %w", err)
	}
	if at, full := plan.stoppedAt(); full {
		st.upTo = at // the map filled: clean what it covers, the rest next time
	}

	// Pass 2: rewrite every sealed segment below UpTo.
	// The oldest tombstone kept: the leader asks for a cleaning again when
	// it expires, even if nothing new was written (tombstoneDue).
	keep, oldestTombstone := compactKeep(c.m, tombstoneHorizon(req.Now, req.DeleteRetentionMs)), int64(math.MaxInt64)
	rules := &entryRules{aborted: isAborted, producerLast: plan.producerLast,
		keep: func(offset, ts int64, key []byte, tombstone bool) bool {
			k := keep(offset, ts, key, tombstone)
			if k && tombstone {
				oldestTombstone = min(oldestTombstone, ts)
			}
			return k
		}}
	var buf []byte
	rewrite := func(_ uint64, e wal.Entry) ([]byte, error) {
		if e.Kind != wal.KindData || e.LastOffset() >= st.upTo {
			return e.Payload, nil
		}
		c.rate.wait(int64(len(e.Payload)), c.b.stop)
		c.bytesRead.Add(int64(len(e.Payload)))
		if c.stopped() {
			return nil, errCleanerStopped
		}
		out, err := c.bc.compactEntry(buf[:0], e.Payload, rules)
		if err != nil {
			return nil, fmt.Errorf("offset %d: %w", e.BaseOffset, err)
		}
		if len(out) > 0 && len(e.Payload) > 0 && &out[0] == &e.Payload[0] {
			return out, nil // unchanged: the entry's own bytes, never a scratch buffer
		}
		buf = out
		return out, nil
	}
	for _, run := range cleanRuns(log.Segments(), start, st.upTo, int64(p.topic.config().segmentBytes)) {
		before, after, err := log.RewriteSegments(run.first, run.n, rewrite)
		switch {
		case errors.Is(err, wal.ErrSegmentChanged):
			continue // dropped or truncated meanwhile
		case err != nil:
			return st, fmt.Errorf("rewrite segment %d: %w", run.first, err)
		}
		st.segments += run.n
		st.before += before
		st.after += after
		c.bytesCleaned.Add(before - after)
	}
	for {
		cur := p.cleanedUpTo.Load()
		if st.upTo <= cur || p.cleanedUpTo.CompareAndSwap(cur, st.upTo) {
			break
		}
	}
	expiry := int64(0)
	if oldestTombstone != math.MaxInt64 {
		expiry = max(1, satAdd(oldestTombstone, req.DeleteRetentionMs+1))
	}
	p.tombstoneExpiry.Store(expiry)
	p.logMu.Lock()
	p.dirty = true // the state file records cleanedUpTo and tombstoneExpiry
	p.logMu.Unlock()
	return st, nil
}

// segmentRun is a run of consecutive sealed segments cleaned into one.
type segmentRun struct {
	first uint64 // first index of the first segment
	n     int
}

// cleanRuns groups the sealed segments holding offsets in [start, upTo)
// into runs of consecutive segments whose files together hold at most
// maxBytes (the topic's segment.bytes), each cleaned into one file, as
// Kafka's cleaner groups segments: a log cleaned often would otherwise
// keep one small file per roll, and every cleaning would rewrite (create,
// sync, rename) each of them. A segment that is not to be cleaned ends a
// run; one larger than maxBytes, or holding records at or past upTo (left
// dirty), is a run of its own, so that a merged segment is clean through
// (the dirty ratio counts whole segments).
func cleanRuns(segs []wal.SegmentInfo, start, upTo, maxBytes int64) []segmentRun {
	var (
		runs []segmentRun
		size int64
		open bool // the last run may grow
	)
	for _, s := range segs {
		if s.Active || s.FirstOffset < 0 || s.FirstOffset >= upTo || s.NextOffset <= start {
			open = false
			continue
		}
		spans := s.NextOffset > upTo // holds records left dirty
		if open && !spans && size+s.Bytes <= maxBytes {
			runs[len(runs)-1].n++
			size += s.Bytes
			continue
		}
		runs = append(runs, segmentRun{first: s.FirstIndex, n: 1})
		size, open = s.Bytes, !spans
	}
	return runs
}

// eachEntry calls fn with every data entry of p's log holding offsets in
// [from, upTo) whose last offset is below upTo, in log order, until fn
// returns false or an error. It reads the sealed segments' files, not
// through the shared read cache (a pass over a whole log would evict what
// consumers read and hold its memory), throttled. Entries in the active
// segment are not read: clean rolls it first when UpTo reaches into it.
func (c *cleaner) eachEntry(p *partition, from, upTo int64, fn func(e *wal.Entry) (bool, error)) error {
	if from >= upTo {
		return nil
	}
	for _, s := range p.log.Segments() {
		if s.Active || s.FirstOffset < 0 || s.NextOffset <= from {
			continue
		}
		if s.FirstOffset >= upTo {
			return nil
		}
		done := false
		err := p.log.ScanSegment(s.FirstIndex, func(_ uint64, e wal.Entry) (bool, error) {
			if c.stopped() {
				return false, errCleanerStopped
			}
			if e.Kind != wal.KindData || e.LastOffset() < from {
				return true, nil
			}
			if e.LastOffset() >= upTo {
				done = true
				return false, nil
			}
			c.rate.wait(int64(len(e.Payload)), c.b.stop)
			c.bytesRead.Add(int64(len(e.Payload)))
			ok, err := fn(&e)
			done = !ok
			return ok, err
		})
		switch {
		case errors.Is(err, wal.ErrSegmentChanged):
			continue // dropped meanwhile (retention): nothing of it to clean
		case err != nil:
			return fmt.Errorf("read segment %d: %w", s.FirstIndex, err)
		case done:
			return nil
		}
	}
	return nil
}

// abortedSpans is the aborted transactions that began below upTo, by
// producer: [first offset, marker offset) of each.
func (p *partition) abortedSpans(upTo int64) map[int64][]txnSpan {
	p.logMu.Lock()
	defer p.logMu.Unlock()
	var out map[int64][]txnSpan
	for _, a := range p.txns.aborted {
		if a.FirstOffset >= upTo {
			continue
		}
		if out == nil {
			out = make(map[int64][]txnSpan)
		}
		out[a.ProducerID] = append(out[a.ProducerID], txnSpan{First: a.FirstOffset, Last: a.LastOffset})
	}
	return out
}
