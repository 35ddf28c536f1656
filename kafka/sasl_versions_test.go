package kafka

import (
	"context"
	"crypto/pbkdf2"
	"crypto/sha256"
	"testing"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/chronik-stream/chronik/broker"
)

func init() {
	kafka40Floor[17], kafka40Floor[36], kafka40Floor[50], kafka40Floor[51] = 0, 0, 0, 0

	// On the PLAINTEXT listener of the version test, the SASL APIs answer
	// ILLEGAL_SASL_STATE (Kafka's answer outside authentication) and list
	// the mechanisms; sasl_e2e_test.go covers them on SASL listeners.
	versionCases[17] = func(t *testing.T, e *testEnv, v int16) (kmsg.Request, func(kmsg.Response)) {
		req := kmsg.NewPtrSASLHandshakeRequest()
		req.Mechanism = "SCRAM-SHA-512"
		return req, func(r kmsg.Response) {
			resp := r.(*kmsg.SASLHandshakeResponse)
			if resp.ErrorCode != kerr.IllegalSaslState.Code || len(resp.SupportedMechanisms) != 2 {
				t.Fatalf("code %v, mechanisms %v", kerr.ErrorForCode(resp.ErrorCode), resp.SupportedMechanisms)
			}
		}
	}
	versionCases[36] = func(t *testing.T, e *testEnv, v int16) (kmsg.Request, func(kmsg.Response)) {
		req := kmsg.NewPtrSASLAuthenticateRequest()
		req.SASLAuthBytes = []byte("\x00u\x00p")
		return req, func(r kmsg.Response) {
			resp := r.(*kmsg.SASLAuthenticateResponse)
			if resp.ErrorCode != kerr.IllegalSaslState.Code || resp.SessionLifetimeMillis != 0 {
				t.Fatalf("code %v, lifetime %d", kerr.ErrorForCode(resp.ErrorCode), resp.SessionLifetimeMillis)
			}
		}
	}
	versionCases[50] = func(t *testing.T, e *testEnv, v int16) (kmsg.Request, func(kmsg.Response)) {
		c, err := broker.NewScramCredential(broker.ScramSHA256, "pw", 4096)
		if err != nil {
			t.Fatal(err)
		}
		if err := e.b.SetScramCredential(context.Background(), "described", c); err != nil {
			t.Fatal(err)
		}
		req := kmsg.NewPtrDescribeUserSCRAMCredentialsRequest()
		u := kmsg.NewDescribeUserSCRAMCredentialsRequestUser()
		u.Name = "described"
		req.Users = append(req.Users, u)
		u.Name = "nobody"
		req.Users = append(req.Users, u)
		return req, func(r kmsg.Response) {
			resp := r.(*kmsg.DescribeUserSCRAMCredentialsResponse)
			wantCode(t, "describe", resp.ErrorCode)
			if len(resp.Results) != 2 || resp.Results[0].ErrorCode != 0 || len(resp.Results[0].CredentialInfos) != 1 ||
				resp.Results[0].CredentialInfos[0].Mechanism != 1 || resp.Results[0].CredentialInfos[0].Iterations != 4096 ||
				resp.Results[1].ErrorCode != kerr.ResourceNotFound.Code {
				t.Fatalf("results %+v", resp.Results)
			}
		}
	}
	versionCases[51] = func(t *testing.T, e *testEnv, v int16) (kmsg.Request, func(kmsg.Response)) {
		salt := []byte("0123456789abcdef")
		salted, err := pbkdf2.Key(sha256.New, "pw", salt, 4096, sha256.Size)
		if err != nil {
			t.Fatal(err)
		}
		req := kmsg.NewPtrAlterUserSCRAMCredentialsRequest()
		up := kmsg.NewAlterUserSCRAMCredentialsRequestUpsertion()
		up.Name, up.Mechanism, up.Iterations, up.Salt, up.SaltedPassword = "altered", 1, 4096, salt, salted
		req.Upsertions = append(req.Upsertions, up)
		up.Name, up.Iterations = "too-few", 100
		req.Upsertions = append(req.Upsertions, up)
		return req, func(r kmsg.Response) {
			resp := r.(*kmsg.AlterUserSCRAMCredentialsResponse)
			if len(resp.Results) != 2 || resp.Results[0].ErrorCode != 0 || resp.Results[1].ErrorCode != kerr.UnacceptableCredential.Code {
				t.Fatalf("results %+v", resp.Results)
			}
			want, _ := broker.ScramCredentialWithSalt(broker.ScramSHA256, "pw", salt, 4096)
			got, ok := e.b.ScramCredentialOf("altered", broker.ScramSHA256)
			if !ok || string(got.StoredKey) != string(want.StoredKey) {
				t.Fatal("the credential stored is not the password's")
			}
		}
	}
}
