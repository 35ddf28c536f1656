package main

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kerr"

	"github.com/chronik-stream/chronik/broker"
)

// The log cleaner on the admin listener: its metrics, and the route
// `chronik topic describe` reads a compacted topic's dirty ratios from
// (Kafka has no protocol API for them):
//
//	GET /v1/topics/NAME/compaction   the topic's policy and, when it
//	                                 compacts, each partition hosted here
//
// The route is behind the admin token like every other (admin.handler).

// TopicCompactionInfo is the answer of GET /v1/topics/NAME/compaction.
type TopicCompactionInfo struct {
	Topic string `json:"topic"`
	// TopicID is in the form `topic describe` prints (kadm's), so that
	// the CLI can tell it asked the cluster it described.
	TopicID string `json:"topic_id"`
	Compact bool   `json:"compact"`
	// Partitions are those hosted on the node answering; empty when the
	// topic does not compact.
	Partitions []PartitionCompaction `json:"partitions"`
}

// PartitionCompaction is one partition of a TopicCompactionInfo.
type PartitionCompaction struct {
	Partition    int32   `json:"partition"`
	DirtyRatio   float64 `json:"dirty_ratio"`
	CleanedUpTo  int64   `json:"cleaned_up_to"`
	LogSizeBytes int64   `json:"log_size_bytes"`
	Offline      bool    `json:"offline,omitempty"`
}

// compactionRoutes adds the compaction route to mux; b returns the broker
// once it is open (nil before: 503).
func compactionRoutes(mux *http.ServeMux, b func() *broker.Broker) {
	mux.HandleFunc("GET /v1/topics/{name}/compaction", func(w http.ResponseWriter, r *http.Request) {
		br := b()
		if br == nil {
			httpError(w, http.StatusServiceUnavailable, "the broker is not open yet")
			return
		}
		tc, err := br.TopicCompaction(r.PathValue("name"))
		var ke *kerr.Error
		switch {
		case errors.As(err, &ke) && ke == kerr.UnknownTopicOrPartition:
			httpError(w, http.StatusNotFound, err.Error())
			return
		case err != nil:
			httpBrokerError(w, err)
			return
		}
		out := TopicCompactionInfo{Topic: tc.Topic, TopicID: base64.StdEncoding.EncodeToString(tc.TopicID[:]),
			Compact: tc.Compact, Partitions: []PartitionCompaction{}}
		for _, p := range tc.Partitions {
			out.Partitions = append(out.Partitions, PartitionCompaction{Partition: p.Partition, DirtyRatio: p.DirtyRatio,
				CleanedUpTo: p.CleanedUpTo, LogSizeBytes: p.LogSize, Offline: p.Offline})
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(out)
	})
}

var (
	compactionRunsDesc = prometheus.NewDesc("chronik_compaction_runs_total",
		"Cleanings of compacted partitions this node's log cleaner completed (every replica cleans its own log).", nil, nil)
	compactionFailuresDesc = prometheus.NewDesc("chronik_compaction_failures_total",
		"Cleanings that failed (logged with the partition; tried again when the leader next finds the partition due).", nil, nil)
	compactionReadDesc = prometheus.NewDesc("chronik_compaction_read_bytes_total",
		"Bytes of record batches the log cleaner read (planning and rewriting passes).", nil, nil)
	compactionRemovedDesc = prometheus.NewDesc("chronik_compaction_removed_bytes_total",
		"Bytes the log cleaner removed from segments (size before minus size after each rewrite).", nil, nil)
	compactionDirtyDesc = prometheus.NewDesc("chronik_compaction_dirty_ratio",
		"Share of a compacted partition's sealed bytes written since its last cleaning (compared with min.cleanable.dirty.ratio); compacted partitions hosted here only.",
		[]string{"topic", "partition"}, nil)
)

// compactionCollector reads the log cleaner's counters and the compacted
// partitions' dirty ratios at scrape time. Only partitions of compacted
// topics get a series, so delete-policy partitions cost nothing.
type compactionCollector struct{ a *admin }

func (c compactionCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{compactionRunsDesc, compactionFailuresDesc, compactionReadDesc, compactionRemovedDesc, compactionDirtyDesc} {
		ch <- d
	}
}

func (c compactionCollector) Collect(ch chan<- prometheus.Metric) {
	b := c.a.broker.Load()
	if b == nil {
		return
	}
	st := b.CompactionStats()
	counter := func(d *prometheus.Desc, v int64) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v))
	}
	counter(compactionRunsDesc, st.Runs)
	counter(compactionFailuresDesc, st.Failures)
	counter(compactionReadDesc, st.BytesRead)
	counter(compactionRemovedDesc, st.BytesRemoved)
	for _, p := range st.Partitions {
		if p.Offline {
			continue // not measured; chronik_partitions_offline counts it
		}
		ch <- prometheus.MustNewConstMetric(compactionDirtyDesc, prometheus.GaugeValue, p.DirtyRatio,
			p.Topic, strconv.Itoa(int(p.Partition)))
	}
}
