package kafka

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"net"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/chronik-stream/chronik/broker"
)

// Fetch: v4-18
//
// Behaviour:
//   - Fetch sessions (KIP-227) are answered as Kafka answers them with no
//     session cache slots (max.incremental.fetch.session.cache.slots=0):
//     see fullFetch. A full fetch (SessionEpoch 0 or -1, whatever the
//     SessionID) gets a full answer with SessionID 0, which tells the
//     client that no session exists, so it keeps sending full fetches;
//     ForgottenTopics are ignored. An incremental fetch (any other epoch)
//     names a session we never created: FETCH_SESSION_ID_NOT_FOUND.
//   - Long poll: while fewer than MinBytes are available and no partition
//     has an error, wait up to MaxWaitMillis for the next append
//     (broker.AppendSignal) and fetch again. Shutdown answers waiting
//     fetches at once with what they have.
//   - Limits, in whole batches: PartitionMaxBytes per partition, MaxBytes
//     for the response. The first batch of the response is returned even
//     if it is larger than either (KIP-74). Never past the high watermark.
//   - CurrentLeaderEpoch (v9+): FENCED_LEADER_EPOCH if older than the
//     partition's, UNKNOWN_LEADER_EPOCH if newer, -1 skips the check.
//   - Authorization: READ on each topic, else TOPIC_AUTHORIZATION_FAILED
//     for its partitions (before their existence is checked).
//   - IsolationLevel: read_uncommitted (0) reads up to the high watermark
//     and gets AbortedTransactions null, as Kafka sends it;
//     read_committed (1) reads up to the last stable offset (never past
//     the first batch of an undecided transaction) and gets the aborted
//     transactions overlapping the records, an empty array when there are
//     none (also Kafka's answer). LastStableOffset is reported for both.
//
// Version notes:
//   - v4: IsolationLevel, LastStableOffset, AbortedTransactions
//   - v5: LogStartOffset
//   - v7: sessions and the top-level ErrorCode
//   - v9: CurrentLeaderEpoch
//   - v11: Rack (ignored), PreferredReadReplica (always -1)
//   - v12: flexible; LastFetchedEpoch (not checked: no epoch history yet)
//   - v13: topics named by ID (KIP-516): UNKNOWN_TOPIC_ID
//   - v15: ReplicaState replaces ReplicaID
//   - v12+: NOT_LEADER_OR_FOLLOWER carries the current leader and epoch;
//     v16+ also that leader's endpoint (KIP-951), so the consumer moves the
//     partition without a metadata refresh
//   - v16-v18: replica fields a consumer does not send

func (s *Server) handleFetch(ctx context.Context, r *request) kmsg.Response {
	req := r.kreq.(*kmsg.FetchRequest)
	resp := req.ResponseKind().(*kmsg.FetchResponse)
	if !fullFetch(req.SessionEpoch) {
		resp.ErrorCode = s.counted(kerr.FetchSessionIDNotFound.Code)
		return resp
	}

	names, denied := s.fetchSkeleton(r, req, resp)
	var timer *time.Timer
	for {
		// Take the signal before reading, so an append racing with the
		// read still wakes us.
		appended := s.b.AppendSignal()
		n, failed := s.fillFetch(req, resp, names, denied)
		if failed && req.Version >= 12 {
			// Only a failed pass can hold NOT_LEADER_OR_FOLLOWER.
			s.addFetchLeaderHints(r.listener, req.Version, resp)
		}
		if failed || int64(n) >= int64(req.MinBytes) || req.MaxWaitMillis <= 0 {
			return resp
		}
		if timer == nil {
			timer = time.NewTimer(time.Duration(req.MaxWaitMillis) * time.Millisecond)
			defer timer.Stop()
		}
		select {
		case <-appended:
		case <-timer.C:
			return resp
		case <-ctx.Done():
			return resp
		case <-s.draining:
			return resp
		}
	}
}

// Session epochs of KIP-227 (Kafka's FetchMetadata).
const (
	fetchInitialEpoch = 0  // a full fetch that asks for a new session
	fetchFinalEpoch   = -1 // a full fetch that closes any session and opens none
)

// fullFetch reports whether a fetch with this session epoch is a full fetch,
// as Kafka's FetchMetadata.isFull decides: epoch 0 or -1, whatever the
// session id. Kafka's FetchManager.newContext first removes the session the
// request names (if it exists), then answers a -1 sessionless and a 0 with a
// new session if its cache has room. We keep no session cache, so both get
// the full answer with SessionID 0 and there is nothing to remove. kafka-go's
// Client.Fetch sends SessionID -1 with epoch -1 and must get its records.
// Any other epoch is an incremental fetch in a session we never created.
func fullFetch(sessionEpoch int32) bool {
	return sessionEpoch == fetchInitialEpoch || sessionEpoch == fetchFinalEpoch
}

// noRecords is the records field of a partition without any: empty, as
// Kafka sends (MemoryRecords.EMPTY), never null. librdkafka (kcat,
// confluent-kafka) fails to parse a null records field ("invalid
// MessageSetSize -1"), backs off, and never sees the partition's error
// code, so it kept fetching from a former leader.
var noRecords = []byte{}

// fetchSkeleton lays out the response topics and partitions in request
// order, resolves topic IDs to names ("" when unknown) and says which
// topics r's principal may not READ (decided once per fetch: a long poll
// keeps the answer it started with).
func (s *Server) fetchSkeleton(r *request, req *kmsg.FetchRequest, resp *kmsg.FetchResponse) (names []string, denied []bool) {
	names = make([]string, len(req.Topics))
	denied = make([]bool, len(req.Topics))
	resp.Topics = make([]kmsg.FetchResponseTopic, len(req.Topics))
	for i := range req.Topics {
		rt, st := &req.Topics[i], &resp.Topics[i]
		*st = kmsg.NewFetchResponseTopic()
		st.Topic, st.TopicID = rt.Topic, rt.TopicID
		names[i] = rt.Topic
		if req.Version >= 13 {
			names[i] = ""
			if info, ok := s.b.TopicByID(rt.TopicID); ok {
				names[i], st.Topic = info.Name, info.Name
			}
		}
		denied[i] = names[i] != "" && !s.mayTopic(r, kmsg.ACLOperationRead, names[i])
		st.Partitions = make([]kmsg.FetchResponseTopicPartition, len(rt.Partitions))
	}
	return names, denied
}

// fillFetch reads every partition once into resp, replacing what a previous
// pass put there. It returns the record bytes gathered and whether any
// partition failed (which answers the fetch at once).
func (s *Server) fillFetch(req *kmsg.FetchRequest, resp *kmsg.FetchResponse, names []string, denied []bool) (total int, failed bool) {
	remaining := int64(req.MaxBytes)
	for i := range req.Topics {
		rt, st := &req.Topics[i], &resp.Topics[i]
		name := names[i]
		for j := range rt.Partitions {
			rp, sp := &rt.Partitions[j], &st.Partitions[j]
			*sp = kmsg.NewFetchResponseTopicPartition()
			sp.Partition = rp.Partition
			sp.HighWatermark = -1
			sp.RecordBatches = noRecords

			code := int16(0)
			switch {
			case denied[i]:
				code = s.counted(kerr.TopicAuthorizationFailed.Code)
			case name == "" && req.Version >= 13:
				code = s.counted(kerr.UnknownTopicID.Code)
			case name == "":
				code = s.counted(kerr.UnknownTopicOrPartition.Code)
			case req.Version >= 9:
				code = s.checkLeaderEpoch(name, rp.Partition, rp.CurrentLeaderEpoch)
			}
			if code != 0 {
				sp.ErrorCode, failed = code, true
				continue
			}

			limit := min(int64(rp.PartitionMaxBytes), remaining)
			if total > 0 && limit <= 0 {
				// The response is full: offsets only, no read.
				logStart, hw, stable, err := s.b.FetchOffsets(name, rp.Partition)
				if err != nil {
					sp.ErrorCode, failed = s.codeOf(err, "fetch offsets"), true
					continue
				}
				sp.HighWatermark, sp.LastStableOffset, sp.LogStartOffset = hw, stable, logStart
				if req.IsolationLevel == broker.IsolationReadCommitted {
					sp.AbortedTransactions = noAbortedTransactions
				}
				continue
			}
			res, err := s.b.Fetch(name, rp.Partition, rp.FetchOffset, int32(max(limit, 0)), req.IsolationLevel)
			if err != nil {
				sp.ErrorCode, failed = s.codeOf(err, "fetch"), true
				continue
			}
			records := wholeBatches(res.Records, limit, total == 0)
			sp.HighWatermark = res.HighWatermark
			sp.LastStableOffset = res.LastStableOffset
			sp.LogStartOffset = res.LogStartOffset
			if req.IsolationLevel == broker.IsolationReadCommitted {
				sp.AbortedTransactions = abortedTransactions(res.AbortedTransactions)
			}
			if len(records) > 0 {
				sp.RecordBatches = records
			}
			total += len(records)
			remaining -= int64(len(records))
		}
	}
	return total, failed
}

// noAbortedTransactions is a read_committed partition's empty list: an
// empty array on the wire, where read_uncommitted gets null.
var noAbortedTransactions = []kmsg.FetchResponseTopicPartitionAbortedTransaction{}

// abortedTransactions converts the broker's aborted transactions of a
// read_committed fetch (the records the response keeps are a prefix of
// what the broker read, so its list covers them; a consumer ignores
// entries for records it was not sent).
func abortedTransactions(aborted []broker.AbortedTransaction) []kmsg.FetchResponseTopicPartitionAbortedTransaction {
	if len(aborted) == 0 {
		return noAbortedTransactions
	}
	out := make([]kmsg.FetchResponseTopicPartitionAbortedTransaction, len(aborted))
	for i, a := range aborted {
		out[i] = kmsg.NewFetchResponseTopicPartitionAbortedTransaction()
		out[i].ProducerID, out[i].FirstOffset = a.ProducerID, a.FirstOffset
	}
	return out
}

// addFetchLeaderHints fills CurrentLeader of the partitions answered
// NOT_LEADER_OR_FOLLOWER and, from v16, the leaders' endpoints (KIP-951).
func (s *Server) addFetchLeaderHints(listener string, version int16, resp *kmsg.FetchResponse) {
	var h leaderHints
	for i := range resp.Topics {
		st := &resp.Topics[i]
		for j := range st.Partitions {
			sp := &st.Partitions[j]
			if l, e, ok := h.add(s, st.Topic, sp.Partition, sp.ErrorCode); ok {
				sp.CurrentLeader.LeaderID, sp.CurrentLeader.LeaderEpoch = l, e
			}
		}
	}
	if version < 16 {
		return
	}
	for _, bi := range h.endpoints(s, listener) {
		ep := kmsg.NewFetchResponseBroker()
		ep.NodeID, ep.Host, ep.Port = bi.NodeID, bi.Host, bi.Port
		resp.Brokers = append(resp.Brokers, ep)
	}
}

// recordBatchOverhead is the part of a record batch its length field does
// not count: the base offset and the length itself.
const recordBatchOverhead = 12

// wholeBatches returns the longest prefix of records that is made of whole
// batches and fits in limit; if keepFirst, the first batch is kept even
// when it alone exceeds limit (KIP-74).
func wholeBatches(records []byte, limit int64, keepFirst bool) []byte {
	if int64(len(records)) <= limit {
		return records
	}
	n := 0
	for n+recordBatchOverhead <= len(records) {
		size := recordBatchOverhead + int(int32(binary.BigEndian.Uint32(records[n+8:])))
		if size <= recordBatchOverhead || n+size > len(records) {
			break
		}
		if int64(n+size) > limit && !(keepFirst && n == 0) {
			break
		}
		n += size
	}
	return records[:n]
}

func failFetch(kreq kmsg.Request, code int16) kmsg.Response {
	req := kreq.(*kmsg.FetchRequest)
	resp := req.ResponseKind().(*kmsg.FetchResponse)
	resp.ErrorCode = code
	for _, rt := range req.Topics {
		st := kmsg.NewFetchResponseTopic()
		st.Topic, st.TopicID = rt.Topic, rt.TopicID
		for _, rp := range rt.Partitions {
			sp := kmsg.NewFetchResponseTopicPartition()
			sp.Partition = rp.Partition
			sp.ErrorCode = code
			sp.HighWatermark = -1
			sp.RecordBatches = noRecords
			st.Partitions = append(st.Partitions, sp)
		}
		resp.Topics = append(resp.Topics, st)
	}
	return resp
}

// Record bytes are not copied into Fetch responses: encodeFetchResponse
// lays out the response with a placeholder where each partition's records
// go, and the writer sends the frame and the records with one writev
// (net.Buffers). The records stay where the broker read them (read-only
// log buffers), so a fetch costs no copy of the data in user space.

// minSplicedRecords is the smallest records field written from its own
// buffer; smaller ones are copied into the frame.
const minSplicedRecords = 4 << 10

// spliceSentinelSize is the size of the placeholder records field.
const spliceSentinelSize = 32

// spliceKey starts every placeholder: random per process and never sent, so
// no other bytes of a response (all short fields, none holding the
// placeholder's length prefix followed by these 24 random bytes) can be
// mistaken for it.
var spliceKey = func() (k [spliceSentinelSize - 8]byte) {
	if _, err := rand.Read(k[:]); err != nil {
		panic(err)
	}
	return k
}()

func spliceSentinel(i int) []byte {
	b := make([]byte, 0, spliceSentinelSize)
	b = append(b, spliceKey[:]...)
	return binary.BigEndian.AppendUint64(b, uint64(i))
}

// encodeFetchResponse returns the response frame (size prefix included)
// as the pooled buffer frame and the pieces to write: parts of frame
// interleaved with the partitions' records. bufs is nil when nothing was
// spliced (the frame is then the whole response).
func encodeFetchResponse(corrID int32, resp *kmsg.FetchResponse) (frame *[]byte, bufs net.Buffers) {
	var (
		spliced [][]byte  // records of the spliced partitions, in encoding order
		fields  []*[]byte // where they belong in resp
	)
	for i := range resp.Topics {
		for j := range resp.Topics[i].Partitions {
			sp := &resp.Topics[i].Partitions[j]
			if len(sp.RecordBatches) >= minSplicedRecords {
				spliced = append(spliced, sp.RecordBatches)
				fields = append(fields, &sp.RecordBatches)
				sp.RecordBatches = spliceSentinel(len(spliced) - 1)
			}
		}
	}
	frame = encodeResponse(corrID, resp)
	if len(spliced) == 0 {
		return frame, nil
	}
	for i, f := range fields {
		*f = spliced[i]
	}
	if bufs = splice(*frame, spliced, resp.IsFlexible()); bufs == nil {
		// Cannot happen; but never send a placeholder.
		putBuffer(frame)
		return encodeResponse(corrID, resp), nil
	}
	return frame, bufs
}

// splice replaces, in place, each placeholder records field of the encoded
// frame b by the length prefix of the real records, and returns the pieces
// to write: b's parts and the records, in order, with the frame size
// prefix fixed. It returns nil if a placeholder is not where it must be.
func splice(b []byte, records [][]byte, flexible bool) net.Buffers {
	bufs := make(net.Buffers, 0, 2*len(records)+1)
	var (
		read, write int // b[read:] is still to move to b[write:]
		pieceStart  int // start of the current frame piece in b
		total       int64
	)
	for i, rec := range records {
		at := bytes.Index(b[read:], spliceSentinel(i))
		if at < 0 {
			return nil
		}
		at += read
		// The placeholder's length prefix precedes it.
		prefix := 4
		if flexible {
			prefix = 1 // uvarint(1+32)
		}
		if at-prefix < read {
			return nil
		}
		if flexible && b[at-1] != 1+spliceSentinelSize ||
			!flexible && binary.BigEndian.Uint32(b[at-4:]) != spliceSentinelSize {
			return nil
		}
		write += copy(b[write:], b[read:at-prefix])
		var lp []byte
		if flexible {
			lp = binary.AppendUvarint(b[write:write], 1+uint64(len(rec)))
		} else {
			lp = binary.BigEndian.AppendUint32(b[write:write], uint32(len(rec)))
		}
		write += len(lp) // at most 5 bytes, never more than the 33 or 36 replaced
		bufs = append(bufs, b[pieceStart:write], rec)
		total += int64(write-pieceStart) + int64(len(rec))
		pieceStart = write
		read = at + spliceSentinelSize
	}
	write += copy(b[write:], b[read:])
	bufs = append(bufs, b[pieceStart:write])
	total += int64(write - pieceStart)
	binary.BigEndian.PutUint32(b, uint32(total-4))
	return bufs
}
