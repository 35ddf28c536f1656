package broker

import (
	"bytes"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
)

// txnRandomStats counts what the random walks reached, so that the test
// can tell they still reach the interesting transitions.
type txnRandomStats struct {
	commits, aborts, timeouts, fences, rotations, overflows, expirations, replays, verified int
}

// txnRandomClient is one producer instance using a transactional id; two
// share each id, so that they fence each other.
type txnRandomClient struct {
	id    string
	pid   int64
	epoch int16
	v2    bool // EndTxn v5+: the epoch is bumped every transaction
	has   bool // has a producer id and epoch
}

// forget drops the producer id and epoch after an error that tells a
// client to start over (mostly: it sometimes carries on with them).
func (c *txnRandomClient) forget(code int16) {
	if (code == kerr.ProducerFenced.Code || code == kerr.InvalidProducerIDMapping.Code) && c.epoch%4 != 0 {
		c.has = false
	}
}

// TestTxnRandomized drives a table with random requests from competing
// producers, clock jumps, marker deliveries and coordinator failovers
// (the table replaced by its replay), and checks throughout: what was
// written rebuilds the table; epochs never decrease for a producer id and
// a producer id belongs to one transactional id; Ongoing has a start time
// and Complete* no partitions; markers are emitted exactly for transitions
// into Prepare*, and a commit or abort is only ever prepared for the
// producer id and epoch that owns the transaction.
func TestTxnRandomized(t *testing.T) {
	seeds := 150
	if testing.Short() {
		seeds = 15
	}
	var stats txnRandomStats
	for seed := range seeds {
		t.Run(fmt.Sprint(seed), func(t *testing.T) { txnRandomRun(t, uint64(seed), 600, &stats) })
	}
	t.Logf("%+v", stats)
	for name, n := range map[string]int{"commits": stats.commits, "aborts": stats.aborts, "timeouts": stats.timeouts,
		"fences": stats.fences, "rotations": stats.rotations, "overflows": stats.overflows,
		"expirations": stats.expirations, "replays": stats.replays, "verified": stats.verified} {
		if n < seeds/5 {
			t.Errorf("only %d %s in %d runs: the random walk no longer reaches them", n, name, seeds)
		}
	}
	// The same inputs give the same outputs.
	a := txnRandomRun(t, 7, 300, &txnRandomStats{})
	b := txnRandomRun(t, 7, 300, &txnRandomStats{})
	if len(a) != len(b) {
		t.Fatalf("two runs of one seed wrote %d and %d records", len(a), len(b))
	}
	for i := range a {
		if !bytes.Equal(a[i].Key, b[i].Key) || !bytes.Equal(a[i].Value, b[i].Value) {
			t.Fatalf("two runs of one seed differ at record %d", i)
		}
	}
}

func txnRandomRun(t *testing.T, seed uint64, steps int, stats *txnRandomStats) []TxnRecord {
	rng := rand.New(rand.NewPCG(seed, 13))
	h := txnNewHarness(t)
	h.cfg.IDExpiration = 5 * time.Minute
	h.cfg.MaxTimeout = time.Minute
	h.table = NewTxnTable(h.cfg)
	var clients []*txnRandomClient
	for i := range 6 {
		id := fmt.Sprintf("t%d", i)
		clients = append(clients, &txnRandomClient{id: id}, &txnRandomClient{id: id})
	}
	// Two ids start near the end of their epochs, each with one producer on
	// the new protocol, to reach rotations by InitProducerId and by EndTxn.
	clients = append(clients, &txnRandomClient{id: "t6", v2: true}, &txnRandomClient{id: "t7", v2: true})
	for i, id := range []string{"t6", "t7"} {
		m := TxnMetadata{TransactionalID: id, ProducerID: int64(i + 1), PrevProducerID: int64(i + 1), NextProducerID: -1,
			ProducerEpoch: int16(32764 + i), LastProducerEpoch: -1, TimeoutMs: 10_000, State: TxnCompleteCommit,
			StartMs: txnT0.UnixMilli(), LastUpdateMs: txnT0.UnixMilli()}
		h.put(m)
		h.records = append(h.records, EncodeTxnRecord(&m))
	}
	parts := []TxnTopicPartition{{"a", 0}, {"a", 1}, {"b", 0}, {"b", 1}, {"c", 0}, {"__consumer_offsets", 3}}
	outstanding := map[string]TxnMarkers{}
	maxEpoch := map[int64]int16{}
	owner := map[int64]string{}
	pick := func() []TxnTopicPartition {
		var ps []TxnTopicPartition
		for range 1 + rng.IntN(3) {
			ps = append(ps, parts[rng.IntN(len(parts)-1)])
		}
		return ps
	}

	for range steps {
		c := clients[rng.IntN(len(clients))]
		before := map[string]TxnMetadata{}
		for _, m := range h.table.List(nil, nil) {
			before[m.TransactionalID] = m
		}
		h.step = TxnOutput{}
		call := txnRandomCall{id: c.id}
		op := rng.IntN(100)
		switch {
		case op < 4 || (!c.has && op < 50): // InitProducerId
			call.init = true
			expPID, expEpoch := int64(-1), int16(-1)
			if c.has && rng.IntN(2) == 0 {
				expPID, expEpoch = c.pid, c.epoch
			}
			timeout := int32(5_000 + rng.IntN(55_000))
			if rng.IntN(30) == 0 {
				timeout = 70_000 // above the maximum
			}
			pid, epoch, code := h.init(c.id, timeout, expPID, expEpoch)
			switch code {
			case 0:
				if epoch == txnmMaxEpoch {
					t.Fatalf("InitProducerId handed out epoch %d, which only fences", epoch)
				}
				c.pid, c.epoch, c.has = pid, epoch, true
				if c.id != "t6" && c.id != "t7" {
					c.v2 = rng.IntN(2) == 0
				}
				if m := h.meta(c.id); m.ProducerID != pid || m.ProducerEpoch != epoch || m.State != TxnEmpty {
					t.Fatalf("InitProducerId answered %d/%d, table has %+v", pid, epoch, m)
				}
			case kerr.ConcurrentTransactions.Code:
				if len(h.last.Markers) > 0 && h.last.Markers[len(h.last.Markers)-1].TransactionalID == c.id {
					stats.fences++
				}
			}
		case op < 40 && c.has: // AddPartitionsToTxn, or its verification
			ps, verify := pick(), rng.IntN(4) == 0
			call.pid, call.epoch = c.pid, c.epoch
			codes := h.add(c.id, c.pid, c.epoch, verify, ps...)
			c.forget(codes[0])
			m, _ := h.table.Describe(c.id)
			for i, code := range codes {
				if code == 0 && (m.State != TxnOngoing || !txnmContains(m.Partitions, ps[i])) {
					t.Fatalf("partition %v answered NONE (verify %v) but the transaction is %+v", ps[i], verify, m)
				}
				if code == 0 && verify {
					stats.verified++
				}
			}
		case op < 45 && c.has: // AddOffsetsToTxn
			call.pid, call.epoch = c.pid, c.epoch
			code, out := h.table.AddOffsets(h.now, c.id, c.pid, c.epoch, parts[len(parts)-1])
			h.collect(out)
			if m, _ := h.table.Describe(c.id); code == 0 && (m.State != TxnOngoing || !txnmContains(m.Partitions, parts[len(parts)-1])) {
				t.Fatalf("AddOffsets answered NONE but the transaction is %+v", m)
			}
		case op < 62 && c.has: // EndTxn
			call.pid, call.epoch = c.pid, c.epoch
			npid, nepoch, code := h.end(c.id, c.pid, c.epoch, rng.IntN(3) != 0, c.v2)
			if code == 0 && c.v2 {
				if npid != c.pid {
					stats.overflows++
				}
				c.pid, c.epoch = npid, nepoch
			}
			c.forget(code)
		case op < 77 && len(outstanding) > 0: // the markers of one transaction are written
			call = txnRandomCall{}
			ids := slices.Sorted(maps.Keys(outstanding))
			mk := outstanding[ids[rng.IntN(len(ids))]]
			if rng.IntN(10) == 0 {
				h.tick()
				h.written(mk.TransactionalID, mk.ProducerID, mk.ProducerEpoch-1) // stale: must change nothing
				txnNoWrite(t, h)
			}
			delete(outstanding, mk.TransactionalID)
			h.written(mk.TransactionalID, mk.ProducerID, mk.ProducerEpoch)
			if m, ok := h.table.Describe(mk.TransactionalID); !ok || (m.State != TxnCompleteCommit && m.State != TxnCompleteAbort) {
				t.Fatalf("markers %+v written, transaction now %+v", mk, m)
			} else if m.State == TxnCompleteCommit {
				stats.commits++
			} else {
				stats.aborts++
			}
		case op < 92:
			call = txnRandomCall{}
			d := time.Duration(rng.IntN(3_000)) * time.Millisecond
			switch rng.IntN(60) {
			case 0:
				d = 6 * time.Minute // ids expire
			case 1:
				d = 30 * time.Second // transactions time out
			}
			h.advance(d)
			if rng.IntN(2) == 0 {
				h.tick()
			} else {
				continue // the next call fires what is due
			}
		default: // a failover: the table is rebuilt from its records
			call = txnRandomCall{}
			replayed := h.replayed()
			txnCheckReplay(t, h.table, replayed)
			stats.replays++
			if rng.IntN(2) == 0 {
				h.table = replayed
				clear(outstanding)
				for _, mk := range replayed.PendingMarkers() {
					outstanding[mk.TransactionalID] = mk
				}
			}
			continue
		}
		txnRandomCheck(t, h, before, call, outstanding, maxEpoch, owner, stats)
	}
	txnCheckReplay(t, h.table, h.replayed())
	return h.records
}

// txnRandomCall is the request a step made: for id, as producer pid at
// epoch (0 and 0 for InitProducerId); id is "" for a step that is no
// client's request.
type txnRandomCall struct {
	id    string
	pid   int64
	epoch int16
	init  bool
}

// txnRandomCheck checks one call's output against the states before and
// after it.
func txnRandomCheck(t *testing.T, h *txnHarness, before map[string]TxnMetadata, call txnRandomCall,
	outstanding map[string]TxnMarkers, maxEpoch map[int64]int16, owner map[int64]string, stats *txnRandomStats) {
	t.Helper()
	markers := map[string]int{}
	for _, mk := range h.step.Markers {
		markers[mk.TransactionalID]++
		if _, dup := outstanding[mk.TransactionalID]; dup {
			t.Fatalf("new markers %+v while %+v are still outstanding", mk, outstanding[mk.TransactionalID])
		}
		outstanding[mk.TransactionalID] = mk
	}
	stats.expirations += txnTombstones(h.step.Records)
	prep := func(s TxnState) bool { return s == TxnPrepareCommit || s == TxnPrepareAbort }
	after := h.table.List(nil, nil)
	for _, m := range after {
		txnCheckMetadata(t, m)
		b, existed := before[m.TransactionalID]
		entered := prep(m.State) && (!existed || !prep(b.State))
		if want := map[bool]int{true: 1}[entered]; markers[m.TransactionalID] != want {
			t.Fatalf("%s went %v -> %v with %d markers", m.TransactionalID, b.State, m.State, markers[m.TransactionalID])
		}
		delete(markers, m.TransactionalID)
		// A request prepares an outcome only for the transaction's owner;
		// a server-side abort (InitProducerId's fence, a fired timeout)
		// fences whoever it was.
		fenced := entered && m.State == TxnPrepareAbort && b.State == TxnOngoing && m.LastProducerEpoch == min(b.ProducerEpoch, txnmMaxEpoch-1)+1
		if fenced && !(call.init && call.id == m.TransactionalID) {
			stats.timeouts++
		}
		if entered && !fenced && (call.id != m.TransactionalID || call.init || b.ProducerID != call.pid || b.ProducerEpoch != call.epoch) {
			t.Fatalf("%+v prepared %v of %+v", call, m.State, b)
		}
		if existed && m.ProducerID != b.ProducerID {
			stats.rotations++
		}
		if cur, ok := maxEpoch[m.ProducerID]; ok && m.ProducerEpoch < cur {
			t.Fatalf("producer %d of %s went back from epoch %d to %d", m.ProducerID, m.TransactionalID, cur, m.ProducerEpoch)
		}
		maxEpoch[m.ProducerID] = m.ProducerEpoch
		if o, ok := owner[m.ProducerID]; ok && o != m.TransactionalID {
			t.Fatalf("producer %d used by %s and %s", m.ProducerID, o, m.TransactionalID)
		}
		owner[m.ProducerID] = m.TransactionalID
	}
	if len(markers) > 0 {
		t.Fatalf("markers for ids not in Prepare*: %v", markers)
	}
	for id := range outstanding {
		if m, ok := h.table.Describe(id); !ok || !prep(m.State) {
			t.Fatalf("markers outstanding for %s in %+v", id, m)
		}
	}
}
