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
//   - Record batches go to the broker byte for byte; it validates them
//     (CORRUPT_MESSAGE, MESSAGE_TOO_LARGE, ...) and assigns offsets. v3 is
//     the first version that carries v2 record batches, and Kafka 4.0's
//     floor.
//   - acks 0, 1 and -1 (all); any other value is INVALID_REQUIRED_ACKS for
//     every partition. acks=-1 waits at most TimeoutMillis
//     (REQUEST_TIMED_OUT).
//   - acks=0 gets no response. If any partition failed, the connection is
//     closed after the request, as Kafka does, so the client notices.
//   - The partitions of one request are appended concurrently. A partition
//     also named by a later request on the same connection is appended
//     after this one (idempotent sequence numbers stay in order).
//   - Produce never auto-creates topics: UNKNOWN_TOPIC_OR_PARTITION, or
//     UNKNOWN_TOPIC_ID for an unknown topic ID.
//   - A duplicate idempotent batch is acknowledged with its original base
//     offset (the broker stores it once).
//
// Version notes:
//   - v5: LogStartOffset in the response
//   - v8: ErrorMessage in the response
//   - v9: flexible
//   - v13: topics named by ID (KIP-516)

// producePartitionKeys lists a produce request's partitions in request
// order, topics flattened: the order partitionOrder indexes.
func producePartitionKeys(r *request) []partitionKey {
	req := r.kreq.(*kmsg.ProduceRequest)
	var n int
	for i := range req.Topics {
		n += len(req.Topics[i].Partitions)
	}
	keys := make([]partitionKey, 0, n)
	for i := range req.Topics {
		rt := &req.Topics[i]
		k := partitionKey{topic: rt.Topic}
		if req.Version >= 13 {
			k = partitionKey{topicID: rt.TopicID}
		}
		for j := range rt.Partitions {
			k.partition = rt.Partitions[j].Partition
			keys = append(keys, k)
		}
	}
	return keys
}

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
				topicCode = kerr.UnknownTopicID.Code
			}
		}
		st.Partitions = make([]kmsg.ProduceResponseTopicPartition, len(rt.Partitions))
		for j := range rt.Partitions {
			sp := &st.Partitions[j]
			*sp = kmsg.NewProduceResponseTopicPartition()
			sp.Partition = rt.Partitions[j].Partition
			sp.BaseOffset = -1
			switch {
			case !validAcks:
				sp.ErrorCode = kerr.InvalidRequiredAcks.Code
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

	if len(jobs) == 1 {
		s.producePartition(ctx, r, req, jobs[0])
	} else {
		var wg sync.WaitGroup
		for _, job := range jobs {
			wg.Go(func() {
				defer func() {
					if v := recover(); v != nil {
						s.panics.Add(1)
						s.log.Error().Str("panic", fmt.Sprint(v)).Str("topic", job.topic).
							Int32("partition", job.in.Partition).Msg("produce panicked")
						job.out.ErrorCode = kerr.UnknownServerError.Code
						r.order.finish(job.index)
					}
				}()
				s.producePartition(ctx, r, req, job)
			})
		}
		wg.Wait()
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

func (s *Server) producePartition(ctx context.Context, r *request, req *kmsg.ProduceRequest, job produceJob) {
	defer r.order.finish(job.index)
	out := job.out
	err := r.order.await(ctx, job.index)
	var res broker.ProduceResult
	if err == nil {
		res, err = s.b.Produce(ctx, job.topic, job.in.Partition, job.in.Records, req.Acks, req.TransactionID)
	}
	if err != nil {
		out.ErrorCode = s.codeOf(err, "produce")
		if req.Version >= 8 {
			out.ErrorMessage = errorMessage(err)
		}
		return
	}
	out.BaseOffset = res.BaseOffset
	out.LogAppendTime = res.LogAppendTime
	out.LogStartOffset = res.LogStartOffset
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
