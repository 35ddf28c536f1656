// Package broker is Chronik's engine: topics, partitions, offset assignment,
// idempotent producer state, fetch long-poll support, retention and the
// metadata log. It knows nothing about the wire protocol; package kafka
// translates kmsg requests into calls on *Broker.
//
// One code path serves both modes. Every durable log sits behind the
// replicated-log seam (replica.go): a partition appends, moves its log
// start and learns its high watermark and leader through a Replica; the
// metadata log commits records through a MetaLog whose committed records
// are applied in one place (ApplyMeta); the group coordinator follows the
// leaders of __consumer_offsets. Open chooses the implementations once:
// with Config.Replication nil, standalone ones (standalone.go: a partition
// log replicated to no one; meta_local.go: the local metadata log), else
// the raft groups of package cluster. Past Open, broker code does not ask
// which mode it runs in.
//
// Errors returned by *Broker wrap a *kerr.Error (github.com/twmb/franz-go/pkg/kerr)
// whenever a Kafka error code applies, e.g.
//
//	fmt.Errorf("produce %s-%d: %w", topic, p, kerr.UnknownTopicOrPartition)
//
// so that kafka maps them with errors.As. Any other error is
// UNKNOWN_SERVER_ERROR.
//
// THIS FILE IS THE CONTRACT package kafka codes against. Keep the exported
// names and signatures; add to them rather than change them.
package broker

import (
	"time"

	"github.com/rs/zerolog"

	"github.com/chronik-stream/chronik/wal"
)

// Config configures a Broker. Zero values take the documented defaults.
type Config struct {
	DataDir        string // required
	NodeID         int32  // default 0
	AdvertisedHost string // what Metadata tells clients (default "localhost")
	AdvertisedPort int32  // default 9092
	// Listeners are the advertised endpoints of every named Kafka listener
	// (Kafka's advertised.listeners), registered in the metadata log in
	// cluster mode so that each node answers clients with the address of
	// the listener they came in on. Empty: one listener, the advertised
	// host and port above.
	Listeners         []Endpoint
	ClusterID         string // generated on first start and stored in the metadata log if empty
	AutoCreateTopics  bool
	DefaultPartitions int32 // default 1

	// Broker-level defaults for topic configs (Kafka names in comments).
	RetentionMs     int64 // log.retention.ms, default 7 days; -1 = forever
	RetentionBytes  int64 // log.retention.bytes, default -1
	SegmentBytes    int32 // log.segment.bytes, default 4 MiB (also the WAL segment size)
	MaxMessageBytes int32 // message.max.bytes, default 1048588

	// MaxDecompressedBatchBytes bounds what the records of one compressed
	// batch may decompress to; past it a produce gets MESSAGE_TOO_LARGE.
	// A topic whose max.message.bytes is larger uses that instead. Kafka
	// has no such setting. Default 32 MiB.
	MaxDecompressedBatchBytes int64

	Fsync         FsyncPolicy   // default FsyncAlways
	FsyncInterval time.Duration // with FsyncInterval, default 100ms

	RetentionCheckInterval time.Duration // default 5 minutes (log.retention.check.interval.ms)

	// Compaction (cleaner.go; Kafka's names in comments).
	// CompactionCheckInterval: how often the leader of a compacted
	// partition checks whether it is due (log.cleaner.backoff.ms, default
	// 15 s). CompactionDedupeBytes: the cleaner's key -> offset map
	// (log.cleaner.dedupe.buffer.size, default 32 MiB, 24 bytes a key).
	// CompactionMaxBytesPerSec: the cleaner's reads and writes per second
	// (log.cleaner.io.max.bytes.per.second; 0, the default: unlimited).
	CompactionCheckInterval  time.Duration
	CompactionDedupeBytes    int64
	CompactionMaxBytesPerSec int64

	// StateSnapshotInterval is how often partitions that changed write their
	// state file (log start offset, idempotent producer state); it bounds
	// how much of a log Open re-reads after a crash. Default 30 seconds.
	StateSnapshotInterval time.Duration

	// Consumer groups (Kafka's names in comments). The internal topic
	// __consumer_offsets is created on the first Open with
	// OffsetsTopicPartitions partitions; later changes to the setting do
	// not change an existing topic (Kafka's behaviour too: the partition
	// count decides where every group lives).
	OffsetsTopicPartitions        int32         // offsets.topic.num.partitions, default 50
	OffsetsRetention              time.Duration // offsets.retention.minutes, default 7 days
	OffsetsRetentionCheckInterval time.Duration // offsets.retention.check.interval.ms, default 10 minutes
	// GroupInitialRebalanceDelay is group.initial.rebalance.delay.ms
	// (default 3s; negative: no delay).
	GroupInitialRebalanceDelay time.Duration
	GroupMinSessionTimeout     time.Duration // group.min.session.timeout.ms, default 6s
	GroupMaxSessionTimeout     time.Duration // group.max.session.timeout.ms, default 30 minutes
	GroupMaxSize               int           // group.max.size, default unlimited

	// Transactions (Kafka's names in comments). __transaction_state is
	// created with TxnStatePartitions partitions on the first
	// FindCoordinator or InitProducerID for a transactional id.
	TxnStatePartitions int32         // transaction.state.log.num.partitions, default 50
	TxnMaxTimeout      time.Duration // transaction.max.timeout.ms, default 15 minutes
	TxnIDExpiration    time.Duration // transactional.id.expiration.ms, default 7 days
	// NoTxnVerification turns off KIP-890's check of a transaction's first
	// write to a partition with its coordinator (Kafka's
	// transaction.partition.verification.enable=false).
	NoTxnVerification bool
	// TxnVersion is the transaction.version feature level this node
	// finalizes (Kafka's feature of KIP-890 part 2), which ApiVersions
	// advertises: 2 (the default; 0 means 2), where a transactional
	// Produce v12+ or TxnOffsetCommit v5+ adds its partition to the
	// transaction itself, or 1, where those versions are only verified
	// like the ones before them, so the partition must have been added
	// with AddPartitionsToTxn or AddOffsetsToTxn.
	TxnVersion int16
	// Authorizer is the ACL policy (off by default: everything allowed).
	Authorizer AuthorizerConfig
	// Peers reaches other nodes' Kafka listeners (cluster mode: markers
	// and KIP-890 verification through another node). Nil standalone.
	Peers PeerCaller

	// OnFsync, if set, is called after every fsync of a partition or
	// metadata log with its duration (metrics), and after every syncfs
	// of a shared round (FsyncBatch "filesystem" or "auto"). It must be
	// cheap.
	OnFsync func(time.Duration)

	// FsyncBatch is how the partitions' appends share fsyncs with
	// Fsync=always: wal.SyncFilesystem makes every append join the next
	// round of a wal.Syncer, one syncfs of the data directory's
	// filesystem for all the partitions in it; wal.SyncFiles leaves each
	// partition to fdatasync its own log. wal.SyncAuto (the default) is
	// SyncFilesystem when the data directory is a filesystem of its own,
	// and elsewhere rounds gated by sharedFilesystemGate (newSyncer).
	FsyncBatch wal.SyncMode
	// OnFsyncRound, if set, is called after every round with the logs it
	// made durable and its duration (metrics). It must be cheap.
	OnFsyncRound func(logs int, d time.Duration)

	// ReadCacheBytes bounds the verified copies of sealed segments that
	// fetches read from, for all partitions together (default 256 MiB;
	// each log also keeps the segment it read last).
	ReadCacheBytes int64

	// MaxOpenLogs caps the partition logs holding their files open at once
	// (about wal.FilesPerOpenLog descriptors each); least recently used
	// idle logs are closed to make room and reopen on use. 0: derived from
	// the process's open-file limit (DefaultMaxOpenLogs(0)).
	MaxOpenLogs int

	// LogBufferBytes bounds the tail segments that partition logs hold in
	// memory, all partitions together (wal.TailBudget): past it the logs
	// with the largest tails are rolled to a new segment. 0: the default,
	// wal.DefaultTailBudgetBytes (64 MiB); negative: no budget (each
	// active partition may hold a whole segment).
	LogBufferBytes int64
	// VerifyBytesPerSec: after start-up, sealed segments that a clean
	// shutdown let Open skip are read and checked in the background at
	// most this fast (verify.go). 0: DefaultVerifyBytesPerSec; negative:
	// not at all (damage is then found when the data is read).
	VerifyBytesPerSec int64

	// DataDirLock, if set, is the caller's lock on DataDir (LockDataDir),
	// taken before anything else touched the directory. If nil, Open takes
	// the lock itself and Close releases it. Either way one data directory
	// serves one process.
	DataDirLock *DirLock

	// Replication turns on cluster mode: every partition's log becomes the
	// raft log of its group (see replica.go). Nil runs standalone.
	Replication Replication

	Logger zerolog.Logger
}

// FsyncPolicy mirrors wal.FsyncPolicy so that callers need not import wal.
type FsyncPolicy int

const (
	FsyncAlways FsyncPolicy = iota
	FsyncInterval
	FsyncNever
)

// Special timestamps for ListOffsets.
const (
	TimestampLatest       int64 = -1
	TimestampEarliest     int64 = -2
	TimestampMaxTimestamp int64 = -3
	// KIP-1005: the local log start (earliest) and the last tiered offset
	// (none: -1 without tiered storage).
	TimestampEarliestLocal int64 = -4
	TimestampLatestTiered  int64 = -5
)

// TopicInfo is a snapshot of a topic's metadata.
type TopicInfo struct {
	Name       string
	ID         [16]byte
	Partitions int32
	Internal   bool
	Configs    map[string]string // only explicitly set (topic-level) configs
}

// ConfigEntry is one config as DescribeConfigs reports it.
type ConfigEntry struct {
	Name      string
	Value     *string
	ReadOnly  bool
	Source    int8 // kmsg.ConfigSource: 1 DYNAMIC_TOPIC_CONFIG, 4 STATIC_BROKER_CONFIG, 5 DEFAULT_CONFIG
	Sensitive bool
	Type      int8 // kmsg.ConfigType: 1 BOOLEAN, 2 STRING, 3 INT, 4 SHORT, 5 LONG, 6 DOUBLE, 7 LIST ...
	Doc       string
}

// ConfigOp is one IncrementalAlterConfigs operation.
type ConfigOp struct {
	Name  string
	Op    int8 // 0 SET, 1 DELETE, 2 APPEND, 3 SUBTRACT
	Value *string
}

// ProduceResult is the outcome of appending to one partition.
type ProduceResult struct {
	BaseOffset     int64
	LogAppendTime  int64 // -1 unless the topic uses LogAppendTime
	LogStartOffset int64
}

// FetchResult is what one partition returns to a fetch.
type FetchResult struct {
	HighWatermark int64
	// LastStableOffset: the first offset of the earliest transaction not
	// known decided below the high watermark, else the high watermark
	// (both isolation levels report it, as Kafka does).
	LastStableOffset int64
	LogStartOffset   int64
	Records          []byte // whole batches, back to back, as stored
	// AbortedTransactions (read_committed only; nil otherwise and when
	// there are none): the aborted transactions overlapping Records,
	// whose batches a consumer drops.
	AbortedTransactions []AbortedTransaction
}

// AbortedTransaction is one entry of a fetch response's aborted
// transactions: the producer and the offset of the transaction's first
// batch.
type AbortedTransaction struct {
	ProducerID  int64
	FirstOffset int64
}

// PartitionDirInfo is one partition in DescribeLogDirs.
type PartitionDirInfo struct {
	Topic     string
	Partition int32
	Size      int64
}

// The methods of *Broker (implemented in broker.go, topics.go, groups.go
// and friends):
//
//	Open(cfg Config) (*Broker, error)         // recovers the metadata log and every partition
//	(*Broker).Close() error                   // stops background work, syncs and closes every log
//	(*Broker).Config() Config                 // with defaults filled in
//	(*Broker).ClusterID() string
//
// Topics and configs:
//
//	(*Broker).Topics() []TopicInfo            // sorted by name, internal topics included
//	(*Broker).Topic(name string) (TopicInfo, bool)
//	(*Broker).TopicByID(id [16]byte) (TopicInfo, bool)
//	(*Broker).CreateTopic(name string, partitions int32, replicationFactor int16,
//	    configs map[string]*string, validateOnly bool) (TopicInfo, error)
//	    partitions/replicationFactor -1 take defaults; RF must be 1 standalone
//	    (INVALID_REPLICATION_FACTOR); INVALID_TOPIC_EXCEPTION for bad names,
//	    TOPIC_ALREADY_EXISTS, INVALID_PARTITIONS, INVALID_CONFIG.
//	(*Broker).AutoCreateTopic(name string) (TopicInfo, error) // honours Config.AutoCreateTopics (UNKNOWN_TOPIC_OR_PARTITION when off)
//	ValidateTopicName(name string) error   // Kafka's name rule; wraps INVALID_TOPIC_EXCEPTION
//	(*Broker).DeleteTopic(name string) error
//	(*Broker).CreatePartitions(name string, count int32, validateOnly bool) error
//	(*Broker).TopicConfigs(name string) ([]ConfigEntry, error)  // every supported config with its effective value and source
//	(*Broker).BrokerConfigs() []ConfigEntry
//	(*Broker).AlterTopicConfigs(name string, set map[string]*string, validateOnly bool) error        // AlterConfigs: replaces all
//	(*Broker).IncrementalAlterTopicConfigs(name string, ops []ConfigOp, validateOnly bool) error
//
// Data:
//
//	(*Broker).Produce(ctx context.Context, topic string, partition int32, records []byte,
//	    acks int16, transactionalID *string) (ProduceResult, error)
//	    records: one or more v2 record batches back to back, as sent. Validates
//	    (CORRUPT_MESSAGE, MESSAGE_TOO_LARGE, INVALID_RECORD — also for
//	    magic != 2, as Kafka 4's ProduceRequest.validateRecords, and for
//	    control batches and transactional batches without a producer id;
//	    TRANSACTIONAL_ID_AUTHORIZATION_FAILED for transactional batches
//	    without transactionalID, INVALID_PRODUCER_ID_MAPPING for those of
//	    two producers, INVALID_TXN_STATE for a non-transactional batch of a
//	    producer whose transaction is open; the transaction coordinator
//	    verifies the partition for each transactional batch), assigns
//	    offsets by rewriting base offset and leader epoch only (records is
//	    modified in place), idempotence checks
//	    (DUPLICATE_SEQUENCE_NUMBER is never returned: a duplicate returns the
//	    original BaseOffset with nil error; OUT_OF_ORDER_SEQUENCE_NUMBER,
//	    INVALID_PRODUCER_EPOCH; UNKNOWN_PRODUCER_ID is never returned: as in
//	    Kafka 2.5+, a producer unknown to a partition that has held records
//	    may start at any sequence, on a never-written partition only at 0),
//	    and returns once acks are met (0 and 1: after the local append; -1:
//	    after fsync per policy; with FsyncInterval/FsyncNever acks=-1 also
//	    returns after the append, before the sync).
//	(*Broker).Fetch(topic string, partition int32, offset int64, maxBytes int32,
//	    isolationLevel int8) (FetchResult, error)
//	    Never returns data at or past the high watermark, nor for
//	    read_committed (IsolationReadCommitted, 1) at or past the last
//	    stable offset; read_committed lists the aborted transactions
//	    overlapping the records. Returns at least one whole batch if
//	    offset < the bound, even above maxBytes (KIP-74).
//	    OFFSET_OUT_OF_RANGE outside [logStartOffset, HW].
//	(*Broker).FetchOffsets(topic string, partition int32) (logStart, highWatermark, lastStable int64, err error)
//	(*Broker).AppendSignal() <-chan struct{}
//	    A channel closed at the next append to any partition (long-poll Fetch
//	    waits on it, then calls Fetch again). Take it BEFORE the Fetch that
//	    may come back empty, so that no append can slip in between.
//	(*Broker).ListOffset(topic string, partition int32, timestamp int64,
//	    isolationLevel int8) (offset int64, ts int64, err error)
//	    Latest (-1), Earliest (-2), MaxTimestamp (-3), EarliestLocal (-4),
//	    LatestTiered (-5: -1) or the first offset whose timestamp >=
//	    timestamp (-1, -1 if none). Compressed batches are not decoded: by
//	    timestamp they answer their first offset, for MaxTimestamp their
//	    last, with the batch's max timestamp. Offsets end at the high
//	    watermark, for read_committed at the last stable offset (Latest
//	    is then the last stable offset).
//	(*Broker).DeleteRecords(topic string, partition int32, offset int64) (lowWatermark int64, err error)
//	    offset -1 means the high watermark. OFFSET_OUT_OF_RANGE past HW.
//	(*Broker).PartitionOffsets(topic string, partition int32) (logStart, highWatermark int64, err error)
//	(*Broker).LeaderEpoch(topic string, partition int32) int32   // 0 standalone; the raft term in a cluster
//	(*Broker).PartitionLeader(topic string, partition int32) (leader, epoch int32, err error)
//	    The leader's node id (-1 when none is known) and leader epoch;
//	    standalone this node at epoch 0.
//	(*Broker).InitProducerID(transactionalID *string, txnTimeoutMs int32,
//	    producerID int64, producerEpoch int16) (int64, int16, error)
//	(*Broker).LogDirs() (dir string, parts []PartitionDirInfo)
//	(*Broker).Ready() bool                    // recovery done
//
// Additions beyond the first contract:
//
//	ErrClosed                                 // calls on a closed Broker
//	(*Broker).ProduceStart(ctx, topic, partition, records, acks, transactionalID) *ProduceHandle
//	(*ProduceHandle).Wait() (ProduceResult, error)
//	    Produce in two halves. ProduceStart validates and queues; when it
//	    returns, the request's place in the partition's append order is
//	    fixed. Wait (exactly once) returns when acks are met. A connection
//	    keeping its requests to one partition in order may start the next
//	    one after the previous ProduceStart instead of after its Wait, so
//	    that pipelined requests share one append and one fsync.
//	(*Broker).WriteTxnMarker(ctx, topic string, partition int32, producerID int64,
//	    producerEpoch int16, commit bool, coordinatorEpoch int32) error
//	    The transaction coordinator's COMMIT/ABORT marker, appended like an
//	    acks=all produce (txn_partition.go). NOT_LEADER_OR_FOLLOWER on a
//	    follower, INVALID_PRODUCER_EPOCH for an epoch older than the
//	    producer's, TRANSACTION_COORDINATOR_FENCED for a coordinator epoch
//	    older than the producer's last marker's.
//	(*Broker).RunRetention() int              // apply retention now; segments dropped
//	(*Broker).SnapshotState()                 // write changed partition state files now
//
// Consumer groups (the calls in groups.go; the coordinator that loads,
// writes and follows the __consumer_offsets partitions in coordinator.go
// and coordinator_*.go, around the deterministic state machine in group.go
// and group_*.go; __consumer_offsets is created on the first Open and
// replayed on every Open). Group calls that fail as a whole return an
// error wrapping NOT_COORDINATOR (append failed, broker closing),
// INVALID_GROUP_ID (empty group id) or COORDINATOR_NOT_AVAILABLE;
// per-member and per-partition outcomes are Kafka error codes in the
// results:
//
//	(*Broker).FindCoordinator(keyType int8, key string) (Coordinator, error)
//	    CoordinatorTypeGroup: the leader of the group's __consumer_offsets
//	    partition (standalone: this node). CoordinatorTypeTransaction: the
//	    leader of the id's __transaction_state partition (the topic is
//	    created on first use). Other types: INVALID_REQUEST.
//	(*Broker).JoinGroup(ctx, groupID string, req GroupJoinRequest) (GroupJoinResponse, error)
//	(*Broker).SyncGroup(ctx, groupID string, req GroupSyncRequest) (GroupSyncResponse, error)
//	    Block until the delayed response is ready (the rebalance completed,
//	    the leader's assignment arrived) or ctx ends (ctx.Err()).
//	(*Broker).Heartbeat(groupID string, req GroupHeartbeatRequest) error
//	(*Broker).LeaveGroup(groupID string, members []GroupLeaveMember) (GroupLeaveResponse, error)
//	(*Broker).OffsetCommit(groupID string, req GroupCommitRequest) (codes []int16, err error)
//	    codes parallel req.Offsets; unknown topics UNKNOWN_TOPIC_OR_PARTITION.
//	(*Broker).OffsetFetch(groupID string, topics []GroupFetchTopic, requireStable bool) ([]GroupOffset, error)
//	    nil topics: every committed offset; -1 where nothing is committed.
//	(*Broker).DescribeGroup(groupID string) (GroupDescription, error)     // GROUP_ID_NOT_FOUND: State GroupDead
//	(*Broker).ListGroups(states, types []string) ([]GroupListing, error)  // filters are case-insensitive
//	(*Broker).DeleteGroup(groupID string) error                           // NON_EMPTY_GROUP, GROUP_ID_NOT_FOUND
//	(*Broker).OffsetDelete(groupID string, partitions []GroupTopicPartition) (codes []int16, err error)
//	(*Broker).ExpireGroupOffsets() int    // offsets.retention.minutes now; tombstones written
//	(*Broker).CompactGroupOffsets() int   // compact __consumer_offsets partitions now; partitions compacted
//	(*Broker).TxnOffsetCommit(ctx, groupID, transactionalID string, producerID int64, producerEpoch int16,
//	    generation int32, memberID string, groupInstanceID *string, offsets []GroupOffsetCommit) (codes []int16, err error)
//	    Offsets of the producer's transaction: written now, pending until its
//	    commit marker reaches the group's partition (an abort drops them);
//	    OffsetFetch with requireStable answers a pending partition with
//	    GroupOffset.ErrorCode UNSTABLE_OFFSET_COMMIT.
//
// Transactions (the calls in txn_api.go; the coordinator that loads,
// writes and follows the __transaction_state partitions in
// txn_coordinator.go, around the deterministic state machine in
// txn_machine.go and txn_table.go; the partition side in txn_partition.go).
// Calls about one transactional id fail as a whole with NOT_COORDINATOR,
// COORDINATOR_LOAD_IN_PROGRESS or COORDINATOR_NOT_AVAILABLE, or with the
// state machine's code (INVALID_PRODUCER_ID_MAPPING, PRODUCER_FENCED,
// CONCURRENT_TRANSACTIONS, INVALID_TXN_STATE, INVALID_TRANSACTION_TIMEOUT):
//
//	(*Broker).InitProducerID with a transactional id: fences the id's
//	    earlier epochs (aborting an open transaction first: the caller gets
//	    CONCURRENT_TRANSACTIONS and retries).
//	(*Broker).AddPartitionsToTxn(txnID string, producerID int64, epoch int16,
//	    parts []TxnTopicPartition, verifyOnly bool) (codes []int16, err error)
//	(*Broker).AddOffsetsToTxn(txnID string, producerID int64, epoch int16, groupID string) error
//	(*Broker).EndTxn(txnID string, producerID int64, epoch int16, commit, bumpEpoch bool) (nextPID int64, nextEpoch int16, err error)
//	    Returns once the decision is durable; markers are written after.
//	    bumpEpoch is EndTxn v5 (KIP-890 part 2).
//	(*Broker).AddTxnOffsetsPartition(txnID string, producerID int64, epoch int16, groupID string) error
//	    TxnOffsetCommit v5+ at transaction version 2: the group's offsets
//	    partition joins the transaction.
//	(*Broker).ProduceStartTxn(ctx, topic, partition, records, acks, transactionalID, op TxnWriteOp) *ProduceHandle
//	    ProduceStart with the Produce version's check of transactional
//	    batches: verified (TxnVerifyOld, TxnVerify) or, v12+ at
//	    transaction version 2, added to the transaction (TxnAddPartition).
//	(*Broker).TxnVersion() int16              // the transaction.version finalized (Config.TxnVersion)
//	(*Broker).DescribeTransactions(txnID string) (TxnDescription, error)  // TRANSACTIONAL_ID_NOT_FOUND
//	(*Broker).ListTransactions(states []string, producerIDs []int64) ([]TxnMetadata, error)
//	(*Broker).DescribeProducers(topic string, partition int32) ([]ProducerDescription, error)
//	(*Broker).TxnStats() TxnStats             // metrics
