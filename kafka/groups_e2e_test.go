package kafka

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/chronik-stream/chronik/broker"
)

// killableDialer lets a test cut a client off the network, as if its
// process died: existing connections are closed and new dials fail, so it
// neither heartbeats nor leaves its group.
type killableDialer struct {
	mu     sync.Mutex
	killed bool
	conns  []net.Conn
}

func (d *killableDialer) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.killed {
		return nil, errors.New("killed")
	}
	c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
	if err == nil {
		d.conns = append(d.conns, c)
	}
	return c, err
}

func (d *killableDialer) kill() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.killed = true
	for _, c := range d.conns {
		c.Close()
	}
	d.conns = nil
}

func (d *killableDialer) revive() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.killed = false
}

// groupRun tracks what the members of one consumer group processed.
type groupRun struct {
	t      *testing.T
	e      *testEnv
	topic  string
	group  string
	parts  int32
	opts   []kgo.Opt
	ctx    context.Context
	prod   *kgo.Client
	nextID int

	mu        sync.Mutex
	processed map[int32]map[int64]int // partition -> offset -> times
	acked     map[int32]int64         // highest offset whose commit was acknowledged
	produced  map[int32]int64         // high watermark of what was produced
	violation []string
	members   []*groupMember
}

type groupMember struct {
	name   string
	cl     *kgo.Client
	dialer *killableDialer
	stop   chan struct{}
	done   chan struct{}
}

// process counts records; reprocessing a record whose commit was already
// acknowledged means the group resumed below its committed offset.
func (g *groupRun) process(member string, recs []*kgo.Record) {
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, r := range recs {
		m := g.processed[r.Partition]
		if m == nil {
			m = map[int64]int{}
			g.processed[r.Partition] = m
		}
		m[r.Offset]++
		if m[r.Offset] > 1 && r.Offset < g.acked[r.Partition] {
			g.violation = append(g.violation, fmt.Sprintf("%s reprocessed %d-%d below the committed offset %d", member, r.Partition, r.Offset, g.acked[r.Partition]))
		}
	}
}

func (g *groupRun) ack(recs []*kgo.Record) {
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, r := range recs {
		g.acked[r.Partition] = max(g.acked[r.Partition], r.Offset+1)
	}
}

// start adds a member that polls, processes, commits what it processed
// and only then lets the group rebalance (at-least-once).
func (g *groupRun) start() *groupMember {
	g.nextID++
	m := &groupMember{name: fmt.Sprintf("member-%d", g.nextID), dialer: &killableDialer{}, stop: make(chan struct{}), done: make(chan struct{})}
	opts := append([]kgo.Opt{
		kgo.SeedBrokers(g.e.addr), kgo.ClientID(m.name), kgo.Dialer(m.dialer.dial),
		kgo.ConsumerGroup(g.group), kgo.ConsumeTopics(g.topic),
		kgo.SessionTimeout(6 * time.Second), kgo.HeartbeatInterval(300 * time.Millisecond),
		kgo.RebalanceTimeout(20 * time.Second), kgo.DisableAutoCommit(), kgo.BlockRebalanceOnPoll(),
		kgo.FetchMaxWait(200 * time.Millisecond), kgo.RetryTimeout(30 * time.Second),
	}, g.opts...)
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		g.t.Fatal(err)
	}
	m.cl = cl
	ctx, cancel := context.WithCancel(g.ctx)
	go func() {
		<-m.stop
		cancel()
	}()
	go func() {
		defer close(m.done)
		for ctx.Err() == nil {
			fs := cl.PollFetches(ctx)
			if ctx.Err() != nil {
				cl.AllowRebalance()
				return
			}
			recs := fs.Records()
			g.process(m.name, recs)
			if len(recs) > 0 && cl.CommitRecords(ctx, recs...) == nil {
				g.ack(recs)
			}
			cl.AllowRebalance()
		}
	}()
	g.mu.Lock()
	g.members = append(g.members, m)
	g.mu.Unlock()
	return m
}

// leave stops a member's processing and closes its client, which leaves
// the group.
func (g *groupRun) leave(m *groupMember) {
	close(m.stop)
	<-m.done
	m.cl.Close()
}

// kill cuts a member off without leaving: the group finds out when its
// session times out.
func (g *groupRun) kill(m *groupMember) {
	m.dialer.kill()
	close(m.stop)
	<-m.done
}

func (g *groupRun) produce(perPartition int) {
	var recs []*kgo.Record
	for p := range g.parts {
		for i := range perPartition {
			recs = append(recs, &kgo.Record{Topic: g.topic, Partition: p, Value: []byte(fmt.Sprintf("%d-%d", p, i))})
		}
	}
	if err := g.prod.ProduceSync(g.ctx, recs...).FirstErr(); err != nil {
		g.t.Fatalf("produce: %v", err)
	}
	g.mu.Lock()
	for _, r := range recs {
		g.produced[r.Partition] = max(g.produced[r.Partition], r.Offset+1)
	}
	g.mu.Unlock()
}

// waitProcessed waits until every produced record was processed.
func (g *groupRun) waitProcessed(what string) {
	g.t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		g.mu.Lock()
		missing := 0
		for p, hw := range g.produced {
			for o := range hw {
				if g.processed[p][o] == 0 {
					missing++
				}
			}
		}
		violations := append([]string(nil), g.violation...)
		g.mu.Unlock()
		if len(violations) > 0 {
			g.t.Fatalf("%s: %v", what, violations)
		}
		if missing == 0 {
			return
		}
		if time.Now().After(deadline) {
			g.t.Fatalf("%s: %d records never processed; logs:\n%s", what, missing, lastLines(g.e.logs.String(), 30))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// committedOffsets reads the group's committed offsets from the broker.
func (g *groupRun) committedOffsets() map[int32]int64 {
	g.t.Helper()
	offs, err := g.e.b.OffsetFetch(g.group, []broker.GroupFetchTopic{{Topic: g.topic, Partitions: allPartitions(g.parts)}}, true)
	if err != nil {
		g.t.Fatalf("offset fetch: %v", err)
	}
	out := map[int32]int64{}
	for _, o := range offs {
		out[o.Partition] = o.Offset
	}
	return out
}

func allPartitions(n int32) []int32 {
	ps := make([]int32, n)
	for i := range ps {
		ps[i] = int32(i)
	}
	return ps
}

// waitCommittedExact waits until the committed offset of every partition
// is its high watermark: everything processed was committed, exactly.
func (g *groupRun) waitCommittedExact() {
	g.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		committed := g.committedOffsets()
		g.mu.Lock()
		exact := true
		for p := range g.parts {
			_, hw, _ := g.e.b.PartitionOffsets(g.topic, p)
			if hw != g.produced[p] {
				g.t.Fatalf("partition %d: high watermark %d, produced %d", p, hw, g.produced[p])
			}
			exact = exact && committed[p] == hw
		}
		g.mu.Unlock()
		if exact {
			return
		}
		if time.Now().After(deadline) {
			g.t.Fatalf("committed offsets %v never reached the high watermarks %v", committed, g.produced)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (g *groupRun) assignedMembers() int {
	d, err := g.e.b.DescribeGroup(g.group)
	if err != nil {
		return 0
	}
	return len(d.Members)
}

// TestGroupConsumersEndToEnd runs a kgo consumer group over 12 partitions
// through membership changes and a broker restart, eager and cooperative:
// three members; one leaves (LeaveGroup on Close); one is cut off and
// expires after its 6s session timeout; the broker restarts on the same
// directory and port mid-stream; a new member joins after it. Every record
// is processed, nothing is reprocessed below an acknowledged commit, the
// committed offsets survive the restart unchanged and end exactly at the
// high watermarks.
func TestGroupConsumersEndToEnd(t *testing.T) {
	for _, tc := range []struct {
		name     string
		balancer kgo.GroupBalancer
	}{
		{"eager-range", kgo.RangeBalancer()},
		{"cooperative-sticky", kgo.CooperativeStickyBalancer()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := startEnv(t)
			const parts = 12
			e.createTopic("orders", parts, nil)
			g := &groupRun{
				t: t, e: e, topic: "orders", group: "g-" + tc.name, parts: parts, ctx: testContext(t),
				opts:      []kgo.Opt{kgo.Balancers(tc.balancer)},
				processed: map[int32]map[int64]int{}, acked: map[int32]int64{}, produced: map[int32]int64{},
			}
			g.prod = e.client(kgo.RecordPartitioner(kgo.ManualPartitioner()))
			t.Cleanup(func() {
				for _, m := range g.members {
					select {
					case <-m.stop:
					default:
						close(m.stop)
						<-m.done
					}
					m.dialer.revive()
					m.cl.Close()
				}
			})

			// Every change happens mid-stream: records are produced just
			// before it and consumed through it.
			a, b, _ := g.start(), g.start(), g.start()
			g.produce(20)
			g.waitProcessed("three members")

			g.produce(20)
			g.leave(a)
			g.produce(20)
			g.waitProcessed("after a member left")

			g.produce(20)
			g.kill(b)
			g.produce(20)
			g.waitProcessed("after a member was cut off")
			if n := g.assignedMembers(); n != 1 {
				t.Fatalf("%d members after the session timeout, want 1", n)
			}

			g.produce(20) // the survivor is consuming these as the broker stops
			var before map[int32]int64
			e.restartSamePort(func() { before = g.committedOffsets() })
			if after := g.committedOffsets(); fmt.Sprint(after) != fmt.Sprint(before) {
				t.Fatalf("committed offsets %v after the restart, %v before", after, before)
			}
			g.produce(20)
			g.start() // rebalances: partitions move to it at their committed offsets
			g.waitProcessed("after the broker restart")
			g.waitCommittedExact()
			// The same over the wire: OffsetFetch against ListOffsets.
			adm := e.admin()
			fetched, err := adm.FetchOffsets(g.ctx, g.group)
			if err != nil {
				t.Fatal(err)
			}
			ends, err := adm.ListEndOffsets(g.ctx, g.topic)
			if err != nil {
				t.Fatal(err)
			}
			for p := range int32(parts) {
				o, _ := fetched.Lookup(g.topic, p)
				end, _ := ends.Lookup(g.topic, p)
				if o.Err != nil || end.Err != nil || o.At != end.Offset {
					t.Fatalf("partition %d: committed %d (%v), end %d (%v)", p, o.At, o.Err, end.Offset, end.Err)
				}
			}

			g.mu.Lock()
			dups := 0
			for _, offs := range g.processed {
				for _, n := range offs {
					dups += n - 1
				}
			}
			g.mu.Unlock()
			t.Logf("%d records, %d processed again (at or above their committed offset)", parts*140, dups)
		})
	}
}

// restartSamePort is a clean restart on the same directory and port, with
// between called after the server stopped and before the broker closes.
func (e *testEnv) restartSamePort(between func()) {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := e.srv.Shutdown(ctx); err != nil {
		e.t.Fatalf("shutdown: %v", err)
	}
	if err := <-e.served; err != nil {
		e.t.Fatalf("serve: %v", err)
	}
	between()
	if err := e.b.Close(); err != nil {
		e.t.Fatalf("close broker: %v", err)
	}
	e.srv = nil
	e.listen = e.addr
	e.start()
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}
