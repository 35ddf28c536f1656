package main

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// TestClusterMinInsyncReplicas: min.insync.replicas above the replication
// factor is refused; with it at 3 on three replicas, acks=all produce
// works while all are live and gets NOT_ENOUGH_REPLICAS once one is down,
// while acks=1 still works; lowered to 2, acks=all works again.
func TestClusterMinInsyncReplicas(t *testing.T) {
	c := startCluster(t, 3)
	t.Cleanup(c.stopAll)
	adm := kadm.NewClient(c.client())
	create := func(name string, rf int16, minIsr string) kadm.CreateTopicResponse {
		deadline := time.Now().Add(30 * time.Second)
		for {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			resp, err := adm.CreateTopic(ctx, 1, rf, map[string]*string{"min.insync.replicas": kmsg.StringPtr(minIsr)}, name)
			cancel()
			if errors.Is(resp.Err, kerr.TopicAlreadyExists) {
				resp.Err = nil // an earlier attempt that timed out created it
			}
			// INVALID_REPLICATION_FACTOR while the nodes still register
			// with the controller (the cluster counts one node at first).
			if (err == nil || resp.Err != nil) && !errors.Is(resp.Err, kerr.NotController) && !errors.Is(resp.Err, kerr.RequestTimedOut) &&
				!errors.Is(resp.Err, kerr.InvalidReplicationFactor) {
				return resp
			}
			if time.Now().After(deadline) {
				t.Fatalf("create %s: %v %v", name, err, resp.Err)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	if resp := create("isr-rf2", 2, "3"); !errors.Is(resp.Err, kerr.InvalidConfig) || !strings.Contains(resp.ErrMessage, "replication factor is 2") {
		t.Fatalf("min.insync.replicas=3 with replication factor 2: %v %q", resp.Err, resp.ErrMessage)
	}
	if resp := create("isr", 3, "3"); resp.Err != nil {
		t.Fatalf("create isr: %v %s", resp.Err, resp.ErrMessage)
	}
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		td := c.topicMetadata("isr")
		if td.Err == nil && len(td.Partitions) == 1 && td.Partitions[0].Leader >= 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("topic isr has no leader after 30s: %v", td.Err)
		}
	}
	// Raw produce requests to the leader: kgo would retry the retriable
	// NOT_ENOUGH_REPLICAS until its delivery timeout. kgo sends them with
	// its client's acks.
	clients := map[int16]*kgo.Client{-1: c.client(), 1: c.client(kgo.RequiredAcks(kgo.LeaderAck()), kgo.DisableIdempotentWrite())}
	produce := func(acks int16) error {
		cl := clients[acks]
		leader := c.leader("isr", 0)
		req := kmsg.NewPtrProduceRequest()
		req.Acks, req.TimeoutMillis = acks, 10000
		rt := kmsg.NewProduceRequestTopic()
		rt.Topic, rt.TopicID = "isr", c.topicMetadata("isr").ID
		rp := kmsg.NewProduceRequestTopicPartition()
		rp.Records = encodeBatch(t, kgo.Record{Value: []byte("v")})
		rt.Partitions = append(rt.Partitions, rp)
		req.Topics = append(req.Topics, rt)
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		resp, err := req.RequestWith(ctx, cl.Broker(leader))
		if err != nil {
			return err
		}
		return kerr.ErrorForCode(resp.Topics[0].Partitions[0].ErrorCode)
	}
	// The first may find a client that does not know the leader yet
	// (unknown broker) while the nodes register: retried, bounded.
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		err := produce(-1)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("acks=all with three live replicas: %v", err)
		}
		clients[-1].ForceMetadataRefresh()
	}
	leader := c.leader("isr", 0)
	victim := 1
	for victim == leader {
		victim++
	}
	c.kill(victim)
	deadline := time.Now().Add(60 * time.Second)
	for {
		err := produce(-1)
		if errors.Is(err, kerr.NotEnoughReplicas) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("acks=all with node %d down: %v, want NOT_ENOUGH_REPLICAS", victim, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if err := produce(1); err != nil {
		t.Fatalf("acks=1 with one replica down: %v", err)
	}
	ar, err := adm.AlterTopicConfigs(context.Background(), []kadm.AlterConfig{{Op: kadm.SetConfig, Name: "min.insync.replicas", Value: kmsg.StringPtr("2")}}, "isr")
	if err == nil {
		err = ar[0].Err
	}
	if err != nil {
		t.Fatalf("alter min.insync.replicas=2: %v", err)
	}
	deadline = time.Now().Add(30 * time.Second)
	for {
		err := produce(-1)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("acks=all with two of three live and min.insync.replicas=2: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
