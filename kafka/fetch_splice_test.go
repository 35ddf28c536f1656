package kafka

import (
	"bytes"
	"testing"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// TestFetchSpliceMatchesEncoding: for every Fetch version, the pieces
// encodeFetchResponse writes are byte for byte the frame kmsg encodes, with
// records of every size class (none, inline, spliced, large enough for a
// multi-byte uvarint length) and error partitions between them.
func TestFetchSpliceMatchesEncoding(t *testing.T) {
	records := func(n int, seed byte) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = seed + byte(i*13)
		}
		return b
	}
	for v := int16(4); v <= 18; v++ {
		resp := kmsg.NewPtrFetchResponse()
		resp.Version = v
		for ti, name := range []string{"a", "topic-two", "x"} {
			st := kmsg.NewFetchResponseTopic()
			st.Topic = name
			st.TopicID[0] = byte(ti + 1)
			for pi, n := range []int{0, 100, minSplicedRecords, 70_000, -1, 3 << 20} {
				sp := kmsg.NewFetchResponseTopicPartition()
				sp.Partition = int32(pi)
				sp.HighWatermark, sp.LastStableOffset, sp.LogStartOffset = 1<<40+int64(pi), 33, 0
				switch {
				case n < 0:
					sp.ErrorCode = 1
				case n > 0:
					sp.RecordBatches = records(n, byte(ti*7+pi))
				}
				st.Partitions = append(st.Partitions, sp)
			}
			resp.Topics = append(resp.Topics, st)
		}
		want := append([]byte(nil), *encodeResponse(77, resp)...)
		frame, bufs := encodeFetchResponse(77, resp)
		if bufs == nil {
			t.Fatalf("v%d: nothing spliced", v)
		}
		var got []byte
		for _, b := range bufs {
			got = append(got, b...)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("v%d: spliced response (%d bytes) differs from the encoding (%d bytes)", v, len(got), len(want))
		}
		if len(*frame) > 4096 {
			t.Fatalf("v%d: frame holds %d bytes; records were copied into it", v, len(*frame))
		}
		// The response is left as it was.
		if again := *encodeResponse(77, resp); !bytes.Equal(again, want) {
			t.Fatalf("v%d: response changed by encodeFetchResponse", v)
		}
	}
}

// A partition without records (caught up, or answered with an error) has
// an empty records field, as Kafka sends, never a null one: librdkafka
// fails to parse null ("invalid MessageSetSize -1"), backs off, and never
// sees the partition's error code. Every Fetch version, raw on the wire.
func TestFetchEmptyRecordsNotNull(t *testing.T) {
	e := startEnv(t)
	info := e.createTopic("empty", 1, nil)
	rc := e.dial()
	for v := int16(4); v <= 18; v++ {
		req := kmsg.NewPtrFetchRequest()
		req.Version, req.MaxBytes, req.SessionEpoch = v, 1<<20, -1
		for _, part := range []int32{0, 7} { // caught up; no such partition
			rt := kmsg.NewFetchRequestTopic()
			rt.Topic, rt.TopicID = "empty", info.ID
			rp := kmsg.NewFetchRequestTopicPartition()
			rp.Partition, rp.PartitionMaxBytes, rp.CurrentLeaderEpoch = part, 1<<20, -1
			rt.Partitions = append(rt.Partitions, rp)
			req.Topics = append(req.Topics, rt)
		}
		resp := rc.roundTrip(req).(*kmsg.FetchResponse)
		for _, st := range resp.Topics {
			for _, sp := range st.Partitions {
				if sp.RecordBatches == nil {
					t.Errorf("v%d partition %d (%v): null records, want empty", v, sp.Partition, kerr.ErrorForCode(sp.ErrorCode))
				}
			}
		}
		if len(resp.Topics) != 2 || resp.Topics[1].Partitions[0].ErrorCode == 0 {
			t.Fatalf("v%d: %+v, want partition 7 to fail", v, resp.Topics)
		}
	}
}
