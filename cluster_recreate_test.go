package main

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// TestClusterRepeatedCreateTopics: clients send CreateTopics for the same
// topic (3 partitions, RF 3) to every node every 100 ms while the topic's
// partitions start, and go on until every partition has a leader (some
// nodes have not applied the topic yet when a repeat reaches them). The
// repeats are answered TOPIC_ALREADY_EXISTS, as Kafka does, and must not
// disturb the partitions: each gets a leader and accepts acks=all produce.
// Twice on one cluster: from the moment the nodes listen (the first
// requests find brokers still registering), and once it has settled.
func TestClusterRepeatedCreateTopics(t *testing.T) {
	c := startCluster(t, 3)
	// One client per node, talking to that node only (its seed broker),
	// so that the repeats reach every node, not just the controller.
	seeds := make([]*kgo.Broker, len(c.kafka))
	for i, addr := range c.kafka {
		seeds[i] = c.client(kgo.SeedBrokers(addr)).SeedBrokers()[0]
	}
	for _, topic := range []string{"recreate-early", "recreate-settled"} {
		repeatCreateUntilLed(t, c, seeds, topic)
	}
}

// repeatCreateUntilLed sends CreateTopics for topic to every node every
// 100 ms, at least 3 s and until every partition has a leader (at most
// 20 s), then checks the answers and produces to every partition.
func repeatCreateUntilLed(t *testing.T, c *testCluster, seeds []*kgo.Broker, topic string) {
	t.Helper()
	const (
		partitions = 3
		minTicks   = 30 // 3 s of requests at least
	)
	var (
		mu      sync.Mutex
		answers = map[string]int{}
		wg      sync.WaitGroup
	)
	start := time.Now()
	leadersAt := time.Duration(0)
	for tick := 0; ; tick++ {
		for _, br := range seeds {
			wg.Add(1)
			go func() {
				defer wg.Done()
				answer := createTopicOnce(br, topic, partitions)
				mu.Lock()
				answers[answer]++
				mu.Unlock()
			}()
		}
		time.Sleep(100 * time.Millisecond)
		if leadersAt == 0 && tick%5 == 0 && allLed(c, topic, partitions) {
			leadersAt = time.Since(start)
		}
		if leadersAt > 0 && tick >= minTicks {
			break
		}
		if time.Since(start) > 20*time.Second {
			wg.Wait()
			t.Fatalf("topic %s has partitions without a leader after 20s of CreateTopics repeats (answers %v): %+v",
				topic, answers, c.topicMetadata(topic).Partitions)
		}
	}
	wg.Wait()
	t.Logf("%s: CreateTopics answers %v; every partition led %v after the first request", topic, answers, leadersAt.Round(time.Millisecond))
	if answers["created"] != 1 {
		t.Errorf("%s: %d CreateTopics created the topic, want exactly 1", topic, answers["created"])
	}
	if answers[kerr.TopicAlreadyExists.Error()] == 0 {
		t.Errorf("%s: no repeated CreateTopics answered TOPIC_ALREADY_EXISTS", topic)
	}

	// acks=all produce to every partition succeeds within 20 s.
	prod := c.client(kgo.RequiredAcks(kgo.AllISRAcks()), kgo.RecordPartitioner(kgo.ManualPartitioner()),
		kgo.RecordRetries(1000), kgo.RetryTimeout(20*time.Second))
	for p := range int32(partitions) {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		r := &kgo.Record{Topic: topic, Partition: p, Value: []byte("v")}
		err := prod.ProduceSync(ctx, r).FirstErr()
		cancel()
		if err != nil {
			t.Fatalf("produce to %s-%d: %v", topic, p, err)
		}
		if r.Offset != 0 {
			t.Errorf("first record of %s-%d at offset %d, want 0", topic, p, r.Offset)
		}
	}
}

// createTopicOnce sends one CreateTopics (RF 3) to a broker and names the
// answer: "created", the error code's text, or the request's error.
func createTopicOnce(br *kgo.Broker, topic string, partitions int32) string {
	req := kmsg.NewPtrCreateTopicsRequest()
	rt := kmsg.NewCreateTopicsRequestTopic()
	rt.Topic, rt.NumPartitions, rt.ReplicationFactor = topic, partitions, 3
	req.Topics = append(req.Topics, rt)
	req.TimeoutMillis = 5000
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := req.RequestWith(ctx, br)
	switch {
	case err != nil:
		return err.Error()
	case len(resp.Topics) != 1:
		return "malformed response"
	case resp.Topics[0].ErrorCode == 0:
		return "created"
	default:
		return kerr.ErrorForCode(resp.Topics[0].ErrorCode).Error()
	}
}

// allLed reports whether Metadata, asked through a new client (kadm
// answers Metadata from the client's cache for MetadataMinAge, which can
// predate the leaders), lists every partition of a topic with a leader.
func allLed(c *testCluster, topic string, partitions int) bool {
	td := c.topicMetadata(topic)
	ok := td.Err == nil && len(td.Partitions) == partitions
	for _, p := range td.Partitions {
		ok = ok && p.Err == nil && p.Leader >= 0
	}
	return ok
}
