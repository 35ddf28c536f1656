package kafka

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/chronik-stream/chronik/broker"
)

// Produce: v3-13
//
// Behaviour:
//   - Record batches go to the broker byte for byte; it validates them,
//     every record included, decompressing compressed ones as a bounded
//     stream (CORRUPT_MESSAGE, INVALID_RECORD, MESSAGE_TOO_LARGE, ...), and
//     assigns offsets. v3 is the first version that carries v2 record
//     batches, and Kafka 4.0's floor.
//   - acks 0, 1 and -1 (all); any other value is INVALID_REQUIRED_ACKS for
//     every partition. acks=-1 waits at most TimeoutMillis
//     (REQUEST_TIMED_OUT).
//   - acks=0 gets no response. If any partition failed, the connection is
//     closed after the request, as Kafka does, so the client notices.
//   - The partitions of one request are appended concurrently. A partition
//     also named by a later request on the same connection is queued after
//     this one (idempotent sequence numbers stay in order), and pipelined
//     requests to one partition share an append and an fsync
//     (broker.ProduceStart, then Wait).
//   - Produce never auto-creates topics: UNKNOWN_TOPIC_OR_PARTITION, or
//     UNKNOWN_TOPIC_ID for an unknown topic ID.
//   - Authorization: WRITE on each topic (TOPIC_AUTHORIZATION_FAILED for
//     its partitions, before its existence is checked); with a
//     transactional id also WRITE on it
//     (TRANSACTIONAL_ID_AUTHORIZATION_FAILED for every partition).
//   - A duplicate idempotent batch is acknowledged with its original base
//     offset (the broker stores it once).
//   - Transactional batches (KIP-890): the first batch of a transaction on
//     a partition is checked with the transaction's coordinator (this
//     node or another): verified to be in the transaction, or at v12+
//     added to it. A partition not in the transaction is
//     TRANSACTION_ABORTABLE (v3-v10: INVALID_TXN_STATE); a fenced epoch
//     INVALID_PRODUCER_EPOCH; a coordinator that cannot answer (moving,
//     loading, down) NOT_ENOUGH_REPLICAS, which clients retry.
//
// Version notes:
//   - v5: LogStartOffset in the response
//   - v8: ErrorMessage and RecordErrors in the response
//   - v9: flexible
//   - v10: NOT_LEADER_OR_FOLLOWER carries the current leader and epoch,
//     and the response that leader's endpoint (KIP-951)
//   - v11: TRANSACTION_ABORTABLE (KIP-890)
//   - v12 (KIP-890 part 2): a transactional batch for a partition not yet
//     in the producer's transaction adds it (the client sends no
//     AddPartitionsToTxn), with transaction.version 2 (the default;
//     clients use v12 in a transaction only then). While the producer's
//     last transaction's markers are written, the add is retried for up
//     to 100 ms and then answered CONCURRENT_TRANSACTIONS (the client
//     retries). With --transaction-version 1 v12 is verified like v11.
//   - v13: topics named by ID (KIP-516)

// produceJob is one partition of a produce request.
type produceJob struct {
	index int // in partitionOrder
	topic string
	in    *kmsg.ProduceRequestTopicPartition
	out   *kmsg.ProduceResponseTopicPartition
}

func (s *Server) handleProduce(ctx context.Context, r *request) kmsg.Response {
	req := r.kreq.(*kmsg.ProduceRequest)
	resp := req.ResponseKind().(*kmsg.ProduceResponse)
	defer r.order.release()

	validAcks := req.Acks == 0 || req.Acks == 1 || req.Acks == -1
	if req.Acks == -1 && req.TimeoutMillis > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, time.Duration(req.TimeoutMillis)*time.Millisecond)
		defer cancel()
	}

	// A transactional produce needs WRITE on its transactional id, or the
	// whole request fails (Kafka checks it when the records are
	// transactional, which they are whenever a transactional id is sent).
	txnCode := int16(0)
	if id := req.TransactionID; id != nil && *id != "" && !s.mayTxn(r, kmsg.ACLOperationWrite, *id) {
		txnCode = s.counted(kerr.TransactionalIDAuthorizationFailed.Code)
	}

	var (
		jobs  []produceJob
		index int
	)
	resp.Topics = make([]kmsg.ProduceResponseTopic, len(req.Topics))
	for i := range req.Topics {
		rt, st := &req.Topics[i], &resp.Topics[i]
		*st = kmsg.NewProduceResponseTopic()
		st.Topic, st.TopicID = rt.Topic, rt.TopicID

		name, topicCode := rt.Topic, int16(0)
		if req.Version >= 13 {
			if info, ok := s.b.TopicByID(rt.TopicID); ok {
				name, st.Topic = info.Name, info.Name
			} else {
				topicCode = s.counted(kerr.UnknownTopicID.Code)
			}
		}
		if topicCode == 0 && !s.mayTopic(r, kmsg.ACLOperationWrite, name) {
			// Before the topic's existence is checked: a principal that
			// may not write to a topic does not learn whether it exists.
			topicCode = s.counted(kerr.TopicAuthorizationFailed.Code)
		}
		st.Partitions = make([]kmsg.ProduceResponseTopicPartition, len(rt.Partitions))
		for j := range rt.Partitions {
			sp := &st.Partitions[j]
			*sp = kmsg.NewProduceResponseTopicPartition()
			sp.Partition = rt.Partitions[j].Partition
			sp.BaseOffset = -1
			switch {
			case !validAcks:
				sp.ErrorCode = s.counted(kerr.InvalidRequiredAcks.Code)
				r.order.finish(index)
			case txnCode != 0:
				sp.ErrorCode = txnCode
				r.order.finish(index)
			case topicCode != 0:
				sp.ErrorCode = topicCode
				r.order.finish(index)
			default:
				jobs = append(jobs, produceJob{index: index, topic: name, in: &rt.Partitions[j], out: sp})
			}
			index++
		}
	}

	// Start every partition's append in request order: ProduceStart fixes
	// the append order, so the same partition in the next request on this
	// connection may start as soon as it returns, and both share one
	// append and one fsync. Then wait for all of them concurrently: a
	// waiter may be the one doing its partition's append and fsync.
	handles := make([]*broker.ProduceHandle, len(jobs))
	for i, job := range jobs {
		handles[i] = s.startProduce(ctx, r, req, job)
	}
	switch len(jobs) {
	case 0:
	case 1:
		s.finishProduce(req, jobs[0], handles[0])
	default:
		var wg sync.WaitGroup
		for i, job := range jobs[1:] {
			wg.Go(func() {
				defer func() {
					if v := recover(); v != nil {
						s.panics.Add(1)
						s.log.Error().Str("panic", fmt.Sprint(v)).Str("topic", job.topic).
							Int32("partition", job.in.Partition).Msg("produce panicked")
						job.out.ErrorCode = s.counted(kerr.UnknownServerError.Code)
					}
				}()
				s.finishProduce(req, job, handles[i+1])
			})
		}
		s.finishProduce(req, jobs[0], handles[0])
		wg.Wait()
	}

	if req.Version >= 10 {
		s.addLeaderHints(r.listener, resp)
	}
	if r.noResponse {
		for i := range resp.Topics {
			for _, sp := range resp.Topics[i].Partitions {
				if sp.ErrorCode != 0 {
					r.closeReason = fmt.Sprintf("acks=0 produce to %s-%d failed: %v",
						resp.Topics[i].Topic, sp.Partition, kerr.ErrorForCode(sp.ErrorCode))
					return resp
				}
			}
		}
	}
	return resp
}

// addLeaderHints tells the producer where partitions answered
// NOT_LEADER_OR_FOLLOWER went (KIP-951, Produce v10+): the leader and
// leader epoch this node knows, and that leader's endpoint, so that the
// client moves the partition at once instead of after a metadata refresh
// (kgo's is at most every 5 s by default) when leadership moves.
func (s *Server) addLeaderHints(listener string, resp *kmsg.ProduceResponse) {
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
	for _, bi := range h.endpoints(s, listener) {
		ep := kmsg.NewProduceResponseBroker()
		ep.NodeID, ep.Host, ep.Port = bi.NodeID, bi.Host, bi.Port
		resp.Brokers = append(resp.Brokers, ep)
	}
}

// startProduce queues one partition's records once the same partition's
// earlier requests on the connection have been queued. A nil handle means
// the wait for them failed (job.out holds the error).
func (s *Server) startProduce(ctx context.Context, r *request, req *kmsg.ProduceRequest, job produceJob) *broker.ProduceHandle {
	defer r.order.finish(job.index)
	if err := r.order.await(ctx, job.index); err != nil {
		s.produceFailed(req, job, err)
		return nil
	}
	return s.b.ProduceStartTxn(ctx, job.topic, job.in.Partition, job.in.Records, req.Acks, req.TransactionID, produceTxnOp(req.Version))
}

// produceTxnOp is how a Produce version's transactional batches are
// checked with their coordinator (Kafka's
// produceRequestVersionToTransactionSupportedOperation).
func produceTxnOp(version int16) broker.TxnWriteOp {
	switch {
	case version >= 12:
		return broker.TxnAddPartition
	case version == 11:
		return broker.TxnVerify
	}
	return broker.TxnVerifyOld
}

// finishProduce waits for one partition's append and fills its answer.
func (s *Server) finishProduce(req *kmsg.ProduceRequest, job produceJob, h *broker.ProduceHandle) {
	if h == nil {
		return
	}
	res, err := h.Wait()
	if err != nil {
		s.produceFailed(req, job, err)
		return
	}
	out := job.out
	out.BaseOffset = res.BaseOffset
	out.LogAppendTime = res.LogAppendTime
	out.LogStartOffset = res.LogStartOffset
}

// produceFailed fills a partition's error answer; v8+ also carries the
// message and, when the broker refused a batch for some of its records
// (offset deltas, timestamps), those records, as Kafka's RecordErrors.
func (s *Server) produceFailed(req *kmsg.ProduceRequest, job produceJob, err error) {
	job.out.ErrorCode = s.codeOf(err, "produce")
	if req.Version >= 8 {
		job.out.ErrorMessage = errorMessage(err)
		for _, re := range broker.RecordErrors(err) {
			e := kmsg.NewProduceResponseTopicPartitionErrorRecord()
			e.RelativeOffset, e.ErrorMessage = re.BatchIndex, &re.Message
			job.out.ErrorRecords = append(job.out.ErrorRecords, e)
		}
	}
}

func failProduce(kreq kmsg.Request, code int16) kmsg.Response {
	req := kreq.(*kmsg.ProduceRequest)
	resp := req.ResponseKind().(*kmsg.ProduceResponse)
	for _, rt := range req.Topics {
		st := kmsg.NewProduceResponseTopic()
		st.Topic, st.TopicID = rt.Topic, rt.TopicID
		for _, rp := range rt.Partitions {
			sp := kmsg.NewProduceResponseTopicPartition()
			sp.Partition = rp.Partition
			sp.ErrorCode = code
			sp.BaseOffset = -1
			st.Partitions = append(st.Partitions, sp)
		}
		resp.Topics = append(resp.Topics, st)
	}
	return resp
}
