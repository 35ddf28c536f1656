package main

import (
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

// adminGet GETs url with the Authorization header auth ("" for none).
func adminGet(t *testing.T, cl *http.Client, url, auth string) (int, string) {
	t.Helper()
	code, body, _ := adminGetHeader(t, cl, url, auth)
	return code, body
}

func adminGetHeader(t *testing.T, cl *http.Client, url, auth string) (int, string, http.Header) {
	t.Helper()
	req, err := http.NewRequest("GET", url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	resp, err := cl.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(body), resp.Header
}

// writeSecret writes a token or password file, 0600.
func writeSecret(t *testing.T, dir, name, content string) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// startSecuredAdmin starts an admin listener on 127.0.0.1 with s applied;
// it returns its base URL and the log it writes.
func startSecuredAdmin(t *testing.T, s adminSettings) (*admin, string, *syncBuffer) {
	t.Helper()
	logBuf := &syncBuffer{}
	log := zerolog.New(logBuf)
	adm := newAdmin()
	s.addr = "127.0.0.1:0"
	if err := adm.secure(s, log); err != nil {
		t.Fatal(err)
	}
	addr, stop, err := adm.start(s.addr, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)
	scheme := "http"
	if s.certFile != "" {
		scheme = "https"
	}
	return adm, scheme + "://" + addr.String(), logBuf
}

// TestAdminToken: with --admin-token-file every path but the health checks
// needs the token (bearer, or basic auth with it as the password); a
// refusal is 401 with WWW-Authenticate, counted by reason, logged without
// the credentials.
func TestAdminToken(t *testing.T) {
	const token = "s3cr3t-admin-token-0123456789"
	dir := t.TempDir()
	_, base, logBuf := startSecuredAdmin(t, adminSettings{tokenFile: writeSecret(t, dir, "token", token+"\n")})
	cl := http.DefaultClient

	code, _, hdr := adminGetHeader(t, cl, base+"/metrics", "")
	if code != http.StatusUnauthorized {
		t.Fatalf("/metrics without a token = %d, want 401", code)
	}
	if got := strings.Join(hdr.Values("WWW-Authenticate"), ", "); !strings.Contains(got, `Bearer realm="chronik-admin"`) || !strings.Contains(got, "Basic") {
		t.Errorf("WWW-Authenticate = %q, want Bearer and Basic challenges", got)
	}
	for _, auth := range []string{
		"Bearer wrong-token-0123456789",
		"Bearer " + token + "x",
		"Bearer " + token[:len(token)-1],
		"Token " + token,
		"Basic !!!notbase64",
	} {
		if code, _ := adminGet(t, cl, base+"/metrics", auth); code != http.StatusUnauthorized {
			t.Errorf("/metrics with %q = %d, want 401", auth, code)
		}
	}
	// Every path is behind the check, known or not, so that routes added
	// later are protected and paths cannot be probed.
	for _, path := range []string{"/", "/nope", "/metrics/", "/v1/users"} {
		if code, _ := adminGet(t, cl, base+path, ""); code != http.StatusUnauthorized {
			t.Errorf("%s without a token = %d, want 401", path, code)
		}
	}
	if code, body := adminGet(t, cl, base+"/healthz", ""); code != 200 || strings.TrimSpace(body) != "ok" {
		t.Errorf("/healthz without a token = %d %q, want 200 ok (probes carry no credentials)", code, body)
	}
	if code, _ := adminGet(t, cl, base+"/readyz", ""); code != http.StatusServiceUnavailable {
		t.Errorf("/readyz without a token, not ready = %d, want 503 (open to probes)", code)
	}

	code, text := adminGet(t, cl, base+"/metrics", "Bearer "+token)
	if code != 200 {
		t.Fatalf("/metrics with the bearer token = %d", code)
	}
	if code, _ := adminGet(t, cl, base+"/metrics", "bearer "+token); code != 200 {
		t.Errorf("/metrics with scheme spelled bearer = %d, want 200 (schemes are case-insensitive)", code)
	}
	req, _ := http.NewRequest("GET", base+"/metrics", nil)
	req.SetBasicAuth("prometheus", token)
	if code, _ := adminGet(t, cl, base+"/metrics", req.Header.Get("Authorization")); code != 200 {
		t.Errorf("/metrics with basic auth = %d, want 200", code)
	}
	req.SetBasicAuth("prometheus", "wrong-password-0123456789")
	if code, _ := adminGet(t, cl, base+"/metrics", req.Header.Get("Authorization")); code != http.StatusUnauthorized {
		t.Errorf("/metrics with a wrong basic auth password = %d, want 401", code)
	}

	// The scrape above came before the later refusals; read again.
	_, text = adminGet(t, cl, base+"/metrics", "Bearer "+token)
	// missing: /metrics, 4 paths; invalid: 5 headers + 1 basic password.
	if v := metricValue(t, text, `chronik_admin_auth_failures_total{reason="missing"}`); v != 5 {
		t.Errorf("missing-credential failures = %v, want 5", v)
	}
	if v := metricValue(t, text, `chronik_admin_auth_failures_total{reason="invalid"}`); v != 6 {
		t.Errorf("invalid-credential failures = %v, want 6", v)
	}
	logged := logBuf.String()
	if !strings.Contains(logged, "admin request refused") {
		t.Errorf("no refusal logged: %q", logged)
	}
	if strings.Contains(logged, "s3cr3t") || strings.Contains(logged, "wrong-token") || strings.Contains(logged, "wrong-password") {
		t.Errorf("credentials in the log: %q", logged)
	}
	// Rate-limited: 11 refusals within a few seconds make one line.
	if n := strings.Count(logged, "admin request refused"); n != 1 {
		t.Errorf("%d refusal lines, want 1 (rate-limited)", n)
	}
}

// TestAdminMetricsPublic: --admin-metrics-public opens /metrics, nothing else.
func TestAdminMetricsPublic(t *testing.T) {
	dir := t.TempDir()
	_, base, _ := startSecuredAdmin(t, adminSettings{
		tokenFile:     writeSecret(t, dir, "token", "public-metrics-token-0123456789"),
		metricsPublic: true,
	})
	if code, body := adminGet(t, http.DefaultClient, base+"/metrics", ""); code != 200 || !strings.Contains(body, "chronik_admin_auth_failures_total") {
		t.Errorf("/metrics without a token, metrics public = %d", code)
	}
	if code, _ := adminGet(t, http.DefaultClient, base+"/users", ""); code != http.StatusUnauthorized {
		t.Errorf("/users without a token, metrics public = %d, want 401", code)
	}
}

// TestAdminNoTokenIsOpen: without a token (the loopback default) nothing
// needs credentials and nothing is counted.
func TestAdminNoTokenIsOpen(t *testing.T) {
	_, base, _ := startSecuredAdmin(t, adminSettings{})
	code, text := adminGet(t, http.DefaultClient, base+"/metrics", "")
	if code != 200 {
		t.Fatalf("/metrics = %d", code)
	}
	if v := metricValue(t, text, `chronik_admin_auth_failures_total{reason="missing"}`); v != 0 {
		t.Errorf("failures counted without a token: %v", v)
	}
}

// TestAdminTLS: with a certificate the admin listener speaks only HTTPS,
// TLS 1.2 or later; SIGHUP's reload swaps certificate and token in place.
func TestAdminTLS(t *testing.T) {
	pki := newCLIPKI(t)
	certFile, keyFile := pki.issue("admin", "admin-1", []string{"localhost"}, net.ParseIP("127.0.0.1"))
	tokenFile := writeSecret(t, pki.dir, "token", "tls-admin-token-0123456789")
	adm, base, logBuf := startSecuredAdmin(t, adminSettings{certFile: certFile, keyFile: keyFile, tokenFile: tokenFile})
	if !strings.HasPrefix(base, "https://") {
		t.Fatalf("base %s", base)
	}
	newClient := func(cfg *tls.Config) *http.Client {
		return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: cfg, DisableKeepAlives: true}}
	}
	cl := newClient(&tls.Config{RootCAs: pki.pool()})
	if code, _ := adminGet(t, cl, base+"/metrics", "Bearer tls-admin-token-0123456789"); code != 200 {
		t.Fatalf("/metrics over TLS with the token = %d", code)
	}
	if code, _ := adminGet(t, cl, base+"/metrics", ""); code != http.StatusUnauthorized {
		t.Errorf("/metrics over TLS without the token = %d, want 401", code)
	}
	// Plain HTTP to the TLS port gets Go's 400, never the endpoint.
	if code, body := adminGet(t, http.DefaultClient, "http"+strings.TrimPrefix(base, "https")+"/healthz", ""); code != http.StatusBadRequest {
		t.Errorf("plain HTTP to the TLS listener = %d %q, want 400", code, body)
	}
	// A client that stops at TLS 1.1 is refused in the handshake.
	old := newClient(&tls.Config{RootCAs: pki.pool(), MaxVersion: tls.VersionTLS11})
	if resp, err := old.Get(base + "/healthz"); err == nil {
		resp.Body.Close()
		t.Errorf("TLS 1.1 client served (%d), want a handshake failure", resp.StatusCode)
	}
	// An unknown CA is refused by the client.
	if resp, err := newClient(&tls.Config{}).Get(base + "/healthz"); err == nil {
		resp.Body.Close()
		t.Errorf("a client without the test CA trusted the admin certificate")
	}

	// Reload: a renewed certificate (new subject) and a rotated token
	// apply to the next connection without a restart.
	newCert, newKey := pki.issue("admin2", "admin-2", []string{"localhost"}, net.ParseIP("127.0.0.1"))
	for _, cp := range [][2]string{{newCert, certFile}, {newKey, keyFile}} {
		data, err := os.ReadFile(cp[0])
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(cp[1], data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	writeSecret(t, pki.dir, "token", "rotated-admin-token-0123456789\n")
	adm.reload(zerolog.New(logBuf))
	req, _ := http.NewRequest("GET", base+"/metrics", nil)
	req.Header.Set("Authorization", "Bearer rotated-admin-token-0123456789")
	resp, err := cl.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.TLS == nil || resp.TLS.PeerCertificates[0].Subject.CommonName != "admin-2" {
		t.Errorf("after reload: %d, certificate %v; want 200 and CN admin-2", resp.StatusCode, resp.TLS.PeerCertificates[0].Subject)
	}
	if code, _ := adminGet(t, cl, base+"/metrics", "Bearer tls-admin-token-0123456789"); code != http.StatusUnauthorized {
		t.Errorf("the replaced token still works after reload: %d", code)
	}
	// A broken file on reload keeps what was loaded.
	writeSecret(t, pki.dir, "token", "short\n")
	adm.reload(zerolog.New(logBuf))
	if code, _ := adminGet(t, cl, base+"/metrics", "Bearer rotated-admin-token-0123456789"); code != 200 {
		t.Errorf("a bad token file on reload dropped the working token: %d", code)
	}
	if !strings.Contains(logBuf.String(), "admin token not reloaded") {
		t.Errorf("bad token file on reload not logged: %s", logBuf.String())
	}
}

// TestAdminSettings: serveConfig refuses an admin listener other hosts can
// reach without a token and TLS (unless admin-insecure), and bad files.
func TestAdminSettings(t *testing.T) {
	pki := newCLIPKI(t)
	cert, key := pki.issue("admin", "admin", []string{"localhost"})
	token := writeSecret(t, pki.dir, "token", "settings-token-0123456789\n")
	short := writeSecret(t, pki.dir, "short", "hunter2\n")
	spaced := writeSecret(t, pki.dir, "spaced", "two words-0123456789\n")
	for _, tc := range []struct {
		name string
		args []string
		want string // "" accepted
	}{
		{"loopback default", nil, ""},
		{"loopback localhost", []string{"--admin-listen", "localhost:9644"}, ""},
		{"loopback ipv6", []string{"--admin-listen", "[::1]:9644"}, ""},
		{"disabled", []string{"--admin-listen", ""}, ""},
		{"all interfaces without token", []string{"--admin-listen", ":9644"},
			"admin-listen: :9644 listens on every interface but admin-token-file is not set"},
		{"0.0.0.0 without token", []string{"--admin-listen", "0.0.0.0:9644"}, "admin-token-file is not set"},
		{"one address without token", []string{"--admin-listen", "192.0.2.7:9644"},
			"admin-listen: 192.0.2.7:9644 is reachable from other hosts but admin-token-file is not set"},
		{"hostname without token", []string{"--admin-listen", "broker1.example:9644"}, "admin-token-file is not set"},
		{"token without TLS", []string{"--admin-listen", "0.0.0.0:9644", "--admin-token-file", token},
			"has no TLS: the token would cross the network in clear"},
		{"metrics public does not open the rest", []string{"--admin-listen", "0.0.0.0:9644", "--admin-metrics-public"}, "admin-token-file is not set"},
		{"token and TLS", []string{"--admin-listen", "0.0.0.0:9644", "--admin-token-file", token,
			"--admin-tls-cert-file", cert, "--admin-tls-key-file", key}, ""},
		{"insecure lab", []string{"--admin-listen", "0.0.0.0:9644", "--admin-insecure"}, ""},
		{"cert without key", []string{"--admin-tls-cert-file", cert}, "admin-tls-cert-file and admin-tls-key-file: give both or neither"},
		{"key without cert", []string{"--admin-tls-key-file", key}, "give both or neither"},
		{"cert and key swapped", []string{"--admin-tls-cert-file", key, "--admin-tls-key-file", cert}, "admin-tls-cert-file " + key},
		{"missing cert", []string{"--admin-tls-cert-file", filepath.Join(pki.dir, "none.pem"), "--admin-tls-key-file", key}, "none.pem"},
		{"missing token file", []string{"--admin-token-file", filepath.Join(pki.dir, "none")}, "admin-token-file: open " + filepath.Join(pki.dir, "none")},
		{"short token", []string{"--admin-token-file", short}, "the token has 7 characters, at least 16"},
		{"token with a space", []string{"--admin-token-file", spaced}, "contains whitespace"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, code, msg := resolveOnly(t, tc.args...)
			if tc.want == "" {
				if code != 0 {
					t.Errorf("exit %d: %s", code, msg)
				}
				return
			}
			if code != 2 || !strings.Contains(msg, tc.want) {
				t.Errorf("exit %d, message %q; want 2 and %q", code, msg, tc.want)
			}
			if strings.Contains(msg, "hunter2") || strings.Contains(msg, "settings-token") {
				t.Errorf("a token in the message: %q", msg)
			}
		})
	}
	t.Run("from the config file", func(t *testing.T) {
		_, _, code, msg := resolveOnly(t, "--config", writeConfig(t, fmt.Sprintf(
			"admin_listen: 0.0.0.0:9644\nadmin_token_file: %s\nadmin_tls_cert_file: %s\nadmin_tls_key_file: %s\nadmin_metrics_public: true\n", token, cert, key)))
		if code != 0 {
			t.Errorf("exit %d: %s", code, msg)
		}
	})
}

// TestServeAdminSecured runs `chronik serve` with a token and TLS on the
// admin listener: the settings reach it, and SIGHUP rotates the token.
func TestServeAdminSecured(t *testing.T) {
	pki := newCLIPKI(t)
	cert, key := pki.issue("admin", "admin", []string{"localhost"}, net.ParseIP("127.0.0.1"))
	dir := t.TempDir()
	token := writeSecret(t, dir, "token", "serve-admin-token-0123456789\n")
	var stdout, stderr syncBuffer
	exited := make(chan int, 1)
	go func() {
		exited <- run([]string{"chronik", "serve", "--data-dir", filepath.Join(dir, "data"),
			"--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0", "--log-format", "json",
			"--admin-token-file", token, "--admin-tls-cert-file", cert, "--admin-tls-key-file", key}, &stdout, &stderr)
	}()
	// Signals only once serve handles them: after "chronik ready".
	var base string
	for i := 0; i < 400 && (base == "" || !strings.Contains(stderr.String(), `"chronik ready"`)); i++ {
		for _, line := range strings.Split(stderr.String(), "\n") {
			if strings.Contains(line, `"admin listener up"`) {
				_, rest, _ := strings.Cut(line, `"admin_listen":"`)
				addr, _, _ := strings.Cut(rest, `"`)
				base = "https://" + addr
			}
		}
		select {
		case code := <-exited:
			t.Fatalf("serve exited %d: %s", code, stderr.String())
		case <-time.After(50 * time.Millisecond):
		}
	}
	if base == "" || !strings.Contains(stderr.String(), `"chronik ready"`) {
		t.Fatalf("no admin listener or not ready: %s", stderr.String())
	}
	if !strings.Contains(stderr.String(), `"tls":true,"token":true`) {
		t.Errorf("admin listener line does not say TLS and token: %s", stderr.String())
	}
	cl := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pki.pool()}, DisableKeepAlives: true}}
	if code, _ := adminGet(t, cl, base+"/metrics", ""); code != http.StatusUnauthorized {
		t.Errorf("/metrics without the token = %d, want 401", code)
	}
	if code, _ := adminGet(t, cl, base+"/metrics", "Bearer serve-admin-token-0123456789"); code != 200 {
		t.Errorf("/metrics with the token = %d, want 200", code)
	}
	writeSecret(t, dir, "token", "rotated-serve-token-0123456789\n")
	syscall.Kill(os.Getpid(), syscall.SIGHUP)
	rotated := false
	for i := 0; i < 200 && !rotated; i++ {
		rotated = strings.Contains(stderr.String(), "admin token reloaded")
		time.Sleep(50 * time.Millisecond)
	}
	if !rotated {
		t.Fatalf("SIGHUP did not reload the admin token: %s", stderr.String())
	}
	if code, _ := adminGet(t, cl, base+"/metrics", "Bearer rotated-serve-token-0123456789"); code != 200 {
		t.Errorf("/metrics with the rotated token = %d, want 200", code)
	}
	if strings.Contains(stderr.String(), "serve-admin-token") || strings.Contains(stderr.String(), "rotated-serve-token") {
		t.Errorf("a token in the serve log: %s", stderr.String())
	}
	syscall.Kill(os.Getpid(), syscall.SIGTERM)
	select {
	case code := <-exited:
		if code != 0 {
			t.Errorf("serve exited %d: %s", code, stderr.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("serve did not exit after SIGTERM")
	}
}
