// Package cluster will hold Chronik's optional raft layer: one etcd raft
// group per partition on the partition's own wal.Log, a controller group over
// the metadata log, the peer transport and leader routing. It plugs into
// package broker through an interface broker defines (see DESIGN.md,
// "Cluster rules"). Nothing here yet: cluster mode is issue 6.
package cluster
