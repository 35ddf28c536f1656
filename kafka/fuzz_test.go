package kafka

import (
	"context"
	"flag"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

var updateSeeds = flag.Bool("update-seeds", false, "capture request frames from a kgo session into "+seedDir)

const seedDir = "../testdata/requests"

func seedFiles(t testing.TB) []string {
	files, err := filepath.Glob(filepath.Join(seedDir, "*.bin"))
	if err != nil {
		t.Fatal(err)
	}
	return files
}

// FuzzRequest feeds arbitrary frame bodies through the server's own decode
// and dispatch path (decodeRequest, then handle) against a real broker on a
// temp dir. Nothing may panic, not even a recovered handler panic, and
// every answer must be a well-formed frame with the request's correlation
// id.
func FuzzRequest(f *testing.F) {
	for _, file := range seedFiles(f) {
		body, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(body)
	}
	e := startEnv(f, withAutoCreate())
	e.createTopic("fuzz", 2, nil)
	e.srv.maxNewPartitions = 4 // keep mutated CreateTopics from creating thousands of logs
	log := e.srv.log

	f.Fuzz(func(t *testing.T, body []byte) {
		r, err := e.srv.decodeRequest(body)
		if err != nil {
			return // the connection would be closed
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
		defer cancel()
		panics := e.srv.panics.Load()
		frame, _ := e.srv.handle(ctx, r, &log)
		if e.srv.panics.Load() != panics {
			t.Fatalf("%s v%d: handler panicked: %s", r.api.name, r.version, lastLine(e.logs.String(), "panicked"))
		}
		if frame == nil {
			if !r.noResponse {
				t.Fatalf("no response to %s v%d", r.api.name, r.version)
			}
			return
		}
		b := *frame
		if len(b) < 8 || int(beUint32(b)) != len(b)-4 || int32(beUint32(b[4:])) != r.corrID {
			t.Fatalf("malformed response frame to %s v%d: % x", r.api.name, r.version, b[:min(len(b), 16)])
		}
		putBuffer(frame)
	})
}

// lastLine returns the last line of logs containing substr.
func lastLine(logs, substr string) string {
	lines := strings.Split(logs, "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		if strings.Contains(lines[i], substr) {
			return lines[i]
		}
	}
	return ""
}

// TestSeedFrames checks that every seed frame under testdata/requests is a
// request we serve at a supported version. With -update-seeds it first
// captures them from a kgo session (plus one frame per API and version the
// session does not send, built with kmsg).
func TestSeedFrames(t *testing.T) {
	if *updateSeeds {
		captureSeeds(t)
	}
	files := seedFiles(t)
	if len(files) < len(apis) {
		t.Fatalf("%d seed frames in %s, want at least one per API", len(files), seedDir)
	}
	e := startEnv(t)
	keys := map[int16]bool{}
	for _, file := range files {
		body, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		r, err := e.srv.decodeRequest(body)
		if err != nil || r.unsupported {
			t.Fatalf("%s: %v (unsupported %v)", file, err, r != nil && r.unsupported)
		}
		keys[r.key] = true
	}
	for _, a := range apis {
		if !keys[a.key] {
			t.Errorf("no seed frame for %s", a.name)
		}
	}
}

// recordingListener keeps every byte clients send.
type recordingListener struct {
	net.Listener
	mu    sync.Mutex
	conns []*recordingConn
}

type recordingConn struct {
	net.Conn
	mu  sync.Mutex
	buf []byte
}

func (l *recordingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	rc := &recordingConn{Conn: c}
	l.mu.Lock()
	l.conns = append(l.conns, rc)
	l.mu.Unlock()
	return rc, nil
}

func (c *recordingConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.mu.Lock()
	c.buf = append(c.buf, p[:n]...)
	c.mu.Unlock()
	return n, err
}

// frames splits everything recorded into frame bodies.
func (l *recordingListener) frames() [][]byte {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out [][]byte
	for _, c := range l.conns {
		c.mu.Lock()
		b := c.buf
		for len(b) >= 4 {
			size := int(beUint32(b))
			if len(b) < 4+size {
				break
			}
			out = append(out, b[4:4+size])
			b = b[4+size:]
		}
		c.mu.Unlock()
	}
	return out
}

func captureSeeds(t *testing.T) {
	var rec *recordingListener
	e := startEnv(t, withListener(func(ln net.Listener) net.Listener {
		rec = &recordingListener{Listener: ln}
		return rec
	}))
	ctx := testContext(t)
	adm := kadm.NewClient(e.client())
	if _, err := adm.CreateTopic(ctx, 2, 1, map[string]*string{"retention.ms": kmsg.StringPtr("86400000")}, "seed"); err != nil {
		t.Fatal(err)
	}
	for _, codec := range []kgo.CompressionCodec{kgo.NoCompression(), kgo.ZstdCompression()} {
		cl := e.client(kgo.ProducerBatchCompression(codec))
		produceAll(ctx, t, cl, makeRecords("seed", 20, 1))
		cl.Close()
	}
	consumeAll(ctx, t, e, "seed", 2, 40)
	group := e.client(kgo.ConsumerGroup("seed-group"), kgo.ConsumeTopics("seed"), kgo.FetchMaxWait(100*time.Millisecond))
	for got := 0; got < 40; {
		fs := group.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("group consumed %d of 40 records", got)
		}
		got += len(fs.Records())
	}
	if err := group.CommitUncommittedOffsets(ctx); err != nil {
		t.Fatal(err)
	}
	steps := []func() error{
		func() error { _, err := adm.ListGroups(ctx, "Stable"); return err },
		func() error { _, err := adm.DescribeGroups(ctx, "seed-group"); return err },
		func() error { return adm.FetchManyOffsets(ctx, "seed-group", "nobody").Error() },
		func() error { group.Close(); return nil }, // LeaveGroup
		func() error {
			_, err := adm.DeleteOffsets(ctx, "seed-group", kadm.TopicsSet{"seed": {0: {}}})
			return err
		},
		func() error { _, err := adm.DeleteGroups(ctx, "seed-group"); return err },
		func() error { _, err := adm.DescribeTopicConfigs(ctx, "seed"); return err },
		func() error { _, err := adm.DescribeBrokerConfigs(ctx, 0); return err },
		func() error {
			_, err := adm.AlterTopicConfigs(ctx, []kadm.AlterConfig{{Name: "retention.ms", Value: kmsg.StringPtr("3600000")}}, "seed")
			return err
		},
		func() error { _, err := adm.CreatePartitions(ctx, 1, "seed"); return err },
		func() error { _, err := adm.DescribeAllLogDirs(ctx, nil); return err },
		func() error { _, err := adm.ListStartOffsets(ctx, "seed"); return err },
		func() error { _, err := adm.ListOffsetsAfterMilli(ctx, 1_700_000_000_005, "seed"); return err },
		func() error {
			_, err := adm.DeleteRecords(ctx, kadm.Offsets{"seed": {0: {Topic: "seed", Partition: 0, At: 1}}})
			return err
		},
		func() error {
			_, err := adm.OffsetForLeaderEpoch(ctx, map[string]map[int32]int32{"seed": {0: 0}})
			return err
		},
		func() error {
			_, err := adm.CreateACLs(ctx, kadm.NewACLs().Allow("User:seed").Topics("seed").Operations(kadm.OpRead))
			return err
		},
		func() error {
			_, err := adm.DescribeACLs(ctx, kadm.NewACLs().Allow("User:seed").AllowHosts().Topics("seed").
				ResourcePatternType(kadm.ACLPatternMatch).Operations(kadm.OpAny))
			return err
		},
		func() error {
			_, err := adm.DeleteACLs(ctx, kadm.NewACLs().Allow("User:seed").AllowHosts().Topics("seed").
				ResourcePatternType(kadm.ACLPatternAny).Operations(kadm.OpAny))
			return err
		},
		func() error { _, err := adm.DeleteTopic(ctx, "seed"); return err },
	}
	for i, step := range steps {
		if err := step(); err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
	}

	type kv struct{ key, version int16 }
	count := map[kv]int{}
	seeds := map[string][]byte{} // file name -> frame body
	for _, body := range rec.frames() {
		r, err := e.srv.decodeRequest(body)
		if err != nil || r.unsupported {
			t.Fatalf("captured an unserved frame: %v", err)
		}
		k := kv{r.key, r.version}
		if count[k] >= 2 || len(body) > 16<<10 {
			continue
		}
		count[k]++
		seeds[fmt.Sprintf("%02d_%s_v%d_kgo%d.bin", r.key, r.api.name, r.version, count[k])] = body
	}
	// Whatever the session did not send, at the lowest and highest version.
	fmtr := kmsg.NewRequestFormatter(kmsg.FormatterClientID("chronik-seed"))
	e.createTopic("v", 1, nil)
	for _, a := range apis {
		for _, v := range []int16{a.min, a.max} {
			if count[kv{a.key, v}] > 0 {
				continue
			}
			req, _ := versionCases[a.key](t, e, v)
			req.SetVersion(v)
			frame := fmtr.AppendRequest(nil, req, 1)
			seeds[fmt.Sprintf("%02d_%s_v%d_kmsg.bin", a.key, a.name, v)] = frame[4:]
			count[kv{a.key, v}]++
		}
	}
	if err := os.RemoveAll(seedDir); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(seedDir, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, body := range seeds {
		if err := os.WriteFile(filepath.Join(seedDir, name), body, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("wrote %d seed frames to %s", len(seeds), seedDir)
}
