package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/urfave/cli/v2"
)

// The Kafka and admin-HTTP client helpers every CLI command shares: the
// clients for --brokers and --admin-url, topic and offset look-ups, and the
// one-line errors. Commands import these from here, never from each other.

// newClient makes a client for --brokers, secured by the client security
// flags (clientOpts): every CLI client is built here. Options cannot fail
// on a well-formed seed list, so an error here is the user's: exit 2.
func newClient(c *cli.Context, opts ...kgo.Opt) (*kgo.Client, error) {
	seeds := seedBrokers(c.String("brokers"))
	if len(seeds) == 0 {
		return nil, usageErr("brokers: no broker addresses given")
	}
	security, err := clientOpts(c)
	if err != nil {
		return nil, err
	}
	base := append([]kgo.Opt{kgo.SeedBrokers(seeds...), kgo.ClientID("chronik-cli")}, security...)
	cl, err := kgo.NewClient(append(base, opts...)...)
	if err != nil {
		return nil, usageErr("brokers: %v", err)
	}
	return cl, nil
}

// withTimeout bounds ctx by --timeout; 0 or less is no bound.
func withTimeout(c *cli.Context) (context.Context, context.CancelFunc) {
	if d := c.Duration("timeout"); d > 0 {
		return context.WithTimeout(c.Context, d)
	}
	return context.WithCancel(c.Context)
}

// brokerErr turns a failed request into the one line the operator sees: a
// deadline says which brokers did not answer in time instead of "context
// deadline exceeded".
func brokerErr(c *cli.Context, ctx context.Context, what string, err error) error {
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return failErr("%s: no answer from %s within --timeout %s (%v)", what, c.String("brokers"), c.Duration("timeout"), err)
	}
	return failErr("%s: %v", what, err)
}

// adminClient is a kadm client for --brokers and a context bounded by
// --timeout; close releases both.
func adminClient(c *cli.Context) (*kadm.Client, context.Context, func(), error) {
	cl, err := newClient(c)
	if err != nil {
		return nil, nil, nil, err
	}
	ctx, cancel := withTimeout(c)
	return kadm.NewClient(cl), ctx, func() { cancel(); cl.Close() }, nil
}

// withMessage adds a broker's error message to its error code, once: a
// message that already names the code stands alone.
func withMessage(err error, msg string) string {
	var ke *kerr.Error
	switch {
	case msg == "" || strings.Contains(err.Error(), msg):
		return err.Error()
	case errors.As(err, &ke) && strings.Contains(msg, ke.Message):
		return msg
	}
	return fmt.Sprintf("%v (%s)", err, msg)
}

// errTopicMissing is the one line for a topic the brokers do not have.
func errTopicMissing(topic string) error {
	return failErr("topic %q does not exist", topic)
}

func nonNil(s []int32) []int32 {
	if s == nil {
		return []int32{}
	}
	return s
}

func seedBrokers(s string) []string {
	var out []string
	for _, b := range strings.Split(s, ",") {
		if b = strings.TrimSpace(b); b != "" {
			out = append(out, b)
		}
	}
	return out
}

// ensureTopic creates the topic if it does not exist.
func ensureTopic(ctx context.Context, cl *kgo.Client, topic string, partitions int) error {
	adm := kadm.NewClient(cl)
	// kadm returns the topic's own error as err too.
	resp, err := adm.CreateTopic(ctx, int32(partitions), -1, nil, topic)
	if err == nil {
		err = resp.Err
	}
	if errors.Is(err, kerr.TopicAlreadyExists) {
		return nil
	}
	return err
}

// checkTopic returns the partitions to work on: all of the topic's when
// partition is -1, else just that one. It fails with errTopicMissing when
// the topic does not exist and when the partition is not one of its.
func checkTopic(c *cli.Context, ctx context.Context, adm *kadm.Client, topic string, partition int) ([]int32, error) {
	topics, err := adm.ListTopics(ctx, topic)
	if err != nil {
		return nil, brokerErr(c, ctx, "look up topic "+topic, err)
	}
	t, ok := topics[topic]
	if !ok || errors.Is(t.Err, kerr.UnknownTopicOrPartition) {
		return nil, errTopicMissing(topic)
	}
	if t.Err != nil {
		return nil, failErr("look up topic %s: %v", topic, t.Err)
	}
	parts := t.Partitions.Numbers()
	if partition < 0 {
		return parts, nil
	}
	for _, q := range parts {
		if int(q) == partition {
			return []int32{q}, nil
		}
	}
	return nil, failErr("topic %s has no partition %d (it has %d partitions)", topic, partition, len(parts))
}

// startPoint is a parsed --from.
type startPoint struct {
	kind  string // "earliest", "latest", "offset", "time"
	value int64  // the offset, or the time in Unix milliseconds
}

// parseStartPoint parses the value of --from (or group seek's --to, named
// by flag in errors).
func parseStartPoint(flag, s string) (startPoint, error) {
	switch s {
	case "earliest", "latest":
		return startPoint{kind: s}, nil
	}
	if ms, ok := strings.CutPrefix(s, "@"); ok {
		v, err := strconv.ParseInt(ms, 10, 64)
		if err != nil || v < 0 {
			return startPoint{}, usageErr("%s: %q is not @ and a Unix time in milliseconds", flag, s)
		}
		return startPoint{kind: "time", value: v}, nil
	}
	if v, err := strconv.ParseInt(s, 10, 64); err == nil {
		if v < 0 {
			return startPoint{}, usageErr("%s: offset %d is negative", flag, v)
		}
		return startPoint{kind: "offset", value: v}, nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return startPoint{kind: "time", value: t.UnixMilli()}, nil
	}
	return startPoint{}, usageErr("%s: %q is not earliest, latest, an offset, @MILLIS or an RFC 3339 time", flag, s)
}

// kgoOffset is where a group member starts on a partition without a
// committed offset.
func (sp startPoint) kgoOffset() kgo.Offset {
	switch sp.kind {
	case "latest":
		return kgo.NewOffset().AtEnd()
	case "offset":
		return kgo.NewOffset().At(sp.value)
	case "time":
		return kgo.NewOffset().AfterMilli(sp.value)
	}
	return kgo.NewOffset().AtStart()
}

// startOffsets resolves sp to an exact offset in each partition, and
// returns each partition's current end (high watermark) too.
func startOffsets(c *cli.Context, ctx context.Context, adm *kadm.Client, topic string, parts []int32, sp startPoint) (starts, ends map[int32]int64, err error) {
	list := func(what string, fn func() (kadm.ListedOffsets, error)) (map[int32]int64, error) {
		lo, err := fn()
		if err != nil {
			return nil, brokerErr(c, ctx, what+" of "+topic, err)
		}
		out := make(map[int32]int64, len(parts))
		for _, p := range parts {
			o, ok := lo.Lookup(topic, p)
			if !ok {
				return nil, failErr("%s of %s: no answer for partition %d", what, topic, p)
			}
			if o.Err != nil {
				return nil, failErr("%s of %s partition %d: %v", what, topic, p, o.Err)
			}
			out[p] = o.Offset
		}
		return out, nil
	}
	logStarts, err := list("log start offsets", func() (kadm.ListedOffsets, error) { return adm.ListStartOffsets(ctx, topic) })
	if err != nil {
		return nil, nil, err
	}
	ends, err = list("end offsets", func() (kadm.ListedOffsets, error) { return adm.ListEndOffsets(ctx, topic) })
	if err != nil {
		return nil, nil, err
	}
	switch sp.kind {
	case "earliest":
		return logStarts, ends, nil
	case "latest":
		return ends, ends, nil
	case "time":
		// kadm answers the end offset where no record is that recent.
		starts, err = list("offsets by time", func() (kadm.ListedOffsets, error) { return adm.ListOffsetsAfterMilli(ctx, sp.value, topic) })
		return starts, ends, err
	}
	starts = make(map[int32]int64, len(parts))
	for _, p := range parts {
		starts[p] = max(logStarts[p], min(sp.value, ends[p]))
	}
	return starts, ends, nil
}

// Kafka API keys the group commands need.
const (
	apiOffsetCommit   = 8
	apiOffsetFetch    = 9
	apiFindCoord      = 10
	apiJoinGroup      = 11
	apiHeartbeat      = 12
	apiLeaveGroup     = 13
	apiSyncGroup      = 14
	apiDescribeGroups = 15
	apiListGroups     = 16
	apiDeleteGroups   = 42
)

// requireAPIs fails with one clear line when a broker does not speak every
// API in keys, instead of the client's "broker is too old".
func requireAPIs(c *cli.Context, ctx context.Context, adm *kadm.Client, what string, keys ...int16) error {
	versions, err := adm.ApiVersions(ctx)
	if err != nil {
		return brokerErr(c, ctx, what, err)
	}
	meta, err := adm.BrokerMetadata(ctx)
	if err != nil {
		return brokerErr(c, ctx, what, err)
	}
	addr := map[int32]string{}
	for _, b := range meta.Brokers {
		addr[b.NodeID] = net.JoinHostPort(b.Host, strconv.Itoa(int(b.Port)))
	}
	for _, v := range versions.Sorted() {
		if v.Err != nil {
			return brokerErr(c, ctx, fmt.Sprintf("%s: ApiVersions of broker %d", what, v.NodeID), v.Err)
		}
		var missing []string
		for _, k := range keys {
			if _, ok := v.KeyMaxVersion(k); !ok {
				missing = append(missing, kmsg.NameForKey(k))
			}
		}
		if len(missing) > 0 {
			return failErr("%s: the broker at %s (node %d) does not support %s", what, addr[v.NodeID], v.NodeID, strings.Join(missing, ", "))
		}
	}
	return nil
}

// adminHTTPFlags are the flags of a command that talks to a broker's admin
// HTTP listener (cmd_admin*.go): `chronik user`, and `chronik topic
// describe` for dirty ratios.
func adminHTTPFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "admin-url", Value: "http://127.0.0.1:9644", EnvVars: []string{"CHRONIK_ADMIN_URL"},
			Usage: "the broker's admin HTTP listener (serve --admin-listen)"},
		&cli.StringFlag{Name: "admin-token-file", EnvVars: []string{"CHRONIK_CLI_ADMIN_TOKEN_FILE"},
			Usage: "file holding the admin listener's token (serve --admin-token-file); also CHRONIK_ADMIN_TOKEN holding the token itself"},
		&cli.StringFlag{Name: "admin-ca-file", EnvVars: []string{"CHRONIK_CLI_ADMIN_CA_FILE"},
			Usage: "PEM CA bundle that signed the admin listener's certificate, for an https admin-url (default: the system's)"},
	}
}

// adminHTTPClient is the HTTP client for the admin listener: the
// system's CAs, or --admin-ca-file's for an https admin-url.
func adminHTTPClient(c *cli.Context) (*http.Client, error) {
	cl := &http.Client{Timeout: c.Duration("timeout")}
	if f := c.String("admin-ca-file"); f != "" {
		pem, err := os.ReadFile(f)
		if err != nil {
			return nil, usageErr("admin-ca-file: %v", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, usageErr("admin-ca-file: %s holds no PEM certificate", f)
		}
		cl.Transport = &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}
	}
	return cl, nil
}

// adminToken is the admin listener's token: --admin-token-file's content,
// else CHRONIK_ADMIN_TOKEN, else none.
func adminToken(c *cli.Context) (string, error) {
	if f := c.String("admin-token-file"); f != "" {
		b, err := os.ReadFile(f)
		if err != nil {
			return "", usageErr("admin-token-file: %v", err)
		}
		return strings.TrimSpace(string(b)), nil
	}
	return os.Getenv("CHRONIK_ADMIN_TOKEN"), nil
}

// adminCall sends one request to the admin listener and returns the
// answer's body if its status is want; otherwise the broker's message, as
// a failure (exit 1), or a usage error (exit 2) for a 400.
func adminCall(c *cli.Context, method, path string, body any, want int) ([]byte, error) {
	return adminCallContext(context.Background(), c, method, path, body, want)
}

// adminCallContext is adminCall bounded by ctx as well as --timeout.
func adminCallContext(ctx context.Context, c *cli.Context, method, path string, body any, want int) ([]byte, error) {
	base := strings.TrimRight(c.String("admin-url"), "/")
	if u, err := url.Parse(base); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, usageErr("admin-url: %q is not an http(s) URL", c.String("admin-url"))
	}
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, base+path, rd)
	if err != nil {
		return nil, usageErr("admin-url: %v", err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	token, err := adminToken(c)
	if err != nil {
		return nil, err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	hc, err := adminHTTPClient(c)
	if err != nil {
		return nil, err
	}
	resp, err := hc.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // not the method and URL a second time
		}
		return nil, failErr("%s %s: %v", method, base+path, err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if resp.StatusCode == want {
		return out, nil
	}
	var msg struct {
		Message string `json:"message"`
	}
	if json.Unmarshal(out, &msg) != nil || msg.Message == "" {
		msg.Message = strings.TrimSpace(string(out))
	}
	if resp.StatusCode == http.StatusBadRequest {
		return nil, usageErr("%s", msg.Message)
	}
	return nil, failErr("%s (HTTP %d)", msg.Message, resp.StatusCode)
}
