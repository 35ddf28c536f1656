package broker

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/chronik-stream/chronik/wal"
)

// The metadata log of a broker that is its own cluster. localMeta is the
// MetaLog Open wires when there is no Replication: a proposal is
// committed once it is appended (the metadata log always fsyncs) and is
// then applied through ApplyMeta, exactly as the metadata raft group
// applies its committed records on every node. Metadata changes therefore
// take one path in both modes: check, propose, apply in ApplyMeta.

// localMeta commits metadata records by appending them to the local
// metadata log, its only writer, and applying them at once.
type localMeta struct {
	self   int32
	events MetaLogEvents

	// mu orders proposals: a record is applied before the next one is
	// appended, so apply order is log order.
	mu     sync.Mutex
	log    *wal.Log
	closed bool
}

func newLocalMeta(log *wal.Log, events MetaLogEvents, self int32) *localMeta {
	return &localMeta{self: self, events: events, log: log}
}

// Start implements Controller: the log is ready once Open replayed it.
func (c *localMeta) Start() error { return nil }

// Propose implements Controller: the record is appended durably, then
// applied (MetaLogEvents.ApplyMeta) before Propose returns. ctx is not
// consulted: the append is a local write that either happens or fails.
func (c *localMeta) Propose(_ context.Context, record []byte) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return ErrClosed
	}
	if _, err := c.appendLocked(record); err != nil {
		return err
	}
	c.events.ApplyMeta(record)
	return nil
}

// appendLocked writes one record. Caller holds mu.
func (c *localMeta) appendLocked(record []byte) (uint64, error) {
	return c.log.Append(wal.Entry{
		Kind:         wal.KindMeta,
		BaseOffset:   c.log.NextOffset(),
		MaxTimestamp: time.Now().UnixMilli(),
		Payload:      record,
	})
}

// Nodes implements Controller: this node is the whole cluster.
func (c *localMeta) Nodes() []int32 { return []int32{c.self} }

// Leader implements Controller: this node, always.
func (c *localMeta) Leader() int32 { return c.self }

// Close implements Controller: it waits for a proposal in flight and
// refuses later ones. The broker closes the log itself (closeLogs).
func (c *localMeta) Close() error {
	c.mu.Lock()
	c.closed = true
	c.mu.Unlock()
	return nil
}

// alive implements metaLog: only this node exists.
func (c *localMeta) alive(id int32) bool { return id == c.self }

// nodeRemoved implements metaLog: no other node can be removed
// (UnregisterBroker refuses before proposing).
func (c *localMeta) nodeRemoved(int32) {}

// assignsReplicas implements metaLog: the one node hosts every
// partition, so topics stay unassigned (nil replicas: "every node"). That
// is also what lets this data directory seed a cluster later: its topics
// then live on every node (TestClusterFromStandalone).
func (c *localMeta) assignsReplicas() bool { return false }

// compactIfDue appends a snapshot of the state and drops every record
// before it, when metaCompactThreshold records follow the newest snapshot
// (lastSnapshot, the index foldMeta returned). A crash in between leaves
// both, and replaying both gives the same state. Open calls it before the
// log takes proposals.
func (c *localMeta) compactIfDue(lastSnapshot uint64, snapshot metaRecord) (compacted bool, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	first, last := c.log.FirstIndex(), c.log.LastIndex()
	if last < first || last-lastSnapshot < metaCompactThreshold {
		return false, nil
	}
	index, err := c.appendLocked(encodeMetaRecord(snapshot))
	if err != nil {
		return false, fmt.Errorf("broker: compact metadata log: %w", err)
	}
	if err := c.log.TruncateFront(index); err != nil {
		return false, fmt.Errorf("broker: compact metadata log: %w", err)
	}
	return true, nil
}

// openLocal is Open for a broker that is its own cluster: the metadata log
// is replayed strictly (this node checked every record before writing it,
// so one that does not apply is damage, not a lost race), compacted when
// due, given a cluster id on first start; then every partition opens, data
// the metadata does not name is removed (nothing else writes metadata, so
// the log is complete) and the group coordinator loads.
func (b *Broker) openLocal() error {
	// The coordinator exists before any partition opens: leadership
	// events of __consumer_offsets partitions find it.
	b.groups = b.newGroupCoordinator()
	ctl := newLocalMeta(b.meta, b, b.cfg.NodeID)
	b.metadata = ctl
	lastSnapshot, err := b.foldMeta(b.meta.LastIndex(), true)
	if err != nil {
		return err
	}
	compacted, err := ctl.compactIfDue(lastSnapshot, b.state.snapshot())
	if err != nil {
		return err
	}
	if compacted {
		b.logger.Info().Uint64("first_index", b.meta.FirstIndex()).Msg("metadata log compacted")
	}
	if err := b.replayed(); err != nil {
		return err
	}
	if b.clusterID == "" {
		b.metaWasEmpty = true
		if err := b.propose(metaRecord{Type: metaClusterID, ClusterID: b.newClusterID()}); err != nil {
			return fmt.Errorf("broker: %w", err)
		}
	}
	b.cfg.ClusterID = b.clusterID
	b.openTopics()
	b.removeStrayData()
	return b.openLocalGroups()
}
