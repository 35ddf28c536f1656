package main

import (
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/rs/zerolog"
	"github.com/urfave/cli/v2"

	"github.com/chronik-stream/chronik/broker"
	"github.com/chronik-stream/chronik/cluster"
	"github.com/chronik-stream/chronik/kafka"
)

// parsePeers reads --peers: id=host:port entries separated by commas. An
// empty value is standalone (nil). Ids are raft node ids, so 1 or more;
// ids and addresses are unique; nodeID must name one of the entries.
func parsePeers(s string, nodeID int) (map[uint64]string, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil, nil
	}
	peers := make(map[uint64]string)
	addrs := make(map[string]uint64)
	for _, entry := range strings.Split(s, ",") {
		entry = strings.TrimSpace(entry)
		idStr, addr, ok := strings.Cut(entry, "=")
		if !ok {
			return nil, fmt.Errorf("peers: %q is not id=host:port", entry)
		}
		id, err := strconv.ParseUint(strings.TrimSpace(idStr), 10, 31)
		if err != nil || id == 0 {
			return nil, fmt.Errorf("peers: %q: the node id must be a number from 1 to 2147483647", entry)
		}
		addr = strings.TrimSpace(addr)
		host, port, err := net.SplitHostPort(addr)
		if err != nil || host == "" {
			return nil, fmt.Errorf("peers: %q: %q is not host:port", entry, addr)
		}
		if p, err := strconv.ParseUint(port, 10, 16); err != nil || p == 0 {
			return nil, fmt.Errorf("peers: %q: port %q is not 1-65535", entry, port)
		}
		if _, dup := peers[id]; dup {
			return nil, fmt.Errorf("peers: node id %d is listed twice", id)
		}
		if other, dup := addrs[addr]; dup {
			return nil, fmt.Errorf("peers: %s is the address of both node %d and node %d", addr, other, id)
		}
		peers[id], addrs[addr] = addr, id
	}
	if _, ok := peers[uint64(nodeID)]; !ok || nodeID <= 0 {
		return nil, fmt.Errorf("node-id: %d is not one of the peers (%s); set --node-id to this node's id", nodeID, s)
	}
	return peers, nil
}

// startClusterNode starts the raft layer: this node listens on its own
// peers entry.
func startClusterNode(bc broker.Config, peers map[uint64]string, peerTLS *cluster.PeerTLS, onCommit func(time.Duration), log zerolog.Logger) (*cluster.Node, error) {
	node, err := cluster.StartNode(cluster.NodeConfig{
		NodeID:   uint64(bc.NodeID),
		Peers:    peers,
		OnCommit: onCommit,
		Logger:   log.With().Str("component", "cluster").Logger(),
		TLS:      peerTLS,
	})
	if err != nil {
		return nil, fmt.Errorf("peers: %w", err)
	}
	log.Info().Int32("node_id", bc.NodeID).Str("raft_listen", peers[uint64(bc.NodeID)]).Int("peers", len(peers)).
		Bool("peer_tls", peerTLS != nil).Msg("cluster mode")
	return node, nil
}

// peerTLSFlags are the files of peer TLS, which go together.
var peerTLSFlags = []string{"peer-tls-cert-file", "peer-tls-key-file", "peer-tls-ca-file"}

// checkPeerSecurity: peers authenticate each other with mutual TLS, or
// the operator said, by name, that this cluster runs without it.
func checkPeerSecurity(c *cli.Context) error {
	var set, unset []string
	for _, f := range peerTLSFlags {
		if c.String(f) != "" {
			set = append(set, f)
		} else {
			unset = append(unset, f)
		}
	}
	insecure := c.Bool("peer-insecure-plaintext")
	switch {
	case len(set) > 0 && len(unset) > 0:
		return fmt.Errorf("%s: set with %s, but %s not", strings.Join(unset, ", "), strings.Join(set, ", "), strings.Join(unset, ", "))
	case len(set) > 0 && insecure:
		return fmt.Errorf("peer-insecure-plaintext: set together with the peer-tls-* files; choose one")
	case c.String("peers") != "" && len(set) == 0 && !insecure:
		return fmt.Errorf("peers: cluster mode needs peer TLS: set peer-tls-cert-file, peer-tls-key-file and peer-tls-ca-file " +
			"(`chronik cluster certs` makes a CA and node certificates), or, for a lab on a trusted network only, " +
			"peer-insecure-plaintext (anyone who reaches a raft port can then join as any node)")
	}
	return nil
}

// loadPeerTLS reads the peer TLS files (nil without them: plaintext,
// which checkPeerSecurity allowed) and checks the certificate names this
// node. Without them it logs the warning peer-insecure-plaintext asks for.
func loadPeerTLS(c *cli.Context, nodeID int32, log zerolog.Logger) (*cluster.PeerTLS, error) {
	if c.String("peer-tls-cert-file") == "" {
		log.Warn().Msg("peer-insecure-plaintext: peer connections are plaintext and unauthenticated; anyone who reaches the raft port can join as any node and inject raft messages (use peer TLS beyond a lab)")
		return nil, nil
	}
	p, err := cluster.LoadPeerTLS(c.String("peer-tls-cert-file"), c.String("peer-tls-key-file"), c.String("peer-tls-ca-file"))
	if err != nil {
		return nil, err
	}
	if p.NodeID() != uint64(nodeID) {
		return nil, fmt.Errorf("peer-tls-cert-file: %s names node %d, this is node %d (node-id)", c.String("peer-tls-cert-file"), p.NodeID(), nodeID)
	}
	log.Info().Uint64("node_id", p.NodeID()).Time("not_after", p.NotAfter()).Msg("peer TLS certificate loaded")
	return p, nil
}

// reloadPeerTLS re-reads the peer TLS files on SIGHUP: new peer
// connections use them, established ones keep theirs. On error the ones
// in use stay, and it says so.
func reloadPeerTLS(p *cluster.PeerTLS, log zerolog.Logger) {
	if p == nil {
		return
	}
	if err := p.Reload(); err != nil {
		log.Error().Err(err).Msg("peer TLS not reloaded: the certificate and CA in use stay")
		return
	}
	log.Info().Uint64("node_id", p.NodeID()).Time("not_after", p.NotAfter()).Msg("peer TLS reloaded")
}

// wireNodeAuth sets up how nodes authenticate to each other's Kafka
// listeners. With peer TLS: this node's SSL and SASL_SSL listeners take a
// client certificate of the cluster CA naming a node of peers as principal
// Node:<id> (kc.NodeAuth), and this node calls the others' SSL or SASL_SSL
// listeners with its peer certificate. Without (a lab): calls go to
// PLAINTEXT listeners, else SSL ones trusting the client CA.
func wireNodeAuth(kc *kafka.Config, pc *kafka.Peers, peerTLS *cluster.PeerTLS, tlsFiles *kafka.TLSFiles, peers map[uint64]string) {
	if peerTLS == nil {
		if tlsFiles != nil {
			pc.SetTLS(tlsFiles.PeerClientConfig())
		}
		return
	}
	kc.NodeAuth = &kafka.NodeAuth{
		Identity: peerTLS,
		Member: func(id uint64) bool {
			_, ok := peers[id]
			return ok
		},
	}
	pc.SetNodeTLS(peerTLS, tlsFiles)
}

// warnNodeListeners warns, with the authorizer on, when this node's own
// listeners leave other nodes no way to authenticate to it: their
// transaction calls (WriteTxnMarkers, AddPartitionsToTxn) are then refused.
func warnNodeListeners(specs []listenerSpec, peerTLS *cluster.PeerTLS, log zerolog.Logger) {
	if peerTLS == nil {
		return // Peers.WarnUnauthenticated says it
	}
	if slices.ContainsFunc(specs, func(s listenerSpec) bool { return s.protocol.TLS() }) {
		return
	}
	log.Warn().Msg("authorizer is on but this node has no SSL or SASL_SSL listener: the other nodes' transaction calls to it " +
		"(WriteTxnMarkers, AddPartitionsToTxn) arrive as User:ANONYMOUS and are refused, so transactions spanning nodes fail; " +
		"add an SSL or SASL_SSL listener (listeners, tls-cert-file), where nodes authenticate with their peer certificates as Node:<id>")
}
