package guardrail

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"
)

// HTTPCheckerConfig configures the HTTP external checker.
type HTTPCheckerConfig struct {
	// URL receives a POST of a CheckRequest and answers 200 with a
	// CheckResponse.
	URL string `yaml:"url" json:"url"`
	// Timeout bounds one check, waiting for a slot included. Default 2s.
	// A context deadline that comes sooner wins.
	Timeout time.Duration `yaml:"timeout" json:"timeout,omitempty"`
	// MaxConcurrent caps the checks in flight; a check waits for a slot
	// until its deadline, then fails with ErrCheckerBusy. Default 16.
	MaxConcurrent int `yaml:"max_concurrent" json:"max_concurrent,omitempty"`
	// MaxResponseBytes bounds the answer read. Default 1 MiB.
	MaxResponseBytes int64 `yaml:"max_response_bytes" json:"max_response_bytes,omitempty"`
	// Header is added to every request (an API key for the service).
	Header http.Header `yaml:"-" json:"-"`
	// Client sends the requests. Default: a client of its own with no
	// timeout of its own (Timeout and the context bound each request).
	Client *http.Client `yaml:"-" json:"-"`
}

// SetDefaults gives every field left zero its default.
func (c *HTTPCheckerConfig) SetDefaults() {
	if c.Timeout == 0 {
		c.Timeout = 2 * time.Second
	}
	if c.MaxConcurrent == 0 {
		c.MaxConcurrent = 16
	}
	if c.MaxResponseBytes == 0 {
		c.MaxResponseBytes = 1 << 20
	}
	if c.Client == nil {
		c.Client = &http.Client{}
	}
}

// Validate reports every problem of the configuration at once; the errors
// wrap ErrConfig.
func (c *HTTPCheckerConfig) Validate() error {
	var errs []error
	if u, err := url.Parse(c.URL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		errs = append(errs, fmt.Errorf("%w: checker url %q is not an http(s) URL", ErrConfig, c.URL))
	}
	if c.Timeout < 0 {
		errs = append(errs, fmt.Errorf("%w: checker timeout is negative", ErrConfig))
	}
	if c.MaxConcurrent < 0 {
		errs = append(errs, fmt.Errorf("%w: checker max_concurrent is negative", ErrConfig))
	}
	if c.MaxResponseBytes < 0 {
		errs = append(errs, fmt.Errorf("%w: checker max_response_bytes is negative", ErrConfig))
	}
	return errors.Join(errs...)
}

// HTTPChecker is a Checker that asks a classifier service over HTTP. It
// is safe for concurrent use.
type HTTPChecker struct {
	cfg HTTPCheckerConfig
	sem chan struct{}
}

// NewHTTPChecker returns a checker for cfg; its errors wrap ErrConfig.
func NewHTTPChecker(cfg HTTPCheckerConfig) (*HTTPChecker, error) {
	cfg.SetDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &HTTPChecker{cfg: cfg, sem: make(chan struct{}, cfg.MaxConcurrent)}, nil
}

// Check posts req and returns the service's answer. Its errors wrap
// ErrCheckerTimeout (no answer in time), ErrCheckerBusy (no slot in
// time), ErrCheckerUnreachable (transport), ErrCheckerStatus (not 200) or
// ErrCheckerAnswer (not a valid CheckResponse).
func (c *HTTPChecker) Check(ctx context.Context, req CheckRequest) (CheckResponse, error) {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()
	select {
	case c.sem <- struct{}{}:
		defer func() { <-c.sem }()
	case <-ctx.Done():
		return CheckResponse{}, fmt.Errorf("%w: %d checks in flight: %w", ErrCheckerBusy, cap(c.sem), ctx.Err())
	}
	if req.Version == 0 {
		req.Version = CheckVersion
	}
	body, err := json.Marshal(req)
	if err != nil {
		return CheckResponse{}, fmt.Errorf("%w: encoding the request: %w", ErrCheckerUnreachable, err)
	}
	hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, c.cfg.URL, bytes.NewReader(body))
	if err != nil {
		return CheckResponse{}, fmt.Errorf("%w: %w", ErrCheckerUnreachable, err)
	}
	for k, vs := range c.cfg.Header {
		for _, v := range vs {
			hreq.Header.Add(k, v)
		}
	}
	hreq.Header.Set("Content-Type", "application/json")
	hreq.Header.Set("Accept", "application/json")
	resp, err := c.cfg.Client.Do(hreq)
	if err != nil {
		if ctx.Err() != nil {
			return CheckResponse{}, fmt.Errorf("%w after %s: %w", ErrCheckerTimeout, c.cfg.Timeout, err)
		}
		return CheckResponse{}, fmt.Errorf("%w: %w", ErrCheckerUnreachable, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
		return CheckResponse{}, fmt.Errorf("%w: %s", ErrCheckerStatus, resp.Status)
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, c.cfg.MaxResponseBytes+1))
	if err != nil {
		if ctx.Err() != nil {
			return CheckResponse{}, fmt.Errorf("%w reading the answer: %w", ErrCheckerTimeout, err)
		}
		return CheckResponse{}, fmt.Errorf("%w: reading the answer: %w", ErrCheckerUnreachable, err)
	}
	if int64(len(data)) > c.cfg.MaxResponseBytes {
		return CheckResponse{}, fmt.Errorf("%w: answer larger than %d bytes", ErrCheckerAnswer, c.cfg.MaxResponseBytes)
	}
	var ans CheckResponse
	if err := json.Unmarshal(data, &ans); err != nil {
		return CheckResponse{}, fmt.Errorf("%w: %w", ErrCheckerAnswer, err)
	}
	if err := ans.Validate(); err != nil {
		return CheckResponse{}, err
	}
	return ans, nil
}
