package broker

import (
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"strings"

	"github.com/twmb/franz-go/pkg/kerr"
)

// maxTopicNameLength is Kafka's Topic.MAX_NAME_LENGTH.
const maxTopicNameLength = 249

// validateTopicName applies Kafka's Topic.validate: 1..249 characters of
// [a-zA-Z0-9._-], and neither "." nor "..". Errors wrap
// INVALID_TOPIC_EXCEPTION.
func validateTopicName(name string) error {
	switch {
	case name == "":
		return fmt.Errorf("topic name is empty: %w", kerr.InvalidTopicException)
	case name == "." || name == "..":
		return fmt.Errorf("topic name %q is illegal: %w", name, kerr.InvalidTopicException)
	case len(name) > maxTopicNameLength:
		return fmt.Errorf("topic name of %d characters exceeds %d: %w", len(name), maxTopicNameLength, kerr.InvalidTopicException)
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '_' || c == '-') {
			return fmt.Errorf("topic name %q contains %q, only [a-zA-Z0-9._-] are legal: %w", name, c, kerr.InvalidTopicException)
		}
	}
	return nil
}

// ValidateTopicName is validateTopicName for callers that must classify a
// name without creating anything (Metadata: INVALID_TOPIC_EXCEPTION rather
// than UNKNOWN_TOPIC_OR_PARTITION).
func ValidateTopicName(name string) error { return validateTopicName(name) }

// collisionName is the name under which Kafka considers two topics to
// collide: '.' and '_' are the same in metric names (Topic.unifyCollisionChars).
func collisionName(name string) string { return strings.ReplaceAll(name, ".", "_") }

// isInternalTopic reports Kafka's internal topics.
func isInternalTopic(name string) bool {
	return name == "__consumer_offsets" || name == "__transaction_state"
}

// newTopicID returns a random topic id as Kafka's Uuid.randomUuid does: never
// the zero id (reserved), never one whose base64 form starts with '-'
// (it would read as a command-line flag).
func newTopicID() [16]byte {
	for {
		var id [16]byte
		if _, err := rand.Read(id[:]); err != nil {
			panic(err) // crypto/rand never fails on supported platforms
		}
		if id == ([16]byte{}) || id == metadataTopicID {
			continue
		}
		if base64.RawURLEncoding.EncodeToString(id[:])[0] == '-' {
			continue
		}
		return id
	}
}

// metadataTopicID is Kafka's Uuid.METADATA_TOPIC_ID (0...01), reserved.
var metadataTopicID = [16]byte{15: 1}

// newClusterID returns base64url (no padding) of 16 random bytes, the form
// of Kafka's cluster ids.
func newClusterID() string {
	id := newTopicID()
	return base64.RawURLEncoding.EncodeToString(id[:])
}
