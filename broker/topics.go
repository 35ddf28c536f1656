package broker

import (
	"errors"
	"fmt"
	"maps"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"

	"github.com/twmb/franz-go/pkg/kerr"

	"github.com/chronik-stream/chronik/wal"
)

// topicInfo snapshots a topic. Caller holds b.mu.
func topicInfo(t *topic) TopicInfo {
	return TopicInfo{
		Name:       t.name,
		ID:         t.id,
		Partitions: int32(len(t.partitions)),
		Internal:   isInternalTopic(t.name),
		Configs:    maps.Clone(t.meta.configs),
	}
}

// Topics lists every topic, sorted by name. Like every read of topic
// metadata it takes only b.mu, never adminMu, so that a long CreateTopic
// does not stall Metadata requests.
func (b *Broker) Topics() []TopicInfo {
	b.mu.RLock()
	out := make([]TopicInfo, 0, len(b.topics))
	for _, t := range b.topics {
		out = append(out, topicInfo(t))
	}
	b.mu.RUnlock()
	slices.SortFunc(out, func(x, y TopicInfo) int { return strings.Compare(x.Name, y.Name) })
	return out
}

// Topic returns one topic by name.
func (b *Broker) Topic(name string) (TopicInfo, bool) {
	b.mu.RLock()
	defer b.mu.RUnlock()
	t := b.topics[name]
	if t == nil {
		return TopicInfo{}, false
	}
	return topicInfo(t), true
}

// TopicByID returns one topic by id.
func (b *Broker) TopicByID(id [16]byte) (TopicInfo, bool) {
	b.mu.RLock()
	defer b.mu.RUnlock()
	t := b.byID[id]
	if t == nil {
		return TopicInfo{}, false
	}
	return topicInfo(t), true
}

func unknownTopic(name string) error {
	return fmt.Errorf("topic %q: %w", name, kerr.UnknownTopicOrPartition)
}

// CreateTopic creates a topic, checking in Kafka's order: name, existence
// (and '.'/'_' collisions), partitions, replication factor, configs.
func (b *Broker) CreateTopic(name string, partitions int32, replicationFactor int16, configs map[string]*string, validateOnly bool) (TopicInfo, error) {
	if err := validateTopicName(name); err != nil {
		return TopicInfo{}, err
	}
	b.adminMu.Lock()
	defer b.adminMu.Unlock()
	if b.closed.Load() {
		return TopicInfo{}, ErrClosed
	}
	if _, ok := b.state.topics[name]; ok {
		return TopicInfo{}, fmt.Errorf("topic %q already exists: %w", name, kerr.TopicAlreadyExists)
	}
	cn := collisionName(name)
	for other := range b.state.topics {
		if collisionName(other) == cn {
			return TopicInfo{}, fmt.Errorf("topic %q collides with existing topic %q: %w", name, other, kerr.InvalidTopicException)
		}
	}
	if partitions == -1 {
		partitions = b.cfg.DefaultPartitions
	}
	if partitions < 1 || partitions > maxPartitionsPerTopic {
		return TopicInfo{}, fmt.Errorf("%d partitions, must be 1..%d: %w", partitions, maxPartitionsPerTopic, kerr.InvalidPartitions)
	}
	if b.ctl == nil && replicationFactor != -1 && replicationFactor != 1 {
		return TopicInfo{}, fmt.Errorf("replication factor %d, a standalone broker has 1 replica: %w", replicationFactor, kerr.InvalidReplicationFactor)
	}
	if b.ctl != nil {
		if _, err := b.replicationFactor(replicationFactor); err != nil {
			return TopicInfo{}, err
		}
	}
	set, err := normalizeConfigs(configs, false)
	if err != nil {
		return TopicInfo{}, err
	}
	info := TopicInfo{Name: name, Partitions: partitions, Internal: isInternalTopic(name), Configs: maps.Clone(set)}
	if b.ctl != nil {
		return b.createTopicClustered(info, replicationFactor, set, validateOnly)
	}
	if validateOnly {
		return info, nil
	}

	id := newTopicID()
	for b.byIDLocked(id) {
		id = newTopicID()
	}
	tm := &topicMeta{name: name, id: id, partitions: partitions, configs: set}
	t := b.newTopic(tm)
	parts, err := b.openPartitions(t, 0, partitions)
	if err == nil {
		err = b.appendMeta(metaRecord{Type: metaTopicCreated, Topic: name, ID: topicIDHex(id), Partitions: partitions, Configs: set})
	}
	if err != nil {
		b.discardPartitions(parts)
		os.RemoveAll(b.topicDir(id))
		return TopicInfo{}, fmt.Errorf("create topic %q: %w", name, err)
	}
	b.mu.Lock()
	t.meta = b.state.topics[name]
	t.partitions = parts
	b.topics[name], b.byID[id] = t, t
	b.mu.Unlock()
	b.logger.Info().Str("topic", name).Int32("partitions", partitions).Msg("topic created")
	info.ID = id
	return info, nil
}

func (b *Broker) byIDLocked(id [16]byte) bool {
	b.mu.RLock()
	defer b.mu.RUnlock()
	_, ok := b.byID[id]
	return ok
}

// openPartitions opens partitions [from, to) of t; on error it closes what
// it opened and returns the error.
// A few at a time: creating a log is mostly waiting for directory fsyncs.
func (b *Broker) openPartitions(t *topic, from, to int32) ([]*partition, error) {
	parts := make([]*partition, to-from)
	var (
		wg    sync.WaitGroup
		next  atomic.Int32
		errMu sync.Mutex
		errs  []error
	)
	next.Store(from)
	for range min(int(to-from), 8) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := next.Add(1) - 1; i < to; i = next.Add(1) - 1 {
				p, err := b.openPartition(t, i)
				if err != nil {
					errMu.Lock()
					errs = append(errs, err)
					errMu.Unlock()
					continue
				}
				parts[i-from] = p
			}
		}()
	}
	wg.Wait()
	if len(errs) > 0 {
		b.discardPartitions(slices.DeleteFunc(parts, func(p *partition) bool { return p == nil }))
		return nil, openPartitionsError(errs, int(to-from))
	}
	return parts, nil
}

// openPartitionsError sums up why new partitions failed to open: the first
// error and a count, never thousands of lines. Running out of file
// descriptors (the open-log budget, or the process limit) is
// POLICY_VIOLATION with what to change.
func openPartitionsError(errs []error, n int) error {
	err := errs[0]
	if len(errs) > 1 {
		err = fmt.Errorf("%d of %d new partitions could not be opened; the first: %w", len(errs), n, err)
	}
	if errors.Is(err, wal.ErrTooManyOpenLogs) || errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) {
		return fmt.Errorf("%w: out of file descriptors for partition logs (raise LimitNOFILE, or --max-open-logs within it): %w", kerr.PolicyViolation, err)
	}
	return err
}

// discardPartitions closes partitions that never became visible and removes
// their data.
func (b *Broker) discardPartitions(parts []*partition) {
	for _, p := range parts {
		p.close(true)
		os.RemoveAll(p.dir)
		os.Remove(p.statePath())
	}
}

// AutoCreateTopic returns the topic, creating it with the defaults when
// Config.AutoCreateTopics is on (UNKNOWN_TOPIC_OR_PARTITION when off).
func (b *Broker) AutoCreateTopic(name string) (TopicInfo, error) {
	if info, ok := b.Topic(name); ok {
		return info, nil
	}
	if !b.cfg.AutoCreateTopics {
		return TopicInfo{}, unknownTopic(name)
	}
	info, err := b.CreateTopic(name, -1, -1, nil, false)
	if errors.Is(err, kerr.TopicAlreadyExists) {
		if info, ok := b.Topic(name); ok {
			return info, nil
		}
	}
	return info, err
}

// DeleteTopic deletes a topic: the metadata record first, then the logs are
// closed and their directories removed (Open removes leftovers of a crash
// in between).
func (b *Broker) DeleteTopic(name string) error {
	b.adminMu.Lock()
	defer b.adminMu.Unlock()
	if b.closed.Load() {
		return ErrClosed
	}
	tm, ok := b.state.topics[name]
	if !ok {
		return unknownTopic(name)
	}
	if isInternalTopic(name) {
		return fmt.Errorf("topic %q is internal and cannot be deleted: %w", name, kerr.InvalidTopicException)
	}
	if b.ctl != nil {
		if err := b.proposeLocked(metaRecord{Type: metaTopicDeleted, Topic: name, ID: topicIDHex(tm.id)}); err != nil {
			return fmt.Errorf("delete topic %q: %w", name, err)
		}
		return nil // ApplyMeta closed and removed the partitions
	}
	if err := b.appendMeta(metaRecord{Type: metaTopicDeleted, Topic: name, ID: topicIDHex(tm.id)}); err != nil {
		return fmt.Errorf("delete topic %q: %w", name, err)
	}
	b.mu.Lock()
	t := b.topics[name]
	delete(b.topics, name)
	delete(b.byID, tm.id)
	b.mu.Unlock()
	for _, p := range t.partitions {
		if err := p.close(true); err != nil {
			b.logger.Warn().Err(err).Msg("close deleted partition")
		}
	}
	if err := os.RemoveAll(b.topicDir(tm.id)); err != nil {
		b.logger.Warn().Err(err).Str("topic", name).Msg("remove deleted topic's data; retried on next start")
	}
	b.groups.removeTopicOffsets(name) // Open does it if we crash before
	b.logger.Info().Str("topic", name).Msg("topic deleted")
	return nil
}

// CreatePartitions raises a topic's partition count to count.
func (b *Broker) CreatePartitions(name string, count int32, validateOnly bool) error {
	b.adminMu.Lock()
	defer b.adminMu.Unlock()
	if b.closed.Load() {
		return ErrClosed
	}
	tm, ok := b.state.topics[name]
	if !ok {
		return unknownTopic(name)
	}
	if isInternalTopic(name) {
		// The partition count decides which partition owns each group.
		return fmt.Errorf("topic %q is internal, its partition count is fixed: %w", name, kerr.InvalidTopicException)
	}
	if count <= tm.partitions {
		return fmt.Errorf("topic %q has %d partitions, cannot change to %d: %w", name, tm.partitions, count, kerr.InvalidPartitions)
	}
	if count > maxPartitionsPerTopic {
		return fmt.Errorf("%d partitions, at most %d: %w", count, maxPartitionsPerTopic, kerr.InvalidPartitions)
	}
	if validateOnly {
		return nil
	}
	if b.ctl != nil {
		nodes := b.assignable()
		rf := len(nodes)
		if tm.replicas != nil {
			rf = len(tm.replicas[0])
		}
		rec := metaRecord{Type: metaPartitionsAdded, Topic: name, ID: topicIDHex(tm.id), Partitions: count}
		if tm.replicas != nil {
			rec.Replicas = assignReplicas(name, nodes, min(rf, len(nodes)), tm.partitions, count)
		}
		if err := b.proposeLocked(rec); err != nil {
			return fmt.Errorf("create partitions of %q: %w", name, err)
		}
		if b.state.topics[name] == nil || b.state.topics[name].partitions < count {
			return fmt.Errorf("partitions of %q changed concurrently: %w", name, kerr.InvalidPartitions)
		}
		return nil
	}
	b.mu.RLock()
	t := b.topics[name]
	b.mu.RUnlock()
	parts, err := b.openPartitions(t, tm.partitions, count)
	if err == nil {
		err = b.appendMeta(metaRecord{Type: metaPartitionsAdded, Topic: name, ID: topicIDHex(tm.id), Partitions: count})
	}
	if err != nil {
		b.discardPartitions(parts)
		return fmt.Errorf("create partitions of %q: %w", name, err)
	}
	b.mu.Lock()
	t.meta = b.state.topics[name]
	t.partitions = append(slices.Clip(t.partitions), parts...)
	b.mu.Unlock()
	return nil
}

// TopicConfigs lists every supported config of a topic with its effective
// value and source.
func (b *Broker) TopicConfigs(name string) ([]ConfigEntry, error) {
	b.mu.RLock()
	t := b.topics[name]
	var configs map[string]string
	if t != nil {
		configs = t.meta.configs // never mutated once published
	}
	b.mu.RUnlock()
	if t == nil {
		return nil, unknownTopic(name)
	}
	return describeTopicConfigs(&b.cfg, configs), nil
}

// BrokerConfigs is the read-only broker-level view.
func (b *Broker) BrokerConfigs() []ConfigEntry { return describeBrokerConfigs(&b.cfg) }

// AlterTopicConfigs replaces all topic-level configs (AlterConfigs); a nil
// value leaves that config unset.
func (b *Broker) AlterTopicConfigs(name string, set map[string]*string, validateOnly bool) error {
	configs, err := normalizeConfigs(set, true)
	if err != nil {
		return err
	}
	return b.replaceConfigs(name, func(map[string]string) (map[string]string, error) { return configs, nil }, validateOnly)
}

// IncrementalAlterTopicConfigs applies SET, DELETE, APPEND and SUBTRACT.
func (b *Broker) IncrementalAlterTopicConfigs(name string, ops []ConfigOp, validateOnly bool) error {
	return b.replaceConfigs(name, func(cur map[string]string) (map[string]string, error) {
		return applyConfigOps(&b.cfg, cur, ops)
	}, validateOnly)
}

func (b *Broker) replaceConfigs(name string, change func(map[string]string) (map[string]string, error), validateOnly bool) error {
	b.adminMu.Lock()
	defer b.adminMu.Unlock()
	if b.closed.Load() {
		return ErrClosed
	}
	tm, ok := b.state.topics[name]
	if !ok {
		return unknownTopic(name)
	}
	configs, err := change(tm.configs)
	if err != nil {
		return err
	}
	if validateOnly {
		return nil
	}
	if b.ctl != nil {
		if err := b.proposeLocked(metaRecord{Type: metaConfigsAltered, Topic: name, ID: topicIDHex(tm.id), Configs: configs}); err != nil {
			return fmt.Errorf("alter configs of %q: %w", name, err)
		}
		return nil
	}
	if err := b.appendMeta(metaRecord{Type: metaConfigsAltered, Topic: name, ID: topicIDHex(tm.id), Configs: configs}); err != nil {
		return fmt.Errorf("alter configs of %q: %w", name, err)
	}
	tm = b.state.topics[name]
	tc := effectiveTopicConfig(&b.cfg, tm.configs)
	b.mu.Lock()
	t := b.topics[name]
	t.meta = tm
	t.cfg.Store(&tc)
	b.mu.Unlock()
	return nil
}
