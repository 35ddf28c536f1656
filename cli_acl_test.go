package main

import (
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/chronik-stream/chronik/broker"
	"github.com/chronik-stream/chronik/kafka"
)

// TestACLCommands: chronik acl add, list and remove against a broker whose
// authorizer is on (the CLI, unauthenticated, is User:ANONYMOUS, made a
// super user here); the broker's own decisions show the ACLs took effect.
func TestACLCommands(t *testing.T) {
	addr, b := startBrokerWith(t, func(bc *broker.Config, _ *kafka.Config) {
		bc.Authorizer = broker.AuthorizerConfig{Enabled: true, SuperUsers: []string{"User:ANONYMOUS"}}
	})
	br := "--brokers=" + addr
	mayRead := func(topic string) bool {
		return b.Authorize("User:alice", "127.0.0.1", kmsg.ACLOperationRead, kmsg.ACLResourceTypeTopic, topic)
	}

	var created []ACLEntry
	decode(t, ok(t, "", "acl", "add", br, "--allow-principal", "User:alice", "--operation", "read", "--operation", "describe",
		"--topic", "orders-", "--resource-pattern-type", "prefixed", "--format", "json"), &created)
	if len(created) != 2 || created[0].Error != "" || created[0].PatternType != "prefixed" || created[0].Host != "*" {
		t.Fatalf("created %+v", created)
	}
	if r := ok(t, "", "acl", "add", br, "--deny-principal", "User:alice", "--operation", "read", "--topic", "orders-secret"); !strings.Contains(r.stdout, "created: User:alice deny read on topic orders-secret (literal)") {
		t.Errorf("add output %q", r.stdout)
	}
	ok(t, "", "acl", "add", br, "--allow-principal", "User:bob", "--operation", "all", "--group", "g", "--cluster")
	if !mayRead("orders-eu") || mayRead("orders-secret") || mayRead("payments") {
		t.Fatal("the ACLs added do not decide as expected")
	}

	var all []ACLEntry
	decode(t, ok(t, "", "acl", "list", br, "--format", "json"), &all)
	if len(all) != 5 {
		t.Fatalf("list: %+v", all)
	}
	var alice []ACLEntry
	decode(t, ok(t, "", "acl", "list", br, "--principal", "User:alice", "--topic", "orders-secret",
		"--resource-pattern-type", "match", "--format", "json"), &alice)
	if len(alice) != 3 {
		t.Fatalf("ACLs that apply to orders-secret for alice: %+v", alice)
	}
	if tab := ok(t, "", "acl", "list", br, "--cluster").stdout; !strings.HasPrefix(tab, "PRINCIPAL") || !strings.Contains(tab, "User:bob") || strings.Contains(tab, "alice") {
		t.Errorf("cluster ACL table:\n%s", tab)
	}

	var removed []ACLEntry
	decode(t, ok(t, "", "acl", "remove", br, "--deny-principal", "User:alice", "--operation", "read", "--topic", "orders-secret", "--format", "json"), &removed)
	if len(removed) != 1 || removed[0].Permission != "deny" || removed[0].ResourceName != "orders-secret" {
		t.Fatalf("removed %+v", removed)
	}
	if !mayRead("orders-secret") {
		t.Fatal("the removed DENY still applies")
	}
	if r := ok(t, "", "acl", "remove", br, "--deny-principal", "User:alice", "--operation", "read", "--topic", "orders-secret"); !strings.Contains(r.stdout, "no ACL matched") {
		t.Errorf("second remove: %q", r.stdout)
	}

	// Usage errors exit 2; what the broker refuses exits 1.
	for _, args := range [][]string{
		{"acl", "add", br, "--allow-principal", "User:a", "--topic", "t"},                        // no operation
		{"acl", "add", br, "--allow-principal", "User:a", "--operation", "read"},                 // no resource
		{"acl", "add", br, "--operation", "read", "--topic", "t"},                                // no principal
		{"acl", "add", br, "--allow-principal", "alice", "--operation", "read", "--topic", "t"},  // not Type:name
		{"acl", "add", br, "--allow-principal", "User:a", "--operation", "reed", "--topic", "t"}, // bad operation
		{"acl", "add", br, "--allow-principal", "User:a", "--operation", "read", "--topic", "t", "--resource-pattern-type", "match"},
		{"acl", "remove", br, "--topic", "t"}, // no principal
	} {
		if r := runCLI(t, "", args...); r.code != 2 {
			t.Errorf("chronik %s: exit %d, want 2 (stderr %q)", strings.Join(args, " "), r.code, r.stderr)
		}
	}
	r := runCLI(t, "", "acl", "add", br, "--allow-principal", "User:a", "--operation", "read", "--topic", "t", "--host", "example.com")
	if r.code != 1 || !strings.Contains(r.stderr, "INVALID_REQUEST") {
		t.Errorf("add with a host name: exit %d, stderr %q", r.code, r.stderr)
	}
}
