package main

import (
	"net/http"
	"sort"
	"strconv"
	"strings"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
	"golang.org/x/sys/unix"

	"github.com/chronik-stream/chronik/broker"
)

// The console's read routes for the overview, topics and groups pages,
// and the topic config write. Each calls the broker in-process through
// the functions the Kafka handlers use.

// consoleListMax bounds the topics and groups one list answer carries.
const consoleListMax = 2000

// ConsoleNode is one node of the overview.
type ConsoleNode struct {
	ID         int32  `json:"id"`
	Host       string `json:"host"`
	Port       int32  `json:"port"`
	This       bool   `json:"this"`
	Alive      bool   `json:"alive"`
	Controller bool   `json:"controller"`
}

func (c *console) overview(w http.ResponseWriter, r *http.Request, br *broker.Broker) {
	self := br.Config().NodeID
	ctrl := br.ControllerID()
	node := c.a.node.Load()
	nodes := []ConsoleNode{}
	for _, n := range br.Brokers() {
		alive := n.NodeID == self && br.Ready()
		if node != nil && n.NodeID != self {
			alive = node.Alive(n.NodeID)
		}
		nodes = append(nodes, ConsoleNode{ID: n.NodeID, Host: n.Host, Port: n.Port, This: n.NodeID == self,
			Alive: alive, Controller: n.NodeID == ctrl})
	}
	dir, parts := br.LogDirs()
	var used int64
	for _, p := range parts {
		used += p.Size
	}
	disk := map[string]any{"dir": dir, "used_bytes": used, "total_bytes": int64(-1), "free_bytes": int64(-1)}
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err == nil {
		disk["total_bytes"] = int64(st.Blocks) * int64(st.Bsize)
		disk["free_bytes"] = int64(st.Bavail) * int64(st.Bsize)
	}
	// Leaders per node, over the partitions hosted here.
	leaders := map[int32]int{}
	for _, p := range parts {
		if l, _, err := br.PartitionLeader(p.Topic, p.Partition); err == nil && l >= 0 {
			leaders[l]++
		}
	}
	raft := map[string]any{"cluster": node != nil}
	if node != nil {
		es := node.Engine().Stats()
		raft["groups"], raft["active_groups"], raft["leaders_here"] = es.Groups, es.ActiveGroups, node.Leaders()
		raft["peers_connected"] = node.Transport().Stats().PeersConnected
	}
	faults := []map[string]any{}
	for _, f := range br.Faults() {
		faults = append(faults, map[string]any{"topic": f.Topic, "partition": f.Partition, "corrupt": f.Corrupt, "error": f.Err})
	}
	answerJSON(w, 200, map[string]any{
		"node_id": self, "cluster_id": br.ClusterID(), "version": version, "ready": c.a.isReady(),
		"controller": ctrl, "nodes": nodes, "partitions": len(parts), "leaders_by_node": leaders,
		"raft": raft, "disks": []any{disk}, "offline": faults, "throughput": c.samples.throughput(),
	})
}

// ConsoleTopic is one row of the topics list.
type ConsoleTopic struct {
	Name       string `json:"name"`
	Partitions int32  `json:"partitions"`
	Internal   bool   `json:"internal"`
	SizeBytes  int64  `json:"size_bytes"`
	Retention  string `json:"retention_ms"`
	Cleanup    string `json:"cleanup_policy"`
}

func (c *console) topics(w http.ResponseWriter, r *http.Request, br *broker.Broker) {
	_, parts := br.LogDirs()
	sizes := map[string]int64{}
	for _, p := range parts {
		sizes[p.Topic] += p.Size
	}
	all := br.Topics()
	out := []ConsoleTopic{}
	for _, t := range all[:min(len(all), consoleListMax)] {
		ct := ConsoleTopic{Name: t.Name, Partitions: t.Partitions, Internal: t.Internal, SizeBytes: sizes[t.Name]}
		if cfgs, err := br.TopicConfigs(t.Name); err == nil {
			ct.Retention, ct.Cleanup = consoleConfigValue(cfgs, "retention.ms"), consoleConfigValue(cfgs, "cleanup.policy")
		}
		out = append(out, ct)
	}
	answerJSON(w, 200, map[string]any{"topics": out, "truncated": len(all) > consoleListMax})
}

func consoleConfigValue(cfgs []broker.ConfigEntry, name string) string {
	for _, e := range cfgs {
		if e.Name == name && e.Value != nil {
			return *e.Value
		}
	}
	return ""
}

// ConsolePartition is one partition of the topic page.
type ConsolePartition struct {
	Partition     int32   `json:"partition"`
	Leader        int32   `json:"leader"`
	Replicas      []int32 `json:"replicas"`
	Hosted        bool    `json:"hosted"` // this node has a replica
	LeaderHere    bool    `json:"leader_here"`
	LogStart      int64   `json:"log_start"`
	HighWatermark int64   `json:"high_watermark"`
	LastStable    int64   `json:"last_stable"`
	SizeBytes     int64   `json:"size_bytes"`
	Offline       string  `json:"offline,omitempty"`
}

// ConsoleConfig is one topic config.
type ConsoleConfig struct {
	Name      string  `json:"name"`
	Value     *string `json:"value"`
	Source    string  `json:"source"`
	ReadOnly  bool    `json:"read_only"`
	Sensitive bool    `json:"sensitive"`
	Doc       string  `json:"doc,omitempty"`
}

func configSource(s int8) string {
	switch s {
	case 1:
		return "topic"
	case 4:
		return "broker"
	case 5:
		return "default"
	}
	return strconv.Itoa(int(s))
}

func (c *console) topic(w http.ResponseWriter, r *http.Request, br *broker.Broker) {
	name := r.PathValue("topic")
	t, ok := br.Topic(name)
	if !ok {
		httpError(w, http.StatusNotFound, "topic "+strconv.Quote(name)+" does not exist")
		return
	}
	self := br.Config().NodeID
	_, dirs := br.LogDirs()
	sizes := map[int32]int64{}
	for _, p := range dirs {
		if p.Topic == name {
			sizes[p.Partition] = p.Size
		}
	}
	parts := make([]ConsolePartition, 0, t.Partitions)
	for p := int32(0); p < t.Partitions; p++ {
		cp := ConsolePartition{Partition: p, Leader: -1, Replicas: br.PartitionReplicas(name, p), SizeBytes: sizes[p]}
		if cp.Replicas == nil {
			cp.Replicas = []int32{}
		}
		if l, _, err := br.PartitionLeader(name, p); err == nil {
			cp.Leader = l
		}
		cp.LeaderHere = cp.Leader == self
		ls, hw, lso, err := br.FetchOffsets(name, p)
		cp.Hosted = err == nil
		cp.LogStart, cp.HighWatermark, cp.LastStable = ls, hw, lso
		if f, bad := br.PartitionFault(name, p); bad {
			cp.Offline = f.Err
		}
		parts = append(parts, cp)
	}
	cfgs := []ConsoleConfig{}
	if entries, err := br.TopicConfigs(name); err == nil {
		for _, e := range entries {
			v := e.Value
			if e.Sensitive {
				v = nil
			}
			cfgs = append(cfgs, ConsoleConfig{Name: e.Name, Value: v, Source: configSource(e.Source), ReadOnly: e.ReadOnly, Sensitive: e.Sensitive, Doc: e.Doc})
		}
	}
	answerJSON(w, 200, map[string]any{"name": name, "internal": t.Internal, "partitions": parts, "configs": cfgs, "node_id": self})
}

// alterConfigsRequest is PUT /v1/console/topics/NAME/configs: configs to
// set and configs to delete (back to their default), as one
// IncrementalAlterConfigs.
type alterConfigsRequest struct {
	Set          map[string]string `json:"set"`
	Delete       []string          `json:"delete"`
	ValidateOnly bool              `json:"validate_only"`
}

func (c *console) alterConfigs(w http.ResponseWriter, r *http.Request, br *broker.Broker) {
	var req alterConfigsRequest
	if !decodeBody(w, r, &req) {
		return
	}
	ops := []broker.ConfigOp{}
	names := make([]string, 0, len(req.Set))
	for k := range req.Set {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		v := req.Set[k]
		ops = append(ops, broker.ConfigOp{Name: k, Op: int8(kmsg.IncrementalAlterConfigOpSet), Value: &v})
	}
	for _, k := range req.Delete {
		if _, dup := req.Set[k]; dup {
			httpError(w, http.StatusBadRequest, "config "+strconv.Quote(k)+" is both set and deleted")
			return
		}
		ops = append(ops, broker.ConfigOp{Name: k, Op: int8(kmsg.IncrementalAlterConfigOpDelete)})
	}
	if len(ops) == 0 {
		httpError(w, http.StatusBadRequest, "nothing to change: give set or delete")
		return
	}
	name := r.PathValue("topic")
	if _, ok := br.Topic(name); !ok {
		httpError(w, http.StatusNotFound, "topic "+strconv.Quote(name)+" does not exist")
		return
	}
	if err := br.IncrementalAlterTopicConfigs(name, ops, req.ValidateOnly); err != nil {
		consoleError(w, err)
		return
	}
	answerJSON(w, 200, map[string]any{"topic": name, "changed": len(ops), "validate_only": req.ValidateOnly})
}

// ConsoleGroup is one row of the groups list.
type ConsoleGroup struct {
	Group        string  `json:"group"`
	State        string  `json:"state"`
	ProtocolType string  `json:"protocol_type"`
	Lag          int64   `json:"lag"`
	LagSamples   []int64 `json:"lag_samples"` // oldest first
}

func (c *console) groups(w http.ResponseWriter, r *http.Request, br *broker.Broker) {
	list, err := br.ListGroups(nil, nil)
	if err != nil {
		consoleError(w, err)
		return
	}
	sort.Slice(list, func(i, j int) bool { return list[i].GroupID < list[j].GroupID })
	out := []ConsoleGroup{}
	for _, g := range list[:min(len(list), consoleListMax)] {
		lag, _ := groupLag(br, g.GroupID)
		out = append(out, ConsoleGroup{Group: g.GroupID, State: g.State.String(), ProtocolType: g.ProtocolType,
			Lag: lag, LagSamples: c.samples.lagOf(g.GroupID)})
	}
	answerJSON(w, 200, map[string]any{"groups": out, "truncated": len(list) > consoleListMax})
}

// ConsoleGroupOffset is one partition of a group's committed offsets.
type ConsoleGroupOffset struct {
	Topic         string `json:"topic"`
	Partition     int32  `json:"partition"`
	Committed     int64  `json:"committed"`
	HighWatermark int64  `json:"high_watermark"`
	Lag           int64  `json:"lag"`
	Member        string `json:"member,omitempty"` // the member assigned it
}

// groupOffsets lists the group's committed offsets with their lag (-1
// where the partition is not hosted here), sorted, and the total lag.
func groupOffsets(br *broker.Broker, group string) ([]ConsoleGroupOffset, int64, error) {
	offsets, err := br.OffsetFetch(group, nil, false)
	if err != nil {
		return nil, 0, err
	}
	out := make([]ConsoleGroupOffset, 0, len(offsets))
	var total int64
	for _, o := range offsets {
		if o.Offset < 0 {
			continue
		}
		co := ConsoleGroupOffset{Topic: o.Topic, Partition: o.Partition, Committed: o.Offset, HighWatermark: -1, Lag: -1}
		if _, hw, err := br.PartitionOffsets(o.Topic, o.Partition); err == nil {
			co.HighWatermark, co.Lag = hw, max(hw-o.Offset, 0)
			total += co.Lag
		}
		out = append(out, co)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Topic != out[j].Topic {
			return out[i].Topic < out[j].Topic
		}
		return out[i].Partition < out[j].Partition
	})
	return out, total, nil
}

func groupLag(br *broker.Broker, group string) (int64, error) {
	_, total, err := groupOffsets(br, group)
	return total, err
}

// ConsoleMember is one member of a group.
type ConsoleMember struct {
	MemberID   string             `json:"member_id"`
	InstanceID string             `json:"instance_id,omitempty"`
	ClientID   string             `json:"client_id"`
	ClientHost string             `json:"client_host"`
	Assignment map[string][]int32 `json:"assignment"`
}

func (c *console) group(w http.ResponseWriter, r *http.Request, br *broker.Broker) {
	id := r.PathValue("group")
	d, err := br.DescribeGroup(id)
	if err != nil {
		consoleError(w, err)
		return
	}
	offsets, total, err := groupOffsets(br, id)
	if err != nil {
		consoleError(w, err)
		return
	}
	if d.State == broker.GroupDead && len(offsets) == 0 {
		httpError(w, http.StatusNotFound, "group "+strconv.Quote(id)+" does not exist")
		return
	}
	members := []ConsoleMember{}
	owner := map[string]string{}
	for _, m := range d.Members {
		cm := ConsoleMember{MemberID: m.MemberID, InstanceID: m.InstanceID, ClientID: m.ClientID, ClientHost: m.ClientHost,
			Assignment: map[string][]int32{}}
		if d.ProtocolType == "consumer" && len(m.Assignment) > 0 {
			var a kmsg.ConsumerMemberAssignment
			if a.ReadFrom(m.Assignment) == nil {
				for _, t := range a.Topics {
					cm.Assignment[t.Topic] = append(cm.Assignment[t.Topic], t.Partitions...)
					for _, p := range t.Partitions {
						owner[t.Topic+"\x00"+strconv.Itoa(int(p))] = m.MemberID
					}
				}
			}
		}
		members = append(members, cm)
	}
	for i := range offsets {
		offsets[i].Member = owner[offsets[i].Topic+"\x00"+strconv.Itoa(int(offsets[i].Partition))]
	}
	answerJSON(w, 200, map[string]any{"group": id, "state": d.State.String(), "protocol_type": d.ProtocolType,
		"protocol": d.Protocol, "generation": d.Generation, "members": members, "offsets": offsets,
		"lag": total, "lag_samples": c.samples.lagOf(id), "can_reset": len(d.Members) == 0})
}

// resetRequest is POST /v1/console/groups/ID/reset-offsets. The console
// sends it twice: with dry_run (the confirmation step shows the plan), then
// without.
type resetRequest struct {
	To        string   `json:"to"`        // earliest, latest, timestamp
	Timestamp int64    `json:"timestamp"` // ms, with to=timestamp
	Topics    []string `json:"topics"`    // default: every topic with a committed offset
	DryRun    bool     `json:"dry_run"`
}

// ConsoleReset is one partition of a reset plan.
type ConsoleReset struct {
	Topic     string `json:"topic"`
	Partition int32  `json:"partition"`
	From      int64  `json:"from"`
	To        int64  `json:"to"`
	Error     string `json:"error,omitempty"`
}

// resetOffsets moves a group's committed offsets, as
// kafka-consumer-groups.sh --reset-offsets does: only for a group without
// active members (Kafka refuses otherwise; the commit below is an admin
// commit, generation -1, which the coordinator itself only accepts while
// the group is Empty).
func (c *console) resetOffsets(w http.ResponseWriter, r *http.Request, br *broker.Broker) {
	id := r.PathValue("group")
	var req resetRequest
	if !decodeBody(w, r, &req) {
		return
	}
	var ts int64
	switch req.To {
	case "earliest":
		ts = broker.TimestampEarliest
	case "latest":
		ts = broker.TimestampLatest
	case "timestamp":
		if req.Timestamp < 0 {
			httpError(w, http.StatusBadRequest, "timestamp: must be milliseconds since the epoch, >= 0")
			return
		}
		ts = req.Timestamp
	default:
		httpError(w, http.StatusBadRequest, "to: "+strconv.Quote(req.To)+" is not earliest, latest or timestamp")
		return
	}
	d, err := br.DescribeGroup(id)
	if err != nil {
		consoleError(w, err)
		return
	}
	if len(d.Members) > 0 || (d.State != broker.GroupEmpty && d.State != broker.GroupDead) {
		httpError(w, http.StatusConflict, "group "+strconv.Quote(id)+" is "+d.State.String()+
			" with "+strconv.Itoa(len(d.Members))+" members: stop its consumers first (offsets can only be reset while the group has no active members)")
		return
	}
	current, _, err := groupOffsets(br, id)
	if err != nil {
		consoleError(w, err)
		return
	}
	want := map[string]bool{}
	for _, t := range req.Topics {
		want[t] = true
	}
	plan := []ConsoleReset{}
	for _, o := range current {
		if len(want) > 0 && !want[o.Topic] {
			continue
		}
		rs := ConsoleReset{Topic: o.Topic, Partition: o.Partition, From: o.Committed, To: -1}
		var off int64
		var err error
		if ts >= 0 {
			off, err = offsetForTime(br, o.Topic, o.Partition, ts)
		} else {
			off, _, err = br.ListOffset(o.Topic, o.Partition, ts, 0)
		}
		if err != nil {
			rs.Error = err.Error()
		} else {
			rs.To = off
		}
		plan = append(plan, rs)
	}
	for _, t := range req.Topics {
		if _, ok := br.Topic(t); !ok {
			httpError(w, http.StatusNotFound, "topic "+strconv.Quote(t)+" does not exist")
			return
		}
	}
	if req.DryRun {
		answerJSON(w, 200, map[string]any{"group": id, "dry_run": true, "plan": plan})
		return
	}
	commit := broker.GroupCommitRequest{GenerationID: -1}
	for _, p := range plan {
		if p.Error == "" {
			commit.Offsets = append(commit.Offsets, broker.GroupOffsetCommit{Topic: p.Topic, Partition: p.Partition, Offset: p.To, LeaderEpoch: -1})
		}
	}
	if len(commit.Offsets) > 0 {
		codes, err := br.OffsetCommit(id, commit)
		if err != nil {
			consoleError(w, err)
			return
		}
		i := 0
		for j := range plan {
			if plan[j].Error != "" {
				continue
			}
			if codes[i] != 0 {
				plan[j].Error = kerr.ErrorForCode(codes[i]).Error()
			}
			i++
		}
	}
	answerJSON(w, 200, map[string]any{"group": id, "dry_run": false, "plan": plan})
}

// users lists SCRAM users (names and mechanisms; never credentials).
func (c *console) users(w http.ResponseWriter, r *http.Request, br *broker.Broker) {
	out := []UserInfo{}
	for _, u := range br.ScramUsers() {
		ui := UserInfo{Name: u.Name, Mechanisms: []UserMechanism{}}
		for _, m := range u.Mechanisms {
			ui.Mechanisms = append(ui.Mechanisms, UserMechanism{Mechanism: m.Mechanism.String(), Iterations: m.Iterations})
		}
		out = append(out, ui)
	}
	answerJSON(w, 200, map[string]any{"users": out})
}

// createUser is setUser (cmd_admin_users.go) behind the console's checks.
func (c *console) createUser(w http.ResponseWriter, r *http.Request, br *broker.Broker) {
	setUser(w, r, br, "", true)
}

// deleteUser is deleteUser (cmd_admin_users.go) behind the console's checks.
func (c *console) deleteUser(w http.ResponseWriter, r *http.Request, br *broker.Broker) {
	deleteUser(w, r, br)
}

// ConsoleACL is one ACL binding, in kafka-acls.sh's words.
type ConsoleACL struct {
	ResourceType string `json:"resource_type"`
	ResourceName string `json:"resource_name"`
	PatternType  string `json:"pattern_type"`
	Principal    string `json:"principal"`
	Host         string `json:"host"`
	Operation    string `json:"operation"`
	Permission   string `json:"permission"`
}

func (c *console) acls(w http.ResponseWriter, r *http.Request, br *broker.Broker) {
	all := br.DescribeACLs(broker.ACLFilter{ResourceType: kmsg.ACLResourceTypeAny, PatternType: kmsg.ACLResourcePatternTypeAny,
		Operation: kmsg.ACLOperationAny, Permission: kmsg.ACLPermissionTypeAny})
	out := []ConsoleACL{}
	for _, a := range all {
		out = append(out, ConsoleACL{ResourceType: a.ResourceType.String(), ResourceName: a.ResourceName,
			PatternType: a.PatternType.String(), Principal: a.Principal, Host: a.Host,
			Operation: a.Operation.String(), Permission: a.Permission.String()})
	}
	answerJSON(w, 200, map[string]any{"acls": out, "authorizer": br.AuthorizerEnabled()})
}

// parseACL turns a ConsoleACL into a binding; every field must name one
// value (no ANY or MATCH).
func parseACL(in ConsoleACL) (broker.ACL, string) {
	norm := func(s string) string { return strings.ToUpper(strings.ReplaceAll(strings.TrimSpace(s), "-", "_")) }
	rt, err1 := kmsg.ParseACLResourceType(norm(in.ResourceType))
	pt, err2 := kmsg.ParseACLResourcePatternType(norm(in.PatternType))
	op, err3 := kmsg.ParseACLOperation(norm(in.Operation))
	perm, err4 := kmsg.ParseACLPermissionType(norm(in.Permission))
	switch {
	case err1 != nil || rt == kmsg.ACLResourceTypeAny || rt == kmsg.ACLResourceTypeUnknown:
		return broker.ACL{}, "resource_type: " + strconv.Quote(in.ResourceType) + " is not TOPIC, GROUP, CLUSTER, TRANSACTIONAL_ID or DELEGATION_TOKEN"
	case err2 != nil || (pt != kmsg.ACLResourcePatternTypeLiteral && pt != kmsg.ACLResourcePatternTypePrefixed):
		return broker.ACL{}, "pattern_type: " + strconv.Quote(in.PatternType) + " is not LITERAL or PREFIXED"
	case err3 != nil || op == kmsg.ACLOperationAny || op == kmsg.ACLOperationUnknown:
		return broker.ACL{}, "operation: " + strconv.Quote(in.Operation) + " is not an ACL operation (e.g. READ, WRITE, ALL)"
	case err4 != nil || (perm != kmsg.ACLPermissionTypeAllow && perm != kmsg.ACLPermissionTypeDeny):
		return broker.ACL{}, "permission: " + strconv.Quote(in.Permission) + " is not ALLOW or DENY"
	case in.ResourceName == "" || in.Principal == "":
		return broker.ACL{}, "resource_name and principal must not be empty"
	}
	host := in.Host
	if host == "" {
		host = "*"
	}
	return broker.ACL{ResourceType: rt, ResourceName: in.ResourceName, PatternType: pt, Principal: in.Principal,
		Host: host, Operation: op, Permission: perm}, ""
}

// readACL decodes and checks the binding in a write's body; false once it
// answered a bad one.
func readACL(w http.ResponseWriter, r *http.Request) (ConsoleACL, broker.ACL, bool) {
	var in ConsoleACL
	if !decodeBody(w, r, &in) {
		return in, broker.ACL{}, false
	}
	acl, bad := parseACL(in)
	if bad != "" {
		httpError(w, http.StatusBadRequest, bad)
		return in, acl, false
	}
	return in, acl, true
}

func (c *console) createACL(w http.ResponseWriter, r *http.Request, br *broker.Broker) {
	in, acl, ok := readACL(w, r)
	if !ok {
		return
	}
	if errs := br.CreateACLs(r.Context(), []broker.ACL{acl}); len(errs) > 0 && errs[0] != nil {
		consoleError(w, errs[0])
		return
	}
	answerJSON(w, http.StatusCreated, in)
}

// deleteACL deletes exactly the binding given.
func (c *console) deleteACL(w http.ResponseWriter, r *http.Request, br *broker.Broker) {
	_, acl, ok := readACL(w, r)
	if !ok {
		return
	}
	f := broker.ACLFilter{ResourceType: acl.ResourceType, ResourceName: acl.ResourceName, PatternType: acl.PatternType,
		Principal: acl.Principal, Host: acl.Host, Operation: acl.Operation, Permission: acl.Permission}
	deleted, errs := br.DeleteACLs(r.Context(), []broker.ACLFilter{f})
	if len(errs) > 0 && errs[0] != nil {
		consoleError(w, errs[0])
		return
	}
	n := 0
	if len(deleted) > 0 {
		n = len(deleted[0])
	}
	if n == 0 {
		httpError(w, http.StatusNotFound, "no such ACL")
		return
	}
	answerJSON(w, 200, map[string]any{"deleted": n})
}
