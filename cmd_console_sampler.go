package main

import (
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// consoleSampler keeps the console's small histories in bounded rings:
// the Kafka listener's bytes in and out (every throughputEvery, from the
// same counters /metrics exports) and each consumer group's total lag
// (every lagEvery, at most consoleLagGroups groups). It runs only while
// the admin listener does (start, stop).
type consoleSampler struct {
	c            *console
	throughEvery time.Duration
	lagEvery     time.Duration

	mu      sync.Mutex
	through ring[throughSample]
	lag     map[string]*ring[int64]

	stop chan struct{}
	done chan struct{}
}

const (
	consoleThroughSamples = 60  // two minutes at 2 s
	consoleLagSamples     = 60  // ten minutes at 10 s
	consoleLagGroups      = 500 // groups with a lag history
)

type throughSample struct {
	at      time.Time
	in, out float64
}

// ring is a fixed-size ring of the last n values.
type ring[T any] struct {
	vals []T
	next int
	full bool
}

func newRing[T any](n int) ring[T] { return ring[T]{vals: make([]T, n)} }

func (r *ring[T]) add(v T) {
	r.vals[r.next] = v
	r.next = (r.next + 1) % len(r.vals)
	r.full = r.full || r.next == 0
}

// all returns the values oldest first.
func (r *ring[T]) all() []T {
	if !r.full {
		return append([]T{}, r.vals[:r.next]...)
	}
	return append(append([]T{}, r.vals[r.next:]...), r.vals[:r.next]...)
}

func newConsoleSampler(c *console) *consoleSampler {
	return &consoleSampler{c: c, throughEvery: 2 * time.Second, lagEvery: 10 * time.Second,
		through: newRing[throughSample](consoleThroughSamples), lag: map[string]*ring[int64]{}}
}

// start samples until stop is called.
func (s *consoleSampler) start() {
	s.stop, s.done = make(chan struct{}), make(chan struct{})
	go func() {
		defer close(s.done)
		through := time.NewTicker(s.throughEvery)
		lag := time.NewTicker(s.lagEvery)
		defer through.Stop()
		defer lag.Stop()
		s.sampleThroughput()
		s.sampleLag()
		for {
			select {
			case <-s.stop:
				return
			case <-through.C:
				s.sampleThroughput()
			case <-lag.C:
				s.sampleLag()
			}
		}
	}()
}

func (s *consoleSampler) close() {
	if s.stop != nil {
		close(s.stop)
		<-s.done
	}
}

func counterValue(c prometheus.Counter) float64 {
	var m dto.Metric
	if c == nil || c.Write(&m) != nil || m.Counter == nil {
		return 0
	}
	return m.Counter.GetValue()
}

func (s *consoleSampler) sampleThroughput() {
	m := s.c.a.metrics
	smp := throughSample{at: time.Now(), in: counterValue(m.BytesIn), out: counterValue(m.BytesOut)}
	s.mu.Lock()
	s.through.add(smp)
	s.mu.Unlock()
}

// sampleLag records every group's total lag; groups gone are forgotten.
func (s *consoleSampler) sampleLag() {
	br := s.c.b()
	if br == nil {
		return
	}
	groups, err := br.ListGroups(nil, nil)
	if err != nil {
		return
	}
	lags := map[string]int64{}
	for _, g := range groups {
		if len(lags) >= consoleLagGroups {
			break
		}
		if l, err := groupLag(br, g.GroupID); err == nil {
			lags[g.GroupID] = l
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for g := range s.lag {
		if _, ok := lags[g]; !ok {
			delete(s.lag, g)
		}
	}
	for g, l := range lags {
		r := s.lag[g]
		if r == nil {
			nr := newRing[int64](consoleLagSamples)
			r = &nr
			s.lag[g] = r
		}
		r.add(l)
	}
}

func (s *consoleSampler) lagOf(group string) []int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	if r := s.lag[group]; r != nil {
		return r.all()
	}
	return []int64{}
}

// throughput is the rates between consecutive samples, bytes per second,
// oldest first, and the latest.
func (s *consoleSampler) throughput() map[string]any {
	s.mu.Lock()
	smp := s.through.all()
	s.mu.Unlock()
	in, out := []float64{}, []float64{}
	for i := 1; i < len(smp); i++ {
		d := smp[i].at.Sub(smp[i-1].at).Seconds()
		if d <= 0 {
			continue
		}
		in = append(in, max(smp[i].in-smp[i-1].in, 0)/d)
		out = append(out, max(smp[i].out-smp[i-1].out, 0)/d)
	}
	res := map[string]any{"in_bytes_per_sec": 0.0, "out_bytes_per_sec": 0.0, "in_series": in, "out_series": out,
		"interval_seconds": s.throughEvery.Seconds()}
	if len(in) > 0 {
		res["in_bytes_per_sec"], res["out_bytes_per_sec"] = in[len(in)-1], out[len(out)-1]
	}
	return res
}
