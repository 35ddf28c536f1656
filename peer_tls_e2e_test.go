package main

// Peer TLS end to end: three `chronik serve` processes with mutual TLS
// (the cluster harness's default) keep serving while impostors knock on
// their raft ports.

import (
	"crypto/tls"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/chronik-stream/chronik/cluster"
)

// testPeerTLS makes a cluster CA and returns each node's peer TLS
// material (nodes 1..n), for clusters run in this process.
func testPeerTLS(tb testing.TB, n int) func(id int) *cluster.PeerTLS {
	tb.Helper()
	ca, err := cluster.NewCertAuthority("test cluster CA", 24*time.Hour)
	if err != nil {
		tb.Fatal(err)
	}
	out := make([]*cluster.PeerTLS, n)
	for i := range out {
		cert, key, err := ca.IssueNode(uint64(i+1), nil, time.Now().Add(-time.Hour), time.Now().Add(24*time.Hour))
		if err != nil {
			tb.Fatal(err)
		}
		if out[i], err = cluster.NewPeerTLS(cert, key, ca.CertPEM()); err != nil {
			tb.Fatal(err)
		}
	}
	return func(id int) *cluster.PeerTLS { return out[id-1] }
}

// peerHello is the transport's hello (cluster/transport_frame.go),
// written out here as an outsider would: magic, version 3, from, to, an
// empty cluster id.
func peerHello(from, to uint64) []byte {
	b := append([]byte("CHRT"), 3)
	b = binary.BigEndian.AppendUint64(b, from)
	b = binary.BigEndian.AppendUint64(b, to)
	return append(b, 0)
}

// readHelloAnswer reads the acceptor's answer: status, reason.
func readHelloAnswer(r io.Reader) (byte, string, error) {
	var h [2]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return 0, "", err
	}
	reason := make([]byte, h[1])
	_, err := io.ReadFull(r, reason)
	return h[0], string(reason), err
}

// TestClusterPeerTLSRefusals: a three-node cluster over mutual TLS takes
// writes; then, against node 3's raft port (node 3 accepts nodes 1 and 2):
// a dialer with node 4's certificate from the cluster CA claiming to be
// node 1, a node 1 certificate from another CA, a silent dialer, and a
// fourth chronik process posing as node 1 over plaintext are all refused,
// node 3 logs each with its reason, and the cluster keeps serving: what
// was written before and after reads back in full. SIGHUP reloads the
// certificates; a process given a certificate for another node's id
// refuses to start.
func TestClusterPeerTLSRefusals(t *testing.T) {
	const topic = "peertls"
	c := startCluster(t, 3)
	c.createTopic(topic, 3, 3)
	prod := c.client(kgo.RequiredAcks(kgo.AllISRAcks()), kgo.RecordRetries(1000))
	produceKeys(t, prod, topic, 0, 300)

	raft3 := c.raft[2]
	if _, err := writeClusterCerts(c.certs, []uint64{4}, nil, time.Hour); err != nil {
		t.Fatal(err)
	}
	load := func(dir string, id int) tls.Certificate {
		n := strconv.Itoa(id)
		cert, err := tls.LoadX509KeyPair(filepath.Join(dir, "node-"+n+".pem"), filepath.Join(dir, "node-"+n+"-key.pem"))
		if err != nil {
			t.Fatal(err)
		}
		return cert
	}
	// tlsHello dials node 3 with TLS and cert, says it is node 1, and
	// returns the answer (or the error that ended the handshake).
	tlsHello := func(cert tls.Certificate) (byte, string, error) {
		raw, err := net.Dial("tcp", raft3)
		if err != nil {
			t.Fatal(err)
		}
		defer raw.Close()
		raw.SetDeadline(time.Now().Add(10 * time.Second))
		conn := tls.Client(raw, &tls.Config{Certificates: []tls.Certificate{cert}, InsecureSkipVerify: true, MinVersion: tls.VersionTLS13})
		if err := conn.Handshake(); err != nil {
			return 0, "", err
		}
		if _, err := conn.Write(peerHello(1, 3)); err != nil {
			return 0, "", err
		}
		return readHelloAnswer(conn)
	}

	// Node 4's certificate (a real one from the cluster CA) as node 1.
	st, reason, err := tlsHello(load(c.certs, 4))
	if err != nil || st == 0 || !strings.Contains(reason, "certificate names node 4") {
		t.Fatalf("node 4's certificate claiming node 1: status %d %q, %v; want a refusal naming node 4", st, reason, err)
	}
	// A node 1 certificate from another CA.
	otherDir := filepath.Join(c.dir, "other-ca")
	if _, err := writeClusterCerts(otherDir, []uint64{1}, nil, time.Hour); err != nil {
		t.Fatal(err)
	}
	if st, reason, err := tlsHello(load(otherDir, 1)); err == nil {
		t.Fatalf("node 1's certificate from another CA: status %d %q, want the TLS handshake refused", st, reason)
	}
	// A silent dialer: closed at the handshake deadline, the rest carries on.
	silent, err := net.Dial("tcp", raft3)
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()

	// A fourth chronik process: node 1 over plaintext, on its own ports.
	addrs := freeAddrs(t, 2)
	impostorLog := filepath.Join(c.dir, "impostor.log")
	logf, err := os.Create(impostorLog)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	peers := fmt.Sprintf("1=%s,2=%s,3=%s", addrs[1], c.raft[1], c.raft[2])
	imp := exec.Command(os.Args[0], "serve", "--node-id", "1", "--peers", peers, "--peer-insecure-plaintext",
		"--listen", addrs[0], "--admin-listen", "", "--data-dir", filepath.Join(c.dir, "impostor"), "--log-level", "info")
	imp.Env = append(os.Environ(), "CHRONIK_TEST_RUN_MAIN=1")
	imp.Stdout, imp.Stderr = logf, logf
	if err := imp.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		imp.Process.Kill()
		imp.Wait()
	}()

	// Node 3 logs every reason (node 2 too, for the impostor's dial).
	logged := func(path, what string) bool {
		b, _ := os.ReadFile(path)
		return strings.Contains(string(b), what)
	}
	node3Log := filepath.Join(c.dir, "node3.log")
	for _, reason := range []string{`"reason":"id_mismatch"`, `"reason":"untrusted_certificate"`, `"reason":"plaintext"`, `"reason":"tls"`} {
		waitUntil(t, "node 3 to log a refusal with "+reason, 30*time.Second, func() bool { return logged(node3Log, reason) })
	}
	waitUntil(t, "the impostor told why", 30*time.Second, func() bool {
		return logged(impostorLog, "requires peer TLS")
	})

	// The cluster kept serving: more writes, then everything reads back.
	produceKeys(t, prod, topic, 300, 600)
	recs := consumeAll(t, c, topic, 3)
	seen := map[string]bool{}
	for _, r := range recs {
		seen[string(r.Key)] = true
	}
	if len(recs) != 600 || len(seen) != 600 {
		t.Fatalf("read back %d records, %d distinct keys; want 600", len(recs), len(seen))
	}
	for _, id := range []int{1, 2, 3} {
		if b, _ := os.ReadFile(filepath.Join(c.dir, fmt.Sprintf("node%d.log", id))); strings.Contains(string(b), "connection with peer lost") {
			t.Errorf("node %d lost a peer connection during the refusals\n%s", id, c.logTail(id))
		}
	}

	// SIGHUP re-reads the peer TLS files.
	c.procs[2].Process.Signal(syscall.SIGHUP)
	waitUntil(t, "node 3 to reload its peer TLS files", 30*time.Second, func() bool {
		return logged(node3Log, "peer TLS reloaded")
	})

	// A process whose certificate names another node does not start.
	wrong := exec.Command(os.Args[0], append([]string{"serve", "--node-id", "2", "--peers", c.peers(),
		"--listen", addrs[0], "--admin-listen", "", "--data-dir", filepath.Join(c.dir, "wrong-id")},
		c.peerTLSArgs(4)...)...)
	wrong.Env = append(os.Environ(), "CHRONIK_TEST_RUN_MAIN=1")
	out, err := wrong.CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 2 || !strings.Contains(string(out), "names node 4, this is node 2") {
		t.Fatalf("node 2 with node 4's certificate: %v\n%s", err, out)
	}
}
