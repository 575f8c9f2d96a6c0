package schemas

// Reason is the stable code of a denial. Codes cross the bus and land in the
// ledger and in ClickHouse, so they never change meaning; new ones may be added.
type Reason string

// Denial reasons.
const (
	// ReasonMalformed: the submission could not be decoded or failed
	// validation (size, schema version, ids, kind-specific parts).
	ReasonMalformed Reason = "malformed"
	// ReasonIdentity: the sender is unknown or disabled, its subject token
	// differs from "from", or its signature is missing or invalid.
	ReasonIdentity Reason = "identity"
	// ReasonReplay: sent_at is outside the replay window, or the hop id was
	// already used for different content.
	ReasonReplay Reason = "replay"
	// ReasonParent: the parent hop is not in the run, was not delivered to
	// the sender, or is already closed.
	ReasonParent Reason = "parent"
	// ReasonRun: the run is unknown, already exists (for a root invoke), or
	// has completed.
	ReasonRun Reason = "run"
	// ReasonHop: a reply or cancel names a hop that is unknown, not the
	// sender's to close, or already closed.
	ReasonHop Reason = "hop"
	// ReasonTarget: the target is not a registered agent, tool or model, or
	// cannot be invoked with this kind.
	ReasonTarget Reason = "target"
	// ReasonPolicy: Cedar denied the hop (no permit, a forbid, or a policy
	// evaluation error, which counts as deny).
	ReasonPolicy Reason = "policy"
	// ReasonDepth: the hop would exceed the run's maximum delegation depth.
	ReasonDepth Reason = "depth"
	// ReasonLoop: the target already appears in the hop's ancestry, or the
	// caller->target edge was repeated too often in the run.
	ReasonLoop Reason = "loop"
	// ReasonRate: the caller is over its invoke rate limit.
	ReasonRate Reason = "rate"
	// ReasonBudget: the run is out of tokens, cost, hops or wall clock.
	ReasonBudget Reason = "budget"
	// ReasonHalted: the run was halted by a breach or an operator.
	ReasonHalted Reason = "halted"
	// ReasonTimeout: the hop passed its deadline.
	ReasonTimeout Reason = "timeout"
	// ReasonOperator: an operator halted the run (alerts only).
	ReasonOperator Reason = "operator"
	// ReasonUnavailable: the gateway cannot record the hop now (the ledger
	// is full or its store cannot be written), so it forwards nothing: try
	// again later.
	ReasonUnavailable Reason = "unavailable"
	// ReasonGuardrail: a guardrail rule whose action is block matched the
	// message (the rule ids are in the decision's guardrail record).
	ReasonGuardrail Reason = "guardrail"
	// ReasonApproval: a hop that needed a human's approval was rejected, or
	// was not approved before its deadline.
	ReasonApproval Reason = "approval"
	// ReasonQuota: the hop's estimate would pass a spend quota of its
	// caller, team, environment, workflow or principal over the quota's
	// window (docs/limits.md, quotas).
	ReasonQuota Reason = "quota"
)
