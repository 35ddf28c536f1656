package main

// The model test of the replicated-log seam: one randomized sequence of
// appends, reads, DeleteRecords, retention changes and restarts, run
// against a partition whose log is the standalone implementation, a raft
// group of one voter and a raft group of three voters (real chronik serve
// processes, franz-go over TCP). Every implementation must show the same
// log: the same offsets for every acknowledged record, the same records at
// those offsets, the same high watermark, and the same log start after
// DeleteRecords. Retention drops whole segments, and raft logs hold entries
// a standalone log does not (no-ops, conf changes), so after retention the
// log starts may differ; what stays visible must still be the model's.

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strconv"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// seamImpl is one implementation under test: a cluster of processes.
type seamImpl struct {
	name  string
	c     *testCluster
	peers bool
	cl    *kgo.Client
	lso   int64 // what this implementation's log start must be at least
}

func (s *seamImpl) startAll(t *testing.T) {
	t.Helper()
	extra := []string{"--segment-bytes", "65536", "--retention-check-interval", "300ms"}
	for id := 1; id <= len(s.c.procs); id++ {
		if s.peers {
			s.c.startWith(id, append([]string{"--peers", s.c.peers()}, extra...)...)
		} else {
			s.c.startWith(id, extra...)
		}
	}
	for id := 1; id <= len(s.c.procs); id++ {
		s.c.waitUp(id)
	}
}

func (s *seamImpl) client(t *testing.T) {
	if s.cl != nil {
		s.cl.Close()
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(s.c.kafka...), kgo.RecordPartitioner(kgo.ManualPartitioner()),
		kgo.RequiredAcks(kgo.AllISRAcks()), kgo.RetryTimeout(30*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	s.cl = cl
}

// offsets reads the partition's log start and high watermark.
func (s *seamImpl) offsets(t *testing.T) (lso, hw int64) {
	t.Helper()
	adm := kadm.NewClient(s.cl)
	for i := 0; ; i++ {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		starts, err1 := adm.ListStartOffsets(ctx, "seam")
		ends, err2 := adm.ListEndOffsets(ctx, "seam")
		cancel()
		st, _ := starts.Lookup("seam", 0)
		en, _ := ends.Lookup("seam", 0)
		if err1 == nil && err2 == nil && st.Err == nil && en.Err == nil {
			return st.Offset, en.Offset
		}
		if i == 100 {
			t.Fatalf("%s: offsets: %v %v %v %v", s.name, err1, err2, st.Err, en.Err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// read returns the values at offsets [from, to).
func (s *seamImpl) read(t *testing.T, from, to int64) []string {
	t.Helper()
	if from >= to {
		return nil
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(s.c.kafka...),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{"seam": {0: kgo.NewOffset().At(from)}}))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var out []string
	for int64(len(out)) < to-from {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("%s: read [%d, %d): %d records before the timeout", s.name, from, to, len(out))
		}
		fs.EachRecord(func(r *kgo.Record) {
			if r.Offset >= to {
				return
			}
			if want := from + int64(len(out)); r.Offset != want {
				t.Fatalf("%s: record at offset %d, expected %d", s.name, r.Offset, want)
			}
			out = append(out, string(r.Value))
		})
	}
	return out
}

func TestLogSeamModel(t *testing.T) {
	impls := []*seamImpl{
		{name: "standalone", c: newCluster(t, 1)},
		{name: "raft, 1 voter", c: newCluster(t, 1), peers: true},
		{name: "raft, 3 voters", c: newCluster(t, 3), peers: true},
	}
	for _, s := range impls {
		s.startAll(t)
		s.c.createTopic("seam", 1, int16(len(s.c.procs)))
		s.client(t)
	}
	defer func() {
		for _, s := range impls {
			s.cl.Close()
		}
	}()

	rng := rand.New(rand.NewPCG(12, 0))
	var model []string // model[offset] = value
	var lso int64      // set by DeleteRecords
	check := func(step int) {
		t.Helper()
		hw := int64(len(model))
		for _, s := range impls {
			slso, shw := s.offsets(t)
			if shw != hw || slso < max(lso, s.lso) || slso > hw {
				t.Fatalf("step %d, %s: log [%d, %d), model [%d, %d) (at least %d)", step, s.name, slso, shw, lso, hw, s.lso)
			}
			s.lso = slso
		}
	}
	const steps = 60
	for step := range steps {
		switch op := rng.IntN(100); {
		case op < 50: // produce a few records, possibly in several batches
			n := 1 + rng.IntN(20)
			var recs []string
			for i := range n {
				recs = append(recs, fmt.Sprintf("%d.%d.%s", step, i, make([]byte, rng.IntN(3000))))
			}
			first := int64(len(model))
			for _, s := range impls {
				var krs []*kgo.Record
				for _, v := range recs {
					krs = append(krs, &kgo.Record{Topic: "seam", Partition: 0, Value: []byte(v)})
				}
				ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
				err := s.cl.ProduceSync(ctx, krs...).FirstErr()
				cancel()
				if err != nil {
					t.Fatalf("step %d, %s: produce: %v", step, s.name, err)
				}
				for i, r := range krs {
					if r.Offset != first+int64(i) {
						t.Fatalf("step %d, %s: record %d at offset %d, model %d", step, s.name, i, r.Offset, first+int64(i))
					}
				}
			}
			model = append(model, recs...)
		case op < 70: // read from somewhere to the end
			for _, s := range impls {
				slso, hw := s.offsets(t)
				from := slso + rng.Int64N(hw-slso+1)
				got := s.read(t, from, hw)
				for i, v := range got {
					if v != model[from+int64(i)] {
						t.Fatalf("step %d, %s: offset %d holds %.20q, model %.20q", step, s.name, from+int64(i), v, model[from+int64(i)])
					}
				}
			}
		case op < 80: // DeleteRecords
			to := lso + rng.Int64N(int64(len(model))-lso+1)
			for _, s := range impls {
				var off kadm.Offsets
				off.Add(kadm.Offset{Topic: "seam", Partition: 0, At: to, LeaderEpoch: -1})
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				resp, err := kadm.NewClient(s.cl).DeleteRecords(ctx, off)
				cancel()
				if err == nil {
					err = resp.Error()
				}
				if err != nil {
					t.Fatalf("step %d, %s: delete records to %d: %v", step, s.name, to, err)
				}
				if r, _ := resp.Lookup("seam", 0); r.LowWatermark != max(to, s.lso) {
					t.Fatalf("step %d, %s: delete records to %d: log start %d", step, s.name, to, r.LowWatermark)
				}
			}
			lso = max(lso, to)
		case op < 90: // retention by size on, or off again
			bytes := "-1"
			if rng.IntN(2) == 0 {
				bytes = strconv.Itoa(100_000 + rng.IntN(200_000))
			}
			for _, s := range impls {
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				_, err := kadm.NewClient(s.cl).AlterTopicConfigs(ctx, []kadm.AlterConfig{{Name: "retention.bytes", Value: &bytes}}, "seam")
				cancel()
				if err != nil {
					t.Fatalf("step %d, %s: retention.bytes=%s: %v", step, s.name, bytes, err)
				}
			}
			time.Sleep(time.Second) // a few retention rounds
		default: // restart every node
			for _, s := range impls {
				for id := 1; id <= len(s.c.procs); id++ {
					s.c.stop(id)
				}
				s.startAll(t)
				s.client(t)
			}
		}
		check(step)
	}
	// Finally every implementation shows the model from its log start.
	for _, s := range impls {
		slso, hw := s.offsets(t)
		got := s.read(t, slso, hw)
		for i, v := range got {
			if v != model[slso+int64(i)] {
				t.Fatalf("%s: offset %d holds %.20q, model %.20q", s.name, slso+int64(i), v, model[slso+int64(i)])
			}
		}
		t.Logf("%s: log [%d, %d), %d records read back", s.name, slso, hw, len(got))
	}
}
