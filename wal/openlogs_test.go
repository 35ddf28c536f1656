package wal

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// openFDs counts this process's descriptors on files under dir.
func openFDs(t *testing.T, dir string) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range ents {
		target, err := os.Readlink(filepath.Join("/proc/self/fd", e.Name()))
		if err == nil && strings.HasPrefix(target, dir) {
			n++
		}
	}
	return n
}

// TestOpenLogsCap: twelve logs under a cap of three never hold more than
// three logs' files open; each still appends and reads (reopening on use),
// least recently used first out, and closing leaves no descriptor behind.
func TestOpenLogsCap(t *testing.T) {
	root := t.TempDir()
	ol := NewOpenLogs(3)
	var logs []*Log
	for i := range 12 {
		l := mustOpen(t, filepath.Join(root, fmt.Sprint(i)), Options{OpenLogs: ol})
		logs = append(logs, l)
		appendData(t, l, 5, 100)
		if ol.Open() > 3 {
			t.Fatalf("%d logs open under a cap of 3", ol.Open())
		}
		if fds := openFDs(t, root); fds > 3*FilesPerOpenLog {
			t.Fatalf("%d descriptors open under a cap of 3 logs", fds)
		}
	}
	if ol.Evictions() < 9 {
		t.Fatalf("%d evictions", ol.Evictions())
	}
	for round := range 2 {
		for i, l := range logs {
			if e, err := l.Read(5); err != nil || e.BaseOffset != 4 {
				t.Fatalf("round %d: read log %d: %+v %v", round, i, e, err)
			}
			appendData(t, l, 1, 100)
		}
	}
	for _, l := range logs {
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
	}
	if ol.Open() != 0 || openFDs(t, root) != 0 {
		t.Fatalf("after close: %d open, %d descriptors", ol.Open(), openFDs(t, root))
	}
}

// TestOpenLogsAllBusy: when every open log stays in use, a log that must
// open its files (on first use: Open under a budget opens none) fails with
// ErrTooManyOpenLogs (after waiting for room) instead of going over the
// cap.
func TestOpenLogsAllBusy(t *testing.T) {
	root := t.TempDir()
	ol := NewOpenLogs(1)
	ol.wait = 50 * time.Millisecond
	a := mustOpen(t, filepath.Join(root, "a"), Options{OpenLogs: ol})
	defer a.Close()
	appendData(t, a, 1, 10) // opens a's files (Open under a budget does not)
	b := mustOpen(t, filepath.Join(root, "b"), Options{OpenLogs: ol})
	defer b.Close()
	if ol.Open() != 1 {
		t.Fatalf("%d open after Open of a second log; want 1 (files open on first use)", ol.Open())
	}
	a.wmu.Lock() // a is busy (a commit round in progress, say)
	_, err := b.Append(testEntry(b, 10))
	a.wmu.Unlock()
	if !errors.Is(err, ErrTooManyOpenLogs) {
		t.Fatalf("append beside a busy log under a cap of 1: %v", err)
	}
	appendData(t, b, 1, 10)
	if ol.Open() != 1 {
		t.Fatalf("%d open", ol.Open())
	}
}

// TestOpenLogsWaitsForRoom: a log that must open its files while every
// open log is in use waits until one of them can be released, then opens
// within the cap: it does not fail because the others were busy for a
// moment.
func TestOpenLogsWaitsForRoom(t *testing.T) {
	root := t.TempDir()
	ol := NewOpenLogs(1)
	a := mustOpen(t, filepath.Join(root, "a"), Options{OpenLogs: ol})
	defer a.Close()
	appendData(t, a, 1, 10) // opens a's files (Open under a budget does not)
	b := mustOpen(t, filepath.Join(root, "b"), Options{OpenLogs: ol})
	a.wmu.Lock() // a is busy
	opened := make(chan error, 1)
	go func() {
		_, err := b.Append(testEntry(b, 10))
		opened <- err
	}()
	// b cannot open while a is busy; once a is done, b takes its place.
	select {
	case err := <-opened:
		t.Fatalf("b opened beside a busy log under a cap of 1: %v", err)
	case <-time.After(100 * time.Millisecond):
	}
	a.wmu.Unlock()
	if err := <-opened; err != nil {
		t.Fatalf("b, once a was free: %v", err)
	}
	defer b.Close()
	if ol.Open() != 1 || ol.Evictions() != 1 {
		t.Fatalf("%d open, %d evictions; want 1 and 1", ol.Open(), ol.Evictions())
	}
}

// testEntry is one small data entry at l's next offset.
func testEntry(l *Log, size int) Entry {
	off := l.NextOffset()
	return Entry{Kind: KindData, Term: 1, BaseOffset: off, MaxTimestamp: 1000 * off, Payload: payloadFor(uint64(off), size)}
}
