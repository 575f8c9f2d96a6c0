package limits

import (
	"errors"
	"time"
)

// SpendSpikes configures the spend-spike alerts: per agent and per team,
// the cost rate over the last Short against the rate over the Baseline
// before it. A rate past Factor times the baseline, with at least
// MinCostUSD spent in the short window, raises an alert (never a denial)
// naming the runs and edges that drive it, at most once per Cooldown per
// agent or team. Spend is charged to a hop's caller, as quotas charge it.
// The counters are the fleet's (a KV entry per agent and team that every
// enforcer instance adds its share to), so a spike is seen, and alerted
// once, however the runs are spread over the instances.
type SpendSpikes struct {
	// Factor is the ratio that alerts; 0 turns spike alerts off.
	Factor     float64       `yaml:"factor"`
	Short      time.Duration `yaml:"short_window"`    // default 1m
	Baseline   time.Duration `yaml:"baseline_window"` // default 1h
	MinCostUSD float64       `yaml:"min_cost_usd"`    // default 1
	Cooldown   time.Duration `yaml:"cooldown"`        // default 15m
	// Warmup is how long the enforcer watches spend before it alerts, so
	// that the first spend after a start is no spike; default Baseline.
	Warmup time.Duration `yaml:"warmup"`
	// Flush is how often each enforcer instance adds the spend it saw to
	// the fleet's counters and checks them; default 1s.
	Flush time.Duration `yaml:"flush"`
}

// Enabled reports whether spike alerts are on.
func (s SpendSpikes) Enabled() bool { return s.Factor > 0 }

// WithDefaults returns s with its defaults filled in.
func (s SpendSpikes) WithDefaults() SpendSpikes {
	if s.Short <= 0 {
		s.Short = time.Minute
	}
	if s.Baseline <= 0 {
		s.Baseline = time.Hour
	}
	if s.MinCostUSD <= 0 {
		s.MinCostUSD = 1
	}
	if s.Cooldown <= 0 {
		s.Cooldown = 15 * time.Minute
	}
	if s.Warmup <= 0 {
		s.Warmup = s.Baseline
	}
	if s.Flush <= 0 {
		s.Flush = time.Second
	}
	return s
}

// Validate reports a problem with the settings.
func (s SpendSpikes) Validate() error {
	var errs []error
	if s.Factor < 0 || s.MinCostUSD < 0 || s.Short < 0 || s.Baseline < 0 || s.Cooldown < 0 || s.Flush < 0 {
		errs = append(errs, errors.New("spend_spikes: no setting may be negative"))
	}
	if s.Factor > 0 && s.Factor <= 1 {
		errs = append(errs, errors.New("spend_spikes: factor must be above 1"))
	}
	if d := s.WithDefaults(); s.Factor > 0 && d.Baseline <= d.Short {
		errs = append(errs, errors.New("spend_spikes: baseline_window must be longer than short_window"))
	}
	return errors.Join(errs...)
}
