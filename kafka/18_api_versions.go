package kafka

import (
	"context"
	"regexp"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// ApiVersions: v0-5
//
// Behaviour:
//   - Lists exactly the apis table: every key we serve and its version
//     range. Nothing else (no ACL or KIP-848 group APIs).
//   - The response header is never flexible, even for v3+, so that a client
//     can read the answer before it knows our versions.
//   - A version above ours (KIP-511) is answered with a v0 response carrying
//     UNSUPPORTED_VERSION and our whole table; the client retries at our
//     highest ApiVersions version.
//   - v3+: ClientSoftwareName and ClientSoftwareVersion must match Kafka's
//     pattern, else INVALID_REQUEST.
//   - v3+ features, as Kafka 4.0 (the one feature Chronik has): supported
//     transaction.version 0-2, finalized transaction.version at the
//     --transaction-version level (2 by default, KIP-890 part 2: franz-go
//     and the Java client then bump the epoch with every EndTxn v5 and
//     send no AddPartitionsToTxn or AddOffsetsToTxn, their Produce v12
//     and TxnOffsetCommit v5 adding the partitions) with
//     FinalizedFeaturesEpoch the time this server started, in
//     milliseconds (it only grows, so that a client that keeps the
//     features of the highest epoch learns a level changed by a restart).
//     Not on the UNSUPPORTED_VERSION answer, which is v0.
//   - v5: a ClusterID or NodeID that is not ours is REBOOTSTRAP_REQUIRED
//     (KIP-1242): the client was pointed at the wrong cluster or node.
//
// Version notes:
//   - v1: ThrottleMillis
//   - v3: flexible request (response header stays v0), client software
//     name and version, features (tagged fields)
//   - v5: ClusterID and NodeID in the request

// softwareNamePattern is Kafka's ApiVersionsRequest validation pattern for
// the client software name and version.
var softwareNamePattern = regexp.MustCompile(`^[a-zA-Z0-9](?:[a-zA-Z0-9\-.]*[a-zA-Z0-9])?$`)

func (s *Server) handleApiVersions(_ context.Context, r *request) kmsg.Response {
	req := r.kreq.(*kmsg.ApiVersionsRequest)
	resp := req.ResponseKind().(*kmsg.ApiVersionsResponse)
	if req.Version >= 3 && (!softwareNamePattern.MatchString(req.ClientSoftwareName) ||
		!softwareNamePattern.MatchString(req.ClientSoftwareVersion)) {
		resp.ErrorCode = s.counted(kerr.InvalidRequest.Code)
		return resp
	}
	if req.Version >= 5 {
		if (req.ClusterID != nil && *req.ClusterID != s.b.ClusterID()) ||
			(req.NodeID >= 0 && req.NodeID != s.b.Config().NodeID) {
			resp.ErrorCode = s.counted(kerr.RebootstrapRequired.Code)
			return resp
		}
	}
	resp.ApiKeys = advertisedVersions()
	if req.Version >= 3 {
		s.advertiseFeatures(resp)
	}
	return resp
}

// transactionVersionFeature is Kafka's feature of KIP-890 part 2
// (TransactionVersion.FEATURE_NAME).
const transactionVersionFeature = "transaction.version"

// advertiseFeatures lists transaction.version as Kafka 4.0 does: supported
// 0-2, finalized at this node's level (min and max both the level, as
// Kafka writes finalized features).
func (s *Server) advertiseFeatures(resp *kmsg.ApiVersionsResponse) {
	sf := kmsg.NewApiVersionsResponseSupportedFeature()
	sf.Name, sf.MinVersion, sf.MaxVersion = transactionVersionFeature, 0, 2
	resp.SupportedFeatures = []kmsg.ApiVersionsResponseSupportedFeature{sf}
	level := s.b.TxnVersion()
	ff := kmsg.NewApiVersionsResponseFinalizedFeature()
	ff.Name, ff.MinVersionLevel, ff.MaxVersionLevel = transactionVersionFeature, level, level
	resp.FinalizedFeatures = []kmsg.ApiVersionsResponseFinalizedFeature{ff}
	resp.FinalizedFeaturesEpoch = s.featuresEpoch
}

// apiVersionsUnsupported answers an ApiVersions request at a version we do
// not serve: v0, UNSUPPORTED_VERSION, our table.
func (s *Server) apiVersionsUnsupported() kmsg.Response {
	resp := kmsg.NewPtrApiVersionsResponse()
	resp.Version = 0
	resp.ErrorCode = s.counted(kerr.UnsupportedVersion.Code)
	resp.ApiKeys = advertisedVersions()
	return resp
}

// advertisedVersions is the apis table as ApiVersions lists it.
func advertisedVersions() []kmsg.ApiVersionsResponseApiKey {
	keys := make([]kmsg.ApiVersionsResponseApiKey, len(apis))
	for i, a := range apis {
		keys[i] = kmsg.NewApiVersionsResponseApiKey()
		keys[i].ApiKey, keys[i].MinVersion, keys[i].MaxVersion = a.key, a.min, a.max
	}
	return keys
}

func failApiVersions(kreq kmsg.Request, code int16) kmsg.Response {
	resp := kreq.ResponseKind().(*kmsg.ApiVersionsResponse)
	resp.ErrorCode = code
	return resp
}
