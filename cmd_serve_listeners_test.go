package main

import (
	"strings"
	"testing"

	"github.com/chronik-stream/chronik/broker"
)

func TestListenerSettings(t *testing.T) {
	bc, kc, code, msg := resolveOnly(t, "--listeners", "PLAINTEXT://127.0.0.1:9092,CLIENT://:9093,sasl_ssl://10.0.0.1:9094",
		"--listener-security-protocol-map", "CLIENT:SASL_PLAINTEXT",
		"--advertised-listeners", "CLIENT://kafka.example.com:19093", "--connections-max-reauth", "1h",
		"--sasl-mechanisms", "plain,SCRAM-SHA-512", "--tls-cert-file", "/nonexistent/c.pem", "--tls-key-file", "/nonexistent/k.pem")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, msg)
	}
	want := []broker.Endpoint{{Name: "PLAINTEXT", Protocol: "PLAINTEXT", Host: "127.0.0.1", Port: 9092}, {Name: "CLIENT", Protocol: "SASL_PLAINTEXT", Host: "kafka.example.com", Port: 19093}, {Name: "SASL_SSL", Protocol: "SASL_SSL", Host: "10.0.0.1", Port: 9094}}
	if len(bc.Listeners) != 3 || bc.Listeners[0] != want[0] || bc.Listeners[1] != want[1] || bc.Listeners[2] != want[2] {
		t.Fatalf("listeners %+v", bc.Listeners)
	}
	if bc.AdvertisedHost != "127.0.0.1" || bc.AdvertisedPort != 9092 || kc.ConnectionsMaxReauth.String() != "1h0m0s" ||
		strings.Join(kc.SASLMechanisms, ",") != "PLAIN,SCRAM-SHA-512" {
		t.Fatalf("bc %s:%d, kc %v %v", bc.AdvertisedHost, bc.AdvertisedPort, kc.ConnectionsMaxReauth, kc.SASLMechanisms)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--listeners", "127.0.0.1:9092"}, "listeners"},
		{[]string{"--listeners", "FOO://:9092"}, "neither a security protocol"},
		{[]string{"--listeners", "PLAINTEXT://:9092,PLAINTEXT://:9093"}, "appears twice"},
		{[]string{"--listeners", "PLAINTEXT://:9092,SSL://:9092"}, "both use port"},
		{[]string{"--listeners", "PLAINTEXT://:9092", "--listen", ":9093"}, "not both"},
		{[]string{"--listeners", "PLAINTEXT://:9092", "--advertised-listeners", "SSL://h:1"}, "not one of the listeners"},
		{[]string{"--advertised-listeners", "PLAINTEXT://h:1"}, "needs listeners"},
		{[]string{"--listener-security-protocol-map", "X:TLS", "--listeners", "X://:1"}, "security protocol"},
		{[]string{"--sasl-mechanisms", "GSSAPI"}, "sasl-mechanisms"},
		{[]string{"--connections-max-reauth", "-1s"}, "connections-max-reauth"},
	} {
		if _, _, code, msg := resolveOnly(t, tc.args...); code != 2 || !strings.Contains(msg, tc.want) {
			t.Errorf("%v: exit %d %q, want 2 and %q", tc.args, code, msg, tc.want)
		}
	}
}
