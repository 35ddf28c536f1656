package wal

import (
	"encoding/binary"
	"fmt"
)

// CorruptError reports damage that Open will not repair: a bad entry that is
// not part of the tail, or a gap between segment files. It wraps ErrCorrupt.
type CorruptError struct {
	File   string // segment file
	Index  uint64 // WAL index of the bad entry
	Pos    int64  // byte position in the file
	Reason string
}

func (e *CorruptError) Error() string {
	return fmt.Sprintf("wal: corrupt entry at index %d in %s (byte %d): %s", e.Index, e.File, e.Pos, e.Reason)
}

func (e *CorruptError) Unwrap() error { return ErrCorrupt }

// Reasons a scan stops.
const (
	reasonTorn     = "torn entry"
	reasonZeros    = "zero-filled tail"
	reasonChecksum = "checksum mismatch"
	reasonBadFrame = "bad frame"
)

// scanStop describes the first entry of a segment file that does not check.
type scanStop struct {
	index  uint64
	pos    int64
	reason string
}

// scanSegment parses the tidwall binary segment data (uvarint length + frame,
// repeated) whose first entry has WAL index first, verifying every frame.
// It returns the summary of the valid prefix and, if the data does not end
// cleanly, where and why it stopped.
func scanSegment(data []byte, first uint64, interval int64) (*segment, *scanStop) {
	s := newSegment(first)
	pos := 0
	for pos < len(data) {
		n, frame, reason := nextEntry(data[pos:])
		if reason != "" {
			return s, &scanStop{index: s.next, pos: int64(pos), reason: reason}
		}
		h, _ := decodeHeader(frame)
		s.add(&h, int64(n), interval)
		pos += n
	}
	return s, nil
}

// nextEntry validates the entry at the start of b and returns its stored
// size and its frame, or the reason it is bad.
func nextEntry(b []byte) (int, []byte, string) {
	l, n := binary.Uvarint(b)
	switch {
	case n == 0:
		if allZero(b) {
			return 0, nil, reasonZeros
		}
		return 0, nil, reasonTorn
	case n < 0:
		return 0, nil, reasonBadFrame
	case l > uint64(len(b)-n):
		if allZero(b) {
			return 0, nil, reasonZeros
		}
		return 0, nil, reasonTorn
	}
	frame := b[n : n+int(l)]
	if _, err := decodeHeader(frame); err != nil {
		if allZero(b) {
			return 0, nil, reasonZeros
		}
		return 0, nil, reasonBadFrame
	}
	if err := checkFrame(frame); err != nil {
		if allZero(b) {
			return 0, nil, reasonZeros
		}
		return 0, nil, reasonChecksum
	}
	return n + int(l), frame, ""
}

// validFrameAfter reports whether a valid entry starts anywhere in b after
// position from: if so, the damage at from is not a tail and must not be cut.
func validFrameAfter(b []byte, from int) bool { return nextValidFrame(b, from) >= 0 }

// nextValidFrame returns the position of the first valid entry in b after
// position from, or -1 if there is none.
func nextValidFrame(b []byte, from int) int {
	for q := from + 1; q < len(b); q++ {
		l, n := binary.Uvarint(b[q:])
		if n <= 0 || l < frameOverhead || l > uint64(len(b)-q-n) {
			continue
		}
		frame := b[q+n : q+n+int(l)]
		if frame[0] != frameVersion || !Kind(frame[1]).valid() {
			continue
		}
		if checkFrame(frame) == nil {
			return q
		}
	}
	return -1
}

func allZero(b []byte) bool {
	for len(b) >= 8 {
		if binary.LittleEndian.Uint64(b) != 0 {
			return false
		}
		b = b[8:]
	}
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}
