package models

import (
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"

	"github.com/tollgate/tollgate/schemas"
)

// Config is one model the gateway serves: the model identity, the upstream
// it forwards to, and the upstream's prices.
type Config struct {
	// ID is the model identity (type model in the gateway's identities).
	ID string `yaml:"id"`
	// BaseURL is the upstream's OpenAI-compatible API root, e.g.
	// https://api.openai.com/v1; the bridge posts to BaseURL +
	// "/chat/completions".
	BaseURL string `yaml:"base_url"`
	// Model is the model name sent upstream (default: ID).
	Model string `yaml:"model"`
	// APIKeyEnv names the environment variable holding the upstream's API
	// key; APIKeyFile is a file holding it. At most one; none sends no
	// Authorization header.
	APIKeyEnv  string `yaml:"api_key_env"`
	APIKeyFile string `yaml:"api_key_file"`
	// Prices are what the upstream charges, in USD per million tokens.
	Prices Price `yaml:"prices"`
	// DefaultMaxTokens is the completion bound set on a request that gives
	// none (default 1024): every call reserves a bounded budget.
	DefaultMaxTokens int64 `yaml:"default_max_tokens"`
}

// Price is a price table entry, in USD per million tokens.
type Price struct {
	InputPerMTok  float64 `yaml:"input_per_mtok"`
	OutputPerMTok float64 `yaml:"output_per_mtok"`
}

// Cost is what the tokens of u cost at p, in USD.
func (p Price) Cost(inputTokens, outputTokens int64) float64 {
	return float64(inputTokens)*p.InputPerMTok/1e6 + float64(outputTokens)*p.OutputPerMTok/1e6
}

// Usage prices a token count.
func (p Price) Usage(inputTokens, outputTokens int64) schemas.Usage {
	return schemas.Usage{InputTokens: inputTokens, OutputTokens: outputTokens, CostUSD: p.Cost(inputTokens, outputTokens)}
}

// SetDefaults fills what the config leaves out.
func (c *Config) SetDefaults() {
	if c.Model == "" {
		c.Model = c.ID
	}
	if c.DefaultMaxTokens == 0 {
		c.DefaultMaxTokens = 1024
	}
	c.BaseURL = strings.TrimRight(c.BaseURL, "/")
}

// Validate reports every problem of the entry at once.
func (c *Config) Validate() error {
	var errs []error
	where := fmt.Sprintf("model %q", c.ID)
	if err := schemas.CheckPrincipalID(c.ID); err != nil {
		errs = append(errs, fmt.Errorf("%s: %w", where, err))
	}
	if u, err := url.Parse(c.BaseURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		errs = append(errs, fmt.Errorf("%s: base_url %q is not an http(s) URL", where, c.BaseURL))
	}
	if c.APIKeyEnv != "" && c.APIKeyFile != "" {
		errs = append(errs, fmt.Errorf("%s: api_key_env and api_key_file are exclusive", where))
	}
	if c.APIKeyEnv != "" {
		if _, ok := os.LookupEnv(c.APIKeyEnv); !ok {
			errs = append(errs, fmt.Errorf("%s: api_key_env %s is not set", where, c.APIKeyEnv))
		}
	}
	if c.Prices.InputPerMTok < 0 || c.Prices.OutputPerMTok < 0 {
		errs = append(errs, fmt.Errorf("%s: prices must not be negative", where))
	}
	if c.DefaultMaxTokens < 0 || c.DefaultMaxTokens > schemas.MaxTokens {
		errs = append(errs, fmt.Errorf("%s: default_max_tokens out of range", where))
	}
	return errors.Join(errs...)
}

// APIKey reads the upstream's key from the environment or its file.
func (c *Config) APIKey() (string, error) {
	switch {
	case c.APIKeyEnv != "":
		return os.Getenv(c.APIKeyEnv), nil
	case c.APIKeyFile != "":
		b, err := os.ReadFile(c.APIKeyFile)
		if err != nil {
			return "", fmt.Errorf("model %q: api key: %w", c.ID, err)
		}
		return strings.TrimSpace(string(b)), nil
	}
	return "", nil
}
