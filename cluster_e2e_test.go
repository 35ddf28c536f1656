package main

// End-to-end cluster tests: three `chronik serve --peers` processes (this
// test binary re-executed as chronik) on 127.0.0.1 with their own data
// directories, driven by franz-go over real TCP. Processes can be
// SIGKILLed and restarted on the same addresses and directories. Peers
// speak mutual TLS with certificates from a CA made for each test cluster
// (writeClusterCerts, as `chronik cluster certs` does).

import (
	"bytes"
	"context"
	"crypto/md5"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/chronik-stream/chronik/wal"
)

// TestMain lets the test binary run as chronik for the cluster tests.
func TestMain(m *testing.M) {
	if os.Getenv("CHRONIK_TEST_RUN_MAIN") == "1" {
		os.Exit(run(os.Args, os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

// testCluster is three chronik processes.
type testCluster struct {
	t     *testing.T
	dir   string
	kafka []string // Kafka addresses, index = node id - 1
	raft  []string
	procs []*exec.Cmd
	logs  []*os.File
	// wrap, if set, runs each node under this command (the node's command
	// line appended), e.g. a shell that lowers a limit and execs.
	wrap []string
	// certs holds ca.pem and node-N.pem, node-N-key.pem for every node.
	certs string
}

// freeAddrs returns n distinct loopback addresses that were free a moment ago.
func freeAddrs(t *testing.T, n int) []string {
	t.Helper()
	var lns []net.Listener
	var out []string
	handedMu.Lock()
	defer handedMu.Unlock()
	for len(out) < n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		lns = append(lns, ln)
		addr := ln.Addr().String()
		if handed[addr] {
			continue // closed by an earlier call and handed out then: the kernel may give it again
		}
		handed[addr] = true
		out = append(out, addr)
	}
	for _, ln := range lns {
		ln.Close()
	}
	return out
}

// handed remembers every address freeAddrs gave out in this test process, so
// two calls never return the same port (a port closed by one call is free to
// the kernel and may come back from the next).
var (
	handedMu sync.Mutex
	handed   = map[string]bool{}
)

// newCluster picks addresses and directories for nodes without starting them.
func newCluster(t *testing.T, nodes int) *testCluster {
	t.Helper()
	addrs := freeAddrs(t, 2*nodes)
	c := &testCluster{t: t, dir: t.TempDir(), kafka: addrs[:nodes], raft: addrs[nodes:],
		procs: make([]*exec.Cmd, nodes), logs: make([]*os.File, nodes)}
	c.certs = filepath.Join(c.dir, "certs")
	ids := make([]uint64, nodes)
	for i := range ids {
		ids[i] = uint64(i + 1)
	}
	if _, err := writeClusterCerts(c.certs, ids, nil, 24*time.Hour); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.stopAll)
	return c
}

// peerTLSArgs are node id's peer TLS flags.
func (c *testCluster) peerTLSArgs(id int) []string {
	n := strconv.Itoa(id)
	return []string{
		"--peer-tls-cert-file", filepath.Join(c.certs, "node-"+n+".pem"),
		"--peer-tls-key-file", filepath.Join(c.certs, "node-"+n+"-key.pem"),
		"--peer-tls-ca-file", filepath.Join(c.certs, "ca.pem"),
	}
}

func startCluster(t *testing.T, nodes int) *testCluster {
	t.Helper()
	c := newCluster(t, nodes)
	c.startAll()
	return c
}

func (c *testCluster) startAll() {
	c.t.Helper()
	nodes := len(c.procs)
	for id := 1; id <= nodes; id++ {
		c.start(id)
	}
	for id := 1; id <= nodes; id++ {
		c.waitUp(id)
	}
}

func (c *testCluster) peers() string { return c.peersUpTo(len(c.raft)) }

// peersUpTo is the --peers value naming nodes 1..n.
func (c *testCluster) peersUpTo(n int) string {
	var parts []string
	for i, a := range c.raft[:n] {
		parts = append(parts, fmt.Sprintf("%d=%s", i+1, a))
	}
	return strings.Join(parts, ",")
}

func (c *testCluster) dataDir(id int) string { return filepath.Join(c.dir, "node"+strconv.Itoa(id)) }

// start runs node id (again) on its addresses and data directory.
func (c *testCluster) start(id int) { c.startWith(id, "--peers", c.peers()) }

// startWith runs node id with extra arguments (startStandalone: none).
// With --peers among them (and no peer security flag), the node gets its
// peer TLS flags.
func (c *testCluster) startWith(id int, extra ...string) {
	c.t.Helper()
	if slices.Contains(extra, "--peers") && !slices.ContainsFunc(extra, func(a string) bool {
		return strings.HasPrefix(a, "--peer-tls-") || a == "--peer-insecure-plaintext"
	}) {
		extra = append(slices.Clone(extra), c.peerTLSArgs(id)...)
	}
	logf, err := os.OpenFile(filepath.Join(c.dir, fmt.Sprintf("node%d.log", id)), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		c.t.Fatal(err)
	}
	args := append([]string{"serve",
		"--node-id", strconv.Itoa(id)}, extra...)
	// The node's Kafka address, unless extra declares its listeners; no
	// admin listener, unless extra asks for one.
	if !slices.Contains(extra, "--listeners") {
		args = append(args, "--listen", c.kafka[id-1])
	}
	if !slices.Contains(extra, "--admin-listen") {
		args = append(args, "--admin-listen", "")
	}
	argv := append([]string{os.Args[0]}, append(args,
		"--data-dir", c.dataDir(id),
		"--log-level", "info",
		"--shutdown-timeout", "10s")...)
	argv = append(slices.Clone(c.wrap), argv...)
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), "CHRONIK_TEST_RUN_MAIN=1")
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		c.t.Fatal(err)
	}
	c.procs[id-1], c.logs[id-1] = cmd, logf
}

// waitUp waits until node id accepts Kafka connections.
// waitLogLine waits up to 30 s for node id's log to hold text.
func (c *testCluster) waitLogLine(id int, text string) {
	c.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		b, _ := os.ReadFile(filepath.Join(c.dir, fmt.Sprintf("node%d.log", id)))
		if strings.Contains(string(b), text) {
			return
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("node %d's log has no %q after 30 s:\n%s", id, text, c.logTail(id))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (c *testCluster) waitUp(id int) {
	c.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		conn, err := net.DialTimeout("tcp", c.kafka[id-1], 200*time.Millisecond)
		if err == nil {
			conn.Close()
			return
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("node %d not listening after 20s: %v\n%s", id, err, c.logTail(id))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// kill SIGKILLs node id.
func (c *testCluster) kill(id int) {
	c.t.Helper()
	cmd := c.procs[id-1]
	if cmd == nil {
		return
	}
	cmd.Process.Kill()
	cmd.Wait()
	c.logs[id-1].Close()
	c.procs[id-1] = nil
}

// stop SIGTERMs node id and waits for a clean exit.
func (c *testCluster) stop(id int) {
	c.t.Helper()
	cmd := c.procs[id-1]
	if cmd == nil {
		return
	}
	cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			c.t.Errorf("node %d exited with %v\n%s", id, err, c.logTail(id))
		}
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		<-done
		c.t.Errorf("node %d did not stop within 30s of SIGTERM\n%s", id, c.logTail(id))
	}
	c.logs[id-1].Close()
	c.procs[id-1] = nil
}

func (c *testCluster) stopAll() {
	if c.t.Failed() {
		for id := 1; id <= len(c.procs); id++ {
			c.t.Logf("node %d log tail:\n%s", id, c.logTail(id))
		}
	}
	for id := range c.procs {
		if c.procs[id] != nil {
			c.procs[id].Process.Kill()
			c.procs[id].Wait()
			c.logs[id].Close()
			c.procs[id] = nil
		}
	}
}

func (c *testCluster) logTail(id int) string {
	b, _ := os.ReadFile(filepath.Join(c.dir, fmt.Sprintf("node%d.log", id)))
	if i := bytes.Index(b, []byte("WARNING: DATA RACE")); i >= 0 {
		return string(b[i:]) // the race detector's report, whole
	}
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}

func (c *testCluster) client(opts ...kgo.Opt) *kgo.Client {
	c.t.Helper()
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(c.kafka...)}, opts...)...)
	if err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(cl.Close)
	return cl
}

// createTopic creates a topic, retrying while the controller elects.
func (c *testCluster) createTopic(name string, partitions int32, rf int16) {
	c.t.Helper()
	adm := kadm.NewClient(c.client())
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		resp, err := adm.CreateTopic(ctx, partitions, rf, nil, name)
		cancel()
		if err == nil && resp.Err == nil {
			if resp.ReplicationFactor != rf {
				c.t.Fatalf("create topic %s with replication factor %d: CreateTopics answered %d", name, rf, resp.ReplicationFactor)
			}
			break
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("create topic %s: %v %v", name, err, resp.Err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	// Wait until every partition has a leader.
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		md, err := adm.Metadata(ctx, name)
		cancel()
		ok := err == nil
		if ok {
			td := md.Topics[name]
			ok = td.Err == nil && len(td.Partitions) == int(partitions)
			for _, p := range td.Partitions {
				ok = ok && p.Err == nil && p.Leader >= 0
			}
		}
		if ok {
			return
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("topic %s has no leaders after 30s: %v", name, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// topicMetadata is a topic as Metadata from the live nodes describes it.
func (c *testCluster) topicMetadata(topic string) kadm.TopicDetail {
	c.t.Helper()
	adm := kadm.NewClient(c.client())
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	md, err := adm.Metadata(ctx, topic)
	if err != nil {
		c.t.Fatal(err)
	}
	return md.Topics[topic]
}

// leader returns the node id leading a partition.
func (c *testCluster) leader(topic string, partition int32) int {
	c.t.Helper()
	return int(c.topicMetadata(topic).Partitions[partition].Leader)
}

// consumeAll reads every record of a topic from the start until the high
// watermarks are reached.
func consumeAll(t *testing.T, c *testCluster, topic string, partitions int32) []*kgo.Record {
	t.Helper()
	adm := kadm.NewClient(c.client())
	var ends kadm.ListedOffsets
	deadline := time.Now().Add(60 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		var err error
		ends, err = adm.ListEndOffsets(ctx, topic)
		cancel()
		if err == nil && ends.Error() == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("list end offsets: %v %v", err, ends.Error())
		}
		time.Sleep(100 * time.Millisecond)
	}
	want := map[int32]int64{}
	total := int64(0)
	ends.Each(func(o kadm.ListedOffset) { want[o.Partition] = o.Offset; total += o.Offset })
	cl := c.client(kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchMaxWait(200*time.Millisecond))
	var recs []*kgo.Record
	for int64(len(recs)) < total {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		fs := cl.PollFetches(ctx)
		cancel()
		fs.EachRecord(func(r *kgo.Record) { recs = append(recs, r) })
		if time.Now().After(deadline) {
			t.Fatalf("consumed %d of %d records in 60s", len(recs), total)
		}
	}
	return recs
}

// TestClusterLeaderKill: acks=all idempotent produce of 100,000 records to
// an RF=3 topic while the leader is SIGKILLed. Every acknowledged record is
// read back exactly once, offsets are contiguous, and after the killed node
// returns all three replicas are byte-identical.
func TestClusterLeaderKill(t *testing.T) {
	const (
		topic   = "kill"
		records = 100_000
	)
	c := startCluster(t, 3)
	c.createTopic(topic, 1, 3)
	victim := c.leader(topic, 0)

	// The CLI prints the replication factor CreateTopics answers; without
	// --replication-factor it is the default, 3 on three nodes.
	for _, rf := range []string{"3", "-1"} {
		var created TopicCreated
		decode(t, ok(t, "", "topic", "create", "--brokers", c.kafka[0], "--replication-factor", rf, "--format", "json", "cli-rf"+rf), &created)
		if created.ReplicationFactor != 3 || created.Partitions != 1 {
			t.Errorf("topic create --replication-factor %s: %+v, want replication factor 3", rf, created)
		}
	}

	prod := c.client(kgo.RequiredAcks(kgo.AllISRAcks()), kgo.DefaultProduceTopic(topic),
		kgo.RecordRetries(1000), kgo.ProducerBatchMaxBytes(64<<10), kgo.RetryTimeout(60*time.Second))
	var (
		mu       sync.Mutex
		acked    = map[string]int64{}
		failed   []error
		wg       sync.WaitGroup
		killedAt time.Time
		firstAck time.Time // first acknowledgement produced after the kill
	)
	value := bytes.Repeat([]byte("v"), 100)
	for i := range records {
		if i == records/4 {
			// Let what is queued so far be acknowledged, then kill.
			if err := prod.Flush(context.Background()); err != nil {
				t.Fatal(err)
			}
			c.kill(victim)
			mu.Lock()
			killedAt = time.Now()
			mu.Unlock()
		}
		key := strconv.Itoa(i)
		wg.Add(1)
		prod.Produce(context.Background(), &kgo.Record{Key: []byte(key), Value: value}, func(r *kgo.Record, err error) {
			defer wg.Done()
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				failed = append(failed, err)
				return
			}
			acked[string(r.Key)] = r.Offset
			if !killedAt.IsZero() && firstAck.IsZero() {
				firstAck = time.Now()
			}
		})
	}
	wg.Wait()
	if len(failed) > 0 {
		t.Fatalf("%d records failed, first: %v", len(failed), failed[0])
	}
	t.Logf("leader node %d killed after %d records; next acknowledgement %v later", victim, records/4, firstAck.Sub(killedAt))

	recs := consumeAll(t, c, topic, 1)
	seen := map[string]int64{}
	for i, r := range recs {
		if r.Offset != int64(i) {
			t.Fatalf("record %d has offset %d: offsets not contiguous", i, r.Offset)
		}
		if prev, dup := seen[string(r.Key)]; dup {
			t.Fatalf("key %s stored twice, at %d and %d", r.Key, prev, r.Offset)
		}
		seen[string(r.Key)] = r.Offset
	}
	for k, off := range acked {
		if got, ok := seen[k]; !ok || got != off {
			t.Fatalf("acknowledged key %s at offset %d: read back at %d (present %v)", k, off, got, ok)
		}
	}
	if len(acked) != records {
		t.Fatalf("%d of %d records acknowledged", len(acked), records)
	}

	// The killed node returns and catches up (every node reports the
	// same log size); then, stopped, all replicas hold identical entries.
	c.start(victim)
	c.waitUp(victim)
	c.waitSameLogSize(topic, 0)
	c.stopAndCompareLogs(topic, 0)
}

// stopAndCompareLogs stops every node, then checks that all of them hold
// identical record entries for a partition of topic.
func (c *testCluster) stopAndCompareLogs(topic string, partition int) {
	c.t.Helper()
	dir := c.topicDir(topic)
	for id := 1; id <= len(c.procs); id++ {
		c.stop(id)
	}
	want := c.partitionDigestOf(1, dir, partition)
	for id := 2; id <= len(c.procs); id++ {
		if got := c.partitionDigestOf(id, dir, partition); got != want {
			c.t.Fatalf("node %d's log of %s-%d differs from node 1's: %s vs %s", id, topic, partition, got, want)
		}
	}
}

// waitSameLogSize waits until every node reports the same size for a
// partition in DescribeLogDirs.
func (c *testCluster) waitSameLogSize(topic string, partition int32) {
	c.t.Helper()
	adm := kadm.NewClient(c.client())
	deadline := time.Now().Add(60 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		all, err := adm.DescribeAllLogDirs(ctx, nil)
		cancel()
		sizes := map[int32]int64{}
		if err == nil {
			all.Each(func(d kadm.DescribedLogDir) {
				d.Topics.Each(func(p kadm.DescribedLogDirPartition) {
					if p.Topic == topic && p.Partition == partition {
						sizes[d.Broker] = p.Size
					}
				})
			})
		}
		want := len(c.procs)
		if md, err := adm.Metadata(context.Background(), topic); err == nil {
			if p, ok := md.Topics[topic].Partitions[partition]; ok {
				want = len(p.Replicas)
			}
		}
		if len(sizes) == want {
			same := true
			var first int64 = -1
			for _, s := range sizes {
				if first < 0 {
					first = s
				}
				same = same && s == first && s > 0
			}
			if same {
				return
			}
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("log sizes of %s-%d still differ after 60s: %v (%v)", topic, partition, sizes, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// topicDir is a topic's directory name under data/ (its id in hex).
func (c *testCluster) topicDir(topic string) string {
	c.t.Helper()
	id := c.topicMetadata(topic).ID
	return hex.EncodeToString(id[:])
}

// partitionDigestOf opens node id's log of partition p of the topic in
// topicDir (the node must be stopped) and digests every record entry:
// index, kind, term, offsets, timestamp and payload.
func (c *testCluster) partitionDigestOf(id int, topicDir string, p int) string {
	c.t.Helper()
	dirs, _ := filepath.Glob(filepath.Join(c.dataDir(id), "data", topicDir, strconv.Itoa(p)))
	var found []string
	for _, d := range dirs {
		if fi, err := os.Stat(d); err == nil && fi.IsDir() {
			found = append(found, d)
		}
	}
	if len(found) != 1 {
		c.t.Fatalf("node %d: partition directories %v, want one", id, found)
	}
	log, err := wal.Open(found[0], wal.Options{})
	if err != nil {
		c.t.Fatal(err)
	}
	defer log.Close()
	h := md5.New()
	n := 0
	for idx := log.FirstIndex(); idx <= log.LastIndex(); idx++ {
		e, err := log.Read(idx)
		if err != nil {
			c.t.Fatal(err)
		}
		if e.Kind != wal.KindData {
			// Stopping the nodes one by one lets the last ones elect
			// and append a no-op the first one never sees.
			continue
		}
		term := max(e.Term, 1) // entries written standalone are term 0 there, term 1 to raft and on new replicas
		fmt.Fprintf(h, "%d %d %d %d %d %d %d\n", idx, e.Kind, term, e.BaseOffset, e.LastOffsetDelta, e.MaxTimestamp, len(e.Payload))
		h.Write(e.Payload)
		n++
	}
	return fmt.Sprintf("%d record entries, next offset %d, md5 %x", n, log.NextOffset(), h.Sum(nil))
}

// TestClusterRollingRestart: each node in turn is stopped (SIGTERM) and
// started again while a producer keeps writing; the client sees nothing
// but retries: every record is acknowledged, and read back exactly once.
func TestClusterRollingRestart(t *testing.T) {
	const topic = "rolling"
	c := startCluster(t, 3)
	c.createTopic(topic, 3, 3)
	prod := c.client(kgo.RequiredAcks(kgo.AllISRAcks()), kgo.DefaultProduceTopic(topic),
		kgo.RecordRetries(1000), kgo.RetryTimeout(60*time.Second), kgo.MetadataMinAge(250*time.Millisecond))

	var (
		mu     sync.Mutex
		acked  = map[string]int32{}
		failed []error
		wg     sync.WaitGroup
	)
	stop := make(chan struct{})
	produced := make(chan int, 1)
	go func() {
		n := 0
		defer func() { produced <- n }()
		for ; n < 200_000; n++ {
			select {
			case <-stop:
				return
			default:
			}
			wg.Add(1)
			prod.Produce(context.Background(), &kgo.Record{Key: []byte(strconv.Itoa(n)), Value: []byte("rolling")}, func(r *kgo.Record, err error) {
				defer wg.Done()
				mu.Lock()
				defer mu.Unlock()
				if err != nil {
					failed = append(failed, err)
					return
				}
				acked[string(r.Key)] = r.Partition
			})
			if n%100 == 99 {
				time.Sleep(2 * time.Millisecond) // a steady load, not a flood
			}
		}
	}()
	ackedCount := func() int {
		mu.Lock()
		defer mu.Unlock()
		return len(acked)
	}
	waitAcks := func(more int) {
		start := ackedCount()
		waitUntil(t, "producer makes progress", 60*time.Second, func() bool { return ackedCount() >= start+more })
	}
	waitAcks(1000)
	for id := 1; id <= 3; id++ {
		c.stop(id)
		waitAcks(1000) // the two others carry on
		c.start(id)
		c.waitUp(id)
		waitAcks(1000)
	}
	close(stop)
	n := <-produced
	wg.Wait()
	if len(failed) > 0 {
		t.Fatalf("%d of %d records failed, first: %v", len(failed), n, failed[0])
	}
	if len(acked) != n {
		t.Fatalf("%d of %d records acknowledged", len(acked), n)
	}
	recs := consumeAll(t, c, topic, 3)
	seen := map[string]bool{}
	for _, r := range recs {
		if seen[string(r.Key)] {
			t.Fatalf("key %s stored twice", r.Key)
		}
		seen[string(r.Key)] = true
	}
	for k := range acked {
		if !seen[k] {
			t.Fatalf("acknowledged key %s lost", k)
		}
	}
	t.Logf("%d records through a rolling restart of 3 nodes", n)
}

// TestClusterFromStandalone: a standalone node with data is restarted with
// peers as node 1 of a three-node cluster; the two new nodes replicate
// every record, the records keep their offsets, and the topic takes writes.
func TestClusterFromStandalone(t *testing.T) {
	const (
		topic   = "legacy"
		records = 10_000
	)
	c := newCluster(t, 3)
	c.startWith(1) // standalone: no --peers
	c.waitUp(1)
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.kafka[0]), kgo.RequiredAcks(kgo.AllISRAcks()), kgo.DefaultProduceTopic(topic))
	if err != nil {
		t.Fatal(err)
	}
	adm := kadm.NewClient(cl)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	if _, err := adm.CreateTopic(ctx, 3, 1, nil, topic); err != nil {
		t.Fatal(err)
	}
	var recs []*kgo.Record
	for i := range records {
		recs = append(recs, &kgo.Record{Key: []byte(strconv.Itoa(i)), Value: []byte("before the cluster")})
	}
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	cancel()
	before := map[string][2]int64{}
	for _, r := range recs {
		before[string(r.Key)] = [2]int64{int64(r.Partition), r.Offset}
	}
	cl.Close()
	c.stop(1)

	c.startAll()
	for p := int32(0); p < 3; p++ {
		c.waitSameLogSize(topic, p)
	}
	prod := c.client(kgo.RequiredAcks(kgo.AllISRAcks()), kgo.DefaultProduceTopic(topic), kgo.RecordRetries(1000))
	ctx, cancel = context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := prod.ProduceSync(ctx, &kgo.Record{Key: []byte("after"), Value: []byte("in the cluster")}).FirstErr(); err != nil {
		t.Fatalf("produce after joining: %v", err)
	}
	got := consumeAll(t, c, topic, 3)
	if len(got) != records+1 {
		t.Fatalf("read %d records, want %d", len(got), records+1)
	}
	for _, r := range got {
		if string(r.Key) == "after" {
			continue
		}
		if want := before[string(r.Key)]; want != [2]int64{int64(r.Partition), r.Offset} {
			t.Fatalf("key %s at %d/%d, was at %d/%d before the cluster", r.Key, r.Partition, r.Offset, want[0], want[1])
		}
	}
	for p := int32(0); p < 3; p++ {
		c.waitSameLogSize(topic, p)
	}
	dir := c.topicDir(topic)
	for id := 1; id <= 3; id++ {
		c.stop(id)
	}
	for p := range 3 {
		want := c.partitionDigestOf(1, dir, p)
		for id := 2; id <= 3; id++ {
			if got := c.partitionDigestOf(id, dir, p); got != want {
				t.Fatalf("partition %d: node %d holds %s, node 1 %s", p, id, got, want)
			}
		}
	}
}

// TestClusterNodeJoins: a fourth node joins a running three-node cluster by
// being added to every node's peers (a rolling restart of the three): the
// controller adds it by conf change, it registers, and a topic created
// afterwards can place replicas on it and replicate to it.
func TestClusterNodeJoins(t *testing.T) {
	c := newCluster(t, 4)
	for id := 1; id <= 3; id++ {
		c.startWith(id, "--peers", c.peersUpTo(3))
	}
	for id := 1; id <= 3; id++ {
		c.waitUp(id)
	}
	c.createTopic("before", 1, 3)

	c.startWith(4, "--peers", c.peersUpTo(4))
	c.waitUp(4)
	for id := 1; id <= 3; id++ {
		c.stop(id)
		c.startWith(id, "--peers", c.peersUpTo(4))
		c.waitUp(id)
	}
	adm := kadm.NewClient(c.client())
	node1, err := kgo.NewClient(kgo.SeedBrokers(c.kafka[0]))
	if err != nil {
		t.Fatal(err)
	}
	defer node1.Close()
	waitUntil(t, "node 4 registered (as node 1 sees it)", 60*time.Second, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		resp, err := node1.Broker(1).Request(ctx, kmsg.NewPtrMetadataRequest())
		if err != nil {
			return false
		}
		for _, b := range resp.(*kmsg.MetadataResponse).Brokers {
			if b.NodeID == 4 {
				return true
			}
		}
		return false
	})
	// Four partitions with three replicas each: node 4 holds some.
	c.createTopic("after", 4, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	md, err := adm.Metadata(ctx, "after")
	cancel()
	if err != nil {
		t.Fatal(err)
	}
	on4 := 0
	for _, p := range md.Topics["after"].Partitions {
		if slices.Contains(p.Replicas, 4) {
			on4++
		}
	}
	if on4 == 0 {
		t.Fatalf("no partition of a topic created after the join has a replica on node 4")
	}
	prod := c.client(kgo.RequiredAcks(kgo.AllISRAcks()), kgo.DefaultProduceTopic("after"), kgo.RecordRetries(1000))
	ctx, cancel = context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var recs []*kgo.Record
	for i := range 400 {
		recs = append(recs, &kgo.Record{Key: []byte(strconv.Itoa(i)), Value: []byte("joined")})
	}
	if err := prod.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	if got := consumeAll(t, c, "after", 4); len(got) != 400 {
		t.Fatalf("read %d of 400 records", len(got))
	}
	for _, p := range md.Topics["after"].Partitions {
		if slices.Contains(p.Replicas, 4) {
			c.waitSameLogSize("after", p.Partition)
		}
	}
}
