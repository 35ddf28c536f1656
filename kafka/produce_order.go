package kafka

// Produce ordering on one connection: the partitions of one produce request
// are appended concurrently, but a partition also named by a later request
// on the same connection waits until this request is done with it, so that
// idempotent sequence numbers reach the broker in order. The read goroutine
// chains each produce request's partitions (chainPartitions) before its
// handler starts; the handler awaits and finishes each partition
// (partitionOrder).

import (
	"context"
	"sync"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// partitionKey names a partition by topic name, or by topic ID for
// requests that carry IDs.
type partitionKey struct {
	topic     string
	topicID   [16]byte
	partition int32
}

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

// partitionOrder is a produce request's place in its connection's
// per-partition chains: the i-th partition of the request (in request
// order, topics flattened) may append once wait[i] is closed (nil: at
// once) and closes done[i] when it has.
type partitionOrder struct {
	wait []chan struct{}
	mu   sync.Mutex
	done []chan struct{} // set to nil once closed
}

// release closes every done channel not yet closed. Handlers defer it so
// that a panic or an early return can never stall later produces.
func (o *partitionOrder) release() {
	if o == nil {
		return
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	for i, d := range o.done {
		if d != nil {
			close(d)
			o.done[i] = nil
		}
	}
}

// finish marks partition i of the request done.
func (o *partitionOrder) finish(i int) {
	if o == nil {
		return
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.done[i] == nil {
		return
	}
	close(o.done[i])
	o.done[i] = nil
}

// await blocks until partition i may append, or ctx ends.
func (o *partitionOrder) await(ctx context.Context, i int) error {
	if o == nil || o.wait[i] == nil {
		return nil
	}
	select {
	case <-o.wait[i]:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// chainPartitions runs on the read goroutine, in request order.
func (c *conn) chainPartitions(r *request) *partitionOrder {
	keys := producePartitionKeys(r)
	if len(keys) == 0 {
		return nil
	}
	if c.partitionTail == nil {
		c.partitionTail = make(map[partitionKey]chan struct{})
	}
	if len(c.partitionTail) > 4096 {
		c.pruneTails()
	}
	o := &partitionOrder{
		wait: make([]chan struct{}, len(keys)),
		done: make([]chan struct{}, len(keys)),
	}
	for i, k := range keys {
		d := make(chan struct{})
		o.wait[i] = c.partitionTail[k]
		o.done[i] = d
		c.partitionTail[k] = d
	}
	return o
}

// pruneTails forgets partitions whose latest produce has finished.
func (c *conn) pruneTails() {
	for k, d := range c.partitionTail {
		select {
		case <-d:
			delete(c.partitionTail, k)
		default:
		}
	}
}
