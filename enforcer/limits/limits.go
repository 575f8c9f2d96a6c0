// Package limits holds the bounds a run and a calling agent are held to:
// their configuration, their defaults and overrides, the names breaches
// and alerts record, and the snapshot a run records when it starts. The
// checks that apply them live in enforcer/decision.
package limits

import (
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/tollgate/tollgate/broker/ratelimit"
	"github.com/tollgate/tollgate/schemas"
)

// What a run does when it trips a limit.
const (
	// HaltAndAlert denies the hop, halts the run (every later hop is
	// denied, open hops are cancelled) and publishes an alert.
	HaltAndAlert = "halt_and_alert"
	// DenyOnly denies the hop and records the breach; the run goes on.
	DenyOnly = "deny_only"
)

// Breach actions, as run.limit_breached records what the gateway did.
const (
	ActionHalt = "halt"
	ActionDeny = "deny"
)

// Limit names, as recorded in breaches and alerts.
const (
	Depth       = "max_delegation_depth"
	Hops        = "max_hops"
	Tokens      = "max_total_tokens"
	Cost        = "max_cost_usd"
	WallClock   = "max_wall_clock_seconds"
	EdgeRepeats = "max_edge_repeats"
	Cycle       = "cycle"
	Rate        = "invoke_rate_limit"
	RunRate     = "per_principal.run_rate"
)

// Run bounds a run. A run is held to the limits recorded when it started
// (its workflow's, else the gateway's). Zero means the default; a negative
// number means no limit.
type Run struct {
	// MaxDelegationDepth is the deepest a hop may be; a run's first hop has
	// depth 0. Default 5.
	MaxDelegationDepth int `yaml:"max_delegation_depth"`
	// MaxHops bounds the allowed hops of a run. Default 1000.
	MaxHops int `yaml:"max_hops"`
	// MaxTotalTokens bounds the tokens replies report plus the estimates
	// reserved by open hops. Default 500000.
	MaxTotalTokens int64 `yaml:"max_total_tokens"`
	// MaxCostUSD bounds the cost the same way. Default 25.
	MaxCostUSD float64 `yaml:"max_cost_usd"`
	// MaxWallClockSeconds bounds how long a run may take. Default 600.
	MaxWallClockSeconds int `yaml:"max_wall_clock_seconds"`
	// MaxEdgeRepeats bounds how often the same caller->target edge may be
	// allowed within one run. Default 20.
	MaxEdgeRepeats int `yaml:"max_edge_repeats"`
	// OnBreach is halt_and_alert (default) or deny_only.
	OnBreach string `yaml:"on_breach"`
}

// SetDefaults gives every field left zero its default.
func (l *Run) SetDefaults() {
	def := func(v *int, d int) {
		if *v == 0 {
			*v = d
		}
	}
	def(&l.MaxDelegationDepth, 5)
	def(&l.MaxHops, 1000)
	def(&l.MaxWallClockSeconds, 600)
	def(&l.MaxEdgeRepeats, 20)
	if l.MaxTotalTokens == 0 {
		l.MaxTotalTokens = 500000
	}
	if l.MaxCostUSD == 0 {
		l.MaxCostUSD = 25
	}
	if l.OnBreach == "" {
		l.OnBreach = HaltAndAlert
	}
}

// Validate reports every problem with the limits.
func (l Run) Validate() error {
	if l.OnBreach != "" && l.OnBreach != HaltAndAlert && l.OnBreach != DenyOnly {
		return fmt.Errorf("on_breach is %q, want %s or %s", l.OnBreach, HaltAndAlert, DenyOnly)
	}
	return nil
}

// Override returns l with every field o sets (non-zero) taken from o.
func (l Run) Override(o Run) Run {
	if o.MaxDelegationDepth != 0 {
		l.MaxDelegationDepth = o.MaxDelegationDepth
	}
	if o.MaxHops != 0 {
		l.MaxHops = o.MaxHops
	}
	if o.MaxTotalTokens != 0 {
		l.MaxTotalTokens = o.MaxTotalTokens
	}
	if o.MaxCostUSD != 0 {
		l.MaxCostUSD = o.MaxCostUSD
	}
	if o.MaxWallClockSeconds != 0 {
		l.MaxWallClockSeconds = o.MaxWallClockSeconds
	}
	if o.MaxEdgeRepeats != 0 {
		l.MaxEdgeRepeats = o.MaxEdgeRepeats
	}
	if o.OnBreach != "" {
		l.OnBreach = o.OnBreach
	}
	return l
}

// Record is the snapshot of the limits that run.started records.
func (l Run) Record() *schemas.RunLimits {
	return &schemas.RunLimits{
		MaxDelegationDepth: l.MaxDelegationDepth, MaxHops: l.MaxHops, MaxTotalTokens: l.MaxTotalTokens,
		MaxCostUSD: l.MaxCostUSD, MaxWallClockSeconds: l.MaxWallClockSeconds, MaxEdgeRepeats: l.MaxEdgeRepeats,
		OnBreach: l.OnBreach,
	}
}

// FromRecord reads the limits recorded in run.started; a limit the record
// leaves out (zero) has its default.
func FromRecord(r *schemas.RunLimits) Run {
	l := Run{
		MaxDelegationDepth: r.MaxDelegationDepth, MaxHops: r.MaxHops, MaxTotalTokens: r.MaxTotalTokens,
		MaxCostUSD: r.MaxCostUSD, MaxWallClockSeconds: r.MaxWallClockSeconds, MaxEdgeRepeats: r.MaxEdgeRepeats,
		OnBreach: r.OnBreach,
	}
	l.SetDefaults()
	return l
}

// WallClock is the run's wall-clock bound, zero when unlimited.
func (l Run) WallClock() time.Duration {
	if l.MaxWallClockSeconds <= 0 {
		return 0
	}
	return time.Duration(l.MaxWallClockSeconds) * time.Second
}

// BreachAction is what a breach of these limits does to a run that is not
// halted yet: halt it (halt_and_alert, once a hop was allowed) or only deny.
func (l Run) BreachAction(halted bool, allowed int) string {
	if l.OnBreach == HaltAndAlert && !halted && allowed > 0 {
		return ActionHalt
	}
	return ActionDeny
}

// Agent modes.
const (
	ModeEnforce = "enforce"
	ModeAudit   = "audit"
)

// Agent governs one calling agent.
type Agent struct {
	// InvokeRateLimit bounds the invokes the agent may submit, across every
	// run and every enforcer instance ("60/min"). Zero: no limit.
	InvokeRateLimit ratelimit.Rate `yaml:"invoke_rate_limit"`
	// Mode is "enforce" (default) or "audit": in audit mode the agent's
	// hops are never denied by policy or limits; what would have been
	// denied is recorded in the ledger instead.
	Mode string `yaml:"mode"`
	// RejectRateLimit bounds the submissions of the agent that the
	// integrity checks deny (malformed, forged, not its run, ...), across
	// every enforcer instance; past it they are dropped unrecorded.
	// Default 600/min.
	RejectRateLimit ratelimit.Rate `yaml:"reject_rate_limit"`
}

// RejectKey is the rate-limit bucket of an agent's rejected submissions.
func RejectKey(id string) string { return "rejected." + id }

// RunsKey is the rate-limit bucket of the runs started on behalf of a
// principal.
func RunsKey(principal string) string { return "runs." + principal }

// TargetKey is the rate-limit bucket of the hops to an identity, from all
// its callers (broker.Identity.RateLimit: a tool's rate_limit).
func TargetKey(id string) string { return "target." + id }

// Principal bounds what is done on behalf of one principal (the user who
// started a run, or the agent that started one of its own), across all its
// runs, so that starting more runs cannot reset a run's limits.
type Principal struct {
	// RunRate bounds the runs started on the principal's behalf, spawned
	// ones included, across every enforcer instance. Default 1000/min.
	RunRate ratelimit.Rate `yaml:"run_rate"`
}

// Override returns a with every field o sets taken from o.
func (a Agent) Override(o Agent) Agent {
	if o.InvokeRateLimit.Count != 0 {
		a.InvokeRateLimit = o.InvokeRateLimit
	}
	if o.Mode != "" {
		a.Mode = o.Mode
	}
	if o.RejectRateLimit.Count != 0 {
		a.RejectRateLimit = o.RejectRateLimit
	}
	return a
}

// Validate reports a problem with the agent settings.
func (a Agent) Validate() error {
	if a.Mode != "" && a.Mode != ModeEnforce && a.Mode != ModeAudit {
		return fmt.Errorf("mode is %q, want %s or %s", a.Mode, ModeEnforce, ModeAudit)
	}
	return nil
}

// Set is every limit a gateway applies: the run limits with their
// per-workflow overrides, and the per-agent settings with their per-agent
// overrides.
type Set struct {
	Run       Run
	Workflows map[string]Run
	PerAgent  Agent
	Agents    map[string]Agent
	// PerPrincipal bounds every principal.
	PerPrincipal Principal
	// Quotas bound spend over time windows, across runs (quota.go).
	Quotas []Quota
	// QuotaZone is the time zone calendar quota windows align to; nil is
	// UTC.
	QuotaZone *time.Location
	// Targets are the retry policy, fallbacks and circuit breaker of hops
	// to each target agent (retry.go); WorkflowRetries override the retry
	// policy per workflow and target.
	Targets         map[string]Target
	WorkflowRetries map[string]map[string]Retry
	// SpendSpikes configures the spend-spike alerts (spike.go).
	SpendSpikes SpendSpikes
}

// SetDefaults fills the defaults of the gateway-wide limits.
func (s *Set) SetDefaults() {
	s.Run.SetDefaults()
	if s.PerAgent.Mode == "" {
		s.PerAgent.Mode = ModeEnforce
	}
	if s.PerAgent.RejectRateLimit.Count == 0 {
		s.PerAgent.RejectRateLimit = ratelimit.Rate{Count: 600, Period: time.Minute}
	}
	if s.PerPrincipal.RunRate.Count == 0 {
		s.PerPrincipal.RunRate = ratelimit.Rate{Count: 1000, Period: time.Minute}
	}
	s.Quotas = slices.Clone(s.Quotas) // the caller's slice may be in use
	for i := range s.Quotas {
		s.Quotas[i].SetDefaults()
	}
}

// Validate reports every problem at once.
func (s Set) Validate() error {
	var errs []error
	if err := s.Run.Validate(); err != nil {
		errs = append(errs, fmt.Errorf("run_limits: %w", err))
	}
	for name, l := range s.Workflows {
		if err := l.Validate(); err != nil {
			errs = append(errs, fmt.Errorf("workflow %q: %w", name, err))
		}
	}
	if err := s.PerAgent.Validate(); err != nil {
		errs = append(errs, fmt.Errorf("per_agent: %w", err))
	}
	for id, a := range s.Agents {
		if err := a.Validate(); err != nil {
			errs = append(errs, fmt.Errorf("agent %q: %w", id, err))
		}
	}
	for id, t := range s.Targets {
		if err := t.Validate(id); err != nil {
			errs = append(errs, fmt.Errorf("agent %q: %w", id, err))
		}
	}
	for wf, rs := range s.WorkflowRetries {
		for id, r := range rs {
			if err := r.Validate(); err != nil {
				errs = append(errs, fmt.Errorf("workflow %q: retries of %q: %w", wf, id, err))
			}
		}
	}
	if err := s.SpendSpikes.Validate(); err != nil {
		errs = append(errs, err)
	}
	names := map[string]bool{}
	for _, q := range s.Quotas {
		if err := q.Validate(); err != nil {
			errs = append(errs, err)
		}
		if names[q.Name] {
			errs = append(errs, fmt.Errorf("quota %q is defined twice", q.Name))
		}
		names[q.Name] = true
	}
	return errors.Join(errs...)
}

// ForWorkflow returns the run limits with the workflow's overrides.
func (s Set) ForWorkflow(workflow string) Run {
	l := s.Run
	if o, ok := s.Workflows[workflow]; ok {
		l = l.Override(o)
	}
	return l
}

// ForAgent returns the per-agent settings of id.
func (s Set) ForAgent(id string) Agent {
	a := s.PerAgent
	if o, ok := s.Agents[id]; ok {
		a = a.Override(o)
	}
	return a
}
