// Package kafka is Chronik's wire-protocol server: listener, connection
// loop, size-prefixed framing, request headers, version negotiation, and one
// file per API (00_produce.go, 01_fetch.go, ...) translating kmsg requests
// into *broker.Broker calls.
//
// The pieces:
//
//   - server.go: Server, the listener and the connection loop (reading
//     frames, dispatching requests, writing responses in request order);
//     budget.go, the request byte budget the readers take room in;
//     sockqueue_*.go, how much has arrived on a socket.
//   - request.go: decoding a request frame, running its handler, encoding
//     the response; apis.go, the table of implemented APIs (versions,
//     schedule, handler).
//   - NN_name.go: one file per API, named by its key.
//   - Shared by the API files: errors.go (broker errors to Kafka codes,
//     groupCode for the group APIs); leadership.go (leader epoch checks,
//     KIP-320, and leader hints, KIP-951); produce_order.go (the
//     per-connection chain that keeps pipelined produces to a partition in
//     order); authorized_ops.go (authorized-operation bitfields);
//     nullable.go (nullable strings); diskspace_*.go (DescribeLogDirs).
//   - metrics.go: the Prometheus metrics.
//
// THIS FILE IS THE CONTRACT package main codes against. Keep the exported
// names and signatures; add to them rather than change them.
package kafka

import (
	"time"

	"github.com/rs/zerolog"
)

// Config configures a Server. Zero values take the documented defaults.
type Config struct {
	MaxRequestBytes int32 // largest accepted request frame (default 100 MiB); larger is refused before allocating
	// MaxInflightRequestBytes bounds the request bytes read, queued or being
	// handled across all connections, counted until garbage-collected
	// (Kafka's queued.max.request.bytes; default 512 MiB, at least
	// MaxRequestBytes). A body takes room as its bytes arrive, one
	// connection at most a share of it; see byteBudget.
	MaxInflightRequestBytes int64
	IdleTimeout             time.Duration // close connections idle this long (default 10 minutes, Kafka's connections.max.idle.ms)
	Logger                  zerolog.Logger
	Metrics                 *Metrics // nil: no metrics (see NewMetrics)

	// RequestReadTimeout bounds the time from a request frame's first byte
	// to its last (default 30 s); a client that has not finished a frame by
	// then is disconnected with a logged reason. Time the reader waits for
	// room in the request byte budget does not count. Kafka has no exact
	// equal: its connections.max.idle.ms (IdleTimeout) covers only idle
	// connections, and a half-sent frame keeps a connection busy.
	RequestReadTimeout time.Duration
	// MaxConnections caps open client connections (Kafka's max.connections;
	// default 10000, negative for no limit). MaxConnectionsPerIP caps them
	// per client IP address (Kafka's max.connections.per.ip; default 1000,
	// negative for no limit). A connection over either is accepted and
	// closed at once, logged and counted.
	MaxConnections      int
	MaxConnectionsPerIP int

	// SASLMechanisms are the SASL mechanisms SASL listeners offer (Kafka's
	// sasl.enabled.mechanisms), from SupportedSASLMechanisms; default
	// SCRAM-SHA-256 and SCRAM-SHA-512.
	SASLMechanisms []string
	// ConnectionsMaxReauth is the longest a SASL session lasts before the
	// client must re-authenticate (KIP-368, connections.max.reauth.ms);
	// 0: sessions never expire.
	ConnectionsMaxReauth time.Duration
	// NodeAuth, in cluster mode with peer TLS, lets the other nodes of the
	// cluster authenticate to the SSL and SASL_SSL listeners with their
	// peer certificates, as principal Node:<id> (nodeauth.go). Nil: no
	// connection is a node's.
	NodeAuth *NodeAuth
}

// The Server API (implemented in server.go):
//
//	New(cfg Config, b *broker.Broker) *Server
//	(*Server).Serve(ln net.Listener) error     // blocks until Shutdown; returns nil after Shutdown
//	(*Server).ServeListener(ln net.Listener, lc ListenerConfig) error // Serve with a name and security protocol (listener.go)
//	(*Server).Shutdown(ctx context.Context) error
//	    stops accepting, lets in-flight requests finish and their responses
//	    be written, closes connections; returns ctx.Err() if ctx ends first.
