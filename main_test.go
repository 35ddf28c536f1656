package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/urfave/cli/v2"

	"github.com/chronik-stream/chronik/broker"
	"github.com/chronik-stream/chronik/kafka"
	"github.com/chronik-stream/chronik/wal"
)

// resolveOnly runs `chronik serve ARGS` up to the point where the broker
// would open, and returns what it resolved.
func resolveOnly(t *testing.T, args ...string) (broker.Config, kafka.Config, int, string) {
	t.Helper()
	var (
		bc     broker.Config
		kc     kafka.Config
		stderr bytes.Buffer
	)
	app := newApp(&bytes.Buffer{}, &stderr)
	for _, cmd := range app.Commands {
		if cmd.Name == "serve" {
			cmd.Action = func(c *cli.Context) error {
				var err error
				bc, kc, _, err = resolveServe(c)
				if err != nil {
					return cli.Exit(err.Error(), 2)
				}
				return nil
			}
		}
	}
	code := 0
	if err := app.Run(append([]string{"chronik", "serve"}, args...)); err != nil {
		code = 1
		if ec, ok := err.(cli.ExitCoder); ok {
			code = ec.ExitCode()
		}
		stderr.WriteString(err.Error())
	}
	return bc, kc, code, stderr.String()
}

func writeConfig(t *testing.T, body string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "chronik.yaml")
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestServeDefaults(t *testing.T) {
	bc, kc, code, msg := resolveOnly(t)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, msg)
	}
	// Listening on all interfaces (":9092"), the broker advertises this
	// host's primary address (cmd_serve_advertise_test.go checks which).
	if bc.DataDir != "./chronik-data" || bc.AdvertisedHost != primaryHostAddr(false) || bc.AdvertisedPort != 9092 {
		t.Errorf("defaults: data dir %q advertise %s:%d", bc.DataDir, bc.AdvertisedHost, bc.AdvertisedPort)
	}
	if !bc.AutoCreateTopics || bc.Fsync != broker.FsyncAlways || bc.DefaultPartitions != 1 {
		t.Errorf("defaults: auto-create %v fsync %v partitions %d", bc.AutoCreateTopics, bc.Fsync, bc.DefaultPartitions)
	}
	if kc.MaxRequestBytes != 100<<20 {
		t.Errorf("max request bytes %d", kc.MaxRequestBytes)
	}
	if bc.ReadCacheBytes != 256<<20 {
		t.Errorf("read cache bytes %d", bc.ReadCacheBytes)
	}
	if bc.MaxDecompressedBatchBytes != 32<<20 {
		t.Errorf("max decompressed batch bytes %d", bc.MaxDecompressedBatchBytes)
	}
	if bc.LogBufferBytes != wal.DefaultTailBudgetBytes {
		t.Errorf("log buffer bytes %d", bc.LogBufferBytes)
	}
	if bc.FsyncBatch != wal.SyncAuto {
		t.Errorf("fsync batch %v", bc.FsyncBatch)
	}
	if bc, _, code, msg := resolveOnly(t, "--fsync-batch", "filesystem"); code != 0 || bc.FsyncBatch != wal.SyncFilesystem {
		t.Errorf("--fsync-batch filesystem: exit %d %s, FsyncBatch %v", code, msg, bc.FsyncBatch)
	}
	// 0 on the command line is no budget, which broker.Config spells
	// negative (its 0 is the default).
	if bc, _, code, msg := resolveOnly(t, "--log-buffer-bytes", "0"); code != 0 || bc.LogBufferBytes >= 0 {
		t.Errorf("--log-buffer-bytes 0: exit %d %s, LogBufferBytes %d", code, msg, bc.LogBufferBytes)
	}
}

func TestConfigPrecedence(t *testing.T) {
	path := writeConfig(t, "data_dir: /from/file\nlisten: 127.0.0.1:7000\nfsync: never\ndefault_partitions: 3\n")
	t.Setenv("CHRONIK_LISTEN", "127.0.0.1:8000")
	bc, _, code, msg := resolveOnly(t, "--config", path, "--fsync", "interval")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, msg)
	}
	if bc.DataDir != "/from/file" {
		t.Errorf("file should set data_dir, got %q", bc.DataDir)
	}
	if bc.AdvertisedPort != 8000 || bc.AdvertisedHost != "127.0.0.1" {
		t.Errorf("environment should beat the file: advertise %s:%d", bc.AdvertisedHost, bc.AdvertisedPort)
	}
	if bc.Fsync != broker.FsyncInterval {
		t.Errorf("flag should beat the file: fsync %v", bc.Fsync)
	}
	if bc.DefaultPartitions != 3 {
		t.Errorf("file default_partitions: %d", bc.DefaultPartitions)
	}
}

func TestBadConfig(t *testing.T) {
	for _, tc := range []struct {
		name, body string
		args       []string
		want       string
	}{
		{"unknown key", "listen: :9092\nretention_hours: 5\n", nil, `line 2: unknown key "retention_hours"`},
		{"bad int", "default_partitions: many\n", nil, `line 1: default_partitions: invalid value "many"`},
		{"bad duration", "\n\nfsync_interval: 5 parsecs\n", nil, `line 3: fsync_interval`},
		{"bad enum", "fsync: sometimes\n", nil, `fsync: "sometimes" is not one of always, interval, never`},
		{"not a mapping", "- a\n- b\n", nil, "line 1: expected a mapping"},
		{"nested value", "listen:\n  host: x\n", nil, "line 2: listen: expected a single value"},
		{"bad yaml", "listen: [\n", nil, "chronik.yaml"},
		{"bad flag value", "", []string{"--default-partitions", "0"}, "default-partitions: 0 is not between"},
		{"bad log level", "", []string{"--log-level", "loud"}, `log-level: "loud"`},
		{"bad listen", "", []string{"--listen", "nope"}, `listen: "nope" is not host:port`},
		{"bad admin listen", "", []string{"--admin-listen", "nope"}, `admin-listen: "nope" is not host:port`},
		{"tiny read cache", "read_cache_bytes: 1000\n", nil, "read-cache-bytes: 1000 is below 1048576"},
		{"tiny log buffer", "log_buffer_bytes: 1000\n", nil, "log-buffer-bytes: 1000 is not 0 (no budget) or at least 4194304"},
		{"bad fsync batch", "fsync_batch: sometimes\n", nil, `fsync-batch: "sometimes" is not one of auto, files, filesystem`},
		{"decompressed bound below max message bytes", "", []string{"--max-decompressed-batch-bytes", "1000000"},
			"max-decompressed-batch-bytes: 1000000 is not between max-message-bytes 1048588 and 1073741824"},
		{"unknown flag", "", []string{"--no-such-flag"}, "flag provided but not defined"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := tc.args
			if tc.body != "" {
				args = append([]string{"--config", writeConfig(t, tc.body)}, args...)
			}
			_, _, code, msg := resolveOnly(t, args...)
			if code != 2 {
				t.Errorf("exit status %d, want 2 (%s)", code, msg)
			}
			if !strings.Contains(msg, tc.want) {
				t.Errorf("message %q does not contain %q", msg, tc.want)
			}
		})
	}
	t.Run("unreadable file", func(t *testing.T) {
		_, _, code, msg := resolveOnly(t, "--config", filepath.Join(t.TempDir(), "missing.yaml"))
		if code != 2 || !strings.Contains(msg, "missing.yaml") {
			t.Errorf("exit %d message %q", code, msg)
		}
	})
	t.Run("bad environment", func(t *testing.T) {
		t.Setenv("CHRONIK_DEFAULT_PARTITIONS", "lots")
		_, _, code, msg := resolveOnly(t)
		if code != 2 || !strings.Contains(msg, "CHRONIK_DEFAULT_PARTITIONS") {
			t.Errorf("exit %d message %q", code, msg)
		}
	})
}

func TestEmptyConfigFileTakesDefaults(t *testing.T) {
	bc, _, code, msg := resolveOnly(t, "--config", writeConfig(t, "# nothing set\n"))
	if code != 0 || bc.DataDir != "./chronik-data" {
		t.Fatalf("exit %d (%s), data dir %q", code, msg, bc.DataDir)
	}
}

// The README's configuration reference is generated from serveFlags; this
// fails when it is stale. Regenerate with: go run . docs
func TestReadmeConfigReference(t *testing.T) {
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	const begin, end = "<!-- config-reference:begin -->\n", "<!-- config-reference:end -->"
	s := string(readme)
	i, j := strings.Index(s, begin), strings.Index(s, end)
	if i < 0 || j < i {
		t.Fatalf("README.md lacks the %q ... %q markers", begin, end)
	}
	if got, want := s[i+len(begin):j], configReference(); got != want {
		t.Fatalf("README.md configuration reference is stale; replace it with the output of `go run . docs`:\n%s", want)
	}
}

func TestEnvNames(t *testing.T) {
	for _, f := range serveFlags() {
		name := f.Names()[0]
		ef, ok := f.(interface{ GetEnvVars() []string })
		if !ok || len(ef.GetEnvVars()) != 1 || ef.GetEnvVars()[0] != envName(name) {
			t.Errorf("flag --%s: environment variables %v, want [%s]", name, ef.GetEnvVars(), envName(name))
		}
	}
}

func TestUnknownCommandExits2(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if code := run([]string{"chronik", "bogus"}, &stdout, &stderr); code != 2 || !strings.Contains(stderr.String(), `unknown command "bogus"`) {
		t.Fatalf("exit %d, stderr %q", code, stderr.String())
	}
	stdout.Reset()
	if code := run([]string{"chronik"}, &stdout, &stderr); code != 0 || !strings.Contains(stdout.String(), "serve") {
		t.Fatalf("no command: exit %d, help %q", code, stdout.String())
	}
}

func TestGroupSettings(t *testing.T) {
	bc, _, code, msg := resolveOnly(t, "--group-initial-rebalance-delay", "0", "--offsets-topic-partitions", "3")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, msg)
	}
	if bc.GroupInitialRebalanceDelay >= 0 || bc.OffsetsTopicPartitions != 3 {
		t.Errorf("delay %v (want negative: none), offsets partitions %d", bc.GroupInitialRebalanceDelay, bc.OffsetsTopicPartitions)
	}
	_, _, code, msg = resolveOnly(t, "--group-min-session-timeout", "1h")
	if code != 2 || !strings.Contains(msg, "above group-max-session-timeout") {
		t.Errorf("exit %d: %s", code, msg)
	}
}
