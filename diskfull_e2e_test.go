package main

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"golang.org/x/sys/unix"

	"github.com/chronik-stream/chronik/broker"
	"github.com/chronik-stream/chronik/kafka"
)

// inMountNS is set in the copy of the test binary that runs in its own
// mount namespace, where it may mount a small tmpfs.
const inMountNS = "CHRONIK_TEST_IN_MOUNT_NS"

// TestDiskFullRecovers fills the data directory's filesystem (a 16 MiB
// tmpfs) under a running broker: produce and the group's commits get
// KAFKA_STORAGE_ERROR while reads go on, and once space is freed the
// partition and the group work again without a restart, with every
// acknowledged record intact.
//
// The tmpfs is mounted in a private mount namespace: the test binary runs
// itself again under unshare(1) (as root, or as any user where user
// namespaces are allowed).
func TestDiskFullRecovers(t *testing.T) {
	if os.Getenv(inMountNS) == "" {
		args := []string{"--mount", "--propagation", "private"}
		if os.Geteuid() != 0 {
			args = append([]string{"--user", "--map-root-user"}, args...)
		}
		args = append(args, os.Args[0], "-test.run=^TestDiskFullRecovers$", "-test.v", "-test.count=1", "-test.timeout=5m")
		cmd := exec.Command("unshare", args...)
		cmd.Env = append(os.Environ(), inMountNS+"=1")
		out, err := cmd.CombinedOutput()
		if err != nil && !strings.Contains(string(out), "=== RUN") {
			// unshare itself failed: no root and no user namespaces.
			t.Skipf("cannot make a mount namespace for the tmpfs (needs root or user namespaces): %v\n%s", err, out)
		}
		if err != nil || !strings.Contains(string(out), "--- PASS: TestDiskFullRecovers") {
			t.Fatalf("in the mount namespace: %v\n%s", err, out)
		}
		t.Logf("in the mount namespace:\n%s", out)
		return
	}

	dir := t.TempDir()
	if err := unix.Mount("tmpfs", dir, "tmpfs", 0, "size=16m"); err != nil {
		t.Fatalf("mount tmpfs: %v", err)
	}
	// Registered before startBrokerWith, so it runs after the broker
	// closed (cleanups run last first).
	t.Cleanup(func() {
		if err := unix.Unmount(dir, unix.MNT_DETACH); err != nil {
			t.Errorf("unmount: %v", err)
		}
	})
	dataDir := filepath.Join(dir, "data")
	addr, _ := startBrokerWith(t, func(bc *broker.Config, _ *kafka.Config) {
		bc.DataDir = dataDir
		bc.SegmentBytes = 1 << 20
		bc.OffsetsTopicPartitions = 1
		bc.GroupInitialRebalanceDelay = -1
	})

	newClient := func(opts ...kgo.Opt) *kgo.Client {
		cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(addr), kgo.DisableIdempotentWrite(),
			kgo.RecordPartitioner(kgo.ManualPartitioner()), kgo.ProducerBatchCompression(kgo.NoCompression()),
			kgo.RecordRetries(1), kgo.RecordDeliveryTimeout(5 * time.Second)}, opts...)...)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(cl.Close)
		return cl
	}
	cl := newClient()
	adm := kadm.NewClient(cl)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if _, err := adm.CreateTopic(ctx, 1, 1, nil, "full"); err != nil {
		t.Fatal(err)
	}
	value := make([]byte, 64<<10)
	var acked []string
	produce := func() error {
		v := "rec-" + strconv.Itoa(len(acked))
		copy(value, v)
		pctx, pcancel := context.WithTimeout(ctx, 10*time.Second)
		defer pcancel()
		err := cl.ProduceSync(pctx, &kgo.Record{Topic: "full", Key: []byte(v), Value: value}).FirstErr()
		if err == nil {
			acked = append(acked, v)
		}
		return err
	}
	for range 20 {
		if err := produce(); err != nil {
			t.Fatal(err)
		}
	}
	// A group consumes and commits what is there.
	commit := func(offset int64) error {
		var os kadm.Offsets
		os.Add(kadm.Offset{Topic: "full", Partition: 0, At: offset, LeaderEpoch: -1})
		resp, err := adm.CommitOffsets(ctx, "g", os)
		if err == nil {
			err = resp.Error()
		}
		return err
	}
	if err := commit(20); err != nil {
		t.Fatal(err)
	}

	// Fill the filesystem.
	filler := filepath.Join(dir, "filler")
	f, err := os.Create(filler)
	if err != nil {
		t.Fatal(err)
	}
	chunk := make([]byte, 64<<10)
	for {
		if _, err := f.Write(chunk); err != nil {
			if !errors.Is(err, unix.ENOSPC) {
				t.Fatalf("fill: %v", err)
			}
			break
		}
	}
	f.Close()

	// Produce fails with KAFKA_STORAGE_ERROR; so do fetch and commit.
	if err := produce(); !errors.Is(err, kerr.KafkaStorageError) {
		t.Fatalf("produce on a full disk: %v, want KAFKA_STORAGE_ERROR", err)
	}
	md, err := adm.Metadata(ctx, "full")
	if err != nil {
		t.Fatal(err)
	}
	// A commit is a small record: the first few may still fit in the
	// page its segment file already has. Sent straight to the broker, not
	// retried: the coordinator answers NOT_COORDINATOR for a commit it
	// could not write, as Kafka does for KAFKA_STORAGE_ERROR, and a client
	// would retry until the disk has room.
	for i := 0; ; i++ {
		req := kmsg.NewPtrOffsetCommitRequest()
		req.Group, req.Generation = "g", -1
		rt := kmsg.NewOffsetCommitRequestTopic()
		rt.Topic, rt.TopicID = "full", md.Topics["full"].ID // v10+ names topics by id
		rp := kmsg.NewOffsetCommitRequestTopicPartition()
		rp.Partition, rp.Offset = 0, 21
		rt.Partitions = append(rt.Partitions, rp)
		req.Topics = append(req.Topics, rt)
		resp, err := req.RequestWith(ctx, cl.Broker(0))
		if err != nil {
			t.Fatal(err)
		}
		if code := resp.Topics[0].Partitions[0].ErrorCode; code == kerr.NotCoordinator.Code {
			break
		} else if code != 0 {
			t.Fatalf("commit on a full disk: error %d, want NOT_COORDINATOR", code)
		}
		if i == 1000 {
			t.Fatal("1000 commits on a full disk succeeded")
		}
	}
	// Reads go on meanwhile: the failed appends left the log as it was.
	ends, err := adm.ListEndOffsets(ctx, "full")
	if o, _ := ends.Lookup("full", 0); err != nil || o.Err != nil || o.Offset != int64(len(acked)) {
		t.Fatalf("end offset on a full disk: %+v %v, want %d", o, err, len(acked))
	}

	// Free the space: the partition and the group come back on their own.
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	var lastErr error
	for i := 0; ; i++ {
		if lastErr = produce(); lastErr == nil {
			break
		}
		if i == 60 {
			t.Fatalf("produce still failing 30s after space was freed: %v", lastErr)
		}
		time.Sleep(500 * time.Millisecond)
	}
	for i := 0; ; i++ {
		if lastErr = commit(int64(len(acked))); lastErr == nil {
			break
		}
		if i == 60 {
			t.Fatalf("commit still failing 30s after space was freed: %v", lastErr)
		}
		time.Sleep(500 * time.Millisecond)
	}

	// Every acknowledged record is there, once, in order.
	rcl := newClient(kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{"full": {0: kgo.NewOffset().At(0)}}))
	var all []string
	for len(all) < len(acked) && ctx.Err() == nil {
		rctx, rcancel := context.WithTimeout(ctx, 30*time.Second)
		fs := rcl.PollFetches(rctx)
		timedOut := rctx.Err() != nil
		rcancel()
		if timedOut {
			t.Fatalf("read %d of %d records in 30s", len(all), len(acked))
		}
		fs.EachRecord(func(r *kgo.Record) {
			if r.Offset != int64(len(all)) {
				t.Fatalf("record at offset %d, expected %d", r.Offset, len(all))
			}
			all = append(all, string(r.Key))
		})
	}
	if strings.Join(all, ",") != strings.Join(acked, ",") {
		t.Fatalf("read %v, acknowledged %v", all, acked)
	}
	// A group member joins and consumes from the committed offset.
	for range 5 {
		if err := produce(); err != nil {
			t.Fatal(err)
		}
	}
	gcl := newClient(kgo.ConsumerGroup("g"), kgo.ConsumeTopics("full"), kgo.DisableAutoCommit())
	var got []string
	for len(got) < 5 && ctx.Err() == nil {
		gctx, gcancel := context.WithTimeout(ctx, 30*time.Second)
		fs := gcl.PollFetches(gctx)
		timedOut := gctx.Err() != nil
		gcancel()
		if timedOut {
			t.Fatalf("group consumer got %d of 5 records in 30s: %v", len(got), fs.Errors())
		}
		fs.EachRecord(func(r *kgo.Record) { got = append(got, string(r.Key)) })
	}
	if strings.Join(got, ",") != strings.Join(acked[len(acked)-5:], ",") {
		t.Fatalf("group consumer read %v, want %v", got, acked[len(acked)-5:])
	}
	if err := gcl.CommitUncommittedOffsets(ctx); err != nil {
		t.Fatalf("group commit: %v", err)
	}

}
