package broker

import (
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"

	"github.com/twmb/franz-go/pkg/kerr"
)

// Topic configs: the supported set, validation, effective values and the
// DescribeConfigs view. Everything here is pure; changes are persisted by
// the caller through the metadata log.

// Built-in defaults (Chronik's, which differ from Kafka's only where noted).
const (
	defaultRetentionMs     int64 = 7 * 24 * 60 * 60 * 1000
	defaultRetentionBytes  int64 = -1
	defaultSegmentBytes    int32 = 4 << 20 // Kafka: 1 GiB; Chronik keeps WAL segments small
	defaultMaxMessageBytes int32 = 1048588
	defaultPartitions      int32 = 1

	// minTopicSegmentBytes is Kafka 4's lower bound for the topic config
	// segment.bytes (KIP-1030). The broker-wide Config.SegmentBytes is not
	// bounded, which is how tests get tiny segments.
	minTopicSegmentBytes = 1 << 20
)

// Config names.
const (
	cfgCleanupPolicy   = "cleanup.policy"
	cfgCompressionType = "compression.type"
	cfgMaxMessageBytes = "max.message.bytes"
	cfgTimestampType   = "message.timestamp.type"
	cfgRetentionBytes  = "retention.bytes"
	cfgRetentionMs     = "retention.ms"
	cfgSegmentBytes    = "segment.bytes"
)

// kmsg.ConfigSource and kmsg.ConfigType values.
const (
	sourceDynamicTopic int8 = 1
	sourceStaticBroker int8 = 4
	sourceDefault      int8 = 5

	typeBoolean int8 = 1
	typeString  int8 = 2
	typeInt     int8 = 3
	typeLong    int8 = 5
	typeList    int8 = 7
)

// Incremental alter ops.
const (
	opSet      int8 = 0
	opDelete   int8 = 1
	opAppend   int8 = 2
	opSubtract int8 = 3
)

// topicConfig is a topic's effective configuration.
type topicConfig struct {
	retentionMs     int64 // < 0: keep forever
	retentionBytes  int64 // < 0: unbounded
	segmentBytes    int32
	maxMessageBytes int32
	logAppendTime   bool
}

type configDef struct {
	name string
	typ  int8
	doc  string
	// normalize validates a value and returns its canonical form; errors
	// wrap INVALID_CONFIG.
	normalize func(string) (string, error)
	// defaultValue is the broker-wide value; builtIn reports whether it is
	// Chronik's built-in default (DEFAULT_CONFIG) or set on the broker
	// (STATIC_BROKER_CONFIG).
	defaultValue func(*Config) (value string, builtIn bool)
}

var topicConfigDefs = []configDef{
	{
		name: cfgCleanupPolicy, typ: typeList,
		doc: `"delete" removes old segments by retention.ms and retention.bytes. "compact" is not supported yet.`,
		normalize: func(v string) (string, error) {
			var out []string
			for _, p := range strings.Split(v, ",") {
				p = strings.TrimSpace(p)
				switch p {
				case "delete":
					if !slices.Contains(out, p) {
						out = append(out, p)
					}
				case "compact":
					return "", fmt.Errorf("cleanup.policy=compact is not supported: %w", kerr.InvalidConfig)
				default:
					return "", fmt.Errorf("invalid cleanup.policy %q, must be delete: %w", p, kerr.InvalidConfig)
				}
			}
			return strings.Join(out, ","), nil
		},
		defaultValue: func(*Config) (string, bool) { return "delete", true },
	},
	{
		name: cfgCompressionType, typ: typeString,
		doc: `Only "producer": batches are stored exactly as produced, never recompressed.`,
		normalize: func(v string) (string, error) {
			if v = strings.TrimSpace(v); v != "producer" {
				return "", fmt.Errorf("compression.type=%q is not supported, batches are stored as produced: %w", v, kerr.InvalidConfig)
			}
			return v, nil
		},
		defaultValue: func(*Config) (string, bool) { return "producer", true },
	},
	{
		name: cfgMaxMessageBytes, typ: typeInt,
		doc:       "The largest record batch accepted, in bytes.",
		normalize: intAtLeast(cfgMaxMessageBytes, 32, 0),
		defaultValue: func(c *Config) (string, bool) {
			return strconv.Itoa(int(c.MaxMessageBytes)), c.MaxMessageBytes == defaultMaxMessageBytes
		},
	},
	{
		name: cfgTimestampType, typ: typeString,
		doc: "CreateTime keeps the producer's timestamps; LogAppendTime stamps batches with the broker's clock.",
		normalize: func(v string) (string, error) {
			switch v = strings.TrimSpace(v); v {
			case "CreateTime", "LogAppendTime":
				return v, nil
			}
			return "", fmt.Errorf("invalid message.timestamp.type %q, must be CreateTime or LogAppendTime: %w", v, kerr.InvalidConfig)
		},
		defaultValue: func(*Config) (string, bool) { return "CreateTime", true },
	},
	{
		name: cfgRetentionBytes, typ: typeLong,
		doc:       "Drop the oldest segments while a partition is larger than this; -1: no limit.",
		normalize: intAtLeast(cfgRetentionBytes, 64, -1),
		defaultValue: func(c *Config) (string, bool) {
			return strconv.FormatInt(c.RetentionBytes, 10), c.RetentionBytes == defaultRetentionBytes
		},
	},
	{
		name: cfgRetentionMs, typ: typeLong,
		doc:       "Drop segments whose newest record is older than this many milliseconds; -1: keep forever.",
		normalize: intAtLeast(cfgRetentionMs, 64, -1),
		defaultValue: func(c *Config) (string, bool) {
			return strconv.FormatInt(c.RetentionMs, 10), c.RetentionMs == defaultRetentionMs
		},
	},
	{
		name: cfgSegmentBytes, typ: typeInt,
		doc:       "Target size of a WAL segment file. A change applies when the partition's log is next opened.",
		normalize: intAtLeast(cfgSegmentBytes, 32, minTopicSegmentBytes),
		defaultValue: func(c *Config) (string, bool) {
			return strconv.Itoa(int(c.SegmentBytes)), c.SegmentBytes == defaultSegmentBytes
		},
	},
}

func intAtLeast(name string, bits int, min int64) func(string) (string, error) {
	return func(v string) (string, error) {
		n, err := strconv.ParseInt(strings.TrimSpace(v), 10, bits)
		if err != nil {
			return "", fmt.Errorf("invalid value %q for %s: %w", v, name, kerr.InvalidConfig)
		}
		if n < min {
			return "", fmt.Errorf("invalid value %d for %s, must be at least %d: %w", n, name, min, kerr.InvalidConfig)
		}
		return strconv.FormatInt(n, 10), nil
	}
}

func findConfigDef(name string) (*configDef, bool) {
	for i := range topicConfigDefs {
		if topicConfigDefs[i].name == name {
			return &topicConfigDefs[i], true
		}
	}
	return nil, false
}

func normalizeConfig(name, value string) (string, error) {
	def, ok := findConfigDef(name)
	if !ok {
		return "", fmt.Errorf("unknown topic config %q: %w", name, kerr.InvalidConfig)
	}
	return def.normalize(value)
}

// normalizeConfigs validates a CreateTopics/AlterConfigs config map and
// returns its canonical form. A nil value is INVALID_CONFIG when nilOK is
// false (CreateTopics, as Kafka) and means "not set" otherwise (AlterConfigs).
func normalizeConfigs(in map[string]*string, nilOK bool) (map[string]string, error) {
	out := make(map[string]string, len(in))
	for _, name := range slices.Sorted(maps.Keys(in)) {
		v := in[name]
		if v == nil {
			if _, ok := findConfigDef(name); !ok {
				return nil, fmt.Errorf("unknown topic config %q: %w", name, kerr.InvalidConfig)
			}
			if !nilOK {
				return nil, fmt.Errorf("null value for topic config %q: %w", name, kerr.InvalidConfig)
			}
			continue
		}
		nv, err := normalizeConfig(name, *v)
		if err != nil {
			return nil, err
		}
		out[name] = nv
	}
	return out, nil
}

// applyConfigOps applies IncrementalAlterConfigs operations to a copy of
// cur. APPEND and SUBTRACT are only valid for list configs.
func applyConfigOps(cfg *Config, cur map[string]string, ops []ConfigOp) (map[string]string, error) {
	out := maps.Clone(cur)
	if out == nil {
		out = make(map[string]string)
	}
	for _, op := range ops {
		def, ok := findConfigDef(op.Name)
		if !ok {
			return nil, fmt.Errorf("unknown topic config %q: %w", op.Name, kerr.InvalidConfig)
		}
		switch op.Op {
		case opSet:
			if op.Value == nil {
				return nil, fmt.Errorf("SET %s without a value: %w", op.Name, kerr.InvalidConfig)
			}
			v, err := def.normalize(*op.Value)
			if err != nil {
				return nil, err
			}
			out[op.Name] = v
		case opDelete:
			delete(out, op.Name)
		case opAppend, opSubtract:
			if def.typ != typeList {
				return nil, fmt.Errorf("APPEND/SUBTRACT on non-list config %s: %w", op.Name, kerr.InvalidConfig)
			}
			if op.Value == nil {
				return nil, fmt.Errorf("APPEND/SUBTRACT %s without a value: %w", op.Name, kerr.InvalidConfig)
			}
			cv, ok := out[op.Name]
			if !ok {
				cv, _ = def.defaultValue(cfg)
			}
			items := splitList(cv)
			for _, it := range splitList(*op.Value) {
				if op.Op == opAppend {
					if !slices.Contains(items, it) {
						items = append(items, it)
					}
				} else {
					items = slices.DeleteFunc(items, func(s string) bool { return s == it })
				}
			}
			v, err := def.normalize(strings.Join(items, ","))
			if err != nil {
				return nil, err
			}
			out[op.Name] = v
		default:
			return nil, fmt.Errorf("unknown config operation %d on %s: %w", op.Op, op.Name, kerr.InvalidConfig)
		}
	}
	return out, nil
}

func splitList(v string) []string {
	var out []string
	for _, p := range strings.Split(v, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// effectiveTopicConfig resolves a topic's configs over the broker defaults.
// set must already be normalized.
func effectiveTopicConfig(cfg *Config, set map[string]string) topicConfig {
	tc := topicConfig{
		retentionMs:     cfg.RetentionMs,
		retentionBytes:  cfg.RetentionBytes,
		segmentBytes:    cfg.SegmentBytes,
		maxMessageBytes: cfg.MaxMessageBytes,
	}
	if v, ok := set[cfgRetentionMs]; ok {
		tc.retentionMs, _ = strconv.ParseInt(v, 10, 64)
	}
	if v, ok := set[cfgRetentionBytes]; ok {
		tc.retentionBytes, _ = strconv.ParseInt(v, 10, 64)
	}
	if v, ok := set[cfgSegmentBytes]; ok {
		n, _ := strconv.ParseInt(v, 10, 32)
		tc.segmentBytes = int32(n)
	}
	if v, ok := set[cfgMaxMessageBytes]; ok {
		n, _ := strconv.ParseInt(v, 10, 32)
		tc.maxMessageBytes = int32(n)
	}
	tc.logAppendTime = set[cfgTimestampType] == "LogAppendTime"
	return tc
}

// describeTopicConfigs lists every supported topic config with its
// effective value and source, sorted by name.
func describeTopicConfigs(cfg *Config, set map[string]string) []ConfigEntry {
	out := make([]ConfigEntry, 0, len(topicConfigDefs))
	for i := range topicConfigDefs {
		def := &topicConfigDefs[i]
		e := ConfigEntry{Name: def.name, Type: def.typ, Doc: def.doc}
		if v, ok := set[def.name]; ok {
			e.Value, e.Source = &v, sourceDynamicTopic
		} else {
			v, builtIn := def.defaultValue(cfg)
			e.Value, e.Source = &v, sourceStaticBroker
			if builtIn {
				e.Source = sourceDefault
			}
		}
		out = append(out, e)
	}
	slices.SortFunc(out, func(a, b ConfigEntry) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// describeBrokerConfigs is the read-only broker-level view.
func describeBrokerConfigs(cfg *Config) []ConfigEntry {
	entry := func(name string, typ int8, value string, builtIn bool, doc string) ConfigEntry {
		src := sourceStaticBroker
		if builtIn {
			src = sourceDefault
		}
		return ConfigEntry{Name: name, Value: &value, ReadOnly: true, Source: src, Type: typ, Doc: doc}
	}
	out := []ConfigEntry{
		entry("auto.create.topics.enable", typeBoolean, strconv.FormatBool(cfg.AutoCreateTopics), !cfg.AutoCreateTopics, "Create unknown topics on metadata and produce requests."),
		entry("default.replication.factor", typeInt, "1", true, "Standalone: always 1."),
		entry("log.cleanup.policy", typeList, "delete", true, "Default cleanup.policy."),
		entry("log.dirs", typeString, cfg.DataDir, false, "The data directory."),
		entry("log.message.timestamp.type", typeString, "CreateTime", true, "Default message.timestamp.type."),
		entry("log.retention.bytes", typeLong, strconv.FormatInt(cfg.RetentionBytes, 10), cfg.RetentionBytes == defaultRetentionBytes, "Default retention.bytes."),
		entry("log.retention.check.interval.ms", typeLong, strconv.FormatInt(cfg.RetentionCheckInterval.Milliseconds(), 10), cfg.RetentionCheckInterval == defaultRetentionCheckInterval, "How often retention runs."),
		entry("log.retention.ms", typeLong, strconv.FormatInt(cfg.RetentionMs, 10), cfg.RetentionMs == defaultRetentionMs, "Default retention.ms."),
		entry("log.segment.bytes", typeInt, strconv.Itoa(int(cfg.SegmentBytes)), cfg.SegmentBytes == defaultSegmentBytes, "Default segment.bytes."),
		entry("message.max.bytes", typeInt, strconv.Itoa(int(cfg.MaxMessageBytes)), cfg.MaxMessageBytes == defaultMaxMessageBytes, "Default max.message.bytes."),
		entry("node.id", typeInt, strconv.Itoa(int(cfg.NodeID)), cfg.NodeID == 0, "This node's id."),
		entry("num.partitions", typeInt, strconv.Itoa(int(cfg.DefaultPartitions)), cfg.DefaultPartitions == defaultPartitions, "Default partition count of new topics."),
	}
	return out
}
