package broker

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"

	"github.com/chronik-stream/chronik/wal"
)

// The transaction coordinator's I/O: the thin loop around the
// deterministic TxnTable (txn_machine.go, txn_table.go), one table per
// __transaction_state partition, in both modes. A transactional id lives in
// partition GroupOffsetsPartition(id, partitions) of __transaction_state
// (Kafka's routing: the Java hash of the id), and its coordinator is that
// partition's leader; the topic is created on first use, as Kafka does.
//
// The coordinator follows the leaders of __transaction_state, as Kafka
// loads a partition when it is elected: a table is loaded once this node
// leads its partition at a new epoch (and the high watermark reached the
// log end, so that every record of an earlier term is committed), by the
// worker that leadership changes wake (and that checks every tick), or by
// the first call that comes sooner; it is dropped when a call or the
// worker finds that this node no longer leads at that epoch. Loading
// without waiting for a call matters: the previous coordinator's
// unfinished transactions (markers to write, timeouts to fire) hold the
// last stable offsets of their partitions, and the offsets of their groups
// (UNSTABLE_OFFSET_COMMIT), until the new one finishes them, and their
// producers may be waiting for exactly that without calling it. Calls on
// one table are serialised by its mutex, which is held while the call's
// records are appended: a response goes out only once its records are
// durable.
//
// Markers: once a PrepareCommit/PrepareAbort record is durable, the client
// has its answer and a goroutine writes the commit/abort marker into every
// partition of the transaction, each through that partition's leader (this
// node's broker, or another node's WriteTxnMarkers), retrying until they
// are all written or this node stops coordinating; then MarkersWritten
// completes the transaction. A table loaded with transactions in a prepare
// state (the previous coordinator died between the two) writes their
// markers again: markers are idempotent.
//
// A failed append answers NOT_COORDINATOR and drops the table, which the
// next call loads again from the log.

// txnTopic is Kafka's internal topic of transaction state.
const txnTopic = "__transaction_state"

const (
	defaultTxnTopicPartitions = 50
	defaultTxnMaxTimeout      = 15 * time.Minute
	defaultTxnIDExpiration    = 7 * 24 * time.Hour
	// txnTickInterval is how often loaded tables are ticked (transaction
	// timeouts, id expiration) and unfinished markers retried.
	txnTickInterval = time.Second
)

// txnCoordinator owns the tables of the __transaction_state partitions
// this node leads.
type txnCoordinator struct {
	b   *Broker
	cfg TxnConfig

	mu     sync.Mutex
	parts  map[int32]*txnPartition
	closed bool // no marker goroutine starts once set (close waits for the others)

	stop chan struct{}
	wake chan struct{} // a __transaction_state partition's leader changed
	wg   sync.WaitGroup

	// Counters for metrics.
	commits, aborts, timeouts atomic.Int64
}

// txnPartition is one __transaction_state partition's table on this node.
type txnPartition struct {
	c     *txnCoordinator
	index int32

	mu    sync.Mutex // serialises every call on table, appends included
	p     *partition
	table *TxnTable
	epoch int32 // the leader epoch the table was loaded at
	// sending holds the transactional ids whose markers a goroutine is
	// writing now (the ticker starts one for the others).
	sending map[string]bool
}

func newTxnCoordinator(b *Broker) *txnCoordinator {
	return &txnCoordinator{
		b: b,
		// NewProducerID: an EndTxn v5+ whose epoch ran out continues the
		// transactional id with a new producer id (KIP-890 part 2).
		cfg:   TxnConfig{MaxTimeout: b.cfg.TxnMaxTimeout, IDExpiration: b.cfg.TxnIDExpiration, NewProducerID: b.allocateProducerID},
		parts: make(map[int32]*txnPartition),
		stop:  make(chan struct{}),
		wake:  make(chan struct{}, 1),
	}
}

// start runs the ticker.
func (c *txnCoordinator) start() {
	c.goTracked(c.run)
}

// close stops the ticker; marker goroutines end at their next attempt.
func (c *txnCoordinator) close() {
	c.mu.Lock()
	already := c.closed
	c.closed = true
	c.mu.Unlock()
	if !already {
		close(c.stop)
	}
	c.wg.Wait()
}

// goTracked runs fn on a goroutine that close waits for, unless closing
// (the ticker, marker writers).
func (c *txnCoordinator) goTracked(fn func()) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return false
	}
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		fn()
	}()
	return true
}

// run is the worker: it follows the leaders (on a leadership change, and
// shortly again while a load waits for its high watermark) and ticks the
// loaded tables.
func (c *txnCoordinator) run() {
	t := time.NewTicker(txnTickInterval)
	defer t.Stop()
	var retry <-chan time.Time
	for {
		tick := false
		select {
		case <-c.stop:
			return
		case <-c.wake:
		case <-retry:
		case <-t.C:
			tick = true
		}
		retry = nil
		if c.followLeaders() {
			retry = time.After(groupLoadRetry)
		}
		if !tick {
			continue
		}
		c.mu.Lock()
		parts := make([]*txnPartition, 0, len(c.parts))
		for _, tp := range c.parts {
			parts = append(parts, tp)
		}
		c.mu.Unlock()
		for _, tp := range parts {
			tp.tick()
		}
	}
}

// txnLeaderChanged is partition.LeaderChanged's hook: the transaction
// coordinator follows the leaders of __transaction_state. It runs on a
// replication worker, so it only wakes the coordinator's worker.
func (b *Broker) txnLeaderChanged(p *partition) {
	if c := b.txns; c != nil && p.topic.name == txnTopic {
		select {
		case c.wake <- struct{}{}:
		default:
		}
	}
}

// followLeaders loads the table of every __transaction_state partition
// this node leads at an epoch it has not loaded yet (the load writes the
// markers the previous coordinator left). It reports whether a load waits
// for its partition's high watermark.
func (c *txnCoordinator) followLeaders() (waiting bool) {
	b := c.b
	b.mu.RLock()
	var parts []*partition
	if t := b.topics[txnTopic]; t != nil {
		parts = t.partitions
	}
	b.mu.RUnlock()
	for i, p := range parts {
		if p == nil || p.replica.leader.Load() != p.replica.self {
			continue
		}
		tp := c.partitionAt(int32(i))
		tp.mu.Lock()
		if tp.table == nil || tp.p != p || tp.epoch != p.replica.epoch.Load() {
			_, err := tp.serve()
			switch {
			case errors.Is(err, kerr.CoordinatorLoadInProgress):
				waiting = true
			case err != nil:
				b.logger.Debug().Err(err).Int32("partition", int32(i)).Msg("load " + txnTopic + " partition; retried on the next tick or call")
			}
		}
		tp.mu.Unlock()
	}
	return waiting
}

// topicPartitions is the partition count of __transaction_state, creating
// the topic first if it does not exist.
func (c *txnCoordinator) topicPartitions() (int32, error) {
	b := c.b
	b.mu.RLock()
	t := b.topics[txnTopic]
	b.mu.RUnlock()
	if t != nil {
		return t.meta.partitions, nil
	}
	// Bounded by compaction (on load), never by time or size.
	forever := "-1"
	_, err := b.CreateTopic(txnTopic, b.cfg.TxnStatePartitions, -1,
		map[string]*string{cfgRetentionMs: &forever, cfgRetentionBytes: &forever, cfgCleanupPolicy: &compactPolicy}, false)
	if err != nil && !errors.Is(err, kerr.TopicAlreadyExists) {
		return 0, fmt.Errorf("create %s: %w: %w", txnTopic, kerr.CoordinatorNotAvailable, err)
	}
	b.mu.RLock()
	t = b.topics[txnTopic]
	b.mu.RUnlock()
	if t == nil {
		return 0, fmt.Errorf("%s is being created: %w", txnTopic, kerr.CoordinatorNotAvailable)
	}
	return t.meta.partitions, nil
}

// partitionIndex routes a transactional id.
func (c *txnCoordinator) partitionIndex(txnID string) (int32, error) {
	n, err := c.topicPartitions()
	if err != nil {
		return 0, err
	}
	return GroupOffsetsPartition(txnID, n), nil
}

// partitionFor is the txnPartition of a transactional id.
func (c *txnCoordinator) partitionFor(txnID string) (*txnPartition, error) {
	idx, err := c.partitionIndex(txnID)
	if err != nil {
		return nil, err
	}
	return c.partitionAt(idx), nil
}

// partitionAt is the txnPartition of __transaction_state partition idx.
func (c *txnCoordinator) partitionAt(idx int32) *txnPartition {
	c.mu.Lock()
	defer c.mu.Unlock()
	tp := c.parts[idx]
	if tp == nil {
		tp = &txnPartition{c: c, index: idx, epoch: -1, sending: make(map[string]bool)}
		c.parts[idx] = tp
	}
	return tp
}

// available returns the table if this node coordinates the partition now,
// loading it if this node leads at a new epoch. Caller holds mu.
func (tp *txnPartition) available(txnID string) (*TxnTable, error) {
	t, err := tp.serve()
	if err != nil {
		return nil, fmt.Errorf("transactional id %q: %w", txnID, err)
	}
	return t, nil
}

// serve is available for no id in particular (the worker's loads).
// Caller holds mu.
func (tp *txnPartition) serve() (*TxnTable, error) {
	b := tp.c.b
	notCoordinator := func(cause error) error { return fmt.Errorf("%w: %w", kerr.NotCoordinator, cause) }
	if b.closed.Load() {
		return nil, notCoordinator(ErrClosed)
	}
	p, err := b.partition(txnTopic, tp.index)
	if err != nil {
		tp.drop()
		return nil, notCoordinator(fmt.Errorf("%s-%d is not hosted on node %d", txnTopic, tp.index, b.cfg.NodeID))
	}
	if err := p.faultErr(); err != nil {
		tp.drop()
		return nil, fmt.Errorf("%w: %w", kerr.CoordinatorNotAvailable, err)
	}
	r := &p.replica
	leader, epoch := r.leader.Load(), r.epoch.Load()
	if leader != r.self {
		tp.drop()
		return nil, notCoordinator(fmt.Errorf("%s-%d is led by node %d", txnTopic, tp.index, leader))
	}
	if tp.table != nil && tp.p == p && tp.epoch == epoch {
		return tp.table, nil
	}
	tp.drop()
	if hw, end := p.highWatermark.Load(), p.log.NextOffset(); hw < end {
		return nil, fmt.Errorf("%s-%d is loading: %w", txnTopic, tp.index, kerr.CoordinatorLoadInProgress)
	}
	if err := tp.load(p); err != nil {
		return nil, fmt.Errorf("%s-%d unreadable (%v): %w", txnTopic, tp.index, err, kerr.CoordinatorNotAvailable)
	}
	tp.epoch = epoch
	tp.maybeCompact()
	if tp.table == nil {
		return nil, notCoordinator(fmt.Errorf("%s-%d: compaction failed", txnTopic, tp.index))
	}
	for _, m := range tp.table.PendingMarkers() {
		tp.sendMarkers(m) // the previous coordinator's unfinished transactions
	}
	return tp.table, nil
}

// drop forgets the table (leadership moved, or an append failed). Caller
// holds mu.
func (tp *txnPartition) drop() {
	tp.table, tp.p, tp.epoch = nil, nil, -1
}

// load replays the partition's records into a fresh table. Caller holds mu.
func (tp *txnPartition) load(p *partition) error {
	start := time.Now()
	rep := NewTxnReplayer()
	records := int64(0)
	err := p.forEachRecord(p.logStartOffset.Load(), p.highWatermark.Load(), func(_, _ int64, meta groupBatchMeta, key, value []byte) error {
		if meta.control {
			return nil // no transaction ever writes to __transaction_state
		}
		records++
		if err := rep.Apply(key, value); err != nil {
			// One unreadable record must not cost every transaction of
			// the partition: Kafka skips what it cannot parse too.
			tp.c.b.logger.Warn().Err(err).Int32("partition", tp.index).Msg("skipped an unreadable " + txnTopic + " record")
		}
		return nil
	})
	if err != nil {
		if errors.Is(err, wal.ErrCorrupt) {
			p.storageFailed(err)
		}
		return err
	}
	tp.table, tp.p = rep.Table(tp.c.cfg), p
	tp.c.b.logger.Info().Int32("partition", tp.index).Int("transactional_ids", tp.table.Len()).Int64("records", records).
		Dur("took", time.Since(start)).Msg("transaction coordinator of " + txnTopic + " partition")
	return nil
}

// call runs fn on the id's table under its mutex and makes fn's records
// durable before returning; markers it asks for are written afterwards.
func (c *txnCoordinator) call(txnID string, fn func(t *TxnTable, now time.Time) TxnOutput) error {
	tp, err := c.partitionFor(txnID)
	if err != nil {
		return err
	}
	tp.mu.Lock()
	t, err := tp.available(txnID)
	if err != nil {
		tp.mu.Unlock()
		return err
	}
	out := fn(t, time.Now())
	err = tp.settle(out)
	tp.mu.Unlock()
	return err
}

// settle appends out's records and starts writing its markers. On a failed
// append the table is dropped (the next call reloads it) and the call
// answers NOT_COORDINATOR, as Kafka's coordinator does. Caller holds mu.
func (tp *txnPartition) settle(out TxnOutput) error {
	if len(out.Records) > 0 {
		recs := make([]groupLogRecord, len(out.Records))
		for i, r := range out.Records {
			recs[i] = groupLogRecord{key: r.Key, value: r.Value}
		}
		if _, err := tp.p.appendInternal(encodeGroupBatch(recs, time.Now().UnixMilli())); err != nil {
			tp.drop()
			return fmt.Errorf("%s-%d: %w: %w", txnTopic, tp.index, kerr.NotCoordinator, err)
		}
	}
	for _, m := range out.Markers {
		tp.sendMarkers(m)
	}
	if len(out.Records) > 0 {
		tp.maybeCompact()
	}
	return nil
}

// tick fires the table's deadlines (timeouts, expiration), drops a table
// whose leadership moved, and restarts marker writing that gave up. The
// ticker.
func (tp *txnPartition) tick() {
	tp.mu.Lock()
	defer tp.mu.Unlock()
	if tp.table == nil {
		return
	}
	p := tp.p
	r := &p.replica
	if r.leader.Load() != r.self || r.epoch.Load() != tp.epoch || p.fault.Load() != nil {
		tp.drop()
		return
	}
	now := time.Now()
	if at, ok := tp.table.NextDeadline(); ok && !at.After(now) {
		out := tp.table.Tick(now)
		tp.c.timeouts.Add(int64(len(out.Markers)))
		if err := tp.settle(out); err != nil {
			tp.c.b.logger.Warn().Err(err).Int32("partition", tp.index).Msg("transaction timeouts")
			return
		}
	}
	for _, m := range tp.table.PendingMarkers() {
		tp.sendMarkers(m)
	}
}

// sendMarkers starts a goroutine writing m's markers unless one is already
// writing that id's. Caller holds mu.
func (tp *txnPartition) sendMarkers(m TxnMarkers) {
	if tp.sending[m.TransactionalID] {
		return
	}
	table, epoch := tp.table, tp.epoch
	started := tp.c.goTracked(func() {
		done := tp.c.writeMarkers(m, epoch, func() bool { return tp.stillServes(table, epoch) })
		tp.mu.Lock()
		delete(tp.sending, m.TransactionalID)
		if done && tp.table == table && tp.epoch == epoch {
			out := table.MarkersWritten(time.Now(), m.TransactionalID, m.ProducerID, m.ProducerEpoch)
			if err := tp.settle(out); err != nil {
				tp.c.b.logger.Warn().Err(err).Str("transactional_id", m.TransactionalID).Msg("complete transaction")
			} else if m.Commit {
				tp.c.commits.Add(1)
			} else {
				tp.c.aborts.Add(1)
			}
		}
		tp.mu.Unlock()
	})
	if started {
		tp.sending[m.TransactionalID] = true
	}
}

// stillServes reports whether the table a marker goroutine works for is
// still this partition's, and this node still leads the partition at the
// table's epoch (the worker drops a table only at its next tick).
func (tp *txnPartition) stillServes(table *TxnTable, epoch int32) bool {
	tp.mu.Lock()
	defer tp.mu.Unlock()
	if tp.table != table || tp.epoch != epoch {
		return false
	}
	r := &tp.p.replica
	return r.leader.Load() == r.self && r.epoch.Load() == epoch
}

// writeMarkers writes m's marker into every partition, retrying with
// backoff while serving() holds, checked before each partition's marker.
// It reports whether all were written.
//
// The markers carry coordinatorEpoch, the leader epoch of the
// __transaction_state partition the table was loaded at, which only grows
// for a transactional id (and so for its producers). A partition refuses a
// marker older than the last one it has from the producer
// (TRANSACTION_COORDINATOR_FENCED), so a marker of a coordinator that
// lost the partition while its request was under way cannot land after the
// new coordinator's: on the old protocol the producer's next transaction
// has the same epoch, and such a marker would end it in that partition
// before the producer does.
func (c *txnCoordinator) writeMarkers(m TxnMarkers, coordinatorEpoch int32, serving func() bool) bool {
	left := slices.Clone(m.Partitions)
	backoff := 50 * time.Millisecond
	for {
		select {
		case <-c.stop:
			return false
		default:
		}
		if !serving() {
			return false
		}
		var failed []TxnTopicPartition
		for i, tpart := range left {
			if i > 0 && !serving() {
				return false
			}
			ctx, cancel := context.WithTimeout(context.Background(), ReplicateTimeout)
			err := c.b.writeMarkerVia(ctx, tpart.Topic, tpart.Partition, m.ProducerID, m.ProducerEpoch, m.Commit, coordinatorEpoch)
			cancel()
			switch {
			case err == nil:
			case errors.Is(err, kerr.UnknownTopicOrPartition):
				// Deleted meanwhile: nothing to mark, as Kafka skips it.
			default:
				failed = append(failed, tpart)
				c.b.logger.Debug().Err(err).Str("topic", tpart.Topic).Int32("partition", tpart.Partition).
					Str("transactional_id", m.TransactionalID).Msg("write transaction marker; retrying")
			}
		}
		if len(failed) == 0 {
			return true
		}
		left = failed
		select {
		case <-c.stop:
			return false
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 2*time.Second)
	}
}

// Compaction of __transaction_state: the table holds every live
// transactional id, so a partition whose log has grown well past them is
// compacted by writing the table's records again at the end of the log and
// moving the log start past the old ones (DeleteRecords, replicated in a
// cluster), as the group coordinator compacts __consumer_offsets.
const (
	txnCompactMinRecords = 1000
	txnCompactRatio      = 4
)

// maybeCompact compacts when the records since the log start exceed
// txnCompactRatio times the live ids (and txnCompactMinRecords). Caller
// holds mu with the table loaded.
func (tp *txnPartition) maybeCompact() {
	p := tp.p
	records := p.highWatermark.Load() - p.logStartOffset.Load()
	if records < max(txnCompactMinRecords, txnCompactRatio*int64(tp.table.Len())) {
		return
	}
	if err := tp.compact(); err != nil {
		tp.c.b.logger.Warn().Err(err).Int32("partition", tp.index).Msg("compact " + txnTopic)
	}
}

// compact writes every live id's record and drops everything before them.
// Caller holds mu.
func (tp *txnPartition) compact() error {
	p := tp.p
	ids := tp.table.List(nil, nil)
	before := p.highWatermark.Load() - p.logStartOffset.Load()
	start := int64(-1)
	now := time.Now().UnixMilli()
	for chunk := range slices.Chunk(ids, 500) {
		recs := make([]groupLogRecord, len(chunk))
		for i := range chunk {
			r := EncodeTxnRecord(&chunk[i])
			recs[i] = groupLogRecord{key: r.Key, value: r.Value}
		}
		base, err := p.appendInternal(encodeGroupBatch(recs, now))
		if err != nil {
			tp.drop()
			return err
		}
		if start < 0 {
			start = base
		}
	}
	if start < 0 {
		start = p.highWatermark.Load() // no live ids: drop everything
	}
	if _, err := p.deleteRecords(start); err != nil {
		return err
	}
	tp.c.b.logger.Info().Int32("partition", tp.index).Int64("records_before", before).Int("records_after", len(ids)).
		Msg("compacted " + txnTopic)
	return nil
}
