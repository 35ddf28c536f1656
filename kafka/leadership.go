package kafka

// What a client is told about partition leadership, shared by the APIs
// that read or write a partition: whether its leader epoch is current
// (KIP-320) and, when the partition answered NOT_LEADER_OR_FOLLOWER, who
// the leader is now (KIP-951).

import (
	"slices"

	"github.com/twmb/franz-go/pkg/kerr"

	"github.com/chronik-stream/chronik/broker"
)

// checkLeaderEpoch compares a client's idea of the partition's leader
// epoch with ours (KIP-320). -1 means the client does not know.
func (s *Server) checkLeaderEpoch(topic string, partition, clientEpoch int32) int16 {
	if clientEpoch < 0 {
		return 0
	}
	switch epoch := s.b.LeaderEpoch(topic, partition); {
	case clientEpoch < epoch:
		return kerr.FencedLeaderEpoch.Code
	case clientEpoch > epoch:
		return kerr.UnknownLeaderEpoch.Code
	}
	return 0
}

// leaderHints gathers the leaders named in NOT_LEADER_OR_FOLLOWER answers
// of one response (KIP-951), for Produce and Fetch alike.
type leaderHints struct{ leaders []int32 }

// add returns the current leader and epoch of a partition answered with
// code, when the code is NOT_LEADER_OR_FOLLOWER and a leader is known.
func (h *leaderHints) add(s *Server, topic string, partition int32, code int16) (leader, epoch int32, ok bool) {
	if code != kerr.NotLeaderForPartition.Code || topic == "" {
		return -1, -1, false
	}
	leader, epoch, err := s.b.PartitionLeader(topic, partition)
	if err != nil || leader < 0 || epoch < 0 {
		return -1, -1, false
	}
	if !slices.Contains(h.leaders, leader) {
		h.leaders = append(h.leaders, leader)
	}
	return leader, epoch, true
}

// endpoints lists the named leaders' addresses on the listener named
// listener.
func (h *leaderHints) endpoints(s *Server, listener string) []broker.BrokerInfo {
	if len(h.leaders) == 0 {
		return nil
	}
	var out []broker.BrokerInfo
	for _, bi := range s.brokersOn(listener) {
		if slices.Contains(h.leaders, bi.NodeID) {
			out = append(out, bi)
		}
	}
	return out
}
