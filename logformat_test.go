package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// openPTY opens a pseudo-terminal pair: the terminal side (what a shell's
// standard error is) and the controller side, which reads what was
// written to it.
func openPTY(t *testing.T) (terminal, controller *os.File) {
	t.Helper()
	controller, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatalf("open /dev/ptmx: %v", err)
	}
	t.Cleanup(func() { controller.Close() })
	fd := int(controller.Fd())
	if err := unix.IoctlSetPointerInt(fd, unix.TIOCSPTLCK, 0); err != nil {
		t.Fatalf("unlock pty: %v", err)
	}
	n, err := unix.IoctlGetInt(fd, unix.TIOCGPTN)
	if err != nil {
		t.Fatalf("pty number: %v", err)
	}
	terminal, err = os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatalf("open /dev/pts/%d: %v", n, err)
	}
	t.Cleanup(func() { terminal.Close() })
	return terminal, controller
}

// TestLogFormatAuto: --log-format auto (the default) logs JSON to anything
// that is not a terminal (systemd's journal, a file, a pipe) and
// human-readable lines to a terminal; json and console force either.
func TestLogFormatAuto(t *testing.T) {
	if f := lookupFlag(serveFlags(), "log-format"); f == nil || f.(interface{ GetValue() string }).GetValue() != "auto" {
		t.Fatalf("serve --log-format default is not auto: %v", f)
	}
	isJSON := func(line string) bool {
		var m map[string]any
		return json.Unmarshal([]byte(line), &m) == nil && m["message"] == "hello" && m["level"] == "info"
	}

	// Not a terminal: a buffer, and a file.
	var buf bytes.Buffer
	log, err := newLogger(&buf, "info", "auto")
	if err != nil {
		t.Fatal(err)
	}
	log.Info().Msg("hello")
	if !isJSON(strings.TrimSpace(buf.String())) {
		t.Errorf("auto to a buffer wrote %q, want a JSON line", buf.String())
	}
	file, err := os.Create(t.TempDir() + "/log")
	if err != nil {
		t.Fatal(err)
	}
	defer file.Close()
	if log, err = newLogger(file, "info", "auto"); err != nil {
		t.Fatal(err)
	}
	log.Info().Msg("hello")
	if data, _ := os.ReadFile(file.Name()); !isJSON(strings.TrimSpace(string(data))) {
		t.Errorf("auto to a file wrote %q, want a JSON line", data)
	}

	// A terminal: console lines ("<time> INF hello"), and json still forced.
	for format, wantJSON := range map[string]bool{"auto": false, "console": false, "json": true} {
		term, ctl := openPTY(t)
		log, err := newLogger(term, "info", format)
		if err != nil {
			t.Fatal(err)
		}
		log.Info().Msg("hello")
		ctl.SetReadDeadline(time.Now().Add(10 * time.Second))
		out := make([]byte, 4096)
		n, err := ctl.Read(out)
		if err != nil {
			t.Fatalf("%s: read the terminal: %v", format, err)
		}
		line := strings.TrimSpace(string(out[:n]))
		if got := isJSON(line); got != wantJSON {
			t.Errorf("--log-format %s on a terminal wrote %q; want JSON: %v", format, line, wantJSON)
		}
		if !wantJSON && !strings.Contains(line, "INF") {
			t.Errorf("--log-format %s on a terminal wrote %q, want a console line with INF", format, line)
		}
	}

	if _, err := newLogger(&buf, "info", "xml"); err == nil || !strings.Contains(err.Error(), "auto, json, console") {
		t.Errorf("--log-format xml: %v, want an error naming auto, json, console", err)
	}
}
