package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/urfave/cli/v2"
)

// chronik topic create|list|describe|delete|alter-config: topic
// administration over the Kafka protocol (CreateTopics, Metadata,
// ListOffsets, DescribeConfigs, DeleteTopics, IncrementalAlterConfigs), so
// it works against any Kafka-compatible broker.

func topicCommand() *cli.Command {
	return commandGroup(&cli.Command{
		Name:  "topic",
		Usage: "create, list, describe, delete topics and change their configs",
		Subcommands: []*cli.Command{
			adminCommand(&cli.Command{
				Name:      "create",
				Usage:     "create a topic",
				ArgsUsage: "NAME",
				Flags: adminFlags(
					&cli.IntFlag{Name: "partitions", Value: -1, Usage: "number of partitions (-1: the broker's default)"},
					&cli.IntFlag{Name: "replication-factor", Value: -1, Usage: "replicas per partition (-1: the broker's default)"},
					repeated("config", "topic config `KEY=VALUE` (repeatable), e.g. retention.ms=86400000"),
				),
				Action: withArgs("topic NAME", 1, 1, topicCreate),
			}),
			adminCommand(&cli.Command{
				Name:   "list",
				Usage:  "list topics with their partition counts",
				Flags:  adminFlags(&cli.BoolFlag{Name: "internal", Usage: "include internal topics"}),
				Action: withArgs("no arguments", 0, 0, topicList),
			}),
			adminCommand(&cli.Command{
				Name:      "describe",
				Usage:     "show a topic's partitions (leader, replicas, offsets), cleanup policy and non-default configs",
				ArgsUsage: "NAME",
				Description: `A compacted topic also shows each partition's dirty ratio (the share of its
sealed bytes not yet cleaned) and the offset it is cleaned up to. Kafka has
no API for these: they are read from the admin HTTP listener at
--admin-url (the broker's --admin-listen; in a cluster, the node asked
answers for the partitions it hosts). When it cannot be reached, the rest
is shown and the ratio is reported as unavailable, with the reason.
A missing topic exits 1.`,
				Flags:  adminFlags(adminHTTPFlags()...),
				Action: withArgs("topic NAME", 1, 1, topicDescribe),
			}),
			adminCommand(&cli.Command{
				Name:      "delete",
				Usage:     "delete topics and all their records",
				ArgsUsage: "NAME...",
				Flags:     adminFlags(),
				Action:    withArgs("topic NAME", 1, -1, topicDelete),
			}),
			adminCommand(&cli.Command{
				Name:      "alter-config",
				Usage:     "set or remove topic configs (IncrementalAlterConfigs) and show the result",
				ArgsUsage: "NAME",
				Flags: adminFlags(
					repeated("set", "config `KEY=VALUE` to set (repeatable)"),
					repeated("delete", "config `KEY` to return to its default (repeatable)"),
				),
				Action: withArgs("topic NAME", 1, 1, topicAlterConfig),
			}),
		},
	})
}

// TopicCreated is what `topic create --format json` prints.
type TopicCreated struct {
	Name              string `json:"name"`
	TopicID           string `json:"topic_id"`
	Partitions        int32  `json:"partitions"`
	ReplicationFactor int16  `json:"replication_factor"`
}

// TopicSummary is one entry of `topic list --format json`.
type TopicSummary struct {
	Name              string `json:"name"`
	Partitions        int    `json:"partitions"`
	ReplicationFactor int    `json:"replication_factor"`
	Internal          bool   `json:"internal"`
}

// TopicDescription is what `topic describe --format json` prints. Configs
// holds only the configs set on the topic (source DYNAMIC_TOPIC_CONFIG);
// a sensitive value is null. CleanupPolicy is the effective
// cleanup.policy, set on the topic or not.
type TopicDescription struct {
	Name          string             `json:"name"`
	TopicID       string             `json:"topic_id"`
	Internal      bool               `json:"internal"`
	CleanupPolicy string             `json:"cleanup_policy"`
	Partitions    []PartitionDesc    `json:"partitions"`
	Configs       map[string]*string `json:"configs"`
	// CompactionError says why a compacted topic's dirty ratios are
	// missing (the admin listener could not be asked, or answered for
	// another topic); empty otherwise.
	CompactionError string `json:"compaction_error,omitempty"`
}

// PartitionDesc is one partition of a TopicDescription.
type PartitionDesc struct {
	Partition   int32   `json:"partition"`
	Leader      int32   `json:"leader"`
	LeaderEpoch int32   `json:"leader_epoch"`
	Replicas    []int32 `json:"replicas"`
	ISR         []int32 `json:"isr"`
	// OfflineReplicas are replicas whose log cannot serve (damaged or
	// failed; see chronik repair).
	OfflineReplicas []int32 `json:"offline_replicas"`
	LogStartOffset  int64   `json:"log_start_offset"`
	HighWatermark   int64   `json:"high_watermark"`
	// DirtyRatio and CleanedUpTo: a compacted topic's partition as the
	// admin listener at --admin-url measures it (absent when it could not
	// be asked, or the node does not host the partition).
	DirtyRatio  *float64 `json:"dirty_ratio,omitempty"`
	CleanedUpTo *int64   `json:"cleaned_up_to,omitempty"`
	Error       string   `json:"error,omitempty"`
}

// TopicDeleted is one entry of `topic delete --format json`.
type TopicDeleted struct {
	Name  string `json:"name"`
	Error string `json:"error,omitempty"`
}

// TopicConfigs is what `topic alter-config --format json` prints: the
// topic's non-default configs after the change.
type TopicConfigs struct {
	Name    string             `json:"name"`
	Configs map[string]*string `json:"configs"`
}

func topicCreate(c *cli.Context, args []string) error {
	format, err := outputFormat(c, "table", "json")
	if err != nil {
		return err
	}
	name := args[0]
	partitions, rf := c.Int("partitions"), c.Int("replication-factor")
	if partitions == 0 || partitions < -1 || partitions > 1<<20 {
		return usageErr("partitions: %d is not -1 or between 1 and 1048576", partitions)
	}
	if rf == 0 || rf < -1 || rf > 1<<15-1 {
		return usageErr("replication-factor: %d is not -1 or between 1 and 32767", rf)
	}
	pairs, err := keyValues("config", repeatedValues(c, "config"))
	if err != nil {
		return err
	}
	configs := make(map[string]*string, len(pairs))
	for _, kv := range pairs {
		configs[kv[0]] = kmsg.StringPtr(kv[1])
	}
	adm, ctx, done, err := adminClient(c)
	if err != nil {
		return err
	}
	defer done()
	resps, err := adm.CreateTopics(ctx, int32(partitions), int16(rf), configs, name)
	if err != nil {
		return brokerErr(c, ctx, "create topic "+name, err)
	}
	resp, ok := resps[name]
	if !ok {
		return failErr("create topic %s: the broker did not answer for the topic", name)
	}
	if resp.Err != nil {
		return failErr("create topic %s: %s", name, withMessage(resp.Err, resp.ErrMessage))
	}
	out := TopicCreated{Name: name, TopicID: resp.ID.String(), Partitions: resp.NumPartitions, ReplicationFactor: resp.ReplicationFactor}
	if format == "json" {
		return writeJSON(c.App.Writer, out)
	}
	_, err = fmt.Fprintf(c.App.Writer, "created topic %s: %d partitions, replication factor %d\n", out.Name, out.Partitions, out.ReplicationFactor)
	return err
}

func topicList(c *cli.Context, _ []string) error {
	format, err := outputFormat(c, "table", "json")
	if err != nil {
		return err
	}
	adm, ctx, done, err := adminClient(c)
	if err != nil {
		return err
	}
	defer done()
	topics, err := adm.ListTopicsWithInternal(ctx)
	if err != nil {
		return brokerErr(c, ctx, "list topics", err)
	}
	out := []TopicSummary{}
	for _, t := range topics.Sorted() {
		if t.IsInternal && !c.Bool("internal") {
			continue
		}
		out = append(out, TopicSummary{Name: t.Topic, Partitions: len(t.Partitions),
			ReplicationFactor: t.Partitions.NumReplicas(), Internal: t.IsInternal})
	}
	if format == "json" {
		return writeJSON(c.App.Writer, out)
	}
	tab := newTable(c.App.Writer, "NAME", "PARTITIONS", "REPLICATION")
	for _, t := range out {
		tab.row(t.Name, t.Partitions, t.ReplicationFactor)
	}
	return tab.flush()
}

// describeTopic gathers a topic's partitions, offsets and non-default
// configs. A missing topic is errTopicMissing.
func describeTopic(c *cli.Context, ctx context.Context, adm *kadm.Client, name string) (TopicDescription, error) {
	topics, err := adm.ListTopicsWithInternal(ctx, name)
	if err != nil {
		return TopicDescription{}, brokerErr(c, ctx, "describe topic "+name, err)
	}
	t, ok := topics[name]
	if !ok || errors.Is(t.Err, kerr.UnknownTopicOrPartition) {
		return TopicDescription{}, errTopicMissing(name)
	}
	if t.Err != nil {
		return TopicDescription{}, failErr("describe topic %s: %v", name, t.Err)
	}
	// An offline partition fails its shard of ListOffsets; the others
	// are still described (the missing ones get an error below).
	var shardErrs *kadm.ShardErrors
	starts, err := adm.ListStartOffsets(ctx, name)
	if err != nil && !errors.As(err, &shardErrs) {
		return TopicDescription{}, brokerErr(c, ctx, "list offsets of "+name, err)
	}
	ends, err := adm.ListEndOffsets(ctx, name)
	if err != nil && !errors.As(err, &shardErrs) {
		return TopicDescription{}, brokerErr(c, ctx, "list offsets of "+name, err)
	}
	all, err := allTopicConfigs(c, ctx, adm, name)
	if err != nil {
		return TopicDescription{}, err
	}
	d := TopicDescription{Name: name, TopicID: t.ID.String(), Internal: t.IsInternal,
		CleanupPolicy: effectiveConfig(all, "cleanup.policy", "delete"),
		Partitions:    []PartitionDesc{}, Configs: setConfigs(all)}
	for _, p := range t.Partitions.Sorted() {
		pd := PartitionDesc{Partition: p.Partition, Leader: p.Leader, LeaderEpoch: p.LeaderEpoch,
			Replicas: nonNil(p.Replicas), ISR: nonNil(p.ISR), OfflineReplicas: nonNil(p.OfflineReplicas), LogStartOffset: -1, HighWatermark: -1}
		var errs []string
		if p.Err != nil {
			errs = append(errs, p.Err.Error())
		}
		if o, ok := starts.Lookup(name, p.Partition); ok && o.Err == nil {
			pd.LogStartOffset = o.Offset
		} else if ok {
			errs = append(errs, "log start offset: "+o.Err.Error())
		} else if p.Err == nil {
			errs = append(errs, "log start offset: no answer")
		}
		if o, ok := ends.Lookup(name, p.Partition); ok && o.Err == nil {
			pd.HighWatermark = o.Offset
		} else if ok {
			errs = append(errs, "high watermark: "+o.Err.Error())
		} else if p.Err == nil {
			errs = append(errs, "high watermark: no answer")
		}
		pd.Error = strings.Join(errs, "; ")
		d.Partitions = append(d.Partitions, pd)
	}
	return d, nil
}

// topicConfigs returns the configs set on the topic itself.
func topicConfigs(c *cli.Context, ctx context.Context, adm *kadm.Client, name string) (map[string]*string, error) {
	all, err := allTopicConfigs(c, ctx, adm, name)
	if err != nil {
		return nil, err
	}
	return setConfigs(all), nil
}

// setConfigs keeps the configs set on the topic itself.
func setConfigs(all []kadm.Config) map[string]*string {
	out := map[string]*string{}
	for _, cfg := range all {
		if cfg.Source == kmsg.ConfigSourceDynamicTopicConfig {
			out[cfg.Key] = cfg.Value
		}
	}
	return out
}

// effectiveConfig is key's value as the broker applies it (set on the
// topic or a default), else dflt.
func effectiveConfig(all []kadm.Config, key, dflt string) string {
	for _, cfg := range all {
		if cfg.Key == key && cfg.Value != nil {
			return *cfg.Value
		}
	}
	return dflt
}

// allTopicConfigs returns every config the broker describes for the
// topic, defaults included.
func allTopicConfigs(c *cli.Context, ctx context.Context, adm *kadm.Client, name string) ([]kadm.Config, error) {
	rcs, err := adm.DescribeTopicConfigs(ctx, name)
	if err != nil {
		return nil, brokerErr(c, ctx, "describe configs of "+name, err)
	}
	rc, err := rcs.On(name, nil)
	if err == nil {
		err = rc.Err
	}
	if errors.Is(err, kerr.UnknownTopicOrPartition) {
		return nil, errTopicMissing(name)
	}
	if err != nil {
		return nil, failErr("describe configs of %s: %s", name, withMessage(err, rc.ErrMessage))
	}
	return rc.Configs, nil
}

// isCompacted reports whether a cleanup.policy value has compact
// ("compact", "compact,delete", "delete,compact").
func isCompacted(policy string) bool {
	for _, p := range strings.Split(policy, ",") {
		if strings.TrimSpace(p) == "compact" {
			return true
		}
	}
	return false
}

// addDirtyRatios fills in a compacted topic's dirty ratios from the admin
// listener. Failing to is not an error of describe: the reason goes to
// d.CompactionError and the rest of the description stands.
func addDirtyRatios(c *cli.Context, ctx context.Context, d *TopicDescription) {
	if !isCompacted(d.CleanupPolicy) {
		return
	}
	body, err := adminCallContext(ctx, c, http.MethodGet, "/v1/topics/"+url.PathEscape(d.Name)+"/compaction", nil, http.StatusOK)
	if err != nil {
		d.CompactionError = err.Error()
		return
	}
	var info TopicCompactionInfo
	if err := json.Unmarshal(body, &info); err != nil {
		d.CompactionError = fmt.Sprintf("bad answer from %s: %v", c.String("admin-url"), err)
		return
	}
	if info.TopicID != d.TopicID {
		// Another cluster's broker (the default --admin-url is this
		// host's), or the topic was deleted and created again.
		d.CompactionError = fmt.Sprintf("the admin listener at %s knows topic %s with id %s, not %s: set --admin-url to a broker of the cluster described",
			c.String("admin-url"), d.Name, info.TopicID, d.TopicID)
		return
	}
	byPartition := make(map[int32]PartitionCompaction, len(info.Partitions))
	for _, p := range info.Partitions {
		byPartition[p.Partition] = p
	}
	for i := range d.Partitions {
		p, ok := byPartition[d.Partitions[i].Partition]
		if !ok || p.Offline {
			continue
		}
		ratio, upTo := p.DirtyRatio, p.CleanedUpTo
		d.Partitions[i].DirtyRatio, d.Partitions[i].CleanedUpTo = &ratio, &upTo
	}
}

func topicDescribe(c *cli.Context, args []string) error {
	format, err := outputFormat(c, "table", "json")
	if err != nil {
		return err
	}
	adm, ctx, done, err := adminClient(c)
	if err != nil {
		return err
	}
	defer done()
	d, err := describeTopic(c, ctx, adm, args[0])
	if err != nil {
		return err
	}
	addDirtyRatios(c, ctx, &d)
	if format == "json" {
		return writeJSON(c.App.Writer, d)
	}
	w := c.App.Writer
	fmt.Fprintf(w, "Topic: %s\nTopic ID: %s\nPartitions: %d\n", d.Name, d.TopicID, len(d.Partitions))
	fmt.Fprintf(w, "Cleanup policy: %s\n", d.CleanupPolicy)
	compacted := isCompacted(d.CleanupPolicy)
	if compacted && d.CompactionError != "" {
		fmt.Fprintf(w, "Dirty ratio: unavailable (%s)\n", d.CompactionError)
	}
	fmt.Fprintf(w, "Configs: %s\n\n", configsLine(d.Configs))
	header := []string{"PARTITION", "LEADER", "EPOCH", "REPLICAS", "ISR", "OFFLINE", "LOG_START", "HIGH_WATERMARK"}
	if compacted {
		header = append(header, "DIRTY_RATIO", "CLEANED_UP_TO")
	}
	tab := newTable(w, append(header, "ERROR")...)
	for _, p := range d.Partitions {
		cells := []any{p.Partition, p.Leader, p.LeaderEpoch, joinInt32s(p.Replicas), joinInt32s(p.ISR), joinInt32s(p.OfflineReplicas), p.LogStartOffset, p.HighWatermark}
		if compacted {
			ratio, upTo := "-", "-"
			if p.DirtyRatio != nil {
				ratio = strconv.FormatFloat(*p.DirtyRatio, 'f', 3, 64)
			}
			if p.CleanedUpTo != nil {
				upTo = strconv.FormatInt(*p.CleanedUpTo, 10)
			}
			cells = append(cells, ratio, upTo)
		}
		tab.row(append(cells, p.Error)...)
	}
	return tab.flush()
}

// configsLine renders configs as "k=v, k=v" in key order, or "(none set)".
func configsLine(configs map[string]*string) string {
	if len(configs) == 0 {
		return "(none set)"
	}
	keys := make([]string, 0, len(configs))
	for k := range configs {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		v := "(sensitive)"
		if configs[k] != nil {
			v = *configs[k]
		}
		parts[i] = k + "=" + v
	}
	return strings.Join(parts, ", ")
}

func topicDelete(c *cli.Context, names []string) error {
	format, err := outputFormat(c, "table", "json")
	if err != nil {
		return err
	}
	adm, ctx, done, err := adminClient(c)
	if err != nil {
		return err
	}
	defer done()
	resps, err := adm.DeleteTopics(ctx, names...)
	if err != nil {
		return brokerErr(c, ctx, "delete topics", err)
	}
	out := make([]TopicDeleted, 0, len(names))
	for _, name := range names {
		r, ok := resps[name]
		d := TopicDeleted{Name: name}
		switch {
		case !ok:
			d.Error = "the broker did not answer for the topic"
		case errors.Is(r.Err, kerr.UnknownTopicOrPartition):
			d.Error = "topic does not exist"
		case r.Err != nil:
			d.Error = withMessage(r.Err, r.ErrMessage)
		}
		out = append(out, d)
	}
	return reportDeletes(c, format, "topic", out, func(d TopicDeleted) (string, string) { return d.Name, d.Error })
}

func topicAlterConfig(c *cli.Context, args []string) error {
	format, err := outputFormat(c, "table", "json")
	if err != nil {
		return err
	}
	name := args[0]
	sets, err := keyValues("set", repeatedValues(c, "set"))
	if err != nil {
		return err
	}
	deletes := repeatedValues(c, "delete")
	if len(sets) == 0 && len(deletes) == 0 {
		return usageErr("nothing to change: give --set key=value or --delete key (see --help)")
	}
	var alters []kadm.AlterConfig
	for _, kv := range sets {
		alters = append(alters, kadm.AlterConfig{Op: kadm.SetConfig, Name: kv[0], Value: kmsg.StringPtr(kv[1])})
	}
	for _, k := range deletes {
		if k == "" || strings.Contains(k, "=") {
			return usageErr("delete: %q is not a config key", k)
		}
		alters = append(alters, kadm.AlterConfig{Op: kadm.DeleteConfig, Name: k})
	}
	adm, ctx, done, err := adminClient(c)
	if err != nil {
		return err
	}
	defer done()
	resps, err := adm.AlterTopicConfigs(ctx, alters, name)
	if err != nil {
		return brokerErr(c, ctx, "alter configs of "+name, err)
	}
	r, err := resps.On(name, nil)
	if err == nil {
		err = r.Err
	}
	if errors.Is(err, kerr.UnknownTopicOrPartition) {
		return errTopicMissing(name)
	}
	if err != nil {
		return failErr("alter configs of %s: %s", name, withMessage(err, r.ErrMessage))
	}
	configs, err := topicConfigs(c, ctx, adm, name)
	if err != nil {
		return err
	}
	if format == "json" {
		return writeJSON(c.App.Writer, TopicConfigs{Name: name, Configs: configs})
	}
	_, err = fmt.Fprintf(c.App.Writer, "altered topic %s; configs now: %s\n", name, configsLine(configs))
	return err
}
