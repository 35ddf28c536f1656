package broker

// The authorizer: Kafka's ACL decision (StandardAuthorizer's rules) as a
// pure function of the policy (AuthorizerConfig), the bindings in force
// (an immutable aclIndex, replaced whenever the metadata log changes them)
// and the request (principal, client host, operation, resource). It does
// no I/O, takes no lock and allocates nothing, so handlers call it per
// topic and per request: a changed ACL applies to the very next request of
// every open connection.

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// AuthorizerConfig is the authorizer's policy (Kafka's authorizer.class.name,
// super.users and allow.everyone.if.no.acl.found).
type AuthorizerConfig struct {
	// Enabled turns ACL checks on. Off (the default), Authorize allows
	// everything.
	Enabled bool
	// SuperUsers are principals ("User:admin") allowed everything,
	// whatever the ACLs say.
	SuperUsers []string
	// AllowEveryoneIfNoACLFound allows an operation on a resource that no
	// ACL names at all (for any principal). Off, such a resource is
	// refused to everyone but super users.
	AllowEveryoneIfNoACLFound bool
}

// authzPolicy is AuthorizerConfig made ready for lookups.
type authzPolicy struct {
	enabled      bool
	allowIfNoACL bool
	superUsers   map[string]struct{}
}

func newAuthzPolicy(c AuthorizerConfig) authzPolicy {
	p := authzPolicy{enabled: c.Enabled, allowIfNoACL: c.AllowEveryoneIfNoACLFound, superUsers: make(map[string]struct{})}
	for _, u := range c.SuperUsers {
		p.superUsers[u] = struct{}{}
	}
	return p
}

// ParseSuperUsers splits a super users setting into principals. Kafka
// separates them with ';'; a ',' also separates when what follows starts
// a principal ("Type:"), so that certificate principals such as
// "User:CN=alice,O=acme" stay whole. Blanks around each are dropped.
func ParseSuperUsers(s string) []string {
	var out []string
	for _, part := range strings.Split(s, ";") {
		start := 0
		for i := 0; i < len(part); i++ {
			if part[i] == ',' && startsPrincipal(strings.TrimLeft(part[i+1:], " \t")) {
				out = appendPrincipal(out, part[start:i])
				start = i + 1
			}
		}
		out = appendPrincipal(out, part[start:])
	}
	return out
}

// startsPrincipal reports whether s begins with a principal type and its
// colon: letters, then ':'.
func startsPrincipal(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == ':':
			return i > 0
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z':
		default:
			return false
		}
	}
	return false
}

func appendPrincipal(out []string, p string) []string {
	if p = strings.TrimSpace(p); p != "" {
		out = append(out, p)
	}
	return out
}

// ValidateSuperUsers checks each super user is a principal ("Type:name").
func ValidateSuperUsers(users []string) error {
	for _, u := range users {
		if validPrincipal(u) != nil {
			return fmt.Errorf("%q is not a principal of the form Type:name (e.g. User:admin)", u)
		}
	}
	return nil
}

// aclEntry is one binding's entry, as the index keeps it under its
// resource pattern.
type aclEntry struct {
	principal string
	host      string
	op        kmsg.ACLOperation
	allow     bool
}

// resourceACLs are the bindings of one resource type: literal patterns by
// name (the wildcard "*" among them) and prefixed patterns by prefix, with
// the distinct prefix lengths in ascending order, so that finding every
// prefix of a name is one map lookup per length, of a substring: no
// allocation, no scan of unrelated prefixes.
type resourceACLs struct {
	literal    map[string][]aclEntry
	prefixed   map[string][]aclEntry
	prefixLens []int
}

// aclIndex is the bindings in force, indexed for Authorize. Immutable
// once built.
type aclIndex struct {
	acls   []ACL // every binding, sorted (DescribeACLs)
	byType [kmsg.ACLResourceTypeUser + 1]resourceACLs
}

// newACLIndex indexes valid bindings (as validACL checks).
func newACLIndex(acls []ACL) *aclIndex {
	x := &aclIndex{acls: acls}
	for _, a := range acls {
		if int(a.ResourceType) < 0 || int(a.ResourceType) >= len(x.byType) {
			continue
		}
		r := &x.byType[a.ResourceType]
		e := aclEntry{principal: a.Principal, host: a.Host, op: a.Operation, allow: a.Permission == kmsg.ACLPermissionTypeAllow}
		switch a.PatternType {
		case kmsg.ACLResourcePatternTypeLiteral:
			if r.literal == nil {
				r.literal = make(map[string][]aclEntry)
			}
			r.literal[a.ResourceName] = append(r.literal[a.ResourceName], e)
		case kmsg.ACLResourcePatternTypePrefixed:
			if r.prefixed == nil {
				r.prefixed = make(map[string][]aclEntry)
			}
			if _, ok := r.prefixed[a.ResourceName]; !ok {
				if n := len(a.ResourceName); !slices.Contains(r.prefixLens, n) {
					r.prefixLens = append(r.prefixLens, n)
				}
			}
			r.prefixed[a.ResourceName] = append(r.prefixed[a.ResourceName], e)
		}
	}
	for i := range x.byType {
		slices.Sort(x.byType[i].prefixLens)
	}
	return x
}

// aclMatch accumulates what the bindings of a resource say about one
// request.
type aclMatch struct {
	found bool // some binding names the resource (any principal)
	allow bool
	deny  bool
}

// scan folds the entries of one pattern into m.
func (m *aclMatch) scan(entries []aclEntry, principal, host string, op kmsg.ACLOperation) {
	if len(entries) == 0 {
		return
	}
	m.found = true
	for i := range entries {
		e := &entries[i]
		if e.principal != principal && e.principal != WildcardPrincipal {
			continue
		}
		if e.host != WildcardHost && e.host != host {
			continue
		}
		if !entryCovers(e, op) {
			continue
		}
		if e.allow {
			m.allow = true
		} else {
			m.deny = true
			return
		}
	}
}

// entryCovers reports whether an entry's operation applies to op: ALL
// covers everything; an ALLOW of READ, WRITE, DELETE or ALTER also allows
// DESCRIBE, and of ALTER_CONFIGS also DESCRIBE_CONFIGS. The implication is
// for ALLOW only: a DENY of READ does not deny DESCRIBE (Kafka's rule).
func entryCovers(e *aclEntry, op kmsg.ACLOperation) bool {
	if e.op == kmsg.ACLOperationAll || e.op == op {
		return true
	}
	if !e.allow {
		return false
	}
	switch op {
	case kmsg.ACLOperationDescribe:
		switch e.op {
		case kmsg.ACLOperationRead, kmsg.ACLOperationWrite, kmsg.ACLOperationDelete, kmsg.ACLOperationAlter:
			return true
		}
	case kmsg.ACLOperationDescribeConfigs:
		return e.op == kmsg.ACLOperationAlterConfigs
	}
	return false
}

// NodePrincipalType is the principal type of another node of this
// cluster calling a Kafka listener (transaction markers, KIP-890
// verifications): "Node:<id>". Only a TLS client certificate signed by the
// cluster CA and naming a node id of the cluster gets it (kafka's
// listener); SASL and client certificates make "User:" principals only,
// so no client can claim it. Such a principal is allowed everything, as
// Kafka's inter-broker principal is a super user: it is the cluster's own
// traffic, and ACLs naming a Node: principal have no effect.
const NodePrincipalType = "Node"

// NodePrincipal is the principal of node id: "Node:<id>".
func NodePrincipal(id uint64) string { return NodePrincipalType + ":" + strconv.FormatUint(id, 10) }

// IsNodePrincipal reports whether principal is of type Node.
func IsNodePrincipal(principal string) bool {
	return len(principal) > len(NodePrincipalType)+1 && principal[len(NodePrincipalType)] == ':' &&
		principal[:len(NodePrincipalType)] == NodePrincipalType
}

// authorize is the decision: nodes of the cluster (Node: principals) and
// super users may do anything; otherwise a
// matching DENY refuses, else a matching ALLOW allows, else a resource that
// some binding names is refused, and one that none names is allowed only
// with allowIfNoACL. Bindings match the resource by literal name, the
// literal wildcard "*" or a prefix of the name; the principal itself or
// User:*; the host itself or "*".
func (x *aclIndex) authorize(p *authzPolicy, principal, host string, op kmsg.ACLOperation, rt kmsg.ACLResourceType, name string) bool {
	if !p.enabled {
		return true
	}
	if IsNodePrincipal(principal) {
		return true
	}
	if _, ok := p.superUsers[principal]; ok {
		return true
	}
	if int(rt) < 0 || int(rt) >= len(x.byType) {
		return false
	}
	r := &x.byType[rt]
	var m aclMatch
	m.scan(r.literal[name], principal, host, op)
	if name != WildcardResource && !m.deny {
		m.scan(r.literal[WildcardResource], principal, host, op)
	}
	for _, n := range r.prefixLens {
		if n > len(name) || m.deny {
			break
		}
		m.scan(r.prefixed[name[:n]], principal, host, op)
	}
	switch {
	case m.deny:
		return false
	case m.allow:
		return true
	case m.found:
		return false
	}
	return p.allowIfNoACL
}

// Authorize reports whether principal, connected from host (an IP in Go's
// form, as the connection reports it), may perform op on the resource of
// type rt named name (ClusterResourceName for the cluster). It is the whole
// decision (see aclIndex.authorize) and allows everything when the
// authorizer is off. Cheap and allocation-free: call it per resource.
func (b *Broker) Authorize(principal, host string, op kmsg.ACLOperation, rt kmsg.ACLResourceType, name string) bool {
	if !b.policy.enabled {
		return true
	}
	return b.authz.Load().authorize(&b.policy, principal, host, op, rt, name)
}

// AuthorizerEnabled reports whether ACLs are checked (Config.Authorizer).
func (b *Broker) AuthorizerEnabled() bool { return b.policy.enabled }

// AuthorizeAny reports whether principal may perform op on some resource
// of type rt (Kafka's Authorizer.authorizeByResourceType, KIP-679: an
// idempotent producer needs WRITE on any topic). As Kafka's default: a
// request allowed on an arbitrary literal name (super users, or no ACLs
// with AllowEveryoneIfNoACLFound) is allowed; otherwise some ALLOW binding
// for the principal (or User:*), host and op (or ALL) must exist that no
// DENY binding dominates: a DENY of the literal wildcard denies all; a
// literal ALLOW is dominated by a DENY of the same literal name, and any
// ALLOW by a prefixed DENY that is a prefix of its name. Not for the hot
// path: it scans the bindings of rt.
func (b *Broker) AuthorizeAny(principal, host string, op kmsg.ACLOperation, rt kmsg.ACLResourceType) bool {
	if !b.policy.enabled {
		return true
	}
	return b.authz.Load().authorizeAny(&b.policy, principal, host, op, rt)
}

func (x *aclIndex) authorizeAny(p *authzPolicy, principal, host string, op kmsg.ACLOperation, rt kmsg.ACLResourceType) bool {
	if x.authorize(p, principal, host, op, rt, "hardcode") {
		return true
	}
	var allowLiteral, allowPrefixed []string
	denyLiteral, denyPrefixed := map[string]bool{}, map[string]bool{}
	for _, a := range x.acls {
		if a.ResourceType != rt || (a.Host != WildcardHost && a.Host != host) ||
			(a.Principal != principal && a.Principal != WildcardPrincipal) ||
			(a.Operation != op && a.Operation != kmsg.ACLOperationAll) {
			continue
		}
		literal := a.PatternType == kmsg.ACLResourcePatternTypeLiteral
		switch {
		case a.Permission == kmsg.ACLPermissionTypeDeny && literal && a.ResourceName == WildcardResource:
			return false
		case a.Permission == kmsg.ACLPermissionTypeDeny && literal:
			denyLiteral[a.ResourceName] = true
		case a.Permission == kmsg.ACLPermissionTypeDeny:
			denyPrefixed[a.ResourceName] = true
		case literal && a.ResourceName == WildcardResource:
			return true
		case literal:
			allowLiteral = append(allowLiteral, a.ResourceName)
		default:
			allowPrefixed = append(allowPrefixed, a.ResourceName)
		}
	}
	dominated := func(name string) bool {
		for i := 1; i <= len(name); i++ {
			if denyPrefixed[name[:i]] {
				return true
			}
		}
		return false
	}
	for _, name := range allowLiteral {
		if !denyLiteral[name] && !dominated(name) {
			return true
		}
	}
	for _, name := range allowPrefixed {
		if !dominated(name) {
			return true
		}
	}
	return false
}
