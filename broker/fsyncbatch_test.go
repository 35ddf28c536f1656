package broker

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chronik-stream/chronik/wal"
)

// TestFsyncBatch produces to 20 partitions at once with each FsyncBatch
// mode: with "filesystem" the appends are made durable by shared syncfs
// rounds (OnFsyncRound counts them, never more rounds than appends, and
// OnFsync sees one fsync per round); with "files" every partition syncs its
// own log and no round runs; "auto" on a directory that is not a mount
// point does either, as the page cache allows. Every way every record is
// read back after reopening.
func TestFsyncBatch(t *testing.T) {
	for _, mode := range []wal.SyncMode{wal.SyncFilesystem, wal.SyncFiles, wal.SyncAuto} {
		t.Run(mode.String(), func(t *testing.T) {
			var rounds, roundLogs, fsyncs atomic.Int64
			b := openBroker(t, Config{
				FsyncBatch:   mode,
				OnFsync:      func(time.Duration) { fsyncs.Add(1) },
				OnFsyncRound: func(n int, _ time.Duration) { rounds.Add(1); roundLogs.Add(int64(n)) },
			})
			const partitions, each = 20, 10
			createTopic(t, b, "t", partitions, nil)
			fsyncs.Store(0)
			var wg sync.WaitGroup
			for p := range int32(partitions) {
				wg.Go(func() {
					for i := range each {
						tb := tBatch{pid: -1, epoch: -1, seq: -1, baseTs: 1, recs: []tRec{{key: []byte("k"), value: fmt.Appendf(nil, "%d-%d", p, i)}}}
						batch := tb.build(t)
						if _, err := produce(t, b, "t", p, batch); err != nil {
							t.Errorf("produce %d: %v", p, err)
						}
					}
				})
			}
			wg.Wait()
			switch mode {
			case wal.SyncFilesystem:
				if r := rounds.Load(); r < 1 || r > partitions*each {
					t.Errorf("%d rounds for %d appends", r, partitions*each)
				}
				if n := roundLogs.Load(); n < partitions || n > partitions*each {
					t.Errorf("the rounds covered %d logs, want between %d and %d", n, partitions, partitions*each)
				}
				if f := fsyncs.Load(); f != rounds.Load() {
					t.Errorf("%d fsyncs for %d rounds", f, rounds.Load())
				}
			case wal.SyncAuto:
				// A temporary directory is no filesystem of its own: the
				// rounds run while several appends are under way and the
				// page cache is quiet, which this machine decides, so only
				// the fsyncs are checked.
				if f := fsyncs.Load(); f < 1 {
					t.Errorf("%d fsyncs with fsync-batch auto", f)
				}
			case wal.SyncFiles:
				if r := rounds.Load(); r != 0 {
					t.Errorf("%d shared rounds with fsync-batch files", r)
				}
				if f := fsyncs.Load(); f < partitions {
					t.Errorf("%d fsyncs for %d partitions", f, partitions)
				}
			}
			b = reopen(t, b)
			for p := range int32(partitions) {
				res, err := b.Fetch("t", p, 0, 1<<20, 0)
				if err != nil || res.HighWatermark != each {
					t.Errorf("partition %d after reopening: high watermark %d, %v", p, res.HighWatermark, err)
				}
			}
		})
	}
}
