package cluster

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"

	"go.etcd.io/raft/v3/raftpb"

	"github.com/chronik-stream/chronik/broker"
	"github.com/chronik-stream/chronik/wal"
)

// ErrBadData is returned (wrapped) for raft entry data that does not map to
// a wal entry: an unknown kind byte, a KindData payload that is not a
// sequence of Kafka v2 record batches, an unparsable conf change.
var ErrBadData = errors.New("cluster: bad entry data")

// A data entry's raft Data carries the wal frame fields the leader's
// partition set when it assigned the offsets, before the batches:
//
//	[wal.KindData] [base offset int64] [last offset delta int32]
//	[max timestamp int64] [one or more Kafka v2 record batches]
//
// (big endian). Storage.Append stores the entry with exactly these fields
// and the batches byte for byte: the cluster layer never reads or rewrites
// a batch. The broker owns the batch format and the offsets.
const dataHeaderSize = 1 + 8 + 4 + 8

// EncodeEntry returns the raft entry Data for wal entry we: empty for
// wal.KindNoop, the data header and payload for wal.KindData (its
// BaseOffset, LastOffsetDelta and MaxTimestamp are carried as set), else
// [kind byte][payload] (wal.KindMeta, wal.KindControl).
func EncodeEntry(we wal.Entry) []byte {
	return AppendEntry(make([]byte, 0, entryDataSize(&we)), we)
}

// AppendEntry appends EncodeEntry(we) to dst and returns the extended slice.
func AppendEntry(dst []byte, we wal.Entry) []byte {
	switch we.Kind {
	case wal.KindNoop:
		return dst
	case wal.KindData:
		dst = append(dst, byte(wal.KindData))
		dst = binary.BigEndian.AppendUint64(dst, uint64(we.BaseOffset))
		dst = binary.BigEndian.AppendUint32(dst, uint32(we.LastOffsetDelta))
		dst = binary.BigEndian.AppendUint64(dst, uint64(we.MaxTimestamp))
	default:
		dst = append(dst, byte(we.Kind))
	}
	return append(dst, we.Payload...)
}

// EncodeData returns the raft entry Data for an entry of kind without
// Kafka offsets: empty for wal.KindNoop (the payload is ignored), else
// [kind byte][payload], for wal.KindMeta and wal.KindControl. Data
// entries carry their offsets: use EncodeEntry.
func EncodeData(kind wal.Kind, payload []byte) []byte {
	return EncodeEntry(wal.Entry{Kind: kind, Payload: payload})
}

// DecodeData splits the Data of an EntryNormal raft entry into the wal
// entry it stores, without Term: empty data is wal.KindNoop; otherwise the
// first byte must be wal.KindData (followed by the data header and at
// least one byte of batches), wal.KindMeta or wal.KindControl. The payload
// aliases data.
func DecodeData(data []byte) (wal.Entry, error) {
	we := wal.Entry{Kind: wal.KindNoop, MaxTimestamp: -1}
	if len(data) == 0 {
		return we, nil
	}
	switch k := wal.Kind(data[0]); k {
	case wal.KindData:
		if len(data) <= dataHeaderSize {
			return wal.Entry{}, fmt.Errorf("%w: data entry of %d bytes, no record batch", ErrBadData, len(data))
		}
		be := binary.BigEndian
		we.Kind = k
		we.BaseOffset = int64(be.Uint64(data[1:]))
		we.LastOffsetDelta = int32(be.Uint32(data[9:]))
		we.MaxTimestamp = int64(be.Uint64(data[13:]))
		we.Payload = data[dataHeaderSize:]
		if we.BaseOffset < 0 || we.LastOffsetDelta < 0 || we.BaseOffset > math.MaxInt64-int64(we.LastOffsetDelta)-1 {
			return wal.Entry{}, fmt.Errorf("%w: data entry offsets %d+%d", ErrBadData, we.BaseOffset, we.LastOffsetDelta)
		}
	case wal.KindMeta, wal.KindControl:
		we.Kind, we.Payload = k, data[1:]
	default:
		return wal.Entry{}, fmt.Errorf("%w: kind byte %d", ErrBadData, data[0])
	}
	return we, nil
}

// A partition's control entries (wal.KindControl) carry a type byte and
// its fields. Every replica applies them in log order. Types: the log
// start offset moved (DeleteRecords on the leader), with the new offset as
// 8 bytes big endian, so a new leader keeps the deleted records deleted;
// and a compaction request (broker.CompactRequest: UpTo, Now and
// DeleteRetentionMs, 8 bytes big endian each), so every replica cleans the
// same records with the same clock.
const (
	controlLogStart = 1
	controlCompact  = 2
)

// EncodeCompact is the raft entry Data of a compaction request.
func EncodeCompact(req broker.CompactRequest) []byte {
	p := make([]byte, 25)
	p[0] = controlCompact
	binary.BigEndian.PutUint64(p[1:], uint64(req.UpTo))
	binary.BigEndian.PutUint64(p[9:], uint64(req.Now))
	binary.BigEndian.PutUint64(p[17:], uint64(req.DeleteRetentionMs))
	return EncodeData(wal.KindControl, p)
}

// decodeCompact returns the compaction request of an entry, ok false for
// any other entry (or a malformed or negative one).
func decodeCompact(e *raftpb.Entry) (broker.CompactRequest, bool) {
	if e.Type != raftpb.EntryNormal || len(e.Data) != 26 || wal.Kind(e.Data[0]) != wal.KindControl || e.Data[1] != controlCompact {
		return broker.CompactRequest{}, false
	}
	be := binary.BigEndian
	req := broker.CompactRequest{UpTo: int64(be.Uint64(e.Data[2:])), Now: int64(be.Uint64(e.Data[10:])),
		DeleteRetentionMs: int64(be.Uint64(e.Data[18:]))}
	return req, req.UpTo >= 0 && req.Now >= 0 && req.DeleteRetentionMs >= 0
}

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

// ToWalEntry converts a raft entry to the wal entry that stores it: Kind,
// Term, Payload and, for a data entry, the Kafka offsets it carries
// (Storage.Append numbers the other record-holding kinds). The payload
// aliases e.Data except for a v1 conf change, which is converted to a
// marshalled ConfChangeV2.
func ToWalEntry(e raftpb.Entry) (wal.Entry, error) {
	we := wal.Entry{Term: e.Term, MaxTimestamp: -1}
	switch e.Type {
	case raftpb.EntryNormal:
		d, err := DecodeData(e.Data)
		if err != nil {
			return wal.Entry{}, fmt.Errorf("entry %d: %w", e.Index, err)
		}
		d.Term = e.Term
		we = d
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
	n := entryDataSize(&we)
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
		e.Data = AppendEntry(dst, we)
	}
	return e
}

// entryDataSize is len(Data) of the raft entry for we.
func entryDataSize(we *wal.Entry) int {
	switch we.Kind {
	case wal.KindNoop:
		return 0
	case wal.KindConfChange:
		return len(we.Payload)
	case wal.KindData:
		return dataHeaderSize + len(we.Payload)
	default:
		return 1 + len(we.Payload)
	}
}
