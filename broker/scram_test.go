package broker

import (
	"bytes"
	"context"
	"crypto/pbkdf2"
	"crypto/sha512"
	"testing"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/xdg-go/scram"
)

// scramLogin runs a whole SCRAM conversation of the scram library's client
// against a server that looks credentials up in b.
func scramLogin(t *testing.T, b *Broker, m ScramMechanism, user, password string) bool {
	t.Helper()
	srv, err := m.Hash().NewServer(func(name string) (scram.StoredCredentials, error) {
		c, ok := b.ScramCredentialOf(name, m)
		if !ok {
			return scram.StoredCredentials{}, kerr.SaslAuthenticationFailed
		}
		return scram.StoredCredentials{KeyFactors: scram.KeyFactors{Salt: string(c.Salt), Iters: int(c.Iterations)},
			StoredKey: c.StoredKey, ServerKey: c.ServerKey}, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	cl, _ := m.Hash().NewClientUnprepped(user, password, "")
	cc, sc := cl.NewConversation(), srv.NewConversation()
	msg := ""
	for range 3 {
		if msg, err = cc.Step(msg); err != nil {
			return false
		}
		if cc.Done() {
			return cc.Valid()
		}
		if msg, err = sc.Step(msg); err != nil {
			return false
		}
	}
	return sc.Valid()
}

func TestScramCredentialsLifecycle(t *testing.T) {
	defer func(old uint64) { metaCompactThreshold = old }(metaCompactThreshold)
	metaCompactThreshold = 3
	ctx := context.Background()
	b := openBroker(t, Config{})
	for _, m := range []ScramMechanism{ScramSHA256, ScramSHA512} {
		c, err := NewScramCredential(m, "s3cret", 4096)
		if err != nil {
			t.Fatal(err)
		}
		if err := b.SetScramCredential(ctx, "alice", c); err != nil {
			t.Fatal(err)
		}
	}
	c, _ := NewScramCredential(ScramSHA512, "bob-pw", 8192)
	if err := b.SetScramCredential(ctx, "bob", c); err != nil {
		t.Fatal(err)
	}
	check := func(b *Broker) {
		t.Helper()
		if !scramLogin(t, b, ScramSHA512, "alice", "s3cret") || !scramLogin(t, b, ScramSHA256, "alice", "s3cret") {
			t.Fatal("alice cannot log in")
		}
		if scramLogin(t, b, ScramSHA512, "alice", "wrong") || scramLogin(t, b, ScramSHA256, "bob", "bob-pw") {
			t.Fatal("a wrong password or mechanism logged in")
		}
		users := b.ScramUsers()
		if len(users) != 2 || users[0].Name != "alice" || len(users[0].Mechanisms) != 2 ||
			users[1].Name != "bob" || users[1].Mechanisms[0] != (ScramUserMechanism{ScramSHA512, 8192}) {
			t.Fatalf("users %+v", users)
		}
	}
	check(b)
	b = reopen(t, b) // compacts: the credentials go into the snapshot
	if n := b.meta.LastIndex() - b.meta.FirstIndex() + 1; n != 1 {
		t.Fatalf("metadata log has %d records after compaction", n)
	}
	check(b)
	b = reopen(t, b)
	check(b)

	wantKerr(t, b.DeleteScramCredential(ctx, "bob", ScramSHA256), kerr.ResourceNotFound)
	if err := b.DeleteScramCredential(ctx, "bob", ScramSHA512); err != nil {
		t.Fatal(err)
	}
	b = reopen(t, b)
	if _, ok := b.ScramCredentialOf("bob", ScramSHA512); ok || len(b.ScramUsers()) != 1 {
		t.Fatalf("bob still there: %+v", b.ScramUsers())
	}
}

func TestScramCredentialValidation(t *testing.T) {
	b := openBroker(t, Config{})
	ctx := context.Background()
	_, err := NewScramCredential(ScramSHA256, "pw", 4095)
	wantKerr(t, err, kerr.UnacceptableCredential)
	_, err = NewScramCredential(ScramSHA256, "pw", 16385)
	wantKerr(t, err, kerr.UnacceptableCredential)
	_, err = NewScramCredential(3, "pw", 4096)
	wantKerr(t, err, kerr.UnsupportedSaslMechanism)
	c, _ := NewScramCredential(ScramSHA256, "pw", 4096)
	wantKerr(t, b.SetScramCredential(ctx, "", c), kerr.UnacceptableCredential)
	c.StoredKey = c.StoredKey[:5]
	wantKerr(t, b.SetScramCredential(ctx, "x", c), kerr.UnacceptableCredential)
	if len(b.ScramUsers()) != 0 {
		t.Fatal("an invalid credential was stored")
	}
}

// TestScramFromSaltedPassword: AlterUserScramCredentials sends
// Hi(password, salt, i); the keys must be what the password gives.
func TestScramFromSaltedPassword(t *testing.T) {
	salt := []byte("0123456789abcdef")
	want, err := ScramCredentialWithSalt(ScramSHA512, "pw", salt, 4096)
	if err != nil {
		t.Fatal(err)
	}
	salted, err := pbkdf2.Key(sha512.New, "pw", salt, 4096, sha512.Size)
	if err != nil {
		t.Fatal(err)
	}
	got, err := ScramCredentialFromSaltedPassword(ScramSHA512, salt, salted, 4096)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got.StoredKey, want.StoredKey) || !bytes.Equal(got.ServerKey, want.ServerKey) {
		t.Fatal("keys differ")
	}
}

// FuzzScramRecord feeds arbitrary JSON records through the decoder and
// the state's apply: nothing may panic, and a credential that applies is
// valid and survives a snapshot round trip.
func FuzzScramRecord(f *testing.F) {
	c, _ := ScramCredentialWithSalt(ScramSHA256, "pw", []byte("salt"), 4096)
	set := encodeMetaRecord(metaRecord{Type: metaUserScramSet, Scram: &metaScramCred{User: "u", Mechanism: 1,
		Iterations: 4096, Salt: c.Salt, StoredKey: c.StoredKey, ServerKey: c.ServerKey}})
	f.Add(set)
	f.Add(encodeMetaRecord(metaRecord{Type: metaUserScramDeleted, Scram: &metaScramCred{User: "u", Mechanism: 1}}))
	f.Add([]byte(`{"v":1,"type":"user_scram_set","scram":{"user":"","mechanism":9}}`))
	f.Add([]byte(`{"v":1,"type":"snapshot","scram_creds":[{"user":"a","mechanism":2,"iterations":1}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		s := newMetaState()
		rec, err := decodeMetaRecord(set)
		if err != nil || s.apply(rec) != nil {
			t.Fatal("seed record does not apply")
		}
		rec, err = decodeMetaRecord(data)
		if err != nil {
			return
		}
		if s.apply(rec) != nil {
			return
		}
		for user, ms := range s.scram {
			for _, c := range ms {
				if err := checkCredential(user, c); err != nil {
					t.Fatalf("applied an invalid credential: %v", err)
				}
			}
		}
		snap := s.snapshot()
		back, err := decodeMetaRecord(encodeMetaRecord(snap))
		if err != nil {
			t.Fatal(err)
		}
		s2 := newMetaState()
		if err := s2.apply(back); err != nil {
			t.Fatalf("snapshot does not apply: %v", err)
		}
		if len(s2.scramSnapshot()) != len(s.scramSnapshot()) {
			t.Fatal("snapshot lost credentials")
		}
	})
}
