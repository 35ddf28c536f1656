// The CLI against a SASL_SSL listener, and the packaged config's keys
// (commented out or not) checked against serve's settings.

package main

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// TestCLIOverSASLSSL runs `chronik serve` with a SASL_SSL listener
// (SCRAM-SHA-512) beside a loopback PLAINTEXT one, creates a user over
// the PLAINTEXT one, and drives the CLI with the client security flags:
// topic create, produce, consume, group list, bench; then a wrong
// password, an unknown mechanism and a plaintext client each fail with
// exit 1 and the broker keeps serving.
func TestCLIOverSASLSSL(t *testing.T) {
	pki := newCLIPKI(t)
	cert, key := pki.issue("broker", "broker", []string{"localhost"}, net.ParseIP("127.0.0.1"))
	dir := t.TempDir()
	addrs := freeAddrs(t, 2)
	plainAddr, secAddr := addrs[0], addrs[1]

	var stdout, stderr syncBuffer
	exited := make(chan int, 1)
	go func() {
		exited <- run([]string{"chronik", "serve", "--data-dir", filepath.Join(dir, "data"), "--admin-listen", "",
			"--listeners", "PLAINTEXT://" + plainAddr + ",SASL_SSL://" + secAddr,
			"--tls-cert-file", cert, "--tls-key-file", key,
			"--sasl-mechanisms", "SCRAM-SHA-512"}, &stdout, &stderr)
	}()
	defer func() {
		syscall.Kill(os.Getpid(), syscall.SIGTERM)
		select {
		case code := <-exited:
			if code != 0 {
				t.Errorf("serve exited %d: %s", code, stderr.String())
			}
		case <-time.After(30 * time.Second):
			t.Error("serve did not exit after SIGTERM")
		}
	}()

	// Ready: the PLAINTEXT listener answers. Then the user, over it.
	cl, err := kgo.NewClient(kgo.SeedBrokers(plainAddr))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var lastErr error
	for i := 0; i < 300; i++ {
		if lastErr = cl.Ping(ctx); lastErr == nil {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if lastErr != nil {
		t.Fatalf("serve not ready: %v\n%s", lastErr, stderr.String())
	}
	res, err := kadm.NewClient(cl).AlterUserSCRAMs(ctx, nil, []kadm.UpsertSCRAM{
		{User: "alice", Mechanism: kadm.ScramSha512, Iterations: 4096, Password: "alice-secret-0123"}})
	if err != nil || res.Error() != nil {
		t.Fatalf("create user alice: %v %v", err, res.Error())
	}

	b := "--brokers=" + secAddr
	pwFile := writeSecret(t, dir, "alice.pw", "alice-secret-0123\n")
	sec := []string{"--tls-ca-file", pki.CAFile, "--sasl-mechanism", "SCRAM-SHA-512", "--sasl-user", "alice", "--sasl-password-file", pwFile}
	with := func(args ...string) []string { return append(append(args, b), sec...) }
	ok(t, "", with("topic", "create", "secure")...)
	ok(t, "a\nb\n", with("produce", "secure")...)
	if r := ok(t, "", with("consume", "secure", "-e")...); r.stdout != "a\nb\n" {
		t.Errorf("consume over SASL_SSL: %q", r.stdout)
	}
	ok(t, "", with("group", "list")...)
	ok(t, "", with("bench", "produce", "--topic", "secure-bench", "--records", "20", "--record-size", "10")...)

	// The same from the environment, the password never on the command line.
	t.Setenv("CHRONIK_TLS_CA_FILE", pki.CAFile)
	t.Setenv("CHRONIK_SASL_MECHANISM", "SCRAM-SHA-512")
	t.Setenv("CHRONIK_SASL_USER", "alice")
	t.Setenv("CHRONIK_SASL_PASSWORD", "alice-secret-0123")
	if r := ok(t, "", "topic", "list", b); !strings.Contains(r.stdout, "secure") || strings.Contains(r.stderr, "warning") {
		t.Errorf("topic list from the environment: %q %q", r.stdout, r.stderr)
	}
	os.Unsetenv("CHRONIK_SASL_MECHANISM")
	os.Unsetenv("CHRONIK_SASL_USER")
	os.Unsetenv("CHRONIK_SASL_PASSWORD")

	for _, tc := range []struct {
		name string
		args []string
		want *regexp.Regexp
	}{
		{"wrong password", []string{"--sasl-mechanism", "SCRAM-SHA-512", "--sasl-user", "alice", "--sasl-password-file", writeSecret(t, dir, "bad.pw", "wrong-password-0123")},
			regexp.MustCompile(`(?i)SASL_AUTHENTICATION_FAILED|authentication failed`)},
		{"unknown user", []string{"--sasl-mechanism", "SCRAM-SHA-512", "--sasl-user", "mallory", "--sasl-password-file", pwFile},
			regexp.MustCompile(`(?i)SASL_AUTHENTICATION_FAILED|authentication failed`)},
		{"mechanism not enabled", []string{"--sasl-mechanism", "PLAIN", "--sasl-user", "alice", "--sasl-password-file", pwFile},
			regexp.MustCompile(`(?i)UNSUPPORTED_SASL_MECHANISM|not support`)},
		{"TLS without SASL", nil, regexp.MustCompile(`.`)},
		{"plaintext client", []string{"--tls=false"}, regexp.MustCompile(`(?i)TLS`)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"topic", "list", b, "--timeout", "5s"}, tc.args...)
			if tc.name == "plaintext client" {
				t.Setenv("CHRONIK_TLS_CA_FILE", "")
			}
			r := runCLI(t, "", args...)
			if r.code != exitFailed || !tc.want.MatchString(r.stderr) {
				t.Errorf("chronik %s: exit %d %q, want 1 and %v", strings.Join(args, " "), r.code, r.stderr, tc.want)
			}
			if strings.Contains(r.stderr, "alice-secret") || strings.Contains(r.stderr, "wrong-password") {
				t.Errorf("a password in the output: %q", r.stderr)
			}
		})
	}
	// The broker is still up and serving the authenticated client.
	ok(t, "", with("topic", "describe", "secure")...)
	if strings.Contains(stderr.String(), "alice-secret") || strings.Contains(stderr.String(), "wrong-password") {
		t.Errorf("a password in the serve log")
	}
}

// TestPackagedConfigKeysAreSettings: every key of the packaged
// chronik.yaml, the commented-out security examples included, is a serve
// setting, so uncommenting a line never gives "unknown key". Needs every
// security helper's serve flags (listeners, tls_*, sasl_mechanisms,
// connections_max_reauth, authorizer, super_users,
// allow_everyone_if_no_acl_found, peer_tls_*, peer_insecure_plaintext).
func TestPackagedConfigKeysAreSettings(t *testing.T) {
	data, err := os.ReadFile("packaging/chronik.yaml")
	if err != nil {
		t.Fatal(err)
	}
	known := map[string]bool{}
	for _, f := range serveFlags() {
		known[configKey(f.Names()[0])] = true
	}
	key := regexp.MustCompile(`^#? ?([a-z][a-z0-9_]*): `)
	seen := 0
	for i, line := range strings.Split(string(data), "\n") {
		m := key.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		seen++
		if !known[m[1]] {
			t.Errorf("packaging/chronik.yaml line %d: %q is not a serve setting (chronik serve --help)", i+1, m[1])
		}
	}
	if seen < 20 {
		t.Errorf("only %d keys found", seen)
	}
}
