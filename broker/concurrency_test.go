package broker

import (
	"sync"
	"testing"
)

// TestConcurrentProduce runs idempotent producers (each retrying every
// batch once) and plain producers against shared partitions while readers
// fetch, then checks every partition's log: contiguous offsets, every batch
// stored exactly once, each producer's sequences in order.
func TestConcurrentProduce(t *testing.T) {
	b := openBroker(t, Config{SegmentBytes: 4096})
	const (
		partitions   = 3
		idempotent   = 6
		plainWriters = 3
		batches      = 40
	)
	createTopic(t, b, "t", partitions, nil)
	var wg sync.WaitGroup
	errs := make(chan error, 100)
	for w := range idempotent {
		wg.Add(1)
		go func() {
			defer wg.Done()
			pid, epoch, err := b.InitProducerID(nil, 0, -1, -1)
			if err != nil {
				errs <- err
				return
			}
			p := int32(w % partitions)
			for i := range batches {
				batch := buildBatch(idem(2, pid, epoch, int32(2*i)))
				first, err := produce(t, b, "t", p, batch)
				if err != nil {
					errs <- err
					return
				}
				retry, err := produce(t, b, "t", p, batch)
				if err != nil || retry.BaseOffset != first.BaseOffset {
					t.Errorf("retry of producer %d batch %d: %+v %v, first at %d", pid, i, retry, err, first.BaseOffset)
					return
				}
			}
		}()
	}
	for w := range plainWriters {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range batches {
				if _, err := produce(t, b, "t", int32(w%partitions), buildBatch(plain(3))); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	stop := make(chan struct{})
	var readers sync.WaitGroup
	for p := range int32(partitions) {
		readers.Add(1)
		go func() {
			defer readers.Done()
			var next int64
			for {
				select {
				case <-stop:
					return
				case <-b.AppendSignal():
				}
				res, err := b.Fetch("t", p, next, 1<<16, 0)
				if err != nil {
					errs <- err
					return
				}
				for _, sb := range splitStored(t, res.Records) {
					if sb.last >= res.HighWatermark {
						t.Errorf("fetched offset %d at or past hw %d", sb.last, res.HighWatermark)
					}
					next = sb.last + 1
				}
			}
		}()
	}
	wg.Wait()
	close(stop)
	readers.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}

	total := 0
	for p := range int32(partitions) {
		got := fetchAll(t, b, "t", p, 0)
		lastSeq := map[int64]int32{}
		var next int64
		for _, sb := range got {
			if sb.base != next {
				t.Fatalf("partition %d: batch at %d, want %d", p, sb.base, next)
			}
			next = sb.last + 1
			h := readBatchHeader(sb.bytes)
			if h.idempotent() {
				if prev, ok := lastSeq[h.producerID]; ok && h.baseSequence != prev+1 {
					t.Fatalf("producer %d: sequence %d after %d", h.producerID, h.baseSequence, prev)
				}
				lastSeq[h.producerID] = h.lastSequence()
			}
			total++
		}
	}
	if want := (idempotent + plainWriters) * batches; total != want {
		t.Fatalf("%d batches stored, want %d", total, want)
	}
}
