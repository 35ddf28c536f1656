package broker

import (
	"errors"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
)

// The group coordinator follows the leaders of __consumer_offsets, in
// both modes (standalone, this node leads every partition from the start
// at epoch 0). Every node builds a groupPartition for each
// __consumer_offsets partition, but a table exists only on the
// partition's leader, as Kafka moves a group's coordinator with the leader
// of its partition:
//
//   - Leadership events (partition.LeaderChanged, on a replication worker)
//     only set the partition's follow flag and wake the coordinator's
//     worker; they never block.
//   - The worker (followLeader) compares the partition's leader and epoch
//     with the table's. Not the leader: the table is dropped and waiting
//     JoinGroup/SyncGroup calls get NOT_COORDINATOR. The leader at a new
//     epoch: the table is dropped, and once the high watermark has reached
//     the log end the partition is replayed into a fresh table, then
//     serves. Waiting for the high
//     watermark makes the replay see every committed record: raft commits
//     the new leader's whole log with its first entry of the new term,
//     and nothing else appends to __consumer_offsets meanwhile (the
//     coordinator is this partition's only writer and does not serve yet).
//   - Group calls for a partition this node does not lead answer
//     NOT_COORDINATOR (clients call FindCoordinator again); while the
//     leader loads, COORDINATOR_LOAD_IN_PROGRESS (retried by clients).
//   - Records go through the partition's normal replicated append; one
//     that fails (NOT_LEADER_OR_FOLLOWER, timeout) answers the call with
//     NOT_COORDINATOR and drops the table, and the worker loads it again if
//     this node still leads.
//
// __consumer_offsets is created through the controller (RF min(3, nodes))
// by whichever node sees it missing once the controller has a leader and
// min(3, configured nodes) voters and registered brokers.

// groupLoadRetry is how often the worker checks a partition whose load
// waits for its high watermark.
const groupLoadRetry = 20 * time.Millisecond

// startClusterGroups starts the worker of the cluster-mode coordinator
// (made before any partition opened, so that leadership events find it)
// and, in the background, creates or finds __consumer_offsets.
func (b *Broker) startClusterGroups() {
	c := b.groups
	c.wg.Add(1)
	go c.run()
	b.wg.Add(1)
	go b.ensureOffsetsClustered()
}

// ensureOffsetsClustered waits for __consumer_offsets to exist, proposing
// its creation while it does not and the controller has a leader, then
// hands its partitions to the coordinator.
func (b *Broker) ensureOffsetsClustered() {
	defer b.wg.Done()
	forever := "-1" // never deleted by time or size: compaction bounds it
	configs := map[string]*string{cfgRetentionMs: &forever, cfgRetentionBytes: &forever, cfgCleanupPolicy: &compactPolicy}
	for delay := 50 * time.Millisecond; ; delay = min(2*delay, time.Second) {
		b.mu.RLock()
		t := b.topics[offsetsTopic]
		b.mu.RUnlock()
		if t != nil {
			b.groups.attach(t)
			return
		}
		// Not while the cluster forms (the controller's voters grow from
		// one node, brokers register one by one): the topic takes its
		// replication factor from the registered brokers.
		want := min(3, b.groups.clusterNodes)
		b.adminMu.Lock()
		registered := len(b.state.brokers)
		b.adminMu.Unlock()
		if b.metadata.Leader() >= 0 && len(b.metadata.Nodes()) >= want && registered >= want {
			_, err := b.CreateTopic(offsetsTopic, b.cfg.OffsetsTopicPartitions, -1, configs, false)
			if err != nil && !errors.Is(err, kerr.TopicAlreadyExists) {
				b.logger.Debug().Err(err).Msg("create " + offsetsTopic + "; retrying")
			}
		}
		select {
		case <-b.stop:
			return
		case <-time.After(delay):
		}
	}
}

// attach makes the coordinator follow the partitions of __consumer_offsets
// and loads, a few at a time, those this node leads already (all of them
// when it is its own cluster; in a cluster the elections come later and the
// worker loads what this node comes to lead).
func (c *groupCoordinator) attach(t *topic) {
	c.b.mu.RLock()
	parts := t.partitions
	c.b.mu.RUnlock()
	gps := make([]*groupPartition, len(parts))
	hosted := 0
	for i, p := range parts {
		gps[i] = c.newPartition(int32(i), p)
		if p != nil {
			hosted++
		}
	}
	c.parts.Store(&gps)
	start := time.Now()
	inParallel(len(gps), func(i int) {
		gps[i].followLeader() // one waiting for its high watermark: the worker retries
	})
	c.loadTook = time.Since(start)
	for _, gp := range gps {
		if gp.p != nil {
			gp.follow.Store(true) // events before now may have found no partition
		}
	}
	c.poke()
	groups := 0
	for _, gp := range gps {
		gp.mu.Lock()
		if gp.table != nil {
			groups += gp.table.Len()
		}
		gp.mu.Unlock()
	}
	c.b.logger.Info().Int("partitions", len(parts)).Int("hosted", hosted).Int("groups", groups).Dur("took", time.Since(start)).
		Msg("group coordinator follows the leaders of " + offsetsTopic)
}

// poke wakes the worker.
func (c *groupCoordinator) poke() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// poke asks the worker to reconsider the partition's leadership.
func (gp *groupPartition) poke() {
	gp.follow.Store(true)
	gp.c.poke()
}

// groupLeaderChanged is partition.LeaderChanged's hook: a __consumer_offsets
// partition's coordinator follows its leader. It runs on a replication
// worker, so it only flags the partition and wakes the coordinator.
func (b *Broker) groupLeaderChanged(p *partition) {
	c := b.groups
	if c == nil || p.topic.name != offsetsTopic {
		return
	}
	parts := c.partitions()
	if int(p.index) < len(parts) && parts[p.index].p == p {
		parts[p.index].poke()
	}
}

// followLeader loads or drops the table to match the partition's
// leadership (the worker, cluster mode). It reports whether a load waits
// for the high watermark (the worker calls again shortly).
func (gp *groupPartition) followLeader() bool {
	p := gp.p
	if p == nil {
		return false
	}
	gp.mu.Lock()
	defer gp.mu.Unlock()
	if gp.closed {
		return false
	}
	r := &p.replica
	leader, epoch := r.leader.Load(), r.epoch.Load()
	if leader != r.self {
		if gp.table != nil || len(gp.waiters) > 0 {
			gp.unload()
			gp.c.b.logger.Info().Int32("partition", gp.index).Int32("leader", leader).Int32("epoch", epoch).
				Msg("no longer the group coordinator of " + offsetsTopic + " partition")
		}
		gp.epoch = -1
		return false
	}
	if gp.table != nil && gp.epoch == epoch {
		return false
	}
	gp.unload()
	gp.epoch = -1
	if p.fault.Load() != nil {
		return false // offline: available answers COORDINATOR_NOT_AVAILABLE
	}
	if hw, end := p.highWatermark.Load(), p.log.NextOffset(); hw < end {
		return true // records of an earlier term may not be committed yet
	}
	gp.epoch = epoch
	start := time.Now()
	n, err := gp.load(true)
	gp.loadErr = err
	if err != nil {
		gp.epoch = -1
		gp.c.b.logger.Error().Err(err).Int32("partition", gp.index).Msg("load groups; retried on the next request")
		return false
	}
	gp.c.loadRecords.Add(n)
	gp.c.b.logger.Info().Int32("partition", gp.index).Int32("epoch", epoch).Int("groups", gp.table.Len()).
		Int64("records", n).Dur("took", time.Since(start)).Msg("group coordinator of " + offsetsTopic + " partition")
	return false
}

// available returns the table if this node coordinates the partition's
// groups now: it leads the partition and its table is loaded. Otherwise
// NOT_COORDINATOR (clients find the coordinator again),
// COORDINATOR_LOAD_IN_PROGRESS while the worker loads it, or
// COORDINATOR_NOT_AVAILABLE while the partition is offline. Caller holds
// mu.
func (gp *groupPartition) available(groupID string) (*GroupTable, error) {
	if gp.closed {
		return nil, errNotCoordinator(groupID, ErrClosed)
	}
	p := gp.p
	if p == nil {
		return nil, errNotCoordinator(groupID, fmt.Errorf("%s-%d is not hosted on node %d", offsetsTopic, gp.index, gp.c.b.cfg.NodeID))
	}
	if err := p.faultErr(); err != nil {
		return nil, fmt.Errorf("group %q: %w: %w", groupID, kerr.CoordinatorNotAvailable, err)
	}
	r := &p.replica
	if leader := r.leader.Load(); leader != r.self {
		return nil, errNotCoordinator(groupID, fmt.Errorf("%s-%d is led by node %d", offsetsTopic, gp.index, leader))
	}
	if gp.table == nil || gp.epoch != r.epoch.Load() {
		gp.poke()
		if gp.loadErr != nil {
			return nil, fmt.Errorf("group %q: %s-%d unreadable (%v): %w", groupID, offsetsTopic, gp.index, gp.loadErr, kerr.CoordinatorNotAvailable)
		}
		return nil, fmt.Errorf("group %q: %s-%d is loading: %w", groupID, offsetsTopic, gp.index, kerr.CoordinatorLoadInProgress)
	}
	return gp.table, nil
}

// removePendingTopics removes the offsets of topics deleted meanwhile (the
// worker).
func (c *groupCoordinator) removePendingTopics() {
	c.removeMu.Lock()
	topics, waiters := c.removeTopics, c.removeWaiters
	c.removeTopics, c.removeWaiters = nil, nil
	c.removeMu.Unlock()
	for _, t := range topics {
		c.removeTopicOffsetsNow(t)
	}
	for _, w := range waiters {
		close(w)
	}
}
