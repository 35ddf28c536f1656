package kafka

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"time"

	"github.com/chronik-stream/chronik/broker"
)

// Nodes authenticating to each other's Kafka listeners.
//
// In cluster mode the transaction coordinator sends WriteTxnMarkers and
// AddPartitionsToTxn (KIP-890 verification) to other nodes' Kafka
// listeners (Peers). With peer TLS those calls go to an SSL or SASL_SSL
// listener and present the node's peer certificate (signed by the cluster
// CA, naming its node id in a chronik-node:// URI SAN) as the TLS client
// certificate. The listener gives such a connection the principal
// "Node:<id>" (broker.NodePrincipal), which the authorizer allows
// everything, as Kafka's inter-broker principal is a super user; on a
// SASL_SSL listener it counts as authenticated without SASL.
//
// Only the cluster CA makes a node: the chain is verified against the
// cluster CA pool itself (PeerIdentity.VerifyNode, the CA the peer
// transport uses, reloaded with it on SIGHUP), never against the client CA
// of the listener (tls-client-ca-file), which may be another CA and whose
// certificates, whatever SANs they carry, give "User:" + subject
// principals. SASL gives "User:" + name. So no client can be a Node.
//
// The listener's TLS client authentication, when NodeAuth is set:
//   - without a client CA: a certificate is asked for, not required
//     (VerifyClientCertIfGiven semantics); one given must be a node's;
//   - with a client CA: a certificate is required; a node's makes a Node
//     principal, else it must verify against the client CA (a User).
//
// Each CA's check is made explicitly in VerifyConnection (Go's own
// verification is off: it knows one pool only).

// PeerIdentity is this node's peer TLS material (cluster.PeerTLS): what
// proves other nodes to this node's Kafka listeners and this node to
// theirs. Every method reads the material as loaded now.
type PeerIdentity interface {
	// VerifyNode checks a client certificate chain (leaf first) against
	// the cluster CA, for client authentication, and returns the node id
	// its leaf names.
	VerifyNode(chain []*x509.Certificate) (uint64, error)
	// Certificate is this node's certificate and key.
	Certificate() *tls.Certificate
	// AppendCAs adds the cluster CA's certificates to pool.
	AppendCAs(pool *x509.CertPool)
}

// NodeAuth lets the nodes of a cluster authenticate to this server's SSL
// and SASL_SSL listeners with their peer certificates (Config.NodeAuth).
type NodeAuth struct {
	Identity PeerIdentity
	// Member reports whether id is a node of this cluster; a certificate
	// for any other id is not a node's here.
	Member func(id uint64) bool
}

// tlsConfigFor is the TLS configuration of one connection c on listener
// l: l's, with node authentication added when the server has NodeAuth.
func (s *Server) tlsConfigFor(l *listener, c *conn) *tls.Config {
	na := s.cfg.NodeAuth
	if na == nil || na.Identity == nil {
		return l.tls
	}
	base := l.tls
	cfg := base.Clone()
	cfg.GetConfigForClient = func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
		inner := base
		if base.GetConfigForClient != nil {
			got, err := base.GetConfigForClient(hello)
			if err != nil {
				return nil, err
			}
			if got != nil {
				inner = got
			}
		}
		return na.serverConfig(inner, &c.nodeID), nil
	}
	return cfg
}

// serverConfig is inner (the listener's configuration for a handshake)
// with client certificates checked by na: the node id a node's
// certificate proves goes to *node.
func (na *NodeAuth) serverConfig(inner *tls.Config, node *uint64) *tls.Config {
	out := inner.Clone()
	out.GetConfigForClient = nil
	var clientCAs *x509.CertPool
	if out.ClientAuth >= tls.VerifyClientCertIfGiven {
		clientCAs = out.ClientCAs
	}
	required := out.ClientAuth == tls.RequireAnyClientCert || out.ClientAuth == tls.RequireAndVerifyClientCert
	// The CAs named in the certificate request (clients pick their
	// certificate by them): the client CA's and the cluster CA's.
	hints := x509.NewCertPool()
	if clientCAs != nil {
		hints = clientCAs.Clone()
	}
	na.Identity.AppendCAs(hints)
	out.ClientCAs = hints
	// Go verifies nothing with these; VerifyConnection does it all.
	out.ClientAuth = tls.RequestClientCert
	if required {
		out.ClientAuth = tls.RequireAnyClientCert
	}
	out.VerifyPeerCertificate = nil
	out.VerifyConnection = func(cs tls.ConnectionState) error {
		id, err := na.identify(cs.PeerCertificates, clientCAs, inner.Time)
		if err != nil {
			return err
		}
		*node = id
		return nil
	}
	return out
}

// identify decides what a client certificate chain proves: a node of this
// cluster (it verifies against the cluster CA and names a member's id:
// the id is returned), or a client (it verifies against clientCAs: 0 and
// no error). No chain is a client without certificate. Anything else is
// refused.
func (na *NodeAuth) identify(chain []*x509.Certificate, clientCAs *x509.CertPool, now func() time.Time) (uint64, error) {
	if len(chain) == 0 {
		return 0, nil
	}
	id, nodeErr := na.Identity.VerifyNode(chain)
	if nodeErr == nil {
		if na.Member == nil || na.Member(id) {
			return id, nil
		}
		nodeErr = fmt.Errorf("it names node %d, which is not a node of this cluster", id)
	}
	leaf := chain[0]
	if clientCAs == nil {
		return 0, fmt.Errorf("client certificate %q is not a node's of this cluster (%v), and the listener has no client CA (tls-client-ca-file)",
			leaf.Subject.String(), nodeErr)
	}
	opts := x509.VerifyOptions{Roots: clientCAs, Intermediates: x509.NewCertPool(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	if now != nil {
		opts.CurrentTime = now()
	}
	for _, c := range chain[1:] {
		opts.Intermediates.AddCert(c)
	}
	if _, err := leaf.Verify(opts); err != nil {
		return 0, fmt.Errorf("client certificate %q: not a node's of this cluster (%v), nor signed by the client CA (tls-client-ca-file): %w",
			leaf.Subject.String(), nodeErr, err)
	}
	return 0, nil
}

// nodeClientTLS is the TLS configuration for this node calling another
// node's SSL or SASL_SSL listener: it presents this node's peer
// certificate, and trusts for the listener's server certificate the
// system roots, the client CA (extraRoots) and the cluster CA, as loaded
// now. serverName is the host dialed.
func nodeClientTLS(id PeerIdentity, extraRoots []byte, serverName string) *tls.Config {
	roots, err := x509.SystemCertPool()
	if err != nil || roots == nil {
		roots = x509.NewCertPool()
	}
	if len(extraRoots) > 0 {
		roots.AppendCertsFromPEM(extraRoots)
	}
	id.AppendCAs(roots)
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		RootCAs:    roots,
		ServerName: serverName,
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			return id.Certificate(), nil
		},
	}
}

// errNodeSASL refuses SASL on a connection a node's certificate
// authenticated.
var errNodeSASL = errors.New("the connection is authenticated as a node of the cluster by its TLS certificate; SASL does not apply")

// nodePrincipal is the principal of node id.
func nodePrincipal(id uint64) string { return broker.NodePrincipal(id) }
