package kafka

import (
	"context"
	"fmt"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/chronik-stream/chronik/broker"
)

// IncrementalAlterConfigs: v0-1
//
// Behaviour:
//   - TOPIC resources: SET, DELETE, APPEND and SUBTRACT (lists) on the
//     topic's configs, validated by the broker (INVALID_CONFIG); any other
//     op, or a config named twice, is INVALID_REQUEST. ValidateOnly changes
//     nothing.
//   - BROKER resources: broker configs are static in Chronik (set at
//     start), so altering them is INVALID_REQUEST; other types likewise.
//
// Version notes:
//   - v1: flexible

func (s *Server) handleIncrementalAlterConfigs(_ context.Context, r *request) kmsg.Response {
	req := r.kreq.(*kmsg.IncrementalAlterConfigsRequest)
	resp := req.ResponseKind().(*kmsg.IncrementalAlterConfigsResponse)
	for _, rr := range req.Resources {
		sr := kmsg.NewIncrementalAlterConfigsResponseResource()
		sr.ResourceType, sr.ResourceName = rr.ResourceType, rr.ResourceName
		err := s.configResourceDenied(r, kmsg.ACLOperationAlterConfigs, rr.ResourceType, rr.ResourceName)
		if err == nil {
			err = s.incrementalAlterConfigs(rr, req.ValidateOnly)
		}
		sr.ErrorCode, sr.ErrorMessage = s.codeOf(err, "incremental alter configs"), errorMessage(err)
		resp.Resources = append(resp.Resources, sr)
	}
	return resp
}

func (s *Server) incrementalAlterConfigs(rr kmsg.IncrementalAlterConfigsRequestResource, validateOnly bool) error {
	ops := make([]broker.ConfigOp, 0, len(rr.Configs))
	seen := make(map[string]bool, len(rr.Configs))
	for _, c := range rr.Configs {
		if seen[c.Name] {
			return fmt.Errorf("config %q is named more than once: %w", c.Name, kerr.InvalidRequest)
		}
		seen[c.Name] = true
		if c.Op < kmsg.IncrementalAlterConfigOpSet || c.Op > kmsg.IncrementalAlterConfigOpSubtract {
			return fmt.Errorf("config %q: unknown operation %d: %w", c.Name, c.Op, kerr.InvalidRequest)
		}
		ops = append(ops, broker.ConfigOp{Name: c.Name, Op: int8(c.Op), Value: c.Value})
	}
	switch rr.ResourceType {
	case kmsg.ConfigResourceTypeTopic:
		return s.b.IncrementalAlterTopicConfigs(rr.ResourceName, ops, validateOnly)
	case kmsg.ConfigResourceTypeBroker:
		if err := s.checkBrokerResource(rr.ResourceName); err != nil {
			return err
		}
		return fmt.Errorf("broker configs are static: set them in chronik.yaml and restart: %w", kerr.InvalidRequest)
	}
	return fmt.Errorf("config resource type %v is not supported: %w", rr.ResourceType, kerr.InvalidRequest)
}

func failIncrementalAlterConfigs(kreq kmsg.Request, code int16) kmsg.Response {
	req := kreq.(*kmsg.IncrementalAlterConfigsRequest)
	resp := req.ResponseKind().(*kmsg.IncrementalAlterConfigsResponse)
	for _, rr := range req.Resources {
		sr := kmsg.NewIncrementalAlterConfigsResponseResource()
		sr.ResourceType, sr.ResourceName, sr.ErrorCode = rr.ResourceType, rr.ResourceName, code
		resp.Resources = append(resp.Resources, sr)
	}
	return resp
}
