package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/chronik-stream/chronik/broker"
	"github.com/chronik-stream/chronik/kafka"
)

// consoleEnv is a real broker (Kafka listener on 127.0.0.1) with the
// admin listener and its console in front, holding data: topic "orders"
// (2 partitions) with JSON, text, binary and HTML records, topic "plain",
// and group "billing" with committed offsets and no members.
type consoleEnv struct {
	base      string // http://127.0.0.1:PORT
	kafkaAddr string
	b         *broker.Broker
	adm       *admin
	cl        *kgo.Client
	// produced: per partition of "orders", how many records.
	produced [2]int
}

// consoleHTML is the hostile record value: it must reach the page as
// text.
const consoleHTML = `<script>window.__pwned=1</script><img src=x onerror="window.__pwned=2">`

func startConsoleEnv(t *testing.T, readOnly bool) *consoleEnv {
	t.Helper()
	adm := newAdmin()
	adm.console.readOnly = readOnly
	adm.console.samples.lagEvery = 100 * time.Millisecond
	addr, stopAdmin, err := adm.start("127.0.0.1:0", zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stopAdmin)
	kafkaAddr, b := startBrokerWith(t, func(bc *broker.Config, kc *kafka.Config) { kc.Metrics = adm.metrics })
	adm.setReady(b, true)
	t.Cleanup(func() { adm.setReady(nil, false) })
	env := &consoleEnv{base: "http://" + addr.String(), kafkaAddr: kafkaAddr, b: b, adm: adm}

	cl, err := kgo.NewClient(kgo.SeedBrokers(kafkaAddr), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	env.cl = cl
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	kc := kadm.NewClient(cl)
	for name, parts := range map[string]int32{"orders": 2, "plain": 1} {
		if resp, err := kc.CreateTopic(ctx, parts, 1, nil, name); err != nil || resp.Err != nil {
			t.Fatalf("create %s: %v %v", name, err, resp.Err)
		}
	}
	var recs []*kgo.Record
	ts := time.UnixMilli(1_700_000_000_000)
	for i := 0; i < 120; i++ {
		r := &kgo.Record{Topic: "orders", Partition: 0, Key: []byte(fmt.Sprintf("user-%d", i%7)),
			Timestamp: ts.Add(time.Duration(i) * time.Second),
			Headers:   []kgo.RecordHeader{{Key: "trace", Value: []byte(fmt.Sprintf("t%d", i))}}}
		switch i % 4 {
		case 0:
			r.Value = []byte(fmt.Sprintf(`{"order":%d,"items":["a","b"],"note":"%s"}`, i, "<b>bold</b>"))
		case 1:
			r.Value = []byte(fmt.Sprintf("plain text %d", i))
		case 2:
			r.Value = []byte{0, 1, 2, 0xff, 0xfe, byte(i)}
		case 3:
			r.Value = []byte(consoleHTML)
		}
		recs = append(recs, r)
	}
	recs = append(recs, &kgo.Record{Topic: "orders", Partition: 1, Key: []byte(consoleHTML), Value: []byte("k")})
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatalf("produce: %v", err)
	}
	env.produced = [2]int{120, 1}
	if err := cl.ProduceSync(ctx, &kgo.Record{Topic: "plain", Value: []byte("x")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	offs := kadm.Offsets{}
	offs.Add(kadm.Offset{Topic: "orders", Partition: 0, At: 100, LeaderEpoch: -1})
	offs.Add(kadm.Offset{Topic: "orders", Partition: 1, At: 0, LeaderEpoch: -1})
	if resp, err := kc.CommitOffsets(ctx, "billing", offs); err != nil || resp.Error() != nil {
		t.Fatalf("commit billing: %v %v", err, resp.Error())
	}
	return env
}

// consoleClient is a browser-like client: it loads /ui/ first (the CSRF
// cookie) and sends writes with the header unless told not to.
type consoleClient struct {
	t    *testing.T
	base string
	hc   *http.Client
	csrf string
	// hdr is added to every request (Origin, Sec-Fetch-Site, Authorization).
	hdr http.Header
}

func newConsoleClient(t *testing.T, base string) *consoleClient {
	t.Helper()
	jar, _ := cookiejar.New(nil)
	c := &consoleClient{t: t, base: base, hc: &http.Client{Jar: jar, Timeout: 30 * time.Second}, hdr: http.Header{}}
	code, _, _ := c.do("GET", "/ui/", nil, false)
	if code != 200 {
		t.Fatalf("GET /ui/: %d", code)
	}
	for _, ck := range c.hc.Jar.Cookies(mustURL(t, base+"/")) {
		if ck.Name == csrfCookie {
			c.csrf = ck.Value
		}
	}
	if len(c.csrf) != 32 {
		t.Fatalf("GET /ui/ set no %s cookie", csrfCookie)
	}
	return c
}

// do sends a request; body, if not nil, as JSON; withCSRF adds the header.
func (c *consoleClient) do(method, path string, body any, withCSRF bool) (int, []byte, http.Header) {
	c.t.Helper()
	var rd io.Reader
	if body != nil {
		raw, _ := json.Marshal(body)
		rd = bytes.NewReader(raw)
	}
	req, err := http.NewRequest(method, c.base+path, rd)
	if err != nil {
		c.t.Fatal(err)
	}
	for k, v := range c.hdr {
		req.Header[k] = v
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if withCSRF {
		req.Header.Set(csrfHeader, c.csrf)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		c.t.Fatal(err)
	}
	return resp.StatusCode, raw, resp.Header
}

// get GETs path, wants 200 and decodes the answer into v.
func (c *consoleClient) get(path string, v any) []byte {
	c.t.Helper()
	code, raw, _ := c.do("GET", path, nil, false)
	if code != 200 {
		c.t.Fatalf("GET %s: %d %s", path, code, raw)
	}
	if v != nil {
		if err := json.Unmarshal(raw, v); err != nil {
			c.t.Fatalf("GET %s: %v in %s", path, err, raw)
		}
	}
	return raw
}

// wantCode sends a request and checks the status and that the message
// contains want.
func (c *consoleClient) wantCode(method, path string, body any, withCSRF bool, code int, want string) {
	c.t.Helper()
	got, raw, _ := c.do(method, path, body, withCSRF)
	if got != code || !strings.Contains(string(raw), want) {
		c.t.Errorf("%s %s: %d %s, want %d containing %q", method, path, got, raw, code, want)
	}
}

func mustURL(t *testing.T, s string) *url.URL {
	t.Helper()
	u, err := url.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// doRaw sends body as is with the CSRF header and the given content type.
func (c *consoleClient) doRaw(method, path, body, contentType string) (int, []byte, http.Header) {
	c.t.Helper()
	req, err := http.NewRequest(method, c.base+path, strings.NewReader(body))
	if err != nil {
		c.t.Fatal(err)
	}
	for k, v := range c.hdr {
		req.Header[k] = v
	}
	req.Header.Set("Content-Type", contentType)
	req.Header.Set(csrfHeader, c.csrf)
	resp, err := c.hc.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, raw, resp.Header
}

func jsonUnmarshal(raw []byte, v any) error { return json.Unmarshal(raw, v) }

func newJarClient() *http.Client {
	jar, _ := cookiejar.New(nil)
	return &http.Client{Jar: jar, Timeout: 30 * time.Second}
}

func basic(user, pass string) string {
	return base64.StdEncoding.EncodeToString([]byte(user + ":" + pass))
}
