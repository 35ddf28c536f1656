package main

import (
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// describeJSON runs `topic describe NAME --format json` with args and
// decodes it.
func describeJSON(t *testing.T, name string, args ...string) TopicDescription {
	t.Helper()
	var d TopicDescription
	decode(t, ok(t, "", append([]string{"topic", "describe", name, "--format", "json"}, args...)...), &d)
	return d
}

// waitDescribe polls describe (JSON) until cond holds, at most 30 s.
func waitDescribe(t *testing.T, what, name string, cond func(TopicDescription) bool, args ...string) TopicDescription {
	t.Helper()
	var d TopicDescription
	for i := 0; i < 300; i++ {
		if d = describeJSON(t, name, args...); cond(d) {
			return d
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("%s: describe %s never showed it; last: %+v", what, name, d)
	return d
}

func ratioOf(p PartitionDesc) string {
	if p.DirtyRatio == nil || p.CleanedUpTo == nil {
		return "none"
	}
	return fmt.Sprintf("%v up to %d", *p.DirtyRatio, *p.CleanedUpTo)
}

// TestTopicDescribeCompaction runs `chronik serve` in-process with a token
// on its admin listener and checks that `chronik topic describe` shows a
// compacted topic's cleanup policy and its partitions' dirty ratios (read
// from GET /v1/topics/NAME/compaction), before and after the cleaner ran,
// and still describes the topic when the admin listener cannot answer.
func TestTopicDescribeCompaction(t *testing.T) {
	dir := t.TempDir()
	addrs := freeAddrs(t, 3)
	kafkaAddr, adminAddr, closedAddr := addrs[0], addrs[1], addrs[2]
	token := writeSecret(t, dir, "token", "describe-compaction-token-0123\n")
	serveInProcess(t, []string{"chronik", "serve", "--data-dir", filepath.Join(dir, "data"),
		"--listen", kafkaAddr, "--admin-listen", adminAddr, "--admin-token-file", token,
		"--compaction-check-interval", "50ms", "--log-format", "json"}, adminAddr)
	adminURL := "http://" + adminAddr
	brokers := "--brokers=" + kafkaAddr
	admin := []string{brokers, "--admin-url", adminURL, "--admin-token-file", token}

	// Compacted, but never cleaned while min.compaction.lag.ms holds every
	// record back; segment.ms rolls the active segment, so the records
	// are sealed and all dirty: ratio 1.
	ok(t, "", "topic", "create", "cc", brokers, "--partitions", "2", "--config", "cleanup.policy=compact",
		"--config", "segment.ms=100", "--config", "min.compaction.lag.ms=3600000")
	ok(t, "", "topic", "create", "plain", brokers, "--partitions", "1")
	var lines strings.Builder
	for i := 0; i < 200; i++ {
		fmt.Fprintf(&lines, "k%d:v%d\n", i%10, i)
	}
	ok(t, lines.String(), "produce", "cc", brokers, "--key-separator", ":", "--partition", "0")
	ok(t, "k1:x\n", "produce", "plain", brokers, "--key-separator", ":")

	d := waitDescribe(t, "partition 0 sealed and dirty", "cc", func(d TopicDescription) bool {
		return len(d.Partitions) == 2 && d.Partitions[0].DirtyRatio != nil && *d.Partitions[0].DirtyRatio == 1
	}, admin...)
	if d.CleanupPolicy != "compact" || d.CompactionError != "" {
		t.Errorf("describe cc: policy %q, compaction error %q; want compact and none", d.CleanupPolicy, d.CompactionError)
	}
	if p := d.Partitions[0]; *p.CleanedUpTo != 0 || p.HighWatermark != 200 {
		t.Errorf("partition 0: %s, high watermark %d; want cleaned up to 0 (never), 200", ratioOf(p), p.HighWatermark)
	}
	if p := d.Partitions[1]; p.DirtyRatio == nil || *p.DirtyRatio != 0 || *p.CleanedUpTo != 0 {
		t.Errorf("empty partition 1: %s; want ratio 0 up to 0", ratioOf(p))
	}
	table := ok(t, "", append([]string{"topic", "describe", "cc"}, admin...)...).stdout
	for _, want := range []string{"Cleanup policy: compact\n", "DIRTY_RATIO", "CLEANED_UP_TO", "1.000", "0.000"} {
		if !strings.Contains(table, want) {
			t.Errorf("describe cc table has no %q:\n%s", want, table)
		}
	}
	if strings.Contains(table, "unavailable") {
		t.Errorf("describe cc table says unavailable:\n%s", table)
	}

	// A delete-policy topic: its policy, no ratio column, and the admin
	// listener is not asked (a closed admin-url is no error).
	plain := ok(t, "", "topic", "describe", "plain", brokers, "--admin-url", "http://"+closedAddr).stdout
	if !strings.Contains(plain, "Cleanup policy: delete\n") || strings.Contains(plain, "DIRTY_RATIO") || strings.Contains(plain, "unavailable") {
		t.Errorf("describe plain:\n%s", plain)
	}
	if pd := describeJSON(t, "plain", brokers, "--admin-url", "http://"+closedAddr); pd.CleanupPolicy != "delete" ||
		pd.CompactionError != "" || pd.Partitions[0].DirtyRatio != nil {
		t.Errorf("describe plain json: %+v", pd)
	}

	// The admin listener unreachable, or refusing without its token:
	// describe still describes, and says why the ratio is missing.
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"unreachable", []string{brokers, "--admin-url", "http://" + closedAddr}, "connection refused"},
		{"no token", []string{brokers, "--admin-url", adminURL}, "401"},
	} {
		r := ok(t, "", append([]string{"topic", "describe", "cc"}, tc.args...)...)
		if !strings.Contains(r.stdout, "Cleanup policy: compact\n") || !strings.Contains(r.stdout, "Dirty ratio: unavailable (") ||
			!strings.Contains(r.stdout, tc.want) || !strings.Contains(r.stdout, "HIGH_WATERMARK") {
			t.Errorf("%s: describe cc:\n%s", tc.name, r.stdout)
		}
		jd := describeJSON(t, "cc", tc.args...)
		if jd.CleanupPolicy != "compact" || !strings.Contains(jd.CompactionError, tc.want) || len(jd.Partitions) != 2 ||
			jd.Partitions[0].DirtyRatio != nil || jd.Partitions[0].HighWatermark != 200 {
			t.Errorf("%s: describe cc json: %+v", tc.name, jd)
		}
	}

	// The route itself: behind the token; an unknown topic is 404.
	cl := &http.Client{Timeout: 10 * time.Second}
	if code, _ := adminGet(t, cl, adminURL+"/v1/topics/cc/compaction", ""); code != http.StatusUnauthorized {
		t.Errorf("compaction route without the token = %d, want 401", code)
	}
	if code, body := adminGet(t, cl, adminURL+"/v1/topics/nope/compaction", "Bearer describe-compaction-token-0123"); code != http.StatusNotFound {
		t.Errorf("compaction route of a missing topic = %d %s, want 404", code, body)
	}

	// Lifting the lag lets the cleaner run: nothing sealed is dirty any
	// more, and partition 0 keeps the latest record of each of 10 keys.
	ok(t, "", "topic", "alter-config", "cc", brokers, "--delete", "min.compaction.lag.ms")
	d = waitDescribe(t, "partition 0 cleaned", "cc", func(d TopicDescription) bool {
		p := d.Partitions[0]
		return p.DirtyRatio != nil && *p.DirtyRatio == 0 && *p.CleanedUpTo > 0
	}, admin...)
	if p := d.Partitions[0]; *p.CleanedUpTo != 200 {
		t.Errorf("partition 0 after cleaning: %s; want up to 200 (every record sealed)", ratioOf(p))
	}
	recs := decodeLines(t, ok(t, "", "consume", "cc", brokers, "--partition", "0", "-e", "--format", "json"))
	if len(recs) != 10 {
		t.Fatalf("partition 0 after cleaning holds %d records, want 10 (one per key)", len(recs))
	}
	for _, r := range recs {
		if r.Key == nil || r.Value == nil || fmt.Sprintf("v%d", r.Offset) != *r.Value || "k"+(*r.Value)[len(*r.Value)-1:] != *r.Key || r.Offset < 190 {
			t.Errorf("after cleaning: offset %d key %s value %s; want the last 10 records", r.Offset, text(r.Key), text(r.Value))
		}
	}
}
