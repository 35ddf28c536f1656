package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/signal"
	"strconv"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
	"github.com/rs/zerolog"
	"github.com/urfave/cli/v2"

	"github.com/chronik-stream/chronik/broker"
	"github.com/chronik-stream/chronik/cluster"
	"github.com/chronik-stream/chronik/kafka"
	"github.com/chronik-stream/chronik/wal"
)

// serveFlags defines every setting of `chronik serve` once: its flag, its
// CHRONIK_* environment variable and its default.
func serveFlags() []cli.Flag {
	return withEnv([]cli.Flag{
		&cli.StringFlag{Name: "config",
			Usage: "YAML file of settings (keys are the flag names with _ for -); flags and environment override it"},
		&cli.StringFlag{Name: "listen", Value: ":9092",
			Usage: "Kafka listener address (host:port)"},
		&cli.StringFlag{Name: "admin-listen", Value: "127.0.0.1:9644",
			Usage: "HTTP admin listener for /healthz, /readyz, /metrics and the web console /ui/ (host:port); empty disables it"},
		&cli.StringFlag{Name: "advertise",
			Usage: "address Metadata tells clients (host:port); default the listen address, or when listening on all interfaces this host's primary address (the default route's, else the first non-loopback one)"},
		&cli.StringFlag{Name: "data-dir", Value: "./chronik-data",
			Usage: "directory holding the metadata log and every partition log"},
		&cli.StringFlag{Name: "log-level", Value: "info",
			Usage: "trace, debug, info, warn or error"},
		&cli.StringFlag{Name: "log-format", Value: "auto",
			Usage: "auto, json or console: auto writes human-readable console lines when standard error is a terminal and JSON otherwise (under systemd, or redirected to a file)"},
		&cli.BoolFlag{Name: "auto-create-topics", Value: true,
			Usage: "create unknown topics a client's Metadata request names (auto.create.topics.enable); Produce to an unknown topic gets UNKNOWN_TOPIC_OR_PARTITION, as in Kafka"},
		&cli.IntFlag{Name: "default-partitions", Value: 1,
			Usage: "partitions of auto-created topics and of CreateTopics with -1 (num.partitions)"},
		&cli.StringFlag{Name: "fsync", Value: "always",
			Usage: "when appends are made durable: always (before acknowledging), interval, never"},
		&cli.DurationFlag{Name: "fsync-interval", Value: 100 * time.Millisecond,
			Usage: "sync period with --fsync interval"},
		&cli.IntFlag{Name: "max-request-bytes", Value: 100 << 20,
			Usage: "largest request frame accepted (socket.request.max.bytes)"},
		&cli.Int64Flag{Name: "read-cache-bytes", Value: 256 << 20,
			Usage: "memory for verified copies of sealed log segments that fetches read from, all partitions together (each log also keeps the segment it read last)"},
		&cli.Int64Flag{Name: "max-inflight-request-bytes", Value: 512 << 20,
			Usage: "request bytes held across all connections at once, counted until garbage-collected (queued.max.request.bytes): a body takes room as its bytes arrive, one connection at most a quarter (at least max-request-bytes), the top eighth kept for connections with small requests. The Kafka listener's peak memory is this plus up to about 40 KiB per open connection (max-connections)"},
		&cli.IntFlag{Name: "max-message-bytes", Value: 1048588,
			Usage: "largest record batch accepted (message.max.bytes)"},
		&cli.DurationFlag{Name: "retention", Value: 7 * 24 * time.Hour,
			Usage: "default retention.ms of topics (0 keeps forever)"},
		&cli.Int64Flag{Name: "retention-bytes", Value: -1,
			Usage: "default retention.bytes per partition (-1 unlimited)"},
		&cli.IntFlag{Name: "segment-bytes", Value: 4 << 20,
			Usage: "default segment.bytes: log segment file size, the unit retention removes"},
		&cli.DurationFlag{Name: "retention-check-interval", Value: 5 * time.Minute,
			Usage: "how often retention runs (log.retention.check.interval.ms)"},
		&cli.IntFlag{Name: "offsets-topic-partitions", Value: 50,
			Usage: "partitions of __consumer_offsets, fixed when it is first created (offsets.topic.num.partitions)"},
		&cli.DurationFlag{Name: "offsets-retention", Value: 7 * 24 * time.Hour,
			Usage: "committed offsets of an empty group expire this long after it became empty (offsets.retention.minutes)"},
		&cli.DurationFlag{Name: "offsets-retention-check-interval", Value: 10 * time.Minute,
			Usage: "how often expired offsets are removed (offsets.retention.check.interval.ms)"},
		&cli.DurationFlag{Name: "group-initial-rebalance-delay", Value: 3 * time.Second,
			Usage: "how long a new group waits for more members before its first rebalance (group.initial.rebalance.delay.ms); 0 for none"},
		&cli.DurationFlag{Name: "group-min-session-timeout", Value: 6 * time.Second,
			Usage: "smallest session timeout a consumer may ask for (group.min.session.timeout.ms)"},
		&cli.DurationFlag{Name: "group-max-session-timeout", Value: 30 * time.Minute,
			Usage: "largest session timeout a consumer may ask for (group.max.session.timeout.ms)"},
		&cli.IntFlag{Name: "group-max-size", Value: 0,
			Usage: "most members in one group, 0 for no limit (group.max.size)"},
		&cli.IntFlag{Name: "node-id", Value: 0,
			Usage: "this broker's node id; with --peers it must be one of the peers' ids (1 or more)"},
		&cli.StringFlag{Name: "peers",
			Usage: "cluster mode: every node's raft address as id=host:port,id=host:port,... (this node's own included; it listens on its entry); needs the peer-tls-* files or peer-insecure-plaintext; empty runs standalone"},
		&cli.DurationFlag{Name: "shutdown-timeout", Value: 30 * time.Second,
			Usage: "how long SIGTERM waits for in-flight requests before closing logs"},
		&cli.IntFlag{Name: "max-open-logs", Value: 0,
			Usage: "partition logs holding their files open at once (2 descriptors each); least recently used idle logs are closed to make room and reopen on use; 0: from the open-file limit, leaving --max-connections plus 1024 descriptors (or a quarter, at most 4096, when that is more than half) for everything else"},
		&cli.Int64Flag{Name: "max-decompressed-batch-bytes", Value: 32 << 20,
			Usage: "most bytes the records of one compressed batch may decompress to; a produce past it gets MESSAGE_TOO_LARGE (a topic's larger max.message.bytes raises it for that topic)"},
		&cli.DurationFlag{Name: "request-read-timeout", Value: 30 * time.Second,
			Usage: "longest a client may take to send one request frame, from its first byte to its last; a connection with a frame still incomplete then is closed with a logged reason (no Kafka equal: connections.max.idle.ms covers idle connections only); time spent waiting for --max-inflight-request-bytes room does not count"},
		&cli.IntFlag{Name: "max-connections", Value: 10000,
			Usage: "most Kafka client connections open at once; one more is accepted and closed at once, logged and counted in chronik_kafka_rejected_connections_total (max.connections); 0 for no limit. Each open connection costs up to about 40 KiB of memory besides --max-inflight-request-bytes"},
		&cli.IntFlag{Name: "max-connections-per-ip", Value: 1000,
			Usage: "most Kafka client connections open at once from one IP address; more are accepted and closed at once, logged and counted (max.connections.per.ip); 0 for no limit"},
		&cli.IntFlag{Name: "transaction-state-partitions", Value: 50,
			Usage: "partitions of __transaction_state, fixed when it is first created, on the first transactional producer (transaction.state.log.num.partitions)"},
		&cli.DurationFlag{Name: "transaction-max-timeout", Value: 15 * time.Minute,
			Usage: "largest transaction.timeout.ms a producer may ask for; past its timeout an open transaction is aborted and its producer fenced (transaction.max.timeout.ms)"},
		&cli.DurationFlag{Name: "transactional-id-expiration", Value: 7 * 24 * time.Hour,
			Usage: "a transactional id with no transaction for this long is forgotten (transactional.id.expiration.ms)"},
		&cli.BoolFlag{Name: "transaction-partition-verification", Value: true,
			Usage: "check a transaction's first write to each partition with its coordinator, so that a late or stray batch cannot open a transaction nobody ends (KIP-890; transaction.partition.verification.enable)"},
		&cli.StringFlag{Name: "admin-tls-cert-file",
			Usage: "PEM certificate (chain) of the admin listener; with admin-tls-key-file it serves HTTPS only (TLS 1.2 or later); both re-read on SIGHUP"},
		&cli.StringFlag{Name: "admin-tls-key-file",
			Usage: "PEM private key of admin-tls-cert-file (keep it 0600 or 0640, readable by the chronik user only)"},
		&cli.StringFlag{Name: "admin-token-file",
			Usage: "file holding the admin listener's token (at least 16 characters, e.g. openssl rand -hex 32); every admin endpoint but /healthz and /readyz then needs Authorization: Bearer TOKEN (or basic auth with TOKEN as the password); re-read on SIGHUP. Refusals answer 401 and count in chronik_admin_auth_failures_total"},
		&cli.BoolFlag{Name: "admin-metrics-public",
			Usage: "with admin-token-file, leave /metrics open too (for a Prometheus without credentials; metrics name topics and groups)"},
		&cli.BoolFlag{Name: "admin-insecure",
			Usage: "allow an admin-listen address other hosts can reach without admin-token-file or without TLS (a trusted lab network only); without it such a start is refused"},
		&cli.IntFlag{Name: "transaction-version", Value: 2,
			Usage: "the transaction.version feature advertised to clients (Kafka 4.0's default 2, KIP-890 part 2: every transaction bumps the producer's epoch and Produce v12 / TxnOffsetCommit v5 add their partitions themselves); 1 keeps clients on the older protocol, where they add partitions with AddPartitionsToTxn and AddOffsetsToTxn"},
		&cli.StringFlag{Name: "listeners",
			Usage: "Kafka listeners as NAME://host:port,... (listeners), NAME a security protocol (PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL) or a name mapped by listener-security-protocol-map, e.g. PLAINTEXT://127.0.0.1:9092,SASL_SSL://:9093; an empty host listens on all interfaces. Replaces listen and advertise; empty: one PLAINTEXT listener on listen"},
		&cli.StringFlag{Name: "advertised-listeners",
			Usage: "what Metadata tells the clients of each listener, as NAME://host:port,... (advertised.listeners); a listener not named advertises its listen address, or this host's primary address when it listens on all interfaces"},
		&cli.StringFlag{Name: "listener-security-protocol-map",
			Usage: "security protocols of listener names that are not protocol names, as NAME:PROTOCOL,... (listener.security.protocol.map), e.g. CLIENT:SASL_SSL,INTERNAL:PLAINTEXT"},
		&cli.StringFlag{Name: "tls-cert-file",
			Usage: "PEM certificate chain of the SSL and SASL_SSL listeners (server certificate first); re-read on SIGHUP"},
		&cli.StringFlag{Name: "tls-key-file",
			Usage: "PEM private key of tls-cert-file; re-read on SIGHUP"},
		&cli.StringFlag{Name: "tls-client-ca-file",
			Usage: "PEM CA bundle: when set, clients of the SSL and SASL_SSL listeners must present a certificate it signed (mutual TLS; ssl.client.auth=required), and their principal is User: and the certificate subject (SASL replaces it on SASL_SSL); re-read on SIGHUP"},
		&cli.StringFlag{Name: "sasl-mechanisms", Value: "SCRAM-SHA-256,SCRAM-SHA-512",
			Usage: "SASL mechanisms of the SASL_PLAINTEXT and SASL_SSL listeners (sasl.enabled.mechanisms): PLAIN, SCRAM-SHA-256, SCRAM-SHA-512. PLAIN checks the password against the user's SCRAM credential; it sends the password itself, so use it over SASL_SSL only"},
		&cli.DurationFlag{Name: "connections-max-reauth", Value: 0,
			Usage: "longest a SASL session lasts before the client must re-authenticate on the same connection (KIP-368, connections.max.reauth.ms); a client that does not is disconnected at its next request. 0: sessions never expire"},
		&cli.BoolFlag{Name: "authorizer",
			Usage: "check every request against the ACLs (chronik acl, or any Kafka admin client): Kafka's ACL authorizer (authorizer.class.name=StandardAuthorizer). Off, everyone may do everything"},
		&cli.StringFlag{Name: "super-users",
			Usage: "principals allowed everything whatever the ACLs say, separated by ; (or ,), e.g. User:admin;User:CN=ops,O=acme (super.users)"},
		&cli.BoolFlag{Name: "allow-everyone-if-no-acl-found",
			Usage: "with --authorizer, allow any principal to use a resource that no ACL names (allow.everyone.if.no.acl.found); off, such resources are for super users only"},
		&cli.StringFlag{Name: "peer-tls-cert-file",
			Usage: "cluster mode: this node's certificate (PEM, intermediates after it) for mutual TLS between peers, signed by the cluster CA and naming this node's id in a URI SAN chronik-node://<id> (`chronik cluster certs` makes a lab set); re-read on SIGHUP for new peer connections"},
		&cli.StringFlag{Name: "peer-tls-key-file",
			Usage: "cluster mode: the private key (PEM) of peer-tls-cert-file; re-read on SIGHUP"},
		&cli.StringFlag{Name: "peer-tls-ca-file",
			Usage: "cluster mode: the cluster CA certificate (PEM; several during a CA rotation): a peer must present a certificate it signed, valid now, naming the node id the peer claims; re-read on SIGHUP"},
		&cli.BoolFlag{Name: "peer-insecure-plaintext",
			Usage: "cluster mode without peer TLS, for a lab on a trusted network only: anyone who reaches a raft port can then join as any node and inject raft messages (a warning is logged at start); not allowed with the peer-tls-* files"},
		&cli.DurationFlag{Name: "compaction-check-interval", Value: 15 * time.Second,
			Usage: "how often the leader of a compacted partition checks whether it is due for cleaning (log.cleaner.backoff.ms)"},
		&cli.Int64Flag{Name: "compaction-dedupe-buffer-bytes", Value: 32 << 20,
			Usage: "memory of the log cleaner's key -> offset map, allocated on the first cleaning, 24 bytes a key (log.cleaner.dedupe.buffer.size); a cleaning that meets more keys cleans up to where the map filled and goes on later"},
		&cli.Int64Flag{Name: "compaction-max-bytes-per-sec", Value: 0,
			Usage: "the log cleaner's reads and writes, bytes per second (log.cleaner.io.max.bytes.per.second); 0: unlimited"},
		&cli.Int64Flag{Name: "log-buffer-bytes", Value: wal.DefaultTailBudgetBytes,
			Usage: "memory for the tail (active) segments that partition logs hold, all partitions together: past it the logs with the largest tails are rolled to a new segment (tails under 64 KiB are kept); 0: no budget, each active partition may hold a whole segment (segment.bytes)"},
		&cli.StringFlag{Name: "fsync-batch", Value: "auto",
			Usage: "with --fsync always, how appends to many partitions share fsyncs: filesystem: every append joins the next round, and a round makes all of its partitions durable with one syncfs of the data directory's filesystem (best when the data directory is a filesystem of its own, since it also flushes whatever else is dirty there); files: each partition fdatasyncs its own log; auto: filesystem when the data directory is a mount point; elsewhere rounds only while at least 4 appends are under way (fewer fdatasync their own logs, which is sooner) and the page cache holds at most 64 MiB dirty (so that a round does not wait for another program's writes), else files"},
		&cli.BoolFlag{Name: "console-read-only",
			Usage: "the web console on the admin listener (/ui/) only shows: it refuses to change topic configs, reset group offsets, or add and delete users and ACLs"},
		&cli.Int64Flag{Name: "verify-bytes-per-sec", Value: broker.DefaultVerifyBytesPerSec,
			Usage: "after a clean shutdown, start-up reads only each partition's tail segment; the older (sealed) segments are then read and checked in the background at most this fast, and a damaged one takes its partition offline as a read would (chronik_verify_pending_bytes); 0: not at all, damage is then found when the data is read"},
	})
}

// withEnv gives every flag its CHRONIK_* environment variable.
func withEnv(flags []cli.Flag) []cli.Flag {
	for _, f := range flags {
		env := []string{envName(f.Names()[0])}
		switch f := f.(type) {
		case *cli.StringFlag:
			f.EnvVars = env
		case *cli.BoolFlag:
			f.EnvVars = env
		case *cli.IntFlag:
			f.EnvVars = env
		case *cli.Int64Flag:
			f.EnvVars = env
		case *cli.DurationFlag:
			f.EnvVars = env
		default:
			panic(fmt.Sprintf("withEnv: flag type %T", f))
		}
	}
	return flags
}

func serveCommand() *cli.Command {
	return &cli.Command{
		Name:   "serve",
		Usage:  "run a Chronik broker",
		Flags:  serveFlags(),
		Action: serveAction,
	}
}

func parseFsync(s string) (broker.FsyncPolicy, error) {
	switch s {
	case "always":
		return broker.FsyncAlways, nil
	case "interval":
		return broker.FsyncInterval, nil
	case "never":
		return broker.FsyncNever, nil
	}
	return 0, fmt.Errorf("fsync: %q is not one of always, interval, never", s)
}

func parseFsyncBatch(s string) (wal.SyncMode, error) {
	for _, m := range []wal.SyncMode{wal.SyncAuto, wal.SyncFiles, wal.SyncFilesystem} {
		if s == m.String() {
			return m, nil
		}
	}
	return 0, fmt.Errorf("fsync-batch: %q is not one of auto, files, filesystem", s)
}

// serveConfig turns flags into the broker and server configs; every error
// names the setting.
func serveConfig(c *cli.Context) (broker.Config, kafka.Config, error) {
	var bc broker.Config
	var kc kafka.Config
	fsync, err := parseFsync(c.String("fsync"))
	if err != nil {
		return bc, kc, err
	}
	fsyncBatch, err := parseFsyncBatch(c.String("fsync-batch"))
	if err != nil {
		return bc, kc, err
	}
	specs, err := listenerSpecs(c)
	if err != nil {
		return bc, kc, err
	}
	host, port := specs[0].advHost, specs[0].advPort
	mechs, err := parseMechanisms(c.String("sasl-mechanisms"))
	if err != nil {
		return bc, kc, err
	}
	if c.Duration("connections-max-reauth") < 0 {
		return bc, kc, fmt.Errorf("connections-max-reauth: must not be negative")
	}
	// Checked here, not when binding, so that a typo or an admin listener
	// open to other hosts exits 2 (systemd does not restart it) rather
	// than 1 like a port in use.
	if _, err := adminSettingsOf(c); err != nil {
		return bc, kc, err
	}
	if c.String("data-dir") == "" {
		return bc, kc, fmt.Errorf("data-dir: must not be empty")
	}
	if n := c.Int("default-partitions"); n < 1 || n > 1<<20 {
		return bc, kc, fmt.Errorf("default-partitions: %d is not between 1 and 1048576", n)
	}
	if n := c.Int("max-request-bytes"); n < 1024 || n > 1<<30 {
		return bc, kc, fmt.Errorf("max-request-bytes: %d is not between 1024 and 1073741824", n)
	}
	if n := c.Int("max-message-bytes"); n < 1024 || n > 1<<30 {
		return bc, kc, fmt.Errorf("max-message-bytes: %d is not between 1024 and 1073741824", n)
	}
	if n := c.Int("segment-bytes"); n < 64<<10 || n > 1<<30 {
		return bc, kc, fmt.Errorf("segment-bytes: %d is not between 65536 and 1073741824", n)
	}
	if c.Duration("fsync-interval") <= 0 {
		return bc, kc, fmt.Errorf("fsync-interval: must be positive")
	}
	if c.Duration("retention-check-interval") <= 0 {
		return bc, kc, fmt.Errorf("retention-check-interval: must be positive")
	}
	if n := c.Int("offsets-topic-partitions"); n < 1 || n > 1000 {
		return bc, kc, fmt.Errorf("offsets-topic-partitions: %d is not between 1 and 1000", n)
	}
	for _, name := range []string{"offsets-retention", "offsets-retention-check-interval", "group-min-session-timeout", "group-max-session-timeout"} {
		if c.Duration(name) <= 0 {
			return bc, kc, fmt.Errorf("%s: must be positive", name)
		}
	}
	if c.Duration("group-min-session-timeout") > c.Duration("group-max-session-timeout") {
		return bc, kc, fmt.Errorf("group-min-session-timeout: %v is above group-max-session-timeout %v", c.Duration("group-min-session-timeout"), c.Duration("group-max-session-timeout"))
	}
	if c.Duration("group-initial-rebalance-delay") < 0 {
		return bc, kc, fmt.Errorf("group-initial-rebalance-delay: must not be negative")
	}
	if c.Int("group-max-size") < 0 {
		return bc, kc, fmt.Errorf("group-max-size: must not be negative")
	}
	if c.Int("node-id") < 0 {
		return bc, kc, fmt.Errorf("node-id: must not be negative")
	}
	if n := c.Int64("read-cache-bytes"); n < 1<<20 {
		return bc, kc, fmt.Errorf("read-cache-bytes: %d is below 1048576", n)
	}
	if n := c.Int("transaction-state-partitions"); n < 1 || n > 1000 {
		return bc, kc, fmt.Errorf("transaction-state-partitions: %d is not between 1 and 1000", n)
	}
	for _, name := range []string{"transaction-max-timeout", "transactional-id-expiration"} {
		if d := c.Duration(name); d < time.Second {
			return bc, kc, fmt.Errorf("%s: %v is below 1s", name, d)
		}
	}
	if n := c.Int64("max-decompressed-batch-bytes"); n < int64(c.Int("max-message-bytes")) || n > 1<<30 {
		return bc, kc, fmt.Errorf("max-decompressed-batch-bytes: %d is not between max-message-bytes %d and 1073741824", n, c.Int("max-message-bytes"))
	}
	if _, err := parsePeers(c.String("peers"), c.Int("node-id")); err != nil {
		return bc, kc, err
	}
	if err := checkPeerSecurity(c); err != nil {
		return bc, kc, err
	}
	if d := c.Duration("compaction-check-interval"); d < 10*time.Millisecond {
		return bc, kc, fmt.Errorf("compaction-check-interval: %v is below 10ms", d)
	}
	if n := c.Int64("compaction-dedupe-buffer-bytes"); n < 1<<20 || n > 1<<34 {
		return bc, kc, fmt.Errorf("compaction-dedupe-buffer-bytes: %d is not between 1048576 and 17179869184", n)
	}
	if n := c.Int64("compaction-max-bytes-per-sec"); n < 0 || (n > 0 && n < 1<<16) {
		return bc, kc, fmt.Errorf("compaction-max-bytes-per-sec: %d is not 0 (unlimited) or at least 65536", n)
	}
	if n := c.Int64("verify-bytes-per-sec"); n < 0 {
		return bc, kc, fmt.Errorf("verify-bytes-per-sec: %d is negative (0 turns background verification off)", n)
	}
	if n := c.Int64("log-buffer-bytes"); n != 0 && n < 4<<20 {
		return bc, kc, fmt.Errorf("log-buffer-bytes: %d is not 0 (no budget) or at least 4194304", n)
	}
	if n := c.Int("max-open-logs"); n != 0 && (n < 16 || n > 1<<22) {
		return bc, kc, fmt.Errorf("max-open-logs: %d is not 0 (automatic) or between 16 and 4194304", n)
	}
	retentionMs := c.Duration("retention").Milliseconds()
	if retentionMs <= 0 {
		retentionMs = -1
	}
	bc = broker.Config{
		DataDir:                c.String("data-dir"),
		NodeID:                 int32(c.Int("node-id")),
		AdvertisedHost:         host,
		AdvertisedPort:         port,
		Listeners:              endpoints(specs),
		AutoCreateTopics:       c.Bool("auto-create-topics"),
		DefaultPartitions:      int32(c.Int("default-partitions")),
		RetentionMs:            retentionMs,
		RetentionBytes:         c.Int64("retention-bytes"),
		SegmentBytes:           int32(c.Int("segment-bytes")),
		MaxMessageBytes:        int32(c.Int("max-message-bytes")),
		Fsync:                  fsync,
		FsyncInterval:          c.Duration("fsync-interval"),
		RetentionCheckInterval: c.Duration("retention-check-interval"),

		OffsetsTopicPartitions:        int32(c.Int("offsets-topic-partitions")),
		OffsetsRetention:              c.Duration("offsets-retention"),
		OffsetsRetentionCheckInterval: c.Duration("offsets-retention-check-interval"),
		GroupInitialRebalanceDelay:    c.Duration("group-initial-rebalance-delay"),
		GroupMinSessionTimeout:        c.Duration("group-min-session-timeout"),
		GroupMaxSessionTimeout:        c.Duration("group-max-session-timeout"),
		GroupMaxSize:                  c.Int("group-max-size"),
		ReadCacheBytes:                c.Int64("read-cache-bytes"),
		MaxOpenLogs:                   c.Int("max-open-logs"),
		MaxDecompressedBatchBytes:     c.Int64("max-decompressed-batch-bytes"),
		TxnStatePartitions:            int32(c.Int("transaction-state-partitions")),
		TxnMaxTimeout:                 c.Duration("transaction-max-timeout"),
		TxnIDExpiration:               c.Duration("transactional-id-expiration"),
		NoTxnVerification:             !c.Bool("transaction-partition-verification"),
		TxnVersion:                    int16(c.Int("transaction-version")),
		CompactionCheckInterval:       c.Duration("compaction-check-interval"),
		CompactionDedupeBytes:         c.Int64("compaction-dedupe-buffer-bytes"),
		CompactionMaxBytesPerSec:      c.Int64("compaction-max-bytes-per-sec"),
		LogBufferBytes:                offIfZero(c.Int64("log-buffer-bytes")),
		VerifyBytesPerSec:             offIfZero(c.Int64("verify-bytes-per-sec")),
		FsyncBatch:                    fsyncBatch,
	}
	if v := c.Int("transaction-version"); v != 1 && v != 2 {
		return bc, kc, fmt.Errorf("transaction-version: %d is not 1 or 2", v)
	}
	if bc.Authorizer, err = authorizerConfig(c); err != nil {
		return bc, kc, err
	}
	if bc.GroupInitialRebalanceDelay == 0 {
		bc.GroupInitialRebalanceDelay = -1 // broker.Config: 0 means the default, negative means none
	}
	if n := c.Int64("max-inflight-request-bytes"); n < int64(c.Int("max-request-bytes")) {
		return bc, kc, fmt.Errorf("max-inflight-request-bytes: %d is below max-request-bytes %d", n, c.Int("max-request-bytes"))
	}
	if c.Duration("request-read-timeout") <= 0 {
		return bc, kc, fmt.Errorf("request-read-timeout: must be positive")
	}
	for _, name := range []string{"max-connections", "max-connections-per-ip"} {
		if c.Int(name) < 0 {
			return bc, kc, fmt.Errorf("%s: %d is negative (0 means no limit)", name, c.Int(name))
		}
	}
	if bc.MaxOpenLogs == 0 {
		bc.MaxOpenLogs = broker.DefaultMaxOpenLogs(c.Int("max-connections") + 1024)
	}
	kc = kafka.Config{
		MaxRequestBytes:         int32(c.Int("max-request-bytes")),
		MaxInflightRequestBytes: c.Int64("max-inflight-request-bytes"),
		RequestReadTimeout:      c.Duration("request-read-timeout"),
		MaxConnections:          noLimitIfZero(c.Int("max-connections")),
		MaxConnectionsPerIP:     noLimitIfZero(c.Int("max-connections-per-ip")),
		SASLMechanisms:          mechs,
		ConnectionsMaxReauth:    c.Duration("connections-max-reauth"),
	}
	return bc, kc, nil
}

// offIfZero maps a flag's 0 ("no budget", "not at all") to broker.Config's
// negative (its 0 means the default).
func offIfZero(n int64) int64 {
	if n == 0 {
		return -1
	}
	return n
}

// noLimitIfZero maps a flag's 0 ("no limit") to kafka.Config's -1 (its 0
// means the default).
func noLimitIfZero(n int) int {
	if n == 0 {
		return -1
	}
	return n
}

// resolveServe applies the config file and checks every setting.
func resolveServe(c *cli.Context) (broker.Config, kafka.Config, zerolog.Logger, error) {
	if path := c.String("config"); path != "" {
		if err := loadConfigFile(c, path, c.Command.Flags); err != nil {
			return broker.Config{}, kafka.Config{}, zerolog.Nop(), err
		}
	}
	log, err := newLogger(c.App.ErrWriter, c.String("log-level"), c.String("log-format"))
	if err != nil {
		return broker.Config{}, kafka.Config{}, log, err
	}
	bc, kc, err := serveConfig(c)
	if err != nil {
		return bc, kc, log, err
	}
	bc.Logger = log.With().Str("component", "broker").Logger()
	kc.Logger = log.With().Str("component", "kafka").Logger()
	return bc, kc, log, nil
}

func serveAction(c *cli.Context) error {
	if c.NArg() > 0 {
		return cli.Exit(fmt.Sprintf("serve takes no arguments, got %q", c.Args().First()), 2)
	}
	// The log level SIGHUP reloads: flag or environment if given (read
	// before the config file is applied), else the file's log_level.
	levelSrc := levelSource{configPath: c.String("config"), dflt: "info"}
	if c.IsSet("log-level") {
		levelSrc.fixed = c.String("log-level")
	}
	bc, kc, log, err := resolveServe(c)
	if err != nil {
		return cli.Exit(err.Error(), 2)
	}
	specs, err := listenerSpecs(c)
	if err != nil {
		return cli.Exit(err.Error(), 2)
	}
	// A missing or bad certificate fails start-up, naming the file.
	tlsFiles, err := securityConfig(c, specs)
	if err != nil {
		return cli.Exit(err.Error(), 2)
	}
	// Loggers log everything; zerolog's global level filters, so SIGHUP
	// can change it on the running process.
	prevLevel := zerolog.GlobalLevel()
	zerolog.SetGlobalLevel(log.GetLevel())
	defer zerolog.SetGlobalLevel(prevLevel)
	log = log.Level(zerolog.TraceLevel)
	bc.Logger = bc.Logger.Level(zerolog.TraceLevel)
	kc.Logger = kc.Logger.Level(zerolog.TraceLevel)

	// SIGHUP (systemctl reload) is caught from here on and applied once the
	// broker serves: without a handler, a reload during start-up would end
	// the process (Go's default for SIGHUP).
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)

	// Before anything touches the data directory (the raft listener, the
	// admin listener, the logs): one process per data directory.
	lock, err := broker.LockDataDir(bc.DataDir)
	if err != nil {
		var le *broker.LockedError
		if errors.As(err, &le) {
			return cli.Exit(err.Error(), 2)
		}
		return cli.Exit(err.Error(), 1)
	}
	defer lock.Unlock()
	bc.DataDirLock = lock
	defer watchLock(lock, log)() // stops watching before the lock is released

	adm := newAdmin()
	if addr := c.String("admin-listen"); addr != "" {
		kc.Metrics = adm.metrics
		bc.OnFsync = adm.observeFsync
		bc.OnFsyncRound = adm.observeFsyncRound
		as, err := adminSettingsOf(c)
		if err == nil {
			err = adm.secure(as, log)
		}
		if err != nil {
			return cli.Exit(err.Error(), 2) // a file changed since serveConfig read it
		}
		bound, stopAdmin, err := adm.start(addr, log)
		if err != nil {
			return cli.Exit(err.Error(), 1)
		}
		defer stopAdmin()
		log.Info().Str("admin_listen", bound.String()).Bool("tls", as.certFile != "").
			Bool("token", as.tokenFile != "").Bool("metrics_public", as.metricsPublic).
			Msg("admin listener up")
		if as.insecure && (as.tokenFile == "" || as.certFile == "") {
			log.Warn().Str("admin_listen", bound.String()).
				Msg("admin-insecure: the admin listener may be reachable from other hosts without a token or TLS")
		}
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	start := time.Now()
	// Transaction markers and verifications go to other nodes' Kafka
	// listeners, found in the broker's metadata once it is open.
	var opened atomic.Pointer[broker.Broker]
	var peerTLS *cluster.PeerTLS
	var warnPeers func()
	if peers, _ := parsePeers(c.String("peers"), c.Int("node-id")); peers != nil {
		if peerTLS, err = loadPeerTLS(c, bc.NodeID, log); err != nil {
			return cli.Exit(err.Error(), 2)
		}
		node, err := startClusterNode(bc, peers, peerTLS, adm.observeCommit, log)
		if err != nil {
			return cli.Exit(err.Error(), 1)
		}
		defer node.Close() // after the broker closed its groups
		bc.Replication = node
		adm.node.Store(node)
		peerClients := kafka.NewPeers(func() []broker.BrokerInfo {
			if ob := opened.Load(); ob != nil {
				return ob.Brokers()
			}
			return nil
		})
		defer peerClients.Close()
		wireNodeAuth(&kc, peerClients, peerTLS, tlsFiles, peers)
		bc.Peers = peerClients
		if bc.Authorizer.Enabled {
			warnNodeListeners(specs, peerTLS, log)
			// Once the broker is open: it knows the other nodes' listeners.
			warnPeers = func() { peerClients.WarnUnauthenticated(log, bc.NodeID) }
		}
	}
	b, err := broker.Open(bc)
	opened.Store(b)
	if err != nil {
		return cli.Exit(fmt.Sprintf("open data dir %s: %v", bc.DataDir, err), 1)
	}
	if warnPeers != nil {
		warnPeers()
	}
	bound, err := bindListeners(specs)
	if err != nil {
		b.Close()
		return cli.Exit(err.Error(), 1)
	}
	srv := kafka.New(kc, b)
	adm.server.Store(srv)
	served := serveListeners(srv, bound, tlsFiles)
	adm.setReady(b, true)
	sdNotify(daemon.SdNotifyReady, log)
	logListeners(bound, log)
	log.Info().
		Str("listen", bound[0].ln.Addr().String()).
		Str("advertise", net.JoinHostPort(bc.AdvertisedHost, strconv.Itoa(int(bc.AdvertisedPort)))).
		Str("data_dir", bc.DataDir).
		Str("cluster_id", b.ClusterID()).
		Dur("recovery", time.Since(start)).
		Str("version", version).
		Msg("chronik ready")

	var serveErr error
wait:
	for {
		select {
		case <-hup:
			reloadOnSignal(levelSrc, log, func() { adm.reload(log) }, func() { reloadTLS(tlsFiles, log) }, func() { reloadPeerTLS(peerTLS, log) })
		case <-ctx.Done():
			log.Info().Msg("shutting down")
			break wait
		case serveErr = <-served:
			log.Error().Err(serveErr).Msg("listener failed")
			break wait
		}
	}
	adm.setReady(nil, false)
	sdNotify(daemon.SdNotifyStopping, log)
	shutCtx, cancel := context.WithTimeout(context.Background(), c.Duration("shutdown-timeout"))
	defer cancel()
	if err := srv.Shutdown(shutCtx); err != nil {
		log.Warn().Err(err).Msg("in-flight requests did not finish before the shutdown timeout")
	}
	if err := b.Close(); err != nil {
		return cli.Exit(fmt.Sprintf("close logs: %v", err), 1)
	}
	log.Info().Msg("stopped")
	if serveErr != nil {
		return cli.Exit(serveErr.Error(), 1)
	}
	return nil
}

// lockCheckInterval is how often serve checks that its data directory lock
// still guards the directory.
const lockCheckInterval = 2 * time.Second

// watchLock checks the data directory's lock every lockCheckInterval until
// the returned stop is called, and stops the process at once (exit 3) if
// the lock file was removed or replaced while it serves (the directory
// deleted or swapped under it): another process may then lock the new
// directory, and this one would go on writing the same paths, its clean shutdown included (clean
// markers, state files). Exiting without touching the directory again is a
// crash as far as the logs are concerned, which they are built to survive;
// a supervisor that restarts it meets the new lock holder and stops there.
func watchLock(lock *broker.DirLock, log zerolog.Logger) (stop func()) {
	quit, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(lockCheckInterval)
		defer tick.Stop()
		for {
			select {
			case <-quit:
				return
			case <-tick.C:
			}
			if err := lock.Check(); err != nil {
				log.Error().Err(err).Msg("stopping at once, without closing the logs: another process may own the data directory now")
				os.Exit(3)
			}
		}
	}()
	return func() { close(quit); <-done }
}
