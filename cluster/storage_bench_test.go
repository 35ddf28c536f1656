package cluster

import (
	"testing"

	"go.etcd.io/raft/v3/raftpb"

	"github.com/chronik-stream/chronik/wal"
)

// BenchmarkStorageAppend: 16 entries of one 1 KiB batch per call, straight
// into wal.Log.Append and through Storage.Append, fsync always (the
// "nosync" pair shows the CPU cost of the storage layer without the fsync
// noise).
func BenchmarkStorageAppend(b *testing.B) {
	for _, fs := range []struct {
		name   string
		policy wal.FsyncPolicy
	}{{"", wal.FsyncAlways}, {"nosync-", wal.FsyncNever}} {
		benchmarkStorageAppend(b, fs.name, wal.Options{Fsync: fs.policy})
	}
}

func benchmarkStorageAppend(b *testing.B, prefix string, opts wal.Options) {
	const perAppend = 16
	payload := testBatch(10, 1_700_000_000_000, 1024)
	b.Run(prefix+"wal", func(b *testing.B) {
		log := openTestLog(b, b.TempDir(), opts)
		defer log.Close()
		ents := make([]wal.Entry, perAppend)
		next := int64(0)
		b.SetBytes(perAppend * int64(len(payload)))
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			for k := range ents {
				ents[k] = wal.Entry{Kind: wal.KindData, Term: 1, BaseOffset: next, LastOffsetDelta: 9, MaxTimestamp: 1_700_000_000_000, Payload: payload}
				next += 10
			}
			if _, err := log.Append(ents...); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run(prefix+"storage", func(b *testing.B) {
		log, s := openTestStorage(b, b.TempDir(), opts)
		defer log.Close()
		ents := make([]raftpb.Entry, perAppend)
		index := uint64(1)
		next := int64(0)
		b.SetBytes(perAppend * int64(len(payload)))
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			for k := range ents {
				data := EncodeEntry(wal.Entry{Kind: wal.KindData, BaseOffset: next, LastOffsetDelta: 9, MaxTimestamp: 1_700_000_000_000, Payload: payload})
				ents[k] = raftpb.Entry{Index: index, Term: 1, Data: data}
				index++
				next += 10
			}
			if err := s.Append(ents); err != nil {
				b.Fatal(err)
			}
		}
	})
}
