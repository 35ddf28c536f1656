package broker

import (
	"context"
	"encoding/binary"
	"fmt"
	"sync/atomic"
	"testing"
)

// benchBatch is 16 records of 1 KiB: a 16 KiB batch as clients send them.
func benchBatch() []byte {
	s := plain(16)
	s.valueSize = 1024
	return buildBatch(s)
}

// BenchmarkProduce measures Produce with fsync always (the default): one
// caller, and 8 concurrent callers over 1 or 8 partitions. Each op is one
// 16 KiB batch; MB/s counts record batch bytes.
//
//	go test -run '^$' -bench Produce -benchtime 2000x ./broker/
func BenchmarkProduce(b *testing.B) {
	for _, bc := range []struct {
		partitions, callers int
	}{{1, 1}, {1, 8}, {8, 8}} {
		b.Run(fmt.Sprintf("partitions=%d/callers=%d", bc.partitions, bc.callers), func(b *testing.B) {
			br := openBroker(b, Config{Fsync: FsyncAlways})
			createTopic(b, br, "t", int32(bc.partitions), nil)
			template := benchBatch()
			b.SetBytes(int64(len(template)))
			b.ReportAllocs()
			var caller atomic.Int32
			b.SetParallelism((bc.callers + 1) / 2) // GOMAXPROCS is 2 on the reference machine
			if bc.callers == 1 {
				b.SetParallelism(1)
			}
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				id := caller.Add(1) - 1
				p := id % int32(bc.partitions)
				buf := append([]byte(nil), template...)
				for pb.Next() {
					// Produce rewrites the base offset in place; a
					// client would send 0.
					binary.BigEndian.PutUint64(buf, 0)
					if _, err := br.Produce(context.Background(), "t", p, buf, -1, nil); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}

// BenchmarkProducePipelined is one connection keeping 5 produce requests to
// one partition in flight, in order, the way package kafka can with
// ProduceStart: the next request is started once the previous one is
// queued, and requests queued together share one append and one fsync.
//
//	go test -run '^$' -bench ProducePipelined -benchtime 2000x ./broker/
func BenchmarkProducePipelined(b *testing.B) {
	br := openBroker(b, Config{Fsync: FsyncAlways})
	createTopic(b, br, "t", 1, nil)
	template := benchBatch()
	b.SetBytes(int64(len(template)))
	b.ReportAllocs()
	const inFlight = 5
	var ring [inFlight + 3][]byte
	for i := range ring {
		ring[i] = append([]byte(nil), template...)
	}
	handles := make(chan *ProduceHandle, inFlight-1)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for h := range handles {
			if _, err := h.Wait(); err != nil {
				b.Error(err)
			}
		}
	}()
	b.ResetTimer()
	for i := range b.N {
		buf := ring[i%len(ring)]
		binary.BigEndian.PutUint64(buf, 0)
		handles <- br.ProduceStart(context.Background(), "t", 0, buf, -1, nil)
	}
	close(handles)
	<-done
}

// BenchmarkFetch reads 1 MiB per fetch from a partition of 16 KiB batches.
func BenchmarkFetch(b *testing.B) {
	br := openBroker(b, Config{Fsync: FsyncNever})
	createTopic(b, br, "t", 1, nil)
	template := benchBatch()
	const batches = 512 // 8 MiB
	for range batches {
		mustProduce(b, br, "t", 0, template)
	}
	_, hw, _ := br.PartitionOffsets("t", 0)
	b.ReportAllocs()
	b.ResetTimer()
	var read int64
	offset := int64(0)
	for range b.N {
		res, err := br.Fetch("t", 0, offset, 1<<20, 0)
		if err != nil {
			b.Fatal(err)
		}
		read += int64(len(res.Records))
		offset += 16 * int64(len(res.Records)/len(template))
		if offset >= hw {
			offset = 0
		}
	}
	b.SetBytes(read / int64(b.N))
}
