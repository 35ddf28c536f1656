package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// brokerHasGroupAPIs asks the broker whether it advertises the consumer
// group APIs the group commands use.
func brokerHasGroupAPIs(t *testing.T, addr string) bool {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	versions, err := kadm.NewClient(cl).ApiVersions(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range versions {
		for _, k := range []int16{apiListGroups, apiDescribeGroups, apiDeleteGroups, apiOffsetCommit} {
			if _, ok := v.KeyMaxVersion(k); !ok {
				return false
			}
		}
		for _, k := range consumeGroupAPIs {
			if _, ok := v.KeyMaxVersion(k); !ok {
				return false
			}
		}
	}
	return true
}

func TestGroupCommands(t *testing.T) {
	addr := startBroker(t)
	b := "--brokers=" + addr
	ok(t, "", "topic", "create", b, "work", "--partitions", "2")
	ok(t, "a\nb\nc\n", "produce", b, "work", "--partition", "0")
	ok(t, "d\ne\n", "produce", b, "work", "--partition", "1")

	if !brokerHasGroupAPIs(t, addr) {
		// The broker predates its group APIs: every group command says so
		// in one line and exits 1.
		for _, args := range [][]string{
			{"group", "list", b},
			{"group", "describe", b, "g"},
			{"group", "seek", b, "g", "--topic", "work", "--to", "earliest"},
			{"group", "delete", b, "g"},
			{"consume", b, "work", "--group", "g", "-n", "1"},
		} {
			r := runCLI(t, "", args...)
			if r.code != 1 || !strings.HasPrefix(r.stderr, "chronik: ") || !strings.Contains(r.stderr, "does not support") {
				t.Errorf("%v: exit %d, stderr %q", args, r.code, r.stderr)
			}
		}
		return
	}

	// Consume 4 of the 5 records as group g: it commits what it printed.
	got := decodeLines(t, ok(t, "", "consume", b, "work", "--group", "g", "-n", "4", "--format", "json"))
	if len(got) != 4 {
		t.Fatalf("group consume: %+v", got)
	}

	var list []GroupSummary
	decode(t, ok(t, "", "group", "list", b, "--format", "json"), &list)
	if len(list) != 1 || list[0].Group != "g" || list[0].State != "Empty" || list[0].ProtocolType != "consumer" {
		t.Errorf("list %+v", list)
	}

	var d GroupDescription
	decode(t, ok(t, "", "group", "describe", b, "g", "--format", "json"), &d)
	if d.Group != "g" || d.State != "Empty" || len(d.Members) != 0 || len(d.Offsets) != 2 {
		t.Fatalf("describe %+v", d)
	}
	var committed, lag int64
	for i, o := range d.Offsets {
		end := []int64{3, 2}[i]
		if o.Topic != "work" || o.Partition != int32(i) || o.LogEndOffset != end || o.Lag != end-o.CommittedOffset || o.Error != "" {
			t.Errorf("offset %+v", o)
		}
		committed += o.CommittedOffset
		lag += o.Lag
	}
	if committed != 4 || lag != 1 || d.TotalLag != 1 {
		t.Errorf("committed %d, lag %d, total_lag %d; want 4, 1, 1", committed, lag, d.TotalLag)
	}

	// The next member resumes where g stopped: the 5th record only.
	if got := decodeLines(t, ok(t, "", "consume", b, "work", "--group", "g", "-e", "--format", "json")); len(got) != 1 {
		t.Errorf("resume: %+v", got)
	}

	var seeked []GroupSeeked
	decode(t, ok(t, "", "group", "seek", b, "g", "--topic", "work", "--to", "earliest", "--format", "json"), &seeked)
	if len(seeked) != 2 || seeked[0] != (GroupSeeked{"work", 0, 0}) || seeked[1] != (GroupSeeked{"work", 1, 0}) {
		t.Errorf("seek %+v", seeked)
	}
	decode(t, ok(t, "", "group", "describe", b, "g", "--format", "json"), &d)
	if d.TotalLag != 5 {
		t.Errorf("after seek to earliest, total lag %d, want 5", d.TotalLag)
	}
	decode(t, ok(t, "", "group", "seek", b, "g", "--topic", "work", "--partition", "1", "--to", "1", "--format", "json"), &seeked)
	if len(seeked) != 1 || seeked[0] != (GroupSeeked{"work", 1, 1}) {
		t.Errorf("seek partition 1 to 1: %+v", seeked)
	}

	r := runCLI(t, "", "group", "seek", b, "g", "--topic", "nope", "--to", "earliest")
	if r.code != 1 || r.stderr != "chronik: topic \"nope\" does not exist\n" {
		t.Errorf("seek on a missing topic: exit %d, stderr %q", r.code, r.stderr)
	}

	testLiveMember(t, b)

	var deleted []GroupDeleted
	decode(t, ok(t, "", "group", "delete", b, "g", "--format", "json"), &deleted)
	if len(deleted) != 1 || deleted[0] != (GroupDeleted{Group: "g"}) {
		t.Errorf("delete %+v", deleted)
	}
	for _, args := range [][]string{{"group", "describe", b, "g"}, {"group", "delete", b, "g"}} {
		r := runCLI(t, "", args...)
		if r.code != 1 || !strings.Contains(r.stderr, "does not exist") {
			t.Errorf("%v after delete: exit %d, stderr %q", args, r.code, r.stderr)
		}
	}
}

// testLiveMember runs a group member in the background and checks what
// describe shows of it, and that seek and delete refuse a group with
// members. The member waits for a 6th record of topic work, which it gets
// at the end.
func testLiveMember(t *testing.T, b string) {
	var stdout, stderr bytes.Buffer
	exited := make(chan int, 1)
	go func() {
		exited <- run([]string{"chronik", "consume", b, "work", "--group", "live", "-n", "6", "--timeout", "60s"}, &stdout, &stderr)
	}()

	// Bounded wait for the member to join and get its assignment.
	var d GroupDescription
	for i := 0; i < 300 && !(d.State == "Stable" && len(d.Members) == 1 && len(d.Members[0].Assignments) == 1); i++ {
		time.Sleep(50 * time.Millisecond)
		decode(t, ok(t, "", "group", "describe", b, "live", "--format", "json"), &d)
	}
	if d.State != "Stable" || len(d.Members) != 1 {
		t.Fatalf("live group never became Stable with one member: %+v", d)
	}
	m := d.Members[0]
	if m.ClientID != "chronik-cli" || m.MemberID == "" || len(m.Assignments) != 1 ||
		m.Assignments[0].Topic != "work" || len(m.Assignments[0].Partitions) != 2 {
		t.Errorf("member %+v", m)
	}
	if tab := ok(t, "", "group", "describe", b, "live").stdout; !strings.Contains(tab, "Members: 1") || !strings.Contains(tab, "work:0,1") {
		t.Errorf("describe table:\n%s", tab)
	}

	r := runCLI(t, "", "group", "seek", b, "live", "--topic", "work", "--to", "latest")
	if r.code != 1 || !strings.Contains(r.stderr, "group live has 1 members") {
		t.Errorf("seek with a member: exit %d, stderr %q", r.code, r.stderr)
	}
	r = runCLI(t, "", "group", "delete", b, "live")
	if r.code != 1 || !strings.Contains(r.stderr, "group has members") {
		t.Errorf("delete with a member: exit %d, stderr %q", r.code, r.stderr)
	}

	ok(t, "f\n", "produce", b, "work", "--partition", "1")
	if code := <-exited; code != 0 {
		t.Fatalf("live member: exit %d, stderr %q", code, stderr.String())
	}
	if got := strings.Fields(stdout.String()); len(got) != 6 {
		t.Errorf("live member printed %q, want 6 records", got)
	}
}
