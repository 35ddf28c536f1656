package broker

import (
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

func encodeSnapshot(s partitionSnapshot) ([]byte, error) {
	b, err := json.Marshal(s)
	if err != nil {
		return nil, fmt.Errorf("encode partition state: %w", err)
	}
	return b, nil
}

func decodeSnapshot(b []byte) (partitionSnapshot, error) {
	var s partitionSnapshot
	if err := json.Unmarshal(b, &s); err != nil {
		return partitionSnapshot{}, fmt.Errorf("decode partition state: %w", err)
	}
	if s.V != partitionSnapshotVersion {
		return partitionSnapshot{}, fmt.Errorf("partition state version %d, this build reads %d", s.V, partitionSnapshotVersion)
	}
	for id, st := range s.Producers {
		if st.N > producerBatchesRetained {
			return partitionSnapshot{}, fmt.Errorf("partition state: producer %d has %d batches", id, st.N)
		}
	}
	if err := validateTxnSnapshot(&s); err != nil {
		return partitionSnapshot{}, err
	}
	return s, nil
}

// loadSnapshot reads a partition state file; a missing file is the zero
// state.
func loadSnapshot(path string) (partitionSnapshot, error) {
	snap, _, err := loadSnapshotSum(path)
	return snap, err
}

// loadSnapshotSum is loadSnapshot that also returns the SHA-256 of the
// file's content (zero when there is no file or it does not decode).
func loadSnapshotSum(path string) (partitionSnapshot, [32]byte, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return partitionSnapshot{}, [32]byte{}, nil
	}
	if err != nil {
		return partitionSnapshot{}, [32]byte{}, err
	}
	snap, err := decodeSnapshot(b)
	if err != nil {
		return snap, [32]byte{}, err
	}
	return snap, sha256.Sum256(b), nil
}

// writeFileAtomic replaces path with data: temp file, fsync, rename,
// directory fsync.
func writeFileAtomic(path string, data []byte) error {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	d, err := os.Open(filepath.Dir(path))
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
