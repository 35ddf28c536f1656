// Package cluster is Chronik's optional raft layer: one etcd raft group
// (go.etcd.io/raft/v3, RawNode) per partition on the partition's own
// wal.Log, a metadata group (the raft group over the metadata log), the
// peer transport and leader routing. It plugs into package broker through
// the interfaces broker defines (broker.Replication, broker.Replica,
// broker.MetaLog; DESIGN.md, "Cluster rules").
//
// Words: a "group" in this package is always a raft group (RaftGroup,
// GroupID), never a consumer group. "Controller" means only what it means
// in Kafka: the leader of the metadata group, which clients reach for
// metadata changes (NOT_CONTROLLER when there is none). The metadata
// group's id keeps the name ControllerGroup.
//
// go.etcd.io/raft/v3 v3.6.0 rather than v3.7.0: v3.6.0's raftpb types are
// values with generated Marshal/Unmarshal/Size methods (what etcd 3.6 runs),
// while v3.7.0 moved to google.golang.org/protobuf with pointer fields
// (Message.Entries is []*Entry, every scalar a *uint64), which costs an
// allocation per entry and per field on the replication path.
//
// The pieces, each in its own files:
//
//   - storage.go: Storage, raft.Storage on a wal.Log (raft index == WAL
//     index), plus the write side the engine uses while handling a Ready.
//   - entry.go: how a raft entry's Data maps to a wal.Entry.
//   - transport.go: Transport, one TCP connection per peer pair carrying
//     batched messages of every group; transport_conn.go, the per-peer
//     side (dialing, writer and reader goroutines); transport_frame.go,
//     the wire format (frames and handshake).
//   - engine.go: Engine, a RawNode per group driven by a fixed worker pool,
//     with quiescence of idle groups; engine_raftgroup.go, RaftGroup, one
//     group's proposals, Ready handling and quiescence.
//   - node.go: Node, a cluster member for package broker
//     (broker.Replication): one Transport, one Engine, and the adapters
//     below. reconcile.go makes the groups this node leads converge to
//     their desired voters and preferred leaders.
//   - metagroup.go: metaGroup, the metadata group as broker.MetaLog
//     (Node.MetaLog).
//   - replica.go: replica, a partition's raft group as broker.Replica
//     (Node.Replica).
//
// THIS FILE IS THE CONTRACT the pieces code against. Keep the exported
// names and signatures; add to them rather than change them.
package cluster

import (
	"errors"
	"time"

	"github.com/rs/zerolog"
	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
)

// Named errors. Callers use errors.Is.
var (
	ErrStopped        = errors.New("cluster: stopped")
	ErrNotLeader      = errors.New("cluster: not leader")       // a proposal on a follower, or leadership lost before commit
	ErrUnknownGroup   = errors.New("cluster: unknown group")    // a message or call for a group this node does not host
	ErrProposalFailed = errors.New("cluster: proposal dropped") // raft dropped the proposal (no leader, conf change pending, ...)
	// ErrStaleOffsets: a data entry numbered for another term, or against
	// a log end that other proposals have moved since (an earlier
	// proposal the caller gave up on is still going in). Nothing was
	// proposed; the caller numbers again from the log's view.
	ErrStaleOffsets = errors.New("cluster: data entry numbered against a stale log end")
)

// GroupID names a raft group. 0 is the metadata group; partition groups
// get ids from the metadata log (broker.ReplicaSpec.Group).
type GroupID uint64

// ControllerGroup is the metadata group's id (its leader is the
// controller).
const ControllerGroup GroupID = 0

// GroupMessage is one raft message of one group; the transport batches them.
type GroupMessage struct {
	Group GroupID
	Msg   raftpb.Message
}

// ---------------------------------------------------------------------------
// Entry data (entry.go)
//
// A raft entry of type EntryNormal is stored as one wal entry:
//
//	raft Data empty (the leader's no-op at the start of a term) -> wal.KindNoop, no payload
//	raft Data = [KindData][base offset][last offset delta][max timestamp][batches]
//	                                                            -> wal.KindData with those fields
//	raft Data = [kind byte][payload]                            -> wal.KindMeta or wal.KindControl
//
// A raft EntryConfChangeV2 is wal.KindConfChange with the marshalled
// ConfChangeV2 as payload (EntryConfChange v1 is converted to V2 before it
// is stored; Chronik only proposes V2).
//
// The wal entry's Term is the raft term. One owner for the Kafka batch
// format and offsets: the leader's partition (package broker) numbers a
// data entry and stamps its batches (base offset, leader epoch = the term)
// before it proposes; the entry carries those fields, and Storage.Append
// stores it as it came, only checking that the offsets continue the log
// (a metadata record takes the next offset). The engine refuses a data
// proposal numbered for another term or against a log end other proposals
// have moved (ErrStaleOffsets), so every replica stores byte-identical
// batches with identical offsets, and this package never reads a batch.
//
//	EncodeEntry(we wal.Entry) []byte                 // AppendEntry(dst, we) to reuse a buffer
//	EncodeData(kind wal.Kind, payload []byte) []byte // kinds without offsets
//	DecodeData(data []byte) (wal.Entry, error)
//
// ---------------------------------------------------------------------------
// Storage (storage.go)
//
//	OpenStorage(log *wal.Log) (*Storage, error)
//	    Loads HardState, ConfState and the snapshot point (index and term of
//	    the entry before FirstIndex) from the log's state sidecar
//	    (wal.Log.SaveState/LoadState). A log with no sidecar is a standalone
//	    log becoming a replica: its entries (all term 0) are reported to raft
//	    as term 1, so they replicate as ordinary raft entries, and the
//	    snapshot point is (FirstIndex-1, FirstIndex>1 ? 1 : 0).
//	(*Storage) raft.Storage methods: InitialState, Entries, Term, LastIndex,
//	    FirstIndex, Snapshot.
//	(*Storage).Append(entries []raftpb.Entry) error
//	    Entries from a Ready: entries at or below LastIndex replace the
//	    conflicting suffix (TruncateBack first); durable per the log's fsync
//	    policy on return. Called by one goroutine at a time per group.
//	(*Storage).SetHardState(hs raftpb.HardState) error     // sidecar; no-op if unchanged
//	(*Storage).SetConfState(cs raftpb.ConfState) error     // sidecar
//	(*Storage).ApplySnapshot(snap raftpb.Snapshot) error
//	    wal.Reset(snap.Metadata.Index+1, nextOffset) where nextOffset comes
//	    from the snapshot data (SnapshotData), then the sidecar.
//	(*Storage).CompactTo(index uint64) error  // the snapshot point moves to index (after retention dropped segments)
//	(*Storage).Offsets(index uint64) (baseOffset int64, lastOffset int64, err error)
//	    The Kafka offsets of the entry at index (for acks after commit).
//	(*Storage).OffsetAtIndex(index uint64) int64
//	    The Kafka offset one past the last record at or before index (the
//	    high watermark for commit index `index`).
//	(*Storage).LogEnd() int64   // the Kafka offset after the last record stored
//	(*Storage).SetObserver(o LogObserver)
//	    The partition's view of its log (broker.ReplicaEvents' Appended and
//	    Truncated) hears of every append and cut: the storage is the log's
//	    only writer.
//	(*Storage).Log() *wal.Log
//
// SnapshotData is the Data of a partition group's raft snapshot: where the
// follower's log restarts. Snapshots carry no records: a follower that needs
// one lost entries to retention, as a Kafka follower would.
type SnapshotData struct {
	NextOffset     int64 // Kafka offset of the first entry after the snapshot
	LogStartOffset int64
}

// ---------------------------------------------------------------------------
// Transport (transport.go)
//
//	NewTransport(cfg TransportConfig) *Transport
//	(*Transport).Serve(l net.Listener) error         // accepts peer connections until Close
//	(*Transport).Send(to uint64, msgs []GroupMessage) // never blocks: queued per peer, dropped (and counted) when the queue is full; raft retries
//	(*Transport).AddPeer(id uint64, addr string)
//	(*Transport).RemovePeer(id uint64)
//	(*Transport).Connected(id uint64) bool
//	(*Transport).Stats() TransportStats
//	(*Transport).SetFault(f Fault)                   // tests: drop traffic to/from peers
//	(*Transport).Close() error
//
// One TCP connection per peer pair (the lower node id dials it), used both
// ways: on each side one goroutine writes it, draining the peer's queue into
// one frame per write (all queued messages of all groups), and one reads
// it. With TLS set, each connection is mutual TLS 1.3 under the cluster CA,
// both certificates naming their node ids. Each connection opens with a
// handshake naming both node ids and the cluster id; a mismatch (or, with
// TLS, a sender id other than its certificate's) closes it with a logged,
// counted reason. Frames are length-prefixed with a maximum size and a CRC32C;
// anything malformed closes the connection (fuzz target FuzzDecodeFrame).
type TransportConfig struct {
	NodeID    uint64
	ClusterID string
	Peers     map[uint64]string // raft addresses, this node's own included
	// Handler receives every message batch from a peer, on that peer's
	// reader goroutine; it must not block for long.
	Handler func(from uint64, msgs []GroupMessage)
	// OnPeerDown is called when the connection to a peer is lost (the
	// engine wakes quiesced groups that peer leads).
	OnPeerDown     func(id uint64)
	MaxFrameBytes  int           // default 64 MiB
	QueueMessages  int           // per peer, default 4096
	DialTimeout    time.Duration // default 1s
	HeartbeatEvery time.Duration // node-level liveness ping, default 200ms
	Logger         zerolog.Logger
	// TLS, if set, runs every connection over mutual TLS with the cluster
	// CA, each side proving its node id (peer_tls.go); nil is plaintext.
	TLS *PeerTLS
	// HandshakeTimeout bounds a connection's TLS handshake and hello
	// exchange, dialed or accepted (default 5s); a connection that has not
	// completed them by then is closed.
	HandshakeTimeout time.Duration
}

// Fault drops messages for tests (a partition of the network).
type Fault struct {
	DropTo   map[uint64]bool // drop everything sent to these nodes
	DropFrom map[uint64]bool // drop everything received from these nodes
}

// TransportStats are counters for metrics.
type TransportStats struct {
	FramesSent, FramesReceived     uint64
	MessagesSent, MessagesReceived uint64
	BytesSent, BytesReceived       uint64
	Dropped                        uint64 // queue full or fault
	PeersConnected                 int
	// Handshakes refused by this node, by reason: as acceptor (every
	// AcceptRefusalReasons key) and as dialer, because of the acceptor's
	// certificate (every DialRefusalReasons key).
	AcceptRefused, DialRefused map[string]uint64
}

// ---------------------------------------------------------------------------
// Engine (engine.go)
//
//	NewEngine(cfg EngineConfig) *Engine
//	(*Engine).Start()
//	(*Engine).AddGroup(id GroupID, st GroupStorage, sm StateMachine, join []uint64) (*RaftGroup, error)
//	    join: the initial voters when the group's log is empty (bootstrap);
//	    ignored when the storage already has a ConfState.
//	(*Engine).RemoveGroup(id GroupID) error
//	(*Engine).Group(id GroupID) *RaftGroup
//	(*Engine).Step(from uint64, msgs []GroupMessage)  // the transport's Handler
//	(*Engine).PeerDown(id uint64)                     // the transport's OnPeerDown
//	(*Engine).Stop()
//	(*RaftGroup).Propose(ctx context.Context, data []byte) (index uint64, err error)
//	    Returns once the entry is committed and applied locally.
//	    (Replicas' acks=1 proposals return once the entry is durable in
//	    the leader's own log.)
//	(*RaftGroup).ProposeConfChange(ctx, cc raftpb.ConfChangeV2) error
//	(*RaftGroup).Status() GroupStatus
//	(*RaftGroup).TransferLeadership(to uint64)
//	(*RaftGroup).Campaign()
//
// Workers: EngineConfig.Workers goroutines (default 4 x GOMAXPROCS, at
// least 8: a worker mostly waits for its group's fsync) take groups
// that have work (a proposal, an incoming message, a tick while not
// quiesced) from a ready queue; one group is handled by one worker at a
// time. Handling a Ready follows raft's contract: Storage.Append and
// SetHardState (durable) before sending the messages that depend on them
// (a leader sends its appends first and persists meanwhile, as etcd does),
// then apply committed entries through StateMachine.Apply, then Advance.
// Proposals queued while a group was busy go into raft together (one Ready,
// one wal append).
//
// Quiescence: a leader whose followers have acknowledged everything and
// that has no pending proposals stops ticking and tells its followers to
// stop too; the group wakes on a proposal, on any message, or when the
// transport reports its leader's node down. Idle groups therefore send no
// heartbeats: peer traffic does not grow with the number of partitions.
type EngineConfig struct {
	NodeID    uint64
	Transport interface {
		Send(to uint64, msgs []GroupMessage)
	}
	TickInterval  time.Duration // default 100ms
	ElectionTicks int           // default 10
	HeartbeatTick int           // default 1
	Workers       int           // default max(8, 4 x GOMAXPROCS)
	MaxSizePerMsg uint64        // default 1 MiB
	MaxInflight   int           // default 256
	Logger        zerolog.Logger
}

// GroupStorage is what the engine needs of a group's storage; *Storage is
// the implementation (tests may wrap raft.MemoryStorage).
type GroupStorage interface {
	raft.Storage
	Append(entries []raftpb.Entry) error
	SetHardState(hs raftpb.HardState) error
	SetConfState(cs raftpb.ConfState) error
	ApplySnapshot(snap raftpb.Snapshot) error
}

// StateMachine is what a group applies its committed entries to. Calls come
// from one worker at a time per group, in log order.
type StateMachine interface {
	// Apply is called with committed entries that are durable locally,
	// after Storage.Append stored them. Conf changes are applied by the
	// engine before Apply sees them.
	Apply(entries []raftpb.Entry) error
	// LeaderChanged reports a new leader (0: none known) and term.
	LeaderChanged(leader, term uint64)
	// SnapshotData is the Data of a snapshot at the storage's first index.
	SnapshotData() ([]byte, error)
	// Restore is called after Storage.ApplySnapshot installed a snapshot.
	Restore(snap raftpb.Snapshot) error
}

// GroupStatus is a group's state as seen from this node.
type GroupStatus struct {
	ID        GroupID
	Leader    uint64
	Term      uint64
	Commit    uint64
	Applied   uint64
	IsLeader  bool
	Quiesced  bool
	Voters    []uint64
	Learners  []uint64
	LastIndex uint64
}
