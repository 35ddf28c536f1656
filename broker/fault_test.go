package broker

import (
	"errors"
	"fmt"
	"os"
	"testing"

	"github.com/twmb/franz-go/pkg/kerr"

	"github.com/chronik-stream/chronik/wal"
)

// TestCorruptSegmentWhileRunning: a sealed segment damaged under a running
// broker faults its partition on the first read that reaches it: fetch and
// produce answer KAFKA_STORAGE_ERROR, Faults names the file and index, and
// the other partition goes on.
func TestCorruptSegmentWhileRunning(t *testing.T) {
	b := openBroker(t, Config{SegmentBytes: 1024})
	createTopic(t, b, "t", 2, nil)
	for range 20 {
		mustProduce(t, b, "t", 0, buildBatch(plain(10)))
	}
	p, _ := b.partition("t", 0)
	segs := p.log.Segments()
	if len(segs) < 3 {
		t.Fatalf("setup: %d segments", len(segs))
	}
	path := fmt.Sprintf("%s/%020d", p.dir, segs[0].FirstIndex)
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	raw[len(raw)/2] ^= 0x08
	if err := os.WriteFile(path, raw, 0o640); err != nil {
		t.Fatal(err)
	}

	_, err = b.Fetch("t", 0, 0, 1<<20, 0)
	wantKerr(t, err, kerr.KafkaStorageError)
	var ce *wal.CorruptError
	if !errors.As(err, &ce) || ce.File != path {
		t.Fatalf("fetch error %v does not name %s", err, path)
	}
	faults := b.Faults()
	if len(faults) != 1 || !faults[0].Corrupt || faults[0].File != path || faults[0].Topic != "t" || faults[0].Partition != 0 {
		t.Fatalf("faults %+v", faults)
	}
	if f, ok := b.PartitionFault("t", 0); !ok || f.Index != ce.Index {
		t.Fatalf("PartitionFault: %+v %v", f, ok)
	}
	// Everything on the partition now answers the fault, even what the
	// damage does not touch; retries leave a corrupt log alone.
	_, err = produce(t, b, "t", 0, buildBatch(plain(1)))
	wantKerr(t, err, kerr.KafkaStorageError)
	_, _, err = b.ListOffset("t", 0, TimestampLatest, 0)
	wantKerr(t, err, kerr.KafkaStorageError)
	b.retryFaults()
	if _, ok := b.PartitionFault("t", 0); !ok {
		t.Fatal("a corrupt partition came back online without repair")
	}
	// The other partition serves.
	mustProduce(t, b, "t", 1, buildBatch(plain(3)))
	if res, err := b.Fetch("t", 1, 0, 1<<20, 0); err != nil || res.HighWatermark != 3 {
		t.Fatalf("fetch t-1: %+v %v", res, err)
	}
}

// TestCorruptOffsetsPartitionAtOpen: a damaged __consumer_offsets partition
// does not keep the broker from starting: its groups answer
// COORDINATOR_NOT_AVAILABLE, the groups of the other partition work.
func TestCorruptOffsetsPartitionAtOpen(t *testing.T) {
	dir := t.TempDir()
	cfg := Config{DataDir: dir, OffsetsTopicPartitions: 2}
	b := openBroker(t, cfg)
	createTopic(t, b, "t", 1, nil)
	commit := func(b *Broker, group string) error {
		codes, err := b.OffsetCommit(group, GroupCommitRequest{GenerationID: -1,
			Offsets: []GroupOffsetCommit{{Topic: "t", Partition: 0, Offset: 1, LeaderEpoch: -1}}})
		if err == nil && codes[0] != 0 {
			err = kerr.ErrorForCode(codes[0])
		}
		return err
	}
	for i := range 10 {
		if err := commit(b, fmt.Sprint("g", i)); err != nil {
			t.Fatal(err)
		}
	}
	off, _ := b.partition(offsetsTopic, 0)
	seg := fmt.Sprintf("%s/%020d", off.dir, off.log.Segments()[0].FirstIndex)
	b.Close()
	raw, err := os.ReadFile(seg)
	if err != nil || len(raw) < 10 {
		t.Fatalf("setup: %d bytes, %v", len(raw), err)
	}
	raw[len(raw)/2] ^= 0x10
	os.WriteFile(seg, raw, 0o640)

	b = openBroker(t, cfg)
	if f := b.Faults(); len(f) != 1 || f[0].Topic != offsetsTopic || f[0].Partition != 0 || !f[0].Corrupt {
		t.Fatalf("faults %+v", f)
	}
	var worked, refused int
	for i := range 10 {
		err := commit(b, fmt.Sprint("g", i))
		switch {
		case err == nil:
			worked++
		case errors.Is(err, kerr.CoordinatorNotAvailable):
			refused++
		default:
			t.Fatalf("commit g%d: %v", i, err)
		}
	}
	if worked == 0 || refused == 0 {
		t.Fatalf("%d groups worked, %d refused: want some of each", worked, refused)
	}
}
