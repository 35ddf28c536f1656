package wal

import "testing"

// The method list of api.go, checked by the compiler.
var _ interface {
	Append(entries ...Entry) (firstIndex uint64, err error)
	Read(index uint64) (Entry, error)
	FirstIndex() uint64
	LastIndex() uint64
	DurableIndex() uint64
	StartOffset() int64
	NextOffset() int64
	FindOffset(offset int64) (index uint64, err error)
	FindTimestamp(ts int64) (index uint64, err error)
	TruncateFront(index uint64) error
	TruncateBack(index uint64) error
	Reset(firstIndex uint64, nextOffset int64) error
	Segments() []SegmentInfo
	DropSegments(n int) error
	RetainBytes(maxBytes int64) (dropped int, err error)
	RetainAge(cutoff int64) (dropped int, err error)
	Size() int64
	SaveState(b []byte) error
	LoadState() ([]byte, error)
	Sync() error
	Repairs() []Repair
	Dir() string
	Close() error
	Retain(r Retention) (dropped int, err error)
	Recover() error
	Failed() error
	RewriteSegment(first uint64, rewrite func(index uint64, e Entry) ([]byte, error)) (before, after int64, err error)
	ScanSegment(first uint64, fn func(index uint64, e Entry) (bool, error)) error
	Roll() error
} = (*Log)(nil)

var _ func(string, Options) (*Log, error) = Open

func TestOptionsDefaults(t *testing.T) {
	o := Options{}.withDefaults()
	if o.SegmentSize != 4<<20 || o.SegmentCacheSize != 1 || o.Fsync != FsyncAlways ||
		o.FsyncInterval != defaultFsyncInterval || o.IdleTimeout != defaultIdleTimeout || o.IndexIntervalBytes != 32<<10 {
		t.Fatalf("defaults: %+v", o)
	}
	if o := (Options{IdleTimeout: -1, SegmentSize: 8 << 30}).withDefaults(); o.IdleTimeout >= 0 || o.SegmentSize != maxSegmentSize {
		t.Fatalf("negative idle timeout or huge segment: %+v", o)
	}
}
