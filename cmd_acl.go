package main

import (
	"fmt"
	"strings"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/urfave/cli/v2"
)

// chronik acl add|list|remove: ACL administration over the Kafka protocol
// (CreateAcls, DescribeAcls, DeleteAcls), with kafka-acls.sh's flags, so it
// works against any Kafka-compatible broker.

func aclCommand() *cli.Command {
	return commandGroup(&cli.Command{
		Name:  "acl",
		Usage: "add, list and remove ACLs (who may do what to which topic, group, transactional id or the cluster)",
		Subcommands: []*cli.Command{
			adminCommand(&cli.Command{
				Name:  "add",
				Usage: "allow or deny principals operations on resources",
				Description: "Every combination of principal, operation and resource is one ACL, e.g.\n" +
					"  chronik acl add --allow-principal User:alice --operation read --operation describe \\\n" +
					"      --topic orders- --resource-pattern-type prefixed --group orders-app",
				Flags:  adminFlags(aclFlags("literal")...),
				Action: withArgs("no arguments", 0, 0, aclAdd),
			}),
			adminCommand(&cli.Command{
				Name:  "list",
				Usage: "list the ACLs matching the filter flags (all of them without any)",
				Flags: adminFlags(append(aclFlags("any"),
					&cli.StringFlag{Name: "principal", Usage: "only ACLs of this `PRINCIPAL`, allowed or denied (User:alice)"})...),
				Action: withArgs("no arguments", 0, 0, aclList),
			}),
			adminCommand(&cli.Command{
				Name:   "remove",
				Usage:  "remove the ACLs the flags name (as for add; operation any and pattern type any or match widen it)",
				Flags:  adminFlags(aclFlags("literal")...),
				Action: withArgs("no arguments", 0, 0, aclRemove),
			}),
		},
	})
}

// aclFlags are the flags of kafka-acls.sh that name ACLs; pattern is the
// default --resource-pattern-type.
func aclFlags(pattern string) []cli.Flag {
	return []cli.Flag{
		repeated("allow-principal", "`PRINCIPAL` to allow (User:alice, User:* for everyone; repeatable)"),
		repeated("deny-principal", "`PRINCIPAL` to deny (repeatable)"),
		repeated("operation", "`OP`: all, read, write, create, delete, alter, describe, cluster-action, describe-configs, alter-configs, idempotent-write (repeatable; list and remove also take any)"),
		repeated("topic", "topic `NAME` (repeatable; * for every topic)"),
		repeated("group", "consumer group `ID` (repeatable; * for every group)"),
		repeated("transactional-id", "transactional `ID` (repeatable; * for every id)"),
		&cli.BoolFlag{Name: "cluster", Usage: "the cluster itself (kafka-cluster)"},
		&cli.StringFlag{Name: "resource-pattern-type", Value: pattern,
			Usage: "literal or prefixed (names are prefixes); list and remove also take any and match"},
		&cli.StringFlag{Name: "host", Usage: "client IP address the ACLs apply to (default * for add and remove, any for list)"},
	}
}

// aclBuilder turns the flags into a kadm.ACLBuilder. forCreate requires a
// principal, an operation and a resource, and a pattern type that can be
// stored; filters (list, remove) default the rest to "any".
func aclBuilder(c *cli.Context, forCreate bool) (*kadm.ACLBuilder, error) {
	b := kadm.NewACLs()
	pattern, err := kmsg.ParseACLResourcePatternType(c.String("resource-pattern-type"))
	if err != nil || pattern == kadm.ACLPatternUnknown {
		return nil, usageErr("resource-pattern-type: %q is not literal, prefixed, any or match", c.String("resource-pattern-type"))
	}
	if forCreate && pattern != kadm.ACLPatternLiteral && pattern != kadm.ACLPatternPrefixed {
		return nil, usageErr("resource-pattern-type: add takes literal or prefixed, not %q", c.String("resource-pattern-type"))
	}
	b.ResourcePatternType(pattern)

	var ops []kadm.ACLOperation
	for _, s := range repeatedValues(c, "operation") {
		op, err := kmsg.ParseACLOperation(s)
		if err != nil || op == kmsg.ACLOperationUnknown || (forCreate && op == kmsg.ACLOperationAny) {
			return nil, usageErr("operation: %q is not an ACL operation (see --help)", s)
		}
		ops = append(ops, op)
	}
	if len(ops) == 0 {
		if forCreate {
			return nil, usageErr("missing --operation")
		}
		ops = []kadm.ACLOperation{kadm.OpAny}
	}
	b.Operations(ops...)

	topics, groups, txns := repeatedValues(c, "topic"), repeatedValues(c, "group"), repeatedValues(c, "transactional-id")
	named := len(topics) > 0 || len(groups) > 0 || len(txns) > 0 || c.Bool("cluster")
	switch {
	case named:
		if len(topics) > 0 {
			b.Topics(topics...)
		}
		if len(groups) > 0 {
			b.Groups(groups...)
		}
		if len(txns) > 0 {
			b.TransactionalIDs(txns...)
		}
		if c.Bool("cluster") {
			b.Clusters()
		}
	case forCreate:
		return nil, usageErr("missing a resource: --topic, --group, --transactional-id or --cluster")
	default:
		b.AnyResource()
	}

	host := c.String("host")
	if host == "" && forCreate {
		host = "*"
	}
	var hosts []string
	if host != "" {
		hosts = []string{host}
	}
	allow, deny := repeatedValues(c, "allow-principal"), repeatedValues(c, "deny-principal")
	if forCreate && len(allow) == 0 && len(deny) == 0 {
		return nil, usageErr("missing --allow-principal or --deny-principal")
	}
	for _, p := range append(append([]string{}, allow...), deny...) {
		if typ, name, ok := strings.Cut(p, ":"); !ok || typ == "" || name == "" {
			return nil, usageErr("principal %q is not of the form Type:name (e.g. User:alice)", p)
		}
	}
	if len(allow) > 0 {
		b.Allow(allow...).AllowHosts(hosts...)
	}
	if len(deny) > 0 {
		b.Deny(deny...).DenyHosts(hosts...)
	}
	return b, nil
}

// ACLEntry is one ACL as `acl list|add|remove --format json` print it.
type ACLEntry struct {
	Principal    string `json:"principal"`
	Host         string `json:"host"`
	Operation    string `json:"operation"`
	Permission   string `json:"permission"`
	ResourceType string `json:"resource_type"`
	ResourceName string `json:"resource_name"`
	PatternType  string `json:"pattern_type"`
	Error        string `json:"error,omitempty"`
}

func aclEntry(principal, host string, op kmsg.ACLOperation, perm kmsg.ACLPermissionType, rt kmsg.ACLResourceType,
	name string, pattern kmsg.ACLResourcePatternType, err error, msg string) ACLEntry {
	e := ACLEntry{Principal: principal, Host: host, Operation: strings.ToLower(op.String()),
		Permission: strings.ToLower(perm.String()), ResourceType: strings.ToLower(rt.String()),
		ResourceName: name, PatternType: strings.ToLower(pattern.String())}
	if err != nil {
		e.Error = withMessage(err, msg)
	}
	return e
}

// printACLs prints ACLs as JSON or a table; with verb ("created",
// "removed") the table is one line per ACL that succeeded. Failures make
// the exit status 1, each named.
func printACLs(c *cli.Context, format, verb string, out []ACLEntry) error {
	var failed []string
	for _, e := range out {
		if e.Error != "" {
			failed = append(failed, fmt.Sprintf("%s %s %s on %s %s: %s", e.Principal, e.Permission, e.Operation, e.ResourceType, e.ResourceName, e.Error))
		}
	}
	var err error
	switch {
	case format == "json":
		err = writeJSON(c.App.Writer, out)
	case verb == "":
		tab := newTable(c.App.Writer, "PRINCIPAL", "HOST", "OPERATION", "PERMISSION", "RESOURCE", "NAME", "PATTERN")
		for _, e := range out {
			tab.row(e.Principal, e.Host, e.Operation, e.Permission, e.ResourceType, e.ResourceName, e.PatternType)
		}
		err = tab.flush()
	default:
		for _, e := range out {
			if e.Error == "" {
				fmt.Fprintf(c.App.Writer, "%s: %s %s %s on %s %s (%s) from %s\n", verb, e.Principal, e.Permission, e.Operation,
					e.ResourceType, e.ResourceName, e.PatternType, e.Host)
			}
		}
	}
	if len(failed) > 0 {
		return failErr("acl: %s", strings.Join(failed, "; "))
	}
	return err
}

func aclAdd(c *cli.Context, _ []string) error {
	format, err := outputFormat(c, "table", "json")
	if err != nil {
		return err
	}
	b, err := aclBuilder(c, true)
	if err != nil {
		return err
	}
	adm, ctx, done, err := adminClient(c)
	if err != nil {
		return err
	}
	defer done()
	res, err := adm.CreateACLs(ctx, b)
	if err != nil {
		return brokerErr(c, ctx, "create acls", err)
	}
	out := make([]ACLEntry, 0, len(res))
	for _, r := range res {
		out = append(out, aclEntry(r.Principal, r.Host, r.Operation, r.Permission, r.Type, r.Name, r.Pattern, r.Err, r.ErrMessage))
	}
	return printACLs(c, format, "created", out)
}

func aclList(c *cli.Context, _ []string) error {
	format, err := outputFormat(c, "table", "json")
	if err != nil {
		return err
	}
	if p := c.String("principal"); p != "" {
		if len(repeatedValues(c, "allow-principal")) > 0 || len(repeatedValues(c, "deny-principal")) > 0 {
			return usageErr("principal: give --principal or --allow-principal/--deny-principal, not both")
		}
		c.Set("allow-principal", p)
		c.Set("deny-principal", p)
	}
	b, err := aclBuilder(c, false)
	if err != nil {
		return err
	}
	if len(repeatedValues(c, "allow-principal")) == 0 && len(repeatedValues(c, "deny-principal")) == 0 {
		var hosts []string
		if h := c.String("host"); h != "" {
			hosts = []string{h}
		}
		b.Allow().AllowHosts(hosts...).Deny().DenyHosts(hosts...) // any principal, either permission
	}
	adm, ctx, done, err := adminClient(c)
	if err != nil {
		return err
	}
	defer done()
	res, err := adm.DescribeACLs(ctx, b)
	if err != nil {
		return brokerErr(c, ctx, "describe acls", err)
	}
	out := []ACLEntry{}
	seen := map[ACLEntry]bool{}
	for _, r := range res {
		if r.Err != nil {
			return failErr("describe acls: %s", withMessage(r.Err, r.ErrMessage))
		}
		for _, d := range r.Described {
			e := aclEntry(d.Principal, d.Host, d.Operation, d.Permission, d.Type, d.Name, d.Pattern, nil, "")
			if !seen[e] { // filters may overlap (one per resource, operation and permission)
				seen[e] = true
				out = append(out, e)
			}
		}
	}
	return printACLs(c, format, "", out)
}

func aclRemove(c *cli.Context, _ []string) error {
	format, err := outputFormat(c, "table", "json")
	if err != nil {
		return err
	}
	if len(repeatedValues(c, "allow-principal")) == 0 && len(repeatedValues(c, "deny-principal")) == 0 {
		return usageErr("missing --allow-principal or --deny-principal (User:* names the ACLs for everyone)")
	}
	if c.String("host") == "" {
		c.Set("host", "*")
	}
	b, err := aclBuilder(c, false)
	if err != nil {
		return err
	}
	adm, ctx, done, err := adminClient(c)
	if err != nil {
		return err
	}
	defer done()
	res, err := adm.DeleteACLs(ctx, b)
	if err != nil {
		return brokerErr(c, ctx, "delete acls", err)
	}
	out := []ACLEntry{}
	for _, r := range res {
		if r.Err != nil {
			return failErr("delete acls: %s", withMessage(r.Err, r.ErrMessage))
		}
		for _, d := range r.Deleted {
			out = append(out, aclEntry(d.Principal, d.Host, d.Operation, d.Permission, d.Type, d.Name, d.Pattern, d.Err, d.ErrMessage))
		}
	}
	if len(out) == 0 && format != "json" {
		fmt.Fprintln(c.App.Writer, "no ACL matched")
	}
	return printACLs(c, format, "removed", out)
}
