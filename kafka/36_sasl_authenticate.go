package kafka

import (
	"context"
	"fmt"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// SASLAuthenticate: v0-2
//
// Behaviour (see sasl.go):
//   - Carries one token of the exchange SaslHandshake v1 began and answers
//     the server's token. On success the connection's principal becomes
//     "User:" and the user name.
//   - Wrong credentials, an unknown user or a malformed token:
//     SASL_AUTHENTICATION_FAILED with Kafka's message, then the connection
//     closes. The log says why; the client is not told whether the user
//     exists.
//   - Without a handshake first (or on a listener without SASL):
//     ILLEGAL_SASL_STATE; on a SASL listener the connection closes.
//
// Version notes:
//   - v1: SessionLifetimeMs (KIP-368): the connections-max-reauth
//     interval, 0 when re-authentication is off
//   - v2: flexible

func (s *Server) handleSaslAuthenticate(_ context.Context, r *request) kmsg.Response {
	req := r.kreq.(*kmsg.SASLAuthenticateRequest)
	resp := req.ResponseKind().(*kmsg.SASLAuthenticateResponse)
	c := r.conn
	if c == nil || !c.lst.sasl() {
		resp.ErrorCode = s.counted(kerr.IllegalSaslState.Code)
		resp.ErrorMessage = kmsg.StringPtr("SaslAuthenticate on a listener without SASL")
		return resp
	}
	st := &c.sasl
	if st.mech == "" || st.rawTokens {
		resp.ErrorCode = s.counted(kerr.IllegalSaslState.Code)
		resp.ErrorMessage = kmsg.StringPtr("SaslAuthenticate without a SaslHandshake v1 first")
		st.closeAfter("SaslAuthenticate out of order", fmt.Errorf("SaslAuthenticate v%d without a SaslHandshake v1 before it", req.Version))
		return resp
	}
	mech := st.mech
	out, done, clientErr, logErr := c.saslStep(req.SASLAuthBytes)
	if clientErr != nil {
		resp.ErrorCode = s.counted(kerr.SaslAuthenticationFailed.Code)
		resp.ErrorMessage = kmsg.StringPtr(clientErr.Error())
		st.closeAfter("SASL authentication failed", fmt.Errorf("%s: %w", mech, logErr))
		return resp
	}
	resp.SASLAuthBytes = out
	if done && req.Version >= 1 {
		resp.SessionLifetimeMillis = c.sessionLifetimeMs()
	}
	return resp
}

func failSaslAuthenticate(kreq kmsg.Request, code int16) kmsg.Response {
	resp := kreq.ResponseKind().(*kmsg.SASLAuthenticateResponse)
	resp.ErrorCode = code
	return resp
}
