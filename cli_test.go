package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/chronik-stream/chronik/broker"
	"github.com/chronik-stream/chronik/kafka"
)

// startBroker runs a real Chronik broker on a temp dir, served on a real
// 127.0.0.1 listener, and returns its address; cleanup shuts it down.
func startBroker(t *testing.T) string {
	addr, _ := startBrokerWith(t, nil)
	return addr
}

// startBrokerWith is startBroker with configs adjusted by tune (nil: none);
// it also returns the broker.
func startBrokerWith(t *testing.T, tune func(*broker.Config, *kafka.Config)) (string, *broker.Broker) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	bc := broker.Config{
		DataDir:        t.TempDir(),
		AdvertisedHost: "127.0.0.1",
		AdvertisedPort: int32(ln.Addr().(*net.TCPAddr).Port),
		Logger:         zerolog.Nop(),
	}
	kc := kafka.Config{Logger: zerolog.Nop()}
	if tune != nil {
		tune(&bc, &kc)
	}
	b, err := broker.Open(bc)
	if err != nil {
		ln.Close()
		t.Fatalf("open broker: %v", err)
	}
	srv := kafka.New(kc, b)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		if err := <-served; err != nil {
			t.Errorf("serve: %v", err)
		}
		if err := b.Close(); err != nil {
			t.Errorf("close broker: %v", err)
		}
	})
	return ln.Addr().String(), b
}

// result is one CLI run.
type result struct {
	code           int
	stdout, stderr string
}

// runCLI runs `chronik ARGS` in-process with input as standard input.
func runCLI(t *testing.T, input string, args ...string) result {
	t.Helper()
	old := stdin
	stdin = strings.NewReader(input)
	defer func() { stdin = old }()
	var stdout, stderr bytes.Buffer
	code := run(append([]string{"chronik"}, args...), &stdout, &stderr)
	return result{code, stdout.String(), stderr.String()}
}

// ok runs the CLI and fails the test unless it exits 0.
func ok(t *testing.T, input string, args ...string) result {
	t.Helper()
	r := runCLI(t, input, args...)
	if r.code != 0 {
		t.Fatalf("chronik %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), r.code, r.stdout, r.stderr)
	}
	return r
}

// decode unmarshals a command's JSON output into v, failing on unknown
// fields so that renamed fields are caught.
func decode(t *testing.T, r result, v any) {
	t.Helper()
	dec := json.NewDecoder(strings.NewReader(r.stdout))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		t.Fatalf("decode %q: %v", r.stdout, err)
	}
}

// decodeLines unmarshals one JSON object per line.
func decodeLines(t *testing.T, r result) []ConsumedRecord {
	t.Helper()
	var out []ConsumedRecord
	for _, line := range strings.Split(strings.TrimSuffix(r.stdout, "\n"), "\n") {
		if line == "" {
			continue
		}
		var rec ConsumedRecord
		dec := json.NewDecoder(strings.NewReader(line))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&rec); err != nil {
			t.Fatalf("decode line %q: %v", line, err)
		}
		out = append(out, rec)
	}
	return out
}

func str(s string) *string { return &s }

func TestTopicCommands(t *testing.T) {
	addr := startBroker(t)
	b := "--brokers=" + addr

	// Flags after the name work too.
	var created TopicCreated
	decode(t, ok(t, "", "topic", "create", b, "orders", "--partitions", "3", "--config", "retention.ms=3600000", "--format", "json"), &created)
	if created.Name != "orders" || created.Partitions != 3 || created.ReplicationFactor != 1 || created.TopicID == "" {
		t.Errorf("created %+v", created)
	}
	ok(t, "", "topic", "create", b, "--format=json", "events")

	r := runCLI(t, "", "topic", "create", b, "orders")
	if r.code != 1 || !strings.Contains(r.stderr, "chronik: create topic orders:") || !strings.Contains(r.stderr, "already exists") {
		t.Errorf("second create: exit %d, stderr %q", r.code, r.stderr)
	}

	var list []TopicSummary
	decode(t, ok(t, "", "topic", "list", b, "--format", "json"), &list)
	want := []TopicSummary{{Name: "events", Partitions: 1, ReplicationFactor: 1}, {Name: "orders", Partitions: 3, ReplicationFactor: 1}}
	if len(list) != len(want) || list[0] != want[0] || list[1] != want[1] {
		t.Errorf("list %+v, want %+v", list, want)
	}
	if tab := ok(t, "", "topic", "list", b).stdout; !strings.HasPrefix(tab, "NAME") || !strings.Contains(tab, "orders  3") {
		t.Errorf("table:\n%s", tab)
	}

	ok(t, "a\nb\nc\n", "produce", b, "orders", "--partition", "2")
	var desc TopicDescription
	decode(t, ok(t, "", "topic", "describe", b, "orders", "--format", "json"), &desc)
	if desc.Name != "orders" || desc.TopicID != created.TopicID || len(desc.Partitions) != 3 {
		t.Fatalf("describe %+v", desc)
	}
	for i, p := range desc.Partitions {
		hw := int64(0)
		if i == 2 {
			hw = 3
		}
		if p.Partition != int32(i) || p.Leader != 0 || len(p.Replicas) != 1 || len(p.ISR) != 1 ||
			p.LogStartOffset != 0 || p.HighWatermark != hw || p.Error != "" {
			t.Errorf("partition %d: %+v", i, p)
		}
	}
	if len(desc.Configs) != 1 || desc.Configs["retention.ms"] == nil || *desc.Configs["retention.ms"] != "3600000" {
		t.Errorf("configs %v, want only retention.ms=3600000", desc.Configs)
	}

	var altered TopicConfigs
	decode(t, ok(t, "", "topic", "alter-config", b, "orders", "--set", "segment.bytes=1048576",
		"--set", "cleanup.policy=delete", "--delete", "retention.ms", "--format", "json"), &altered)
	if altered.Name != "orders" || len(altered.Configs) != 2 || *altered.Configs["segment.bytes"] != "1048576" ||
		*altered.Configs["cleanup.policy"] != "delete" {
		t.Errorf("altered %+v", altered)
	}
	r = runCLI(t, "", "topic", "alter-config", b, "orders", "--set", "no.such.config=1")
	if r.code != 1 || !strings.Contains(r.stderr, "alter configs of orders") {
		t.Errorf("unknown config: exit %d, stderr %q", r.code, r.stderr)
	}

	var deleted []TopicDeleted
	decode(t, ok(t, "", "topic", "delete", b, "orders", "events", "--format", "json"), &deleted)
	if len(deleted) != 2 || deleted[0] != (TopicDeleted{Name: "orders"}) || deleted[1] != (TopicDeleted{Name: "events"}) {
		t.Errorf("deleted %+v", deleted)
	}
	decode(t, ok(t, "", "topic", "list", b, "--format", "json"), &list)
	if len(list) != 0 {
		t.Errorf("after delete, list %+v", list)
	}
}

func TestMissingTopicExits1(t *testing.T) {
	b := "--brokers=" + startBroker(t)
	for _, args := range [][]string{
		{"topic", "describe", b, "nope"},
		{"topic", "alter-config", b, "nope", "--set", "retention.ms=1"},
		{"topic", "delete", b, "nope"},
		{"produce", b, "nope"},
		{"consume", b, "nope", "-e"},
	} {
		r := runCLI(t, "x\n", args...)
		if r.code != 1 || r.stdout != "" {
			t.Errorf("%v: exit %d, stdout %q", args, r.code, r.stdout)
		}
		if !strings.Contains(r.stderr, `topic "nope" does not exist`) && !strings.Contains(r.stderr, "nope: topic does not exist") {
			t.Errorf("%v: stderr %q", args, r.stderr)
		}
		if !strings.HasPrefix(r.stderr, "chronik: ") || strings.Count(r.stderr, "\n") != 1 || !strings.HasSuffix(r.stderr, "\n") {
			t.Errorf("%v: want one line \"chronik: ...\", got %q", args, r.stderr)
		}
	}
}

func TestProduceConsumeJSON(t *testing.T) {
	b := "--brokers=" + startBroker(t)
	ok(t, "", "topic", "create", b, "t", "--partitions", "2")

	input := "k1|v1\nk2|v|with|bars\nno key here\n|empty key\n\r\nlast|no newline"
	r := ok(t, input, "produce", b, "t", "--partition", "1", "--key-separator", "|",
		"--header", "source=test", "--header", "list=a,b=c")
	if want := "produced 6 records to t: partition 1 offsets 0-5\n"; r.stderr != want || r.stdout != "" {
		t.Errorf("produce stderr %q, want %q; stdout %q", r.stderr, want, r.stdout)
	}

	headers := []RecordHeader{{Key: "source", Value: str("test")}, {Key: "list", Value: str("a,b=c")}}
	want := []ConsumedRecord{
		{Key: str("k1"), Value: str("v1")},
		{Key: str("k2"), Value: str("v|with|bars")},
		{Key: nil, Value: str("no key here")},
		{Key: str(""), Value: str("empty key")},
		{Key: nil, Value: str("")},
		{Key: str("last"), Value: str("no newline")},
	}
	got := decodeLines(t, ok(t, "", "consume", b, "t", "-n", "6", "--format", "json"))
	if len(got) != len(want) {
		t.Fatalf("consumed %d records, want %d: %+v", len(got), len(want), got)
	}
	for i, g := range got {
		w := want[i]
		if g.Topic != "t" || g.Partition != 1 || g.Offset != int64(i) || g.Timestamp <= 0 {
			t.Errorf("record %d: %s/%d@%d ts %d", i, g.Topic, g.Partition, g.Offset, g.Timestamp)
		}
		// kgo may decode an empty key as null; an empty value stays "".
		if !(sameText(g.Key, w.Key) || (w.Key != nil && *w.Key == "" && g.Key == nil)) || !sameText(g.Value, w.Value) {
			t.Errorf("record %d: key %v value %v, want key %v value %v", i, text(g.Key), text(g.Value), text(w.Key), text(w.Value))
		}
		if len(g.Headers) != len(headers) || g.Headers[0].Key != "source" || !sameText(g.Headers[0].Value, headers[0].Value) ||
			g.Headers[1].Key != "list" || !sameText(g.Headers[1].Value, headers[1].Value) {
			t.Errorf("record %d headers %+v", i, g.Headers)
		}
	}

	// Text with keys, to the end (partition 0 is empty, partition 1 has 6).
	r = ok(t, "", "consume", b, "t", "-e", "--print-key", "--key-separator", "=")
	wantText := "k1=v1\nk2=v|with|bars\n=no key here\n=empty key\n=\nlast=no newline\n"
	if r.stdout != wantText {
		t.Errorf("text output %q, want %q", r.stdout, wantText)
	}

	// From an offset, one partition; and from latest nothing is left.
	got = decodeLines(t, ok(t, "", "consume", b, "t", "--from", "4", "--partition", "1", "-e", "--format", "json"))
	if len(got) != 2 || got[0].Offset != 4 || got[1].Offset != 5 {
		t.Errorf("from 4: %+v", got)
	}
	if r := ok(t, "", "consume", b, "t", "--from", "latest", "-e"); r.stdout != "" {
		t.Errorf("from latest -e printed %q", r.stdout)
	}
	// -n larger than what there is, bounded by --timeout: exit 1. The
	// timeout must leave room to connect and fetch the 6 records even on a
	// loaded machine under -race (300ms did not; 3s did not once in CI,
	// with every package's tests running at once).
	r = runCLI(t, "", "consume", b, "t", "-n", "7", "--timeout", "10s", "--format", "json")
	if r.code != 1 || len(decodeLines(t, r)) != 6 || !strings.Contains(r.stderr, "consumed 6 of 7 records: --timeout 10s passed") {
		t.Errorf("short -n: exit %d stderr %q", r.code, r.stderr)
	}
}

func sameText(a, b *string) bool { return (a == nil) == (b == nil) && (a == nil || *a == *b) }

func text(s *string) string {
	if s == nil {
		return "null"
	}
	return "\"" + *s + "\""
}

func TestConsumeFromTimestamp(t *testing.T) {
	b := "--brokers=" + startBroker(t)
	ok(t, "", "topic", "create", b, "ts")
	ok(t, "old1\nold2\n", "produce", b, "ts")
	old := decodeLines(t, ok(t, "", "consume", b, "ts", "-e", "--format", "json"))
	if len(old) != 2 {
		t.Fatalf("old records: %+v", old)
	}
	// Records produced after the clock passes cut have timestamps >= cut.
	cut := max(old[0].Timestamp, old[1].Timestamp) + 1
	for i := 0; i < 1000 && time.Now().UnixMilli() <= cut; i++ {
		time.Sleep(time.Millisecond)
	}
	ok(t, "new1\nnew2\n", "produce", b, "ts")

	for _, from := range []string{"@" + itoa(cut), time.UnixMilli(cut).UTC().Format(time.RFC3339Nano)} {
		got := decodeLines(t, ok(t, "", "consume", b, "ts", "--from", from, "-e", "--format", "json"))
		if len(got) != 2 || *got[0].Value != "new1" || *got[1].Value != "new2" || got[0].Offset != 2 || got[0].Timestamp < cut {
			t.Errorf("--from %s: %+v", from, got)
		}
	}
	// A time after every record starts at the end.
	if r := ok(t, "", "consume", b, "ts", "--from", "@"+itoa(time.Now().Add(time.Hour).UnixMilli()), "-e"); r.stdout != "" {
		t.Errorf("future --from printed %q", r.stdout)
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

func TestProduceFailedRecordExits1(t *testing.T) {
	b := "--brokers=" + startBroker(t)
	ok(t, "", "topic", "create", b, "big")
	// A record over the producer's batch limit fails; the small one is
	// still produced and counted.
	r := runCLI(t, "small\n"+strings.Repeat("x", 2<<20)+"\n", "produce", b, "big")
	if r.code != 1 {
		t.Fatalf("exit %d, stderr %q", r.code, r.stderr)
	}
	if !strings.Contains(r.stderr, "produced 1 records to big: partition 0 offsets 0-0; 1 failed:") ||
		!strings.Contains(r.stderr, "chronik: 1 of 2 records failed:") {
		t.Errorf("stderr %q", r.stderr)
	}
}

func TestUsageErrorsExit2(t *testing.T) {
	// Nothing listens here: usage is checked before connecting.
	b := "--brokers=127.0.0.1:1"
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"topic", "create", b}, "missing topic NAME"},
		{[]string{"topic", "create", b, "a", "b"}, "too many arguments"},
		{[]string{"topic", "create", b, "a", "--partitions", "0"}, "partitions: 0"},
		{[]string{"topic", "create", b, "a", "--config", "novalue"}, `config: "novalue" is not key=value`},
		{[]string{"topic", "create", b, "a", "--partitions"}, "flag needs an argument: --partitions"},
		{[]string{"topic", "create", b, "a", "--partitions", "many"}, `invalid value "many"`},
		{[]string{"topic", "list", "--no-such-flag"}, "flag provided but not defined"},
		{[]string{"topic", "list", b, "extra"}, "too many arguments"},
		{[]string{"topic", "list", b, "--format", "yaml"}, `format: "yaml" is not one of table, json`},
		{[]string{"topic", "describe", b}, "missing topic NAME"},
		{[]string{"topic", "delete", b}, "missing topic NAME"},
		{[]string{"topic", "alter-config", b, "t"}, "nothing to change"},
		{[]string{"topic", "alter-config", b, "t", "--delete", "a=b"}, `delete: "a=b" is not a config key`},
		{[]string{"produce", b}, "missing TOPIC"},
		{[]string{"produce", b, "t", "--header", "nokv"}, `header: "nokv" is not key=value`},
		{[]string{"produce", b, "t", "--partition", "-2"}, "partition: -2"},
		{[]string{"consume", b}, "missing TOPIC"},
		{[]string{"consume", b, "t", "--from", "yesterday"}, `from: "yesterday" is not earliest, latest`},
		{[]string{"consume", b, "t", "--from", "@soon"}, `from: "@soon" is not @`},
		{[]string{"consume", b, "t", "--from", "-3"}, "offset -3 is negative"},
		{[]string{"consume", b, "t", "-n", "-1"}, "count: -1 is negative"},
		{[]string{"consume", b, "t", "--format", "table"}, `format: "table" is not one of text, json`},
		{[]string{"consume", b, "t", "--group", "g", "--partition", "0"}, "--partition and --group cannot be combined"},
		{[]string{"group", "describe", b}, "missing GROUP"},
		{[]string{"group", "seek", b, "g", "--to", "earliest"}, "missing --topic"},
		{[]string{"group", "seek", b, "g", "--topic", "t"}, "missing --to"},
		{[]string{"group", "seek", b, "g", "--topic", "t", "--to", "soon"}, `to: "soon" is not earliest`},
		{[]string{"group", "delete", b}, "missing GROUP"},
		{[]string{"cluster", "info", b, "--format", "xml"}, `format: "xml"`},
		{[]string{"version", "--format", "xml"}, `format: "xml"`},
		{[]string{"version", "now"}, "too many arguments"},
		{[]string{"topic", "list", "--brokers", " , "}, "brokers: no broker addresses"},
		{[]string{"topic", "bogus"}, `unknown command "bogus" for chronik topic`},
		{[]string{"group", "lag", "g"}, `unknown command "lag" for chronik group`},
	} {
		r := runCLI(t, "", tc.args...)
		if r.code != 2 || !strings.HasPrefix(r.stderr, "chronik: ") || !strings.Contains(r.stderr, tc.want) {
			t.Errorf("%v: exit %d, stderr %q; want exit 2 and %q", tc.args, r.code, r.stderr, tc.want)
		}
	}
}

func TestTrailingHelp(t *testing.T) {
	r := ok(t, "", "topic", "create", "demo", "--help")
	if !strings.Contains(r.stdout, "chronik topic create") || !strings.Contains(r.stdout, "Exit status: 0 success; 1") {
		t.Errorf("help:\n%s", r.stdout)
	}
}

func TestUnreachableBrokerExits1(t *testing.T) {
	// A listener that never answers: the request runs into --timeout.
	silent, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	addr := silent.Addr().String()
	r := runCLI(t, "", "topic", "list", "--brokers", addr, "--timeout", "500ms")
	if r.code != 1 || !strings.HasPrefix(r.stderr, "chronik: list topics: no answer from "+addr+" within --timeout 500ms") {
		t.Errorf("silent broker: exit %d, stderr %q", r.code, r.stderr)
	}

	// Nothing listening: the dial error itself.
	closed, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr = closed.Addr().String()
	closed.Close()
	r = runCLI(t, "", "cluster", "info", "--brokers", addr, "--timeout", "5s")
	if r.code != 1 || !strings.HasPrefix(r.stderr, "chronik: cluster metadata: ") || !strings.Contains(r.stderr, addr) {
		t.Errorf("closed port: exit %d, stderr %q", r.code, r.stderr)
	}
}

func TestClusterInfoJSON(t *testing.T) {
	addr := startBroker(t)
	var info ClusterInfo
	decode(t, ok(t, "", "cluster", "info", "--brokers", addr, "--format", "json"), &info)
	host, port, _ := net.SplitHostPort(addr)
	if info.ClusterID == "" || info.Controller != 0 || len(info.Brokers) != 1 {
		t.Fatalf("info %+v", info)
	}
	if br := info.Brokers[0]; br.NodeID != 0 || br.Host != host || itoa(int64(br.Port)) != port || br.Rack != nil {
		t.Errorf("broker %+v, want node 0 at %s", br, addr)
	}
	if tab := ok(t, "", "cluster", "info", "--brokers", addr).stdout; !strings.Contains(tab, "Cluster ID: "+info.ClusterID) {
		t.Errorf("table:\n%s", tab)
	}
}

func TestVersionJSON(t *testing.T) {
	var v VersionInfo
	decode(t, ok(t, "", "version", "--format", "json"), &v)
	if v.Version != version || v.GoVersion != runtime.Version() || v.Platform != runtime.GOOS+"/"+runtime.GOARCH {
		t.Errorf("version %+v", v)
	}
	if r := ok(t, "", "version"); !strings.HasPrefix(r.stdout, "chronik "+version+"\n") {
		t.Errorf("text %q", r.stdout)
	}
}

func TestProgressLine(t *testing.T) {
	if got := progressLine("consumed", 1500, 2999.6); got != "consumed 1500 records (3000/s)" {
		t.Errorf("progress line %q", got)
	}
	var buf bytes.Buffer
	p := startProgress(&buf, "produced") // not a terminal: counts, shows nothing
	p.add(3)
	p.end()
	if p.total() != 3 || buf.Len() != 0 {
		t.Errorf("total %d, wrote %q", p.total(), buf.String())
	}
	// On a terminal, each update overwrites the line.
	p.add(997)
	if last := p.update(500); last != 1000 || buf.String() != "\r\x1b[Kproduced 1000 records (1000/s)" {
		t.Errorf("update returned %d, wrote %q", last, buf.String())
	}
}

// TestProgressBar: with a known goal (consume -n, bench --records) the
// line on a terminal is a bar; without a terminal nothing is written.
func TestProgressBar(t *testing.T) {
	for _, c := range []struct {
		count, goal int64
		want        string
	}{
		{0, 10, "consumed [>                             ] 0/10   0% (0/s)"},
		{5, 10, "consumed [===============>              ] 5/10  50% (0/s)"},
		{10, 10, "consumed [==============================] 10/10 100% (0/s)"},
		{12, 10, "consumed [==============================] 12/10 100% (0/s)"},
	} {
		if got := progressBarLine("consumed", c.count, c.goal, 0); got != c.want {
			t.Errorf("bar %d/%d = %q, want %q", c.count, c.goal, got, c.want)
		}
	}
	var buf bytes.Buffer
	p := startProgressBar(&buf, "produced", 1000) // not a terminal
	p.add(250)
	p.end()
	if buf.Len() != 0 {
		t.Errorf("not a terminal, wrote %q", buf.String())
	}
	p.update(0) // what the terminal loop writes every interval
	if want := "\r\x1b[Kproduced [=======>                      ] 250/1000  25% (500/s)"; buf.String() != want {
		t.Errorf("update wrote %q, want %q", buf.String(), want)
	}
}

// TestBenchAndConsumeNotATerminal: bench and consume -n print their
// results as before when standard error is not a terminal: no progress
// line in either stream.
func TestBenchAndConsumeNotATerminal(t *testing.T) {
	addr := startBroker(t)
	r := ok(t, "", "bench", "produce", "--brokers", addr, "--topic", "plain-bench", "--records", "50", "--record-size", "10")
	if r.stderr != "" || !strings.HasPrefix(r.stdout, "produce: 50 records") || strings.Count(r.stdout, "\n") != 1 {
		t.Errorf("bench produce: stdout %q, stderr %q; want one result line and nothing on stderr", r.stdout, r.stderr)
	}
	r = ok(t, "", "bench", "consume", "--brokers", addr, "--topic", "plain-bench", "--records", "50")
	if r.stderr != "" || !strings.HasPrefix(r.stdout, "consume: 50 records") || strings.Count(r.stdout, "\n") != 1 {
		t.Errorf("bench consume: stdout %q, stderr %q; want one result line and nothing on stderr", r.stdout, r.stderr)
	}
	r = ok(t, "", "consume", "--brokers", addr, "-n", "3", "plain-bench")
	if r.stderr != "" || r.stdout != strings.Repeat("abcdefghij\n", 3) {
		t.Errorf("consume -n 3: stdout %q, stderr %q; want 3 values and nothing on stderr", r.stdout, r.stderr)
	}
}

// TestBenchProduceExistingTopic: bench produce writes to a topic that
// already exists (kadm reports TOPIC_ALREADY_EXISTS as its error, which
// bench once took for a failure).
func TestBenchProduceExistingTopic(t *testing.T) {
	addr := startBroker(t)
	ok(t, "", "topic", "create", "--brokers", addr, "--partitions", "3", "bench-existing")
	r := ok(t, "", "bench", "produce", "--brokers", addr, "--topic", "bench-existing", "--records", "30", "--record-size", "10")
	if !strings.HasPrefix(r.stdout, "produce: 30 records") {
		t.Errorf("bench produce on an existing topic: stdout %q, stderr %q", r.stdout, r.stderr)
	}
	r = ok(t, "", "bench", "consume", "--brokers", addr, "--topic", "bench-existing", "--records", "30")
	if !strings.HasPrefix(r.stdout, "consume: 30 records") {
		t.Errorf("bench consume: stdout %q, stderr %q", r.stdout, r.stderr)
	}
}

// TestBenchProduceKeys: --keys gives the records keys, which a compacted
// topic needs (without them the broker refuses every record).
func TestBenchProduceKeys(t *testing.T) {
	addr := startBroker(t)
	ok(t, "", "topic", "create", "--brokers", addr, "--partitions", "2", "--config", "cleanup.policy=compact", "bench-compact")
	r := ok(t, "", "bench", "produce", "--brokers", addr, "--topic", "bench-compact", "--records", "40", "--record-size", "10", "--keys", "5")
	if !strings.HasPrefix(r.stdout, "produce: 40 records") || !strings.Contains(r.stdout, "0 errors") {
		t.Errorf("keyed bench produce to a compacted topic: stdout %q, stderr %q", r.stdout, r.stderr)
	}
	r = runCLI(t, "", "bench", "produce", "--brokers", addr, "--topic", "bench-compact", "--records", "5", "--record-size", "10", "--timeout", "10s")
	if r.code == 0 {
		t.Errorf("unkeyed bench produce to a compacted topic succeeded: %q", r.stdout)
	}
	if r := runCLI(t, "", "bench", "produce", "--brokers", addr, "--keys", "-1"); r.code != 2 {
		t.Errorf("--keys -1: exit %d, want 2", r.code)
	}
}
