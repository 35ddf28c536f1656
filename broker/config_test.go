package broker

import (
	"errors"
	"maps"
	"math"
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/kerr"
)

func sp(s string) *string { return &s }

func TestNormalizeConfig(t *testing.T) {
	tests := []struct {
		name, value, want string
		ok                bool
	}{
		{cfgRetentionMs, "60000", "60000", true},
		{cfgRetentionMs, " -1 ", "-1", true},
		{cfgRetentionMs, "-2", "", false},
		{cfgRetentionMs, "1h", "", false},
		{cfgRetentionBytes, "1073741824", "1073741824", true},
		{cfgRetentionBytes, "-1", "-1", true},
		{cfgSegmentBytes, "1048576", "1048576", true},
		{cfgSegmentBytes, "1048575", "", false},
		{cfgSegmentBytes, "4294967296", "", false}, // not an int32
		{cfgMaxMessageBytes, "0", "0", true},
		{cfgMaxMessageBytes, "-1", "", false},
		{cfgTimestampType, "LogAppendTime", "LogAppendTime", true},
		{cfgTimestampType, "CreateTime", "CreateTime", true},
		{cfgTimestampType, "logappendtime", "", false},
		{cfgCleanupPolicy, "delete", "delete", true},
		{cfgCleanupPolicy, " delete , delete", "delete", true},
		{cfgCleanupPolicy, "compact", "compact", true},
		{cfgCleanupPolicy, "delete,compact", "delete,compact", true},
		{cfgCleanupPolicy, "compact,delete,compact", "compact,delete", true},
		{cfgCleanupPolicy, "compacted", "", false},
		{cfgCleanupPolicy, "", "", false},
		{cfgCompressionType, "producer", "producer", true},
		{cfgCompressionType, " zstd ", "zstd", true},
		{cfgCompressionType, "uncompressed", "uncompressed", true},
		{cfgCompressionType, "none", "", false},
		{cfgCompressionType, "ZSTD", "", false},
		{cfgGzipLevel, "-1", "-1", true},
		{cfgGzipLevel, "9", "9", true},
		{cfgGzipLevel, "0", "", false},
		{cfgGzipLevel, "10", "", false},
		{cfgLz4Level, "17", "17", true},
		{cfgLz4Level, "0", "", false},
		{cfgZstdLevel, "-131072", "-131072", true},
		{cfgZstdLevel, "23", "", false},
		{cfgTimestampBefore, "0", "0", true},
		{cfgTimestampBefore, "-1", "", false},
		{cfgTimestampAfter, "3600000", "3600000", true},
		{cfgTimestampDifference, "9223372036854775807", "9223372036854775807", true},
		{cfgMinInsyncReplicas, "1", "1", true},
		{cfgMinInsyncReplicas, "0", "", false},
		{"min.cleanable.dirty.ratio", "0.25", "0.25", true},
		{"min.cleanable.dirty.ratio", "1.5", "", false},
		{"min.cleanable.dirty.ratio", "NaN", "", false},
		{"preallocate", "TRUE", "true", true},
		{"preallocate", "yes", "", false},
		{"remote.storage.enable", "false", "false", true},
		{"remote.storage.enable", "true", "", false},
		{"unclean.leader.election.enable", "true", "", false},
		{"leader.replication.throttled.replicas", "*", "*", true},
		{"leader.replication.throttled.replicas", "0:1, 1:2", "0:1,1:2", true},
		{"leader.replication.throttled.replicas", "0-1", "", false},
		{"follower.replication.throttled.replicas", "", "", true},
		{"segment.ms", "0", "", false},
		{"segment.index.bytes", "3", "", false},
		{"flush.messages", "1", "1", true},
		{"local.retention.ms", "-2", "-2", true},
		{"local.retention.ms", "-3", "", false},
		{"message.format.version", "3.0", "", false},
		{"message.downconversion.enable", "true", "", false},
		{"no.such.config", "1", "", false},
	}
	for _, tt := range tests {
		got, err := normalizeConfig(tt.name, tt.value)
		if tt.ok {
			if err != nil || got != tt.want {
				t.Errorf("%s=%q: got %q, %v; want %q", tt.name, tt.value, got, err, tt.want)
			}
			continue
		}
		if !errors.Is(err, kerr.InvalidConfig) {
			t.Errorf("%s=%q: got %v, want INVALID_CONFIG", tt.name, tt.value, err)
		}
	}
}

func TestNormalizeConfigsNil(t *testing.T) {
	if _, err := normalizeConfigs(map[string]*string{cfgRetentionMs: nil}, false); !errors.Is(err, kerr.InvalidConfig) {
		t.Fatalf("nil value on create: %v", err)
	}
	got, err := normalizeConfigs(map[string]*string{cfgRetentionMs: nil, cfgRetentionBytes: sp("10")}, true)
	if err != nil || len(got) != 1 || got[cfgRetentionBytes] != "10" {
		t.Fatalf("nil value on alter: %v %v", got, err)
	}
	if _, err := normalizeConfigs(map[string]*string{"bogus": nil}, true); !errors.Is(err, kerr.InvalidConfig) {
		t.Fatalf("unknown name with nil value: %v", err)
	}
}

func TestApplyConfigOps(t *testing.T) {
	cfg := Config{}.withDefaults()
	base := map[string]string{cfgRetentionMs: "1000", cfgTimestampType: "LogAppendTime"}
	tests := []struct {
		name string
		ops  []ConfigOp
		want map[string]string
		err  bool
	}{
		{"set", []ConfigOp{{Name: cfgRetentionBytes, Op: opSet, Value: sp("5")}},
			map[string]string{cfgRetentionMs: "1000", cfgTimestampType: "LogAppendTime", cfgRetentionBytes: "5"}, false},
		{"set overrides", []ConfigOp{{Name: cfgRetentionMs, Op: opSet, Value: sp("2000")}},
			map[string]string{cfgRetentionMs: "2000", cfgTimestampType: "LogAppendTime"}, false},
		{"delete", []ConfigOp{{Name: cfgTimestampType, Op: opDelete}},
			map[string]string{cfgRetentionMs: "1000"}, false},
		{"delete unset is fine", []ConfigOp{{Name: cfgSegmentBytes, Op: opDelete}}, base, false},
		{"append to list", []ConfigOp{{Name: cfgCleanupPolicy, Op: opAppend, Value: sp("delete")}},
			map[string]string{cfgRetentionMs: "1000", cfgTimestampType: "LogAppendTime", cfgCleanupPolicy: "delete"}, false},
		{"append compact", []ConfigOp{{Name: cfgCleanupPolicy, Op: opAppend, Value: sp("compact")}},
			map[string]string{cfgRetentionMs: "1000", cfgTimestampType: "LogAppendTime", cfgCleanupPolicy: "delete,compact"}, false},
		{"subtract to empty", []ConfigOp{{Name: cfgCleanupPolicy, Op: opSubtract, Value: sp("delete")}}, nil, true},
		{"append to non-list", []ConfigOp{{Name: cfgRetentionMs, Op: opAppend, Value: sp("1")}}, nil, true},
		{"set without value", []ConfigOp{{Name: cfgRetentionMs, Op: opSet}}, nil, true},
		{"bad value", []ConfigOp{{Name: cfgRetentionMs, Op: opSet, Value: sp("x")}}, nil, true},
		{"unknown name", []ConfigOp{{Name: "x", Op: opDelete}}, nil, true},
		{"unknown op", []ConfigOp{{Name: cfgRetentionMs, Op: 9, Value: sp("1")}}, nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := applyConfigOps(&cfg, base, tt.ops)
			if tt.err {
				if !errors.Is(err, kerr.InvalidConfig) {
					t.Fatalf("got %v, want INVALID_CONFIG", err)
				}
				return
			}
			if err != nil || !maps.Equal(got, tt.want) {
				t.Fatalf("got %v, %v; want %v", got, err, tt.want)
			}
			if base[cfgRetentionMs] != "1000" || len(base) != 2 {
				t.Fatal("input map modified")
			}
		})
	}
}

func TestEffectiveAndDescribe(t *testing.T) {
	cfg := Config{RetentionMs: 5000}.withDefaults()
	set := map[string]string{cfgRetentionBytes: "100", cfgTimestampType: "LogAppendTime", cfgSegmentBytes: "2097152", cfgMaxMessageBytes: "77"}
	tc := effectiveTopicConfig(&cfg, set)
	want := topicConfig{retentionMs: 5000, retentionBytes: 100, segmentBytes: 2097152, maxMessageBytes: 77, logAppendTime: true,
		compression: codecProducer, compressionLevel: codecDefaultLevel, timestampBefore: math.MaxInt64, timestampAfter: math.MaxInt64, minInsync: 1,
		delete: true, deleteRetentionMs: 86400000, maxCompactionLagMs: math.MaxInt64, minCleanableRatio: 0.5, segmentMs: 604800000}
	if tc != want {
		t.Fatalf("effective %+v, want %+v", tc, want)
	}
	entries := describeTopicConfigs(&cfg, set)
	if len(entries) != len(topicConfigDefs) {
		t.Fatalf("%d entries", len(entries))
	}
	for i, e := range entries {
		if i > 0 && strings.Compare(entries[i-1].Name, e.Name) >= 0 {
			t.Fatal("not sorted")
		}
		if e.Value == nil {
			t.Fatalf("%s has no value", e.Name)
		}
		switch e.Name {
		case cfgRetentionBytes:
			if *e.Value != "100" || e.Source != sourceDynamicTopic || e.Type != typeLong {
				t.Fatalf("%+v", e)
			}
		case cfgRetentionMs:
			if *e.Value != "5000" || e.Source != sourceStaticBroker {
				t.Fatalf("broker-set default: %+v", e)
			}
		case cfgCleanupPolicy:
			if *e.Value != "delete" || e.Source != sourceDefault || e.Type != typeList {
				t.Fatalf("%+v", e)
			}
		}
	}
	if len(describeBrokerConfigs(&cfg)) == 0 {
		t.Fatal("no broker configs")
	}
}

// TestConfigErrorsNameTheConfig: every refusal names the config it refuses.
func TestConfigErrorsNameTheConfig(t *testing.T) {
	for _, tt := range []struct{ name, value string }{
		{cfgCompressionType, "brotli"},
		{"remote.storage.enable", "true"},
		{"unclean.leader.election.enable", "true"},
		{"message.format.version", "3.0"},
		{"segment.ms", "x"},
		{cfgCleanupPolicy, "compact,shred"},
		{"no.such.config", "1"},
	} {
		_, err := normalizeConfig(tt.name, tt.value)
		if err == nil || !strings.Contains(err.Error(), tt.name) {
			t.Errorf("%s=%s: %v does not name it", tt.name, tt.value, err)
		}
	}
	_, err := normalizeConfig("remote.storage.enable", "true")
	if !strings.Contains(err.Error(), "tiered storage is not supported") {
		t.Errorf("remote.storage.enable=true: %v", err)
	}
}

func TestCheckTopicConfigs(t *testing.T) {
	tests := []struct {
		set map[string]string
		rf  int
		ok  bool
	}{
		{map[string]string{}, 1, true},
		{map[string]string{cfgMinInsyncReplicas: "1"}, 1, true},
		{map[string]string{cfgMinInsyncReplicas: "2"}, 1, false},
		{map[string]string{cfgMinInsyncReplicas: "2"}, 3, true},
		{map[string]string{cfgMinInsyncReplicas: "3"}, 3, true},
		{map[string]string{cfgMinInsyncReplicas: "4"}, 3, false},
		{map[string]string{cfgMinCompactionLag: "10", cfgMaxCompactionLag: "10"}, 1, true},
		{map[string]string{cfgMinCompactionLag: "11", cfgMaxCompactionLag: "10"}, 1, false},
	}
	for _, tt := range tests {
		err := checkTopicConfigs(tt.set, tt.rf)
		if tt.ok != (err == nil) || (err != nil && !errors.Is(err, kerr.InvalidConfig)) {
			t.Errorf("%v rf %d: %v", tt.set, tt.rf, err)
		}
	}
}

func TestEffectiveTopicConfigNew(t *testing.T) {
	cfg := Config{}.withDefaults()
	tc := effectiveTopicConfig(&cfg, map[string]string{})
	if tc.compression != codecProducer || tc.compressionLevel != codecDefaultLevel || tc.timestampBefore != math.MaxInt64 || tc.timestampAfter != math.MaxInt64 || tc.minInsync != 1 {
		t.Fatalf("defaults: %+v", tc)
	}
	tc = effectiveTopicConfig(&cfg, map[string]string{cfgCompressionType: "zstd", cfgZstdLevel: "7", cfgGzipLevel: "2", cfgTimestampDifference: "100", cfgTimestampAfter: "5", cfgMinInsyncReplicas: "2"})
	if tc.compression != codecZstd || tc.compressionLevel != 7 || tc.timestampBefore != 100 || tc.timestampAfter != 5 || tc.minInsync != 2 {
		t.Fatalf("set: %+v", tc)
	}
	tc = effectiveTopicConfig(&cfg, map[string]string{cfgCompressionType: "snappy", cfgZstdLevel: "7"})
	if tc.compression != codecSnappy || tc.compressionLevel != codecDefaultLevel {
		t.Fatalf("snappy has no level: %+v", tc)
	}
}

// TestDescribeTopicConfigsAll: every known config is described, with
// DEFAULT_CONFIG unless set on the topic.
func TestDescribeTopicConfigsAll(t *testing.T) {
	cfg := Config{}.withDefaults()
	got := describeTopicConfigs(&cfg, map[string]string{cfgCompressionType: "lz4"})
	if len(got) != len(topicConfigDefs) {
		t.Fatalf("%d entries for %d configs", len(got), len(topicConfigDefs))
	}
	for _, e := range got {
		if e.Value == nil || e.Doc == "" {
			t.Errorf("%s: value %v, doc %q", e.Name, e.Value, e.Doc)
			continue
		}
		want := sourceDefault
		if e.Name == cfgCompressionType {
			want = sourceDynamicTopic
		}
		if e.Source != want {
			t.Errorf("%s: source %d, want %d", e.Name, e.Source, want)
		}
		def, _ := findConfigDef(e.Name)
		if v, _ := def.defaultValue(&cfg); e.Source == sourceDefault {
			if _, err := def.normalize(v); err != nil {
				t.Errorf("%s: default %q does not validate: %v", e.Name, v, err)
			}
		}
	}
}
