package limits

import (
	"errors"
	"fmt"
	"regexp"
	"time"
)

// Quota scopes: whose spend a quota bounds, across every run and every
// enforcer instance. The spender of a hop is its caller.
const (
	ScopeAgent       = "agent"       // the calling agent (or user)
	ScopeTeam        = "team"        // the caller's team
	ScopeWorkflow    = "workflow"    // the run's workflow
	ScopePrincipal   = "principal"   // the run's principal (on_behalf_of)
	ScopeEnvironment = "environment" // the caller's environment
)

// Quota windows. Calendar windows start at the top of the hour, at
// midnight and on the first of the month in the quota time zone; a
// rolling window is the last Rolling of time.
const (
	WindowHour    = "hour"
	WindowDay     = "day"
	WindowMonth   = "month"
	WindowRolling = "rolling"
)

// What a hop over a quota does (Quota.OnExceed).
const (
	// QuotaDeny denies the hop (reason quota); the run goes on.
	QuotaDeny = "deny"
	// QuotaHalt denies the hop and records a breach of limit
	// QuotaLimit(name), which halts the run and alerts under the run's
	// on_breach, like a run limit.
	QuotaHalt = "halt_and_alert"
)

// QuotaAll as a quota's Match applies the quota to each value of its scope
// separately (each agent its own quota).
const QuotaAll = "*"

// QuotaLimit is the limit name a quota's breach records.
func QuotaLimit(name string) string { return "quota." + name }

// Quota bounds the tokens and the cost spent by one scope over a window,
// summed over every run and enforcer instance. A hop reserves its estimate
// at admission and settles what its reply reports, like a run budget.
type Quota struct {
	// Name identifies the quota in denials, breaches, metrics and
	// `tollgate quota status`; letters, digits, '-' and '_'.
	Name string `yaml:"name"`
	// Scope is agent, team, workflow, principal or environment.
	Scope string `yaml:"scope"`
	// Match is the scope's value the quota applies to ("research" for the
	// agent research), or "*" for each value separately. Default "*".
	Match string `yaml:"match"`
	// Window is hour, day, month (calendar-aligned in the quota time zone)
	// or rolling (the last Rolling).
	Window  string        `yaml:"window"`
	Rolling time.Duration `yaml:"rolling"`
	// MaxTokens and MaxCostUSD bound the window's spend; zero leaves that
	// dimension unbounded (one of them is required).
	MaxTokens  int64   `yaml:"max_tokens"`
	MaxCostUSD float64 `yaml:"max_cost_usd"`
	// OnExceed is deny (default) or halt_and_alert.
	OnExceed string `yaml:"on_exceed"`
	// Mode is enforce (default) or audit: in audit mode a hop over the
	// quota is admitted (and counted) and the excess recorded as a finding.
	Mode string `yaml:"mode"`
}

var quotaName = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

// SetDefaults fills the quota's defaults.
func (q *Quota) SetDefaults() {
	if q.Match == "" {
		q.Match = QuotaAll
	}
	if q.OnExceed == "" {
		q.OnExceed = QuotaDeny
	}
	if q.Mode == "" {
		q.Mode = ModeEnforce
	}
}

// Validate reports every problem with the quota.
func (q Quota) Validate() error {
	var errs []error
	if !quotaName.MatchString(q.Name) {
		errs = append(errs, fmt.Errorf("name %q: want 1-64 letters, digits, '-' or '_'", q.Name))
	}
	switch q.Scope {
	case ScopeAgent, ScopeTeam, ScopeWorkflow, ScopePrincipal, ScopeEnvironment:
	default:
		errs = append(errs, fmt.Errorf("scope is %q, want agent, team, workflow, principal or environment", q.Scope))
	}
	switch q.Window {
	case WindowHour, WindowDay, WindowMonth:
		if q.Rolling != 0 {
			errs = append(errs, fmt.Errorf("rolling is set but window is %s (calendar)", q.Window))
		}
	case WindowRolling:
		if q.Rolling < time.Minute {
			errs = append(errs, fmt.Errorf("a rolling window needs rolling of at least 1m, got %s", q.Rolling))
		}
	default:
		errs = append(errs, fmt.Errorf("window is %q, want hour, day, month or rolling", q.Window))
	}
	if q.MaxTokens < 0 || q.MaxCostUSD < 0 {
		errs = append(errs, errors.New("max_tokens and max_cost_usd must not be negative"))
	}
	if q.MaxTokens == 0 && q.MaxCostUSD == 0 {
		errs = append(errs, errors.New("set max_tokens, max_cost_usd or both"))
	}
	if q.OnExceed != "" && q.OnExceed != QuotaDeny && q.OnExceed != QuotaHalt {
		errs = append(errs, fmt.Errorf("on_exceed is %q, want %s or %s", q.OnExceed, QuotaDeny, QuotaHalt))
	}
	if q.Mode != "" && q.Mode != ModeEnforce && q.Mode != ModeAudit {
		errs = append(errs, fmt.Errorf("mode is %q, want %s or %s", q.Mode, ModeEnforce, ModeAudit))
	}
	if len(errs) > 0 {
		return fmt.Errorf("quota %q: %w", q.Name, errors.Join(errs...))
	}
	return nil
}

// Spender is who spends on a hop, as the quotas' scopes see it.
type Spender struct {
	Agent, Team, Workflow, Principal, Environment string
}

// value is the spender's value of scope, "" when it has none.
func (s Spender) value(scope string) string {
	switch scope {
	case ScopeAgent:
		return s.Agent
	case ScopeTeam:
		return s.Team
	case ScopeWorkflow:
		return s.Workflow
	case ScopePrincipal:
		return s.Principal
	case ScopeEnvironment:
		return s.Environment
	}
	return ""
}

// Applied is a quota as it applies to one spender: the quota and the
// value of its scope it counts (its key in the store).
type Applied struct {
	Quota *Quota
	Value string
}

// Applies returns the quotas that count a spender's hops, in configured
// order; nil when none do (the common case costs no allocation).
func (s Set) Applies(sp Spender) []Applied {
	var out []Applied
	for i := range s.Quotas {
		q := &s.Quotas[i]
		v := sp.value(q.Scope)
		if v == "" || (q.Match != QuotaAll && q.Match != v) {
			continue
		}
		out = append(out, Applied{Quota: q, Value: v})
	}
	return out
}

// Zone is the quota time zone (UTC when none is set).
func (s Set) Zone() *time.Location {
	if s.QuotaZone == nil {
		return time.UTC
	}
	return s.QuotaZone
}
