package broker

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
)

// txnCase starts a table from some ids, acts once, and checks the code and
// then whatever else the case names. Every case also checks that the
// records written rebuild the same table.
type txnCase struct {
	name  string
	start []TxnMetadata
	act   func(h *txnHarness) int16
	code  int16
	check func(t *testing.T, h *txnHarness)
}

func txnRun(t *testing.T, cases []txnCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := txnNewHarness(t)
			for _, m := range tc.start {
				h.put(m)
			}
			h.records = nil
			for _, m := range tc.start {
				h.records = append(h.records, EncodeTxnRecord(&m))
			}
			if code := tc.act(h); code != tc.code {
				t.Fatalf("code %s, want %s", txnCode(code), txnCode(tc.code))
			}
			if tc.check != nil {
				tc.check(t, h)
			}
			for _, m := range h.table.List(nil, nil) {
				txnCheckMetadata(t, m)
			}
			txnCheckReplay(t, h.table, h.replayed())
		})
	}
}

// Partitions the cases use, and the producer id their ids start with.
var (
	txnPA = TxnTopicPartition{"a", 0}
	txnPB = TxnTopicPartition{"b", 1}
)

const txnPID = 500

// txnNoWrite checks that the last call wrote nothing.
func txnNoWrite(t *testing.T, h *txnHarness) {
	t.Helper()
	if len(h.last.Records) > 0 || len(h.last.Markers) > 0 {
		t.Fatalf("wrote %d records and %d markers", len(h.last.Records), len(h.last.Markers))
	}
}

// txnWant checks the id's state, producer id and epoch.
func txnWant(t *testing.T, h *txnHarness, state TxnState, pid int64, epoch int16) TxnMetadata {
	t.Helper()
	m := h.meta(txnTestID)
	if m.State != state || m.ProducerID != pid || m.ProducerEpoch != epoch {
		t.Fatalf("%v producer %d epoch %d, want %v %d %d", m.State, m.ProducerID, m.ProducerEpoch, state, pid, epoch)
	}
	return m
}

// txnWantMarkers checks that the last call asked for exactly one set of
// markers.
func txnWantMarkers(t *testing.T, h *txnHarness, commit bool, pid int64, epoch int16, parts ...TxnTopicPartition) {
	t.Helper()
	if len(h.last.Markers) != 1 {
		t.Fatalf("%d markers, want 1", len(h.last.Markers))
	}
	mk := h.last.Markers[0]
	if mk.TransactionalID != txnTestID || mk.Commit != commit || mk.ProducerID != pid || mk.ProducerEpoch != epoch ||
		!slices.Equal(mk.Partitions, parts) {
		t.Fatalf("markers %+v, want commit %v producer %d epoch %d %v", mk, commit, pid, epoch, parts)
	}
}

func txnWithLast(m TxnMetadata, last int16) TxnMetadata {
	m.LastProducerEpoch = last
	return m
}

// InitProducerId, as Kafka's handleInitProducerId and
// prepareInitProducerIdTransit decide it.
func TestTxnInitProducerID(t *testing.T) {
	initAs := func(timeoutMs int32, pid int64, epoch int16) func(h *txnHarness) int16 {
		return func(h *txnHarness) int16 { _, _, code := h.init(txnTestID, timeoutMs, pid, epoch); return code }
	}
	init := initAs(60_000, -1, -1)
	noID := func(t *testing.T, h *txnHarness) {
		if h.table.Len() != 0 {
			t.Fatalf("%d ids after a failed InitProducerId", h.table.Len())
		}
	}
	txnRun(t, []txnCase{
		{name: "empty id", act: func(h *txnHarness) int16 { _, _, c := h.init("", 60_000, -1, -1); return c },
			code: kerr.InvalidRequest.Code, check: noID},
		{name: "producer id without epoch", act: initAs(60_000, 5, -1), code: kerr.InvalidRequest.Code, check: noID},
		{name: "epoch without producer id", act: initAs(60_000, -1, 5), code: kerr.InvalidRequest.Code, check: noID},
		{name: "zero timeout", act: initAs(0, -1, -1), code: kerr.InvalidTransactionTimeout.Code, check: noID},
		{name: "negative timeout", act: initAs(-1, -1, -1), code: kerr.InvalidTransactionTimeout.Code, check: noID},
		{name: "timeout above the maximum", act: initAs(15*60_000+1, -1, -1), code: kerr.InvalidTransactionTimeout.Code, check: noID},
		{name: "timeout at the maximum", act: initAs(15*60_000, -1, -1)},
		{name: "new id", act: init, check: func(t *testing.T, h *txnHarness) {
			m := txnWant(t, h, TxnEmpty, 1000, 0)
			if m.PrevProducerID != 1000 || m.LastProducerEpoch != -1 || m.TimeoutMs != 60_000 || m.StartMs != -1 ||
				m.LastUpdateMs != h.now.UnixMilli() || len(h.last.Records) != 1 {
				t.Fatalf("%+v, %d records", m, len(h.last.Records))
			}
		}},
		{name: "new id with an expected producer", act: initAs(60_000, 77, 3), check: func(t *testing.T, h *txnHarness) {
			txnWant(t, h, TxnEmpty, 1000, 0) // KIP-360: the client's id expired; it gets a new producer
		}},
		{name: "allocator not ready", act: func(h *txnHarness) int16 {
			h.pidErr = kerr.CoordinatorLoadInProgress
			return init(h)
		}, code: kerr.CoordinatorLoadInProgress.Code, check: noID},
		{name: "allocator failed", act: func(h *txnHarness) int16 {
			h.pidErr = errors.New("disk on fire")
			return init(h)
		}, code: kerr.UnknownServerError.Code, check: noID},
		{name: "Empty bumps the epoch", start: []TxnMetadata{txnMeta(TxnEmpty, txnPID, 4)}, act: initAs(30_000, -1, -1),
			check: func(t *testing.T, h *txnHarness) {
				if m := txnWant(t, h, TxnEmpty, txnPID, 5); m.TimeoutMs != 30_000 || m.LastProducerEpoch != -1 {
					t.Fatalf("%+v", m)
				}
			}},
		{name: "CompleteCommit bumps the epoch", start: []TxnMetadata{txnMeta(TxnCompleteCommit, txnPID, 4)}, act: init,
			check: func(t *testing.T, h *txnHarness) { txnWant(t, h, TxnEmpty, txnPID, 5) }},
		{name: "CompleteAbort bumps the epoch", start: []TxnMetadata{txnMeta(TxnCompleteAbort, txnPID, 4)}, act: init,
			check: func(t *testing.T, h *txnHarness) { txnWant(t, h, TxnEmpty, txnPID, 5) }},
		{name: "PrepareCommit", start: []TxnMetadata{txnMeta(TxnPrepareCommit, txnPID, 4, txnPA)}, act: init,
			code: kerr.ConcurrentTransactions.Code, check: txnNoWrite},
		{name: "PrepareAbort", start: []TxnMetadata{txnMeta(TxnPrepareAbort, txnPID, 4, txnPA)}, act: init,
			code: kerr.ConcurrentTransactions.Code, check: txnNoWrite},
		{name: "Ongoing is aborted, fencing its producer", start: []TxnMetadata{txnMeta(TxnOngoing, txnPID, 4, txnPA, txnPB)}, act: init,
			code: kerr.ConcurrentTransactions.Code, check: func(t *testing.T, h *txnHarness) {
				// Fenced to 5, then bumped by the abort (transaction version 2).
				m := txnWant(t, h, TxnPrepareAbort, txnPID, 6)
				if m.LastProducerEpoch != 5 || m.ClientTransactionVersion != 2 || !slices.Equal(m.Partitions, []TxnTopicPartition{txnPA, txnPB}) {
					t.Fatalf("%+v", m)
				}
				txnWantMarkers(t, h, false, txnPID, 6, txnPA, txnPB)
				h.written(txnTestID, txnPID, 6)
				txnWant(t, h, TxnCompleteAbort, txnPID, 6)
				if pid, epoch, code := h.init(txnTestID, 60_000, -1, -1); code != 0 || pid != txnPID || epoch != 7 {
					t.Fatalf("retry: %d %d %s", pid, epoch, txnCode(code))
				}
			}},
		{name: "Ongoing with the expected producer", start: []TxnMetadata{txnMeta(TxnOngoing, txnPID, 4, txnPA)}, act: initAs(60_000, txnPID, 4),
			code: kerr.ConcurrentTransactions.Code, check: func(t *testing.T, h *txnHarness) {
				txnWant(t, h, TxnPrepareAbort, txnPID, 6)
				txnWantMarkers(t, h, false, txnPID, 6, txnPA)
			}},
		{name: "Ongoing at the last epoch", start: []TxnMetadata{txnMeta(TxnOngoing, txnPID, 32766, txnPA)}, act: init,
			code: kerr.ConcurrentTransactions.Code, check: func(t *testing.T, h *txnHarness) {
				txnWant(t, h, TxnPrepareAbort, txnPID, 32767) // fenced to the maximum, where the abort leaves it
				txnWantMarkers(t, h, false, txnPID, 32767, txnPA)
				h.written(txnTestID, txnPID, 32767)
				if pid, epoch, code := h.init(txnTestID, 60_000, -1, -1); code != 0 || pid != 1000 || epoch != 0 {
					t.Fatalf("retry: %d %d %s", pid, epoch, txnCode(code))
				}
			}},
		{name: "exhausted epochs rotate the producer id", start: []TxnMetadata{txnMeta(TxnEmpty, txnPID, 32766)}, act: init,
			check: func(t *testing.T, h *txnHarness) {
				if m := txnWant(t, h, TxnEmpty, 1000, 0); m.PrevProducerID != txnPID || m.LastProducerEpoch != -1 {
					t.Fatalf("%+v", m)
				}
				// A retry by the old producer is not recognised: it did not say
				// which epoch it had.
				if _, _, code := h.init(txnTestID, 60_000, txnPID, 32766); code != kerr.ProducerFenced.Code {
					t.Fatalf("old producer: %s", txnCode(code))
				}
			}},
		{name: "exhausted epochs rotate for the expected producer", start: []TxnMetadata{txnMeta(TxnCompleteCommit, txnPID, 32766)},
			act: initAs(60_000, txnPID, 32766), check: func(t *testing.T, h *txnHarness) {
				if m := txnWant(t, h, TxnEmpty, 1000, 0); m.PrevProducerID != txnPID || m.LastProducerEpoch != 32766 {
					t.Fatalf("%+v", m)
				}
				// Its retry (the answer was lost) gets the same producer.
				if pid, epoch, code := h.init(txnTestID, 60_000, txnPID, 32766); code != 0 || pid != 1000 || epoch != 0 {
					t.Fatalf("retry: %d %d %s", pid, epoch, txnCode(code))
				}
			}},
		{name: "exhausted epochs and an older expected epoch", start: []TxnMetadata{txnMeta(TxnEmpty, txnPID, 32766)},
			act: initAs(60_000, txnPID, 32765), code: kerr.ProducerFenced.Code, check: txnNoWrite},
		{name: "expected epoch bumps and is remembered", start: []TxnMetadata{txnMeta(TxnCompleteAbort, txnPID, 4)},
			act: initAs(60_000, txnPID, 4), check: func(t *testing.T, h *txnHarness) {
				if m := txnWant(t, h, TxnEmpty, txnPID, 5); m.LastProducerEpoch != 4 {
					t.Fatalf("%+v", m)
				}
				// A retry gets the same epoch (and a record: the timeout may change).
				if pid, epoch, code := h.init(txnTestID, 20_000, txnPID, 4); code != 0 || pid != txnPID || epoch != 5 || len(h.last.Records) != 1 {
					t.Fatalf("retry: %d %d %s", pid, epoch, txnCode(code))
				}
				if m := h.meta(txnTestID); m.TimeoutMs != 20_000 || m.LastProducerEpoch != 4 {
					t.Fatalf("after retry %+v", m)
				}
			}},
		{name: "expected last epoch is a retry", start: []TxnMetadata{txnWithLast(txnMeta(TxnEmpty, txnPID, 5), 4)},
			act: initAs(60_000, txnPID, 4), check: func(t *testing.T, h *txnHarness) { txnWant(t, h, TxnEmpty, txnPID, 5) }},
		{name: "expected last epoch is a retry at the last usable epoch", start: []TxnMetadata{txnWithLast(txnMeta(TxnEmpty, txnPID, 32766), 32765)},
			act: initAs(60_000, txnPID, 32765), check: func(t *testing.T, h *txnHarness) { txnWant(t, h, TxnEmpty, txnPID, 32766) }},
		{name: "expected last epoch after a server-side abort at the maximum", start: []TxnMetadata{txnWithLast(txnMeta(TxnCompleteAbort, txnPID, 32767), 32766)},
			act: initAs(60_000, txnPID, 32766), code: kerr.ProducerFenced.Code, check: txnNoWrite},
		{name: "expected stale epoch", start: []TxnMetadata{txnMeta(TxnEmpty, txnPID, 4)}, act: initAs(60_000, txnPID, 3),
			code: kerr.ProducerFenced.Code, check: txnNoWrite},
		{name: "expected other producer id", start: []TxnMetadata{txnMeta(TxnEmpty, txnPID, 4)}, act: initAs(60_000, txnPID+1, 4),
			code: kerr.ProducerFenced.Code, check: txnNoWrite},
		{name: "expected other producer id while markers are written", start: []TxnMetadata{txnMeta(TxnPrepareCommit, txnPID, 4, txnPA)},
			act: initAs(60_000, txnPID+1, 4), code: kerr.ProducerFenced.Code, check: txnNoWrite},
	})
}

// AddPartitionsToTxn and AddOffsetsToTxn (handleAddPartitionsToTransaction)
// and the verification of KIP-890 part 1 (handleVerifyPartitionsInTransaction).
func TestTxnAddPartitions(t *testing.T) {
	add := func(id string, pid int64, epoch int16, verify bool, parts ...TxnTopicPartition) func(h *txnHarness) int16 {
		return func(h *txnHarness) int16 {
			codes := h.add(id, pid, epoch, verify, parts...)
			if len(codes) == 0 {
				return 0
			}
			for _, c := range codes[1:] {
				if c != codes[0] {
					return -100 // mixed: the case checks them itself
				}
			}
			return codes[0]
		}
	}
	ongoing := func(parts ...TxnTopicPartition) func(t *testing.T, h *txnHarness) {
		return func(t *testing.T, h *txnHarness) {
			if m := txnWant(t, h, TxnOngoing, txnPID, 4); !slices.Equal(m.Partitions, parts) {
				t.Fatalf("partitions %v, want %v", m.Partitions, parts)
			}
		}
	}
	startsNow := func(parts ...TxnTopicPartition) func(t *testing.T, h *txnHarness) {
		return func(t *testing.T, h *txnHarness) {
			ongoing(parts...)(t, h)
			if m := h.meta(txnTestID); m.StartMs != h.now.UnixMilli() || m.LastUpdateMs != h.now.UnixMilli() || len(h.last.Records) != 1 {
				t.Fatalf("%+v, %d records", m, len(h.last.Records))
			}
		}
	}
	empty := []TxnMetadata{txnMeta(TxnEmpty, txnPID, 4)}
	txnRun(t, []txnCase{
		{name: "empty id", act: add("", txnPID, 4, false, txnPA, txnPB), code: kerr.InvalidRequest.Code},
		{name: "unknown id", act: add(txnTestID, txnPID, 4, false, txnPA, txnPB), code: kerr.InvalidProducerIDMapping.Code},
		{name: "other producer id", start: empty, act: add(txnTestID, txnPID+1, 4, false, txnPA), code: kerr.InvalidProducerIDMapping.Code, check: txnNoWrite},
		{name: "stale epoch", start: empty, act: add(txnTestID, txnPID, 3, false, txnPA), code: kerr.ProducerFenced.Code, check: txnNoWrite},
		{name: "newer epoch", start: empty, act: add(txnTestID, txnPID, 5, false, txnPA), code: kerr.ProducerFenced.Code, check: txnNoWrite},
		{name: "PrepareCommit", start: []TxnMetadata{txnMeta(TxnPrepareCommit, txnPID, 4, txnPA)}, act: add(txnTestID, txnPID, 4, false, txnPB),
			code: kerr.ConcurrentTransactions.Code, check: txnNoWrite},
		{name: "PrepareAbort", start: []TxnMetadata{txnMeta(TxnPrepareAbort, txnPID, 4, txnPA)}, act: add(txnTestID, txnPID, 4, false, txnPB),
			code: kerr.ConcurrentTransactions.Code, check: txnNoWrite},
		{name: "Empty starts a transaction", start: empty, act: add(txnTestID, txnPID, 4, false, txnPB, txnPA, txnPA), check: startsNow(txnPA, txnPB)},
		{name: "CompleteAbort starts a transaction", start: []TxnMetadata{txnMeta(TxnCompleteAbort, txnPID, 4)},
			act: add(txnTestID, txnPID, 4, false, txnPA), check: startsNow(txnPA)},
		{name: "CompleteCommit starts a transaction", start: []TxnMetadata{txnMeta(TxnCompleteCommit, txnPID, 4)},
			act: add(txnTestID, txnPID, 4, false, txnPA), check: startsNow(txnPA)},
		{name: "Ongoing adds", start: []TxnMetadata{txnMeta(TxnOngoing, txnPID, 4, txnPB)}, act: add(txnTestID, txnPID, 4, false, txnPA),
			check: func(t *testing.T, h *txnHarness) {
				ongoing(txnPA, txnPB)(t, h)
				if m := h.meta(txnTestID); m.StartMs != txnT0.UnixMilli()-1000 || m.LastUpdateMs != h.now.UnixMilli() {
					t.Fatalf("%+v", m)
				}
			}},
		{name: "Ongoing already has them", start: []TxnMetadata{txnMeta(TxnOngoing, txnPID, 4, txnPA, txnPB)},
			act: add(txnTestID, txnPID, 4, false, txnPB, txnPA), check: txnNoWrite},
		{name: "no partitions", start: empty, act: add(txnTestID, txnPID, 4, false), check: func(t *testing.T, h *txnHarness) {
			txnNoWrite(t, h)
			txnWant(t, h, TxnEmpty, txnPID, 4)
		}},
		{name: "verify", start: []TxnMetadata{txnMeta(TxnOngoing, txnPID, 4, txnPA)}, act: func(h *txnHarness) int16 {
			codes := h.add(txnTestID, txnPID, 4, true, txnPA, txnPB)
			if !slices.Equal(codes, []int16{0, kerr.TransactionAbortable.Code}) {
				h.t.Fatalf("codes %v", codes)
			}
			return 0
		}, check: txnNoWrite},
		{name: "verify in Empty", start: empty, act: add(txnTestID, txnPID, 4, true, txnPA), code: kerr.TransactionAbortable.Code, check: txnNoWrite},
		{name: "verify in CompleteCommit", start: []TxnMetadata{txnMeta(TxnCompleteCommit, txnPID, 4)},
			act: add(txnTestID, txnPID, 4, true, txnPA), code: kerr.TransactionAbortable.Code, check: txnNoWrite},
		{name: "verify unknown id", act: add(txnTestID, txnPID, 4, true, txnPA), code: kerr.InvalidProducerIDMapping.Code},
		{name: "verify other producer id", start: empty, act: add(txnTestID, txnPID+1, 4, true, txnPA), code: kerr.InvalidProducerIDMapping.Code},
		{name: "verify fenced", start: []TxnMetadata{txnMeta(TxnOngoing, txnPID, 4, txnPA)}, act: add(txnTestID, txnPID, 3, true, txnPA),
			code: kerr.ProducerFenced.Code},
		{name: "verify while markers are written", start: []TxnMetadata{txnMeta(TxnPrepareAbort, txnPID, 4, txnPA)},
			act: add(txnTestID, txnPID, 4, true, txnPA), code: kerr.ConcurrentTransactions.Code},
		{name: "verify with no id", act: add("", txnPID, 4, true, txnPA), code: kerr.InvalidRequest.Code},
		{name: "AddOffsets", start: empty, act: func(h *txnHarness) int16 {
			code, out := h.table.AddOffsets(h.now, txnTestID, txnPID, 4, TxnTopicPartition{"__consumer_offsets", 7})
			h.collect(out)
			return code
		}, check: startsNow(TxnTopicPartition{"__consumer_offsets", 7})},
		{name: "AddOffsets fenced", start: empty, act: func(h *txnHarness) int16 {
			code, out := h.table.AddOffsets(h.now, txnTestID, txnPID, 3, TxnTopicPartition{"__consumer_offsets", 7})
			h.collect(out)
			return code
		}, code: kerr.ProducerFenced.Code, check: txnNoWrite},
	})
}

// EndTxn before v5 (endTransactionWithTV1): the epoch must match exactly and
// is never bumped.
func TestTxnEndTxnV1(t *testing.T) {
	end := func(id string, pid int64, epoch int16, commit bool) func(h *txnHarness) int16 {
		return func(h *txnHarness) int16 {
			npid, nepoch, code := h.end(id, pid, epoch, commit, false)
			if npid != -1 || nepoch != -1 {
				h.t.Fatalf("EndTxn v1 answered producer %d epoch %d", npid, nepoch)
			}
			return code
		}
	}
	ongoing := []TxnMetadata{txnMeta(TxnOngoing, txnPID, 4, txnPA, txnPB)}
	prepared := func(commit bool) func(t *testing.T, h *txnHarness) {
		return func(t *testing.T, h *txnHarness) {
			state := TxnPrepareAbort
			if commit {
				state = TxnPrepareCommit
			}
			m := txnWant(t, h, state, txnPID, 4)
			if m.ClientTransactionVersion != 0 || m.StartMs != txnT0.UnixMilli()-1000 || m.NextProducerID != -1 {
				t.Fatalf("%+v", m)
			}
			txnWantMarkers(t, h, commit, txnPID, 4, txnPA, txnPB)
			h.written(txnTestID, txnPID, 4)
			state = TxnCompleteAbort
			if commit {
				state = TxnCompleteCommit
			}
			if m := txnWant(t, h, state, txnPID, 4); m.Partitions != nil || m.StartMs != txnT0.UnixMilli()-1000 {
				t.Fatalf("%+v", m)
			}
		}
	}
	in := func(s TxnState) []TxnMetadata {
		if s == TxnPrepareCommit || s == TxnPrepareAbort {
			return []TxnMetadata{txnMeta(s, txnPID, 4, txnPA)}
		}
		return []TxnMetadata{txnMeta(s, txnPID, 4)}
	}
	txnRun(t, []txnCase{
		{name: "empty id", act: end("", txnPID, 4, true), code: kerr.InvalidRequest.Code},
		{name: "unknown id", act: end(txnTestID, txnPID, 4, true), code: kerr.InvalidProducerIDMapping.Code},
		{name: "other producer id", start: ongoing, act: end(txnTestID, txnPID+1, 4, true), code: kerr.InvalidProducerIDMapping.Code, check: txnNoWrite},
		{name: "stale epoch", start: ongoing, act: end(txnTestID, txnPID, 3, true), code: kerr.ProducerFenced.Code, check: txnNoWrite},
		{name: "newer epoch", start: ongoing, act: end(txnTestID, txnPID, 5, true), code: kerr.ProducerFenced.Code, check: txnNoWrite},
		{name: "commit", start: ongoing, act: end(txnTestID, txnPID, 4, true), check: prepared(true)},
		{name: "abort", start: ongoing, act: end(txnTestID, txnPID, 4, false), check: prepared(false)},
		{name: "commit after commit", start: in(TxnCompleteCommit), act: end(txnTestID, txnPID, 4, true), check: txnNoWrite},
		{name: "abort after commit", start: in(TxnCompleteCommit), act: end(txnTestID, txnPID, 4, false), code: kerr.InvalidTxnState.Code},
		{name: "abort after abort", start: in(TxnCompleteAbort), act: end(txnTestID, txnPID, 4, false), check: txnNoWrite},
		{name: "commit after abort", start: in(TxnCompleteAbort), act: end(txnTestID, txnPID, 4, true), code: kerr.InvalidTxnState.Code},
		{name: "commit while committing", start: in(TxnPrepareCommit), act: end(txnTestID, txnPID, 4, true), code: kerr.ConcurrentTransactions.Code, check: txnNoWrite},
		{name: "abort while committing", start: in(TxnPrepareCommit), act: end(txnTestID, txnPID, 4, false), code: kerr.InvalidTxnState.Code},
		{name: "abort while aborting", start: in(TxnPrepareAbort), act: end(txnTestID, txnPID, 4, false), code: kerr.ConcurrentTransactions.Code},
		{name: "commit while aborting", start: in(TxnPrepareAbort), act: end(txnTestID, txnPID, 4, true), code: kerr.InvalidTxnState.Code},
		{name: "commit in Empty", start: in(TxnEmpty), act: end(txnTestID, txnPID, 4, true), code: kerr.InvalidTxnState.Code, check: txnNoWrite},
		{name: "abort in Empty", start: in(TxnEmpty), act: end(txnTestID, txnPID, 4, false), code: kerr.InvalidTxnState.Code, check: txnNoWrite},
	})
}

// EndTxn v5+ (KIP-890 part 2, Kafka 4.0's endTransaction): every EndTxn
// bumps the epoch, so a request one epoch behind is a retry.
func TestTxnEndTxnV2(t *testing.T) {
	end := func(pid int64, epoch int16, commit bool, wantPID int64, wantEpoch int16) func(h *txnHarness) int16 {
		return func(h *txnHarness) int16 {
			npid, nepoch, code := h.end(txnTestID, pid, epoch, commit, true)
			if npid != wantPID || nepoch != wantEpoch {
				h.t.Fatalf("answered producer %d epoch %d, want %d %d (%s)", npid, nepoch, wantPID, wantEpoch, txnCode(code))
			}
			return code
		}
	}
	fail := func(pid int64, epoch int16, commit bool) func(h *txnHarness) int16 {
		return end(pid, epoch, commit, -1, -1)
	}
	ongoing := []TxnMetadata{txnMeta(TxnOngoing, txnPID, 4, txnPA, txnPB)}
	in := func(s TxnState, epoch int16) []TxnMetadata {
		if s == TxnPrepareCommit || s == TxnPrepareAbort {
			return []TxnMetadata{txnMeta(s, txnPID, epoch, txnPA)}
		}
		return []TxnMetadata{txnMeta(s, txnPID, epoch)}
	}
	prepared := func(commit bool, parts ...TxnTopicPartition) func(t *testing.T, h *txnHarness) {
		return func(t *testing.T, h *txnHarness) {
			state, done := TxnPrepareAbort, TxnCompleteAbort
			if commit {
				state, done = TxnPrepareCommit, TxnCompleteCommit
			}
			m := txnWant(t, h, state, txnPID, 5)
			if m.LastProducerEpoch != 4 || m.ClientTransactionVersion != 2 || !slices.Equal(m.Partitions, parts) {
				t.Fatalf("%+v", m)
			}
			if len(parts) == 0 && m.StartMs != h.now.UnixMilli() {
				t.Fatalf("an abort with no partitions starts now: %+v", m)
			}
			txnWantMarkers(t, h, commit, txnPID, 5, parts...)
			h.written(txnTestID, txnPID, 5)
			txnWant(t, h, done, txnPID, 5)
		}
	}
	txnRun(t, []txnCase{
		{name: "empty id", act: func(h *txnHarness) int16 { _, _, c := h.end("", txnPID, 4, true, true); return c }, code: kerr.InvalidRequest.Code},
		{name: "unknown id", act: fail(txnPID, 4, true), code: kerr.InvalidProducerIDMapping.Code},
		{name: "other producer id", start: ongoing, act: fail(txnPID+1, 4, true), code: kerr.InvalidProducerIDMapping.Code, check: txnNoWrite},
		{name: "stale epoch", start: ongoing, act: fail(txnPID, 3, true), code: kerr.ProducerFenced.Code, check: txnNoWrite},
		{name: "newer epoch", start: ongoing, act: fail(txnPID, 5, true), code: kerr.ProducerFenced.Code, check: txnNoWrite},
		{name: "commit", start: ongoing, act: end(txnPID, 4, true, txnPID, 5), check: prepared(true, txnPA, txnPB)},
		{name: "abort", start: ongoing, act: end(txnPID, 4, false, txnPID, 5), check: prepared(false, txnPA, txnPB)},
		{name: "commit at the last epoch", start: []TxnMetadata{txnMeta(TxnOngoing, txnPID, 32766, txnPA)}, act: end(txnPID, 32766, true, 1000, 0),
			check: func(t *testing.T, h *txnHarness) {
				if m := txnWant(t, h, TxnPrepareCommit, txnPID, 32767); m.NextProducerID != 1000 {
					t.Fatalf("%+v", m)
				}
				txnWantMarkers(t, h, true, txnPID, 32767, txnPA)
				// A retry while the markers are written.
				if _, _, code := h.end(txnTestID, txnPID, 32766, true, true); code != kerr.ConcurrentTransactions.Code {
					t.Fatalf("retry while committing: %s", txnCode(code))
				}
				h.written(txnTestID, txnPID, 32767)
				if m := txnWant(t, h, TxnCompleteCommit, 1000, 0); m.PrevProducerID != txnPID || m.NextProducerID != -1 {
					t.Fatalf("%+v", m)
				}
				// A retry after: the new producer id again.
				if pid, epoch, code := h.end(txnTestID, txnPID, 32766, true, true); code != 0 || pid != 1000 || epoch != 0 || len(h.last.Records) != 0 {
					t.Fatalf("retry after the commit: %d %d %s", pid, epoch, txnCode(code))
				}
				// And the producer carries on with it.
				if codes := h.add(txnTestID, 1000, 0, false, txnPB); codes[0] != 0 {
					t.Fatalf("next transaction: %s", txnCode(codes[0]))
				}
			}},
		{name: "allocator not ready at the last epoch", start: []TxnMetadata{txnMeta(TxnOngoing, txnPID, 32766, txnPA)},
			act: func(h *txnHarness) int16 {
				h.pidErr = kerr.CoordinatorLoadInProgress
				return fail(txnPID, 32766, true)(h)
			}, code: kerr.CoordinatorLoadInProgress.Code, check: func(t *testing.T, h *txnHarness) {
				txnNoWrite(t, h)
				txnWant(t, h, TxnOngoing, txnPID, 32766)
			}},
		{name: "retry while committing", start: in(TxnPrepareCommit, 5), act: fail(txnPID, 4, true), code: kerr.ConcurrentTransactions.Code, check: txnNoWrite},
		{name: "abort while committing", start: in(TxnPrepareCommit, 5), act: fail(txnPID, 4, false), code: kerr.ConcurrentTransactions.Code, check: txnNoWrite},
		// KAFKA-18464: the next transaction's EndTxn while the markers of the
		// last are written waits for them, not fencing the producer.
		{name: "current epoch while committing", start: in(TxnPrepareCommit, 5), act: fail(txnPID, 5, true), code: kerr.ConcurrentTransactions.Code, check: txnNoWrite},
		{name: "empty abort while committing", start: in(TxnPrepareCommit, 5), act: fail(txnPID, 5, false), code: kerr.ConcurrentTransactions.Code, check: txnNoWrite},
		{name: "stale epoch while committing", start: in(TxnPrepareCommit, 5), act: fail(txnPID, 3, true), code: kerr.ProducerFenced.Code, check: txnNoWrite},
		{name: "retry while aborting", start: in(TxnPrepareAbort, 5), act: fail(txnPID, 4, false), code: kerr.ConcurrentTransactions.Code},
		{name: "commit while aborting", start: in(TxnPrepareAbort, 5), act: fail(txnPID, 4, true), code: kerr.ConcurrentTransactions.Code, check: txnNoWrite},
		{name: "retry of a commit", start: in(TxnCompleteCommit, 5), act: end(txnPID, 4, true, txnPID, 5), check: txnNoWrite},
		{name: "abort retry after a commit", start: in(TxnCompleteCommit, 5), act: fail(txnPID, 4, false), code: kerr.InvalidTxnState.Code},
		{name: "commit after a commit", start: in(TxnCompleteCommit, 4), act: fail(txnPID, 4, true), code: kerr.InvalidTxnState.Code, check: txnNoWrite},
		{name: "abort after a commit", start: in(TxnCompleteCommit, 4), act: end(txnPID, 4, false, txnPID, 5), check: prepared(false)},
		{name: "retry of an abort", start: in(TxnCompleteAbort, 5), act: end(txnPID, 4, false, txnPID, 5), check: txnNoWrite},
		{name: "commit retry after an abort", start: in(TxnCompleteAbort, 5), act: fail(txnPID, 4, true), code: kerr.InvalidTxnState.Code},
		{name: "abort after an abort", start: in(TxnCompleteAbort, 4), act: end(txnPID, 4, false, txnPID, 5), check: prepared(false)},
		{name: "commit after an abort", start: in(TxnCompleteAbort, 4), act: fail(txnPID, 4, true), code: kerr.InvalidTxnState.Code},
		{name: "stale epoch after a commit", start: in(TxnCompleteCommit, 5), act: fail(txnPID, 3, true), code: kerr.ProducerFenced.Code},
		{name: "abort in Empty", start: in(TxnEmpty, 4), act: end(txnPID, 4, false, txnPID, 5), check: prepared(false)},
		{name: "commit in Empty", start: in(TxnEmpty, 4), act: fail(txnPID, 4, true), code: kerr.InvalidTxnState.Code, check: txnNoWrite},
		{name: "stale epoch in Empty", start: in(TxnEmpty, 4), act: fail(txnPID, 3, false), code: kerr.ProducerFenced.Code},
		{name: "retry from a producer id that was not replaced", start: []TxnMetadata{{TransactionalID: txnTestID, ProducerID: 1000,
			PrevProducerID: 1000, NextProducerID: -1, LastProducerEpoch: -1, State: TxnCompleteCommit, StartMs: 1}},
			act: fail(txnPID, 32766, true), code: kerr.InvalidProducerIDMapping.Code},
		{name: "no producer id, after a version 0 record", start: []TxnMetadata{{TransactionalID: txnTestID, ProducerID: 1000,
			PrevProducerID: -1, NextProducerID: -1, LastProducerEpoch: -1, State: TxnCompleteCommit, StartMs: 1}},
			act: fail(-1, 32766, true), code: kerr.InvalidProducerIDMapping.Code},
	})
}

func TestTxnMarkersWritten(t *testing.T) {
	prep := []TxnMetadata{txnMeta(TxnPrepareCommit, txnPID, 4, txnPA)}
	written := func(id string, pid int64, epoch int16) func(h *txnHarness) int16 {
		return func(h *txnHarness) int16 { h.advance(time.Second); h.written(id, pid, epoch); return 0 }
	}
	unchanged := func(state TxnState) func(t *testing.T, h *txnHarness) {
		return func(t *testing.T, h *txnHarness) {
			txnNoWrite(t, h)
			txnWant(t, h, state, txnPID, 4)
		}
	}
	txnRun(t, []txnCase{
		{name: "completes", start: prep, act: written(txnTestID, txnPID, 4), check: func(t *testing.T, h *txnHarness) {
			m := txnWant(t, h, TxnCompleteCommit, txnPID, 4)
			if m.Partitions != nil || m.LastUpdateMs != h.now.UnixMilli() || m.StartMs != txnT0.UnixMilli()-1000 || len(h.last.Records) != 1 {
				t.Fatalf("%+v", m)
			}
			h.written(txnTestID, txnPID, 4) // again: nothing
			txnNoWrite(t, h)
		}},
		{name: "other epoch", start: prep, act: written(txnTestID, txnPID, 3), check: unchanged(TxnPrepareCommit)},
		{name: "other producer id", start: prep, act: written(txnTestID, txnPID+1, 4), check: unchanged(TxnPrepareCommit)},
		{name: "not preparing", start: []TxnMetadata{txnMeta(TxnOngoing, txnPID, 4, txnPA)}, act: written(txnTestID, txnPID, 4), check: unchanged(TxnOngoing)},
		{name: "unknown id", act: written(txnTestID, txnPID, 4)},
	})
}

// A transaction open past its timeout is aborted, its producer fenced
// (abortTimedOutTransactions: start + timeout < now).
func TestTxnTimeout(t *testing.T) {
	h := txnNewHarness(t)
	pid, epoch, _ := h.init(txnTestID, 10_000, -1, -1)
	h.advance(time.Second)
	start := h.now
	if codes := h.add(txnTestID, pid, epoch, false, txnPA); codes[0] != 0 {
		t.Fatal(txnCode(codes[0]))
	}
	if d, ok := h.table.NextDeadline(); !ok || !d.Equal(start.Add(10*time.Second+time.Millisecond)) {
		t.Fatalf("next deadline %v %v", d, ok)
	}
	h.now = start.Add(10 * time.Second)
	h.tick()
	txnNoWrite(t, h)
	h.now = start.Add(10*time.Second + time.Millisecond)
	h.tick()
	txnWant(t, h, TxnPrepareAbort, pid, epoch+2)
	txnWantMarkers(t, h, false, pid, epoch+2, txnPA)
	if _, ok := h.table.NextDeadline(); ok {
		t.Fatal("a deadline while the markers are written")
	}
	h.advance(365 * 24 * time.Hour)
	h.tick()
	txnNoWrite(t, h) // Prepare* neither times out nor expires
	// The producer wakes up and commits: fenced.
	if _, _, code := h.end(txnTestID, pid, epoch, true, false); code != kerr.ProducerFenced.Code {
		t.Fatalf("zombie commit: %s", txnCode(code))
	}
	h.written(txnTestID, pid, epoch+2)
	txnWant(t, h, TxnCompleteAbort, pid, epoch+2)
	if d, ok := h.table.NextDeadline(); !ok || !d.Equal(h.now.Add(7*24*time.Hour)) {
		t.Fatalf("expiration deadline %v %v", d, ok)
	}
	txnCheckReplay(t, h.table, h.replayed())
}

// A due deadline fires before the request that finds it due, however
// rarely the caller ticks.
func TestTxnTimeoutFiresBeforeRequest(t *testing.T) {
	for _, bump := range []bool{false, true} {
		h := txnNewHarness(t)
		h.put(txnMeta(TxnOngoing, txnPID, 4, txnPA))
		h.now = txnT0.Add(59*time.Second + time.Millisecond) // started at t0-1s with a 60s timeout
		_, _, code := h.end(txnTestID, txnPID, 4, true, bump)
		if code != kerr.ProducerFenced.Code {
			t.Fatalf("bump %v: commit after the timeout: %s", bump, txnCode(code))
		}
		txnWant(t, h, TxnPrepareAbort, txnPID, 6)
		txnWantMarkers(t, h, false, txnPID, 6, txnPA)
	}
}

// An id with no open transaction expires transactional.id.expiration.ms
// after its last update (shouldExpire: lastUpdate <= now - expiration).
func TestTxnIDExpiration(t *testing.T) {
	h := txnNewHarness(t)
	h.cfg.IDExpiration = time.Hour
	h.table = NewTxnTable(h.cfg)
	pid, _, _ := h.init(txnTestID, 10_000, -1, -1)
	h.advance(time.Minute)
	h.init("other", 10_000, -1, -1)
	h.init("also", 10_000, -1, -1)
	if d, ok := h.table.NextDeadline(); !ok || !d.Equal(txnT0.Add(time.Hour)) {
		t.Fatalf("next deadline %v %v", d, ok)
	}
	h.now = txnT0.Add(time.Hour - time.Millisecond)
	h.tick()
	txnNoWrite(t, h)
	h.now = txnT0.Add(time.Hour)
	h.tick()
	if len(h.last.Records) != 1 || h.last.Records[0].Value != nil || h.table.Len() != 2 {
		t.Fatalf("expiring one id wrote %d records, %d ids left", len(h.last.Records), h.table.Len())
	}
	if _, ok := h.table.Describe(txnTestID); ok {
		t.Fatal("expired id still described")
	}
	// Two at the same time expire in id order.
	h.now = txnT0.Add(time.Hour + time.Minute)
	h.tick()
	if len(h.last.Records) != 2 || string(h.last.Records[0].Key) != string(txnmKey("also")) || string(h.last.Records[1].Key) != string(txnmKey("other")) {
		t.Fatalf("tombstones %q", h.last.Records)
	}
	txnCheckReplay(t, h.table, h.replayed())
	// The id comes back with a new producer id.
	if npid, epoch, code := h.init(txnTestID, 10_000, -1, -1); code != 0 || npid == pid || epoch != 0 {
		t.Fatalf("after expiration: %d %d %s", npid, epoch, txnCode(code))
	}
	if _, ok := h.table.NextDeadline(); !ok {
		t.Fatal("no deadline for the new id")
	}
}

// Replay rebuilds the table from the records: the last record of an id
// wins, tombstones remove, unknown record types are skipped, and the
// transactions whose markers may not be written are listed again.
func TestTxnReplay(t *testing.T) {
	h := txnNewHarness(t)
	check := func() { t.Helper(); txnCheckReplay(t, h.table, h.replayed()) }
	ids := []string{"c", "a", "b"}
	pids := map[string]int64{}
	for _, id := range ids {
		pids[id], _, _ = h.init(id, 30_000, -1, -1)
		h.add(id, pids[id], 0, false, txnPA, TxnTopicPartition{id, 0})
		check()
	}
	h.end("a", pids["a"], 0, true, false)
	h.end("b", pids["b"], 0, false, true)
	check()
	h.written("a", pids["a"], 0)
	check()
	h.end("c", pids["c"], 0, true, false)
	r := NewTxnReplayer()
	for _, rec := range h.records {
		if err := r.Apply(rec.Key, rec.Value); err != nil {
			t.Fatal(err)
		}
	}
	if err := r.Apply([]byte{0, 1, 0, 1, 'x'}, []byte{0, 0}); err != nil || r.Skipped() != 1 {
		t.Fatalf("unknown key version: %v, skipped %d", err, r.Skipped())
	}
	if err := r.Apply(txnmKey("a"), []byte{0, 1, 2}); !errors.Is(err, ErrTxnRecordCorrupt) {
		t.Fatalf("corrupt record: %v", err)
	}
	replayed := r.Table(h.cfg)
	txnCheckReplay(t, h.table, replayed)
	pending := replayed.PendingMarkers()
	if len(pending) != 2 || pending[0].TransactionalID != "b" || pending[0].Commit || pending[0].ProducerEpoch != 1 ||
		pending[1].TransactionalID != "c" || !pending[1].Commit || !slices.Equal(pending[1].Partitions, []TxnTopicPartition{txnPA, {"c", 0}}) {
		t.Fatalf("pending markers %+v", pending)
	}
	// The replayed table carries on: the markers complete there.
	out := replayed.MarkersWritten(h.now, "c", pids["c"], 0)
	if m, _ := replayed.Describe("c"); m.State != TxnCompleteCommit || len(out.Records) != 1 {
		t.Fatalf("after markers on the replayed table: %+v", m)
	}
	// A tombstone removes; the replayer starts over after Table.
	if err := r.Apply(txnmKey("a"), nil); err != nil {
		t.Fatal(err)
	}
	if r.Table(h.cfg).Len() != 0 {
		t.Fatal("replayer kept ids after Table")
	}
}

// Kafka does not write the last producer epoch, so a retried
// InitProducerId that the live coordinator would recognise is fenced after
// a reload (Kafka: "a retry that spans a coordinator change will fail").
func TestTxnReplayForgetsLastEpoch(t *testing.T) {
	h := txnNewHarness(t)
	h.put(txnMeta(TxnEmpty, txnPID, 4))
	h.records = []TxnRecord{EncodeTxnRecord(&TxnMetadata{TransactionalID: txnTestID, ProducerID: txnPID, PrevProducerID: txnPID,
		NextProducerID: -1, ProducerEpoch: 4, TimeoutMs: 60_000, State: TxnEmpty, StartMs: -1})}
	h.init(txnTestID, 60_000, txnPID, 4) // bumps to 5, remembering 4
	h.table = h.replayed()
	if m := h.meta(txnTestID); m.ProducerEpoch != 5 || m.LastProducerEpoch != -1 {
		t.Fatalf("replayed %+v", m)
	}
	if _, _, code := h.init(txnTestID, 60_000, txnPID, 4); code != kerr.ProducerFenced.Code {
		t.Fatalf("retry after a reload: %s", txnCode(code))
	}
}

func TestTxnCompactor(t *testing.T) {
	c := NewTxnCompactor(time.Hour)
	a, b := txnmKey("a"), txnmKey("b")
	for i, k := range [][]byte{a, b, a, b, nil} {
		c.Observe(int64(i), k)
	}
	if c.Keys() != 3 {
		t.Fatalf("%d keys", c.Keys())
	}
	old, recent := txnT0.Add(-2*time.Hour), txnT0.Add(-time.Minute)
	for _, tc := range []struct {
		offset    int64
		key       []byte
		tombstone bool
		ts        time.Time
		keep      bool
	}{
		{0, a, false, recent, false}, // superseded
		{2, a, false, old, true},     // latest
		{3, b, true, recent, true},   // latest tombstone, young
		{3, b, true, old, false},     // latest tombstone, past delete retention
		{4, nil, false, recent, false},
	} {
		if got := c.Keep(tc.offset, tc.key, tc.tombstone, tc.ts, txnT0); got != tc.keep {
			t.Fatalf("offset %d: keep %v, want %v", tc.offset, got, tc.keep)
		}
	}
}

func TestTxnStateNames(t *testing.T) {
	names := []string{"Empty", "Ongoing", "PrepareCommit", "PrepareAbort", "CompleteCommit", "CompleteAbort", "Dead", "PrepareEpochFence"}
	for i, n := range names {
		if s := TxnState(i); s.String() != n {
			t.Fatalf("state %d is %q, want %q", i, s, n)
		}
		if s, ok := ParseTxnState(n); !ok || s != TxnState(i) {
			t.Fatalf("ParseTxnState(%q) = %v %v", n, s, ok)
		}
	}
	if _, ok := ParseTxnState("Stable"); ok || TxnState(8).String() != "Unknown" {
		t.Fatal("unknown state names")
	}
}

func TestTxnConfigDefaults(t *testing.T) {
	c := TxnConfig{}.withDefaults()
	if c.MaxTimeout != 15*time.Minute || c.IDExpiration != 7*24*time.Hour {
		t.Fatalf("defaults %+v", c)
	}
	c = TxnConfig{MaxTimeout: time.Second, IDExpiration: -1}.withDefaults()
	if c.MaxTimeout != time.Second || c.IDExpiration != 7*24*time.Hour {
		t.Fatalf("%+v", c)
	}
}

// List filters by state and producer id, sorted by id; Describe copies.
func TestTxnListDescribe(t *testing.T) {
	h := txnNewHarness(t)
	for _, id := range []string{"z", "y", "x"} {
		pid, epoch, _ := h.init(id, 60_000, -1, -1)
		if id != "y" {
			h.add(id, pid, epoch, false, txnPA)
		}
	}
	got := h.table.List([]TxnState{TxnOngoing}, nil)
	if len(got) != 2 || got[0].TransactionalID != "x" || got[1].TransactionalID != "z" {
		t.Fatalf("Ongoing: %+v", got)
	}
	if got := h.table.List(nil, []int64{1001}); len(got) != 1 || got[0].TransactionalID != "y" {
		t.Fatalf("producer 1001: %+v", got)
	}
	if got := h.table.List([]TxnState{TxnEmpty}, []int64{1000}); len(got) != 0 {
		t.Fatalf("Empty and producer 1000: %+v", got)
	}
	m, _ := h.table.Describe("x")
	m.Partitions[0].Topic = "changed"
	if m2, _ := h.table.Describe("x"); m2.Partitions[0] != txnPA {
		t.Fatal("Describe returned the table's slice")
	}
	if _, ok := h.table.Describe("nope"); ok {
		t.Fatal("described an unknown id")
	}
}
