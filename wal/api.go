// Package wal is Chronik's durable log: framed, checksummed entries on top of
// github.com/tidwall/wal, with tail repair, an fsync policy, a Kafka
// offset/time index, retention primitives and a state sidecar.
//
// A Log has one writer (a partition's append, a raft group's storage
// worker, the metadata log's writer). Group commit happens above it, where
// the work queues up (the partition's produce queue, the raft group's
// Ready); the wal writes what one Append is given with one WriteBatch and
// one fsync. Concurrent Appends are safe but serialized, never coalesced.
//
// One Log is one directory. WAL indexes are contiguous uint64s; a log may
// begin at any index. Kafka offsets are carried in each entry's frame header
// and are independent of WAL indexes (entries of kind KindNoop or
// KindConfChange carry no records and are skipped by the offset index).
//
// THIS FILE IS THE CONTRACT other packages code against. Keep the exported
// names and signatures; add to them rather than change them.
package wal

import (
	"errors"
	"time"
)

// Named errors. Callers use errors.Is.
var (
	ErrClosed         = errors.New("wal: log closed")
	ErrNotFound       = errors.New("wal: index not found") // index outside [FirstIndex, LastIndex]
	ErrCorrupt        = errors.New("wal: corrupt entry")   // checksum or framing failure before the tail
	ErrOutOfRange     = errors.New("wal: index out of range")
	ErrOffsetNotFound = errors.New("wal: offset not in log") // offset/timestamp lookups past the end
	// ErrInvalidEntry: Append of an entry that cannot be framed (unknown
	// Kind, negative offset or delta on a record kind, payload > 256 MiB).
	ErrInvalidEntry = errors.New("wal: invalid entry")
)

// Kind says what an entry holds.
type Kind uint8

const (
	KindData       Kind = 1 // a Kafka record batch (or several, back to back)
	KindNoop       Kind = 2 // raft no-op, no records
	KindConfChange Kind = 3 // raft conf change, no records
	KindMeta       Kind = 4 // a metadata/state record (not Kafka records, but carries an offset like data)
	KindControl    Kind = 5 // a partition control record, no records (cluster mode: the log start offset moved)
)

// HasRecords reports whether entries of this kind occupy Kafka offsets.
func (k Kind) HasRecords() bool { return k == KindData || k == KindMeta }

// Entry is one framed log entry.
type Entry struct {
	Kind            Kind
	Term            uint64 // raft term; 0 standalone
	BaseOffset      int64  // Kafka base offset of the first record (HasRecords kinds)
	LastOffsetDelta int32  // last offset = BaseOffset + LastOffsetDelta
	MaxTimestamp    int64  // max record timestamp in ms (for time index and retention)
	Payload         []byte
}

// LastOffset is BaseOffset + LastOffsetDelta.
func (e Entry) LastOffset() int64 { return e.BaseOffset + int64(e.LastOffsetDelta) }

// FsyncPolicy chooses when appends are made durable.
type FsyncPolicy int

const (
	FsyncAlways   FsyncPolicy = iota // default: synced before Append returns
	FsyncInterval                    // synced every Options.FsyncInterval
	FsyncNever                       // left to the OS
)

// Options configure a Log. The zero value is valid and durable.
type Options struct {
	SegmentSize      int           // target bytes per segment file (default 4 MiB)
	SegmentCacheSize int           // segments held in memory for reads (default 1)
	Fsync            FsyncPolicy   // default FsyncAlways
	FsyncInterval    time.Duration // for FsyncInterval (default 100ms)
	IdleTimeout      time.Duration // release in-memory segment buffers after this long without use (default 30s; <0 never)
	// IndexIntervalBytes is the log bytes between two points of the sparse
	// offset/time index (default 32 KiB; Kafka's index.interval.bytes).
	IndexIntervalBytes int
	// OnRepair, if set, is called once per repair made while opening (a cut
	// tail). Open also returns the repairs through (*Log).Repairs.
	OnRepair func(Repair)
	// OnSync, if set, is called after every fsync of the log with how long
	// it took (for metrics; it must be cheap and must not call the log).
	OnSync func(time.Duration)
	// ReadCache holds the verified copies of sealed segments that reads are
	// served from; it may be shared by many logs. Nil uses a process-wide
	// cache of DefaultReadCacheBytes. SegmentCacheSize bounds only
	// tidwall's own cache, which reads no longer use for sealed segments.
	ReadCache *ReadCache
	// OpenLogs, if set, caps the logs sharing it that hold their files
	// open at once (openlogs.go); nil: no cap.
	OpenLogs *OpenLogs
	// TailBudget, if set, bounds the tail segments that the logs sharing
	// it hold in memory: the largest are rolled when the sum passes it
	// (tailbudget.go); nil: no budget, each open log may hold a whole
	// segment.
	TailBudget *TailBudget
	// Syncer, if set, makes the appends of the logs sharing it durable in
	// shared rounds (one syncfs, or their fdatasyncs together) instead of
	// one fsync per Append (FsyncAlways only; syncer.go).
	Syncer *Syncer
}

// Repair describes a tail cut made by Open, or the removal of a temp file
// that a crash during RewriteSegment left behind (Reason says so; File is
// the temp file, CutIndex the first index of its segment, CutBytes its
// size; the segment itself is intact and no entry was removed).
type Repair struct {
	File     string // segment file that was cut
	CutIndex uint64 // first WAL index that was removed (the first bad entry)
	CutBytes int64  // bytes removed from the file
	Reason   string // "torn entry", "zero-filled tail", "checksum mismatch", ...
}

// SegmentInfo describes one segment file, oldest first.
type SegmentInfo struct {
	FirstIndex   uint64
	LastIndex    uint64 // FirstIndex-1 for an empty segment
	Bytes        int64
	MaxTimestamp int64 // max of the entries' MaxTimestamp; -1 if none
	// FirstTimestamp is the MaxTimestamp of the first record entry; -1 if
	// none. The broker rolls an active segment whose first record is older
	// than segment.ms, as Kafka does.
	FirstTimestamp int64
	FirstOffset    int64 // Kafka offset of the first record entry; -1 if none
	NextOffset     int64 // one past the last Kafka offset in the segment; -1 if none
	Active         bool  // the tail segment, never dropped by retention
}

// The methods of *Log (implemented in log.go):
//
//	Open(dir string, opts Options) (*Log, error)
//	    Creates the directory if needed, repairs the tail, rebuilds the
//	    offset/time index from frame headers, validates every frame's CRC.
//	(*Log).Append(entries ...Entry) (firstIndex uint64, err error)
//	    One tidwall WriteBatch and (FsyncAlways) one fsync per call; returns
//	    when the entries are durable per the fsync policy. Meant for one
//	    writer: concurrent calls are safe but serialized, each with its own
//	    write and fsync; batching is the caller's business. Entries of a
//	    HasRecords kind must have BaseOffset == NextOffset() at the time they
//	    are written (the caller assigns offsets; otherwise the whole call
//	    fails with ErrOutOfRange and writes nothing). Zero entries: 0, nil.
//	(*Log).Read(index uint64) (Entry, error)            // ErrNotFound outside the log; Payload is read-only (shares the log's buffer)
//	(*Log).FirstIndex() uint64                           // first present index; LastIndex()+1 when empty
//	(*Log).LastIndex() uint64                            // FirstIndex()-1 when empty
//	(*Log).StartOffset() int64                           // Kafka offset of the first record entry (NextOffset() if none)
//	(*Log).NextOffset() int64                            // log end offset: last record offset + 1
//	(*Log).FindOffset(offset int64) (index uint64, err error)
//	    The index of the record entry containing offset, or of the first
//	    record entry after it; ErrOffsetNotFound if offset >= NextOffset().
//	(*Log).FindTimestamp(ts int64) (index uint64, err error)
//	    The first record entry whose MaxTimestamp >= ts; ErrOffsetNotFound if none.
//	(*Log).TruncateFront(index uint64) error              // index becomes the first entry
//	(*Log).TruncateBack(index uint64) error               // index becomes the last entry
//	(*Log).Reset(firstIndex uint64, nextOffset int64) error // drop everything; the log restarts empty at firstIndex (raft snapshot install)
//	(*Log).Segments() []SegmentInfo
//	(*Log).DropSegments(n int) error                     // removes the n oldest whole segments (never the active one)
//	(*Log).DropSegmentsBefore(index uint64) (int, error)  // removes the leading whole segments holding only entries before index
//	(*Log).RetainBytes(maxBytes int64) (dropped int, err error)  // drop leading segments while what remains stays >= maxBytes (Kafka's retention.bytes rule)
//	(*Log).RetainAge(cutoff int64) (dropped int, err error)      // drop leading segments whose MaxTimestamp < cutoff (ms)
//	(*Log).Size() int64                                  // total bytes on disk
//	(*Log).SaveState(b []byte) error                     // atomic sidecar: temp, fsync, rename, dir fsync
//	(*Log).LoadState() ([]byte, error)                   // nil, nil when none saved
//	(*Log).Sync() error
//	(*Log).DurableIndex() uint64                         // last index durable per the fsync policy
//	(*Log).Repairs() []Repair
//	(*Log).Dir() string
//	(*Log).Close() error                                 // syncs, leaves the clean-shutdown marker; second call returns ErrClosed
//	(*Log).Retain(r Retention) (dropped int, err error) // the one retention rule (retention.go)
//	(*Log).Recover() error                               // reopen a log a failed write left unusable, in place (damage.go)
//	(*Log).Failed() error                                // why the log is unusable, nil if it is not
//	RepairDir(dir) / CheckDir(dir) (RepairReport, error) // cut / report a closed log after its last good entry
//	NewOpenLogs(limit) *OpenLogs                         // the cap on logs holding files open (Options.OpenLogs)
//	NewSyncer(dir, onRound) (*Syncer, error)             // shared fsync rounds for many logs (Options.Syncer; syncer.go)
//	NewGatedSyncer(dir, gate, onRound) (*Syncer, error)  // rounds joined only as SyncerGate says (enough appends under way, a quiet page cache)
//	NewTailBudget(bytes) *TailBudget                     // a budget for the tails open logs hold in memory (Options.TailBudget; tailbudget.go)
//	(*Log).ScanSegment(first uint64, fn func(index uint64, e Entry) (bool, error)) error
//	    (compact.go) Every entry of the sealed segment starting at first,
//	    read from its file, not through the read cache (a whole-log pass
//	    must not evict what consumers read); errors as RewriteSegment's.
//	(*Log).RewriteSegment(first uint64, rewrite func(index uint64, e Entry) ([]byte, error)) (before, after int64, err error)
//	    (compact.go) Rewrites the sealed segment starting at index first:
//	    each HasRecords entry's payload becomes what rewrite returns (in
//	    index order; e.Payload or equal bytes: unchanged); other kinds are
//	    copied. Index, Kind, Term, BaseOffset, LastOffsetDelta and
//	    MaxTimestamp never change, so offset/time lookups answer the same
//	    entries. Returns the file size before and after; nothing is written
//	    if no payload changed. Crash-safe (temp "<segment>.rewrite", fsync,
//	    rename, dir fsync; Open removes a leftover temp and reports it as a
//	    Repair). Appends and reads are not blocked while rewrite runs; the
//	    locks are taken only for the swap. ErrOutOfRange: no sealed segment
//	    starts at first (the active one included); ErrSegmentChanged: it was
//	    dropped, truncated or rewritten meanwhile (nothing changed);
//	    ErrInvalidEntry: a payload over the entry limit.
//	(*Log).Roll() error                                  // seal a non-empty active segment; the next Append starts a new one (compact.go)
