package broker

// ACLs: the bindings stored in the metadata log (records acls_created and
// acls_deleted, carried in snapshots, so they replicate in cluster mode),
// the admin calls that change them, and the filters that select them, with
// Kafka's semantics (AclBinding, AclBindingFilter). The decision itself is
// in acl_authorizer.go.

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// ClusterResourceName is the only name of the CLUSTER resource (Kafka's
// "kafka-cluster").
const ClusterResourceName = "kafka-cluster"

// WildcardPrincipal matches every principal in an ACL ("User:*").
const WildcardPrincipal = "User:*"

// WildcardResource is the literal resource name that matches every
// resource of its type; WildcardHost matches every client address.
const (
	WildcardResource = "*"
	WildcardHost     = "*"
)

// maxACLsPerRecord bounds one acls_created or acls_deleted record: a large
// CreateAcls or DeleteAcls is split into several records.
const maxACLsPerRecord = 1000

// ACL is one binding, as Kafka's AclBinding: a resource pattern and an
// access control entry. Stored ACLs are always valid (validACL).
type ACL struct {
	ResourceType kmsg.ACLResourceType
	ResourceName string
	PatternType  kmsg.ACLResourcePatternType // LITERAL or PREFIXED when stored
	Principal    string                      // "User:alice" or "User:*"
	Host         string                      // "*" or an IP
	Operation    kmsg.ACLOperation
	Permission   kmsg.ACLPermissionType
}

// ACLFilter selects ACLs, as Kafka's AclBindingFilter: ResourceType ANY,
// PatternType ANY, Operation ANY, Permission ANY and an empty
// ResourceName, Principal or Host match everything. PatternType MATCH
// selects the ACLs that would apply to the resource named: the literal
// one, the literal wildcard "*" and every prefix of the name.
type ACLFilter struct {
	ResourceType kmsg.ACLResourceType
	ResourceName string // "" (Kafka's null): any
	PatternType  kmsg.ACLResourcePatternType
	Principal    string // "": any
	Host         string // "": any
	Operation    kmsg.ACLOperation
	Permission   kmsg.ACLPermissionType
}

// String is the binding as kafka-acls.sh prints it, for messages.
func (a ACL) String() string {
	return fmt.Sprintf("(%s %s %s: %s %s %s from %s)", a.ResourceType, a.PatternType, a.ResourceName,
		a.Principal, a.Permission, a.Operation, a.Host)
}

// invalidACL wraps INVALID_REQUEST, which CreateAcls answers for a binding
// it refuses.
func invalidACL(format string, args ...any) error {
	return fmt.Errorf("%s: %w", fmt.Sprintf(format, args...), kerr.InvalidRequest)
}

// supportedResourceType reports whether ACLs may name resources of type
// rt: the ones Chronik checks (delegation tokens and users are not).
func supportedResourceType(rt kmsg.ACLResourceType) bool {
	switch rt {
	case kmsg.ACLResourceTypeTopic, kmsg.ACLResourceTypeGroup, kmsg.ACLResourceTypeCluster, kmsg.ACLResourceTypeTransactionalId:
		return true
	}
	return false
}

// concreteOperation reports whether op may appear in a binding: ALL or a
// single operation (not ANY, not UNKNOWN, not an undefined code).
func concreteOperation(op kmsg.ACLOperation) bool {
	return op >= kmsg.ACLOperationAll && op <= kmsg.ACLOperationDescribeTokens
}

// validACL checks a binding as CreateAcls does (and every stored record is
// checked again on replay, so no record can create one that this would
// refuse). Strings must be valid UTF-8 so that they survive the JSON of
// the metadata log unchanged; a host must be "*" or an IP in Go's
// canonical form (what the connection reports), so that it can match.
func validACL(a ACL) error {
	switch {
	case !supportedResourceType(a.ResourceType):
		return invalidACL("resource type %s is not supported (topic, group, cluster, transactional id)", a.ResourceType)
	case a.PatternType != kmsg.ACLResourcePatternTypeLiteral && a.PatternType != kmsg.ACLResourcePatternTypePrefixed:
		return invalidACL("pattern type %s: only LITERAL and PREFIXED bindings can be created", a.PatternType)
	case !concreteOperation(a.Operation):
		return invalidACL("invalid operation %s", a.Operation)
	case a.Permission != kmsg.ACLPermissionTypeAllow && a.Permission != kmsg.ACLPermissionTypeDeny:
		return invalidACL("invalid permission type %s", a.Permission)
	case a.ResourceName == "":
		return invalidACL("empty resource name")
	case a.ResourceType == kmsg.ACLResourceTypeCluster && a.ResourceName != ClusterResourceName:
		return invalidACL("the only valid name for the CLUSTER resource is %s", ClusterResourceName)
	case !utf8.ValidString(a.ResourceName) || !utf8.ValidString(a.Principal) || !utf8.ValidString(a.Host):
		return invalidACL("resource name, principal and host must be UTF-8")
	}
	if err := validPrincipal(a.Principal); err != nil {
		return err
	}
	return validHost(a.Host)
}

// validPrincipal requires Kafka's "Type:name" form, both parts non-empty.
func validPrincipal(p string) error {
	typ, name, ok := strings.Cut(p, ":")
	if !ok || typ == "" || name == "" {
		return invalidACL("principal %q is not of the form Type:name (e.g. User:alice)", p)
	}
	return nil
}

// validHost accepts "*" and IP addresses written as Go writes them
// (CanonicalHost turns other spellings into that form).
func validHost(h string) error {
	if h == WildcardHost {
		return nil
	}
	ip := net.ParseIP(h)
	if ip == nil {
		return invalidACL("host %q is neither * nor an IP address", h)
	}
	if ip.String() != h {
		return invalidACL("host %q is not in canonical form (%s)", h, ip)
	}
	return nil
}

// CanonicalHost returns h in the form ACLs store and match: "*" as it is,
// an IP address in Go's canonical spelling ("::1", not "0:0:0:0:0:0:0:1"),
// anything else unchanged (and refused by CreateACLs).
func CanonicalHost(h string) string {
	if ip := net.ParseIP(h); ip != nil {
		return ip.String()
	}
	return h
}

// Validate checks a filter as DescribeAcls and DeleteAcls do: no UNKNOWN
// (or undefined) codes. The error wraps INVALID_REQUEST.
func (f ACLFilter) Validate() error {
	switch {
	case f.ResourceType < kmsg.ACLResourceTypeAny || f.ResourceType > kmsg.ACLResourceTypeUser:
		return invalidACL("filter resource type %s", f.ResourceType)
	case f.PatternType < kmsg.ACLResourcePatternTypeAny || f.PatternType > kmsg.ACLResourcePatternTypePrefixed:
		return invalidACL("filter pattern type %s", f.PatternType)
	case f.Operation < kmsg.ACLOperationAny || f.Operation > kmsg.ACLOperationDescribeTokens:
		return invalidACL("filter operation %s", f.Operation)
	case f.Permission < kmsg.ACLPermissionTypeAny || f.Permission > kmsg.ACLPermissionTypeAllow:
		return invalidACL("filter permission type %s", f.Permission)
	}
	return nil
}

// Matches reports whether the filter selects a, as Kafka's
// AclBindingFilter.matches.
func (f ACLFilter) Matches(a ACL) bool {
	if f.ResourceType != kmsg.ACLResourceTypeAny && f.ResourceType != a.ResourceType {
		return false
	}
	pt := f.PatternType
	if pt != kmsg.ACLResourcePatternTypeAny && pt != kmsg.ACLResourcePatternTypeMatch && pt != a.PatternType {
		return false
	}
	if f.ResourceName != "" {
		switch {
		case pt == kmsg.ACLResourcePatternTypeAny || pt == a.PatternType:
			if f.ResourceName != a.ResourceName {
				return false
			}
		case a.PatternType == kmsg.ACLResourcePatternTypeLiteral: // MATCH
			if f.ResourceName != a.ResourceName && a.ResourceName != WildcardResource {
				return false
			}
		default: // MATCH against a prefixed binding
			if !strings.HasPrefix(f.ResourceName, a.ResourceName) {
				return false
			}
		}
	}
	if f.Principal != "" && f.Principal != a.Principal {
		return false
	}
	if f.Host != "" && f.Host != a.Host {
		return false
	}
	if f.Operation != kmsg.ACLOperationAny && f.Operation != a.Operation {
		return false
	}
	return f.Permission == kmsg.ACLPermissionTypeAny || f.Permission == a.Permission
}

// compareACLs orders ACLs for listings: resource, then principal, host,
// operation, permission.
func compareACLs(a, b ACL) int {
	return cmp.Or(
		cmp.Compare(a.ResourceType, b.ResourceType),
		cmp.Compare(a.PatternType, b.PatternType),
		cmp.Compare(a.ResourceName, b.ResourceName),
		cmp.Compare(a.Principal, b.Principal),
		cmp.Compare(a.Host, b.Host),
		cmp.Compare(a.Operation, b.Operation),
		cmp.Compare(a.Permission, b.Permission),
	)
}

// metaACL is one binding in a metadata record (acls_created, acls_deleted,
// snapshot): Kafka's codes as numbers.
type metaACL struct {
	ResourceType int8   `json:"rt"`
	ResourceName string `json:"name"`
	PatternType  int8   `json:"pattern"`
	Principal    string `json:"principal"`
	Host         string `json:"host"`
	Operation    int8   `json:"op"`
	Permission   int8   `json:"perm"`
}

func toMetaACL(a ACL) metaACL {
	return metaACL{ResourceType: int8(a.ResourceType), ResourceName: a.ResourceName, PatternType: int8(a.PatternType),
		Principal: a.Principal, Host: a.Host, Operation: int8(a.Operation), Permission: int8(a.Permission)}
}

func (m metaACL) acl() ACL {
	return ACL{ResourceType: kmsg.ACLResourceType(m.ResourceType), ResourceName: m.ResourceName,
		PatternType: kmsg.ACLResourcePatternType(m.PatternType), Principal: m.Principal, Host: m.Host,
		Operation: kmsg.ACLOperation(m.Operation), Permission: kmsg.ACLPermissionType(m.Permission)}
}

func toMetaACLs(acls []ACL) []metaACL {
	out := make([]metaACL, len(acls))
	for i, a := range acls {
		out[i] = toMetaACL(a)
	}
	return out
}

// applyACLsCreated adds the bindings of an acls_created record (those
// already present stay as they are, as Kafka's create is idempotent). A
// record with an invalid binding, or none, applies nothing.
func (s *metaState) applyACLsCreated(r metaRecord) error {
	if len(r.ACLs) == 0 {
		return errors.New("acls_created names no binding")
	}
	for _, m := range r.ACLs {
		if err := validACL(m.acl()); err != nil {
			return fmt.Errorf("acls_created: %w", err)
		}
	}
	for _, m := range r.ACLs {
		s.acls[m.acl()] = struct{}{}
	}
	return nil
}

// applyACLsDeleted removes the bindings of an acls_deleted record; those
// already gone (another node's delete won the race) are skipped.
func (s *metaState) applyACLsDeleted(r metaRecord) error {
	if len(r.ACLs) == 0 {
		return errors.New("acls_deleted names no binding")
	}
	for _, m := range r.ACLs {
		delete(s.acls, m.acl())
	}
	return nil
}

// snapshotACLs is the state's bindings, sorted, for a snapshot record.
func (s *metaState) snapshotACLs() []metaACL {
	acls := slices.SortedFunc(maps.Keys(s.acls), compareACLs)
	if len(acls) == 0 {
		return nil
	}
	return toMetaACLs(acls)
}

// CreateACLs adds bindings, answering one error per binding (nil: created,
// or already present). Invalid bindings get errors wrapping
// INVALID_REQUEST; the valid ones are committed through the metadata log
// (in records of at most maxACLsPerRecord) and are in force on this node
// when the call returns, on other nodes once they apply the records.
func (b *Broker) CreateACLs(ctx context.Context, acls []ACL) []error {
	errs := make([]error, len(acls))
	var valid []metaACL
	var at []int // index in acls of each of valid
	for i, a := range acls {
		if errs[i] = validACL(a); errs[i] == nil {
			valid = append(valid, toMetaACL(a))
			at = append(at, i)
		}
	}
	for start := 0; start < len(valid); start += maxACLsPerRecord {
		end := min(start+maxACLsPerRecord, len(valid))
		err := ctx.Err()
		if err == nil {
			err = b.proposeACLs(metaRecord{Type: metaACLsCreated, ACLs: valid[start:end]})
		}
		for _, i := range at[start:end] {
			errs[i] = err
		}
	}
	return errs
}

// proposeACLs commits one ACL record under the admin locks.
func (b *Broker) proposeACLs(rec metaRecord) error {
	b.lockAdmin()
	defer b.unlockAdmin()
	if b.closed.Load() {
		return ErrClosed
	}
	if err := b.proposeLocked(rec); err != nil {
		return fmt.Errorf("%s: %w", rec.Type, err)
	}
	return nil
}

// DeleteACLs removes every binding each filter matches and returns, per
// filter, the bindings it matched (a binding matched by two filters is in
// both lists) or an error: INVALID_REQUEST for an invalid filter, the
// metadata log's error if the delete could not be committed.
func (b *Broker) DeleteACLs(ctx context.Context, filters []ACLFilter) ([][]ACL, []error) {
	matched := make([][]ACL, len(filters))
	errs := make([]error, len(filters))
	b.lockAdmin()
	defer b.unlockAdmin()
	if b.closed.Load() {
		for i := range errs {
			errs[i] = ErrClosed
		}
		return matched, errs
	}
	current := slices.SortedFunc(maps.Keys(b.state.acls), compareACLs)
	doomed := make(map[ACL]bool)
	var order []ACL
	for i, f := range filters {
		if errs[i] = f.Validate(); errs[i] != nil {
			continue
		}
		for _, a := range current {
			if f.Matches(a) {
				matched[i] = append(matched[i], a)
				if !doomed[a] {
					doomed[a] = true
					order = append(order, a)
				}
			}
		}
	}
	var failed error
	for start := 0; start < len(order) && failed == nil; start += maxACLsPerRecord {
		end := min(start+maxACLsPerRecord, len(order))
		failed = ctx.Err()
		if failed == nil {
			failed = b.proposeLocked(metaRecord{Type: metaACLsDeleted, ACLs: toMetaACLs(order[start:end])})
		}
	}
	if failed != nil {
		for i := range errs {
			if errs[i] == nil {
				errs[i], matched[i] = fmt.Errorf("%s: %w", metaACLsDeleted, failed), nil
			}
		}
	}
	return matched, errs
}

// DescribeACLs lists the bindings in force here that f matches, sorted. f
// should have passed Validate (an invalid filter matches by the same
// rules, which may select nothing).
func (b *Broker) DescribeACLs(f ACLFilter) []ACL {
	var out []ACL
	for _, a := range b.authz.Load().acls {
		if f.Matches(a) {
			out = append(out, a)
		}
	}
	return out
}

// publishACLs makes the state's bindings the ones Authorize decides by.
// adminMu held (or Open, before anything is served).
func (b *Broker) publishACLs() {
	b.authz.Store(newACLIndex(slices.SortedFunc(maps.Keys(b.state.acls), compareACLs)))
}
