package kafka

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// makeRecords builds n deterministic records: keys, half-compressible
// values of varying length, headers and increasing timestamps.
func makeRecords(topic string, n int, seed uint64) []*kgo.Record {
	rng := rand.New(rand.NewPCG(seed, 42))
	base := time.UnixMilli(1_700_000_000_000)
	recs := make([]*kgo.Record, n)
	for i := range recs {
		value := make([]byte, 20+rng.IntN(200))
		for j := range value {
			if j%2 == 0 {
				value[j] = byte(rng.Uint32())
			} else {
				value[j] = 'a' + byte(j%7)
			}
		}
		recs[i] = &kgo.Record{
			Topic:     topic,
			Key:       []byte(fmt.Sprintf("key-%d", i)),
			Value:     value,
			Headers:   []kgo.RecordHeader{{Key: "i", Value: []byte(fmt.Sprint(i))}, {Key: "empty"}},
			Timestamp: base.Add(time.Duration(i) * time.Millisecond),
		}
	}
	return recs
}

// produceAll produces recs and fails the test on any error; afterwards each
// record has its partition and offset.
func produceAll(ctx context.Context, t *testing.T, cl *kgo.Client, recs []*kgo.Record) {
	t.Helper()
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatalf("produce: %v", err)
	}
}

// consumeAll reads every partition of topic from the start until n records
// have arrived.
func consumeAll(ctx context.Context, t *testing.T, e *testEnv, topic string, partitions int32, n int) []*kgo.Record {
	t.Helper()
	offsets := map[int32]kgo.Offset{}
	for p := range partitions {
		offsets[p] = kgo.NewOffset().AtStart()
	}
	cl := e.client(kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: offsets}))
	defer cl.Close()
	var got []*kgo.Record
	for len(got) < n {
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			t.Fatalf("consumed %d of %d records: %v", len(got), n, err)
		}
		fs.EachError(func(topic string, p int32, err error) { t.Fatalf("fetch %s-%d: %v", topic, p, err) })
		got = append(got, fs.Records()...)
	}
	if len(got) != n {
		t.Fatalf("consumed %d records, want %d", len(got), n)
	}
	return got
}

// sameRecords compares produced and consumed records by partition and
// offset: keys, values, headers and timestamps must be identical.
func sameRecords(t *testing.T, produced, consumed []*kgo.Record) {
	t.Helper()
	type at struct {
		p int32
		o int64
	}
	byOffset := make(map[at]*kgo.Record, len(consumed))
	for _, r := range consumed {
		byOffset[at{r.Partition, r.Offset}] = r
	}
	for _, want := range produced {
		got, ok := byOffset[at{want.Partition, want.Offset}]
		if !ok {
			t.Fatalf("record %s at %d/%d not read back", want.Key, want.Partition, want.Offset)
		}
		if !bytes.Equal(got.Key, want.Key) || !bytes.Equal(got.Value, want.Value) ||
			!got.Timestamp.Equal(want.Timestamp) || len(got.Headers) != len(want.Headers) {
			t.Fatalf("record at %d/%d differs: got key %q value %d bytes ts %v, want key %q value %d bytes ts %v",
				want.Partition, want.Offset, got.Key, len(got.Value), got.Timestamp, want.Key, len(want.Value), want.Timestamp)
		}
		for i, h := range want.Headers {
			if got.Headers[i].Key != h.Key || !bytes.Equal(got.Headers[i].Value, h.Value) {
				t.Fatalf("record at %d/%d: header %d differs", want.Partition, want.Offset, i)
			}
		}
	}
}

// storedBytes reads a partition's whole log, as stored, through the broker.
func storedBytes(t *testing.T, e *testEnv, topic string, partition int32) []byte {
	t.Helper()
	start, hw, err := e.b.PartitionOffsets(topic, partition)
	if err != nil {
		t.Fatal(err)
	}
	var all []byte
	for offset := start; offset < hw; {
		res, err := e.b.Fetch(topic, partition, offset, 1<<20, 0)
		if err != nil {
			t.Fatalf("fetch %s-%d at %d: %v", topic, partition, offset, err)
		}
		batches := decodeBatches(t, res.Records)
		if len(batches) == 0 {
			t.Fatalf("fetch %s-%d at %d below HW %d returned nothing", topic, partition, offset, hw)
		}
		last := batches[len(batches)-1]
		offset = last.FirstOffset + int64(last.LastOffsetDelta) + 1
		all = append(all, res.Records...)
	}
	return all
}

// TestEndToEndCodecsRestart produces 100,000 records over 6 partitions with
// every codec through kgo, reads them back, restarts the server on the same
// directory and reads them back again, byte for byte.
func TestEndToEndCodecsRestart(t *testing.T) {
	n := 100_000
	if raceEnabled || testing.Short() {
		n = 5_000
	}
	ctx := testContext(t)
	e := startEnv(t)
	codecs := []struct {
		name  string
		codec kgo.CompressionCodec
	}{
		{"none", kgo.NoCompression()},
		{"gzip", kgo.GzipCompression()},
		{"snappy", kgo.SnappyCompression()},
		{"lz4", kgo.Lz4Compression()},
		{"zstd", kgo.ZstdCompression()},
	}
	produced := map[string][]*kgo.Record{}
	stored := map[string][][]byte{}
	for i, c := range codecs {
		topic := "e2e-" + c.name
		e.createTopic(topic, 6, nil)
		recs := makeRecords(topic, n, uint64(i))
		cl := e.client(kgo.ProducerBatchCompression(c.codec), kgo.ProducerLinger(5*time.Millisecond))
		produceAll(ctx, t, cl, recs)
		cl.Close()
		sameRecords(t, recs, consumeAll(ctx, t, e, topic, 6, n))
		produced[topic] = recs
		for p := range int32(6) {
			stored[topic] = append(stored[topic], storedBytes(t, e, topic, p))
		}
	}

	e.restart()

	for topic, recs := range produced {
		sameRecords(t, recs, consumeAll(ctx, t, e, topic, 6, n))
		for p := range int32(6) {
			if after := storedBytes(t, e, topic, p); !bytes.Equal(after, stored[topic][p]) {
				t.Fatalf("%s-%d: %d stored bytes after restart differ from the %d before", topic, p, len(after), len(stored[topic][p]))
			}
		}
	}
}

// TestAcks produces with acks 0, 1 and all and reads everything back.
func TestAcks(t *testing.T) {
	ctx := testContext(t)
	e := startEnv(t)
	for _, tc := range []struct {
		name string
		opts []kgo.Opt
	}{
		{"acks=0", []kgo.Opt{kgo.RequiredAcks(kgo.NoAck()), kgo.DisableIdempotentWrite()}},
		{"acks=1", []kgo.Opt{kgo.RequiredAcks(kgo.LeaderAck()), kgo.DisableIdempotentWrite()}},
		{"acks=all", []kgo.Opt{kgo.RequiredAcks(kgo.AllISRAcks())}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			topic := "acks-" + tc.name[5:]
			e.createTopic(topic, 2, nil)
			recs := makeRecords(topic, 2000, 7)
			produceAll(ctx, t, e.client(tc.opts...), recs)
			got := consumeAll(ctx, t, e, topic, 2, len(recs))
			if tc.name == "acks=0" {
				// No acknowledgements: offsets are unknown to the
				// producer, so compare by key.
				seen := map[string]bool{}
				for _, r := range got {
					seen[string(r.Key)] = true
				}
				for _, r := range recs {
					if !seen[string(r.Key)] {
						t.Fatalf("record %s lost", r.Key)
					}
				}
				return
			}
			sameRecords(t, recs, got)
		})
	}
}

// TestAcksZeroGetsNoResponse checks on the wire that acks=0 produce is not
// answered (the next frame answers the next request), and that a failed
// acks=0 produce closes the connection.
func TestAcksZeroGetsNoResponse(t *testing.T) {
	e := startEnv(t)
	e.createTopic("quiet", 1, nil)
	rc := e.dial()
	produce := produceRequest("quiet", 0, plainBatch(3, 1000))
	produce.Acks = 0
	rc.send(produce)
	meta := metadataRequest("quiet")
	resp := rc.read(meta, rc.send(meta)).(*kmsg.MetadataResponse)
	if len(resp.Topics) != 1 {
		t.Fatalf("metadata: %+v", resp.Topics)
	}
	if _, hw, _ := e.b.PartitionOffsets("quiet", 0); hw != 3 {
		t.Fatalf("high watermark %d after acks=0 produce, want 3", hw)
	}

	bad := produceRequest("no-such-topic", 0, plainBatch(3, 1000))
	bad.Acks = 0
	rc.send(bad)
	rc.expectClosed()
	e.waitForLog("acks=0 produce to no-such-topic-0 failed")
	checkAlive(t, e.dial())
}

func produceRequest(topic string, partition int32, records []byte) *kmsg.ProduceRequest {
	req := kmsg.NewPtrProduceRequest()
	req.SetVersion(9)
	req.Acks, req.TimeoutMillis = -1, 10000
	rt := kmsg.NewProduceRequestTopic()
	rt.Topic = topic
	rp := kmsg.NewProduceRequestTopicPartition()
	rp.Partition, rp.Records = partition, records
	rt.Partitions = append(rt.Partitions, rp)
	req.Topics = append(req.Topics, rt)
	return req
}

func producePartitionResponse(t testing.TB, resp kmsg.Response) kmsg.ProduceResponseTopicPartition {
	t.Helper()
	pr := resp.(*kmsg.ProduceResponse)
	if len(pr.Topics) != 1 || len(pr.Topics[0].Partitions) != 1 {
		t.Fatalf("produce response %+v", pr.Topics)
	}
	return pr.Topics[0].Partitions[0]
}

// TestIdempotentDuplicate sends the same idempotent produce request twice:
// the batch is stored once and both acks carry the same base offset.
func TestIdempotentDuplicate(t *testing.T) {
	e := startEnv(t)
	e.createTopic("idem", 1, nil)
	rc := e.dial()
	if first := producePartitionResponse(t, rc.roundTrip(produceRequest("idem", 0, plainBatch(2, 500)))); first.ErrorCode != 0 {
		t.Fatalf("first produce: %v", kerr.ErrorForCode(first.ErrorCode))
	}

	init := kmsg.NewPtrInitProducerIDRequest()
	init.SetVersion(4)
	ir := rc.roundTrip(init).(*kmsg.InitProducerIDResponse)
	wantCode(t, "init producer id", ir.ErrorCode)
	batch := makeBatch(batchOpts{firstTimestamp: 1000, producerID: ir.ProducerID, producerEpoch: ir.ProducerEpoch, baseSequence: 0},
		testRecord{key: []byte("a"), value: []byte("1")}, testRecord{key: []byte("b"), value: []byte("2")})

	var offsets []int64
	for range 2 {
		p := producePartitionResponse(t, rc.roundTrip(produceRequest("idem", 0, batch)))
		wantCode(t, "idempotent produce", p.ErrorCode)
		offsets = append(offsets, p.BaseOffset)
	}
	if offsets[0] != 2 || offsets[1] != 2 {
		t.Fatalf("base offsets %v, want [2 2]", offsets)
	}
	if _, hw, _ := e.b.PartitionOffsets("idem", 0); hw != 4 {
		t.Fatalf("high watermark %d, want 4: the duplicate was stored", hw)
	}
	if n := len(decodeBatches(t, storedBytes(t, e, "idem", 0))); n != 2 {
		t.Fatalf("%d batches stored, want 2", n)
	}
}

// TestListOffsetsByTime finds offsets by record timestamp, through kadm and
// on the wire.
func TestListOffsetsByTime(t *testing.T) {
	ctx := testContext(t)
	e := startEnv(t)
	e.createTopic("times", 1, nil)
	rc := e.dial()
	for _, ts := range []int64{1000, 2000, 3000} {
		p := producePartitionResponse(t, rc.roundTrip(produceRequest("times", 0, plainBatch(10, ts))))
		wantCode(t, "produce", p.ErrorCode)
	}

	adm := e.admin()
	listed, err := adm.ListOffsetsAfterMilli(ctx, 2000, "times")
	if err != nil {
		t.Fatal(err)
	}
	if o, ok := listed.Lookup("times", 0); !ok || o.Err != nil || o.Offset != 10 || o.Timestamp != 2000 {
		t.Fatalf("after 2000ms: %+v", o)
	}

	for _, tc := range []struct {
		ts, offset, timestamp int64
	}{
		{0, 0, 1000},
		{2005, 15, 2005},
		{3009, 29, 3009},
		{3010, -1, -1},
		{-3, 29, 3009}, // max timestamp
		{-2, 0, -1},
		{-1, 30, -1},
	} {
		req := kmsg.NewPtrListOffsetsRequest()
		req.SetVersion(8)
		rt := kmsg.NewListOffsetsRequestTopic()
		rt.Topic = "times"
		rp := kmsg.NewListOffsetsRequestTopicPartition()
		rp.Timestamp = tc.ts
		rt.Partitions = append(rt.Partitions, rp)
		req.Topics = append(req.Topics, rt)
		p := rc.roundTrip(req).(*kmsg.ListOffsetsResponse).Topics[0].Partitions[0]
		wantCode(t, fmt.Sprintf("list offsets at %d", tc.ts), p.ErrorCode)
		if p.Offset != tc.offset || (tc.ts != -1 && tc.ts != -2 && p.Timestamp != tc.timestamp) {
			t.Errorf("timestamp %d: offset %d ts %d, want %d %d", tc.ts, p.Offset, p.Timestamp, tc.offset, tc.timestamp)
		}
	}
}

// TestDeleteRecords moves the log start offset with kadm and checks reads
// below it fail and reads above it still see the records.
func TestDeleteRecords(t *testing.T) {
	ctx := testContext(t)
	e := startEnv(t)
	e.createTopic("trim", 1, nil)
	recs := makeRecords("trim", 100, 3)
	produceAll(ctx, t, e.client(kgo.ProducerLinger(0)), recs)

	adm := e.admin()
	res, err := adm.DeleteRecords(ctx, kadm.Offsets{"trim": {0: {Topic: "trim", Partition: 0, At: 50}}})
	if err != nil {
		t.Fatal(err)
	}
	if r, ok := res.Lookup("trim", 0); !ok || r.Err != nil || r.LowWatermark != 50 {
		t.Fatalf("delete records: %+v", r)
	}
	starts, err := adm.ListStartOffsets(ctx, "trim")
	if err != nil {
		t.Fatal(err)
	}
	if o, _ := starts.Lookup("trim", 0); o.Offset != 50 {
		t.Fatalf("start offset %d, want 50", o.Offset)
	}

	rc := e.dial()
	fetch := fetchRequest("trim", 0, 10)
	if p := rc.roundTrip(fetch).(*kmsg.FetchResponse).Topics[0].Partitions[0]; p.ErrorCode != kerr.OffsetOutOfRange.Code {
		t.Fatalf("fetch below the log start: %v, want OFFSET_OUT_OF_RANGE", kerr.ErrorForCode(p.ErrorCode))
	}
	got := consumeAll(ctx, t, e, "trim", 1, 50)
	sameRecords(t, recs[50:], got)
}

// fetchRequest is a v12 sessionless fetch of one partition.
func fetchRequest(topic string, partition int32, offset int64) *kmsg.FetchRequest {
	req := kmsg.NewPtrFetchRequest()
	req.SetVersion(12)
	req.MaxWaitMillis, req.MinBytes, req.MaxBytes, req.SessionEpoch = 0, 1, 50<<20, -1
	rt := kmsg.NewFetchRequestTopic()
	rt.Topic = topic
	rp := kmsg.NewFetchRequestTopicPartition()
	rp.Partition, rp.FetchOffset, rp.PartitionMaxBytes = partition, offset, 1<<20
	rt.Partitions = append(rt.Partitions, rp)
	req.Topics = append(req.Topics, rt)
	return req
}

// TestRetentionDropsOldSegments fills a topic with small segments and a
// small retention.bytes, runs retention, and checks the earliest offset
// moved while the rest of the log is intact.
func TestRetentionDropsOldSegments(t *testing.T) {
	ctx := testContext(t)
	e := startEnv(t)
	e.createTopic("retained", 1, map[string]*string{
		"segment.bytes":   kmsg.StringPtr("1048576"),
		"retention.bytes": kmsg.StringPtr("1048576"),
	})
	// Random values: about 5 MiB on disk whatever the producer's codec.
	rng := rand.New(rand.NewPCG(1, 2))
	recs := make([]*kgo.Record, 5000)
	for i := range recs {
		value := make([]byte, 1024)
		for j := range value {
			value[j] = byte(rng.Uint32())
		}
		recs[i] = &kgo.Record{Topic: "retained", Key: []byte(fmt.Sprint(i)), Value: value}
	}
	// Small batches, so that segments hold many of them.
	produceAll(ctx, t, e.client(kgo.ProducerBatchMaxBytes(64<<10)), recs)
	if dropped := e.b.RunRetention(); dropped == 0 {
		t.Fatal("retention dropped no segment")
	}
	adm := e.admin()
	starts, err := adm.ListStartOffsets(ctx, "retained")
	if err != nil {
		t.Fatal(err)
	}
	start, _ := starts.Lookup("retained", 0)
	if start.Err != nil || start.Offset <= 0 || start.Offset >= 5000 {
		t.Fatalf("earliest offset %d (%v) after retention, want in (0, 5000)", start.Offset, start.Err)
	}
	ends, err := adm.ListEndOffsets(ctx, "retained")
	if err != nil {
		t.Fatal(err)
	}
	if end, _ := ends.Lookup("retained", 0); end.Offset != 5000 {
		t.Fatalf("end offset %d, want 5000", end.Offset)
	}
	got := consumeAll(ctx, t, e, "retained", 1, int(5000-start.Offset))
	sameRecords(t, recs[start.Offset:], got)
}

// TestLongPollFetch issues a fetch that would wait 10 s for data and
// checks that a produce answers it with the data.
func TestLongPollFetch(t *testing.T) {
	e := startEnv(t)
	e.createTopic("poll", 1, nil)
	waiter := e.dial()
	fetch := fetchRequest("poll", 0, 0)
	fetch.MaxWaitMillis = 10_000
	corr := waiter.send(fetch)

	p := producePartitionResponse(t, e.dial().roundTrip(produceRequest("poll", 0, plainBatch(4, 1000))))
	wantCode(t, "produce", p.ErrorCode)

	fp := waiter.read(fetch, corr).(*kmsg.FetchResponse).Topics[0].Partitions[0]
	wantCode(t, "fetch", fp.ErrorCode)
	if batches := decodeBatches(t, fp.RecordBatches); len(batches) != 1 || batches[0].NumRecords != 4 {
		t.Fatalf("long poll returned %d batches, want the one produced", len(batches))
	}
}

// TestPipelinedRequests sends a long-poll fetch, a metadata request and a
// produce on one connection without waiting: the produce must run while the
// fetch waits (it answers it with data), and the answers come back in
// request order.
func TestPipelinedRequests(t *testing.T) {
	e := startEnv(t)
	e.createTopic("pipe", 1, nil)
	rc := e.dial()
	fetch := fetchRequest("pipe", 0, 0)
	fetch.MaxWaitMillis = 10_000
	meta := metadataRequest("pipe")
	produce := produceRequest("pipe", 0, plainBatch(3, 1000))
	cf, cm, cp := rc.send(fetch), rc.send(meta), rc.send(produce)

	fp := rc.read(fetch, cf).(*kmsg.FetchResponse).Topics[0].Partitions[0]
	if len(decodeBatches(t, fp.RecordBatches)) != 1 {
		t.Fatal("the fetch did not see the later produce: requests were not processed concurrently")
	}
	if mr := rc.read(meta, cm).(*kmsg.MetadataResponse); len(mr.Topics) != 1 {
		t.Fatalf("metadata %+v", mr.Topics)
	}
	wantCode(t, "produce", producePartitionResponse(t, rc.read(produce, cp)).ErrorCode)
}

// TestFetchLimits checks partition and response byte limits in whole
// batches, and KIP-74's first batch above the limit.
func TestFetchLimits(t *testing.T) {
	e := startEnv(t)
	e.createTopic("limits", 2, nil)
	rc := e.dial()
	var batchSize int
	for p := range int32(2) {
		for i := range 5 {
			b := makeBatch(batchOpts{firstTimestamp: int64(i), producerID: -1, producerEpoch: -1, baseSequence: -1},
				testRecord{value: bytes.Repeat([]byte{'x'}, 1000)})
			batchSize = len(b)
			wantCode(t, "produce", producePartitionResponse(t, rc.roundTrip(produceRequest("limits", p, b))).ErrorCode)
		}
	}
	fetch := func(maxBytes, partitionMaxBytes int32) []int {
		req := fetchRequest("limits", 0, 0)
		req.MaxBytes = maxBytes
		rp := req.Topics[0].Partitions[0]
		rp.Partition = 1
		req.Topics[0].Partitions = append(req.Topics[0].Partitions, rp)
		for i := range req.Topics[0].Partitions {
			req.Topics[0].Partitions[i].PartitionMaxBytes = partitionMaxBytes
		}
		var counts []int
		for _, p := range rc.roundTrip(req).(*kmsg.FetchResponse).Topics[0].Partitions {
			wantCode(t, "fetch", p.ErrorCode)
			if p.HighWatermark != 5 {
				t.Fatalf("partition %d: high watermark %d, want 5", p.Partition, p.HighWatermark)
			}
			counts = append(counts, len(decodeBatches(t, p.RecordBatches)))
		}
		return counts
	}
	for _, tc := range []struct {
		maxBytes, partitionMaxBytes int32
		want                        []int
	}{
		{1 << 20, 1 << 20, []int{5, 5}},
		{1 << 20, int32(2*batchSize + 10), []int{2, 2}},
		{int32(3*batchSize + 10), 1 << 20, []int{3, 0}},
		{1, 1, []int{1, 0}}, // KIP-74: the first batch even though it is too big
	} {
		if got := fetch(tc.maxBytes, tc.partitionMaxBytes); fmt.Sprint(got) != fmt.Sprint(tc.want) {
			t.Errorf("max bytes %d, partition max bytes %d: batches %v, want %v", tc.maxBytes, tc.partitionMaxBytes, got, tc.want)
		}
	}
}

// TestShutdownAnswersLongPolls checks that Shutdown answers a waiting fetch
// (empty) instead of waiting out its MaxWait, and that Serve returns nil.
func TestShutdownAnswersLongPolls(t *testing.T) {
	e := startEnv(t)
	e.createTopic("drain", 1, nil)
	rc := e.dial()
	fetch := fetchRequest("drain", 0, 0)
	fetch.MaxWaitMillis = 600_000
	corr := rc.send(fetch)
	e.waitPending() // the fetch is waiting now
	done := make(chan struct{})
	go func() {
		defer close(done)
		e.stop()
	}()
	fp := rc.read(fetch, corr).(*kmsg.FetchResponse).Topics[0].Partitions[0]
	wantCode(t, "fetch", fp.ErrorCode)
	if len(fp.RecordBatches) != 0 {
		t.Fatal("records from an empty partition")
	}
	rc.expectClosed()
	<-done
}

// TestPipelinedIdempotentProduce sends many idempotent produce requests to
// the same partitions on one connection without waiting for answers: they
// run concurrently yet must reach each partition in request order (else
// OUT_OF_ORDER_SEQUENCE_NUMBER), and the answers come back in order.
func TestPipelinedIdempotentProduce(t *testing.T) {
	e := startEnv(t)
	e.createTopic("seq", 2, nil)
	rc := e.dial()
	init := kmsg.NewPtrInitProducerIDRequest()
	init.SetVersion(4)
	ir := rc.roundTrip(init).(*kmsg.InitProducerIDResponse)
	wantCode(t, "init producer id", ir.ErrorCode)

	const requests, perBatch = 40, 3
	var sent []*kmsg.ProduceRequest
	var corrs []int32
	for i := range requests {
		req := produceRequest("seq", 0, nil)
		req.Topics[0].Partitions = nil
		for p := range int32(2) {
			recs := make([]testRecord, perBatch)
			for j := range recs {
				recs[j] = testRecord{value: []byte(fmt.Sprintf("%d-%d-%d", p, i, j))}
			}
			rp := kmsg.NewProduceRequestTopicPartition()
			rp.Partition = p
			rp.Records = makeBatch(batchOpts{firstTimestamp: 1, producerID: ir.ProducerID, producerEpoch: ir.ProducerEpoch,
				baseSequence: int32(i * perBatch)}, recs...)
			req.Topics[0].Partitions = append(req.Topics[0].Partitions, rp)
		}
		sent = append(sent, req)
		corrs = append(corrs, rc.send(req))
	}
	for i, req := range sent {
		for _, p := range rc.read(req, corrs[i]).(*kmsg.ProduceResponse).Topics[0].Partitions {
			wantCode(t, fmt.Sprintf("request %d partition %d", i, p.Partition), p.ErrorCode)
			if p.BaseOffset != int64(i*perBatch) {
				t.Fatalf("request %d partition %d: base offset %d, want %d", i, p.Partition, p.BaseOffset, i*perBatch)
			}
		}
	}
}
