package main

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/twmb/franz-go/pkg/kversion"
)

// TestClusterACLs: ACLs live in the metadata log, so one created through
// node 1 is enforced by node 2 and listed by node 3, and one deleted
// through node 3 stops applying on node 2. The nodes run with the
// authorizer on and allow-everyone-if-no-acl-found, so that the anonymous
// test client may administer the cluster (no ACL names it).
func TestClusterACLs(t *testing.T) {
	c := newCluster(t, 3)
	for id := 1; id <= 3; id++ {
		c.startWith(id, "--peers", c.peers(), "--authorizer", "--allow-everyone-if-no-acl-found")
	}
	for id := 1; id <= 3; id++ {
		c.waitUp(id)
	}
	c.createTopic("guarded", 1, 3)
	c.createTopic("open", 1, 3)

	// A client of each node alone, below Produce v13 (which names topics
	// by ID).
	var nodes []*kgo.Client
	for id := 1; id <= 3; id++ {
		nodes = append(nodes, c.client(kgo.SeedBrokers(c.kafka[id-1]), kgo.MaxVersions(kversion.V3_8_0())))
	}
	node := func(id int) *kgo.Client { return nodes[id-1] }
	// produceCode sends one record to topic on node id (whatever it leads)
	// and returns the answer's code.
	produceCode := func(id int, topic string) int16 {
		req := kmsg.NewPtrProduceRequest()
		req.Acks, req.TimeoutMillis = -1, 5000
		rt := kmsg.NewProduceRequestTopic()
		rt.Topic = topic
		rp := kmsg.NewProduceRequestTopicPartition()
		rp.Records = encodeBatch(t, kgo.Record{Value: []byte("v")})
		rt.Partitions = append(rt.Partitions, rp)
		req.Topics = append(req.Topics, rt)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		resp, err := node(id).SeedBrokers()[0].Request(ctx, req)
		if err != nil {
			t.Fatalf("produce to %s on node %d: %v", topic, id, err)
		}
		return resp.(*kmsg.ProduceResponse).Topics[0].Partitions[0].ErrorCode
	}
	// eventually waits (bounded) until node id answers want for topic.
	eventually := func(id int, topic string, want int16) {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for {
			got := produceCode(id, topic)
			if got == want {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("node %d answers %v to a produce to %s, want %v", id, kerr.ErrorForCode(got), topic, kerr.ErrorForCode(want))
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	notAuthorized := kerr.TopicAuthorizationFailed.Code

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	acl := kadm.NewACLs().Deny("User:ANONYMOUS").Topics("guarded").Operations(kadm.OpWrite)
	for {
		res, err := kadm.NewClient(node(1)).CreateACLs(ctx, acl)
		if err == nil && len(res) == 1 && res[0].Err == nil {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("create ACL through node 1: %v %+v", err, res)
		}
		time.Sleep(100 * time.Millisecond)
	}
	eventually(2, "guarded", notAuthorized)
	if code := produceCode(2, "open"); code == notAuthorized {
		t.Fatal("node 2 refuses a topic no ACL names")
	}
	listed, err := kadm.NewClient(node(3)).DescribeACLs(ctx, kadm.NewACLs().Deny().DenyHosts().AnyResource().Operations(kadm.OpAny).
		ResourcePatternType(kadm.ACLPatternAny))
	if err != nil || len(listed) != 1 || len(listed[0].Described) != 1 || listed[0].Described[0].Name != "guarded" {
		t.Fatalf("node 3 lists %+v (%v)", listed, err)
	}

	res, err := kadm.NewClient(node(3)).DeleteACLs(ctx, kadm.NewACLs().Deny("User:ANONYMOUS").DenyHosts("*").Topics("guarded").
		ResourcePatternType(kadm.ACLPatternLiteral).Operations(kadm.OpWrite))
	if err != nil || len(res) != 1 || res[0].Err != nil || len(res[0].Deleted) != 1 {
		t.Fatalf("delete ACL through node 3: %v %+v", err, res)
	}
	// Node 2 stops refusing (it answers the leader's code, or success if it
	// leads): anything but TOPIC_AUTHORIZATION_FAILED.
	deadline := time.Now().Add(20 * time.Second)
	for produceCode(2, "guarded") == notAuthorized {
		if time.Now().After(deadline) {
			t.Fatal("node 2 still refuses after the ACL was deleted through node 3")
		}
		time.Sleep(50 * time.Millisecond)
	}
	// And a real producer writes it.
	if err := c.client(kgo.RecordRetries(100)).ProduceSync(ctx, &kgo.Record{Topic: "guarded", Value: []byte(strconv.Itoa(1))}).FirstErr(); err != nil {
		t.Fatalf("produce after the delete: %v", err)
	}
}
