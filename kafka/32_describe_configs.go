package kafka

import (
	"context"
	"fmt"
	"strconv"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/chronik-stream/chronik/broker"
)

// DescribeConfigs: v1-4
//
// Behaviour:
//   - TOPIC resources: every topic config the broker supports, with its
//     effective value and source (DYNAMIC_TOPIC_CONFIG when set on the
//     topic, else the broker's STATIC_BROKER_CONFIG or DEFAULT_CONFIG).
//     UNKNOWN_TOPIC_OR_PARTITION for a missing topic.
//   - BROKER resources: named by our node ID, the broker's static configs;
//     the empty name (cluster-wide dynamic defaults) has none; any other ID
//     is INVALID_REQUEST, as Kafka answers a request for another broker.
//   - Other resource types (BROKER_LOGGER, ...) are INVALID_REQUEST.
//   - ConfigNames filters (null: all); unknown names are left out.
//   - Sensitive values are null. IncludeSynonyms lists the effective entry
//     as its own synonym (no config layering beyond one level here).
//
// Version notes:
//   - v1: Source, IncludeSynonyms
//   - v3: ConfigType and Documentation (IncludeDocumentation)
//   - v4: flexible

func (s *Server) handleDescribeConfigs(_ context.Context, r *request) kmsg.Response {
	req := r.kreq.(*kmsg.DescribeConfigsRequest)
	resp := req.ResponseKind().(*kmsg.DescribeConfigsResponse)
	for _, rr := range req.Resources {
		sr := kmsg.NewDescribeConfigsResponseResource()
		sr.ResourceType, sr.ResourceName = rr.ResourceType, rr.ResourceName
		err := s.configResourceDenied(r, kmsg.ACLOperationDescribeConfigs, rr.ResourceType, rr.ResourceName)
		var entries []broker.ConfigEntry
		if err == nil {
			entries, err = s.configEntries(rr.ResourceType, rr.ResourceName)
		}
		if err != nil {
			sr.ErrorCode, sr.ErrorMessage = s.codeOf(err, "describe configs"), errorMessage(err)
			resp.Resources = append(resp.Resources, sr)
			continue
		}
		var wanted map[string]bool
		if rr.ConfigNames != nil {
			wanted = make(map[string]bool, len(rr.ConfigNames))
			for _, n := range rr.ConfigNames {
				wanted[n] = true
			}
		}
		for _, e := range entries {
			if wanted != nil && !wanted[e.Name] {
				continue
			}
			sr.Configs = append(sr.Configs, describedConfig(req, e))
		}
		resp.Resources = append(resp.Resources, sr)
	}
	return resp
}

// configEntries returns the configs of one resource, or the error to
// answer for it.
func (s *Server) configEntries(typ kmsg.ConfigResourceType, name string) ([]broker.ConfigEntry, error) {
	switch typ {
	case kmsg.ConfigResourceTypeTopic:
		return s.b.TopicConfigs(name)
	case kmsg.ConfigResourceTypeBroker:
		if err := s.checkBrokerResource(name); err != nil {
			return nil, err
		}
		if name == "" {
			return nil, nil
		}
		return s.b.BrokerConfigs(), nil
	}
	return nil, fmt.Errorf("config resource type %v is not supported: %w", typ, kerr.InvalidRequest)
}

// checkBrokerResource accepts a BROKER resource name naming this node or
// the cluster-wide default ("").
func (s *Server) checkBrokerResource(name string) error {
	if name == "" {
		return nil
	}
	if id, err := strconv.ParseInt(name, 10, 32); err == nil && int32(id) == s.b.Config().NodeID {
		return nil
	}
	return fmt.Errorf("unexpected broker id %q, expected %d or empty string: %w", name, s.b.Config().NodeID, kerr.InvalidRequest)
}

func describedConfig(req *kmsg.DescribeConfigsRequest, e broker.ConfigEntry) kmsg.DescribeConfigsResponseResourceConfig {
	c := kmsg.NewDescribeConfigsResponseResourceConfig()
	c.Name, c.Value, c.ReadOnly, c.IsSensitive = e.Name, e.Value, e.ReadOnly, e.Sensitive
	if e.Sensitive {
		c.Value = nil
	}
	c.Source = kmsg.ConfigSource(e.Source)
	c.IsDefault = c.Source == kmsg.ConfigSourceDefaultConfig
	if req.IncludeSynonyms {
		syn := kmsg.NewDescribeConfigsResponseResourceConfigConfigSynonym()
		syn.Name, syn.Value, syn.Source = c.Name, c.Value, c.Source
		c.ConfigSynonyms = []kmsg.DescribeConfigsResponseResourceConfigConfigSynonym{syn}
	}
	c.ConfigType = kmsg.ConfigType(e.Type)
	if req.IncludeDocumentation && e.Doc != "" {
		doc := e.Doc
		c.Documentation = &doc
	}
	return c
}

func failDescribeConfigs(kreq kmsg.Request, code int16) kmsg.Response {
	req := kreq.(*kmsg.DescribeConfigsRequest)
	resp := req.ResponseKind().(*kmsg.DescribeConfigsResponse)
	for _, rr := range req.Resources {
		sr := kmsg.NewDescribeConfigsResponseResource()
		sr.ResourceType, sr.ResourceName, sr.ErrorCode = rr.ResourceType, rr.ResourceName, code
		resp.Resources = append(resp.Resources, sr)
	}
	return resp
}
