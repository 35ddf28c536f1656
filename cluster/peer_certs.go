package cluster

// Peer certificates: how a certificate names a node id, and a small
// certificate authority for labs and small deployments (`chronik cluster
// certs`, and the tests).
//
// A node's certificate names its node id in a URI subject alternative name
// "chronik-node://<id>" (decimal, no leading zeros), exactly one per
// certificate. A URI SAN rather than the common name because SANs are
// typed: it cannot be mistaken for a host name by other TLS software, the
// CN stays free for humans, and Go (like most TLS stacks) has not matched
// identities on the CN for years. The certificate may carry DNS and IP SANs
// as well; the transport ignores them: a peer is who its certificate says,
// not where it was dialed.

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/url"
	"strconv"
	"time"
)

// NodeURIScheme is the scheme of the URI SAN that names a node id.
const NodeURIScheme = "chronik-node"

// NodeURI is the URI SAN naming node id: chronik-node://<id>.
func NodeURI(id uint64) *url.URL {
	return &url.URL{Scheme: NodeURIScheme, Host: strconv.FormatUint(id, 10)}
}

// nodeIDFromURI returns the node id a chronik-node URI names. Only the
// canonical form is accepted (no port, path, user, query or fragment; the
// id decimal without leading zeros, 1 or more), so one id has one spelling.
func nodeIDFromURI(u *url.URL) (uint64, error) {
	if u.Scheme != NodeURIScheme {
		return 0, fmt.Errorf("URI %q is not a %s URI", u.String(), NodeURIScheme)
	}
	id, err := strconv.ParseUint(u.Host, 10, 64)
	if err != nil || id == 0 {
		return 0, fmt.Errorf("URI %q: %q is not a node id", u.String(), u.Host)
	}
	if u.String() != NodeURI(id).String() {
		return 0, fmt.Errorf("URI %q is not of the form %s://<id>", u.String(), NodeURIScheme)
	}
	return id, nil
}

// NodeIDOf returns the node id cert names in its chronik-node URI SAN.
// A certificate naming none, or more than one, names no node.
func NodeIDOf(cert *x509.Certificate) (uint64, error) {
	var id uint64
	for _, u := range cert.URIs {
		if u.Scheme != NodeURIScheme {
			continue
		}
		got, err := nodeIDFromURI(u)
		if err != nil {
			return 0, err
		}
		if id != 0 {
			return 0, fmt.Errorf("certificate names two node ids (%d and %d)", id, got)
		}
		id = got
	}
	if id == 0 {
		return 0, fmt.Errorf("certificate %q names no node id: it needs a URI SAN %s://<id>", cert.Subject.String(), NodeURIScheme)
	}
	return id, nil
}

// CertAuthority issues node certificates for a cluster.
type CertAuthority struct {
	Cert *x509.Certificate
	Key  *ecdsa.PrivateKey
}

// NewCertAuthority makes a self-signed CA (ECDSA P-256) valid from now for
// validFor.
func NewCertAuthority(name string, validFor time.Duration) (*CertAuthority, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	serial, err := newSerial()
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             now.Add(-time.Minute),
		NotAfter:              now.Add(validFor),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return &CertAuthority{Cert: cert, Key: key}, nil
}

// LoadCertAuthority reads a CA from its PEM certificate and its PEM ECDSA
// key (PKCS#8, as KeyPEM writes it, or SEC 1).
func LoadCertAuthority(certPEM, keyPEM []byte) (*CertAuthority, error) {
	cb, _ := pem.Decode(certPEM)
	if cb == nil || cb.Type != "CERTIFICATE" {
		return nil, errors.New("no PEM CERTIFICATE block")
	}
	cert, err := x509.ParseCertificate(cb.Bytes)
	if err != nil {
		return nil, err
	}
	if !cert.IsCA {
		return nil, errors.New("the certificate is not a CA certificate")
	}
	kb, _ := pem.Decode(keyPEM)
	if kb == nil {
		return nil, errors.New("no PEM key block")
	}
	var key *ecdsa.PrivateKey
	switch kb.Type {
	case "EC PRIVATE KEY":
		key, err = x509.ParseECPrivateKey(kb.Bytes)
	case "PRIVATE KEY":
		var k any
		k, err = x509.ParsePKCS8PrivateKey(kb.Bytes)
		if err == nil {
			var ok bool
			if key, ok = k.(*ecdsa.PrivateKey); !ok {
				err = fmt.Errorf("the key is a %T, want ECDSA", k)
			}
		}
	default:
		err = fmt.Errorf("PEM block %q is not an ECDSA private key", kb.Type)
	}
	if err != nil {
		return nil, err
	}
	if !key.PublicKey.Equal(cert.PublicKey) {
		return nil, errors.New("the key does not belong to the certificate")
	}
	return &CertAuthority{Cert: cert, Key: key}, nil
}

// CertPEM is the CA certificate in PEM.
func (ca *CertAuthority) CertPEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.Cert.Raw})
}

// KeyPEM is the CA key in PEM (PKCS#8).
func (ca *CertAuthority) KeyPEM() ([]byte, error) { return keyPEM(ca.Key) }

// IssueNode makes a certificate and key (ECDSA P-256, PEM) for node id,
// valid for TLS servers and clients between notBefore and notAfter. hosts
// (DNS names or IP addresses) are added as SANs for other tools; the peer
// transport identifies nodes by the id alone.
func (ca *CertAuthority) IssueNode(id uint64, hosts []string, notBefore, notAfter time.Time) (certPEM, keyPEMBytes []byte, err error) {
	if id == 0 {
		return nil, nil, errors.New("node id 0")
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	serial, err := newSerial()
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: "node-" + strconv.FormatUint(id, 10)},
		NotBefore:    notBefore,
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		URIs:         []*url.URL{NodeURI(id)},
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &key.PublicKey, ca.Key)
	if err != nil {
		return nil, nil, err
	}
	kp, err := keyPEM(key)
	if err != nil {
		return nil, nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), kp, nil
}

func keyPEM(key *ecdsa.PrivateKey) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

func newSerial() (*big.Int, error) {
	return rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
}
