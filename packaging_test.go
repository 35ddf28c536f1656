package main

import (
	"os"
	"regexp"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// TestPackagedConfigParses: /etc/chronik/chronik.yaml as the packages
// install it is a valid serve configuration (its commented security
// section included: comments are ignored).
func TestPackagedConfigParses(t *testing.T) {
	bc, _, code, msg := resolveOnly(t, "--config", "packaging/chronik.yaml")
	if code != 0 {
		t.Fatalf("packaging/chronik.yaml: exit %d: %s", code, msg)
	}
	if bc.DataDir != "/var/lib/chronik" {
		t.Errorf("packaged data_dir = %q", bc.DataDir)
	}
}

// secretWords are what no packaged setting or file may name: the packages
// install no keys, certificates, tokens, passwords or users.
var secretWords = regexp.MustCompile(`(?i)(tls|token|passw|secret|sasl|key|cert|\.pem|user|super)`)

// TestPackagesInstallNothingSecret: the deb/rpm contents are the binary,
// the unit, the config and environment files, the data directory and the
// documentation (packagedDocs); no
// setting that is not commented out names a key, token, password or user;
// the admin listener stays on loopback.
func TestPackagesInstallNothingSecret(t *testing.T) {
	data, err := os.ReadFile("packaging/nfpm.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var pkg struct {
		Contents []struct{ Src, Dst string }
	}
	if err := yaml.Unmarshal(data, &pkg); err != nil {
		t.Fatal(err)
	}
	allowed := map[string]bool{"/usr/bin/chronik": true, "/etc/chronik/chronik.yaml": true, "/etc/default/chronik": true,
		"/etc/sysconfig/chronik": true, "/usr/lib/systemd/system/chronik.service": true, "/var/lib/chronik": true}
	for _, f := range packagedDocs {
		allowed[f] = true
	}
	for _, c := range pkg.Contents {
		if !allowed[c.Dst] || secretWords.MatchString(c.Src) {
			t.Errorf("the package installs %s from %q: only the binary, unit, config files and data directory (nothing secret)", c.Dst, c.Src)
		}
	}
	for _, f := range []string{"packaging/chronik.yaml", "packaging/environment"} {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for i, line := range strings.Split(string(data), "\n") {
			line = strings.TrimSpace(line)
			if line == "" || strings.HasPrefix(line, "#") {
				continue
			}
			if secretWords.MatchString(line) || strings.HasPrefix(line, "admin_") || strings.HasPrefix(line, "CHRONIK_ADMIN") {
				t.Errorf("%s line %d sets %q: security settings ship commented out", f, i+1, line)
			}
		}
	}
	for _, f := range []string{"packaging/scripts/preinstall.sh", "packaging/scripts/postinstall.sh"} {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if regexp.MustCompile(`(?i)openssl|\.pem|\.key\b|token|chpasswd|chronik (user|acl)`).Match(data) {
			t.Errorf("%s makes keys, tokens or users: the packages install nothing secret", f)
		}
	}
}

// packagedDocs are the documentation files the packages install besides
// the binary, the unit and the configuration: the manual page and shell
// completions (generated from the binary by packaging/build.sh), the
// Grafana dashboard and the Prometheus alert rules.
var packagedDocs = []string{
	"/usr/share/man/man1/chronik.1.gz",
	"/usr/share/bash-completion/completions/chronik",
	"/usr/share/zsh/vendor-completions/_chronik",
	"/usr/share/zsh/site-functions/_chronik",
	"/usr/share/fish/vendor_completions.d/chronik.fish",
	"/usr/share/chronik/grafana/chronik.json",
	"/usr/share/chronik/prometheus/chronik-alerts.yml",
}

// TestPackagesInstallDocs: nfpm.yaml installs every packagedDocs file,
// world-readable, from a file of the repository or one build.sh generates.
func TestPackagesInstallDocs(t *testing.T) {
	data, err := os.ReadFile("packaging/nfpm.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var pkg struct {
		Contents []struct {
			Src, Dst string
			FileInfo struct{ Mode int } `yaml:"file_info"`
		}
	}
	if err := yaml.Unmarshal(data, &pkg); err != nil {
		t.Fatal(err)
	}
	build, err := os.ReadFile("packaging/build.sh")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range packagedDocs {
		found := false
		for _, c := range pkg.Contents {
			if c.Dst != want {
				continue
			}
			found = true
			if c.FileInfo.Mode != 0o644 {
				t.Errorf("%s is installed with mode %o, want 644", want, c.FileInfo.Mode)
			}
			if gen, ok := strings.CutPrefix(c.Src, "${CHRONIK_GENERATED}/"); ok {
				if !strings.Contains(string(build), gen) {
					t.Errorf("%s comes from %s, which packaging/build.sh does not generate", want, c.Src)
				}
			} else if _, err := os.Stat(c.Src); err != nil {
				t.Errorf("%s: %v", want, err)
			}
		}
		if !found {
			t.Errorf("packaging/nfpm.yaml does not install %s", want)
		}
	}
}
