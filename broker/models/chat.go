package models

import (
	"encoding/json"
	"errors"
	"fmt"

	"github.com/a2aproject/a2a-go/v2/a2a"

	"github.com/tollgate/tollgate/schemas"
)

// ChatKind is the metadata value that marks the data part of an A2A
// message as an OpenAI chat completions request or response.
const (
	ChatRequestKind  = "openai.chat.completion.request"
	ChatResponseKind = "openai.chat.completion"
	// MetaKey is the metadata key of the data part holding it.
	MetaKey = "tollgate.kind"
)

// ErrRequest means a chat request is unusable; its text says why.
var ErrRequest = errors.New("models: bad chat request")

// Request is an OpenAI chat completions request as the gateway reads it:
// the fields it governs, and the whole object, forwarded as it came.
type Request struct {
	Raw       map[string]any
	Stream    bool
	MaxTokens int64
	// PromptChars is the length of the messages' text, for counting
	// tokens when the upstream reports none.
	PromptChars int
}

// ParseRequest reads a chat completions request body.
func ParseRequest(body []byte) (*Request, error) {
	var raw map[string]any
	if err := json.Unmarshal(body, &raw); err != nil {
		return nil, fmt.Errorf("%w: not a JSON object: %v", ErrRequest, err)
	}
	return requestOf(raw)
}

func requestOf(raw map[string]any) (*Request, error) {
	r := &Request{Raw: raw}
	msgs, ok := raw["messages"].([]any)
	if !ok || len(msgs) == 0 {
		return nil, fmt.Errorf("%w: messages must be a non-empty array", ErrRequest)
	}
	for i, m := range msgs {
		obj, ok := m.(map[string]any)
		if !ok {
			return nil, fmt.Errorf("%w: messages[%d] is not an object", ErrRequest, i)
		}
		r.PromptChars += len(textOf(obj["content"]))
	}
	if s, ok := raw["stream"].(bool); ok {
		r.Stream = s
	}
	for _, k := range []string{"max_completion_tokens", "max_tokens"} {
		v, ok := raw[k]
		if !ok || v == nil {
			continue
		}
		n, ok := v.(float64)
		if !ok || n < 1 || n > schemas.MaxTokens || n != float64(int64(n)) {
			return nil, fmt.Errorf("%w: %s must be a positive integer", ErrRequest, k)
		}
		r.MaxTokens = int64(n)
		break
	}
	return r, nil
}

// textOf is the text of a message's content: a string, or the text parts
// of an array of content parts.
func textOf(c any) string {
	switch v := c.(type) {
	case string:
		return v
	case []any:
		var s string
		for _, p := range v {
			if o, ok := p.(map[string]any); ok {
				if t, ok := o["text"].(string); ok {
					s += t
				}
			}
		}
		return s
	}
	return ""
}

// CountTokens estimates the tokens of n characters of text: one per four
// characters, at least one for any text. It is what a stream is charged
// when its upstream reports no usage.
func CountTokens(chars int) int64 {
	if chars <= 0 {
		return 0
	}
	return int64((chars + 3) / 4)
}

// Estimate is what a call reserves against the run budget at admission:
// the prompt's counted tokens and the completion bound, priced.
func (r *Request) Estimate(p Price, defaultMax int64) schemas.Usage {
	out := r.MaxTokens
	if out == 0 {
		out = defaultMax
	}
	return p.Usage(CountTokens(r.PromptChars), out)
}

// ChatMessage wraps a chat completions request in an A2A message: one data
// part holding the request, marked ChatRequestKind. It is what an agent
// sends a model.
func ChatMessage(req map[string]any) *a2a.Message {
	return a2a.NewMessage(a2a.MessageRoleUser, dataPart(req, ChatRequestKind))
}

// dataPart is a data part holding v, marked kind.
func dataPart(v map[string]any, kind string) *a2a.Part {
	p := a2a.NewDataPart(v)
	p.Metadata = map[string]any{MetaKey: kind}
	return p
}

// dataOf returns the object of the first data part of m marked kind.
func dataOf(m *a2a.Message, kind string) (map[string]any, bool) {
	if m == nil {
		return nil, false
	}
	for _, p := range m.Parts {
		if p == nil || p.Metadata[MetaKey] != kind {
			continue
		}
		if d, ok := p.Data().(map[string]any); ok {
			return d, true
		}
	}
	return nil, false
}

// RequestFrom finds the chat request in an A2A message.
func RequestFrom(m *a2a.Message) (*Request, error) {
	if d, ok := dataOf(m, ChatRequestKind); ok {
		return requestOf(d)
	}
	return nil, fmt.Errorf("%w: the message has no data part marked %s=%s", ErrRequest, MetaKey, ChatRequestKind)
}

// ResponseMessage is a model's answer as an A2A message: the completion's
// text, and the chat completion object in a data part.
func ResponseMessage(text string, completion map[string]any) *a2a.Message {
	parts := []*a2a.Part{a2a.NewTextPart(text)}
	if completion != nil {
		parts = append(parts, dataPart(completion, ChatResponseKind))
	}
	return a2a.NewMessage(a2a.MessageRoleAgent, parts...)
}

// CompletionFrom finds the chat completion object in a model's answer.
func CompletionFrom(m *a2a.Message) (map[string]any, bool) {
	return dataOf(m, ChatResponseKind)
}
