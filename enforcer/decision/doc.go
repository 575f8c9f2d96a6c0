// Package decision is the enforcer's decision core: given a run's state
// folded from the ledger, one submission, the rules in force (identities,
// policies, limits) and the time, it returns the ledger events that record
// the decision. It does no I/O of its own: the one fleet-wide input, the
// caller's rate-limit bucket, is a function the caller passes in. The
// enforcer's shards do the I/O around it (reading the run, appending the
// events, publishing their effects), and the policy what-if replays its
// governance checks, in the same order, against a recorded run.
//
// A submission is judged in this order:
//
//  1. integrity: it decodes, its subject's caller token equals "from", the
//     sender is registered, enabled and allowed to submit this kind, its
//     signature checks, and sent_at is inside the replay window;
//  2. run membership: a root invoke names a run that does not exist yet;
//     any other submission names a parent hop (or the hop it closes) that
//     is in the run, open, and the sender's;
//  3. the target: a registered, enabled agent, tool or model;
//  4. governance (Checks, in order): the caller's rate limit, Cedar policy,
//     delegation depth, cycles, edge repeats, the run budget.
//
// The first failing step denies. A caller in audit mode is never denied by
// a governance check: what would have denied is recorded as a finding.
package decision
