package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl"
	"github.com/urfave/cli/v2"

	"github.com/chronik-stream/chronik/broker"
	"github.com/chronik-stream/chronik/kafka"
)

// startTLSBroker runs a broker whose Kafka listener speaks only TLS with
// cfg, advertising its own address; it returns that address.
func startTLSBroker(t *testing.T, cfg *tls.Config) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b, err := broker.Open(broker.Config{
		DataDir:          t.TempDir(),
		AdvertisedHost:   "127.0.0.1",
		AdvertisedPort:   int32(ln.Addr().(*net.TCPAddr).Port),
		AutoCreateTopics: true,
		Logger:           zerolog.Nop(),
	})
	if err != nil {
		ln.Close()
		t.Fatal(err)
	}
	srv := kafka.New(kafka.Config{Logger: zerolog.Nop()}, b)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(tls.NewListener(ln, cfg)) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		<-served
		if err := b.Close(); err != nil {
			t.Errorf("close broker: %v", err)
		}
	})
	return ln.Addr().String()
}

// TestClientFlagsOnEveryBrokerCommand: every command that takes --brokers
// (so talks to a broker) also takes every connection security flag, and
// no client flag reads an environment variable a serve setting reads.
func TestClientFlagsOnEveryBrokerCommand(t *testing.T) {
	var want []string
	for _, f := range clientFlags() {
		want = append(want, f.Names()[0])
	}
	checked := 0
	var walk func(path string, cmds []*cli.Command)
	walk = func(path string, cmds []*cli.Command) {
		for _, cmd := range cmds {
			name := strings.TrimSpace(path + " " + cmd.Name)
			walk(name, cmd.Subcommands)
			has := map[string]bool{}
			for _, f := range cmd.Flags {
				for _, n := range f.Names() {
					has[n] = true
				}
			}
			if !has["brokers"] {
				continue
			}
			checked++
			for _, n := range want {
				if !has[n] {
					t.Errorf("chronik %s talks to brokers but has no --%s (add clientFlags())", name, n)
				}
			}
		}
	}
	walk("", newApp(&bytes.Buffer{}, &bytes.Buffer{}).Commands)
	if checked < 10 {
		t.Errorf("only %d commands with --brokers found", checked)
	}
	serveEnv := map[string]string{}
	for _, f := range serveFlags() {
		serveEnv[envName(f.Names()[0])] = f.Names()[0]
	}
	for _, f := range clientFlags() {
		for _, env := range f.(interface{ GetEnvVars() []string }).GetEnvVars() {
			if s, ok := serveEnv[env]; ok {
				t.Errorf("client flag --%s reads %s, which is serve's --%s", f.Names()[0], env, s)
			}
		}
	}
}

// TestCLIOverTLS runs the CLI against a broker listening with TLS only:
// server verification by CA and name, mutual TLS, the environment
// variables, and the failures when something is missing.
func TestCLIOverTLS(t *testing.T) {
	pki := newCLIPKI(t)
	srvCert, srvKey := pki.issue("broker", "broker", []string{"localhost"}, net.ParseIP("127.0.0.1"))
	cliCert, cliKey := pki.issue("client", "alice", nil)
	otherPKI := newCLIPKI(t)
	strayCert, strayKey := otherPKI.issue("stray", "mallory", nil)

	t.Run("server TLS", func(t *testing.T) {
		addr := startTLSBroker(t, serverTLS(t, srvCert, srvKey, nil))
		b := "--brokers=" + addr
		ok(t, "", "topic", "create", "tls-topic", b, "--tls", "--tls-ca-file", pki.CAFile)
		r := ok(t, "", "topic", "list", b, "--tls-ca-file", pki.CAFile) // --tls implied
		if !strings.Contains(r.stdout, "tls-topic") {
			t.Errorf("topic list over TLS: %q", r.stdout)
		}
		ok(t, "", "topic", "list", b, "--tls-ca-file", pki.CAFile, "--tls-server-name", "localhost")
		ok(t, "", "topic", "list", b, "--tls-insecure-skip-verify")
		ok(t, "one\ntwo\n", "produce", "tls-topic", b, "--tls", "--tls-ca-file", pki.CAFile)
		r = ok(t, "", "consume", "tls-topic", "-e", b, "--tls-ca-file", pki.CAFile)
		if r.stdout != "one\ntwo\n" {
			t.Errorf("consume over TLS: %q", r.stdout)
		}
		ok(t, "", "group", "list", b, "--tls-ca-file", pki.CAFile)
		ok(t, "", "cluster", "info", b, "--tls-ca-file", pki.CAFile)
		ok(t, "", "txn", "list", b, "--tls-ca-file", pki.CAFile)
		r = ok(t, "", "bench", "produce", b, "--topic", "tls-bench", "--records", "20", "--record-size", "10", "--tls-ca-file", pki.CAFile)
		if !strings.Contains(r.stdout, "20 records") {
			t.Errorf("bench over TLS: %q", r.stdout)
		}
		ok(t, "", "bench", "consume", b, "--topic", "tls-bench", "--records", "20", "--tls-ca-file", pki.CAFile)

		t.Setenv("CHRONIK_TLS_CA_FILE", pki.CAFile)
		ok(t, "", "topic", "describe", "tls-topic", b)

		for _, tc := range []struct {
			name string
			args []string
			want string
		}{
			{"wrong CA", []string{"--tls-ca-file", otherPKI.CAFile}, "certificate signed by unknown authority"},
			{"name not in the certificate", []string{"--tls-server-name", "broker.example"}, "not broker.example"},
			{"plaintext to a TLS listener", []string{"--tls=false"}, "is TLS missing?"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				args := append([]string{"topic", "list", b, "--timeout", "3s"}, tc.args...)
				if tc.name == "plaintext to a TLS listener" {
					t.Setenv("CHRONIK_TLS_CA_FILE", "")
				}
				if r := runCLI(t, "", args...); r.code != exitFailed || !strings.Contains(r.stderr, tc.want) {
					t.Errorf("chronik %s: exit %d (%s), want 1 and %q", strings.Join(args, " "), r.code, r.stderr, tc.want)
				}
			})
		}
	})

	t.Run("mutual TLS", func(t *testing.T) {
		addr := startTLSBroker(t, serverTLS(t, srvCert, srvKey, pki.pool()))
		b := "--brokers=" + addr
		ok(t, "", "topic", "create", "mtls", b, "--tls-ca-file", pki.CAFile, "--tls-cert-file", cliCert, "--tls-key-file", cliKey)
		if r := runCLI(t, "", "topic", "list", b, "--timeout", "3s", "--tls-ca-file", pki.CAFile); r.code != exitFailed ||
			!strings.Contains(r.stderr, "certificate required") {
			t.Errorf("no client certificate: exit %d (%s), want 1 and certificate required", r.code, r.stderr)
		}
		if r := runCLI(t, "", "topic", "list", b, "--timeout", "3s", "--tls-ca-file", pki.CAFile,
			"--tls-cert-file", strayCert, "--tls-key-file", strayKey); r.code != exitFailed || !strings.Contains(r.stderr, "remote error: tls:") {
			t.Errorf("client certificate of another CA: exit %d (%s), want 1 and a TLS alert", r.code, r.stderr)
		}
		t.Setenv("CHRONIK_TLS_CA_FILE", pki.CAFile)
		t.Setenv("CHRONIK_CLIENT_TLS_CERT_FILE", cliCert)
		t.Setenv("CHRONIK_CLIENT_TLS_KEY_FILE", cliKey)
		r := ok(t, "", "topic", "list", b)
		if !strings.Contains(r.stdout, "mtls") {
			t.Errorf("topic list over mTLS from the environment: %q", r.stdout)
		}
	})

	t.Run("usage errors", func(t *testing.T) {
		for _, tc := range []struct {
			args []string
			want string
		}{
			{[]string{"--tls-ca-file", filepath.Join(pki.dir, "none.pem")}, "tls-ca-file: open"},
			{[]string{"--tls-ca-file", srvKey}, "no PEM certificate"},
			{[]string{"--tls-cert-file", cliCert}, "tls-cert-file and tls-key-file: give both or neither"},
			{[]string{"--tls-cert-file", cliCert, "--tls-key-file", srvKey}, "tls-cert-file " + cliCert},
		} {
			r := runCLI(t, "", append([]string{"topic", "list", "--brokers", "127.0.0.1:1"}, tc.args...)...)
			if r.code != exitUsage || !strings.Contains(r.stderr, tc.want) {
				t.Errorf("%v: exit %d %q, want 2 and %q", tc.args, r.code, r.stderr, tc.want)
			}
		}
	})
}

// clientFromFlags parses args as a command with the client security flags
// and builds the kgo client clientOpts configures (it does not connect).
func clientFromFlags(t *testing.T, args ...string) (*kgo.Client, int, string) {
	t.Helper()
	var cl *kgo.Client
	var stderr bytes.Buffer
	app := &cli.App{
		Name: "chronik", Flags: clientFlags(), Writer: &bytes.Buffer{}, ErrWriter: &stderr,
		ExitErrHandler: func(*cli.Context, error) {},
		Action: func(c *cli.Context) error {
			opts, err := clientOpts(c)
			if err != nil {
				return err
			}
			cl, err = kgo.NewClient(append(opts, kgo.SeedBrokers("127.0.0.1:1"))...)
			return err
		},
	}
	code := 0
	if err := app.Run(append([]string{"chronik"}, args...)); err != nil {
		code = 1
		if ec, ok := err.(cli.ExitCoder); ok {
			code = ec.ExitCode()
		}
		stderr.WriteString(err.Error())
	}
	if cl != nil {
		t.Cleanup(cl.Close)
	}
	return cl, code, stderr.String()
}

// firstSASLMessage is what the client's mechanism sends first.
func firstSASLMessage(t *testing.T, cl *kgo.Client) (string, string) {
	t.Helper()
	mechs, _ := cl.OptValue(kgo.SASL).([]sasl.Mechanism)
	if len(mechs) != 1 {
		t.Fatalf("SASL mechanisms configured: %v", mechs)
	}
	_, msg, err := mechs[0].Authenticate(context.Background(), "127.0.0.1:1")
	if err != nil {
		t.Fatal(err)
	}
	return mechs[0].Name(), string(msg)
}

// TestClientSASLFlags: the SASL flags configure franz-go's own mechanism
// with the user and password given (its first message carries them), from
// flags, environment or file; mistakes are usage errors. The exchange with
// a broker is tested end to end where the broker side exists.
func TestClientSASLFlags(t *testing.T) {
	dir := t.TempDir()
	pwFile := writeSecret(t, dir, "pw", "file-secret\n")

	cl, code, msg := clientFromFlags(t, "--sasl-mechanism", "plain", "--sasl-user", "alice", "--sasl-password", "pw1")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, msg)
	}
	if name, first := firstSASLMessage(t, cl); name != "PLAIN" || first != "\x00alice\x00pw1" {
		t.Errorf("PLAIN: %s %q", name, first)
	}
	if !strings.Contains(msg, "--sasl-password shows in the process list") {
		t.Errorf("no warning for a password on the command line: %q", msg)
	}
	if cl.OptValue(kgo.DialTLSConfig) != (*tls.Config)(nil) {
		t.Errorf("TLS configured without a TLS flag: %v", cl.OptValue(kgo.DialTLSConfig))
	}

	for _, mech := range []string{"SCRAM-SHA-256", "SCRAM-SHA-512"} {
		cl, code, msg = clientFromFlags(t, "--sasl-mechanism", mech, "--sasl-user", "bob", "--sasl-password-file", pwFile, "--tls")
		if code != 0 {
			t.Fatalf("%s: exit %d: %s", mech, code, msg)
		}
		name, first := firstSASLMessage(t, cl)
		if name != mech || !strings.HasPrefix(first, "n,,n=bob,r=") {
			t.Errorf("%s: %s %q", mech, name, first)
		}
		if strings.Contains(msg, "warning") {
			t.Errorf("%s: warning for a password file: %q", mech, msg)
		}
		if cfg, _ := cl.OptValue(kgo.DialTLSConfig).(*tls.Config); cfg == nil || cfg.MinVersion != tls.VersionTLS12 || cfg.InsecureSkipVerify {
			t.Errorf("%s --tls: TLS config %+v", mech, cfg)
		}
	}

	t.Setenv("CHRONIK_SASL_MECHANISM", "SCRAM-SHA-512")
	t.Setenv("CHRONIK_SASL_USER", "carol")
	t.Setenv("CHRONIK_SASL_PASSWORD", "env-secret")
	cl, code, msg = clientFromFlags(t, "--tls-server-name", "broker.example", "--tls-insecure-skip-verify")
	if code != 0 {
		t.Fatalf("environment: exit %d: %s", code, msg)
	}
	if name, first := firstSASLMessage(t, cl); name != "SCRAM-SHA-512" || !strings.HasPrefix(first, "n,,n=carol,r=") {
		t.Errorf("environment: %s %q", name, first)
	}
	if strings.Contains(msg, "warning") {
		t.Errorf("warning for a password from the environment: %q", msg)
	}
	if cfg, _ := cl.OptValue(kgo.DialTLSConfig).(*tls.Config); cfg == nil || cfg.ServerName != "broker.example" || !cfg.InsecureSkipVerify {
		t.Errorf("--tls-server-name, --tls-insecure-skip-verify: TLS config %+v", cfg)
	}
	// The env password and a file together are ambiguous.
	if _, code, msg := clientFromFlags(t, "--sasl-password-file", pwFile); code != exitUsage || !strings.Contains(msg, "give one, not both") {
		t.Errorf("password and file: exit %d %q", code, msg)
	}
	os.Unsetenv("CHRONIK_SASL_MECHANISM")
	os.Unsetenv("CHRONIK_SASL_USER")
	os.Unsetenv("CHRONIK_SASL_PASSWORD")

	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--sasl-mechanism", "GSSAPI", "--sasl-user", "a", "--sasl-password", "b"}, `sasl-mechanism: "GSSAPI" is not one of PLAIN, SCRAM-SHA-256, SCRAM-SHA-512`},
		{[]string{"--sasl-user", "a", "--sasl-password", "b"}, "sasl-mechanism: not set"},
		{[]string{"--sasl-mechanism", "PLAIN", "--sasl-password", "b"}, "sasl-user: needed"},
		{[]string{"--sasl-mechanism", "PLAIN", "--sasl-user", "a"}, "sasl-password: needed"},
		{[]string{"--sasl-mechanism", "PLAIN", "--sasl-user", "a", "--sasl-password-file", filepath.Join(dir, "none")}, "sasl-password-file: open"},
		{[]string{"--sasl-mechanism", "PLAIN", "--sasl-user", "a", "--sasl-password-file", writeSecret(t, dir, "empty", "\n")}, "sasl-password-file " + filepath.Join(dir, "empty") + ": empty"},
	} {
		if _, code, msg := clientFromFlags(t, tc.args...); code != exitUsage || !strings.Contains(msg, tc.want) {
			t.Errorf("%v: exit %d %q, want 2 and %q", tc.args, code, msg, tc.want)
		}
	}
	// A secret never shows in an error.
	if _, _, msg := clientFromFlags(t, "--sasl-mechanism", "NOPE", "--sasl-user", "a", "--sasl-password", "hunter2hunter2"); strings.Contains(msg, "hunter2") {
		t.Errorf("password in the message: %q", msg)
	}
}
