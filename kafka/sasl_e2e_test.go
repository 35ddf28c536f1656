package kafka

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/binary"
	"encoding/pem"
	"errors"
	"io"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/twmb/franz-go/pkg/sasl"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"
	xscram "github.com/xdg-go/scram"

	"github.com/chronik-stream/chronik/broker"
)

// testPKI is a throwaway CA (ECDSA P-256) issuing certificates into a
// temp dir.
type testPKI struct {
	t    testing.TB
	dir  string
	ca   *x509.Certificate
	key  *ecdsa.PrivateKey
	pool *x509.CertPool
	// caFile is the CA certificate, PEM.
	caFile string
	serial int64
}

func newTestPKI(t testing.TB) *testPKI {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "chronik test CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(der)
	p := &testPKI{t: t, dir: t.TempDir(), ca: ca, key: key, pool: x509.NewCertPool(), serial: 1}
	p.pool.AddCert(ca)
	p.caFile = filepath.Join(p.dir, "ca.pem")
	writePEM(t, p.caFile, "CERTIFICATE", der)
	return p
}

func writePEM(t testing.TB, path, typ string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

// issue makes a certificate for subject (a server one for 127.0.0.1 and
// localhost, or a client one) and writes name.pem and name-key.pem.
func (p *testPKI) issue(name string, subject pkix.Name, server bool) (certFile, keyFile string, cert tls.Certificate) {
	p.t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		p.t.Fatal(err)
	}
	p.serial++
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(p.serial),
		Subject:      subject,
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	if server {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		tmpl.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1)}
		tmpl.DNSNames = []string{"localhost"}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.ca, &key.PublicKey, p.key)
	if err != nil {
		p.t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		p.t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(p.dir, name+".pem"), filepath.Join(p.dir, name+"-key.pem")
	writePEM(p.t, certFile, "CERTIFICATE", der)
	writePEM(p.t, keyFile, "PRIVATE KEY", keyDER)
	cert, err = tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		p.t.Fatal(err)
	}
	return certFile, keyFile, cert
}

// secureEnv is a broker whose one listener speaks proto, with a server
// certificate from its own CA and users alice and bob.
type secureEnv struct {
	*testEnv
	pki   *testPKI
	files *TLSFiles
}

const (
	alicePassword = "alice-secret"
	bobPassword   = "bob-secret"
)

func startSecureEnv(t testing.TB, proto SecurityProtocol, clientCA bool, opts ...envOpt) *secureEnv {
	t.Helper()
	se := &secureEnv{pki: newTestPKI(t)}
	certFile, keyFile, _ := se.pki.issue("server", pkix.Name{CommonName: "chronik"}, true)
	ca := ""
	if clientCA {
		ca = se.pki.caFile
	}
	files, err := LoadTLSFiles(certFile, keyFile, ca)
	if err != nil {
		t.Fatal(err)
	}
	se.files = files
	opts = append([]envOpt{func(e *testEnv) {
		e.lcfg = &ListenerConfig{Name: "SECURE", Protocol: proto, TLS: files.Config()}
		e.kcfg.SASLMechanisms = SupportedSASLMechanisms
	}}, opts...)
	se.testEnv = startEnv(t, opts...)
	ctx := context.Background()
	for _, m := range []broker.ScramMechanism{broker.ScramSHA256, broker.ScramSHA512} {
		c, err := broker.NewScramCredential(m, alicePassword, 4096)
		if err != nil {
			t.Fatal(err)
		}
		if err := se.b.SetScramCredential(ctx, "alice", c); err != nil {
			t.Fatal(err)
		}
	}
	c, _ := broker.NewScramCredential(broker.ScramSHA512, bobPassword, 8192)
	if err := se.b.SetScramCredential(ctx, "bob", c); err != nil {
		t.Fatal(err)
	}
	return se
}

func (se *secureEnv) tlsConfig() *tls.Config { return &tls.Config{RootCAs: se.pki.pool} }

// secureClient is a kgo client of the listener with TLS (when the
// listener has it) and the given SASL mechanism (nil: none).
func (se *secureEnv) secureClient(m sasl.Mechanism, opts ...kgo.Opt) *kgo.Client {
	se.t.Helper()
	if se.lcfg.Protocol.TLS() {
		opts = append(opts, kgo.DialTLSConfig(se.tlsConfig()))
	}
	if m != nil {
		opts = append(opts, kgo.SASL(m))
	}
	return se.client(opts...)
}

// roundTripRecords produces n records to topic with cl and reads them
// back with a fresh client made by mk.
func roundTripRecords(t *testing.T, cl *kgo.Client, mk func(...kgo.Opt) *kgo.Client, topic string, n int) {
	t.Helper()
	ctx := testContext(t)
	produceAll(ctx, t, cl, makeRecords(topic, n, 7))
	cons := mk(kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchMaxWait(100*time.Millisecond))
	got := 0
	for got < n {
		fs := cons.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("consumed %d of %d records", got, n)
		}
		if err := fs.Err(); err != nil {
			t.Fatalf("consume: %v", err)
		}
		got += len(fs.Records())
	}
}

// requestErr is the error of one Metadata request with cl, within d.
func requestErr(cl *kgo.Client, d time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	_, err := cl.Request(ctx, kmsg.NewPtrMetadataRequest())
	return err
}

func TestSASLSSLMechanismsProduceConsume(t *testing.T) {
	se := startSecureEnv(t, ProtocolSASLSSL, false)
	mechs := map[string]func() sasl.Mechanism{
		"SCRAM-SHA-512": func() sasl.Mechanism {
			return scram.Auth{User: "alice", Pass: alicePassword}.AsSha512Mechanism()
		},
		"SCRAM-SHA-256": func() sasl.Mechanism {
			return scram.Auth{User: "alice", Pass: alicePassword}.AsSha256Mechanism()
		},
		"PLAIN": func() sasl.Mechanism { return plain.Auth{User: "bob", Pass: bobPassword}.AsMechanism() },
	}
	for name, mk := range mechs {
		t.Run(name, func(t *testing.T) {
			topic := "t-" + strings.ToLower(name)
			se.createTopic(topic, 1, nil)
			cl := se.secureClient(mk())
			roundTripRecords(t, cl, func(o ...kgo.Opt) *kgo.Client { return se.secureClient(mk(), o...) }, topic, 20)
		})
	}
	// Metadata and DescribeCluster answer with this listener's address.
	cl := se.secureClient(mechs["SCRAM-SHA-512"]())
	resp, err := cl.Request(testContext(t), kmsg.NewPtrDescribeClusterRequest())
	if err != nil {
		t.Fatal(err)
	}
	host, port, _ := net.SplitHostPort(se.addr)
	if b := resp.(*kmsg.DescribeClusterResponse).Brokers; len(b) != 1 || b[0].Host != host || port != itoa(b[0].Port) {
		t.Fatalf("brokers %+v, want %s", b, se.addr)
	}
	se.waitForLog(`"principal":"User:alice"`)
	se.waitForLog(`"principal":"User:bob"`)
}

func itoa(p int32) string { return big.NewInt(int64(p)).String() }

func TestSASLFailuresAreCleanAndBrokerServesOthers(t *testing.T) {
	se := startSecureEnv(t, ProtocolSASLSSL, false)
	good := scram.Auth{User: "alice", Pass: alicePassword}.AsSha512Mechanism()

	t.Run("wrong password", func(t *testing.T) {
		bad := se.secureClient(scram.Auth{User: "alice", Pass: "nope"}.AsSha512Mechanism())
		err := requestErr(bad, 20*time.Second)
		if !errors.Is(err, kerr.SaslAuthenticationFailed) {
			t.Fatalf("wrong password: %v", err)
		}
		se.waitForLog("SASL authentication failed")
	})
	t.Run("unknown user", func(t *testing.T) {
		bad := se.secureClient(plain.Auth{User: "mallory", Pass: "x"}.AsMechanism())
		if err := requestErr(bad, 20*time.Second); !errors.Is(err, kerr.SaslAuthenticationFailed) {
			t.Fatalf("unknown user: %v", err)
		}
	})
	t.Run("plaintext client on the TLS listener", func(t *testing.T) {
		plainCl := se.client(kgo.SASL(good))
		if err := requestErr(plainCl, 3*time.Second); err == nil {
			t.Fatal("a plaintext client got an answer from the TLS listener")
		}
		se.waitForLog("TLS handshake failed")
	})
	t.Run("good client still served", func(t *testing.T) {
		if err := requestErr(se.secureClient(good), 20*time.Second); err != nil {
			t.Fatal(err)
		}
	})
}

func TestSASLUnknownMechanism(t *testing.T) {
	// Only SCRAM-SHA-512 on this server.
	se := startSecureEnv(t, ProtocolSASLPlaintext, false, func(e *testEnv) { e.kcfg.SASLMechanisms = []string{"SCRAM-SHA-512"} })
	cl := se.secureClient(scram.Auth{User: "alice", Pass: alicePassword}.AsSha256Mechanism())
	if err := requestErr(cl, 20*time.Second); !errors.Is(err, kerr.UnsupportedSaslMechanism) {
		t.Fatalf("unknown mechanism: %v", err)
	}
	se.waitForLog("unsupported SASL mechanism")

	// Raw: the answer lists the enabled mechanisms, then the connection closes.
	rc := se.dial()
	req := kmsg.NewPtrSASLHandshakeRequest()
	req.SetVersion(1)
	req.Mechanism = "GSSAPI"
	resp := rc.roundTrip(req).(*kmsg.SASLHandshakeResponse)
	if resp.ErrorCode != kerr.UnsupportedSaslMechanism.Code || len(resp.SupportedMechanisms) != 1 || resp.SupportedMechanisms[0] != "SCRAM-SHA-512" {
		t.Fatalf("handshake answer %+v", resp)
	}
	rc.expectClosed()
	if err := requestErr(se.secureClient(scram.Auth{User: "alice", Pass: alicePassword}.AsSha512Mechanism()), 20*time.Second); err != nil {
		t.Fatal(err)
	}
}

func TestTLSClientOnPlaintextListenerFails(t *testing.T) {
	e := startEnv(t)
	pki := newTestPKI(t)
	cl := e.client(kgo.DialTLSConfig(&tls.Config{RootCAs: pki.pool}))
	if err := requestErr(cl, 3*time.Second); err == nil {
		t.Fatal("a TLS client got an answer from a plaintext listener")
	}
	e.waitForLog("frame larger than max request bytes")
	if err := requestErr(e.client(), 20*time.Second); err != nil {
		t.Fatal(err)
	}
}

func TestRequestBeforeSASLClosesConnection(t *testing.T) {
	se := startSecureEnv(t, ProtocolSASLPlaintext, false)
	rc := se.dial()
	// ApiVersions is allowed before authentication.
	av := kmsg.NewPtrApiVersionsRequest()
	av.SetVersion(3)
	av.ClientSoftwareName, av.ClientSoftwareVersion = "t", "1"
	if resp := rc.roundTrip(av).(*kmsg.ApiVersionsResponse); resp.ErrorCode != 0 {
		t.Fatal(kerr.ErrorForCode(resp.ErrorCode))
	}
	md := kmsg.NewPtrMetadataRequest()
	md.SetVersion(12)
	rc.send(md)
	rc.expectClosed()
	se.waitForLog("unexpected Metadata request (correlation id 2) before SASL authentication")

	// SaslAuthenticate without a handshake: ILLEGAL_SASL_STATE, closed.
	rc = se.dial()
	auth := kmsg.NewPtrSASLAuthenticateRequest()
	auth.SetVersion(2)
	if resp := rc.roundTrip(auth).(*kmsg.SASLAuthenticateResponse); resp.ErrorCode != kerr.IllegalSaslState.Code {
		t.Fatalf("authenticate without handshake: %v", kerr.ErrorForCode(resp.ErrorCode))
	}
	rc.expectClosed()

	// A large frame before authentication is refused before it is read.
	rc = se.dial()
	rc.write(binary.BigEndian.AppendUint32(nil, saslMaxReceiveBytes+1))
	rc.expectClosed()
	se.waitForLog("frame larger than allowed before SASL authentication")
}

// TestSASLHandshakeV0RawTokens speaks SaslHandshake v0 by hand: the tokens
// then travel as bare size-prefixed frames, for PLAIN (one round trip) and
// SCRAM-SHA-256 (two), after which Kafka requests work.
func TestSASLHandshakeV0RawTokens(t *testing.T) {
	se := startSecureEnv(t, ProtocolSASLPlaintext, false)
	handshake := func(rc *rawConn, mech string) {
		req := kmsg.NewPtrSASLHandshakeRequest()
		req.SetVersion(0)
		req.Mechanism = mech
		if resp := rc.roundTrip(req).(*kmsg.SASLHandshakeResponse); resp.ErrorCode != 0 {
			t.Fatalf("handshake: %v", kerr.ErrorForCode(resp.ErrorCode))
		}
	}
	rawToken := func(rc *rawConn, tok []byte) []byte {
		rc.write(append(binary.BigEndian.AppendUint32(nil, uint32(len(tok))), tok...))
		b, err := rc.readFrame()
		if err != nil {
			t.Fatalf("raw token answer: %v", err)
		}
		return b
	}
	metadataWorks := func(rc *rawConn) {
		md := kmsg.NewPtrMetadataRequest()
		md.SetVersion(12)
		wantCode(t, "metadata", rc.roundTrip(md).(*kmsg.MetadataResponse).ErrorCode)
	}

	rc := se.dial()
	handshake(rc, "PLAIN")
	if out := rawToken(rc, []byte("\x00bob\x00"+bobPassword)); len(out) != 0 {
		t.Fatalf("PLAIN answer %q", out)
	}
	metadataWorks(rc)

	rc = se.dial()
	handshake(rc, "SCRAM-SHA-256")
	xc, _ := xscram.SHA256.NewClientUnprepped("alice", alicePassword, "")
	conv := xc.NewConversation()
	msg, _ := conv.Step("")
	for i := 0; !conv.Done() && i < 3; i++ {
		s := rawToken(rc, []byte(msg))
		var err error
		if msg, err = conv.Step(string(s)); err != nil {
			t.Fatalf("SCRAM step: %v", err)
		}
	}
	if !conv.Valid() {
		t.Fatal("server signature not valid")
	}
	metadataWorks(rc)
	se.waitForLog(`"principal":"User:alice"`)

	// A wrong password with v0 framing: closed without an answer.
	rc = se.dial()
	handshake(rc, "PLAIN")
	rc.write(append(binary.BigEndian.AppendUint32(nil, 8), []byte("\x00bob\x00bad")...))
	rc.expectClosed()
}

func TestSASLReauthentication(t *testing.T) {
	se := startSecureEnv(t, ProtocolSASLSSL, false, func(e *testEnv) {
		e.kcfg.ConnectionsMaxReauth = 1500 * time.Millisecond
	})
	mk := func(o ...kgo.Opt) *kgo.Client {
		return se.secureClient(scram.Auth{User: "alice", Pass: alicePassword}.AsSha512Mechanism(), o...)
	}
	cl := mk()
	ctx := testContext(t)
	se.createTopic("reauth", 1, nil)
	// Keep producing for several session lifetimes: kgo re-authenticates
	// in place, so no request fails and no connection is closed for an
	// expired session.
	deadline := time.Now().Add(5 * time.Second)
	for i := 0; time.Now().Before(deadline) && i < 1000; i++ {
		produceAll(ctx, t, cl, makeRecords("reauth", 1, uint64(i)))
		time.Sleep(100 * time.Millisecond)
	}
	if strings.Contains(se.logs.String(), "SASL session expired") {
		t.Fatal("a connection was closed for an expired session")
	}
	if !reauthenticatedInPlace(se.logs.String()) {
		t.Fatalf("no connection authenticated twice; logs:\n%s", se.logs.String())
	}

	// A raw client that lets its session expire is closed at its next request.
	rc := se.dialTLS()
	scramLoginV1(t, rc, "alice", alicePassword)
	time.Sleep(1600 * time.Millisecond)
	md := kmsg.NewPtrMetadataRequest()
	md.SetVersion(12)
	rc.send(md)
	rc.expectClosed()
	se.waitForLog("SASL session expired")
}

// reauthenticatedInPlace reports whether the logs show one connection
// (remote address) authenticating more than once.
func reauthenticatedInPlace(logs string) bool {
	remoteRE := regexp.MustCompile(`"remote":"([^"]+)"`)
	seen := map[string]int{}
	for _, line := range strings.Split(logs, "\n") {
		if !strings.Contains(line, "SASL authenticated") {
			continue
		}
		if m := remoteRE.FindStringSubmatch(line); m != nil {
			if seen[m[1]]++; seen[m[1]] > 1 {
				return true
			}
		}
	}
	return false
}

// dialTLS is dial over TLS, trusting the env's CA.
func (se *secureEnv) dialTLS() *rawConn {
	se.t.Helper()
	c, err := tls.Dial("tcp", se.addr, se.tlsConfig())
	if err != nil {
		se.t.Fatal(err)
	}
	se.t.Cleanup(func() { c.Close() })
	return &rawConn{t: se.t, c: c, fmtr: kmsg.NewRequestFormatter(kmsg.FormatterClientID("chronik-test"))}
}

// scramLoginV1 authenticates rc with SaslHandshake v1 and SaslAuthenticate
// v2 (SCRAM-SHA-512) and returns the session lifetime.
func scramLoginV1(t *testing.T, rc *rawConn, user, password string) int64 {
	t.Helper()
	hs := kmsg.NewPtrSASLHandshakeRequest()
	hs.SetVersion(1)
	hs.Mechanism = "SCRAM-SHA-512"
	if resp := rc.roundTrip(hs).(*kmsg.SASLHandshakeResponse); resp.ErrorCode != 0 {
		t.Fatalf("handshake: %v", kerr.ErrorForCode(resp.ErrorCode))
	}
	xc, _ := xscram.SHA512.NewClientUnprepped(user, password, "")
	conv := xc.NewConversation()
	msg, _ := conv.Step("")
	var lifetime int64
	for i := 0; !conv.Done() && i < 3; i++ {
		auth := kmsg.NewPtrSASLAuthenticateRequest()
		auth.SetVersion(2)
		auth.SASLAuthBytes = []byte(msg)
		resp := rc.roundTrip(auth).(*kmsg.SASLAuthenticateResponse)
		if resp.ErrorCode != 0 {
			t.Fatalf("authenticate: %v %v", kerr.ErrorForCode(resp.ErrorCode), resp.ErrorMessage)
		}
		lifetime = resp.SessionLifetimeMillis
		var err error
		if msg, err = conv.Step(string(resp.SASLAuthBytes)); err != nil {
			t.Fatalf("SCRAM step: %v", err)
		}
	}
	if !conv.Valid() {
		t.Fatal("server signature not valid")
	}
	return lifetime
}

func TestMutualTLSPrincipal(t *testing.T) {
	se := startSecureEnv(t, ProtocolSSL, true)
	_, _, cert := se.pki.issue("client", pkix.Name{CommonName: "carol", Organization: []string{"acme"}}, false)
	cfg := se.tlsConfig()
	cfg.Certificates = []tls.Certificate{cert}
	if err := requestErr(se.client(kgo.DialTLSConfig(cfg)), 20*time.Second); err != nil {
		t.Fatal(err)
	}
	se.waitForLog(`"principal":"User:CN=carol,O=acme"`)
	// Without a client certificate the handshake fails.
	if err := requestErr(se.client(kgo.DialTLSConfig(se.tlsConfig())), 3*time.Second); err == nil {
		t.Fatal("a client without a certificate was served")
	}
	se.waitForLog("TLS handshake failed")
}

// TestTLSCertificateReload: after Reload, new connections get the new
// certificate and open ones stay; a bad file keeps the old one.
func TestTLSCertificateReload(t *testing.T) {
	se := startSecureEnv(t, ProtocolSSL, false)
	old := se.dialTLS()
	serial := func(c *rawConn) string {
		return c.c.(*tls.Conn).ConnectionState().PeerCertificates[0].SerialNumber.String()
	}
	oldSerial := serial(old)
	// Rewrite the files in place with a new certificate.
	certFile, _, _ := se.pki.issue("server", pkix.Name{CommonName: "chronik-renewed"}, true)
	if err := se.files.Reload(); err != nil {
		t.Fatal(err)
	}
	fresh := se.dialTLS()
	if serial(fresh) == oldSerial {
		t.Fatal("a new connection got the old certificate")
	}
	checkAlive(t, old)
	checkAlive(t, fresh)

	// A broken file: Reload fails naming it, and the served certificate stays.
	if err := os.WriteFile(certFile, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	err := se.files.Reload()
	if err == nil || !strings.Contains(err.Error(), certFile) {
		t.Fatalf("reload of a broken file: %v", err)
	}
	again := se.dialTLS()
	if serial(again) != serial(fresh) {
		t.Fatal("the certificate changed after a failed reload")
	}
}

func TestLoadTLSFilesErrorsNameTheFile(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "missing.pem")
	if _, err := LoadTLSFiles(missing, missing, ""); err == nil || !strings.Contains(err.Error(), missing) {
		t.Fatalf("missing file: %v", err)
	}
	pki := newTestPKI(t)
	c, k, _ := pki.issue("s", pkix.Name{CommonName: "s"}, true)
	bad := filepath.Join(dir, "bad-ca.pem")
	os.WriteFile(bad, []byte("junk"), 0o600)
	if _, err := LoadTLSFiles(c, k, bad); err == nil || !strings.Contains(err.Error(), bad) {
		t.Fatalf("bad CA file: %v", err)
	}
}

// FuzzSASLTokens feeds arbitrary tokens to every mechanism's first and
// second steps (PLAIN's message, SCRAM's client-first and client-final)
// and to the v0 raw framing: nothing may panic, and nothing but the right
// password authenticates.
func FuzzSASLTokens(f *testing.F) {
	f.Add("PLAIN", []byte("\x00bob\x00"+bobPassword), []byte(nil))
	f.Add("PLAIN", []byte("bob\x00bob\x00x"), []byte(nil))
	f.Add("SCRAM-SHA-256", []byte("n,,n=alice,r=abc"), []byte("c=biws,r=abc,p=AAAA"))
	f.Add("SCRAM-SHA-512", []byte("p=tls-unique,,n=alice,r=x"), []byte(""))
	f.Add("SCRAM-SHA-512", []byte("n,a=bob,n=alice,r=x"), []byte("c=biws,r=x"))
	se := startSecureEnv(f, ProtocolSASLPlaintext, false)
	f.Fuzz(func(t *testing.T, mech string, first, second []byte) {
		c := &conn{s: se.srv, lst: &listener{name: "F", protocol: ProtocolSASLPlaintext}, log: se.srv.log}
		c.beginSASL(mech, false)
		_, done, clientErr, _ := c.saslStep(first)
		if clientErr == nil && !done {
			_, done, clientErr, _ = c.saslStep(second)
		}
		if done && clientErr == nil && mech == "PLAIN" && !strings.HasSuffix(string(first), "\x00"+bobPassword) && !strings.HasSuffix(string(first), "\x00"+alicePassword) {
			t.Fatalf("PLAIN %q authenticated", first)
		}
		if done && clientErr == nil && strings.HasPrefix(mech, "SCRAM") {
			t.Fatalf("SCRAM authenticated without a valid proof: %q %q", first, second)
		}
		// The same token as a v0 raw frame.
		client, server := net.Pipe()
		defer client.Close()
		rc := &conn{s: se.srv, lst: &listener{name: "F", protocol: ProtocolSASLPlaintext}, log: se.srv.log,
			nc: server, br: bufio.NewReaderSize(server, readBufferSize), slots: make(chan *slot, maxPipelined), ctx: context.Background()}
		rc.beginSASL(mech, true)
		go func() {
			client.Write(append(binary.BigEndian.AppendUint32(nil, uint32(len(first))), first...))
			client.Close()
		}()
		fr := frameClock{deadline: time.Now().Add(5 * time.Second)}
		size, reason, _ := rc.readSize(&fr)
		if reason == "" {
			rc.rawSASLFrame(size, &fr)
		}
		server.Close()
		io.Copy(io.Discard, client)
	})
}

// TestSCRAMLibrdkafkaNonce: librdkafka 2.0 sends its own nonce in front of
// the server's in client-final; Kafka accepts a nonce ending with the
// server's, and so do we, with the proof still checked.
func TestSCRAMLibrdkafkaNonce(t *testing.T) {
	se := startSecureEnv(t, ProtocolSASLPlaintext, false)
	login := func(password string) error {
		c := &conn{s: se.srv, lst: &listener{name: "T", protocol: ProtocolSASLPlaintext}, log: se.srv.log}
		c.beginSASL("SCRAM-SHA-256", false)
		first := "n,,n=alice,r=clientnonce"
		s1, _, clientErr, _ := c.saslStep([]byte(first))
		if clientErr != nil {
			return clientErr
		}
		nonce := "clientnonce" + scramAttr(string(s1), "r") // doubled, as librdkafka does
		salt, _ := base64.StdEncoding.DecodeString(scramAttr(string(s1), "s"))
		salted, _ := pbkdf2.Key(sha256.New, password, salt, 4096, sha256.Size)
		mac := func(key []byte, msg string) []byte {
			m := hmac.New(sha256.New, key)
			m.Write([]byte(msg))
			return m.Sum(nil)
		}
		clientKey := mac(salted, "Client Key")
		stored := sha256.Sum256(clientKey)
		withoutProof := "c=biws,r=" + nonce
		sig := mac(stored[:], "n=alice,r=clientnonce,"+string(s1)+","+withoutProof)
		for i := range sig {
			sig[i] ^= clientKey[i]
		}
		out, done, clientErr, _ := c.saslStep([]byte(withoutProof + ",p=" + base64.StdEncoding.EncodeToString(sig)))
		if clientErr != nil {
			return clientErr
		}
		want := "v=" + base64.StdEncoding.EncodeToString(mac(mac(salted, "Server Key"), "n=alice,r=clientnonce,"+string(s1)+","+withoutProof))
		if !done || string(out) != want || c.principal != "User:alice" {
			t.Fatalf("done %v, server final %q (want %q), principal %s", done, out, want, c.principal)
		}
		return nil
	}
	if err := login(alicePassword); err != nil {
		t.Fatalf("right password: %v", err)
	}
	if err := login("wrong"); err == nil {
		t.Fatal("wrong password accepted")
	}
}
