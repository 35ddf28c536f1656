package broker

import (
	"fmt"
	"time"
)

// The metadata log of a cluster member: the metadata raft group
// (Replication.MetaLog), its open (replay, start, register this node) and
// the cluster id. meta_local.go is the standalone counterpart; both feed
// the one apply path in meta_apply.go.

// replicatedMeta is the metadata raft group (Replication.MetaLog).
type replicatedMeta struct {
	MetaLog
	r Replication
}

func (c replicatedMeta) alive(id int32) bool { return c.r.Alive(id) }

func (c replicatedMeta) nodeRemoved(id int32) { c.r.NodeRemoved(id) }

// assignsReplicas: nodes join and leave, so every partition says where it
// lives.
func (replicatedMeta) assignsReplicas() bool { return true }

// openReplicated is Open for a node of a cluster: replay what is
// committed, open the hosted partitions, start the metadata group,
// register this node, and let the group coordinator follow the leaders of
// __consumer_offsets.
func (b *Broker) openReplicated(r Replication) error {
	// The coordinator exists before any partition opens: leadership
	// events of __consumer_offsets partitions find it.
	b.groups = b.newGroupCoordinator()
	ctl, committed, err := r.MetaLog(b.meta, b)
	if err != nil {
		return fmt.Errorf("broker: metadata group: %w", err)
	}
	b.metadata = replicatedMeta{MetaLog: ctl, r: r}
	fail := func(err error) error {
		if cerr := ctl.Close(); cerr != nil {
			b.logger.Warn().Err(cerr).Msg("close metadata group")
		}
		return err
	}
	// Before Start the controller lists the configured peers; afterwards
	// the voters, which grow from one node while the cluster forms.
	b.groups.clusterNodes = len(ctl.Nodes())
	// Not strict: a record that lost a race with another node's proposal
	// is skipped on every node alike.
	if _, err := b.foldMeta(min(committed, b.meta.LastIndex()), false); err != nil {
		return fail(err)
	}
	if err := b.replayed(); err != nil {
		return fail(err)
	}
	for id := range b.state.removed {
		r.NodeRemoved(id)
	}
	b.openTopics()
	if err := ctl.Start(); err != nil {
		return fail(fmt.Errorf("broker: start metadata group: %w", err))
	}
	b.wg.Add(1)
	go b.register()
	b.startClusterGroups()
	return nil
}

// register proposes the cluster id (when none is set yet) and this node's
// Kafka address until both are in the metadata, retrying while the
// metadata group has no leader.
func (b *Broker) register() {
	defer b.wg.Done()
	self := metaBroker{Node: b.cfg.NodeID, Host: b.cfg.AdvertisedHost, Port: b.cfg.AdvertisedPort, Listeners: b.cfg.Listeners}
	for delay := 50 * time.Millisecond; ; delay = min(2*delay, time.Second) {
		b.adminMu.Lock()
		needID := b.state.clusterID == ""
		registered := b.state.brokers[self.Node].equal(self)
		// A producer id block in hand, so that InitProducerID is answered
		// here without a controller round trip (or a controller at all).
		needBlock := b.nextProducerID >= b.producerIDEnd
		b.adminMu.Unlock()
		var err error
		switch {
		case needID:
			err = b.propose(metaRecord{Type: metaClusterID, ClusterID: b.newClusterID()})
		case !registered:
			err = b.propose(metaRecord{Type: metaBrokerRegistered, Node: self.Node, Host: self.Host, Port: self.Port, Listeners: self.Listeners})
		case needBlock:
			err = b.propose(metaRecord{Type: metaProducerIDBlock, Node: self.Node})
		default:
			b.logger.Info().Int32("node", self.Node).Str("cluster_id", b.ClusterID()).Msg("registered with the controller")
			return
		}
		if err != nil {
			b.logger.Debug().Err(err).Msg("registration not committed yet; retrying")
		}
		select {
		case <-b.stop:
			return
		case <-time.After(delay):
		}
	}
}

// newClusterID is the configured cluster id, else a new one.
func (b *Broker) newClusterID() string {
	if b.cfg.ClusterID != "" {
		return b.cfg.ClusterID
	}
	return newClusterID()
}
