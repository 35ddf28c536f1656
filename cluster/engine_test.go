package cluster

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"

	"github.com/chronik-stream/chronik/wal"
)

// ---------------------------------------------------------------------------
// In-memory transport: one goroutine per (from, to) link delivering batches
// through Engine.Step, with per-link drop rules.

type engNet struct {
	mu      sync.Mutex
	engines map[uint64]*Engine
	links   map[[2]uint64]chan []GroupMessage
	drop    map[[2]uint64]bool
	closed  bool
	wg      sync.WaitGroup

	sent    atomic.Int64 // messages accepted by Send (not dropped)
	dropped atomic.Int64
}

func newEngNet() *engNet {
	return &engNet{
		engines: make(map[uint64]*Engine),
		links:   make(map[[2]uint64]chan []GroupMessage),
		drop:    make(map[[2]uint64]bool),
	}
}

type engTransport struct {
	n    *engNet
	from uint64
}

func (t *engTransport) Send(to uint64, msgs []GroupMessage) {
	n := t.n
	// Copy like a wire would: raft may reuse the storage arrays the
	// entries live in once Send returns.
	cp := make([]GroupMessage, len(msgs))
	for i := range msgs {
		cp[i] = msgs[i]
		if len(msgs[i].Msg.Entries) > 0 {
			cp[i].Msg.Entries = slices.Clone(msgs[i].Msg.Entries)
		}
		if msgs[i].Msg.Snapshot != nil {
			s := *msgs[i].Msg.Snapshot
			cp[i].Msg.Snapshot = &s
		}
	}
	key := [2]uint64{t.from, to}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed || n.drop[key] || n.engines[to] == nil {
		n.dropped.Add(int64(len(msgs)))
		return
	}
	ch := n.links[key]
	if ch == nil {
		ch = make(chan []GroupMessage, 1024)
		n.links[key] = ch
		n.wg.Add(1)
		go n.deliver(t.from, to, ch)
	}
	select {
	case ch <- cp:
		n.sent.Add(int64(len(msgs)))
	default:
		n.dropped.Add(int64(len(msgs)))
	}
}

func (n *engNet) deliver(from, to uint64, ch chan []GroupMessage) {
	defer n.wg.Done()
	for b := range ch {
		n.mu.Lock()
		e := n.engines[to]
		drop := n.drop[[2]uint64{from, to}]
		n.mu.Unlock()
		if drop || e == nil {
			n.dropped.Add(int64(len(b)))
			continue
		}
		e.Step(from, b)
	}
}

// isolate drops all traffic between id and every other node.
func (n *engNet) isolate(id uint64, ids []uint64) {
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, o := range ids {
		if o != id {
			n.drop[[2]uint64{id, o}] = true
			n.drop[[2]uint64{o, id}] = true
		}
	}
}

func (n *engNet) heal() {
	n.mu.Lock()
	clear(n.drop)
	n.mu.Unlock()
}

func (n *engNet) close() {
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		return
	}
	n.closed = true
	for _, ch := range n.links {
		close(ch)
	}
	n.mu.Unlock()
	n.wg.Wait()
}

// ---------------------------------------------------------------------------
// Storage on raft.MemoryStorage, and a recording state machine.

type engMemStorage struct {
	*raft.MemoryStorage
	mu          sync.Mutex
	cs          raftpb.ConfState
	appends     atomic.Int64
	appendDelay atomic.Int64 // nanoseconds
}

func newEngMemStorage() *engMemStorage { return &engMemStorage{MemoryStorage: raft.NewMemoryStorage()} }

func (s *engMemStorage) InitialState() (raftpb.HardState, raftpb.ConfState, error) {
	hs, _, err := s.MemoryStorage.InitialState()
	s.mu.Lock()
	defer s.mu.Unlock()
	return hs, s.cs, err
}

func (s *engMemStorage) Append(ents []raftpb.Entry) error {
	s.appends.Add(1)
	if d := s.appendDelay.Load(); d > 0 {
		time.Sleep(time.Duration(d)) // an fsync
	}
	return s.MemoryStorage.Append(ents)
}

func (s *engMemStorage) SetConfState(cs raftpb.ConfState) error {
	s.mu.Lock()
	s.cs = cs
	s.mu.Unlock()
	return nil
}

func (s *engMemStorage) ApplySnapshot(snap raftpb.Snapshot) error {
	if err := s.MemoryStorage.ApplySnapshot(snap); err != nil {
		return err
	}
	return s.SetConfState(snap.Metadata.ConfState)
}

type engApplied struct {
	index, term uint64
	data        string
}

type engSM struct {
	mu          sync.Mutex
	entries     []engApplied // normal entries with data
	lastApplied uint64
	gaps        int // Apply calls that did not continue at lastApplied+1
	leader      uint64
	term        uint64
	changes     int
}

func (m *engSM) Apply(ents []raftpb.Entry) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, e := range ents {
		if m.lastApplied != 0 && e.Index != m.lastApplied+1 {
			m.gaps++
		}
		m.lastApplied = e.Index
		if e.Type == raftpb.EntryNormal && len(e.Data) > 0 {
			m.entries = append(m.entries, engApplied{e.Index, e.Term, string(e.Data)})
		}
	}
	return nil
}

func (m *engSM) LeaderChanged(leader, term uint64) {
	m.mu.Lock()
	m.leader, m.term = leader, term
	m.changes++
	m.mu.Unlock()
}

func (m *engSM) SnapshotData() ([]byte, error)      { return nil, nil }
func (m *engSM) Restore(snap raftpb.Snapshot) error { return nil }

func (m *engSM) snapshot() (ents []engApplied, last uint64, gaps int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.entries), m.lastApplied, m.gaps
}

// ---------------------------------------------------------------------------
// A cluster of engines on one engNet.

type engNode struct {
	id     uint64
	e      *Engine
	stores map[GroupID]GroupStorage
	mems   map[GroupID]*engMemStorage
	sms    map[GroupID]*engSM
}

type engCluster struct {
	t     testing.TB
	net   *engNet
	ids   []uint64
	nodes map[uint64]*engNode
	once  sync.Once
	// enc turns a test payload into raft entry Data (identity for
	// MemoryStorage; a KindMeta record for the wal-backed Storage).
	enc func(string) []byte
	// closers run after the engines stopped (wal logs).
	closers []func()
}

func newEngCluster(t testing.TB, n int, mod func(*EngineConfig)) *engCluster {
	c := &engCluster{t: t, net: newEngNet(), nodes: make(map[uint64]*engNode),
		enc: func(s string) []byte { return []byte(s) }}
	for i := 1; i <= n; i++ {
		id := uint64(i)
		cfg := EngineConfig{
			NodeID:        id,
			Transport:     &engTransport{n: c.net, from: id},
			TickInterval:  10 * time.Millisecond,
			ElectionTicks: 10,
			HeartbeatTick: 1,
			Workers:       2,
			Logger:        zerolog.Nop(),
		}
		if mod != nil {
			mod(&cfg)
		}
		e := NewEngine(cfg)
		c.ids = append(c.ids, id)
		c.nodes[id] = &engNode{id: id, e: e, stores: map[GroupID]GroupStorage{},
			mems: map[GroupID]*engMemStorage{}, sms: map[GroupID]*engSM{}}
		c.net.mu.Lock()
		c.net.engines[id] = e
		c.net.mu.Unlock()
	}
	for _, id := range c.ids {
		c.nodes[id].e.Start()
	}
	t.Cleanup(c.stop)
	return c
}

func (c *engCluster) stop() {
	c.once.Do(func() {
		for _, id := range c.ids {
			c.nodes[id].e.Stop()
		}
		c.net.close()
		for _, f := range c.closers {
			f()
		}
	})
}

// addGroup adds group gid on `on` (all nodes if nil) with the given voters
// (all nodes if nil) on MemoryStorage.
func (c *engCluster) addGroup(gid GroupID, voters, on []uint64) {
	c.t.Helper()
	if voters == nil {
		voters = c.ids
	}
	if on == nil {
		on = c.ids
	}
	for _, id := range on {
		st := newEngMemStorage()
		c.nodes[id].mems[gid] = st
		c.addGroupOn(id, gid, st, voters)
	}
}

func (c *engCluster) addGroupOn(id uint64, gid GroupID, st GroupStorage, join []uint64) {
	c.t.Helper()
	n := c.nodes[id]
	sm := &engSM{}
	n.stores[gid] = st
	n.sms[gid] = sm
	if _, err := n.e.AddGroup(gid, st, sm, join); err != nil {
		c.t.Fatalf("node %d AddGroup(%d): %v", id, gid, err)
	}
}

// members returns the nodes hosting gid.
func (c *engCluster) members(gid GroupID) []uint64 {
	var out []uint64
	for _, id := range c.ids {
		if c.nodes[id].e.Group(gid) != nil {
			out = append(out, id)
		}
	}
	return out
}

// leaderOf returns the node leading gid with every node in `among` agreeing
// (same leader, same term), or 0.
func (c *engCluster) leaderOf(gid GroupID, among []uint64) uint64 {
	var lead, term uint64
	for _, id := range among {
		g := c.nodes[id].e.Group(gid)
		if g == nil {
			return 0
		}
		s := g.Status()
		if s.Leader == 0 {
			return 0
		}
		if lead == 0 {
			lead, term = s.Leader, s.Term
		} else if s.Leader != lead || s.Term != term {
			return 0
		}
	}
	if lead == 0 || !slices.Contains(among, lead) || !c.nodes[lead].e.Group(gid).Status().IsLeader {
		return 0
	}
	return lead
}

func (c *engCluster) waitLeader(gid GroupID, among []uint64) uint64 {
	c.t.Helper()
	if among == nil {
		among = c.members(gid)
	}
	var lead uint64
	waitFor(c.t, 20*time.Second, fmt.Sprintf("a leader of group %d among %v", gid, among), func() bool {
		lead = c.leaderOf(gid, among)
		return lead != 0
	})
	return lead
}

// propose proposes on the current leader, retrying on ErrNotLeader.
func (c *engCluster) propose(gid GroupID, data string) (uint64, error) {
	var err error
	for range 200 {
		lead := c.leaderOf(gid, c.members(gid))
		if lead == 0 {
			time.Sleep(10 * time.Millisecond)
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		var idx uint64
		idx, err = c.nodes[lead].e.Group(gid).Propose(ctx, c.enc(data))
		cancel()
		if err == nil {
			return idx, nil
		}
		if !errors.Is(err, ErrNotLeader) && !errors.Is(err, ErrProposalFailed) {
			return 0, err
		}
		time.Sleep(5 * time.Millisecond)
	}
	return 0, fmt.Errorf("no success after retries: %w", err)
}

// waitConverged waits until every member of gid applied the same entries up
// to the same index, and returns them.
func (c *engCluster) waitConverged(gid GroupID) []engApplied {
	c.t.Helper()
	var ref []engApplied
	members := c.members(gid)
	waitFor(c.t, 20*time.Second, fmt.Sprintf("group %d to converge on %v", gid, members), func() bool {
		var refLast uint64
		for i, id := range members {
			ents, last, _ := c.nodes[id].sms[gid].snapshot()
			st := c.nodes[id].e.Group(gid).Status()
			if st.Commit != last || st.LastIndex != last {
				return false
			}
			if i == 0 {
				ref, refLast = ents, last
				continue
			}
			if last != refLast || !slices.Equal(ents, ref) {
				return false
			}
		}
		return true
	})
	for _, id := range members {
		if _, _, gaps := c.nodes[id].sms[gid].snapshot(); gaps != 0 {
			c.t.Fatalf("node %d group %d: %d gaps in applied indexes", id, gid, gaps)
		}
	}
	return ref
}

func (c *engCluster) allQuiesced(gids []GroupID) bool {
	for _, id := range c.ids {
		for _, gid := range gids {
			g := c.nodes[id].e.Group(gid)
			if g != nil && !g.Status().Quiesced {
				return false
			}
		}
	}
	return true
}

// ---------------------------------------------------------------------------
// Tests

// 3 engines x 4 groups: leaders are elected, concurrent proposals commit,
// each Propose returns the index its entry was applied at, and every node
// applies the same entries in the same order.
func TestEngineReplicate(t *testing.T) {
	c := newEngCluster(t, 3, nil)
	engReplicate(t, c, func(gid GroupID) { c.addGroup(gid, nil, nil) })
}

func engReplicate(t *testing.T, c *engCluster, add func(GroupID)) {
	const groups, perGroup, writers = 4, 40, 4
	for gid := GroupID(1); gid <= groups; gid++ {
		add(gid)
	}
	for gid := GroupID(1); gid <= groups; gid++ {
		c.waitLeader(gid, nil)
	}
	type res struct {
		gid  GroupID
		idx  uint64
		data string
	}
	var mu sync.Mutex
	var results []res
	var wg sync.WaitGroup
	errs := make(chan error, groups*writers)
	for gid := GroupID(1); gid <= groups; gid++ {
		for w := range writers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range perGroup / writers {
					data := fmt.Sprintf("g%d-w%d-%d", gid, w, i)
					idx, err := c.propose(gid, data)
					if err != nil {
						errs <- fmt.Errorf("group %d propose %s: %w", gid, data, err)
						return
					}
					mu.Lock()
					results = append(results, res{gid, idx, data})
					mu.Unlock()
				}
			}()
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	for gid := GroupID(1); gid <= groups; gid++ {
		ents := c.waitConverged(gid)
		at := make(map[uint64]string, len(ents))
		for _, e := range ents {
			at[e.index] = e.data
		}
		n := 0
		for _, r := range results {
			if r.gid != gid {
				continue
			}
			n++
			if at[r.idx] != string(c.enc(r.data)) {
				t.Fatalf("group %d: Propose(%q) returned index %d, which holds %q", gid, r.data, r.idx, at[r.idx])
			}
		}
		if n != perGroup {
			t.Fatalf("group %d: %d successful proposals, want %d", gid, n, perGroup)
		}
	}
}

func TestEngineProposeOnFollower(t *testing.T) {
	c := newEngCluster(t, 3, nil)
	c.addGroup(1, nil, nil)
	lead := c.waitLeader(1, nil)
	for _, id := range c.ids {
		if id == lead {
			continue
		}
		_, err := c.nodes[id].e.Group(1).Propose(context.Background(), []byte("x"))
		if !errors.Is(err, ErrNotLeader) {
			t.Fatalf("Propose on follower %d: %v, want ErrNotLeader", id, err)
		}
	}
	// A cancelled context is reported as such.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := c.nodes[lead].e.Group(1).Propose(ctx, []byte("x")); !errors.Is(err, context.Canceled) {
		t.Fatalf("Propose with cancelled ctx: %v", err)
	}
}

// The leader is cut off: its pending proposal fails (does not hang), the
// majority elects a new leader and commits, and after healing every log
// converges (the old leader's uncommitted entry is overwritten).
func TestEngineLeaderIsolation(t *testing.T) {
	c := newEngCluster(t, 3, nil)
	c.addGroup(1, nil, nil)
	old := c.waitLeader(1, nil)
	if _, err := c.propose(1, "before"); err != nil {
		t.Fatal(err)
	}
	c.net.isolate(old, c.ids)

	oldErr := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_, err := c.nodes[old].e.Group(1).Propose(ctx, []byte("lost"))
		oldErr <- err
	}()

	var rest []uint64
	for _, id := range c.ids {
		if id != old {
			rest = append(rest, id)
		}
	}
	lead := c.waitLeader(1, rest)
	for i := range 5 {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		_, err := c.nodes[lead].e.Group(1).Propose(ctx, fmt.Appendf(nil, "after-%d", i))
		cancel()
		if err != nil {
			t.Fatalf("propose on new leader %d: %v", lead, err)
		}
	}
	select {
	case err := <-oldErr:
		if !errors.Is(err, ErrNotLeader) {
			t.Fatalf("old leader's proposal: %v, want ErrNotLeader", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("old leader's proposal hangs")
	}

	c.net.heal()
	ents := c.waitConverged(1)
	var got []string
	for _, e := range ents {
		got = append(got, e.data)
	}
	want := []string{"before", "after-0", "after-1", "after-2", "after-3", "after-4"}
	if !slices.Equal(got, want) {
		t.Fatalf("converged log %q, want %q", got, want)
	}
}

// 1,000 groups on 3 engines go quiescent: no messages at all over many tick
// intervals, whatever the group count; a proposal wakes a group, which
// commits and quiesces again.
func TestEngineQuiesce1000(t *testing.T) {
	const groups = 1000
	c := newEngCluster(t, 3, func(cfg *EngineConfig) {
		cfg.TickInterval = 50 * time.Millisecond
		cfg.ElectionTicks = 20
	})
	gids := make([]GroupID, groups)
	added := time.Now()
	for i := range gids {
		gids[i] = GroupID(i + 1)
		c.addGroup(gids[i], nil, nil)
		c.nodes[1].e.Group(gids[i]).Campaign()
	}
	t.Logf("groups added in %v", time.Since(added))
	start := time.Now()
	waitFor(t, 60*time.Second, "all groups quiesced", func() bool { return c.allQuiesced(gids) })
	t.Logf("%d groups x 3 nodes quiesced after %v", groups, time.Since(start))
	for _, id := range c.ids {
		if st := c.nodes[id].e.Stats(); st.ActiveGroups != 0 {
			t.Fatalf("node %d: %d active groups after quiescence", id, st.ActiveGroups)
		}
	}

	before := c.net.sent.Load()
	time.Sleep(20 * 50 * time.Millisecond) // 20 ticks
	if n := c.net.sent.Load() - before; n != 0 {
		t.Fatalf("%d messages sent while %d groups were quiesced, want 0", n, groups)
	}

	wake := gids[:10]
	start = time.Now()
	defer func() { t.Logf("wake phase %v", time.Since(start)) }()
	for _, gid := range wake {
		if _, err := c.propose(gid, "wake"); err != nil {
			t.Fatalf("group %d: %v", gid, err)
		}
	}
	for _, gid := range wake {
		ents := c.waitConverged(gid)
		if len(ents) != 1 || ents[0].data != "wake" {
			t.Fatalf("group %d applied %v", gid, ents)
		}
	}
	start = time.Now()
	waitFor(t, 60*time.Second, "woken groups quiesced again", func() bool { return c.allQuiesced(gids) })
	t.Logf("woken groups quiesced again after %v", time.Since(start))
}

// A quiesced group's leader dies: PeerDown on the survivors wakes the
// followers, which elect a new leader that commits.
func TestEnginePeerDownWakesQuiescedGroup(t *testing.T) {
	c := newEngCluster(t, 3, nil)
	c.addGroup(1, nil, nil)
	c.addGroup(2, nil, nil)
	old := c.waitLeader(1, nil)
	if _, err := c.propose(1, "x"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 20*time.Second, "groups quiesced", func() bool { return c.allQuiesced([]GroupID{1, 2}) })

	c.net.isolate(old, c.ids)
	var rest []uint64
	for _, id := range c.ids {
		if id != old {
			rest = append(rest, id)
			c.nodes[id].e.PeerDown(old)
		}
	}
	lead := c.waitLeader(1, rest)
	if lead == old {
		t.Fatalf("leader still %d", old)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := c.nodes[lead].e.Group(1).Propose(ctx, []byte("y")); err != nil {
		t.Fatal(err)
	}
}

// Proposals from many goroutines at once are batched: far fewer
// Storage.Append calls on the leader than proposals.
func TestEngineBatchesProposals(t *testing.T) {
	c := newEngCluster(t, 3, nil)
	c.addGroup(1, nil, nil)
	for _, id := range c.ids {
		c.nodes[id].mems[1].appendDelay.Store(int64(2 * time.Millisecond))
	}
	lead := c.waitLeader(1, nil)
	g := c.nodes[lead].e.Group(1)
	st := c.nodes[lead].mems[1]
	const goroutines, each = 64, 10
	before := st.appends.Load()
	var wg sync.WaitGroup
	var ok atomic.Int64
	for w := range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
				_, err := g.Propose(ctx, fmt.Appendf(nil, "%d-%d", w, i))
				cancel()
				if err == nil {
					ok.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	appends := st.appends.Load() - before
	t.Logf("%d proposals committed with %d appends on the leader", ok.Load(), appends)
	if ok.Load() < goroutines*each/2 {
		t.Fatalf("only %d of %d proposals committed", ok.Load(), goroutines*each)
	}
	if appends >= ok.Load() {
		t.Fatalf("%d appends for %d proposals: not batched", appends, ok.Load())
	}
}

// Stop with proposals in flight fails them with ErrStopped, later calls get
// ErrStopped, and no goroutine is left behind.
func TestEngineStopFailsPending(t *testing.T) {
	base := runtime.NumGoroutine()
	c := newEngCluster(t, 3, func(cfg *EngineConfig) { cfg.ElectionTicks = 1000 })
	c.addGroup(1, nil, nil)
	c.nodes[1].e.Group(1).Campaign()
	lead := c.waitLeader(1, nil)
	g := c.nodes[lead].e.Group(1)
	last := g.Status().LastIndex
	c.net.isolate(lead, c.ids) // nothing can commit now

	const n = 8
	errs := make(chan error, n)
	for i := range n {
		go func() {
			_, err := g.Propose(context.Background(), fmt.Appendf(nil, "p%d", i))
			errs <- err
		}()
	}
	waitFor(t, 20*time.Second, "proposals in the leader's log", func() bool {
		return g.Status().LastIndex >= last+n
	})
	c.stop()
	for range n {
		select {
		case err := <-errs:
			if !errors.Is(err, ErrStopped) {
				t.Fatalf("pending proposal: %v, want ErrStopped", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("pending proposal hangs after Stop")
		}
	}
	if _, err := g.Propose(context.Background(), []byte("late")); !errors.Is(err, ErrStopped) {
		t.Fatalf("Propose after Stop: %v, want ErrStopped", err)
	}
	waitFor(t, 10*time.Second, fmt.Sprintf("goroutines back to %d", base), func() bool {
		return runtime.NumGoroutine() <= base
	})
}

// A group with one voter elects itself at once and commits.
func TestEngineSingleVoter(t *testing.T) {
	c := newEngCluster(t, 1, nil)
	c.addGroup(1, nil, nil)
	g := c.nodes[1].e.Group(1)
	waitFor(t, 10*time.Second, "single voter leads", func() bool { return g.Status().IsLeader })
	for i := range 20 {
		idx, err := g.Propose(context.Background(), fmt.Appendf(nil, "s%d", i))
		if err != nil {
			t.Fatal(err)
		}
		if s := g.Status(); s.Applied < idx {
			t.Fatalf("Propose returned %d before it was applied (%d)", idx, s.Applied)
		}
	}
	if ents := c.waitConverged(1); len(ents) != 20 {
		t.Fatalf("%d entries applied", len(ents))
	}
}

// A replica added by a conf change catches up from the log.
func TestEngineConfChangeAddsReplica(t *testing.T) {
	c := newEngCluster(t, 3, nil)
	c.addGroup(1, []uint64{1, 2}, []uint64{1, 2})
	lead := c.waitLeader(1, nil)
	for i := range 5 {
		if _, err := c.propose(1, fmt.Sprint("a", i)); err != nil {
			t.Fatal(err)
		}
	}
	st := newEngMemStorage()
	c.nodes[3].mems[1] = st
	c.addGroupOn(3, 1, st, nil)
	cc := raftpb.ConfChangeV2{Changes: []raftpb.ConfChangeSingle{{Type: raftpb.ConfChangeAddNode, NodeID: 3}}}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := c.nodes[lead].e.Group(1).ProposeConfChange(ctx, cc); err != nil {
		t.Fatal(err)
	}
	if v := c.nodes[lead].e.Group(1).Status().Voters; !slices.Equal(v, []uint64{1, 2, 3}) {
		t.Fatalf("voters %v", v)
	}
	if _, err := c.propose(1, "b"); err != nil {
		t.Fatal(err)
	}
	ents := c.waitConverged(1)
	if len(ents) != 6 {
		t.Fatalf("%d entries", len(ents))
	}
	if v := c.nodes[3].e.Group(1).Status().Voters; !slices.Equal(v, []uint64{1, 2, 3}) {
		t.Fatalf("new replica's voters %v", v)
	}
}

// TransferLeadership moves leadership; LeaderChanged reports it. (Campaign
// is exercised by the tests that start groups with it; it cannot depose a
// live leader: with PreVote and CheckQuorum the followers are in lease.)
func TestEngineTransferLeadership(t *testing.T) {
	c := newEngCluster(t, 3, nil)
	c.addGroup(1, nil, nil)
	lead := c.waitLeader(1, nil)
	for range 2 {
		to := lead%3 + 1
		c.nodes[lead].e.Group(1).TransferLeadership(to)
		waitFor(t, 20*time.Second, fmt.Sprintf("leadership to move to %d", to), func() bool {
			return c.leaderOf(1, c.ids) == to
		})
		lead = to
	}
	if _, err := c.propose(1, "z"); err != nil {
		t.Fatal(err)
	}
	c.waitConverged(1)
	st := c.nodes[lead].e.Group(1).Status()
	for _, id := range c.ids {
		sm := c.nodes[id].sms[1]
		sm.mu.Lock()
		l, term := sm.leader, sm.term
		sm.mu.Unlock()
		if l != lead || term != st.Term {
			t.Fatalf("node %d: LeaderChanged last reported leader %d term %d, want %d term %d", id, l, term, lead, st.Term)
		}
	}
}

func TestEngineRemoveGroup(t *testing.T) {
	c := newEngCluster(t, 1, nil)
	c.addGroup(1, nil, nil)
	g := c.nodes[1].e.Group(1)
	waitFor(t, 10*time.Second, "leader", func() bool { return g.Status().IsLeader })
	if err := c.nodes[1].e.RemoveGroup(1); err != nil {
		t.Fatal(err)
	}
	if c.nodes[1].e.Group(1) != nil {
		t.Fatal("group still registered")
	}
	if _, err := g.Propose(context.Background(), []byte("x")); !errors.Is(err, ErrUnknownGroup) {
		t.Fatalf("Propose on removed group: %v", err)
	}
	if err := c.nodes[1].e.RemoveGroup(1); !errors.Is(err, ErrUnknownGroup) {
		t.Fatalf("second RemoveGroup: %v", err)
	}
}

// ---------------------------------------------------------------------------
// The same on the real wal-backed Storage.

func walEnc(s string) []byte { return EncodeData(wal.KindMeta, []byte(s)) }

// addWALGroup adds gid on every node of c with a Storage on a wal.Log in
// dirs[node]/gid; the logs are flushed and closed after the cluster stops.
func (c *engCluster) addWALGroup(gid GroupID, dirs map[uint64]string) {
	c.t.Helper()
	for _, id := range c.ids {
		log, err := wal.Open(filepath.Join(dirs[id], fmt.Sprint(gid)), wal.Options{})
		if err != nil {
			c.t.Fatal(err)
		}
		st, err := OpenStorage(log)
		if err != nil {
			c.t.Fatal(err)
		}
		c.closers = append(c.closers, func() {
			if err := st.Flush(); err != nil {
				c.t.Error(err)
			}
			if err := log.Close(); err != nil {
				c.t.Error(err)
			}
		})
		c.addGroupOn(id, gid, st, c.ids)
	}
}

func walDirs(t *testing.T, ids []uint64) map[uint64]string {
	dirs := make(map[uint64]string)
	for _, id := range ids {
		dirs[id] = t.TempDir()
	}
	return dirs
}

// TestEngineReplicate on Storage over wal.Log (fsync on every append).
func TestEngineReplicateWAL(t *testing.T) {
	dirs := walDirs(t, []uint64{1, 2, 3}) // before the cluster: removed after it stops
	c := newEngCluster(t, 3, nil)
	c.enc = walEnc
	engReplicate(t, c, func(gid GroupID) { c.addWALGroup(gid, dirs) })
}

// Three nodes on wal logs commit, stop, reopen the same logs and continue:
// the groups come back with their membership and log, elect a leader and
// commit more, and every node applies the same entries.
func TestEngineRestartWAL(t *testing.T) {
	ids := []uint64{1, 2, 3}
	dirs := walDirs(t, ids)
	const groups = 2
	var before [groups + 1][]engApplied
	run := func(round int) {
		c := newEngCluster(t, 3, nil)
		c.enc = walEnc
		for gid := GroupID(1); gid <= groups; gid++ {
			c.addWALGroup(gid, dirs)
		}
		for gid := GroupID(1); gid <= groups; gid++ {
			for i := range 10 {
				if _, err := c.propose(gid, fmt.Sprintf("r%d-%d", round, i)); err != nil {
					t.Fatalf("round %d group %d: %v", round, gid, err)
				}
			}
			ents := c.waitConverged(gid)
			var data []string
			for _, e := range ents {
				data = append(data, string(e.data[1:]))
			}
			if round == 1 {
				if n := len(ents); n != 10 {
					t.Fatalf("round 1 group %d: %d entries", gid, n)
				}
			} else {
				if !slices.Equal(ents[:len(before[gid])], before[gid]) {
					t.Fatalf("group %d: entries after restart differ from before", gid)
				}
				if n := len(ents) - len(before[gid]); n != 10 {
					t.Fatalf("group %d: %d new entries after restart, want 10 (%q)", gid, n, data)
				}
			}
			for _, id := range c.ids {
				if v := c.nodes[id].e.Group(gid).Status().Voters; !slices.Equal(v, ids) {
					t.Fatalf("node %d group %d voters %v", id, gid, v)
				}
			}
			before[gid] = ents
		}
		c.stop()
	}
	run(1)
	run(2)
}

// A local proposal (Kafka acks=1) returns once the leader's own log has the
// entry, even when no follower can acknowledge it; a quorum proposal made
// at the same time returns only after the followers are back. The election
// timeout is long so that the cut-off leader stays leader (CheckQuorum
// would otherwise depose it while the test looks).
func TestEngineLocalProposal(t *testing.T) {
	c := newEngCluster(t, 3, func(cfg *EngineConfig) { cfg.ElectionTicks = 6000 })
	c.addGroup(1, nil, nil)
	c.nodes[1].e.Group(1).Campaign()
	lead := c.waitLeader(1, nil)
	if _, err := c.propose(1, "before"); err != nil {
		t.Fatal(err)
	}
	g := c.nodes[lead].e.Group(1)
	c.net.isolate(lead, c.ids)

	quorum, err := g.submit(context.Background(), &proposal{data: []byte("quorum")})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	p, err := g.submit(ctx, &proposal{data: []byte("local"), local: true})
	if err != nil {
		t.Fatal(err)
	}
	idx, err := g.wait(ctx, p)
	if err != nil {
		t.Fatalf("local proposal on a cut-off leader: %v", err)
	}
	if last, _ := c.nodes[lead].mems[1].LastIndex(); last < idx {
		t.Fatalf("local proposal returned index %d, but the leader's log ends at %d", idx, last)
	}
	select {
	case <-quorum.done:
		t.Fatalf("quorum proposal finished without a quorum: index %d, err %v", quorum.index, quorum.err)
	default:
	}

	c.net.heal()
	qidx, err := g.wait(ctx, quorum)
	if err != nil {
		t.Fatalf("quorum proposal after the heal: %v", err)
	}
	if qidx >= idx {
		t.Fatalf("quorum proposal at %d, local one at %d: want the submit order", qidx, idx)
	}
	var got []string
	for _, e := range c.waitConverged(1) {
		got = append(got, e.data)
	}
	if want := []string{"before", "quorum", "local"}; !slices.Equal(got, want) {
		t.Fatalf("converged log %q, want %q", got, want)
	}
}

// acks=1 proposals beyond the leader's uncommitted-bytes bound wait for
// commits to make room, as quorum proposals do, instead of failing: with
// the followers cut off, the leader takes local proposals up to the bound
// and holds the rest; after the heal every one succeeds.
func TestEngineLocalProposalsHeldOverBound(t *testing.T) {
	defer func(old uint64) { maxUncommittedBytes = old }(maxUncommittedBytes)
	maxUncommittedBytes = 64 << 10
	c := newEngCluster(t, 3, func(cfg *EngineConfig) { cfg.ElectionTicks = 6000 })
	c.addGroup(1, nil, nil)
	c.nodes[1].e.Group(1).Campaign()
	lead := c.waitLeader(1, nil)
	g := c.nodes[lead].e.Group(1)
	c.net.isolate(lead, c.ids)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	const n = 24 // 24 x 8 KiB: three times the bound
	props := make([]*proposal, n)
	for i := range props {
		p, err := g.submit(ctx, &proposal{data: make([]byte, 8<<10), local: true})
		if err != nil {
			t.Fatal(err)
		}
		props[i] = p
	}
	waitFor(t, 20*time.Second, "local proposals up to the bound", func() bool {
		done := 0
		for _, p := range props {
			select {
			case <-p.done:
				done++
			default:
			}
		}
		return done >= 4
	})
	c.net.heal()
	for i, p := range props {
		if _, err := g.wait(ctx, p); err != nil {
			t.Fatalf("local proposal %d of %d: %v, want it held until commits made room", i, n, err)
		}
	}
}
