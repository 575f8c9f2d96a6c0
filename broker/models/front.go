package models

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

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
	// MaxBodyBytes bounds a request body (default 4 MiB); Timeout how
	// long a call waits for its hop's outcome (default: as long as the
	// client waits).
	MaxBodyBytes int64
	Timeout      time.Duration
	// StreamGuard returns how a streamed completion of model to caller is
	// scanned before the client sees it (the model's outbound guardrail
	// policy); nil, or a nil StreamScan: the stream is not scanned on its
	// way (the reply's scan when the hop closes still applies). A non-nil
	// StreamScan also means the outbound guardrails apply to the call,
	// streamed or not: a request for token log-probabilities is refused
	// (ErrLogprobsGuarded), and any the upstream sends are dropped.
	StreamGuard func(model, caller string) StreamScan
	// StreamHoldBytes is how much of a scanned stream's text is held back
	// until it is scanned with what follows it (DefaultStreamHoldBytes
	// when zero): a pattern up to this long split across chunks is caught
	// before any of it is sent.
	StreamHoldBytes int
}

// Front is the OpenAI-compatible chat completions endpoint
// (POST /v1/chat/completions). Each request is a call_model hop of the
// task the caller names (hopfront.ParentHopHeader), governed like any
// hop; a streamed answer is forwarded chunk by chunk as the upstream
// sends it. Responses returns the same endpoint speaking the Responses
// API (POST /v1/responses).
type Front struct {
	cfg     FrontConfig
	dialect dialect
}

// NewFront returns the chat completions endpoint.
func NewFront(cfg FrontConfig) *Front { return &Front{cfg: cfg, dialect: chatDialect{}} }

// Responses returns the endpoint of the Responses API (POST /v1/responses)
// over the same models: a request is translated to a chat completions
// request for the hop (and the upstream), and its answer back.
func (f *Front) Responses() *Front { return &Front{cfg: f.cfg, dialect: responsesDialect{}} }

// dialect is an API the front speaks to its clients.
type dialect interface {
	// parse reads a request body as the chat request of the hop.
	parse(body []byte) (*Request, error)
	// answer writes a completed call's answer.
	answer(w http.ResponseWriter, hop string, completion map[string]any)
	// streamer writes a streamed call's events on out.
	streamer(out *sse, req *Request, hop string) streamer
}

// streamer turns the upstream's chat chunks into a dialect's events.
type streamer interface {
	chunk(data []byte) error
	// done ends a completed stream; completion is the assembled answer
	// (nil when the chunks were all forwarded already and none is known).
	done(completion map[string]any, replayed bool)
	fail(code, msg string)
}

// ServeHTTP serves one request.
func (f *Front) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		hopfront.Deny(w, http.StatusMethodNotAllowed, "method_not_allowed", "POST a request")
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
	limit := f.cfg.MaxBodyBytes
	if limit <= 0 {
		limit = maxRequestBytes
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	if err != nil {
		hopfront.Deny(w, http.StatusRequestEntityTooLarge, "request_too_large", err.Error())
		return
	}
	req, err := f.dialect.parse(body)
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
	var scan StreamScan
	if f.cfg.StreamGuard != nil {
		scan = f.cfg.StreamGuard(name, caller.ID)
	}
	if scan != nil {
		if err := refuseLogprobs(req.Raw); err != nil {
			hopfront.Deny(w, http.StatusBadRequest, "logprobs_guarded", err.Error())
			return
		}
	}
	cfg := b.Config()
	if req.MaxTokens == 0 {
		req.MaxTokens = cfg.DefaultMaxTokens
		req.Raw["max_tokens"] = req.MaxTokens
	}
	est := req.Estimate(cfg.Prices, cfg.DefaultMaxTokens)
	sub := hopfront.Submission{Caller: caller, ParentHop: parent, RunID: run, To: name, Message: ChatMessage(req.Raw), Estimate: &est, Key: key}
	hop := schemas.DeriveHopID(sub.ParentHop, sub.Key)
	ctx := r.Context()
	if f.cfg.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, f.cfg.Timeout)
		defer cancel()
	}
	if req.Stream {
		f.stream(ctx, w, b, req, sub, hop, scan)
		return
	}
	reply, err := f.cfg.Submit(ctx, sub)
	if err != nil {
		denyHop(w, err)
		return
	}
	obj, ok := CompletionFrom(reply.Output)
	if reply.Status != schemas.StateCompleted || !ok {
		hopfront.Deny(w, http.StatusBadGateway, "model_failed", fmt.Sprintf("the model call ended %s: %s", reply.Status, reply.Error))
		return
	}
	if scan != nil {
		dropLogprobs(obj)
	}
	f.dialect.answer(w, hop, obj)
}

// ErrLogprobsGuarded means a request asked for token log-probabilities of
// a completion the gateway's outbound guardrails scan: each token's text
// (and its top alternatives) repeats the completion outside the text the
// guardrails redact or block, so the two cannot be served together.
var ErrLogprobsGuarded = errors.New("models: logprobs are not served while the outbound guardrails scan this model's answers")

// refuseLogprobs reports a request that asks for log-probabilities:
// "logprobs" set to anything but false or null, or "top_logprobs" set.
func refuseLogprobs(raw map[string]any) error {
	if v, ok := raw["logprobs"]; ok && v != nil && v != false {
		return fmt.Errorf("%w: remove \"logprobs\" from the request (token texts would repeat what the guardrails redact or block)", ErrLogprobsGuarded)
	}
	if v, ok := raw["top_logprobs"]; ok && v != nil {
		return fmt.Errorf("%w: remove \"top_logprobs\" from the request (token texts would repeat what the guardrails redact or block)", ErrLogprobsGuarded)
	}
	return nil
}

// dropLogprobs removes the log-probabilities from a completion's choices:
// under the outbound guardrails none are served, even when an upstream
// sends them unasked.
func dropLogprobs(completion map[string]any) {
	choices, _ := completion["choices"].([]any)
	for _, c := range choices {
		if o, ok := c.(map[string]any); ok {
			delete(o, "logprobs")
		}
	}
}

// chatDialect is the chat completions API, forwarded as it is.
type chatDialect struct{}

func (chatDialect) parse(body []byte) (*Request, error) { return ParseRequest(body) }

func (chatDialect) answer(w http.ResponseWriter, _ string, completion map[string]any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(completion)
}

func (chatDialect) streamer(out *sse, req *Request, _ string) streamer {
	s := &chatStreamer{out: out}
	if opts, ok := req.Raw["stream_options"].(map[string]any); ok {
		s.usage, _ = opts["include_usage"].(bool)
	}
	return s
}

// chatStreamer forwards the upstream's chunks.
type chatStreamer struct {
	out *sse
	// usage forwards the upstream's usage-only chunk (the client asked
	// for it with stream_options.include_usage).
	usage bool
}

func (c *chatStreamer) chunk(data []byte) error {
	if !c.usage {
		var ch struct {
			Choices []json.RawMessage `json:"choices"`
			Usage   json.RawMessage   `json:"usage"`
		}
		if json.Unmarshal(data, &ch) == nil && len(ch.Choices) == 0 && len(ch.Usage) > 0 {
			return nil
		}
	}
	return c.out.send("", data)
}

func (c *chatStreamer) done(completion map[string]any, replayed bool) {
	if replayed && completion != nil {
		b, _ := json.Marshal(completion)
		_ = c.out.send("", b)
	}
	_ = c.out.send("", []byte("[DONE]"))
}

func (c *chatStreamer) fail(code, msg string) {
	_ = c.out.send("", errorEvent(code, msg))
	_ = c.out.send("", []byte("[DONE]"))
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
}

// send writes one event, named when event is not empty.
func (s *sse) send(event string, data []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.started {
		s.w.Header().Set("Content-Type", "text/event-stream")
		s.w.Header().Set("Cache-Control", "no-cache")
		s.w.WriteHeader(http.StatusOK)
		s.started = true
	}
	if event != "" {
		if _, err := fmt.Fprintf(s.w, "event: %s\n", event); err != nil {
			return err
		}
	}
	if _, err := fmt.Fprintf(s.w, "data: %s\n\n", data); err != nil {
		return err
	}
	if fl, ok := s.w.(http.Flusher); ok {
		fl.Flush()
	}
	return nil
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
//
// With a scan (the StreamGuard's), the text is scanned on its way
// (guardedStreamer): a blocked pattern never reaches the client, who gets a
// guardrail error event instead, and a redaction is applied to what is
// sent.
func (f *Front) stream(ctx context.Context, w http.ResponseWriter, b *Bridge, req *Request, sub hopfront.Submission, hop string, scan StreamScan) {
	out := &sse{w: w}
	st := f.dialect.streamer(out, req, hop)
	if scan != nil {
		st = newGuardedStreamer(st, scan, f.cfg.StreamHoldBytes)
	}
	stop := b.Watch(hop, st.chunk)
	defer stop()
	reply, err := f.cfg.Submit(ctx, sub)
	switch {
	case err != nil && !out.isStarted():
		denyHop(w, err)
	case err != nil:
		st.fail("unavailable", err.Error())
	case reply.Status != schemas.StateCompleted:
		st.fail("model_"+string(reply.Status), reply.Error)
	default:
		// Not started: answered from the ledger (a retried hop key), the
		// completion comes whole.
		obj, _ := CompletionFrom(reply.Output)
		st.done(obj, !out.isStarted())
	}
}

func errorEvent(code, msg string) []byte {
	b, _ := json.Marshal(map[string]any{"error": map[string]string{"type": code, "code": code, "message": msg}})
	return b
}
