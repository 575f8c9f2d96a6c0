package models

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"

	"github.com/tollgate/tollgate/broker/agent"
	"github.com/tollgate/tollgate/broker/hopfront"
	"github.com/tollgate/tollgate/schemas"
)

// HopKeyHeader lets a caller name its model call within its task, so a
// retry of the same call is answered from the ledger instead of calling
// the model again. Without it every request is a new hop.
const HopKeyHeader = "X-Tollgate-Hop-Key"

// maxRequestBytes bounds a chat request's body.
const maxRequestBytes = 4 << 20

// FrontConfig is the OpenAI-compatible endpoint's config.
type FrontConfig struct {
	// Bridges serve the models, by model id: a request's "model" names
	// the model identity.
	Bridges map[string]*Bridge
	// Authenticate says who calls.
	Authenticate hopfront.Authenticate
	// Submit submits a call as a call_model hop on the caller's behalf.
	Submit hopfront.Submit
}

// Front is the OpenAI-compatible chat completions endpoint
// (POST /v1/chat/completions). Each request is a call_model hop of the
// task the caller names (hopfront.ParentHopHeader), governed like any
// hop; a streamed answer is forwarded chunk by chunk as the upstream
// sends it.
type Front struct{ cfg FrontConfig }

// NewFront returns the endpoint.
func NewFront(cfg FrontConfig) *Front { return &Front{cfg: cfg} }

// ServeHTTP serves one chat completions request.
func (f *Front) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		hopfront.Deny(w, http.StatusMethodNotAllowed, "method_not_allowed", "POST a chat completions request")
		return
	}
	caller, err := f.cfg.Authenticate(r)
	if err != nil {
		hopfront.Deny(w, http.StatusUnauthorized, "unauthenticated", err.Error())
		return
	}
	if !caller.IsCaller() {
		hopfront.Deny(w, http.StatusForbidden, "not_a_caller", fmt.Sprintf("%s is a %s: only agents call models", caller.ID, caller.Type))
		return
	}
	parent, run, err := hopfront.ParentHop(r.Header)
	if err != nil {
		hopfront.Deny(w, http.StatusBadRequest, "parent_hop", err.Error())
		return
	}
	key := r.Header.Get(HopKeyHeader)
	if key == "" {
		key = schemas.NewID()
	} else if len(key) > 128 {
		hopfront.Deny(w, http.StatusBadRequest, "hop_key", HopKeyHeader+" is longer than 128 bytes")
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxRequestBytes))
	if err != nil {
		hopfront.Deny(w, http.StatusRequestEntityTooLarge, "request_too_large", err.Error())
		return
	}
	req, err := ParseRequest(body)
	if err != nil {
		hopfront.Deny(w, http.StatusBadRequest, "invalid_request", err.Error())
		return
	}
	name, _ := req.Raw["model"].(string)
	b, ok := f.cfg.Bridges[name]
	if !ok {
		hopfront.Deny(w, http.StatusNotFound, "model_not_found", fmt.Sprintf("model %q is not served here", name))
		return
	}
	cfg := b.Config()
	if req.MaxTokens == 0 {
		req.MaxTokens = cfg.DefaultMaxTokens
		req.Raw["max_tokens"] = req.MaxTokens
	}
	est := req.Estimate(cfg.Prices, cfg.DefaultMaxTokens)
	sub := hopfront.Submission{Caller: caller, ParentHop: parent, RunID: run, To: name, Message: ChatMessage(req.Raw), Estimate: &est, Key: key}
	if req.Stream {
		f.stream(r.Context(), w, b, req, sub)
		return
	}
	reply, err := f.cfg.Submit(r.Context(), sub)
	if err != nil {
		denyHop(w, err)
		return
	}
	obj, ok := CompletionFrom(reply.Output)
	if reply.Status != schemas.StateCompleted || !ok {
		hopfront.Deny(w, http.StatusBadGateway, "model_failed", fmt.Sprintf("the model call ended %s: %s", reply.Status, reply.Error))
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(obj)
}

// denyHop answers a hop that did not complete: denied by the gateway,
// timed out, or not submitted.
func denyHop(w http.ResponseWriter, err error) {
	var denied *agent.DeniedError
	switch {
	case errors.As(err, &denied):
		status := http.StatusForbidden
		if denied.Denial.Reason == schemas.ReasonBudget || denied.Denial.Reason == schemas.ReasonRate {
			status = http.StatusTooManyRequests
		}
		hopfront.Deny(w, status, string(denied.Denial.Reason), denied.Denial.Message)
	case errors.Is(err, agent.ErrTimedOut):
		hopfront.Deny(w, http.StatusGatewayTimeout, "timeout", err.Error())
	default:
		hopfront.Deny(w, http.StatusBadGateway, "unavailable", err.Error())
	}
}

// sse writes server-sent events; the first event sends the headers.
type sse struct {
	mu      sync.Mutex
	w       http.ResponseWriter
	started bool
	// usage forwards the upstream's usage-only chunk (the client asked
	// for it with stream_options.include_usage).
	usage bool
}

func (s *sse) send(data []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.started {
		s.w.Header().Set("Content-Type", "text/event-stream")
		s.w.Header().Set("Cache-Control", "no-cache")
		s.w.WriteHeader(http.StatusOK)
		s.started = true
	}
	if _, err := fmt.Fprintf(s.w, "data: %s\n\n", data); err != nil {
		return err
	}
	if fl, ok := s.w.(http.Flusher); ok {
		fl.Flush()
	}
	return nil
}

func (s *sse) chunk(data []byte) error {
	if !s.usage {
		var c struct {
			Choices []json.RawMessage `json:"choices"`
			Usage   json.RawMessage   `json:"usage"`
		}
		if json.Unmarshal(data, &c) == nil && len(c.Choices) == 0 && len(c.Usage) > 0 {
			return nil
		}
	}
	return s.send(data)
}

func (s *sse) isStarted() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.started
}

// stream serves a streamed call: the bridge hands the front the upstream's
// chunks as they come (it watches the hop before submitting it); the
// reply ends the stream. A call the gateway denies before the first chunk
// is an HTTP error; one that ends badly after it (cut at its reservation,
// the run halted) ends with an error event, so the client is told.
func (f *Front) stream(ctx context.Context, w http.ResponseWriter, b *Bridge, req *Request, sub hopfront.Submission) {
	out := &sse{w: w}
	if opts, ok := req.Raw["stream_options"].(map[string]any); ok {
		out.usage, _ = opts["include_usage"].(bool)
	}
	hop := schemas.DeriveHopID(sub.ParentHop, sub.Key)
	stop := b.Watch(hop, out.chunk)
	defer stop()
	reply, err := f.cfg.Submit(ctx, sub)
	switch {
	case err != nil && !out.isStarted():
		denyHop(w, err)
		return
	case err != nil:
		_ = out.send(errorEvent("unavailable", err.Error()))
	case reply.Status != schemas.StateCompleted:
		_ = out.send(errorEvent("model_"+string(reply.Status), reply.Error))
	case !out.isStarted():
		// Answered from the ledger (a retried hop key): the completion
		// comes whole.
		if obj, ok := CompletionFrom(reply.Output); ok {
			b, _ := json.Marshal(obj)
			_ = out.send(b)
		}
	}
	_ = out.send([]byte("[DONE]"))
}

func errorEvent(code, msg string) []byte {
	b, _ := json.Marshal(map[string]any{"error": map[string]string{"type": code, "code": code, "message": msg}})
	return b
}
