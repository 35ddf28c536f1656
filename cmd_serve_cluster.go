package main

import (
	"fmt"
	"net"
	"strconv"
	"strings"

	"github.com/rs/zerolog"
	"github.com/urfave/cli/v2"

	"github.com/chronik-stream/chronik/broker"
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

// serveCluster runs a cluster member. Not yet wired: the raft layer
// (package cluster) is being built under issue 6, and a node must not
// silently run standalone when it was asked to join a cluster.
func serveCluster(_ *cli.Context, _ broker.Config, _ kafka.Config, _ zerolog.Logger, peers map[uint64]string) error {
	return cli.Exit(fmt.Sprintf("peers: cluster mode (%d peers) is not available in this build yet; remove --peers to run standalone", len(peers)), 2)
}
