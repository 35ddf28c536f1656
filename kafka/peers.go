package kafka

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"strconv"
	"sync"

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
// where the inter-broker principal is listed in super.users. Here the
// principal is whatever these connections authenticate as on the listener
// they reach (User:ANONYMOUS on a PLAINTEXT listener): with --authorizer
// on, that principal must be a super user or be granted CLUSTER_ACTION on
// the cluster, or transactions that span nodes fail. One kgo client per node, made on first
// use from the address the metadata log has for the node and remade when
// that address changes; requests go to that node only.
type Peers struct {
	brokers func() []broker.BrokerInfo
	// tls, if set, is how to reach a node's SSL listener (SetTLS).
	tls *tls.Config

	mu      sync.Mutex
	clients map[int32]peerClient
	closed  bool
}

type peerClient struct {
	addr string
	cl   *kgo.Client
}

// NewPeers makes a PeerCaller that finds nodes in brokers (the broker's
// Brokers, once it is open). Close it after the broker.
func NewPeers(brokers func() []broker.BrokerInfo) *Peers {
	return &Peers{brokers: brokers, clients: make(map[int32]peerClient)}
}

// SetTLS lets the clients use nodes' SSL listeners with cfg (the CA the
// nodes' certificates chain to and, if they require one, a client
// certificate). Call it before the first Call.
func (p *Peers) SetTLS(cfg *tls.Config) { p.tls = cfg }

// peerEndpoint picks the listener of a node that other nodes can use
// without credentials: a PLAINTEXT one, else an SSL one when SetTLS was
// called, else the node's default address (which fails if it requires
// SASL: nodes hold no SASL credentials of their own).
func (p *Peers) peerEndpoint(bi broker.BrokerInfo) (addr string, useTLS bool) {
	for _, want := range []string{string(ProtocolPlaintext), string(ProtocolSSL)} {
		if want == string(ProtocolSSL) && p.tls == nil {
			continue
		}
		for _, ep := range bi.Listeners {
			if ep.Protocol == want {
				return net.JoinHostPort(ep.Host, strconv.Itoa(int(ep.Port))), want == string(ProtocolSSL)
			}
		}
	}
	return net.JoinHostPort(bi.Host, strconv.Itoa(int(bi.Port))), false
}

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
	addr, useTLS := "", false
	for _, bi := range p.brokers() {
		if bi.NodeID == node {
			addr, useTLS = p.peerEndpoint(bi)
		}
	}
	if addr == "" {
		return nil, fmt.Errorf("node %d is not registered", node)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil, broker.ErrClosed
	}
	if c, ok := p.clients[node]; ok {
		if c.addr == addr {
			return c.cl, nil
		}
		c.cl.Close()
	}
	opts := []kgo.Opt{kgo.SeedBrokers(addr), kgo.ClientID("chronik-peer")}
	if useTLS {
		opts = append(opts, kgo.DialTLSConfig(p.tls.Clone()))
	}
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return nil, err
	}
	p.clients[node] = peerClient{addr: addr, cl: cl}
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
