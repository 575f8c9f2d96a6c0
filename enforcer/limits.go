package enforcer

import (
	"errors"
	"fmt"
	"time"

	"github.com/tollgate/tollgate/enforcer/ratelimit"
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

// Limit names, as recorded in breaches and alerts.
const (
	LimitDepth       = "max_delegation_depth"
	LimitHops        = "max_hops"
	LimitTokens      = "max_total_tokens"
	LimitCost        = "max_cost_usd"
	LimitWallClock   = "max_wall_clock_seconds"
	LimitEdgeRepeats = "max_edge_repeats"
	LimitCycle       = "cycle"
	LimitRate        = "invoke_rate_limit"
)

// Limits bound a run. A run is held to the limits recorded when it
// started (its workflow's, else the gateway's). Zero means the default; a
// negative number means no limit.
type Limits struct {
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

func (l *Limits) setDefaults() {
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
func (l Limits) Validate() error {
	if l.OnBreach != "" && l.OnBreach != HaltAndAlert && l.OnBreach != DenyOnly {
		return fmt.Errorf("on_breach is %q, want %s or %s", l.OnBreach, HaltAndAlert, DenyOnly)
	}
	return nil
}

// override returns l with every field o sets (non-zero) taken from o.
func (l Limits) override(o Limits) Limits {
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

func (l Limits) record() *schemas.RunLimits {
	return &schemas.RunLimits{
		MaxDelegationDepth: l.MaxDelegationDepth, MaxHops: l.MaxHops, MaxTotalTokens: l.MaxTotalTokens,
		MaxCostUSD: l.MaxCostUSD, MaxWallClockSeconds: l.MaxWallClockSeconds, MaxEdgeRepeats: l.MaxEdgeRepeats,
		OnBreach: l.OnBreach,
	}
}

// limitsFromRecord reads the limits recorded in run.started; a limit the
// record leaves out (zero) has its default.
func limitsFromRecord(r *schemas.RunLimits) Limits {
	l := Limits{
		MaxDelegationDepth: r.MaxDelegationDepth, MaxHops: r.MaxHops, MaxTotalTokens: r.MaxTotalTokens,
		MaxCostUSD: r.MaxCostUSD, MaxWallClockSeconds: r.MaxWallClockSeconds, MaxEdgeRepeats: r.MaxEdgeRepeats,
		OnBreach: r.OnBreach,
	}
	l.setDefaults()
	return l
}

// wallClock is the run's wall-clock bound, zero when unlimited.
func (l Limits) wallClock() time.Duration {
	if l.MaxWallClockSeconds <= 0 {
		return 0
	}
	return time.Duration(l.MaxWallClockSeconds) * time.Second
}

// AgentLimits govern one calling agent.
type AgentLimits struct {
	// InvokeRateLimit bounds the invokes the agent may submit, across every
	// run and every enforcer instance ("60/min"). Zero: no limit.
	InvokeRateLimit ratelimit.Rate `yaml:"invoke_rate_limit"`
	// Mode is "enforce" (default) or "audit": in audit mode the agent's
	// hops are never denied by policy or limits; what would have been
	// denied is recorded in the ledger instead.
	Mode string `yaml:"mode"`
}

// Agent modes.
const (
	ModeEnforce = "enforce"
	ModeAudit   = "audit"
)

func (a AgentLimits) override(o AgentLimits) AgentLimits {
	if o.InvokeRateLimit.Count != 0 {
		a.InvokeRateLimit = o.InvokeRateLimit
	}
	if o.Mode != "" {
		a.Mode = o.Mode
	}
	return a
}

func (a AgentLimits) validate(where string) error {
	if a.Mode != "" && a.Mode != ModeEnforce && a.Mode != ModeAudit {
		return fmt.Errorf("%s: mode is %q, want enforce or audit", where, a.Mode)
	}
	return nil
}

func validateLimits(c Config) error {
	var errs []error
	if err := c.Limits.Validate(); err != nil {
		errs = append(errs, fmt.Errorf("run_limits: %w", err))
	}
	for name, l := range c.Workflows {
		if err := l.Validate(); err != nil {
			errs = append(errs, fmt.Errorf("workflow %q: %w", name, err))
		}
	}
	errs = append(errs, c.PerAgent.validate("per_agent"))
	for id, a := range c.Agents {
		errs = append(errs, a.validate(fmt.Sprintf("agent %q", id)))
	}
	return errors.Join(errs...)
}
