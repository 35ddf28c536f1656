package wal

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
)

// Sidecar files. Their names are shorter than 20 bytes so tidwall ignores them.
const (
	metaFile  = "chronik.meta"
	stateFile = "chronik.state"
	tmpSuffix = ".tmp"
)

// meta is the persisted part of the log that the entries cannot tell: the
// Kafka offset of an empty log (or of one holding no record entries), and a
// Reset in progress.
//
// Encoding (26 bytes, little-endian):
//
//	0  4  magic "CHWM"
//	4  1  version (1)
//	5  1  flags (bit 0: reset in progress)
//	6  8  firstIndex u64 (the index the last Reset started the log at)
//	14 8  floorOffset i64 (NextOffset when the log holds no record entries)
//	22 4  CRC32C of bytes [0, 22)
type meta struct {
	resetting   bool
	firstIndex  uint64
	floorOffset int64
}

const (
	metaMagic = "CHWM"
	metaSize  = 26
)

var errBadMeta = fmt.Errorf("%w: bad meta file", ErrCorrupt)

func encodeMeta(m meta) []byte {
	b := make([]byte, 0, metaSize)
	b = append(b, metaMagic...)
	b = append(b, 1, 0)
	if m.resetting {
		b[5] = 1
	}
	b = binary.LittleEndian.AppendUint64(b, m.firstIndex)
	b = binary.LittleEndian.AppendUint64(b, uint64(m.floorOffset))
	return binary.LittleEndian.AppendUint32(b, crc32.Checksum(b, castagnoli))
}

func decodeMeta(b []byte) (meta, error) {
	if len(b) != metaSize || string(b[:4]) != metaMagic || b[4] != 1 || b[5] > 1 {
		return meta{}, errBadMeta
	}
	if crc32.Checksum(b[:22], castagnoli) != binary.LittleEndian.Uint32(b[22:]) {
		return meta{}, errBadMeta
	}
	return meta{
		resetting:   b[5] == 1,
		firstIndex:  binary.LittleEndian.Uint64(b[6:]),
		floorOffset: int64(binary.LittleEndian.Uint64(b[14:])),
	}, nil
}

// State sidecar encoding (little-endian):
//
//	0  4  magic "CHWS"
//	4  4  length n u32
//	8  n  blob
//	8+n 4 CRC32C of bytes [0, 8+n)
const stateMagic = "CHWS"

var errBadState = fmt.Errorf("%w: bad state file", ErrCorrupt)

func encodeState(blob []byte) []byte {
	b := make([]byte, 0, 12+len(blob))
	b = append(b, stateMagic...)
	b = binary.LittleEndian.AppendUint32(b, uint32(len(blob)))
	b = append(b, blob...)
	return binary.LittleEndian.AppendUint32(b, crc32.Checksum(b, castagnoli))
}

// decodeState returns the blob; it aliases b.
func decodeState(b []byte) ([]byte, error) {
	if len(b) < 12 || string(b[:4]) != stateMagic {
		return nil, errBadState
	}
	n := binary.LittleEndian.Uint32(b[4:])
	if uint64(n) != uint64(len(b)-12) {
		return nil, errBadState
	}
	if crc32.Checksum(b[:8+n], castagnoli) != binary.LittleEndian.Uint32(b[8+n:]) {
		return nil, errBadState
	}
	return b[8 : 8+n], nil
}

// readSidecar returns the contents of dir/name, or nil if it does not exist.
func readSidecar(dir, name string) ([]byte, error) {
	b, err := os.ReadFile(filepath.Join(dir, name))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	return b, err
}

// writeAtomic replaces dir/name with data: temp file, fsync, rename,
// directory fsync.
func writeAtomic(dir, name string, data []byte) error {
	path := filepath.Join(dir, name)
	tmp := path + tmpSuffix
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o640)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return err
	}
	return syncDir(dir)
}

// syncDir fsyncs a directory so that created, renamed and removed names are
// durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}
