// Package enforcer is Tollgate's governing consumer. It reads every
// submission from the SUBMIT work queue and, for each one, in order:
// decodes and validates it, checks the sender's identity (subject token,
// registry, Ed25519 signature, replay window), loads the run's state from
// memory or folds it from the ledger, derives the governance context
// (run, depth, ancestry, principal) from the ledger only, applies the run
// limits and Cedar policy, appends the decision to the run's ledger
// (write-ahead), and only then forwards the delivery and acks.
//
// Runs are spread over shards by run id: each run is handled by one
// goroutine, strictly in order, while different runs proceed in parallel
// and no shard waits for another's acknowledgements. A crash at any point
// loses nothing and delivers nothing twice: a redelivered submission is
// recognised by its digest in the ledger, and every delivery subject is
// written at most once (expected last subject sequence 0).
package enforcer
