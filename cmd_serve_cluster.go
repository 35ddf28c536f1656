package main

import (
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/rs/zerolog"

	"github.com/chronik-stream/chronik/broker"
	"github.com/chronik-stream/chronik/cluster"
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
func startClusterNode(bc broker.Config, peers map[uint64]string, onCommit func(time.Duration), log zerolog.Logger) (*cluster.Node, error) {
	node, err := cluster.StartNode(cluster.NodeConfig{
		NodeID:   uint64(bc.NodeID),
		Peers:    peers,
		OnCommit: onCommit,
		Logger:   log.With().Str("component", "cluster").Logger(),
	})
	if err != nil {
		return nil, fmt.Errorf("peers: %w", err)
	}
	log.Info().Int32("node_id", bc.NodeID).Str("raft_listen", peers[uint64(bc.NodeID)]).Int("peers", len(peers)).Msg("cluster mode")
	return node, nil
}
