package broker

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
)

// Metadata changes take one path in both modes. An admin call checks the
// change against the state (under proposeMu and adminMu), proposes one
// record through b.metadata and waits until it is applied here; ApplyMeta,
// run on every node in log order, folds each committed record into the
// state and opens, closes or reconfigures the partitions this node hosts.
// b.metadata is chosen once, in Open: localMeta (meta_local.go) appends to the
// local metadata log and applies at once; with Replication it is the
// metadata raft group. Two proposals from different nodes may race (two
// creates of one name): the second one's record does not apply
// (metaState.apply refuses it the same way on every node), and its
// proposer finds out by looking at the state afterwards. Proposals from
// one node never race: proposeMu makes the check and the proposal one step.

// proposeTimeout bounds one metadata proposal.
// Below clients' request timeouts, so that they see NOT_CONTROLLER or
// REQUEST_TIMED_OUT and retry rather than time out themselves.
const proposeTimeout = 5 * time.Second

// metaLog is the metadata log's Controller as the broker drives it,
// plus the few facts about the cluster that metadata decisions ask. Open
// picks the implementation once: localMeta for a broker that is its own
// cluster, replicatedMeta for the metadata raft group.
type metaLog interface {
	MetaLog
	// alive reports whether a node is reachable from here now: Metadata
	// lists only live brokers, so that clients do not pick a dead one.
	alive(id int32) bool
	// nodeRemoved tells the replication layer that a node left the
	// cluster (Replication.NodeRemoved).
	nodeRemoved(id int32)
	// assignsReplicas reports whether a new topic's partitions get replica
	// lists. Without them (nil) a partition lives on every node.
	assignsReplicas() bool
}

// lockAdmin takes proposeMu, then adminMu, for an admin call that checks a
// change and proposes it: no other proposal of this node comes between
// the check and the record, so a record this node proposes after its
// checks always applies (a broker that is its own cluster relies on it:
// its replay is strict). unlockAdmin releases both.
func (b *Broker) lockAdmin() {
	b.proposeMu.Lock()
	b.adminMu.Lock()
}

func (b *Broker) unlockAdmin() {
	b.adminMu.Unlock()
	b.proposeMu.Unlock()
}

// propose commits one metadata record through the controller and returns
// once it is applied here. Caller must not hold adminMu: ApplyMeta takes
// it. Errors wrap a *kerr.Error for what a client may retry (NOT_CONTROLLER,
// REQUEST_TIMED_OUT); an error of the metadata log itself is passed on as
// it is (UNKNOWN_SERVER_ERROR, logged).
func (b *Broker) propose(rec metaRecord) error {
	ctx, cancel := context.WithTimeout(context.Background(), proposeTimeout)
	defer cancel()
	if err := b.metadata.Propose(ctx, encodeMetaRecord(rec)); err != nil {
		var ke *kerr.Error
		if !errors.As(err, &ke) && (errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled)) {
			err = fmt.Errorf("%w: %w", kerr.RequestTimedOut, err)
		}
		return fmt.Errorf("metadata %s: %w", rec.Type, err)
	}
	return nil
}

// proposeLocked is propose for a caller holding adminMu: it is released
// while the record is committed and applied, and held again on return.
// A broker closed meanwhile may not have applied the record: ErrClosed.
func (b *Broker) proposeLocked(rec metaRecord) error {
	b.adminMu.Unlock()
	err := b.propose(rec)
	b.adminMu.Lock()
	if err == nil && b.closed.Load() {
		err = ErrClosed
	}
	return err
}

// ApplyMeta implements MetaLogEvents: one committed metadata record, on
// every node, in log order. It is the one place where metadata takes
// effect: the state, the published topics and their partitions.
func (b *Broker) ApplyMeta(record []byte) {
	rec, err := decodeMetaRecord(record)
	if err != nil {
		b.logger.Error().Err(err).Msg("undecodable metadata record skipped")
		return
	}
	b.adminMu.Lock()
	defer b.adminMu.Unlock()
	if b.closed.Load() {
		return
	}
	prev := b.state.topics[rec.Topic]
	if err := b.state.apply(rec); err != nil {
		b.logger.Debug().Err(err).Str("type", rec.Type).Msg("metadata record not applied")
		return
	}
	switch rec.Type {
	case metaClusterID:
		b.mu.Lock()
		b.clusterID = b.state.clusterID
		b.mu.Unlock()
	case metaProducerIDBlock:
		if rec.Node == b.cfg.NodeID {
			b.takeProducerBlock()
		}
	case metaBrokerRegistered:
		b.publishBrokers()
	case metaBrokerRemoved:
		b.mu.Lock()
		for name, t := range b.topics {
			t.meta = b.state.topics[name]
		}
		b.mu.Unlock()
		b.publishBrokers()
		b.metadata.nodeRemoved(rec.Node)
		b.logger.Info().Int32("node", rec.Node).Msg("node removed from the cluster")
	case metaTopicCreated:
		tm := b.state.topics[rec.Topic]
		t := b.newTopic(tm)
		parts := b.openHosted(t, 0, tm.partitions)
		b.mu.Lock()
		t.partitions = parts
		b.topics[t.name], b.byID[t.id] = t, t
		b.mu.Unlock()
		b.logger.Info().Str("topic", rec.Topic).Int32("partitions", tm.partitions).Msg("topic created")
	case metaPartitionsAdded:
		tm := b.state.topics[rec.Topic]
		b.mu.Lock()
		t := b.topics[rec.Topic]
		t.meta = tm // before opening: the new partitions' groups are in it
		b.mu.Unlock()
		parts := b.openHosted(t, prev.partitions, tm.partitions)
		b.mu.Lock()
		t.partitions = append(slices.Clip(t.partitions), parts...)
		b.mu.Unlock()
		b.logger.Info().Str("topic", rec.Topic).Int32("partitions", tm.partitions).Msg("partitions added")
	case metaConfigsAltered:
		tm := b.state.topics[rec.Topic]
		tc := effectiveTopicConfig(&b.cfg, tm.configs)
		b.mu.Lock()
		t := b.topics[rec.Topic]
		t.meta = tm
		t.cfg.Store(&tc)
		b.mu.Unlock()
	case metaTopicDeleted:
		b.applyTopicDeleted(rec.Topic, prev.id)
	case metaReplicasAdded:
		b.applyReplicasAdded(rec)
	case metaUserScramSet, metaUserScramDeleted:
		b.publishScram()
	case metaACLsCreated, metaACLsDeleted:
		b.publishACLs()
	}
}

// applyTopicDeleted unpublishes a deleted topic, closes its partitions,
// removes its data (Open removes what a crash leaves behind) and its
// committed group offsets. adminMu held.
func (b *Broker) applyTopicDeleted(name string, id [16]byte) {
	b.mu.Lock()
	t := b.topics[name]
	delete(b.topics, name)
	delete(b.byID, id)
	b.mu.Unlock()
	for _, p := range t.partitions {
		if p != nil {
			if err := p.close(true); err != nil {
				b.logger.Warn().Err(err).Msg("close deleted partition")
			}
		}
	}
	if err := os.RemoveAll(b.topicDir(id)); err != nil {
		b.logger.Warn().Err(err).Str("topic", name).Msg("remove deleted topic's data")
	}
	b.groups.removeTopicOffsets(name)
	b.logger.Info().Str("topic", name).Msg("topic deleted")
}

// applyReplicasAdded follows a partition's grown replica list: a node that
// hosts the partition passes the list to its replica (the leader adds the
// new voters); a node that was added opens the partition, empty, and waits
// to be added. adminMu held.
func (b *Broker) applyReplicasAdded(rec metaRecord) {
	tm := b.state.topics[rec.Topic]
	b.mu.Lock()
	t := b.topics[rec.Topic]
	var p *partition
	if t != nil {
		t.meta = tm
		if int(rec.Partition) < len(t.partitions) {
			p = t.partitions[rec.Partition]
		}
	}
	b.mu.Unlock()
	if t == nil || int(rec.Partition) >= len(t.partitions) {
		return
	}
	replicas := tm.replicas[rec.Partition]
	if p != nil {
		if r := p.repl(); r != nil {
			r.SetReplicas(replicas)
		}
		return
	}
	if !slices.Contains(rec.Added, b.cfg.NodeID) {
		// Only an added node opens the partition here (and joins the
		// group); an original replica that is not open must not
		// bootstrap the group with the grown list.
		return
	}
	np, err := b.openPartition(t, rec.Partition)
	if err != nil {
		b.logger.Error().Err(err).Str("topic", rec.Topic).Int32("partition", rec.Partition).Msg("open an added replica")
		return
	}
	b.mu.Lock()
	t.partitions[rec.Partition] = np
	b.mu.Unlock()
	b.logger.Info().Str("topic", rec.Topic).Int32("partition", rec.Partition).Ints32("replicas", replicas).
		Msg("replica added here; catching up from the leader")
}

// openHosted opens the partitions in [from, to) that this node hosts, a
// few at a time (creating a log is mostly waiting for directory fsyncs);
// the others stay nil. A partition that fails to open is faulted (logged,
// retried unless corrupt): the proposer checked beforehand that it could
// make and hold them (prepareLogs), and in a cluster the group goes on on
// the other replicas.
func (b *Broker) openHosted(t *topic, from, to int32) []*partition {
	parts := make([]*partition, to-from)
	inParallel(int(to-from), func(k int) {
		if i := from + int32(k); b.hosts(t.meta, i) {
			parts[k] = b.openOrFault(t, i)
		}
	})
	return parts
}

// hosts reports whether this node replicates partition i of a topic. A
// topic without replica lists (created by a broker that was its own
// cluster) lives on every node.
func (b *Broker) hosts(tm *topicMeta, i int32) bool {
	return tm.replicas == nil || slices.Contains(tm.replicas[i], b.cfg.NodeID)
}

// spec describes partition i of a topic: its raft group and replicas
// (every node for a topic without replica lists).
func (b *Broker) spec(t *topic, i int32) ReplicaSpec {
	s := ReplicaSpec{Topic: t.name, TopicID: t.id, Partition: i}
	if int(i) < len(t.meta.raftGroups) {
		s.RaftGroup = t.meta.raftGroups[i]
	}
	if t.meta.replicas == nil {
		s.Replicas = b.metadata.Nodes()
		return s
	}
	s.Replicas = t.meta.replicas[i]
	s.Fresh = true
	if int(i) < len(t.meta.joined) && slices.Contains(t.meta.joined[i], b.cfg.NodeID) {
		s.Fresh, s.Join = false, true
	}
	return s
}

// takeProducerBlock moves this node to the block just allocated to it.
// Caller holds adminMu.
func (b *Broker) takeProducerBlock() {
	if start, ok := b.state.nodeBlocks[b.cfg.NodeID]; ok {
		b.nextProducerID = start
		b.producerIDEnd = start + producerIDBlockSize
	}
}
