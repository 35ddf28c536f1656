package broker

import (
	"errors"
	"math"
	"testing"

	"github.com/twmb/franz-go/pkg/kerr"
)

// TestCheckSequence drives one producer's state through a script of
// batches: each step is checked and, if it is to be appended, pushed with
// the next offset, the way a partition does.
func TestCheckSequence(t *testing.T) {
	type step struct {
		epoch       int16
		first, last int32
		want        *kerr.Error // nil: accepted
		dupOffset   int64       // >= 0: expect a duplicate answered with this offset
	}
	ok := func(epoch int16, first, last int32) step { return step{epoch, first, last, nil, -1} }
	bad := func(epoch int16, first, last int32, e *kerr.Error) step { return step{epoch, first, last, e, -1} }
	dup := func(epoch int16, first, last int32, off int64) step { return step{epoch, first, last, nil, off} }
	tests := []struct {
		name         string
		everWritten  bool
		steps        []step
		wantBatches  int
		wantLastSeq  int32
		wantEpochEnd int16
	}{
		{"in order", false, []step{ok(0, 0, 4), ok(0, 5, 9), ok(0, 10, 10)}, 3, 10, 0},
		{"retry of the last batch is a duplicate", false, []step{ok(0, 0, 4), ok(0, 5, 9), dup(0, 5, 9, 5)}, 2, 9, 0},
		{"retry of an older cached batch", false, []step{ok(0, 0, 0), ok(0, 1, 1), ok(0, 2, 2), dup(0, 0, 0, 0)}, 3, 2, 0},
		{"gap", false, []step{ok(0, 0, 4), bad(0, 6, 9, kerr.OutOfOrderSequenceNumber)}, 1, 4, 0},
		{"overlapping range is out of order", false, []step{ok(0, 0, 4), bad(0, 3, 7, kerr.OutOfOrderSequenceNumber)}, 1, 4, 0},
		{"batch evicted from the cache is out of order", false, []step{
			ok(0, 0, 0), ok(0, 1, 1), ok(0, 2, 2), ok(0, 3, 3), ok(0, 4, 4), ok(0, 5, 5),
			bad(0, 0, 0, kerr.OutOfOrderSequenceNumber), dup(0, 1, 1, 1),
		}, 5, 5, 0},
		{"older epoch", false, []step{ok(1, 0, 0), bad(0, 1, 1, kerr.InvalidProducerEpoch)}, 1, 0, 1},
		{"duplicate of an older epoch is fenced", false, []step{ok(0, 0, 0), ok(1, 0, 0), bad(0, 0, 0, kerr.InvalidProducerEpoch)}, 1, 0, 1},
		{"new epoch starts at 0", false, []step{ok(0, 0, 9), ok(1, 0, 2), ok(1, 3, 3)}, 2, 3, 1},
		{"new epoch not at 0", false, []step{ok(0, 0, 9), bad(1, 10, 12, kerr.OutOfOrderSequenceNumber)}, 1, 9, 0},
		{"unknown producer on a written partition: any sequence", true, []step{ok(0, 42, 50), ok(0, 51, 51)}, 2, 51, 0},
		{"unknown producer on an empty partition: sequence 0 only", false, []step{bad(0, 42, 50, kerr.OutOfOrderSequenceNumber), ok(0, 0, 0)}, 1, 0, 0},
		{"wrap at int32 max", true, []step{ok(0, math.MaxInt32-1, math.MaxInt32), ok(0, 0, 3)}, 2, 3, 0},
		{"no wrap to 1", true, []step{ok(0, math.MaxInt32-1, math.MaxInt32), bad(0, 1, 3, kerr.OutOfOrderSequenceNumber)}, 1, math.MaxInt32, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var (
				st    producerState
				known bool
				next  int64
			)
			for i, s := range tt.steps {
				verdict, cached, err := checkSequence(&st, known, s.epoch, s.first, s.last, tt.everWritten || next > 0)
				switch {
				case s.want != nil:
					if !errors.Is(err, s.want) {
						t.Fatalf("step %d: got %v, want %v", i, err, s.want)
					}
					continue
				case err != nil:
					t.Fatalf("step %d: unexpected %v", i, err)
				case s.dupOffset >= 0:
					if verdict != seqDuplicate || cached.BaseOffset != s.dupOffset {
						t.Fatalf("step %d: got verdict %v offset %d, want duplicate at %d", i, verdict, cached.BaseOffset, s.dupOffset)
					}
					continue
				case verdict != seqAppend:
					t.Fatalf("step %d: verdict %v", i, verdict)
				}
				st.push(s.epoch, cachedBatch{FirstSeq: s.first, LastSeq: s.last, BaseOffset: next}, int64(i))
				known = true
				next += int64(s.last-s.first) + 1
			}
			if int(st.N) != tt.wantBatches || st.last().LastSeq != tt.wantLastSeq || st.Epoch != tt.wantEpochEnd {
				t.Fatalf("end state: %d batches, last seq %d, epoch %d", st.N, st.last().LastSeq, st.Epoch)
			}
		})
	}
}

func TestProducerStatesExpire(t *testing.T) {
	m := producerStates{
		1: {Epoch: 0, N: 1, LastTimestamp: 100},
		2: {Epoch: 0, N: 1, LastTimestamp: 200},
		3: {Epoch: 0, N: 1, LastTimestamp: 100}, // idle, but its transaction is open
	}
	if n := m.expire(150, map[int64]int64{3: 40}); n != 1 {
		t.Fatalf("expired %d", n)
	}
	if _, ok := m[2]; !ok || len(m) != 2 {
		t.Fatalf("left %v", m)
	}
	if _, ok := m[3]; !ok {
		t.Fatal("a producer with an open transaction expired")
	}
}

func TestLookupProducerPrefersNewestPending(t *testing.T) {
	committed := producerStates{7: {Epoch: 1}, 8: {Epoch: 1}}
	ongoing := map[int64]int64{8: 10}
	pending := []pendingProducer{{id: 7, st: producerState{Epoch: 2}}, {id: 8, st: producerState{Epoch: 5}}, {id: 7, st: producerState{Epoch: 3}, txnOpen: true}}
	if pp, ok := lookupProducer(committed, ongoing, pending, 7); !ok || pp.st.Epoch != 3 || !pp.txnOpen {
		t.Fatalf("got %+v %v", pp, ok)
	}
	if pp, ok := lookupProducer(committed, ongoing, pending[:1], 7); !ok || pp.st.Epoch != 2 || pp.txnOpen {
		t.Fatalf("got %+v %v", pp, ok)
	}
	if pp, ok := lookupProducer(committed, ongoing, nil, 7); !ok || pp.st.Epoch != 1 || pp.txnOpen {
		t.Fatalf("got %+v %v", pp, ok)
	}
	// The log's view: producer 8's transaction is open there, but the
	// pending marker (txnOpen false) closed it.
	if pp, ok := lookupProducer(committed, ongoing, nil, 8); !ok || pp.st.Epoch != 1 || !pp.txnOpen {
		t.Fatalf("got %+v %v", pp, ok)
	}
	if pp, ok := lookupProducer(committed, ongoing, pending, 8); !ok || pp.st.Epoch != 5 || pp.txnOpen {
		t.Fatalf("got %+v %v", pp, ok)
	}
	if _, ok := lookupProducer(committed, ongoing, pending, 9); ok {
		t.Fatal("unknown producer found")
	}
}

// TestSequenceAfterMarker: a marker of a new epoch (KIP-890) forgets the
// producer's batches, so its next batch must start at 0 and an older epoch
// is fenced; a marker of the current epoch (the older protocol) leaves the
// sequences going on.
func TestSequenceAfterMarker(t *testing.T) {
	var st producerState
	st.push(3, cachedBatch{FirstSeq: 0, LastSeq: 9}, 1)

	same := st
	same.applyMarker(3, 0, 2)
	if same.N != 1 || same.coordinatorEpoch() != 0 {
		t.Fatalf("marker of the same epoch: %+v", same)
	}
	if _, _, err := checkSequence(&same, true, 3, 10, 10, true); err != nil {
		t.Fatalf("next sequence after a same-epoch marker: %v", err)
	}

	bumped := st
	bumped.applyMarker(4, 7, 2)
	if bumped.N != 0 || bumped.Epoch != 4 || bumped.coordinatorEpoch() != 7 {
		t.Fatalf("marker of a new epoch: %+v", bumped)
	}
	if _, _, err := checkSequence(&bumped, true, 4, 10, 10, true); !errors.Is(err, kerr.OutOfOrderSequenceNumber) {
		t.Fatalf("sequence 10 after the bump: %v", err)
	}
	if _, _, err := checkSequence(&bumped, true, 3, 10, 10, true); !errors.Is(err, kerr.InvalidProducerEpoch) {
		t.Fatalf("old epoch after the bump: %v", err)
	}
	if v, _, err := checkSequence(&bumped, true, 4, 0, 4, true); err != nil || v != seqAppend {
		t.Fatalf("sequence 0 after the bump: %v %v", v, err)
	}
	if v, _, err := checkSequence(&bumped, true, 5, 0, 4, true); err != nil || v != seqAppend {
		t.Fatalf("a newer epoch at 0 after the bump: %v %v", v, err)
	}

	var none producerState
	if none.coordinatorEpoch() != -1 {
		t.Fatalf("coordinator epoch of a producer without markers: %d", none.coordinatorEpoch())
	}
}
