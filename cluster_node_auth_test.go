package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/chronik-stream/chronik/cluster"
)

// TestClusterTransactionsOverSASLSSLOnly: three nodes whose only Kafka
// listener is SASL_SSL (SCRAM-SHA-512), with the authorizer on and
// User:admin the only super user. Nodes hold no SASL credentials: the
// transaction coordinator's markers and the leaders' KIP-890
// verifications reach the other nodes' SASL_SSL listeners authenticated
// by the nodes' peer certificates, as Node:<id>. A transactional producer
// logged in as admin commits a transaction over partitions led by
// different nodes and aborts another; a read_committed consumer sees
// exactly the committed records.
func TestClusterTransactionsOverSASLSSLOnly(t *testing.T) {
	c := newCluster(t, 3)
	// The listeners' server certificate: signed by the cluster CA, which
	// nodes trust for it (as they do the system roots and the client CA).
	clusterCA := loadTestClusterCA(t, c.certs)
	certFile, keyFile := filepath.Join(c.dir, "server.pem"), filepath.Join(c.dir, "server-key.pem")
	clusterCA.issueServer(t, 100, certFile, keyFile)
	ca := clusterCA
	admin := freeAddrs(t, 1)[0]
	for id := 1; id <= 3; id++ {
		adminListen := ""
		if id == 1 {
			adminListen = admin
		}
		c.startSASLSSLOnly(id, adminListen, certFile, keyFile)
	}
	for id := 1; id <= 3; id++ {
		c.waitUp(id)
	}

	// The first user, through the admin listener.
	var r result
	for i := 0; i < 200; i++ {
		if r = runCLI(t, "admin-pw\n", "user", "create", "admin", "--password-stdin", "--mechanism", "SCRAM-SHA-512",
			"--admin-url", "http://"+admin); r.code == 0 {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if r.code != 0 {
		t.Fatalf("user create: %+v", r)
	}
	asAdmin := func(opts ...kgo.Opt) *kgo.Client {
		return c.client(append([]kgo.Opt{
			kgo.DialTLSConfig(&tls.Config{RootCAs: ca.pool}),
			kgo.SASL(scram.Auth{User: "admin", Pass: "admin-pw"}.AsSha512Mechanism()),
			kgo.RetryTimeout(60 * time.Second),
		}, opts...)...)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	adm := kadm.NewClient(asAdmin())
	const topic = "sasl-ssl-txn"
	perNode := make([]*kgo.Client, 3)
	for id := 1; id <= 3; id++ {
		perNode[id-1] = asAdmin(kgo.SeedBrokers(c.kafka[id-1]))
	}
	for i := 0; ; i++ {
		// The credential reaches the other nodes through the metadata
		// log; the controller may still be electing. Once created, never
		// again: a CreateTopics of the topic while its partitions start
		// left them without leaders in every run (reported with the
		// branch).
		resp, err := adm.CreateTopic(ctx, 3, 3, nil, topic)
		if err == nil && resp.Err == nil {
			break
		}
		if i > 300 {
			t.Fatalf("create topic %s: %v %v", topic, err, resp.Err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	var leaders map[int32]int32
	var why string
	for i := 0; ; i++ {
		// Straight to node 1: kgo answers a Metadata request through the
		// client from its cache, which may predate the leaders.
		mreq := kmsg.NewPtrMetadataRequest()
		mt := kmsg.NewMetadataRequestTopic()
		mt.Topic = kmsg.StringPtr(topic)
		mreq.Topics = append(mreq.Topics, mt)
		mresp, err := perNode[0].SeedBrokers()[0].Request(ctx, mreq)
		why = fmt.Sprintf("metadata: %v", err)
		if err == nil && len(mresp.(*kmsg.MetadataResponse).Topics) == 1 {
			leaders = map[int32]int32{}
			for _, p := range mresp.(*kmsg.MetadataResponse).Topics[0].Partitions {
				if p.ErrorCode == 0 && p.Leader >= 0 {
					leaders[p.Partition] = p.Leader
				}
			}
			why = fmt.Sprintf("leaders %v", leaders)
			if len(leaders) == 3 {
				break
			}
		}
		if i > 300 {
			t.Fatalf("topic %s without leaders after 30s: %s", topic, why)
		}
		time.Sleep(100 * time.Millisecond)
	}
	distinct := map[int32]bool{}
	for _, l := range leaders {
		distinct[l] = true
	}
	if len(distinct) < 2 {
		t.Fatalf("partition leaders %v all on one node: the transaction would not span nodes", leaders)
	}

	prod := asAdmin(kgo.TransactionalID("sasl-ssl-txn"), kgo.DefaultProduceTopic(topic),
		kgo.RecordPartitioner(kgo.RoundRobinPartitioner()), kgo.TransactionTimeout(20*time.Second))
	txn := func(prefix string, n int, end kgo.TransactionEndTry) error {
		if err := prod.BeginTransaction(); err != nil {
			return err
		}
		for i := range n {
			if err := prod.ProduceSync(ctx, &kgo.Record{Value: fmt.Appendf(nil, "%s-%d", prefix, i)}).FirstErr(); err != nil {
				return err
			}
		}
		return prod.EndTransaction(ctx, end)
	}
	if err := txn("committed", 30, kgo.TryCommit); err != nil {
		t.Fatalf("commit: %v", err)
	}
	if err := txn("aborted", 30, kgo.TryAbort); err != nil {
		t.Fatalf("abort: %v", err)
	}
	var d kadm.DescribedTransactions
	var err error
	for i := 0; ; i++ {
		// Retried: kgo gives up a request whose connection died.
		d, err = adm.DescribeTransactions(ctx, "sasl-ssl-txn")
		if err == nil && d["sasl-ssl-txn"].Err == nil {
			break
		}
		if i > 50 {
			t.Fatalf("describe transaction: %v %v", err, d["sasl-ssl-txn"].Err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	coord := d["sasl-ssl-txn"].Coordinator
	other := false
	for _, l := range leaders {
		other = other || l != coord
	}
	if !other {
		t.Fatalf("coordinator %d leads every partition (%v): no marker went to another node", coord, leaders)
	}

	cons := asAdmin(kgo.ConsumeTopics(topic), kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchMaxWait(200*time.Millisecond))
	seen := map[string]int{}
	total := 0
	pollCtx, pollCancel := context.WithTimeout(ctx, 30*time.Second)
	defer pollCancel()
	for total < 30 && pollCtx.Err() == nil {
		fs := cons.PollFetches(pollCtx)
		fs.EachRecord(func(r *kgo.Record) { seen[string(r.Value)]++; total++ })
	}
	// A little more: aborted records, were they visible, follow.
	moreCtx, moreCancel := context.WithTimeout(ctx, 2*time.Second)
	defer moreCancel()
	for moreCtx.Err() == nil {
		cons.PollFetches(moreCtx).EachRecord(func(r *kgo.Record) { seen[string(r.Value)]++; total++ })
	}
	// The committed ones must all be there, once; no aborted one.
	for i := range 30 {
		if n := seen[fmt.Sprintf("committed-%d", i)]; n != 1 {
			t.Errorf("committed-%d seen %d times", i, n)
		}
	}
	for v := range seen {
		if !strings.HasPrefix(v, "committed-") {
			t.Errorf("read_committed saw %s", v)
		}
	}
	// Every partition holds its records of both transactions and their
	// two markers, written by the coordinator through other nodes.
	var ends kadm.ListedOffsets
	for i := 0; ; i++ {
		if ends, err = adm.ListEndOffsets(ctx, topic); err == nil && ends.Error() == nil {
			break
		}
		if i > 50 {
			t.Fatalf("end offsets: %v %v", err, ends.Error())
		}
		time.Sleep(100 * time.Millisecond)
	}
	var end int64
	ends.Each(func(o kadm.ListedOffset) { end += o.Offset })
	if end != 60+2*3 {
		t.Fatalf("end offsets sum to %d, want 66: 60 records and a commit and an abort marker in each of 3 partitions", end)
	}

	// The coordinator's node reached the other leaders as Node:<id>.
	nodeLogins := 0
	for id := 1; id <= 3; id++ {
		b, _ := os.ReadFile(filepath.Join(c.dir, fmt.Sprintf("node%d.log", id)))
		nodeLogins += strings.Count(string(b), `"principal":"Node:`+strconv.Itoa(int(coord))+`"`)
	}
	if nodeLogins == 0 {
		t.Fatalf("no node logged a connection from node %d as Node:%d", coord, coord)
	}
}

// startSASLSSLOnly runs node id with one SASL_SSL listener on its Kafka
// address, the authorizer on with User:admin as super user, and peer TLS.
func (c *testCluster) startSASLSSLOnly(id int, adminListen, certFile, keyFile string) {
	c.t.Helper()
	logf, err := os.OpenFile(filepath.Join(c.dir, fmt.Sprintf("node%d.log", id)), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		c.t.Fatal(err)
	}
	args := append([]string{"serve", "--node-id", strconv.Itoa(id), "--peers", c.peers()}, c.peerTLSArgs(id)...)
	args = append(args, "--listeners", "SASL_SSL://"+c.kafka[id-1],
		"--tls-cert-file", certFile, "--tls-key-file", keyFile, "--sasl-mechanisms", "SCRAM-SHA-512",
		"--authorizer", "--super-users", "User:admin",
		"--admin-listen", adminListen, "--data-dir", c.dataDir(id),
		"--log-level", "info", "--shutdown-timeout", "10s")
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), "CHRONIK_TEST_RUN_MAIN=1")
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		c.t.Fatal(err)
	}
	c.procs[id-1], c.logs[id-1] = cmd, logf
}

// loadTestClusterCA is the cluster CA `chronik cluster certs` wrote in dir.
func loadTestClusterCA(t *testing.T, dir string) *testCA {
	t.Helper()
	certPEM, err := os.ReadFile(filepath.Join(dir, "ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	keyPEM, err := os.ReadFile(filepath.Join(dir, "ca-key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	ca, err := cluster.LoadCertAuthority(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert)
	return &testCA{cert: ca.Cert, key: ca.Key, pool: pool}
}
