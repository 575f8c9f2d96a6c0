package console

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Config is the console section of the admin listener (admin.console in
// the gateway config). The console is served whenever the admin listener
// is, unless Disabled; nobody can read it without a token of Tokens or an
// operator's key.
type Config struct {
	// Disabled serves no console.
	Disabled bool `yaml:"disabled,omitempty"`
	// Tokens give read access (runs, run pages, what-if, spend); halting
	// takes an operator's login. Only a token's SHA-256 is configured.
	Tokens []Token `yaml:"tokens,omitempty"`
	// PolicyDirs are the candidate policy sets the what-if offers: folders
	// (or files, or globs) of .cedar files, relative to the config file.
	PolicyDirs []string `yaml:"policy_dirs,omitempty"`
	// TraceURL links a hop to the tracing UI: a URL in which {trace_id}
	// and {span_id} are replaced, e.g.
	// http://localhost:16686/trace/{trace_id}. Empty: no link.
	TraceURL string `yaml:"trace_url,omitempty"`
	// Payloads shows the A2A message in and the result out of every hop.
	Payloads bool `yaml:"payloads,omitempty"`
	// SessionTTL is how long a login lasts; default 12h.
	SessionTTL time.Duration `yaml:"session_ttl,omitempty"`
}

// Token is a console token: a name for the logs and the SHA-256 of the
// token (HashToken; `tollgate console token` makes one).
type Token struct {
	Name   string `yaml:"name"`
	SHA256 string `yaml:"sha256"`
}

// DefaultSessionTTL is how long a login lasts unless SessionTTL says.
const DefaultSessionTTL = 12 * time.Hour

// SetDefaults fills in what the section leaves unset.
func (c *Config) SetDefaults() {
	if c.SessionTTL == 0 {
		c.SessionTTL = DefaultSessionTTL
	}
}

// Validate reports every problem with the section at once.
func (c *Config) Validate() error {
	var errs []error
	names := map[string]bool{}
	for i, t := range c.Tokens {
		if t.Name == "" {
			errs = append(errs, fmt.Errorf("admin.console.tokens[%d]: a name is required", i))
		} else if names[t.Name] {
			errs = append(errs, fmt.Errorf("admin.console.tokens[%d]: name %q given twice", i, t.Name))
		}
		names[t.Name] = true
		if b, err := hex.DecodeString(t.SHA256); err != nil || len(b) != sha256.Size {
			errs = append(errs, fmt.Errorf("admin.console.tokens[%d] (%s): sha256 must be 64 hex digits (tollgate console token prints one)", i, t.Name))
		}
	}
	if c.TraceURL != "" && !strings.HasPrefix(c.TraceURL, "http://") && !strings.HasPrefix(c.TraceURL, "https://") {
		errs = append(errs, fmt.Errorf("admin.console.trace_url %q: want an http or https URL", c.TraceURL))
	}
	if c.SessionTTL < 0 {
		errs = append(errs, errors.New("admin.console.session_ttl must not be negative"))
	}
	return errors.Join(errs...)
}

// HashToken returns the SHA-256 of a console token, as Token.SHA256 holds
// it.
func HashToken(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}

// NewToken returns a fresh random console token and its hash.
func NewToken() (token, hash string, err error) {
	b := make([]byte, 24)
	if _, err := rand.Read(b); err != nil {
		return "", "", fmt.Errorf("console token: %w", err)
	}
	token = "tgc_" + hex.EncodeToString(b)
	return token, HashToken(token), nil
}
