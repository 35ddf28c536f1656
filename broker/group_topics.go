package broker

import "time"

// RemoveTopicOffsets drops every committed and pending offset of a deleted
// topic in every group, as Kafka's coordinator does when partitions are deleted:
// the offsets are tombstoned, and a group left Empty without offsets is
// retired (its metadata tombstoned) exactly as offset expiry retires it.
// Without this a topic created again under the same name would find the
// old topic's offsets.
func (t *GroupTable) RemoveTopicOffsets(now time.Time, topic string) GroupOutput {
	var out GroupOutput
	for _, id := range t.sortedIDs() {
		g := t.groups[id]
		var tps []GroupTopicPartition
		for tp := range g.offsets {
			if tp.Topic == topic {
				tps = append(tps, tp)
			}
		}
		for _, tp := range g.txn.partitions() {
			if tp.Topic == topic {
				tps = append(tps, tp) // pending only, or a duplicate removeOffsets skips
			}
		}
		if len(tps) == 0 {
			continue
		}
		g.advance(now)
		g.cleanup(now, g.removeOffsets(tps))
		out.append(g.finish(now))
		t.settle(g, false)
	}
	return out
}

// OffsetTopics returns the topics any group has offsets for, committed or
// pending.
func (t *GroupTable) OffsetTopics() map[string]bool {
	topics := make(map[string]bool)
	for _, g := range t.groups {
		for tp := range g.offsets {
			topics[tp.Topic] = true
		}
		for _, tp := range g.txn.partitions() {
			topics[tp.Topic] = true
		}
	}
	return topics
}
