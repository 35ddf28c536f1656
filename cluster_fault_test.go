package main

// Cluster tests that need a hand on the network: three nodes in this
// process (each a cluster.Node, a broker and a Kafka server on its own
// 127.0.0.1 ports and data directory), with the transport's fault
// injection cutting a node off.

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"math/rand/v2"
	"net"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/twmb/franz-go/pkg/kversion"

	"github.com/chronik-stream/chronik/broker"
	"github.com/chronik-stream/chronik/cluster"
	"github.com/chronik-stream/chronik/kafka"
	"github.com/chronik-stream/chronik/wal"
)

type inprocNode struct {
	id    int
	node  *cluster.Node
	b     *broker.Broker
	srv   *kafka.Server
	addr  string
	serve chan error
}

type inprocCluster struct {
	t     *testing.T
	nodes []*inprocNode
}

func startInprocCluster(t *testing.T, n int, mods ...func(*cluster.NodeConfig)) *inprocCluster {
	t.Helper()
	peers := map[uint64]string{}
	rafts := make([]net.Listener, n)
	kafkas := make([]net.Listener, n)
	for i := range n {
		var err error
		if rafts[i], err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
			t.Fatal(err)
		}
		if kafkas[i], err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
			t.Fatal(err)
		}
		peers[uint64(i+1)] = rafts[i].Addr().String()
	}
	c := &inprocCluster{t: t}
	tlsOf := testPeerTLS(t, n)
	for i := range n {
		id := i + 1
		cfg := cluster.NodeConfig{NodeID: uint64(id), Peers: peers, Listener: rafts[i], Logger: zerolog.Nop(), TLS: tlsOf(id)}
		for _, mod := range mods {
			mod(&cfg)
		}
		node, err := cluster.StartNode(cfg)
		if err != nil {
			t.Fatal(err)
		}
		port := kafkas[i].Addr().(*net.TCPAddr).Port
		b, err := broker.Open(broker.Config{
			DataDir: t.TempDir(), NodeID: int32(id), AdvertisedHost: "127.0.0.1", AdvertisedPort: int32(port),
			Replication: node, AutoCreateTopics: true, Logger: zerolog.Nop(),
		})
		if err != nil {
			t.Fatal(err)
		}
		srv := kafka.New(kafka.Config{Logger: zerolog.Nop()}, b)
		in := &inprocNode{id: id, node: node, b: b, srv: srv, addr: kafkas[i].Addr().String(), serve: make(chan error, 1)}
		go func(ln net.Listener) { in.serve <- srv.Serve(ln) }(kafkas[i])
		c.nodes = append(c.nodes, in)
	}
	t.Cleanup(func() {
		for _, in := range c.nodes {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			in.srv.Shutdown(ctx)
			cancel()
			<-in.serve
			in.b.Close()
			in.node.Close()
		}
	})
	return c
}

// isolate cuts node id off from every other node, both ways (nil heals).
func (c *inprocCluster) isolate(id int, cut bool) {
	for _, in := range c.nodes {
		f := cluster.Fault{DropTo: map[uint64]bool{}, DropFrom: map[uint64]bool{}}
		if cut {
			for _, other := range c.nodes {
				if (in.id == id) != (other.id == id) {
					f.DropTo[uint64(other.id)] = true
					f.DropFrom[uint64(other.id)] = true
				}
			}
		}
		in.node.Transport().SetFault(f)
	}
}

// leaderSeenBy is the partition leader according to node id (-1: none).
func (c *inprocCluster) leaderSeenBy(id int, topic string, partition int32) int32 {
	l, _, err := c.nodes[id-1].b.PartitionLeader(topic, partition)
	if err != nil {
		return -1
	}
	return l
}

// createTopic creates an RF=3 topic through adm, retrying while the
// controller elects (an existing topic of that name counts).
func (c *inprocCluster) createTopic(adm *kgo.Client, topic string, partitions int32, configs map[string]string) {
	c.t.Helper()
	waitUntil(c.t, "topic "+topic+" created", 30*time.Second, func() bool {
		req := kmsg.NewPtrCreateTopicsRequest()
		rt := kmsg.NewCreateTopicsRequestTopic()
		rt.Topic, rt.NumPartitions, rt.ReplicationFactor = topic, partitions, 3
		for k, v := range configs {
			cfg := kmsg.NewCreateTopicsRequestTopicConfig()
			cfg.Name, cfg.Value = k, kmsg.StringPtr(v)
			rt.Configs = append(rt.Configs, cfg)
		}
		req.Topics = append(req.Topics, rt)
		req.TimeoutMillis = 5000
		resp, err := req.RequestWith(context.Background(), adm)
		return err == nil && (resp.Topics[0].ErrorCode == 0 || resp.Topics[0].ErrorCode == kerr.TopicAlreadyExists.Code)
	})
}

// waitUntil polls cond until it holds or limit passes.
func waitUntil(t testing.TB, what string, limit time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, limit)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (c *inprocCluster) client(seeds []string, opts ...kgo.Opt) *kgo.Client {
	c.t.Helper()
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(seeds...)}, opts...)...)
	if err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(cl.Close)
	return cl
}

func (c *inprocCluster) addrs(except int) []string {
	var out []string
	for _, in := range c.nodes {
		if in.id != except {
			out = append(out, in.addr)
		}
	}
	return out
}

// produceKeys produces keys [from, to) with acks=all through seeds and
// fails the test on any error.
func produceKeys(t *testing.T, cl *kgo.Client, topic string, from, to int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var recs []*kgo.Record
	for i := from; i < to; i++ {
		recs = append(recs, &kgo.Record{Topic: topic, Key: []byte(strconv.Itoa(i)), Value: []byte("v")})
	}
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatalf("produce keys [%d, %d): %v", from, to, err)
	}
}

// TestClusterLeaderIsolated: the leader cut off from the others stops
// acknowledging acks=all, the majority elects a new leader and takes
// writes, and after the heal nothing acknowledged is lost and nothing the
// isolated leader accepted but never committed appears.
func TestClusterLeaderIsolated(t *testing.T) {
	const topic = "iso"
	c := startInprocCluster(t, 3)
	all := c.addrs(0)
	adm := c.client(all)
	c.createTopic(adm, topic, 1, nil)
	waitUntil(t, "partition leader elected", 30*time.Second, func() bool { return c.leaderSeenBy(1, topic, 0) > 0 })

	prod := c.client(all, kgo.RequiredAcks(kgo.AllISRAcks()), kgo.RecordRetries(1000), kgo.MetadataMinAge(100*time.Millisecond))
	produceKeys(t, prod, topic, 0, 100)

	old := int(c.leaderSeenBy(1, topic, 0))
	c.isolate(old, true)

	// Straight to the isolated leader: acks=all is not acknowledged.
	direct := c.client([]string{c.nodes[old-1].addr})
	batch := kgo.Record{Key: []byte("isolated"), Value: []byte("never committed")}
	req := kmsg.NewPtrProduceRequest()
	req.Acks, req.TimeoutMillis = -1, 3000
	rt := kmsg.NewProduceRequestTopic()
	info, _ := c.nodes[old-1].b.Topic(topic)
	rt.Topic, rt.TopicID = topic, info.ID // by name below v13, by id from v13
	rp := kmsg.NewProduceRequestTopicPartition()
	rp.Records = encodeBatch(t, batch)
	rt.Partitions = append(rt.Partitions, rp)
	req.Topics = append(req.Topics, rt)
	ctx, cancel := context.WithTimeout(context.Background(), 45*time.Second)
	resp, err := direct.Broker(old).Request(ctx, req)
	cancel()
	if err == nil {
		code := resp.(*kmsg.ProduceResponse).Topics[0].Partitions[0].ErrorCode
		if code == 0 {
			t.Fatalf("the isolated leader acknowledged an acks=all produce")
		}
		t.Logf("isolated leader answered %v", kerr.ErrorForCode(code))
	} else {
		t.Logf("isolated leader did not answer: %v", err)
	}

	// The majority elects a new leader and takes writes.
	var others []int
	for _, in := range c.nodes {
		if in.id != old {
			others = append(others, in.id)
		}
	}
	waitUntil(t, "majority elects a new leader", 30*time.Second, func() bool {
		l := c.leaderSeenBy(others[0], topic, 0)
		return l > 0 && int(l) != old && c.leaderSeenBy(others[1], topic, 0) == l
	})
	majority := c.client(c.addrs(old), kgo.RequiredAcks(kgo.AllISRAcks()), kgo.RecordRetries(1000), kgo.MetadataMinAge(100*time.Millisecond))
	produceKeys(t, majority, topic, 100, 200)

	// Heal: the old leader follows and converges.
	c.isolate(old, false)
	newLeader := c.leaderSeenBy(others[0], topic, 0)
	waitUntil(t, "old leader follows the new one", 30*time.Second, func() bool {
		return c.leaderSeenBy(old, topic, 0) == newLeader
	})
	produceKeys(t, prod, topic, 200, 300)

	cons := c.client(all, kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	seen := map[string]int64{}
	deadline := time.Now().Add(30 * time.Second)
	for len(seen) < 300 && time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		fs := cons.PollFetches(ctx)
		cancel()
		fs.EachRecord(func(r *kgo.Record) {
			if string(r.Key) == "isolated" {
				t.Errorf("the isolated leader's uncommitted record is visible at offset %d", r.Offset)
			}
			if prev, dup := seen[string(r.Key)]; dup {
				t.Errorf("key %s at offsets %d and %d", r.Key, prev, r.Offset)
			}
			seen[string(r.Key)] = r.Offset
		})
	}
	for i := range 300 {
		if _, ok := seen[strconv.Itoa(i)]; !ok {
			t.Fatalf("acknowledged key %d lost (read %d records)", i, len(seen))
		}
	}
}

// encodeBatch is one uncompressed v2 batch holding r.
func encodeBatch(t *testing.T, r kgo.Record) []byte {
	t.Helper()
	rec := kmsg.Record{Key: r.Key, Value: r.Value}
	body := rec.AppendTo(nil)[1:] // AppendTo wrote a zero length first
	recBytes := binary.AppendVarint(nil, int64(len(body)))
	recBytes = append(recBytes, body...)
	now := time.Now().UnixMilli()
	b := kmsg.RecordBatch{
		Magic:                2,
		PartitionLeaderEpoch: -1,
		FirstTimestamp:       now,
		MaxTimestamp:         now,
		ProducerID:           -1,
		ProducerEpoch:        -1,
		FirstSequence:        -1,
		NumRecords:           1,
		Records:              recBytes,
	}
	raw := b.AppendTo(nil)
	b.Length = int32(len(raw) - 12)
	raw = b.AppendTo(nil)
	b.CRC = int32(crc32.Checksum(raw[21:], crc32.MakeTable(crc32.Castagnoli)))
	return b.AppendTo(nil)
}

// TestClusterAdmin: /readyz waits for a controller leader, and /metrics
// covers the raft layer (peers, groups, leaders, traffic, commit latency).
func TestClusterAdmin(t *testing.T) {
	c := startInprocCluster(t, 3)
	a := newAdmin()
	n := c.nodes[0]
	a.node.Store(n.node)
	a.setReady(n.b, true)
	h := a.handler()
	get := func(path string) (int, string) {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
		return rec.Code, rec.Body.String()
	}
	waitUntil(t, "/readyz with a controller leader", 30*time.Second, func() bool {
		code, _ := get("/readyz")
		return code == 200
	})
	if n.b.ControllerID() < 1 {
		t.Fatalf("ready without a controller leader (%d)", n.b.ControllerID())
	}
	prod := c.client(c.addrs(0), kgo.RequiredAcks(kgo.AllISRAcks()), kgo.AllowAutoTopicCreation(), kgo.RecordRetries(1000))
	start := time.Now()
	produceKeys(t, prod, "metrics", 0, 10)
	t.Logf("produce took %v", time.Since(start))
	waitUntil(t, "a commit observed somewhere", 30*time.Second, func() bool {
		_, body := get("/metrics")
		return strings.Contains(body, "chronik_cluster_peers_connected 2") &&
			strings.Contains(body, `chronik_cluster_raft_groups{state="all"}`) &&
			strings.Contains(body, "chronik_cluster_controller_leader") &&
			strings.Contains(body, `chronik_cluster_peer_bytes_total{direction="sent"}`) &&
			strings.Contains(body, `chronik_cluster_peer_handshakes_refused_total{reason="id_mismatch",side="accept"} 0`) &&
			strings.Contains(body, `chronik_cluster_peer_handshakes_refused_total{reason="untrusted_certificate",side="dial"} 0`) &&
			strings.Contains(body, "chronik_cluster_peer_certificate_expiry_timestamp_seconds ") &&
			strings.Contains(body, "\nchronik_partitions_under_replicated 0\n") &&
			strings.Contains(body, "\nchronik_partitions_leaderless 0\n")
	})
	// Every partition has one leader among the nodes: the nodes' leader
	// counts add up to the partitions of all topics.
	waitUntil(t, "one leader per partition over the nodes", 30*time.Second, func() bool {
		partitions, leaders := 0, 0
		for _, info := range n.b.Topics() {
			partitions += int(info.Partitions)
		}
		for _, in := range c.nodes {
			leaders += in.b.PartitionHealth().Leaders
		}
		return partitions > 0 && leaders == partitions
	})
	_, body := get("/metrics")
	for _, line := range strings.Split(body, "\n") {
		if strings.HasPrefix(line, `chronik_cluster_raft_groups{state="all"}`) {
			if v, _ := strconv.Atoi(strings.Fields(line)[1]); v < 2 {
				t.Fatalf("%s: want the controller and at least one partition group", line)
			}
		}
	}
}

// TestClusterLeadershipRebalance: partition leaders settle on their
// preferred replicas (spread across nodes); when a node is cut off its
// partitions move, and when it returns they move back.
func TestClusterLeadershipRebalance(t *testing.T) {
	const topic = "spread"
	c := startInprocCluster(t, 3)
	adm := c.client(c.addrs(0))
	c.createTopic(adm, topic, 6, nil)
	preferredLeaders := func() bool {
		for p := int32(0); p < 6; p++ {
			replicas := c.nodes[0].b.PartitionReplicas(topic, p)
			for _, in := range c.nodes {
				if len(replicas) == 0 || c.leaderSeenBy(in.id, topic, p) != replicas[0] {
					return false
				}
			}
		}
		return true
	}
	waitUntil(t, "every partition led by its preferred replica", 60*time.Second, preferredLeaders)
	led := map[int32]int{}
	for p := int32(0); p < 6; p++ {
		led[c.leaderSeenBy(1, topic, p)]++
	}
	if len(led) != 3 {
		t.Fatalf("leaders of 6 partitions on %d nodes (%v), want all 3", len(led), led)
	}

	c.isolate(2, true)
	waitUntil(t, "node 2's partitions move to the majority", 60*time.Second, func() bool {
		for p := int32(0); p < 6; p++ {
			if l := c.leaderSeenBy(1, topic, p); l == 2 || l < 0 {
				return false
			}
		}
		return true
	})
	c.isolate(2, false)
	waitUntil(t, "leaders back on their preferred replicas", 60*time.Second, preferredLeaders)
}

// TestClusterSnapshotCatchUp: a follower cut off while retention drops the
// entries it lacks catches up through a raft snapshot when it returns: its
// log restarts at the leader's log start and follows the high watermark.
func TestClusterSnapshotCatchUp(t *testing.T) {
	const topic = "retained"
	c := startInprocCluster(t, 3)
	adm := c.client(c.addrs(0))
	c.createTopic(adm, topic, 1, map[string]string{"segment.bytes": "1048576", "retention.bytes": "1048576"})
	waitUntil(t, "leader elected", 30*time.Second, func() bool { return c.leaderSeenBy(1, topic, 0) > 0 })
	leader := int(c.leaderSeenBy(1, topic, 0))
	lagging := leader%3 + 1

	c.isolate(lagging, true)
	prod := c.client(c.addrs(lagging), kgo.RequiredAcks(kgo.AllISRAcks()), kgo.DefaultProduceTopic(topic),
		kgo.RecordRetries(1000), kgo.MetadataMinAge(100*time.Millisecond), kgo.ProducerBatchMaxBytes(256<<10))
	var recs []*kgo.Record
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range 1500 { // about 6 MiB that does not compress: several 1 MiB segments
		value := make([]byte, 4096)
		for j := range value {
			value[j] = byte(rng.Uint32())
		}
		recs = append(recs, &kgo.Record{Key: []byte(strconv.Itoa(i)), Value: value})
	}
	value := recs[0].Value
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	began := time.Now()
	if err := prod.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	t.Logf("6 MiB produced in %v with a follower cut off", time.Since(began))
	for _, in := range c.nodes {
		if in.id != lagging {
			in.b.RunRetention()
		}
	}
	leaderStart, leaderHW, err := c.nodes[leader-1].b.PartitionOffsets(topic, 0)
	if err != nil || leaderStart == 0 {
		t.Fatalf("retention on the leader: log start %d (%v); the test needs dropped segments", leaderStart, err)
	}

	c.isolate(lagging, false)
	began = time.Now()
	waitUntil(t, "the lagging follower reaches the high watermark", 60*time.Second, func() bool {
		_, hw, err := c.nodes[lagging-1].b.PartitionOffsets(topic, 0)
		return err == nil && hw == leaderHW
	})
	t.Logf("caught up %v after the heal", time.Since(began))
	c.nodes[lagging-1].b.RunRetention() // takes the log start from the log
	start, _, _ := c.nodes[lagging-1].b.PartitionOffsets(topic, 0)
	if start < leaderStart {
		t.Fatalf("follower log start %d below the leader's %d: it replayed entries retention had dropped", start, leaderStart)
	}

	// It keeps following.
	if err := prod.ProduceSync(ctx, &kgo.Record{Key: []byte("after"), Value: value}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the follower follows new writes", 30*time.Second, func() bool {
		_, hw, _ := c.nodes[lagging-1].b.PartitionOffsets(topic, 0)
		return hw == leaderHW+1
	})
}

// TestClusterRemoveNode: `chronik cluster remove-node 3` takes node 3 out
// of the broker list, the controller group and every partition's
// replicas; the two remaining nodes keep taking writes.
func TestClusterRemoveNode(t *testing.T) {
	const topic = "shrink"
	c := startInprocCluster(t, 3)
	prod := c.client(c.addrs(0), kgo.RequiredAcks(kgo.AllISRAcks()), kgo.AllowAutoTopicCreation(),
		kgo.RecordRetries(1000), kgo.MetadataMinAge(100*time.Millisecond))
	// Auto-creation gives RF min(3, registered nodes): wait for all three.
	waitUntil(t, "all nodes registered", 30*time.Second, func() bool {
		for _, in := range c.nodes {
			if len(in.b.Brokers()) != 3 {
				return false
			}
		}
		return true
	})
	produceKeys(t, prod, topic, 0, 10)
	if r := c.nodes[0].b.PartitionReplicas(topic, 0); len(r) != 3 {
		t.Fatalf("replicas %v, want 3", r)
	}

	var res result
	waitUntil(t, "remove-node answered", 30*time.Second, func() bool {
		res = runCLI(t, "", "cluster", "remove-node", "--brokers", c.nodes[0].addr, "3")
		return res.code == 0
	})
	if !strings.Contains(res.stdout, "removed node 3") {
		t.Fatalf("remove-node output %q", res.stdout)
	}
	waitUntil(t, "node 3 gone from every view", 30*time.Second, func() bool {
		for _, in := range c.nodes[:2] {
			for _, br := range in.b.Brokers() {
				if br.NodeID == 3 {
					return false
				}
			}
			if r := in.b.PartitionReplicas(topic, 0); slices.Contains(r, 3) || len(r) != 2 {
				return false
			}
		}
		return true
	})
	waitUntil(t, "raft groups drop node 3", 30*time.Second, func() bool {
		st := c.nodes[0].node.Engine().Group(cluster.ControllerGroup).Status()
		return len(st.Voters) == 2 && !slices.Contains(st.Voters, 3)
	})
	c.isolate(3, true) // node 3 is gone for good; the others carry on
	produceKeys(t, c.client(c.addrs(3), kgo.RequiredAcks(kgo.AllISRAcks()), kgo.RecordRetries(1000),
		kgo.MetadataMinAge(100*time.Millisecond)), topic, 10, 20)

	if res := runCLI(t, "", "cluster", "remove-node", "--brokers", c.nodes[0].addr, "3"); res.code != 1 || !strings.Contains(res.stderr, "BROKER_ID_NOT_REGISTERED") {
		t.Fatalf("removing node 3 twice: exit %d, %q", res.code, res.stderr)
	}
}

// TestClusterDeleteRecords: DeleteRecords on a replicated partition moves
// the log start, drops whole committed segments under the raft group's
// feet (its snapshot point follows), and the partition keeps taking and
// serving writes.
func TestClusterDeleteRecords(t *testing.T) {
	const topic = "trimmed"
	c := startInprocCluster(t, 3)
	adm := c.client(c.addrs(0))
	c.createTopic(adm, topic, 1, map[string]string{"segment.bytes": "1048576"})
	prod := c.client(c.addrs(0), kgo.RequiredAcks(kgo.AllISRAcks()), kgo.DefaultProduceTopic(topic),
		kgo.RecordRetries(1000), kgo.MetadataMinAge(100*time.Millisecond), kgo.ProducerBatchMaxBytes(256<<10))
	rng := rand.New(rand.NewPCG(3, 4))
	var recs []*kgo.Record
	for i := range 1000 { // about 4 MiB that does not compress
		value := make([]byte, 4096)
		for j := range value {
			value[j] = byte(rng.Uint32())
		}
		recs = append(recs, &kgo.Record{Key: []byte(strconv.Itoa(i)), Value: value})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := prod.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	req := kmsg.NewPtrDeleteRecordsRequest()
	rt := kmsg.NewDeleteRecordsRequestTopic()
	rt.Topic = topic
	rp := kmsg.NewDeleteRecordsRequestTopicPartition()
	rp.Partition, rp.Offset = 0, 900
	rt.Partitions = append(rt.Partitions, rp)
	req.Topics = append(req.Topics, rt)
	req.TimeoutMillis = 5000
	waitUntil(t, "DeleteRecords answered by the leader", 30*time.Second, func() bool {
		resp, err := req.RequestWith(ctx, prod)
		return err == nil && resp.Topics[0].Partitions[0].ErrorCode == 0 && resp.Topics[0].Partitions[0].LowWatermark == 900
	})
	leader := int(c.leaderSeenBy(1, topic, 0))
	_, parts := c.nodes[leader-1].b.LogDirs()
	for _, p := range parts {
		if p.Topic == topic && p.Size > 2<<20 {
			t.Fatalf("leader's log still %d bytes after DeleteRecords to offset 900 of 1000 4 KiB records", p.Size)
		}
	}
	if err := prod.ProduceSync(ctx, &kgo.Record{Key: []byte("after"), Value: []byte("trimmed")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	cons := c.client(c.addrs(0), kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	got := 0
	first := int64(-1)
	for got < 101 && ctx.Err() == nil {
		pctx, pcancel := context.WithTimeout(ctx, 5*time.Second)
		fs := cons.PollFetches(pctx)
		pcancel()
		fs.EachRecord(func(r *kgo.Record) {
			if first < 0 {
				first = r.Offset
			}
			got++
		})
	}
	if first != 900 || got != 101 {
		t.Fatalf("consumed %d records from offset %d, want 101 from 900", got, first)
	}

	// The move is in the partition's raft log: every replica applies it,
	// so the records stay deleted when another node leads.
	waitUntil(t, "log start 900 on every replica", 30*time.Second, func() bool {
		for _, in := range c.nodes {
			if lso, _, err := in.b.PartitionOffsets(topic, 0); err != nil || lso != 900 {
				return false
			}
		}
		return true
	})
	c.isolate(leader, true)
	var next int
	waitUntil(t, "a new leader among the others", 60*time.Second, func() bool {
		for _, in := range c.nodes {
			if in.id != leader && int(c.leaderSeenBy(in.id, topic, 0)) == in.id {
				next = in.id
				return true
			}
		}
		return false
	})
	lso, hw, err := c.nodes[next-1].b.PartitionOffsets(topic, 0)
	if err != nil || lso != 900 || hw != 1001 {
		t.Fatalf("new leader %d: log start %d, high watermark %d, %v; want 900 and 1001", next, lso, hw, err)
	}
	cons2 := c.client([]string{c.nodes[next-1].addr}, kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.MetadataMinAge(100*time.Millisecond))
	first = -1
	for first < 0 && ctx.Err() == nil {
		pctx, pcancel := context.WithTimeout(ctx, 5*time.Second)
		cons2.PollFetches(pctx).EachRecord(func(r *kgo.Record) {
			if first < 0 {
				first = r.Offset
			}
		})
		pcancel()
	}
	if first != 900 {
		t.Fatalf("after the failover the first record consumed is at offset %d, want 900", first)
	}
}

// TestClusterAcks1: acks=1 is answered once the leader's own log has the
// records, acks=all once a quorum has them. The leader stops hearing its
// followers (it still reaches them); an election timeout of 20 s keeps it
// leader meanwhile (CheckQuorum deposes it only after that). An acks=1
// record is acknowledged, the high watermark stays before it, an acks=all
// record waits; once the leader hears the followers again both commit and
// are consumed in order.
func TestClusterAcks1(t *testing.T) {
	const topic = "acks1"
	c := startInprocCluster(t, 3, func(cfg *cluster.NodeConfig) { cfg.ElectionTicks = 200 })
	adm := c.client(c.addrs(0))
	c.createTopic(adm, topic, 1, nil)
	all := c.client(c.addrs(0), kgo.DefaultProduceTopic(topic), kgo.RecordRetries(1000), kgo.MetadataMinAge(100*time.Millisecond))
	produceKeys(t, all, topic, 0, 1)
	leader := int(c.leaderSeenBy(1, topic, 0))
	hw := func() int64 {
		res, err := c.nodes[leader-1].b.Fetch(topic, 0, 0, 1<<20, 0)
		if err != nil {
			t.Fatalf("fetch on leader %d: %v", leader, err)
		}
		return res.HighWatermark
	}
	waitUntil(t, "the first record committed", 30*time.Second, func() bool { return hw() == 1 })

	deaf := cluster.Fault{DropFrom: map[uint64]bool{}}
	for _, in := range c.nodes {
		if in.id != leader {
			deaf.DropFrom[uint64(in.id)] = true
		}
	}
	c.nodes[leader-1].node.Transport().SetFault(deaf)

	one := c.client([]string{c.nodes[leader-1].addr}, kgo.DefaultProduceTopic(topic),
		kgo.RequiredAcks(kgo.LeaderAck()), kgo.DisableIdempotentWrite(), kgo.RecordRetries(0))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	r, err := one.ProduceSync(ctx, &kgo.Record{Key: []byte("1"), Value: []byte("acks=1")}).First()
	cancel()
	if err != nil {
		t.Fatalf("acks=1 produce to a leader that hears no follower: %v", err)
	}
	if r.Offset != 1 {
		t.Fatalf("acks=1 record at offset %d, want 1", r.Offset)
	}
	if got := hw(); got != 1 {
		t.Fatalf("high watermark %d after an uncommitted acks=1 record, want 1", got)
	}
	acked := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		acked <- all.ProduceSync(ctx, &kgo.Record{Key: []byte("2"), Value: []byte("acks=all")}).FirstErr()
	}()
	logSize := func() int64 {
		_, parts := c.nodes[leader-1].b.LogDirs()
		for _, p := range parts {
			if p.Topic == topic {
				return p.Size
			}
		}
		return -1
	}
	before := logSize()
	waitUntil(t, "the acks=all record in the leader's log", 30*time.Second, func() bool { return logSize() > before })
	select {
	case err := <-acked:
		t.Fatalf("acks=all answered (%v) while the leader heard no follower", err)
	default:
	}

	c.nodes[leader-1].node.Transport().SetFault(cluster.Fault{})
	if err := <-acked; err != nil {
		t.Fatalf("acks=all after the leader hears its followers again: %v", err)
	}
	waitUntil(t, "both records committed", 30*time.Second, func() bool { return hw() == 3 })
	cons := c.client(c.addrs(0), kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	var keys []string
	cctx, ccancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer ccancel()
	for len(keys) < 3 && cctx.Err() == nil {
		cons.PollFetches(cctx).EachRecord(func(r *kgo.Record) { keys = append(keys, string(r.Key)) })
	}
	if want := []string{"0", "1", "2"}; !slices.Equal(keys, want) {
		t.Fatalf("consumed keys %q, want %q", keys, want)
	}
}

// TestClusterProduceLeaderHint: a follower answers Produce v10+ (and
// Fetch v16+) with NOT_LEADER_OR_FOLLOWER, the current leader and epoch,
// and the leader's endpoint (KIP-951), so that clients move the partition
// without waiting for a metadata refresh.
func TestClusterProduceLeaderHint(t *testing.T) {
	const topic = "hint"
	c := startInprocCluster(t, 3)
	adm := c.client(c.addrs(0))
	c.createTopic(adm, topic, 1, nil)
	waitUntil(t, "every node knows the leader", 30*time.Second, func() bool {
		l := c.leaderSeenBy(1, topic, 0)
		return l > 0 && c.leaderSeenBy(2, topic, 0) == l && c.leaderSeenBy(3, topic, 0) == l
	})
	leader, epoch, err := c.nodes[0].b.PartitionLeader(topic, 0)
	if err != nil || leader < 1 {
		t.Fatalf("leader %d, %v", leader, err)
	}
	follower := 1
	if int(leader) == 1 {
		follower = 2
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, version := range []int16{9, 11} {
		// kgo sends the highest version both sides support: cap it.
		versions := kversion.Stable()
		versions.SetMaxKeyVersion(0, version)
		cl := c.client([]string{c.nodes[follower-1].addr}, kgo.MaxVersions(versions))
		req := kmsg.NewPtrProduceRequest()
		req.Version, req.Acks, req.TimeoutMillis = version, -1, 5000
		rt := kmsg.NewProduceRequestTopic()
		rt.Topic = topic
		rp := kmsg.NewProduceRequestTopicPartition()
		rp.Records = encodeBatch(t, kgo.Record{Value: []byte("v")})
		rt.Partitions = append(rt.Partitions, rp)
		req.Topics = append(req.Topics, rt)
		resp, err := req.RequestWith(ctx, cl.Broker(follower))
		if err != nil {
			t.Fatal(err)
		}
		sp := resp.Topics[0].Partitions[0]
		if sp.ErrorCode != kerr.NotLeaderForPartition.Code {
			t.Fatalf("v%d produce to follower %d: %v, want NOT_LEADER_OR_FOLLOWER", version, follower, kerr.ErrorForCode(sp.ErrorCode))
		}
		if version < 10 {
			if sp.CurrentLeader.LeaderID != -1 || len(resp.Brokers) != 0 {
				t.Fatalf("v%d carries a leader hint: %+v %+v", version, sp.CurrentLeader, resp.Brokers)
			}
			continue
		}
		if sp.CurrentLeader.LeaderID != leader || sp.CurrentLeader.LeaderEpoch != epoch {
			t.Fatalf("v%d hint: leader %d epoch %d, want %d %d", version, sp.CurrentLeader.LeaderID, sp.CurrentLeader.LeaderEpoch, leader, epoch)
		}
		if len(resp.Brokers) != 1 || resp.Brokers[0].NodeID != leader ||
			net.JoinHostPort(resp.Brokers[0].Host, strconv.Itoa(int(resp.Brokers[0].Port))) != c.nodes[leader-1].addr {
			t.Fatalf("v%d endpoints %+v, want node %d at %s", version, resp.Brokers, leader, c.nodes[leader-1].addr)
		}
	}

	// Fetch, the newest version kgo and Chronik share (v16+ carries the
	// endpoints).
	info, ok := c.nodes[follower-1].b.Topic(topic)
	if !ok {
		t.Fatalf("topic %s unknown on node %d", topic, follower)
	}
	cl := c.client([]string{c.nodes[follower-1].addr})
	freq := kmsg.NewPtrFetchRequest()
	freq.MaxWaitMillis, freq.MaxBytes, freq.SessionEpoch = 0, 1<<20, -1
	ft := kmsg.NewFetchRequestTopic()
	ft.Topic, ft.TopicID = topic, info.ID
	fp := kmsg.NewFetchRequestTopicPartition()
	fp.PartitionMaxBytes, fp.CurrentLeaderEpoch = 1<<20, -1
	ft.Partitions = append(ft.Partitions, fp)
	freq.Topics = append(freq.Topics, ft)
	fresp, err := freq.RequestWith(ctx, cl.Broker(follower))
	if err != nil {
		t.Fatal(err)
	}
	if fresp.Version < 16 {
		t.Fatalf("fetch went out as v%d, want v16+", fresp.Version)
	}
	fpr := fresp.Topics[0].Partitions[0]
	if fpr.ErrorCode != kerr.NotLeaderForPartition.Code || fpr.CurrentLeader.LeaderID != leader || fpr.CurrentLeader.LeaderEpoch != epoch {
		t.Fatalf("fetch v%d from follower: %v, leader %d epoch %d; want NOT_LEADER_OR_FOLLOWER, %d, %d", fresp.Version,
			kerr.ErrorForCode(fpr.ErrorCode), fpr.CurrentLeader.LeaderID, fpr.CurrentLeader.LeaderEpoch, leader, epoch)
	}
	if len(fresp.Brokers) != 1 || fresp.Brokers[0].NodeID != leader {
		t.Fatalf("fetch endpoints %+v, want node %d", fresp.Brokers, leader)
	}
}

// TestClusterRemoveNodeReplaces: four nodes, an RF=3 topic; removing one
// of its replicas' nodes gives each of its partitions a replacement on the
// node left over, which catches up with every record and takes part in
// commits once the removed node is gone.
func TestClusterRemoveNodeReplaces(t *testing.T) {
	const topic = "moved"
	c := startInprocCluster(t, 4)
	waitUntil(t, "all nodes registered", 60*time.Second, func() bool {
		for _, in := range c.nodes {
			if len(in.b.Brokers()) != 4 {
				return false
			}
		}
		return true
	})
	adm := c.client(c.addrs(0))
	c.createTopic(adm, topic, 2, nil)
	prod := c.client(c.addrs(0), kgo.DefaultProduceTopic(topic), kgo.RecordRetries(1000), kgo.MetadataMinAge(100*time.Millisecond))
	produceKeys(t, prod, topic, 0, 1000)

	// A replica of partition 0 other than node 1 goes.
	before := c.nodes[0].b.PartitionReplicas(topic, 0)
	gone := int32(-1)
	for _, id := range before {
		if id != 1 {
			gone = id
			break
		}
	}
	if len(before) != 3 || gone < 0 {
		t.Fatalf("replicas of %s-0: %v", topic, before)
	}
	waitUntil(t, "node removed", 30*time.Second, func() bool { return c.nodes[0].b.UnregisterBroker(gone) == nil })
	c.isolate(int(gone), true)

	for p := range int32(2) {
		var added int32
		waitUntil(t, fmt.Sprintf("%s-%d has three replicas without node %d", topic, p, gone), 30*time.Second, func() bool {
			rs := c.nodes[0].b.PartitionReplicas(topic, p)
			if len(rs) != 3 || slices.Contains(rs, gone) {
				return false
			}
			for _, id := range rs {
				if !slices.Contains(before, id) || id == gone {
					added = id
				}
			}
			return true
		})
		_, hw, err := c.nodes[0].b.PartitionOffsets(topic, p)
		if err != nil {
			t.Fatal(err)
		}
		if added > 0 { // partition 1 may not have had node gone
			waitUntil(t, fmt.Sprintf("node %d catches up on %s-%d", added, topic, p), 60*time.Second, func() bool {
				_, got, err := c.nodes[added-1].b.PartitionOffsets(topic, p)
				return err == nil && got >= hw
			})
		}
	}
	// Commits go on with the removed node cut off, and reach the new replicas.
	produceKeys(t, c.client(c.addrs(int(gone)), kgo.DefaultProduceTopic(topic), kgo.RecordRetries(1000),
		kgo.MetadataMinAge(100*time.Millisecond)), topic, 1000, 1100)
	for p := range int32(2) {
		_, hw, _ := c.nodes[0].b.PartitionOffsets(topic, p)
		for _, id := range c.nodes[0].b.PartitionReplicas(topic, p) {
			waitUntil(t, fmt.Sprintf("node %d has %s-%d up to %d", id, topic, p, hw), 60*time.Second, func() bool {
				_, got, err := c.nodes[id-1].b.PartitionOffsets(topic, p)
				return err == nil && got >= hw
			})
		}
	}
}

// TestClusterOffsetForLeaderEpoch: the leader epoch is the raft term, and
// OffsetForLeaderEpoch answers an older epoch with where the next one
// began (KIP-320), the current one with the high watermark.
func TestClusterOffsetForLeaderEpoch(t *testing.T) {
	const topic = "epochs"
	c := startInprocCluster(t, 3)
	adm := c.client(c.addrs(0))
	c.createTopic(adm, topic, 1, nil)
	produceKeys(t, c.client(c.addrs(0), kgo.RecordRetries(1000), kgo.MetadataMinAge(100*time.Millisecond)), topic, 0, 10)
	old, e1, err := c.nodes[0].b.PartitionLeader(topic, 0)
	if err != nil || old < 1 {
		t.Fatalf("leader %d, %v", old, err)
	}
	c.isolate(int(old), true)
	var lead int32
	waitUntil(t, "a new leader", 60*time.Second, func() bool {
		for _, in := range c.nodes {
			if int32(in.id) != old && c.leaderSeenBy(in.id, topic, 0) == int32(in.id) {
				lead = int32(in.id)
				return true
			}
		}
		return false
	})
	produceKeys(t, c.client(c.addrs(int(old)), kgo.RecordRetries(1000), kgo.MetadataMinAge(100*time.Millisecond)), topic, 10, 15)
	// Everything below is asked while the old leader is still cut off:
	// once it is back, leadership returns to it (the preferred replica).
	_, e2, _ := c.nodes[lead-1].b.PartitionLeader(topic, 0)
	if e2 <= e1 {
		t.Fatalf("epoch %d after the election, was %d", e2, e1)
	}

	ask := func(node int32, epoch int32) kmsg.OffsetForLeaderEpochResponseTopicPartition {
		t.Helper()
		cl := c.client([]string{c.nodes[node-1].addr})
		req := kmsg.NewPtrOffsetForLeaderEpochRequest()
		rt := kmsg.NewOffsetForLeaderEpochRequestTopic()
		rt.Topic = topic
		rp := kmsg.NewOffsetForLeaderEpochRequestTopicPartition()
		rp.LeaderEpoch, rp.CurrentLeaderEpoch = epoch, -1
		rt.Partitions = append(rt.Partitions, rp)
		req.Topics = append(req.Topics, rt)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		resp, err := req.RequestWith(ctx, cl.Broker(int(node)))
		if err != nil {
			t.Fatal(err)
		}
		return resp.Topics[0].Partitions[0]
	}
	for _, c := range []struct {
		epoch, wantEpoch int32
		wantEnd          int64
	}{
		{e1, e1, 10},
		{e2, e2, 15},
		{e2 + 1, -1, -1},
	} {
		got := ask(lead, c.epoch)
		if got.ErrorCode != 0 || got.LeaderEpoch != c.wantEpoch || got.EndOffset != c.wantEnd {
			t.Errorf("epoch %d: %v, epoch %d, end %d; want %d, %d", c.epoch, kerr.ErrorForCode(got.ErrorCode), got.LeaderEpoch, got.EndOffset, c.wantEpoch, c.wantEnd)
		}
	}
	follower := int32(1)
	for follower == lead || follower == old {
		follower++
	}
	waitUntil(t, "the follower knows the new leader", 60*time.Second, func() bool { return c.leaderSeenBy(int(follower), topic, 0) == lead })
	if got := ask(follower, e2); got.ErrorCode != kerr.NotLeaderForPartition.Code {
		t.Errorf("follower %d (leader %d, old %d): %v epoch %d end %d, want NOT_LEADER_OR_FOLLOWER", follower, lead, old, kerr.ErrorForCode(got.ErrorCode), got.LeaderEpoch, got.EndOffset)
	}
}

// replayEvents records what a replica reports.
type replayEvents struct {
	leader   atomic.Int32
	epoch    atomic.Int32
	hw       atomic.Int64
	logStart atomic.Int64
}

func (e *replayEvents) Committed(hw int64) { e.hw.Store(hw) }
func (e *replayEvents) LeaderChanged(leader, epoch int32) {
	e.epoch.Store(epoch)
	e.leader.Store(leader)
}
func (e *replayEvents) LogStartMoved(offset int64)             { e.logStart.Store(offset) }
func (e *replayEvents) Appended([]wal.Entry)                   {}
func (e *replayEvents) CompactRequested(broker.CompactRequest) {}
func (e *replayEvents) Truncated(int64)                        {}

// TestClusterLogStartReapplied: a log start move the partition's state
// file does not cover yet (a crash between the apply and the next state
// save) is applied again when the replica reopens from the index the
// state file names (ReplicaSpec.Applied).
func TestClusterLogStartReapplied(t *testing.T) {
	dir := t.TempDir()
	open := func(applied uint64) (*cluster.Node, *wal.Log, broker.Replica, *replayEvents) {
		t.Helper()
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		node, err := cluster.StartNode(cluster.NodeConfig{NodeID: 1, Peers: map[uint64]string{1: ln.Addr().String()}, Listener: ln, Logger: zerolog.Nop()})
		if err != nil {
			t.Fatal(err)
		}
		log, err := wal.Open(dir, wal.Options{})
		if err != nil {
			t.Fatal(err)
		}
		ev := &replayEvents{}
		ev.leader.Store(-1)
		rep, err := node.Replica(broker.ReplicaSpec{Topic: "t", Partition: 0, RaftGroup: 7, Replicas: []int32{1}, Fresh: true, Applied: applied}, log, ev)
		if err != nil {
			t.Fatal(err)
		}
		waitUntil(t, "the replica leads", 30*time.Second, func() bool { return ev.leader.Load() == 1 })
		return node, log, rep, ev
	}
	closeAll := func(node *cluster.Node, log *wal.Log, rep broker.Replica) {
		rep.Close()
		node.Close()
		log.Close()
	}

	node, log, rep, ev := open(0)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for i := range int64(3) {
		b := encodeBatch(t, kgo.Record{Value: []byte("v")})
		// Numbered as the leader's partition numbers it: its offset, the
		// leader's epoch.
		e := wal.Entry{Kind: wal.KindData, Term: uint64(ev.epoch.Load()), BaseOffset: i, MaxTimestamp: -1, Payload: b}
		if _, err := rep.Replicate(ctx, []wal.Entry{e}, true); err != nil {
			t.Fatal(err)
		}
	}
	before := rep.Applied() // what a state file written now would name
	if err := rep.MoveLogStart(ctx, 2); err != nil {
		t.Fatal(err)
	}
	if got := ev.logStart.Load(); got != 2 {
		t.Fatalf("log start %d after the move, want 2", got)
	}
	closeAll(node, log, rep)

	// Reopened from a state file written before the move: applied again.
	node, log, rep, ev = open(before)
	waitUntil(t, "the move applied again", 30*time.Second, func() bool { return ev.logStart.Load() == 2 })
	if rep.Applied() <= before {
		t.Fatalf("applied index %d after reopening from %d", rep.Applied(), before)
	}
	closeAll(node, log, rep)
}

// TestClusterReplicateRefusesStaleNumbering: the raft layer stores a data
// entry with the offsets the partition gave it, so a proposal numbered for
// another term or against a log end that has moved must never enter raft:
// it is refused (NOT_LEADER_OR_FOLLOWER, wrapping cluster.ErrStaleOffsets)
// and the log is unchanged.
func TestClusterReplicateRefusesStaleNumbering(t *testing.T) {
	dir := t.TempDir()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	node, err := cluster.StartNode(cluster.NodeConfig{NodeID: 1, Peers: map[uint64]string{1: ln.Addr().String()}, Listener: ln, Logger: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	defer node.Close()
	log, err := wal.Open(dir, wal.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer log.Close()
	ev := &replayEvents{}
	ev.leader.Store(-1)
	rep, err := node.Replica(broker.ReplicaSpec{Topic: "t", Partition: 0, RaftGroup: 9, Replicas: []int32{1}, Fresh: true}, log, ev)
	if err != nil {
		t.Fatal(err)
	}
	defer rep.Close()
	waitUntil(t, "the replica leads", 30*time.Second, func() bool { return ev.leader.Load() == 1 })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	epoch := uint64(ev.epoch.Load())
	entry := func(base int64, term uint64) []wal.Entry {
		b := encodeBatch(t, kgo.Record{Value: []byte("v")})
		return []wal.Entry{{Kind: wal.KindData, Term: term, BaseOffset: base, MaxTimestamp: -1, Payload: b}}
	}
	if _, err := rep.Replicate(ctx, entry(0, epoch), true); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		base int64
		term uint64
	}{
		{"offset already taken", 0, epoch},
		{"offset past the log end", 5, epoch},
		{"an older epoch", 1, epoch - 1},
		{"a later epoch", 1, epoch + 1},
	} {
		_, err := rep.Replicate(ctx, entry(tc.base, tc.term), true)
		if !errors.Is(err, kerr.NotLeaderForPartition) || !errors.Is(err, cluster.ErrStaleOffsets) {
			t.Fatalf("%s: %v, want NOT_LEADER_OR_FOLLOWER wrapping ErrStaleOffsets", tc.name, err)
		}
		if log.NextOffset() != 1 {
			t.Fatalf("%s: the log's next offset is %d, want 1: a refused entry was stored", tc.name, log.NextOffset())
		}
	}
	if base, err := rep.Replicate(ctx, entry(1, epoch), true); err != nil || base != 1 {
		t.Fatalf("the correctly numbered entry: %d %v", base, err)
	}
	if log.NextOffset() != 2 {
		t.Fatalf("next offset %d, want 2", log.NextOffset())
	}
}
