package kafka

import (
	"context"
	"testing"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// TestDocumentedErrors checks the error behaviour the API files' header
// comments promise, one request per case over a raw connection.
func TestDocumentedErrors(t *testing.T) {
	e := startEnv(t)
	info := e.createTopic("t", 1, nil)
	rc := e.dial()
	wantProduce := producePartitionResponse(t, rc.roundTrip(produceRequest("t", 0, plainBatch(3, 1000))))
	wantCode(t, "seed produce", wantProduce.ErrorCode)

	listOffsets := func(version int16, timestamp int64, epoch int32, partitions ...int32) *kmsg.ListOffsetsRequest {
		req := kmsg.NewPtrListOffsetsRequest()
		req.SetVersion(version)
		rt := kmsg.NewListOffsetsRequestTopic()
		rt.Topic = "t"
		for _, p := range partitions {
			rp := kmsg.NewListOffsetsRequestTopicPartition()
			rp.Partition, rp.Timestamp, rp.CurrentLeaderEpoch = p, timestamp, epoch
			rt.Partitions = append(rt.Partitions, rp)
		}
		req.Topics = append(req.Topics, rt)
		return req
	}
	epochFetch := func(epoch int32) *kmsg.FetchRequest {
		req := fetchRequest("t", 0, 0)
		req.Topics[0].Partitions[0].CurrentLeaderEpoch = epoch
		return req
	}
	offsetForEpoch := func(current, epoch int32) *kmsg.OffsetForLeaderEpochRequest {
		req := kmsg.NewPtrOffsetForLeaderEpochRequest()
		req.SetVersion(4)
		rt := kmsg.NewOffsetForLeaderEpochRequestTopic()
		rt.Topic = "t"
		rp := kmsg.NewOffsetForLeaderEpochRequestTopicPartition()
		rp.CurrentLeaderEpoch, rp.LeaderEpoch = current, epoch
		rt.Partitions = append(rt.Partitions, rp)
		req.Topics = append(req.Topics, rt)
		return req
	}
	createTopics := func(validateOnly bool, names ...string) *kmsg.CreateTopicsRequest {
		req := kmsg.NewPtrCreateTopicsRequest()
		req.SetVersion(7)
		req.ValidateOnly = validateOnly
		for _, name := range names {
			rt := kmsg.NewCreateTopicsRequestTopic()
			rt.Topic, rt.NumPartitions, rt.ReplicationFactor = name, 3, 1
			req.Topics = append(req.Topics, rt)
		}
		return req
	}
	describeConfigs := func(typ kmsg.ConfigResourceType, name string) *kmsg.DescribeConfigsRequest {
		req := kmsg.NewPtrDescribeConfigsRequest()
		req.SetVersion(4)
		rr := kmsg.NewDescribeConfigsRequestResource()
		rr.ResourceType, rr.ResourceName = typ, name
		req.Resources = append(req.Resources, rr)
		return req
	}

	for _, tc := range []struct {
		name  string
		req   kmsg.Request
		codes []int16 // every ErrorCode in the response, in order
	}{
		{"produce acks=2", func() kmsg.Request {
			r := produceRequest("t", 0, plainBatch(1, 1))
			r.Acks = 2
			return r
		}(), []int16{kerr.InvalidRequiredAcks.Code}},
		{"produce unknown topic id", func() kmsg.Request {
			r := produceRequest("t", 0, plainBatch(1, 1))
			r.SetVersion(13)
			r.Topics[0].TopicID = [16]byte{1}
			return r
		}(), []int16{kerr.UnknownTopicID.Code}},
		{"fetch epoch -1 skips the check", epochFetch(-1), []int16{0, 0}},
		{"fetch newer epoch", epochFetch(7), []int16{0, kerr.UnknownLeaderEpoch.Code}},
		{"fetch unknown topic id", func() kmsg.Request {
			r := fetchRequest("t", 0, 0)
			r.SetVersion(13)
			r.Topics[0].TopicID = [16]byte{2}
			return r
		}(), []int16{0, kerr.UnknownTopicID.Code}},
		{"fetch out of range", fetchRequest("t", 0, 99), []int16{0, kerr.OffsetOutOfRange.Code}},
		{"list offsets duplicate partition", listOffsets(7, -1, -1, 0, 0), []int16{kerr.InvalidRequest.Code, kerr.InvalidRequest.Code}},
		{"list offsets -3 below v7", listOffsets(6, -3, -1, 0), []int16{kerr.UnsupportedVersion.Code}},
		{"list offsets -7", listOffsets(11, -7, -1, 0), []int16{kerr.UnsupportedVersion.Code}},
		{"list offsets newer epoch", listOffsets(4, -1, 3, 0), []int16{kerr.UnknownLeaderEpoch.Code}},
		{"list offsets unknown partition", listOffsets(4, -1, -1, 5), []int16{kerr.UnknownTopicOrPartition.Code}},
		{"offset for leader epoch newer current", offsetForEpoch(2, 0), []int16{kerr.UnknownLeaderEpoch.Code}},
		{"offset for leader epoch future epoch", offsetForEpoch(0, 9), []int16{0}},
		{"create topics duplicate name", createTopics(false, "dup", "dup"), []int16{kerr.InvalidRequest.Code, kerr.InvalidRequest.Code}},
		{"create topics existing", createTopics(false, "t"), []int16{kerr.TopicAlreadyExists.Code}},
		{"create topics too many partitions", func() kmsg.Request {
			r := createTopics(false, "huge")
			r.Topics[0].NumPartitions = defaultMaxNewPartitions + 1
			return r
		}(), []int16{kerr.InvalidPartitions.Code}},
		{"create topics replication factor 3", func() kmsg.Request {
			r := createTopics(false, "rf3")
			r.Topics[0].ReplicationFactor = 3
			return r
		}(), []int16{kerr.InvalidReplicationFactor.Code}},
		{"create topics foreign assignment", func() kmsg.Request {
			r := createTopics(false, "assigned")
			r.Topics[0].NumPartitions, r.Topics[0].ReplicationFactor = -1, -1
			a := kmsg.NewCreateTopicsRequestTopicReplicaAssignment()
			a.Replicas = []int32{5}
			r.Topics[0].ReplicaAssignment = append(r.Topics[0].ReplicaAssignment, a)
			return r
		}(), []int16{kerr.InvalidReplicaAssignment.Code}},
		{"create topics bad config", func() kmsg.Request {
			r := createTopics(false, "badconfig")
			c := kmsg.NewCreateTopicsRequestTopicConfig()
			c.Name, c.Value = "retention.ms", kmsg.StringPtr("soon")
			r.Topics[0].Configs = append(r.Topics[0].Configs, c)
			return r
		}(), []int16{kerr.InvalidConfig.Code}},
		{"delete topics name and id", func() kmsg.Request {
			r := kmsg.NewPtrDeleteTopicsRequest()
			r.SetVersion(6)
			rt := kmsg.NewDeleteTopicsRequestTopic()
			rt.Topic, rt.TopicID = kmsg.StringPtr("t"), info.ID
			r.Topics = append(r.Topics, rt)
			return r
		}(), []int16{kerr.InvalidRequest.Code}},
		{"delete topics unknown id", func() kmsg.Request {
			r := kmsg.NewPtrDeleteTopicsRequest()
			r.SetVersion(6)
			rt := kmsg.NewDeleteTopicsRequestTopic()
			rt.TopicID = [16]byte{3}
			r.Topics = append(r.Topics, rt)
			return r
		}(), []int16{kerr.UnknownTopicID.Code}},
		{"delete records past the high watermark", func() kmsg.Request {
			r := kmsg.NewPtrDeleteRecordsRequest()
			r.SetVersion(2)
			rt := kmsg.NewDeleteRecordsRequestTopic()
			rt.Topic = "t"
			rp := kmsg.NewDeleteRecordsRequestTopicPartition()
			rp.Offset = 100
			rt.Partitions = append(rt.Partitions, rp)
			r.Topics = append(r.Topics, rt)
			return r
		}(), []int16{kerr.OffsetOutOfRange.Code}},
		{"describe configs other broker", describeConfigs(kmsg.ConfigResourceTypeBroker, "3"), []int16{kerr.InvalidRequest.Code}},
		{"describe configs broker logger", describeConfigs(kmsg.ConfigResourceTypeBrokerLogger, "0"), []int16{kerr.InvalidRequest.Code}},
		{"describe configs unknown topic", describeConfigs(kmsg.ConfigResourceTypeTopic, "nope"), []int16{kerr.UnknownTopicOrPartition.Code}},
		{"alter configs broker", func() kmsg.Request {
			r := kmsg.NewPtrAlterConfigsRequest()
			r.SetVersion(2)
			rr := kmsg.NewAlterConfigsRequestResource()
			rr.ResourceType, rr.ResourceName = kmsg.ConfigResourceTypeBroker, "0"
			r.Resources = append(r.Resources, rr)
			return r
		}(), []int16{kerr.InvalidRequest.Code}},
		{"incremental alter configs bad op", func() kmsg.Request {
			r := kmsg.NewPtrIncrementalAlterConfigsRequest()
			r.SetVersion(1)
			rr := kmsg.NewIncrementalAlterConfigsRequestResource()
			rr.ResourceType, rr.ResourceName = kmsg.ConfigResourceTypeTopic, "t"
			c := kmsg.NewIncrementalAlterConfigsRequestResourceConfig()
			c.Name, c.Op, c.Value = "retention.ms", 9, kmsg.StringPtr("1")
			rr.Configs = append(rr.Configs, c)
			r.Resources = append(r.Resources, rr)
			return r
		}(), []int16{kerr.InvalidRequest.Code}},
		{"create partitions fewer", func() kmsg.Request {
			r := kmsg.NewPtrCreatePartitionsRequest()
			r.SetVersion(3)
			rt := kmsg.NewCreatePartitionsRequestTopic()
			rt.Topic, rt.Count = "t", 1
			r.Topics = append(r.Topics, rt)
			return r
		}(), []int16{kerr.InvalidPartitions.Code}},
		{"describe cluster controller endpoint", func() kmsg.Request {
			r := kmsg.NewPtrDescribeClusterRequest()
			r.SetVersion(1)
			r.EndpointType = 2
			return r
		}(), []int16{kerr.MismatchedEndpointType.Code}},
		{"api versions bad software name", func() kmsg.Request {
			r := kmsg.NewPtrApiVersionsRequest()
			r.SetVersion(3)
			r.ClientSoftwareName, r.ClientSoftwareVersion = "bad name!", "1"
			return r
		}(), []int16{kerr.InvalidRequest.Code}},
		{"api versions other cluster", func() kmsg.Request {
			r := kmsg.NewPtrApiVersionsRequest()
			r.SetVersion(5)
			r.ClientSoftwareName, r.ClientSoftwareVersion = "x", "1"
			r.ClusterID = kmsg.StringPtr("someone-else")
			return r
		}(), []int16{kerr.RebootstrapRequired.Code}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rc := e.dial()
			rc.t = t
			if got := errorCodes(rc.roundTrip(tc.req)); !equalCodes(got, tc.codes) {
				t.Fatalf("error codes %v, want %v", got, tc.codes)
			}
		})
	}
	if _, ok := e.b.Topic("dup"); ok {
		t.Error("a topic named twice was created")
	}
	if _, hw, _ := e.b.PartitionOffsets("t", 0); hw != 3 {
		t.Errorf("high watermark %d after the bad requests, want 3", hw)
	}
}

func equalCodes(a, b []int16) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestCreateTopicsValidateOnly creates nothing but answers as if it had.
func TestCreateTopicsValidateOnly(t *testing.T) {
	e := startEnv(t)
	rc := e.dial()
	req := kmsg.NewPtrCreateTopicsRequest()
	req.SetVersion(7)
	req.ValidateOnly = true
	rt := kmsg.NewCreateTopicsRequestTopic()
	rt.Topic, rt.NumPartitions, rt.ReplicationFactor = "maybe", 4, -1
	c := kmsg.NewCreateTopicsRequestTopicConfig()
	c.Name, c.Value = "retention.ms", kmsg.StringPtr("60000")
	rt.Configs = append(rt.Configs, c)
	req.Topics = append(req.Topics, rt)
	st := rc.roundTrip(req).(*kmsg.CreateTopicsResponse).Topics[0]
	wantCode(t, "validate-only create", st.ErrorCode)
	if st.NumPartitions != 4 || st.ReplicationFactor != 1 || len(st.Configs) != 1 || *st.Configs[0].Value != "60000" {
		t.Fatalf("answer %+v", st)
	}
	if _, ok := e.b.Topic("maybe"); ok {
		t.Fatal("validate-only created the topic")
	}
}

// TestHandlerPanicIsAnswered runs a request whose handler panics through
// the server's handle path: the answer is UNKNOWN_SERVER_ERROR with the
// correlation id, and the panic is counted and logged.
func TestHandlerPanicIsAnswered(t *testing.T) {
	e := startEnv(t)
	boom := *lookupAPI(3)
	boom.handle = func(*Server, context.Context, *request) kmsg.Response { panic("boom") }
	req := metadataRequest("a", "b")
	r := &request{key: 3, version: 12, corrID: 77, api: &boom, kreq: req}
	frame, closeReason := e.srv.handle(context.Background(), r, &e.srv.log)
	if frame == nil || closeReason != "" {
		t.Fatalf("frame %v close %q", frame, closeReason)
	}
	rc := &rawConn{t: t}
	resp := rc.decode(req, 77, (*frame)[4:]).(*kmsg.MetadataResponse)
	// Both topics; the top-level code (last) is not on the wire before v13.
	if got := errorCodes(resp); !equalCodes(got, []int16{kerr.UnknownServerError.Code, kerr.UnknownServerError.Code, 0}) {
		t.Fatalf("error codes %v", got)
	}
	if e.srv.panics.Load() != 1 {
		t.Fatalf("%d panics counted", e.srv.panics.Load())
	}
	e.waitForLog("request handler panicked")
}
