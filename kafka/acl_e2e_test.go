package kafka

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/chronik-stream/chronik/broker"
)

// withAuthorizer turns the authorizer on with User:admin as super user and
// makes each connection's principal "User:" + its client id (the tests'
// stand-in for authentication).
func withAuthorizer() envOpt {
	return func(e *testEnv) {
		e.bcfg.Authorizer = broker.AuthorizerConfig{Enabled: true, SuperUsers: []string{"User:admin"}}
		e.principalOf = func(clientID string) string { return "User:" + clientID }
	}
}

// as is a kgo client whose connections are principal User:name.
func (e *testEnv) as(name string, opts ...kgo.Opt) *kgo.Client {
	return e.client(append([]kgo.Opt{kgo.ClientID(name), kgo.RetryTimeout(2 * time.Second)}, opts...)...)
}

// rawAs is a raw connection whose principal is User:name.
func (e *testEnv) rawAs(name string) *rawConn {
	rc := e.dial()
	rc.fmtr = kmsg.NewRequestFormatter(kmsg.FormatterClientID(name))
	return rc
}

func mustCreateACLs(t *testing.T, adm *kadm.Client, b *kadm.ACLBuilder) {
	t.Helper()
	res, err := adm.CreateACLs(context.Background(), b)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range res {
		if r.Err != nil {
			t.Fatalf("create ACL %+v: %v", r, r.Err)
		}
	}
}

// produceCode sends one batch to topic partition 0 on rc and returns the
// partition's error code.
func produceCode(rc *rawConn, topic string) int16 {
	req := kmsg.NewPtrProduceRequest()
	req.SetVersion(9)
	req.Acks, req.TimeoutMillis = -1, 5000
	rt := kmsg.NewProduceRequestTopic()
	rt.Topic = topic
	rp := kmsg.NewProduceRequestTopicPartition()
	rp.Records = plainBatch(1, 1000)
	rt.Partitions = append(rt.Partitions, rp)
	req.Topics = append(req.Topics, rt)
	return rc.roundTrip(req).(*kmsg.ProduceResponse).Topics[0].Partitions[0].ErrorCode
}

func metadataTopics(t *testing.T, rc *rawConn, topics ...string) map[string]int16 {
	t.Helper()
	req := kmsg.NewPtrMetadataRequest()
	req.SetVersion(12)
	if topics != nil {
		req.Topics = []kmsg.MetadataRequestTopic{}
		for _, name := range topics {
			rt := kmsg.NewMetadataRequestTopic()
			rt.Topic = kmsg.StringPtr(name)
			req.Topics = append(req.Topics, rt)
		}
	}
	out := map[string]int16{}
	for _, st := range rc.roundTrip(req).(*kmsg.MetadataResponse).Topics {
		out[*st.Topic] = st.ErrorCode
	}
	return out
}

// noError stands for error code 0 in wantErrCode.
var noError = &kerr.Error{Message: "NONE", Code: 0}

func wantErrCode(t *testing.T, what string, got int16, want *kerr.Error) {
	t.Helper()
	if got != want.Code {
		t.Fatalf("%s: got %v, want %v", what, kerr.ErrorForCode(got), want.Message)
	}
}

// TestACLReadOnlyPrefix: a principal with only READ on a topic prefix (and
// on its group) reads those topics, is refused writes and every other
// topic, and sees only its topics in Metadata.
func TestACLReadOnlyPrefix(t *testing.T) {
	e := startEnv(t, withAuthorizer())
	for _, name := range []string{"orders-eu", "orders-us", "payments"} {
		e.createTopic(name, 1, nil)
	}
	adm := kadm.NewClient(e.as("admin"))
	mustCreateACLs(t, adm, kadm.NewACLs().Allow("User:reader").Topics("orders-").
		ResourcePatternType(kadm.ACLPatternPrefixed).Operations(kadm.OpRead))
	mustCreateACLs(t, adm, kadm.NewACLs().Allow("User:reader").Groups("readers").Operations(kadm.OpRead))

	// The super user writes (no ACL names it).
	admin := e.as("admin")
	ctx := context.Background()
	for _, topic := range []string{"orders-eu", "payments"} {
		if err := admin.ProduceSync(ctx, &kgo.Record{Topic: topic, Value: []byte("v-" + topic)}).FirstErr(); err != nil {
			t.Fatalf("super user produce to %s: %v", topic, err)
		}
	}

	rc := e.rawAs("reader")
	wantErrCode(t, "reader writes orders-eu", produceCode(rc, "orders-eu"), kerr.TopicAuthorizationFailed)
	wantErrCode(t, "reader writes payments", produceCode(rc, "payments"), kerr.TopicAuthorizationFailed)
	wantErrCode(t, "reader writes a topic that does not exist", produceCode(rc, "nope"), kerr.TopicAuthorizationFailed)

	all := metadataTopics(t, rc)
	if len(all) != 2 || all["orders-eu"] != 0 || all["orders-us"] != 0 {
		t.Fatalf("reader's metadata for all topics: %v, want orders-eu and orders-us only", all)
	}
	named := metadataTopics(t, rc, "orders-eu", "payments", "nope")
	wantErrCode(t, "metadata orders-eu", named["orders-eu"], noError)
	wantErrCode(t, "metadata payments", named["payments"], kerr.TopicAuthorizationFailed)
	wantErrCode(t, "metadata of a missing topic", named["nope"], kerr.TopicAuthorizationFailed)

	// Consuming its topic in its group works.
	cons := e.as("reader", kgo.ConsumeTopics("orders-eu"), kgo.ConsumerGroup("readers"),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	fctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	var got []string
	for len(got) == 0 && fctx.Err() == nil {
		fs := cons.PollFetches(fctx)
		for _, err := range fs.Errors() {
			if !errors.Is(err.Err, context.DeadlineExceeded) {
				t.Fatalf("reader consume: %v", err.Err)
			}
		}
		fs.EachRecord(func(r *kgo.Record) { got = append(got, string(r.Value)) })
	}
	if !slices.Equal(got, []string{"v-orders-eu"}) {
		t.Fatalf("reader consumed %q", got)
	}
	if err := cons.CommitUncommittedOffsets(ctx); err != nil {
		t.Fatalf("reader commit: %v", err)
	}

	// Fetching the other topic is refused.
	fetch := kmsg.NewPtrFetchRequest()
	fetch.SetVersion(12)
	fetch.MaxWaitMillis, fetch.MaxBytes, fetch.SessionEpoch = 10, 1<<20, -1
	ft := kmsg.NewFetchRequestTopic()
	ft.Topic = "payments"
	fp := kmsg.NewFetchRequestTopicPartition()
	fp.PartitionMaxBytes = 1 << 20
	ft.Partitions = append(ft.Partitions, fp)
	fetch.Topics = append(fetch.Topics, ft)
	wantErrCode(t, "reader fetches payments",
		rc.roundTrip(fetch).(*kmsg.FetchResponse).Topics[0].Partitions[0].ErrorCode, kerr.TopicAuthorizationFailed)

	// Admin APIs are refused.
	del := kmsg.NewPtrDeleteTopicsRequest()
	del.SetVersion(6)
	dt := kmsg.NewDeleteTopicsRequestTopic()
	dt.Topic = kmsg.StringPtr("orders-eu")
	del.Topics = append(del.Topics, dt)
	wantErrCode(t, "reader deletes orders-eu", rc.roundTrip(del).(*kmsg.DeleteTopicsResponse).Topics[0].ErrorCode, kerr.TopicAuthorizationFailed)
	create := kmsg.NewPtrCreateACLsRequest()
	create.SetVersion(3)
	c := kmsg.NewCreateACLsRequestCreation()
	c.ResourceType, c.ResourceName, c.ResourcePatternType = kmsg.ACLResourceTypeTopic, "payments", kmsg.ACLResourcePatternTypeLiteral
	c.Principal, c.Host, c.Operation, c.PermissionType = "User:reader", "*", kmsg.ACLOperationAll, kmsg.ACLPermissionTypeAllow
	create.Creations = append(create.Creations, c)
	wantErrCode(t, "reader creates an ACL", rc.roundTrip(create).(*kmsg.CreateACLsResponse).Results[0].ErrorCode, kerr.ClusterAuthorizationFailed)
	if _, ok := e.b.Topic("orders-eu"); !ok {
		t.Fatal("orders-eu deleted by the reader")
	}
}

// TestACLDenyBeatsAllow: a DENY for a literal topic wins over an ALLOW of
// every topic; the ALLOW still holds elsewhere.
func TestACLDenyBeatsAllow(t *testing.T) {
	e := startEnv(t, withAuthorizer())
	e.createTopic("open", 1, nil)
	e.createTopic("secret", 1, nil)
	adm := kadm.NewClient(e.as("admin"))
	mustCreateACLs(t, adm, kadm.NewACLs().Allow("User:writer").Topics("*").Operations(kadm.OpWrite))
	mustCreateACLs(t, adm, kadm.NewACLs().Deny("User:writer").Topics("secret").Operations(kadm.OpWrite))
	rc := e.rawAs("writer")
	wantErrCode(t, "write open", produceCode(rc, "open"), noError)
	wantErrCode(t, "write secret", produceCode(rc, "secret"), kerr.TopicAuthorizationFailed)
	// WRITE on "*" implies DESCRIBE of every topic, the internal one
	// included; the DENY of WRITE does not deny DESCRIBE (as in Kafka).
	if got := metadataTopics(t, rc); len(got) != 3 || got["secret"] != 0 || got["open"] != 0 {
		t.Fatalf("writer's metadata: %v", got)
	}
}

// TestACLSuperUserBypasses: a super user may do anything, even against a
// DENY naming it; another principal with no ACL may do nothing.
func TestACLSuperUserBypasses(t *testing.T) {
	e := startEnv(t, withAuthorizer())
	e.createTopic("t", 1, nil)
	adm := kadm.NewClient(e.as("admin"))
	mustCreateACLs(t, adm, kadm.NewACLs().Deny("User:admin").Topics("t").Operations(kadm.OpAll))
	rc := e.rawAs("admin")
	wantErrCode(t, "super user writes t", produceCode(rc, "t"), noError)
	if _, err := adm.CreateTopic(context.Background(), 1, 1, nil, "made-by-admin"); err != nil {
		t.Fatalf("super user creates a topic: %v", err)
	}
	nobody := e.rawAs("nobody")
	wantErrCode(t, "nobody writes t", produceCode(nobody, "t"), kerr.TopicAuthorizationFailed)
	if got := metadataTopics(t, nobody); len(got) != 0 {
		t.Fatalf("nobody's metadata: %v", got)
	}
}

// TestACLChangesApplyToOpenConnections: one connection, kept open, is
// refused, then allowed once an ACL is created, then refused again once it
// is deleted.
func TestACLChangesApplyToOpenConnections(t *testing.T) {
	e := startEnv(t, withAuthorizer())
	e.createTopic("t", 1, nil)
	adm := kadm.NewClient(e.as("admin"))
	rc := e.rawAs("bob")
	wantErrCode(t, "before the ACL", produceCode(rc, "t"), kerr.TopicAuthorizationFailed)
	acl := kadm.NewACLs().Allow("User:bob").Topics("t").Operations(kadm.OpWrite)
	mustCreateACLs(t, adm, acl)
	wantErrCode(t, "after create", produceCode(rc, "t"), noError)

	res, err := adm.DeleteACLs(context.Background(), kadm.NewACLs().Allow("User:bob").AllowHosts().Topics("t").
		ResourcePatternType(kadm.ACLPatternLiteral).Operations(kadm.OpWrite))
	if err != nil || len(res) != 1 || res[0].Err != nil || len(res[0].Deleted) != 1 {
		t.Fatalf("delete ACL: %v %+v", err, res)
	}
	wantErrCode(t, "after delete", produceCode(rc, "t"), kerr.TopicAuthorizationFailed)
}

// TestACLGroups: group APIs need READ (join, commit) or DESCRIBE (list,
// describe) on the group; ListGroups shows only the groups the principal
// may describe unless it may describe the cluster.
func TestACLGroups(t *testing.T) {
	e := startEnv(t, withAuthorizer())
	e.createTopic("t", 1, nil)
	adm := kadm.NewClient(e.as("admin"))
	mustCreateACLs(t, adm, kadm.NewACLs().Allow("User:carol").Topics("t").Operations(kadm.OpRead))
	ctx := context.Background()

	join := func() int16 {
		rc := e.rawAs("carol")
		req := kmsg.NewPtrJoinGroupRequest()
		req.SetVersion(4)
		req.Group, req.ProtocolType, req.SessionTimeoutMillis, req.RebalanceTimeoutMillis = "g1", "consumer", 10000, 10000
		p := kmsg.NewJoinGroupRequestProtocol()
		p.Name, p.Metadata = "range", []byte{0, 0, 0, 0, 0, 0, 0, 0}
		req.Protocols = append(req.Protocols, p)
		return rc.roundTrip(req).(*kmsg.JoinGroupResponse).ErrorCode
	}
	wantErrCode(t, "join without a group ACL", join(), kerr.GroupAuthorizationFailed)
	mustCreateACLs(t, adm, kadm.NewACLs().Allow("User:carol").Groups("g1").Operations(kadm.OpRead))
	// v4 asks a new member to rejoin with its id: it is past authorization.
	wantErrCode(t, "join with a group ACL", join(), kerr.MemberIDRequired)

	// A committed offset in g1 and one in g2 (by the super user).
	offsets := kadm.Offsets{}
	offsets.Add(kadm.Offset{Topic: "t", Partition: 0, At: 0, LeaderEpoch: -1})
	for _, g := range []string{"g1", "g2"} {
		if _, err := adm.CommitOffsets(ctx, g, offsets); err != nil {
			t.Fatalf("commit to %s: %v", g, err)
		}
	}
	carol := kadm.NewClient(e.as("carol"))
	listed, err := carol.ListGroups(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got := listed.Groups(); !slices.Equal(got, []string{"g1"}) {
		t.Fatalf("carol lists %v, want [g1]", got)
	}
	if listed, err = adm.ListGroups(ctx); err != nil || len(listed.Groups()) != 2 {
		t.Fatalf("admin lists %v (%v), want both groups", listed.Groups(), err)
	}
	if _, err := carol.CommitOffsets(ctx, "g2", offsets); !errors.Is(err, kerr.GroupAuthorizationFailed) {
		t.Fatalf("carol commits to g2: %v, want GROUP_AUTHORIZATION_FAILED", err)
	}
	resps, err := carol.CommitOffsets(ctx, "g1", offsets)
	if err != nil || resps.Error() != nil {
		t.Fatalf("carol commits to g1: %v %v", err, resps.Error())
	}
	if _, err := carol.DeleteGroup(ctx, "g1"); !errors.Is(err, kerr.GroupAuthorizationFailed) {
		t.Fatalf("carol deletes g1: %v, want GROUP_AUTHORIZATION_FAILED", err)
	}
}

// TestACLAPIValidation: CreateAcls refuses invalid bindings one by one
// with INVALID_REQUEST; DescribeAcls refuses a filter with UNKNOWN codes;
// describe and delete answer what they matched.
func TestACLAPIValidation(t *testing.T) {
	e := startEnv(t, withAuthorizer())
	rc := e.rawAs("admin")
	create := kmsg.NewPtrCreateACLsRequest()
	create.SetVersion(2)
	add := func(rt kmsg.ACLResourceType, name string, pt kmsg.ACLResourcePatternType, principal, host string, op kmsg.ACLOperation) {
		c := kmsg.NewCreateACLsRequestCreation()
		c.ResourceType, c.ResourceName, c.ResourcePatternType = rt, name, pt
		c.Principal, c.Host, c.Operation, c.PermissionType = principal, host, op, kmsg.ACLPermissionTypeAllow
		create.Creations = append(create.Creations, c)
	}
	add(kmsg.ACLResourceTypeTopic, "ok", kmsg.ACLResourcePatternTypeLiteral, "User:a", "0:0:0:0:0:0:0:1", kmsg.ACLOperationRead)
	add(kmsg.ACLResourceTypeTopic, "t", kmsg.ACLResourcePatternTypeMatch, "User:a", "*", kmsg.ACLOperationRead)
	add(kmsg.ACLResourceTypeCluster, "other", kmsg.ACLResourcePatternTypeLiteral, "User:a", "*", kmsg.ACLOperationAlter)
	add(kmsg.ACLResourceTypeTopic, "t", kmsg.ACLResourcePatternTypeLiteral, "alice", "*", kmsg.ACLOperationRead)
	add(kmsg.ACLResourceTypeTopic, "t", kmsg.ACLResourcePatternTypeLiteral, "User:a", "*", kmsg.ACLOperationAny)
	add(kmsg.ACLResourceTypeTopic, "", kmsg.ACLResourcePatternTypeLiteral, "User:a", "*", kmsg.ACLOperationRead)
	results := rc.roundTrip(create).(*kmsg.CreateACLsResponse).Results
	wantErrCode(t, "valid binding", results[0].ErrorCode, noError)
	for i, r := range results[1:] {
		wantErrCode(t, "invalid binding "+string(rune('1'+i)), r.ErrorCode, kerr.InvalidRequest)
		if r.ErrorMessage == nil {
			t.Errorf("invalid binding %d: no message", i+1)
		}
	}

	describe := kmsg.NewPtrDescribeACLsRequest()
	describe.SetVersion(3)
	describe.ResourceType, describe.ResourcePatternType = kmsg.ACLResourceTypeAny, kmsg.ACLResourcePatternTypeMatch
	describe.ResourceName = kmsg.StringPtr("ok")
	describe.Operation, describe.PermissionType = kmsg.ACLOperationAny, kmsg.ACLPermissionTypeAny
	described := rc.roundTrip(describe).(*kmsg.DescribeACLsResponse)
	if described.ErrorCode != 0 || len(described.Resources) != 1 || len(described.Resources[0].ACLs) != 1 ||
		described.Resources[0].ACLs[0].Host != "::1" {
		t.Fatalf("described %+v", described)
	}
	describe.Operation = kmsg.ACLOperationUnknown
	wantErrCode(t, "describe with an UNKNOWN operation", rc.roundTrip(describe).(*kmsg.DescribeACLsResponse).ErrorCode, kerr.InvalidRequest)

	del := kmsg.NewPtrDeleteACLsRequest()
	del.SetVersion(1)
	f := kmsg.NewDeleteACLsRequestFilter()
	f.ResourceType, f.ResourcePatternType = kmsg.ACLResourceTypeTopic, kmsg.ACLResourcePatternTypeAny
	f.Operation, f.PermissionType = kmsg.ACLOperationAny, kmsg.ACLPermissionTypeAny
	bad := f
	bad.PermissionType = kmsg.ACLPermissionTypeUnknown
	del.Filters = append(del.Filters, f, bad)
	deleted := rc.roundTrip(del).(*kmsg.DeleteACLsResponse).Results
	if deleted[0].ErrorCode != 0 || len(deleted[0].MatchingACLs) != 1 || deleted[0].MatchingACLs[0].ResourceName != "ok" {
		t.Fatalf("delete answered %+v", deleted[0])
	}
	wantErrCode(t, "delete with an UNKNOWN permission", deleted[1].ErrorCode, kerr.InvalidRequest)
	if left := e.b.DescribeACLs(broker.ACLFilter{ResourceType: kmsg.ACLResourceTypeAny, PatternType: kmsg.ACLResourcePatternTypeAny,
		Operation: kmsg.ACLOperationAny, Permission: kmsg.ACLPermissionTypeAny}); len(left) != 0 {
		t.Fatalf("left after delete: %v", left)
	}
}

// TestACLTransactionalAndIdempotent: InitProducerID needs WRITE on the
// transactional id, or for an idempotent producer IDEMPOTENT_WRITE on the
// cluster or WRITE on some topic.
func TestACLTransactionalAndIdempotent(t *testing.T) {
	e := startEnv(t, withAuthorizer())
	adm := kadm.NewClient(e.as("admin"))
	rc := e.rawAs("dan")
	initPID := func(txnID *string) int16 {
		req := kmsg.NewPtrInitProducerIDRequest()
		req.SetVersion(4)
		req.TransactionalID, req.TransactionTimeoutMillis = txnID, 10000
		req.ProducerID, req.ProducerEpoch = -1, -1
		return rc.roundTrip(req).(*kmsg.InitProducerIDResponse).ErrorCode
	}
	wantErrCode(t, "idempotent without ACLs", initPID(nil), kerr.ClusterAuthorizationFailed)
	wantErrCode(t, "transactional without ACLs", initPID(kmsg.StringPtr("tx")), kerr.TransactionalIDAuthorizationFailed)
	mustCreateACLs(t, adm, kadm.NewACLs().Allow("User:dan").Topics("dan-").ResourcePatternType(kadm.ACLPatternPrefixed).Operations(kadm.OpWrite))
	wantErrCode(t, "idempotent with WRITE on a prefix", initPID(nil), noError)
	mustCreateACLs(t, adm, kadm.NewACLs().Allow("User:dan").TransactionalIDs("tx").Operations(kadm.OpWrite))
	wantErrCode(t, "transactional with WRITE on the id", initPID(kmsg.StringPtr("tx")), noError)
}

// TestACLScramCredentials: describing SCRAM credentials needs DESCRIBE on
// the cluster and altering them ALTER, as in Kafka; a principal without
// them gets CLUSTER_AUTHORIZATION_FAILED and changes nothing, a super user
// manages users, and an ALTER grant on the cluster lets another principal.
func TestACLScramCredentials(t *testing.T) {
	e := startEnv(t, withAuthorizer())
	ctx := context.Background()
	bob := kadm.NewClient(e.as("bob"))
	admin := kadm.NewClient(e.as("admin"))

	if _, err := bob.DescribeUserSCRAMs(ctx); !errors.Is(err, kerr.ClusterAuthorizationFailed) {
		t.Fatalf("bob describes users: %v, want CLUSTER_AUTHORIZATION_FAILED", err)
	}
	up := kadm.UpsertSCRAM{User: "carol", Mechanism: kadm.ScramSha256, Iterations: 4096, Password: "carol-pw"}
	// kadm reports a request whose every result failed as its error.
	res, err := bob.AlterUserSCRAMs(ctx, nil, []kadm.UpsertSCRAM{up})
	if err == nil {
		err = res["carol"].Err
	}
	if !errors.Is(err, kerr.ClusterAuthorizationFailed) {
		t.Fatalf("bob creates carol: %v, want CLUSTER_AUTHORIZATION_FAILED", err)
	}
	if _, ok := e.b.ScramCredentialOf("carol", broker.ScramMechanism(1)); ok {
		t.Fatal("a refused AlterUserScramCredentials stored a credential")
	}

	res, err = admin.AlterUserSCRAMs(ctx, nil, []kadm.UpsertSCRAM{up})
	if err != nil || res["carol"].Err != nil {
		t.Fatalf("super user creates carol: %v %v", err, res["carol"].Err)
	}
	mustCreateACLs(t, admin, kadm.NewACLs().Allow("User:bob").Clusters().Operations(kadm.OpAlter))
	up.User = "dave"
	res, err = bob.AlterUserSCRAMs(ctx, nil, []kadm.UpsertSCRAM{up})
	if err != nil || res["dave"].Err != nil {
		t.Fatalf("bob with ALTER on the cluster creates dave: %v %v", err, res["dave"].Err)
	}
	// ALTER implies DESCRIBE.
	described, err := bob.DescribeUserSCRAMs(ctx)
	if err != nil || len(described) != 2 {
		t.Fatalf("bob with ALTER describes users: %v %v", described, err)
	}
}
