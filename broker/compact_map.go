package broker

import (
	"crypto/md5"
	"encoding/binary"
)

// offsetMap is the compaction cleaner's key -> latest offset map, built
// like Kafka's SkimpyOffsetMap: a fixed array of slots, each a 16-byte
// hash of the key and an 8-byte offset, filled by open addressing up to a
// load factor. It never grows: its capacity follows from a byte budget
// (log.cleaner.dedupe.buffer.size in Kafka), it is allocated once and
// reused by every cleaning (reset), so the cleaner's memory is a
// configured constant whatever the number of keys.
//
// Keys are hashed with MD5, as Kafka's map does by default: every replica
// must drop exactly the same records, so the hash must not depend on the
// process (hash/maphash is seeded per process). MD5 is in the standard
// library, 128 bits make a collision between two keys of one partition
// (which would drop the older key's latest record) as unlikely as a disk
// error, and its speed (hundreds of MB/s) is far above what the cleaner
// reads. It is not used for security.
//
// A slot whose offset field is 0 is empty: offsets are stored plus one,
// so a stored offset is never 0.
type offsetMap struct {
	slots   []byte // nslots * offsetMapSlot bytes
	nslots  uint64
	max     int // entries allowed: nslots * offsetMapLoad
	entries int
	// used lists the slots filled since the last reset while they are
	// few (at most cap(used)), so that reset clears those instead of the
	// whole array; nil once more were filled. usedBuf is its memory.
	used, usedBuf []uint64
}

const (
	offsetMapHash = md5.Size          // bytes of a key's hash
	offsetMapSlot = offsetMapHash + 8 // hash + offset
	offsetMapLoad = 0.9               // Kafka's log.cleaner.io.buffer.load.factor default
	offsetMapMin  = 16 * offsetMapSlot
	offsetMapMax  = 1 << 40
)

// newOffsetMap allocates a map using about budget bytes, clamped to
// [offsetMapMin, offsetMapMax]. Fewer slots than offsetMapMin would make
// the load factor round to a full table, where probing could not end.
func newOffsetMap(budget int64) *offsetMap {
	budget = min(max(budget, offsetMapMin), offsetMapMax)
	n := uint64(budget / offsetMapSlot)
	used := make([]uint64, 0, n/offsetMapTrackedShare)
	return &offsetMap{
		slots:   make([]byte, n*offsetMapSlot), // zero: every slot empty
		nslots:  n,
		max:     max(1, int(float64(n)*offsetMapLoad)),
		used:    used,
		usedBuf: used,
	}
}

// offsetMapTrackedShare: reset clears slot by slot while at most one slot
// in this many was filled (the list costs 8 of the map's 24 bytes a slot
// for that share, about 1% more memory).
const offsetMapTrackedShare = 32

// offsetMapClearChunk is how many bytes reset clears at a time.
const offsetMapClearChunk = 64 << 10

// capacity is how many keys the map takes before put refuses new ones.
func (m *offsetMap) capacity() int { return m.max }

// len is the number of keys in the map.
func (m *offsetMap) len() int { return m.entries }

// reset empties the map for the next cleaning, keeping its memory. A
// cleaning of few keys empties only their slots; otherwise the array is
// cleared a chunk at a time. One clear of the whole array would be one
// call the Go scheduler cannot preempt: tens of milliseconds for the
// default 32 MiB (far more the first time, when every page faults in),
// while a garbage collection waiting to scan the cleaner's stack holds
// every other goroutine, produce requests included.
func (m *offsetMap) reset() {
	if m.used != nil {
		for _, i := range m.used {
			clear(m.slots[i*offsetMapSlot : (i+1)*offsetMapSlot])
		}
	} else {
		for off := 0; off < len(m.slots); off += offsetMapClearChunk {
			clear(m.slots[off:min(off+offsetMapClearChunk, len(m.slots))])
		}
	}
	m.used = m.usedBuf[:0]
	m.entries = 0
}

// hashKey is the map's hash of a key.
func hashKey(key []byte) [offsetMapHash]byte { return md5.Sum(key) }

// put records offset as key's latest. A key already in the map keeps the
// larger of its offsets, and always succeeds; a new key is refused (false)
// once the map holds capacity keys.
func (m *offsetMap) put(key []byte, offset int64) bool {
	h := hashKey(key)
	return m.putHash(&h, offset)
}

func (m *offsetMap) putHash(h *[offsetMapHash]byte, offset int64) bool {
	i, found := m.find(h)
	slot := m.slots[i*offsetMapSlot : (i+1)*offsetMapSlot]
	if found {
		if cur := int64(binary.BigEndian.Uint64(slot[offsetMapHash:])) - 1; offset > cur {
			binary.BigEndian.PutUint64(slot[offsetMapHash:], uint64(offset)+1)
		}
		return true
	}
	if m.entries >= m.max {
		return false
	}
	copy(slot, h[:])
	binary.BigEndian.PutUint64(slot[offsetMapHash:], uint64(offset)+1)
	m.entries++
	if m.used != nil {
		if len(m.used) < cap(m.used) {
			m.used = append(m.used, i)
		} else {
			m.used = nil // too many: reset clears everything
		}
	}
	return true
}

// get returns key's latest offset, if the map holds the key.
func (m *offsetMap) get(key []byte) (int64, bool) {
	h := hashKey(key)
	return m.getHash(&h)
}

func (m *offsetMap) getHash(h *[offsetMapHash]byte) (int64, bool) {
	i, found := m.find(h)
	if !found {
		return 0, false
	}
	slot := m.slots[i*offsetMapSlot:]
	return int64(binary.BigEndian.Uint64(slot[offsetMapHash:])) - 1, true
}

// find returns the slot holding h (found) or the empty slot where h would
// go. Linear probing from the slot the hash's first 8 bytes name; the load
// factor below 1 guarantees an empty slot, so the probe ends.
func (m *offsetMap) find(h *[offsetMapHash]byte) (uint64, bool) {
	i := binary.BigEndian.Uint64(h[:8]) % m.nslots
	for {
		slot := m.slots[i*offsetMapSlot : (i+1)*offsetMapSlot]
		if binary.BigEndian.Uint64(slot[offsetMapHash:]) == 0 {
			return i, false
		}
		if [offsetMapHash]byte(slot[:offsetMapHash]) == *h {
			return i, true
		}
		if i++; i == m.nslots {
			i = 0
		}
	}
}
