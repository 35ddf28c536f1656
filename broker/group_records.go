package broker

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// Records of __consumer_offsets, in Kafka's exact on-disk schema so that
// Kafka tools can read them: the key's leading int16 version says what the
// record is (0 and 1: an offset commit, 2: group metadata; higher versions
// are KIP-848 and share-group records, which classic groups ignore). A nil
// value is a tombstone.
//
// Written versions are the ones Kafka 3.x/4.0 writes: key 1 with value 3
// for offsets (value 1 when the commit carries an explicit expire
// timestamp), key 2 with value 3 for group metadata.

// Named errors of GroupDecodeRecord (test with errors.Is).
var (
	// ErrGroupRecordUnknown marks a well-formed record of a type classic
	// groups do not use. Replay skips it, as Kafka does.
	ErrGroupRecordUnknown = errors.New("unknown __consumer_offsets record type")
	// ErrGroupRecordCorrupt marks a record that cannot be decoded.
	ErrGroupRecordCorrupt = errors.New("corrupt __consumer_offsets record")
)

// GroupRecordKind says what a __consumer_offsets record holds.
type GroupRecordKind int8

const (
	GroupRecordOffsetCommit  GroupRecordKind = 1
	GroupRecordGroupMetadata GroupRecordKind = 2
)

const (
	groupOffsetKeyVersion   int16 = 1
	groupMetadataKeyVersion int16 = 2
	groupOffsetValueVersion int16 = 3
	// groupOffsetValueVersionExpire is the only version with an expire
	// timestamp.
	groupOffsetValueVersionExpire int16 = 1
	groupMaxOffsetValueVersion    int16 = 4
	groupMaxMetadataValueVersion  int16 = 4
)

// GroupDecodedRecord is one decoded record.
type GroupDecodedRecord struct {
	Kind      GroupRecordKind
	Group     string
	Topic     string // offset commits
	Partition int32  // offset commits
	Tombstone bool
	Offset    GroupCommittedOffset // offset commits that are not tombstones
	// Metadata is set for group metadata that is not a tombstone. Its byte
	// slices are copies: the input may be reused.
	Metadata *kmsg.GroupMetadataValue
}

// GroupEncodeOffsetCommit encodes a committed offset.
func GroupEncodeOffsetCommit(group, topic string, partition int32, v GroupCommittedOffset) GroupRecord {
	val := kmsg.OffsetCommitValue{
		Version:         groupOffsetValueVersion,
		Offset:          v.Offset,
		LeaderEpoch:     v.LeaderEpoch,
		Metadata:        v.Metadata,
		CommitTimestamp: v.CommitTimestamp,
	}
	if v.ExpireTimestamp >= 0 {
		val.Version = groupOffsetValueVersionExpire
		val.ExpireTimestamp = v.ExpireTimestamp
	}
	return GroupRecord{
		Key:   groupOffsetKey(group, topic, partition),
		Value: val.AppendTo(make([]byte, 0, 2+8+4+2+len(v.Metadata)+8+8)),
	}
}

// GroupEncodeOffsetTombstone encodes the deletion of a committed offset.
func GroupEncodeOffsetTombstone(group, topic string, partition int32) GroupRecord {
	return GroupRecord{Key: groupOffsetKey(group, topic, partition)}
}

func groupOffsetKey(group, topic string, partition int32) []byte {
	k := kmsg.OffsetCommitKey{Version: groupOffsetKeyVersion, Group: group, Topic: topic, Partition: partition}
	return k.AppendTo(make([]byte, 0, 2+2+len(group)+2+len(topic)+4))
}

// GroupEncodeGroupMetadata encodes a group's metadata in v.Version.
func GroupEncodeGroupMetadata(group string, v *kmsg.GroupMetadataValue) GroupRecord {
	return GroupRecord{Key: groupMetadataKey(group), Value: v.AppendTo(nil)}
}

// GroupEncodeGroupTombstone encodes the deletion of a group.
func GroupEncodeGroupTombstone(group string) GroupRecord {
	return GroupRecord{Key: groupMetadataKey(group)}
}

func groupMetadataKey(group string) []byte {
	k := kmsg.GroupMetadataKey{Version: groupMetadataKeyVersion, Group: group}
	return k.AppendTo(make([]byte, 0, 2+2+len(group)))
}

// GroupDecodeRecord decodes one __consumer_offsets record; value nil is a
// tombstone. Errors wrap ErrGroupRecordUnknown or ErrGroupRecordCorrupt.
func GroupDecodeRecord(key, value []byte) (GroupDecodedRecord, error) {
	var r GroupDecodedRecord
	if len(key) < 2 {
		return r, fmt.Errorf("%w: key of %d bytes", ErrGroupRecordCorrupt, len(key))
	}
	switch version := int16(binary.BigEndian.Uint16(key)); version {
	case 0, 1:
		var k kmsg.OffsetCommitKey
		if err := k.ReadFrom(key); err != nil {
			return r, fmt.Errorf("%w: offset commit key: %v", ErrGroupRecordCorrupt, err)
		}
		r.Kind, r.Group, r.Topic, r.Partition = GroupRecordOffsetCommit, k.Group, k.Topic, k.Partition
		if value == nil {
			r.Tombstone = true
			return r, nil
		}
		var v kmsg.OffsetCommitValue
		if err := groupReadOffsetValue(&v, value, false); err != nil {
			return r, fmt.Errorf("offset commit %s %s-%d: %w", r.Group, r.Topic, r.Partition, err)
		}
		r.Offset = groupCommittedOffsetOf(&v)
		return r, nil
	case 2:
		var k kmsg.GroupMetadataKey
		if err := k.ReadFrom(key); err != nil {
			return r, fmt.Errorf("%w: group metadata key: %v", ErrGroupRecordCorrupt, err)
		}
		r.Kind, r.Group = GroupRecordGroupMetadata, k.Group
		if value == nil {
			r.Tombstone = true
			return r, nil
		}
		v, err := groupDecodeMetadataValue(value)
		if err != nil {
			return r, fmt.Errorf("group metadata %s: %w", r.Group, err)
		}
		r.Metadata = v
		return r, nil
	default:
		if version < 0 {
			return r, fmt.Errorf("%w: key version %d", ErrGroupRecordCorrupt, version)
		}
		return r, fmt.Errorf("%w: key version %d", ErrGroupRecordUnknown, version)
	}
}

// groupReadOffsetValue decodes an offset commit value. With unsafe, strings
// alias value (replay uses that to avoid allocating per record).
func groupReadOffsetValue(v *kmsg.OffsetCommitValue, value []byte, unsafe bool) error {
	if len(value) < 2 {
		return fmt.Errorf("%w: offset commit value of %d bytes", ErrGroupRecordCorrupt, len(value))
	}
	if version := int16(binary.BigEndian.Uint16(value)); version < 0 || version > groupMaxOffsetValueVersion {
		return fmt.Errorf("%w: offset commit value version %d", ErrGroupRecordCorrupt, version)
	}
	var err error
	if unsafe {
		err = v.UnsafeReadFrom(value)
	} else {
		err = v.ReadFrom(value)
	}
	if err != nil {
		return fmt.Errorf("%w: offset commit value: %v", ErrGroupRecordCorrupt, err)
	}
	return nil
}

// groupCommittedOffsetOf normalises what older versions lack: no leader
// epoch before v3 (-1), an expire timestamp only in v1.
func groupCommittedOffsetOf(v *kmsg.OffsetCommitValue) GroupCommittedOffset {
	o := GroupCommittedOffset{Offset: v.Offset, LeaderEpoch: -1, Metadata: v.Metadata, CommitTimestamp: v.CommitTimestamp, ExpireTimestamp: -1}
	if v.Version >= 3 {
		o.LeaderEpoch = v.LeaderEpoch
	}
	if v.Version == 1 && v.ExpireTimestamp >= 0 {
		o.ExpireTimestamp = v.ExpireTimestamp
	}
	return o
}

func groupDecodeMetadataValue(value []byte) (*kmsg.GroupMetadataValue, error) {
	if len(value) < 2 {
		return nil, fmt.Errorf("%w: group metadata value of %d bytes", ErrGroupRecordCorrupt, len(value))
	}
	if version := int16(binary.BigEndian.Uint16(value)); version < 0 || version > groupMaxMetadataValueVersion {
		return nil, fmt.Errorf("%w: group metadata value version %d", ErrGroupRecordCorrupt, version)
	}
	v := new(kmsg.GroupMetadataValue)
	if err := v.ReadFrom(value); err != nil {
		return nil, fmt.Errorf("%w: group metadata value: %v", ErrGroupRecordCorrupt, err)
	}
	if len(v.Members) > 0 && v.Protocol == nil {
		return nil, fmt.Errorf("%w: group metadata with %d members and no protocol", ErrGroupRecordCorrupt, len(v.Members))
	}
	// ReadFrom aliases byte fields into value.
	for i := range v.Members {
		m := &v.Members[i]
		m.Subscription = bytes.Clone(m.Subscription)
		m.Assignment = bytes.Clone(m.Assignment)
		m.UnknownTags = groupCloneTags(&m.UnknownTags)
	}
	v.UnknownTags = groupCloneTags(&v.UnknownTags)
	return v, nil
}

// groupCloneTags copies unknown tags (v4+), whose payloads alias the input.
func groupCloneTags(t *kmsg.Tags) kmsg.Tags {
	var out kmsg.Tags
	t.Each(func(key uint32, val []byte) { out.Set(key, bytes.Clone(val)) })
	return out
}

// groupCanonicalKey maps a record key to the identity compaction uses. An
// offset commit key of version 0 and one of version 1 name the same
// partition, so both map to the version 1 encoding; other keys are their
// bytes.
func groupCanonicalKey(key []byte) string {
	if len(key) >= 2 && key[0] == 0 && key[1] == 0 {
		var k kmsg.OffsetCommitKey
		if k.UnsafeReadFrom(key) == nil {
			return string(groupOffsetKey(k.Group, k.Topic, k.Partition))
		}
	}
	return string(key)
}
