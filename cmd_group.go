package main

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/urfave/cli/v2"
)

// chronik group list|describe|seek|delete: consumer group administration
// (ListGroups, DescribeGroups, OffsetFetch, ListOffsets, OffsetCommit,
// DeleteGroups), for any Kafka-compatible broker.

func groupCommand() *cli.Command {
	return commandGroup(&cli.Command{
		Name:  "group",
		Usage: "list, describe (with lag), seek and delete consumer groups",
		Subcommands: []*cli.Command{
			adminCommand(&cli.Command{
				Name:   "list",
				Usage:  "list consumer groups and their states",
				Flags:  adminFlags(),
				Action: withArgs("no arguments", 0, 0, groupList),
			}),
			adminCommand(&cli.Command{
				Name:        "describe",
				Usage:       "show a group's members, assignments, committed offsets and lag",
				ArgsUsage:   "GROUP",
				Description: "Lag is the log end offset (high watermark) minus the committed offset. A group\nthat does not exist exits 1.",
				Flags:       adminFlags(),
				Action:      withArgs("GROUP", 1, 1, groupDescribe),
			}),
			adminCommand(&cli.Command{
				Name:      "seek",
				Usage:     "commit new offsets for a group with no members (reset or rewind it)",
				ArgsUsage: "GROUP",
				Description: `Commits, for every partition of --topic (or only --partition), the offset
--to names: earliest, latest, an OFFSET (clamped to the log), @MILLIS or an
RFC 3339 time. The group must have no members: stop its consumers first
(a group with members exits 1).`,
				Flags: adminFlags(
					&cli.StringFlag{Name: "topic", Usage: "topic whose offsets to set (required)"},
					&cli.StringFlag{Name: "to", Usage: "earliest, latest, OFFSET, @MILLIS or an RFC 3339 time (required)"},
					&cli.IntFlag{Name: "partition", Value: -1, Usage: "only this partition (-1: all)"},
				),
				Action: withArgs("GROUP", 1, 1, groupSeek),
			}),
			adminCommand(&cli.Command{
				Name:        "delete",
				Usage:       "delete groups and their committed offsets",
				ArgsUsage:   "GROUP...",
				Description: "Only groups with no members can be deleted.",
				Flags:       adminFlags(),
				Action:      withArgs("GROUP", 1, -1, groupDelete),
			}),
		},
	})
}

// GroupSummary is one entry of `group list --format json`.
type GroupSummary struct {
	Group        string `json:"group"`
	State        string `json:"state"`
	ProtocolType string `json:"protocol_type"`
	Coordinator  int32  `json:"coordinator"`
}

// GroupDescription is what `group describe --format json` prints.
// Offsets has one entry per partition the group has committed to or is
// assigned; committed_offset is -1 where nothing is committed yet.
type GroupDescription struct {
	Group        string        `json:"group"`
	State        string        `json:"state"`
	ProtocolType string        `json:"protocol_type"`
	Protocol     string        `json:"protocol"`
	Coordinator  int32         `json:"coordinator"`
	Members      []GroupMember `json:"members"`
	Offsets      []GroupOffset `json:"offsets"`
	TotalLag     int64         `json:"total_lag"`
}

// GroupMember is one member of a GroupDescription.
type GroupMember struct {
	MemberID    string            `json:"member_id"`
	InstanceID  *string           `json:"instance_id"`
	ClientID    string            `json:"client_id"`
	ClientHost  string            `json:"client_host"`
	Assignments []GroupAssignment `json:"assignments"`
}

// GroupAssignment is the partitions of one topic assigned to a member.
type GroupAssignment struct {
	Topic      string  `json:"topic"`
	Partitions []int32 `json:"partitions"`
}

// GroupOffset is one partition of a GroupDescription; member_id is empty
// when no member is assigned the partition.
type GroupOffset struct {
	Topic           string `json:"topic"`
	Partition       int32  `json:"partition"`
	CommittedOffset int64  `json:"committed_offset"`
	LogEndOffset    int64  `json:"log_end_offset"`
	Lag             int64  `json:"lag"`
	MemberID        string `json:"member_id"`
	Error           string `json:"error,omitempty"`
}

// GroupSeeked is one partition of `group seek --format json`.
type GroupSeeked struct {
	Topic     string `json:"topic"`
	Partition int32  `json:"partition"`
	Offset    int64  `json:"offset"`
}

// GroupDeleted is one entry of `group delete --format json`.
type GroupDeleted struct {
	Group string `json:"group"`
	Error string `json:"error,omitempty"`
}

func groupList(c *cli.Context, _ []string) error {
	format, err := outputFormat(c, "table", "json")
	if err != nil {
		return err
	}
	adm, ctx, done, err := adminClient(c)
	if err != nil {
		return err
	}
	defer done()
	if err := requireAPIs(c, ctx, adm, "list groups", apiListGroups); err != nil {
		return err
	}
	groups, err := adm.ListGroups(ctx)
	if err != nil {
		return brokerErr(c, ctx, "list groups", err)
	}
	out := []GroupSummary{}
	for _, g := range groups.Sorted() {
		out = append(out, GroupSummary{Group: g.Group, State: g.State, ProtocolType: g.ProtocolType, Coordinator: g.Coordinator})
	}
	if format == "json" {
		return writeJSON(c.App.Writer, out)
	}
	tab := newTable(c.App.Writer, "GROUP", "STATE", "PROTOCOL_TYPE", "COORDINATOR")
	for _, g := range out {
		tab.row(g.Group, g.State, g.ProtocolType, g.Coordinator)
	}
	return tab.flush()
}

// errGroupMissing is the one line for a group the brokers do not know.
func errGroupMissing(group string) error {
	return failErr("group %q does not exist", group)
}

func groupDescribe(c *cli.Context, args []string) error {
	format, err := outputFormat(c, "table", "json")
	if err != nil {
		return err
	}
	group := args[0]
	adm, ctx, done, err := adminClient(c)
	if err != nil {
		return err
	}
	defer done()
	if err := requireAPIs(c, ctx, adm, "describe group", apiFindCoord, apiDescribeGroups, apiOffsetFetch); err != nil {
		return err
	}
	lags, err := adm.Lag(ctx, group)
	if err != nil {
		return brokerErr(c, ctx, "describe group "+group, err)
	}
	l, ok := lags[group]
	if !ok {
		return failErr("describe group %s: the broker did not answer for the group", group)
	}
	if err := l.Error(); errors.Is(err, kerr.GroupIDNotFound) {
		return errGroupMissing(group)
	} else if err != nil {
		return failErr("describe group %s: %v", group, err)
	}
	if l.State == "Dead" && len(l.Lag) == 0 {
		return errGroupMissing(group)
	}
	d := groupDescription(l)
	if format == "json" {
		return writeJSON(c.App.Writer, d)
	}
	w := c.App.Writer
	protocol := d.ProtocolType
	if d.Protocol != "" {
		protocol += " (" + d.Protocol + ")"
	}
	fmt.Fprintf(w, "Group: %s\nState: %s\nProtocol: %s\nCoordinator: %d\nMembers: %d\nTotal lag: %d\n\n",
		d.Group, d.State, protocol, d.Coordinator, len(d.Members), d.TotalLag)
	if len(d.Members) > 0 {
		tab := newTable(w, "MEMBER", "INSTANCE", "CLIENT_ID", "HOST", "ASSIGNMENT")
		for _, m := range d.Members {
			inst := ""
			if m.InstanceID != nil {
				inst = *m.InstanceID
			}
			var as []string
			for _, a := range m.Assignments {
				as = append(as, a.Topic+":"+joinInt32s(a.Partitions))
			}
			tab.row(m.MemberID, inst, m.ClientID, m.ClientHost, strings.Join(as, " "))
		}
		if err := tab.flush(); err != nil {
			return err
		}
		fmt.Fprintln(w)
	}
	tab := newTable(w, "TOPIC", "PARTITION", "COMMITTED", "LOG_END", "LAG", "MEMBER", "ERROR")
	for _, o := range d.Offsets {
		committed := strconv.FormatInt(o.CommittedOffset, 10)
		if o.CommittedOffset < 0 {
			committed = "-"
		}
		tab.row(o.Topic, o.Partition, committed, o.LogEndOffset, o.Lag, o.MemberID, o.Error)
	}
	return tab.flush()
}

// groupDescription turns kadm's lag view into the printed form.
func groupDescription(l kadm.DescribedGroupLag) GroupDescription {
	d := GroupDescription{Group: l.Group, State: l.State, ProtocolType: l.ProtocolType, Protocol: l.Protocol,
		Coordinator: l.Coordinator.NodeID, Members: []GroupMember{}, Offsets: []GroupOffset{}}
	for _, m := range l.Members {
		gm := GroupMember{MemberID: m.MemberID, InstanceID: m.InstanceID, ClientID: m.ClientID,
			ClientHost: m.ClientHost, Assignments: []GroupAssignment{}}
		if a, ok := m.Assigned.AsConsumer(); ok {
			for _, t := range a.Topics {
				gm.Assignments = append(gm.Assignments, GroupAssignment{Topic: t.Topic, Partitions: nonNil(t.Partitions)})
			}
		}
		d.Members = append(d.Members, gm)
	}
	for _, ml := range l.Lag.Sorted() {
		o := GroupOffset{Topic: ml.Topic, Partition: ml.Partition, CommittedOffset: ml.Commit.At,
			LogEndOffset: ml.End.Offset, Lag: ml.Lag}
		if ml.Member != nil {
			o.MemberID = ml.Member.MemberID
		}
		if ml.Err != nil {
			o.Error = ml.Err.Error()
		}
		d.Offsets = append(d.Offsets, o)
		if ml.Lag > 0 {
			d.TotalLag += ml.Lag
		}
	}
	return d
}

func groupSeek(c *cli.Context, args []string) error {
	format, err := outputFormat(c, "table", "json")
	if err != nil {
		return err
	}
	group, topic, partition := args[0], c.String("topic"), c.Int("partition")
	if topic == "" {
		return usageErr("missing --topic (see --help)")
	}
	if c.String("to") == "" {
		return usageErr("missing --to (see --help)")
	}
	to, err := parseStartPoint("to", c.String("to"))
	if err != nil {
		return err
	}
	if partition < -1 {
		return usageErr("partition: %d is not -1 or a partition number", partition)
	}
	adm, ctx, done, err := adminClient(c)
	if err != nil {
		return err
	}
	defer done()
	if err := requireAPIs(c, ctx, adm, "seek group", apiFindCoord, apiDescribeGroups, apiOffsetCommit); err != nil {
		return err
	}
	described, err := adm.DescribeGroups(ctx, group)
	if err != nil {
		return brokerErr(c, ctx, "describe group "+group, err)
	}
	if g, ok := described[group]; ok && g.Err != nil && !errors.Is(g.Err, kerr.GroupIDNotFound) {
		return failErr("describe group %s: %v", group, g.Err)
	} else if ok && len(g.Members) > 0 {
		return failErr("group %s has %d members; seek only a group with no members (stop its consumers first)", group, len(g.Members))
	}
	parts, err := checkTopic(c, ctx, adm, topic, partition)
	if err != nil {
		return err
	}
	starts, _, err := startOffsets(c, ctx, adm, topic, parts, to)
	if err != nil {
		return err
	}
	offsets := make(kadm.Offsets)
	for _, p := range parts {
		offsets.AddOffset(topic, p, starts[p], -1)
	}
	resps, err := adm.CommitOffsets(ctx, group, offsets)
	if err != nil {
		return brokerErr(c, ctx, "commit offsets of group "+group, err)
	}
	if err := resps.Error(); err != nil {
		return failErr("commit offsets of group %s: %v", group, err)
	}
	out := make([]GroupSeeked, 0, len(parts))
	for _, p := range parts {
		out = append(out, GroupSeeked{Topic: topic, Partition: p, Offset: starts[p]})
	}
	if format == "json" {
		return writeJSON(c.App.Writer, out)
	}
	tab := newTable(c.App.Writer, "TOPIC", "PARTITION", "OFFSET")
	for _, s := range out {
		tab.row(s.Topic, s.Partition, s.Offset)
	}
	return tab.flush()
}

func groupDelete(c *cli.Context, groups []string) error {
	format, err := outputFormat(c, "table", "json")
	if err != nil {
		return err
	}
	adm, ctx, done, err := adminClient(c)
	if err != nil {
		return err
	}
	defer done()
	if err := requireAPIs(c, ctx, adm, "delete groups", apiFindCoord, apiDeleteGroups); err != nil {
		return err
	}
	resps, err := adm.DeleteGroups(ctx, groups...)
	if err != nil && len(resps) == 0 {
		return brokerErr(c, ctx, "delete groups", err)
	}
	out := make([]GroupDeleted, 0, len(groups))
	for _, g := range groups {
		r, ok := resps[g]
		d := GroupDeleted{Group: g}
		switch {
		case !ok:
			d.Error = "the broker did not answer for the group"
		case errors.Is(r.Err, kerr.GroupIDNotFound):
			d.Error = "group does not exist"
		case errors.Is(r.Err, kerr.NonEmptyGroup):
			d.Error = "group has members (stop its consumers first)"
		case r.Err != nil:
			d.Error = withMessage(r.Err, r.ErrMessage)
		}
		out = append(out, d)
	}
	return reportDeletes(c, format, "group", out, func(d GroupDeleted) (string, string) { return d.Group, d.Error })
}
