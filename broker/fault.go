package broker

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"

	"github.com/chronik-stream/chronik/wal"
)

// Damage is contained to its partition. A partition whose log cannot be
// opened or read, or whose write or sync failed, is faulted: it answers
// KAFKA_STORAGE_ERROR (as Kafka answers for a partition on an offline log
// dir), its fault is logged once, counted by Faults (metrics, /readyz,
// Metadata's offline replicas) and every other partition serves on.
//
// A failed write or sync (a full disk, an I/O error) is answered with
// KAFKA_STORAGE_ERROR and the log is recovered in place at once by its
// local replica (wal.Recover: the files are rescanned, whatever was not
// durable is cut), so reads go on and the next produce tries again: once
// the cause is gone, produce works again without a restart. Only if that
// recovery fails is the partition faulted.
//
// Faults come in two kinds:
//   - corrupt (a checksum or framing failure): the log holds damaged
//     entries; it stays offline until `chronik repair` cuts it after its
//     last good entry (or, in a cluster, lets the replica refetch) and the
//     broker restarts.
//   - failed (any other error: a log that could not be recovered or
//     opened, a read that failed, too many open files): the background
//     loop reopens the log every faultRetryInterval (wal.Recover, or the
//     whole open if it never opened) and the partition serves again once
//     that succeeds, without a restart.

// faultRetryInterval is how often failed (not corrupt) partitions are
// reopened.
const faultRetryInterval = time.Second

// PartitionFault describes a partition that cannot serve.
type PartitionFault struct {
	Topic     string
	Partition int32
	Dir       string
	// Corrupt: the log has damaged entries and needs `chronik repair`;
	// otherwise the broker retries on its own.
	Corrupt bool
	File    string // the damaged segment file (Corrupt)
	Index   uint64 // the WAL index of the damaged entry (Corrupt)
	Err     string
	Since   time.Time
}

// fault is a partition's fault state; nil while it is healthy.
type fault struct {
	PartitionFault
	err error
}

// faultErr returns the error every call on a faulted partition answers, or
// nil if the partition is healthy.
func (p *partition) faultErr() error {
	f := p.fault.Load()
	if f == nil {
		return nil
	}
	return fmt.Errorf("%s-%d is offline: %s: %w", p.topic.name, p.index, f.Err, kerr.KafkaStorageError)
}

// storageFailed records a storage error of the partition's log and returns
// the error to answer. The first error faults the partition and is logged;
// later ones while it is faulted are not. A closed log is not a fault (the
// partition is being closed or deleted).
func (p *partition) storageFailed(err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, wal.ErrClosed) {
		return fmt.Errorf("%s-%d: %w: %w", p.topic.name, p.index, kerr.KafkaStorageError, err)
	}
	f := &fault{err: err}
	f.Topic, f.Partition, f.Dir, f.Since = p.topic.name, p.index, p.dir, time.Now()
	f.Err = err.Error()
	var ce *wal.CorruptError
	if errors.As(err, &ce) {
		f.Corrupt, f.File, f.Index = true, ce.File, ce.Index
	} else if errors.Is(err, wal.ErrCorrupt) {
		f.Corrupt = true
	}
	if p.fault.CompareAndSwap(nil, f) {
		ev := p.b.logger.Error().Err(err).Str("topic", p.topic.name).Int32("partition", p.index).Str("dir", p.dir)
		if f.Corrupt {
			ev = ev.Str("file", f.File).Uint64("index", f.Index)
			ev.Msg("partition offline: its log is corrupt; the other partitions serve on (run chronik repair with the broker stopped)")
			// A corrupt log takes no more entries: in a cluster the
			// replica leaves its raft group until repaired, so the
			// leader's idea of what it holds stops where the damage was
			// found and a repaired replica is sent the rest. (Damage found
			// at open never starts the replica.) Not under the caller's
			// locks: closing waits for the group's engine.
			if r := p.repl(); r != nil {
				go r.Close()
			}
		} else {
			ev.Msg("partition offline: its log failed; retrying every second")
		}
		p.b.appendSignal.notify() // long polls answer the error now
	} else if cur := p.fault.Load(); cur != nil && !cur.Corrupt && f.Corrupt {
		// Damage found while retrying: needs repair, not retries.
		p.fault.Store(f)
		p.b.logger.Error().Err(err).Str("topic", p.topic.name).Int32("partition", p.index).
			Str("file", f.File).Uint64("index", f.Index).Msg("partition log is corrupt; run chronik repair with the broker stopped")
	}
	return fmt.Errorf("%s-%d: %w: %w", p.topic.name, p.index, kerr.KafkaStorageError, err)
}

// appendFailed records a failed append (Replicate's error): storage
// errors are counted and logged (at most every writeErrorLogEvery), and a
// log that could not be reopened faults the partition. It returns the
// error to answer. The log's view, which the replica keeps, decides the
// next offsets, not the failed attempt.
func (p *partition) appendFailed(err error) error {
	if !errors.Is(err, kerr.KafkaStorageError) {
		return err // not a storage error: NOT_LEADER, a timeout, ...
	}
	p.b.storageErrors.Add(1)
	if errors.Is(err, errLogUnusable) {
		return p.storageFailed(err)
	}
	now := time.Now()
	if last := p.lastWriteErr.Load(); now.UnixNano()-last >= int64(writeErrorLogEvery) {
		p.lastWriteErr.Store(now.UnixNano())
		p.b.logger.Error().Err(err).Str("topic", p.topic.name).Int32("partition", p.index).
			Msg("append failed (KAFKA_STORAGE_ERROR); the log was reopened and the next append tries again (logged at most every 10s)")
	}
	return err
}

// writeErrorLogEvery spaces the log lines of a partition whose appends keep
// failing (a full disk under load).
const writeErrorLogEvery = 10 * time.Second

// StorageErrors counts appends that failed since the broker started.
func (b *Broker) StorageErrors() uint64 { return b.storageErrors.Load() }

// Faults lists the partitions that cannot serve, ordered by topic and
// partition.
func (b *Broker) Faults() []PartitionFault {
	var out []PartitionFault
	for _, p := range b.allPartitions() {
		if f := p.fault.Load(); f != nil {
			out = append(out, f.PartitionFault)
		}
	}
	slices.SortFunc(out, func(a, b PartitionFault) int {
		if c := strings.Compare(a.Topic, b.Topic); c != 0 {
			return c
		}
		return int(a.Partition - b.Partition)
	})
	return out
}

// PartitionFault reports whether a partition hosted here is offline.
func (b *Broker) PartitionFault(topic string, partition int32) (PartitionFault, bool) {
	p, err := b.partition(topic, partition)
	if err != nil {
		return PartitionFault{}, false
	}
	if f := p.fault.Load(); f != nil {
		return f.PartitionFault, true
	}
	return PartitionFault{}, false
}

// retryFaults reopens every failed (not corrupt) partition; it runs on the
// background loop.
func (b *Broker) retryFaults() {
	for _, p := range b.allPartitions() {
		if f := p.fault.Load(); f != nil && !f.Corrupt {
			p.retry(f)
		}
	}
}

// retry tries to bring a failed partition back: a log that never opened is
// opened; an open one is recovered in place (wal.Recover: rescan, cut a
// torn tail and whatever was not durable), and the partition's offsets and
// producer state are taken from it again.
func (p *partition) retry(f *fault) {
	p.appendMu.Lock()
	defer p.appendMu.Unlock()
	if p.closed || p.fault.Load() != f {
		return
	}
	var err error
	if p.log == nil {
		err = p.open()
	} else if err = p.log.Recover(); err == nil {
		// Recover may have cut what was not durable: the view follows.
		p.Truncated(p.log.NextOffset())
	}
	if err != nil {
		if errors.Is(err, wal.ErrCorrupt) {
			p.storageFailed(err) // now corrupt: stop retrying
		}
		p.b.logger.Debug().Err(err).Str("topic", p.topic.name).Int32("partition", p.index).Msg("partition still offline")
		return
	}
	p.fault.Store(nil)
	p.b.logger.Info().Str("topic", p.topic.name).Int32("partition", p.index).Dur("offline", time.Since(f.Since)).
		Msg("partition back online")
	p.b.appendSignal.notify()
}
