package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// TestCompactionModel (issue 15, "Must show"): a standalone `chronik serve`
// with 64 KiB segments and a compacted topic gets rounds of random keyed
// writes (a couple of hundred keys, ~1 KiB values, some tombstones), each
// followed by a clean restart, a SIGKILL while a cleaning is in progress
// (during its rewrite of a segment, so that a ".rewrite" temp file is left
// behind, or at a random moment after it began), or nothing. The kills run
// the cleaner throttled to 64 KiB/s, so that a cleaning takes seconds.
//
// After every round the partition is read from the start with kgo and
// compared with an in-memory model of what was written at each offset:
// offsets strictly increase and end where the writes did; every record
// read is exactly the one written at its offset (key, value, timestamp:
// nothing invented or corrupted); every key's latest value is there at its
// offset; every record younger than min.compaction.lag.ms at the time of
// the check is there (superseded or not). Then, polling (bounded), the
// partition converges to exactly the latest record of each key, with
// tombstones while delete.retention.ms is an hour and without them once
// it is set to 0 halfway. A kill mid-rewrite leaves a temp file that the
// restart removes (and logs as a wal repair), and the broker never logs an
// error or corruption.
func TestCompactionModel(t *testing.T) {
	const (
		topic    = "model"
		keys     = 200
		perRound = 300
		lagMs    = 1500
	)
	m := &compactionModel{t: t, c: newCluster(t, 1), topic: topic, lagMs: lagMs,
		written: map[int64]cmRecord{}, latest: map[string]int64{}, last: -1,
		rng: rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 15))}
	seed := m.rng.Uint64()
	m.rng = rand.New(rand.NewPCG(seed, 15))
	t.Logf("seed %d", seed)

	began := time.Now()
	m.startNode(false)
	adm := kadm.NewClient(m.c.client())
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	resp, err := adm.CreateTopic(ctx, 1, 1, map[string]*string{
		"cleanup.policy":            new("compact"),
		"segment.ms":                new("200"),
		"min.cleanable.dirty.ratio": new("0"), // clean whatever is dirty: converge to exactly the latest per key
		"min.compaction.lag.ms":     new(fmt.Sprint(lagMs)),
		"delete.retention.ms":       new("3600000"),
	}, topic)
	cancel()
	if err != nil || resp.Err != nil {
		t.Fatalf("create %s: %v %v", topic, err, resp.Err)
	}
	m.keepTombstones = true

	rounds := []string{"none", "kill-rewrite", "term", "kill-early", "none", "kill-rewrite", "term", "kill-early"}
	for i, action := range rounds {
		if i == len(rounds)/2 {
			m.setDeleteRetention(adm, "0")
		}
		throttled := strings.HasPrefix(action, "kill")
		if m.throttled != throttled {
			m.c.stop(1) // the next kill needs a slow cleaner; checks want a fast one
			m.startNode(throttled)
		}
		compactingBefore := m.countLog("compacting")
		m.writeRound(i, keys, perRound)
		m.check(fmt.Sprintf("round %d (%s): after the writes", i, action), false)
		switch action {
		case "term":
			m.c.stop(1)
			m.startNode(false)
		case "kill-rewrite":
			// Killed while a segment is being rewritten: its temp file
			// exists, and still 10 ms later (not a rewrite that is just
			// renaming its file over the segment).
			m.waitFor("a segment rewrite under way", func() bool {
				files := m.rewriteFiles()
				if len(files) == 0 {
					return false
				}
				time.Sleep(10 * time.Millisecond)
				_, err := os.Stat(files[0])
				return err == nil
			})
			m.killAndRestart()
		case "kill-early":
			m.waitFor("a cleaning to begin", func() bool { return m.countLog("compacting") > compactingBefore })
			time.Sleep(time.Duration(m.rng.IntN(1000)) * time.Millisecond)
			m.killAndRestart()
		}
		m.check(fmt.Sprintf("round %d (%s): after the %s", i, action, action), false)
		m.waitConverged(fmt.Sprintf("round %d (%s)", i, action))
		m.checkLog()
		t.Logf("round %d (%s) done at %v: %d records written so far", i, action, time.Since(began).Round(time.Millisecond), len(m.written))
	}
	if m.leftovers == 0 {
		t.Fatalf("no kill left a segment rewrite's temp file behind: no kill happened mid-rewrite")
	}
	m.c.stop(1)
	if files := m.rewriteFiles(); len(files) > 0 {
		t.Fatalf("temp files left after a clean stop: %v", files)
	}
	m.checkLog()
	t.Logf("%d records written, %d kills left a temp file, %d cleanings logged", len(m.written), m.leftovers, m.countLog("compacted"))
}

// cmRecord is what the model wrote at an offset.
type cmRecord struct {
	key   string
	value []byte // nil: a tombstone
	ts    int64  // the record's timestamp, ms
}

// compactionModel drives one standalone node and holds what was written.
type compactionModel struct {
	t     *testing.T
	c     *testCluster
	topic string
	lagMs int64
	rng   *rand.Rand

	written        map[int64]cmRecord
	latest         map[string]int64 // key -> offset of its last write
	last           int64            // the last offset written
	keepTombstones bool             // delete.retention.ms is an hour

	throttled bool // the running node's cleaner is throttled
	leftovers int  // kills that left a rewrite temp file
	logDone   int  // bytes of the node's log checkLog has read
}

func (m *compactionModel) startNode(throttled bool) {
	m.t.Helper()
	args := []string{"--segment-bytes", "65536", "--compaction-check-interval", "50ms"}
	if throttled {
		args = append(args, "--compaction-max-bytes-per-sec", "65536")
	}
	m.c.startWith(1, args...)
	m.c.waitUp(1)
	m.throttled = throttled
}

// killAndRestart SIGKILLs the node, notes the rewrite temp files it left,
// starts it unthrottled and checks each temp file was removed as a repair.
func (m *compactionModel) killAndRestart() {
	m.t.Helper()
	m.c.kill(1)
	left := m.rewriteFiles()
	if len(left) > 0 {
		m.leftovers++
	}
	m.startNode(false)
	for _, f := range left {
		m.waitFor("the repair of "+f, func() bool {
			return slices.ContainsFunc(m.logLines(), func(l map[string]any) bool {
				return l["message"] == "wal repaired on open" && l["file"] == f &&
					strings.Contains(fmt.Sprint(l["reason"]), "interrupted segment rewrite")
			})
		})
	}
	m.t.Logf("killed; %d temp files left: %v", len(left), left)
}

func (m *compactionModel) setDeleteRetention(adm *kadm.Client, ms string) {
	m.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := adm.AlterTopicConfigs(ctx, []kadm.AlterConfig{{Name: "delete.retention.ms", Value: new(ms)}}, m.topic)
	if err == nil {
		_, err = resp.On(m.topic, nil)
	}
	if err != nil {
		m.t.Fatalf("set delete.retention.ms=%s: %v", ms, err)
	}
	m.keepTombstones = ms != "0"
}

// writeRound writes n random records over keys (about one in twelve a
// tombstone), acks=all, then the end marker: the last offset is always
// the latest record of its key, so a reader knows where to stop.
func (m *compactionModel) writeRound(round, keys, n int) {
	m.t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(m.c.kafka...), kgo.DefaultProduceTopic(m.topic),
		kgo.RequiredAcks(kgo.AllISRAcks()), kgo.ProducerLinger(2*time.Millisecond),
		kgo.RecordDeliveryTimeout(30*time.Second),
		kgo.ProducerBatchMaxBytes(8<<10)) // several entries a segment, several records an entry
	if err != nil {
		m.t.Fatal(err)
	}
	defer cl.Close()
	var (
		mu   sync.Mutex
		wg   sync.WaitGroup
		errs []error
	)
	done := func(r *kgo.Record, err error) {
		defer wg.Done()
		mu.Lock()
		defer mu.Unlock()
		if err != nil {
			errs = append(errs, err)
			return
		}
		m.note(r)
	}
	for i := range n + 1 {
		r := &kgo.Record{Key: fmt.Appendf(nil, "key-%03d", m.rng.IntN(keys))}
		switch {
		case i == n:
			r.Key, r.Value = []byte("end"), fmt.Appendf(nil, "round %d", round)
			wg.Wait() // after everything else
		case m.rng.IntN(12) != 0:
			v := fmt.Appendf(nil, "%s round %d write %d ", r.Key, round, i)
			for range 512 + m.rng.IntN(1024) {
				v = append(v, byte('a'+m.rng.IntN(26)))
			}
			r.Value = v
		}
		wg.Add(1)
		cl.Produce(context.Background(), r, done)
	}
	wg.Wait()
	if len(errs) > 0 {
		m.t.Fatalf("round %d: %d writes failed, first: %v", round, len(errs), errs[0])
	}
}

// note records an acknowledged write.
func (m *compactionModel) note(r *kgo.Record) {
	if _, dup := m.written[r.Offset]; dup {
		m.t.Errorf("offset %d acknowledged twice", r.Offset)
	}
	m.written[r.Offset] = cmRecord{key: string(r.Key), value: r.Value, ts: r.Timestamp.UnixMilli()}
	if cur, ok := m.latest[string(r.Key)]; !ok || r.Offset > cur {
		m.latest[string(r.Key)] = r.Offset
	}
	m.last = max(m.last, r.Offset)
}

// read reads the partition from the start through the last offset written,
// checking that offsets strictly increase, and returns the records and the
// time the read ended.
func (m *compactionModel) read() (map[int64]*kgo.Record, time.Time) {
	m.t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(m.c.kafka...),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{m.topic: {0: kgo.NewOffset().AtStart()}}),
		kgo.FetchMaxWait(100*time.Millisecond))
	if err != nil {
		m.t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	got := map[int64]*kgo.Record{}
	for seen := int64(-1); seen < m.last; {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			m.t.Fatalf("read through offset %d: reached %d: %v\n%s", m.last, seen, ctx.Err(), m.c.logTail(1))
		}
		fs.EachError(func(tp string, p int32, err error) { m.t.Logf("fetch %s-%d: %v", tp, p, err) })
		fs.EachRecord(func(r *kgo.Record) {
			if r.Offset <= seen {
				m.t.Fatalf("offset %d read after offset %d", r.Offset, seen)
			}
			seen = r.Offset
			got[r.Offset] = r
		})
	}
	ends, err := kadm.NewClient(cl).ListEndOffsets(ctx, m.topic)
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		m.t.Fatalf("list end offsets: %v", err)
	}
	if o, _ := ends.Lookup(m.topic, 0); o.Offset != m.last+1 {
		m.t.Fatalf("end offset %d, want %d (one past the last write)", o.Offset, m.last+1)
	}
	return got, time.Now()
}

// check reads the partition and asserts what must hold at any time; with
// wantExact it returns whether the partition holds exactly the latest
// record of each key (tombstones per delete.retention.ms).
func (m *compactionModel) check(what string, wantExact bool) bool {
	m.t.Helper()
	got, at := m.read()
	youngFrom := at.UnixMilli() - m.lagMs // records with ts > youngFrom are younger than the lag
	for off, r := range got {
		w, ok := m.written[off]
		if !ok {
			m.t.Fatalf("%s: offset %d holds %q=%q, which was never written", what, off, r.Key, r.Value)
		}
		if string(r.Key) != w.key || !bytes.Equal(r.Value, w.value) || (r.Value == nil) != (w.value == nil) || r.Timestamp.UnixMilli() != w.ts {
			m.t.Fatalf("%s: offset %d holds %q=%.40q at %d, written was %q=%.40q at %d",
				what, off, r.Key, r.Value, r.Timestamp.UnixMilli(), w.key, w.value, w.ts)
		}
	}
	for key, off := range m.latest {
		if _, ok := got[off]; !ok && m.written[off].value != nil {
			m.t.Fatalf("%s: key %s's latest value, at offset %d, is missing", what, key, off)
		}
	}
	for off, w := range m.written {
		if _, ok := got[off]; !ok && w.ts > youngFrom {
			m.t.Fatalf("%s: offset %d (%s, written at %d) is younger than min.compaction.lag.ms=%d at %d but was removed",
				what, off, w.key, w.ts, m.lagMs, at.UnixMilli())
		}
	}
	if !wantExact {
		return false
	}
	want := 0
	for _, off := range m.latest {
		if m.written[off].value != nil || m.keepTombstones {
			if _, ok := got[off]; !ok {
				return false // a kept tombstone not (yet) seen: fails for good below if it stays so
			}
			want++
		}
	}
	return len(got) == want
}

// waitConverged polls until the partition holds exactly the latest record
// of each key, checking the invariants on every read.
func (m *compactionModel) waitConverged(what string) {
	m.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !m.check(what+": converging", true) {
		if time.Now().After(deadline) {
			got, _ := m.read()
			var extra, missing []int64
			for off := range got {
				if m.latest[m.written[off].key] != off || (m.written[off].value == nil && !m.keepTombstones) {
					extra = append(extra, off)
				}
			}
			for _, off := range m.latest {
				if _, ok := got[off]; !ok && m.keepTombstones {
					missing = append(missing, off)
				}
			}
			slices.Sort(extra)
			slices.Sort(missing)
			m.t.Fatalf("%s: not compacted to the latest record per key after 30s: %d records, %d superseded or expired %v, %d tombstones missing %v\n%s",
				what, len(got), len(extra), extra, len(missing), missing, m.c.logTail(1))
		}
		time.Sleep(100 * time.Millisecond)
	}
	m.waitFor("no rewrite temp files", func() bool { return len(m.rewriteFiles()) == 0 })
}

// waitFor polls cond every 2 ms for at most 30 s.
func (m *compactionModel) waitFor(what string, cond func() bool) {
	m.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			m.t.Fatalf("waited 30s for %s\n%s", what, m.c.logTail(1))
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// rewriteFiles lists the segment rewrite temp files under the data dir.
func (m *compactionModel) rewriteFiles() []string {
	var out []string
	filepath.WalkDir(m.c.dataDir(1), func(path string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && strings.HasSuffix(path, ".rewrite") {
			out = append(out, path)
		}
		return nil
	})
	return out
}

// logLines parses the node's JSON log (all runs).
func (m *compactionModel) logLines() []map[string]any {
	b, _ := os.ReadFile(filepath.Join(m.c.dir, "node1.log"))
	var out []map[string]any
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var l map[string]any
		if json.Unmarshal(sc.Bytes(), &l) == nil {
			out = append(out, l)
		}
	}
	return out
}

// countLog counts the log lines about the model's topic with message msg.
func (m *compactionModel) countLog(msg string) int {
	n := 0
	for _, l := range m.logLines() {
		if l["message"] == msg && l["topic"] == m.topic {
			n++
		}
	}
	return n
}

// checkLog fails on an error line or a mention of corruption in the
// node's log written since the last call.
func (m *compactionModel) checkLog() {
	m.t.Helper()
	b, _ := os.ReadFile(filepath.Join(m.c.dir, "node1.log"))
	fresh := b[min(m.logDone, len(b)):]
	m.logDone = len(b)
	for line := range strings.Lines(string(fresh)) {
		var l map[string]any
		if err := json.Unmarshal([]byte(line), &l); err != nil {
			m.t.Errorf("broker log line not JSON: %q", line)
			continue
		}
		if lv := l["level"]; lv == "error" || lv == "fatal" || lv == "panic" || strings.Contains(strings.ToLower(line), "corrupt") {
			m.t.Errorf("broker log: %s", line)
		}
	}
}
