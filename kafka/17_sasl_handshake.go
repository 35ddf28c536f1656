package kafka

import (
	"context"
	"fmt"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// SASLHandshake: v0-1
//
// Behaviour (see sasl.go):
//   - On a SASL listener, before authentication or to re-authenticate:
//     the mechanism must be enabled, else UNSUPPORTED_SASL_MECHANISM with
//     the enabled list, and the connection closes (Kafka's
//     UnsupportedSaslMechanismException). Every answer lists the enabled
//     mechanisms.
//   - A handshake while an exchange is in progress, or a re-authentication
//     with v0 or another mechanism, is ILLEGAL_SASL_STATE and closes.
//   - From another node of the cluster, authenticated by its certificate
//     (nodeauth.go): ILLEGAL_SASL_STATE, and the connection closes.
//   - On a listener without SASL: ILLEGAL_SASL_STATE (Kafka's KafkaApis
//     answer to a handshake outside authentication); the connection stays.
//
// Version notes:
//   - v0: the SASL tokens follow as bare size-prefixed frames
//   - v1: the tokens follow in SaslAuthenticate requests

func (s *Server) handleSaslHandshake(_ context.Context, r *request) kmsg.Response {
	req := r.kreq.(*kmsg.SASLHandshakeRequest)
	resp := req.ResponseKind().(*kmsg.SASLHandshakeResponse)
	resp.SupportedMechanisms = s.cfg.SASLMechanisms
	c := r.conn
	if c == nil || !c.lst.sasl() {
		resp.ErrorCode = s.counted(kerr.IllegalSaslState.Code)
		return resp
	}
	st := &c.sasl
	fail := func(code int16, reason string, err error) kmsg.Response {
		resp.ErrorCode = s.counted(code)
		st.closeAfter(reason, err)
		return resp
	}
	switch {
	case c.nodeID != 0:
		return fail(kerr.IllegalSaslState.Code, "SaslHandshake from a cluster node", errNodeSASL)
	case st.mech != "":
		return fail(kerr.IllegalSaslState.Code, "SaslHandshake during SASL authentication",
			fmt.Errorf("SaslHandshake v%d while a %s exchange is in progress", req.Version, st.mech))
	case !s.mechanismEnabled(req.Mechanism):
		return fail(kerr.UnsupportedSaslMechanism.Code, "unsupported SASL mechanism",
			fmt.Errorf("client asked for SASL mechanism %q; enabled: %s", req.Mechanism, s.enabledMechanisms()))
	case st.authenticated && req.Version < 1:
		return fail(kerr.IllegalSaslState.Code, "re-authentication with SaslHandshake v0",
			fmt.Errorf("re-authentication needs SaslHandshake v1 and SaslAuthenticate"))
	case st.authenticated && req.Mechanism != st.authMech:
		return fail(kerr.IllegalSaslState.Code, "re-authentication with another mechanism",
			fmt.Errorf("re-authentication with %s, authenticated with %s", req.Mechanism, st.authMech))
	}
	c.beginSASL(req.Mechanism, req.Version == 0)
	return resp
}

func failSaslHandshake(kreq kmsg.Request, code int16) kmsg.Response {
	resp := kreq.ResponseKind().(*kmsg.SASLHandshakeResponse)
	resp.ErrorCode = code
	return resp
}
