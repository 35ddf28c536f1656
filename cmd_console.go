package main

import (
	"context"
	"crypto/rand"
	"embed"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"

	"github.com/chronik-stream/chronik/broker"
)

// The web console (issue 18, item 1): plain HTML/CSS/JS pages under /ui/,
// embedded in the binary from packaging/console, and the JSON API under
// /v1/console/ they read. Both sit on the admin mux, so the admin token
// (cmd_admin_auth.go) protects them like every other route; a browser
// sends the token as basic auth (any user name, the token as password),
// which the admin listener already accepts.
//
// Security of the pages:
//   - Same origin only: no CORS headers are ever sent, so another origin's
//     script cannot read an answer, nor send a write (every write needs a
//     custom header, which a cross-origin request may only carry after a
//     CORS preflight that is never granted).
//   - CSRF: a browser that has the admin token cached as basic auth sends
//     it with any request to this origin, so writes must prove they come
//     from a console page. Every write (POST, PUT, DELETE under
//     /v1/console/) needs the header X-Chronik-CSRF equal to the
//     chronik_csrf cookie (SameSite=Strict) that GET /ui/ sets: the
//     "double submit" pattern. The header alone stops cross-origin pages
//     (preflight); the cookie ties it to a page this listener served.
//     Writes with an Origin other than this listener's, or with
//     Sec-Fetch-Site other than same-origin, are refused first. The
//     admin mux as a whole refuses cross-site writes (sameOriginWrites),
//     which also protects /v1/security/users from a cached token.
//   - Every answer carries a strict Content-Security-Policy (no inline
//     script or style, no other origin), nosniff, no framing. The pages
//     put record bytes into the document only as text (textContent),
//     never as HTML; the JSON encoder escapes <, > and & as well.
//   - --console-read-only refuses every console write with 403.
//
// Memory: the message browser reads one page of at most consolePageMax
// records and consolePageBytes bytes per request (cmd_console_messages.go),
// and at most consoleReaders such reads run at once.

//go:embed packaging/console
var consoleFS embed.FS

// consoleCSP forbids everything but this origin's own scripts, styles,
// images and API calls.
const consoleCSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

const (
	csrfCookie = "chronik_csrf"
	csrfHeader = "X-Chronik-CSRF"
)

// console is the state behind the console routes.
type console struct {
	b        func() *broker.Broker
	a        *admin
	readOnly bool
	readers  chan struct{} // semaphore of concurrent message reads
	samples  *consoleSampler
}

// consoleReaders caps concurrent message-browser reads: each holds up to
// a page (and one decompressed batch) in memory.
const consoleReaders = 4

// newConsole is the console of a; read-only is set by admin.secure.
func newConsole(a *admin) *console {
	c := &console{b: a.broker.Load, a: a, readers: make(chan struct{}, consoleReaders)}
	c.samples = newConsoleSampler(c)
	return c
}

// routes adds /ui/ and /v1/console/ to mux.
func (c *console) routes(mux *http.ServeMux) {
	assets, err := fs.Sub(consoleFS, "packaging/console")
	if err != nil {
		panic(err) // the embed pattern above guarantees the folder
	}
	files := http.FileServerFS(assets)
	mux.Handle("GET /ui/", secureHeaders(http.StripPrefix("/ui/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "" || r.URL.Path == "index.html" {
			setCSRFCookie(w, r)
		}
		files.ServeHTTP(w, r)
	}))))
	mux.Handle("GET /ui", http.RedirectHandler("/ui/", http.StatusMovedPermanently))

	read := func(pattern string, h func(http.ResponseWriter, *http.Request, *broker.Broker)) {
		mux.Handle("GET "+pattern, secureHeaders(c.withBroker(h)))
	}
	write := func(method, pattern string, h func(http.ResponseWriter, *http.Request, *broker.Broker)) {
		mux.Handle(method+" "+pattern, secureHeaders(c.checkWrite(c.withBroker(h))))
	}
	read("/v1/console/session", c.session)
	read("/v1/console/overview", c.overview)
	read("/v1/console/topics", c.topics)
	read("/v1/console/topics/{topic}", c.topic)
	write("PUT", "/v1/console/topics/{topic}/configs", c.alterConfigs)
	read("/v1/console/topics/{topic}/partitions/{partition}/messages", c.messages)
	read("/v1/console/groups", c.groups)
	read("/v1/console/groups/{group}", c.group)
	write("POST", "/v1/console/groups/{group}/reset-offsets", c.resetOffsets)
	read("/v1/console/users", c.users)
	write("POST", "/v1/console/users", c.createUser)
	write("DELETE", "/v1/console/users/{name}", c.deleteUser)
	read("/v1/console/acls", c.acls)
	write("POST", "/v1/console/acls", c.createACL)
	write("POST", "/v1/console/acls/delete", c.deleteACL)
}

// withBroker answers 503 until the broker is open.
func (c *console) withBroker(h func(http.ResponseWriter, *http.Request, *broker.Broker)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		br := c.b()
		if br == nil {
			httpError(w, http.StatusServiceUnavailable, "the broker is not open yet")
			return
		}
		h(w, r, br)
	})
}

// secureHeaders sets the headers every console answer carries.
func secureHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", consoleCSP)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Cache-Control", "no-store")
		h.Set("Cross-Origin-Opener-Policy", "same-origin")
		h.Set("Cross-Origin-Resource-Policy", "same-origin")
		next.ServeHTTP(w, r)
	})
}

// setCSRFCookie gives the page its CSRF token (kept if it has one).
func setCSRFCookie(w http.ResponseWriter, r *http.Request) {
	if ck, err := r.Cookie(csrfCookie); err == nil && len(ck.Value) == 32 {
		return
	}
	var raw [16]byte
	rand.Read(raw[:])
	http.SetCookie(w, &http.Cookie{Name: csrfCookie, Value: hex.EncodeToString(raw[:]), Path: "/",
		SameSite: http.SameSiteStrictMode, Secure: r.TLS != nil})
}

// crossSite reports why a request is not from this listener's own pages
// (Origin or Sec-Fetch-Site say another origin), or "".
func crossSite(r *http.Request) string {
	if site := r.Header.Get("Sec-Fetch-Site"); site != "" && site != "same-origin" && site != "none" {
		return "Sec-Fetch-Site: " + site
	}
	if origin := r.Header.Get("Origin"); origin != "" {
		scheme := "http"
		if r.TLS != nil {
			scheme = "https"
		}
		if origin != scheme+"://"+r.Host {
			return "Origin " + origin
		}
	}
	return ""
}

// sameOriginWrites wraps the whole admin mux: a write (any method but GET,
// HEAD, OPTIONS) that a browser marks as coming from another origin is
// refused, whatever the route. Command-line clients send neither header.
func sameOriginWrites(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.Method {
		case http.MethodGet, http.MethodHead, http.MethodOptions:
		default:
			if why := crossSite(r); why != "" {
				httpError(w, http.StatusForbidden, "cross-origin write refused ("+why+")")
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}

// checkWrite enforces read-only mode, the CSRF token and a JSON body.
func (c *console) checkWrite(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if c.readOnly {
			httpError(w, http.StatusForbidden, "the console is read-only (console-read-only is set)")
			return
		}
		if why := crossSite(r); why != "" {
			httpError(w, http.StatusForbidden, "cross-origin write refused ("+why+")")
			return
		}
		ck, err := r.Cookie(csrfCookie)
		got := r.Header.Get(csrfHeader)
		if err != nil || len(ck.Value) != 32 || got != ck.Value {
			httpError(w, http.StatusForbidden, "missing or wrong "+csrfHeader+" header (console writes must come from the console's pages)")
			return
		}
		if r.Method != http.MethodDelete && !strings.HasPrefix(r.Header.Get("Content-Type"), "application/json") {
			httpError(w, http.StatusUnsupportedMediaType, "the body must be application/json")
			return
		}
		next.ServeHTTP(w, r)
	})
}

// decodeBody reads a JSON body of at most 64 KiB into v.
func decodeBody(w http.ResponseWriter, r *http.Request, v any) bool {
	dec := json.NewDecoder(io.LimitReader(r.Body, 64<<10))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		httpError(w, http.StatusBadRequest, "body: "+err.Error())
		return false
	}
	return true
}

// answerJSON answers v as JSON (the encoder escapes <, > and &).
func answerJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(v)
}

// consoleError answers a broker error, 404 for unknown topics and groups.
func consoleError(w http.ResponseWriter, err error) {
	var ke *kerr.Error
	if errors.As(err, &ke) {
		switch ke {
		case kerr.UnknownTopicOrPartition, kerr.GroupIDNotFound:
			httpError(w, http.StatusNotFound, err.Error())
			return
		case kerr.InvalidConfig, kerr.InvalidRequest, kerr.PolicyViolation, kerr.InvalidGroupID,
			kerr.OffsetOutOfRange, kerr.NonEmptyGroup, kerr.UnknownMemberID, kerr.InvalidPartitions:
			httpError(w, http.StatusBadRequest, err.Error())
			return
		case kerr.NotLeaderForPartition:
			httpError(w, http.StatusConflict, err.Error())
			return
		}
	}
	httpBrokerError(w, err)
}

// acquireReader takes a message-read slot, waiting at most 5 seconds.
func (c *console) acquireReader(ctx context.Context) (func(), error) {
	t := time.NewTimer(5 * time.Second)
	defer t.Stop()
	select {
	case c.readers <- struct{}{}:
		return func() { <-c.readers }, nil
	case <-t.C:
		return nil, fmt.Errorf("%d message reads are running; try again", consoleReaders)
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// session tells the pages what they may do.
func (c *console) session(w http.ResponseWriter, r *http.Request, br *broker.Broker) {
	answerJSON(w, 200, map[string]any{
		"read_only":  c.readOnly,
		"node_id":    br.Config().NodeID,
		"cluster_id": br.ClusterID(),
		"version":    version,
		"authorizer": br.AuthorizerEnabled(),
	})
}
