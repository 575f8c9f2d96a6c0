package models

import (
	"encoding/json"
	"fmt"
	"net/http"
	"time"
)

// responsesDialect is OpenAI's Responses API (POST /v1/responses), served
// over the same chat completions hop: a request's instructions and input
// become the chat messages, max_output_tokens the completion bound, and
// the completion comes back as a response object (or its stream events).
// Tools, stored conversations and background runs are not supported.
type responsesDialect struct{}

// unsupportedResponses are the Responses request fields this gateway does
// not translate: refused rather than silently dropped.
var unsupportedResponses = []string{"tools", "tool_choice", "previous_response_id", "conversation", "background", "prompt"}

func (responsesDialect) parse(body []byte) (*Request, error) {
	var in map[string]any
	if err := json.Unmarshal(body, &in); err != nil {
		return nil, fmt.Errorf("%w: not a JSON object: %v", ErrRequest, err)
	}
	for _, k := range unsupportedResponses {
		if v, ok := in[k]; ok && v != nil {
			return nil, fmt.Errorf("%w: %s is not supported by this gateway's Responses API (use chat completions)", ErrRequest, k)
		}
	}
	var msgs []any
	if s, ok := in["instructions"].(string); ok && s != "" {
		msgs = append(msgs, map[string]any{"role": "system", "content": s})
	}
	switch input := in["input"].(type) {
	case string:
		msgs = append(msgs, map[string]any{"role": "user", "content": input})
	case []any:
		for i, item := range input {
			obj, ok := item.(map[string]any)
			if !ok {
				return nil, fmt.Errorf("%w: input[%d] is not an object", ErrRequest, i)
			}
			if t, ok := obj["type"].(string); ok && t != "message" {
				return nil, fmt.Errorf("%w: input[%d] is a %q item; only messages are supported", ErrRequest, i, t)
			}
			role, _ := obj["role"].(string)
			switch role {
			case "":
				role = "user"
			case "user", "assistant", "system", "developer":
			default:
				return nil, fmt.Errorf("%w: input[%d].role %q", ErrRequest, i, role)
			}
			msgs = append(msgs, map[string]any{"role": role, "content": textOf(obj["content"])})
		}
	default:
		return nil, fmt.Errorf("%w: input must be a string or an array of messages", ErrRequest)
	}
	chat := map[string]any{"model": in["model"], "messages": msgs}
	if v, ok := in["max_output_tokens"]; ok && v != nil {
		chat["max_tokens"] = v
	}
	for _, k := range []string{"stream", "temperature", "top_p", "user"} {
		if v, ok := in[k]; ok {
			chat[k] = v
		}
	}
	return requestOf(chat)
}

func (responsesDialect) answer(w http.ResponseWriter, hop string, completion map[string]any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(responseObject(hop, completion, "completed"))
}

func (responsesDialect) streamer(out *sse, _ *Request, hop string) streamer {
	return &responsesStreamer{out: out, hop: hop}
}

// responseObject is a completion as a Responses API response object.
func responseObject(hop string, completion map[string]any, status string) map[string]any {
	var text string
	model, _ := completion["model"].(string)
	if choices, ok := completion["choices"].([]any); ok && len(choices) > 0 {
		if ch, ok := choices[0].(map[string]any); ok {
			if m, ok := ch["message"].(map[string]any); ok {
				text = textOf(m["content"])
			}
		}
	}
	var in, out float64
	if u, ok := completion["usage"].(map[string]any); ok {
		// The upstream's own (float64 from JSON), or the bridge's
		// assembled from a stream (int64).
		in, out = number(u["prompt_tokens"]), number(u["completion_tokens"])
	}
	r := map[string]any{
		"id": "resp_" + hop, "object": "response", "created_at": time.Now().Unix(), "status": status, "model": model,
		"output": []any{},
	}
	if completion != nil {
		r["output"] = []any{map[string]any{
			"type": "message", "id": "msg_" + hop, "status": "completed", "role": "assistant",
			"content": []any{map[string]any{"type": "output_text", "text": text, "annotations": []any{}}},
		}}
		r["usage"] = map[string]any{"input_tokens": in, "output_tokens": out, "total_tokens": in + out}
	}
	return r
}

func number(v any) float64 {
	switch n := v.(type) {
	case float64:
		return n
	case int64:
		return float64(n)
	case int:
		return float64(n)
	}
	return 0
}

// responsesStreamer turns chat chunks into Responses stream events:
// response.created, response.output_text.delta per chunk, then
// response.completed (with usage) or response.failed.
type responsesStreamer struct {
	out     *sse
	hop     string
	created bool
}

func (s *responsesStreamer) event(typ string, v map[string]any) error {
	v["type"] = typ
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return s.out.send(typ, b)
}

func (s *responsesStreamer) create() error {
	if s.created {
		return nil
	}
	s.created = true
	return s.event("response.created", map[string]any{"response": responseObject(s.hop, nil, "in_progress")})
}

func (s *responsesStreamer) delta(text string) error {
	return s.event("response.output_text.delta", map[string]any{
		"item_id": "msg_" + s.hop, "output_index": 0, "content_index": 0, "delta": text,
	})
}

func (s *responsesStreamer) chunk(data []byte) error {
	var ch struct {
		Choices []struct {
			Delta struct {
				Content string `json:"content"`
			} `json:"delta"`
		} `json:"choices"`
	}
	if err := json.Unmarshal(data, &ch); err != nil || len(ch.Choices) == 0 || ch.Choices[0].Delta.Content == "" {
		return nil // the usage chunk, a role-only delta
	}
	if err := s.create(); err != nil {
		return err
	}
	return s.delta(ch.Choices[0].Delta.Content)
}

func (s *responsesStreamer) done(completion map[string]any, replayed bool) {
	_ = s.create()
	r := responseObject(s.hop, completion, "completed")
	if replayed {
		if out, ok := r["output"].([]any); ok && len(out) == 1 {
			content := out[0].(map[string]any)["content"].([]any)
			_ = s.delta(content[0].(map[string]any)["text"].(string))
		}
	}
	_ = s.event("response.completed", map[string]any{"response": r})
}

func (s *responsesStreamer) fail(code, msg string) {
	_ = s.create()
	r := responseObject(s.hop, nil, "failed")
	r["error"] = map[string]string{"code": code, "message": msg}
	_ = s.event("response.failed", map[string]any{"response": r})
}
