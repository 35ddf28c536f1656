package broker

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/twmb/franz-go/pkg/kerr"
)

func openBroker(t testing.TB, cfg Config) *Broker {
	t.Helper()
	if cfg.DataDir == "" {
		cfg.DataDir = t.TempDir()
	}
	cfg.Logger = zerolog.Nop()
	b, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

func reopen(t testing.TB, b *Broker) *Broker {
	t.Helper()
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	return openBroker(t, b.cfg)
}

func createTopic(t testing.TB, b *Broker, name string, partitions int32, configs map[string]string) TopicInfo {
	t.Helper()
	cs := map[string]*string{}
	for k, v := range configs {
		cs[k] = &v
	}
	info, err := b.CreateTopic(name, partitions, -1, cs, false)
	if err != nil {
		t.Fatal(err)
	}
	return info
}

// produce sends a copy of batch, as a client would send fresh bytes.
func produce(t testing.TB, b *Broker, topic string, p int32, batch []byte) (ProduceResult, error) {
	t.Helper()
	return b.Produce(context.Background(), topic, p, bytes.Clone(batch), -1, nil)
}

func mustProduce(t testing.TB, b *Broker, topic string, p int32, batch []byte) ProduceResult {
	t.Helper()
	res, err := produce(t, b, topic, p, batch)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func wantKerr(t testing.TB, err error, want *kerr.Error) {
	t.Helper()
	var ke *kerr.Error
	if !errors.As(err, &ke) || ke != want {
		t.Fatalf("got error %v, want %v", err, want)
	}
}

type storedBatch struct {
	base  int64
	last  int64
	bytes []byte
}

// splitStored splits fetched records into batches, checking each CRC.
func splitStored(t testing.TB, records []byte) []storedBatch {
	t.Helper()
	var out []storedBatch
	for len(records) > 0 {
		if len(records) < batchHeaderSize {
			t.Fatalf("%d trailing bytes", len(records))
		}
		size := logOverhead + int(binary.BigEndian.Uint32(records[offBatchLength:]))
		b := records[:size]
		if !crcOK(b) {
			t.Fatal("stored batch fails its crc")
		}
		h := readBatchHeader(b)
		base := int64(binary.BigEndian.Uint64(b))
		out = append(out, storedBatch{base: base, last: base + int64(h.lastOffsetDelta), bytes: b})
		records = records[size:]
	}
	return out
}

func fetchAll(t testing.TB, b *Broker, topic string, p int32, from int64) []storedBatch {
	t.Helper()
	res, err := b.Fetch(topic, p, from, 1<<30, 0)
	if err != nil {
		t.Fatal(err)
	}
	return splitStored(t, res.Records)
}

// sameExceptOffsetAndEpoch: stored bytes equal the produced ones but for
// the base offset and partition leader epoch.
func sameExceptOffsetAndEpoch(stored, sent []byte) bool {
	return len(stored) == len(sent) && bytes.Equal(stored[offBatchLength:offLeaderEpoch], sent[offBatchLength:offLeaderEpoch]) &&
		bytes.Equal(stored[offMagic:], sent[offMagic:])
}

func TestProduceFetch(t *testing.T) {
	b := openBroker(t, Config{})
	createTopic(t, b, "t", 2, nil)
	sent := [][]byte{buildBatch(plain(3)), buildBatch(plain(1)), buildBatch(plain(5))}
	var want int64
	for _, s := range sent {
		res := mustProduce(t, b, "t", 1, s)
		if res.BaseOffset != want || res.LogAppendTime != -1 || res.LogStartOffset != 0 {
			t.Fatalf("result %+v, want base %d", res, want)
		}
		want += int64(readBatchHeader(s).numRecords)
	}
	got := fetchAll(t, b, "t", 1, 0)
	if len(got) != 3 {
		t.Fatalf("%d batches", len(got))
	}
	for i, g := range got {
		if !sameExceptOffsetAndEpoch(g.bytes, sent[i]) {
			t.Fatalf("batch %d changed beyond offset and epoch", i)
		}
		if binary.BigEndian.Uint32(g.bytes[offLeaderEpoch:]) != 0 {
			t.Fatal("leader epoch not 0")
		}
	}
	if got[0].base != 0 || got[1].base != 3 || got[2].base != 4 || got[2].last != 8 {
		t.Fatalf("offsets %+v", got)
	}
	if lso, hw, err := b.PartitionOffsets("t", 1); lso != 0 || hw != 9 || err != nil {
		t.Fatalf("offsets %d %d %v", lso, hw, err)
	}
	if _, hw, _ := b.PartitionOffsets("t", 0); hw != 0 {
		t.Fatal("other partition written")
	}
	if b.LeaderEpoch("t", 1) != 0 || b.LeaderEpoch("t", 2) != -1 {
		t.Fatal("leader epoch")
	}
}

func TestFetchBounds(t *testing.T) {
	b := openBroker(t, Config{})
	createTopic(t, b, "t", 1, nil)
	for range 4 {
		mustProduce(t, b, "t", 0, buildBatch(plain(2))) // offsets 0-1, 2-3, 4-5, 6-7
	}
	one := len(buildBatch(plain(2)))
	tests := []struct {
		name     string
		offset   int64
		maxBytes int32
		bases    []int64
		err      *kerr.Error
	}{
		{"all", 0, 1 << 20, []int64{0, 2, 4, 6}, nil},
		{"at least one batch over maxBytes", 0, 1, []int64{0}, nil},
		{"exactly two batches", 0, int32(2 * one), []int64{0, 2}, nil},
		{"just under two batches", 0, int32(2*one - 1), []int64{0}, nil},
		{"batch containing the offset", 5, 1 << 20, []int64{4, 6}, nil},
		{"at the high watermark", 8, 1 << 20, nil, nil},
		{"past the high watermark", 9, 1 << 20, nil, kerr.OffsetOutOfRange},
		{"negative", -1, 1 << 20, nil, kerr.OffsetOutOfRange},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, err := b.Fetch("t", 0, tt.offset, tt.maxBytes, 0)
			if tt.err != nil {
				wantKerr(t, err, tt.err)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if res.HighWatermark != 8 || res.LastStableOffset != 8 || res.LogStartOffset != 0 {
				t.Fatalf("result %+v", res)
			}
			got := splitStored(t, res.Records)
			if len(got) != len(tt.bases) {
				t.Fatalf("got %d batches, want %v", len(got), tt.bases)
			}
			for i := range got {
				if got[i].base != tt.bases[i] {
					t.Fatalf("batch %d at %d, want %d", i, got[i].base, tt.bases[i])
				}
			}
		})
	}
	if _, err := b.Fetch("nope", 0, 0, 100, 0); !errors.Is(err, kerr.UnknownTopicOrPartition) {
		t.Fatalf("unknown topic: %v", err)
	}
}

func TestCompressionPassThrough(t *testing.T) {
	b := openBroker(t, Config{})
	createTopic(t, b, "t", 1, nil)
	var sent [][]byte
	for codec := int16(1); codec <= 4; codec++ {
		sent = append(sent, codecBatch(t, textRecords(3, 100), 3, codec))
		mustProduce(t, b, "t", 0, sent[len(sent)-1])
	}
	got := fetchAll(t, b, "t", 0, 0)
	for i := range sent {
		if !sameExceptOffsetAndEpoch(got[i].bytes, sent[i]) {
			t.Fatalf("codec %d batch changed", i+1)
		}
	}
}

func TestProduceValidationErrors(t *testing.T) {
	b := openBroker(t, Config{})
	createTopic(t, b, "t", 1, map[string]string{cfgMaxMessageBytes: "200"})
	corrupt := buildBatch(plain(1))
	corrupt[len(corrupt)-1] ^= 1
	txn := plain(1)
	txn.attrs = attrTransactional
	tid := "tx"
	ctx := context.Background()
	tests := []struct {
		name  string
		call  func() error
		want  *kerr.Error
		wantE error
	}{
		{"corrupt", func() error { _, err := produce(t, b, "t", 0, corrupt); return err }, kerr.CorruptMessage, nil},
		{"too large for the topic", func() error { _, err := produce(t, b, "t", 0, buildBatch(plain(20))); return err }, kerr.MessageTooLarge, nil},
		{"magic 1", func() error {
			m := buildBatch(plain(1))
			m[offMagic] = 1
			_, err := produce(t, b, "t", 0, m)
			return err
		}, kerr.InvalidRecord, nil},
		{"transactional batch without a producer id", func() error {
			_, err := b.Produce(ctx, "t", 0, buildBatch(txn), -1, &tid)
			return err
		}, kerr.InvalidRecord, nil},
		{"transactional batch without a transactional id", func() error { _, err := produce(t, b, "t", 0, buildBatch(txn)); return err }, kerr.TransactionalIDAuthorizationFailed, nil},
		{"unknown topic", func() error { _, err := produce(t, b, "u", 0, buildBatch(plain(1))); return err }, kerr.UnknownTopicOrPartition, nil},
		{"unknown partition", func() error { _, err := produce(t, b, "t", 1, buildBatch(plain(1))); return err }, kerr.UnknownTopicOrPartition, nil},
		{"negative partition", func() error { _, err := produce(t, b, "t", -1, buildBatch(plain(1))); return err }, kerr.UnknownTopicOrPartition, nil},
		{"internal topic", func() error {
			_, err := produce(t, b, "__consumer_offsets", 0, buildBatch(plain(1)))
			return err
		}, kerr.InvalidTopicException, nil},
		{"acks 2", func() error { _, err := b.Produce(ctx, "t", 0, buildBatch(plain(1)), 2, nil); return err }, kerr.InvalidRequiredAcks, nil},
		{"cancelled context", func() error {
			c, cancel := context.WithCancel(ctx)
			cancel()
			_, err := b.Produce(c, "t", 0, buildBatch(plain(1)), 1, nil)
			return err
		}, nil, context.Canceled},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.call()
			if tt.wantE != nil {
				if !errors.Is(err, tt.wantE) {
					t.Fatalf("got %v, want %v", err, tt.wantE)
				}
				return
			}
			wantKerr(t, err, tt.want)
		})
	}
	if _, hw, _ := b.PartitionOffsets("t", 0); hw != 0 {
		t.Fatalf("rejected batches were written: hw %d", hw)
	}
	// acks 0 and 1 append too.
	for _, acks := range []int16{0, 1} {
		if _, err := b.Produce(ctx, "t", 0, buildBatch(plain(1)), acks, nil); err != nil {
			t.Fatal(err)
		}
	}
	if _, hw, _ := b.PartitionOffsets("t", 0); hw != 2 {
		t.Fatalf("hw %d after acks 0 and 1", hw)
	}
}

func TestIdempotentDuplicateStoredOnce(t *testing.T) {
	b := openBroker(t, Config{})
	createTopic(t, b, "t", 1, nil)
	pid, epoch, err := b.InitProducerID(nil, 0, -1, -1)
	if err != nil {
		t.Fatal(err)
	}
	mustProduce(t, b, "t", 0, buildBatch(plain(2))) // offsets 0-1 from someone else
	first := buildBatch(idem(3, pid, epoch, 0))
	second := buildBatch(idem(2, pid, epoch, 3))
	if res := mustProduce(t, b, "t", 0, first); res.BaseOffset != 2 {
		t.Fatalf("first at %d", res.BaseOffset)
	}
	if res := mustProduce(t, b, "t", 0, second); res.BaseOffset != 5 {
		t.Fatalf("second at %d", res.BaseOffset)
	}
	// Retries of both are answered with their original offsets.
	if res := mustProduce(t, b, "t", 0, first); res.BaseOffset != 2 || res.LogAppendTime != -1 {
		t.Fatalf("retried first: %+v", res)
	}
	if res := mustProduce(t, b, "t", 0, second); res.BaseOffset != 5 {
		t.Fatalf("retried second: %+v", res)
	}
	got := fetchAll(t, b, "t", 0, 0)
	if len(got) != 3 || got[2].last != 6 {
		t.Fatalf("stored %d batches: %+v", len(got), got)
	}
	if _, hw, _ := b.PartitionOffsets("t", 0); hw != 7 {
		t.Fatalf("hw %d", hw)
	}
}

func TestSequenceErrors(t *testing.T) {
	b := openBroker(t, Config{})
	createTopic(t, b, "t", 2, nil)
	pid, _, _ := b.InitProducerID(nil, 0, -1, -1)
	// A new producer's first batch on a never-written partition must be 0.
	_, err := produce(t, b, "t", 1, buildBatch(idem(1, pid, 0, 5)))
	wantKerr(t, err, kerr.OutOfOrderSequenceNumber)

	mustProduce(t, b, "t", 0, buildBatch(idem(2, pid, 1, 0))) // seq 0-1, epoch 1
	_, err = produce(t, b, "t", 0, buildBatch(idem(1, pid, 1, 3)))
	wantKerr(t, err, kerr.OutOfOrderSequenceNumber)
	_, err = produce(t, b, "t", 0, buildBatch(idem(1, pid, 0, 2)))
	wantKerr(t, err, kerr.InvalidProducerEpoch)
	_, err = produce(t, b, "t", 0, buildBatch(idem(1, pid, 2, 2)))
	wantKerr(t, err, kerr.OutOfOrderSequenceNumber)
	mustProduce(t, b, "t", 0, buildBatch(idem(1, pid, 1, 2)))
	mustProduce(t, b, "t", 0, buildBatch(idem(1, pid, 2, 0)))
	// A producer unknown to a written partition may start anywhere.
	mustProduce(t, b, "t", 0, buildBatch(idem(1, pid+1, 0, 77)))
	if _, hw, _ := b.PartitionOffsets("t", 0); hw != 5 {
		t.Fatalf("hw %d", hw)
	}
}

func TestLogAppendTime(t *testing.T) {
	b := openBroker(t, Config{})
	createTopic(t, b, "t", 1, map[string]string{cfgTimestampType: "LogAppendTime"})
	sent := buildBatch(plain(3))
	res := mustProduce(t, b, "t", 0, sent)
	if res.LogAppendTime <= 0 {
		t.Fatalf("log append time %d", res.LogAppendTime)
	}
	got := fetchAll(t, b, "t", 0, 0)[0] // splitStored checks the recomputed CRC
	h := readBatchHeader(got.bytes)
	if !h.logAppendTime() || h.maxTimestamp != res.LogAppendTime || h.baseTimestamp != 1000 {
		t.Fatalf("stored header %+v", h)
	}
	if !bytes.Equal(got.bytes[batchHeaderSize:], sent[batchHeaderSize:]) {
		t.Fatal("records changed")
	}
	off, ts, err := b.ListOffset("t", 0, TimestampMaxTimestamp, 0)
	if err != nil || ts != res.LogAppendTime || off != 0 {
		t.Fatalf("max timestamp: %d %d %v", off, ts, err)
	}
}

func TestListOffsets(t *testing.T) {
	b := openBroker(t, Config{})
	createTopic(t, b, "t", 1, nil)
	if off, ts, err := b.ListOffset("t", 0, TimestampMaxTimestamp, 0); off != -1 || ts != -1 || err != nil {
		t.Fatalf("empty max timestamp: %d %d %v", off, ts, err)
	}
	s1 := plain(3)
	s1.baseTs, s1.tsDeltas = 1000, []int64{0, 500, 100} // 1000, 1500, 1100 at offsets 0-2
	s2 := plain(3)
	s2.baseTs, s2.tsDeltas = 2000, []int64{0, 10, 20} // 2000, 2010, 2020 at 3-5
	s3 := plain(2)
	s3.baseTs, s3.tsDeltas = 1200, []int64{0, 0} // 1200 at 6-7
	for _, s := range []batchSpec{s1, s2, s3} {
		mustProduce(t, b, "t", 0, buildBatch(s))
	}
	comp := plain(2)
	comp.baseTs = 3000 // max ts 3000 at 8-9
	comp.attrs, comp.opaque = 3, kgoCompress(t, 3, buildBatch(comp)[batchHeaderSize:])
	mustProduce(t, b, "t", 0, buildBatch(comp))
	tests := []struct {
		ts, wantOff, wantTs int64
	}{
		{TimestampLatest, 10, -1},
		{TimestampEarliest, 0, -1},
		{TimestampMaxTimestamp, 9, 3000}, // compressed: the batch's last offset
		{TimestampEarliestLocal, 0, -1},
		{TimestampLatestTiered, -1, -1},
		{0, 0, 1000},
		{1000, 0, 1000},
		{1001, 1, 1500},
		{1400, 1, 1500},
		{1501, 3, 2000},
		{2005, 4, 2010},
		{2020, 5, 2020},
		{2500, 8, 3000}, // compressed: the batch's first offset and max timestamp
		{3001, -1, -1},
	}
	for _, tt := range tests {
		off, ts, err := b.ListOffset("t", 0, tt.ts, 0)
		if err != nil || off != tt.wantOff || ts != tt.wantTs {
			t.Errorf("ListOffset(%d) = %d, %d, %v; want %d, %d", tt.ts, off, ts, err, tt.wantOff, tt.wantTs)
		}
	}
	// Without the compressed batch, the exact record with the max timestamp.
	createTopic(t, b, "u", 1, nil)
	for _, s := range []batchSpec{s1, s2, s3} {
		mustProduce(t, b, "u", 0, buildBatch(s))
	}
	if off, ts, err := b.ListOffset("u", 0, TimestampMaxTimestamp, 0); off != 5 || ts != 2020 || err != nil {
		t.Fatalf("max timestamp: %d %d %v", off, ts, err)
	}
	// After DeleteRecords, lookups start at the log start offset.
	if _, err := b.DeleteRecords("u", 0, 4); err != nil {
		t.Fatal(err)
	}
	if off, ts, err := b.ListOffset("u", 0, 0, 0); off != 4 || ts != 2010 || err != nil {
		t.Fatalf("by timestamp after delete: %d %d %v", off, ts, err)
	}
	if off, _, _ := b.ListOffset("u", 0, TimestampEarliest, 0); off != 4 {
		t.Fatalf("earliest %d", off)
	}
	// The segment's max timestamp (2020 at 5) now lies below the start.
	if _, err := b.DeleteRecords("u", 0, 6); err != nil {
		t.Fatal(err)
	}
	if off, ts, err := b.ListOffset("u", 0, TimestampMaxTimestamp, 0); off != 6 || ts != 1200 || err != nil {
		t.Fatalf("max timestamp above the start: %d %d %v", off, ts, err)
	}
}

func TestDeleteRecords(t *testing.T) {
	b := openBroker(t, Config{SegmentBytes: 512})
	createTopic(t, b, "t", 1, nil)
	for range 20 {
		mustProduce(t, b, "t", 0, buildBatch(plain(2))) // 40 offsets, ~5 batches per segment
	}
	p, _ := b.partition("t", 0)
	segsBefore := len(p.log.Segments())
	if segsBefore < 4 {
		t.Fatalf("only %d segments", segsBefore)
	}
	low, err := b.DeleteRecords("t", 0, 25)
	if err != nil || low != 25 {
		t.Fatalf("delete records: %d %v", low, err)
	}
	if segs := p.log.Segments(); len(segs) >= segsBefore || segs[0].FirstOffset > 25 || segs[0].NextOffset <= 25 {
		t.Fatalf("segments after delete: %+v", segs)
	}
	_, err = b.Fetch("t", 0, 24, 1<<20, 0)
	wantKerr(t, err, kerr.OffsetOutOfRange)
	res, err := b.Fetch("t", 0, 25, 1<<20, 0)
	if err != nil || res.LogStartOffset != 25 {
		t.Fatalf("fetch at the new start: %+v %v", res, err)
	}
	if got := splitStored(t, res.Records); got[0].base != 24 {
		t.Fatalf("first batch at %d, want the one holding 25", got[0].base)
	}
	if low, err := b.DeleteRecords("t", 0, 10); low != 25 || err != nil {
		t.Fatalf("delete below the start: %d %v", low, err)
	}
	_, err = b.DeleteRecords("t", 0, 41)
	wantKerr(t, err, kerr.OffsetOutOfRange)
	if res := mustProduce(t, b, "t", 0, buildBatch(plain(1))); res.LogStartOffset != 25 || res.BaseOffset != 40 {
		t.Fatalf("produce after delete: %+v", res)
	}
	if low, err := b.DeleteRecords("t", 0, -1); low != 41 || err != nil {
		t.Fatalf("delete to the high watermark: %d %v", low, err)
	}
	if res, err := b.Fetch("t", 0, 41, 1<<20, 0); err != nil || len(res.Records) != 0 {
		t.Fatalf("fetch at hw after deleting all: %+v %v", res, err)
	}
	b = reopen(t, b)
	if lso, hw, _ := b.PartitionOffsets("t", 0); lso != 41 || hw != 41 {
		t.Fatalf("after restart: %d %d", lso, hw)
	}
}

// copyDir copies a data directory while its broker is open: what a crash
// leaves behind (everything written is synced under FsyncAlways).
func copyDir(t testing.TB, src, dst string) {
	t.Helper()
	err := filepath.WalkDir(src, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, path)
		target := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		in, err := os.Open(path)
		if err != nil {
			return err
		}
		defer in.Close()
		out, err := os.Create(target)
		if err != nil {
			return err
		}
		defer out.Close()
		_, err = io.Copy(out, in)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestRestartRecovery(t *testing.T) {
	for _, crash := range []bool{false, true} {
		name := map[bool]string{false: "clean close", true: "crash"}[crash]
		t.Run(name, func(t *testing.T) {
			b := openBroker(t, Config{})
			clusterID := b.ClusterID()
			a := createTopic(t, b, "a", 3, map[string]string{cfgRetentionMs: "123456", cfgTimestampType: "LogAppendTime"})
			createTopic(t, b, "gone", 1, nil)
			pid, epoch, _ := b.InitProducerID(nil, 0, -1, -1)
			sent := buildBatch(idem(4, pid, epoch, 0))
			mustProduce(t, b, "a", 2, buildBatch(plain(6)))
			first := mustProduce(t, b, "a", 2, sent)
			if err := b.CreatePartitions("a", 4, false); err != nil {
				t.Fatal(err)
			}
			mustProduce(t, b, "a", 3, buildBatch(plain(2)))
			if _, err := b.DeleteRecords("a", 2, 3); err != nil {
				t.Fatal(err)
			}
			if err := b.DeleteTopic("gone"); err != nil {
				t.Fatal(err)
			}
			b.SnapshotState()
			// Written after the last snapshot: recovered from the log tail.
			next := buildBatch(idem(1, pid, epoch, 4))
			second := mustProduce(t, b, "a", 2, next)

			if crash {
				dir := t.TempDir()
				copyDir(t, b.cfg.DataDir, dir)
				b.Close()
				b = openBroker(t, Config{DataDir: dir})
			} else {
				b = reopen(t, b)
			}
			if b.ClusterID() != clusterID {
				t.Fatalf("cluster id %q, was %q", b.ClusterID(), clusterID)
			}
			topics := userTopics(b)
			if len(topics) != 1 || topics[0].Name != "a" || topics[0].ID != a.ID || topics[0].Partitions != 4 ||
				topics[0].Configs[cfgRetentionMs] != "123456" || topics[0].Configs[cfgTimestampType] != "LogAppendTime" {
				t.Fatalf("topics after restart: %+v", topics)
			}
			if info, ok := b.TopicByID(a.ID); !ok || info.Name != "a" {
				t.Fatal("topic by id lost")
			}
			if lso, hw, _ := b.PartitionOffsets("a", 2); lso != 3 || hw != 11 {
				t.Fatalf("a-2 offsets %d %d", lso, hw)
			}
			if _, hw, _ := b.PartitionOffsets("a", 3); hw != 2 {
				t.Fatalf("a-3 hw %d", hw)
			}
			if got := fetchAll(t, b, "a", 2, 3); len(got) != 3 || got[1].base != 6 || got[2].base != 10 {
				t.Fatalf("a-2 data: %+v", got)
			}
			// Producer state survived: retries are duplicates, the sequence goes on.
			if res := mustProduce(t, b, "a", 2, sent); res.BaseOffset != first.BaseOffset {
				t.Fatalf("retry of the snapshotted batch at %d, want %d", res.BaseOffset, first.BaseOffset)
			}
			if res := mustProduce(t, b, "a", 2, next); res.BaseOffset != second.BaseOffset {
				t.Fatalf("retry of the tail batch at %d, want %d", res.BaseOffset, second.BaseOffset)
			}
			_, err := produce(t, b, "a", 2, buildBatch(idem(1, pid, epoch, 9)))
			wantKerr(t, err, kerr.OutOfOrderSequenceNumber)
			mustProduce(t, b, "a", 2, buildBatch(idem(1, pid, epoch, 5)))
			// Producer ids never repeat.
			if id, _, _ := b.InitProducerID(nil, 0, -1, -1); id <= pid {
				t.Fatalf("producer id %d after %d", id, pid)
			}
			// The deleted topic's data is gone.
			ents, _ := os.ReadDir(filepath.Join(b.cfg.DataDir, "data"))
			if len(ents) != 2 { // a and __consumer_offsets
				t.Fatalf("data dirs: %v", ents)
			}
		})
	}
}

func TestDeleteAndRecreate(t *testing.T) {
	b := openBroker(t, Config{})
	old := createTopic(t, b, "t", 1, nil)
	mustProduce(t, b, "t", 0, buildBatch(plain(5)))
	if err := b.DeleteTopic("t"); err != nil {
		t.Fatal(err)
	}
	if _, err := produce(t, b, "t", 0, buildBatch(plain(1))); !errors.Is(err, kerr.UnknownTopicOrPartition) {
		t.Fatalf("produce to a deleted topic: %v", err)
	}
	wantKerr(t, b.DeleteTopic("t"), kerr.UnknownTopicOrPartition)
	fresh := createTopic(t, b, "t", 1, nil)
	if fresh.ID == old.ID {
		t.Fatal("recreated topic kept its id")
	}
	if _, hw, _ := b.PartitionOffsets("t", 0); hw != 0 {
		t.Fatalf("recreated topic has hw %d", hw)
	}
	if _, ok := b.TopicByID(old.ID); ok {
		t.Fatal("old id still resolves")
	}
	b = reopen(t, b)
	if _, hw, _ := b.PartitionOffsets("t", 0); hw != 0 {
		t.Fatalf("after restart hw %d", hw)
	}
}

func TestTopicAdminErrors(t *testing.T) {
	b := openBroker(t, Config{DefaultPartitions: 3})
	createTopic(t, b, "a.b", 1, nil)
	bad := func(s string) map[string]*string { return map[string]*string{cfgRetentionMs: &s} }
	tests := []struct {
		name       string
		topic      string
		partitions int32
		rf         int16
		configs    map[string]*string
		want       *kerr.Error
	}{
		{"empty name", "", 1, 1, nil, kerr.InvalidTopicException},
		{"dot", ".", 1, 1, nil, kerr.InvalidTopicException},
		{"bad char", "a b", 1, 1, nil, kerr.InvalidTopicException},
		{"exists", "a.b", 1, 1, nil, kerr.TopicAlreadyExists},
		{"collides", "a_b", 1, 1, nil, kerr.InvalidTopicException},
		{"zero partitions", "x", 0, 1, nil, kerr.InvalidPartitions},
		{"negative partitions", "x", -5, 1, nil, kerr.InvalidPartitions},
		{"too many partitions", "x", maxPartitionsPerTopic + 1, 1, nil, kerr.InvalidPartitions},
		{"rf 3", "x", 1, 3, nil, kerr.InvalidReplicationFactor},
		{"rf 0", "x", 1, 0, nil, kerr.InvalidReplicationFactor},
		{"bad config value", "x", 1, 1, bad("soon"), kerr.InvalidConfig},
		{"unknown config", "x", 1, 1, map[string]*string{"x.y": nil}, kerr.InvalidConfig},
		{"bad policy", "x", 1, 1, map[string]*string{cfgCleanupPolicy: func() *string { s := "compact,shred"; return &s }()}, kerr.InvalidConfig},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := b.CreateTopic(tt.topic, tt.partitions, tt.rf, tt.configs, false)
			wantKerr(t, err, tt.want)
		})
	}
	info, err := b.CreateTopic("v", -1, -1, nil, true)
	if err != nil || info.Partitions != 3 {
		t.Fatalf("validate only: %+v %v", info, err)
	}
	if _, ok := b.Topic("v"); ok {
		t.Fatal("validate only created the topic")
	}
	createTopic(t, b, "d", -1, nil)
	if info, _ := b.Topic("d"); info.Partitions != 3 {
		t.Fatalf("default partitions: %d", info.Partitions)
	}
	wantKerr(t, b.CreatePartitions("d", 3, false), kerr.InvalidPartitions)
	wantKerr(t, b.CreatePartitions("d", 2, false), kerr.InvalidPartitions)
	wantKerr(t, b.CreatePartitions("nope", 5, false), kerr.UnknownTopicOrPartition)
	if err := b.CreatePartitions("d", 5, true); err != nil {
		t.Fatal(err)
	}
	if info, _ := b.Topic("d"); info.Partitions != 3 {
		t.Fatal("validate only added partitions")
	}
	if err := b.CreatePartitions("d", 5, false); err != nil {
		t.Fatal(err)
	}
	mustProduce(t, b, "d", 4, buildBatch(plain(1)))
	if info, _ := b.Topic("d"); info.Partitions != 5 {
		t.Fatal("partitions not added")
	}
	info, ok := b.Topic("__consumer_offsets")
	if !ok || !info.Internal || info.Partitions != defaultOffsetsTopicPartitions {
		t.Fatalf("internal topic %+v (exists %v)", info, ok)
	}
	wantKerr(t, b.DeleteTopic("__consumer_offsets"), kerr.InvalidTopicException)
	wantKerr(t, b.CreatePartitions("__consumer_offsets", 60, false), kerr.InvalidTopicException)
	_, err = b.CreateTopic("__consumer_offsets", 1, -1, nil, false)
	wantKerr(t, err, kerr.TopicAlreadyExists)
}

// userTopics is Topics without the internal ones.
func userTopics(b *Broker) []TopicInfo {
	var out []TopicInfo
	for _, t := range b.Topics() {
		if !t.Internal {
			out = append(out, t)
		}
	}
	return out
}

func TestAutoCreateTopic(t *testing.T) {
	off := openBroker(t, Config{})
	_, err := off.AutoCreateTopic("t")
	wantKerr(t, err, kerr.UnknownTopicOrPartition)
	on := openBroker(t, Config{AutoCreateTopics: true, DefaultPartitions: 2})
	info, err := on.AutoCreateTopic("t")
	if err != nil || info.Partitions != 2 {
		t.Fatalf("%+v %v", info, err)
	}
	again, err := on.AutoCreateTopic("t")
	if err != nil || again.ID != info.ID {
		t.Fatalf("second auto create: %+v %v", again, err)
	}
	_, err = on.AutoCreateTopic("bad name")
	wantKerr(t, err, kerr.InvalidTopicException)
}

func TestTopicConfigs(t *testing.T) {
	b := openBroker(t, Config{})
	createTopic(t, b, "t", 1, map[string]string{cfgRetentionMs: "1000"})
	value := func(name string) (string, int8) {
		t.Helper()
		entries, err := b.TopicConfigs("t")
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			if e.Name == name {
				return *e.Value, e.Source
			}
		}
		t.Fatalf("no config %s", name)
		return "", 0
	}
	if v, src := value(cfgRetentionMs); v != "1000" || src != sourceDynamicTopic {
		t.Fatalf("retention.ms %s %d", v, src)
	}
	if v, src := value(cfgMaxMessageBytes); v != "1048588" || src != sourceDefault {
		t.Fatalf("max.message.bytes %s %d", v, src)
	}
	// AlterConfigs replaces everything.
	mmb := "100"
	if err := b.AlterTopicConfigs("t", map[string]*string{cfgMaxMessageBytes: &mmb}, false); err != nil {
		t.Fatal(err)
	}
	if v, src := value(cfgRetentionMs); v != "604800000" || src != sourceDefault {
		t.Fatalf("retention.ms after replace: %s %d", v, src)
	}
	// The new max.message.bytes applies to the next produce.
	_, err := produce(t, b, "t", 0, buildBatch(plain(5)))
	wantKerr(t, err, kerr.MessageTooLarge)
	// Validate only and invalid changes change nothing.
	big := "1000000"
	if err := b.AlterTopicConfigs("t", map[string]*string{cfgMaxMessageBytes: &big}, true); err != nil {
		t.Fatal(err)
	}
	bogus := "x"
	wantKerr(t, b.AlterTopicConfigs("t", map[string]*string{cfgMaxMessageBytes: &bogus}, false), kerr.InvalidConfig)
	wantKerr(t, b.IncrementalAlterTopicConfigs("t", []ConfigOp{{Name: cfgSegmentBytes, Op: opSet, Value: &bogus}}, false), kerr.InvalidConfig)
	wantKerr(t, b.AlterTopicConfigs("nope", nil, false), kerr.UnknownTopicOrPartition)
	if v, _ := value(cfgMaxMessageBytes); v != "100" {
		t.Fatalf("max.message.bytes %s", v)
	}
	lat := "LogAppendTime"
	err = b.IncrementalAlterTopicConfigs("t", []ConfigOp{
		{Name: cfgMaxMessageBytes, Op: opDelete},
		{Name: cfgTimestampType, Op: opSet, Value: &lat},
	}, false)
	if err != nil {
		t.Fatal(err)
	}
	if res := mustProduce(t, b, "t", 0, buildBatch(plain(5))); res.LogAppendTime < 0 {
		t.Fatal("LogAppendTime not applied")
	}
	b = reopen(t, b)
	if v, src := value(cfgTimestampType); v != "LogAppendTime" || src != sourceDynamicTopic {
		t.Fatalf("after restart: %s %d", v, src)
	}
	if v, _ := value(cfgMaxMessageBytes); v != "1048588" {
		t.Fatalf("after restart max.message.bytes %s", v)
	}
	if len(b.BrokerConfigs()) == 0 {
		t.Fatal("no broker configs")
	}
}

func TestRetention(t *testing.T) {
	b := openBroker(t, Config{SegmentBytes: 512})
	createTopic(t, b, "age", 1, map[string]string{cfgRetentionMs: "60000"})
	createTopic(t, b, "size", 1, map[string]string{cfgRetentionBytes: "1024"})
	createTopic(t, b, "keep", 1, map[string]string{cfgRetentionMs: "-1"})
	old := plain(2)
	old.baseTs = 1 // 1970: far older than any retention.ms
	fresh := plain(2)
	fresh.baseTs = time.Now().UnixMilli()
	for _, topic := range []string{"age", "size", "keep"} {
		for range 20 {
			mustProduce(t, b, topic, 0, buildBatch(old))
		}
		mustProduce(t, b, topic, 0, buildBatch(fresh))
	}
	if n := b.RunRetention(); n == 0 {
		t.Fatal("nothing dropped")
	}
	for _, topic := range []string{"age", "size"} {
		p, _ := b.partition(topic, 0)
		lso, hw, _ := b.PartitionOffsets(topic, 0)
		if lso == 0 || lso >= hw || hw != 42 {
			t.Fatalf("%s: lso %d hw %d", topic, lso, hw)
		}
		if segs := p.log.Segments(); segs[0].FirstOffset != lso {
			t.Fatalf("%s: lso %d but first segment at %d", topic, lso, segs[0].FirstOffset)
		}
		_, err := b.Fetch(topic, 0, 0, 100, 0)
		wantKerr(t, err, kerr.OffsetOutOfRange)
		if res, err := b.Fetch(topic, 0, lso, 1<<20, 0); err != nil || len(res.Records) == 0 {
			t.Fatalf("%s: fetch at lso: %v", topic, err)
		}
	}
	p, _ := b.partition("size", 0)
	if p.log.Size() > 1024+512 {
		t.Fatalf("size topic holds %d bytes", p.log.Size())
	}
	if lso, _, _ := b.PartitionOffsets("keep", 0); lso != 0 {
		t.Fatal("retention.ms=-1 dropped data")
	}
}

func TestInitProducerID(t *testing.T) {
	b := openBroker(t, Config{})
	id1, e1, err := b.InitProducerID(nil, 0, -1, -1)
	if err != nil || e1 != 0 {
		t.Fatal(err)
	}
	id2, _, _ := b.InitProducerID(nil, 0, -1, -1)
	if id2 != id1+1 {
		t.Fatalf("ids %d %d", id1, id2)
	}
	if id, e, _ := b.InitProducerID(nil, 0, id1, 0); id != id1 || e != 1 {
		t.Fatalf("bump: %d %d", id, e)
	}
	if id, e, _ := b.InitProducerID(nil, 0, id1, 32766); id == id1 || e != 0 {
		t.Fatalf("exhausted epoch: %d %d", id, e)
	}
	if id, _, _ := b.InitProducerID(nil, 0, 999999, 3); id == 999999 {
		t.Fatal("bumped an id this cluster never allocated")
	}
	// A transactional id goes to its coordinator: a fresh id at epoch 0,
	// then the epoch bumped (the earlier producer fenced).
	tid := "tx"
	tx1, te1, err := b.InitProducerID(&tid, 1000, -1, -1)
	if err != nil || te1 != 0 {
		t.Fatalf("transactional init: %d %d %v", tx1, te1, err)
	}
	if tx2, te2, err := b.InitProducerID(&tid, 1000, -1, -1); err != nil || tx2 != tx1 || te2 != 1 {
		t.Fatalf("transactional re-init: %d %d %v, want %d 1", tx2, te2, err, tx1)
	}
	_, _, err = b.InitProducerID(&tid, int32((time.Hour).Milliseconds()), -1, -1)
	wantKerr(t, err, kerr.InvalidTransactionTimeout)
	b = reopen(t, b)
	if id, _, _ := b.InitProducerID(nil, 0, -1, -1); id <= id2+2 {
		t.Fatalf("id %d reused after restart", id)
	}
}

func TestAppendSignal(t *testing.T) {
	b := openBroker(t, Config{})
	createTopic(t, b, "t", 1, nil)
	ch := b.AppendSignal()
	if b.AppendSignal() != ch {
		t.Fatal("two waiters got different channels before an append")
	}
	select {
	case <-ch:
		t.Fatal("closed before an append")
	default:
	}
	mustProduce(t, b, "t", 0, buildBatch(plain(1)))
	<-ch // closed by the append; a hang fails the test by timeout
	if b.AppendSignal() == ch {
		t.Fatal("signal not renewed")
	}
}

func TestClusterIDAndClose(t *testing.T) {
	dir := t.TempDir()
	b := openBroker(t, Config{DataDir: dir, ClusterID: "my-cluster"})
	if b.ClusterID() != "my-cluster" || !b.Ready() {
		t.Fatal("configured cluster id not used")
	}
	createTopic(t, b, "t", 1, nil)
	mustProduce(t, b, "t", 0, buildBatch(plain(1)))
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if !errors.Is(b.Close(), ErrClosed) || b.Ready() {
		t.Fatal("second close")
	}
	if _, err := produce(t, b, "t", 0, buildBatch(plain(1))); !errors.Is(err, ErrClosed) {
		t.Fatalf("produce after close: %v", err)
	}
	if _, err := b.CreateTopic("u", 1, 1, nil, false); !errors.Is(err, ErrClosed) {
		t.Fatalf("create after close: %v", err)
	}
	if _, err := Open(Config{DataDir: dir, ClusterID: "other", Logger: zerolog.Nop()}); err == nil {
		t.Fatal("opened with a different cluster id")
	}
	b = openBroker(t, Config{DataDir: dir})
	if b.ClusterID() != "my-cluster" {
		t.Fatalf("cluster id %q", b.ClusterID())
	}
	gen := openBroker(t, Config{})
	if len(gen.ClusterID()) != 22 {
		t.Fatalf("generated cluster id %q", gen.ClusterID())
	}
	dirName, parts := b.LogDirs()
	parts = slices.DeleteFunc(parts, func(p PartitionDirInfo) bool { return p.Topic == "__consumer_offsets" })
	if dirName != dir || len(parts) != 1 || parts[0].Topic != "t" || parts[0].Size <= 0 {
		t.Fatalf("log dirs %s %+v", dirName, parts)
	}
}

func TestMetadataLogCompaction(t *testing.T) {
	defer func(old uint64) { metaCompactThreshold = old }(metaCompactThreshold)
	metaCompactThreshold = 5
	b := openBroker(t, Config{})
	for _, name := range []string{"a", "b", "c", "d"} {
		createTopic(t, b, name, 1, nil)
	}
	if err := b.DeleteTopic("b"); err != nil {
		t.Fatal(err)
	}
	if err := b.CreatePartitions("c", 3, false); err != nil {
		t.Fatal(err)
	}
	pid, _, _ := b.InitProducerID(nil, 0, -1, -1)
	mustProduce(t, b, "c", 2, buildBatch(plain(1)))
	before := b.meta.LastIndex() - b.meta.FirstIndex() + 1
	b = reopen(t, b)
	if n := b.meta.LastIndex() - b.meta.FirstIndex() + 1; n != 1 || before < 5 {
		t.Fatalf("metadata log has %d records after compaction (%d before)", n, before)
	}
	topics := userTopics(b)
	if len(topics) != 3 || topics[1].Name != "c" || topics[1].Partitions != 3 {
		t.Fatalf("topics after compaction: %+v", topics)
	}
	if _, hw, _ := b.PartitionOffsets("c", 2); hw != 1 {
		t.Fatal("data lost")
	}
	b = reopen(t, b) // replays the snapshot alone
	if len(userTopics(b)) != 3 {
		t.Fatal("snapshot replay")
	}
	if id, _, _ := b.InitProducerID(nil, 0, -1, -1); id <= pid {
		t.Fatalf("producer id %d after %d", id, pid)
	}
}

func TestProduceStartKeepsOrder(t *testing.T) {
	b := openBroker(t, Config{})
	createTopic(t, b, "t", 1, nil)
	pid, epoch, _ := b.InitProducerID(nil, 0, -1, -1)
	var hs []*ProduceHandle
	for i := range 5 {
		hs = append(hs, b.ProduceStart(context.Background(), "t", 0, buildBatch(idem(2, pid, epoch, int32(2*i))), -1, nil))
	}
	bad := b.ProduceStart(context.Background(), "nope", 0, buildBatch(plain(1)), -1, nil)
	_, err := bad.Wait()
	wantKerr(t, err, kerr.UnknownTopicOrPartition)
	// Waited for in reverse: the last Wait appends all five, in start order.
	for i := len(hs) - 1; i >= 0; i-- {
		res, err := hs[i].Wait()
		if err != nil || res.BaseOffset != int64(2*i) {
			t.Fatalf("request %d: %+v %v", i, res, err)
		}
	}
	if got := fetchAll(t, b, "t", 0, 0); len(got) != 5 {
		t.Fatalf("%d batches", len(got))
	}
}

func TestStrayDataRemovedOnOpen(t *testing.T) {
	b := openBroker(t, Config{})
	a := createTopic(t, b, "a", 1, nil)
	mustProduce(t, b, "a", 0, buildBatch(plain(1)))
	dataDir := filepath.Join(b.cfg.DataDir, "data")
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	// What a crash leaves between creating directories and writing the
	// metadata record: a topic nobody knows, a partition beyond the count.
	stray := filepath.Join(dataDir, topicIDHex([16]byte{7, 7, 7}), "0")
	extra := filepath.Join(dataDir, topicIDHex(a.ID), "5")
	for _, d := range []string{stray, extra} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	os.WriteFile(extra+".state", []byte("{}"), 0o644)
	b = openBroker(t, b.cfg)
	for _, p := range []string{filepath.Dir(stray), extra, extra + ".state"} {
		if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("%s survived: %v", p, err)
		}
	}
	if got := fetchAll(t, b, "a", 0, 0); len(got) != 1 {
		t.Fatal("live data removed")
	}
	// Without its metadata log, a data directory is left alone.
	b.Close()
	if err := os.RemoveAll(filepath.Join(b.cfg.DataDir, "meta")); err != nil {
		t.Fatal(err)
	}
	b = openBroker(t, b.cfg)
	if _, err := os.Stat(filepath.Join(dataDir, topicIDHex(a.ID), "0")); err != nil {
		t.Fatalf("data removed after losing the metadata log: %v", err)
	}
}

func TestIdleProducersExpire(t *testing.T) {
	b := openBroker(t, Config{})
	createTopic(t, b, "t", 1, map[string]string{cfgRetentionMs: "-1"})
	old := idem(1, 5, 0, 0)
	old.baseTs = 1 // last written in 1970: idle far longer than producer.id.expiration.ms
	mustProduce(t, b, "t", 0, buildBatch(old))
	_, err := produce(t, b, "t", 0, buildBatch(idem(1, 5, 0, 7)))
	wantKerr(t, err, kerr.OutOfOrderSequenceNumber)
	b.RunRetention()
	// Forgotten: like any unknown producer on a written partition, it may
	// go on at any sequence.
	mustProduce(t, b, "t", 0, buildBatch(idem(1, 5, 0, 7)))
}

func TestSegmentBytesTopicConfig(t *testing.T) {
	b := openBroker(t, Config{SegmentBytes: 1024})
	createTopic(t, b, "small", 1, nil)
	createTopic(t, b, "big", 1, map[string]string{cfgSegmentBytes: "1048576"})
	for range 10 {
		for _, topic := range []string{"small", "big"} {
			mustProduce(t, b, topic, 0, buildBatch(plain(10)))
		}
	}
	small, _ := b.partition("small", 0)
	big, _ := b.partition("big", 0)
	if len(small.log.Segments()) < 3 || len(big.log.Segments()) != 1 {
		t.Fatalf("segments: small %d, big %d", len(small.log.Segments()), len(big.log.Segments()))
	}
}

func TestStorageErrors(t *testing.T) {
	b := openBroker(t, Config{})
	createTopic(t, b, "t", 1, nil)
	mustProduce(t, b, "t", 0, buildBatch(plain(1)))
	p, _ := b.partition("t", 0)
	p.log.Close() // the log fails under the partition
	_, err := produce(t, b, "t", 0, buildBatch(plain(1)))
	wantKerr(t, err, kerr.KafkaStorageError)
	if _, hw, _ := b.PartitionOffsets("t", 0); hw != 1 {
		t.Fatalf("hw %d after a failed append", hw)
	}
	_, err = b.Fetch("t", 0, 0, 100, 0)
	wantKerr(t, err, kerr.KafkaStorageError)
}
