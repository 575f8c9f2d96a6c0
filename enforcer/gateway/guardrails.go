package gateway

import (
	"errors"
	"fmt"
	"net/http"
	"os"
	"time"

	"github.com/tollgate/tollgate/broker/models"
	"github.com/tollgate/tollgate/enforcer/guardrail"
)

// GuardrailsConfig is the guardrails section: the rule packs' actions per
// agent and direction, the bounds of a scan, and an optional external
// checker (docs/guardrails.md). Guardrails are on unless disabled.
type GuardrailsConfig struct {
	// Disabled turns scanning off: no message is scanned, nothing is
	// tainted by a guardrail (untrusted identities still taint).
	Disabled bool `yaml:"disabled"`
	// Default, Agents and Limits are guardrail.Config's.
	Default guardrail.AgentPolicy            `yaml:"default"`
	Agents  map[string]guardrail.AgentPolicy `yaml:"agents"`
	Limits  guardrail.Limits                 `yaml:"limits"`
	// Checker is the external classifier the agents whose hook is
	// fail-open or fail-closed consult.
	Checker *CheckerConfig `yaml:"checker"`
	// StreamHoldBytes is how much of a streamed model completion the model
	// front holds back until it is scanned with what follows it (default
	// models.DefaultStreamHoldBytes): a pattern up to this long split
	// across chunks is stopped before any of it reaches the client.
	StreamHoldBytes int `yaml:"stream_hold_bytes"`
}

// CheckerConfig is the external guardrail checker: an HTTP service that
// answers the JSON protocol in docs/guardrails.md.
type CheckerConfig struct {
	URL string `yaml:"url"`
	// Timeout bounds one check (default 2 s); MaxConcurrent caps the checks
	// in flight (default 16).
	Timeout       time.Duration `yaml:"timeout"`
	MaxConcurrent int           `yaml:"max_concurrent"`
	// HeaderEnv maps a request header to the environment variable holding
	// its value (an API key stays out of the config file).
	HeaderEnv map[string]string `yaml:"header_env"`
}

// engineConfig is the section as the guardrail engine takes it.
func (c *GuardrailsConfig) engineConfig() guardrail.Config {
	return guardrail.Config{Default: c.Default, Agents: c.Agents, Limits: c.Limits}
}

// Validate reports every problem of the section at once: unknown packs,
// rules or agents' actions, bad limits, a checker without a URL, a header
// whose variable is not set.
func (c *GuardrailsConfig) Validate() error {
	if c.Disabled {
		return nil
	}
	cfg := c.engineConfig()
	cfg.SetDefaults()
	errs := []error{cfg.Validate()}
	if c.StreamHoldBytes < 0 || c.StreamHoldBytes > maxStreamHoldBytes {
		errs = append(errs, fmt.Errorf("stream_hold_bytes %d is out of range (0 to %d)", c.StreamHoldBytes, maxStreamHoldBytes))
	}
	if c.Checker != nil {
		_, err := c.Checker.httpConfig()
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("guardrails: %w", err)
	}
	return nil
}

func (c *CheckerConfig) httpConfig() (guardrail.HTTPCheckerConfig, error) {
	hc := guardrail.HTTPCheckerConfig{URL: c.URL, Timeout: c.Timeout, MaxConcurrent: c.MaxConcurrent, Header: http.Header{}}
	var errs []error
	for name, env := range c.HeaderEnv {
		v, ok := os.LookupEnv(env)
		if !ok {
			errs = append(errs, fmt.Errorf("checker header %s: environment variable %s is not set", name, env))
			continue
		}
		hc.Header.Set(name, v)
	}
	hc.SetDefaults()
	errs = append(errs, hc.Validate())
	return hc, errors.Join(errs...)
}

// Guard builds the guardrail engine and its external checker; nil, nil
// when the guardrails are disabled.
func (c *GuardrailsConfig) Guard() (*guardrail.Engine, guardrail.Checker, error) {
	if c.Disabled {
		return nil, nil, nil
	}
	engine, err := guardrail.New(c.engineConfig())
	if err != nil {
		return nil, nil, fmt.Errorf("guardrails: %w", err)
	}
	if c.Checker == nil {
		return engine, nil, nil
	}
	hc, err := c.Checker.httpConfig()
	if err != nil {
		return nil, nil, fmt.Errorf("guardrails: %w", err)
	}
	checker, err := guardrail.NewHTTPChecker(hc)
	if err != nil {
		return nil, nil, fmt.Errorf("guardrails: %w", err)
	}
	return engine, checker, nil
}

// maxStreamHoldBytes bounds guardrails.stream_hold_bytes: the window a
// stream's every chunk is scanned in is twice as long.
const maxStreamHoldBytes = 64 << 10

// streamGuard scans the text of a model's streamed completion to caller
// with the model's outbound guardrail policy (the one the reply is scanned
// with when the hop closes); nil when the guardrails are off. The external
// checker is not called per chunk: it sees the whole completion at the
// reply.
func (g *Gateway) streamGuard(model, caller string) models.StreamScan {
	engine := g.Registry().Guard
	if engine == nil {
		return nil
	}
	return func(text string) models.StreamVerdict {
		res, redacted := engine.ScanText(guardrail.Outbound, model, caller, text)
		return models.StreamVerdict{Rules: res.RuleIDs(), Block: res.Blocked(), Redacted: redacted, Changed: res.Verdict == guardrail.Redacted}
	}
}
