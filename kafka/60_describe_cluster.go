package kafka

import (
	"context"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// DescribeCluster: v0-2
//
// Behaviour:
//   - The cluster ID, the brokers and the controller: standalone this node;
//     in a cluster every registered broker and the controller group's
//     leader.
//   - EndpointType (v1+): 1 (brokers) is answered; 2 (controllers) is
//     MISMATCHED_ENDPOINT_TYPE, since this is a broker listener; anything
//     else UNSUPPORTED_ENDPOINT_TYPE.
//   - Authorization, as Kafka: anyone may ask (like Metadata); the cluster
//     authorized operations, when asked for, are the principal's if it may
//     DESCRIBE the cluster, else none.
//
// Version notes:
//   - v0: flexible from the start
//   - v1: EndpointType
//   - v2: IncludeFencedBrokers, IsFenced (never fenced)

func (s *Server) handleDescribeCluster(_ context.Context, r *request) kmsg.Response {
	req := r.kreq.(*kmsg.DescribeClusterRequest)
	resp := req.ResponseKind().(*kmsg.DescribeClusterResponse)
	if req.Version >= 1 {
		resp.EndpointType = req.EndpointType
		switch req.EndpointType {
		case 1:
		case 2:
			resp.ErrorCode = s.counted(kerr.MismatchedEndpointType.Code)
			resp.ErrorMessage = kmsg.StringPtr("this is a broker endpoint, not a controller endpoint")
			return resp
		default:
			resp.ErrorCode = s.counted(kerr.UnsupportedEndpointType.Code)
			return resp
		}
	}
	resp.ClusterID = s.b.ClusterID()
	resp.ControllerID = s.b.ControllerID()
	for _, bi := range s.brokersOn(r.listener) {
		b := kmsg.NewDescribeClusterResponseBroker()
		b.NodeID, b.Host, b.Port = bi.NodeID, bi.Host, bi.Port
		resp.Brokers = append(resp.Brokers, b)
	}
	if req.IncludeClusterAuthorizedOperations {
		resp.ClusterAuthorizedOperations = s.clusterAuthorizedOps(r)
	}
	return resp
}

func failDescribeCluster(kreq kmsg.Request, code int16) kmsg.Response {
	resp := kreq.ResponseKind().(*kmsg.DescribeClusterResponse)
	resp.ErrorCode = code
	return resp
}
