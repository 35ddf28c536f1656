package kafka

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"sync/atomic"
)

// TLSFiles is a TLS server configuration read from PEM files: the
// server's certificate chain and key and, optionally, a CA bundle that
// client certificates must chain to (mutual TLS). Reload re-reads them
// (SIGHUP): connections made afterwards get the new certificate, open ones
// keep theirs; a file that does not load leaves the old ones in place.
type TLSFiles struct {
	certFile, keyFile, clientCAFile string
	cur                             atomic.Pointer[tlsMaterial]
}

type tlsMaterial struct {
	cert      *tls.Certificate
	clientCAs *x509.CertPool // nil: no client certificates asked for
	caPEM     []byte         // the client CA file as loaded
}

// LoadTLSFiles reads the files once; every error names the file.
// clientCAFile may be empty.
func LoadTLSFiles(certFile, keyFile, clientCAFile string) (*TLSFiles, error) {
	f := &TLSFiles{certFile: certFile, keyFile: keyFile, clientCAFile: clientCAFile}
	if err := f.Reload(); err != nil {
		return nil, err
	}
	return f, nil
}

// Reload re-reads the files. On error the previous certificate and CA
// stay in use.
func (f *TLSFiles) Reload() error {
	if f.certFile == "" || f.keyFile == "" {
		return errors.New("tls-cert-file and tls-key-file are both needed")
	}
	cert, err := tls.LoadX509KeyPair(f.certFile, f.keyFile)
	if err != nil {
		return fmt.Errorf("TLS certificate %s with key %s: %w", f.certFile, f.keyFile, err)
	}
	m := &tlsMaterial{cert: &cert}
	if f.clientCAFile != "" {
		pem, err := os.ReadFile(f.clientCAFile)
		if err != nil {
			return fmt.Errorf("TLS client CA file: %w", err)
		}
		m.clientCAs, m.caPEM = x509.NewCertPool(), pem
		if !m.clientCAs.AppendCertsFromPEM(pem) {
			return fmt.Errorf("TLS client CA file %s: no PEM certificate in it", f.clientCAFile)
		}
	}
	f.cur.Store(m)
	return nil
}

// Config is the server configuration for listeners: TLS 1.2 or later,
// the current certificate, and, with a client CA, client certificates
// required and verified. It reads the files' current contents at every
// handshake.
func (f *TLSFiles) Config() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			m := f.cur.Load()
			c := &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{*m.cert}}
			if m.clientCAs != nil {
				c.ClientAuth, c.ClientCAs = tls.RequireAndVerifyClientCert, m.clientCAs
			}
			return c, nil
		},
	}
}

// MutualTLS reports whether clients must present a certificate.
func (f *TLSFiles) MutualTLS() bool { return f.clientCAFile != "" }

// clientCAPEM is the client CA bundle as loaded now (nil: none).
func (f *TLSFiles) clientCAPEM() []byte {
	if f == nil {
		return nil
	}
	return f.cur.Load().caPEM
}

// PeerClientConfig is the TLS configuration for this node calling other
// nodes' SSL listeners (Peers.SetTLS): it trusts the system roots and the
// client CA bundle, and presents this node's own certificate when asked
// (the other nodes' mutual TLS accepts it if the client CA signed it for
// client authentication too).
func (f *TLSFiles) PeerClientConfig() *tls.Config {
	roots, err := x509.SystemCertPool()
	if err != nil || roots == nil {
		roots = x509.NewCertPool()
	}
	if f.clientCAFile != "" {
		if pem, err := os.ReadFile(f.clientCAFile); err == nil {
			roots.AppendCertsFromPEM(pem)
		}
	}
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		RootCAs:    roots,
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			return f.cur.Load().cert, nil
		},
	}
}
