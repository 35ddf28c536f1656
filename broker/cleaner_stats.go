package broker

import (
	"fmt"

	"github.com/twmb/franz-go/pkg/kerr"
)

// What the log cleaner (cleaner.go) has done and where each compacted
// partition stands, for the admin listener's metrics and its
// /v1/topics/{name}/compaction route. Kafka has no protocol API for a
// partition's dirty ratio (its LogCleaner reports it over JMX only), so
// these are read in-process, at scrape or request time, from the
// cleaner's counters and the partitions' own state; nothing here is kept
// for them.

// CompactionStats is the cleaner's work since the broker started and the
// state of every compacted partition hosted here.
type CompactionStats struct {
	// Runs is the cleanings done; Failures those that failed (logged
	// with the partition; tried again when the leader next finds the
	// partition due).
	Runs, Failures int64
	// BytesRead is what the cleaner read (both passes: planning and
	// rewriting); BytesRemoved what rewriting took out of segments.
	BytesRead, BytesRemoved int64
	// Partitions is every partition hosted here whose topic has
	// cleanup.policy compact (or compact,delete), in topic then partition
	// order; partitions of other topics, and of the internal topics, are
	// not listed.
	Partitions []CompactedPartition
}

// CompactedPartition is one compacted partition hosted here.
type CompactedPartition struct {
	Topic     string
	Partition int32
	// DirtyRatio is the share of the sealed segments' bytes written since
	// the last cleaning (what min.cleanable.dirty.ratio is compared
	// with); 0 for a log without sealed segments.
	DirtyRatio float64
	// CleanedUpTo is the offset below which this replica's log was last
	// cleaned (0: never).
	CleanedUpTo int64
	// LogSize is the partition's bytes on disk.
	LogSize int64
	// Offline: the partition cannot serve (KAFKA_STORAGE_ERROR); its
	// ratio and size are 0, not measured.
	Offline bool
}

// TopicCompaction is one topic's compaction state on this node.
type TopicCompaction struct {
	Topic   string
	TopicID [16]byte
	// Compact: the topic's cleanup.policy has compact.
	Compact bool
	// Partitions is the topic's partitions hosted here, in order, when
	// Compact; in cluster mode the others are on other nodes.
	Partitions []CompactedPartition
}

// CompactionStats reads the cleaner's counters and measures every
// compacted partition hosted here.
func (b *Broker) CompactionStats() CompactionStats {
	var st CompactionStats
	if c := b.cleaner; c != nil {
		st.Runs, st.Failures = c.runs.Load(), c.failures.Load()
		st.BytesRead, st.BytesRemoved = c.bytesRead.Load(), c.bytesCleaned.Load()
	}
	for _, p := range b.allPartitions() {
		// The internal topics are compacted too, but by their
		// coordinators' design (cleaner.go): not listed, so that 100
		// partitions nobody configured do not fill the metrics.
		if p.topic.config().compact && !isInternalTopic(p.topic.name) {
			st.Partitions = append(st.Partitions, p.compactionState())
		}
	}
	return st
}

// TopicCompaction reports topic's cleanup policy and, when it compacts,
// the state of each of its partitions hosted here. An unknown topic is
// UNKNOWN_TOPIC_OR_PARTITION.
func (b *Broker) TopicCompaction(topic string) (TopicCompaction, error) {
	b.mu.RLock()
	t := b.topics[topic]
	var parts []*partition
	if t != nil {
		parts = make([]*partition, 0, len(t.partitions))
		for _, p := range t.partitions {
			if p != nil { // cluster mode: not hosted here
				parts = append(parts, p)
			}
		}
	}
	b.mu.RUnlock()
	if t == nil {
		return TopicCompaction{}, fmt.Errorf("topic %q: %w", topic, kerr.UnknownTopicOrPartition)
	}
	out := TopicCompaction{Topic: t.name, TopicID: t.id, Compact: t.config().compact}
	if !out.Compact {
		return out, nil
	}
	out.Partitions = make([]CompactedPartition, 0, len(parts))
	for _, p := range parts {
		out.Partitions = append(out.Partitions, p.compactionState())
	}
	return out, nil
}

// compactionState measures p. A faulted partition's log is not touched
// (it may hold none; see partition.log).
func (p *partition) compactionState() CompactedPartition {
	cp := CompactedPartition{Topic: p.topic.name, Partition: p.index, CleanedUpTo: p.cleanedUpTo.Load()}
	if p.fault.Load() != nil {
		cp.Offline = true
		return cp
	}
	cp.DirtyRatio = p.dirtyRatio()
	cp.LogSize = p.log.Size()
	return cp
}
