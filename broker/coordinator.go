package broker

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"

	"github.com/chronik-stream/chronik/wal"
)

// The group coordinator's I/O: the thin loop around the deterministic
// GroupTable (group.go and group_*.go), one table per __consumer_offsets
// partition. The Broker's group calls that drive it are in groups.go.
//
// Calls on one table are serialised by its mutex, and the mutex is held
// while the call's records are appended: a call's responses go out only
// once its records are durable, and every later call sees a state whose
// records are all durable. A JoinGroup or SyncGroup whose answer is
// delayed registers a channel under its token and waits on it without the
// mutex, so heartbeats, commits and the other members' joins proceed.
//
// Each table has one timer, set to its NextDeadline after every call; when
// it fires it marks the table due and wakes the coordinator's one worker
// goroutine, which runs Tick. The same worker runs ExpireOffsets every
// OffsetsRetentionCheckInterval. Compaction is described in
// coordinator_log.go.
//
// A failed append answers the call (and the delayed responses it
// completed) with NOT_COORDINATOR, then drops the table and rebuilds it
// from the log, as a coordinator that lost its partition would: clients
// find the coordinator again and rejoin.

// offsetsTopic is Kafka's internal topic of group metadata and offsets.
const offsetsTopic = "__consumer_offsets"

const (
	defaultOffsetsTopicPartitions        = 50
	defaultOffsetsRetentionCheckInterval = 10 * time.Minute
)

// groupCoordinator owns the tables and the worker that ticks them.
type groupCoordinator struct {
	b   *Broker
	cfg GroupConfig
	// parts holds one groupPartition per __consumer_offsets partition, by
	// index. Standalone it is set before the coordinator is published; in
	// cluster mode once the topic exists (coordinator_cluster.go).
	parts atomic.Pointer[[]*groupPartition]
	// clusterNodes is the configured cluster size (cluster mode):
	// __consumer_offsets is created once that many nodes (at most 3) are
	// voters, so that it gets its full replication factor.
	clusterNodes int

	wake chan struct{} // a table is due, or its leadership changed
	stop chan struct{}
	wg   sync.WaitGroup

	// Cluster mode: deleted topics whose offsets the worker removes
	// (ApplyMeta must not wait for group appends).
	removeMu      sync.Mutex
	removeTopics  []string
	removeWaiters []chan struct{} // closed once the topics queued before them are done

	// What loads read (records, all partitions) and how long attach's
	// parallel load at Open took, for benchmarks.
	loadRecords atomic.Int64
	loadTook    time.Duration
}

// groupPartition is one __consumer_offsets partition and its groups.
type groupPartition struct {
	c     *groupCoordinator
	index int32
	p     *partition

	mu      sync.Mutex // serialises every call on table, appends included
	table   *GroupTable
	closed  bool
	token   uint64
	waiters map[uint64]chan GroupResponse
	timer   *time.Timer
	due     atomic.Bool
	// epoch is the leader epoch the table was loaded at (it serves only
	// while this node leads at that epoch); follow is set when the
	// partition's leadership changed and the worker must load or drop the
	// table; loading (worker only) while a load waits for the high
	// watermark; loadErr why the last load failed (nil once one worked).
	epoch   int32
	follow  atomic.Bool
	loading bool
	loadErr error
	// compactAt is the number of records above the log start at which the
	// next compaction runs.
	compactAt int64
}

// ensureOffsetsTopic creates __consumer_offsets on the first Open.
func (b *Broker) ensureOffsetsTopic() (*topic, error) {
	b.mu.RLock()
	t := b.topics[offsetsTopic]
	b.mu.RUnlock()
	if t == nil {
		// Never deleted by time or size: compaction bounds it.
		forever := "-1"
		_, err := b.CreateTopic(offsetsTopic, b.cfg.OffsetsTopicPartitions, -1,
			map[string]*string{cfgRetentionMs: &forever, cfgRetentionBytes: &forever, cfgCleanupPolicy: &compactPolicy}, false)
		if err != nil && !errors.Is(err, kerr.TopicAlreadyExists) {
			return nil, fmt.Errorf("broker: create %s: %w", offsetsTopic, err)
		}
		b.mu.RLock()
		t = b.topics[offsetsTopic]
		b.mu.RUnlock()
	}
	if n := int32(len(t.partitions)); n != b.cfg.OffsetsTopicPartitions {
		b.logger.Warn().Int32("partitions", n).Int32("configured", b.cfg.OffsetsTopicPartitions).
			Msg(offsetsTopic + " keeps the partition count it was created with")
	}
	return t, nil
}

// newGroupCoordinator makes a coordinator without partitions or worker.
func (b *Broker) newGroupCoordinator() *groupCoordinator {
	return &groupCoordinator{
		b: b,
		cfg: GroupConfig{
			InitialRebalanceDelay: b.cfg.GroupInitialRebalanceDelay,
			MinSessionTimeout:     b.cfg.GroupMinSessionTimeout,
			MaxSessionTimeout:     b.cfg.GroupMaxSessionTimeout,
			MaxSize:               b.cfg.GroupMaxSize,
			OffsetsRetention:      b.cfg.OffsetsRetention,
		},
		wake: make(chan struct{}, 1),
		stop: make(chan struct{}),
	}
}

// newPartition makes the groupPartition of __consumer_offsets partition
// index (p nil: not hosted on this node).
func (c *groupCoordinator) newPartition(index int32, p *partition) *groupPartition {
	gp := &groupPartition{c: c, index: index, p: p, epoch: -1, waiters: make(map[uint64]chan GroupResponse)}
	gp.timer = time.AfterFunc(time.Hour, gp.markDue)
	gp.timer.Stop()
	return gp
}

// partitions is every groupPartition by index (none yet in cluster mode
// before __consumer_offsets exists).
func (c *groupCoordinator) partitions() []*groupPartition {
	if ps := c.parts.Load(); ps != nil {
		return *ps
	}
	return nil
}

// openLocalGroups is the group coordinator's start when this node is its
// own cluster: __consumer_offsets is made if it is missing, every partition
// of it (this node leads them all) is loaded before Open returns, and the
// offsets of topics deleted while the groups were not watching (a crash
// between the deletion and its tombstones) are removed, which this node may
// decide since its metadata is complete.
func (b *Broker) openLocalGroups() error {
	t, err := b.ensureOffsetsTopic()
	if err != nil {
		return err
	}
	c := b.groups
	c.attach(t)
	for _, gp := range c.partitions() {
		gp.mu.Lock()
		if gp.active() {
			for topic := range gp.table.OffsetTopics() {
				if _, ok := b.Topic(topic); !ok {
					gp.settle(gp.table.RemoveTopicOffsets(time.Now(), topic))
				}
			}
		}
		gp.mu.Unlock()
	}
	c.wg.Add(1)
	go c.run()
	return nil
}

// load replays the partition into a fresh table, compacting the log first
// when it holds many more records than live keys (compactOnLoad). It
// returns the records replayed. Caller holds mu.
func (gp *groupPartition) load(compactOnLoad bool) (int64, error) {
	if err := gp.p.faultErr(); err != nil {
		gp.table = nil
		return 0, err
	}
	res, err := replayGroups(gp.p, gp.c.cfg, time.Now())
	if err != nil {
		if errors.Is(err, wal.ErrCorrupt) {
			gp.p.storageFailed(err) // offline, like any damaged partition
		}
		gp.table = nil
		return res.records, fmt.Errorf("%s-%d: %w", offsetsTopic, gp.index, err)
	}
	gp.table = res.table
	gp.compactAt = max(groupCompactMinRecords, groupCompactRatio*res.liveKeys)
	if compactOnLoad && res.records >= gp.compactAt {
		gp.compact(time.Now())
	}
	gp.rearm()
	return res.records, nil
}

// compact compacts the partition's log and sets the next threshold.
// Caller holds mu.
func (gp *groupPartition) compact(now time.Time) bool {
	if gp.table != nil && gp.table.HasOpenTxns() {
		return false // the next append or marker with none open tries again
	}
	// In cluster mode the snapshot records are replicated appends and the
	// final deleteRecords puts the new log start in the partition's raft
	// log, so every replica (and the next leader's replay) starts there.
	before, after, err := compactGroupLog(gp.p, now)
	if errors.Is(err, errGroupCompactOpenTxn) {
		// The table did not know of it (a bug): do not scan again on
		// every append.
		gp.c.b.logger.Warn().Err(err).Int32("partition", gp.index).Msg("compact " + offsetsTopic + " postponed")
		gp.compactAt = before + groupCompactMinRecords
		return false
	}
	if err != nil {
		gp.c.b.logger.Error().Err(err).Int32("partition", gp.index).Msg("compact " + offsetsTopic)
		// Try again after as many records again.
		gp.compactAt = before + max(groupCompactMinRecords, before)
		return false
	}
	live := int64(0)
	if gp.table != nil {
		live = groupLiveKeys(gp.table)
	}
	gp.compactAt = max(groupCompactMinRecords, groupCompactRatio*max(live, after))
	gp.c.b.logger.Info().Int32("partition", gp.index).Int64("records_before", before).Int64("records_after", after).
		Msg("compacted " + offsetsTopic)
	return true
}

// markDue runs on the table's timer goroutine.
func (gp *groupPartition) markDue() {
	gp.due.Store(true)
	select {
	case gp.c.wake <- struct{}{}:
	default:
	}
}

// active reports whether the table serves: it is loaded and, in cluster
// mode, this node still leads the partition at the epoch it was loaded at.
// Caller holds mu.
func (gp *groupPartition) active() bool {
	if gp.closed || gp.table == nil {
		return false
	}
	r := &gp.p.replica
	return r.leader.Load() == r.self && r.epoch.Load() == gp.epoch
}

// rearm sets the timer to the table's next deadline. Caller holds mu.
func (gp *groupPartition) rearm() {
	if gp.closed || gp.table == nil {
		gp.timer.Stop()
		return
	}
	at, ok := gp.table.NextDeadline()
	if !ok {
		gp.timer.Stop()
		return
	}
	gp.timer.Reset(max(time.Until(at), 0))
}

// run is the coordinator's worker: ticks due tables and expires offsets;
// in cluster mode it also loads and drops tables as leadership moves and
// removes the offsets of deleted topics.
func (c *groupCoordinator) run() {
	defer c.wg.Done()
	expire := time.NewTicker(c.b.cfg.OffsetsRetentionCheckInterval)
	defer expire.Stop()
	loading := false
	for {
		var retry <-chan time.Time
		if loading {
			retry = time.After(groupLoadRetry)
		}
		select {
		case <-c.stop:
			return
		case <-c.wake:
		case <-retry:
		case <-expire.C:
			c.expireOffsets()
		}
		c.removePendingTopics()
		loading = false
		for _, gp := range c.partitions() {
			if gp.follow.Swap(false) || gp.loading {
				gp.loading = gp.followLeader()
				loading = loading || gp.loading
			}
			if gp.due.Swap(false) {
				gp.tick()
			}
		}
	}
}

func (gp *groupPartition) tick() {
	gp.mu.Lock()
	defer gp.mu.Unlock()
	if !gp.active() {
		return
	}
	gp.settle(gp.table.Tick(time.Now()))
}

func (c *groupCoordinator) expireOffsets() int {
	records := 0
	for _, gp := range c.partitions() {
		gp.mu.Lock()
		if gp.active() {
			out := gp.table.ExpireOffsets(time.Now())
			records += len(out.Records)
			gp.settle(out)
		}
		gp.mu.Unlock()
	}
	return records
}

// close answers every waiting request with NOT_COORDINATOR and stops the
// worker and timers. The logs are closed by the broker afterwards.
func (c *groupCoordinator) close() {
	if c == nil {
		return
	}
	close(c.stop)
	c.wg.Wait()
	for _, gp := range c.partitions() {
		gp.mu.Lock()
		gp.closed = true
		gp.timer.Stop()
		if gp.table != nil {
			gp.deliver(gp.table.Unload().Responses)
			gp.table = nil
		}
		gp.failWaiters()
		gp.mu.Unlock()
	}
}

// settle makes out's records durable, then delivers its responses. On an
// append failure the responses are answered with NOT_COORDINATOR and the
// table is rebuilt from the log; the error is returned for the call's own
// answer. Caller holds mu.
func (gp *groupPartition) settle(out GroupOutput) error {
	written := len(out.Records) + len(out.TxnRecords)
	if written > 0 {
		if err := gp.append(out); err != nil {
			gp.c.b.logger.Warn().Err(err).Int32("partition", gp.index).Msg("group records not written; reloading the partition's groups")
			for _, r := range out.Responses {
				gp.fail(r.Token)
			}
			// Maybe no longer the leader, maybe a log that failed a
			// write: the worker loads the partition again if this
			// node still leads it.
			gp.unload()
			gp.poke()
			return err
		}
	}
	gp.deliver(out.Responses)
	gp.rearm()
	if written > 0 {
		gp.maybeCompact()
	}
	return nil
}

// maybeCompact compacts once the records above the log start reach the
// threshold. Caller holds mu.
func (gp *groupPartition) maybeCompact() {
	if gp.p.highWatermark.Load()-gp.p.logStartOffset.Load() >= gp.compactAt {
		gp.compact(time.Now())
	}
}

// append writes out's Records as one batch and its TxnRecords as a
// transactional batch of out.TxnProducer after it, in one append: both
// land, contiguous, or neither.
func (gp *groupPartition) append(out GroupOutput) error {
	now := time.Now().UnixMilli()
	var buf []byte
	if len(out.Records) > 0 {
		buf = encodeGroupBatch(groupLogRecords(out.Records), now)
	}
	if len(out.TxnRecords) > 0 {
		pid, epoch := out.TxnProducer.ID, out.TxnProducer.Epoch
		seq, err := gp.p.groupTxnSequence(pid, epoch)
		if err != nil {
			return err
		}
		buf = append(buf, encodeGroupTxnBatch(groupLogRecords(out.TxnRecords), now, pid, epoch, seq)...)
	}
	_, err := gp.p.appendInternal(buf)
	return err
}

func groupLogRecords(records []GroupRecord) []groupLogRecord {
	recs := make([]groupLogRecord, len(records))
	for i, r := range records {
		recs[i] = groupLogRecord{key: r.Key, value: r.Value}
	}
	return recs
}

// unload drops the table, answering its waiting requests with
// NOT_COORDINATOR. Caller holds mu.
func (gp *groupPartition) unload() {
	if gp.table != nil {
		gp.deliver(gp.table.Unload().Responses)
		gp.table = nil
	}
	gp.failWaiters()
	gp.timer.Stop()
}

// deliver hands responses to their waiters. Responses alias group state
// that later calls may replace, so waiters get copies.
func (gp *groupPartition) deliver(responses []GroupResponse) {
	for _, r := range responses {
		ch, ok := gp.waiters[r.Token]
		if !ok {
			continue // the requester went away
		}
		delete(gp.waiters, r.Token)
		ch <- cloneGroupResponse(r)
	}
}

// fail answers one waiting request with NOT_COORDINATOR.
func (gp *groupPartition) fail(token uint64) {
	ch, ok := gp.waiters[token]
	if !ok {
		return
	}
	delete(gp.waiters, token)
	j, s := groupJoinError("", kerr.NotCoordinator.Code), groupSyncError(kerr.NotCoordinator.Code)
	ch <- GroupResponse{Token: token, Join: &j, Sync: &s}
}

func (gp *groupPartition) failWaiters() {
	for token := range gp.waiters {
		gp.fail(token)
	}
}

func cloneGroupResponse(r GroupResponse) GroupResponse {
	if r.Join != nil {
		j := *r.Join
		j.Members = slices.Clone(j.Members)
		for i := range j.Members {
			j.Members[i].Metadata = bytes.Clone(j.Members[i].Metadata)
		}
		r.Join = &j
	}
	if r.Sync != nil {
		s := *r.Sync
		s.Assignment = bytes.Clone(s.Assignment)
		if s.Assignment == nil {
			s.Assignment = []byte{}
		}
		r.Sync = &s
	}
	return r
}

// removeTopicOffsets tombstones every group's offsets of a deleted topic,
// on the worker: it is called from ApplyMeta.
func (c *groupCoordinator) removeTopicOffsets(topic string) {
	if c == nil {
		return
	}
	c.removeMu.Lock()
	c.removeTopics = append(c.removeTopics, topic)
	c.removeMu.Unlock()
	c.poke()
}

// waitRemoved waits (up to groupRemoveWait) until the worker removed the
// offsets of every topic queued so far.
func (c *groupCoordinator) waitRemoved() {
	if c == nil {
		return
	}
	done := make(chan struct{})
	c.removeMu.Lock()
	c.removeWaiters = append(c.removeWaiters, done)
	c.removeMu.Unlock()
	c.poke()
	select {
	case <-done:
	case <-c.stop:
	case <-time.After(groupRemoveWait):
	}
}

// groupRemoveWait bounds how long an admin call waits for the coordinator
// to tombstone a deleted topic's offsets (it goes on in the background).
const groupRemoveWait = 10 * time.Second

func (c *groupCoordinator) removeTopicOffsetsNow(topic string) {
	for _, gp := range c.partitions() {
		gp.mu.Lock()
		if gp.active() && gp.table.OffsetTopics()[topic] {
			gp.settle(gp.table.RemoveTopicOffsets(time.Now(), topic))
		}
		gp.mu.Unlock()
	}
}
