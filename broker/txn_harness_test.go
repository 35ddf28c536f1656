package broker

import (
	"fmt"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
)

// txnT0 is a whole second, so that millisecond arithmetic in tests is exact.
var txnT0 = time.Unix(1_700_000_000, 0)

const txnTestID = "tx"

// txnHarness drives one TxnTable with a fake clock and a producer id
// allocator, and checks after every call that the output agrees with the
// table: each record is the new state of its id (so that what is durable
// is what is served), and each marker is for a transaction now in
// Prepare* with that producer id and epoch.
type txnHarness struct {
	t       *testing.T
	table   *TxnTable
	cfg     TxnConfig
	now     time.Time
	nextPID int64
	pidErr  error // returned by the allocator while set
	records []TxnRecord
	last    TxnOutput // the last call's output
	step    TxnOutput // every output since the caller last cleared it
}

func txnNewHarness(t *testing.T) *txnHarness {
	h := &txnHarness{t: t, now: txnT0, nextPID: 1000}
	h.cfg = TxnConfig{NewProducerID: h.allocate}
	h.table = NewTxnTable(h.cfg)
	return h
}

func (h *txnHarness) allocate() (int64, error) {
	if h.pidErr != nil {
		return -1, h.pidErr
	}
	h.nextPID++
	return h.nextPID - 1, nil
}

func (h *txnHarness) advance(d time.Duration) { h.now = h.now.Add(d) }

func (h *txnHarness) collect(out TxnOutput) {
	h.t.Helper()
	h.last = out
	h.step.Records = append(h.step.Records, out.Records...)
	h.step.Markers = append(h.step.Markers, out.Markers...)
	h.records = append(h.records, out.Records...)
	lastOf := map[string]TxnRecord{}
	for _, r := range out.Records {
		id, _, err := DecodeTxnRecord(r.Key, r.Value)
		if err != nil {
			h.t.Fatalf("output record does not decode: %v", err)
		}
		lastOf[id] = r
	}
	for id, r := range lastOf {
		_, m, _ := DecodeTxnRecord(r.Key, r.Value)
		cur, ok := h.table.Describe(id)
		switch {
		case m == nil && ok:
			h.t.Fatalf("%s: tombstone written but the id is still served: %+v", id, cur)
		case m != nil && !ok:
			h.t.Fatalf("%s: record written but the id is gone", id)
		case m != nil && !reflect.DeepEqual(txnDurable(cur), *m):
			h.t.Fatalf("%s: served %+v\nbut wrote %+v", id, cur, *m)
		}
	}
	for _, mk := range out.Markers {
		cur, ok := h.table.Describe(mk.TransactionalID)
		if !ok || (cur.State != TxnPrepareCommit && cur.State != TxnPrepareAbort) || cur.ProducerID != mk.ProducerID ||
			cur.ProducerEpoch != mk.ProducerEpoch || (cur.State == TxnPrepareCommit) != mk.Commit ||
			!slices.Equal(cur.Partitions, mk.Partitions) {
			h.t.Fatalf("markers %+v for %+v", mk, cur)
		}
	}
}

func (h *txnHarness) init(id string, timeoutMs int32, expectPID int64, expectEpoch int16) (int64, int16, int16) {
	h.t.Helper()
	pid, epoch, code, out := h.table.InitProducerID(h.now, id, timeoutMs, expectPID, expectEpoch, h.allocate)
	h.collect(out)
	if (code == 0) != (pid >= 0 && epoch >= 0) {
		h.t.Fatalf("InitProducerID answered %d with producer %d epoch %d", code, pid, epoch)
	}
	return pid, epoch, code
}

func (h *txnHarness) add(id string, pid int64, epoch int16, verify bool, parts ...TxnTopicPartition) []int16 {
	h.t.Helper()
	if verify {
		h.tick() // what is due fires first, so that the verification itself must write nothing
	}
	codes, out := h.table.AddPartitions(h.now, id, pid, epoch, parts, verify)
	h.collect(out)
	if len(codes) != len(parts) {
		h.t.Fatalf("%d codes for %d partitions", len(codes), len(parts))
	}
	if verify && (len(out.Records) > 0 || len(out.Markers) > 0) {
		h.t.Fatalf("verification wrote %d records and %d markers", len(out.Records), len(out.Markers))
	}
	return codes
}

func (h *txnHarness) end(id string, pid int64, epoch int16, commit, bump bool) (int64, int16, int16) {
	h.t.Helper()
	npid, nepoch, code, out := h.table.EndTxn(h.now, id, pid, epoch, commit, bump)
	h.collect(out)
	return npid, nepoch, code
}

func (h *txnHarness) written(id string, pid int64, epoch int16) {
	h.t.Helper()
	h.collect(h.table.MarkersWritten(h.now, id, pid, epoch))
}

func (h *txnHarness) tick() {
	h.t.Helper()
	h.collect(h.table.Tick(h.now))
}

func (h *txnHarness) meta(id string) TxnMetadata {
	h.t.Helper()
	m, ok := h.table.Describe(id)
	if !ok {
		h.t.Fatalf("transactional id %q does not exist", id)
	}
	txnCheckMetadata(h.t, m)
	return m
}

// put installs metadata as if replayed, for states that take long to reach.
func (h *txnHarness) put(m TxnMetadata) {
	e := &txnmEntry{m: m, index: -1}
	h.table.entries[m.TransactionalID] = e
	h.table.schedule(e)
}

// replayed rebuilds the table from every record written so far.
func (h *txnHarness) replayed() *TxnTable {
	h.t.Helper()
	r := NewTxnReplayer()
	for _, rec := range h.records {
		if err := r.Apply(rec.Key, rec.Value); err != nil {
			h.t.Fatal(err)
		}
	}
	return r.Table(h.cfg)
}

// txnCheckReplay compares a table with the one its records rebuild: the
// same ids with the same durable metadata, deadlines and pending markers.
func txnCheckReplay(t *testing.T, live, replayed *TxnTable) {
	t.Helper()
	a, b := live.List(nil, nil), replayed.List(nil, nil)
	if len(a) != len(b) || live.Len() != replayed.Len() {
		t.Fatalf("live table has %d ids, replayed %d", len(a), len(b))
	}
	for i := range a {
		if !reflect.DeepEqual(txnDurable(a[i]), b[i]) {
			t.Fatalf("live %+v\nreplayed %+v", a[i], b[i])
		}
	}
	d1, ok1 := live.NextDeadline()
	d2, ok2 := replayed.NextDeadline()
	if ok1 != ok2 || !d1.Equal(d2) {
		t.Fatalf("live deadline %v %v, replayed %v %v", d1, ok1, d2, ok2)
	}
	if m1, m2 := live.PendingMarkers(), replayed.PendingMarkers(); !reflect.DeepEqual(m1, m2) {
		t.Fatalf("live pending markers %+v\nreplayed %+v", m1, m2)
	}
}

// txnDurable is what the log keeps of m: all but the last producer epoch.
func txnDurable(m TxnMetadata) TxnMetadata {
	m.LastProducerEpoch = txnmNoProducerEpoch
	return m
}

// txnCheckMetadata checks what every id's metadata must satisfy, and the
// start times the table sets (txnCheckLoaded checks what holds for any
// record replayed).
func txnCheckMetadata(t *testing.T, m TxnMetadata) {
	t.Helper()
	txnCheckLoaded(t, m)
	if (m.State == TxnEmpty && m.StartMs != -1) || (m.State != TxnEmpty && m.StartMs < 0) {
		t.Fatalf("%q in %v starts at %d", m.TransactionalID, m.State, m.StartMs)
	}
}

func txnCheckLoaded(t *testing.T, m TxnMetadata) {
	t.Helper()
	fail := func(format string, args ...any) {
		t.Helper()
		t.Fatalf("%q in %v: %s (%+v)", m.TransactionalID, m.State, fmt.Sprintf(format, args...), m)
	}
	if !txnSortedUnique(m.Partitions) {
		fail("partitions not sorted and unique")
	}
	if m.ProducerID < 0 || m.ProducerEpoch < 0 {
		fail("producer %d epoch %d", m.ProducerID, m.ProducerEpoch)
	}
	switch m.State {
	case TxnEmpty, TxnCompleteCommit, TxnCompleteAbort:
		if len(m.Partitions) > 0 {
			fail("partitions outside a transaction")
		}
	case TxnOngoing, TxnPrepareCommit, TxnPrepareAbort:
	default:
		fail("state served")
	}
}

func txnSortedUnique(ps []TxnTopicPartition) bool {
	for i := 1; i < len(ps); i++ {
		if txnmComparePartitions(ps[i-1], ps[i]) >= 0 {
			return false
		}
	}
	return true
}

func txnTombstones(recs []TxnRecord) int {
	n := 0
	for _, r := range recs {
		if r.Value == nil {
			n++
		}
	}
	return n
}

// txnMeta is an id in a state, as a test starts from it.
func txnMeta(state TxnState, pid int64, epoch int16, parts ...TxnTopicPartition) TxnMetadata {
	m := TxnMetadata{
		TransactionalID: txnTestID, ProducerID: pid, PrevProducerID: pid, NextProducerID: -1,
		ProducerEpoch: epoch, LastProducerEpoch: -1, TimeoutMs: 60_000, State: state,
		Partitions: parts, StartMs: txnT0.UnixMilli() - 1000, LastUpdateMs: txnT0.UnixMilli() - 1000,
	}
	if state == TxnEmpty {
		m.StartMs = -1
	}
	return m
}

func txnCode(code int16) string {
	if code == 0 {
		return "NONE"
	}
	if e := kerr.ErrorForCode(code); e != nil {
		return e.Error()
	}
	return fmt.Sprint(code)
}
