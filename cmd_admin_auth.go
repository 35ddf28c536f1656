package main

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	"github.com/urfave/cli/v2"
)

// Security of the admin HTTP listener (issue 14, item 5).
//
// The listener stays on 127.0.0.1 by default and then needs nothing. Bound
// anywhere else it must have a bearer token (--admin-token-file) and TLS
// (--admin-tls-cert-file, --admin-tls-key-file), or an explicit
// --admin-insecure: a token sent over plain HTTP can be read by anyone on
// the path, and the admin listener is also where user management lives.
//
// The token check wraps the whole mux (admin.handler), so every route added
// later is protected without doing anything. Always open: /healthz and
// /readyz, because probes (Kubernetes kubelet, systemd, load balancers)
// carry no credentials and they reveal only up/ready; /readyz lists offline
// partitions (topic names, file paths) only to an authenticated caller.
// Redpanda leaves its health endpoints open for the same reason. /metrics
// names topics and groups, so it needs the token unless
// --admin-metrics-public.

// minAdminTokenLen is the shortest token accepted: `openssl rand -hex 32`
// gives 64 characters; 16 rules out words and short PINs.
const minAdminTokenLen = 16

// adminSettings are the admin listener's settings from the serve flags.
type adminSettings struct {
	addr              string // "" disables the listener
	certFile, keyFile string // both or neither: HTTPS
	tokenFile         string // "" no authentication
	metricsPublic     bool
	insecure          bool
	consoleReadOnly   bool // the web console refuses writes
}

// adminSettingsOf checks the admin settings: the address, the TLS pair,
// the token file, and that a listener reachable from other hosts is not
// left open. Called by serveConfig, so every mistake exits with status 2.
func adminSettingsOf(c *cli.Context) (adminSettings, error) {
	s := adminSettings{
		addr:          c.String("admin-listen"),
		certFile:      c.String("admin-tls-cert-file"),
		keyFile:       c.String("admin-tls-key-file"),
		tokenFile:     c.String("admin-token-file"),
		metricsPublic: c.Bool("admin-metrics-public"),
		insecure:      c.Bool("admin-insecure"),
		// Read here so that every admin setting comes from one place.
		consoleReadOnly: c.Bool("console-read-only"),
	}
	if s.addr == "" {
		return s, nil
	}
	host, _, err := net.SplitHostPort(s.addr)
	if err != nil {
		return s, fmt.Errorf("admin-listen: %q is not host:port: %v", s.addr, err)
	}
	if (s.certFile == "") != (s.keyFile == "") {
		return s, fmt.Errorf("admin-tls-cert-file and admin-tls-key-file: give both or neither (got cert %q, key %q)", s.certFile, s.keyFile)
	}
	if s.certFile != "" {
		if _, err := loadAdminCert(s.certFile, s.keyFile); err != nil {
			return s, err
		}
	}
	if s.tokenFile != "" {
		if _, err := readAdminToken(s.tokenFile); err != nil {
			return s, err
		}
	}
	if loopbackHost(host) || s.insecure {
		return s, nil
	}
	where := fmt.Sprintf("admin-listen: %s is reachable from other hosts", s.addr)
	if allInterfaces(host) {
		where = fmt.Sprintf("admin-listen: %s listens on every interface", s.addr)
	}
	if s.tokenFile == "" {
		return s, fmt.Errorf("%s but admin-token-file is not set: anyone who reaches it could use the admin endpoints. "+
			"Set admin-token-file and admin-tls-cert-file/admin-tls-key-file, bind it to 127.0.0.1, or set admin-insecure (a trusted network only)", where)
	}
	if s.certFile == "" {
		return s, fmt.Errorf("%s but has no TLS: the token would cross the network in clear. "+
			"Set admin-tls-cert-file and admin-tls-key-file, bind it to 127.0.0.1, or set admin-insecure (a trusted network only)", where)
	}
	return s, nil
}

// readAdminToken reads the token file: one token, surrounding whitespace
// (the trailing newline) ignored. The error names the file, never the token.
func readAdminToken(path string) (string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("admin-token-file: %v", err)
	}
	tok := strings.TrimSpace(string(data))
	switch {
	case tok == "":
		return "", fmt.Errorf("admin-token-file %s: empty", path)
	case strings.ContainsFunc(tok, func(r rune) bool { return r <= ' ' || r == 0x7f }):
		return "", fmt.Errorf("admin-token-file %s: the token contains whitespace or control characters (one token, e.g. from openssl rand -hex 32)", path)
	case len(tok) < minAdminTokenLen:
		return "", fmt.Errorf("admin-token-file %s: the token has %d characters, at least %d are needed (e.g. openssl rand -hex 32)", path, len(tok), minAdminTokenLen)
	}
	return tok, nil
}

// loadAdminCert reads the admin listener's PEM certificate (chain) and key.
func loadAdminCert(certFile, keyFile string) (*tls.Certificate, error) {
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("admin-tls-cert-file %s, admin-tls-key-file %s: %v", certFile, keyFile, err)
	}
	return &cert, nil
}

// adminAuth is the admin listener's live security state; SIGHUP replaces
// the token and certificate in place (admin.reload).
type adminAuth struct {
	settings adminSettings
	token    atomic.Pointer[[sha256.Size]byte] // SHA-256 of the token; nil: no authentication
	cert     atomic.Pointer[tls.Certificate]   // nil: plain HTTP
	failures *prometheus.CounterVec
	log      *zerolog.Logger // set by admin.start; nil: failures are only counted

	logMu      sync.Mutex // rate limit of failure log lines
	lastLogged time.Time
	suppressed int
}

func newAdminAuth(reg prometheus.Registerer) *adminAuth {
	a := &adminAuth{failures: prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "chronik_admin_auth_failures_total",
		Help: "Admin HTTP requests refused with 401, by reason: missing (no credentials), invalid (wrong token or malformed header).",
	}, []string{"reason"})}
	for _, r := range []string{"missing", "invalid"} {
		a.failures.WithLabelValues(r) // exported at 0 from the start
	}
	reg.MustRegister(a.failures)
	return a
}

// secure applies checked settings (adminSettingsOf) to the admin listener
// before it starts: the token and the certificate are read now.
func (a *admin) secure(s adminSettings, log zerolog.Logger) error {
	a.auth.settings = s
	a.console.readOnly = s.consoleReadOnly
	if s.tokenFile != "" {
		tok, err := readAdminToken(s.tokenFile)
		if err != nil {
			return err
		}
		a.auth.setToken(tok)
		warnIfReadableByOthers(s.tokenFile, "admin-token-file", log)
	}
	if s.certFile != "" {
		cert, err := loadAdminCert(s.certFile, s.keyFile)
		if err != nil {
			return err
		}
		a.auth.cert.Store(cert)
		warnIfReadableByOthers(s.keyFile, "admin-tls-key-file", log)
	}
	return nil
}

// reload re-reads the token and certificate files (SIGHUP). A file that
// cannot be read keeps what was loaded before, with an error logged.
func (a *admin) reload(log zerolog.Logger) {
	s := a.auth.settings
	if s.tokenFile != "" {
		if tok, err := readAdminToken(s.tokenFile); err != nil {
			log.Error().Err(err).Msg("admin token not reloaded; the previous one stays")
		} else {
			a.auth.setToken(tok)
			log.Info().Str("admin_token_file", s.tokenFile).Msg("admin token reloaded")
		}
	}
	if s.certFile != "" {
		if cert, err := loadAdminCert(s.certFile, s.keyFile); err != nil {
			log.Error().Err(err).Msg("admin TLS certificate not reloaded; the previous one stays")
		} else {
			a.auth.cert.Store(cert)
			log.Info().Str("admin_tls_cert_file", s.certFile).Msg("admin TLS certificate reloaded")
		}
	}
}

func (a *adminAuth) setToken(tok string) {
	sum := sha256.Sum256([]byte(tok))
	a.token.Store(&sum)
}

// tlsConfig is the admin listener's TLS configuration, nil for plain HTTP.
// The certificate is read through a pointer, so a reload applies to new
// connections without a restart.
func (a *adminAuth) tlsConfig() *tls.Config {
	if a.cert.Load() == nil {
		return nil
	}
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			return a.cert.Load(), nil
		},
	}
}

// public reports whether path is served without credentials.
func (a *adminAuth) public(path string) bool {
	switch path {
	case "/healthz", "/readyz":
		return true
	case "/metrics":
		return a.settings.metricsPublic
	}
	return false
}

// check returns "" when the request carries the token, else why not
// ("missing", "invalid"). Accepted: "Authorization: Bearer TOKEN", or
// basic auth with TOKEN as the password (any user name), for tools that
// only speak basic auth. Compared as SHA-256 digests in constant time, so
// neither the content nor the length of the token leaks through timing.
func (a *adminAuth) check(r *http.Request, want *[sha256.Size]byte) string {
	h := r.Header.Get("Authorization")
	if h == "" {
		return "missing"
	}
	var got string
	if scheme, rest, ok := strings.Cut(h, " "); ok && strings.EqualFold(scheme, "Bearer") {
		got = strings.TrimSpace(rest)
	} else if _, pass, ok := r.BasicAuth(); ok {
		got = pass
	} else {
		return "invalid"
	}
	sum := sha256.Sum256([]byte(got))
	if subtle.ConstantTimeCompare(sum[:], want[:]) != 1 {
		return "invalid"
	}
	return ""
}

type authenticatedKey struct{}

// authenticated reports whether the request carried the admin token, or no
// token is configured (everything is open then). Handlers of public paths
// use it to hold back details (/readyz's offline partitions).
func authenticated(r *http.Request) bool {
	ok, _ := r.Context().Value(authenticatedKey{}).(bool)
	return ok
}

// authenticate wraps the admin mux: every path but the public ones needs
// the token; a refusal is 401 with WWW-Authenticate, counted and logged
// (rate-limited, without the credentials).
func (a *adminAuth) authenticate(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		want := a.token.Load()
		reason := ""
		if want != nil {
			reason = a.check(r, want)
		}
		if reason != "" && !a.public(r.URL.Path) {
			a.failures.WithLabelValues(reason).Inc()
			a.logFailure(r, reason)
			w.Header().Add("WWW-Authenticate", `Bearer realm="chronik-admin"`)
			w.Header().Add("WWW-Authenticate", `Basic realm="chronik-admin", charset="UTF-8"`)
			http.Error(w, "401 unauthorized: this endpoint needs the admin token (Authorization: Bearer TOKEN)", http.StatusUnauthorized)
			return
		}
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), authenticatedKey{}, reason == "")))
	})
}

// adminFailureLogEvery bounds failure log lines: a scanner hammering the
// listener shows as the counter, not as a flood of lines.
const adminFailureLogEvery = 10 * time.Second

func (a *adminAuth) logFailure(r *http.Request, reason string) {
	log := a.log
	if log == nil {
		return
	}
	a.logMu.Lock()
	now := time.Now()
	if now.Sub(a.lastLogged) < adminFailureLogEvery {
		a.suppressed++
		a.logMu.Unlock()
		return
	}
	suppressed := a.suppressed
	a.suppressed, a.lastLogged = 0, now
	a.logMu.Unlock()
	log.Warn().Str("remote", r.RemoteAddr).Str("method", r.Method).Str("path", r.URL.Path).
		Str("reason", reason).Int("suppressed_since_last", suppressed).
		Msg("admin request refused: no valid admin token (chronik_admin_auth_failures_total counts them all)")
}

// warnIfReadableByOthers logs a warning when a secret file can be read by
// every user of the host.
func warnIfReadableByOthers(path, setting string, log zerolog.Logger) {
	if fi, err := os.Stat(path); err == nil && fi.Mode().Perm()&0o004 != 0 {
		log.Warn().Str(strings.ReplaceAll(setting, "-", "_"), path).Str("mode", fi.Mode().Perm().String()).
			Msg("secret file readable by every user; make it 0600 or 0640 (owner root or chronik, group chronik)")
	}
}

// zerologWriter turns net/http's error log lines (TLS handshake errors of
// scanners, mostly) into debug lines of the serve log.
type zerologWriter struct{ log zerolog.Logger }

func (w zerologWriter) Write(p []byte) (int, error) {
	w.log.Debug().Msg(strings.TrimSpace(string(p)))
	return len(p), nil
}
