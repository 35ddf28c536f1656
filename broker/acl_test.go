package broker

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

const (
	rtTopic   = kmsg.ACLResourceTypeTopic
	rtGroup   = kmsg.ACLResourceTypeGroup
	rtCluster = kmsg.ACLResourceTypeCluster
	rtTxn     = kmsg.ACLResourceTypeTransactionalId
	lit       = kmsg.ACLResourcePatternTypeLiteral
	pre       = kmsg.ACLResourcePatternTypePrefixed
	allow     = kmsg.ACLPermissionTypeAllow
	deny      = kmsg.ACLPermissionTypeDeny
	opRead    = kmsg.ACLOperationRead
	opWrite   = kmsg.ACLOperationWrite
	opDesc    = kmsg.ACLOperationDescribe
	opAll     = kmsg.ACLOperationAll
)

func acl(rt kmsg.ACLResourceType, pt kmsg.ACLResourcePatternType, name, principal, host string, op kmsg.ACLOperation, perm kmsg.ACLPermissionType) ACL {
	return ACL{ResourceType: rt, PatternType: pt, ResourceName: name, Principal: principal, Host: host, Operation: op, Permission: perm}
}

// TestAuthorizeRules checks the decision rule by rule against Kafka's
// documented behaviour.
func TestAuthorizeRules(t *testing.T) {
	acls := []ACL{
		acl(rtTopic, pre, "orders-", "User:alice", "*", opRead, allow),
		acl(rtTopic, lit, "orders-secret", "User:alice", "*", opRead, deny),
		acl(rtTopic, lit, "*", "User:*", "*", opDesc, allow),
		acl(rtTopic, lit, "logs", "User:bob", "10.0.0.1", opWrite, allow),
		acl(rtTopic, lit, "audit", "User:carol", "*", kmsg.ACLOperationAlterConfigs, allow),
		acl(rtTopic, lit, "denied-read", "User:dave", "*", opAll, allow),
		acl(rtTopic, lit, "denied-read", "User:dave", "*", opRead, deny),
		acl(rtGroup, lit, "g", "User:alice", "*", opAll, allow),
		acl(rtCluster, lit, ClusterResourceName, "User:ops", "*", kmsg.ACLOperationAlter, allow),
	}
	x := newACLIndex(acls)
	on := newAuthzPolicy(AuthorizerConfig{Enabled: true, SuperUsers: []string{"User:root"}})
	open := newAuthzPolicy(AuthorizerConfig{Enabled: true, AllowEveryoneIfNoACLFound: true})
	off := newAuthzPolicy(AuthorizerConfig{})
	cases := []struct {
		p         *authzPolicy
		principal string
		host      string
		op        kmsg.ACLOperation
		rt        kmsg.ACLResourceType
		name      string
		want      bool
	}{
		{&on, "User:alice", "1.2.3.4", opRead, rtTopic, "orders-eu", true},                   // prefix
		{&on, "User:alice", "1.2.3.4", opWrite, rtTopic, "orders-eu", false},                 // other op
		{&on, "User:alice", "1.2.3.4", opDesc, rtTopic, "orders-eu", true},                   // READ implies DESCRIBE
		{&on, "User:alice", "1.2.3.4", opRead, rtTopic, "orders-secret", false},              // DENY beats ALLOW
		{&on, "User:alice", "1.2.3.4", opDesc, rtTopic, "orders-secret", true},               // DENY READ does not deny DESCRIBE
		{&on, "User:alice", "1.2.3.4", opRead, rtTopic, "orders", false},                     // shorter than the prefix
		{&on, "User:eve", "1.2.3.4", opDesc, rtTopic, "anything", true},                      // wildcard resource and principal
		{&on, "User:eve", "1.2.3.4", opRead, rtTopic, "anything", false},                     // named by an ACL: refused
		{&on, "User:bob", "10.0.0.1", opWrite, rtTopic, "logs", true},                        // host match
		{&on, "User:bob", "10.0.0.2", opWrite, rtTopic, "logs", false},                       // other host
		{&on, "User:carol", "::1", kmsg.ACLOperationDescribeConfigs, rtTopic, "audit", true}, // ALTER_CONFIGS implies DESCRIBE_CONFIGS
		{&on, "User:carol", "::1", kmsg.ACLOperationAlter, rtTopic, "audit", false},
		{&on, "User:dave", "::1", opWrite, rtTopic, "denied-read", true}, // ALL
		{&on, "User:dave", "::1", opRead, rtTopic, "denied-read", false}, // DENY READ beats ALLOW ALL
		{&on, "User:alice", "::1", opRead, rtGroup, "g", true},           // ALL on group
		{&on, "User:alice", "::1", opRead, rtGroup, "g2", false},         // no ACL: refused by default
		{&open, "User:alice", "::1", opRead, rtGroup, "g2", true},        // allow.everyone.if.no.acl.found
		{&open, "User:bob", "::1", opRead, rtGroup, "g", false},          // named by an ACL: not "no ACL found"
		{&on, "User:ops", "::1", kmsg.ACLOperationAlter, rtCluster, ClusterResourceName, true},
		{&on, "User:ops", "::1", kmsg.ACLOperationClusterAction, rtCluster, ClusterResourceName, false},
		{&on, "User:root", "::1", kmsg.ACLOperationClusterAction, rtCluster, ClusterResourceName, true}, // super user
		{&on, "User:root", "::1", opRead, rtTopic, "orders-secret", true},                               // super user beats DENY
		{&off, "User:eve", "::1", opRead, rtTopic, "orders-secret", true},                               // authorizer off
		{&on, "User:alice", "::1", opRead, rtTxn, "orders-", false},                                     // other resource type
	}
	for _, c := range cases {
		if got := x.authorize(c.p, c.principal, c.host, c.op, c.rt, c.name); got != c.want {
			t.Errorf("%s from %s: %s %s %q = %v, want %v", c.principal, c.host, c.op, c.rt, c.name, got, c.want)
		}
	}
}

// refAuthorize is the reference model: Kafka's rules written as plainly as
// possible, over a list.
func refAuthorize(acls []ACL, cfg AuthorizerConfig, principal, host string, op kmsg.ACLOperation, rt kmsg.ACLResourceType, name string) bool {
	if !cfg.Enabled || slices.Contains(cfg.SuperUsers, principal) {
		return true
	}
	var matching []ACL
	for _, a := range acls {
		if a.ResourceType != rt {
			continue
		}
		if (a.PatternType == lit && (a.ResourceName == name || a.ResourceName == "*")) ||
			(a.PatternType == pre && strings.HasPrefix(name, a.ResourceName)) {
			matching = append(matching, a)
		}
	}
	if len(matching) == 0 {
		return cfg.AllowEveryoneIfNoACLFound
	}
	exists := func(perm kmsg.ACLPermissionType, op kmsg.ACLOperation) bool {
		for _, a := range matching {
			if a.Permission == perm && (a.Principal == principal || a.Principal == "User:*") &&
				(a.Host == host || a.Host == "*") && (a.Operation == op || a.Operation == opAll) {
				return true
			}
		}
		return false
	}
	if exists(deny, op) {
		return false
	}
	ops := []kmsg.ACLOperation{op}
	switch op {
	case opDesc:
		ops = append(ops, opRead, opWrite, kmsg.ACLOperationDelete, kmsg.ACLOperationAlter)
	case kmsg.ACLOperationDescribeConfigs:
		ops = append(ops, kmsg.ACLOperationAlterConfigs)
	}
	return slices.ContainsFunc(ops, func(o kmsg.ACLOperation) bool { return exists(allow, o) })
}

// TestAuthorizeRandomAgainstModel compares the indexed decision with the
// reference model on random ACL sets and requests drawn from small
// alphabets (so that names, prefixes, principals and hosts collide).
func TestAuthorizeRandomAgainstModel(t *testing.T) {
	rng := rand.New(rand.NewPCG(14, 3))
	names := []string{"a", "ab", "abc", "b", "ba", "*", "abd", "kafka-cluster"}
	principals := []string{"User:x", "User:y", "User:*", "User:z"}
	hosts := []string{"*", "10.0.0.1", "10.0.0.2"}
	rts := []kmsg.ACLResourceType{rtTopic, rtGroup, rtTxn, rtCluster}
	ops := []kmsg.ACLOperation{opAll, opRead, opWrite, kmsg.ACLOperationCreate, kmsg.ACLOperationDelete,
		kmsg.ACLOperationAlter, opDesc, kmsg.ACLOperationClusterAction, kmsg.ACLOperationDescribeConfigs,
		kmsg.ACLOperationAlterConfigs, kmsg.ACLOperationIdempotentWrite}
	pick := func(n int) int { return rng.IntN(n) }
	for round := 0; round < 300; round++ {
		var acls []ACL
		for n := pick(12); n > 0; n-- {
			acls = append(acls, acl(rts[pick(len(rts))], []kmsg.ACLResourcePatternType{lit, pre}[pick(2)], names[pick(len(names))],
				principals[pick(len(principals))], hosts[pick(len(hosts))], ops[pick(len(ops))],
				[]kmsg.ACLPermissionType{allow, deny}[pick(2)]))
		}
		cfg := AuthorizerConfig{Enabled: pick(10) > 0, AllowEveryoneIfNoACLFound: pick(2) == 0}
		if pick(3) == 0 {
			cfg.SuperUsers = []string{principals[pick(3)]}
		}
		p := newAuthzPolicy(cfg)
		x := newACLIndex(acls)
		for q := 0; q < 200; q++ {
			principal := principals[pick(len(principals))]
			if principal == "User:*" {
				principal = "User:w" // requests come from real principals
			}
			host := hosts[1+pick(2)]
			op := ops[1+pick(len(ops)-1)] // requests name one operation
			rt, name := rts[pick(len(rts))], names[pick(len(names))]
			want := refAuthorize(acls, cfg, principal, host, op, rt, name)
			if got := x.authorize(&p, principal, host, op, rt, name); got != want {
				t.Fatalf("round %d: %s from %s %s %s %q = %v, model says %v\nconfig %+v\nacls %v",
					round, principal, host, op, rt, name, got, want, cfg, acls)
			}
		}
	}
}

func TestAuthorizeAllocationFree(t *testing.T) {
	x := newACLIndex([]ACL{
		acl(rtTopic, pre, "orders-", "User:alice", "*", opRead, allow),
		acl(rtTopic, lit, "*", "User:*", "*", opDesc, allow),
	})
	p := newAuthzPolicy(AuthorizerConfig{Enabled: true})
	name := strings.Repeat("orders-x", 4)
	if n := testing.AllocsPerRun(100, func() {
		x.authorize(&p, "User:alice", "127.0.0.1", opWrite, rtTopic, name)
	}); n != 0 {
		t.Fatalf("authorize allocates %v times per call", n)
	}
}

func BenchmarkAuthorize(b *testing.B) {
	var acls []ACL
	for i := range 1000 {
		acls = append(acls, acl(rtTopic, lit, fmt.Sprintf("topic-%d", i), fmt.Sprintf("User:u%d", i%50), "*", opWrite, allow))
		acls = append(acls, acl(rtTopic, pre, fmt.Sprintf("team-%d-", i), fmt.Sprintf("User:u%d", i%50), "*", opWrite, allow))
	}
	x := newACLIndex(acls)
	p := newAuthzPolicy(AuthorizerConfig{Enabled: true})
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		x.authorize(&p, "User:u7", "127.0.0.1", opWrite, rtTopic, "team-507-events")
	}
}

func TestParseSuperUsers(t *testing.T) {
	for in, want := range map[string][]string{
		"":                                 nil,
		"User:admin":                       {"User:admin"},
		"User:a;User:b":                    {"User:a", "User:b"},
		"User:a, User:b":                   {"User:a", "User:b"},
		"User:CN=alice,O=acme;User:b":      {"User:CN=alice,O=acme", "User:b"},
		"User:CN=alice,O=acme, User:b ; ;": {"User:CN=alice,O=acme", "User:b"},
		"User:CN=alice,OU=x:y,User:bob":    {"User:CN=alice,OU=x:y", "User:bob"},
	} {
		if got := ParseSuperUsers(in); !slices.Equal(got, want) {
			t.Errorf("ParseSuperUsers(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestACLFilterMatches(t *testing.T) {
	a := acl(rtTopic, pre, "orders-", "User:alice", "*", opRead, allow)
	w := acl(rtTopic, lit, "*", "User:alice", "*", opRead, allow)
	any := ACLFilter{ResourceType: kmsg.ACLResourceTypeAny, PatternType: kmsg.ACLResourcePatternTypeAny,
		Operation: kmsg.ACLOperationAny, Permission: kmsg.ACLPermissionTypeAny}
	with := func(change func(*ACLFilter)) ACLFilter { f := any; change(&f); return f }
	for _, c := range []struct {
		f    ACLFilter
		a    ACL
		want bool
	}{
		{any, a, true},
		{with(func(f *ACLFilter) { f.ResourceName = "orders-" }), a, true},
		{with(func(f *ACLFilter) { f.ResourceName = "orders-eu" }), a, false},
		{with(func(f *ACLFilter) { f.ResourceName = "orders-eu"; f.PatternType = kmsg.ACLResourcePatternTypeMatch }), a, true},
		{with(func(f *ACLFilter) { f.ResourceName = "orders-eu"; f.PatternType = kmsg.ACLResourcePatternTypeMatch }), w, true},
		{with(func(f *ACLFilter) { f.ResourceName = "order"; f.PatternType = kmsg.ACLResourcePatternTypeMatch }), a, false},
		{with(func(f *ACLFilter) { f.PatternType = lit }), a, false},
		{with(func(f *ACLFilter) { f.ResourceType = rtGroup }), a, false},
		{with(func(f *ACLFilter) { f.Principal = "User:bob" }), a, false},
		{with(func(f *ACLFilter) { f.Host = "10.0.0.1" }), a, false},
		{with(func(f *ACLFilter) { f.Operation = opWrite }), a, false},
		{with(func(f *ACLFilter) { f.Permission = deny }), a, false},
		{with(func(f *ACLFilter) {
			f.Permission = allow
			f.Operation = opRead
			f.Principal = "User:alice"
			f.Host = "*"
		}), a, true},
	} {
		if got := c.f.Matches(c.a); got != c.want {
			t.Errorf("%+v matches %v = %v, want %v", c.f, c.a, got, c.want)
		}
	}
	if err := (ACLFilter{}).Validate(); !errors.Is(err, kerr.InvalidRequest) {
		t.Errorf("filter of UNKNOWNs: %v, want INVALID_REQUEST", err)
	}
	if err := any.Validate(); err != nil {
		t.Errorf("filter of ANYs: %v", err)
	}
}

func TestValidACL(t *testing.T) {
	good := acl(rtTopic, lit, "t", "User:a", "*", opRead, allow)
	if err := validACL(good); err != nil {
		t.Fatal(err)
	}
	for what, change := range map[string]func(*ACL){
		"resource type any":    func(a *ACL) { a.ResourceType = kmsg.ACLResourceTypeAny },
		"delegation token":     func(a *ACL) { a.ResourceType = kmsg.ACLResourceTypeDelegationToken },
		"pattern match":        func(a *ACL) { a.PatternType = kmsg.ACLResourcePatternTypeMatch },
		"operation any":        func(a *ACL) { a.Operation = kmsg.ACLOperationAny },
		"operation undefined":  func(a *ACL) { a.Operation = 99 },
		"permission any":       func(a *ACL) { a.Permission = kmsg.ACLPermissionTypeAny },
		"empty name":           func(a *ACL) { a.ResourceName = "" },
		"cluster name":         func(a *ACL) { a.ResourceType = rtCluster; a.ResourceName = "c" },
		"principal no type":    func(a *ACL) { a.Principal = "alice" },
		"principal empty name": func(a *ACL) { a.Principal = "User:" },
		"host name":            func(a *ACL) { a.Host = "example.com" },
		"host not canonical":   func(a *ACL) { a.Host = "0:0:0:0:0:0:0:1" },
		"host empty":           func(a *ACL) { a.Host = "" },
		"name not UTF-8":       func(a *ACL) { a.ResourceName = "\xff" },
	} {
		a := good
		change(&a)
		if err := validACL(a); !errors.Is(err, kerr.InvalidRequest) {
			t.Errorf("%s: %v, want INVALID_REQUEST", what, err)
		}
	}
	if CanonicalHost("0:0:0:0:0:0:0:1") != "::1" || CanonicalHost("*") != "*" {
		t.Error("CanonicalHost")
	}
}

// TestACLsPersistAndApply: ACLs created and deleted through the broker
// take effect at once, survive a restart (replay and a compacting
// snapshot), and deletes answer what each filter matched.
func TestACLsPersistAndApply(t *testing.T) {
	defer func(old uint64) { metaCompactThreshold = old }(metaCompactThreshold)
	metaCompactThreshold = 2
	ctx := context.Background()
	b := openBroker(t, Config{Authorizer: AuthorizerConfig{Enabled: true}})
	if b.Authorize("User:alice", "::1", opRead, rtTopic, "orders-1") {
		t.Fatal("allowed before any ACL")
	}
	created := []ACL{
		acl(rtTopic, pre, "orders-", "User:alice", "*", opRead, allow),
		acl(rtTopic, lit, "orders-1", "User:alice", "*", opRead, deny),
		acl(rtGroup, lit, "g", "User:alice", "*", opRead, allow),
		acl(rtTopic, lit, "", "User:alice", "*", opRead, allow), // invalid
	}
	errs := b.CreateACLs(ctx, created)
	for i, err := range errs[:3] {
		if err != nil {
			t.Fatalf("create %v: %v", created[i], err)
		}
	}
	if !errors.Is(errs[3], kerr.InvalidRequest) {
		t.Fatalf("create with empty name: %v", errs[3])
	}
	// Creating one again is a no-op.
	if errs := b.CreateACLs(ctx, created[:1]); errs[0] != nil {
		t.Fatal(errs[0])
	}
	check := func(b *Broker, name string, want bool) {
		t.Helper()
		if got := b.Authorize("User:alice", "::1", opRead, rtTopic, name); got != want {
			t.Fatalf("read %s = %v, want %v", name, got, want)
		}
	}
	check(b, "orders-2", true)
	check(b, "orders-1", false)
	all := ACLFilter{ResourceType: kmsg.ACLResourceTypeAny, PatternType: kmsg.ACLResourcePatternTypeAny,
		Operation: kmsg.ACLOperationAny, Permission: kmsg.ACLPermissionTypeAny}
	if got := b.DescribeACLs(all); len(got) != 3 {
		t.Fatalf("described %v", got)
	}

	b = reopen(t, b)
	check(b, "orders-2", true)
	check(b, "orders-1", false)
	b = reopen(t, b) // the second open replays the snapshot the first wrote
	if got := b.DescribeACLs(all); len(got) != 3 {
		t.Fatalf("after restarts, described %v", got)
	}

	denies := all
	denies.Permission = deny
	groups := all
	groups.ResourceType = rtGroup
	matched, errs := b.DeleteACLs(ctx, []ACLFilter{denies, groups, denies, {}})
	if errs[0] != nil || errs[1] != nil || errs[2] != nil || !errors.Is(errs[3], kerr.InvalidRequest) {
		t.Fatalf("delete errors %v", errs)
	}
	if len(matched[0]) != 1 || matched[0][0] != created[1] || len(matched[1]) != 1 || len(matched[2]) != 1 {
		t.Fatalf("delete matched %v", matched)
	}
	check(b, "orders-1", true)
	b = reopen(t, b)
	check(b, "orders-1", true)
	if got := b.DescribeACLs(all); len(got) != 1 || got[0] != created[0] {
		t.Fatalf("after delete and restart, described %v", got)
	}
}

// FuzzACLRecord feeds hostile metadata records to the state: nothing may
// panic, every binding the state holds must be valid, and the state must
// survive its own snapshot unchanged (what a restart would rebuild).
func FuzzACLRecord(f *testing.F) {
	f.Add(encodeMetaRecord(metaRecord{Type: metaACLsCreated, ACLs: toMetaACLs([]ACL{acl(rtTopic, pre, "o-", "User:a", "*", opRead, allow)})}))
	f.Add(encodeMetaRecord(metaRecord{Type: metaACLsDeleted, ACLs: toMetaACLs([]ACL{acl(rtTopic, pre, "o-", "User:a", "*", opRead, allow)})}))
	f.Add(encodeMetaRecord(metaRecord{Type: metaSnapshot, ACLs: toMetaACLs([]ACL{acl(rtCluster, lit, ClusterResourceName, "User:a", "::1", opAll, deny)})}))
	f.Add([]byte(`{"v":1,"type":"acls_created","acls":[{"rt":2,"name":"\ud800","pattern":3,"principal":"User:a","host":"*","op":3,"perm":3}]}`))
	f.Add([]byte(`{"v":1,"type":"acls_created","acls":[{"rt":127,"name":"x","pattern":-1,"principal":":","host":"::ffff:1.2.3.4","op":1,"perm":1}]}`))
	f.Add([]byte(`{"v":1,"type":"acls_created","acls":null}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		s := newMetaState()
		s.apply(metaRecord{Type: metaACLsCreated, ACLs: toMetaACLs([]ACL{acl(rtTopic, lit, "t", "User:a", "*", opRead, allow)})})
		r, err := decodeMetaRecord(b)
		if err != nil {
			return
		}
		s.apply(r)
		for a := range s.acls {
			if err := validACL(a); err != nil {
				t.Fatalf("state holds an invalid binding %v: %v", a, err)
			}
		}
		again, err := decodeMetaRecord(encodeMetaRecord(s.snapshot()))
		if err != nil {
			t.Fatal(err)
		}
		fresh := newMetaState()
		if err := fresh.apply(again); err != nil {
			t.Fatalf("own snapshot does not apply: %v", err)
		}
		if len(fresh.acls) != len(s.acls) {
			t.Fatalf("snapshot holds %d bindings, state %d", len(fresh.acls), len(s.acls))
		}
		for a := range s.acls {
			if _, ok := fresh.acls[a]; !ok {
				t.Fatalf("snapshot lost %v", a)
			}
		}
		newACLIndex(slices.SortedFunc(func(yield func(ACL) bool) {
			for a := range s.acls {
				if !yield(a) {
					return
				}
			}
		}, compareACLs)).authorize(&authzPolicy{enabled: true}, "User:a", "::1", opRead, rtTopic, "t")
	})
}

// TestAuthorizeAny checks Kafka's authorizeByResourceType rules.
func TestAuthorizeAny(t *testing.T) {
	on := newAuthzPolicy(AuthorizerConfig{Enabled: true, SuperUsers: []string{"User:root"}})
	for _, c := range []struct {
		acls []ACL
		want bool
	}{
		{nil, false},
		{[]ACL{acl(rtTopic, pre, "a-", "User:u", "*", opWrite, allow)}, true},
		{[]ACL{acl(rtTopic, lit, "t", "User:*", "*", opAll, allow)}, true},
		{[]ACL{acl(rtTopic, lit, "t", "User:u", "*", opRead, allow)}, false},         // other operation
		{[]ACL{acl(rtTopic, lit, "t", "User:u", "10.0.0.9", opWrite, allow)}, false}, // other host
		{[]ACL{acl(rtGroup, lit, "t", "User:u", "*", opWrite, allow)}, false},        // other type
		{[]ACL{acl(rtTopic, lit, "t", "User:u", "*", opWrite, allow), acl(rtTopic, lit, "t", "User:u", "*", opWrite, deny)}, false},
		{[]ACL{acl(rtTopic, lit, "ab", "User:u", "*", opWrite, allow), acl(rtTopic, pre, "a", "User:u", "*", opWrite, deny)}, false},
		{[]ACL{acl(rtTopic, pre, "ab", "User:u", "*", opWrite, allow), acl(rtTopic, pre, "abc", "User:u", "*", opWrite, deny)}, true},
		{[]ACL{acl(rtTopic, lit, "*", "User:u", "*", opWrite, allow), acl(rtTopic, lit, "x", "User:u", "*", opWrite, deny)}, true},
		{[]ACL{acl(rtTopic, pre, "a", "User:u", "*", opWrite, allow), acl(rtTopic, lit, "*", "User:u", "*", opWrite, deny)}, false},
	} {
		if got := newACLIndex(c.acls).authorizeAny(&on, "User:u", "127.0.0.1", opWrite, rtTopic); got != c.want {
			t.Errorf("%v: %v, want %v", c.acls, got, c.want)
		}
	}
	if !newACLIndex(nil).authorizeAny(&on, "User:root", "127.0.0.1", opWrite, rtTopic) {
		t.Error("super user refused")
	}
}

// TestAuthorizeNodePrincipal: a Node: principal (another node of the
// cluster, proven by its cluster-CA certificate) is allowed everything,
// even where a DENY names it or every user; principals that merely look
// like one are not.
func TestAuthorizeNodePrincipal(t *testing.T) {
	b := openBroker(t, Config{Authorizer: AuthorizerConfig{Enabled: true, SuperUsers: []string{"User:admin"}}})
	ctx := context.Background()
	for _, err := range b.CreateACLs(ctx, []ACL{
		acl(rtCluster, lit, ClusterResourceName, "User:*", "*", opAll, deny),
		acl(rtTopic, lit, "*", "Node:2", "*", opAll, deny),
		acl(rtTopic, lit, "*", "User:Node:1", "*", opAll, allow),
	}) {
		if err != nil {
			t.Fatal(err)
		}
	}
	if got := NodePrincipal(2); got != "Node:2" {
		t.Fatalf("NodePrincipal(2) = %q", got)
	}
	for _, c := range []struct {
		principal string
		op        kmsg.ACLOperation
		rt        kmsg.ACLResourceType
		name      string
		want      bool
	}{
		{"Node:1", kmsg.ACLOperationClusterAction, rtCluster, ClusterResourceName, true},
		{"Node:2", opWrite, rtTopic, "t", true}, // a DENY naming it has no effect
		{"Node:3", opRead, rtGroup, "g", true},  // no ACL at all
		{"Node:1", kmsg.ACLOperationWrite, rtTxn, "tx", true},
		{"User:Node:1", kmsg.ACLOperationClusterAction, rtCluster, ClusterResourceName, false}, // a SASL user named "Node:1"
		{"User:Node:1", opRead, rtTopic, "t", true},                                            // ... is just that user
		{"User:CN=Node:1", kmsg.ACLOperationClusterAction, rtCluster, ClusterResourceName, false},
		{"node:1", kmsg.ACLOperationClusterAction, rtCluster, ClusterResourceName, false},
		{"Nodes:1", kmsg.ACLOperationClusterAction, rtCluster, ClusterResourceName, false},
		{"Node", kmsg.ACLOperationClusterAction, rtCluster, ClusterResourceName, false},
		{"Node:", kmsg.ACLOperationClusterAction, rtCluster, ClusterResourceName, false},
		{"User:ANONYMOUS", kmsg.ACLOperationClusterAction, rtCluster, ClusterResourceName, false},
		{"User:admin", kmsg.ACLOperationClusterAction, rtCluster, ClusterResourceName, true},
	} {
		if got := b.Authorize(c.principal, "127.0.0.1", c.op, c.rt, c.name); got != c.want {
			t.Errorf("Authorize(%q, %s, %s %q) = %v, want %v", c.principal, c.op, c.rt, c.name, got, c.want)
		}
	}
	if !b.AuthorizeAny("Node:1", "127.0.0.1", opWrite, rtTopic) {
		t.Error("AuthorizeAny refused a node")
	}
}
