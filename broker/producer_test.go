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
	}
	if n := m.expire(150); n != 1 {
		t.Fatalf("expired %d", n)
	}
	if _, ok := m[2]; !ok || len(m) != 1 {
		t.Fatalf("left %v", m)
	}
}

func TestLookupProducerPrefersNewestPending(t *testing.T) {
	committed := producerStates{7: {Epoch: 1}}
	pending := []pendingProducer{{id: 7, st: producerState{Epoch: 2}}, {id: 8, st: producerState{Epoch: 5}}, {id: 7, st: producerState{Epoch: 3}}}
	if st, ok := lookupProducer(committed, pending, 7); !ok || st.Epoch != 3 {
		t.Fatalf("got %+v %v", st, ok)
	}
	if st, ok := lookupProducer(committed, pending[:1], 7); !ok || st.Epoch != 2 {
		t.Fatalf("got %+v %v", st, ok)
	}
	if st, ok := lookupProducer(committed, nil, 7); !ok || st.Epoch != 1 {
		t.Fatalf("got %+v %v", st, ok)
	}
	if _, ok := lookupProducer(committed, pending, 9); ok {
		t.Fatal("unknown producer found")
	}
}
