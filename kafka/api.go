// Package kafka is Chronik's wire-protocol server: listener, connection
// loop, size-prefixed framing, request headers, version negotiation, and one
// file per API (00_produce.go, 01_fetch.go, ...) translating kmsg requests
// into *broker.Broker calls.
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
	// handled across all connections (Kafka's queued.max.request.bytes;
	// default 512 MiB, at least MaxRequestBytes). Readers wait for room
	// before allocating a body.
	MaxInflightRequestBytes int64
	IdleTimeout             time.Duration // close connections idle this long (default 10 minutes, Kafka's connections.max.idle.ms)
	Logger                  zerolog.Logger
	Metrics                 *Metrics // nil: no metrics (see NewMetrics)
}

// The Server API (implemented in server.go):
//
//	New(cfg Config, b *broker.Broker) *Server
//	(*Server).Serve(ln net.Listener) error     // blocks until Shutdown; returns nil after Shutdown
//	(*Server).Shutdown(ctx context.Context) error
//	    stops accepting, lets in-flight requests finish and their responses
//	    be written, closes connections; returns ctx.Err() if ctx ends first.
