package broker

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/sha512"
	"fmt"
	"maps"
	"slices"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/xdg-go/scram"
)

// SCRAM credentials (KIP-84) live in the metadata log, like topics: a
// user_scram_set record carries one user's salted, iterated credential for
// one mechanism (never the password), user_scram_deleted removes it. So
// they replicate in cluster mode and survive compaction in the snapshot
// record. The published table is immutable and replaced on every change,
// so SASL authentication reads it without locks.

// ScramMechanism is a SCRAM mechanism, numbered as Kafka's
// ScramMechanism (DescribeUserScramCredentials, AlterUserScramCredentials).
type ScramMechanism int8

const (
	ScramSHA256 ScramMechanism = 1
	ScramSHA512 ScramMechanism = 2
)

// Kafka's bounds on a credential's iterations (ScramMechanism.minIterations
// and the 16384 cap AlterUserScramCredentials enforces).
const (
	MinScramIterations = 4096
	MaxScramIterations = 16384
)

// String is the SASL mechanism name ("SCRAM-SHA-256").
func (m ScramMechanism) String() string {
	switch m {
	case ScramSHA256:
		return "SCRAM-SHA-256"
	case ScramSHA512:
		return "SCRAM-SHA-512"
	}
	return fmt.Sprintf("UNKNOWN(%d)", int8(m))
}

// ParseScramMechanism is the mechanism named s ("SCRAM-SHA-512").
func ParseScramMechanism(s string) (ScramMechanism, bool) {
	switch s {
	case "SCRAM-SHA-256":
		return ScramSHA256, true
	case "SCRAM-SHA-512":
		return ScramSHA512, true
	}
	return 0, false
}

// Hash is the mechanism's hash for the scram library; nil if unknown.
func (m ScramMechanism) Hash() scram.HashGeneratorFcn {
	switch m {
	case ScramSHA256:
		return scram.SHA256
	case ScramSHA512:
		return scram.SHA512
	}
	return nil
}

// keySize is the size of the mechanism's StoredKey and ServerKey.
func (m ScramMechanism) keySize() int {
	switch m {
	case ScramSHA256:
		return sha256.Size
	case ScramSHA512:
		return sha512.Size
	}
	return 0
}

// ScramCredential is what a server stores to check a SCRAM client (RFC
// 5802): the salt and iterations the client derives its keys with, and
// the two derived keys. The password cannot be recovered from it.
type ScramCredential struct {
	Mechanism                  ScramMechanism
	Iterations                 int32
	Salt, StoredKey, ServerKey []byte
}

// ScramUser is one user as ScramUsers lists it: the mechanisms it has a
// credential for, never the keys.
type ScramUser struct {
	Name       string
	Mechanisms []ScramUserMechanism // by mechanism
}

// ScramUserMechanism is one credential of a user.
type ScramUserMechanism struct {
	Mechanism  ScramMechanism
	Iterations int32
}

// NewScramCredential derives a credential for password with a random
// 32-byte salt. The password is used as given (no SASLprep), as Kafka's
// ScramFormatter does, so that any client computes the same keys.
func NewScramCredential(m ScramMechanism, password string, iterations int32) (ScramCredential, error) {
	salt := make([]byte, 32)
	rand.Read(salt)
	return ScramCredentialWithSalt(m, password, salt, iterations)
}

// ScramCredentialWithSalt derives a credential for password with the
// given salt (AlterUserScramCredentials: the client sends the salted
// password, not this; used for NewScramCredential and PLAIN checks).
func ScramCredentialWithSalt(m ScramMechanism, password string, salt []byte, iterations int32) (ScramCredential, error) {
	if err := checkScramParams(m, iterations); err != nil {
		return ScramCredential{}, err
	}
	cl, _ := m.Hash().NewClientUnprepped("", password, "")
	sc, err := cl.GetStoredCredentialsWithError(scram.KeyFactors{Salt: string(salt), Iters: int(iterations)})
	if err != nil {
		return ScramCredential{}, fmt.Errorf("derive %s credential: %w", m, err)
	}
	return ScramCredential{Mechanism: m, Iterations: iterations, Salt: slices.Clone(salt), StoredKey: sc.StoredKey, ServerKey: sc.ServerKey}, nil
}

// ScramCredentialFromSaltedPassword builds a credential from a salted
// password (SaltedPassword = Hi(password, salt, i)), what
// AlterUserScramCredentials carries.
func ScramCredentialFromSaltedPassword(m ScramMechanism, salt, salted []byte, iterations int32) (ScramCredential, error) {
	if err := checkScramParams(m, iterations); err != nil {
		return ScramCredential{}, err
	}
	if len(salted) != m.keySize() {
		return ScramCredential{}, fmt.Errorf("%s salted password of %d bytes, want %d: %w", m, len(salted), m.keySize(), kerr.UnacceptableCredential)
	}
	if len(salt) == 0 {
		return ScramCredential{}, fmt.Errorf("%s credential with an empty salt: %w", m, kerr.UnacceptableCredential)
	}
	h := m.Hash()
	clientKey := hmacOf(h, salted, "Client Key")
	sum := h()
	sum.Write(clientKey)
	return ScramCredential{Mechanism: m, Iterations: iterations, Salt: slices.Clone(salt),
		StoredKey: sum.Sum(nil), ServerKey: hmacOf(h, salted, "Server Key")}, nil
}

func checkScramParams(m ScramMechanism, iterations int32) error {
	if m.Hash() == nil {
		return fmt.Errorf("unknown SCRAM mechanism %d: %w", m, kerr.UnsupportedSaslMechanism)
	}
	if iterations < MinScramIterations {
		return fmt.Errorf("too few iterations: %d is below %d: %w", iterations, MinScramIterations, kerr.UnacceptableCredential)
	}
	if iterations > MaxScramIterations {
		return fmt.Errorf("too many iterations: %d is above %d: %w", iterations, MaxScramIterations, kerr.UnacceptableCredential)
	}
	return nil
}

// checkCredential validates a credential before it is stored or applied.
func checkCredential(user string, c ScramCredential) error {
	if user == "" {
		return fmt.Errorf("username must not be empty: %w", kerr.UnacceptableCredential)
	}
	if err := checkScramParams(c.Mechanism, c.Iterations); err != nil {
		return err
	}
	if n := c.Mechanism.keySize(); len(c.StoredKey) != n || len(c.ServerKey) != n || len(c.Salt) == 0 {
		return fmt.Errorf("%s credential of user %q: keys of %d and %d bytes (want %d), salt of %d: %w",
			c.Mechanism, user, len(c.StoredKey), len(c.ServerKey), n, len(c.Salt), kerr.UnacceptableCredential)
	}
	return nil
}

// SetScramCredential stores (creates or replaces) user's credential for
// c.Mechanism through the metadata log.
func (b *Broker) SetScramCredential(ctx context.Context, user string, c ScramCredential) error {
	if err := checkCredential(user, c); err != nil {
		return err
	}
	b.lockAdmin()
	defer b.unlockAdmin()
	if b.closed.Load() {
		return ErrClosed
	}
	rec := metaRecord{Type: metaUserScramSet, Scram: &metaScramCred{User: user, Mechanism: int8(c.Mechanism),
		Iterations: c.Iterations, Salt: c.Salt, StoredKey: c.StoredKey, ServerKey: c.ServerKey}}
	if err := b.proposeLocked(rec); err != nil {
		return fmt.Errorf("set %s credential of user %q: %w", c.Mechanism, user, err)
	}
	return nil
}

// DeleteScramCredential removes user's credential for m; one that does not
// exist is RESOURCE_NOT_FOUND, as in Kafka.
func (b *Broker) DeleteScramCredential(ctx context.Context, user string, m ScramMechanism) error {
	if user == "" {
		return fmt.Errorf("username must not be empty: %w", kerr.UnacceptableCredential)
	}
	if m.Hash() == nil {
		return fmt.Errorf("unknown SCRAM mechanism %d: %w", m, kerr.UnsupportedSaslMechanism)
	}
	b.lockAdmin()
	defer b.unlockAdmin()
	if b.closed.Load() {
		return ErrClosed
	}
	if _, ok := b.state.scram[user][m]; !ok {
		return fmt.Errorf("attempt to delete a user credential that does not exist (%s of %q): %w", m, user, kerr.ResourceNotFound)
	}
	rec := metaRecord{Type: metaUserScramDeleted, Scram: &metaScramCred{User: user, Mechanism: int8(m)}}
	if err := b.proposeLocked(rec); err != nil {
		return fmt.Errorf("delete %s credential of user %q: %w", m, user, err)
	}
	return nil
}

// ScramCredentialOf is user's credential for m, if it has one. It takes
// no lock: SASL authentication calls it on every handshake.
func (b *Broker) ScramCredentialOf(user string, m ScramMechanism) (ScramCredential, bool) {
	t := b.scram.Load()
	if t == nil {
		return ScramCredential{}, false
	}
	c, ok := (*t)[user][m]
	return c, ok
}

// ScramUsers lists the users with a credential, sorted by name, with their
// mechanisms and iterations (never salts or keys).
func (b *Broker) ScramUsers() []ScramUser {
	t := b.scram.Load()
	if t == nil {
		return nil
	}
	out := make([]ScramUser, 0, len(*t))
	for _, name := range slices.Sorted(maps.Keys(*t)) {
		u := ScramUser{Name: name}
		for _, m := range slices.Sorted(maps.Keys((*t)[name])) {
			u.Mechanisms = append(u.Mechanisms, ScramUserMechanism{Mechanism: m, Iterations: (*t)[name][m].Iterations})
		}
		out = append(out, u)
	}
	return out
}

// scramTable is every user's credentials by mechanism. Replaced, never
// mutated, once published or in a metaState.
type scramTable map[string]map[ScramMechanism]ScramCredential

// publishScram makes the state's credentials visible to
// ScramCredentialOf. Caller holds adminMu.
func (b *Broker) publishScram() {
	t := b.state.scram
	b.scram.Store(&t)
}

// metaScramCred is a credential in a user_scram_set record (and, with
// only User and Mechanism, a user_scram_deleted one) and in the snapshot.
// []byte fields are base64 in JSON.
type metaScramCred struct {
	User       string `json:"user"`
	Mechanism  int8   `json:"mechanism"`
	Iterations int32  `json:"iterations,omitempty"`
	Salt       []byte `json:"salt,omitempty"`
	StoredKey  []byte `json:"stored_key,omitempty"`
	ServerKey  []byte `json:"server_key,omitempty"`
}

func (c *metaScramCred) credential() ScramCredential {
	return ScramCredential{Mechanism: ScramMechanism(c.Mechanism), Iterations: c.Iterations,
		Salt: c.Salt, StoredKey: c.StoredKey, ServerKey: c.ServerKey}
}

// applyScramSet folds a user_scram_set record into the state.
func (s *metaState) applyScramSet(r metaRecord) error {
	if r.Scram == nil {
		return fmt.Errorf("%s record without a credential", r.Type)
	}
	c := r.Scram.credential()
	if err := checkCredential(r.Scram.User, c); err != nil {
		return fmt.Errorf("%s: %w", r.Type, err)
	}
	t := maps.Clone(s.scram)
	if t == nil {
		t = scramTable{}
	}
	u := maps.Clone(t[r.Scram.User])
	if u == nil {
		u = map[ScramMechanism]ScramCredential{}
	}
	u[c.Mechanism] = c
	t[r.Scram.User] = u
	s.scram = t
	return nil
}

// applyScramDeleted folds a user_scram_deleted record into the state.
func (s *metaState) applyScramDeleted(r metaRecord) error {
	if r.Scram == nil {
		return fmt.Errorf("%s record without a user", r.Type)
	}
	m := ScramMechanism(r.Scram.Mechanism)
	if _, ok := s.scram[r.Scram.User][m]; !ok {
		return fmt.Errorf("%s: user %q has no %s credential", r.Type, r.Scram.User, m)
	}
	t := maps.Clone(s.scram)
	u := maps.Clone(t[r.Scram.User])
	delete(u, m)
	if len(u) == 0 {
		delete(t, r.Scram.User)
	} else {
		t[r.Scram.User] = u
	}
	s.scram = t
	return nil
}

// scramSnapshot lists the credentials for the snapshot record, by user
// then mechanism.
func (s *metaState) scramSnapshot() []metaScramCred {
	var out []metaScramCred
	for _, name := range slices.Sorted(maps.Keys(s.scram)) {
		for _, m := range slices.Sorted(maps.Keys(s.scram[name])) {
			c := s.scram[name][m]
			out = append(out, metaScramCred{User: name, Mechanism: int8(m), Iterations: c.Iterations,
				Salt: c.Salt, StoredKey: c.StoredKey, ServerKey: c.ServerKey})
		}
	}
	return out
}

// restoreScram loads a snapshot record's credentials into a fresh state.
func (s *metaState) restoreScram(creds []metaScramCred) error {
	for i := range creds {
		if err := s.applyScramSet(metaRecord{Type: metaSnapshot, Scram: &creds[i]}); err != nil {
			return err
		}
	}
	return nil
}

// hmacOf is HMAC(key, msg) with the mechanism's hash.
func hmacOf(h scram.HashGeneratorFcn, key []byte, msg string) []byte {
	m := hmac.New(h, key)
	m.Write([]byte(msg))
	return m.Sum(nil)
}
