package kafka

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/chronik-stream/chronik/broker"
)

// Peers sends requests to other nodes' Kafka listeners
// (broker.PeerCaller): the transaction coordinator's markers and KIP-890
// verifications in cluster mode.
//
// Authorization: both are broker-to-broker APIs that need CLUSTER_ACTION
// on the cluster (WriteTxnMarkers, AddPartitionsToTxn v4+), as in Kafka,
// where the inter-broker principal is listed in super.users. With peer TLS
// (SetNodeTLS) a node calls the others on an SSL or SASL_SSL listener
// with its peer certificate as TLS client certificate, and arrives as
// Node:<id>, which every authorizer allows (nodeauth.go). Without peer TLS
// (a lab), or to a node with no TLS listener, it calls a PLAINTEXT
// listener and arrives as User:ANONYMOUS: with --authorizer on, such calls
// are refused (WarnUnauthenticated says so in the log).
//
// One kgo client per node, made on first use from the address the
// metadata log has for the node and remade when that address changes;
// requests go to that node only.
type Peers struct {
	brokers func() []broker.BrokerInfo
	// tls, if set, is how to reach a node's SSL listener without peer TLS
	// (SetTLS).
	tls *tls.Config
	// node, if set, is this node's peer TLS identity (SetNodeTLS);
	// clientCAs, if set, holds the client CA bundle, trusted too for
	// listeners' server certificates.
	node      PeerIdentity
	clientCAs *TLSFiles
	// warn, if set, logs once per node that calls to it cannot
	// authenticate (WarnUnauthenticated).
	warn   *zerolog.Logger
	self   int32
	warned map[int32]bool

	mu      sync.Mutex
	clients map[int32]peerClient
	closed  bool
}

type peerClient struct {
	addr     string
	protocol SecurityProtocol
	cl       *kgo.Client
}

// NewPeers makes a PeerCaller that finds nodes in brokers (the broker's
// Brokers, once it is open). Close it after the broker.
func NewPeers(brokers func() []broker.BrokerInfo) *Peers {
	return &Peers{brokers: brokers, clients: make(map[int32]peerClient), warned: make(map[int32]bool)}
}

// SetTLS lets the clients use nodes' SSL listeners with cfg (the CA the
// nodes' certificates chain to and, if they require one, a client
// certificate) when there is no peer TLS: PLAINTEXT listeners come
// first. Call it before the first Call.
func (p *Peers) SetTLS(cfg *tls.Config) { p.tls = cfg }

// SetNodeTLS makes the clients call nodes' SSL or SASL_SSL listeners
// (before PLAINTEXT ones) as this node: id's certificate is the TLS client
// certificate, and a listener's server certificate must chain to the
// system roots, the client CA bundle of files (may be nil) or the cluster
// CA. Each connection reads the certificate and CAs as loaded then (SIGHUP
// reloads apply to new connections). Call it before the first Call.
func (p *Peers) SetNodeTLS(id PeerIdentity, files *TLSFiles) { p.node, p.clientCAs = id, files }

// WarnUnauthenticated logs that calls to other nodes cannot authenticate
// as a node, so an authorizer refuses them: for when the authorizer is on.
// Without peer TLS it says so once; with it, it warns once per node that
// has no SSL or SASL_SSL listener, checking the nodes known now at once
// and others when first called. self is this node's id (not checked).
// Call it before the first Call.
func (p *Peers) WarnUnauthenticated(log zerolog.Logger, self int32) {
	if p.node == nil {
		log.Warn().Msg("authorizer is on but peer TLS is off: transaction calls between nodes (WriteTxnMarkers, AddPartitionsToTxn) " +
			"arrive as User:ANONYMOUS and are refused, so transactions spanning nodes fail; set peer-tls-cert-file, " +
			"peer-tls-key-file and peer-tls-ca-file and give every node an SSL or SASL_SSL listener (nodes then authenticate there as Node:<id>)")
		return
	}
	p.warn, p.self = &log, self
	for _, bi := range p.brokers() {
		_, proto := p.peerEndpoint(bi)
		p.checkAuthenticated(bi, proto)
	}
}

// checkAuthenticated warns (once per node) if calls to bi over proto
// arrive unauthenticated.
func (p *Peers) checkAuthenticated(bi broker.BrokerInfo, proto SecurityProtocol) {
	if p.warn == nil || bi.NodeID == p.self || proto.TLS() {
		return
	}
	p.mu.Lock()
	seen := p.warned[bi.NodeID]
	p.warned[bi.NodeID] = true
	p.mu.Unlock()
	if seen {
		return
	}
	p.warn.Warn().Int32("peer_node", bi.NodeID).Msg("authorizer is on but this node has no SSL or SASL_SSL listener: " +
		"transaction calls to it (WriteTxnMarkers, AddPartitionsToTxn) arrive as User:ANONYMOUS and are refused, so transactions " +
		"spanning nodes fail; give every node an SSL or SASL_SSL listener (listeners, tls-cert-file), where nodes authenticate " +
		"with their peer certificates as Node:<id>")
}

// peerEndpoint picks the listener of a node to call. With peer TLS: an
// SSL or SASL_SSL one (this node's certificate authenticates it there),
// else a PLAINTEXT one. Without: a PLAINTEXT one, else an SSL one when
// SetTLS was called. Else the node's default address, whose protocol is
// not known ("": dialed as plaintext; it fails if it needs SASL or TLS).
func (p *Peers) peerEndpoint(bi broker.BrokerInfo) (addr string, proto SecurityProtocol) {
	order := []SecurityProtocol{ProtocolPlaintext}
	switch {
	case p.node != nil:
		order = []SecurityProtocol{ProtocolSSL, ProtocolSASLSSL, ProtocolPlaintext}
	case p.tls != nil:
		order = append(order, ProtocolSSL)
	}
	for _, want := range order {
		for _, ep := range bi.Listeners {
			if ep.Protocol == string(want) {
				return net.JoinHostPort(ep.Host, strconv.Itoa(int(ep.Port))), want
			}
		}
	}
	return net.JoinHostPort(bi.Host, strconv.Itoa(int(bi.Port))), ""
}

// dialNode dials a node's SSL or SASL_SSL listener as this node, with a
// TLS configuration made now (nodeClientTLS).
func (p *Peers) dialNode(ctx context.Context, network, host string) (net.Conn, error) {
	serverName, _, err := net.SplitHostPort(host)
	if err != nil {
		serverName = host
	}
	d := &tls.Dialer{
		NetDialer: &net.Dialer{Timeout: peerDialTimeout},
		Config:    nodeClientTLS(p.node, p.clientCAs.clientCAPEM(), serverName),
	}
	return d.DialContext(ctx, network, host)
}

// peerDialTimeout bounds a dial and TLS handshake to a node (kgo's
// default dial timeout).
const peerDialTimeout = 10 * time.Second

// Call sends req to node and returns its response.
func (p *Peers) Call(ctx context.Context, node int32, req kmsg.Request) (kmsg.Response, error) {
	cl, err := p.client(node)
	if err != nil {
		return nil, err
	}
	seeds := cl.SeedBrokers() // the node's own address, nothing else
	if len(seeds) == 0 {
		return nil, fmt.Errorf("node %d: no address", node)
	}
	return seeds[0].Request(ctx, req)
}

func (p *Peers) client(node int32) (*kgo.Client, error) {
	addr, proto, found := "", SecurityProtocol(""), false
	for _, bi := range p.brokers() {
		if bi.NodeID == node {
			addr, proto = p.peerEndpoint(bi)
			p.checkAuthenticated(bi, proto)
			found = true
		}
	}
	if !found {
		return nil, fmt.Errorf("node %d is not registered", node)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil, broker.ErrClosed
	}
	if c, ok := p.clients[node]; ok {
		if c.addr == addr && c.protocol == proto {
			return c.cl, nil
		}
		c.cl.Close()
	}
	opts := []kgo.Opt{kgo.SeedBrokers(addr), kgo.ClientID("chronik-peer")}
	switch {
	case proto.TLS() && p.node != nil:
		opts = append(opts, kgo.Dialer(p.dialNode))
	case proto == ProtocolSSL:
		opts = append(opts, kgo.DialTLSConfig(p.tls.Clone()))
	}
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return nil, err
	}
	p.clients[node] = peerClient{addr: addr, protocol: proto, cl: cl}
	return cl, nil
}

// Close closes every client.
func (p *Peers) Close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closed = true
	for _, c := range p.clients {
		c.cl.Close()
	}
	clear(p.clients)
}
