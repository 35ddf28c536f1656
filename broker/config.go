package broker

import (
	"fmt"
	"maps"
	"math"
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

// compactionSupported switches cleanup.policy=compact on: until the log
// cleaner exists it is refused with a clear message, and the compaction
// configs (delete.retention.ms, min/max.compaction.lag.ms,
// min.cleanable.dirty.ratio) are stored and described but not acted on.
const compactionSupported = false

// Config names.
const (
	cfgCleanupPolicy       = "cleanup.policy"
	cfgCompressionType     = "compression.type"
	cfgGzipLevel           = "compression.gzip.level"
	cfgLz4Level            = "compression.lz4.level"
	cfgZstdLevel           = "compression.zstd.level"
	cfgMaxMessageBytes     = "max.message.bytes"
	cfgMinInsyncReplicas   = "min.insync.replicas"
	cfgTimestampType       = "message.timestamp.type"
	cfgTimestampBefore     = "message.timestamp.before.max.ms"
	cfgTimestampAfter      = "message.timestamp.after.max.ms"
	cfgTimestampDifference = "message.timestamp.difference.max.ms"
	cfgRetentionBytes      = "retention.bytes"
	cfgRetentionMs         = "retention.ms"
	cfgSegmentBytes        = "segment.bytes"
	cfgMinCompactionLag    = "min.compaction.lag.ms"
	cfgMaxCompactionLag    = "max.compaction.lag.ms"
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
	typeDouble  int8 = 6
	typeList    int8 = 7
)

// Incremental alter ops.
const (
	opSet      int8 = 0
	opDelete   int8 = 1
	opAppend   int8 = 2
	opSubtract int8 = 3
)

// topicConfig is a topic's effective configuration: what the broker acts
// on. Configs Chronik stores without acting on have no field here.
type topicConfig struct {
	retentionMs     int64 // < 0: keep forever
	retentionBytes  int64 // < 0: unbounded
	segmentBytes    int32
	maxMessageBytes int32
	logAppendTime   bool
	// compression is the codec batches are stored with: codecProducer
	// keeps each batch as sent, any other recompresses a batch whose codec
	// differs (recompress.go) at compressionLevel (codecDefaultLevel: the
	// codec's own default).
	compression      int8
	compressionLevel int
	// timestampBefore/After bound a CreateTime record's timestamp to
	// [now-before, now+after] (math.MaxInt64: unbounded).
	timestampBefore int64
	timestampAfter  int64
	// minInsync is min.insync.replicas: acks=all produce needs that many
	// live replicas.
	minInsync int
	// compacted is cleanup.policy including compact: produce refuses
	// records without a key.
	compacted bool
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

// Docs of configs Chronik accepts, stores and describes but does not act on.
const (
	docNoCompaction = " Stored and described; Chronik does not act on it until log compaction exists."
	docWALSegments  = " Stored and described; Chronik's WAL does not act on it."
	docNoTiered     = " Stored and described; Chronik has no tiered storage, so it has no effect."
	docNoThrottle   = " Stored and described; Chronik has no replication throttling, so it has no effect."
)

// topicConfigDefs is every topic config Chronik knows: Kafka 4.0's
// TopicConfig list plus message.timestamp.difference.max.ms (deprecated
// in 3.6, removed in 4.0; still sent by 3.x tooling). A name not here is
// refused (removedTopicConfigs explains the ones Kafka 4.0 removed).
var topicConfigDefs = []configDef{
	{
		name: cfgCleanupPolicy, typ: typeList,
		doc:          `"delete" removes old segments by retention.ms and retention.bytes. "compact" is not supported yet.`,
		normalize:    normalizeCleanupPolicy,
		defaultValue: func(*Config) (string, bool) { return "delete", true },
	},
	{
		name: cfgCompressionType, typ: typeString,
		doc: `The codec batches are stored with: "producer" keeps each batch as sent; ` +
			`"uncompressed", "gzip", "snappy", "lz4" or "zstd" recompresses a batch sent with another codec on produce, as Kafka does.`,
		normalize: func(v string) (string, error) {
			v = strings.TrimSpace(v)
			if _, ok := codecByName[v]; !ok {
				return "", fmt.Errorf("invalid compression.type %q, must be one of producer, uncompressed, gzip, snappy, lz4, zstd: %w", v, kerr.InvalidConfig)
			}
			return v, nil
		},
		defaultValue: constDefault("producer"),
	},
	{
		name: cfgGzipLevel, typ: typeInt,
		doc:          "The gzip level batches are recompressed with when compression.type is gzip: 1 to 9, or -1 for the default (6).",
		normalize:    intLevel(cfgGzipLevel, 1, 9, -1),
		defaultValue: constDefault("-1"),
	},
	{
		name: cfgLz4Level, typ: typeInt,
		doc:          "The lz4 level batches are recompressed with when compression.type is lz4: 1 to 17.",
		normalize:    intLevel(cfgLz4Level, 1, 17, 1),
		defaultValue: constDefault("9"),
	},
	{
		name: cfgZstdLevel, typ: typeInt,
		doc:          "The zstd level batches are recompressed with when compression.type is zstd: -131072 to 22.",
		normalize:    intLevel(cfgZstdLevel, -131072, 22, -131072),
		defaultValue: constDefault("3"),
	},
	{
		name: "delete.retention.ms", typ: typeLong,
		doc:          "How long tombstones are kept on compacted topics." + docNoCompaction,
		normalize:    intAtLeast("delete.retention.ms", 64, 0),
		defaultValue: constDefault("86400000"),
	},
	{
		name: "file.delete.delay.ms", typ: typeLong,
		doc:          "How long a deleted segment file waits before removal. Chronik removes segments at once.",
		normalize:    intAtLeast("file.delete.delay.ms", 64, 0),
		defaultValue: constDefault("60000"),
	},
	{
		name: "flush.messages", typ: typeLong,
		doc:          "Kafka's fsync interval in messages. Stored and described; Chronik syncs by the broker's --fsync policy (by default before every acknowledgement).",
		normalize:    intAtLeast("flush.messages", 64, 1),
		defaultValue: constDefault(maxLong),
	},
	{
		name: "flush.ms", typ: typeLong,
		doc:          "Kafka's fsync interval in milliseconds. Stored and described; Chronik syncs by the broker's --fsync policy (by default before every acknowledgement).",
		normalize:    intAtLeast("flush.ms", 64, 0),
		defaultValue: constDefault(maxLong),
	},
	{
		name: "follower.replication.throttled.replicas", typ: typeList,
		doc:          `Replicas throttled on the follower side ("*" or partition:broker pairs).` + docNoThrottle,
		normalize:    throttledReplicas("follower.replication.throttled.replicas"),
		defaultValue: constDefault(""),
	},
	{
		name: "index.interval.bytes", typ: typeInt,
		doc:          "Bytes between offset index entries." + docWALSegments,
		normalize:    intAtLeast("index.interval.bytes", 32, 0),
		defaultValue: constDefault("4096"),
	},
	{
		name: "leader.replication.throttled.replicas", typ: typeList,
		doc:          `Replicas throttled on the leader side ("*" or partition:broker pairs).` + docNoThrottle,
		normalize:    throttledReplicas("leader.replication.throttled.replicas"),
		defaultValue: constDefault(""),
	},
	{
		name: "local.retention.bytes", typ: typeLong,
		doc:          "Local retention of a tiered topic in bytes (-2: retention.bytes)." + docNoTiered,
		normalize:    intAtLeast("local.retention.bytes", 64, -2),
		defaultValue: constDefault("-2"),
	},
	{
		name: "local.retention.ms", typ: typeLong,
		doc:          "Local retention of a tiered topic in milliseconds (-2: retention.ms)." + docNoTiered,
		normalize:    intAtLeast("local.retention.ms", 64, -2),
		defaultValue: constDefault("-2"),
	},
	{
		name: cfgMaxCompactionLag, typ: typeLong,
		doc:          "The longest a record may stay uncompacted." + docNoCompaction,
		normalize:    intAtLeast(cfgMaxCompactionLag, 64, 1),
		defaultValue: constDefault(maxLong),
	},
	{
		name: cfgMaxMessageBytes, typ: typeInt,
		doc:       "The largest record batch accepted, in bytes (after recompression, when compression.type recompresses).",
		normalize: intAtLeast(cfgMaxMessageBytes, 32, 0),
		defaultValue: func(c *Config) (string, bool) {
			return strconv.Itoa(int(c.MaxMessageBytes)), c.MaxMessageBytes == defaultMaxMessageBytes
		},
	},
	{
		name: cfgTimestampAfter, typ: typeLong,
		doc: "With CreateTime, a batch holding a record more than this many milliseconds ahead of the broker's clock is refused (INVALID_TIMESTAMP). " +
			"Kafka 3.6 to 3.9's default (Kafka 4.1 lowered it to one hour).",
		normalize:    intAtLeast(cfgTimestampAfter, 64, 0),
		defaultValue: constDefault(maxLong),
	},
	{
		name: cfgTimestampBefore, typ: typeLong,
		doc:          "With CreateTime, a batch holding a record more than this many milliseconds behind the broker's clock is refused (INVALID_TIMESTAMP).",
		normalize:    intAtLeast(cfgTimestampBefore, 64, 0),
		defaultValue: constDefault(maxLong),
	},
	{
		name: cfgTimestampDifference, typ: typeLong,
		doc: "Deprecated (Kafka 3.6; removed in 4.0): the bound for both message.timestamp.before.max.ms and " +
			"message.timestamp.after.max.ms where those are not set.",
		normalize:    intAtLeast(cfgTimestampDifference, 64, 0),
		defaultValue: constDefault(maxLong),
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
		defaultValue: constDefault("CreateTime"),
	},
	{
		name: "min.cleanable.dirty.ratio", typ: typeDouble,
		doc:          "The share of a compacted log that must be uncleaned before it is cleaned." + docNoCompaction,
		normalize:    doubleBetween("min.cleanable.dirty.ratio", 0, 1),
		defaultValue: constDefault("0.5"),
	},
	{
		name: cfgMinCompactionLag, typ: typeLong,
		doc:          "The least time a record stays uncompacted." + docNoCompaction,
		normalize:    intAtLeast(cfgMinCompactionLag, 64, 0),
		defaultValue: constDefault("0"),
	},
	{
		name: cfgMinInsyncReplicas, typ: typeInt,
		doc: "acks=all produce needs at least this many of the partition's replicas live (NOT_ENOUGH_REPLICAS otherwise); " +
			"it may not exceed the replication factor (standalone: 1).",
		normalize:    intAtLeast(cfgMinInsyncReplicas, 32, 1),
		defaultValue: constDefault("1"),
	},
	{
		name: "preallocate", typ: typeBoolean,
		doc:          "Preallocate segment files." + docWALSegments,
		normalize:    boolValue("preallocate", true),
		defaultValue: constDefault("false"),
	},
	{
		name: "remote.log.copy.disable", typ: typeBoolean,
		doc:          "Stop copying segments to tiered storage." + docNoTiered,
		normalize:    boolValue("remote.log.copy.disable", true),
		defaultValue: constDefault("false"),
	},
	{
		name: "remote.log.delete.on.disable", typ: typeBoolean,
		doc:          "Delete tiered data when tiered storage is disabled." + docNoTiered,
		normalize:    boolValue("remote.log.delete.on.disable", true),
		defaultValue: constDefault("false"),
	},
	{
		name: "remote.storage.enable", typ: typeBoolean,
		doc:          "Tiered storage: not supported, only false is accepted.",
		normalize:    boolValue("remote.storage.enable", false),
		defaultValue: constDefault("false"),
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
	{
		name: "segment.index.bytes", typ: typeInt,
		doc:          "Size of a segment's offset index." + docWALSegments,
		normalize:    intAtLeast("segment.index.bytes", 32, 4),
		defaultValue: constDefault("10485760"),
	},
	{
		name: "segment.jitter.ms", typ: typeLong,
		doc:          "Random jitter subtracted from segment.ms." + docWALSegments,
		normalize:    intAtLeast("segment.jitter.ms", 64, 0),
		defaultValue: constDefault("0"),
	},
	{
		name: "segment.ms", typ: typeLong,
		doc:          "Roll a segment after this long even if not full. Stored and described; Chronik rolls WAL segments by size only (time-based rolling comes with compaction).",
		normalize:    intAtLeast("segment.ms", 64, 1),
		defaultValue: constDefault("604800000"),
	},
	{
		name: "unclean.leader.election.enable", typ: typeBoolean,
		doc:          "Only false: a raft group never elects a leader that lacks committed records.",
		normalize:    boolValue("unclean.leader.election.enable", false),
		defaultValue: constDefault("false"),
	},
}

// removedTopicConfigs are topic configs of older Kafka versions that
// Kafka 4.0 removed, with why Chronik refuses them too.
var removedTopicConfigs = map[string]string{
	"message.format.version":        "removed in Kafka 4.0; Chronik stores only record batch format v2 (magic 2)",
	"message.downconversion.enable": "removed in Kafka 4.0; Chronik never down-converts, fetch returns record batch format v2 (magic 2)",
}

// maxLong is Long.MAX_VALUE, Kafka's "never" for several configs.
var maxLong = strconv.FormatInt(math.MaxInt64, 10)

func constDefault(v string) func(*Config) (string, bool) {
	return func(*Config) (string, bool) { return v, true }
}

func normalizeCleanupPolicy(v string) (string, error) {
	var out []string
	for _, p := range strings.Split(v, ",") {
		p = strings.TrimSpace(p)
		switch p {
		case "delete":
		case "compact":
			if !compactionSupported {
				return "", fmt.Errorf("cleanup.policy=compact is not supported yet (no log compaction): %w", kerr.InvalidConfig)
			}
		default:
			return "", fmt.Errorf("invalid cleanup.policy %q, must be delete: %w", p, kerr.InvalidConfig)
		}
		if !slices.Contains(out, p) {
			out = append(out, p)
		}
	}
	return strings.Join(out, ","), nil
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

// intLevel accepts lo..hi, and also the one value special (a codec's
// "default" level, when it lies outside lo..hi).
func intLevel(name string, lo, hi, special int) func(string) (string, error) {
	return func(v string) (string, error) {
		n, err := strconv.Atoi(strings.TrimSpace(v))
		if err != nil || n > math.MaxInt32 || n < math.MinInt32 {
			return "", fmt.Errorf("invalid value %q for %s: %w", v, name, kerr.InvalidConfig)
		}
		if (n < lo || n > hi) && n != special {
			return "", fmt.Errorf("invalid value %d for %s, must be %d to %d: %w", n, name, lo, hi, kerr.InvalidConfig)
		}
		return strconv.Itoa(n), nil
	}
}

func doubleBetween(name string, lo, hi float64) func(string) (string, error) {
	return func(v string) (string, error) {
		f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
		if err != nil || math.IsNaN(f) {
			return "", fmt.Errorf("invalid value %q for %s: %w", v, name, kerr.InvalidConfig)
		}
		if f < lo || f > hi {
			return "", fmt.Errorf("invalid value %v for %s, must be between %v and %v: %w", f, name, lo, hi, kerr.InvalidConfig)
		}
		return strconv.FormatFloat(f, 'g', -1, 64), nil
	}
}

// boolValue parses a boolean as Kafka does (case-insensitive); with
// trueOK false, true is refused: Chronik cannot do what it asks.
func boolValue(name string, trueOK bool) func(string) (string, error) {
	return func(v string) (string, error) {
		switch strings.ToLower(strings.TrimSpace(v)) {
		case "false":
			return "false", nil
		case "true":
			if trueOK {
				return "true", nil
			}
			why := map[string]string{
				"remote.storage.enable":          "tiered storage is not supported",
				"unclean.leader.election.enable": "a raft group never elects a leader that lacks committed records",
			}[name]
			return "", fmt.Errorf("%s=true is not supported: %s: %w", name, why, kerr.InvalidConfig)
		}
		return "", fmt.Errorf("invalid value %q for %s, must be true or false: %w", v, name, kerr.InvalidConfig)
	}
}

// throttledReplicas validates Kafka's ThrottledReplicaListValidator
// format: empty, "*", or partition:broker pairs.
func throttledReplicas(name string) func(string) (string, error) {
	return func(v string) (string, error) {
		items := splitList(v)
		if len(items) == 1 && items[0] == "*" {
			return "*", nil
		}
		for _, it := range items {
			p, b, ok := strings.Cut(it, ":")
			if _, err := strconv.ParseUint(p, 10, 31); err != nil || !ok {
				return "", fmt.Errorf("invalid %s entry %q, must be \"*\" or partition:broker pairs: %w", name, it, kerr.InvalidConfig)
			}
			if _, err := strconv.ParseUint(b, 10, 31); err != nil {
				return "", fmt.Errorf("invalid %s entry %q, must be \"*\" or partition:broker pairs: %w", name, it, kerr.InvalidConfig)
			}
		}
		return strings.Join(items, ","), nil
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

// unknownConfig refuses a config name Chronik does not know, saying why
// where Kafka 4.0 removed it.
func unknownConfig(name string) error {
	if why, ok := removedTopicConfigs[name]; ok {
		return fmt.Errorf("topic config %s is not supported: %s: %w", name, why, kerr.InvalidConfig)
	}
	return fmt.Errorf("unknown topic config %q: %w", name, kerr.InvalidConfig)
}

func normalizeConfig(name, value string) (string, error) {
	def, ok := findConfigDef(name)
	if !ok {
		return "", unknownConfig(name)
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
				return nil, unknownConfig(name)
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
			return nil, unknownConfig(op.Name)
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
	tc.compression = codecProducer
	if v, ok := set[cfgCompressionType]; ok {
		tc.compression = codecByName[v]
	}
	tc.compressionLevel = compressionLevel(tc.compression, set)
	// Kafka 3.6+ (LogConfig): before/after where set, else the
	// deprecated difference, else unbounded.
	diff := configInt(set, cfgTimestampDifference, math.MaxInt64)
	tc.timestampBefore = configInt(set, cfgTimestampBefore, diff)
	tc.timestampAfter = configInt(set, cfgTimestampAfter, diff)
	tc.minInsync = int(configInt(set, cfgMinInsyncReplicas, 1))
	tc.compacted = slices.Contains(strings.Split(set[cfgCleanupPolicy], ","), "compact")
	return tc
}

// configInt is a normalized integer config, or def when not set.
func configInt(set map[string]string, name string, def int64) int64 {
	if v, ok := set[name]; ok {
		if n, err := strconv.ParseInt(v, 10, 64); err == nil {
			return n
		}
	}
	return def
}

// compressionLevel is the level of the topic's codec from
// compression.<codec>.level, codecDefaultLevel where not set.
func compressionLevel(codec int8, set map[string]string) int {
	name := map[int8]string{codecGzip: cfgGzipLevel, codecLz4: cfgLz4Level, codecZstd: cfgZstdLevel}[codec]
	if name == "" {
		return codecDefaultLevel
	}
	return int(configInt(set, name, codecDefaultLevel))
}

// checkTopicConfigs applies the rules that relate several configs, or a
// config and the topic (Kafka's LogConfig.validateValues, and
// min.insync.replicas against the replication factor rf, which Kafka
// leaves to produce time and Chronik refuses up front). set is normalized.
func checkTopicConfigs(set map[string]string, rf int) error {
	minLag := configInt(set, cfgMinCompactionLag, 0)
	maxLag := configInt(set, cfgMaxCompactionLag, math.MaxInt64)
	if minLag > maxLag {
		return fmt.Errorf("%s (%d) is greater than %s (%d): %w", cfgMinCompactionLag, minLag, cfgMaxCompactionLag, maxLag, kerr.InvalidConfig)
	}
	if n := configInt(set, cfgMinInsyncReplicas, 1); n > int64(rf) {
		where := fmt.Sprintf("the topic's replication factor is %d", rf)
		if rf == 1 {
			where = "the topic has one replica (a standalone broker has only one)"
		}
		return fmt.Errorf("%s=%d cannot be met: %s, so every acks=all produce would fail with NOT_ENOUGH_REPLICAS: %w", cfgMinInsyncReplicas, n, where, kerr.InvalidConfig)
	}
	return nil
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
