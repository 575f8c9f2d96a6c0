package models

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"strings"
)

// ErrUpstream means the upstream failed or answered something unusable.
var ErrUpstream = errors.New("models: upstream")

// ErrCut means a stream was cut before its end: the hop was cancelled or
// the stream outgrew what was reserved for it.
var ErrCut = errors.New("models: stream cut")

// Upstream calls one OpenAI-compatible chat completions endpoint.
type Upstream struct {
	// URL is the endpoint (base URL + /chat/completions).
	URL string
	// Model replaces the request's model.
	Model string
	// APIKey, when set, is sent as a bearer token.
	APIKey string
	// HTTP is the client; nil uses http.DefaultClient.
	HTTP *http.Client
}

// NewUpstream returns the upstream of a model config.
func NewUpstream(c Config) (*Upstream, error) {
	c.SetDefaults()
	key, err := c.APIKey()
	if err != nil {
		return nil, err
	}
	return &Upstream{URL: c.BaseURL + "/chat/completions", Model: c.Model, APIKey: key}, nil
}

// Completion is what an upstream answered.
type Completion struct {
	// Text is the completion's text (first choice).
	Text string
	// Object is the chat completion object: the upstream's own for a
	// plain call, assembled from the chunks for a stream.
	Object map[string]any
	// InputTokens and OutputTokens are the usage the upstream reported,
	// or counted when it reported none (Counted).
	InputTokens, OutputTokens int64
	Counted                   bool
	// Chunks counts the stream's chunks.
	Chunks int
}

// StreamOptions tune a streamed call.
type StreamOptions struct {
	// OnChunk sees each chunk's JSON as it arrives; an error cuts the
	// stream.
	OnChunk func(chunk []byte) error
	// MaxOutputTokens cuts the stream (ErrCut) when the completion counted
	// so far grows past it; zero: no bound.
	MaxOutputTokens int64
}

func (u *Upstream) post(ctx context.Context, req *Request, stream bool) (*http.Response, error) {
	body := maps.Clone(req.Raw)
	body["model"] = u.Model
	body["stream"] = stream
	if stream {
		opts, _ := body["stream_options"].(map[string]any)
		opts = maps.Clone(opts)
		if opts == nil {
			opts = map[string]any{}
		}
		opts["include_usage"] = true
		body["stream_options"] = opts
	} else {
		delete(body, "stream_options")
	}
	b, err := json.Marshal(body)
	if err != nil {
		return nil, fmt.Errorf("%w: encode request: %v", ErrRequest, err)
	}
	hr, err := http.NewRequestWithContext(ctx, http.MethodPost, u.URL, bytes.NewReader(b))
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrUpstream, err)
	}
	hr.Header.Set("Content-Type", "application/json")
	if stream {
		hr.Header.Set("Accept", "text/event-stream")
	}
	if u.APIKey != "" {
		hr.Header.Set("Authorization", "Bearer "+u.APIKey)
	}
	client := u.HTTP
	if client == nil {
		client = http.DefaultClient
	}
	resp, err := client.Do(hr)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrUpstream, err)
	}
	if resp.StatusCode/100 != 2 {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		resp.Body.Close()
		return nil, fmt.Errorf("%w: %s: %s", ErrUpstream, resp.Status, strings.TrimSpace(string(msg)))
	}
	return resp, nil
}

// maxResponseBytes bounds a non-streamed answer.
const maxResponseBytes = 16 << 20

// Complete makes a plain (non-streamed) call.
func (u *Upstream) Complete(ctx context.Context, req *Request) (*Completion, error) {
	resp, err := u.post(ctx, req, false)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var obj map[string]any
	if err := json.NewDecoder(io.LimitReader(resp.Body, maxResponseBytes)).Decode(&obj); err != nil {
		return nil, fmt.Errorf("%w: answer is not a JSON object: %v", ErrUpstream, err)
	}
	c := &Completion{Object: obj}
	if choices, ok := obj["choices"].([]any); ok && len(choices) > 0 {
		if ch, ok := choices[0].(map[string]any); ok {
			if m, ok := ch["message"].(map[string]any); ok {
				c.Text = textOf(m["content"])
			}
		}
	}
	if !c.usageFrom(obj) {
		c.count(req)
	}
	return c, nil
}

// usageFrom reads the usage object of a completion or chunk.
func (c *Completion) usageFrom(obj map[string]any) bool {
	u, ok := obj["usage"].(map[string]any)
	if !ok {
		return false
	}
	in, ok1 := u["prompt_tokens"].(float64)
	out, ok2 := u["completion_tokens"].(float64)
	if !ok1 || !ok2 || in < 0 || out < 0 {
		return false
	}
	c.InputTokens, c.OutputTokens, c.Counted = int64(in), int64(out), false
	return true
}

// count charges the call by counting, when the upstream reports no usage.
func (c *Completion) count(req *Request) {
	c.InputTokens, c.OutputTokens, c.Counted = CountTokens(req.PromptChars), CountTokens(len(c.Text)), true
}

// Stream makes a streamed call: server-sent events of chat completion
// chunks, each handed to o.OnChunk as it arrives. The usage comes from the
// chunk that carries it (the request asks for it with
// stream_options.include_usage) or, when none does, by counting. A cut
// stream (ErrCut, or the context's error) still returns the completion
// so far, counted, so what was spent is charged.
func (u *Upstream) Stream(ctx context.Context, req *Request, o StreamOptions) (*Completion, error) {
	resp, err := u.post(ctx, req, true)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	c := &Completion{}
	var text strings.Builder
	var id, model string
	var finish any
	reported := false
	cut := func(err error) (*Completion, error) {
		c.Text = text.String()
		if !reported {
			c.count(req)
		}
		c.Object = chunkCompletion(id, model, c, finish)
		return c, err
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	for sc.Scan() {
		line := sc.Bytes()
		data, ok := bytes.CutPrefix(line, []byte("data:"))
		if !ok {
			continue // comments, event names, blank separators
		}
		data = bytes.TrimSpace(data)
		if string(data) == "[DONE]" {
			break
		}
		var chunk map[string]any
		if err := json.Unmarshal(data, &chunk); err != nil {
			return cut(fmt.Errorf("%w: chunk is not JSON: %v", ErrUpstream, err))
		}
		c.Chunks++
		if s, ok := chunk["id"].(string); ok && id == "" {
			id = s
		}
		if s, ok := chunk["model"].(string); ok && model == "" {
			model = s
		}
		if choices, ok := chunk["choices"].([]any); ok && len(choices) > 0 {
			if ch, ok := choices[0].(map[string]any); ok {
				if d, ok := ch["delta"].(map[string]any); ok {
					text.WriteString(textOf(d["content"]))
				}
				if f := ch["finish_reason"]; f != nil {
					finish = f
				}
			}
		}
		if c.usageFrom(chunk) {
			reported = true
		}
		if o.OnChunk != nil {
			if err := o.OnChunk(bytes.Clone(data)); err != nil {
				return cut(fmt.Errorf("%w: %w", ErrCut, err))
			}
		}
		if o.MaxOutputTokens > 0 && !reported && CountTokens(text.Len()) > o.MaxOutputTokens {
			return cut(fmt.Errorf("%w: the completion outgrew the %d tokens reserved for it", ErrCut, o.MaxOutputTokens))
		}
	}
	if err := sc.Err(); err != nil {
		if ctx.Err() != nil {
			return cut(fmt.Errorf("%w: %w", ErrCut, ctx.Err()))
		}
		return cut(fmt.Errorf("%w: reading the stream: %v", ErrUpstream, err))
	}
	if ctx.Err() != nil {
		return cut(fmt.Errorf("%w: %w", ErrCut, ctx.Err()))
	}
	return cut(nil)
}

// chunkCompletion assembles a chat completion object from a stream.
func chunkCompletion(id, model string, c *Completion, finish any) map[string]any {
	return map[string]any{
		"id": id, "object": "chat.completion", "model": model,
		"choices": []any{map[string]any{
			"index": 0, "finish_reason": finish,
			"message": map[string]any{"role": "assistant", "content": c.Text},
		}},
		"usage": map[string]any{
			"prompt_tokens": c.InputTokens, "completion_tokens": c.OutputTokens,
			"total_tokens": c.InputTokens + c.OutputTokens,
		},
	}
}
