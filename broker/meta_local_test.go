package broker

import (
	"errors"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"golang.org/x/sys/unix"

	"github.com/chronik-stream/chronik/wal"
)

// writeMeta appends records to a metadata log the way the broker wrote
// them before localMeta existed (appendMeta: one KindMeta entry each).
func writeMeta(t *testing.T, dir string, recs ...metaRecord) {
	t.Helper()
	log, err := wal.Open(filepath.Join(dir, "meta"), wal.Options{Fsync: wal.FsyncAlways})
	if err != nil {
		t.Fatal(err)
	}
	defer log.Close()
	for _, rec := range recs {
		if _, err := log.Append(wal.Entry{Kind: wal.KindMeta, BaseOffset: log.NextOffset(), MaxTimestamp: time.Now().UnixMilli(), Payload: encodeMetaRecord(rec)}); err != nil {
			t.Fatal(err)
		}
	}
}

// readMeta folds a closed broker's metadata log strictly, as every
// version of a standalone broker replays it, and returns the records.
func readMeta(t *testing.T, dir string) (*metaState, []metaRecord) {
	t.Helper()
	log, err := wal.Open(filepath.Join(dir, "meta"), wal.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer log.Close()
	st := newMetaState()
	var recs []metaRecord
	for idx := log.FirstIndex(); idx <= log.LastIndex(); idx++ {
		e, err := log.Read(idx)
		if err != nil {
			t.Fatal(err)
		}
		rec, err := decodeMetaRecord(e.Payload)
		if err == nil {
			err = st.apply(rec)
		}
		if err != nil {
			t.Fatalf("metadata record %d does not apply: %v", idx, err)
		}
		recs = append(recs, rec)
	}
	return st, recs
}

// A standalone data directory written before metadata went through
// localMeta (the global producer_ids record, topics without replica
// lists) opens with the same topics, configs, cluster id and producer ids;
// what the broker writes to it now still replays strictly, and its topics
// stay unassigned (every node hosts them when the directory seeds a
// cluster).
func TestLocalMetaOpensOlderLog(t *testing.T) {
	dir := t.TempDir()
	id, gone := newTopicID(), newTopicID()
	writeMeta(t, dir,
		metaRecord{Type: metaClusterID, ClusterID: "old-cluster"},
		metaRecord{Type: metaTopicCreated, Topic: "t", ID: topicIDHex(id), Partitions: 2, Configs: map[string]string{"retention.ms": "1000"}},
		metaRecord{Type: metaProducerIDs, ProducerIDBlockEnd: 1000},
		metaRecord{Type: metaPartitionsAdded, Topic: "t", ID: topicIDHex(id), Partitions: 3},
		metaRecord{Type: metaTopicCreated, Topic: "gone", ID: topicIDHex(gone), Partitions: 1},
		metaRecord{Type: metaTopicDeleted, Topic: "gone", ID: topicIDHex(gone)},
		metaRecord{Type: metaConfigsAltered, Topic: "t", ID: topicIDHex(id), Configs: map[string]string{"retention.ms": "2000"}},
	)
	b := openBroker(t, Config{DataDir: dir, OffsetsTopicPartitions: 1})
	if b.ClusterID() != "old-cluster" {
		t.Fatalf("cluster id %q", b.ClusterID())
	}
	ti, ok := b.Topic("t")
	if !ok || ti.ID != id || ti.Partitions != 3 || ti.Configs["retention.ms"] != "2000" {
		t.Fatalf("topic t: %+v %v", ti, ok)
	}
	if _, ok := b.Topic("gone"); ok {
		t.Fatal("deleted topic is back")
	}
	if r := b.PartitionReplicas("t", 2); !slices.Equal(r, []int32{0}) {
		t.Fatalf("replicas of t-2: %v", r)
	}
	pid, _, err := b.InitProducerID(nil, 0, -1, -1)
	if err != nil || pid < 1000 {
		t.Fatalf("producer id %d (%v): ids below 1000 were reserved", pid, err)
	}
	// A producer that had an id before the restart is bumped, as before.
	if got, epoch, _ := b.InitProducerID(nil, 0, 5, 0); got != 5 || epoch != 1 {
		t.Fatalf("bump of an id from before the restart: %d epoch %d", got, epoch)
	}
	createTopic(t, b, "new", 2, nil)
	if err := b.CreatePartitions("new", 3, false); err != nil {
		t.Fatal(err)
	}
	if err := b.DeleteTopic("t"); err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}

	st, recs := readMeta(t, dir)
	if len(st.topics) != 2 || st.topics["new"] == nil || st.topics["new"].partitions != 3 || st.topics[offsetsTopic] == nil {
		t.Fatalf("topics after replay: %v", slices.Sorted(maps.Keys(st.topics)))
	}
	for _, tm := range st.topics {
		if tm.replicas != nil {
			t.Fatalf("topic %q created standalone has replica lists %v", tm.name, tm.replicas)
		}
	}
	for _, rec := range recs {
		if rec.Type == metaBrokerRegistered || rec.Replicas != nil {
			t.Fatalf("standalone wrote %+v", rec)
		}
	}
	if st.producerIDBlockEnd <= 1000 || st.nodeBlocks[0] != 1000 {
		t.Fatalf("producer ids: end %d, blocks %v", st.producerIDBlockEnd, st.nodeBlocks)
	}
	if _, err := os.Stat(filepath.Join(dir, "data", topicIDHex(id))); !os.IsNotExist(err) {
		t.Fatalf("deleted topic's data: %v", err)
	}
}

// lowerFileLimit sets the soft RLIMIT_NOFILE so that only a few more
// descriptors can be opened, until the returned func restores it.
func lowerFileLimit(t *testing.T) (restore func()) {
	t.Helper()
	var old unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &old); err != nil {
		t.Fatal(err)
	}
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	open := map[int]bool{}
	for _, e := range ents {
		n, err := strconv.Atoi(e.Name())
		if err != nil {
			t.Fatal(err)
		}
		open[n] = true
	}
	// A new descriptor takes the lowest free number below the limit:
	// leave 24 free.
	limit, free := 0, 0
	for ; free < 24; limit++ {
		if !open[limit] {
			free++
		}
	}
	low := old
	low.Cur = uint64(limit)
	if low.Cur >= old.Cur {
		t.Fatalf("limit %d already", old.Cur)
	}
	if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &low); err != nil {
		t.Fatal(err)
	}
	restored := false
	restore = func() {
		if !restored {
			restored = true
			if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &old); err != nil {
				t.Fatal(err)
			}
		}
	}
	t.Cleanup(restore)
	return restore
}

// waitSettled waits until Open's metadata writes are done: __consumer_offsets
// exists and, in a cluster, register() has registered this node and holds
// a producer id block (nothing else writes metadata on its own).
func waitSettled(t *testing.T, b *Broker) {
	t.Helper()
	waitFor(t, func() bool { _, ok := b.Topic(offsetsTopic); return ok && len(b.Brokers()) == 1 })
	if b.cfg.Replication != nil {
		waitFor(t, func() bool {
			b.adminMu.Lock()
			defer b.adminMu.Unlock()
			return b.state.brokers[b.cfg.NodeID].Host != "" && b.nextProducerID < b.producerIDEnd
		})
	}
}

// dataEntries lists a topic's directory (or, for a zero id, data/).
func dataEntries(t *testing.T, b *Broker, id [16]byte) []string {
	t.Helper()
	dir := filepath.Join(b.cfg.DataDir, "data")
	if id != ([16]byte{}) {
		dir = b.topicDir(id)
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names
}

// A topic or partitions whose logs this node cannot create (here: out of
// file descriptors) are refused with POLICY_VIOLATION before anything is
// proposed, in both modes: no metadata record, no topic, no data left
// behind; the same calls succeed once descriptors are available.
func TestCreateRefusedWhenLogsCannotOpen(t *testing.T) {
	for _, mode := range []string{"standalone", "cluster"} {
		t.Run(mode, func(t *testing.T) {
			cfg := Config{OffsetsTopicPartitions: 1}
			repl := &localReplication{replicas: map[string]*localReplica{}}
			if mode == "cluster" {
				cfg.NodeID, cfg.AdvertisedHost, cfg.AdvertisedPort = 1, "h1", 9001
				cfg.Replication = repl
			}
			b := openBroker(t, cfg)
			waitSettled(t, b)
			info := createTopic(t, b, "t", 1, nil)
			before := b.meta.LastIndex()
			topicDirs := dataEntries(t, b, [16]byte{})
			partDirs := dataEntries(t, b, info.ID)

			restore := lowerFileLimit(t)
			_, createErr := b.CreateTopic("big", 200, -1, nil, false)
			partsErr := b.CreatePartitions("t", 200, false)
			restore()

			for _, err := range []error{createErr, partsErr} {
				wantKerr(t, err, kerr.PolicyViolation)
				if !strings.Contains(err.Error(), "out of file descriptors") {
					t.Fatalf("error %q does not say what ran out", err)
				}
			}
			if _, ok := b.Topic("big"); ok {
				t.Fatal("refused topic exists")
			}
			if ti, _ := b.Topic("t"); ti.Partitions != 1 {
				t.Fatalf("t has %d partitions after a refused CreatePartitions", ti.Partitions)
			}
			if got := b.meta.LastIndex(); got != before {
				t.Fatalf("metadata log grew from %d to %d records", before, got)
			}
			if got := dataEntries(t, b, [16]byte{}); !slices.Equal(got, topicDirs) {
				t.Fatalf("data/ holds %v, before %v", got, topicDirs)
			}
			if got := dataEntries(t, b, info.ID); !slices.Equal(got, partDirs) {
				t.Fatalf("t's directory holds %v, before %v", got, partDirs)
			}

			createTopic(t, b, "big", 200, nil)
			if err := b.CreatePartitions("t", 200, false); err != nil {
				t.Fatal(err)
			}
			for _, topic := range []string{"big", "t"} {
				if rep := repl.replica(topic, 199); rep != nil {
					rep.lead(1, 1)
				}
				mustProduce(t, b, topic, 199, buildBatch(plain(1)))
			}
		})
	}
}

// The same admin calls on a broker that is its own cluster and on a
// one-node cluster take the same path (check, propose, ApplyMeta) and give
// the same answers and the same topics, before and after a restart. Only
// the replica lists differ: a cluster records them.
func TestMetadataSameInBothModes(t *testing.T) {
	type outcome struct {
		call string
		code int16
	}
	run := func(t *testing.T, cfg Config) ([]outcome, []TopicInfo, []TopicInfo) {
		b := openBroker(t, cfg)
		waitSettled(t, b)
		var out []outcome
		note := func(call string, err error) {
			var code int16
			if err != nil {
				var ke *kerr.Error
				if !errors.As(err, &ke) {
					t.Fatalf("%s: %v has no Kafka error code", call, err)
				}
				code = ke.Code
			}
			out = append(out, outcome{call, code})
		}
		create := func(name string, parts int32, rf int16) error {
			_, err := b.CreateTopic(name, parts, rf, nil, false)
			return err
		}
		bad, one := "x", "1000"
		note("create rf 3", create("t", 3, 3))
		note("create rf 0", create("t", 3, 0))
		note("create", create("t", 3, -1))
		note("create again", create("t", 3, 1))
		note("create a.b", create("a.b", 1, 1))
		note("create a_b", create("a_b", 1, 1))
		note("create 0 partitions", create("z", 0, 1))
		note("partitions down", b.CreatePartitions("t", 2, false))
		note("partitions up", b.CreatePartitions("t", 4, false))
		note("partitions of internal", b.CreatePartitions(offsetsTopic, 100, false))
		note("bad config", b.IncrementalAlterTopicConfigs("t", []ConfigOp{{Name: "retention.ms", Op: 0, Value: &bad}}, false))
		note("config", b.IncrementalAlterTopicConfigs("t", []ConfigOp{{Name: "retention.ms", Op: 0, Value: &one}}, false))
		note("delete unknown", b.DeleteTopic("nope"))
		note("delete internal", b.DeleteTopic(offsetsTopic))
		note("delete", b.DeleteTopic("a.b"))
		note("unregister self", b.UnregisterBroker(1))
		note("unregister other", b.UnregisterBroker(7))
		if got := b.ControllerID(); got != 1 {
			t.Fatalf("controller %d", got)
		}
		id1, _, err1 := b.InitProducerID(nil, 0, -1, -1)
		id2, _, err2 := b.InitProducerID(nil, 0, -1, -1)
		if err1 != nil || err2 != nil || id2 != id1+1 {
			t.Fatalf("producer ids %d %d: %v %v", id1, id2, err1, err2)
		}
		before := b.Topics()
		b = reopen(t, b)
		waitFor(t, func() bool { return len(b.Topics()) == len(before) })
		if id, _, err := b.InitProducerID(nil, 0, -1, -1); err != nil || id <= id2 {
			t.Fatalf("producer id %d after restart, %d before: %v", id, id2, err)
		}
		return out, before, b.Topics()
	}
	standalone := Config{NodeID: 1, AdvertisedHost: "h1", AdvertisedPort: 9001, OffsetsTopicPartitions: 2}
	cluster := standalone
	cluster.Replication = &localReplication{replicas: map[string]*localReplica{}}
	sOut, sBefore, sAfter := run(t, standalone)
	cOut, cBefore, cAfter := run(t, cluster)
	if !slices.Equal(sOut, cOut) {
		t.Fatalf("answers differ:\nstandalone %v\ncluster    %v", sOut, cOut)
	}
	if sOut[0].code != kerr.InvalidReplicationFactor.Code || sOut[2].code != 0 || sOut[3].code != kerr.TopicAlreadyExists.Code {
		t.Fatalf("answers %v", sOut)
	}
	same := func(a, b []TopicInfo) bool {
		return slices.EqualFunc(a, b, func(x, y TopicInfo) bool {
			return x.Name == y.Name && x.Partitions == y.Partitions && x.Internal == y.Internal && maps.Equal(x.Configs, y.Configs)
		})
	}
	if !same(sBefore, sAfter) || !same(cBefore, cAfter) || !same(sBefore, cBefore) {
		t.Fatalf("topics differ:\nstandalone %+v\n  reopened %+v\ncluster    %+v\n  reopened %+v", sBefore, sAfter, cBefore, cAfter)
	}
}
