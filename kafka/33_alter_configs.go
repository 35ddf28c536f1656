package kafka

import (
	"context"
	"fmt"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// AlterConfigs: v0-2
//
// Behaviour:
//   - TOPIC resources: replaces the topic's whole set of explicitly set
//     configs with the request's (configs left out return to their
//     defaults), validated by the broker (INVALID_CONFIG). ValidateOnly
//     changes nothing.
//   - BROKER resources: broker configs are static in Chronik (set at
//     start), so altering them is INVALID_REQUEST; other types likewise.
//   - A config named twice in one resource is INVALID_REQUEST.
//
// Version notes:
//   - v1: nothing new on the wire
//   - v2: flexible

func (s *Server) handleAlterConfigs(_ context.Context, r *request) kmsg.Response {
	req := r.kreq.(*kmsg.AlterConfigsRequest)
	resp := req.ResponseKind().(*kmsg.AlterConfigsResponse)
	for _, rr := range req.Resources {
		sr := kmsg.NewAlterConfigsResponseResource()
		sr.ResourceType, sr.ResourceName = rr.ResourceType, rr.ResourceName
		err := s.configResourceDenied(r, kmsg.ACLOperationAlterConfigs, rr.ResourceType, rr.ResourceName)
		if err == nil {
			err = s.alterConfigs(rr, req.ValidateOnly)
		}
		sr.ErrorCode, sr.ErrorMessage = s.codeOf(err, "alter configs"), errorMessage(err)
		resp.Resources = append(resp.Resources, sr)
	}
	return resp
}

func (s *Server) alterConfigs(rr kmsg.AlterConfigsRequestResource, validateOnly bool) error {
	set := make(map[string]*string, len(rr.Configs))
	for _, c := range rr.Configs {
		if _, dup := set[c.Name]; dup {
			return fmt.Errorf("config %q is named more than once: %w", c.Name, kerr.InvalidRequest)
		}
		set[c.Name] = c.Value
	}
	switch rr.ResourceType {
	case kmsg.ConfigResourceTypeTopic:
		return s.b.AlterTopicConfigs(rr.ResourceName, set, validateOnly)
	case kmsg.ConfigResourceTypeBroker:
		if err := s.checkBrokerResource(rr.ResourceName); err != nil {
			return err
		}
		return fmt.Errorf("broker configs are static: set them in chronik.yaml and restart: %w", kerr.InvalidRequest)
	}
	return fmt.Errorf("config resource type %v is not supported: %w", rr.ResourceType, kerr.InvalidRequest)
}

func failAlterConfigs(kreq kmsg.Request, code int16) kmsg.Response {
	req := kreq.(*kmsg.AlterConfigsRequest)
	resp := req.ResponseKind().(*kmsg.AlterConfigsResponse)
	for _, rr := range req.Resources {
		sr := kmsg.NewAlterConfigsResponseResource()
		sr.ResourceType, sr.ResourceName, sr.ErrorCode = rr.ResourceType, rr.ResourceName, code
		resp.Resources = append(resp.Resources, sr)
	}
	return resp
}
