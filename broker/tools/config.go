package tools

import (
	"errors"
	"fmt"
	"net/url"

	"github.com/tollgate/tollgate/broker/ratelimit"
	"github.com/tollgate/tollgate/schemas"
)

// ServerConfig is an MCP server the gateway fronts.
type ServerConfig struct {
	// ID names the server in the tools' config.
	ID string `yaml:"id"`
	// URL is its streamable HTTP endpoint.
	URL string `yaml:"url"`
	// Untrusted marks every tool of the server untrusted: their results
	// taint the hops that read them (docs/guardrails.md).
	Untrusted bool `yaml:"untrusted"`
}

// Config is one governed tool: a tool identity and the MCP tool it calls.
type Config struct {
	// ID is the tool identity (type tool in the gateway's identities):
	// the Front lists the tool under it. The Cedar resource is
	// Tool::"<server>/<tool>" (schemas.ToolResource).
	ID string `yaml:"id"`
	// Server is the MCP server's id (ServerConfig.ID).
	Server string `yaml:"server"`
	// Tool is the tool's name on the server (default: ID).
	Tool string `yaml:"tool"`
	// CostPerCallUSD is charged to the run for every call.
	CostPerCallUSD float64 `yaml:"cost_per_call_usd"`
	// RateLimit bounds the calls of this tool, across all callers and
	// every gateway instance, as "count/period" ("30/min"); zero: none.
	// The gateway registers it on the tool's identity and the enforcer
	// denies a call over it (reason rate) before forwarding it.
	RateLimit ratelimit.Rate `yaml:"rate_limit"`
	// Untrusted marks the tool's results untrusted (as its server's flag
	// does for all its tools).
	Untrusted bool `yaml:"untrusted"`
}

// SetDefaults fills what the config leaves out.
func (c *Config) SetDefaults() {
	if c.Tool == "" {
		c.Tool = c.ID
	}
}

// Validate reports every problem of the server entry at once.
func (s *ServerConfig) Validate() error {
	var errs []error
	if err := schemas.CheckPrincipalID(s.ID); err != nil {
		errs = append(errs, fmt.Errorf("mcp server: %w", err))
	}
	if u, err := url.Parse(s.URL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		errs = append(errs, fmt.Errorf("mcp server %q: url %q is not an http(s) URL", s.ID, s.URL))
	}
	return errors.Join(errs...)
}

// Validate reports every problem of the tool entry at once; servers are
// the configured MCP servers by id.
func (c *Config) Validate(servers map[string]ServerConfig) error {
	var errs []error
	where := fmt.Sprintf("tool %q", c.ID)
	if err := schemas.CheckPrincipalID(c.ID); err != nil {
		errs = append(errs, fmt.Errorf("%s: %w", where, err))
	}
	if !schemas.ValidToolName(c.Tool) {
		errs = append(errs, fmt.Errorf("%s: tool name %q does not match %s", where, c.Tool, schemas.ToolNamePattern))
	}
	if _, ok := servers[c.Server]; !ok {
		errs = append(errs, fmt.Errorf("%s: server %q is not a configured mcp server", where, c.Server))
	}
	if c.CostPerCallUSD < 0 || c.CostPerCallUSD > schemas.MaxCostUSD {
		errs = append(errs, fmt.Errorf("%s: cost_per_call_usd out of range", where))
	}
	return errors.Join(errs...)
}

// IsUntrusted reports whether the tool's results are untrusted: the tool
// or its server is marked so.
func IsUntrusted(c Config, s ServerConfig) bool { return c.Untrusted || s.Untrusted }
