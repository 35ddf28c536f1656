package broker

import (
	"errors"
	"maps"
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
		{cfgCleanupPolicy, "compact", "", false},
		{cfgCleanupPolicy, "delete,compact", "", false},
		{cfgCleanupPolicy, "", "", false},
		{cfgCompressionType, "producer", "producer", true},
		{cfgCompressionType, "zstd", "", false},
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
		{"append compact", []ConfigOp{{Name: cfgCleanupPolicy, Op: opAppend, Value: sp("compact")}}, nil, true},
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
	want := topicConfig{retentionMs: 5000, retentionBytes: 100, segmentBytes: 2097152, maxMessageBytes: 77, logAppendTime: true}
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
