package kafka

import (
	"crypto/tls"
	"fmt"
	"net"
	"time"

	"github.com/chronik-stream/chronik/broker"
)

// Listeners and their security protocols, as Kafka's listeners and
// listener.security.protocol.map: each listener has a name (what
// advertised endpoints are keyed by, so that Metadata answers a client
// with the addresses of the listener it came in on) and one of four
// protocols: TLS or not, SASL or not.

// SecurityProtocol is a listener's protocol, with Kafka's names.
type SecurityProtocol string

const (
	ProtocolPlaintext     SecurityProtocol = "PLAINTEXT"
	ProtocolSSL           SecurityProtocol = "SSL"
	ProtocolSASLPlaintext SecurityProtocol = "SASL_PLAINTEXT"
	ProtocolSASLSSL       SecurityProtocol = "SASL_SSL"
)

// ParseSecurityProtocol checks a protocol name (upper case, as Kafka).
func ParseSecurityProtocol(s string) (SecurityProtocol, error) {
	switch p := SecurityProtocol(s); p {
	case ProtocolPlaintext, ProtocolSSL, ProtocolSASLPlaintext, ProtocolSASLSSL:
		return p, nil
	}
	return "", fmt.Errorf("security protocol %q is not one of PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL", s)
}

// TLS reports whether the protocol runs over TLS.
func (p SecurityProtocol) TLS() bool { return p == ProtocolSSL || p == ProtocolSASLSSL }

// SASL reports whether clients must authenticate with SASL.
func (p SecurityProtocol) SASL() bool { return p == ProtocolSASLPlaintext || p == ProtocolSASLSSL }

// ListenerConfig is one Kafka listener.
type ListenerConfig struct {
	// Name is the listener's name (Kafka's listener name, e.g. "CLIENT"
	// or, by default, the protocol's name); Metadata, FindCoordinator and
	// DescribeCluster answer with each broker's endpoint of that name.
	Name     string
	Protocol SecurityProtocol
	// TLS is required for SSL and SASL_SSL and ignored otherwise. With
	// ClientAuth RequireAndVerifyClientCert (mutual TLS) a client's
	// principal is "User:" and its certificate's subject, as Kafka's
	// default principal builder makes it (SASL, if the listener also uses
	// it, replaces it). Use GetCertificate or GetConfigForClient to reload
	// certificates. With Config.NodeAuth the server adds its own client
	// certificate checks to it (nodeauth.go).
	TLS *tls.Config
}

// listener is a ListenerConfig as the server uses it.
type listener struct {
	name     string
	protocol SecurityProtocol
	tls      *tls.Config
}

// Serve accepts connections on ln until Shutdown, then returns nil: one
// PLAINTEXT listener named PLAINTEXT. See ServeListener.
func (s *Server) Serve(ln net.Listener) error {
	return s.ServeListener(ln, ListenerConfig{Name: string(ProtocolPlaintext), Protocol: ProtocolPlaintext})
}

// ServeListener accepts connections on ln, speaking lc's protocol, until
// Shutdown, then returns nil. It returns the listener's error if accepting
// fails for another reason, and an error at once if lc is not usable.
func (s *Server) ServeListener(ln net.Listener, lc ListenerConfig) error {
	if lc.Name == "" {
		lc.Name = string(lc.Protocol)
	}
	if _, err := ParseSecurityProtocol(string(lc.Protocol)); err != nil {
		ln.Close()
		return fmt.Errorf("listener %s: %w", lc.Name, err)
	}
	l := &listener{name: lc.Name, protocol: lc.Protocol}
	if lc.Protocol.TLS() {
		if lc.TLS == nil {
			ln.Close()
			return fmt.Errorf("listener %s: protocol %s needs a TLS configuration", lc.Name, lc.Protocol)
		}
		l.tls = lc.TLS.Clone()
		if l.tls.MinVersion < tls.VersionTLS12 {
			l.tls.MinVersion = tls.VersionTLS12
		}
	}
	return s.serve(ln, l)
}

// handshakeTLS completes a TLS connection's handshake within the request
// read timeout and takes the client certificate's subject as principal,
// or Node:<id> for a certificate of a node of the cluster (nodeauth.go).
// It returns why the connection must close, if it must.
func (c *conn) handshakeTLS() (reason string, err error) {
	tc, ok := c.nc.(*tls.Conn)
	if !ok {
		return "", nil
	}
	c.nc.SetDeadline(time.Now().Add(c.s.cfg.RequestReadTimeout))
	if c.s.isDraining() {
		return "server shutting down", nil
	}
	if err := tc.Handshake(); err != nil {
		return "TLS handshake failed", err
	}
	c.nc.SetDeadline(time.Time{})
	switch st := tc.ConnectionState(); {
	case c.nodeID != 0:
		// Another node of the cluster (nodeauth.go): no SASL for it.
		c.principal = nodePrincipal(c.nodeID)
		c.sasl.authenticated = true
		// Info: a node's connections are few and long-lived.
		c.log.Info().Str("principal", c.principal).Str("listener", c.lst.name).Msg("cluster node authenticated by its peer certificate")
	case len(st.PeerCertificates) > 0:
		c.principal = "User:" + st.PeerCertificates[0].Subject.String()
		c.log.Debug().Str("principal", c.principal).Msg("TLS client certificate authenticated")
	}
	return "", nil
}

// brokersOn is the cluster's brokers with the addresses clients of the
// listener named name must use (Kafka answers per listener name).
func (s *Server) brokersOn(name string) []broker.BrokerInfo {
	bs := s.b.Brokers()
	for i := range bs {
		bs[i].Host, bs[i].Port = bs[i].On(name)
	}
	return bs
}

// addressOn is node's address on the listener named name; host and port
// (its default address) if the node is not listed.
func (s *Server) addressOn(name string, node int32, host string, port int32) (string, int32) {
	for _, bi := range s.b.Brokers() {
		if bi.NodeID == node {
			return bi.On(name)
		}
	}
	return host, port
}
