package broker

import (
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// BenchmarkRecover measures a broker's start-up (Open, until every
// partition is served) and its clean shutdown (Close) with many partitions
// holding data: CHRONIK_BENCH_RECOVER_PARTITIONS partitions (default
// 10,000), each with CHRONIK_BENCH_RECOVER_BATCHES batches of 1 KiB
// (default 1), on a data directory written once. It reports seconds per
// 1,000 partitions for each. Run it alone with -benchtime 3x:
//
//	go test -run '^$' -bench BenchmarkRecover -benchtime 3x ./broker/
//
// -cpuprofile profiles it, the setup included.
func BenchmarkRecover(b *testing.B) {
	partitions, batches := int32(10000), 1
	if v, err := strconv.Atoi(os.Getenv("CHRONIK_BENCH_RECOVER_PARTITIONS")); err == nil && v > 0 {
		partitions = int32(v)
	}
	if v, err := strconv.Atoi(os.Getenv("CHRONIK_BENCH_RECOVER_BATCHES")); err == nil && v > 0 {
		batches = v
	}
	cfg := Config{DataDir: b.TempDir()}
	br := openBroker(b, cfg)
	createTopic(b, br, "many", partitions, nil)
	value := make([]byte, 1024)
	for p := range partitions {
		for range batches {
			tb := tBatch{recs: []tRec{{key: []byte("k"), value: value}}}
			mustProduce(b, br, "many", p, tb.build(b))
		}
	}
	if err := br.Close(); err != nil {
		b.Fatal(err)
	}
	var open, close time.Duration
	b.ResetTimer()
	for range b.N {
		start := time.Now()
		br, err := Open(cfg)
		if err != nil {
			b.Fatal(err)
		}
		open += time.Since(start)
		if info, ok := br.Topic("many"); !ok || info.Partitions != partitions {
			b.Fatalf("topic after Open: %+v %v, want %d partitions", info, ok, partitions)
		}
		start = time.Now()
		if err := br.Close(); err != nil {
			b.Fatal(err)
		}
		close += time.Since(start)
	}
	per := float64(b.N) * float64(partitions) / 1000
	b.ReportMetric(open.Seconds()/per, "open-s/1000-partitions")
	b.ReportMetric(close.Seconds()/per, "close-s/1000-partitions")
	b.ReportMetric(0, "ns/op")
}

// TestCloseSkipsUnchangedState: closing a partition whose state is what
// its state file already holds writes nothing (the file is the same
// inode), so a restart of thousands of idle partitions does not rewrite
// thousands of files; a partition that changed writes its state.
func TestCloseSkipsUnchangedState(t *testing.T) {
	b := openBroker(t, Config{})
	info := createTopic(t, b, "s", 2, nil)
	tb := tBatch{recs: []tRec{{key: []byte("k"), value: []byte("v")}}}
	mustProduce(t, b, "s", 0, tb.build(t))
	mustProduce(t, b, "s", 1, tb.build(t))
	b = reopen(t, b) // both state files written
	inode := func(p int32) uint64 {
		t.Helper()
		fi, err := os.Stat(b.partitionDir(info.ID, p) + ".state")
		if err != nil {
			t.Fatal(err)
		}
		return fi.Sys().(*syscall.Stat_t).Ino
	}
	before0, before1 := inode(0), inode(1)
	tb.seq = 1 // the producer's next batch, not a duplicate
	mustProduce(t, b, "s", 1, tb.build(t))
	b = reopen(t, b)
	if got := inode(0); got != before0 {
		t.Errorf("partition 0, unchanged: state file rewritten (inode %d, was %d)", got, before0)
	}
	if got := inode(1); got == before1 {
		t.Errorf("partition 1, written to: state file not rewritten")
	}
	snap, err := loadSnapshot(b.partitionDir(info.ID, 1) + ".state")
	if err != nil || snap.NextOffset != 2 {
		t.Errorf("partition 1 state: next offset %d, %v; want 2", snap.NextOffset, err)
	}
}

// TestVerifyAfterCleanStart: after a clean shutdown, Open reads only each
// partition's tail segment; the background verifier then reads the sealed
// segments and a flipped byte in one takes its partition offline, naming
// the file, though nobody reads it. The other partition serves on.
func TestVerifyAfterCleanStart(t *testing.T) {
	cfg := Config{DataDir: t.TempDir(), SegmentBytes: 8 << 10}
	b := openBroker(t, cfg)
	info := createTopic(t, b, "v", 2, nil)
	value := make([]byte, 1000)
	for p := range int32(2) {
		for i := range 40 { // about 40 KiB: several 8 KiB segments
			tb := tBatch{pid: 1, seq: int32(i), recs: []tRec{{key: []byte("k"), value: value}}}
			mustProduce(t, b, "v", p, tb.build(t))
		}
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	dir := b.partitionDir(info.ID, 0)
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var segs []string
	for _, e := range ents {
		if len(e.Name()) == 20 {
			segs = append(segs, e.Name())
		}
	}
	if len(segs) < 3 {
		t.Fatalf("setup: %d segments in %s", len(segs), dir)
	}
	bad := filepath.Join(dir, segs[1])
	raw, err := os.ReadFile(bad)
	if err != nil {
		t.Fatal(err)
	}
	raw[len(raw)/2] ^= 0x40
	if err := os.WriteFile(bad, raw, 0o640); err != nil {
		t.Fatal(err)
	}

	b = openBroker(t, cfg)
	deadline := time.Now().Add(30 * time.Second)
	for len(b.Faults()) == 0 || b.VerifyPending() > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("no fault after 30 s: faults %+v, %d bytes unverified", b.Faults(), b.VerifyPending())
		}
		time.Sleep(10 * time.Millisecond)
	}
	f := b.Faults()
	if len(f) != 1 || f[0].Topic != "v" || f[0].Partition != 0 || !f[0].Corrupt || f[0].File != bad {
		t.Fatalf("faults %+v, want v-0 corrupt in %s", f, bad)
	}
	tb := tBatch{pid: 1, seq: 40, recs: []tRec{{key: []byte("k"), value: value}}}
	if _, err := produce(t, b, "v", 0, tb.build(t)); err == nil {
		t.Fatal("produce to the damaged partition succeeded")
	}
	mustProduce(t, b, "v", 1, tb.build(t))
}
