package kafka

import (
	"context"
	"fmt"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/chronik-stream/chronik/broker"
)

// AlterUserSCRAMCredentials: v0-0
//
// Behaviour (Kafka's, KIP-554):
//   - Upsertions carry the salt, the iterations and the salted password
//     (Hi(password, salt, i)); the broker derives and stores StoredKey and
//     ServerKey through the metadata log, never the password.
//   - One result per user named. A user whose alterations do not all pass
//     the checks gets the first failure and none of its alterations is
//     applied: an empty name is UNACCEPTABLE_CREDENTIAL, an unknown
//     mechanism UNSUPPORTED_SASL_MECHANISM, iterations outside
//     4096..16384 UNACCEPTABLE_CREDENTIAL, the same user and mechanism
//     twice DUPLICATE_RESOURCE, deleting a credential that does not exist
//     RESOURCE_NOT_FOUND.
//
// Version notes:
//   - v0: flexible from the start

func (s *Server) handleAlterUserScramCredentials(ctx context.Context, r *request) kmsg.Response {
	req := r.kreq.(*kmsg.AlterUserSCRAMCredentialsRequest)
	resp := req.ResponseKind().(*kmsg.AlterUserSCRAMCredentialsResponse)
	if !s.mayCluster(r, kmsg.ACLOperationAlter) {
		// Kafka: ALTER on the cluster, else every user's result fails.
		return failAlterUserScramCredentials(req, s.counted(kerr.ClusterAuthorizationFailed.Code))
	}
	type change struct {
		del  bool
		mech broker.ScramMechanism
		cred broker.ScramCredential
	}
	var order []string
	changes := map[string][]change{}
	failed := map[string]error{}
	seen := map[string]map[int8]bool{}
	note := func(user string, mech int8) {
		if _, ok := changes[user]; !ok {
			order = append(order, user)
			changes[user] = nil
		}
		if seen[user] == nil {
			seen[user] = map[int8]bool{}
		}
		if seen[user][mech] && failed[user] == nil {
			failed[user] = fmt.Errorf("a user credential cannot be altered twice in the same request: %w", kerr.DuplicateResource)
		}
		seen[user][mech] = true
	}
	check := func(user string, m broker.ScramMechanism) error {
		if user == "" {
			return fmt.Errorf("username must not be empty: %w", kerr.UnacceptableCredential)
		}
		if m.Hash() == nil {
			return fmt.Errorf("unknown SCRAM mechanism %d: %w", m, kerr.UnsupportedSaslMechanism)
		}
		return nil
	}
	for _, d := range req.Deletions {
		note(d.Name, d.Mechanism)
		m := broker.ScramMechanism(d.Mechanism)
		err := check(d.Name, m)
		if err == nil {
			if _, ok := s.b.ScramCredentialOf(d.Name, m); !ok {
				err = fmt.Errorf("attempt to delete a user credential that does not exist: %w", kerr.ResourceNotFound)
			}
		}
		if err != nil && failed[d.Name] == nil {
			failed[d.Name] = err
		}
		changes[d.Name] = append(changes[d.Name], change{del: true, mech: m})
	}
	for _, u := range req.Upsertions {
		note(u.Name, u.Mechanism)
		m := broker.ScramMechanism(u.Mechanism)
		err := check(u.Name, m)
		var cred broker.ScramCredential
		if err == nil {
			cred, err = broker.ScramCredentialFromSaltedPassword(m, u.Salt, u.SaltedPassword, u.Iterations)
		}
		if err != nil && failed[u.Name] == nil {
			failed[u.Name] = err
		}
		changes[u.Name] = append(changes[u.Name], change{mech: m, cred: cred})
	}
	for _, user := range order {
		err := failed[user]
		for _, c := range changes[user] {
			if err != nil {
				break
			}
			if c.del {
				err = s.b.DeleteScramCredential(ctx, user, c.mech)
			} else {
				err = s.b.SetScramCredential(ctx, user, c.cred)
			}
		}
		res := kmsg.NewAlterUserSCRAMCredentialsResponseResult()
		res.User = user
		if err != nil {
			res.ErrorCode = s.codeOf(err, "alter SCRAM credentials")
			res.ErrorMessage = kmsg.StringPtr(err.Error())
		}
		resp.Results = append(resp.Results, res)
	}
	return resp
}

func failAlterUserScramCredentials(kreq kmsg.Request, code int16) kmsg.Response {
	req := kreq.(*kmsg.AlterUserSCRAMCredentialsRequest)
	resp := req.ResponseKind().(*kmsg.AlterUserSCRAMCredentialsResponse)
	users := map[string]bool{}
	add := func(name string) {
		if !users[name] {
			users[name] = true
			res := kmsg.NewAlterUserSCRAMCredentialsResponseResult()
			res.User, res.ErrorCode = name, code
			resp.Results = append(resp.Results, res)
		}
	}
	for _, d := range req.Deletions {
		add(d.Name)
	}
	for _, u := range req.Upsertions {
		add(u.Name)
	}
	return resp
}
