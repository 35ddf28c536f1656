package cluster

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

// The peer transport over mutual TLS: nodes prove their ids with
// certificates from the cluster CA; everything else is refused, counted,
// and leaves the established connections alone.

// testPKI is a cluster CA for tests.
type testPKI struct {
	ca    *CertAuthority
	caPEM []byte
}

func newTestPKI(t testing.TB) *testPKI {
	t.Helper()
	ca, err := NewCertAuthority("test cluster CA", 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return &testPKI{ca: ca, caPEM: ca.CertPEM()}
}

// issue makes node id's certificate and key, valid for an hour around now.
func (k *testPKI) issue(t testing.TB, id uint64) (certPEM, keyPEMBytes []byte) {
	t.Helper()
	return k.issueValid(t, id, time.Now().Add(-time.Hour), time.Now().Add(time.Hour))
}

func (k *testPKI) issueValid(t testing.TB, id uint64, notBefore, notAfter time.Time) (certPEM, keyPEMBytes []byte) {
	t.Helper()
	c, key, err := k.ca.IssueNode(id, []string{"127.0.0.1", "localhost"}, notBefore, notAfter)
	if err != nil {
		t.Fatal(err)
	}
	return c, key
}

// issueTemplate signs a hand-made leaf template (for certificates that
// IssueNode would not make).
func (k *testPKI) issueTemplate(t testing.TB, tmpl *x509.Certificate) (certPEM, keyPEMBytes []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, _ := newSerial()
	tmpl.SerialNumber = serial
	der, err := x509.CreateCertificate(rand.Reader, tmpl, k.ca.Cert, &key.PublicKey, k.ca.Key)
	if err != nil {
		t.Fatal(err)
	}
	kp, err := keyPEM(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), kp
}

func (k *testPKI) peerTLS(t testing.TB, id uint64) *PeerTLS {
	t.Helper()
	c, key := k.issue(t, id)
	p, err := NewPeerTLS(c, key, k.caPEM)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// withTLS gives each node of a test cluster its certificate from k.
func (k *testPKI) withTLS(t testing.TB) func(*TransportConfig) {
	return func(c *TransportConfig) { c.TLS = k.peerTLS(t, c.NodeID) }
}

func keyPair(t testing.TB, certPEM, keyPEM []byte) tls.Certificate {
	t.Helper()
	c, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// tlsPeer dials addr with TLS presenting cert (the acceptor's certificate
// is not checked: these are the attackers) and sends a hello as node from.
// It returns the acceptor's answer: its status, or the error reading it.
func tlsPeer(t testing.TB, addr string, cert tls.Certificate, from, to uint64) (net.Conn, uint8, error) {
	t.Helper()
	raw, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	raw.SetDeadline(time.Now().Add(10 * time.Second))
	conn := tls.Client(raw, &tls.Config{Certificates: []tls.Certificate{cert}, InsecureSkipVerify: true, MinVersion: tls.VersionTLS13})
	if err := conn.Handshake(); err != nil {
		return conn, 0, err
	}
	b, _ := appendHello(nil, hello{Version: handshakeVersion, From: from, To: to, ClusterID: testCluster})
	if _, err := conn.Write(b); err != nil {
		return conn, 0, err
	}
	st, _, err := readHelloReply(conn)
	return conn, st, err
}

func TestTransportTLSExchange(t *testing.T) {
	checkNoLeak(t)
	pki := newTestPKI(t)
	nodes := startCluster(t, 3, pki.withTLS(t))
	var seq uint64
	for _, a := range nodes {
		for _, b := range nodes {
			if a != b {
				probe(t, a, b, &seq)
			}
		}
	}
	for _, n := range nodes {
		st := n.tr.Stats()
		for r, c := range st.AcceptRefused {
			if c != 0 {
				t.Errorf("node %d refused %d handshakes (%s)", n.id, c, r)
			}
		}
		n.close(t)
	}
}

// TestTransportTLSRefusals: node 5 serves with TLS and is connected to
// node 2 (a real transport). Then dialers that cannot prove the id they
// claim each get refused, counted under their reason, and node 2's
// connection carries on as before.
func TestTransportTLSRefusals(t *testing.T) {
	checkNoLeak(t)
	pki := newTestPKI(t)
	l5, l2 := listen(t), listen(t)
	addr5 := l5.Addr().String()
	peers := map[uint64]string{2: l2.Addr().String(), 3: "127.0.0.1:1", 5: addr5}
	tweak := func(c *TransportConfig) {
		c.TLS = pki.peerTLS(t, c.NodeID)
		c.HandshakeTimeout = time.Second
	}
	n5 := startNode(t, 5, l5, peers, true, tweak)
	n2 := startNode(t, 2, l2, peers, true, tweak)
	var s25, s52 uint64
	probe(t, n2, n5, &s25)
	probe(t, n5, n2, &s52)
	established := n5.tr.established.Load()

	refused := func(reason string) uint64 { return n5.tr.Stats().AcceptRefused[reason] }
	expectRefused := func(reason string, before uint64) {
		t.Helper()
		waitFor(t, 10*time.Second, reason+" counted", func() bool { return refused(reason) > before })
	}

	// A node 3 certificate (a real node's, from the cluster CA) claiming
	// to be node 2: refused for the mismatch, in the hello reply.
	c3, k3 := pki.issue(t, 3)
	before := refused(RefusedIDMismatch)
	conn, st, err := tlsPeer(t, addr5, keyPair(t, c3, k3), 2, 5)
	if err != nil || st != helloIDMismatch {
		t.Fatalf("node 3's certificate as node 2: status %d, %v; want %d", st, err, helloIDMismatch)
	}
	expectClosed(t, conn, "id mismatch")
	expectRefused(RefusedIDMismatch, before)

	// A certificate for node 2 from another CA.
	other := newTestPKI(t)
	co, ko := other.issue(t, 2)
	before = refused(RefusedUntrusted)
	conn, st, err = tlsPeer(t, addr5, keyPair(t, co, ko), 2, 5)
	if err == nil {
		t.Fatalf("node 2's certificate from another CA: status %d, want a TLS failure", st)
	}
	conn.Close()
	expectRefused(RefusedUntrusted, before)

	// An expired node 2 certificate from the cluster CA.
	ce, ke := pki.issueValid(t, 2, time.Now().Add(-48*time.Hour), time.Now().Add(-24*time.Hour))
	before = refused(RefusedExpired)
	conn, st, err = tlsPeer(t, addr5, keyPair(t, ce, ke), 2, 5)
	if err == nil {
		t.Fatalf("an expired certificate: status %d, want a TLS failure", st)
	}
	conn.Close()
	expectRefused(RefusedExpired, before)

	// A cluster CA certificate that names no node.
	cn, kn := pki.issueTemplate(t, &x509.Certificate{Subject: pkix.Name{CommonName: "node-2"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth}})
	before = refused(RefusedNoNodeID)
	conn, st, err = tlsPeer(t, addr5, keyPair(t, cn, kn), 2, 5)
	if err == nil {
		t.Fatalf("a certificate naming no node: status %d, want a TLS failure", st)
	}
	conn.Close()
	expectRefused(RefusedNoNodeID, before)

	// A TLS client without a certificate.
	before = refused(RefusedTLS)
	conn, st, err = tlsPeer(t, addr5, tls.Certificate{}, 2, 5)
	if err == nil {
		t.Fatalf("no client certificate: status %d, want a TLS failure", st)
	}
	conn.Close()
	expectRefused(RefusedTLS, before)

	// A plaintext dialer: told in plaintext that TLS is required.
	before = refused(RefusedPlaintext)
	raw, err := net.Dial("tcp", addr5)
	if err != nil {
		t.Fatal(err)
	}
	raw.SetDeadline(time.Now().Add(10 * time.Second))
	b, _ := appendHello(nil, hello{Version: handshakeVersion, From: 2, To: 5, ClusterID: testCluster})
	raw.Write(b)
	st, reason, err := readHelloReply(raw)
	if err != nil || st != helloTLSRequired || !strings.Contains(reason, "requires peer TLS") {
		t.Fatalf("plaintext hello: status %d %q, %v; want %d", st, reason, err, helloTLSRequired)
	}
	expectClosed(t, raw, "plaintext dialer")
	expectRefused(RefusedPlaintext, before)

	// A silent client is closed at the handshake deadline, and holds
	// nothing meanwhile: a valid dialer completes its handshake first.
	before = refused(RefusedTLS)
	silent, err := net.Dial("tcp", addr5)
	if err != nil {
		t.Fatal(err)
	}
	c2, k2 := pki.issue(t, 2)
	conn, st, err = tlsPeer(t, addr5, keyPair(t, c2, k2), 2, 5)
	if err != nil || st != helloOK {
		t.Fatalf("a valid node 2 beside a silent client: status %d, %v", st, err)
	}
	expectClosed(t, silent, "silent client")
	expectRefused(RefusedTLS, before)
	// That valid connection replaced node 2's; closing it, node 2
	// reconnects.
	conn.Close()
	waitFor(t, 10*time.Second, "node 2 reconnected", func() bool {
		return n5.tr.established.Load() >= established+2 && n5.tr.Connected(2) && n2.tr.Connected(5)
	})
	probe(t, n2, n5, &s25)
	probe(t, n5, n2, &s52)

	n5.close(t)
	n2.close(t)
}

// TestTransportTLSRefusalKeepsConnection: refused dialers never disturb
// the established connection: no reconnect happens while they are refused.
func TestTransportTLSRefusalKeepsConnection(t *testing.T) {
	checkNoLeak(t)
	pki := newTestPKI(t)
	nodes := startCluster(t, 2, pki.withTLS(t))
	n1, n2 := nodes[0], nodes[1]
	var seq uint64
	probe(t, n1, n2, &seq)
	est1, est2 := n1.tr.established.Load(), n2.tr.established.Load()
	addr2 := n2.l.Addr().String()
	c3, k3 := pki.issue(t, 3)
	for i := range 5 {
		conn, st, err := tlsPeer(t, addr2, keyPair(t, c3, k3), 1, 2)
		if err != nil || st != helloIDMismatch {
			t.Fatalf("attempt %d: status %d, %v", i, st, err)
		}
		conn.Close()
		raw, err := net.Dial("tcp", addr2)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := appendHello(nil, hello{Version: handshakeVersion, From: 1, To: 2, ClusterID: testCluster})
		raw.Write(b)
		expectClosed(t, raw, "plaintext")
	}
	waitFor(t, 10*time.Second, "the refusals counted", func() bool {
		s := n2.tr.Stats()
		return s.AcceptRefused[RefusedIDMismatch] == 5 && s.AcceptRefused[RefusedPlaintext] == 5
	})
	probe(t, n1, n2, &seq)
	probe(t, n2, n1, &seq)
	if n1.tr.established.Load() != est1 || n2.tr.established.Load() != est2 {
		t.Fatalf("connections re-established: node 1 %d -> %d, node 2 %d -> %d", est1, n1.tr.established.Load(), est2, n2.tr.established.Load())
	}
	n1.close(t)
	n2.close(t)
}

// TestTransportTLSDialerChecksAcceptor: the dialer refuses an acceptor
// whose certificate names another node, or comes from another CA.
func TestTransportTLSDialerChecksAcceptor(t *testing.T) {
	checkNoLeak(t)
	pki := newTestPKI(t)
	for _, tc := range []struct {
		name   string
		pki    *testPKI
		id     uint64
		reason string
	}{
		{"another node's certificate", pki, 3, RefusedIDMismatch},
		{"another CA", newTestPKI(t), 2, RefusedUntrusted},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// An impostor at node 2's address; node 1 dials it.
			l := listen(t)
			c, k := tc.pki.issue(t, tc.id)
			cert := keyPair(t, c, k)
			done := make(chan struct{})
			go func() {
				defer close(done)
				for {
					conn, err := l.Accept()
					if err != nil {
						return
					}
					tc := tls.Server(conn, &tls.Config{Certificates: []tls.Certificate{cert}, ClientAuth: tls.RequireAnyClientCert})
					tc.SetDeadline(time.Now().Add(5 * time.Second))
					tc.Handshake()
					io.Copy(io.Discard, tc)
					conn.Close()
				}
			}()
			// Node 1 only dials (it has the lowest id): it does not serve.
			n1 := startNode(t, 1, listen(t), map[uint64]string{2: l.Addr().String()}, false, pki.withTLS(t))
			waitFor(t, 10*time.Second, "the dialer's refusal", func() bool { return n1.tr.Stats().DialRefused[tc.reason] > 0 })
			if n1.tr.Connected(2) {
				t.Fatal("connected to an impostor")
			}
			n1.tr.Close()
			l.Close()
			<-done
		})
	}
}

// TestTransportTLSBusy: connections past the pending-handshake cap of one
// address are closed at once; once the silent ones time out, a node
// connects again.
func TestTransportTLSBusy(t *testing.T) {
	checkNoLeak(t)
	pki := newTestPKI(t)
	nodes := startCluster(t, 2, func(c *TransportConfig) {
		pki.withTLS(t)(c)
		// Long enough that the silent connections are still handshaking
		// when the one past the cap arrives, even under -race on a loaded
		// machine (1 s was not: they timed out first and made room);
		// short enough that expectClosed (10 s) sees them closed.
		c.HandshakeTimeout = 6 * time.Second
	})
	n1, n2 := nodes[0], nodes[1]
	var seq uint64
	probe(t, n1, n2, &seq)
	addr2 := n2.l.Addr().String()
	var silent []net.Conn
	for range maxPendingPerIP {
		c, err := net.Dial("tcp", addr2)
		if err != nil {
			t.Fatal(err)
		}
		silent = append(silent, c)
	}
	waitFor(t, 10*time.Second, "all handshaking", func() bool {
		n2.tr.mu.RLock()
		defer n2.tr.mu.RUnlock()
		return len(n2.tr.inbound) == maxPendingPerIP
	})
	extra, err := net.Dial("tcp", addr2)
	if err != nil {
		t.Fatal(err)
	}
	expectClosed(t, extra, "the connection past the cap")
	waitFor(t, 10*time.Second, "busy counted", func() bool { return n2.tr.Stats().AcceptRefused[RefusedBusy] == 1 })
	// The established connection was not touched.
	probe(t, n1, n2, &seq)
	for _, c := range silent {
		expectClosed(t, c, "a silent connection")
	}
	n1.close(t)
	n2.close(t)
}

// TestPeerTLSReload: after Reload, new handshakes use the new certificate
// and CA; the connection established before stays up. The story is a CA
// rotation: node 3 comes with a certificate from the new CA, trusting
// both; node 5 trusts only the old CA until it reloads a bundle of both.
func TestPeerTLSReload(t *testing.T) {
	checkNoLeak(t)
	dir := t.TempDir()
	oldPKI, newPKI := newTestPKI(t), newTestPKI(t)
	both := append(append([]byte(nil), oldPKI.caPEM...), newPKI.caPEM...)
	write := func(k *testPKI, id uint64, ca []byte) {
		c, key := k.issue(t, id)
		for name, b := range map[string][]byte{"cert.pem": c, "key.pem": key, "ca.pem": ca} {
			if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
				t.Fatal(err)
			}
		}
	}
	write(oldPKI, 5, oldPKI.caPEM)
	p5, err := LoadPeerTLS(filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem"), filepath.Join(dir, "ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	l5, l2, l3 := listen(t), listen(t), listen(t)
	peers := map[uint64]string{2: l2.Addr().String(), 3: l3.Addr().String(), 5: l5.Addr().String()}
	n5 := startNode(t, 5, l5, peers, true, func(c *TransportConfig) { c.TLS = p5 })
	n2 := startNode(t, 2, l2, peers, true, oldPKI.withTLS(t))
	var s25, s35 uint64
	probe(t, n2, n5, &s25)
	n3 := startNode(t, 3, l3, peers, true, func(c *TransportConfig) {
		cert, key := newPKI.issue(t, 3)
		p, err := NewPeerTLS(cert, key, both)
		if err != nil {
			t.Fatal(err)
		}
		c.TLS = p
	})
	waitFor(t, 10*time.Second, "node 3 refused", func() bool { return n5.tr.Stats().AcceptRefused[RefusedUntrusted] > 0 })
	if n5.tr.Connected(3) {
		t.Fatal("node 3 connected before the reload")
	}
	est := n2.tr.established.Load()

	// A reload that fails (a certificate naming node 6) keeps what is in use.
	write(newPKI, 6, both)
	if err := p5.Reload(); err == nil || !strings.Contains(err.Error(), "names node 6") {
		t.Fatalf("reload to another node's certificate: %v", err)
	}
	write(newPKI, 5, both)
	if err := p5.Reload(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "node 3 connected after the reload", func() bool { return n5.tr.Connected(3) && n3.tr.Connected(5) })
	probe(t, n3, n5, &s35)
	// Node 2 would refuse node 5's new certificate (it trusts the old CA
	// only), but its connection, established before, stays.
	probe(t, n2, n5, &s25)
	if n2.tr.established.Load() != est {
		t.Fatal("node 2's connection was re-established by the reload")
	}
	n5.close(t)
	n2.close(t)
	n3.close(t)
}

func TestLoadPeerTLSErrors(t *testing.T) {
	pki, other := newTestPKI(t), newTestPKI(t)
	c2, k2 := pki.issue(t, 2)
	_, k3 := pki.issue(t, 3)
	co, ko := other.issue(t, 2)
	ce, ke := pki.issueValid(t, 2, time.Now().Add(-48*time.Hour), time.Now().Add(-24*time.Hour))
	cn, kn := pki.issueTemplate(t, &x509.Certificate{NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth}})
	cs, ks := pki.issueTemplate(t, &x509.Certificate{NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, URIs: []*url.URL{NodeURI(2)}})
	c22, k22 := pki.issueTemplate(t, &x509.Certificate{NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		URIs: []*url.URL{NodeURI(2), NodeURI(3)}})
	for _, tc := range []struct {
		name          string
		cert, key, ca []byte
		want          string
	}{
		{"key of another certificate", c2, k3, pki.caPEM, "private key does not match"},
		{"another CA", co, ko, pki.caPEM, "not signed by the cluster CA"},
		{"expired", ce, ke, pki.caPEM, "expired"},
		{"no node id", cn, kn, pki.caPEM, "names no node id"},
		{"server use only", cs, ks, pki.caPEM, "incompatible key usage"},
		{"two node ids", c22, k22, pki.caPEM, "two node ids"},
		{"no CA", c2, k2, nil, "no PEM certificate"},
	} {
		if _, err := NewPeerTLS(tc.cert, tc.key, tc.ca); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", tc.name, err, tc.want)
		}
	}
	if _, err := LoadPeerTLS("/nonexistent/cert.pem", "k", "c"); err == nil || !strings.Contains(err.Error(), "/nonexistent/cert.pem") {
		t.Errorf("missing file: %v", err)
	}
	p, err := NewPeerTLS(c2, k2, pki.caPEM)
	if err != nil || p.NodeID() != 2 {
		t.Fatalf("valid: %v, id %d", err, p.NodeID())
	}
}

func TestNodeIDFromURI(t *testing.T) {
	for s, want := range map[string]uint64{
		"chronik-node://1":                    1,
		"chronik-node://18446744073709551615": 1<<64 - 1,
		"CHRONIK-NODE://7":                    7, // schemes are case-insensitive
		"chronik-node://0":                    0,
		"chronik-node://01":                   0,
		"chronik-node://+1":                   0,
		"chronik-node://1:80":                 0,
		"chronik-node://1/":                   0,
		"chronik-node://u@1":                  0,
		"chronik-node://1?x":                  0,
		"chronik-node://1#x":                  0,
		"chronik-node:1":                      0,
		"chronik-node://18446744073709551616": 0,
		"spiffe://1":                          0,
		"chronik-node://node-1":               0,
	} {
		got, err := parseNodeURI(s)
		if got != want || (err == nil) != (want != 0) {
			t.Errorf("%q: %d, %v; want %d", s, got, err, want)
		}
	}
}

// parseNodeURI parses s as x509 does a URI SAN, then reads its node id.
func parseNodeURI(s string) (uint64, error) {
	u, err := url.Parse(s)
	if err != nil {
		return 0, err
	}
	return nodeIDFromURI(u)
}

// FuzzNodeIDFromURI: whatever a certificate's URI SAN holds, an accepted
// one is a node id (not 0) and reads back as its canonical URI.
func FuzzNodeIDFromURI(f *testing.F) {
	for _, s := range []string{"chronik-node://1", "chronik-node://01", "chronik-node://1:2", "CHRONIK-node://3",
		"chronik-node://18446744073709551615", "chronik-node:///1", "chronik-node://%31", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		id, err := parseNodeURI(s)
		if err != nil {
			return
		}
		if id == 0 {
			t.Fatalf("%q accepted as node 0", s)
		}
		u, _ := url.Parse(s)
		if u.String() != NodeURI(id).String() {
			t.Fatalf("%q accepted as node %d but spelled %q", s, id, u.String())
		}
	})
}

// lockedBuffer is a log sink for a transport's logger.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestTransportTLSDialerToPlaintextNode: a node with peer TLS dialing one
// without is refused, and the plaintext node's log says what happened.
func TestTransportTLSDialerToPlaintextNode(t *testing.T) {
	checkNoLeak(t)
	pki := newTestPKI(t)
	l1, l2 := listen(t), listen(t)
	peers := map[uint64]string{1: l1.Addr().String(), 2: l2.Addr().String()}
	var logs lockedBuffer
	n2 := startNode(t, 2, l2, peers, true, func(c *TransportConfig) { c.Logger = zerolog.New(&logs) })
	n1 := startNode(t, 1, l1, peers, false, pki.withTLS(t)) // it only dials: no Serve
	waitFor(t, 10*time.Second, "the refusal", func() bool { return n2.tr.Stats().AcceptRefused[RefusedBadHello] > 0 })
	waitFor(t, 10*time.Second, "the log line", func() bool {
		return strings.Contains(logs.String(), "the dialer speaks TLS; node 2 has no peer TLS configured")
	})
	if n1.tr.Connected(2) || n2.tr.Connected(1) {
		t.Fatal("connected across TLS and plaintext")
	}
	n1.tr.Close()
	n2.close(t)
}
