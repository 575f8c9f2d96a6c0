// Package broker owns Tollgate's use of NATS: the subject and stream names
// (all built in subjects.go), stream provisioning, the embedded server, the
// identity directory of agents and users, their per-identity nkey
// credentials and subject permissions, and connecting to the bus.
//
// The agent-side client lives in broker/agent.
package broker
