package broker

import (
	"fmt"
	"testing"
	"time"
)

// BenchmarkGroupOffsetsReplay1M writes 1,000,000 offset commit records to
// __consumer_offsets (50 partitions; each commit one batch of 100
// partitions of one group), then measures a restart: Open replays every
// record into the group tables. Compaction is off, so the whole history is
// replayed. "10k-keys" is 100 groups x 100 partitions committed 100 times
// each; "1M-keys" the worst case, every record a different partition
// (10,000 groups x 100 partitions); "10k-keys-compacted" is 10k-keys
// after one Open with compaction on, which is what a restart replays in
// practice. Reported: open-ms (the whole Open: metadata, wal recovery of
// every partition, replay), replay-ms (the group replay alone, partitions
// in parallel), the records replayed and replay-ns/record.
//
//	go test -run '^$' -bench GroupOffsetsReplay1M -benchtime 3x ./broker/
func BenchmarkGroupOffsetsReplay1M(b *testing.B) {
	for _, bc := range []struct {
		name    string
		groups  int
		compact bool
	}{{"10k-keys", 100, false}, {"1M-keys", 10_000, false}, {"10k-keys-compacted", 100, true}} {
		b.Run(bc.name, func(b *testing.B) {
			defer func(old int64) { groupCompactMinRecords = old }(groupCompactMinRecords)
			groupCompactMinRecords = 1 << 62 // no compaction while writing
			const records, perCommit = 1_000_000, 100
			br := openBroker(b, Config{Fsync: FsyncNever})
			createTopic(b, br, "orders", perCommit, nil)
			offs := make([]GroupOffsetCommit, perCommit)
			for i := range records / perCommit {
				group := fmt.Sprintf("group-%05d", i%bc.groups)
				for p := range offs {
					offs[p] = GroupOffsetCommit{Topic: "orders", Partition: int32(p), Offset: int64(i), LeaderEpoch: 0, Metadata: ""}
				}
				codes, err := br.OffsetCommit(group, GroupCommitRequest{GenerationID: -1, Offsets: offs})
				if err != nil || codes[0] != 0 {
					b.Fatalf("commit: %v %v", err, codes)
				}
			}
			cfg := br.cfg
			if err := br.Close(); err != nil {
				b.Fatal(err)
			}
			if bc.compact {
				groupCompactMinRecords = 10_000
				br, err := Open(cfg) // compacts on load
				if err != nil {
					b.Fatal(err)
				}
				br.Close()
			}
			var open, replay time.Duration
			var replayed int64
			b.ResetTimer()
			for range b.N {
				start := time.Now()
				br, err := Open(cfg)
				if err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				open += time.Since(start)
				replay += br.groups.loadTook
				replayed = br.groups.loadRecords.Load()
				if !bc.compact && replayed != records {
					b.Fatalf("replayed %d records", replayed)
				}
				if err := br.Close(); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
			}
			b.ReportMetric(float64(open.Milliseconds())/float64(b.N), "open-ms")
			b.ReportMetric(float64(replay.Milliseconds())/float64(b.N), "replay-ms")
			b.ReportMetric(float64(replayed), "records")
			b.ReportMetric(float64(replay.Nanoseconds())/float64(b.N)/float64(replayed), "replay-ns/record")
		})
	}
}
