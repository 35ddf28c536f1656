package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestCompletionScripts: `chronik completion SHELL` prints each shell's
// script; fish's names every command and serve flag; an unknown shell is
// a usage error.
func TestCompletionScripts(t *testing.T) {
	for shell, want := range map[string][]string{
		"bash": {"complete -o bashdefault -o default -F _chronik chronik", "--generate-bash-completion"},
		"zsh":  {"#compdef chronik", "--generate-bash-completion", "compadd"},
		"fish": {"complete -c chronik", "-a 'serve'", "-l data-dir", "-l max-connections"},
	} {
		r := ok(t, "", "completion", shell)
		for _, w := range want {
			if !strings.Contains(r.stdout, w) {
				t.Errorf("completion %s lacks %q:\n%s", shell, w, r.stdout)
			}
		}
	}
	if r := runCLI(t, "", "completion", "tcsh"); r.code != 2 || !strings.Contains(r.stderr, `"tcsh" is not one of bash, zsh, fish`) {
		t.Errorf("completion tcsh: exit %d, %q; want 2 and the shells", r.code, r.stderr)
	}
	if r := runCLI(t, "", "completion"); r.code != 2 {
		t.Errorf("completion without a shell: exit %d, want 2", r.code)
	}
}

// TestBashCompletion sources the bash script and completes command lines
// against a real chronik (this test binary run as chronik through a
// wrapper on PATH), as bash does on TAB.
func TestBashCompletion(t *testing.T) {
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Fatalf("bash is needed to check the bash completion: %v", err)
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	wrapper := "#!/bin/sh\nCHRONIK_TEST_RUN_MAIN=1 exec '" + self + "' \"$@\"\n"
	if err := os.WriteFile(filepath.Join(dir, "chronik"), []byte(wrapper), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "completion.bash"), []byte(bashCompletion), 0o644); err != nil {
		t.Fatal(err)
	}
	// Each case: the words typed (the last one being completed) and
	// what COMPREPLY must hold.
	for line, want := range map[string][]string{
		"chronik to":                {"topic"},
		"chronik ":                  {"serve", "topic", "produce", "consume", "group", "bench", "completion", "man"},
		"chronik topic cr":          {"create"},
		"chronik group ":            {"list", "describe", "seek", "delete"},
		"chronik serve --data-":     {"--data-dir"},
		"chronik serve --max-conne": {"--max-connections", "--max-connections-per-ip"},
		"chronik completion ":       {},
	} {
		script := `source "$1/completion.bash"
read -ra COMP_WORDS <<<"$2"
case "$2" in *" ") COMP_WORDS+=("") ;; esac
COMP_CWORD=$(( ${#COMP_WORDS[@]} - 1 ))
_chronik
printf '%s\n' "${COMPREPLY[@]}"`
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		cmd := exec.CommandContext(ctx, bash, "--norc", "--noprofile", "-c", script, "bash", dir, line)
		cmd.Env = append(os.Environ(), "PATH="+dir+string(os.PathListSeparator)+os.Getenv("PATH"))
		out, err := cmd.CombinedOutput()
		cancel()
		if err != nil {
			t.Fatalf("completing %q: %v\n%s", line, err, out)
		}
		got := strings.Fields(string(out))
		for _, w := range want {
			found := false
			for _, g := range got {
				found = found || g == w
			}
			if !found {
				t.Errorf("completing %q: %q lacks %q", line, got, w)
			}
		}
		if strings.HasSuffix(line, "--data-") && len(got) != 1 {
			t.Errorf("completing %q: %q, want only --data-dir", line, got)
		}
	}
}

// TestManPage: `chronik man` is a section 1 manual page generated from the
// commands and flags: it names every visible command and every serve
// setting, and is the same on every run (the packages build it).
func TestManPage(t *testing.T) {
	r := ok(t, "", "man")
	page := r.stdout
	if !strings.HasPrefix(page, ".nh\n.TH chronik 1") {
		t.Fatalf("man page does not start as a section 1 page:\n%.200s", page)
	}
	for _, cmd := range newApp(nil, nil).Commands {
		if !cmd.Hidden && !strings.Contains(page, "\n.SH "+cmd.Name+"\n") && !strings.Contains(page, "\n.SH "+cmd.Name+",") {
			t.Errorf("man page has no section for command %s", cmd.Name)
		}
	}
	for _, f := range serveFlags() {
		if name := f.Names()[0]; !strings.Contains(page, `\fB--`+name+`\fP`) {
			t.Errorf("man page does not name serve --%s", f.Names()[0])
		}
	}
	for _, w := range []string{"CHRONIK_", "/etc/chronik/chronik.yaml", "/usr/share/chronik/"} {
		if !strings.Contains(page, w) {
			t.Errorf("man page does not mention %s", w)
		}
	}
	if again := ok(t, "", "man").stdout; again != page {
		t.Error("two runs of chronik man differ")
	}
	if r := runCLI(t, "", "man", "extra"); r.code != 2 {
		t.Errorf("man extra: exit %d, want 2", r.code)
	}
}
