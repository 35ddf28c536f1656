package cluster

// Voter reconciliation: the Node records the voters (and the preferred
// leader) each group should have; a reconciler goroutine makes the groups
// this node leads converge to them by conf change and leadership transfer.

import (
	"context"
	"maps"
	"slices"
	"time"

	"go.etcd.io/raft/v3/raftpb"
)

// want records the voters a group should have (nil forgets the group).
func (n *Node) want(id GroupID, voters []uint64) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if voters == nil {
		delete(n.desired, id)
		delete(n.preferred, id)
		return
	}
	n.desired[id] = slices.DeleteFunc(slices.Sorted(slices.Values(voters)), func(v uint64) bool { return n.removed[v] })
}

// NodeRemoved implements broker.Replication: the node leaves every group's
// desired voters; the reconciler removes it from the groups this node
// leads.
func (n *Node) NodeRemoved(id int32) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.removed[uint64(id)] = true
	for g, voters := range n.desired {
		// A new slice: the reconciler reads the old one without the lock.
		n.desired[g] = slices.DeleteFunc(slices.Clone(voters), func(v uint64) bool { return v == uint64(id) })
	}
	for g, p := range n.preferred {
		if p == uint64(id) {
			delete(n.preferred, g)
		}
	}
}

// removeExtra removes one voter the group should not have (a removed
// node), as a simple conf change; the next pass removes the next one.
func (n *Node) removeExtra(g *RaftGroup, st GroupStatus, voters []uint64) {
	for _, v := range st.Voters {
		if slices.Contains(voters, v) || len(voters) == 0 {
			continue
		}
		cc := raftpb.ConfChangeV2{Changes: []raftpb.ConfChangeSingle{{Type: raftpb.ConfChangeRemoveNode, NodeID: v}}}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err := g.ProposeConfChange(ctx, cc)
		cancel()
		if err != nil {
			n.log.Debug().Err(err).Uint64("group", uint64(g.ID())).Uint64("node", v).Msg("removing a voter not committed yet")
			return
		}
		n.log.Info().Uint64("group", uint64(g.ID())).Uint64("node", v).Msg("voter removed")
		return
	}
}

// transferCooldown spaces out leadership transfers of one group: a
// preferred leader that cannot take over (still catching up, flapping) is
// not asked again at once.
const transferCooldown = 10 * time.Second

// rebalance hands a group this node leads to its preferred leader when that
// node is a voter and connected. raft brings it up to date first and
// aborts the transfer if it cannot within an election timeout.
func (n *Node) rebalance(g *RaftGroup, st GroupStatus, pref uint64) {
	if pref == 0 || pref == n.cfg.NodeID || !slices.Contains(st.Voters, pref) || !n.tr.Connected(pref) {
		return
	}
	if time.Since(n.lastTransfer[g.ID()]) < transferCooldown {
		return
	}
	n.lastTransfer[g.ID()] = time.Now()
	n.log.Debug().Uint64("group", uint64(g.ID())).Uint64("to", pref).Msg("handing leadership back to the preferred leader")
	g.TransferLeadership(pref)
}

// reconcileInterval is how often the groups this node leads are checked
// against their desired voters.
const reconcileInterval = 250 * time.Millisecond

// reconcile adds missing voters to the groups this node leads, one conf
// change per group at a time (several additions at once go through joint
// consensus, which raft leaves on its own).
func (n *Node) reconcile() {
	defer n.wg.Done()
	t := time.NewTicker(reconcileInterval)
	defer t.Stop()
	for {
		select {
		case <-n.stop:
			return
		case <-t.C:
		}
		n.mu.Lock()
		work := make(map[GroupID][]uint64, len(n.desired))
		for id, v := range n.desired {
			work[id] = v
		}
		preferred := maps.Clone(n.preferred)
		n.mu.Unlock()
		for id, voters := range work {
			g := n.eng.Group(id)
			if g == nil || !g.isLeader.Load() {
				continue // followers have nothing to reconcile: skip Status's copy
			}
			st := g.Status()
			if !st.IsLeader {
				continue
			}
			n.rebalance(g, st, preferred[id])
			missing, extra := false, false
			for _, v := range voters {
				missing = missing || !slices.Contains(st.Voters, v)
			}
			for _, v := range st.Voters {
				extra = extra || !slices.Contains(voters, v)
			}
			if extra || !missing {
				// Removals first: a removed node that is still a
				// voter while a new, empty one is added would make
				// every commit wait for the newcomer's catch-up.
				n.removeExtra(g, st, voters)
				continue
			}
			// The change names every desired voter, present ones too
			// (adding a voter twice is a no-op): a replica that joins
			// with no configuration of its own (the group began from a
			// standalone log, whose voters are not in the log) then
			// learns the whole set from this one entry.
			var cc raftpb.ConfChangeV2
			for _, v := range voters {
				cc.Changes = append(cc.Changes, raftpb.ConfChangeSingle{Type: raftpb.ConfChangeAddNode, NodeID: v})
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			err := g.ProposeConfChange(ctx, cc)
			cancel()
			if err != nil {
				n.log.Debug().Err(err).Uint64("group", uint64(id)).Msg("adding voters not committed yet")
				continue
			}
			n.log.Info().Uint64("group", uint64(id)).Any("added", cc.Changes).Msg("voters added")
		}
	}
}
