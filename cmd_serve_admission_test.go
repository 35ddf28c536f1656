package main

import (
	"strings"
	"testing"
	"time"
)

// The request admission settings: defaults, 0 for no connection limit
// (kafka.Config's -1), and refused values naming the setting.
func TestAdmissionSettings(t *testing.T) {
	_, kc, code, msg := resolveOnly(t)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, msg)
	}
	if kc.RequestReadTimeout != 30*time.Second || kc.MaxConnections != 10000 || kc.MaxConnectionsPerIP != 1000 {
		t.Errorf("defaults: request read timeout %v, max connections %d, per IP %d",
			kc.RequestReadTimeout, kc.MaxConnections, kc.MaxConnectionsPerIP)
	}
	_, kc, code, msg = resolveOnly(t, "--request-read-timeout", "5s", "--max-connections", "0", "--max-connections-per-ip", "0")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, msg)
	}
	if kc.RequestReadTimeout != 5*time.Second || kc.MaxConnections != -1 || kc.MaxConnectionsPerIP != -1 {
		t.Errorf("no limits: request read timeout %v, max connections %d, per IP %d",
			kc.RequestReadTimeout, kc.MaxConnections, kc.MaxConnectionsPerIP)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--request-read-timeout", "0s"}, "request-read-timeout: must be positive"},
		{[]string{"--max-connections", "-1"}, "max-connections: -1 is negative"},
		{[]string{"--max-connections-per-ip", "-5"}, "max-connections-per-ip: -5 is negative"},
	} {
		_, _, code, msg := resolveOnly(t, tc.args...)
		if code != 2 || !strings.Contains(msg, tc.want) {
			t.Errorf("%v: exit %d message %q, want 2 and %q", tc.args, code, msg, tc.want)
		}
	}
}
