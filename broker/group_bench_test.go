package broker

import (
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"
)

// BenchmarkGroupRebalance10 measures one complete eager rebalance of a
// stable 10-member group through the state machine: the leader rejoins,
// the nine followers rejoin (the last join completes the generation and
// answers all ten), the followers sync and wait, the leader syncs the
// assignment (one group metadata record, ten sync responses). One op is
// those 21 calls.
func BenchmarkGroupRebalance10(b *testing.B) {
	const n = 10
	cfg := GroupConfig{Rand: rand.NewChaCha8([32]byte{})}
	now := groupT0
	g := NewGroupStateMachine("bench", cfg, now)
	meta := groupConsumerMeta("orders", "payments", "shipments")
	req := func(memberID string, i int) GroupJoinRequest {
		return GroupJoinRequest{
			MemberID: memberID, ClientID: fmt.Sprint("consumer-", i), ClientHost: "/10.0.0.1",
			SessionTimeoutMs: 45_000, RebalanceTimeoutMs: 300_000, ProtocolType: "consumer",
			Protocols: []GroupProtocol{{Name: "cooperative-sticky", Metadata: meta}, {Name: "range", Metadata: meta}},
		}
	}
	// Form the group: ten joins without MEMBER_ID_REQUIRED (v3), then sync.
	var ids []string
	var tok uint64
	for i := range n {
		tok++
		g.Join(now, tok, req("", i))
	}
	for len(ids) == 0 { // through the initial rebalance delay
		now, _ = g.NextDeadline()
		for _, r := range g.Tick(now).Responses {
			ids = append(ids, r.Join.MemberID)
		}
	}
	if len(ids) != n {
		b.Fatalf("formed %d members", len(ids))
	}
	assignments := make([]GroupMemberAssignment, n)
	for i, id := range ids {
		assignments[i] = GroupMemberAssignment{MemberID: id, Assignment: make([]byte, 64)}
	}
	gen := g.Generation()
	for _, id := range ids[1:] {
		tok++
		g.Sync(now, tok, GroupSyncRequest{MemberID: id, GenerationID: gen})
	}
	tok++
	g.Sync(now, tok, GroupSyncRequest{MemberID: ids[0], GenerationID: gen, Assignments: assignments})
	if g.State() != GroupStable {
		b.Fatalf("state %v", g.State())
	}

	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		now = now.Add(time.Millisecond)
		responses := 0
		for i, id := range ids {
			tok++
			responses += len(g.Join(now, tok, req(id, i)).Responses)
		}
		gen = g.Generation()
		for _, id := range ids[1:] {
			tok++
			responses += len(g.Sync(now, tok, GroupSyncRequest{MemberID: id, GenerationID: gen}).Responses)
		}
		tok++
		out := g.Sync(now, tok, GroupSyncRequest{MemberID: ids[0], GenerationID: gen, Assignments: assignments})
		responses += len(out.Responses)
		if responses != 2*n || len(out.Records) != 1 {
			b.Fatalf("rebalance produced %d responses and %d records", responses, len(out.Records))
		}
	}
}

// groupBenchLog is a packed run of records, as they would come off a log
// segment: [keyLen u16][key][valueLen u16][value]...
type groupBenchLog struct {
	buf []byte
	n   int
}

func groupBuildCommitLog(records, groups, partitionsPerGroup int) groupBenchLog {
	var l groupBenchLog
	ts := groupT0.UnixMilli()
	for i := range records {
		k := i % (groups * partitionsPerGroup)
		rec := GroupEncodeOffsetCommit(
			fmt.Sprintf("group-%05d", k/partitionsPerGroup), "topic-orders", int32(k%partitionsPerGroup),
			GroupCommittedOffset{Offset: int64(i), LeaderEpoch: 7, CommitTimestamp: ts + int64(i), ExpireTimestamp: -1},
		)
		l.buf = binary.BigEndian.AppendUint16(l.buf, uint16(len(rec.Key)))
		l.buf = append(l.buf, rec.Key...)
		l.buf = binary.BigEndian.AppendUint16(l.buf, uint16(len(rec.Value)))
		l.buf = append(l.buf, rec.Value...)
		l.n++
	}
	return l
}

func (l groupBenchLog) each(fn func(key, value []byte)) {
	b := l.buf
	for len(b) > 0 {
		kl := int(binary.BigEndian.Uint16(b))
		key := b[2 : 2+kl]
		b = b[2+kl:]
		vl := int(binary.BigEndian.Uint16(b))
		value := b[2 : 2+vl]
		b = b[2+vl:]
		fn(key, value)
	}
}

// BenchmarkGroupReplay1M replays 1,000,000 offset commit records and
// builds the table. "10k-keys" is an uncompacted log (100 commits per
// partition of 100 groups x 100 partitions); "1M-keys" is the worst case,
// every record a distinct partition (10,000 groups x 100 partitions).
func BenchmarkGroupReplay1M(b *testing.B) {
	for _, bc := range []struct {
		name               string
		groups, partitions int
	}{
		{"10k-keys", 100, 100},
		{"1M-keys", 10_000, 100},
	} {
		b.Run(bc.name, func(b *testing.B) {
			const records = 1_000_000
			log := groupBuildCommitLog(records, bc.groups, bc.partitions)
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				r := NewGroupReplayer(GroupConfig{})
				log.each(func(key, value []byte) {
					if err := r.Apply(key, value); err != nil {
						b.Fatal(err)
					}
				})
				table := r.Finish(groupT0)
				if table.Len() != bc.groups {
					b.Fatalf("%d groups", table.Len())
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/records, "ns/record")
		})
	}
}
