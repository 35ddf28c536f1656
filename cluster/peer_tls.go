package cluster

// Mutual TLS between peers.
//
// With TransportConfig.TLS set, every peer connection is TLS 1.3 with a
// certificate on both sides, each checked against the cluster CA (and its
// validity period) and required to name a node id (peer_certs.go):
//   - the dialer accepts the acceptor only if its certificate names the id
//     it dialed;
//   - the acceptor takes the hello only from the node its dialer's
//     certificate names (hello.From must equal it), so a node holding a
//     certificate for one id cannot speak as another.
// Host names play no part: a peer is the node id its CA-signed certificate
// names, wherever it is reached. The hello and frames then run inside TLS
// unchanged (handshake version 3: the wire inside is the same).
//
// Session resumption is off on both sides, so every connection verifies a
// certificate against the CA as it is now (connections are few and long).
// Reload re-reads the files; handshakes after it use the new certificate
// and CA, established connections keep theirs.

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"sync/atomic"
	"time"
)

// PeerTLS is a node's peer TLS material: its certificate and key (naming
// its node id) and the cluster CA. Safe for concurrent use.
type PeerTLS struct {
	certFile, keyFile, caFile string // empty when built from memory
	state                     atomic.Pointer[peerTLSState]
}

type peerTLSState struct {
	cert     tls.Certificate
	id       uint64
	roots    *x509.CertPool
	caPEM    []byte // the CA file as loaded (AppendCAs)
	notAfter time.Time
}

// LoadPeerTLS reads a node's certificate, key and the cluster CA from PEM
// files. The certificate must name a node id and be valid now for TLS
// clients and servers under the CA. Errors name the file.
func LoadPeerTLS(certFile, keyFile, caFile string) (*PeerTLS, error) {
	p := &PeerTLS{certFile: certFile, keyFile: keyFile, caFile: caFile}
	if err := p.Reload(); err != nil {
		return nil, err
	}
	return p, nil
}

// NewPeerTLS is LoadPeerTLS from PEM bytes (tests, embedding); Reload
// keeps it as it is.
func NewPeerTLS(certPEM, keyPEM, caPEM []byte) (*PeerTLS, error) {
	st, err := newPeerTLSState(certPEM, keyPEM, caPEM)
	if err != nil {
		return nil, err
	}
	p := &PeerTLS{}
	p.state.Store(st)
	return p, nil
}

// Reload re-reads the files. On error the material in use stays. The new
// certificate must name the same node id as the one it replaces.
func (p *PeerTLS) Reload() error {
	if p.certFile == "" {
		return nil
	}
	read := func(path, what string) ([]byte, error) {
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("peer TLS %s: %w", what, err)
		}
		return b, nil
	}
	certPEM, err := read(p.certFile, "certificate")
	if err != nil {
		return err
	}
	keyPEM, err := read(p.keyFile, "key")
	if err != nil {
		return err
	}
	caPEM, err := read(p.caFile, "CA")
	if err != nil {
		return err
	}
	st, err := newPeerTLSState(certPEM, keyPEM, caPEM)
	if err != nil {
		return fmt.Errorf("peer TLS (certificate %s, key %s, CA %s): %w", p.certFile, p.keyFile, p.caFile, err)
	}
	if old := p.state.Load(); old != nil && old.id != st.id {
		return fmt.Errorf("peer TLS certificate %s names node %d, the one in use node %d", p.certFile, st.id, old.id)
	}
	p.state.Store(st)
	return nil
}

// NodeID is the node id this node's certificate names.
func (p *PeerTLS) NodeID() uint64 { return p.state.Load().id }

// NotAfter is when this node's certificate expires.
func (p *PeerTLS) NotAfter() time.Time { return p.state.Load().notAfter }

// VerifyNode checks a TLS client's certificate chain (leaf first, as
// tls.ConnectionState.PeerCertificates) against the cluster CA as loaded
// now (after the last Reload), for client authentication, and returns the
// node id its leaf names. The Kafka listeners use it to recognise other
// nodes of the cluster: only the cluster CA makes a node, never a client
// CA that may have signed a certificate naming one.
func (p *PeerTLS) VerifyNode(chain []*x509.Certificate) (uint64, error) {
	return p.state.Load().verify(chain, x509.ExtKeyUsageClientAuth)
}

// Certificate is this node's certificate as loaded now, for presenting
// to other nodes' Kafka listeners as a TLS client certificate.
func (p *PeerTLS) Certificate() *tls.Certificate {
	c := p.state.Load().cert
	return &c
}

// AppendCAs adds the cluster CA certificates as loaded now to pool.
func (p *PeerTLS) AppendCAs(pool *x509.CertPool) {
	pool.AppendCertsFromPEM(p.state.Load().caPEM)
}

func newPeerTLSState(certPEM, keyPEM, caPEM []byte) (*peerTLSState, error) {
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("certificate and key: %w", err)
	}
	leaf := cert.Leaf
	if leaf == nil {
		if leaf, err = x509.ParseCertificate(cert.Certificate[0]); err != nil {
			return nil, fmt.Errorf("certificate: %w", err)
		}
		cert.Leaf = leaf
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(caPEM) {
		return nil, errors.New("CA: no PEM certificate in it")
	}
	st := &peerTLSState{cert: cert, roots: roots, caPEM: caPEM, notAfter: leaf.NotAfter}
	chain := make([]*x509.Certificate, 0, len(cert.Certificate))
	chain = append(chain, leaf)
	for _, der := range cert.Certificate[1:] {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return nil, fmt.Errorf("certificate chain: %w", err)
		}
		chain = append(chain, c)
	}
	// This node's own certificate must pass what its peers will check, as
	// a server and as a client: better refused at start than by every peer.
	for _, eku := range []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth} {
		id, err := st.verify(chain, eku)
		if err != nil {
			return nil, fmt.Errorf("this node's certificate: %w", err)
		}
		st.id = id
	}
	return st, nil
}

// Why a handshake was refused: the reason label of the refusal metric.
const (
	RefusedPlaintext   = "plaintext"             // a dialer without TLS reached a TLS acceptor
	RefusedTLS         = "tls"                   // the TLS handshake failed (protocol, no certificate, timeout)
	RefusedUntrusted   = "untrusted_certificate" // not signed by the cluster CA, or not for this use
	RefusedExpired     = "expired_certificate"   // outside its validity period
	RefusedNoNodeID    = "no_node_id"            // the certificate names no node id
	RefusedIDMismatch  = "id_mismatch"           // the id proven differs from the one claimed (hello.From) or dialed
	RefusedBadHello    = "bad_hello"             // hello malformed, or not sent in time
	RefusedBadVersion  = "bad_version"
	RefusedWrongClust  = "wrong_cluster"
	RefusedWrongNode   = "wrong_node"      // hello addressed to another node
	RefusedBadSender   = "bad_sender"      // hello from node 0 or from this node's id
	RefusedWrongDir    = "wrong_direction" // hello from a higher id: this node dials it
	RefusedUnknownPeer = "unknown_peer"
	RefusedBusy        = "busy" // too many handshakes in progress (in all, or from its address)
)

// AcceptRefusalReasons and DialRefusalReasons list the reasons each side
// of a handshake counts (TransportStats.Refused).
var (
	AcceptRefusalReasons = []string{RefusedPlaintext, RefusedTLS, RefusedUntrusted, RefusedExpired, RefusedNoNodeID,
		RefusedIDMismatch, RefusedBadHello, RefusedBadVersion, RefusedWrongClust, RefusedWrongNode, RefusedBadSender,
		RefusedWrongDir, RefusedUnknownPeer, RefusedBusy}
	DialRefusalReasons = []string{RefusedTLS, RefusedUntrusted, RefusedExpired, RefusedNoNodeID, RefusedIDMismatch}
)

// helloRefusal maps a hello status to its refusal reason.
func helloRefusal(status uint8) string {
	switch status {
	case helloBadVersion:
		return RefusedBadVersion
	case helloWrongCluster:
		return RefusedWrongClust
	case helloWrongNode:
		return RefusedWrongNode
	case helloBadSender:
		return RefusedBadSender
	case helloWrongDirection:
		return RefusedWrongDir
	case helloUnknownPeer:
		return RefusedUnknownPeer
	case helloIDMismatch:
		return RefusedIDMismatch
	case helloTLSRequired:
		return RefusedPlaintext
	}
	return RefusedBadHello
}

// certError is a peer certificate refused, with its reason.
type certError struct {
	reason string
	err    error
}

func (e *certError) Error() string { return e.err.Error() }
func (e *certError) Unwrap() error { return e.err }

// verify checks a peer's chain (leaf first) against the cluster CA for
// the use eku, and returns the node id the leaf names.
func (st *peerTLSState) verify(chain []*x509.Certificate, eku x509.ExtKeyUsage) (uint64, error) {
	if len(chain) == 0 {
		return 0, &certError{RefusedTLS, errors.New("no certificate")}
	}
	inter := x509.NewCertPool()
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	leaf := chain[0]
	_, err := leaf.Verify(x509.VerifyOptions{Roots: st.roots, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{eku}})
	if err != nil {
		var inv x509.CertificateInvalidError
		var unk x509.UnknownAuthorityError
		switch {
		case errors.As(err, &inv) && inv.Reason == x509.Expired:
			return 0, &certError{RefusedExpired, fmt.Errorf("certificate %q: %w", leaf.Subject.String(), err)}
		case errors.As(err, &unk):
			return 0, &certError{RefusedUntrusted, fmt.Errorf("certificate %q is not signed by the cluster CA: %w", leaf.Subject.String(), err)}
		default:
			return 0, &certError{RefusedUntrusted, fmt.Errorf("certificate %q: %w", leaf.Subject.String(), err)}
		}
	}
	id, err := NodeIDOf(leaf)
	if err != nil {
		return 0, &certError{RefusedNoNodeID, err}
	}
	return id, nil
}

// serverConfig is the acceptor's TLS config for one connection; the
// verification's outcome goes to *verr.
func (p *PeerTLS) serverConfig(verr *error) *tls.Config {
	st := p.state.Load()
	return &tls.Config{
		MinVersion:             tls.VersionTLS13,
		Certificates:           []tls.Certificate{st.cert},
		ClientAuth:             tls.RequireAnyClientCert, // verified below, against the CA as loaded now
		SessionTicketsDisabled: true,
		VerifyConnection: func(cs tls.ConnectionState) error {
			_, err := st.verify(cs.PeerCertificates, x509.ExtKeyUsageClientAuth)
			*verr = err
			return err
		},
	}
}

// clientConfig is the dialer's TLS config for a connection to node want;
// the verification's outcome goes to *verr.
func (p *PeerTLS) clientConfig(want uint64, verr *error) *tls.Config {
	st := p.state.Load()
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{st.cert},
		// Go's own check matches a host name; a peer is identified by the
		// node id its certificate names instead, so VerifyConnection does
		// the whole verification (chain to the cluster CA, validity, id).
		InsecureSkipVerify: true,
		VerifyConnection: func(cs tls.ConnectionState) error {
			id, err := st.verify(cs.PeerCertificates, x509.ExtKeyUsageServerAuth)
			if err == nil && id != want {
				err = &certError{RefusedIDMismatch, fmt.Errorf("dialed node %d, its certificate names node %d", want, id)}
			}
			*verr = err
			return err
		},
	}
}

// refusalOf is the reason a TLS handshake failed with err; verr is what
// the verification callback reported.
func refusalOf(err, verr error) string {
	var ce *certError
	if errors.As(verr, &ce) {
		return ce.reason
	}
	if errors.As(err, &ce) {
		return ce.reason
	}
	return RefusedTLS
}

// tlsConn is an established peer TLS connection. Close closes the TCP
// connection without a close_notify alert, which could block on a peer
// that stopped reading: frames are self-delimiting and checksummed, so a
// truncation is seen anyway.
type tlsConn struct {
	*tls.Conn
	raw net.Conn
}

func (c tlsConn) Close() error { return c.raw.Close() }

// prefixConn gives back bytes already read from a connection before the
// rest of it.
type prefixConn struct {
	net.Conn
	prefix []byte
}

func (c *prefixConn) Read(b []byte) (int, error) {
	if len(c.prefix) > 0 {
		n := copy(b, c.prefix)
		c.prefix = c.prefix[n:]
		return n, nil
	}
	return c.Conn.Read(b)
}
