package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/chronik-stream/chronik/broker"
	"github.com/chronik-stream/chronik/kafka"
	"github.com/chronik-stream/chronik/wal"
)

func httpGet(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(body)
}

// metricValue returns the value of the sample line starting with series.
func metricValue(t *testing.T, text, series string) float64 {
	t.Helper()
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(series) + ` (\S+)$`).FindStringSubmatch(text)
	if m == nil {
		t.Fatalf("no sample %s in /metrics:\n%s", series, text)
	}
	v, err := strconv.ParseFloat(m[1], 64)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestAdminReadyzBeforeReady(t *testing.T) {
	adm := newAdmin()
	hs := httptest.NewServer(adm.handler())
	defer hs.Close()
	if code, _ := httpGet(t, hs.URL+"/readyz"); code != http.StatusServiceUnavailable {
		t.Errorf("/readyz before recovery = %d, want 503", code)
	}
	if code, body := httpGet(t, hs.URL+"/healthz"); code != 200 || strings.TrimSpace(body) != "ok" {
		t.Errorf("/healthz = %d %q, want 200 ok", code, body)
	}
}

func TestAdminMetricsWithBroker(t *testing.T) {
	adm := newAdmin()
	addr, stopAdmin, err := adm.start("127.0.0.1:0", zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	defer stopAdmin()
	base := "http://" + addr.String()
	if code, _ := httpGet(t, base+"/readyz"); code != http.StatusServiceUnavailable {
		t.Fatalf("/readyz before recovery = %d, want 503", code)
	}

	kafkaAddr, b := startBrokerWith(t, func(bc *broker.Config, kc *kafka.Config) {
		bc.AutoCreateTopics = true
		bc.OnFsync = adm.observeFsync
		bc.FsyncBatch = wal.SyncFilesystem // shared fsync rounds, counted
		bc.OnFsyncRound = adm.observeFsyncRound
		kc.Metrics = adm.metrics
	})
	adm.setReady(b, true)
	defer adm.setReady(nil, false)

	if code, _ := httpGet(t, base+"/readyz"); code != 200 {
		t.Fatalf("/readyz when ready = %d, want 200", code)
	}

	cl, err := kgo.NewClient(kgo.SeedBrokers(kafkaAddr), kgo.AllowAutoTopicCreation())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for i := 0; i < 5; i++ {
		if err := cl.ProduceSync(ctx, &kgo.Record{Topic: "metrics-test", Value: []byte("hello world")}).FirstErr(); err != nil {
			t.Fatalf("produce: %v", err)
		}
	}
	// A group that committed offset 2 of the 5 records lags by 3.
	offsets := make(kadm.Offsets)
	offsets.Add(kadm.Offset{Topic: "metrics-test", Partition: 0, At: 2, LeaderEpoch: -1})
	if resp, err := kadm.NewClient(cl).CommitOffsets(ctx, "lag-test", offsets); err != nil || resp.Error() != nil {
		t.Fatalf("commit offsets: %v %v", err, resp.Error())
	}
	cl.Close()

	code, text := httpGet(t, base+"/metrics")
	if v := metricValue(t, text, `chronik_consumer_group_lag{group="lag-test",partition="0",topic="metrics-test"}`); v != 3 {
		t.Errorf("group lag = %v, want 3", v)
	}
	if v := metricValue(t, text, `chronik_fsync_duration_seconds_count`); v < 5 {
		t.Errorf("fsyncs observed = %v, want >= 5 (one per acknowledged produce at least)", v)
	}
	if code != 200 {
		t.Fatalf("/metrics = %d", code)
	}
	if v := metricValue(t, text, `chronik_kafka_requests_total{api="Produce"}`); v < 1 {
		t.Errorf("produce requests = %v, want >= 1", v)
	}
	if v := metricValue(t, text, `chronik_kafka_request_duration_seconds_count{api="Produce"}`); v < 1 {
		t.Errorf("produce latency count = %v, want >= 1", v)
	}
	if v := metricValue(t, text, `chronik_kafka_bytes_in_total`); v <= 0 {
		t.Errorf("bytes in = %v, want > 0", v)
	}
	if v := metricValue(t, text, `chronik_kafka_bytes_out_total`); v <= 0 {
		t.Errorf("bytes out = %v, want > 0", v)
	}
	if v := metricValue(t, text, `chronik_partitions`); v < 1 {
		t.Errorf("partitions = %v, want >= 1", v)
	}
	if v := metricValue(t, text, `chronik_log_size_bytes{topic="metrics-test"}`); v <= 0 {
		t.Errorf("log size = %v, want > 0", v)
	}
	// Standalone, this node leads every partition it hosts; none lacks a
	// replica or a leader. The data directory's file system is reported.
	if v, all := metricValue(t, text, `chronik_partition_leaders`), metricValue(t, text, `chronik_partitions`); v != all {
		t.Errorf("partition leaders = %v, want every partition (%v)", v, all)
	}
	for _, name := range []string{"chronik_partitions_under_replicated", "chronik_partitions_leaderless"} {
		if v := metricValue(t, text, name); v != 0 {
			t.Errorf("%s = %v, want 0 standalone", name, v)
		}
	}
	dir := b.Config().DataDir
	total := metricValue(t, text, `chronik_disk_total_bytes{dir="`+dir+`"}`)
	avail := metricValue(t, text, `chronik_disk_available_bytes{dir="`+dir+`"}`)
	if total <= 0 || avail <= 0 || avail > total {
		t.Errorf("disk of %s: total %v, available %v; want 0 < available <= total", dir, total, avail)
	}
	// The produced partition's tail is open, held in memory and counted
	// (idle logs are released only after 30 s).
	if v := metricValue(t, text, `chronik_log_buffer_bytes`); v <= 0 {
		t.Errorf("log buffer bytes = %v, want > 0", v)
	}
	if v := metricValue(t, text, `chronik_log_buffer_rolls_total`); v != 0 {
		t.Errorf("log buffer rolls = %v, want 0 far under the budget", v)
	}
	// The acknowledged produces were made durable by shared rounds: one
	// syncfs each, counted as an fsync too.
	rounds := metricValue(t, text, `chronik_fsync_round_duration_seconds_count`)
	if rounds < 5 || metricValue(t, text, `chronik_fsync_round_partitions_sum`) < 5 {
		t.Errorf("fsync rounds = %v, want >= 5 (one per acknowledged produce at least)", rounds)
	}
	// Memory by owner: the produced partition's tail and index, and the
	// idempotent producer's state.
	for owner, positive := range map[string]bool{"log_buffers": true, "index": true, "producer_state": true, "read_cache": false} {
		v := metricValue(t, text, `chronik_memory_bytes{owner="`+owner+`"}`)
		if v < 0 || positive && v == 0 {
			t.Errorf("memory of %s = %v", owner, v)
		}
	}
	if strings.Contains(text, `owner="requests_in_flight"`) {
		t.Error("requests in flight reported before a server is serving")
	}
	adm.server.Store(kafka.New(kafka.Config{Logger: zerolog.Nop()}, b))
	_, text = httpGet(t, base+"/metrics")
	if v := metricValue(t, text, `chronik_memory_bytes{owner="requests_in_flight"}`); v != 0 {
		t.Errorf("requests in flight on an idle server = %v bytes", v)
	}
	for _, name := range []string{"go_goroutines", "process_cpu_seconds_total", "chronik_kafka_open_connections"} {
		if !strings.Contains(text, "\n"+name) {
			t.Errorf("/metrics has no %s", name)
		}
	}
	if code, _ := httpGet(t, base+"/readyz"); code != 200 {
		t.Errorf("/readyz = %d, want 200", code)
	}
	adm.setReady(nil, false)
	if code, _ := httpGet(t, base+"/readyz"); code != http.StatusServiceUnavailable {
		t.Errorf("/readyz while shutting down = %d, want 503", code)
	}
}

func TestReloadLogLevel(t *testing.T) {
	prev := zerolog.GlobalLevel()
	defer zerolog.SetGlobalLevel(prev)
	path := filepath.Join(t.TempDir(), "chronik.yaml")
	if err := os.WriteFile(path, []byte("log_level: warn\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	log := zerolog.New(&out)
	src := levelSource{configPath: path, dflt: "info"}
	if err := reloadLogLevel(src, log); err != nil {
		t.Fatal(err)
	}
	if zerolog.GlobalLevel() != zerolog.WarnLevel {
		t.Errorf("level = %v, want warn", zerolog.GlobalLevel())
	}
	if !strings.Contains(out.String(), "log level reloaded") || !strings.Contains(out.String(), `"to":"warn"`) {
		t.Errorf("no reload log line: %q", out.String())
	}
	// Its own level field, once, though it is logged whatever the level.
	if strings.Count(out.String(), `"level":`) != 1 || !strings.Contains(out.String(), `"level":"info"`) {
		t.Errorf("reload log line without exactly one level field info: %q", out.String())
	}
	if err := os.WriteFile(path, []byte("log_level: debug\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := reloadLogLevel(src, log); err != nil || zerolog.GlobalLevel() != zerolog.DebugLevel {
		t.Errorf("after edit: err %v level %v, want debug", err, zerolog.GlobalLevel())
	}
	// A flag or environment value wins over the file.
	if err := reloadLogLevel(levelSource{fixed: "error", configPath: path, dflt: "info"}, log); err != nil || zerolog.GlobalLevel() != zerolog.ErrorLevel {
		t.Errorf("fixed: err %v level %v, want error", err, zerolog.GlobalLevel())
	}
	// A bad value keeps the current level.
	if err := os.WriteFile(path, []byte("log_level: loud\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := reloadLogLevel(src, log); err == nil || zerolog.GlobalLevel() != zerolog.ErrorLevel {
		t.Errorf("bad value: err %v level %v, want an error and level kept", err, zerolog.GlobalLevel())
	}
}

func TestSdNotifyReady(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "notify.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	t.Setenv("NOTIFY_SOCKET", sock)
	sdNotify("READY=1", zerolog.Nop())
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 256)
	n, err := conn.Read(buf)
	if err != nil {
		t.Fatal(err)
	}
	if got := string(buf[:n]); got != "READY=1" {
		t.Errorf("notify = %q, want READY=1", got)
	}
}

// syncBuffer is a strings.Builder safe for the serve goroutine's logger.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestServeSystemdLifecycle runs `chronik serve` in-process with
// NOTIFY_SOCKET set: READY=1 arrives once it serves, SIGHUP reloads the
// log level from the config file, SIGTERM sends STOPPING=1 and exits 0.
func TestServeSystemdLifecycle(t *testing.T) {
	prev := zerolog.GlobalLevel()
	defer zerolog.SetGlobalLevel(prev)
	dir := t.TempDir()
	sock := filepath.Join(dir, "notify.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	t.Setenv("NOTIFY_SOCKET", sock)
	cfg := filepath.Join(dir, "chronik.yaml")
	if err := os.WriteFile(cfg, []byte("log_level: info\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	var stdout, stderr syncBuffer
	exited := make(chan int, 1)
	go func() {
		exited <- run([]string{"chronik", "serve", "--config", cfg, "--data-dir", filepath.Join(dir, "data"),
			"--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"}, &stdout, &stderr)
	}()
	next := func(want string) {
		t.Helper()
		conn.SetReadDeadline(time.Now().Add(20 * time.Second))
		buf := make([]byte, 256)
		n, err := conn.Read(buf)
		if err != nil {
			t.Fatalf("waiting for %s: %v\nstderr: %s", want, err, stderr.String())
		}
		if got := string(buf[:n]); got != want {
			t.Fatalf("notify = %q, want %q", got, want)
		}
	}
	next("READY=1")

	if err := os.WriteFile(cfg, []byte("log_level: debug\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	syscall.Kill(os.Getpid(), syscall.SIGHUP)
	// A reload is RELOADING=1 with the monotonic clock, then READY=1 once
	// the level is applied (and logged).
	conn.SetReadDeadline(time.Now().Add(20 * time.Second))
	buf := make([]byte, 256)
	n, err := conn.Read(buf)
	if err != nil || !regexp.MustCompile(`^RELOADING=1\nMONOTONIC_USEC=[0-9]+$`).Match(buf[:n]) {
		t.Fatalf("notify after SIGHUP = %q (%v), want RELOADING=1 and MONOTONIC_USEC", buf[:n], err)
	}
	next("READY=1")
	if !strings.Contains(stderr.String(), "log level reloaded") {
		t.Fatalf("READY=1 before the reload was logged\nstderr: %s", stderr.String())
	}
	if zerolog.GlobalLevel() != zerolog.DebugLevel {
		t.Errorf("level after SIGHUP = %v, want debug", zerolog.GlobalLevel())
	}

	syscall.Kill(os.Getpid(), syscall.SIGTERM)
	next("STOPPING=1")
	select {
	case code := <-exited:
		if code != 0 {
			t.Errorf("serve exited %d\nstderr: %s", code, stderr.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("serve did not exit after SIGTERM")
	}
}

// TestAdminOfflinePartition: a partition whose log is damaged is counted by
// chronik_partitions_offline and listed by /readyz, which stays 200 (the
// broker serves the other partitions).
func TestAdminOfflinePartition(t *testing.T) {
	dir := t.TempDir()
	b, err := broker.Open(broker.Config{DataDir: dir, Logger: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	info, err := b.CreateTopic("broken", 2, -1, nil, false)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	seg := filepath.Join(dir, "data", fmt.Sprintf("%x", info.ID[:]), "1", "00000000000000000001")
	if err := os.WriteFile(seg, []byte("not a wal entry at all"), 0o640); err != nil {
		t.Fatal(err)
	}

	adm := newAdmin()
	addr, stopAdmin, err := adm.start("127.0.0.1:0", zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	defer stopAdmin()
	b, err = broker.Open(broker.Config{DataDir: dir, Logger: zerolog.Nop()})
	if err != nil {
		t.Fatalf("a damaged partition kept the broker from starting: %v", err)
	}
	defer b.Close()
	adm.setReady(b, true)
	base := "http://" + addr.String()
	code, body := httpGet(t, base+"/readyz")
	if code != 200 || !strings.HasPrefix(body, "ok\n") || !strings.Contains(body, "offline partitions: 1") ||
		!strings.Contains(body, "broken-1: corrupt at index 1 of "+seg) {
		t.Fatalf("/readyz = %d %q", code, body)
	}
	_, text := httpGet(t, base+"/metrics")
	if v := metricValue(t, text, `chronik_partitions_offline{kind="corrupt"}`); v != 1 {
		t.Errorf("offline corrupt partitions = %v, want 1", v)
	}
	if v := metricValue(t, text, `chronik_partitions_offline{kind="failed"}`); v != 0 {
		t.Errorf("offline failed partitions = %v, want 0", v)
	}
	if v := metricValue(t, text, `chronik_open_logs_limit`); v < 64 {
		t.Errorf("open logs limit = %v", v)
	}

	// With an admin token, /readyz stays open to probes but lists the
	// offline partitions (topic names, files) only to a caller with it.
	adm.auth.setToken("0123456789abcdef-readyz")
	code, body = httpGet(t, base+"/readyz")
	if code != 200 || body != "ok\n" {
		t.Errorf("/readyz without the token = %d %q, want 200 and only ok", code, body)
	}
	code, body = adminGet(t, http.DefaultClient, base+"/readyz", "Bearer 0123456789abcdef-readyz")
	if code != 200 || !strings.Contains(body, "offline partitions: 1") {
		t.Errorf("/readyz with the token = %d %q, want the offline partition listed", code, body)
	}
}
