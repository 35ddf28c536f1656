package broker

import (
	"testing"
)

// FuzzParseBatches: any input either fails with an error or yields batches
// that tile the buffer exactly; never a panic.
func FuzzParseBatches(f *testing.F) {
	f.Add(buildBatch(plain(1)))
	f.Add(buildBatch(idem(3, 1, 0, 0)))
	f.Add(append(buildBatch(plain(2)), buildBatch(plain(1))...))
	f.Add([]byte{})
	f.Add(make([]byte, 61))
	f.Fuzz(func(t *testing.T, b []byte) {
		hs, err := parseBatches(nil, b, testLimits(1<<20))
		if err != nil {
			return
		}
		pos := 0
		for _, h := range hs {
			if h.start != pos || h.size < batchHeaderSize || h.numRecords < 1 {
				t.Fatalf("bad header %+v at %d", h, pos)
			}
			pos += h.size
			// The per-record scan must not panic on validated batches.
			scanRecords(b[h.start:h.start+h.size], func(recordPosition) bool { return true })
		}
		if pos != len(b) {
			t.Fatalf("batches cover %d of %d bytes", pos, len(b))
		}
	})
}

// FuzzScanRecords feeds arbitrary bytes after a valid header.
func FuzzScanRecords(f *testing.F) {
	s := plain(3)
	s.tsDeltas = []int64{0, -5, 1 << 40}
	f.Add(buildBatch(s)[batchHeaderSize:])
	f.Add([]byte{0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01})
	f.Fuzz(func(t *testing.T, recs []byte) {
		s := plain(5)
		s.opaque = recs
		scanRecords(buildBatch(s), func(recordPosition) bool { return true })
	})
}

func FuzzDecodeMetaRecord(f *testing.F) {
	f.Add(encodeMetaRecord(metaRecord{Type: metaTopicCreated, Topic: "t", ID: topicIDHex([16]byte{1}), Partitions: 3}))
	f.Add([]byte(`{"v":1,"type":"producer_ids","producer_id_block_end":-5}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := decodeMetaRecord(b)
		if err != nil {
			return
		}
		newMetaState().apply(r)
	})
}

func FuzzDecodeSnapshot(f *testing.F) {
	b, _ := encodeSnapshot(partitionSnapshot{V: 1, LogStartOffset: 5, NextOffset: 9, Producers: map[int64]producerState{3: {Epoch: 1, N: 1}}})
	f.Add(b)
	f.Add([]byte(`{"v":1,"producers":{"1":{"n":200}}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := decodeSnapshot(b)
		if err != nil {
			return
		}
		for _, st := range s.Producers {
			if st.N > 0 {
				_ = st.last()
			}
		}
	})
}
