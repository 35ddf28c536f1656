package broker

import (
	"encoding/hex"
	"errors"
	"reflect"
	"testing"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// The bytes Kafka writes, spelled out field by field.
func TestGroupRecordGoldenBytes(t *testing.T) {
	rec := GroupEncodeOffsetCommit("g", "t", 3, GroupCommittedOffset{
		Offset: 0x0102, LeaderEpoch: 5, Metadata: "md", CommitTimestamp: 0x0a0b, ExpireTimestamp: -1,
	})
	wantKey := "0001" + "0001" + "67" + "0001" + "74" + "00000003"
	wantValue := "0003" + "0000000000000102" + "00000005" + "0002" + "6d64" + "0000000000000a0b"
	if got := hex.EncodeToString(rec.Key); got != wantKey {
		t.Fatalf("offset key %s, want %s", got, wantKey)
	}
	if got := hex.EncodeToString(rec.Value); got != wantValue {
		t.Fatalf("offset value %s, want %s", got, wantValue)
	}

	// With an expire timestamp, Kafka writes value version 1.
	rec = GroupEncodeOffsetCommit("g", "t", 3, GroupCommittedOffset{Offset: 1, Metadata: "", CommitTimestamp: 2, ExpireTimestamp: 3})
	wantValue = "0001" + "0000000000000001" + "0000" + "0000000000000002" + "0000000000000003"
	if got := hex.EncodeToString(rec.Value); got != wantValue {
		t.Fatalf("v1 offset value %s, want %s", got, wantValue)
	}

	tomb := GroupEncodeGroupTombstone("grp")
	if got := hex.EncodeToString(tomb.Key); got != "0002"+"0003"+"677270" || tomb.Value != nil {
		t.Fatalf("group tombstone %x / %x", tomb.Key, tomb.Value)
	}

	v := kmsg.NewGroupMetadataValue()
	v.Version, v.ProtocolType, v.Generation, v.Protocol, v.Leader, v.CurrentStateTimestamp = 3, "c", 1, groupStringPtr("r"), groupStringPtr("m"), 9
	vm := kmsg.NewGroupMetadataValueMember()
	vm.MemberID, vm.InstanceID, vm.ClientID, vm.ClientHost = "m", nil, "id", "h"
	vm.RebalanceTimeoutMillis, vm.SessionTimeoutMillis, vm.Subscription, vm.Assignment = 2, 1, []byte{0xaa}, []byte{}
	v.Members = []kmsg.GroupMetadataValueMember{vm}
	rec = GroupEncodeGroupMetadata("grp", &v)
	wantValue = "0003" + "000163" + "00000001" + "000172" + "00016d" + "0000000000000009" +
		"00000001" + // one member
		"00016d" + "ffff" + "00026964" + "000168" + "00000002" + "00000001" + "00000001aa" + "00000000"
	if got := hex.EncodeToString(rec.Value); got != wantValue {
		t.Fatalf("group value\n%s, want\n%s", got, wantValue)
	}
}

func TestGroupDecodeRecordVersions(t *testing.T) {
	offsetValue := func(version int16) []byte {
		v := kmsg.OffsetCommitValue{Version: version, Offset: 42, LeaderEpoch: 7, Metadata: "m", CommitTimestamp: 1000, ExpireTimestamp: 2000}
		return v.AppendTo(nil)
	}
	keyV0 := (&kmsg.OffsetCommitKey{Version: 0, Group: "g", Topic: "t", Partition: 1}).AppendTo(nil)
	tests := []struct {
		name  string
		key   []byte
		value []byte
		want  GroupCommittedOffset
	}{
		{"v0", keyV0, offsetValue(0), GroupCommittedOffset{Offset: 42, LeaderEpoch: -1, Metadata: "m", CommitTimestamp: 1000, ExpireTimestamp: -1}},
		{"v1 carries expire", keyV0, offsetValue(1), GroupCommittedOffset{Offset: 42, LeaderEpoch: -1, Metadata: "m", CommitTimestamp: 1000, ExpireTimestamp: 2000}},
		{"v2", groupOffsetKey("g", "t", 1), offsetValue(2), GroupCommittedOffset{Offset: 42, LeaderEpoch: -1, Metadata: "m", CommitTimestamp: 1000, ExpireTimestamp: -1}},
		{"v3 adds leader epoch", groupOffsetKey("g", "t", 1), offsetValue(3), GroupCommittedOffset{Offset: 42, LeaderEpoch: 7, Metadata: "m", CommitTimestamp: 1000, ExpireTimestamp: -1}},
		{"v4 flexible", groupOffsetKey("g", "t", 1), offsetValue(4), GroupCommittedOffset{Offset: 42, LeaderEpoch: 7, Metadata: "m", CommitTimestamp: 1000, ExpireTimestamp: -1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := GroupDecodeRecord(tt.key, tt.value)
			if err != nil {
				t.Fatal(err)
			}
			if r.Kind != GroupRecordOffsetCommit || r.Group != "g" || r.Topic != "t" || r.Partition != 1 || r.Offset != tt.want {
				t.Fatalf("decoded %+v, want offset %+v", r, tt.want)
			}
		})
	}
	if _, err := GroupDecodeRecord([]byte{0, 3, 0, 0}, nil); !errors.Is(err, ErrGroupRecordUnknown) {
		t.Fatalf("KIP-848 key: %v, want ErrGroupRecordUnknown", err)
	}
	if r, err := GroupDecodeRecord(groupOffsetKey("g", "t", 1), nil); err != nil || !r.Tombstone {
		t.Fatalf("tombstone: %+v, %v", r, err)
	}
}

// The decoded group metadata must not alias the input, which the log layer
// reuses.
func TestGroupDecodeRecordCopies(t *testing.T) {
	v := kmsg.NewGroupMetadataValue()
	v.Version, v.ProtocolType, v.Protocol = 3, "consumer", groupStringPtr("range")
	vm := kmsg.NewGroupMetadataValueMember()
	vm.MemberID, vm.Subscription, vm.Assignment = "m", []byte("sub"), []byte("asg")
	v.Members = []kmsg.GroupMetadataValueMember{vm}
	rec := GroupEncodeGroupMetadata("g", &v)
	r, err := GroupDecodeRecord(rec.Key, rec.Value)
	if err != nil {
		t.Fatal(err)
	}
	clear(rec.Value)
	if m := r.Metadata.Members[0]; string(m.Subscription) != "sub" || string(m.Assignment) != "asg" || m.MemberID != "m" {
		t.Fatalf("decoded member changed with its input: %+v", m)
	}
}

// FuzzGroupDecodeRecord: any input decodes or fails with a named error,
// never panics, and whatever decodes re-encodes to the same record.
func FuzzGroupDecodeRecord(f *testing.F) {
	off := GroupEncodeOffsetCommit("g", "t", 1, GroupCommittedOffset{Offset: 5, LeaderEpoch: 2, Metadata: "x", CommitTimestamp: 9, ExpireTimestamp: -1})
	f.Add(off.Key, off.Value, false)
	f.Add(off.Key, []byte(nil), true)
	v := kmsg.NewGroupMetadataValue()
	v.Version, v.ProtocolType, v.Protocol, v.Leader = 3, "consumer", groupStringPtr("range"), groupStringPtr("m")
	vm := kmsg.NewGroupMetadataValueMember()
	vm.MemberID, vm.InstanceID, vm.Subscription = "m", groupStringPtr("i"), groupConsumerMeta("t")
	v.Members = []kmsg.GroupMetadataValueMember{vm}
	meta := GroupEncodeGroupMetadata("g", &v)
	f.Add(meta.Key, meta.Value, false)
	v.Version = 4
	f.Add(meta.Key, v.AppendTo(nil), false)
	v.Version = 0
	f.Add(meta.Key, v.AppendTo(nil), false)
	f.Add([]byte{0, 3, 0, 1, 'x'}, []byte{0}, false)

	f.Fuzz(func(t *testing.T, key, value []byte, tombstone bool) {
		if tombstone {
			value = nil
		} else if value == nil {
			value = []byte{}
		}
		r, err := GroupDecodeRecord(key, value)
		if err != nil {
			if !errors.Is(err, ErrGroupRecordCorrupt) && !errors.Is(err, ErrGroupRecordUnknown) {
				t.Fatalf("unnamed error %v", err)
			}
			return
		}
		var again GroupRecord
		switch {
		case r.Kind == GroupRecordOffsetCommit && r.Tombstone:
			again = GroupEncodeOffsetTombstone(r.Group, r.Topic, r.Partition)
		case r.Kind == GroupRecordOffsetCommit:
			again = GroupEncodeOffsetCommit(r.Group, r.Topic, r.Partition, r.Offset)
		case r.Tombstone:
			again = GroupEncodeGroupTombstone(r.Group)
		default:
			again = GroupEncodeGroupMetadata(r.Group, r.Metadata)
		}
		r2, err := GroupDecodeRecord(again.Key, again.Value)
		if err != nil {
			t.Fatalf("re-encoded record does not decode: %v", err)
		}
		if !reflect.DeepEqual(r, r2) {
			t.Fatalf("round trip changed the record:\n%+v\n%+v", r, r2)
		}
	})
}

// FuzzGroupReplayerApply: replay's allocation-free decoding of offset
// commits, plain or of a transactional batch (then followed by the
// producer's marker), must accept exactly what GroupDecodeRecord accepts,
// and a table built from arbitrary records must be usable.
func FuzzGroupReplayerApply(f *testing.F) {
	off := GroupEncodeOffsetCommit("g", "t", 1, GroupCommittedOffset{Offset: 5, LeaderEpoch: 2, Metadata: "x", CommitTimestamp: 9, ExpireTimestamp: -1})
	f.Add(off.Key, off.Value, false, false, false)
	f.Add(off.Key, off.Value, false, true, true)
	f.Add(off.Key, []byte(nil), true, false, false)
	f.Add(off.Key, []byte(nil), true, true, false)
	f.Add(groupMetadataKey("g"), []byte{0, 3, 0, 1, 'c', 0, 0, 0, 1, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}, false, false, false)
	f.Fuzz(func(t *testing.T, key, value []byte, tombstone, txn, commit bool) {
		if tombstone {
			value = nil
		} else if value == nil {
			value = []byte{}
		}
		r := NewGroupReplayer(GroupConfig{})
		var applyErr error
		if txn {
			applyErr = r.ApplyTxn(7, key, value)
		} else {
			applyErr = r.Apply(key, value)
		}
		_, decodeErr := GroupDecodeRecord(key, value)
		if errors.Is(decodeErr, ErrGroupRecordUnknown) {
			decodeErr = nil // replay skips these
		}
		if (applyErr == nil) != (decodeErr == nil) {
			t.Fatalf("Apply: %v, GroupDecodeRecord: %v", applyErr, decodeErr)
		}
		clear(key) // replay must not keep references to its input
		clear(value)
		if txn && commit {
			r.ApplyMarker(7, true)
		}
		table := r.Finish(groupT0)
		for _, l := range table.List() {
			g, _ := table.Group(l.GroupID)
			groupCheckInvariants(t, g)
			g.Describe()
			g.Offsets()
			table.Tick(groupT0.Add(24 * 60 * 60 * 1e9))
		}
	})
}
