//go:build browser

package main

// Browser tests of the web console: headless Chromium (Debian's chromium
// package) driven by chromedp against a real broker with data. Built only
// with -tags browser (.ci/console.sh installs chromium and runs them), so
// that `go test ./...` on a machine without a browser does not pretend to
// have tested the pages; with the tag and no browser the test fails.
//
//	go test -tags browser -run TestConsoleBrowser -count=1 .
//
// Screenshots of every page go to $CHRONIK_CONSOLE_SHOTS (default
// $TMPDIR/chronik-console-shots), which CI lists and keeps.

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// chromiumPath finds the browser: $CHROMIUM, else chromium or
// chromium-browser on PATH.
func chromiumPath(t *testing.T) string {
	if p := os.Getenv("CHROMIUM"); p != "" {
		return p
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Fatal("no chromium on PATH (apt-get install -y chromium, or set CHROMIUM): the browser tests cannot run")
	return ""
}

func TestConsoleBrowser(t *testing.T) {
	env := startConsoleEnv(t, false)
	shots := os.Getenv("CHRONIK_CONSOLE_SHOTS")
	if shots == "" {
		shots = filepath.Join(os.TempDir(), "chronik-console-shots")
	}
	if err := os.MkdirAll(shots, 0o755); err != nil {
		t.Fatal(err)
	}

	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromiumPath(t)),
		chromedp.NoSandbox, // CI runs as root
		chromedp.DisableGPU,
		chromedp.WindowSize(1280, 900),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancelAlloc()
	bctx, cancelCtx := chromedp.NewContext(actx)
	defer cancelCtx()
	// The first run starts the browser; it must not carry a timeout
	// (chromedp.Run), the steps below do.
	if err := chromedp.Do(bctx); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	ctx, cancel := context.WithTimeout(bctx, 90*time.Second)
	defer cancel()

	// Every console error, uncaught exception and error entry of the
	// browser log (failed loads, CSP violations) fails the test.
	var mu sync.Mutex
	var problems []string
	msgs := chromedp.Console(bctx)
	go func() {
		for m, err := range msgs {
			if err != nil {
				return
			}
			if m.Type == chromedp.ConsoleError || m.IsException() {
				mu.Lock()
				problems = append(problems, m.String()+" at "+m.URL)
				mu.Unlock()
			}
		}
	}()

	n := 0
	shot := func(name string) chromedp.Action[chromedp.Void] {
		return chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
			buf, err := chromedp.FullScreenshot(100)(ctx, tg)
			if err != nil {
				return err
			}
			n++
			return os.WriteFile(filepath.Join(shots, fmt.Sprintf("%02d-%s.png", n, name)), buf, 0o644)
		})
	}
	fail := func(what string, err error) {
		t.Helper()
		mu.Lock()
		defer mu.Unlock()
		t.Fatalf("%s: %v (page problems so far: %q)", what, err, problems)
	}
	step := func(what string, actions ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		if err := chromedp.Do(ctx, actions...); err != nil {
			fail(what, err)
		}
	}
	text := func(sel string) string {
		t.Helper()
		s, err := chromedp.Run(ctx, chromedp.Text(sel))
		if err != nil {
			fail("text of "+sel, err)
		}
		return s
	}

	// Overview.
	step("overview", chromedp.Navigate(env.base+"/ui/"), chromedp.WaitVisible("#nodes tbody tr"), chromedp.WaitVisible("#throughput svg"), shot("overview"))
	nodes := text("#nodes")
	if !strings.Contains(nodes, "this node") || !strings.Contains(nodes, "up") {
		t.Errorf("overview nodes table: %q", nodes)
	}

	// Topics -> orders -> messages -> a JSON record.
	step("topics", chromedp.Click("#nav-topics"), chromedp.WaitVisible(`//table[@id="topics"]//a[text()="orders"]`), shot("topics"))
	step("topic", chromedp.Click(`//table[@id="topics"]//a[text()="orders"]`), chromedp.WaitVisible("#partitions tbody tr"), chromedp.WaitVisible("#configs"), shot("topic"))
	step("messages", chromedp.Click(`//a[text()="Browse messages"]`), chromedp.WaitVisible("#records tr.record-row"), shot("messages"))
	rows, err := chromedp.Run(ctx, chromedp.Evaluate[int](`document.querySelectorAll('#records tr.record-row').length`))
	if err != nil {
		fail("count rows", err)
	}
	if body := text("#msg-results"); strings.Contains(body, "null") {
		t.Errorf("the messages page shows a stray null: %q", body)
	}
	if rows != 50 {
		t.Errorf("the first page shows %d records, want 50", rows)
	}
	step("open a JSON record",
		chromedp.Click(`#records tr.record-row[data-encoding="json"]`),
		chromedp.WaitVisible(`#records tr.record-detail:not([hidden]) .rec-value pre.enc-json`),
		shot("json-record"))
	jsonText := text(`#records tr.record-detail:not([hidden]) .rec-value pre.enc-json`)
	if !strings.Contains(jsonText, "\"items\": [") || !strings.Contains(jsonText, "<b>bold</b>") {
		t.Errorf("the JSON record shows %q, want it pretty-printed with its markup as text", jsonText)
	}
	// The hostile record: shown as text, never run.
	step("the HTML record",
		chromedp.Click(`#records tr.record-row[data-offset="3"]`),
		chromedp.WaitVisible(`#records tr.record-detail[data-offset="3"]:not([hidden]) .rec-value pre.enc-text`),
		shot("html-record"))
	htmlText := text(`#records tr.record-detail[data-offset="3"] .rec-value pre`)
	pwned, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`window.__pwned !== undefined || document.querySelector('#records img') !== null`))
	if err != nil {
		fail("check the HTML record did not run", err)
	}
	if !strings.Contains(htmlText, "<script>window.__pwned=1</script>") || pwned {
		t.Errorf("the HTML record: text %q, ran or made elements: %v", htmlText, pwned)
	}
	// From the end, with a key filter.
	step("messages from the end",
		chromedp.SetValue("#msg-from", "end"), chromedp.SetValue("#msg-key", "user-3"),
		chromedp.Click("#msg-load"), chromedp.WaitVisible(`#records tr.record-row[data-offset="115"]`), shot("messages-end-filtered"))

	// A config edit through the form.
	step("edit a config",
		chromedp.Navigate(env.base+"/ui/#/topics/orders"), chromedp.WaitVisible(`#configs input[name="retention.ms"]`),
		chromedp.SetValue(`#configs input[name="retention.ms"]`, "7200000"),
		chromedp.Click(`//table[@id="configs"]//tr[td[text()="retention.ms"]]//button[text()="Save"]`),
		chromedp.WaitVisible(`//table[@id="configs"]//tr[td[text()="retention.ms"]]/td[text()="topic"]`),
		shot("config-edited"))
	if cfgs, _ := env.b.TopicConfigs("orders"); consoleConfigValue(cfgs, "retention.ms") != "7200000" {
		t.Errorf("retention.ms after the edit: %q", consoleConfigValue(cfgs, "retention.ms"))
	}

	// Groups -> billing -> reset to earliest through the confirmation.
	step("groups", chromedp.Click("#nav-groups"), chromedp.WaitVisible(`//table[@id="groups"]//a[text()="billing"]`), shot("groups"))
	step("group", chromedp.Click(`//table[@id="groups"]//a[text()="billing"]`), chromedp.WaitVisible("#offsets tbody tr"), shot("group"))
	step("reset preview", chromedp.SetValue("#reset-to", "earliest"), chromedp.Click("#reset-preview"),
		chromedp.WaitVisible("#reset-confirm"), shot("reset-confirm"))
	if offs, _, _ := groupOffsets(env.b, "billing"); offs[0].Committed != 100 {
		t.Errorf("the preview changed the offsets: %+v", offs)
	}
	step("reset", chromedp.Click("#reset-confirm"),
		chromedp.WaitVisible(`//table[@id="offsets"]//tr[td[1][text()="orders"] and td[2][text()="0"] and td[3][text()="0"]]`), shot("reset-done"))
	if offs, _, _ := groupOffsets(env.b, "billing"); offs[0].Committed != 0 {
		t.Errorf("offsets after the reset: %+v", offs)
	}

	// Users and ACLs.
	step("users", chromedp.Click("#nav-users"), chromedp.WaitVisible("#user-name"),
		chromedp.SetValue("#user-name", "carol"), chromedp.SetValue("#user-password", "pw-carol"),
		chromedp.Click("#user-add"), chromedp.WaitVisible(`//table[@id="users"]//td[text()="carol"]`), shot("users"))
	step("acls", chromedp.Click("#nav-acls"), chromedp.WaitVisible("#acl-name"),
		chromedp.SetValue("#acl-name", "orders"), chromedp.SetValue("#acl-principal", "User:carol"),
		chromedp.Click("#acl-add"), chromedp.WaitVisible(`//table[@id="acls"]//td[text()="User:carol"]`), shot("acls"))
	step("back to the overview", chromedp.Click("#nav-overview"), chromedp.WaitVisible("#nodes tbody tr"))

	mu.Lock()
	defer mu.Unlock()
	if len(problems) > 0 {
		t.Errorf("the pages logged errors:\n%s", strings.Join(problems, "\n"))
	}
	t.Logf("%d screenshots in %s", n, shots)
}
