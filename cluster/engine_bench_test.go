package cluster

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chronik-stream/chronik/wal"
)

// BenchmarkEngineProposeThroughput: 1 KiB proposals from 64 goroutines to
// groups led by node 1, engines connected by the in-memory transport.
// Reports MB/s (b.SetBytes) and proposals per Storage.Append on the leader.
// storage=mem is raft.MemoryStorage (no I/O: the engine's own cost);
// storage=wal is Storage on wal.Log with the default fsync-always policy.
//
//	go test -run '^$' -bench EngineProposeThroughput -benchtime 20000x ./cluster/
func BenchmarkEngineProposeThroughput(b *testing.B) {
	for _, storage := range []string{"mem", "wal"} {
		for _, tc := range []struct{ nodes, groups int }{{3, 1}, {3, 8}, {1, 1}} {
			b.Run(fmt.Sprintf("storage=%s/nodes=%d/groups=%d", storage, tc.nodes, tc.groups), func(b *testing.B) {
				benchPropose(b, storage, tc.nodes, tc.groups)
			})
		}
	}
}

func benchPropose(b *testing.B, storage string, nodes, groups int) {
	const writers, size = 64, 1024
	var dirs map[uint64]string
	if storage == "wal" {
		dirs = make(map[uint64]string)
		for id := uint64(1); id <= uint64(nodes); id++ {
			dirs[id] = b.TempDir()
		}
	}
	// Production defaults: GOMAXPROCS workers, 100ms ticks, 10-tick election
	// timeout (the test clusters' 10ms ticks would elect on fsync stalls).
	c := newEngCluster(b, nodes, func(cfg *EngineConfig) { cfg.Workers, cfg.TickInterval, cfg.ElectionTicks = 0, 0, 0 })
	for gid := GroupID(1); gid <= GroupID(groups); gid++ {
		if storage == "wal" {
			for _, id := range c.ids {
				log, err := wal.Open(fmt.Sprintf("%s/%d", dirs[id], gid), wal.Options{})
				if err != nil {
					b.Fatal(err)
				}
				st, err := OpenStorage(log)
				if err != nil {
					b.Fatal(err)
				}
				c.closers = append(c.closers, func() { _ = st.Flush(); _ = log.Close() })
				c.addGroupOn(id, gid, st, c.ids)
			}
		} else {
			c.addGroup(gid, nil, nil)
		}
		c.nodes[1].e.Group(gid).Campaign()
	}
	gs := make([]*RaftGroup, groups)
	for i := range gs {
		gid := GroupID(i + 1)
		waitFor(b, 30*time.Second, "node 1 to lead", func() bool { return c.leaderOf(gid, c.ids) == 1 })
		gs[i] = c.nodes[1].e.Group(gid)
	}
	payload := make([]byte, size-1)
	for i := range payload {
		payload[i] = byte(i)
	}
	data := EncodeData(wal.KindMeta, payload) // 1 KiB of entry data, valid for both storages

	before := c.nodes[1].e.Stats()
	var next, failed atomic.Int64
	var wg sync.WaitGroup
	b.SetBytes(size)
	b.ResetTimer()
	for range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1) - 1
				if i >= int64(b.N) {
					return
				}
				_, err := gs[i%int64(groups)].Propose(context.Background(), data)
				if err != nil {
					failed.Add(1)
					if !errors.Is(err, ErrNotLeader) {
						b.Error(err)
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	b.StopTimer()
	after := c.nodes[1].e.Stats()
	if appends := after.Appends - before.Appends; appends > 0 {
		b.ReportMetric(float64(after.Proposals-before.Proposals)/float64(appends), "proposals/append")
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "proposals/s")
	if f := failed.Load(); f > 0 {
		b.ReportMetric(float64(f), "failed")
	}
	c.stop()
}
