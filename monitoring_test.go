package main

import (
	"context"
	"encoding/json"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.yaml.in/yaml/v3"

	"github.com/chronik-stream/chronik/broker"
	"github.com/chronik-stream/chronik/kafka"
)

// The packaged Grafana dashboard and Prometheus alert rules.
const (
	dashboardFile = "packaging/grafana/chronik.json"
	alertsFile    = "packaging/prometheus/chronik-alerts.yml"
)

// prometheusMade are series Prometheus itself adds to every scrape target,
// which the broker does not export.
var prometheusMade = []string{"up"}

// dashboardQueries returns every PromQL expression of the dashboard: the
// panels' targets (expr) and the template variables' queries.
func dashboardQueries(t *testing.T) []string {
	t.Helper()
	data, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := json.Unmarshal(data, &doc); err != nil {
		t.Fatalf("%s: %v", dashboardFile, err)
	}
	var out []string
	var walk func(v any, key string)
	walk = func(v any, key string) {
		switch v := v.(type) {
		case map[string]any:
			for k, e := range v {
				walk(e, k)
			}
		case []any:
			for _, e := range v {
				walk(e, key)
			}
		case string:
			// Panel targets' expr; a query variable's query (its
			// definition repeats it).
			if key == "expr" || (key == "query" && strings.Contains(v, "(")) {
				out = append(out, v)
			}
		}
	}
	walk(doc, "")
	return out
}

// alertExprs returns the expression of every alert rule, by alert name.
func alertExprs(t *testing.T) map[string]string {
	t.Helper()
	data, err := os.ReadFile(alertsFile)
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Groups []struct {
			Rules []struct {
				Alert, Expr string
			}
		}
	}
	if err := yaml.Unmarshal(data, &doc); err != nil {
		t.Fatalf("%s: %v", alertsFile, err)
	}
	out := map[string]string{}
	for _, g := range doc.Groups {
		for _, r := range g.Rules {
			if r.Alert == "" || r.Expr == "" {
				t.Errorf("%s: a rule without alert name or expression: %+v", alertsFile, r)
			}
			out[r.Alert] = r.Expr
		}
	}
	return out
}

var (
	promStrings   = regexp.MustCompile(`"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|` + "`[^`]*`")
	promMatchers  = regexp.MustCompile(`\{[^}]*\}`)
	promRanges    = regexp.MustCompile(`\[[^\]]*\]`)
	promGrafana   = regexp.MustCompile(`\$\{?\w+\}?`)
	promGrouping  = regexp.MustCompile(`\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)`)
	promLabelArg  = regexp.MustCompile(`\blabel_values\s*\(([^,()]*),\s*\w+\s*\)`)
	promToken     = regexp.MustCompile(`[0-9][0-9a-zA-Z_.]*|[a-zA-Z_:][a-zA-Z0-9_:]*`)
	promOperators = map[string]bool{"and": true, "or": true, "unless": true, "bool": true, "offset": true,
		"atan2": true, "by": true, "without": true, "on": true, "ignoring": true, "group_left": true, "group_right": true,
		"inf": true, "nan": true}
)

// metricNames extracts the metric names a PromQL expression (or a Grafana
// label_values query) selects: every identifier that is not a function
// (followed by a parenthesis), an operator or keyword, a number or
// duration, a label (inside {...} or a grouping clause, or label_values'
// second argument) or a Grafana variable.
func metricNames(expr string) []string {
	s := promStrings.ReplaceAllString(expr, `""`)
	s = promMatchers.ReplaceAllString(s, " ")
	s = promRanges.ReplaceAllString(s, " ")
	s = promGrafana.ReplaceAllString(s, " ")
	s = promGrouping.ReplaceAllString(s, " ")
	s = promLabelArg.ReplaceAllString(s, "label_values($1)")
	var out []string
	for _, loc := range promToken.FindAllStringIndex(s, -1) {
		tok := s[loc[0]:loc[1]]
		if tok[0] >= '0' && tok[0] <= '9' || promOperators[strings.ToLower(tok)] {
			continue
		}
		if rest := strings.TrimLeft(s[loc[1]:], " \t\n"); strings.HasPrefix(rest, "(") {
			continue // a function
		}
		if !slices.Contains(out, tok) {
			out = append(out, tok)
		}
	}
	return out
}

func TestMetricNames(t *testing.T) {
	for expr, want := range map[string][]string{
		`sum by (instance) (rate(chronik_kafka_bytes_in_total{job=~"$job"}[$__rate_interval]))`: {"chronik_kafka_bytes_in_total"},
		`histogram_quantile(0.99, sum by (le) (rate(x_bucket{api="Produce"}[5m])))`:             {"x_bucket"},
		`a / b < 0.10 and predict_linear(c[6h], 24 * 3600) < 0`:                                 {"a", "b", "c"},
		`x < on () group_left () (count(y) - 1)`:                                                {"x", "y"},
		`label_values(chronik_partitions{job=~"$job"}, instance)`:                               {"chronik_partitions"},
		`up{job="chronik"} == 0 or vector(0) unless bool z offset 5m`:                           {"up", "z"},
		`m{a="}"} + 1e3`: {"m"},
	} {
		if got := metricNames(expr); !slices.Equal(got, want) {
			t.Errorf("metricNames(%q) = %q, want %q", expr, got, want)
		}
	}
}

// exportedMetrics scrapes a standalone broker's /metrics after traffic
// that makes every lazily exported series appear (a produce, a group's
// committed offset for chronik_consumer_group_lag) and returns the sample
// names (histograms' _bucket, _sum and _count included).
func exportedMetrics(t *testing.T) map[string]bool {
	t.Helper()
	adm := newAdmin()
	addr, stopAdmin, err := adm.start("127.0.0.1:0", zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stopAdmin)
	kafkaAddr, b := startBrokerWith(t, func(bc *broker.Config, kc *kafka.Config) {
		bc.AutoCreateTopics = true
		bc.OnFsync = adm.observeFsync
		kc.Metrics = adm.metrics
	})
	adm.setReady(b, true)
	cl, err := kgo.NewClient(kgo.SeedBrokers(kafkaAddr), kgo.AllowAutoTopicCreation())
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := cl.ProduceSync(ctx, &kgo.Record{Topic: "dash", Value: []byte("v")}).FirstErr(); err != nil {
		t.Fatalf("produce: %v", err)
	}
	offsets := make(kadm.Offsets)
	offsets.Add(kadm.Offset{Topic: "dash", Partition: 0, At: 0, LeaderEpoch: -1})
	if resp, err := kadm.NewClient(cl).CommitOffsets(ctx, "dash-group", offsets); err != nil || resp.Error() != nil {
		t.Fatalf("commit offsets: %v %v", err, resp.Error())
	}
	code, text := httpGet(t, "http://"+addr.String()+"/metrics")
	if code != 200 {
		t.Fatalf("/metrics = %d", code)
	}
	names := map[string]bool{}
	for _, line := range strings.Split(text, "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		names[strings.FieldsFunc(line, func(r rune) bool { return r == '{' || r == ' ' })[0]] = true
	}
	return names
}

// clusterOnlyMetrics are the names the cluster collector exports, in
// cluster mode only (a standalone broker has no raft layer to report).
func clusterOnlyMetrics(t *testing.T) map[string]bool {
	t.Helper()
	ch := make(chan *prometheus.Desc, 64)
	clusterCollector{}.Describe(ch)
	close(ch)
	fqName := regexp.MustCompile(`fqName: "([^"]+)"`)
	out := map[string]bool{}
	for d := range ch {
		m := fqName.FindStringSubmatch(d.String())
		if m == nil || !strings.HasPrefix(m[1], "chronik_cluster_") {
			t.Fatalf("cluster collector desc %s: want a chronik_cluster_ name", d)
		}
		out[m[1]] = true
	}
	if len(out) == 0 {
		t.Fatal("the cluster collector describes no metrics")
	}
	return out
}

// TestMonitoringNamesExportedMetrics: every query of the packaged Grafana
// dashboard and every expression of the packaged alert rules names only
// metrics a broker exports: found on a running standalone broker's
// /metrics, or described by the cluster collector (cluster mode only), or
// made by Prometheus itself (up). A renamed metric fails here, not on an
// operator's empty panel or silent alert.
func TestMonitoringNamesExportedMetrics(t *testing.T) {
	exported := exportedMetrics(t)
	cluster := clusterOnlyMetrics(t)
	known := func(name string) bool {
		return exported[name] || cluster[name] || slices.Contains(prometheusMade, name)
	}
	check := func(where, expr string) []string {
		names := metricNames(expr)
		if len(names) == 0 {
			t.Errorf("%s: no metric found in %q", where, expr)
		}
		for _, name := range names {
			if !known(name) {
				t.Errorf("%s: %q names %s, which the broker does not export", where, expr, name)
			}
		}
		return names
	}

	queries := dashboardQueries(t)
	if len(queries) < 30 {
		t.Fatalf("%s: %d queries found; the dashboard has more", dashboardFile, len(queries))
	}
	used := map[string]bool{}
	for _, q := range queries {
		for _, n := range check(dashboardFile, q) {
			used[n] = true
		}
	}
	// The panels the dashboard must have, by the metrics they show.
	for _, name := range []string{
		"chronik_kafka_bytes_in_total", "chronik_kafka_bytes_out_total", // throughput
		"chronik_kafka_request_duration_seconds_bucket", // produce and fetch latency
		"chronik_fsync_duration_seconds_bucket",
		"chronik_consumer_group_lag",
		"chronik_cluster_commit_duration_seconds_bucket", // raft commit latency
		"chronik_partition_leaders", "chronik_cluster_raft_groups",
		"chronik_disk_available_bytes", "chronik_log_size_bytes",
	} {
		if !used[name] {
			t.Errorf("%s shows no %s", dashboardFile, name)
		}
	}

	alerts := alertExprs(t)
	for name, expr := range alerts {
		check(alertsFile+" "+name, expr)
	}
	for alert, metric := range map[string]string{
		"ChronikUnderReplicatedPartitions": "chronik_partitions_under_replicated",
		"ChronikPartitionsOffline":         "chronik_partitions_offline",
		"ChronikPartitionsLeaderless":      "chronik_partitions_leaderless",
		"ChronikDiskNearlyFull":            "chronik_disk_available_bytes",
		"ChronikConsumerGroupLagging":      "chronik_consumer_group_lag",
		"ChronikDown":                      "up",
	} {
		if !slices.Contains(metricNames(alerts[alert]), metric) {
			t.Errorf("%s: alert %s is missing or does not use %s", alertsFile, alert, metric)
		}
	}
}
