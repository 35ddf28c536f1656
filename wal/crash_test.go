package wal

import (
	"bufio"
	"fmt"
	"hash/fnv"
	"maps"
	"math/rand/v2"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

const (
	crashDirEnv  = "CHRONIK_WAL_CRASH_DIR"
	crashSeedEnv = "CHRONIK_WAL_CRASH_SEED"
)

var crashOpts = Options{SegmentSize: 64 << 10, Fsync: FsyncAlways}

func TestMain(m *testing.M) {
	if dir := os.Getenv(crashDirEnv); dir != "" {
		seed, _ := strconv.ParseUint(os.Getenv(crashSeedEnv), 10, 64)
		crashChild(dir, seed) // never returns
	}
	if dir := os.Getenv(rewriteCrashDirEnv); dir != "" {
		rewriteCrashChild(dir) // never returns
	}
	code := m.Run()
	benchCleanup()
	os.Exit(code)
}

func entryHash(e Entry) uint64 {
	h := fnv.New64a()
	fmt.Fprintf(h, "%d/%d/%d/%d/%d/", e.Kind, e.Term, e.BaseOffset, e.LastOffsetDelta, e.MaxTimestamp)
	h.Write(e.Payload)
	return h.Sum64()
}

// crashChild appends from a few goroutines until it is killed, printing
// "ack <index> <hash>" for every entry whose Append returned.
func crashChild(dir string, seed uint64) {
	l, err := Open(dir, crashOpts)
	if err != nil {
		fmt.Fprintln(os.Stderr, "child open:", err)
		os.Exit(2)
	}
	var mu sync.Mutex
	next := l.NextOffset()
	os.Stdout.WriteString("ready\n")
	for g := uint64(0); g < 4; g++ {
		go func() {
			rng := rand.New(rand.NewPCG(seed, g))
			for {
				e := Entry{Term: seed, Payload: make([]byte, 100+rng.IntN(3000))}
				for i := range e.Payload {
					e.Payload[i] = byte(rng.Uint32())
				}
				var idx uint64
				var err error
				if rng.IntN(8) == 0 { // concurrent with the others' appends
					e.Kind = KindNoop
					idx, err = l.Append(e)
				} else { // offsets assigned and appended under one lock, as a partition does
					mu.Lock()
					e.Kind, e.BaseOffset, e.LastOffsetDelta, e.MaxTimestamp = KindData, next, int32(rng.IntN(4)), time.Now().UnixMilli()
					next = e.LastOffset() + 1
					idx, err = l.Append(e)
					mu.Unlock()
				}
				if err != nil {
					fmt.Fprintln(os.Stderr, "child append:", err)
					os.Exit(3)
				}
				// One write per line: atomic on a pipe.
				os.Stdout.WriteString(fmt.Sprintf("ack %d %x\n", idx, entryHash(e)))
			}
		}()
	}
	select {}
}

// TestCrash SIGKILLs a child process that appends with FsyncAlways at random
// moments, and checks after each kill that every acknowledged entry is
// present and byte-identical and that the log is still appendable.
func TestCrash(t *testing.T) {
	const cycles = 50
	dir := t.TempDir()
	rng := rand.New(rand.NewPCG(2024, 11))
	acked := map[uint64]uint64{} // index -> hash
	repairs := 0
	for cycle := 0; cycle < cycles; cycle++ {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), crashDirEnv+"="+dir, crashSeedEnv+"="+strconv.Itoa(cycle+1))
		var stderr strings.Builder
		cmd.Stderr = &stderr
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		ready := make(chan struct{})
		var lines []string
		done := make(chan struct{})
		go func() {
			defer close(done)
			sc := bufio.NewScanner(out)
			for sc.Scan() {
				if sc.Text() == "ready" {
					close(ready)
					continue
				}
				lines = append(lines, sc.Text())
			}
		}()
		select {
		case <-ready:
		case <-done:
			cmd.Wait()
			t.Fatalf("cycle %d: child exited before ready: %s", cycle, stderr.String())
		}
		time.Sleep(time.Duration(20+rng.IntN(61)) * time.Millisecond)
		cmd.Process.Kill() // SIGKILL
		<-done
		cmd.Wait()
		if strings.Contains(stderr.String(), "child") {
			t.Fatalf("cycle %d: child failed: %s", cycle, stderr.String())
		}
		for _, line := range lines {
			var idx, h uint64
			if _, err := fmt.Sscanf(line, "ack %d %x", &idx, &h); err != nil {
				continue // a line cut by the kill was never acknowledged
			}
			if old, ok := acked[idx]; ok && old != h {
				t.Fatalf("cycle %d: index %d acknowledged twice with different content", cycle, idx)
			}
			acked[idx] = h
		}

		l, err := Open(dir, crashOpts)
		if err != nil {
			t.Fatalf("cycle %d: reopen after kill: %v", cycle, err)
		}
		repairs += len(l.Repairs())
		for _, idx := range slices.Sorted(maps.Keys(acked)) { // in order: one segment load each
			h := acked[idx]
			e, err := l.Read(idx)
			if err != nil {
				t.Fatalf("cycle %d: acknowledged index %d: %v", cycle, idx, err)
			}
			if entryHash(e) != h {
				t.Fatalf("cycle %d: acknowledged index %d changed", cycle, idx)
			}
		}
		if _, err := l.Append(Entry{Kind: KindData, BaseOffset: l.NextOffset(), Payload: []byte("parent")}); err != nil {
			t.Fatalf("cycle %d: append after reopen: %v", cycle, err)
		}
		checkFiles(t, l)
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
	}
	if len(acked) < cycles {
		t.Fatalf("only %d entries acknowledged in %d cycles", len(acked), cycles)
	}
	t.Logf("%d acknowledged entries survived %d kills; %d tail repairs", len(acked), cycles, repairs)
}
