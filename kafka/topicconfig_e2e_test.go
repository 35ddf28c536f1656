package kafka

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// kafka40TopicConfigs is Kafka 4.0's topic config list (LogConfig), every
// one of which DescribeConfigs lists.
var kafka40TopicConfigs = []string{
	"cleanup.policy", "compression.gzip.level", "compression.lz4.level", "compression.type",
	"compression.zstd.level", "delete.retention.ms", "file.delete.delay.ms", "flush.messages",
	"flush.ms", "follower.replication.throttled.replicas", "index.interval.bytes",
	"leader.replication.throttled.replicas", "local.retention.bytes", "local.retention.ms",
	"max.compaction.lag.ms", "max.message.bytes", "message.timestamp.after.max.ms",
	"message.timestamp.before.max.ms", "message.timestamp.type", "min.cleanable.dirty.ratio",
	"min.compaction.lag.ms", "min.insync.replicas", "preallocate", "remote.log.copy.disable",
	"remote.log.delete.on.disable", "remote.storage.enable", "retention.bytes", "retention.ms",
	"segment.bytes", "segment.index.bytes", "segment.jitter.ms", "segment.ms",
	"unclean.leader.election.enable",
}

func createWithConfigs(t *testing.T, adm *kadm.Client, name string, configs map[string]*string) kadm.CreateTopicResponse {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := adm.CreateTopic(ctx, 1, -1, configs, name)
	if err != nil && resp.Err == nil {
		t.Fatalf("create %s: %v", name, err)
	}
	return resp
}

// storedCodecs reads a partition through the broker API and returns the
// codec of every stored batch and the record count.
func storedCodecs(t *testing.T, e *testEnv, topic string) ([]int16, int) {
	t.Helper()
	res, err := e.b.Fetch(topic, 0, 0, 64<<20, 0)
	if err != nil {
		t.Fatal(err)
	}
	var codecs []int16
	n := 0
	for _, b := range decodeBatches(t, res.Records) {
		codecs = append(codecs, b.Attributes&7)
		n += int(b.NumRecords)
	}
	return codecs, n
}

// TestTopicCompressionE2E: topics of every compression.type take batches
// from kgo producers of every codec; each batch is stored with the
// topic's codec (or as sent, for "producer"), and kgo consumes back every
// record with its key, value, headers and timestamp.
func TestTopicCompressionE2E(t *testing.T) {
	e := startEnv(t)
	adm := e.admin()
	topicCodecs := map[string]int16{"uncompressed": 0, "gzip": 1, "snappy": 2, "lz4": 3, "zstd": 4, "producer": -1}
	clientCodecs := []kgo.CompressionCodec{kgo.NoCompression(), kgo.GzipCompression(), kgo.SnappyCompression(), kgo.Lz4Compression(), kgo.ZstdCompression()}
	ts := time.UnixMilli(time.Now().UnixMilli())
	for _, topicCodec := range slices.Sorted(func(yield func(string) bool) {
		for k := range topicCodecs {
			if !yield(k) {
				return
			}
		}
	}) {
		topic := "c-" + topicCodec
		if resp := createWithConfigs(t, adm, topic, map[string]*string{"compression.type": kmsg.StringPtr(topicCodec)}); resp.Err != nil {
			t.Fatalf("create %s: %v %s", topic, resp.Err, resp.ErrMessage)
		}
		var want []string
		for ci, cc := range clientCodecs {
			cl := e.client(kgo.ProducerBatchCompression(cc), kgo.DefaultProduceTopic(topic), kgo.ProducerLinger(0))
			var recs []*kgo.Record
			for i := range 20 {
				v := fmt.Sprintf("codec %d record %d %s", ci, i, strings.Repeat("payload ", 20))
				want = append(want, v)
				recs = append(recs, &kgo.Record{Key: []byte(fmt.Sprint(i)), Value: []byte(v), Timestamp: ts,
					Headers: []kgo.RecordHeader{{Key: "h", Value: []byte("x")}}})
			}
			if err := cl.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
				t.Fatalf("%s: produce with codec %d: %v", topic, ci, err)
			}
			cl.Close()
		}
		codecs, n := storedCodecs(t, e, topic)
		if n != len(want) {
			t.Fatalf("%s: %d records stored, want %d", topic, n, len(want))
		}
		for _, c := range codecs {
			if tc := topicCodecs[topicCodec]; tc >= 0 && c != tc {
				t.Fatalf("%s: stored codecs %v, want all %d", topic, codecs, tc)
			}
		}
		if topicCodec == "producer" && !slices.Equal(slices.Compact(slices.Clone(codecs)), []int16{0, 1, 2, 3, 4}) {
			t.Fatalf("%s: stored codecs %v, want each client's", topic, codecs)
		}
		cons := e.client(kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
		var got []string
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		for len(got) < len(want) && ctx.Err() == nil {
			fs := cons.PollFetches(ctx)
			if err := fs.Err(); err != nil && !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("%s: consume: %v", topic, err)
			}
			fs.EachRecord(func(r *kgo.Record) {
				if !r.Timestamp.Equal(ts) || len(r.Headers) != 1 || string(r.Headers[0].Value) != "x" {
					t.Errorf("%s: record %d: timestamp %v, headers %v", topic, r.Offset, r.Timestamp, r.Headers)
				}
				got = append(got, string(r.Value))
			})
		}
		cancel()
		if !slices.Equal(got, want) {
			t.Fatalf("%s: consumed %d records, want %d in order", topic, len(got), len(want))
		}
	}
}

// TestTopicCompressionAlterE2E: compression.type changed with
// IncrementalAlterConfigs applies to the next produce.
func TestTopicCompressionAlterE2E(t *testing.T) {
	e := startEnv(t)
	adm := e.admin()
	createWithConfigs(t, adm, "alter", nil)
	cl := e.client(kgo.DefaultProduceTopic("alter"), kgo.ProducerBatchCompression(kgo.NoCompression()))
	produce := func() {
		if err := cl.ProduceSync(context.Background(), &kgo.Record{Value: []byte(strings.Repeat("v", 500))}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	produce()
	resp, err := adm.AlterTopicConfigs(context.Background(), []kadm.AlterConfig{{Op: kadm.SetConfig, Name: "compression.type", Value: kmsg.StringPtr("zstd")}}, "alter")
	if err == nil {
		err = resp[0].Err
	}
	if err != nil {
		t.Fatal(err)
	}
	produce()
	if codecs, _ := storedCodecs(t, e, "alter"); !slices.Equal(codecs, []int16{0, 4}) {
		t.Fatalf("stored codecs %v, want [0 4]", codecs)
	}
}

// TestTopicConfigsDescribeE2E: DescribeConfigs lists every Kafka 4.0
// topic config with its value and source, as kadm (and kcat, confluent's
// AdminClient) read them.
func TestTopicConfigsDescribeE2E(t *testing.T) {
	e := startEnv(t)
	adm := e.admin()
	set := map[string]*string{
		"compression.type": kmsg.StringPtr("lz4"), "segment.ms": kmsg.StringPtr("3600000"),
		"min.cleanable.dirty.ratio": kmsg.StringPtr("0.1"), "preallocate": kmsg.StringPtr("True"),
		"message.timestamp.before.max.ms": kmsg.StringPtr("86400000"), "min.insync.replicas": kmsg.StringPtr("1"),
		"leader.replication.throttled.replicas": kmsg.StringPtr("0:1"),
	}
	if resp := createWithConfigs(t, adm, "desc", set); resp.Err != nil {
		t.Fatalf("%v %s", resp.Err, resp.ErrMessage)
	}
	rcs, err := adm.DescribeTopicConfigs(context.Background(), "desc")
	if err != nil || len(rcs) != 1 || rcs[0].Err != nil {
		t.Fatalf("%v %+v", err, rcs)
	}
	byName := map[string]kadm.Config{}
	for _, c := range rcs[0].Configs {
		byName[c.Key] = c
	}
	for _, name := range kafka40TopicConfigs {
		c, ok := byName[name]
		if !ok {
			t.Errorf("%s not described", name)
			continue
		}
		if c.Value == nil {
			t.Errorf("%s without a value", name)
			continue
		}
		if v, isSet := set[name]; isSet {
			want := *v
			if name == "preallocate" {
				want = "true"
			}
			if c.Source != kmsg.ConfigSourceDynamicTopicConfig || *c.Value != want {
				t.Errorf("%s = %q (source %v), want %q set on the topic", name, *c.Value, c.Source, want)
			}
		} else if c.Source != kmsg.ConfigSourceDefaultConfig {
			t.Errorf("%s source %v, want DEFAULT_CONFIG", name, c.Source)
		}
	}
	for name, want := range map[string]string{"segment.index.bytes": "10485760", "delete.retention.ms": "86400000",
		"unclean.leader.election.enable": "false", "remote.storage.enable": "false", "compression.zstd.level": "3",
		"message.timestamp.after.max.ms": "9223372036854775807"} {
		if c := byName[name]; c.Value == nil || *c.Value != want {
			t.Errorf("%s default %v, want %s", name, c.Value, want)
		}
	}
	// DescribeConfigs v3+ documentation says where Chronik does not act.
	req := kmsg.NewPtrDescribeConfigsRequest()
	r := kmsg.NewDescribeConfigsRequestResource()
	r.ResourceType, r.ResourceName, r.ConfigNames = kmsg.ConfigResourceTypeTopic, "desc", []string{"segment.jitter.ms", "segment.index.bytes"}
	req.Resources, req.IncludeDocumentation = append(req.Resources, r), true
	resp, err := req.RequestWith(context.Background(), e.client())
	if err != nil {
		t.Fatal(err)
	}
	if got := len(resp.Resources[0].Configs); got != 2 {
		t.Fatalf("%d configs for two names", got)
	}
	for _, c := range resp.Resources[0].Configs {
		if c.Documentation == nil || !strings.Contains(*c.Documentation, "Chronik") {
			t.Errorf("%s documentation %v does not say what Chronik does", c.Name, c.Documentation)
		}
	}
}

// TestTopicConfigsRefusedE2E: bad values and configs Chronik cannot honour
// are INVALID_CONFIG with a message naming the config, on CreateTopics and
// on IncrementalAlterConfigs; nothing is silently dropped.
func TestTopicConfigsRefusedE2E(t *testing.T) {
	e := startEnv(t)
	adm := e.admin()
	createWithConfigs(t, adm, "alter", nil)
	for _, tc := range []struct{ name, value, msg string }{
		{"compression.type", "brotli", "compression.type"},
		{"compression.gzip.level", "10", "compression.gzip.level"},
		{"remote.storage.enable", "true", "tiered storage is not supported"},
		{"unclean.leader.election.enable", "true", "unclean.leader.election.enable"},
		{"min.insync.replicas", "2", "min.insync.replicas"},
		{"min.insync.replicas", "0", "min.insync.replicas"},
		{"cleanup.policy", "compact,shred", "cleanup.policy"},
		{"message.timestamp.before.max.ms", "-1", "message.timestamp.before.max.ms"},
		{"min.cleanable.dirty.ratio", "2", "min.cleanable.dirty.ratio"},
		{"segment.ms", "0", "segment.ms"},
		{"message.format.version", "3.0-IV1", "message.format.version"},
		{"no.such.config", "1", "no.such.config"},
	} {
		resp := createWithConfigs(t, adm, "refused", map[string]*string{tc.name: kmsg.StringPtr(tc.value)})
		if !errors.Is(resp.Err, kerr.InvalidConfig) || !strings.Contains(resp.ErrMessage, tc.msg) {
			t.Errorf("create with %s=%s: %v %q, want INVALID_CONFIG naming %q", tc.name, tc.value, resp.Err, resp.ErrMessage, tc.msg)
		}
		ar, err := adm.AlterTopicConfigs(context.Background(), []kadm.AlterConfig{{Op: kadm.SetConfig, Name: tc.name, Value: kmsg.StringPtr(tc.value)}}, "alter")
		if err != nil || len(ar) != 1 || !errors.Is(ar[0].Err, kerr.InvalidConfig) || !strings.Contains(ar[0].ErrMessage, tc.msg) {
			t.Errorf("alter %s=%s: %v %+v, want INVALID_CONFIG naming %q", tc.name, tc.value, err, ar, tc.msg)
		}
	}
	// min.compaction.lag.ms above max.compaction.lag.ms, as Kafka.
	resp := createWithConfigs(t, adm, "refused", map[string]*string{"min.compaction.lag.ms": kmsg.StringPtr("10"), "max.compaction.lag.ms": kmsg.StringPtr("5")})
	if !errors.Is(resp.Err, kerr.InvalidConfig) || !strings.Contains(resp.ErrMessage, "max.compaction.lag.ms") {
		t.Errorf("lag conflict: %v %q", resp.Err, resp.ErrMessage)
	}
	if _, ok := e.b.Topic("refused"); ok {
		t.Fatal("a refused topic exists")
	}
}

// TestTimestampBoundsE2E: with message.timestamp.before/after.max.ms a
// CreateTime record outside the window gets INVALID_TIMESTAMP; the
// deprecated message.timestamp.difference.max.ms bounds both sides.
func TestTimestampBoundsE2E(t *testing.T) {
	e := startEnv(t)
	adm := e.admin()
	hour := time.Hour
	for topic, cfg := range map[string]map[string]*string{
		"window": {"message.timestamp.before.max.ms": kmsg.StringPtr("3600000"), "message.timestamp.after.max.ms": kmsg.StringPtr("3600000")},
		"diff":   {"message.timestamp.difference.max.ms": kmsg.StringPtr("3600000")},
	} {
		if resp := createWithConfigs(t, adm, topic, cfg); resp.Err != nil {
			t.Fatalf("%s: %v %s", topic, resp.Err, resp.ErrMessage)
		}
		cl := e.client(kgo.DefaultProduceTopic(topic), kgo.ProducerBatchCompression(kgo.ZstdCompression()))
		now := time.Now()
		if err := cl.ProduceSync(context.Background(), &kgo.Record{Value: []byte("now"), Timestamp: now}, &kgo.Record{Value: []byte("soon"), Timestamp: now.Add(hour / 2)}).FirstErr(); err != nil {
			t.Fatalf("%s: in range: %v", topic, err)
		}
		for _, ts := range []time.Time{now.Add(-2 * hour), now.Add(2 * hour)} {
			err := cl.ProduceSync(context.Background(), &kgo.Record{Value: []byte("out"), Timestamp: ts}).FirstErr()
			if !errors.Is(err, kerr.InvalidTimestamp) {
				t.Fatalf("%s: record at %v: %v, want INVALID_TIMESTAMP", topic, ts.Sub(now), err)
			}
		}
		if _, n := storedCodecs(t, e, topic); n != 2 {
			t.Fatalf("%s: %d records stored, want 2", topic, n)
		}
	}
	// Without bounds, any timestamp goes.
	createWithConfigs(t, adm, "free", nil)
	cl := e.client(kgo.DefaultProduceTopic("free"))
	if err := cl.ProduceSync(context.Background(), &kgo.Record{Value: []byte("old"), Timestamp: time.UnixMilli(1)}).FirstErr(); err != nil {
		t.Fatal(err)
	}
}

// TestMinInsyncStandaloneE2E: a standalone broker has one replica, so
// min.insync.replicas is 1 (accepted, acks=all works) and more is refused.
func TestMinInsyncStandaloneE2E(t *testing.T) {
	e := startEnv(t)
	adm := e.admin()
	if resp := createWithConfigs(t, adm, "isr", map[string]*string{"min.insync.replicas": kmsg.StringPtr("1")}); resp.Err != nil {
		t.Fatalf("%v %s", resp.Err, resp.ErrMessage)
	}
	cl := e.client(kgo.DefaultProduceTopic("isr"), kgo.RequiredAcks(kgo.AllISRAcks()))
	if err := cl.ProduceSync(context.Background(), &kgo.Record{Value: []byte("v")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	resp := createWithConfigs(t, adm, "isr3", map[string]*string{"min.insync.replicas": kmsg.StringPtr("3")})
	if !errors.Is(resp.Err, kerr.InvalidConfig) || !strings.Contains(resp.ErrMessage, "one replica") {
		t.Fatalf("min.insync.replicas=3 standalone: %v %q", resp.Err, resp.ErrMessage)
	}
}
