package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/twmb/franz-go/pkg/sasl/scram"
)

// writeTestCert writes a CA-signed ECDSA P-256 server certificate for
// 127.0.0.1 (serial given) and returns the CA pool. caKey nil: a new CA.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pool *x509.CertPool
}

func newTestCA(t *testing.T) *testCA {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &testCA{cert: cert, key: key, pool: pool}
}

// issueServer writes a server certificate for 127.0.0.1 with the given
// serial to certFile and keyFile.
func (ca *testCA) issueServer(t *testing.T, serial int64, certFile, keyFile string) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: "chronik"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, _ := x509.MarshalPKCS8PrivateKey(key)
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600)
}

// TestServeSASLSSLUsersAndCertReload runs `chronik serve` in-process with a
// PLAINTEXT and a SASL_SSL listener: the first user is created through the
// admin listener with `chronik user create`, a SCRAM-SHA-512 client
// produces and consumes, kadm creates a second user over Kafka, and SIGHUP
// reloads the certificate without dropping connections.
func TestServeSASLSSLUsersAndCertReload(t *testing.T) {
	dir := t.TempDir()
	ca := newTestCA(t)
	certFile, keyFile := filepath.Join(dir, "server.pem"), filepath.Join(dir, "server-key.pem")
	ca.issueServer(t, 100, certFile, keyFile)
	addrs := freeAddrs(t, 3)
	plainAddr, saslAddr, adminAddr := addrs[0], addrs[1], addrs[2]
	tokenFile := filepath.Join(dir, "admin-token")
	if err := os.WriteFile(tokenFile, []byte("0123456789abcdef0123\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	args := []string{"chronik", "serve", "--data-dir", filepath.Join(dir, "data"), "--admin-listen", adminAddr,
		"--admin-token-file", tokenFile,
		"--listeners", "PLAINTEXT://" + plainAddr + ",SASL_SSL://" + saslAddr,
		"--tls-cert-file", certFile, "--tls-key-file", keyFile, "--sasl-mechanisms", "SCRAM-SHA-512,PLAIN"}

	// A missing key file fails start-up, naming it.
	var badErr syncBuffer
	bad := append(args[:len(args):len(args)], "--tls-key-file", filepath.Join(dir, "missing.pem"))
	if code := run(bad, &syncBuffer{}, &badErr); code != 2 || !strings.Contains(badErr.String(), "missing.pem") {
		t.Fatalf("bad key file: exit %d, stderr %s", code, badErr.String())
	}

	stderr := serveInProcess(t, args, adminAddr)
	adminURL := "http://" + adminAddr

	// The admin listener wants its token: chronik user sends it from
	// --admin-token-file or CHRONIK_ADMIN_TOKEN.
	if r := runCLI(t, "alice-pw\n", "user", "create", "alice", "--password-stdin", "--admin-url", adminURL); r.code != 1 || !strings.Contains(r.stderr, "401") {
		t.Fatalf("user create without the admin token: exit %d, %s", r.code, r.stderr)
	}
	ok(t, "alice-pw\n", "user", "create", "alice", "--password-stdin", "--admin-url", adminURL, "--admin-token-file", tokenFile)
	t.Setenv("CHRONIK_ADMIN_TOKEN", "0123456789abcdef0123")
	if r := runCLI(t, "x\n", "user", "create", "alice", "--password-stdin", "--admin-url", adminURL); r.code != 1 || !strings.Contains(r.stderr, "already exists") {
		t.Fatalf("second create: %+v", r)
	}
	list := ok(t, "", "user", "list", "--format", "json", "--admin-url", adminURL)
	var users []UserInfo
	decode(t, list, &users)
	if len(users) != 1 || users[0].Name != "alice" || len(users[0].Mechanisms) != 2 {
		t.Fatalf("users %+v", users)
	}
	if r := runCLI(t, "", "user", "create", "x", "--password", "pw", "--iterations", "100", "--admin-url", adminURL); r.code != 2 ||
		!strings.Contains(r.stderr, "warning: --password") || !strings.Contains(r.stderr, "too few iterations") {
		t.Fatalf("create with --password and too few iterations: %+v", r)
	}

	tlsCfg := &tls.Config{RootCAs: ca.pool}
	saslClient := func(user, pw string, opts ...kgo.Opt) *kgo.Client {
		cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(saslAddr), kgo.DialTLSConfig(tlsCfg.Clone()),
			kgo.SASL(scram.Auth{User: user, Pass: pw}.AsSha512Mechanism()), kgo.RetryTimeout(20 * time.Second)}, opts...)...)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(cl.Close)
		return cl
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	alice := saslClient("alice", "alice-pw")
	adm := kadm.NewClient(alice)
	if _, err := adm.CreateTopic(ctx, 1, 1, nil, "secure"); err != nil {
		t.Fatal(err)
	}
	// Metadata on the SASL_SSL listener advertises the SASL_SSL address.
	md, err := adm.BrokerMetadata(ctx)
	if err != nil || len(md.Brokers) != 1 || net.JoinHostPort(md.Brokers[0].Host, strconv.Itoa(int(md.Brokers[0].Port))) != saslAddr {
		t.Fatalf("metadata %+v %v, want %s", md.Brokers, err, saslAddr)
	}
	if err := alice.ProduceSync(ctx, &kgo.Record{Topic: "secure", Value: []byte("hello")}).FirstErr(); err != nil {
		t.Fatal(err)
	}

	// The Kafka API path for users: kadm.AlterUserSCRAMs, then bob logs in.
	res, err := adm.AlterUserSCRAMs(ctx, nil, []kadm.UpsertSCRAM{{User: "bob", Mechanism: kadm.ScramSha512, Iterations: 4096, Password: "bob-pw"}})
	if err != nil || res.AllFailed() || res.Error() != nil {
		t.Fatalf("alter: %v %v", err, res.Error())
	}
	described, err := adm.DescribeUserSCRAMs(ctx, "bob")
	if err != nil || described["bob"].Err != nil || len(described["bob"].CredInfos) != 1 {
		t.Fatalf("describe bob: %v %+v", err, described)
	}
	bob := saslClient("bob", "bob-pw", kgo.ConsumeTopics("secure"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	fs := bob.PollFetches(ctx)
	if err := fs.Err(); err != nil || len(fs.Records()) != 1 || string(fs.Records()[0].Value) != "hello" {
		t.Fatalf("bob consumed %d records: %v", len(fs.Records()), err)
	}
	// A wrong password fails cleanly.
	if _, err := kadm.NewClient(saslClient("bob", "nope")).BrokerMetadata(ctx); !errors.Is(err, kerr.SaslAuthenticationFailed) {
		t.Fatalf("wrong password: %v", err)
	}

	// SIGHUP: a renewed certificate for new connections; old ones stay.
	dialSerial := func() (*tls.Conn, string) {
		c, err := tls.Dial("tcp", saslAddr, tlsCfg)
		if err != nil {
			t.Fatal(err)
		}
		return c, c.ConnectionState().PeerCertificates[0].SerialNumber.String()
	}
	old, serial := dialSerial()
	defer old.Close()
	if serial != "100" {
		t.Fatalf("serial %s", serial)
	}
	ca.issueServer(t, 200, certFile, keyFile)
	syscall.Kill(os.Getpid(), syscall.SIGHUP)
	for i := 0; ; i++ {
		c, s := dialSerial()
		c.Close()
		if s == "200" {
			break
		}
		if i > 200 {
			t.Fatalf("certificate not reloaded\n%s", stderr.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	// The old connection still speaks Kafka (ApiVersions needs no login).
	req := kmsg.NewPtrApiVersionsRequest()
	frame := kmsg.NewRequestFormatter().AppendRequest(nil, req, 1)
	old.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := old.Write(frame); err != nil {
		t.Fatal(err)
	}
	var size [4]byte
	if _, err := old.Read(size[:]); err != nil {
		t.Fatalf("old connection dropped after reload: %v", err)
	}
	if err := alice.ProduceSync(ctx, &kgo.Record{Topic: "secure", Value: []byte("after")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	// A broken file at reload keeps the served certificate and logs.
	os.WriteFile(certFile, []byte("junk"), 0o600)
	syscall.Kill(os.Getpid(), syscall.SIGHUP)
	for i := 0; !strings.Contains(stderr.String(), "TLS certificates not reloaded"); i++ {
		if i > 200 {
			t.Fatalf("bad reload not logged\n%s", stderr.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	if c, s := dialSerial(); s != "200" {
		t.Fatalf("serial %s after a failed reload", s)
	} else {
		c.Close()
	}
}

// TestClusterUserOnAnotherNode: a user created through node 1's admin
// listener authenticates on node 2's SASL listener (credentials replicate
// through the metadata log), and Metadata on a SASL listener lists every
// node's SASL address.
func TestClusterUserOnAnotherNode(t *testing.T) {
	c := newCluster(t, 3)
	sasl := freeAddrs(t, 3)
	admin := freeAddrs(t, 1)[0]
	for id := 1; id <= 3; id++ {
		adminListen := ""
		if id == 1 {
			adminListen = admin
		}
		c.startListeners(id, adminListen, "PLAINTEXT://"+c.kafka[id-1]+",SASL_PLAINTEXT://"+sasl[id-1])
	}
	for id := 1; id <= 3; id++ {
		c.waitUp(id)
	}
	c.createTopic("cl-secure", 3, 3)
	adminURL := "http://" + admin
	var r result
	for i := 0; i < 200; i++ {
		if r = runCLI(t, "carol-pw\n", "user", "create", "carol", "--password-stdin", "--mechanism", "SCRAM-SHA-256", "--admin-url", adminURL); r.code == 0 {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if r.code != 0 {
		t.Fatalf("user create: %+v", r)
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(sasl[1]), kgo.SASL(scram.Auth{User: "carol", Pass: "carol-pw"}.AsSha256Mechanism()),
		kgo.RetryTimeout(30*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var md *kmsg.MetadataResponse
	for i := 0; ; i++ {
		// The credential may reach node 2 a moment after node 1 applied it.
		resp, err := cl.Request(ctx, kmsg.NewPtrMetadataRequest())
		if err == nil {
			md = resp.(*kmsg.MetadataResponse)
			break
		}
		if i > 50 || !errors.Is(err, kerr.SaslAuthenticationFailed) {
			t.Fatalf("carol on node 2: %v\n%s", err, c.logTail(2))
		}
		cl.Close()
		cl, _ = kgo.NewClient(kgo.SeedBrokers(sasl[1]), kgo.SASL(scram.Auth{User: "carol", Pass: "carol-pw"}.AsSha256Mechanism()))
		time.Sleep(100 * time.Millisecond)
	}
	for _, b := range md.Brokers {
		if got := net.JoinHostPort(b.Host, strconv.Itoa(int(b.Port))); got != sasl[b.NodeID-1] {
			t.Fatalf("node %d advertised %s on the SASL listener, want %s", b.NodeID, got, sasl[b.NodeID-1])
		}
	}
	if err := cl.ProduceSync(ctx, &kgo.Record{Topic: "cl-secure", Value: []byte("v")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
}

// startListeners runs node id with --listeners instead of --listen.
func (c *testCluster) startListeners(id int, adminListen, listeners string) {
	c.t.Helper()
	c.startWith(id, "--peers", c.peers(), "--listeners", listeners, "--admin-listen", adminListen)
}
