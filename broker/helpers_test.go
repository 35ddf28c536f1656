package broker

import (
	"encoding/binary"
	"hash/crc32"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// batchSpec describes a v2 record batch for tests.
type batchSpec struct {
	records   int
	valueSize int
	baseTs    int64
	tsStep    int64   // timestamp delta between consecutive records
	tsDeltas  []int64 // explicit per-record deltas (overrides tsStep)
	pid       int64   // -1: not idempotent
	epoch     int16
	seq       int32
	attrs     int16
	opaque    []byte // records section used as is (compressed batches)
}

func plain(n int) batchSpec {
	return batchSpec{records: n, valueSize: 8, baseTs: 1000, pid: -1, epoch: -1, seq: -1}
}

func idem(n int, pid int64, epoch int16, seq int32) batchSpec {
	s := plain(n)
	s.pid, s.epoch, s.seq = pid, epoch, seq
	return s
}

// encodeRecord appends one v2 record.
func encodeRecord(dst []byte, tsDelta int64, offDelta int32, value []byte) []byte {
	r := kmsg.Record{TimestampDelta64: tsDelta, OffsetDelta: offDelta, Value: value}
	body := r.AppendTo(nil)[1:] // drop the zero length AppendTo wrote
	dst = binary.AppendVarint(dst, int64(len(body)))
	return append(dst, body...)
}

func buildBatch(s batchSpec) []byte {
	recs := s.opaque
	maxTs := s.baseTs
	if recs == nil {
		value := make([]byte, s.valueSize)
		for i := range value {
			value[i] = byte(i)
		}
		for i := 0; i < s.records; i++ {
			d := int64(i) * s.tsStep
			if s.tsDeltas != nil {
				d = s.tsDeltas[i]
			}
			maxTs = max(maxTs, s.baseTs+d)
			recs = encodeRecord(recs, d, int32(i), value)
		}
	}
	b := kmsg.RecordBatch{
		PartitionLeaderEpoch: -1,
		Magic:                2,
		Attributes:           s.attrs,
		LastOffsetDelta:      int32(s.records - 1),
		FirstTimestamp:       s.baseTs,
		MaxTimestamp:         maxTs,
		ProducerID:           s.pid,
		ProducerEpoch:        s.epoch,
		FirstSequence:        s.seq,
		NumRecords:           int32(s.records),
		Records:              recs,
		Length:               int32(batchHeaderSize - logOverhead + len(recs)),
	}
	raw := b.AppendTo(nil)
	fixCRC(raw)
	return raw
}

// fixCRC recomputes the CRC of a single batch after a test edited it.
func fixCRC(b []byte) {
	binary.BigEndian.PutUint32(b[offCRC:], crc32.Checksum(b[offAttributes:], crc32c))
}

func crcOK(b []byte) bool {
	return binary.BigEndian.Uint32(b[offCRC:]) == crc32.Checksum(b[offAttributes:], crc32c)
}
