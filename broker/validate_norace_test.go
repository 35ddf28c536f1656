//go:build !race

package broker

import "testing"

// TestValidateCompressedAllocatesNothing: once the pools hold a decoder and
// buffers, validating a compressed batch allocates nothing. (Under -race,
// sync.Pool drops a share of what is put back on purpose.) A pool emptied
// by a garbage collection costs one run a new decoder, hence the average
// below one rather than zero.
func TestValidateCompressedAllocatesNothing(t *testing.T) {
	recs := textRecords(16, 1024)
	for _, c := range testCodecs[1:] {
		b := codecBatch(t, recs, 16, c.id)
		dst := make([]batchHeader, 0, 1)
		allocs := testing.AllocsPerRun(100, func() {
			if _, err := parseBatches(dst, b, testLimits(1<<20)); err != nil {
				t.Fatal(err)
			}
		})
		if allocs >= 1 {
			t.Errorf("%s: %v allocations per batch", c.name, allocs)
		}
	}
}
