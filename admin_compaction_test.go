package main

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/chronik-stream/chronik/broker"
	"github.com/chronik-stream/chronik/kafka"
)

// TestAdminCompactionMetrics scrapes /metrics of a broker whose cleaner
// has cleaned one compacted topic and is held back on another: the
// cleaner's counters, and a dirty ratio for each compacted partition and
// for no delete-policy one.
func TestAdminCompactionMetrics(t *testing.T) {
	adm := newAdmin()
	addr, stopAdmin, err := adm.start("127.0.0.1:0", zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	defer stopAdmin()
	base := "http://" + addr.String()
	kafkaAddr, b := startBrokerWith(t, func(bc *broker.Config, kc *kafka.Config) {
		bc.CompactionCheckInterval = 20 * time.Millisecond
		kc.Metrics = adm.metrics
	})
	adm.setReady(b, true)
	defer adm.setReady(nil, false)

	cl, err := kgo.NewClient(kgo.SeedBrokers(kafkaAddr), kgo.DefaultProduceTopic("cleaned"),
		kgo.RecordPartitioner(kgo.ManualPartitioner()), kgo.ProducerBatchCompression(kgo.NoCompression()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	kc := kadm.NewClient(cl)
	create := func(name string, partitions int32, configs map[string]*string) {
		t.Helper()
		if resp, err := kc.CreateTopic(ctx, partitions, 1, configs, name); err != nil || resp.Err != nil {
			t.Fatalf("create %s: %v %v", name, err, resp.Err)
		}
	}
	// segment.ms rolls the active segment, so the records become
	// cleanable; held's min.compaction.lag.ms keeps them from the cleaner.
	create("cleaned", 2, map[string]*string{"cleanup.policy": str("compact"), "segment.ms": str("100")})
	create("held", 1, map[string]*string{"cleanup.policy": str("compact,delete"), "segment.ms": str("100"),
		"min.compaction.lag.ms": str("3600000")})
	create("plain", 4, nil)
	for _, topic := range []string{"cleaned", "held", "plain"} {
		var recs []*kgo.Record
		for i := 0; i < 100; i++ {
			recs = append(recs, &kgo.Record{Topic: topic, Key: []byte(fmt.Sprintf("k%d", i%5)), Value: []byte(strings.Repeat("v", 100))})
		}
		if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
			t.Fatalf("produce to %s: %v", topic, err)
		}
	}

	var text string
	for i := 0; ; i++ {
		_, text = httpGet(t, base+"/metrics")
		if strings.Contains(text, `chronik_compaction_dirty_ratio{partition="0",topic="held"} 1`+"\n") &&
			metricValue(t, text, "chronik_compaction_runs_total") >= 1 &&
			metricValue(t, text, `chronik_compaction_dirty_ratio{partition="0",topic="cleaned"}`) == 0 {
			break
		}
		if i > 300 {
			t.Fatalf("the cleaner did not clean cleaned-0 with held-0 dirty within 30 s:\n%s", text)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if v := metricValue(t, text, "chronik_compaction_failures_total"); v != 0 {
		t.Errorf("failures = %v, want 0", v)
	}
	if v := metricValue(t, text, "chronik_compaction_read_bytes_total"); v <= 0 {
		t.Errorf("bytes read = %v, want > 0", v)
	}
	// 100 records of 5 keys: 95 of them removed.
	if v := metricValue(t, text, "chronik_compaction_removed_bytes_total"); v < 95*100 {
		t.Errorf("bytes removed = %v, want at least the 95 overwritten values (9500)", v)
	}
	// The empty compacted partition has a series too (ratio 0); the four
	// delete-policy partitions have none.
	if v := metricValue(t, text, `chronik_compaction_dirty_ratio{partition="1",topic="cleaned"}`); v != 0 {
		t.Errorf("empty cleaned-1 ratio = %v, want 0", v)
	}
	if n := strings.Count(text, "\nchronik_compaction_dirty_ratio{"); n != 3 {
		t.Errorf("%d dirty ratio series, want 3 (the compacted partitions only):\n%s", n, text)
	}
	if strings.Contains(text, `chronik_compaction_dirty_ratio{partition="0",topic="plain"}`) {
		t.Errorf("a dirty ratio for a delete-policy partition:\n%s", text)
	}
	for _, name := range []string{"chronik_compaction_runs_total", "chronik_compaction_failures_total",
		"chronik_compaction_read_bytes_total", "chronik_compaction_removed_bytes_total"} {
		if !strings.Contains(text, "# TYPE "+name+" counter\n") {
			t.Errorf("%s is not a counter:\n%s", name, text)
		}
	}
	if !strings.Contains(text, "# TYPE chronik_compaction_dirty_ratio gauge\n") {
		t.Errorf("chronik_compaction_dirty_ratio is not a gauge")
	}
}
