package kafka

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/chronik-stream/chronik/broker"
	"github.com/chronik-stream/chronik/cluster"
)

// nodePKI is a cluster CA, this node's peer identity (node 1, a cluster
// of nodes 1, 2 and 3) and certificates for tests, all from files so that
// Reload can change them.
type nodePKI struct {
	t        *testing.T
	dir      string
	ca       *cluster.CertAuthority
	identity *cluster.PeerTLS
}

func newNodePKI(t *testing.T) *nodePKI {
	t.Helper()
	np := &nodePKI{t: t, dir: t.TempDir()}
	np.rotate()
	id, err := cluster.LoadPeerTLS(np.path("node1.pem"), np.path("node1-key.pem"), np.path("ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	np.identity = id
	return np
}

func (np *nodePKI) path(name string) string { return filepath.Join(np.dir, name) }

// rotate makes a new cluster CA and node 1's certificate under it, and
// writes both over the files.
func (np *nodePKI) rotate() {
	np.t.Helper()
	ca, err := cluster.NewCertAuthority("test cluster CA", 24*time.Hour)
	if err != nil {
		np.t.Fatal(err)
	}
	np.ca = ca
	cert, key := np.issue(1)
	for name, b := range map[string][]byte{"ca.pem": ca.CertPEM(), "node1.pem": cert, "node1-key.pem": key} {
		if err := os.WriteFile(np.path(name), b, 0o600); err != nil {
			np.t.Fatal(err)
		}
	}
}

func (np *nodePKI) issue(id uint64) (certPEM, keyPEM []byte) {
	np.t.Helper()
	c, k, err := np.ca.IssueNode(id, []string{"127.0.0.1"}, time.Now().Add(-time.Hour), time.Now().Add(24*time.Hour))
	if err != nil {
		np.t.Fatal(err)
	}
	return c, k
}

// nodeCert is a certificate of the cluster CA as it is now for node id.
func (np *nodePKI) nodeCert(id uint64) *tls.Certificate {
	np.t.Helper()
	c, k := np.issue(id)
	cert, err := tls.X509KeyPair(c, k)
	if err != nil {
		np.t.Fatal(err)
	}
	return &cert
}

// nodeAuth is the NodeAuth of a server of this cluster.
func (np *nodePKI) nodeAuth() *NodeAuth {
	return &NodeAuth{Identity: np.identity, Member: func(id uint64) bool { return id >= 1 && id <= 3 }}
}

// otherCANodeCert is a certificate naming node id, from a CA that is not
// the cluster's.
func otherCANodeCert(t *testing.T, id uint64) *tls.Certificate {
	t.Helper()
	other, err := cluster.NewCertAuthority("another CA", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	c, k, err := other.IssueNode(id, nil, time.Now().Add(-time.Minute), time.Now().Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	cert, err := tls.X509KeyPair(c, k)
	if err != nil {
		t.Fatal(err)
	}
	return &cert
}

// clientCertWithURI is a client certificate of p for subject cn, with
// the given URI SANs.
func clientCertWithURI(t *testing.T, p *testPKI, cn string, uris ...*url.URL) *tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	p.serial++
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(p.serial),
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		URIs:         uris,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.ca, &key.PublicKey, p.key)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// startNodeAuthEnv is a broker with the authorizer on (no super users,
// no ACLs) whose one listener speaks proto with node authentication.
func startNodeAuthEnv(t *testing.T, proto SecurityProtocol, clientCA bool, np *nodePKI) *secureEnv {
	t.Helper()
	return startSecureEnv(t, proto, clientCA, func(e *testEnv) {
		e.kcfg.NodeAuth = np.nodeAuth()
		e.bcfg.Authorizer = broker.AuthorizerConfig{Enabled: true}
	})
}

// certClient is a client of se's TLS listener presenting cert whatever
// the server's certificate request names (nil: no certificate).
func (se *secureEnv) certClient(cert *tls.Certificate, opts ...kgo.Opt) *kgo.Client {
	se.t.Helper()
	cfg := se.tlsConfig()
	cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
		if cert == nil {
			return &tls.Certificate{}, nil
		}
		return cert, nil
	}
	return se.client(append(opts, kgo.DialTLSConfig(cfg), kgo.RetryTimeout(2*time.Second))...)
}

var topicSeq = 0

// createTopicCode creates a new topic with cl and returns the topic's
// error code: 0 when the principal may (CREATE on the cluster), else
// TOPIC_AUTHORIZATION_FAILED. An error is a failed connection.
func createTopicCode(t *testing.T, cl *kgo.Client) (int16, error) {
	t.Helper()
	topicSeq++
	req := kmsg.NewPtrCreateTopicsRequest()
	rt := kmsg.NewCreateTopicsRequestTopic()
	rt.Topic, rt.NumPartitions, rt.ReplicationFactor = "node-auth-"+strconv.Itoa(topicSeq), 1, 1
	req.Topics = append(req.Topics, rt)
	req.TimeoutMillis = 10_000
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	resp, err := cl.Request(ctx, req)
	if err != nil {
		return 0, err
	}
	return resp.(*kmsg.CreateTopicsResponse).Topics[0].ErrorCode, nil
}

func mustCreate(t *testing.T, cl *kgo.Client, who string) {
	t.Helper()
	code, err := createTopicCode(t, cl)
	if err != nil || code != 0 {
		t.Fatalf("%s: create topic: %v %v", who, err, kerr.ErrorForCode(code))
	}
}

func mustBeRefused(t *testing.T, cl *kgo.Client, who string) {
	t.Helper()
	code, err := createTopicCode(t, cl)
	if err != nil || code != kerr.TopicAuthorizationFailed.Code {
		t.Fatalf("%s: create topic: %v %v, want TOPIC_AUTHORIZATION_FAILED", who, err, kerr.ErrorForCode(code))
	}
}

func mustFailHandshake(t *testing.T, se *secureEnv, cl *kgo.Client, who string) {
	t.Helper()
	before := strings.Count(se.logs.String(), "TLS handshake failed")
	if _, err := createTopicCode(t, cl); err == nil {
		t.Fatalf("%s: served", who)
	}
	deadline := time.Now().Add(30 * time.Second)
	for strings.Count(se.logs.String(), "TLS handshake failed") == before {
		if time.Now().After(deadline) {
			t.Fatalf("%s: no TLS handshake failure logged", who)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestNodePrincipalOnSASLSSL: on a SASL_SSL listener without a client CA,
// a certificate of the cluster CA naming a node of the cluster makes the
// connection Node:<id>, authenticated without SASL and allowed by the
// authorizer; a certificate naming the same node from another CA, or a
// node that is not the cluster's, is refused; SASL users whose names look
// like nodes stay User: principals.
func TestNodePrincipalOnSASLSSL(t *testing.T) {
	np := newNodePKI(t)
	se := startNodeAuthEnv(t, ProtocolSASLSSL, false, np)

	node2 := se.certClient(np.nodeCert(2))
	mustCreate(t, node2, "node 2")
	se.waitForLog(`"principal":"Node:2"`)

	// The node's connection may not start SASL.
	rc := se.dialTLSWith(np.nodeCert(3))
	hs := kmsg.NewPtrSASLHandshakeRequest()
	hs.SetVersion(1)
	hs.Mechanism = "SCRAM-SHA-512"
	if resp := rc.roundTrip(hs).(*kmsg.SASLHandshakeResponse); resp.ErrorCode != kerr.IllegalSaslState.Code {
		t.Fatalf("SaslHandshake from a node: %v, want ILLEGAL_SASL_STATE", kerr.ErrorForCode(resp.ErrorCode))
	}
	rc.expectClosed()

	mustFailHandshake(t, se, se.certClient(otherCANodeCert(t, 2)), "node 2 certificate of another CA")
	mustFailHandshake(t, se, se.certClient(np.nodeCert(9)), "node 9, not of this cluster")

	// Without a certificate: SASL as before. Users named like nodes are
	// users, refused what a node may do.
	for _, user := range []string{"Node:1", "chronik-node://1", "alice"} {
		cred, err := broker.NewScramCredential(broker.ScramSHA512, "pw-"+user, 4096)
		if err != nil {
			t.Fatal(err)
		}
		if err := se.b.SetScramCredential(context.Background(), user, cred); err != nil {
			t.Fatal(err)
		}
		cl := se.certClient(nil, kgo.SASL(scram.Auth{User: user, Pass: "pw-" + user}.AsSha512Mechanism()))
		mustBeRefused(t, cl, "SASL user "+user)
		se.waitForLog(`"principal":"User:` + user + `"`)
	}
	// No certificate and no SASL: closed before authentication.
	if _, err := createTopicCode(t, se.certClient(nil)); err == nil {
		t.Fatal("a client without certificate or SASL was served")
	}
}

// dialTLSWith is dialTLS presenting cert.
func (se *secureEnv) dialTLSWith(cert *tls.Certificate) *rawConn {
	se.t.Helper()
	cfg := se.tlsConfig()
	cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return cert, nil }
	c, err := tls.Dial("tcp", se.addr, cfg)
	if err != nil {
		se.t.Fatal(err)
	}
	se.t.Cleanup(func() { c.Close() })
	return &rawConn{t: se.t, c: c, fmtr: kmsg.NewRequestFormatter(kmsg.FormatterClientID("chronik-test"))}
}

// TestNodePrincipalWithClientCA: on an SSL listener with mutual TLS, a
// node's certificate makes Node:<id>; a certificate of the client CA is
// User: and its subject even when it names a node in a chronik-node URI
// SAN; one of neither CA, or none, is refused.
func TestNodePrincipalWithClientCA(t *testing.T) {
	np := newNodePKI(t)
	se := startNodeAuthEnv(t, ProtocolSSL, true, np)

	mustCreate(t, se.certClient(np.nodeCert(3)), "node 3")
	se.waitForLog(`"principal":"Node:3"`)

	forged := clientCertWithURI(t, se.pki, "mallory", cluster.NodeURI(2))
	mustBeRefused(t, se.certClient(forged), "client CA certificate naming node 2")
	se.waitForLog(`"principal":"User:CN=mallory"`)

	carol := clientCertWithURI(t, se.pki, "carol")
	mustBeRefused(t, se.certClient(carol), "client carol")
	se.waitForLog(`"principal":"User:CN=carol"`)

	mustFailHandshake(t, se, se.certClient(otherCANodeCert(t, 2)), "node 2 certificate of another CA")
	mustFailHandshake(t, se, se.certClient(nil), "no certificate")
}

// TestNodePrincipalCAReload: after the cluster CA is replaced and the
// peer TLS files reloaded, certificates of the old CA are no longer
// nodes', and those of the new one are.
func TestNodePrincipalCAReload(t *testing.T) {
	np := newNodePKI(t)
	se := startNodeAuthEnv(t, ProtocolSSL, false, np)
	old := np.nodeCert(2)
	mustCreate(t, se.certClient(old), "node 2 before the rotation")

	np.rotate()
	if err := np.identity.Reload(); err != nil {
		t.Fatal(err)
	}
	mustFailHandshake(t, se, se.certClient(old), "node 2 certificate of the replaced CA")
	mustCreate(t, se.certClient(np.nodeCert(2)), "node 2 after the rotation")
}

// TestPeersCallAsNode: Peers with peer TLS calls a node's SASL_SSL
// listener (its only one) with this node's certificate, and the call is
// allowed as Node:1; a peer without a TLS listener is warned about once.
func TestPeersCallAsNode(t *testing.T) {
	np := newNodePKI(t)
	se := startNodeAuthEnv(t, ProtocolSASLSSL, false, np)
	host, portS, _ := net.SplitHostPort(se.addr)
	port, _ := strconv.Atoi(portS)
	// The listener's server certificate is from se's CA: trusted as the
	// client CA bundle of this node's TLS files.
	certFile, keyFile, _ := se.pki.issue("peer-server", pkix.Name{CommonName: "peer"}, true)
	files, err := LoadTLSFiles(certFile, keyFile, se.pki.caFile)
	if err != nil {
		t.Fatal(err)
	}
	brokers := []broker.BrokerInfo{
		{NodeID: 2, Host: host, Port: int32(port), Listeners: []broker.Endpoint{
			{Name: "SECURE", Protocol: string(ProtocolSASLSSL), Host: host, Port: int32(port)}}},
		{NodeID: 3, Host: host, Port: 1, Listeners: []broker.Endpoint{
			{Name: "PLAINTEXT", Protocol: string(ProtocolPlaintext), Host: host, Port: 1}}},
	}
	p := NewPeers(func() []broker.BrokerInfo { return brokers })
	defer p.Close()
	p.SetNodeTLS(np.identity, files)
	logs := &syncBuffer{}
	p.WarnUnauthenticated(zerolog.New(logs), 1)

	req := kmsg.NewPtrCreateTopicsRequest()
	rt := kmsg.NewCreateTopicsRequestTopic()
	rt.Topic, rt.NumPartitions, rt.ReplicationFactor = "from-a-peer", 1, 1
	req.Topics = append(req.Topics, rt)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	resp, err := p.Call(ctx, 2, req)
	if err != nil {
		t.Fatal(err)
	}
	if code := resp.(*kmsg.CreateTopicsResponse).Topics[0].ErrorCode; code != 0 {
		t.Fatalf("create topic as a peer: %v", kerr.ErrorForCode(code))
	}
	se.waitForLog(`"principal":"Node:1"`)

	if got := strings.Count(logs.String(), `"peer_node":3`); got != 1 {
		t.Fatalf("warnings about node 3: %d, want 1; logs:\n%s", got, logs.String())
	}
	if strings.Count(logs.String(), `"peer_node":2`) != 0 {
		t.Fatalf("warned about node 2, which has a SASL_SSL listener:\n%s", logs.String())
	}
	// Calling node 3 (plaintext, nothing listening) does not warn again.
	cctx, ccancel := context.WithTimeout(ctx, 3*time.Second)
	defer ccancel()
	if _, err := p.Call(cctx, 3, kmsg.NewPtrMetadataRequest()); err == nil {
		t.Fatal("call to a closed port succeeded")
	}
	if got := strings.Count(logs.String(), `"peer_node":3`); got != 1 {
		t.Fatalf("warnings about node 3 after a call: %d, want 1", got)
	}
}

// TestPeersPreferTLSWithNodeIdentity: the endpoint choice.
func TestPeersPreferTLSWithNodeIdentity(t *testing.T) {
	np := newNodePKI(t)
	ep := func(name string, proto SecurityProtocol, port int32) broker.Endpoint {
		return broker.Endpoint{Name: name, Protocol: string(proto), Host: "10.0.0.1", Port: port}
	}
	all := broker.BrokerInfo{NodeID: 2, Host: "10.0.0.1", Port: 9, Listeners: []broker.Endpoint{
		ep("P", ProtocolPlaintext, 1), ep("SP", ProtocolSASLPlaintext, 2), ep("SS", ProtocolSASLSSL, 3), ep("S", ProtocolSSL, 4)}}
	saslOnly := broker.BrokerInfo{NodeID: 2, Host: "10.0.0.1", Port: 9, Listeners: []broker.Endpoint{
		ep("SP", ProtocolSASLPlaintext, 2), ep("SS", ProtocolSASLSSL, 3)}}
	lab := NewPeers(nil)
	withTLS := NewPeers(nil)
	withTLS.SetTLS(&tls.Config{})
	node := NewPeers(nil)
	node.SetNodeTLS(np.identity, nil)
	for _, c := range []struct {
		p     *Peers
		bi    broker.BrokerInfo
		addr  string
		proto SecurityProtocol
	}{
		{lab, all, "10.0.0.1:1", ProtocolPlaintext},
		{withTLS, all, "10.0.0.1:1", ProtocolPlaintext},
		{node, all, "10.0.0.1:4", ProtocolSSL},
		{node, saslOnly, "10.0.0.1:3", ProtocolSASLSSL},
		{lab, saslOnly, "10.0.0.1:9", ""},
	} {
		addr, proto := c.p.peerEndpoint(c.bi)
		if addr != c.addr || proto != c.proto {
			t.Errorf("peerEndpoint(%v) = %s %s, want %s %s", c.bi.Listeners, addr, proto, c.addr, c.proto)
		}
	}
}
