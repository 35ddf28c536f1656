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
// the unit, the config and environment files and the data directory; no
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
