package broker

import (
	"errors"
	"fmt"
	"maps"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
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
// (and '.'/'_' collisions), partitions, replication factor, configs. The
// directories of the logs this node will host are made first
// (prepareLogs): a node that cannot make or hold them refuses and proposes
// nothing. ApplyMeta then publishes the topic and opens its partitions.
func (b *Broker) CreateTopic(name string, partitions int32, replicationFactor int16, configs map[string]*string, validateOnly bool) (TopicInfo, error) {
	if err := validateTopicName(name); err != nil {
		return TopicInfo{}, err
	}
	b.lockAdmin()
	defer b.unlockAdmin()
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
	rf, err := b.replicationFactor(replicationFactor)
	if err != nil {
		return TopicInfo{}, err
	}
	set, err := normalizeConfigs(configs, false)
	if err != nil {
		return TopicInfo{}, err
	}
	if err := checkTopicConfigs(set, rf); err != nil {
		return TopicInfo{}, err
	}
	info := TopicInfo{Name: name, Partitions: partitions, Internal: isInternalTopic(name), Configs: maps.Clone(set)}
	if validateOnly {
		return info, nil
	}

	id := newTopicID()
	for b.byIDLocked(id) {
		id = newTopicID()
	}
	rec := metaRecord{Type: metaTopicCreated, Topic: name, ID: topicIDHex(id), Partitions: partitions, Configs: set}
	if b.metadata.assignsReplicas() {
		rec.Replicas = assignReplicas(name, b.assignable(), rf, 0, partitions)
	}
	if err := b.prepareLogs(name, id, 0, partitions, rec.Replicas); err != nil {
		os.RemoveAll(b.topicDir(id))
		return TopicInfo{}, fmt.Errorf("create topic %q: %w", name, err)
	}
	err = b.proposeLocked(rec)
	if tm := b.state.topics[name]; tm == nil || tm.id != id {
		// Not created: the directories made for it go. A record
		// committed after all makes them again when it is applied.
		os.RemoveAll(b.topicDir(id))
		if err == nil {
			err = fmt.Errorf("topic %q was created concurrently: %w", name, kerr.TopicAlreadyExists)
		}
	}
	if err != nil {
		return TopicInfo{}, fmt.Errorf("create topic %q: %w", name, err)
	}
	info.ID = id
	return info, nil
}

func (b *Broker) byIDLocked(id [16]byte) bool {
	b.mu.RLock()
	defer b.mu.RUnlock()
	_, ok := b.byID[id]
	return ok
}

// prepareLogs creates the directories of the partitions in [from, to) of
// a topic that this node will host (replicas: each one's replica list;
// nil: every partition lives on every node) and holds a descriptor on up
// to prepareHeld of them at once, then lets go. The open-log budget
// (Config.MaxOpenLogs) bounds the descriptors the logs hold however many
// partitions there are, closing idle ones to open others, so what a new
// topic needs is room to open logs at all, not a descriptor per partition.
// It runs before the record that creates the partitions is proposed: a
// node that cannot create them or has no descriptors to open them refuses
// the change (POLICY_VIOLATION for descriptors, see openPartitionsError)
// instead of committing partitions it cannot serve. ApplyMeta then opens
// the logs; one that fails there all the same is faulted and retried
// (fault.go).
// prepareHeld is how many descriptors prepareLogs must be able to hold at
// once: the logs a topic's creation opens side by side (inParallel), two
// descriptors each, with room to spare.
const prepareHeld = 64

func (b *Broker) prepareLogs(name string, id [16]byte, from, to int32, replicas [][]int32) error {
	var hosted []int32
	for i := from; i < to; i++ {
		if replicas == nil || slices.Contains(replicas[i-from], b.cfg.NodeID) {
			hosted = append(hosted, i)
		}
	}
	held := make([]*os.File, len(hosted))
	var (
		errMu sync.Mutex
		errs  []error
	)
	inParallel(len(hosted), func(k int) {
		dir := b.partitionDir(id, hosted[k])
		err := os.MkdirAll(dir, 0o750)
		if err == nil && k < prepareHeld {
			held[k], err = os.Open(dir)
		}
		if err != nil {
			errMu.Lock()
			errs = append(errs, fmt.Errorf("open partition %s-%d: %w", name, hosted[k], err))
			errMu.Unlock()
		}
	})
	for _, f := range held {
		if f != nil {
			f.Close()
		}
	}
	if len(errs) > 0 {
		return openPartitionsError(errs, len(hosted))
	}
	return nil
}

// inParallel calls f(0..n-1) on up to 8 goroutines: creating and opening
// logs is mostly waiting for fsyncs.
func inParallel(n int, f func(i int)) {
	var (
		wg   sync.WaitGroup
		next atomic.Int64
	)
	for range min(n, 8) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := next.Add(1) - 1; i < int64(n); i = next.Add(1) - 1 {
				f(int(i))
			}
		}()
	}
	wg.Wait()
}

// partitionDir is where partition i of a topic keeps its log.
func (b *Broker) partitionDir(id [16]byte, i int32) string {
	return filepath.Join(b.topicDir(id), strconv.Itoa(int(i)))
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

// DeleteTopic deletes a topic: the metadata record first; ApplyMeta then
// closes the logs and removes their directories (Open removes leftovers of
// a crash in between).
func (b *Broker) DeleteTopic(name string) error {
	b.lockAdmin()
	defer b.unlockAdmin()
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
	if err := b.proposeLocked(metaRecord{Type: metaTopicDeleted, Topic: name, ID: topicIDHex(tm.id)}); err != nil {
		return fmt.Errorf("delete topic %q: %w", name, err)
	}
	// The groups this node coordinates forget the topic's offsets before
	// the call returns (ApplyMeta only queues that for the coordinator).
	b.groups.waitRemoved()
	return nil
}

// CreatePartitions raises a topic's partition count to count. The new
// partitions get replica lists where the topic has them; the directories
// of their logs on this node are made before the record is proposed
// (prepareLogs).
func (b *Broker) CreatePartitions(name string, count int32, validateOnly bool) error {
	b.lockAdmin()
	defer b.unlockAdmin()
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
	rec := metaRecord{Type: metaPartitionsAdded, Topic: name, ID: topicIDHex(tm.id), Partitions: count}
	if tm.replicas != nil {
		nodes := b.assignable()
		rec.Replicas = assignReplicas(name, nodes, min(len(tm.replicas[0]), len(nodes)), tm.partitions, count)
	}
	// Under adminMu: no apply opens these partitions meanwhile.
	if err := b.prepareLogs(name, tm.id, tm.partitions, count, rec.Replicas); err != nil {
		b.removeUncreated(name, tm.id, tm.partitions, count)
		return fmt.Errorf("create partitions of %q: %w", name, err)
	}
	err := b.proposeLocked(rec)
	if cur := b.state.topics[name]; cur == nil || cur.id != tm.id || cur.partitions < count {
		b.removeUncreated(name, tm.id, tm.partitions, count)
		if err == nil {
			err = fmt.Errorf("partitions of %q changed concurrently: %w", name, kerr.InvalidPartitions)
		}
	}
	if err != nil {
		return fmt.Errorf("create partitions of %q: %w", name, err)
	}
	return nil
}

// removeUncreated removes the directories prepareLogs made for partitions
// [from, to) of a topic that the metadata does not have (now): those of a
// topic deleted meanwhile, or beyond its partition count. adminMu held, so
// no apply opens them meanwhile; a record committed later makes them again.
func (b *Broker) removeUncreated(name string, id [16]byte, from, to int32) {
	cur := b.state.topics[name]
	if cur == nil || cur.id != id {
		os.RemoveAll(b.topicDir(id))
		return
	}
	for i := max(from, cur.partitions); i < to; i++ {
		os.RemoveAll(b.partitionDir(id, i))
	}
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
	b.lockAdmin()
	defer b.unlockAdmin()
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
	if err := checkTopicConfigs(configs, b.topicReplicationFactor(tm)); err != nil {
		return err
	}
	if validateOnly {
		return nil
	}
	if err := b.proposeLocked(metaRecord{Type: metaConfigsAltered, Topic: name, ID: topicIDHex(tm.id), Configs: configs}); err != nil {
		return fmt.Errorf("alter configs of %q: %w", name, err)
	}
	return nil
}

// topicReplicationFactor is the fewest replicas any partition of a topic
// has: every node for a topic created standalone (one on a standalone
// broker). Caller holds adminMu.
func (b *Broker) topicReplicationFactor(tm *topicMeta) int {
	if tm.replicas == nil {
		return len(b.metadata.Nodes())
	}
	rf := math.MaxInt
	for _, rs := range tm.replicas {
		rf = min(rf, len(rs))
	}
	return rf
}
