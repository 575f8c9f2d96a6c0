package decision

import (
	"crypto/ed25519"
	"time"

	"github.com/tollgate/tollgate/broker"
	"github.com/tollgate/tollgate/enforcer/guardrail"
	"github.com/tollgate/tollgate/enforcer/limits"
	"github.com/tollgate/tollgate/enforcer/policy"
	"github.com/tollgate/tollgate/ledger"
	"github.com/tollgate/tollgate/schemas"
)

// Rules are what hops are judged against, besides the run itself: the
// identities, the enforced policies, optional audit-only policies whose
// denials are recorded but not enforced, and the limits. A Rules value is
// immutable once in use; a reload builds a new one. The engines must be
// built over Dir.
type Rules struct {
	Dir    *broker.Directory
	Engine *policy.Engine
	// Audit, when set, is evaluated on every invoke that is allowed; what
	// it would deny is recorded in the hop's audit findings.
	Audit  *policy.Engine
	Limits limits.Set
	// Guard, when set, scans every invoke's message and every reply's
	// result before the decision (docs/guardrails.md).
	Guard *guardrail.Engine
	// Checker is the external guardrail checker the enforcer consults with
	// Guard (guardrail.Engine.Check) for the agents whose hook mode is on;
	// nil for none. The decision core never calls it itself.
	Checker guardrail.Checker
	// ReplayWindow is how far an envelope's sent_at may be from the time
	// the broker stored it.
	ReplayWindow time.Duration
	// DefaultTimeout is a hop's timeout when its target sets none.
	DefaultTimeout time.Duration
	// ApprovalTimeout is how long a hop held for approval waits before it
	// is rejected (DefaultApprovalTimeout when zero).
	ApprovalTimeout time.Duration
	// Ingress is the key of the gateway's HTTP ingress: an envelope that
	// says it came through the ingress (via "a2a-ingress") must be signed
	// with it, and one that does not is the sender's own. nil: no
	// ingress; such envelopes are denied.
	Ingress ed25519.PublicKey
}

// LimitsOf returns the limits a run is held to: those recorded when it
// started, or the gateway's for a run that has not started.
func (r *Rules) LimitsOf(st *ledger.State) limits.Run {
	if st.Limits != nil {
		return limits.FromRecord(st.Limits)
	}
	return r.Limits.Run
}

// TimeoutFor is how long a hop to target may stay open.
func (r *Rules) TimeoutFor(target *broker.Identity) time.Duration {
	if target.Timeout > 0 {
		return target.Timeout
	}
	return r.DefaultTimeout
}

// WorkflowFor is the workflow of a run entered at agent: the agent's
// configured workflow, or "default".
func (r *Rules) WorkflowFor(agent string) string {
	if id, ok := r.Dir.Get(agent); ok && id.Workflow != "" {
		return id.Workflow
	}
	return DefaultWorkflow
}

// DefaultWorkflow is the workflow of runs entered at an agent that names
// none.
const DefaultWorkflow = "default"

// ActionFor is the Cedar action of a hop to a target of type t.
func ActionFor(t schemas.PrincipalType) schemas.Action {
	switch t {
	case schemas.TypeTool:
		return schemas.ActionCallTool
	case schemas.TypeModel:
		return schemas.ActionCallModel
	}
	return schemas.ActionInvoke
}
