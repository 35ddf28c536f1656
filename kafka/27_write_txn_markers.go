package kafka

import (
	"context"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// WriteTxnMarkers: v1-2
//
// Behaviour (between brokers): a transaction coordinator on another node
// writes commit/abort markers into partitions this node leads. Each
// partition answers as a produce would (NOT_LEADER_OR_FOLLOWER on a
// follower, UNKNOWN_TOPIC_OR_PARTITION, KAFKA_STORAGE_ERROR) or with the
// fencing error of a marker older than the producer's epoch. A marker for
// __consumer_offsets also makes the transaction's offset commits visible
// (commit) or drops them (abort).
//
// Version notes:
//   - v0 is below the Kafka 4.0 floor (KIP-896); v1 flexible.
//   - v2 (KIP-1228): each marker's TransactionVersion (0/1 the classic
//     protocol, 2 KIP-890 part 2). It is accepted and ignored: the marker
//     written is the same, and its epoch is checked as for every marker
//     (not older than the producer's). Kafka 4.2 also uses it to refuse a
//     version 2 marker whose epoch is not above the producer's; Chronik
//     does not make that stricter check.

func (s *Server) handleWriteTxnMarkers(ctx context.Context, r *request) kmsg.Response {
	req := r.kreq.(*kmsg.WriteTxnMarkersRequest)
	resp := req.ResponseKind().(*kmsg.WriteTxnMarkersResponse)
	if !s.mayCluster(r, kmsg.ACLOperationClusterAction) {
		return failWriteTxnMarkers(req, s.counted(kerr.ClusterAuthorizationFailed.Code))
	}
	for _, m := range req.Markers {
		rm := kmsg.NewWriteTxnMarkersResponseMarker()
		rm.ProducerID = m.ProducerID
		for _, t := range m.Topics {
			rt := kmsg.NewWriteTxnMarkersResponseMarkerTopic()
			rt.Topic = t.Topic
			for _, p := range t.Partitions {
				rp := kmsg.NewWriteTxnMarkersResponseMarkerTopicPartition()
				rp.Partition = p
				if err := s.b.WriteTxnMarker(ctx, t.Topic, p, m.ProducerID, m.ProducerEpoch, m.Committed, m.CoordinatorEpoch); err != nil {
					rp.ErrorCode = s.codeOf(err, "write transaction marker")
				}
				rt.Partitions = append(rt.Partitions, rp)
			}
			rm.Topics = append(rm.Topics, rt)
		}
		resp.Markers = append(resp.Markers, rm)
	}
	return resp
}

func failWriteTxnMarkers(kreq kmsg.Request, code int16) kmsg.Response {
	req := kreq.(*kmsg.WriteTxnMarkersRequest)
	resp := req.ResponseKind().(*kmsg.WriteTxnMarkersResponse)
	for _, m := range req.Markers {
		rm := kmsg.NewWriteTxnMarkersResponseMarker()
		rm.ProducerID = m.ProducerID
		for _, t := range m.Topics {
			rt := kmsg.NewWriteTxnMarkersResponseMarkerTopic()
			rt.Topic = t.Topic
			for _, p := range t.Partitions {
				rp := kmsg.NewWriteTxnMarkersResponseMarkerTopicPartition()
				rp.Partition, rp.ErrorCode = p, code
				rt.Partitions = append(rt.Partitions, rp)
			}
			rm.Topics = append(rm.Topics, rt)
		}
		resp.Markers = append(resp.Markers, rm)
	}
	return resp
}
