package cluster

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"

	"go.etcd.io/raft/v3/raftpb"

	"github.com/chronik-stream/chronik/wal"
)

// ErrBadData is returned (wrapped) for raft entry data that does not map to
// a wal entry: an unknown kind byte, a KindData payload that is not a
// sequence of Kafka v2 record batches, an unparsable conf change.
var ErrBadData = errors.New("cluster: bad entry data")

// Kafka v2 record batch header fields the cluster layer reads or rewrites
// (big endian). Only baseOffset and partitionLeaderEpoch are rewritten;
// both lie before the CRC-covered part (attributes onward), so the CRC
// stays valid.
const (
	batchOffBaseOffset      = 0  // int64
	batchOffLength          = 8  // int32: bytes after this field
	batchOffLeaderEpoch     = 12 // int32
	batchOffMagic           = 16 // int8
	batchOffLastOffsetDelta = 23 // int32
	batchOffMaxTimestamp    = 35 // int64
	batchHeaderSize         = 61 // a v2 header, up to the first record
	batchLogOverhead        = 12 // baseOffset + batchLength
)

// EncodeData returns the raft entry Data for a wal entry of kind with
// payload: empty for wal.KindNoop (the payload is ignored), else
// [kind byte][payload]. Kind should be wal.KindData or wal.KindMeta;
// DecodeData rejects anything else.
func EncodeData(kind wal.Kind, payload []byte) []byte {
	if kind == wal.KindNoop {
		return nil
	}
	return AppendData(make([]byte, 0, 1+len(payload)), kind, payload)
}

// AppendData appends the raft entry Data for (kind, payload) to dst, as
// EncodeData, and returns the extended slice.
func AppendData(dst []byte, kind wal.Kind, payload []byte) []byte {
	if kind == wal.KindNoop {
		return dst
	}
	dst = append(dst, byte(kind))
	return append(dst, payload...)
}

// DecodeData splits the Data of an EntryNormal raft entry: empty data is
// wal.KindNoop with no payload; otherwise the first byte must be
// wal.KindData, wal.KindMeta or wal.KindControl and the rest is the
// payload (aliasing data).
func DecodeData(data []byte) (wal.Kind, []byte, error) {
	if len(data) == 0 {
		return wal.KindNoop, nil, nil
	}
	switch k := wal.Kind(data[0]); k {
	case wal.KindData, wal.KindMeta, wal.KindControl:
		return k, data[1:], nil
	default:
		return 0, nil, fmt.Errorf("%w: kind byte %d", ErrBadData, data[0])
	}
}

// A partition's control entries (wal.KindControl) carry a type byte and
// its fields. The only type: the log start offset moved (DeleteRecords on
// the leader), with the new offset as 8 bytes big endian. Every replica
// applies it in log order, so a new leader keeps the deleted records
// deleted.
const controlLogStart = 1

// EncodeLogStart is the raft entry Data of a log start move to offset.
func EncodeLogStart(offset int64) []byte {
	p := make([]byte, 9)
	p[0] = controlLogStart
	binary.BigEndian.PutUint64(p[1:], uint64(offset))
	return EncodeData(wal.KindControl, p)
}

// decodeLogStart returns the offset of a log start move, ok false for any
// other entry (or a malformed control payload).
func decodeLogStart(e *raftpb.Entry) (int64, bool) {
	if e.Type != raftpb.EntryNormal || len(e.Data) != 10 || wal.Kind(e.Data[0]) != wal.KindControl || e.Data[1] != controlLogStart {
		return 0, false
	}
	off := int64(binary.BigEndian.Uint64(e.Data[2:]))
	return off, off >= 0
}

// ToWalEntry converts a raft entry to the wal entry that stores it, without
// Kafka offsets (Storage.Append assigns those): Kind, Term and Payload. The
// payload aliases e.Data except for a v1 conf change, which is converted
// to a marshalled ConfChangeV2.
func ToWalEntry(e raftpb.Entry) (wal.Entry, error) {
	we := wal.Entry{Term: e.Term, MaxTimestamp: -1}
	switch e.Type {
	case raftpb.EntryNormal:
		k, p, err := DecodeData(e.Data)
		if err != nil {
			return wal.Entry{}, fmt.Errorf("entry %d: %w", e.Index, err)
		}
		we.Kind, we.Payload = k, p
	case raftpb.EntryConfChangeV2:
		we.Kind, we.Payload = wal.KindConfChange, e.Data
	case raftpb.EntryConfChange:
		var cc raftpb.ConfChange
		if err := cc.Unmarshal(e.Data); err != nil {
			return wal.Entry{}, fmt.Errorf("%w: entry %d: conf change: %v", ErrBadData, e.Index, err)
		}
		v2 := cc.AsV2()
		b, err := v2.Marshal()
		if err != nil {
			return wal.Entry{}, fmt.Errorf("%w: entry %d: conf change: %v", ErrBadData, e.Index, err)
		}
		we.Kind, we.Payload = wal.KindConfChange, b
	default:
		return wal.Entry{}, fmt.Errorf("%w: entry %d: type %d", ErrBadData, e.Index, e.Type)
	}
	return we, nil
}

// FromWalEntry is the raft entry stored as we at index. Term 0 (an entry
// written standalone) is reported as term 1. Data is freshly allocated
// (it never aliases the wal's buffer).
func FromWalEntry(index uint64, we wal.Entry) raftpb.Entry {
	return fromWalEntry(index, we, nil)
}

// fromWalEntry is FromWalEntry with the Data carved out of *buf when it has
// room (buf may be nil).
func fromWalEntry(index uint64, we wal.Entry, buf *[]byte) raftpb.Entry {
	e := raftpb.Entry{Index: index, Term: max(we.Term, 1)}
	if we.Kind == wal.KindNoop {
		return e
	}
	n := len(we.Payload)
	if we.Kind != wal.KindConfChange {
		n++
	}
	var dst []byte
	if buf != nil && cap(*buf)-len(*buf) >= n {
		b := *buf
		dst = b[len(b) : len(b) : len(b)+n]
		*buf = b[:len(b)+n]
	} else {
		dst = make([]byte, 0, n)
	}
	if we.Kind == wal.KindConfChange {
		e.Type = raftpb.EntryConfChangeV2
		e.Data = append(dst, we.Payload...)
	} else {
		e.Data = AppendData(dst, we.Kind, we.Payload)
	}
	return e
}

// dataSize is len(Data) of the raft entry for we.
func dataSize(we *wal.Entry) int {
	switch we.Kind {
	case wal.KindNoop:
		return 0
	case wal.KindConfChange:
		return len(we.Payload)
	default:
		return 1 + len(we.Payload)
	}
}

// scanBatches checks that payload is one or more Kafka v2 record batches
// back to back and returns the entry's last offset delta (the batches'
// record counts summed, minus one) and max timestamp. It reads only the
// fixed header fields; records and CRCs are the producer path's concern.
func scanBatches(payload []byte) (lastOffsetDelta int32, maxTimestamp int64, err error) {
	if len(payload) == 0 {
		return 0, 0, fmt.Errorf("%w: data entry without a record batch", ErrBadData)
	}
	var count int64
	maxTimestamp = math.MinInt64
	be := binary.BigEndian
	for pos := 0; pos < len(payload); {
		b := payload[pos:]
		if len(b) < batchHeaderSize {
			return 0, 0, fmt.Errorf("%w: batch at byte %d: %d bytes, shorter than a v2 header", ErrBadData, pos, len(b))
		}
		length := int64(int32(be.Uint32(b[batchOffLength:])))
		if length < batchHeaderSize-batchLogOverhead || length > int64(len(b)-batchLogOverhead) {
			return 0, 0, fmt.Errorf("%w: batch at byte %d: length %d of %d bytes", ErrBadData, pos, length, len(b))
		}
		if b[batchOffMagic] != 2 {
			return 0, 0, fmt.Errorf("%w: batch at byte %d: magic %d", ErrBadData, pos, b[batchOffMagic])
		}
		delta := int64(int32(be.Uint32(b[batchOffLastOffsetDelta:])))
		if delta < 0 {
			return 0, 0, fmt.Errorf("%w: batch at byte %d: last offset delta %d", ErrBadData, pos, delta)
		}
		count += delta + 1
		maxTimestamp = max(maxTimestamp, int64(be.Uint64(b[batchOffMaxTimestamp:])))
		pos += int(length) + batchLogOverhead
	}
	if count-1 > math.MaxInt32 {
		return 0, 0, fmt.Errorf("%w: %d records in one entry", ErrBadData, count)
	}
	return int32(count - 1), maxTimestamp, nil
}

// stampBatches rewrites, in place, the base offset and partition leader
// epoch of every batch of a payload scanBatches accepted: the batches get
// consecutive offsets from base. Both fields lie outside the CRC.
func stampBatches(payload []byte, base int64, epoch int32) {
	be := binary.BigEndian
	for pos := 0; pos < len(payload); {
		b := payload[pos:]
		be.PutUint64(b[batchOffBaseOffset:], uint64(base))
		// The leader stamped its epoch when it proposed; only a batch
		// without one gets the entry's term. Batches written by a
		// standalone node keep epoch 0 on every replica, so replicas stay
		// byte-identical after the node joins a cluster.
		if int32(be.Uint32(b[batchOffLeaderEpoch:])) < 0 {
			be.PutUint32(b[batchOffLeaderEpoch:], uint32(epoch))
		}
		base += int64(int32(be.Uint32(b[batchOffLastOffsetDelta:]))) + 1
		pos += int(int32(be.Uint32(b[batchOffLength:]))) + batchLogOverhead
	}
}
