package kafka

import (
	"context"
	"errors"
	"io"
	"testing"
	"time"

	kafkago "github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/kgo"
)

// kafka-go's Client.Fetch sends SessionID -1 and SessionEpoch -1 (FINAL_EPOCH):
// a full, sessionless fetch, which Kafka answers with the records whatever
// the session id. It used to get FETCH_SESSION_ID_NOT_FOUND and no topics.
func TestKafkaGoClientFetch(t *testing.T) {
	e := startEnv(t)
	e.createTopic("kgo-fetch", 1, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cl := e.client()
	want := []string{"alpha", "beta", "gamma"}
	for _, v := range want {
		if err := cl.ProduceSync(ctx, &kgo.Record{Topic: "kgo-fetch", Value: []byte(v)}).FirstErr(); err != nil {
			t.Fatalf("produce %s: %v", v, err)
		}
	}

	client := &kafkago.Client{Addr: kafkago.TCP(e.addr), Timeout: 20 * time.Second}
	resp, err := client.Fetch(ctx, &kafkago.FetchRequest{
		Topic: "kgo-fetch", Partition: 0, Offset: 0,
		MinBytes: 1, MaxBytes: 1 << 20, MaxWait: 500 * time.Millisecond,
	})
	if err != nil {
		t.Fatalf("kafka-go Client.Fetch: %v", err)
	}
	if resp.Error != nil {
		t.Fatalf("kafka-go Client.Fetch answered %v", resp.Error)
	}
	if resp.HighWatermark != int64(len(want)) {
		t.Fatalf("high watermark %d, want %d", resp.HighWatermark, len(want))
	}
	var got []string
	for i := 0; i <= len(want); i++ { // one more read than records, to see io.EOF
		rec, err := resp.Records.ReadRecord()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("read record %d: %v", i, err)
		}
		v, err := io.ReadAll(rec.Value)
		if err != nil {
			t.Fatalf("read value of record %d: %v", i, err)
		}
		if rec.Offset != int64(i) {
			t.Fatalf("record %d has offset %d", i, rec.Offset)
		}
		got = append(got, string(v))
	}
	if len(got) != len(want) {
		t.Fatalf("fetched %q, want %q", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("fetched %q, want %q", got, want)
		}
	}
}
