package main

// What a second process or a damaged disk does to `chronik serve` (this
// test binary re-executed as chronik, as in cluster_e2e_test.go): real
// processes on real files, driven by franz-go over TCP.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// partitionDir is the log directory of a partition in a node's data dir.
func partitionDir(t *testing.T, c *testCluster, id int, topic string, partition int32) string {
	t.Helper()
	td := c.topicMetadata(topic)
	return filepath.Join(c.dataDir(id), "data", fmt.Sprintf("%x", td.ID[:]), strconv.Itoa(int(partition)))
}

// segmentFiles lists a log directory's segment files, oldest first.
func segmentFiles(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		if len(e.Name()) == 20 && !e.IsDir() {
			out = append(out, filepath.Join(dir, e.Name()))
		}
	}
	slices.Sort(out)
	return out
}

// flipByte flips one bit of the byte at pos (negative: from the end).
func flipByte(t *testing.T, path string, pos int) {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if pos < 0 {
		pos += len(raw)
	}
	raw[pos] ^= 0x20
	if err := os.WriteFile(path, raw, 0o640); err != nil {
		t.Fatal(err)
	}
}

// partitionClient is a client that produces to the partition each record
// names, uncompressed (so that byte positions in segments are predictable).
func partitionClient(c *testCluster, opts ...kgo.Opt) *kgo.Client {
	return c.client(append([]kgo.Opt{kgo.RecordPartitioner(kgo.ManualPartitioner()),
		kgo.ProducerBatchCompression(kgo.NoCompression())}, opts...)...)
}

// produceBatches writes n records to one partition, each its own batch
// (acks=all), with values prefix-i, and fails the test on any error.
func produceBatches(t *testing.T, cl *kgo.Client, topic string, partition int32, prefix string, n, size int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	pad := strings.Repeat("x", size)
	for i := range n {
		r := &kgo.Record{Topic: topic, Partition: partition, Value: []byte(fmt.Sprintf("%s-%d-%s", prefix, i, pad))}
		if err := cl.ProduceSync(ctx, r).FirstErr(); err != nil {
			t.Fatalf("produce %s-%d record %d: %v", topic, partition, i, err)
		}
	}
}

// fetchCode asks for one partition at offset 0 with a raw Fetch and returns
// the partition's error code and how many record bytes came back.
func fetchCode(t *testing.T, c *testCluster, cl *kgo.Client, topic string, partition int32) (int16, int) {
	t.Helper()
	id := c.topicMetadata(topic).ID
	req := kmsg.NewPtrFetchRequest()
	req.Version = 11
	req.MaxWaitMillis = 10
	req.MaxBytes = 1 << 20
	rt := kmsg.NewFetchRequestTopic()
	rt.Topic, rt.TopicID = topic, id // kgo sends the newest version both sides know
	rp := kmsg.NewFetchRequestTopicPartition()
	rp.Partition, rp.PartitionMaxBytes = partition, 1<<20
	rt.Partitions = append(rt.Partitions, rp)
	req.Topics = append(req.Topics, rt)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := req.RequestWith(ctx, cl)
	if err != nil {
		t.Fatalf("fetch %s-%d: %v", topic, partition, err)
	}
	p := resp.Topics[0].Partitions[0]
	return p.ErrorCode, len(p.RecordBatches)
}

// readPartition consumes one partition from offset 0 until its high
// watermark and returns the values.
func readPartition(t *testing.T, addr, topic string, partition int32) []string {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// The error is for the whole topic; other partitions may be offline.
	ends, err := kadm.NewClient(cl).ListEndOffsets(ctx, topic)
	end, ok := ends.Lookup(topic, partition)
	if !ok || end.Err != nil {
		t.Fatalf("end offset of %s-%d: %v %v", topic, partition, err, end.Err)
	}
	cl.AddConsumePartitions(map[string]map[int32]kgo.Offset{topic: {partition: kgo.NewOffset().At(0)}})
	var out []string
	for int64(len(out)) < end.Offset {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("read %s-%d: %d of %d records before the timeout", topic, partition, len(out), end.Offset)
		}
		fs.EachError(func(_ string, _ int32, err error) { t.Logf("fetch error: %v", err) })
		fs.EachRecord(func(r *kgo.Record) {
			if r.Offset != int64(len(out)) {
				t.Fatalf("record at offset %d, expected %d", r.Offset, len(out))
			}
			out = append(out, string(r.Value))
		})
	}
	return out
}

// waitExit waits up to within for cmd to exit with status code; otherwise
// it fails, naming what and showing output() (a process still running is
// killed first).
func waitExit(t *testing.T, cmd *exec.Cmd, code int, within time.Duration, what string, output func() string) {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != code {
			t.Fatalf("%s: %v, want exit status %d\n%s", what, err, code, output())
		}
	case <-time.After(within):
		cmd.Process.Kill()
		<-done
		t.Fatalf("%s kept running after %v\n%s", what, within, output())
	}
}

// TestTwoBrokersOneDataDir: a second chronik serve on a data directory in
// use exits 2 naming the first one's pid, and the first one serves on.
func TestTwoBrokersOneDataDir(t *testing.T) {
	c := newCluster(t, 1)
	c.startWith(1)
	c.waitUp(1)
	cl := partitionClient(c, kgo.AllowAutoTopicCreation())
	produceBatches(t, cl, "lock", 0, "a", 10, 10)

	other := freeAddrs(t, 1)[0]
	second := exec.Command(os.Args[0], "serve", "--listen", other, "--admin-listen", "", "--data-dir", c.dataDir(1))
	second.Env = append(os.Environ(), "CHRONIK_TEST_RUN_MAIN=1")
	var out strings.Builder
	second.Stdout, second.Stderr = &out, &out
	if err := second.Start(); err != nil {
		t.Fatal(err)
	}
	waitExit(t, second, 2, 20*time.Second, "a second broker on the same data directory", out.String)
	pid := strconv.Itoa(c.procs[0].Process.Pid)
	if !strings.Contains(out.String(), "pid "+pid) || !strings.Contains(out.String(), c.dataDir(1)) {
		t.Fatalf("second broker's message does not name the data dir and pid %s:\n%s", pid, out.String())
	}
	// The first one is untouched.
	produceBatches(t, cl, "lock", 0, "b", 10, 10)
	if got := readPartition(t, c.kafka[0], "lock", 0); len(got) != 20 || got[10] != "b-0-xxxxxxxxxx" {
		t.Fatalf("first broker after the attempt: %d records %q", len(got), got)
	}
	// And `chronik repair` refuses to touch a directory in use.
	r := runCLI(t, "", "repair", "--data-dir", c.dataDir(1))
	if r.code != 1 || !strings.Contains(r.stderr, "pid "+pid) {
		t.Fatalf("repair beside a running broker: exit %d, %s", r.code, r.stderr)
	}
}

// TestDataDirReplacedUnderBroker: the data directory of a running broker
// is moved away, so that a new broker could start on the same path (its
// lock would be a new file, which the first one's flock does not cover).
// The first broker notices that its lock file is gone, logs why and exits
// 3 at once without closing its logs, so it writes nothing more under
// either path (no clean-shutdown markers, nothing recreated); a new broker
// starts on the path, and the moved directory, put back, still holds the
// acknowledged records.
func TestDataDirReplacedUnderBroker(t *testing.T) {
	c := newCluster(t, 1)
	c.startWith(1)
	c.waitUp(1)
	cl := partitionClient(c, kgo.AllowAutoTopicCreation())
	produceBatches(t, cl, "moved", 0, "a", 10, 10)
	cl.Close()

	moved := c.dataDir(1) + ".moved"
	if err := os.Rename(c.dataDir(1), moved); err != nil {
		t.Fatal(err)
	}
	waitExit(t, c.procs[0], 3, 30*time.Second, "a broker whose data directory was moved away",
		func() string { return c.logTail(1) })
	c.logs[0].Close()
	c.procs[0] = nil
	if !strings.Contains(c.logTail(1), "another process may own the data directory now") {
		t.Fatalf("no reason logged:\n%s", c.logTail(1))
	}
	if _, err := os.Stat(c.dataDir(1)); !os.IsNotExist(err) {
		t.Fatalf("the stopped broker wrote to the old path again: %v", err)
	}
	if clean, _ := filepath.Glob(filepath.Join(moved, "*", "*", "*", "chronik.clean")); len(clean) > 0 {
		t.Fatalf("the stopped broker closed logs it no longer owned: %v", clean)
	}

	// A new broker on the path starts afresh; once it is stopped and the
	// moved directory put back, the acknowledged records are all there.
	c.startWith(1)
	c.waitUp(1)
	c.stop(1)
	if err := os.RemoveAll(c.dataDir(1)); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(moved, c.dataDir(1)); err != nil {
		t.Fatal(err)
	}
	c.startWith(1)
	c.waitUp(1)
	if got := readPartition(t, c.kafka[0], "moved", 0); len(got) != 10 || got[9] != "a-9-xxxxxxxxxx" {
		t.Fatalf("the moved directory serves %d records %q", len(got), got)
	}
}

// TestFlippedByteOldSegment: one flipped byte in an old segment takes only
// its partition offline (KAFKA_STORAGE_ERROR, logged with file and index,
// shown by topic describe); the others serve. With the broker stopped,
// chronik repair cuts the log after the last good entry, says what was
// lost, and the partition serves what was before the damage again.
func TestFlippedByteOldSegment(t *testing.T) {
	c := newCluster(t, 1)
	c.startWith(1, "--segment-bytes", "65536")
	c.waitUp(1)
	c.createTopic("damaged", 2, 1)
	c.createTopic("healthy", 1, 1)
	cl := partitionClient(c)
	const n = 600 // 600 batches of ~300 bytes: several 64 KiB segments
	produceBatches(t, cl, "damaged", 0, "d", n, 256)
	produceBatches(t, cl, "damaged", 1, "s", 20, 10)
	produceBatches(t, cl, "healthy", 0, "h", 20, 10)
	dir := partitionDir(t, c, 1, "damaged", 0)
	c.stop(1)

	segs := segmentFiles(t, dir)
	if len(segs) < 3 {
		t.Fatalf("setup: %d segments", len(segs))
	}
	seg0, err := os.ReadFile(segs[0])
	if err != nil {
		t.Fatal(err)
	}
	flipByte(t, segs[1], 1000) // inside the second segment's records

	c.startWith(1, "--segment-bytes", "65536")
	c.waitUp(1)
	cl = partitionClient(c)
	// Every other partition serves, reads and writes.
	produceBatches(t, cl, "healthy", 0, "h2", 5, 10)
	produceBatches(t, cl, "damaged", 1, "s2", 5, 10)
	if got := readPartition(t, c.kafka[0], "healthy", 0); len(got) != 25 {
		t.Fatalf("healthy-0: %d records, want 25", len(got))
	}
	if got := readPartition(t, c.kafka[0], "damaged", 1); len(got) != 25 {
		t.Fatalf("damaged-1: %d records, want 25", len(got))
	}
	// The damaged one answers KAFKA_STORAGE_ERROR to fetch and produce.
	if code, _ := fetchCode(t, c, cl, "damaged", 0); code != kerr.KafkaStorageError.Code {
		t.Fatalf("fetch of the damaged partition: code %d, want KAFKA_STORAGE_ERROR", code)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	err = cl.ProduceSync(ctx, &kgo.Record{Topic: "damaged", Partition: 0, Value: []byte("x")}).FirstErr()
	cancel()
	if err == nil {
		t.Fatal("produce to the damaged partition succeeded")
	}
	// topic describe shows it; the log names the file and index once.
	r := ok(t, "", "topic", "describe", "damaged", "--brokers", c.kafka[0], "--format", "json")
	var desc TopicDescription
	decode(t, r, &desc)
	p0 := desc.Partitions[0]
	if !slices.Equal(p0.OfflineReplicas, []int32{1}) || !strings.Contains(p0.Error, "KAFKA_STORAGE_ERROR") {
		t.Fatalf("describe damaged-0: %+v", p0)
	}
	if len(desc.Partitions[1].OfflineReplicas) != 0 || desc.Partitions[1].Error != "" {
		t.Fatalf("describe damaged-1: %+v", desc.Partitions[1])
	}
	logBytes, _ := os.ReadFile(filepath.Join(c.dir, "node1.log"))
	logText := string(logBytes)
	if strings.Count(logText, "partition offline") != 1 || !strings.Contains(logText, filepath.Base(segs[1])) {
		t.Fatalf("log does not say once which file is damaged:\n%s", logText)
	}
	c.stop(1)

	// Repair: a dry run changes nothing, the real one cuts and reports.
	r = ok(t, "", "repair", "--data-dir", c.dataDir(1), "--dry-run", "--format", "json")
	if !strings.Contains(r.stdout, `"topic": "damaged"`) || !strings.Contains(r.stdout, `"repaired": false`) {
		t.Fatalf("dry run: %s", r.stdout)
	}
	if got := segmentFiles(t, dir); len(got) != len(segs) {
		t.Fatalf("dry run removed segments: %d of %d left", len(got), len(segs))
	}
	r = ok(t, "", "repair", "--data-dir", c.dataDir(1), "--format", "json")
	var reps []struct {
		Topic          string `json:"topic"`
		Partition      int32  `json:"partition"`
		LostEntries    int    `json:"lost_entries"`
		LostFromOffset int64  `json:"lost_from_offset"`
		LostToOffset   int64  `json:"lost_to_offset"`
		Repaired       bool   `json:"repaired"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &reps); err != nil {
		t.Fatal(err)
	}
	if len(reps) != 1 || reps[0].Topic != "damaged" || reps[0].Partition != 0 || !reps[0].Repaired ||
		reps[0].LostToOffset != n-1 || int64(reps[0].LostEntries) != n-reps[0].LostFromOffset {
		t.Fatalf("repair report %+v (stdout %s)", reps, r.stdout)
	}
	kept := reps[0].LostFromOffset
	if kept < int64(strings.Count(string(seg0), "d-")) || kept >= n {
		t.Fatalf("kept %d records, the first segment alone held %d", kept, strings.Count(string(seg0), "d-"))
	}
	// A second repair finds nothing.
	if r := ok(t, "", "repair", "--data-dir", c.dataDir(1)); !strings.Contains(r.stdout, "no damaged partition logs") {
		t.Fatalf("second repair: %s", r.stdout)
	}

	c.startWith(1, "--segment-bytes", "65536")
	c.waitUp(1)
	got := readPartition(t, c.kafka[0], "damaged", 0)
	if int64(len(got)) != kept {
		t.Fatalf("after repair: %d records, want %d", len(got), kept)
	}
	for i, v := range got {
		if !strings.HasPrefix(v, fmt.Sprintf("d-%d-", i)) {
			t.Fatalf("record %d is %.20q", i, v)
		}
	}
	cl = partitionClient(c)
	produceBatches(t, cl, "damaged", 0, "new", 1, 1)
	if got := readPartition(t, c.kafka[0], "damaged", 0); int64(len(got)) != kept+1 || got[kept] != "new-0-x" {
		t.Fatalf("after repair and a produce: %d records", len(got))
	}
}

// TestFlippedByteLastFrameAfterCleanShutdown: after a clean shutdown a bad
// last entry is damage, not a torn write: the partition goes offline
// instead of silently losing five acknowledged records and reusing their
// offsets.
func TestFlippedByteLastFrameAfterCleanShutdown(t *testing.T) {
	c := newCluster(t, 1)
	c.startWith(1)
	c.waitUp(1)
	c.createTopic("tail", 2, 1)
	cl := partitionClient(c, kgo.ProducerLinger(0))
	// Ten batches of five records each.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for b := range 10 {
		var recs []*kgo.Record
		for i := range 5 {
			recs = append(recs, &kgo.Record{Topic: "tail", Partition: 0, Value: []byte(fmt.Sprintf("r%d", b*5+i))})
		}
		if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	produceBatches(t, cl, "tail", 1, "other", 3, 1)
	dir := partitionDir(t, c, 1, "tail", 0)
	c.stop(1)
	segs := segmentFiles(t, dir)
	flipByte(t, segs[len(segs)-1], -10) // inside the last frame

	c.startWith(1)
	c.waitUp(1)
	cl = partitionClient(c)
	if code, _ := fetchCode(t, c, cl, "tail", 0); code != kerr.KafkaStorageError.Code {
		t.Fatalf("fetch: code %d, want KAFKA_STORAGE_ERROR (the tail must not be cut silently)", code)
	}
	if got := readPartition(t, c.kafka[0], "tail", 1); len(got) != 3 {
		t.Fatalf("tail-1: %d records", len(got))
	}
	c.stop(1)
	r := ok(t, "", "repair", "--data-dir", c.dataDir(1), "--topic", "tail", "--partition", "0")
	if !strings.Contains(r.stdout, "1 entry,") || !strings.Contains(r.stdout, "offsets from 45") || !strings.Contains(r.stdout, "checksum mismatch") {
		t.Fatalf("repair output:\n%s", r.stdout)
	}
	c.startWith(1)
	c.waitUp(1)
	if got := readPartition(t, c.kafka[0], "tail", 0); len(got) != 45 || got[44] != "r44" {
		t.Fatalf("after repair: %d records", len(got))
	}
}

// TestOpenFileBudget: under a limit of 256 open files, two topics of 150
// partitions each (plus __consumer_offsets' 50) are created and every
// partition takes a record and gives it back: idle logs are closed to stay
// within the budget and reopen on use. Deleting a topic leaves no
// descriptor on a deleted file.
func TestOpenFileBudget(t *testing.T) {
	c := newCluster(t, 1)
	c.wrap = []string{"sh", "-c", `ulimit -n 256 && exec "$@"`, "sh"}
	c.startWith(1)
	c.waitUp(1)
	c.createTopic("first", 150, 1)
	c.createTopic("second", 150, 1) // needs more files than the limit allows at once
	cl := partitionClient(c)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var recs []*kgo.Record
	for _, topic := range []string{"first", "second"} {
		for p := range int32(150) {
			recs = append(recs, &kgo.Record{Topic: topic, Partition: p, Value: []byte(fmt.Sprintf("%s-%d", topic, p))})
		}
	}
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	rcl := c.client(kgo.ConsumeTopics("first", "second"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	seen := map[string]bool{}
	for len(seen) < 300 {
		fs := rcl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("consumed %d of 300 records", len(seen))
		}
		fs.EachRecord(func(r *kgo.Record) {
			if want := fmt.Sprintf("%s-%d", r.Topic, r.Partition); string(r.Value) != want {
				t.Fatalf("%s-%d holds %q", r.Topic, r.Partition, r.Value)
			}
			seen[string(r.Value)] = true
		})
	}
	pid := c.procs[0].Process.Pid
	if _, err := kadm.NewClient(cl).DeleteTopics(ctx, "second"); err != nil {
		t.Fatal(err)
	}
	fdDir := fmt.Sprintf("/proc/%d/fd", pid)
	ents, err := os.ReadDir(fdDir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if target, _ := os.Readlink(filepath.Join(fdDir, e.Name())); strings.HasSuffix(target, "(deleted)") {
			t.Errorf("descriptor %s still open on %s", e.Name(), target)
		}
	}
	if len(ents) > 256 {
		t.Fatalf("%d descriptors open under a limit of 256", len(ents))
	}
}

// TestClusterRepairRefetches: in a 3-node cluster, a replica whose old
// segment took a flipped byte goes offline on its node while the other two
// go on committing; chronik repair cuts it after its last good entry, and
// on restart it catches up from the leader until all three replicas hold
// identical entries.
func TestClusterRepairRefetches(t *testing.T) {
	c := newCluster(t, 3)
	for id := 1; id <= 3; id++ {
		c.startWith(id, "--peers", c.peers(), "--segment-bytes", "65536")
	}
	for id := 1; id <= 3; id++ {
		c.waitUp(id)
	}
	c.createTopic("rep", 1, 3)
	cl := partitionClient(c, kgo.RequiredAcks(kgo.AllISRAcks()))
	produceBatches(t, cl, "rep", 0, "a", 600, 256)
	// Damage a follower's replica.
	victim := c.leader("rep", 0)%3 + 1
	dir := partitionDir(t, c, victim, "rep", 0)
	c.stop(victim)
	segs := segmentFiles(t, dir)
	if len(segs) < 3 {
		t.Fatalf("setup: %d segments", len(segs))
	}
	flipByte(t, segs[1], 1000)
	c.startWith(victim, "--peers", c.peers(), "--segment-bytes", "65536")
	c.waitUp(victim)
	// The other two go on.
	produceBatches(t, cl, "rep", 0, "b", 200, 256)
	// Start-up took the follower's sealed segments from its clean-shutdown
	// marker; the background verifier reads them and finds the damage,
	// though nobody reads that replica.
	c.waitLogLine(victim, "partition offline")
	c.stop(victim)
	r := ok(t, "", "repair", "--data-dir", c.dataDir(victim), "--format", "json")
	if !strings.Contains(r.stdout, `"replica": true`) || !strings.Contains(r.stdout, `"topic": "rep"`) {
		t.Fatalf("repair: %s", r.stdout)
	}
	c.startWith(victim, "--peers", c.peers(), "--segment-bytes", "65536")
	c.waitUp(victim)
	c.waitSameLogSize("rep", 0)
	handedOver := false
	for id := 1; id <= 3; id++ {
		b, _ := os.ReadFile(filepath.Join(c.dir, fmt.Sprintf("node%d.log", id)))
		handedOver = handedOver || strings.Contains(string(b), "lost entries it acknowledged")
	}
	if !handedOver {
		t.Fatal("no leader noticed the repaired follower's lost entries")
	}
	topicDir := c.topicDir("rep")
	for id := 1; id <= 3; id++ {
		c.stop(id)
	}
	want := c.partitionDigestOf(1, topicDir, 0)
	for id := 2; id <= 3; id++ {
		if got := c.partitionDigestOf(id, topicDir, 0); got != want {
			t.Fatalf("node %d's log differs from node 1's after the repair", id)
		}
	}
}
