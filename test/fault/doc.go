// Package fault is Tollgate's fault-injection suite: `tollgate serve`, a
// nats-server built from the module, and agents (test/fault/agentproc, on
// the broker/agent client) run as separate OS processes; the suite kills
// them with SIGKILL under sustained load and then accounts for every hop:
// decided once, delivered once, run once at its agent, spent once, closed
// in time, and every run's ledger verifies.
//
// Counts and the seed of the random kill moments are flags:
//
//	go test ./test/fault -count=1 -v                        # the reduced counts CI runs
//	go test ./test/fault -count=1 -v -timeout 60m -fault.full     # full counts
//	go test ./test/fault -count=1 -v -fault.seed 1234 -run TestKillEnforcer  # replay a failure
//
// See docs/reliability.md for the guarantees each scenario proves.
package fault
