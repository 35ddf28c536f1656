package broker

import (
	"encoding/base64"
	"errors"
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/kerr"
)

func TestValidateTopicName(t *testing.T) {
	tests := []struct {
		name string
		ok   bool
	}{
		{"orders", true},
		{"a", true},
		{"Orders.v1_x-y", true},
		{"...", true},
		{strings.Repeat("x", 249), true},
		{strings.Repeat("x", 250), false},
		{"", false},
		{".", false},
		{"..", false},
		{"with space", false},
		{"slash/name", false},
		{"colon:name", false},
		{"ünicode", false},
		{"tab\t", false},
	}
	for _, tt := range tests {
		err := validateTopicName(tt.name)
		if tt.ok != (err == nil) {
			t.Errorf("%q: got %v", tt.name, err)
		}
		if err != nil && !errors.Is(err, kerr.InvalidTopicException) {
			t.Errorf("%q: %v is not INVALID_TOPIC_EXCEPTION", tt.name, err)
		}
	}
}

func TestCollisionName(t *testing.T) {
	if collisionName("a.b_c") != collisionName("a_b.c") {
		t.Fatal("a.b_c and a_b.c must collide")
	}
	if collisionName("ab") == collisionName("a_b") {
		t.Fatal("ab and a_b must not collide")
	}
}

func TestNewIDs(t *testing.T) {
	seen := map[[16]byte]bool{}
	for range 200 {
		id := newTopicID()
		if id == ([16]byte{}) || id == metadataTopicID || seen[id] {
			t.Fatalf("bad id %x", id)
		}
		if base64.RawURLEncoding.EncodeToString(id[:])[0] == '-' {
			t.Fatalf("id %x starts with '-'", id)
		}
		seen[id] = true
	}
	c := newClusterID()
	if len(c) != 22 {
		t.Fatalf("cluster id %q", c)
	}
	if _, err := base64.RawURLEncoding.DecodeString(c); err != nil {
		t.Fatal(err)
	}
}
