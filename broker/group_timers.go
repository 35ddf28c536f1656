package broker

import (
	"cmp"
	"slices"
	"time"
)

// Deadlines. Kafka keeps them in purgatories driven by a timer wheel; here
// they are plain fields, fired by advance(now) at the start and end of
// every call, in deadline order. Timers started while firing count from
// `now` (the time the state machine learns of the event), so a late Tick
// does not cascade into expiring sessions that could not have been
// renewed. advance makes one pass: a deadline re-armed at or before `now`
// (only possible with zero-length timeouts) waits for the next call, which
// keeps every call bounded.

type groupTimerKind int8

// Fire order among equal deadlines: member timers before group timers, so
// that a rebalance completing at the same instant sees the members'
// fates.
const (
	groupTimerPending groupTimerKind = iota
	groupTimerSession
	groupTimerSync
	groupTimerJoin
)

type groupTimer struct {
	at    time.Time
	kind  groupTimerKind
	order int    // member position, for ties
	id    string // member id for pending and session timers
}

func (g *GroupStateMachine) advance(now time.Time) {
	due := g.dueTimers(now)
	for _, t := range due {
		switch t.kind {
		case groupTimerPending:
			if at, ok := g.pending[t.id]; ok && !at.After(now) {
				g.onPendingTimer(now, t.id)
			}
		case groupTimerSession:
			if m := g.byID[t.id]; m != nil && !m.sessionDeadline.IsZero() && !m.sessionDeadline.After(now) {
				g.onSessionTimer(now, m)
			}
		case groupTimerSync:
			if !g.syncDeadline.IsZero() && !g.syncDeadline.After(now) {
				g.onSyncTimer(now)
			}
		case groupTimerJoin:
			if !g.join.deadline.IsZero() && !g.join.deadline.After(now) {
				g.onJoinTimer(now)
			}
		}
	}
}

// dueTimers lists the deadlines at or before now, in firing order.
func (g *GroupStateMachine) dueTimers(now time.Time) []groupTimer {
	if g.state == GroupDead {
		return nil
	}
	var due []groupTimer
	for id, at := range g.pending {
		if !at.After(now) {
			due = append(due, groupTimer{at: at, kind: groupTimerPending, id: id})
		}
	}
	for i, m := range g.members {
		if !m.sessionDeadline.IsZero() && !m.sessionDeadline.After(now) {
			due = append(due, groupTimer{at: m.sessionDeadline, kind: groupTimerSession, order: i, id: m.memberID})
		}
	}
	if !g.syncDeadline.IsZero() && !g.syncDeadline.After(now) {
		due = append(due, groupTimer{at: g.syncDeadline, kind: groupTimerSync})
	}
	if !g.join.deadline.IsZero() && !g.join.deadline.After(now) {
		due = append(due, groupTimer{at: g.join.deadline, kind: groupTimerJoin})
	}
	if len(due) > 1 {
		slices.SortFunc(due, func(a, b groupTimer) int {
			return cmp.Or(a.at.Compare(b.at), cmp.Compare(a.kind, b.kind), cmp.Compare(a.order, b.order), cmp.Compare(a.id, b.id))
		})
	}
	return due
}

// NextDeadline returns the earliest pending deadline: the caller should
// Tick at (or soon after) that time. ok is false when nothing is pending.
func (g *GroupStateMachine) NextDeadline() (at time.Time, ok bool) {
	if g.state == GroupDead {
		return time.Time{}, false
	}
	consider := func(t time.Time) {
		if !t.IsZero() && (!ok || t.Before(at)) {
			at, ok = t, true
		}
	}
	for _, t := range g.pending {
		consider(t)
	}
	for _, m := range g.members {
		consider(m.sessionDeadline)
	}
	consider(g.syncDeadline)
	consider(g.join.deadline)
	return at, ok
}
