package kafka

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"testing"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// kafka40Floor is the lowest version of each API Kafka 4.0 still serves
// (KIP-896). Chronik advertises nothing older.
var kafka40Floor = map[int16]int16{
	0: 3, 1: 4, 2: 1, 3: 0, 8: 2, 9: 1, 10: 0, 11: 2, 12: 0, 13: 0, 14: 0, 15: 0, 16: 0,
	18: 0, 19: 2, 20: 1, 21: 0, 22: 0, 23: 2, 32: 1, 33: 0, 35: 1, 37: 0, 42: 0, 44: 0,
	47: 0, 60: 0, 64: 0,
	// The transactional APIs (Kafka 4.0's <Name>Request.json "validVersions"):
	// KIP-896 removed only WriteTxnMarkers v0.
	24: 0, 25: 0, 26: 0, 27: 1, 28: 0, 61: 0, 65: 0, 66: 0,
	// ACLs (Kafka 4.0 serves v1-3 of each).
	29: 1, 30: 1, 31: 1,
}

func TestAPITableMatchesKafkaFloorAndKmsg(t *testing.T) {
	if len(apis) != len(kafka40Floor) {
		t.Fatalf("%d APIs in the table, %d in the expected list", len(apis), len(kafka40Floor))
	}
	for _, a := range apis {
		floor, ok := kafka40Floor[a.key]
		if !ok {
			t.Errorf("%s (key %d) is served but not expected", a.name, a.key)
			continue
		}
		if a.min != floor {
			t.Errorf("%s: min version %d, Kafka 4.0 floor is %d", a.name, a.min, floor)
		}
		kreq := kmsg.RequestForKey(a.key)
		if a.max != kreq.MaxVersion() {
			t.Errorf("%s: max version %d, kmsg encodes up to %d", a.name, a.max, kreq.MaxVersion())
		}
		if kmsg.NameForKey(a.key) != a.name {
			t.Errorf("key %d: named %q in the table, kmsg says %q", a.key, a.name, kmsg.NameForKey(a.key))
		}
	}
	if !slices.IsSortedFunc(apis, func(x, y api) int { return int(x.key) - int(y.key) }) {
		t.Error("the table is not sorted by key")
	}
}

// TestVersionCommentsMatchTable checks each API file's header comment
// ("// Produce: v3-13") against the table.
func TestVersionCommentsMatchTable(t *testing.T) {
	header := regexp.MustCompile(`(?m)^// (\w+): v(\d+)-(\d+)$`)
	files, err := filepath.Glob("[0-9][0-9]_*.go")
	if err != nil {
		t.Fatal(err)
	}
	seen := map[int16]bool{}
	for _, f := range files {
		key, err := strconv.Atoi(f[:2])
		if err != nil {
			t.Fatal(err)
		}
		a := lookupAPI(int16(key))
		if a == nil {
			t.Errorf("%s: key %d is not in the table", f, key)
			continue
		}
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		m := header.FindSubmatch(src)
		if m == nil {
			t.Errorf("%s: no \"// Name: vMIN-MAX\" header comment", f)
			continue
		}
		if got := fmt.Sprintf("%s: v%s-%s", m[1], m[2], m[3]); got != fmt.Sprintf("%s: v%d-%d", a.name, a.min, a.max) {
			t.Errorf("%s: header says %q, table says %s v%d-%d", f, got, a.name, a.min, a.max)
		}
		seen[a.key] = true
	}
	for _, a := range apis {
		if !seen[a.key] {
			t.Errorf("%s (key %d) has no NN_name.go file", a.name, a.key)
		}
	}
}

// versionCase builds a request at a version and checks the response.
type versionCase func(t *testing.T, e *testEnv, v int16) (kmsg.Request, func(kmsg.Response))

// TestEveryAdvertisedVersion sends every API at every version the table
// advertises over a raw connection and checks the answer.
func TestEveryAdvertisedVersion(t *testing.T) {
	e := startEnv(t)
	e.createTopic("v", 1, nil)
	rc := e.dial()
	// Seed data so that fetches and offsets have something to show.
	seed := kmsg.NewPtrProduceRequest()
	seed.SetVersion(9)
	seed.Acks = -1
	seed.TimeoutMillis = 5000
	st := kmsg.NewProduceRequestTopic()
	st.Topic = "v"
	sp := kmsg.NewProduceRequestTopicPartition()
	sp.Records = plainBatch(5, 1000)
	st.Partitions = append(st.Partitions, sp)
	seed.Topics = append(seed.Topics, st)
	if code := rc.roundTrip(seed).(*kmsg.ProduceResponse).Topics[0].Partitions[0].ErrorCode; code != 0 {
		t.Fatalf("seed produce: %v", kerr.ErrorForCode(code))
	}

	for _, a := range apis {
		c, ok := versionCases[a.key]
		if !ok {
			t.Errorf("%s is advertised but has no version test", a.name)
			continue
		}
		for v := a.min; v <= a.max; v++ {
			t.Run(fmt.Sprintf("%s/v%d", a.name, v), func(t *testing.T) {
				req, check := c(t, e, v)
				req.SetVersion(v)
				rc := e.dial()
				rc.t = t
				check(rc.roundTrip(req))
			})
		}
	}
}

func wantCode(t *testing.T, what string, got int16) {
	t.Helper()
	if got != 0 {
		t.Fatalf("%s: %v", what, kerr.ErrorForCode(got))
	}
}

var versionCases = map[int16]versionCase{
	0: func(t *testing.T, e *testEnv, v int16) (kmsg.Request, func(kmsg.Response)) {
		info, _ := e.b.Topic("v")
		_, hwBefore, _ := e.b.PartitionOffsets("v", 0)
		req := kmsg.NewPtrProduceRequest()
		req.Acks, req.TimeoutMillis = -1, 5000
		rt := kmsg.NewProduceRequestTopic()
		rt.Topic, rt.TopicID = "v", info.ID
		rp := kmsg.NewProduceRequestTopicPartition()
		rp.Records = plainBatch(2, 2000)
		rt.Partitions = append(rt.Partitions, rp)
		req.Topics = append(req.Topics, rt)
		return req, func(r kmsg.Response) {
			resp := r.(*kmsg.ProduceResponse)
			p := resp.Topics[0].Partitions[0]
			wantCode(t, "produce", p.ErrorCode)
			if p.BaseOffset != hwBefore {
				t.Errorf("base offset %d, want %d", p.BaseOffset, hwBefore)
			}
			if v >= 5 && p.LogStartOffset != 0 {
				t.Errorf("log start offset %d, want 0", p.LogStartOffset)
			}
			if v >= 13 && resp.Topics[0].TopicID != info.ID {
				t.Errorf("topic ID not echoed")
			}
		}
	},
	1: func(t *testing.T, e *testEnv, v int16) (kmsg.Request, func(kmsg.Response)) {
		info, _ := e.b.Topic("v")
		_, hw, _ := e.b.PartitionOffsets("v", 0)
		req := kmsg.NewPtrFetchRequest()
		req.MaxWaitMillis, req.MinBytes, req.MaxBytes = 100, 1, 1<<20
		req.SessionEpoch = -1
		rt := kmsg.NewFetchRequestTopic()
		rt.Topic, rt.TopicID = "v", info.ID
		rp := kmsg.NewFetchRequestTopicPartition()
		rp.PartitionMaxBytes = 1 << 20
		rp.CurrentLeaderEpoch = 0
		rt.Partitions = append(rt.Partitions, rp)
		req.Topics = append(req.Topics, rt)
		return req, func(r kmsg.Response) {
			resp := r.(*kmsg.FetchResponse)
			wantCode(t, "fetch", resp.ErrorCode)
			if resp.SessionID != 0 {
				t.Errorf("session id %d, want 0 (sessionless)", resp.SessionID)
			}
			p := resp.Topics[0].Partitions[0]
			wantCode(t, "fetch partition", p.ErrorCode)
			if p.HighWatermark != hw {
				t.Errorf("high watermark %d, want %d", p.HighWatermark, hw)
			}
			batches := decodeBatches(t, p.RecordBatches)
			if len(batches) == 0 || batches[0].FirstOffset != 0 {
				t.Fatalf("want batches from offset 0, got %d batches", len(batches))
			}
			if v >= 13 && resp.Topics[0].TopicID != info.ID {
				t.Errorf("topic ID not echoed")
			}
		}
	},
	2: func(t *testing.T, e *testEnv, v int16) (kmsg.Request, func(kmsg.Response)) {
		_, hw, _ := e.b.PartitionOffsets("v", 0)
		req := kmsg.NewPtrListOffsetsRequest()
		rt := kmsg.NewListOffsetsRequestTopic()
		rt.Topic = "v"
		latest := kmsg.NewListOffsetsRequestTopicPartition()
		latest.Timestamp = -1
		rt.Partitions = append(rt.Partitions, latest)
		req.Topics = append(req.Topics, rt)
		return req, func(r kmsg.Response) {
			p := r.(*kmsg.ListOffsetsResponse).Topics[0].Partitions[0]
			wantCode(t, "list offsets", p.ErrorCode)
			if p.Offset != hw {
				t.Errorf("latest offset %d, want %d", p.Offset, hw)
			}
			if v >= 4 && p.LeaderEpoch != 0 {
				t.Errorf("leader epoch %d, want 0", p.LeaderEpoch)
			}
		}
	},
	3: func(t *testing.T, e *testEnv, v int16) (kmsg.Request, func(kmsg.Response)) {
		info, _ := e.b.Topic("v")
		req := kmsg.NewPtrMetadataRequest()
		rt := kmsg.NewMetadataRequestTopic()
		rt.Topic = kmsg.StringPtr("v")
		req.Topics = append(req.Topics, rt)
		return req, func(r kmsg.Response) {
			resp := r.(*kmsg.MetadataResponse)
			if len(resp.Brokers) != 1 || resp.Brokers[0].Port != e.b.Config().AdvertisedPort || resp.Brokers[0].Host != "127.0.0.1" {
				t.Fatalf("brokers %+v", resp.Brokers)
			}
			if len(resp.Topics) != 1 {
				t.Fatalf("%d topics, want 1", len(resp.Topics))
			}
			mt := resp.Topics[0]
			wantCode(t, "metadata", mt.ErrorCode)
			if *mt.Topic != "v" || len(mt.Partitions) != 1 || mt.Partitions[0].Leader != 0 {
				t.Fatalf("topic %+v", mt)
			}
			if v >= 2 && (resp.ClusterID == nil || *resp.ClusterID != e.b.ClusterID()) {
				t.Errorf("cluster id %v", resp.ClusterID)
			}
			if v >= 10 && mt.TopicID != info.ID {
				t.Errorf("topic ID %x, want %x", mt.TopicID, info.ID)
			}
		}
	},
	18: func(t *testing.T, e *testEnv, v int16) (kmsg.Request, func(kmsg.Response)) {
		req := kmsg.NewPtrApiVersionsRequest()
		req.ClientSoftwareName, req.ClientSoftwareVersion = "chronik-test", "1.0.0"
		return req, func(r kmsg.Response) {
			resp := r.(*kmsg.ApiVersionsResponse)
			wantCode(t, "api versions", resp.ErrorCode)
			if !reflect.DeepEqual(resp.ApiKeys, advertisedVersions()) {
				t.Errorf("advertised %+v", resp.ApiKeys)
			}
		}
	},
	19: func(t *testing.T, e *testEnv, v int16) (kmsg.Request, func(kmsg.Response)) {
		name := fmt.Sprintf("created-v%d", v)
		req := kmsg.NewPtrCreateTopicsRequest()
		rt := kmsg.NewCreateTopicsRequestTopic()
		rt.Topic, rt.NumPartitions, rt.ReplicationFactor = name, 2, 1
		c := kmsg.NewCreateTopicsRequestTopicConfig()
		c.Name, c.Value = "retention.ms", kmsg.StringPtr("123456")
		rt.Configs = append(rt.Configs, c)
		req.Topics = append(req.Topics, rt)
		return req, func(r kmsg.Response) {
			st := r.(*kmsg.CreateTopicsResponse).Topics[0]
			wantCode(t, "create topics", st.ErrorCode)
			info, ok := e.b.Topic(name)
			if !ok || info.Partitions != 2 || info.Configs["retention.ms"] != "123456" {
				t.Fatalf("topic after create: %+v (exists %v)", info, ok)
			}
			if v >= 5 {
				if st.NumPartitions != 2 || st.ReplicationFactor != 1 {
					t.Errorf("partitions %d, RF %d", st.NumPartitions, st.ReplicationFactor)
				}
				i := slices.IndexFunc(st.Configs, func(c kmsg.CreateTopicsResponseTopicConfig) bool { return c.Name == "retention.ms" })
				if i < 0 || *st.Configs[i].Value != "123456" || st.Configs[i].Source != int8(kmsg.ConfigSourceDynamicTopicConfig) {
					t.Errorf("configs %+v", st.Configs)
				}
			}
			if v >= 7 && st.TopicID != info.ID {
				t.Errorf("topic ID %x, want %x", st.TopicID, info.ID)
			}
		}
	},
	20: func(t *testing.T, e *testEnv, v int16) (kmsg.Request, func(kmsg.Response)) {
		name := fmt.Sprintf("doomed-v%d", v)
		info := e.createTopic(name, 1, nil)
		req := kmsg.NewPtrDeleteTopicsRequest()
		req.TopicNames = []string{name}
		rt := kmsg.NewDeleteTopicsRequestTopic()
		rt.TopicID = info.ID // v6+: by ID
		req.Topics = append(req.Topics, rt)
		return req, func(r kmsg.Response) {
			st := r.(*kmsg.DeleteTopicsResponse).Topics[0]
			wantCode(t, "delete topics", st.ErrorCode)
			if _, ok := e.b.Topic(name); ok {
				t.Fatal("topic still exists")
			}
			if v >= 6 && (st.Topic == nil || *st.Topic != name || st.TopicID != info.ID) {
				t.Errorf("response names %v %x", st.Topic, st.TopicID)
			}
		}
	},
	21: func(t *testing.T, e *testEnv, v int16) (kmsg.Request, func(kmsg.Response)) {
		name := fmt.Sprintf("trimmed-v%d", v)
		e.createTopic(name, 1, nil)
		if _, err := e.b.Produce(t.Context(), name, 0, plainBatch(10, 1000), -1, nil); err != nil {
			t.Fatal(err)
		}
		req := kmsg.NewPtrDeleteRecordsRequest()
		rt := kmsg.NewDeleteRecordsRequestTopic()
		rt.Topic = name
		rp := kmsg.NewDeleteRecordsRequestTopicPartition()
		rp.Offset = 4
		rt.Partitions = append(rt.Partitions, rp)
		req.Topics = append(req.Topics, rt)
		return req, func(r kmsg.Response) {
			p := r.(*kmsg.DeleteRecordsResponse).Topics[0].Partitions[0]
			wantCode(t, "delete records", p.ErrorCode)
			if p.LowWatermark != 4 {
				t.Errorf("low watermark %d, want 4", p.LowWatermark)
			}
			if start, _, _ := e.b.PartitionOffsets(name, 0); start != 4 {
				t.Errorf("log start %d, want 4", start)
			}
		}
	},
	22: func(t *testing.T, e *testEnv, v int16) (kmsg.Request, func(kmsg.Response)) {
		req := kmsg.NewPtrInitProducerIDRequest()
		return req, func(r kmsg.Response) {
			resp := r.(*kmsg.InitProducerIDResponse)
			wantCode(t, "init producer id", resp.ErrorCode)
			if resp.ProducerID < 0 || resp.ProducerEpoch < 0 {
				t.Errorf("producer %d epoch %d", resp.ProducerID, resp.ProducerEpoch)
			}
		}
	},
	23: func(t *testing.T, e *testEnv, v int16) (kmsg.Request, func(kmsg.Response)) {
		_, hw, _ := e.b.PartitionOffsets("v", 0)
		req := kmsg.NewPtrOffsetForLeaderEpochRequest()
		rt := kmsg.NewOffsetForLeaderEpochRequestTopic()
		rt.Topic = "v"
		rp := kmsg.NewOffsetForLeaderEpochRequestTopicPartition()
		rp.CurrentLeaderEpoch, rp.LeaderEpoch = 0, 0
		rt.Partitions = append(rt.Partitions, rp)
		req.Topics = append(req.Topics, rt)
		return req, func(r kmsg.Response) {
			p := r.(*kmsg.OffsetForLeaderEpochResponse).Topics[0].Partitions[0]
			wantCode(t, "offset for leader epoch", p.ErrorCode)
			if p.LeaderEpoch != 0 || p.EndOffset != hw {
				t.Errorf("epoch %d end offset %d, want 0 %d", p.LeaderEpoch, p.EndOffset, hw)
			}
		}
	},
	32: func(t *testing.T, e *testEnv, v int16) (kmsg.Request, func(kmsg.Response)) {
		req := kmsg.NewPtrDescribeConfigsRequest()
		req.IncludeSynonyms, req.IncludeDocumentation = true, true
		rr := kmsg.NewDescribeConfigsRequestResource()
		rr.ResourceType, rr.ResourceName = kmsg.ConfigResourceTypeTopic, "v"
		br := kmsg.NewDescribeConfigsRequestResource()
		br.ResourceType, br.ResourceName = kmsg.ConfigResourceTypeBroker, "0"
		req.Resources = append(req.Resources, rr, br)
		return req, func(r kmsg.Response) {
			resp := r.(*kmsg.DescribeConfigsResponse)
			for _, res := range resp.Resources {
				wantCode(t, "describe configs "+res.ResourceName, res.ErrorCode)
				if len(res.Configs) == 0 {
					t.Errorf("%s: no configs", res.ResourceName)
				}
			}
			topic := resp.Resources[0].Configs
			i := slices.IndexFunc(topic, func(c kmsg.DescribeConfigsResponseResourceConfig) bool { return c.Name == "retention.ms" })
			if i < 0 || topic[i].Value == nil {
				t.Fatalf("no retention.ms in %+v", topic)
			}
			if len(topic[i].ConfigSynonyms) == 0 {
				t.Errorf("no synonyms")
			}
			if v >= 3 && (topic[i].ConfigType != kmsg.ConfigTypeLong || topic[i].Documentation == nil) {
				t.Errorf("type %v doc %v", topic[i].ConfigType, topic[i].Documentation)
			}
		}
	},
	33: func(t *testing.T, e *testEnv, v int16) (kmsg.Request, func(kmsg.Response)) {
		name := fmt.Sprintf("altered-v%d", v)
		e.createTopic(name, 1, map[string]*string{"retention.bytes": kmsg.StringPtr("99999999")})
		req := kmsg.NewPtrAlterConfigsRequest()
		rr := kmsg.NewAlterConfigsRequestResource()
		rr.ResourceType, rr.ResourceName = kmsg.ConfigResourceTypeTopic, name
		c := kmsg.NewAlterConfigsRequestResourceConfig()
		c.Name, c.Value = "retention.ms", kmsg.StringPtr("7777")
		rr.Configs = append(rr.Configs, c)
		req.Resources = append(req.Resources, rr)
		return req, func(r kmsg.Response) {
			wantCode(t, "alter configs", r.(*kmsg.AlterConfigsResponse).Resources[0].ErrorCode)
			info, _ := e.b.Topic(name)
			if info.Configs["retention.ms"] != "7777" {
				t.Errorf("configs after alter: %v", info.Configs)
			}
			if _, ok := info.Configs["retention.bytes"]; ok {
				t.Errorf("AlterConfigs must replace the whole set: %v", info.Configs)
			}
		}
	},
	35: func(t *testing.T, e *testEnv, v int16) (kmsg.Request, func(kmsg.Response)) {
		req := kmsg.NewPtrDescribeLogDirsRequest()
		return req, func(r kmsg.Response) {
			resp := r.(*kmsg.DescribeLogDirsResponse)
			wantCode(t, "describe log dirs", resp.ErrorCode)
			if len(resp.Dirs) != 1 || resp.Dirs[0].Dir != e.dir {
				t.Fatalf("dirs %+v, want %s", resp.Dirs, e.dir)
			}
			d := resp.Dirs[0]
			i := slices.IndexFunc(d.Topics, func(t kmsg.DescribeLogDirsResponseDirTopic) bool { return t.Topic == "v" })
			if i < 0 || len(d.Topics[i].Partitions) != 1 || d.Topics[i].Partitions[0].Size <= 0 {
				t.Fatalf("topic v not described with a size: %+v", d.Topics)
			}
			if v >= 4 && (d.TotalBytes <= 0 || d.UsableBytes < 0) {
				t.Errorf("total %d usable %d", d.TotalBytes, d.UsableBytes)
			}
		}
	},
	37: func(t *testing.T, e *testEnv, v int16) (kmsg.Request, func(kmsg.Response)) {
		name := fmt.Sprintf("grown-v%d", v)
		e.createTopic(name, 1, nil)
		req := kmsg.NewPtrCreatePartitionsRequest()
		rt := kmsg.NewCreatePartitionsRequestTopic()
		rt.Topic, rt.Count = name, 3
		req.Topics = append(req.Topics, rt)
		return req, func(r kmsg.Response) {
			wantCode(t, "create partitions", r.(*kmsg.CreatePartitionsResponse).Topics[0].ErrorCode)
			if info, _ := e.b.Topic(name); info.Partitions != 3 {
				t.Errorf("%d partitions, want 3", info.Partitions)
			}
		}
	},
	44: func(t *testing.T, e *testEnv, v int16) (kmsg.Request, func(kmsg.Response)) {
		name := fmt.Sprintf("incremental-v%d", v)
		e.createTopic(name, 1, map[string]*string{"retention.bytes": kmsg.StringPtr("99999999")})
		req := kmsg.NewPtrIncrementalAlterConfigsRequest()
		rr := kmsg.NewIncrementalAlterConfigsRequestResource()
		rr.ResourceType, rr.ResourceName = kmsg.ConfigResourceTypeTopic, name
		c := kmsg.NewIncrementalAlterConfigsRequestResourceConfig()
		c.Name, c.Op, c.Value = "retention.ms", kmsg.IncrementalAlterConfigOpSet, kmsg.StringPtr("8888")
		rr.Configs = append(rr.Configs, c)
		req.Resources = append(req.Resources, rr)
		return req, func(r kmsg.Response) {
			wantCode(t, "incremental alter configs", r.(*kmsg.IncrementalAlterConfigsResponse).Resources[0].ErrorCode)
			info, _ := e.b.Topic(name)
			if info.Configs["retention.ms"] != "8888" || info.Configs["retention.bytes"] != "99999999" {
				t.Errorf("configs after incremental alter: %v", info.Configs)
			}
		}
	},
	64: func(t *testing.T, e *testEnv, v int16) (kmsg.Request, func(kmsg.Response)) {
		req := kmsg.NewPtrUnregisterBrokerRequest()
		req.BrokerID = 7
		return req, func(r kmsg.Response) {
			if code := r.(*kmsg.UnregisterBrokerResponse).ErrorCode; code != kerr.BrokerIDNotRegistered.Code {
				t.Errorf("unregister broker 7 of a standalone broker: %v, want BROKER_ID_NOT_REGISTERED", kerr.ErrorForCode(code))
			}
		}
	},
	60: func(t *testing.T, e *testEnv, v int16) (kmsg.Request, func(kmsg.Response)) {
		req := kmsg.NewPtrDescribeClusterRequest()
		req.IncludeClusterAuthorizedOperations = true
		return req, func(r kmsg.Response) {
			resp := r.(*kmsg.DescribeClusterResponse)
			wantCode(t, "describe cluster", resp.ErrorCode)
			if resp.ClusterID != e.b.ClusterID() || len(resp.Brokers) != 1 || resp.ControllerID != 0 {
				t.Errorf("cluster %+v", resp)
			}
			if resp.ClusterAuthorizedOperations != allClusterOperations {
				t.Errorf("authorized operations %d", resp.ClusterAuthorizedOperations)
			}
		}
	},
}

// TestUnsupportedVersions sends every API below its floor (where kmsg can
// still encode it) and above its maximum: UNSUPPORTED_VERSION with the
// correlation id intact, and the connection keeps working.
func TestUnsupportedVersions(t *testing.T) {
	e := startEnv(t)
	e.createTopic("v", 1, nil)
	for _, a := range apis {
		c := versionCases[a.key]
		for v := int16(0); v < a.min; v++ {
			t.Run(fmt.Sprintf("%s/v%d", a.name, v), func(t *testing.T) {
				req, _ := c(t, e, a.min)
				req.SetVersion(v)
				rc := e.dial()
				rc.t = t
				resp := rc.roundTrip(req)
				// Fields a version does not carry decode as 0.
				codes := errorCodes(resp)
				if !slices.Contains(codes, kerr.UnsupportedVersion.Code) ||
					slices.ContainsFunc(codes, func(c int16) bool { return c != 0 && c != kerr.UnsupportedVersion.Code }) {
					t.Fatalf("error codes %v, want UNSUPPORTED_VERSION", codes)
				}
				checkAlive(t, rc)
			})
		}
		t.Run(fmt.Sprintf("%s/v%d", a.name, a.max+1), func(t *testing.T) {
			rc := e.dial()
			rc.t = t
			corr := int32(4242)
			rc.write(rawRequest(a.key, a.max+1, corr, []byte{0, 0, 0, 0}))
			body, err := rc.readFrame()
			if err != nil {
				t.Fatal(err)
			}
			if got := int32(beUint32(body)); got != corr {
				t.Fatalf("correlation id %d, want %d", got, corr)
			}
			if a.key == 18 {
				// ApiVersions: a v0 response listing our versions.
				resp := kmsg.NewPtrApiVersionsResponse()
				resp.Version = 0
				if err := resp.ReadFrom(body[4:]); err != nil {
					t.Fatal(err)
				}
				if resp.ErrorCode != kerr.UnsupportedVersion.Code || !reflect.DeepEqual(resp.ApiKeys, advertisedVersions()) {
					t.Fatalf("v0 answer: code %d, keys %+v", resp.ErrorCode, resp.ApiKeys)
				}
			} else if len(body) != 6 || int16(beUint16(body[4:])) != kerr.UnsupportedVersion.Code {
				t.Fatalf("answer % x, want the correlation id and UNSUPPORTED_VERSION", body)
			}
			checkAlive(t, rc)
		})
	}
}

// TestFailResponsesEncodeAtEveryVersion checks that every API's error
// response (used for unsupported versions and handler panics) can be
// encoded and decoded at every version kmsg knows.
func TestFailResponsesEncodeAtEveryVersion(t *testing.T) {
	e := startEnv(t)
	e.createTopic("v", 1, nil)
	for _, a := range apis {
		req, _ := versionCases[a.key](t, e, a.min)
		for v := int16(0); v <= req.MaxVersion(); v++ {
			req.SetVersion(v)
			resp := a.fail(req, kerr.UnknownServerError.Code)
			if resp.GetVersion() != v {
				t.Fatalf("%s v%d: response at version %d", a.name, v, resp.GetVersion())
			}
			back := req.ResponseKind()
			if err := back.ReadFrom(resp.AppendTo(nil)); err != nil {
				t.Fatalf("%s v%d: %v", a.name, v, err)
			}
			if codes := errorCodes(back); !slices.Contains(codes, kerr.UnknownServerError.Code) ||
				slices.ContainsFunc(codes, func(c int16) bool { return c != 0 && c != kerr.UnknownServerError.Code }) {
				t.Fatalf("%s v%d: error codes %v", a.name, v, codes)
			}
		}
	}
}

// errorCodes collects every ErrorCode field in a response.
func errorCodes(resp kmsg.Response) []int16 {
	var codes []int16
	var walk func(v reflect.Value)
	walk = func(v reflect.Value) {
		switch v.Kind() {
		case reflect.Pointer:
			if !v.IsNil() {
				walk(v.Elem())
			}
		case reflect.Struct:
			for i := 0; i < v.NumField(); i++ {
				if v.Type().Field(i).Name == "ErrorCode" {
					codes = append(codes, int16(v.Field(i).Int()))
					continue
				}
				walk(v.Field(i))
			}
		case reflect.Slice:
			for i := 0; i < v.Len(); i++ {
				walk(v.Index(i))
			}
		}
	}
	walk(reflect.ValueOf(resp))
	return codes
}
