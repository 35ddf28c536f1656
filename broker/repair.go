package broker

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/rs/zerolog"

	"github.com/chronik-stream/chronik/wal"
)

// PartitionRepair is what Repair found (and, unless it was a dry run, did)
// in one partition's log.
type PartitionRepair struct {
	Topic     string // "" if the metadata log does not name the topic
	Partition int32
	Dir       string
	// Replica: the log is a raft log (cluster mode); after the cut, raft
	// sends the missing entries again from the partition's leader.
	Replica bool
	wal.RepairReport
}

// RepairOptions choose what Repair looks at.
type RepairOptions struct {
	DataDir   string
	Topic     string // "" for every topic
	Partition int32  // -1 for every partition
	DryRun    bool   // report only
	Logger    zerolog.Logger
}

// Repair checks the partition logs of a stopped broker's data directory and
// cuts each damaged one after its last good entry (wal.RepairDir), so the
// broker can serve it again; it returns every partition it found damaged,
// with exactly what was (or would be) removed. It holds the data directory
// lock, so it refuses to run beside a broker. The metadata log is checked
// but never cut: losing its records would forget topics, and with them
// their data; damage there is returned as an error.
//
// In cluster mode the cut replica catches up from its partition's leader
// when the node starts (its raft log continues after the last good entry).
func Repair(opts RepairOptions) ([]PartitionRepair, error) {
	lock, err := LockDataDir(opts.DataDir)
	if err != nil {
		return nil, err
	}
	defer lock.Unlock()
	metaDir := metaLogDir(opts.DataDir)
	if rep, err := wal.CheckDir(metaDir); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("check metadata log: %w", err)
	} else if rep.Damage != nil {
		return nil, fmt.Errorf("the metadata log is damaged (%v); repair does not cut it, since that would forget topics", rep.Damage)
	}
	names, err := topicNames(opts.DataDir, opts.Logger)
	if err != nil {
		return nil, err
	}
	dataDir := filepath.Join(opts.DataDir, "data")
	topicDirs, err := os.ReadDir(dataDir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	var out []PartitionRepair
	found := false
	for _, td := range topicDirs {
		id, err := parseTopicID(td.Name())
		if err != nil || !td.IsDir() {
			continue
		}
		name := names[id]
		if opts.Topic != "" && name != opts.Topic {
			continue
		}
		parts, err := os.ReadDir(filepath.Join(dataDir, td.Name()))
		if err != nil {
			return out, err
		}
		for _, pd := range parts {
			n, err := strconv.ParseInt(pd.Name(), 10, 32)
			if err != nil || !pd.IsDir() || (opts.Partition >= 0 && int32(n) != opts.Partition) {
				continue
			}
			found = true
			dir := filepath.Join(dataDir, td.Name(), pd.Name())
			check := wal.RepairDir
			if opts.DryRun {
				check = wal.CheckDir
			}
			rep, err := check(dir)
			if err != nil {
				return out, fmt.Errorf("repair %s-%d (%s): %w", name, n, dir, err)
			}
			if rep.Damage == nil {
				continue
			}
			_, statErr := os.Stat(filepath.Join(dir, "chronik.state"))
			out = append(out, PartitionRepair{Topic: name, Partition: int32(n), Dir: dir, Replica: statErr == nil, RepairReport: rep})
		}
	}
	if !found && opts.Topic != "" {
		what := "topic " + opts.Topic
		if opts.Partition >= 0 {
			what = fmt.Sprintf("partition %s-%d", opts.Topic, opts.Partition)
		}
		return nil, fmt.Errorf("%s: no such log in %s", what, opts.DataDir)
	}
	slices.SortFunc(out, func(a, b PartitionRepair) int {
		if c := strings.Compare(a.Topic, b.Topic); c != 0 {
			return c
		}
		return int(a.Partition - b.Partition)
	})
	return out, nil
}

// topicNames reads the topic ids and names from the metadata log.
func topicNames(dataDir string, logger zerolog.Logger) (map[[16]byte]string, error) {
	names := make(map[[16]byte]string)
	metaDir := metaLogDir(dataDir)
	if _, err := os.Stat(metaDir); errors.Is(err, os.ErrNotExist) {
		return names, nil
	}
	meta, err := wal.Open(metaDir, wal.Options{})
	if err != nil {
		return nil, fmt.Errorf("open metadata log: %w", err)
	}
	defer meta.Close()
	b := &Broker{logger: logger, meta: meta, state: newMetaState()}
	// Not strict: in cluster mode the log may hold records that lost a
	// race; only the names are needed.
	if _, err := b.foldMeta(meta.LastIndex(), false); err != nil {
		return nil, err
	}
	for _, tm := range b.state.topics {
		names[tm.id] = tm.name
	}
	return names, nil
}
