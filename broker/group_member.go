package broker

import (
	"bytes"
	"encoding/hex"
	"io"
	"time"

	"crypto/rand"
)

// groupMember is one member of a classic group (Kafka's MemberMetadata).
type groupMember struct {
	memberID   string
	instanceID string // "" for dynamic members
	clientID   string
	clientHost string

	rebalanceTimeoutMs int32
	sessionTimeoutMs   int32
	protocolType       string
	protocols          []GroupProtocol // in the member's order of preference
	assignment         []byte          // from the leader's last SyncGroup

	// A member is "awaiting join" while it holds an unanswered JoinGroup and
	// "awaiting sync" while it holds an unanswered SyncGroup. Both count as
	// a satisfied heartbeat: such a member cannot heartbeat on the socket it
	// is waiting on, so its session must not expire meanwhile.
	joinWaiting bool
	joinToken   uint64
	syncWaiting bool
	syncToken   uint64

	// isNew marks a member added by its first JoinGroup whose join has not
	// completed yet. Its timer is NewMemberJoinTimeout and, unlike others,
	// it does expire while awaiting join: a client that gave up on a long
	// rebalance retries with a new member, and the defunct one must go.
	isNew bool

	// sessionDeadline is when the member is removed unless it heartbeats;
	// zero when no timer runs (awaiting join or sync).
	sessionDeadline time.Time
}

func (m *groupMember) sessionTimeout() time.Duration {
	return time.Duration(m.sessionTimeoutMs) * time.Millisecond
}

func (m *groupMember) rebalanceTimeout() time.Duration {
	return time.Duration(m.rebalanceTimeoutMs) * time.Millisecond
}

// matches reports whether protocols equal the member's, in order and bytes.
// A member rejoining with identical metadata needs no rebalance.
func (m *groupMember) matches(protocols []GroupProtocol) bool {
	if len(protocols) != len(m.protocols) {
		return false
	}
	for i := range protocols {
		if protocols[i].Name != m.protocols[i].Name || !bytes.Equal(protocols[i].Metadata, m.protocols[i].Metadata) {
			return false
		}
	}
	return true
}

// metadata returns the member's metadata for protocol.
func (m *groupMember) metadata(protocol string) []byte {
	for _, p := range m.protocols {
		if p.Name == protocol {
			return p.Metadata
		}
	}
	return nil
}

// vote is the member's most preferred protocol among candidates.
func (m *groupMember) vote(candidates map[string]bool) string {
	for _, p := range m.protocols {
		if candidates[p.Name] {
			return p.Name
		}
	}
	return ""
}

// groupDistinctProtocols calls fn once per distinct protocol name: a member
// listing a protocol twice still supports it once.
func groupDistinctProtocols(protocols []GroupProtocol, fn func(name string)) {
	for i, p := range protocols {
		dup := false
		for _, q := range protocols[:i] {
			if q.Name == p.Name {
				dup = true
				break
			}
		}
		if !dup {
			fn(p.Name)
		}
	}
}

// groupCloneProtocols copies protocols so that the caller's request buffers
// may be reused once the call returns.
func groupCloneProtocols(in []GroupProtocol) []GroupProtocol {
	out := make([]GroupProtocol, len(in))
	for i, p := range in {
		out[i] = GroupProtocol{Name: p.Name, Metadata: bytes.Clone(p.Metadata)}
	}
	return out
}

// groupNewMemberID returns prefix + "-" + a random (version 4) UUID, which
// is how Kafka names members: the client id for dynamic members, the
// group.instance.id for static ones.
func groupNewMemberID(r io.Reader, prefix string) string {
	var u [16]byte
	if _, err := io.ReadFull(r, u[:]); err != nil {
		// A failing custom source must not produce duplicate ids.
		rand.Read(u[:])
	}
	u[6] = u[6]&0x0f | 0x40
	u[8] = u[8]&0x3f | 0x80
	var s [36]byte
	hex.Encode(s[0:8], u[0:4])
	s[8] = '-'
	hex.Encode(s[9:13], u[4:6])
	s[13] = '-'
	hex.Encode(s[14:18], u[6:8])
	s[18] = '-'
	hex.Encode(s[19:23], u[8:10])
	s[23] = '-'
	hex.Encode(s[24:], u[10:])
	return prefix + "-" + string(s[:])
}
