package kafka

import (
	"bytes"
	"encoding/binary"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// badInputEnv is a server with one topic holding known data, so that each
// bad-input test can check afterwards that the log is unharmed.
type badInputEnv struct {
	*testEnv
	stored []byte
}

func startBadInputEnv(t *testing.T, opts ...envOpt) *badInputEnv {
	e := startEnv(t, opts...)
	e.createTopic("precious", 1, map[string]*string{"max.message.bytes": kmsg.StringPtr("2000")})
	rc := e.dial()
	for i := range 3 {
		p := producePartitionResponse(t, rc.roundTrip(produceRequest("precious", 0, plainBatch(5, int64(1000*i)))))
		wantCode(t, "produce", p.ErrorCode)
	}
	return &badInputEnv{testEnv: e, stored: storedBytes(t, e, "precious", 0)}
}

// checkUnharmed checks that a new connection is served and the log reads
// back exactly as before, through the protocol.
func (e *badInputEnv) checkUnharmed(t *testing.T) {
	t.Helper()
	rc := e.dial()
	checkAlive(t, rc)
	p := rc.roundTrip(fetchRequest("precious", 0, 0)).(*kmsg.FetchResponse).Topics[0].Partitions[0]
	wantCode(t, "fetch", p.ErrorCode)
	if !bytes.Equal(p.RecordBatches, e.stored) || p.HighWatermark != 15 {
		t.Fatalf("log changed: %d bytes up to %d, had %d bytes up to 15", len(p.RecordBatches), p.HighWatermark, len(e.stored))
	}
}

func TestOversizedFrameClosesConnection(t *testing.T) {
	e := startBadInputEnv(t, withMaxRequestBytes(1<<20))
	for _, size := range []uint32{1<<20 + 1, 0x7fffffff, 0xffffffff} {
		rc := e.dial()
		rc.write(binary.BigEndian.AppendUint32(nil, size)) // and nothing else: refused on the prefix alone
		rc.expectClosed()
	}
	e.waitForLog("frame larger than max request bytes")
	e.checkUnharmed(t)
}

func TestTruncatedFrameClosesConnection(t *testing.T) {
	e := startBadInputEnv(t)
	// A prefix promising 100 bytes, then 10 and the end of the stream.
	rc := e.dial()
	rc.write(append(binary.BigEndian.AppendUint32(nil, 100), make([]byte, 10)...))
	rc.c.(*net.TCPConn).CloseWrite()
	rc.expectClosed()
	e.waitForLog("truncated frame")

	// A frame too short to hold a request header.
	rc = e.dial()
	rc.write([]byte{0, 0, 0, 3, 0, 3, 0})
	rc.expectClosed()

	// A whole frame whose body ends early: Metadata v12 promising topics.
	rc = e.dial()
	body := []byte{5} // compact array of 4 topics, none present
	rc.write(rawRequest(3, 12, 1, append([]byte{0}, body...)))
	rc.expectClosed()
	e.waitForLog("undecodable request")
	e.checkUnharmed(t)
}

func TestUnknownAPIKeyClosesConnection(t *testing.T) {
	e := startBadInputEnv(t)
	for _, key := range []int16{57, 999, -1} { // UpdateFeatures (not served), unknown, negative
		rc := e.dial()
		rc.write(rawRequest(key, 0, 7, nil))
		rc.expectClosed()
	}
	e.waitForLog("unknown or unserved API key 57")
	e.waitForLog("unknown or unserved API key 999")
	e.checkUnharmed(t)
}

func TestCorruptCRC(t *testing.T) {
	e := startBadInputEnv(t)
	batch := plainBatch(3, 5000)
	batch[len(batch)-1] ^= 0xff // a record byte: covered by the CRC
	rc := e.dial()
	p := producePartitionResponse(t, rc.roundTrip(produceRequest("precious", 0, batch)))
	if p.ErrorCode != kerr.CorruptMessage.Code {
		t.Fatalf("corrupt batch: %v, want CORRUPT_MESSAGE", kerr.ErrorForCode(p.ErrorCode))
	}
	checkAlive(t, rc)
	e.checkUnharmed(t)
}

func TestMessageTooLarge(t *testing.T) {
	e := startBadInputEnv(t) // precious has max.message.bytes=2000
	batch := makeBatch(batchOpts{producerID: -1, producerEpoch: -1, baseSequence: -1},
		testRecord{value: bytes.Repeat([]byte{'x'}, 3000)})
	rc := e.dial()
	p := producePartitionResponse(t, rc.roundTrip(produceRequest("precious", 0, batch)))
	if p.ErrorCode != kerr.MessageTooLarge.Code {
		t.Fatalf("large batch: %v, want MESSAGE_TOO_LARGE", kerr.ErrorForCode(p.ErrorCode))
	}
	checkAlive(t, rc)
	e.checkUnharmed(t)
}

var invalidTopicNames = []string{"", ".", "..", "a/b", "sp ace", "ünïcode", strings.Repeat("x", 250), "nul\x00"}

func TestInvalidTopicNames(t *testing.T) {
	e := startBadInputEnv(t, withAutoCreate())
	rc := e.dial()
	create := kmsg.NewPtrCreateTopicsRequest()
	create.SetVersion(7)
	for _, name := range invalidTopicNames {
		rt := kmsg.NewCreateTopicsRequestTopic()
		rt.Topic, rt.NumPartitions, rt.ReplicationFactor = name, 1, 1
		create.Topics = append(create.Topics, rt)
	}
	for _, st := range rc.roundTrip(create).(*kmsg.CreateTopicsResponse).Topics {
		if st.ErrorCode != kerr.InvalidTopicException.Code {
			t.Errorf("create %q: %v, want INVALID_TOPIC_EXCEPTION", st.Topic, kerr.ErrorForCode(st.ErrorCode))
		}
	}

	meta := metadataRequest(invalidTopicNames...)
	meta.AllowAutoTopicCreation = true
	for _, mt := range rc.roundTrip(meta).(*kmsg.MetadataResponse).Topics {
		if mt.ErrorCode != kerr.InvalidTopicException.Code {
			t.Errorf("metadata %q: %v, want INVALID_TOPIC_EXCEPTION", *mt.Topic, kerr.ErrorForCode(mt.ErrorCode))
		}
	}
	if n := len(e.b.Topics()); n != 2 {
		t.Fatalf("%d topics exist, want only precious and __consumer_offsets", n)
	}
	e.checkUnharmed(t)
}

func TestProduceToMissingTopic(t *testing.T) {
	e := startBadInputEnv(t) // auto-create off
	rc := e.dial()
	p := producePartitionResponse(t, rc.roundTrip(produceRequest("missing", 0, plainBatch(1, 1))))
	if p.ErrorCode != kerr.UnknownTopicOrPartition.Code {
		t.Fatalf("produce to a missing topic: %v, want UNKNOWN_TOPIC_OR_PARTITION", kerr.ErrorForCode(p.ErrorCode))
	}
	p = producePartitionResponse(t, rc.roundTrip(produceRequest("precious", 7, plainBatch(1, 1))))
	if p.ErrorCode != kerr.UnknownTopicOrPartition.Code {
		t.Fatalf("produce to a missing partition: %v, want UNKNOWN_TOPIC_OR_PARTITION", kerr.ErrorForCode(p.ErrorCode))
	}
	meta := metadataRequest("missing")
	meta.AllowAutoTopicCreation = true // the broker's setting wins
	if mt := rc.roundTrip(meta).(*kmsg.MetadataResponse).Topics[0]; mt.ErrorCode != kerr.UnknownTopicOrPartition.Code {
		t.Fatalf("metadata for a missing topic: %v, want UNKNOWN_TOPIC_OR_PARTITION", kerr.ErrorForCode(mt.ErrorCode))
	}
	if _, ok := e.b.Topic("missing"); ok {
		t.Fatal("the topic was created")
	}
	e.checkUnharmed(t)
}

func TestMetadataAutoCreate(t *testing.T) {
	e := startEnv(t, withAutoCreate())
	rc := e.dial()
	meta := metadataRequest("fresh")
	meta.AllowAutoTopicCreation = true
	mt := rc.roundTrip(meta).(*kmsg.MetadataResponse).Topics[0]
	wantCode(t, "metadata auto-create", mt.ErrorCode)
	info, ok := e.b.Topic("fresh")
	if !ok || mt.TopicID != info.ID || int32(len(mt.Partitions)) != info.Partitions {
		t.Fatalf("auto-created topic: %+v, metadata %+v", info, mt)
	}
	meta = metadataRequest("not-asked")
	meta.AllowAutoTopicCreation = false // the request's setting wins too
	if mt := rc.roundTrip(meta).(*kmsg.MetadataResponse).Topics[0]; mt.ErrorCode != kerr.UnknownTopicOrPartition.Code {
		t.Fatalf("metadata without auto-create: %v", kerr.ErrorForCode(mt.ErrorCode))
	}
}

func TestIdleConnectionsAreClosed(t *testing.T) {
	e := startEnv(t, withIdleTimeout(50*time.Millisecond))
	rc := e.dial()
	checkAlive(t, rc)
	rc.expectClosed()
	e.waitForLog("idle timeout")
}

// Fetch sessions are answered as Kafka answers them with no session cache:
// epoch 0 or -1 is a full fetch whatever the session id (Kafka closes a
// named session, then answers; we never open one), any other epoch is an
// incremental fetch in an unknown session.
func TestFetchSessions(t *testing.T) {
	e := startEnv(t)
	e.createTopic("s", 1, nil)
	rc := e.dial()
	for _, tc := range []struct {
		id, epoch int32
		full      bool
	}{
		{12345, 1, false}, // incremental in a session never created
		{0, 5, false},     // incremental without a session id: Kafka looks up session 0, finds none
		{7, -2, false},
		{0, 0, true},      // asks for a session: full answer, SessionID 0 (none created)
		{0, -1, true},     // sessionless
		{-1, -1, true},    // kafka-go's Client.Fetch
		{12345, -1, true}, // closes session 12345 (none), answers sessionless
		{12345, 0, true},  // closes session 12345 (none), asks for a new one
	} {
		req := fetchRequest("s", 0, 0)
		req.SessionID, req.SessionEpoch = tc.id, tc.epoch
		resp := rc.roundTrip(req).(*kmsg.FetchResponse)
		if !tc.full {
			if resp.ErrorCode != kerr.FetchSessionIDNotFound.Code || len(resp.Topics) != 0 {
				t.Fatalf("session %d epoch %d: %v with %d topics, want FETCH_SESSION_ID_NOT_FOUND and none",
					tc.id, tc.epoch, kerr.ErrorForCode(resp.ErrorCode), len(resp.Topics))
			}
			continue
		}
		if resp.ErrorCode != 0 || resp.SessionID != 0 || len(resp.Topics) != 1 || len(resp.Topics[0].Partitions) != 1 ||
			resp.Topics[0].Partitions[0].ErrorCode != 0 {
			t.Fatalf("session %d epoch %d: code %d session %d, %d topics; want a full sessionless answer",
				tc.id, tc.epoch, resp.ErrorCode, resp.SessionID, len(resp.Topics))
		}
	}
}
