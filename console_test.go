package main

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/twmb/franz-go/pkg/kgo"
)

// TestConsoleReadAPI reads every console route against a broker with
// data: overview, topics, topic page, message pages from an offset, a
// timestamp and the end, a key filter, groups and users/ACLs.
func TestConsoleReadAPI(t *testing.T) {
	env := startConsoleEnv(t, false)
	c := newConsoleClient(t, env.base)

	var ov struct {
		NodeID     int32         `json:"node_id"`
		Ready      bool          `json:"ready"`
		Controller int32         `json:"controller"`
		Nodes      []ConsoleNode `json:"nodes"`
		Disks      []struct {
			Dir       string `json:"dir"`
			UsedBytes int64  `json:"used_bytes"`
		} `json:"disks"`
		Throughput map[string]any `json:"throughput"`
	}
	c.get("/v1/console/overview", &ov)
	if !ov.Ready || ov.Controller != 0 || len(ov.Nodes) != 1 || !ov.Nodes[0].This || !ov.Nodes[0].Alive ||
		len(ov.Disks) != 1 || ov.Disks[0].UsedBytes <= 0 || ov.Throughput["in_series"] == nil {
		t.Errorf("overview: %+v", ov)
	}

	var topics struct{ Topics []ConsoleTopic }
	c.get("/v1/console/topics", &topics)
	var orders *ConsoleTopic
	for i := range topics.Topics {
		if topics.Topics[i].Name == "orders" {
			orders = &topics.Topics[i]
		}
	}
	if orders == nil || orders.Partitions != 2 || orders.SizeBytes <= 0 || orders.Cleanup != "delete" || orders.Retention == "" {
		t.Fatalf("topics: %+v", topics)
	}

	var tp struct {
		Partitions []ConsolePartition
		Configs    []ConsoleConfig
	}
	c.get("/v1/console/topics/orders", &tp)
	if len(tp.Partitions) != 2 || tp.Partitions[0].HighWatermark != 120 || tp.Partitions[1].HighWatermark != 1 ||
		!tp.Partitions[0].LeaderHere || !tp.Partitions[0].Hosted || len(tp.Configs) < 5 {
		t.Errorf("topic page: %+v", tp)
	}

	page := func(q string) ConsolePage {
		t.Helper()
		var pg ConsolePage
		c.get("/v1/console/topics/orders/partitions/0/messages?"+q, &pg)
		return pg
	}
	pg := page("from=offset&offset=0&limit=8")
	if len(pg.Records) != 8 || pg.Records[0].Offset != 0 || pg.NextOffset != 8 || pg.Stopped != "limit" || pg.HighWatermark != 120 {
		t.Fatalf("page from 0: %+v", pg)
	}
	r0, r1, r2, r3 := pg.Records[0], pg.Records[1], pg.Records[2], pg.Records[3]
	if r0.Value.Encoding != "json" || !strings.Contains(r0.Value.Text, "\n  \"items\": [") || r0.Key.Text != "user-0" ||
		len(r0.Headers) != 1 || r0.Headers[0].Key != "trace" || r0.Headers[0].Value.Text != "t0" || r0.Timestamp != 1_700_000_000_000 {
		t.Errorf("JSON record: %+v", r0)
	}
	if r1.Value.Encoding != "text" || r1.Value.Text != "plain text 1" {
		t.Errorf("text record: %+v", r1)
	}
	if r2.Value.Encoding != "hex" || r2.Value.Text != "000102fffe02" {
		t.Errorf("binary record: %+v", r2)
	}
	if r3.Value.Text != consoleHTML || r3.Value.Encoding != "text" {
		t.Errorf("HTML record: %+v", r3)
	}
	// The raw answer never carries the markup as such.
	raw := c.get("/v1/console/topics/orders/partitions/0/messages?offset=3&limit=1", nil)
	if strings.Contains(string(raw), "<script") || !strings.Contains(string(raw), `\u003cscript\u003e`) {
		t.Errorf("the HTML record is not escaped in the JSON answer: %s", raw)
	}

	// From the middle, from a timestamp, from the end.
	if pg := page("offset=60&limit=5"); len(pg.Records) != 5 || pg.Records[0].Offset != 60 {
		t.Errorf("page from 60: %+v", pg)
	}
	if pg := page(fmt.Sprintf("from=timestamp&timestamp=%d&limit=3", 1_700_000_000_000+90_500)); len(pg.Records) != 3 || pg.Records[0].Offset != 91 {
		t.Errorf("page from a timestamp: first offset %v, want 91: %+v", pg.StartOffset, pg.Records)
	}
	if pg := page("from=timestamp&timestamp=9999999999999"); len(pg.Records) != 0 || pg.Stopped != "end" {
		t.Errorf("page from a future timestamp: %+v", pg)
	}
	if pg := page("from=end&limit=10"); len(pg.Records) != 10 || pg.Records[0].Offset != 110 || pg.Records[9].Offset != 119 || pg.NextOffset != 120 {
		t.Errorf("page from the end: %+v", pg)
	}
	if pg := page("offset=120"); len(pg.Records) != 0 || pg.NextOffset != 120 {
		t.Errorf("page at the high watermark: %+v", pg)
	}
	// Key filter: user-3 is every 7th record from 3.
	pg = page("key=user-3&limit=500")
	if len(pg.Records) != 17 || pg.Stopped != "end" {
		t.Errorf("key filter: %d records (%s), want 17", len(pg.Records), pg.Stopped)
	}
	for _, r := range pg.Records {
		if r.Key.Text != "user-3" {
			t.Errorf("key filter let %+v through", r.Key)
		}
	}
	var p1 ConsolePage
	c.get("/v1/console/topics/orders/partitions/1/messages", &p1)
	if len(p1.Records) != 1 || p1.Records[0].Key.Text != consoleHTML {
		t.Errorf("partition 1: %+v", p1)
	}

	var groups struct{ Groups []ConsoleGroup }
	c.get("/v1/console/groups", &groups)
	if len(groups.Groups) != 1 || groups.Groups[0].Group != "billing" || groups.Groups[0].Lag != 21 || groups.Groups[0].State != "Empty" {
		t.Errorf("groups: %+v", groups)
	}
	var g struct {
		State      string
		Offsets    []ConsoleGroupOffset
		Lag        int64
		LagSamples []int64 `json:"lag_samples"`
		CanReset   bool    `json:"can_reset"`
	}
	// The sampler runs every 100 ms here: wait for a sample.
	for i := 0; ; i++ {
		c.get("/v1/console/groups/billing", &g)
		if len(g.LagSamples) > 0 {
			break
		}
		if i > 100 {
			t.Fatalf("no lag sample in 10 s: %+v", g)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if g.Lag != 21 || len(g.Offsets) != 2 || g.Offsets[0].Lag != 20 || g.Offsets[1].Lag != 1 || !g.CanReset || g.LagSamples[len(g.LagSamples)-1] != 21 {
		t.Errorf("group: %+v", g)
	}
	var users struct{ Users []UserInfo }
	c.get("/v1/console/users", &users)
	var acls struct{ ACLs []ConsoleACL }
	c.get("/v1/console/acls", &acls)
	if len(users.Users) != 0 || len(acls.ACLs) != 0 {
		t.Errorf("users %+v, acls %+v", users, acls)
	}
}

// TestConsoleHostileReads: bad offsets, huge pages, unknown topics and
// partitions, bad parameters: each a clear 4xx, never a page.
func TestConsoleHostileReads(t *testing.T) {
	env := startConsoleEnv(t, false)
	c := newConsoleClient(t, env.base)
	msgs := "/v1/console/topics/orders/partitions/0/messages?"
	for _, tc := range []struct {
		path string
		code int
		want string
	}{
		{msgs + "offset=-1", 400, "offset"},
		{msgs + "offset=abc", 400, "offset"},
		{msgs + "offset=121", 400, "OFFSET_OUT_OF_RANGE"},
		{msgs + "offset=9223372036854775807", 400, "OFFSET_OUT_OF_RANGE"},
		{msgs + "offset=99999999999999999999", 400, "offset"},
		{msgs + "limit=0", 400, "limit"},
		{msgs + "limit=501", 400, "limit"},
		{msgs + "limit=1000000000", 400, "limit"},
		{msgs + "from=middle", 400, "from"},
		{msgs + "from=timestamp", 400, "timestamp"},
		{msgs + "from=timestamp&timestamp=-5", 400, "timestamp"},
		{msgs + "key=" + strings.Repeat("k", 2000), 400, "key"},
		{"/v1/console/topics/nope/partitions/0/messages", 404, "does not exist"},
		{"/v1/console/topics/orders/partitions/7/messages", 404, "UNKNOWN_TOPIC_OR_PARTITION"},
		{"/v1/console/topics/orders/partitions/-1/messages", 400, "partition"},
		{"/v1/console/topics/orders/partitions/x/messages", 400, "partition"},
		{"/v1/console/topics/" + url.PathEscape("<script>") + "", 404, "does not exist"},
		{"/v1/console/groups/nope", 404, "does not exist"},
	} {
		c.wantCode("GET", tc.path, nil, false, tc.code, tc.want)
	}
	// The read semaphore: with every slot taken, a read waits, and gives
	// up when its context ends.
	for range consoleReaders {
		env.adm.console.readers <- struct{}{}
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := env.adm.console.acquireReader(ctx); err == nil {
		t.Error("a read got a slot with all taken")
	}
	for range consoleReaders {
		<-env.adm.console.readers
	}
}

// TestConsoleWrites: config changes and offset resets need the CSRF
// header and cookie, a same-origin request and a JSON body; they go
// through the broker's own validation; a reset needs a group without
// members and shows its plan first.
func TestConsoleWrites(t *testing.T) {
	env := startConsoleEnv(t, false)
	c := newConsoleClient(t, env.base)
	cfg := "/v1/console/topics/orders/configs"
	set := map[string]any{"set": map[string]string{"retention.ms": "3600000"}}

	c.wantCode("PUT", cfg, set, false, 403, csrfHeader)
	// A wrong token.
	good := c.csrf
	c.csrf = strings.Repeat("0", 32)
	c.wantCode("PUT", cfg, set, true, 403, csrfHeader)
	c.csrf = good
	// Another origin, as a browser marks it.
	c.hdr.Set("Origin", "http://evil.example")
	c.wantCode("PUT", cfg, set, true, 403, "cross-origin")
	c.hdr.Del("Origin")
	c.hdr.Set("Sec-Fetch-Site", "cross-site")
	c.wantCode("PUT", cfg, set, true, 403, "cross-origin")
	c.hdr.Set("Sec-Fetch-Site", "same-site") // another port or subdomain
	c.wantCode("PUT", cfg, set, true, 403, "cross-origin")
	c.hdr.Del("Sec-Fetch-Site")
	// The same refusal protects the older admin routes.
	c.hdr.Set("Origin", "http://evil.example")
	c.wantCode("POST", "/v1/security/users", map[string]string{"username": "mallory", "password": "x"}, false, 403, "cross-origin")
	c.hdr.Del("Origin")
	// Not JSON (a form post).
	code, raw, _ := c.doRaw("PUT", cfg, "retention.ms=1", "application/x-www-form-urlencoded")
	if code != 415 {
		t.Errorf("form body: %d %s", code, raw)
	}

	// A same-origin write with the token.
	c.hdr.Set("Origin", env.base)
	c.hdr.Set("Sec-Fetch-Site", "same-origin")
	c.wantCode("PUT", cfg, set, true, 200, `"changed":1`)
	if cfgs, _ := env.b.TopicConfigs("orders"); consoleConfigValue(cfgs, "retention.ms") != "3600000" {
		t.Errorf("retention.ms after the change: %q", consoleConfigValue(cfgs, "retention.ms"))
	}
	// The broker's validation: a bad value, an unknown config, a read-only one.
	c.wantCode("PUT", cfg, map[string]any{"set": map[string]string{"retention.ms": "soon"}}, true, 400, "INVALID_CONFIG")
	c.wantCode("PUT", cfg, map[string]any{"set": map[string]string{"no.such.config": "1"}}, true, 400, "no.such.config")
	c.wantCode("PUT", cfg, map[string]any{"set": map[string]string{}}, true, 400, "nothing to change")
	c.wantCode("PUT", cfg, map[string]any{"sett": 1}, true, 400, "unknown field")
	c.wantCode("PUT", "/v1/console/topics/nope/configs", set, true, 404, "does not exist")
	c.wantCode("PUT", cfg, map[string]any{"delete": []string{"retention.ms"}}, true, 200, `"changed":1`)
	if cfgs, _ := env.b.TopicConfigs("orders"); consoleConfigValue(cfgs, "retention.ms") == "3600000" {
		t.Error("retention.ms not back to its default")
	}

	// Offset reset: the plan, then the reset.
	reset := "/v1/console/groups/billing/reset-offsets"
	c.wantCode("POST", reset, map[string]any{"to": "sideways"}, true, 400, "to:")
	c.wantCode("POST", reset, map[string]any{"to": "timestamp", "timestamp": -1}, true, 400, "timestamp")
	c.wantCode("POST", reset, map[string]any{"to": "earliest"}, false, 403, csrfHeader)
	var plan struct {
		DryRun bool `json:"dry_run"`
		Plan   []ConsoleReset
	}
	decodeInto(t, c, "POST", reset, map[string]any{"to": "earliest", "dry_run": true}, &plan)
	if !plan.DryRun || len(plan.Plan) != 2 || plan.Plan[0].From != 100 || plan.Plan[0].To != 0 {
		t.Errorf("dry run: %+v", plan)
	}
	if offs, _, _ := groupOffsets(env.b, "billing"); offs[0].Committed != 100 {
		t.Errorf("the dry run changed the offsets: %+v", offs)
	}
	decodeInto(t, c, "POST", reset, map[string]any{"to": "timestamp", "timestamp": 1_700_000_000_000 + 50_000, "topics": []string{"orders"}}, &plan)
	if plan.DryRun || len(plan.Plan) != 2 || plan.Plan[0].To != 50 || plan.Plan[0].Error != "" || plan.Plan[1].To != 0 {
		t.Errorf("reset to a timestamp: %+v", plan)
	}
	if offs, _, _ := groupOffsets(env.b, "billing"); offs[0].Committed != 50 || offs[1].Committed != 0 {
		t.Errorf("offsets after the reset: %+v", offs)
	}
	decodeInto(t, c, "POST", reset, map[string]any{"to": "latest"}, &plan)
	if offs, _, _ := groupOffsets(env.b, "billing"); offs[0].Committed != 120 {
		t.Errorf("offsets after the reset to latest: %+v", offs)
	}

	// A group with an active member cannot be reset.
	cons, err := kgo.NewClient(kgo.SeedBrokers(env.kafkaAddr), kgo.ConsumerGroup("live"), kgo.ConsumeTopics("plain"))
	if err != nil {
		t.Fatal(err)
	}
	defer cons.Close()
	for i := 0; ; i++ {
		ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
		cons.PollFetches(ctx)
		cancel()
		if d, _ := env.b.DescribeGroup("live"); len(d.Members) > 0 {
			break
		}
		if i > 60 {
			t.Fatal("the consumer did not join group live in 30 s")
		}
	}
	c.wantCode("POST", "/v1/console/groups/live/reset-offsets", map[string]any{"to": "earliest", "dry_run": true}, true, 409, "no active members")

	// Users and ACLs.
	c.wantCode("POST", "/v1/console/users", map[string]any{"username": "alice", "password": "pw-alice"}, true, 201, "")
	c.wantCode("POST", "/v1/console/users", map[string]any{"username": "alice", "password": "pw"}, true, 409, "exists")
	c.wantCode("DELETE", "/v1/console/users/alice", nil, false, 403, csrfHeader)
	c.wantCode("DELETE", "/v1/console/users/alice", nil, true, 204, "")
	c.wantCode("DELETE", "/v1/console/users/alice", nil, true, 404, "does not exist")
	acl := map[string]string{"resource_type": "TOPIC", "resource_name": "orders", "pattern_type": "LITERAL",
		"principal": "User:bob", "host": "*", "operation": "READ", "permission": "ALLOW"}
	c.wantCode("POST", "/v1/console/acls", acl, true, 201, "")
	var acls struct{ ACLs []ConsoleACL }
	c.get("/v1/console/acls", &acls)
	if len(acls.ACLs) != 1 || acls.ACLs[0].Principal != "User:bob" || acls.ACLs[0].Operation != "READ" {
		t.Errorf("acls: %+v", acls)
	}
	bad := map[string]string{"resource_type": "ANY", "resource_name": "x", "pattern_type": "LITERAL", "principal": "User:x", "operation": "READ", "permission": "ALLOW"}
	c.wantCode("POST", "/v1/console/acls", bad, true, 400, "resource_type")
	c.wantCode("POST", "/v1/console/acls/delete", acl, true, 200, `"deleted":1`)
	c.wantCode("POST", "/v1/console/acls/delete", acl, true, 404, "no such ACL")
}

// decodeInto sends a write with the CSRF header, wants 200 and decodes.
func decodeInto(t *testing.T, c *consoleClient, method, path string, body, v any) {
	t.Helper()
	code, raw, _ := c.do(method, path, body, true)
	if code != 200 {
		t.Fatalf("%s %s: %d %s", method, path, code, raw)
	}
	if err := jsonUnmarshal(raw, v); err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
}

// TestConsoleReadOnly: with console-read-only every write is refused,
// even with the CSRF token; reads work.
func TestConsoleReadOnly(t *testing.T) {
	env := startConsoleEnv(t, true)
	c := newConsoleClient(t, env.base)
	c.wantCode("PUT", "/v1/console/topics/orders/configs", map[string]any{"set": map[string]string{"retention.ms": "1"}}, true, 403, "read-only")
	c.wantCode("POST", "/v1/console/groups/billing/reset-offsets", map[string]any{"to": "earliest"}, true, 403, "read-only")
	c.wantCode("POST", "/v1/console/users", map[string]any{"username": "a", "password": "b"}, true, 403, "read-only")
	c.wantCode("POST", "/v1/console/acls", map[string]any{}, true, 403, "read-only")
	var s struct {
		ReadOnly bool `json:"read_only"`
	}
	c.get("/v1/console/session", &s)
	if !s.ReadOnly {
		t.Error("session does not say read-only")
	}
	if offs, _, _ := groupOffsets(env.b, "billing"); offs[0].Committed != 100 {
		t.Errorf("offsets changed in read-only mode: %+v", offs)
	}
}

// TestConsoleAuthAndHeaders: with an admin token, /ui/ and every console
// route need it; answers carry the CSP and friends.
func TestConsoleAuthAndHeaders(t *testing.T) {
	env := startConsoleEnv(t, false)
	env.adm.auth.setToken("console-test-token-0123456789")
	for _, p := range []string{"/ui/", "/ui/app.js", "/v1/console/overview", "/v1/console/topics/orders/partitions/0/messages"} {
		if code, _ := httpGet(t, env.base+p); code != 401 {
			t.Errorf("GET %s without the token: %d, want 401", p, code)
		}
	}
	c := &consoleClient{t: t, base: env.base, hc: newJarClient(), hdr: map[string][]string{}}
	c.hdr.Set("Authorization", "Basic "+basic("console", "console-test-token-0123456789"))
	for _, p := range []string{"/ui/", "/ui/app.js", "/ui/style.css", "/v1/console/overview"} {
		code, _, h := c.do("GET", p, nil, false)
		if code != 200 {
			t.Errorf("GET %s with the token: %d", p, code)
		}
		if h.Get("Content-Security-Policy") != consoleCSP || h.Get("X-Content-Type-Options") != "nosniff" ||
			h.Get("X-Frame-Options") != "DENY" || h.Get("Access-Control-Allow-Origin") != "" {
			t.Errorf("GET %s: headers %v", p, h)
		}
	}
	c.hc = newJarClient() // no cookie yet
	code, raw, h := c.do("GET", "/ui/", nil, false)
	if code != 200 || !strings.Contains(h.Get("Set-Cookie"), "SameSite=Strict") || strings.Contains(string(raw), "<script>") {
		t.Errorf("GET /ui/: %d %v (inline scripts are not allowed)", code, h)
	}
}

// FuzzConsoleShowBytes: any bytes are shown as null, JSON, text or hex,
// within the display bound, and text is valid UTF-8.
func FuzzConsoleShowBytes(f *testing.F) {
	for _, s := range []string{"", "{}", `{"a":[1,2]}`, "plain", "\x00\xff", consoleHTML, "é", strings.Repeat("x", consoleValueMax+3)} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		out := showBytes(b)
		switch out.Encoding {
		case "json", "text", "hex":
		default:
			t.Fatalf("encoding %q", out.Encoding)
		}
		if out.Size != len(b) || len(out.Text) > 4*consoleValueMax {
			t.Fatalf("size %d of %d, text %d", out.Size, len(b), len(out.Text))
		}
		if out.Encoding == "text" && !out.Truncated && !utf8.ValidString(out.Text) {
			t.Fatalf("text not UTF-8: %q", out.Text)
		}
	})
}

// FuzzConsolePageQuery: any query string parses or fails; what parses
// is within bounds.
func FuzzConsolePageQuery(f *testing.F) {
	for _, s := range []string{"", "from=end&limit=500", "offset=-1", "from=timestamp&timestamp=1", "limit=0&key=%00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, q string) {
		r := &http.Request{URL: &url.URL{RawQuery: q}}
		pq, err := parsePageQuery(r)
		if err != nil {
			return
		}
		if pq.limit < 1 || pq.limit > consolePageMax || len(pq.key) > 1024 || pq.timestamp < 0 || pq.offset < -1 {
			t.Fatalf("parsed out of bounds: %+v", pq)
		}
	})
}

// TestConsoleServeFlags runs `chronik serve` with an admin token and
// --console-read-only: the pages need the token, reads work with it, and
// a write with the CSRF token is refused as read-only.
func TestConsoleServeFlags(t *testing.T) {
	dir := t.TempDir()
	addrs := freeAddrs(t, 2)
	kafkaAddr, adminAddr := addrs[0], addrs[1]
	token := writeSecret(t, dir, "token", "console-serve-token-0123456789\n")
	serveInProcess(t, []string{"chronik", "serve", "--data-dir", filepath.Join(dir, "data"),
		"--listen", kafkaAddr, "--admin-listen", adminAddr, "--admin-token-file", token,
		"--console-read-only", "--log-format", "json"}, adminAddr)
	ok(t, "", "topic", "create", "t1", "--brokers="+kafkaAddr, "--partitions", "1")
	base := "http://" + adminAddr
	if code, _ := httpGet(t, base+"/ui/"); code != 401 {
		t.Errorf("GET /ui/ without the token: %d", code)
	}
	c := &consoleClient{t: t, base: base, hc: newJarClient(), hdr: http.Header{}}
	c.hdr.Set("Authorization", "Bearer console-serve-token-0123456789")
	c = func() *consoleClient { // load /ui/ for the CSRF cookie, with the token
		code, _, _ := c.do("GET", "/ui/", nil, false)
		for _, ck := range c.hc.Jar.Cookies(mustURL(t, base+"/")) {
			if ck.Name == csrfCookie {
				c.csrf = ck.Value
			}
		}
		if code != 200 || c.csrf == "" {
			t.Fatalf("GET /ui/ with the token: %d, cookie %q", code, c.csrf)
		}
		return c
	}()
	var s struct {
		ReadOnly bool `json:"read_only"`
	}
	c.get("/v1/console/session", &s)
	var tp struct{ Partitions []ConsolePartition }
	c.get("/v1/console/topics/t1", &tp)
	if !s.ReadOnly || len(tp.Partitions) != 1 {
		t.Errorf("session %+v, topic %+v", s, tp)
	}
	c.wantCode("PUT", "/v1/console/topics/t1/configs", map[string]any{"set": map[string]string{"retention.ms": "1"}}, true, 403, "read-only")
}
