package broker

// PartitionHealth counts the partitions this node hosts by how well they
// are served, for the admin listener's metrics and the alerts built on
// them.
type PartitionHealth struct {
	// Hosted is every partition with a replica here (internal topics
	// included).
	Hosted int
	// Leaders is the partitions this node leads (all of them standalone).
	Leaders int
	// UnderReplicated is the partitions this node leads that have a
	// replica that is not live (this node, or a peer it is connected to):
	// Kafka's UnderReplicatedPartitions, counted on the leader only, so a
	// sum over nodes counts each partition once. The same liveness makes
	// acks=all produce answer NOT_ENOUGH_REPLICAS below
	// min.insync.replicas (checkInsync).
	UnderReplicated int
	// Leaderless is the partitions hosted here with no known leader:
	// clients cannot produce to or fetch from them (Kafka's
	// OfflinePartitionsCount, as this node sees it; each replica's node
	// counts the partition).
	Leaderless int
}

// PartitionHealth reports the counts of PartitionHealth now.
func (b *Broker) PartitionHealth() PartitionHealth {
	var h PartitionHealth
	for _, p := range b.allPartitions() {
		h.Hosted++
		switch leader := p.replica.leader.Load(); {
		case leader < 0:
			h.Leaderless++
		case leader == p.replica.self:
			h.Leaders++
			for _, id := range b.PartitionReplicas(p.topic.name, p.index) {
				if !b.metadata.alive(id) {
					h.UnderReplicated++
					break
				}
			}
		}
	}
	return h
}
