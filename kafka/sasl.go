package kafka

import (
	"bytes"
	"crypto/hmac"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/xdg-go/scram"

	"github.com/chronik-stream/chronik/broker"
)

// SASL authentication on SASL_PLAINTEXT and SASL_SSL listeners, as Kafka's
// SaslServerAuthenticator does it:
//
//   - Before authentication a connection may send only ApiVersions,
//     SaslHandshake and SaslAuthenticate; anything else closes it (logged).
//     Its frames are capped at saslMaxReceiveBytes (Kafka's
//     sasl.server.max.receive.size).
//   - SaslHandshake names the mechanism. After v1 the tokens come in
//     SaslAuthenticate requests; after v0 they come as bare size-prefixed
//     frames with no Kafka header, answered the same way (rawSASLFrame).
//   - PLAIN checks the password against the user's stored SCRAM
//     credential (SHA-512, else SHA-256), as Redpanda does: no password is
//     stored anywhere. SCRAM-SHA-256/512 are RFC 5802/7677 via
//     github.com/xdg-go/scram.
//   - A failure answers SASL_AUTHENTICATION_FAILED (v1) and closes the
//     connection; with v0 framing it just closes, as Kafka does.
//   - Re-authentication (KIP-368): with ConnectionsMaxReauth set, a
//     successful SaslAuthenticate v1+ tells the client its session
//     lifetime; once it is over, any request but SaslHandshake and
//     SaslAuthenticate closes the connection. Re-authenticating must keep
//     the principal and mechanism.
//
// Every SASL request is inOrder: its handler runs on the connection's
// reader goroutine, the only one that touches saslState.

// saslMaxReceiveBytes bounds a frame before authentication (Kafka's
// sasl.server.max.receive.size default).
const saslMaxReceiveBytes = 512 << 10

// Mechanism names.
const (
	mechPlain       = "PLAIN"
	mechScramSHA256 = "SCRAM-SHA-256"
	mechScramSHA512 = "SCRAM-SHA-512"
)

// SupportedSASLMechanisms are the mechanisms Config.SASLMechanisms may
// name.
var SupportedSASLMechanisms = []string{mechPlain, mechScramSHA256, mechScramSHA512}

// defaultSASLMechanisms: the SCRAM ones. PLAIN sends the password itself
// and must be asked for.
var defaultSASLMechanisms = []string{mechScramSHA256, mechScramSHA512}

// saslState is a connection's SASL progress. The zero value is a
// connection that has not authenticated.
type saslState struct {
	authenticated bool
	user          string // the authenticated user (re-authentication must keep it)
	authMech      string // the mechanism it authenticated with
	expiry        time.Time

	// mech is the mechanism of the exchange in progress ("" between
	// exchanges); rawTokens: it uses v0 framing.
	mech      string
	rawTokens bool
	scram     *scram.ServerConversation
	steps     int
	// scramFirst and scramServerFirst are the exchange's first two
	// messages; scramValid is set when scramFinalKafka verified the proof.
	scramFirst, scramServerFirst string
	scramValid                   bool

	// closeReason, once set, closes the connection after the answer
	// being queued; closeErr is logged with it.
	closeReason string
	closeErr    error
}

// sasl reports whether the listener authenticates with SASL.
func (l *listener) sasl() bool { return l != nil && l.protocol.SASL() }

// unauthenticatedLimit is the largest frame the connection may send now:
// saslMaxReceiveBytes before SASL authentication, else 0 (no extra limit).
func (c *conn) unauthenticatedLimit() int32 {
	if c.lst.sasl() && !c.sasl.authenticated {
		return saslMaxReceiveBytes
	}
	return 0
}

// gate decides whether the connection may send r now; if not, it returns
// why the connection closes.
func (c *conn) gate(r *request) (reason string, err error) {
	if !c.lst.sasl() {
		return "", nil
	}
	saslKey := r.key == 17 || r.key == 36
	switch {
	case !c.sasl.authenticated && !saslKey && r.key != 18:
		return "request before SASL authentication", fmt.Errorf(
			"unexpected %s request (correlation id %d) before SASL authentication on listener %s; only ApiVersions, SaslHandshake and SaslAuthenticate are allowed",
			r.api.name, r.corrID, c.lst.name)
	case c.sasl.authenticated && !saslKey && !c.sasl.expiry.IsZero() && time.Now().After(c.sasl.expiry):
		return "SASL session expired", fmt.Errorf(
			"%s request (correlation id %d) after the session of %s expired at %s; the client did not re-authenticate (connections-max-reauth)",
			r.api.name, r.corrID, c.sasl.user, c.sasl.expiry.Format(time.RFC3339))
	}
	return "", nil
}

// closeAfter makes the connection close once the answer being built is
// written.
func (st *saslState) closeAfter(reason string, err error) {
	if st.closeReason == "" {
		st.closeReason, st.closeErr = reason, err
	}
}

// mechanismEnabled reports whether m is one of the server's mechanisms.
func (s *Server) mechanismEnabled(m string) bool {
	return slices.Contains(s.cfg.SASLMechanisms, m)
}

// beginSASL starts an exchange with mechanism mech (SaslHandshake).
func (c *conn) beginSASL(mech string, raw bool) {
	st := &c.sasl
	st.mech, st.rawTokens, st.steps, st.scram = mech, raw, 0, nil
	st.scramFirst, st.scramServerFirst, st.scramValid = "", "", false
	if m, ok := broker.ParseScramMechanism(mech); ok {
		srv, _ := m.Hash().NewServer(func(user string) (scram.StoredCredentials, error) {
			cred, ok := c.s.b.ScramCredentialOf(user, m)
			if !ok {
				return scram.StoredCredentials{}, errUnknownUser
			}
			return scram.StoredCredentials{
				KeyFactors: scram.KeyFactors{Salt: string(cred.Salt), Iters: int(cred.Iterations)},
				StoredKey:  cred.StoredKey, ServerKey: cred.ServerKey,
			}, nil
		})
		st.scram = srv.NewConversation()
	}
}

var errUnknownUser = errors.New("unknown user")

// errAuthFailed is what a failed exchange tells the client: Kafka's
// message, which says nothing about whether the user exists.
func errAuthFailed(mech string) error {
	return fmt.Errorf("Authentication failed during authentication due to invalid credentials with SASL mechanism %s", mech)
}

// saslStep feeds one client token to the exchange in progress. It returns
// the server's token, whether the exchange completed successfully, and an
// error for the client if it failed (the detail, for the log, in logErr).
func (c *conn) saslStep(token []byte) (out []byte, done bool, clientErr, logErr error) {
	st := &c.sasl
	st.steps++
	var user string
	switch st.mech {
	case mechPlain:
		u, password, err := parsePlain(token)
		if err != nil {
			return nil, false, fmt.Errorf("Authentication failed: %v", err), err
		}
		if !c.checkPlain(u, password) {
			return nil, false, errAuthFailed(st.mech), fmt.Errorf("PLAIN: wrong password or unknown user %q", u)
		}
		user = u
	case mechScramSHA256, mechScramSHA512:
		if st.scram == nil || st.steps > 2 {
			return nil, false, errAuthFailed(st.mech), errors.New("SCRAM: too many steps")
		}
		if st.steps == 1 {
			st.scramFirst = string(token)
		}
		resp, err := st.scram.Step(string(token))
		if st.steps == 1 && err == nil {
			st.scramServerFirst = resp
		}
		if st.steps == 2 && err != nil && strings.Contains(err.Error(), "nonce") {
			// librdkafka before 2.x's fix echoes its own nonce in front
			// of the server's; Kafka accepts a nonce that ends with the
			// server's, so we do too.
			resp, err = c.scramFinalKafka(string(token))
		}
		if err != nil {
			who := st.scram.Username()
			return nil, false, errAuthFailed(st.mech), fmt.Errorf("SCRAM (user %q): %v", who, err)
		}
		if !st.scram.Done() && !st.scramValid {
			return []byte(resp), false, nil, nil
		}
		if !st.scram.Valid() && !st.scramValid {
			return nil, false, errAuthFailed(st.mech), fmt.Errorf("SCRAM: invalid proof of user %q", st.scram.Username())
		}
		user = st.scram.Username()
		if az := st.scram.AuthzID(); az != "" && az != user {
			return nil, false, fmt.Errorf("Authentication failed: Client requested an authorization id that is different from username"),
				fmt.Errorf("SCRAM: authorization id %q of user %q", az, user)
		}
		out = []byte(resp)
	default:
		return nil, false, errAuthFailed(st.mech), fmt.Errorf("no mechanism in progress")
	}
	if st.authenticated && (user != st.user || st.mech != st.authMech) {
		err := fmt.Errorf("cannot change principals or mechanisms during re-authentication (from %s with %s to %s with %s)",
			st.user, st.authMech, user, st.mech)
		return nil, false, err, err
	}
	st.authenticated, st.user, st.authMech = true, user, st.mech
	st.mech, st.rawTokens, st.scram = "", false, nil
	st.expiry = time.Time{}
	if d := c.s.cfg.ConnectionsMaxReauth; d > 0 {
		st.expiry = time.Now().Add(d)
	}
	c.principal = "User:" + user
	c.log.Debug().Str("principal", c.principal).Str("mechanism", st.authMech).Msg("SASL authenticated")
	return out, true, nil, nil
}

// sessionLifetimeMs is the SessionLifetimeMs of a successful
// SaslAuthenticate: the re-authentication interval, 0 without one.
func (c *conn) sessionLifetimeMs() int64 {
	return c.s.cfg.ConnectionsMaxReauth.Milliseconds()
}

// checkPlain checks a PLAIN password against the user's SCRAM credential
// (the strongest one it has), in constant time.
func (c *conn) checkPlain(user, password string) bool {
	for _, m := range []broker.ScramMechanism{broker.ScramSHA512, broker.ScramSHA256} {
		cred, ok := c.s.b.ScramCredentialOf(user, m)
		if !ok {
			continue
		}
		got, err := broker.ScramCredentialWithSalt(m, password, cred.Salt, cred.Iterations)
		return err == nil && hmac.Equal(got.StoredKey, cred.StoredKey)
	}
	return false
}

// parsePlain splits a PLAIN message (RFC 4616): authzid NUL authcid NUL
// passwd. The authorization id must be empty or the user, as Kafka's
// PlainSaslServer requires.
func parsePlain(b []byte) (user, password string, err error) {
	parts := bytes.Split(b, []byte{0})
	if len(parts) != 3 {
		return "", "", errors.New("invalid SASL/PLAIN response: expected 3 tokens")
	}
	authz, u, p := string(parts[0]), string(parts[1]), string(parts[2])
	if u == "" {
		return "", "", errors.New("authentication failed: username not specified")
	}
	if p == "" {
		return "", "", errors.New("authentication failed: password not specified")
	}
	if authz != "" && authz != u {
		return "", "", errors.New("authentication failed: client requested an authorization id that is different from username")
	}
	return u, p, nil
}

// rawSASLFrame reads and answers one SASL token sent with v0 framing (after
// SaslHandshake v0): a size-prefixed token, answered with a size-prefixed
// token. A failure closes the connection without an answer (a v0 client
// has no way to read an error), as Kafka does.
func (c *conn) rawSASLFrame(size int32, fr *frameClock) (reason string, err error) {
	if size < 0 || size > saslMaxReceiveBytes {
		return "SASL token larger than allowed", fmt.Errorf("SASL token of %d bytes, at most %d", size, saslMaxReceiveBytes)
	}
	var body []byte
	if size > 0 {
		if body, reason, err = c.readBody(size, fr); reason != "" || err != nil {
			return reason, err
		}
		defer c.s.budget.release(&c.hold, int64(cap(body)))
	}
	c.s.cfg.Metrics.bytesIn(4 + int(size))
	mech := c.sasl.mech
	out, _, clientErr, logErr := c.saslStep(body)
	if clientErr != nil {
		c.s.cfg.Metrics.errorCode(58) // SASL_AUTHENTICATION_FAILED
		return "SASL authentication failed", fmt.Errorf("%s (v0 framing): %w", mech, logErr)
	}
	frame := getBuffer()
	b := binary.BigEndian.AppendUint32((*frame)[:0], uint32(len(out)))
	*frame = append(b, out...)
	sl := &slot{done: make(chan struct{}), frame: frame}
	close(sl.done)
	c.pending.Add(1)
	c.slots <- sl
	return "", nil
}

// enabledMechanisms lists the server's mechanisms for an error message.
func (s *Server) enabledMechanisms() string { return strings.Join(s.cfg.SASLMechanisms, ", ") }

// scramFinalKafka verifies a SCRAM client-final message the way Kafka's
// ScramSaslServer does, for the one case the scram library refuses: a
// nonce that ends with the server's nonce without being equal to it (what
// librdkafka 2.0 sends). The proof is checked over the messages as sent,
// so a client that did not know the password still fails.
func (c *conn) scramFinalKafka(final string) (string, error) {
	st := &c.sasl
	m, ok := broker.ParseScramMechanism(st.mech)
	if !ok {
		return "", errors.New("not a SCRAM exchange")
	}
	_, bare, ok := cutN(st.scramFirst, ",", 2) // after the GS2 header
	if !ok {
		return "", errors.New("client-first message without a GS2 header")
	}
	serverNonce := scramAttr(st.scramServerFirst, "r")
	i := strings.LastIndex(final, ",p=")
	if i < 0 || serverNonce == "" {
		return "", errors.New("client-final message without a proof")
	}
	withoutProof, proof64 := final[:i], final[i+3:]
	if n := scramAttr(withoutProof, "r"); !strings.HasSuffix(n, serverNonce) {
		return "", errors.New("invalid client nonce in the final client message")
	}
	if cb := scramAttr(withoutProof, "c"); cb != "biws" && cb != "eSws" {
		return "", errors.New("channel binding is not supported")
	}
	proof, err := base64.StdEncoding.DecodeString(proof64)
	if err != nil {
		return "", fmt.Errorf("client proof: %v", err)
	}
	cred, ok := c.s.b.ScramCredentialOf(st.scram.Username(), m)
	if !ok {
		return "", errUnknownUser
	}
	h := m.Hash()
	authMsg := []byte(bare + "," + st.scramServerFirst + "," + withoutProof)
	mac := hmac.New(h, cred.StoredKey)
	mac.Write(authMsg)
	sig := mac.Sum(nil)
	if len(proof) != len(sig) {
		return "", errors.New("client proof of the wrong size")
	}
	for k := range sig {
		sig[k] ^= proof[k]
	}
	sum := h()
	sum.Write(sig)
	if !hmac.Equal(sum.Sum(nil), cred.StoredKey) {
		return "", errors.New("challenge proof invalid")
	}
	st.scramValid = true
	mac = hmac.New(h, cred.ServerKey)
	mac.Write(authMsg)
	return "v=" + base64.StdEncoding.EncodeToString(mac.Sum(nil)), nil
}

// cutN splits s after its n-th sep.
func cutN(s, sep string, n int) (before, after string, ok bool) {
	i := 0
	for range n {
		j := strings.Index(s[i:], sep)
		if j < 0 {
			return "", "", false
		}
		i += j + len(sep)
	}
	return s[:i], s[i:], true
}

// scramAttr is the value of attribute name ("r") in a SCRAM message.
func scramAttr(msg, name string) string {
	for _, f := range strings.Split(msg, ",") {
		if v, ok := strings.CutPrefix(f, name+"="); ok {
			return v
		}
	}
	return ""
}
