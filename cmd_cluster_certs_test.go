package main

import (
	"crypto/x509"
	"encoding/pem"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/chronik-stream/chronik/cluster"
)

// TestClusterCertsCommand: `chronik cluster certs` writes a CA and node
// certificates that peer TLS loads, keys 0600; run again it reuses the CA
// for a new node and never overwrites a node's files.
func TestClusterCertsCommand(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "certs")
	r := ok(t, "", "cluster", "certs", "--out", dir, "--nodes", "1,2,3", "--hosts", "1=10.0.0.1:9093,1=node1.example.com,2=[::1]:9093")
	for _, f := range []string{"ca.pem", "ca-key.pem", "node-1.pem", "node-1-key.pem", "node-3.pem", "node-3-key.pem"} {
		if !strings.Contains(r.stdout, filepath.Join(dir, f)) {
			t.Errorf("output does not name %s:\n%s", f, r.stdout)
		}
	}
	if fi, err := os.Stat(dir); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("directory: %v %v", fi.Mode(), err)
	}
	for _, f := range []string{"ca-key.pem", "node-1-key.pem", "node-2-key.pem", "node-3-key.pem"} {
		if fi, err := os.Stat(filepath.Join(dir, f)); err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %v, %v; want 0600", f, fi.Mode(), err)
		}
	}
	load := func(id string) *cluster.PeerTLS {
		t.Helper()
		p, err := cluster.LoadPeerTLS(filepath.Join(dir, "node-"+id+".pem"), filepath.Join(dir, "node-"+id+"-key.pem"), filepath.Join(dir, "ca.pem"))
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	for _, id := range []string{"1", "2", "3"} {
		if got := load(id).NodeID(); got != uint64(id[0]-'0') {
			t.Errorf("node-%s.pem names node %d", id, got)
		}
	}
	b, _ := os.ReadFile(filepath.Join(dir, "node-1.pem"))
	blk, _ := pem.Decode(b)
	cert, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(cert.DNSNames, []string{"node1.example.com"}) || len(cert.IPAddresses) != 1 || !cert.IPAddresses[0].Equal(net.ParseIP("10.0.0.1")) {
		t.Errorf("node 1 SANs: %v %v", cert.DNSNames, cert.IPAddresses)
	}

	// Never over a node's files; a new node from the same CA.
	caBefore, _ := os.ReadFile(filepath.Join(dir, "ca.pem"))
	if r := runCLI(t, "", "cluster", "certs", "--out", dir, "--nodes", "4,3"); r.code != 1 || !strings.Contains(r.stderr, "node-3.pem exists") {
		t.Errorf("over node 3: exit %d %q", r.code, r.stderr)
	}
	if _, err := os.Stat(filepath.Join(dir, "node-4.pem")); err == nil {
		t.Error("node 4 written although node 3 was refused")
	}
	ok(t, "", "cluster", "certs", "--out", dir, "--nodes", "4")
	if caAfter, _ := os.ReadFile(filepath.Join(dir, "ca.pem")); string(caAfter) != string(caBefore) {
		t.Error("the CA was replaced")
	}
	if load("4").NodeID() != 4 {
		t.Error("node 4")
	}

	for _, args := range [][]string{
		{"--nodes", "0"},
		{"--nodes", "1,1"},
		{"--nodes", "x"},
		{"--nodes", "1", "--hosts", "2=a"},
		{"--nodes", "1", "--hosts", "a"},
		{"--nodes", "1", "--days", "0"},
	} {
		if r := runCLI(t, "", append([]string{"cluster", "certs", "--out", t.TempDir()}, args...)...); r.code != 2 {
			t.Errorf("%v: exit %d %q, want 2", args, r.code, r.stderr)
		}
	}
}
