package main

import (
	"maps"
	"slices"
	"strings"
	"testing"
)

func TestParsePeers(t *testing.T) {
	for _, tc := range []struct {
		in     string
		nodeID int
		want   map[uint64]string
		err    string
	}{
		{in: "", nodeID: 0, want: nil},
		{in: "1=127.0.0.1:9093", nodeID: 1, want: map[uint64]string{1: "127.0.0.1:9093"}},
		{in: " 1=a:1 , 2=b:2,3=[::1]:3", nodeID: 2, want: map[uint64]string{1: "a:1", 2: "b:2", 3: "[::1]:3"}},
		{in: "1=a:1,2=b:2", nodeID: 3, err: "node-id: 3 is not one of the peers"},
		{in: "1=a:1,2=b:2", nodeID: 0, err: "node-id: 0 is not one of the peers"},
		{in: "0=a:1", nodeID: 0, err: "node id must be a number from 1"},
		{in: "x=a:1", nodeID: 1, err: "node id must be a number from 1"},
		{in: "1=a", nodeID: 1, err: `"a" is not host:port`},
		{in: "1=:9093", nodeID: 1, err: `":9093" is not host:port`},
		{in: "1=a:0", nodeID: 1, err: "port \"0\" is not 1-65535"},
		{in: "1=a:70000", nodeID: 1, err: "is not 1-65535"},
		{in: "1a:1", nodeID: 1, err: "is not id=host:port"},
		{in: "1=a:1,1=b:2", nodeID: 1, err: "node id 1 is listed twice"},
		{in: "1=a:1,2=a:1", nodeID: 1, err: "a:1 is the address of both node 1 and node 2"},
	} {
		got, err := parsePeers(tc.in, tc.nodeID)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("parsePeers(%q, %d) error %v, want %q", tc.in, tc.nodeID, err, tc.err)
			}
			continue
		}
		if err != nil || !maps.Equal(got, tc.want) {
			t.Errorf("parsePeers(%q, %d) = %v, %v; want %v", tc.in, tc.nodeID, got, err, tc.want)
		}
	}
}

// peers: may be a string, a mapping of id to address or a list in the
// config file; all three reach the same check.
func TestPeersInConfigFile(t *testing.T) {
	for _, body := range []string{
		"node_id: 9\npeers: 1=a:1,2=b:2\n",
		"node_id: 9\npeers:\n  1: a:1\n  2: b:2\n",
		"node_id: 9\npeers:\n  - 1=a:1\n  - 2=b:2\n",
	} {
		_, _, code, msg := resolveOnly(t, "--config", writeConfig(t, body))
		if code != 2 || !strings.Contains(msg, "node-id: 9 is not one of the peers (1=a:1,2=b:2)") {
			t.Errorf("config %q: exit %d, %q", body, code, msg)
		}
	}
	for _, body := range []string{
		"node_id: 2\npeers: 1=a:1,2=b:2\npeer_insecure_plaintext: true\n",
		"node_id: 2\npeers:\n  1: a:1\n  2: b:2\npeer_insecure_plaintext: true\n",
	} {
		if _, _, code, msg := resolveOnly(t, "--config", writeConfig(t, body)); code != 0 {
			t.Errorf("config %q: exit %d, %q", body, code, msg)
		}
	}
	_, _, code, msg := resolveOnly(t, "--config", writeConfig(t, "peers:\n  1:\n    host: a\n"))
	if code != 2 || !strings.Contains(msg, "line 2: peers: expected node id: host:port entries") {
		t.Errorf("nested peers: exit %d, %q", code, msg)
	}
}

// Peers need mutual TLS, or plaintext asked for by name; the TLS files go
// together.
func TestPeerSecuritySettings(t *testing.T) {
	peers := []string{"--node-id", "1", "--peers", "1=a:1,2=b:2"}
	files := []string{"--peer-tls-cert-file", "c.pem", "--peer-tls-key-file", "k.pem", "--peer-tls-ca-file", "ca.pem"}
	for _, tc := range []struct {
		name string
		args []string
		want string // "" for success
	}{
		{"peers without TLS", peers, "peers: cluster mode needs peer TLS: set peer-tls-cert-file, peer-tls-key-file and peer-tls-ca-file"},
		{"plaintext by name", append(slices.Clone(peers), "--peer-insecure-plaintext"), ""},
		{"TLS files", append(slices.Clone(peers), files...), ""},
		{"a file missing", append(slices.Clone(peers), files[:4]...), "peer-tls-ca-file: set with peer-tls-cert-file, peer-tls-key-file, but peer-tls-ca-file not"},
		{"both", append(append(slices.Clone(peers), files...), "--peer-insecure-plaintext"), "peer-insecure-plaintext: set together with the peer-tls-* files"},
		{"standalone", nil, ""},
		{"standalone with files", files, ""},
	} {
		_, _, code, msg := resolveOnly(t, tc.args...)
		switch {
		case tc.want == "" && code != 0:
			t.Errorf("%s: exit %d, %q", tc.name, code, msg)
		case tc.want != "" && (code != 2 || !strings.Contains(msg, tc.want)):
			t.Errorf("%s: exit %d, %q; want 2, %q", tc.name, code, msg, tc.want)
		}
	}
}
