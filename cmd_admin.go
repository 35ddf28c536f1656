package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	stdlog "log"
	"net"
	"net/http"
	"os"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/rs/zerolog"
	"go.yaml.in/yaml/v3"
	"golang.org/x/sys/unix"

	"github.com/chronik-stream/chronik/broker"
	"github.com/chronik-stream/chronik/cluster"
	"github.com/chronik-stream/chronik/kafka"
)

// admin is the state behind the HTTP admin listener of `chronik serve`:
// /healthz, /readyz and /metrics on a private Prometheus registry.
type admin struct {
	reg     *prometheus.Registry
	metrics *kafka.Metrics       // given to kafka.Config
	fsync   prometheus.Histogram // fed by broker.Config.OnFsync
	// rounds and roundLogs are fed by broker.Config.OnFsyncRound.
	rounds, roundLogs prometheus.Histogram

	broker atomic.Pointer[broker.Broker] // set once recovered
	server atomic.Pointer[kafka.Server]  // set once serving
	ready  atomic.Bool                   // recovered and listening, not shutting down

	commit prometheus.Histogram         // cluster mode: propose to commit on a leader
	node   atomic.Pointer[cluster.Node] // cluster mode

	auth *adminAuth // token and TLS (cmd_admin_auth.go)

	console *console // the web console under /ui/ (cmd_console.go)
}

func newAdmin() *admin {
	a := &admin{reg: prometheus.NewRegistry()}
	a.metrics = kafka.NewMetrics(a.reg)
	a.auth = newAdminAuth(a.reg)
	a.console = newConsole(a)
	a.fsync = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "chronik_fsync_duration_seconds",
		Help:    "Time of one fsync: an fdatasync of a partition or metadata log, or (--fsync-batch filesystem or auto) one syncfs of the data directory's filesystem for a round of appends.",
		Buckets: prometheus.ExponentialBuckets(0.0001, 2, 16), // 100µs .. 3.3s
	})
	a.rounds = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "chronik_fsync_round_duration_seconds",
		Help:    "Time of one shared fsync round (--fsync-batch): the partitions' appends that joined it made durable together.",
		Buckets: prometheus.ExponentialBuckets(0.0001, 2, 16),
	})
	a.roundLogs = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "chronik_fsync_round_partitions",
		Help:    "Partition logs made durable by one shared fsync round (--fsync-batch).",
		Buckets: prometheus.ExponentialBuckets(1, 2, 14), // 1 .. 8192
	})
	a.commit = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "chronik_cluster_commit_duration_seconds",
		Help:    "Cluster mode: time from proposing a partition's acks=all entries to their raft commit, on the leader.",
		Buckets: prometheus.ExponentialBuckets(0.0001, 2, 16),
	})
	a.reg.MustRegister(
		a.fsync,
		a.rounds,
		a.roundLogs,
		a.commit,
		clusterCollector{a},
		groupLagCollector{a},
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		brokerCollector{a},
		compactionCollector{a},
	)
	return a
}

// observeFsyncRound records one shared fsync round (broker.Config.OnFsyncRound).
func (a *admin) observeFsyncRound(logs int, d time.Duration) {
	a.rounds.Observe(d.Seconds())
	a.roundLogs.Observe(float64(logs))
}

// observeFsync records one log fsync (broker.Config.OnFsync).
func (a *admin) observeFsync(d time.Duration) { a.fsync.Observe(d.Seconds()) }

// setReady marks the broker ready (recovered, Kafka listener up) or not.
func (a *admin) setReady(b *broker.Broker, ready bool) {
	if b != nil {
		a.broker.Store(b)
	}
	a.ready.Store(ready)
}

// observeCommit records one partition commit (cluster.NodeConfig.OnCommit).
func (a *admin) observeCommit(d time.Duration) { a.commit.Observe(d.Seconds()) }

// isReady: recovered and listening; in a cluster, also a controller leader
// known (metadata changes can be made).
func (a *admin) isReady() bool {
	b := a.broker.Load()
	if !a.ready.Load() || b == nil || !b.Ready() {
		return false
	}
	return a.node.Load() == nil || b.ControllerID() >= 0
}

// handler serves every admin route behind the token check (when a token is
// configured): routes added to mux here are protected without more code.
func (a *admin) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if !a.isReady() {
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintln(w, "not ready")
			return
		}
		fmt.Fprintln(w, "ok")
		// Offline partitions do not make the broker unready (it serves
		// every other partition), but they are listed here, to a caller
		// with the admin token (they name topics and files).
		if b := a.broker.Load(); b != nil && authenticated(r) {
			writeFaults(w, b.Faults())
		}
	})
	mux.Handle("/metrics", promhttp.HandlerFor(a.reg, promhttp.HandlerOpts{Registry: a.reg}))
	userRoutes(mux, a.broker.Load)
	compactionRoutes(mux, a.broker.Load)
	a.console.routes(mux)
	return a.auth.authenticate(sameOriginWrites(mux))
}

// start serves the admin endpoints on addr until stop is called: HTTPS
// when secure loaded a certificate, else plain HTTP.
func (a *admin) start(addr string, log zerolog.Logger) (bound net.Addr, stop func(), err error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, nil, fmt.Errorf("admin-listen %s: %v", addr, err)
	}
	a.auth.log = &log
	a.console.samples.start()
	hs := &http.Server{Handler: a.handler(), ReadHeaderTimeout: 10 * time.Second,
		TLSConfig: a.auth.tlsConfig(),
		ErrorLog:  stdlog.New(zerologWriter{log.With().Str("component", "admin").Logger()}, "", 0)}
	go func() {
		serve := hs.Serve
		if hs.TLSConfig != nil {
			serve = func(ln net.Listener) error { return hs.ServeTLS(ln, "", "") }
		}
		if err := serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error().Err(err).Msg("admin listener failed")
		}
	}()
	return ln.Addr(), func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		hs.Shutdown(ctx)
		a.console.samples.close()
	}, nil
}

var (
	partitionsDesc = prometheus.NewDesc("chronik_partitions",
		"Partitions this broker hosts (internal topics included).", nil, nil)
	logSizeDesc = prometheus.NewDesc("chronik_log_size_bytes",
		"Size on disk of every partition log of a topic.", []string{"topic"}, nil)
	openLogsDesc = prometheus.NewDesc("chronik_open_logs",
		"Partition logs holding their files open now (at most chronik_open_logs_limit).", nil, nil)
	openLogsLimitDesc = prometheus.NewDesc("chronik_open_logs_limit",
		"The cap on partition logs holding their files open (--max-open-logs).", nil, nil)
	openLogsEvictedDesc = prometheus.NewDesc("chronik_open_logs_evicted_total",
		"Idle partition logs closed to stay under the open-log cap.", nil, nil)
	memoryDesc = prometheus.NewDesc("chronik_memory_bytes",
		"Memory held now by owner, estimated from what each keeps: log_buffers (partition tails, --log-buffer-bytes), read_cache (--read-cache-bytes), index (offset/time indexes), producer_state (idempotent and transactional producers), requests_in_flight (requests read and not yet answered, --max-inflight-request-bytes).",
		[]string{"owner"}, nil)
	logBufferDesc = prometheus.NewDesc("chronik_log_buffer_bytes",
		"Bytes of tail segments that partition logs hold in memory now, all partitions together (at most about --log-buffer-bytes plus one segment, and 64 KiB per open log).", nil, nil)
	logBufferRollsDesc = prometheus.NewDesc("chronik_log_buffer_rolls_total",
		"Partition logs rolled to a new segment to stay within --log-buffer-bytes.", nil, nil)
	verifyPendingDesc = prometheus.NewDesc("chronik_verify_pending_bytes",
		"Bytes of sealed segments that start-up took on trust after a clean shutdown and the background verifier has yet to read (--verify-bytes-per-sec); 0 once it is done.", nil, nil)
	storageErrorsDesc = prometheus.NewDesc("chronik_storage_errors_total",
		"Appends that failed (KAFKA_STORAGE_ERROR: a full disk, an I/O error); the log is reopened after each.", nil, nil)
	txnOpenDesc = prometheus.NewDesc("chronik_transactions_open",
		"Transactions this node coordinates that are open (Ongoing) or being completed (PrepareCommit, PrepareAbort).", nil, nil)
	txnEndedDesc = prometheus.NewDesc("chronik_transactions_ended_total",
		"Transactions this node's coordinator completed since it started, by outcome: commit, abort (asked by the producer, fenced, or timed out), timeout (aborted past transaction.timeout.ms; also counted as abort).", []string{"outcome"}, nil)
	leadersDesc = prometheus.NewDesc("chronik_partition_leaders",
		"Partitions this node leads (all it hosts when standalone); in a cluster the sum over nodes is every partition with a leader.", nil, nil)
	underReplicatedDesc = prometheus.NewDesc("chronik_partitions_under_replicated",
		"Partitions this node leads with a replica on a node that is not live (not connected to this one): Kafka's UnderReplicatedPartitions, counted on the leader only, so the sum over nodes counts each once. Always 0 standalone.", nil, nil)
	leaderlessDesc = prometheus.NewDesc("chronik_partitions_leaderless",
		"Partitions hosted here with no known leader, which clients can neither produce to nor fetch from (Kafka's OfflinePartitionsCount, as this node sees it: each replica's node counts the partition). Always 0 standalone.", nil, nil)
	diskTotalDesc = prometheus.NewDesc("chronik_disk_total_bytes",
		"Size of the file system holding a data directory (--data-dir).", []string{"dir"}, nil)
	diskAvailableDesc = prometheus.NewDesc("chronik_disk_available_bytes",
		"Bytes of the file system holding a data directory that the broker may still write (statfs f_bavail: root's reserve excluded).", []string{"dir"}, nil)
	offlineDesc = prometheus.NewDesc("chronik_partitions_offline",
		"Partitions hosted here that cannot serve (KAFKA_STORAGE_ERROR), by kind: corrupt (needs chronik repair) or failed (a write, sync or open failed; retried every second).", []string{"kind"}, nil)
)

// writeFaults lists offline partitions, one per line, for /readyz.
func writeFaults(w io.Writer, faults []broker.PartitionFault) {
	if len(faults) == 0 {
		return
	}
	fmt.Fprintf(w, "offline partitions: %d\n", len(faults))
	for _, f := range faults {
		kind := "failed, retrying"
		if f.Corrupt {
			kind = fmt.Sprintf("corrupt at index %d of %s, run chronik repair", f.Index, f.File)
		}
		fmt.Fprintf(w, "  %s-%d: %s since %s: %s\n", f.Topic, f.Partition, kind, f.Since.UTC().Format(time.RFC3339), f.Err)
	}
}

// brokerCollector reads partition counts and log sizes at scrape time.
type brokerCollector struct{ a *admin }

func (c brokerCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- partitionsDesc
	ch <- logSizeDesc
	ch <- offlineDesc
	ch <- leadersDesc
	ch <- underReplicatedDesc
	ch <- leaderlessDesc
	ch <- diskTotalDesc
	ch <- diskAvailableDesc
	ch <- openLogsDesc
	ch <- openLogsLimitDesc
	ch <- openLogsEvictedDesc
	ch <- logBufferDesc
	ch <- memoryDesc
	ch <- logBufferRollsDesc
	ch <- verifyPendingDesc
	ch <- storageErrorsDesc
	ch <- txnOpenDesc
	ch <- txnEndedDesc
}

func (c brokerCollector) Collect(ch chan<- prometheus.Metric) {
	b := c.a.broker.Load()
	if b == nil {
		return
	}
	dir, parts := b.LogDirs()
	sizes := map[string]int64{}
	for _, p := range parts {
		sizes[p.Topic] += p.Size
	}
	ch <- prometheus.MustNewConstMetric(partitionsDesc, prometheus.GaugeValue, float64(len(parts)))
	for topic, size := range sizes {
		ch <- prometheus.MustNewConstMetric(logSizeDesc, prometheus.GaugeValue, float64(size), topic)
	}
	var corrupt, failed int
	for _, f := range b.Faults() {
		if f.Corrupt {
			corrupt++
		} else {
			failed++
		}
	}
	ch <- prometheus.MustNewConstMetric(offlineDesc, prometheus.GaugeValue, float64(corrupt), "corrupt")
	ch <- prometheus.MustNewConstMetric(offlineDesc, prometheus.GaugeValue, float64(failed), "failed")
	h := b.PartitionHealth()
	ch <- prometheus.MustNewConstMetric(leadersDesc, prometheus.GaugeValue, float64(h.Leaders))
	ch <- prometheus.MustNewConstMetric(underReplicatedDesc, prometheus.GaugeValue, float64(h.UnderReplicated))
	ch <- prometheus.MustNewConstMetric(leaderlessDesc, prometheus.GaugeValue, float64(h.Leaderless))
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err == nil {
		ch <- prometheus.MustNewConstMetric(diskTotalDesc, prometheus.GaugeValue, float64(st.Blocks)*float64(st.Bsize), dir)
		ch <- prometheus.MustNewConstMetric(diskAvailableDesc, prometheus.GaugeValue, float64(st.Bavail)*float64(st.Bsize), dir)
	}
	open, limit, evicted := b.OpenLogs()
	ch <- prometheus.MustNewConstMetric(openLogsDesc, prometheus.GaugeValue, float64(open))
	ch <- prometheus.MustNewConstMetric(openLogsLimitDesc, prometheus.GaugeValue, float64(limit))
	ch <- prometheus.MustNewConstMetric(openLogsEvictedDesc, prometheus.CounterValue, float64(evicted))
	bufBytes, _, rolls := b.LogBuffers()
	ch <- prometheus.MustNewConstMetric(logBufferDesc, prometheus.GaugeValue, float64(bufBytes))
	ch <- prometheus.MustNewConstMetric(logBufferRollsDesc, prometheus.CounterValue, float64(rolls))
	ch <- prometheus.MustNewConstMetric(verifyPendingDesc, prometheus.GaugeValue, float64(b.VerifyPending()))
	ch <- prometheus.MustNewConstMetric(storageErrorsDesc, prometheus.CounterValue, float64(b.StorageErrors()))
	mem := b.Memory()
	for _, o := range []struct {
		owner string
		bytes int64
	}{{"log_buffers", mem.LogBuffers}, {"read_cache", mem.ReadCache}, {"index", mem.Index}, {"producer_state", mem.ProducerState}} {
		ch <- prometheus.MustNewConstMetric(memoryDesc, prometheus.GaugeValue, float64(o.bytes), o.owner)
	}
	if srv := c.a.server.Load(); srv != nil {
		ch <- prometheus.MustNewConstMetric(memoryDesc, prometheus.GaugeValue, float64(srv.RequestBytes()), "requests_in_flight")
	}
	ts := b.TxnStats()
	ch <- prometheus.MustNewConstMetric(txnOpenDesc, prometheus.GaugeValue, float64(ts.Open))
	ch <- prometheus.MustNewConstMetric(txnEndedDesc, prometheus.CounterValue, float64(ts.Commits), "commit")
	ch <- prometheus.MustNewConstMetric(txnEndedDesc, prometheus.CounterValue, float64(ts.Aborts), "abort")
	ch <- prometheus.MustNewConstMetric(txnEndedDesc, prometheus.CounterValue, float64(ts.Timeouts), "timeout")
}

var (
	peersConnectedDesc = prometheus.NewDesc("chronik_cluster_peers_connected",
		"Cluster mode: peers this node's outgoing connection is up to.", nil, nil)
	groupsDesc = prometheus.NewDesc("chronik_cluster_raft_groups",
		"Cluster mode: raft groups hosted (controller and partitions), by state: all, active (ticking, not quiesced), leader.", []string{"state"}, nil)
	controllerDesc = prometheus.NewDesc("chronik_cluster_controller_leader",
		"Cluster mode: node id of the controller group's leader (-1 unknown).", nil, nil)
	raftMessagesDesc = prometheus.NewDesc("chronik_cluster_raft_messages_total",
		"Cluster mode: raft messages by direction (sent, received, dropped).", []string{"direction"}, nil)
	peerBytesDesc = prometheus.NewDesc("chronik_cluster_peer_bytes_total",
		"Cluster mode: bytes on peer connections by direction.", []string{"direction"}, nil)
	peerRefusedDesc = prometheus.NewDesc("chronik_cluster_peer_handshakes_refused_total",
		"Cluster mode: peer connections this node refused, by side (accept: a dialer that could not prove the node id it claims, or broke the handshake; dial: an acceptor whose certificate does not prove the node dialed) and reason.",
		[]string{"side", "reason"}, nil)
	peerCertExpiryDesc = prometheus.NewDesc("chronik_cluster_peer_certificate_expiry_timestamp_seconds",
		"Cluster mode with peer TLS: when this node's peer certificate expires (Unix time), as loaded at start or the last SIGHUP.", nil, nil)
)

// clusterCollector reads the raft layer's counters at scrape time.
type clusterCollector struct{ a *admin }

func (c clusterCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{peersConnectedDesc, groupsDesc, controllerDesc, raftMessagesDesc, peerBytesDesc, peerRefusedDesc, peerCertExpiryDesc} {
		ch <- d
	}
}

func (c clusterCollector) Collect(ch chan<- prometheus.Metric) {
	n := c.a.node.Load()
	if n == nil {
		return
	}
	ts, es := n.Transport().Stats(), n.Engine().Stats()
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	gauge(peersConnectedDesc, float64(ts.PeersConnected))
	gauge(groupsDesc, float64(es.Groups), "all")
	gauge(groupsDesc, float64(es.ActiveGroups), "active")
	gauge(groupsDesc, float64(n.Leaders()), "leader")
	if b := c.a.broker.Load(); b != nil {
		gauge(controllerDesc, float64(b.ControllerID()))
	}
	counter(raftMessagesDesc, es.MessagesSent, "sent")
	counter(raftMessagesDesc, es.MessagesReceived, "received")
	counter(raftMessagesDesc, es.MessagesDropped+ts.Dropped, "dropped")
	counter(peerBytesDesc, ts.BytesSent, "sent")
	counter(peerBytesDesc, ts.BytesReceived, "received")
	for _, r := range cluster.AcceptRefusalReasons {
		counter(peerRefusedDesc, ts.AcceptRefused[r], "accept", r)
	}
	for _, r := range cluster.DialRefusalReasons {
		counter(peerRefusedDesc, ts.DialRefused[r], "dial", r)
	}
	if p := n.PeerTLS(); p != nil {
		gauge(peerCertExpiryDesc, float64(p.NotAfter().Unix()))
	}
}

var groupLagDesc = prometheus.NewDesc("chronik_consumer_group_lag",
	"Records between a group's committed offset and the high watermark, per partition with a commit.",
	[]string{"group", "topic", "partition"}, nil)

// groupLagCollector computes consumer group lag at scrape time from the
// committed offsets and the partitions' high watermarks.
type groupLagCollector struct{ a *admin }

func (c groupLagCollector) Describe(ch chan<- *prometheus.Desc) { ch <- groupLagDesc }

func (c groupLagCollector) Collect(ch chan<- prometheus.Metric) {
	b := c.a.broker.Load()
	if b == nil {
		return
	}
	groups, err := b.ListGroups(nil, nil)
	if err != nil {
		return
	}
	for _, g := range groups {
		offsets, err := b.OffsetFetch(g.GroupID, nil, false)
		if err != nil {
			continue
		}
		for _, o := range offsets {
			_, hw, err := b.PartitionOffsets(o.Topic, o.Partition)
			if err != nil || o.Offset < 0 {
				continue
			}
			ch <- prometheus.MustNewConstMetric(groupLagDesc, prometheus.GaugeValue,
				float64(max(hw-o.Offset, 0)), g.GroupID, o.Topic, strconv.Itoa(int(o.Partition)))
		}
	}
}

// sdNotify tells systemd (when NOTIFY_SOCKET is set) about a state change.
func sdNotify(state string, log zerolog.Logger) {
	if _, err := daemon.SdNotify(false, state); err != nil {
		log.Warn().Err(err).Str("state", state).Msg("systemd notify failed")
	}
}

// levelSource says where the log level comes from, for SIGHUP reloads:
// the flag or environment value when one was given, else the config
// file's log_level, else the default.
type levelSource struct {
	fixed      string // --log-level or CHRONIK_LOG_LEVEL; "" if not given
	configPath string // --config; "" if none
	dflt       string
}

func (s levelSource) level() (zerolog.Level, string, error) {
	name := s.dflt
	switch {
	case s.fixed != "":
		name = s.fixed
	case s.configPath != "":
		data, err := os.ReadFile(s.configPath)
		if err != nil {
			return 0, "", fmt.Errorf("config: %v", err)
		}
		var doc struct {
			LogLevel *string `yaml:"log_level"`
		}
		if err := yaml.Unmarshal(data, &doc); err != nil {
			return 0, "", fmt.Errorf("config %s: %v", s.configPath, err)
		}
		if doc.LogLevel != nil {
			name = *doc.LogLevel
		}
	}
	lvl, err := zerolog.ParseLevel(name)
	if err != nil || name == "" {
		return 0, "", fmt.Errorf("log-level: %q is not one of trace, debug, info, warn, error", name)
	}
	return lvl, name, nil
}

// reloadLogLevel applies the log level of src to the running process (the
// serve logger is built at trace level; zerolog's global level filters).
func reloadLogLevel(src levelSource, log zerolog.Logger) error {
	lvl, name, err := src.level()
	if err != nil {
		log.Error().Err(err).Msg("log level not reloaded")
		return err
	}
	old := zerolog.GlobalLevel()
	zerolog.SetGlobalLevel(lvl)
	// Log() is never filtered (the line shows even when the new level is
	// error) but has no level of its own; it is an info line.
	log.Log().Str(zerolog.LevelFieldName, zerolog.InfoLevel.String()).
		Str("from", old.String()).Str("to", name).Msg("log level reloaded")
	return nil
}

// reloadOnSignal applies a SIGHUP (systemctl reload): the log level, then
// each of more (the admin token and certificate), between RELOADING=1
// and READY=1 to systemd, so that `systemctl status` shows the reload and
// a systemd that waits for READY=1 (253 and later; Type=notify-reload)
// returns from `systemctl reload` once it is applied. RELOADING=1 carries
// the monotonic clock, as the notify-reload protocol asks. After the log
// level, each of reloads runs (e.g. re-reading certificates); each logs
// its own outcome.
func reloadOnSignal(src levelSource, log zerolog.Logger, reloads ...func()) {
	var now unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &now); err == nil {
		sdNotify(fmt.Sprintf("%s\nMONOTONIC_USEC=%d", daemon.SdNotifyReloading, now.Nano()/1000), log)
	}
	reloadLogLevel(src, log)
	for _, reload := range reloads {
		reload()
	}
	sdNotify(daemon.SdNotifyReady, log)
}
