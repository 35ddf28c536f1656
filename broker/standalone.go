package broker

import (
	"context"
	"errors"
	"fmt"

	"github.com/twmb/franz-go/pkg/kerr"

	"github.com/chronik-stream/chronik/wal"
)

// The standalone implementation of the replicated-log seam (replica.go): a
// partition's log replicated to no one. The broker drives every partition
// through a Replica, so its produce, fetch, retention and DeleteRecords code
// is the same in both modes; which implementation a partition gets is
// decided once, when the broker is wired (Config.Replication nil: these).
//
// "Committed" here means written and synced per the fsync policy: an
// append is committed when Append returns, this node leads at epoch 0 from
// the start, and the log start moves when asked.

// standaloneReplicas makes local replicas (Config.Replication nil).
type standaloneReplicas struct{ self int32 }

func (r standaloneReplicas) Replica(spec ReplicaSpec, log *wal.Log, events ReplicaEvents) (Replica, error) {
	lr := &standaloneReplica{log: log, events: events}
	events.Committed(log.NextOffset())
	events.LeaderChanged(r.self, 0)
	return lr, nil
}

// standaloneReplica is one standalone partition's log.
type standaloneReplica struct {
	log    *wal.Log
	events ReplicaEvents
}

// Replicate appends the entries (one write and one fsync for the group the
// partition hands over: its queue is the group commit), then
// reports them and the new high watermark. A failed write or sync reopens
// the log in place (wal.Recover: the tail rescanned, whatever was not
// durable cut), so reads go on and the next append tries again; the
// partition's view follows the cut log (Truncated). Errors:
// KAFKA_STORAGE_ERROR, wrapping errLogUnusable if the log could not be
// reopened.
func (r *standaloneReplica) Replicate(_ context.Context, entries []wal.Entry, _ bool) (int64, error) {
	if _, err := r.log.Append(entries...); err != nil {
		if errors.Is(err, wal.ErrClosed) {
			return 0, fmt.Errorf("%w: %w", kerr.KafkaStorageError, err)
		}
		if rerr := r.log.Recover(); rerr != nil {
			return 0, fmt.Errorf("%w: %w: %w (reopening it: %w)", kerr.KafkaStorageError, errLogUnusable, err, rerr)
		}
		r.events.Truncated(r.log.NextOffset())
		return 0, fmt.Errorf("%w: %w", kerr.KafkaStorageError, err)
	}
	r.events.Appended(entries)
	last := entries[len(entries)-1]
	r.events.Committed(last.LastOffset() + 1)
	return entries[0].BaseOffset, nil
}

// errLogUnusable marks a Replicate error after which the log could not be
// reopened: the partition goes offline (fault.go).
var errLogUnusable = errors.New("the log could not be reopened")

func (r *standaloneReplica) MoveLogStart(_ context.Context, offset int64) error {
	r.events.LogStartMoved(offset)
	return nil
}

func (r *standaloneReplica) Compact(_ context.Context, req CompactRequest) error {
	r.events.CompactRequested(req)
	return nil
}

// Applied is 0: a standalone partition's state file needs no raft index.
func (r *standaloneReplica) Applied() uint64 { return 0 }

// CommittedIndex: everything in the log was acknowledged as written.
func (r *standaloneReplica) CommittedIndex() uint64 { return r.log.LastIndex() }

// EpochEnd: every entry is of epoch 0, the current one.
func (r *standaloneReplica) EpochEnd(int32) (int32, int64, bool) { return -1, -1, false }

func (r *standaloneReplica) SetReplicas([]int32) {}
func (r *standaloneReplica) Compacted() error    { return nil }
func (r *standaloneReplica) Close() error        { return nil }
