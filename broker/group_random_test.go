package broker

import (
	"fmt"
	"math/rand/v2"
	"reflect"
	"testing"
	"time"
)

// groupCheckInvariants verifies the bookkeeping that the state machine
// keeps redundantly (counters, indexes) and the state/waiting relations
// the I/O loop relies on.
func groupCheckInvariants(t *testing.T, g *GroupStateMachine) {
	t.Helper()
	fail := func(format string, args ...any) {
		t.Helper()
		t.Fatalf("group %s in %v: %s", g.id, g.state, fmt.Sprintf(format, args...))
	}
	if g.state == GroupDead {
		return
	}
	if len(g.members) != len(g.byID) {
		fail("%d members, %d indexed", len(g.members), len(g.byID))
	}
	awaiting, statics := 0, 0
	supported := map[string]int{}
	for _, m := range g.members {
		if g.byID[m.memberID] != m {
			fail("member %s not indexed", m.memberID)
		}
		if m.joinWaiting {
			awaiting++
			if g.state != GroupPreparingRebalance {
				fail("member %s awaits join", m.memberID)
			}
		}
		if m.syncWaiting && g.state != GroupCompletingRebalance {
			fail("member %s awaits sync", m.memberID)
		}
		if !m.joinWaiting && !m.syncWaiting && m.sessionDeadline.IsZero() {
			fail("member %s has no session timer", m.memberID)
		}
		if m.instanceID != "" {
			statics++
			if g.static[m.instanceID] != m.memberID {
				fail("instance %s maps to %q, not %s", m.instanceID, g.static[m.instanceID], m.memberID)
			}
		}
		groupDistinctProtocols(m.protocols, func(n string) { supported[n]++ })
		if _, ok := g.pending[m.memberID]; ok {
			fail("member %s is also pending", m.memberID)
		}
	}
	if awaiting != g.numAwaitingJoin {
		fail("numAwaitingJoin %d, counted %d", g.numAwaitingJoin, awaiting)
	}
	if statics != len(g.static) {
		fail("%d static members, %d mapped", statics, len(g.static))
	}
	if !reflect.DeepEqual(supported, g.supported) && !(len(supported) == 0 && len(g.supported) == 0) {
		fail("supported protocols %v, counted %v", g.supported, supported)
	}
	if (g.leaderID == "") != (len(g.members) == 0) || (g.leaderID != "" && g.byID[g.leaderID] == nil) {
		fail("leader %q with %d members", g.leaderID, len(g.members))
	}
	for id := range g.pendingSync {
		if g.byID[id] == nil {
			fail("pending sync for non-member %s", id)
		}
	}
	switch g.state {
	case GroupEmpty:
		if len(g.members) != 0 || g.hasProtocol || !g.join.deadline.IsZero() {
			fail("members %d, protocol %v, join timer %v", len(g.members), g.hasProtocol, g.join.deadline)
		}
	case GroupPreparingRebalance:
		if g.join.deadline.IsZero() {
			fail("no rebalance timer")
		}
	case GroupCompletingRebalance, GroupStable:
		if len(g.members) == 0 || !g.hasProtocol || !g.join.deadline.IsZero() {
			fail("members %d, protocol %v, join timer %v", len(g.members), g.hasProtocol, g.join.deadline)
		}
	}
	if len(g.pendingSync) > 0 && g.state != GroupCompletingRebalance && g.state != GroupStable {
		fail("pending syncs outside a generation")
	}
}

// groupRandomClient is one simulated consumer.
type groupRandomClient struct {
	clientID   string
	instanceID string
	memberID   string
	generation int32
	protocols  []GroupProtocol
}

// TestGroupRandomized drives a group with random requests and clock jumps
// and checks, throughout, the invariants above, that every token is
// answered exactly once (the harness fails on a second answer, and Unload
// must answer whatever still waits), and that whenever the group is Stable
// or Empty, replaying the records written so far rebuilds it.
func TestGroupRandomized(t *testing.T) {
	seeds := 200
	if testing.Short() {
		seeds = 20
	}
	stableChecks := 0
	for seed := range seeds {
		t.Run(fmt.Sprint(seed), func(t *testing.T) { stableChecks += groupRandomRun(t, uint64(seed), 400) })
	}
	if stableChecks < seeds {
		t.Fatalf("only %d replay checks of a Stable group in %d runs: the random walk no longer forms groups", stableChecks, seeds)
	}
}

// groupRandomRun returns how many times it compared a Stable group with its
// replay, so that the caller can tell the run reached the interesting
// states.
func groupRandomRun(t *testing.T, seed uint64, steps int) (stableChecks int) {
	rng := rand.New(rand.NewPCG(seed, 7))
	cfg := groupTestConfig()
	cfg.Rand = rand.NewChaCha8([32]byte{byte(seed)})
	cfg.MaxSize = 5
	h := groupNewHarness(t, cfg)
	protoSets := [][]GroupProtocol{
		{{Name: "range", Metadata: groupConsumerMeta("t")}},
		{{Name: "cooperative-sticky", Metadata: groupConsumerMeta("t", "u")}, {Name: "range", Metadata: groupConsumerMeta("t", "u")}},
		{{Name: "roundrobin", Metadata: groupConsumerMeta("u")}, {Name: "range", Metadata: groupConsumerMeta("u")}},
	}
	var clients []*groupRandomClient
	for i := range 6 {
		c := &groupRandomClient{clientID: fmt.Sprintf("c%d", i), protocols: protoSets[i%len(protoSets)]}
		if i%3 == 0 {
			c.instanceID = fmt.Sprintf("i%d", i)
		}
		clients = append(clients, c)
	}
	tokenClient := map[uint64]*groupRandomClient{}
	learned := map[uint64]bool{}
	learn := func() {
		for tok, r := range h.answered {
			if learned[tok] || r.Join == nil {
				continue
			}
			learned[tok] = true
			c := tokenClient[tok]
			switch {
			case r.Join.ErrorCode == 0 || r.Join.ErrorCode == 79: // NONE, MEMBER_ID_REQUIRED
				c.memberID, c.generation = r.Join.MemberID, r.Join.GenerationID
			case r.Join.ErrorCode == 25: // UNKNOWN_MEMBER_ID: start over
				c.memberID = ""
			}
		}
	}
	for step := range steps {
		c := clients[rng.IntN(len(clients))]
		switch op := rng.IntN(100); {
		case op < 25:
			req := GroupJoinRequest{
				MemberID: c.memberID, InstanceID: c.instanceID, ClientID: c.clientID,
				SessionTimeoutMs: 10_000, RebalanceTimeoutMs: int32(5_000 + rng.IntN(20_000)),
				ProtocolType: "consumer", Protocols: c.protocols,
				RequireKnownMemberID: rng.IntN(4) != 0, SupportSkippingAssignment: rng.IntN(2) == 0,
			}
			if rng.IntN(10) == 0 {
				req.MemberID = "" // a restart
			}
			tokenClient[h.join(req)] = c
		case op < 45:
			req := GroupSyncRequest{MemberID: c.memberID, InstanceID: c.instanceID, GenerationID: c.generation}
			if g, ok := h.table.Group(groupTestGroup); ok && g.LeaderID() == c.memberID {
				for _, m := range g.members {
					req.Assignments = append(req.Assignments, GroupMemberAssignment{MemberID: m.memberID, Assignment: []byte(fmt.Sprint(step))})
				}
			}
			h.sync(req)
		case op < 65:
			h.heartbeat(c.memberID, c.instanceID, c.generation)
		case op < 72:
			h.leave(GroupLeaveMember{MemberID: c.memberID, InstanceID: c.instanceID})
		case op < 82:
			gen := c.generation
			if rng.IntN(5) == 0 {
				gen = -1
			}
			h.commit(GroupCommitRequest{MemberID: c.memberID, InstanceID: c.instanceID, GenerationID: gen,
				Offsets: []GroupOffsetCommit{{Topic: "t", Partition: int32(rng.IntN(3)), Offset: int64(step), LeaderEpoch: -1}}})
		case op < 84:
			_, out := h.table.Delete(h.now, groupTestGroup)
			h.collect(out)
		case op < 86:
			h.collect(h.table.ExpireOffsets(h.now))
		default:
			h.advance(time.Duration(rng.IntN(12_000)) * time.Millisecond)
		}
		learn()
		g, ok := h.table.Group(groupTestGroup)
		if !ok {
			continue
		}
		groupCheckInvariants(t, g)
		if s := g.State(); (s == GroupStable || s == GroupEmpty) && rng.IntN(4) == 0 {
			groupCheckReplay(t, h)
			if s == GroupStable {
				stableChecks++
			}
		}
	}
	h.collect(h.table.Unload())
	for tok := uint64(1); tok <= h.nextToken; tok++ {
		if h.waiting(tok) {
			t.Fatalf("token %d never answered", tok)
		}
	}
	return stableChecks
}
