// Package cluster runs Tollgate on a 3-node NATS JetStream cluster with R3
// streams and several gateway instances owning the run partitions: nodes
// in-process and as nats-server processes, a node stopped mid-run, an
// instance stopped and its partitions taken over.
package cluster
