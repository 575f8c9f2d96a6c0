package models

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"

	"github.com/tollgate/tollgate/broker/agent"
	"github.com/tollgate/tollgate/schemas"
)

// BridgeConfig starts a bridge: the model it serves and how it reaches the
// bus as that model's identity.
type BridgeConfig struct {
	Model Config
	// Agent is the model identity's connection (ID, Key, URL or
	// InProcess, Subjects); the bridge sets its Handler.
	Agent agent.Config
	// HTTP is the client the upstream is called with; nil:
	// http.DefaultClient.
	HTTP *http.Client
}

// Bridge serves one model's hops: it consumes the model's deliveries,
// calls the upstream and replies with the completion and its usage.
type Bridge struct {
	cfg Config
	up  *Upstream
	c   *agent.Client

	mu       sync.Mutex
	watchers map[string]func([]byte) error
}

// StartBridge connects the bridge as the model identity and starts serving.
func StartBridge(ctx context.Context, bc BridgeConfig) (*Bridge, error) {
	bc.Model.SetDefaults()
	if err := bc.Model.Validate(); err != nil {
		return nil, err
	}
	if bc.Agent.ID == "" {
		bc.Agent.ID = bc.Model.ID
	}
	if bc.Agent.ID != bc.Model.ID {
		return nil, fmt.Errorf("model %q: the bridge connects as %q", bc.Model.ID, bc.Agent.ID)
	}
	up, err := NewUpstream(bc.Model)
	if err != nil {
		return nil, err
	}
	up.HTTP = bc.HTTP
	b := &Bridge{cfg: bc.Model, up: up, watchers: map[string]func([]byte) error{}}
	bc.Agent.Handler = b.handle
	if b.c, err = agent.Connect(ctx, bc.Agent); err != nil {
		return nil, fmt.Errorf("model %q: %w", bc.Model.ID, err)
	}
	return b, nil
}

// Close stops serving; calls in progress are cancelled.
func (b *Bridge) Close() { b.c.Close() }

// Config returns the model's config, defaults filled in.
func (b *Bridge) Config() Config { return b.cfg }

// Watch hands the chunks of hop's stream to fn as they arrive from the
// upstream (an error from fn cuts the stream), until stop is called. The
// model's HTTP front watches the hop it submitted before submitting it.
func (b *Bridge) Watch(hop string, fn func(chunk []byte) error) (stop func()) {
	b.mu.Lock()
	b.watchers[hop] = fn
	b.mu.Unlock()
	return func() {
		b.mu.Lock()
		delete(b.watchers, hop)
		b.mu.Unlock()
	}
}

func (b *Bridge) watcher(hop string) func([]byte) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.watchers[hop]
}

// handle serves one model hop.
func (b *Bridge) handle(ctx context.Context, t *agent.Task) (*agent.Result, error) {
	req, err := RequestFrom(t.Message)
	if err != nil {
		return &agent.Result{Status: schemas.StateRejected, Error: err.Error()}, nil
	}
	if req.MaxTokens == 0 {
		req.MaxTokens = b.cfg.DefaultMaxTokens
		req.Raw["max_tokens"] = req.MaxTokens
	}
	// The stream may not outgrow what admission reserved for it.
	bound := req.MaxTokens
	if e := t.Envelope.Estimate; e != nil && e.OutputTokens > 0 && e.OutputTokens < bound {
		bound = e.OutputTokens
	}
	var c *Completion
	if req.Stream {
		c, err = b.up.Stream(ctx, req, StreamOptions{OnChunk: b.watcher(t.Context.HopID), MaxOutputTokens: bound})
	} else {
		c, err = b.up.Complete(ctx, req)
	}
	if c == nil {
		return &agent.Result{Status: schemas.StateFailed, Error: err.Error()}, nil
	}
	usage := b.cfg.Prices.Usage(c.InputTokens, c.OutputTokens)
	res := &agent.Result{Output: ResponseMessage(c.Text, c.Object), Usage: &usage}
	switch {
	case err == nil:
	case errors.Is(err, context.Canceled):
		res.Status, res.Error = schemas.StateCanceled, "the hop was cancelled mid-stream: "+err.Error()
	default:
		res.Status, res.Error = schemas.StateFailed, err.Error()
	}
	return res, nil
}
