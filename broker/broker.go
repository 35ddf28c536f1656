package broker

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/rs/zerolog"
	"github.com/twmb/franz-go/pkg/kerr"

	"github.com/chronik-stream/chronik/wal"
)

// ErrClosed is returned by calls on a closed Broker (UNKNOWN_SERVER_ERROR
// on the wire; package kafka stops serving before the broker closes).
var ErrClosed = errors.New("broker: closed")

const (
	defaultAdvertisedHost         = "localhost"
	defaultAdvertisedPort         = 9092
	defaultFsyncInterval          = 100 * time.Millisecond
	defaultRetentionCheckInterval = 5 * time.Minute
	defaultStateSnapshotInterval  = 30 * time.Second

	// maxPartitionsPerTopic bounds one CreateTopics/CreatePartitions
	// (Kafka's controller caps one operation at 10000 records).
	maxPartitionsPerTopic = 10000
)

// Broker is the engine. All methods are safe for concurrent use.
type Broker struct {
	cfg    Config
	logger zerolog.Logger
	meta   *wal.Log

	// metadata commits metadata records (controller.go): the local
	// metadata log or the metadata raft group, chosen once, in Open.
	metadata metaLog
	// proposeMu makes an admin call's checks and its proposal one step
	// (lockAdmin); taken before adminMu.
	proposeMu sync.Mutex
	// adminMu guards the metadata state and this node's producer ids;
	// ApplyMeta holds it while a record takes effect.
	adminMu        sync.Mutex
	state          *metaState
	nextProducerID int64 // the next id this node hands out
	producerIDEnd  int64 // end of this node's producer id block
	readCache      *wal.ReadCache
	openLogs       *wal.OpenLogs   // the cap on logs holding files open
	verifyPending  atomic.Int64    // bytes the background verifier has yet to read (verify.go)
	tailBudget     *wal.TailBudget // the budget for the tails logs hold in memory (Config.LogBufferBytes)
	syncer         *wal.Syncer     // the partitions' shared fsync rounds (Config.FsyncBatch)
	// replicas makes each partition's Replica: the raft groups of
	// Config.Replication, or local ones standalone. Chosen once, in Open.
	replicas interface {
		Replica(spec ReplicaSpec, log *wal.Log, events ReplicaEvents) (Replica, error)
	}

	mu        sync.RWMutex // guards topics, byID, brokers and each topic's partitions slice
	topics    map[string]*topic
	byID      map[[16]byte]*topic
	brokers   []metaBroker // the registered brokers, by node id
	clusterID string

	// scram is the published SCRAM credential table (scram.go).
	scram atomic.Pointer[scramTable]

	metaWasEmpty bool // Open found no metadata: unknown data is kept, not removed

	ownLock *DirLock // the data directory lock Open took (nil: the caller's)

	storageErrors atomic.Uint64 // failed appends (StorageErrors)

	cleaner *cleaner // the log cleaner (cleaner.go)

	// policy is Config.Authorizer; authz the ACLs in force, replaced (never
	// mutated) when the metadata log changes them (acl_authorizer.go).
	policy authzPolicy
	authz  atomic.Pointer[aclIndex]

	groups *groupCoordinator // set by Open
	txns   *txnCoordinator   // set by Open

	appendSignal signal
	ready        atomic.Bool
	closed       atomic.Bool
	stop         chan struct{}
	wg           sync.WaitGroup // the background loop
}

// topic is one live topic.
type topic struct {
	name       string
	id         [16]byte
	cfg        atomic.Pointer[topicConfig] // effective config, replaced on change
	meta       *topicMeta                  // guarded by Broker.mu; replaced, never mutated
	partitions []*partition                // guarded by Broker.mu; replaced, never mutated
}

func (t *topic) config() *topicConfig { return t.cfg.Load() }

func (c Config) withDefaults() Config {
	if c.AdvertisedHost == "" {
		c.AdvertisedHost = defaultAdvertisedHost
	}
	if c.VerifyBytesPerSec == 0 {
		c.VerifyBytesPerSec = DefaultVerifyBytesPerSec
	}
	if c.ReadCacheBytes <= 0 {
		c.ReadCacheBytes = wal.DefaultReadCacheBytes
	}
	if c.AdvertisedPort == 0 {
		c.AdvertisedPort = defaultAdvertisedPort
	}
	if c.DefaultPartitions <= 0 {
		c.DefaultPartitions = defaultPartitions
	}
	if c.RetentionMs == 0 {
		c.RetentionMs = defaultRetentionMs
	}
	if c.RetentionBytes == 0 {
		c.RetentionBytes = defaultRetentionBytes
	}
	if c.SegmentBytes <= 0 {
		c.SegmentBytes = defaultSegmentBytes
	}
	if c.MaxMessageBytes <= 0 {
		c.MaxMessageBytes = defaultMaxMessageBytes
	}
	if c.MaxDecompressedBatchBytes <= 0 {
		c.MaxDecompressedBatchBytes = defaultMaxDecompressedBatchBytes
	}
	if c.FsyncInterval <= 0 {
		c.FsyncInterval = defaultFsyncInterval
	}
	if c.RetentionCheckInterval <= 0 {
		c.RetentionCheckInterval = defaultRetentionCheckInterval
	}
	if c.StateSnapshotInterval <= 0 {
		c.StateSnapshotInterval = defaultStateSnapshotInterval
	}
	if c.CompactionCheckInterval <= 0 {
		c.CompactionCheckInterval = defaultCompactionCheckInterval
	}
	if c.CompactionDedupeBytes <= 0 {
		c.CompactionDedupeBytes = defaultCompactionDedupeBytes
	}
	if c.OffsetsTopicPartitions <= 0 {
		c.OffsetsTopicPartitions = defaultOffsetsTopicPartitions
	}
	if c.TxnStatePartitions <= 0 {
		c.TxnStatePartitions = defaultTxnTopicPartitions
	}
	if c.TxnMaxTimeout <= 0 {
		c.TxnMaxTimeout = defaultTxnMaxTimeout
	}
	if c.TxnIDExpiration <= 0 {
		c.TxnIDExpiration = defaultTxnIDExpiration
	}
	if c.TxnVersion <= 0 || c.TxnVersion > maxTxnVersion {
		c.TxnVersion = maxTxnVersion
	}
	if c.OffsetsRetention <= 0 {
		c.OffsetsRetention = groupDefaultOffsetsRetention
	}
	if c.OffsetsRetentionCheckInterval <= 0 {
		c.OffsetsRetentionCheckInterval = defaultOffsetsRetentionCheckInterval
	}
	if c.GroupInitialRebalanceDelay == 0 {
		c.GroupInitialRebalanceDelay = groupDefaultInitialRebalanceDelay
	}
	if c.GroupMinSessionTimeout <= 0 {
		c.GroupMinSessionTimeout = groupDefaultMinSessionTimeout
	}
	if c.GroupMaxSessionTimeout <= 0 {
		c.GroupMaxSessionTimeout = groupDefaultMaxSessionTimeout
	}
	return c
}

func (c *Config) walFsync() wal.FsyncPolicy {
	switch c.Fsync {
	case FsyncInterval:
		return wal.FsyncInterval
	case FsyncNever:
		return wal.FsyncNever
	}
	return wal.FsyncAlways
}

// Open recovers the metadata log, then every partition, and starts the
// background retention and snapshot loop.
func Open(cfg Config) (*Broker, error) {
	cfg = cfg.withDefaults()
	if cfg.DataDir == "" {
		return nil, fmt.Errorf("broker: DataDir is required")
	}
	var ownLock *DirLock
	if cfg.DataDirLock == nil {
		l, err := LockDataDir(cfg.DataDir)
		if err != nil {
			return nil, err
		}
		ownLock = l
	}
	b, err := open(cfg)
	if err != nil {
		ownLock.Unlock()
		return nil, err
	}
	b.ownLock = ownLock
	return b, nil
}

func open(cfg Config) (*Broker, error) {
	opened := time.Now()
	if err := os.MkdirAll(filepath.Join(cfg.DataDir, "data"), 0o755); err != nil {
		return nil, fmt.Errorf("broker: %w", err)
	}
	if cfg.MaxOpenLogs <= 0 {
		cfg.MaxOpenLogs = DefaultMaxOpenLogs(0)
	}
	syncer, err := newSyncer(cfg)
	if err != nil {
		return nil, err
	}
	b := &Broker{
		syncer:     syncer,
		readCache:  wal.NewReadCache(cfg.ReadCacheBytes),
		openLogs:   wal.NewOpenLogs(cfg.MaxOpenLogs),
		tailBudget: newTailBudget(cfg.LogBufferBytes),
		cfg:        cfg,
		logger:     cfg.Logger,
		state:      newMetaState(),
		topics:     make(map[string]*topic),
		byID:       make(map[[16]byte]*topic),
		stop:       make(chan struct{}),
		policy:     newAuthzPolicy(cfg.Authorizer),
	}
	b.authz.Store(newACLIndex(nil))
	// The transaction coordinator exists before any partition opens, so
	// that the leadership events of __transaction_state find it; it works
	// once started, after recovery.
	b.txns = newTxnCoordinator(b)
	b.cleaner = newCleaner(b)
	// The one place the mode is chosen for partitions.
	b.replicas = standaloneReplicas{self: cfg.NodeID}
	if cfg.Replication != nil {
		b.replicas = cfg.Replication
	}
	meta, err := b.openMetaLog()
	if err != nil {
		b.syncer.Close()
		return nil, err
	}
	b.meta = meta
	// The one place the mode is chosen: a broker that is its own cluster
	// commits metadata to its local log, a cluster node through the
	// metadata raft group.
	if r := cfg.Replication; r != nil {
		err = b.openReplicated(r)
	} else {
		err = b.openLocal()
	}
	if err != nil {
		b.closed.Store(true)
		close(b.stop)
		b.wg.Wait()
		b.closeLogs()
		return nil, err
	}
	b.mu.RLock()
	topics := len(b.topics)
	b.mu.RUnlock()
	partitions := len(b.allPartitions())
	took := time.Since(opened)
	ev := b.logger.Info().Str("cluster_id", b.ClusterID()).Int("topics", topics).Int("partitions", partitions).
		Str("data_dir", cfg.DataDir).Dur("took", took)
	if partitions > 0 {
		ev = ev.Dur("per_1000_partitions", took*1000/time.Duration(partitions))
	}
	ev.Msg("broker recovered")
	// The transaction coordinator serves whatever __transaction_state
	// partitions this node leads, loading each when elected (or on first
	// use, if sooner).
	b.txns.start()
	b.ready.Store(true)
	b.wg.Add(2)
	go b.background()
	go b.cleaner.run()
	if cfg.VerifyBytesPerSec > 0 {
		b.wg.Add(1)
		go b.verifyLogs()
	}
	return b, nil
}

func (b *Broker) logRepair(r wal.Repair) {
	b.logger.Warn().Str("file", r.File).Uint64("cut_index", r.CutIndex).Int64("cut_bytes", r.CutBytes).Str("reason", r.Reason).Msg("wal repaired on open")
}

// openTopics opens every partition of every topic, a few at a time. A
// partition that cannot be opened is faulted (fault.go), not fatal.
func (b *Broker) openTopics() {
	type job struct {
		t   *topic
		idx int32
	}
	var jobs []job
	for _, tm := range b.state.topics {
		t := b.newTopic(tm)
		t.partitions = make([]*partition, tm.partitions)
		b.topics[t.name], b.byID[t.id] = t, t
		for i := range tm.partitions {
			if b.hosts(tm, i) {
				jobs = append(jobs, job{t, i})
			}
		}
	}
	inParallel(len(jobs), func(i int) {
		j := jobs[i]
		p := b.openOrFault(j.t, j.idx)
		// Under mu: in cluster mode the coordinator may look at the topic
		// (published above) while partitions open.
		b.mu.Lock()
		j.t.partitions[j.idx] = p
		b.mu.Unlock()
	})
}

func (b *Broker) newTopic(tm *topicMeta) *topic {
	t := &topic{name: tm.name, id: tm.id, meta: tm}
	tc := effectiveTopicConfig(&b.cfg, tm.configs)
	t.cfg.Store(&tc)
	return t
}

func (b *Broker) topicDir(id [16]byte) string {
	return filepath.Join(b.cfg.DataDir, "data", topicIDHex(id))
}

// openPartition opens (creating if needed) one partition's log and recovers
// its log start offset and producer state.
func (b *Broker) openPartition(t *topic, idx int32) (*partition, error) {
	p := b.newPartition(t, idx)
	if err := p.open(); err != nil {
		return nil, err
	}
	return p, nil
}

// openOrFault is openPartition for a partition that exists already (at
// start): one that cannot be opened is returned faulted, so the broker
// serves the others; a failed (not corrupt) one is retried in the
// background.
func (b *Broker) openOrFault(t *topic, idx int32) *partition {
	p := b.newPartition(t, idx)
	if err := p.open(); err != nil {
		p.storageFailed(err)
	}
	return p
}

func (b *Broker) newPartition(t *topic, idx int32) *partition {
	p := &partition{b: b, topic: t, index: idx, dir: b.partitionDir(t.id, idx)}
	p.replica.self = b.cfg.NodeID
	p.replica.leader.Store(-1) // until its replica says
	return p
}

// open opens the partition's log, recovers its offsets and producer state
// and, in a cluster, starts its replica. On error the partition holds no
// log.
func (p *partition) open() error {
	b, t, idx := p.b, p.topic, p.index
	tc := t.config()
	log, err := wal.Open(p.dir, wal.Options{
		SegmentSize:   int(tc.segmentBytes),
		Fsync:         b.cfg.walFsync(),
		FsyncInterval: b.cfg.FsyncInterval,
		OnRepair:      b.logRepair,
		OnSync:        b.cfg.OnFsync,
		ReadCache:     b.readCache,
		OpenLogs:      b.openLogs,
		TailBudget:    b.tailBudget,
		Syncer:        b.syncer,
	})
	if err != nil {
		return fmt.Errorf("open partition %s-%d: %w", t.name, idx, err)
	}
	p.log = log
	fail := func(err error) error {
		log.Close()
		p.log = nil
		return err
	}
	snap, sum, err := loadSnapshotSum(p.statePath())
	p.stateSum = sum // before any write of the state file
	if err != nil {
		b.logger.Warn().Err(err).Str("topic", t.name).Int32("partition", idx).Msg("partition state unreadable; rebuilding producer state from the log")
		snap = partitionSnapshot{}
	}
	end := log.NextOffset()
	lso := min(max(snap.LogStartOffset, log.StartOffset()), end)
	p.logMu.Lock()
	err = p.recoverProducersLocked(snap)
	p.logMu.Unlock()
	if err != nil {
		return fail(err)
	}
	// The log end is committed when the replica says so.
	p.highWatermark.Store(lso)
	p.logStartOffset.Store(lso)
	p.cleanedUpTo.Store(min(snap.CleanedUpTo, end))
	p.tombstoneExpiry.Store(snap.TombstoneExpiry)
	p.replica.ctx, p.replica.cancel = context.WithCancel(context.Background())
	spec := b.spec(t, idx)
	spec.Applied = snap.AppliedIndex
	repl, err := b.replicas.Replica(spec, log, p)
	if err != nil {
		p.replica.cancel()
		return fail(fmt.Errorf("open partition %s-%d: replica: %w", t.name, idx, err))
	}
	p.replica.r.Store(&repl)
	if log.NextOffset() != end {
		// Opening the replica moved the log's end (a raft snapshot
		// install finished): the view follows.
		p.logMu.Lock()
		p.rebuildViewLocked()
		p.logMu.Unlock()
	}
	return nil
}

// removeStrayData deletes topic and partition directories the metadata log
// does not know: leftovers of a delete, create or CreatePartitions that
// crashed between the directory and the metadata record.
func (b *Broker) removeStrayData() {
	dataDir := filepath.Join(b.cfg.DataDir, "data")
	ents, err := os.ReadDir(dataDir)
	if err != nil {
		b.logger.Warn().Err(err).Msg("list data directory")
		return
	}
	for _, e := range ents {
		id, err := parseTopicID(e.Name())
		if err != nil {
			continue
		}
		t, ok := b.byID[id]
		if !ok && b.metaWasEmpty {
			// A lost metadata log must not cost the data as well.
			b.logger.Error().Str("dir", e.Name()).Msg("topic data unknown to a new metadata log; left in place")
			continue
		}
		if !ok {
			b.logger.Warn().Str("dir", e.Name()).Msg("removing data of a deleted topic")
			os.RemoveAll(filepath.Join(dataDir, e.Name()))
			continue
		}
		parts, err := os.ReadDir(filepath.Join(dataDir, e.Name()))
		if err != nil {
			continue
		}
		for _, pe := range parts {
			n, err := strconv.Atoi(strings.TrimSuffix(pe.Name(), ".state"))
			if err != nil || n < len(t.partitions) {
				continue
			}
			b.logger.Warn().Str("topic", t.name).Str("entry", pe.Name()).Msg("removing data of an uncreated partition")
			os.RemoveAll(filepath.Join(dataDir, e.Name(), pe.Name()))
		}
	}
}

// background owns the retention and state snapshot tickers.
func (b *Broker) background() {
	defer b.wg.Done()
	retention := time.NewTicker(b.cfg.RetentionCheckInterval)
	defer retention.Stop()
	faults := time.NewTicker(faultRetryInterval)
	defer faults.Stop()
	snapshots := time.NewTicker(b.cfg.StateSnapshotInterval)
	defer snapshots.Stop()
	for {
		select {
		case <-b.stop:
			return
		case <-retention.C:
			b.RunRetention()
		case <-snapshots.C:
			b.SnapshotState()
		case <-faults.C:
			b.retryFaults()
		}
	}
}

// allPartitions is every open partition, in topic-name order.
func (b *Broker) allPartitions() []*partition {
	b.mu.RLock()
	defer b.mu.RUnlock()
	names := make([]string, 0, len(b.topics))
	for n := range b.topics {
		names = append(names, n)
	}
	slices.Sort(names)
	var out []*partition
	for _, n := range names {
		for _, p := range b.topics[n].partitions {
			if p != nil { // cluster mode: not hosted here
				out = append(out, p)
			}
		}
	}
	return out
}

// RunRetention applies retention.ms and retention.bytes to every partition
// now (the background loop calls it every RetentionCheckInterval) and
// returns how many segments were dropped.
func (b *Broker) RunRetention() int {
	now := time.Now().UnixMilli()
	total := 0
	for _, p := range b.allPartitions() {
		n, err := p.enforceRetention(now)
		total += n
		if err != nil && !errors.Is(err, wal.ErrClosed) {
			b.logger.Error().Err(err).Msg("retention")
		}
	}
	return total
}

// SnapshotState writes the state file (log start offset and producer state)
// of every partition that changed since its last snapshot. The background
// loop calls it every StateSnapshotInterval; it bounds how much of a log
// Open re-reads after a crash.
func (b *Broker) SnapshotState() {
	for _, p := range b.allPartitions() {
		if err := p.snapshotIfDirty(); err != nil {
			b.logger.Error().Err(err).Msg("snapshot partition state")
		}
	}
}

// Close stops the background loop, then snapshots and closes every
// partition and the metadata log. A second call returns ErrClosed.
func (b *Broker) Close() error {
	if !b.closed.CompareAndSwap(false, true) {
		return ErrClosed
	}
	close(b.stop)
	b.wg.Wait()
	b.txns.close()
	b.groups.close()
	// Stops committing and applying records (ApplyMeta takes adminMu)
	// before the logs close.
	if err := b.metadata.Close(); err != nil {
		b.logger.Warn().Err(err).Msg("close controller")
	}
	b.adminMu.Lock() // wait for an admin operation in flight
	defer b.adminMu.Unlock()
	err := b.closeLogs()
	b.ownLock.Unlock()
	return err
}

func (b *Broker) closeLogs() error {
	// In parallel: each close is mostly fsyncs (the tail, the state
	// file), and concurrent ones share the file system's journal commits.
	var (
		errs  []error
		errMu sync.Mutex
	)
	parts := b.allPartitions()
	inParallel(len(parts), func(i int) {
		if p := parts[i]; p != nil {
			if err := p.close(false); err != nil {
				errMu.Lock()
				errs = append(errs, err)
				errMu.Unlock()
			}
		}
	})
	if err := b.meta.Close(); err != nil && !errors.Is(err, wal.ErrClosed) {
		errs = append(errs, fmt.Errorf("close metadata log: %w", err))
	}
	if err := b.syncer.Close(); err != nil {
		errs = append(errs, fmt.Errorf("close fsync rounds: %w", err))
	}
	return errors.Join(errs...)
}

// Config returns the configuration with defaults filled in.
func (b *Broker) Config() Config { return b.cfg }

// ClusterID is the id generated on first start (or configured).
func (b *Broker) ClusterID() string {
	b.mu.RLock()
	defer b.mu.RUnlock()
	return b.clusterID
}

// Ready reports whether recovery is done.
func (b *Broker) Ready() bool { return b.ready.Load() && !b.closed.Load() }

// partition finds a live partition.
func (b *Broker) partition(topic string, idx int32) (*partition, error) {
	b.mu.RLock()
	var p *partition
	t := b.topics[topic]
	exists := t != nil && idx >= 0 && int(idx) < len(t.partitions)
	if exists {
		p = t.partitions[idx]
	}
	b.mu.RUnlock()
	if p == nil && exists {
		return nil, fmt.Errorf("%s-%d is not hosted on node %d: %w", topic, idx, b.cfg.NodeID, kerr.NotLeaderForPartition)
	}
	if p == nil {
		return nil, fmt.Errorf("%s-%d: %w", topic, idx, kerr.UnknownTopicOrPartition)
	}
	return p, nil
}

// Produce validates and appends one partition's record batches; see the
// contract in api.go. The records buffer is modified in place (base offset,
// partition leader epoch and, for LogAppendTime topics, the timestamp
// fields) and must not be reused by the caller until Produce returns;
// Produce does not keep it afterwards.
//
// Standalone, acks 0, 1 and -1 all return after the wal Append: with
// FsyncAlways (the default) that is after fsync, so acks=all is honoured.
// With FsyncInterval or FsyncNever, acks=all is acknowledged before the
// data is synced, which is what choosing those policies means. In cluster
// mode acks=all returns once the records are committed (a quorum has them)
// and acks 1 and 0 once the leader's log has them.
//
// Transactional batches are checked as Kafka's produce path checks them
// (checkTxnBatches) and then appended like any other; the partition's view
// learns the transaction from the log (txn_partition.go).
func (b *Broker) Produce(ctx context.Context, topic string, partition int32, records []byte, acks int16, transactionalID *string) (ProduceResult, error) {
	return b.ProduceStart(ctx, topic, partition, records, acks, transactionalID).Wait()
}

// ProduceStart is the first half of Produce: it validates the records and
// queues them on their partition, fixing their place in the partition's
// append order, and returns without waiting for the append. Wait, called
// exactly once, finishes it. A connection that must keep its produce
// requests to one partition in order (idempotent sequences) may start the
// next request's append once ProduceStart of the previous one has
// returned, instead of after its Wait: requests started that way share one
// wal append and one fsync.
func (b *Broker) ProduceStart(ctx context.Context, topic string, partition int32, records []byte, acks int16, transactionalID *string) *ProduceHandle {
	return b.ProduceStartTxn(ctx, topic, partition, records, acks, transactionalID, TxnVerify)
}

// ProduceStartTxn is ProduceStart for a Produce request whose version
// decides how its transactional batches are checked with the
// transaction's coordinator (op: verified, or at v12+ added to the
// transaction).
func (b *Broker) ProduceStartTxn(ctx context.Context, topic string, partition int32, records []byte, acks int16, transactionalID *string, op TxnWriteOp) *ProduceHandle {
	h := produceReqPool.Get().(*ProduceHandle)
	p, err := b.startProduce(ctx, h, topic, partition, records, acks, transactionalID, op)
	if err != nil {
		h.err = err
		return h
	}
	p.enqueue(h) // from here on h belongs to the partition's group leader until done
	return h
}

// Wait returns the outcome of a ProduceStart. The handle must not be used
// afterwards.
func (h *ProduceHandle) Wait() (ProduceResult, error) {
	// h.p is set only when the request was queued; from then on the group
	// leader may write h.err under appendMu, so it is read after await.
	if h.p != nil {
		h.p.await(h)
	}
	res, err := h.res, h.err
	if err != nil {
		res = ProduceResult{BaseOffset: -1, LogAppendTime: -1, LogStartOffset: -1}
	}
	*h = ProduceHandle{}
	produceReqPool.Put(h)
	return res, err
}

// startProduce validates a request into h and returns its partition.
func (b *Broker) startProduce(ctx context.Context, h *ProduceHandle, topic string, partition int32, records []byte, acks int16, transactionalID *string, op TxnWriteOp) (*partition, error) {
	if acks != 0 && acks != 1 && acks != -1 {
		return nil, fmt.Errorf("produce %s-%d: acks %d: %w", topic, partition, acks, kerr.InvalidRequiredAcks)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if b.closed.Load() {
		return nil, ErrClosed
	}
	if isInternalTopic(topic) {
		// Kafka's ReplicaManager: clients may not append to internal topics.
		return nil, fmt.Errorf("produce %s-%d: cannot append to internal topic: %w", topic, partition, kerr.InvalidTopicException)
	}
	p, err := b.partition(topic, partition)
	if err != nil {
		return nil, err
	}
	h.buf = records
	h.acks = acks
	tc := p.topic.config()
	lim := b.produceLimits(tc)
	if tc.compact {
		lim.keys = keyRule{on: true, topic: topic, partition: partition}
	}
	h.batches, err = parseBatches(h.hdrs[:0], records, lim)
	if err != nil {
		return nil, fmt.Errorf("produce %s-%d: %w", topic, partition, err)
	}
	if needsRecompression(h.batches, tc.compression) {
		if h.buf, err = recompressBatches(h.batches, records, tc.compression, tc.compressionLevel, lim); err != nil {
			return nil, fmt.Errorf("produce %s-%d: compression.type %s: %w", topic, partition, codecNames[tc.compression], err)
		}
	}
	if acks == -1 && tc.minInsync > 1 {
		if err := b.checkInsync(topic, partition, tc.minInsync); err != nil {
			return nil, fmt.Errorf("produce %s-%d: %w", topic, partition, err)
		}
	}
	if err := b.checkTxnBatches(ctx, h.batches, transactionalID, topic, partition, op); err != nil {
		return nil, fmt.Errorf("produce %s-%d: %w", topic, partition, err)
	}
	return p, nil
}

// checkInsync answers NOT_ENOUGH_REPLICAS when fewer than minInsync of
// the partition's replicas are live (this node, and the peers it is
// connected to), as Kafka does when the ISR is smaller than
// min.insync.replicas. A raft commit needs a majority anyway; this makes
// a topic that asks for more replicas than a majority refuse acks=all
// produce rather than acknowledge it with fewer.
func (b *Broker) checkInsync(topic string, partition int32, minInsync int) error {
	replicas := b.PartitionReplicas(topic, partition)
	live := 0
	for _, id := range replicas {
		if b.metadata.alive(id) {
			live++
		}
	}
	if live < minInsync {
		return fmt.Errorf("%d of %d replicas live, min.insync.replicas is %d: %w", live, len(replicas), minInsync, kerr.NotEnoughReplicas)
	}
	return nil
}

// checkTxnBatches applies Kafka's checks of transactional batches before
// they are queued (control batches were refused by parseBatches, as
// LogValidator does):
//
//   - a transactional batch needs the request's transactional id, else
//     TRANSACTIONAL_ID_AUTHORIZATION_FAILED (KafkaApis.handleProduceRequest);
//     a transactional id with only non-transactional batches is accepted
//     and ignored, as Kafka does;
//   - it must carry a producer id (INVALID_RECORD: Kafka would store it
//     without tracking a transaction, which no client sends);
//   - all transactional batches carry one producer id, else
//     INVALID_PRODUCER_ID_MAPPING (ReplicaManager: "Transactional records
//     contained more than one producer ID");
//   - the transaction coordinator verifies the first batch of a
//     transaction on the partition (KIP-890), or with op TxnAddPartition
//     (Produce v12+, transaction version 2) adds the partition to the
//     transaction (checkTxnWrite); once the partition holds an open
//     transaction of the producer at the batch's epoch, its later batches
//     need no round trip, as Kafka's verification guard.
//
// The checks that need the partition's state (epoch, sequence, a
// non-transactional batch while a transaction is open) are made when the
// batch is appended (appendGroup).
func (b *Broker) checkTxnBatches(ctx context.Context, batches []batchHeader, transactionalID *string, topic string, partition int32, op TxnWriteOp) error {
	pid := int64(-1)
	for i := range batches {
		h := &batches[i]
		if !h.transactional() {
			continue
		}
		if transactionalID == nil {
			return fmt.Errorf("transactional batch without a transactional id: %w", kerr.TransactionalIDAuthorizationFailed)
		}
		if !h.idempotent() {
			return fmt.Errorf("transactional batch without a producer id: %w", kerr.InvalidRecord)
		}
		if pid >= 0 && h.producerID != pid {
			return fmt.Errorf("transactional batches of producers %d and %d: %w", pid, h.producerID, kerr.InvalidProducerIDMapping)
		}
		if pid == h.producerID {
			continue // verified with the first batch
		}
		pid = h.producerID
		if b.txnOpenOn(topic, partition, pid, h.producerEpoch) {
			continue // the transaction's first batch here was checked
		}
		if err := b.checkTxnWrite(ctx, *transactionalID, h.producerID, h.producerEpoch, topic, partition, op); err != nil {
			return err
		}
	}
	return nil
}

// Fetch returns stored batches from offset; see the contract in api.go.
// read_committed (IsolationReadCommitted) stops at the last stable offset
// and lists the aborted transactions among the records.
func (b *Broker) Fetch(topic string, partition int32, offset int64, maxBytes int32, isolationLevel int8) (FetchResult, error) {
	p, err := b.partition(topic, partition)
	if err != nil {
		return FetchResult{HighWatermark: -1, LastStableOffset: -1, LogStartOffset: -1}, err
	}
	return p.fetch(offset, maxBytes, isolationLevel)
}

// AppendSignal returns a channel closed at the next append to any
// partition. Take it BEFORE the Fetch that may come back empty: any append
// that Fetch did not see closes it.
func (b *Broker) AppendSignal() <-chan struct{} { return b.appendSignal.wait() }

// ListOffset answers ListOffsets; see the contract in api.go.
func (b *Broker) ListOffset(topic string, partition int32, timestamp int64, isolationLevel int8) (int64, int64, error) {
	p, err := b.partition(topic, partition)
	if err != nil {
		return -1, -1, err
	}
	return p.listOffset(timestamp, isolationLevel)
}

// DeleteRecords moves the log start offset; see the contract in api.go.
func (b *Broker) DeleteRecords(topic string, partition int32, offset int64) (int64, error) {
	p, err := b.partition(topic, partition)
	if err != nil {
		return -1, err
	}
	return p.deleteRecords(offset)
}

// EpochEndOffset answers OffsetForLeaderEpoch (KIP-320): for the current
// leader epoch the log end (standalone, the high watermark); for an older
// one (cluster mode, where the epoch is the raft term) the largest epoch at
// or below it in the log and the offset where the next epoch began;
// -1, -1 for an epoch that is negative or not reached yet. Followers
// answer NOT_LEADER_OR_FOLLOWER.
func (b *Broker) EpochEndOffset(topic string, partition, epoch int32) (leaderEpoch int32, endOffset int64, err error) {
	p, err := b.partition(topic, partition)
	if err != nil {
		return -1, -1, err
	}
	if err := p.faultErr(); err != nil {
		return -1, -1, err
	}
	if !p.leads() {
		return -1, -1, p.notLeader()
	}
	current, hw := p.replica.epoch.Load(), p.highWatermark.Load()
	if epoch < 0 || epoch > current {
		return -1, -1, nil
	}
	// Not capped at the high watermark, which on a new leader trails
	// until it commits in its term: a consumer positioned by the old
	// leader would see a truncation that did not happen.
	if epoch < current {
		if r := p.repl(); r != nil {
			if le, end, ok := r.EpochEnd(epoch); ok {
				return le, end, nil
			}
		}
	}
	return current, max(hw, p.log.NextOffset()), nil
}

// PartitionOffsets returns the log start offset and high watermark.
func (b *Broker) PartitionOffsets(topic string, partition int32) (logStart, highWatermark int64, err error) {
	p, err := b.partition(topic, partition)
	if err != nil {
		return -1, -1, err
	}
	return p.logStartOffset.Load(), p.highWatermark.Load(), nil
}

// FetchOffsets returns the log start offset, high watermark and last stable
// offset, as a Fetch would report them.
func (b *Broker) FetchOffsets(topic string, partition int32) (logStart, highWatermark, lastStable int64, err error) {
	p, err := b.partition(topic, partition)
	if err != nil {
		return -1, -1, -1, err
	}
	hw, ls := p.highWatermark.Load(), p.logStartOffset.Load()
	return ls, hw, p.lastStable(hw, ls), nil
}

// LeaderEpoch is 0 for every partition of a standalone broker and the raft
// term in a cluster (-1 for an unknown partition).
func (b *Broker) LeaderEpoch(topic string, partition int32) int32 {
	p, err := b.partition(topic, partition)
	if err != nil {
		return -1
	}
	return p.replica.epoch.Load()
}

// PartitionLeader returns a partition's leader (-1 when none is known) and
// leader epoch; standalone, this node at epoch 0.
func (b *Broker) PartitionLeader(topic string, partition int32) (leader, epoch int32, err error) {
	p, err := b.partition(topic, partition)
	if err != nil {
		return -1, -1, err
	}
	return p.replica.leader.Load(), p.replica.epoch.Load(), nil
}

// InitProducerID allocates an idempotent producer id, or bumps the epoch
// of one this cluster allocated when the producer passes its current id and
// epoch (KIP-360; a new id once the epoch is exhausted). Each node reserves
// ids in blocks in the metadata log (producer_id_block records, like
// Kafka's ProducerIdManager), so ids never repeat across restarts or nodes
// and most calls write nothing.
//
// Kafka itself hands a non-transactional producer a fresh id on every
// InitProducerID; bumping is equally valid for clients and keeps one id per
// producer session. A transactional id goes to its transaction
// coordinator (txn_api.go), which fences the id's earlier epochs.
func (b *Broker) InitProducerID(transactionalID *string, txnTimeoutMs int32, producerID int64, producerEpoch int16) (int64, int16, error) {
	if transactionalID != nil {
		return b.initTransactionalProducerID(*transactionalID, txnTimeoutMs, producerID, producerEpoch)
	}
	if b.closed.Load() {
		return -1, -1, ErrClosed
	}
	// Below nextProducerID every id was handed out (or reserved before a
	// restart), never one of this node's block not handed out yet.
	b.adminMu.Lock()
	bump := producerID >= 0 && producerID < b.nextProducerID && producerEpoch >= 0 && producerEpoch < math.MaxInt16-1
	b.adminMu.Unlock()
	if bump {
		return producerID, producerEpoch + 1, nil
	}
	id, err := b.allocateProducerID()
	if err != nil {
		return -1, -1, fmt.Errorf("init producer id: %w", err)
	}
	return id, 0, nil
}

// OpenLogs reports how many partition logs hold their files open now, the
// cap (Config.MaxOpenLogs) and how many were closed to make room.
func (b *Broker) OpenLogs() (open, limit int, evictions int64) {
	return b.openLogs.Open(), b.openLogs.Limit(), b.openLogs.Evictions()
}

// newSyncer starts the shared fsync rounds of Config.FsyncBatch: nil (each
// log fdatasyncs its own file) unless fsync is "always" and the mode is
// "filesystem" (every append joins a round) or "auto": on a data directory
// that is a filesystem of its own, as "filesystem"; elsewhere a gated
// Syncer (sharedFilesystemGate), so that a round's syncfs does not wait
// for another program's writeback and a lone append is not held behind a
// round.
func newSyncer(cfg Config) (*wal.Syncer, error) {
	if cfg.Fsync != FsyncAlways || cfg.FsyncBatch == wal.SyncFiles {
		return nil, nil // each partition's log syncs its own file
	}
	onRound := func(logs int, d time.Duration) {
		if cfg.OnFsync != nil {
			cfg.OnFsync(d) // the round's one fsync
		}
		if cfg.OnFsyncRound != nil {
			cfg.OnFsyncRound(logs, d)
		}
	}
	own := cfg.FsyncBatch == wal.SyncFilesystem
	if !own {
		if runtime.GOOS != "linux" {
			return nil, nil // no syncfs: auto means files
		}
		var err error
		if own, err = wal.OwnFilesystem(cfg.DataDir); err != nil {
			return nil, fmt.Errorf("broker: %w", err)
		}
	}
	if own {
		s, err := wal.NewSyncer(cfg.DataDir, onRound)
		if err != nil {
			return nil, fmt.Errorf("broker: fsync-batch %s on %s: %w", cfg.FsyncBatch, cfg.DataDir, err)
		}
		cfg.Logger.Info().Str("data_dir", cfg.DataDir).Stringer("fsync_batch", cfg.FsyncBatch).
			Msg("partition appends share fsync rounds: one syncfs of the data directory's filesystem each")
		return s, nil
	}
	s, err := wal.NewGatedSyncer(cfg.DataDir, sharedFilesystemGate, onRound)
	if err != nil {
		return nil, fmt.Errorf("broker: fsync-batch auto on %s: %w", cfg.DataDir, err)
	}
	if err := s.PageCacheErr(); err != nil {
		cfg.Logger.Warn().Err(err).Msg("cannot read the page cache's dirty bytes (/proc/meminfo): partition appends fdatasync their own files while that lasts (fsync-batch auto)")
	}
	cfg.Logger.Info().Str("data_dir", cfg.DataDir).Int("min_appends", sharedFilesystemGate.MinAppends).
		Int64("max_dirty_bytes", sharedFilesystemGate.MaxDirty).
		Msg("the data directory shares its filesystem: partition appends share fsync rounds (one syncfs each) while several are under way and the page cache holds little dirty data, else each fdatasyncs its own file (fsync-batch auto)")
	return s, nil
}

// sharedFilesystemGate is fsync-batch auto's on a data directory that is
// not a filesystem of its own: appends join syncfs rounds while at least 4
// are under way (fewer get their own fdatasync, sooner than a round that
// may first wait for the one before it), and while the page cache's dirty
// and writeback bytes are at most 64 MiB (a round then writes back at most
// that much that is not the broker's).
var sharedFilesystemGate = wal.SyncerGate{MinAppends: 4, MaxDirty: 64 << 20}

// MemoryUse is the memory the broker's owners hold, estimated from what
// each keeps (chronik_memory_bytes).
type MemoryUse struct {
	LogBuffers    int64 // partition tails held in memory (wal.TailBudget)
	ReadCache     int64 // verified copies of sealed segments (wal.ReadCache)
	Index         int64 // the partitions' offset/time indexes
	ProducerState int64 // the partitions' idempotent and transactional producer states
}

// producerStateBytes estimates one producer's state in a partition: the
// struct, its map slot and key.
const producerStateBytes = int64(unsafe.Sizeof(producerState{})) + 48

// Memory estimates the memory held by the broker's owners now. It visits
// every partition (a few locks each), so it suits a metrics scrape.
func (b *Broker) Memory() MemoryUse {
	m := MemoryUse{ReadCache: b.readCache.Bytes()}
	m.LogBuffers, _, _ = b.LogBuffers()
	for _, p := range b.allPartitions() {
		if p.fault.Load() == nil {
			m.Index += p.log.IndexBytes()
		}
		p.logMu.Lock()
		m.ProducerState += int64(len(p.producers)) * producerStateBytes
		p.logMu.Unlock()
	}
	return m
}

// newTailBudget is the budget of Config.LogBufferBytes: 0 the default;
// negative none, which is a budget that is never reached, so that the
// bytes held are still reported.
func newTailBudget(n int64) *wal.TailBudget {
	switch {
	case n < 0:
		n = math.MaxInt64
	case n == 0:
		n = wal.DefaultTailBudgetBytes
	}
	return wal.NewTailBudget(n)
}

// LogBuffers reports the bytes of tail segments partition logs hold in
// memory now, the budget (Config.LogBufferBytes; 0 when there is none) and
// how many logs were rolled to stay within it.
func (b *Broker) LogBuffers() (bytes, limit, rolls int64) {
	limit = b.tailBudget.Limit()
	if b.cfg.LogBufferBytes < 0 {
		limit = 0
	}
	return b.tailBudget.Bytes(), limit, b.tailBudget.Rolls()
}

// LogDirs reports the data directory and every partition's size on disk.
func (b *Broker) LogDirs() (string, []PartitionDirInfo) {
	var parts []PartitionDirInfo
	for _, p := range b.allPartitions() {
		var size int64
		if p.fault.Load() == nil {
			size = p.log.Size()
		}
		parts = append(parts, PartitionDirInfo{Topic: p.topic.name, Partition: p.index, Size: size})
	}
	return b.cfg.DataDir, parts
}

// signal is a channel closed on the next notify. The channel is made only
// when someone waits, so appends nobody waits for cost one atomic load.
type signal struct {
	armed atomic.Bool
	mu    sync.Mutex
	ch    chan struct{}
}

func (s *signal) wait() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ch == nil {
		s.ch = make(chan struct{})
		s.armed.Store(true)
	}
	return s.ch
}

func (s *signal) notify() {
	if !s.armed.Load() {
		return
	}
	s.mu.Lock()
	if s.ch != nil {
		close(s.ch)
		s.ch = nil
		s.armed.Store(false)
	}
	s.mu.Unlock()
}
