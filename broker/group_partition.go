package broker

import (
	"unicode/utf16"
	"unicode/utf8"
)

// GroupOffsetsPartition returns the __consumer_offsets partition that owns
// groupID, which is also how FindCoordinator picks the coordinator. It must
// equal Kafka's
//
//	Utils.abs(groupId.hashCode()) % groupMetadataTopicPartitionCount
//
// so that a cluster migrated from (or compared with) Kafka finds every group
// where Kafka put it. Utils.abs is x & 0x7fffffff, not Math.abs: a hash of
// Integer.MIN_VALUE maps to 0 rather than staying negative.
func GroupOffsetsPartition(groupID string, partitionCount int32) int32 {
	if partitionCount <= 0 {
		return 0
	}
	return (groupJavaStringHashCode(groupID) & 0x7fffffff) % partitionCount
}

// groupJavaStringHashCode is java.lang.String.hashCode: s[0]*31^(n-1) + ...
// + s[n-1] over UTF-16 code units, in wrapping int32 arithmetic. Code
// points above U+FFFF count as their two surrogates. Invalid UTF-8 counts
// as U+FFFD per bad byte, which is what Go decodes; Java's decoder may
// merge a malformed sequence into one U+FFFD, but clients send valid UTF-8.
func groupJavaStringHashCode(s string) int32 {
	var h int32
	for i := 0; i < len(s); {
		if c := s[i]; c < utf8.RuneSelf { // ASCII: one byte, one unit
			h = 31*h + int32(c)
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		i += size
		if r1, r2 := utf16.EncodeRune(r); r1 != utf8.RuneError {
			h = 31*h + int32(r1)
			h = 31*h + int32(r2)
		} else {
			h = 31*h + int32(r)
		}
	}
	return h
}
