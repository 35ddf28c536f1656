package kafka

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// BenchmarkGroupRebalance10Members measures how long ten kgo consumers
// (default settings: cooperative-sticky, 3s heartbeats) take to form a new
// group over a 20-partition topic through the real server: from starting
// the clients to every partition assigned to exactly one member, every
// member holding two. One op is one group. The broker's initial rebalance
// delay dominates: Kafka's default 3s (extended while members keep
// arriving), 100ms, and none, where members join one rebalance after
// another and the stable ones learn of each from their next heartbeat.
//
//	go test -run '^$' -bench GroupRebalance10Members -benchtime 3x ./kafka/
func BenchmarkGroupRebalance10Members(b *testing.B) {
	for _, delay := range []time.Duration{3 * time.Second, 100 * time.Millisecond, -1} {
		name := fmt.Sprintf("initial-delay=%v", delay)
		if delay < 0 {
			name = "initial-delay=0"
		}
		b.Run(name, func(b *testing.B) {
			e := startEnv(b)
			e.bcfg.GroupInitialRebalanceDelay = delay
			e.restart()
			const members, partitions = 10, 20
			e.createTopic("rebalance", partitions, nil)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
			defer cancel()
			b.ResetTimer()
			for i := range b.N {
				group := fmt.Sprintf("bench-%d", i)
				var (
					mu       sync.Mutex
					assigned = make([]map[int32]bool, members)
				)
				clients := make([]*kgo.Client, members)
				var wg sync.WaitGroup
				for m := range members {
					assigned[m] = map[int32]bool{}
					update := func(ps map[string][]int32, add bool) {
						mu.Lock()
						defer mu.Unlock()
						for _, p := range ps["rebalance"] {
							if add {
								assigned[m][p] = true
							} else {
								delete(assigned[m], p)
							}
						}
					}
					cl, err := kgo.NewClient(kgo.SeedBrokers(e.addr), kgo.ConsumerGroup(group), kgo.ConsumeTopics("rebalance"),
						kgo.OnPartitionsAssigned(func(_ context.Context, _ *kgo.Client, ps map[string][]int32) { update(ps, true) }),
						kgo.OnPartitionsRevoked(func(_ context.Context, _ *kgo.Client, ps map[string][]int32) { update(ps, false) }),
						kgo.OnPartitionsLost(func(_ context.Context, _ *kgo.Client, ps map[string][]int32) { update(ps, false) }))
					if err != nil {
						b.Fatal(err)
					}
					clients[m] = cl
					wg.Add(1)
					go func() {
						defer wg.Done()
						for ctx.Err() == nil && !cl.PollFetches(ctx).IsClientClosed() {
						}
					}()
				}
				for ; ; time.Sleep(time.Millisecond) {
					if ctx.Err() != nil {
						b.Fatal("the group never formed")
					}
					mu.Lock()
					owners, done := map[int32]int{}, true
					for m := range members {
						done = done && len(assigned[m]) == partitions/members
						for p := range assigned[m] {
							owners[p]++
						}
					}
					done = done && len(owners) == partitions
					mu.Unlock()
					if done {
						break
					}
				}
				b.StopTimer()
				for _, cl := range clients {
					cl.Close()
				}
				wg.Wait()
				b.StartTimer()
			}
		})
	}
}
