package runtree

import (
	"encoding/json"
	"fmt"
	"strings"
	"unicode/utf8"
)

// LoadPayloads fills every hop's Input (the text of the A2A message its
// invoke carried) and Output (the text of the result its reply carried)
// from the envelopes the ledger recorded. Text parts are joined; other
// parts are named ([file report.pdf], [data {...}]). An envelope that does
// not decode leaves a note instead of failing: the ledger is evidence, and
// its readability is the auditor's question, not a reason to stop.
func (r *Run) LoadPayloads() {
	for _, h := range r.Hops {
		if len(h.invoke) > 0 {
			h.Input = envelopeText(h.invoke, false)
		}
		if len(h.reply) > 0 {
			h.Output = envelopeText(h.reply, true)
		}
	}
}

// maxPart bounds how much of a data part is shown.
const maxPart = 200

type wireEnvelope struct {
	Message json.RawMessage `json:"message"`
	Result  *struct {
		Output json.RawMessage `json:"output"`
	} `json:"result"`
}

func envelopeText(raw json.RawMessage, reply bool) string {
	var env wireEnvelope
	if err := json.Unmarshal(raw, &env); err != nil {
		return fmt.Sprintf("[envelope does not decode: %v]", err)
	}
	if !reply {
		return a2aText(env.Message)
	}
	if env.Result == nil || len(env.Result.Output) == 0 {
		return ""
	}
	return a2aText(env.Result.Output)
}

// a2aObject is the part of an A2A Message or Task (v1.0, or v0.3 with its
// "kind" discriminator) that holds content.
type a2aObject struct {
	Kind      string            `json:"kind"`
	MessageID string            `json:"messageId"`
	ID        string            `json:"id"`
	Parts     []json.RawMessage `json:"parts"`
	Artifacts []struct {
		Parts []json.RawMessage `json:"parts"`
	} `json:"artifacts"`
	Status struct {
		Message *a2aObject `json:"message"`
	} `json:"status"`
}

type a2aPart struct {
	Kind string          `json:"kind"`
	Text *string         `json:"text"`
	Data json.RawMessage `json:"data"`
	File struct {
		Name string `json:"name"`
		URI  string `json:"uri"`
	} `json:"file"`
	// A2A v1.0 file parts: url or raw, with an optional filename.
	URL      string `json:"url"`
	Raw      string `json:"raw"`
	Filename string `json:"filename"`
}

// kind returns the part's kind: v0.3's discriminator, or for v1.0 the
// member that holds its content.
func (p *a2aPart) kind() string {
	switch {
	case p.Kind != "":
		return p.Kind
	case p.Text != nil:
		return "text"
	case p.URL != "" || p.Raw != "":
		p.File.Name, p.File.URI = p.Filename, p.URL
		return "file"
	case len(p.Data) > 0:
		return "data"
	}
	return "unknown"
}

// a2aText renders an A2A message or task: its text parts, or for a task its
// artifacts' parts, else its status message.
func a2aText(raw json.RawMessage) string {
	if len(raw) == 0 || string(raw) == "null" {
		return ""
	}
	var o a2aObject
	if err := json.Unmarshal(raw, &o); err != nil {
		return fmt.Sprintf("[not an A2A message: %v]", err)
	}
	parts := o.Parts
	if o.Kind == "task" || o.Kind == "" && o.MessageID == "" && o.ID != "" {
		parts = nil
		for _, a := range o.Artifacts {
			parts = append(parts, a.Parts...)
		}
		if len(parts) == 0 && o.Status.Message != nil {
			parts = o.Status.Message.Parts
		}
	}
	var out []string
	for _, raw := range parts {
		var p a2aPart
		if err := json.Unmarshal(raw, &p); err != nil {
			out = append(out, "[unreadable part]")
			continue
		}
		switch k := p.kind(); k {
		case "text":
			if p.Text != nil {
				out = append(out, *p.Text)
			}
		case "file":
			name := p.File.Name
			if name == "" {
				name = p.File.URI
			}
			out = append(out, "[file "+name+"]")
		case "data":
			out = append(out, "[data "+truncate(string(p.Data), maxPart)+"]")
		default:
			out = append(out, "["+k+" part]")
		}
	}
	return strings.Join(out, "\n")
}

func truncate(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	return string([]rune(s)[:n]) + "…"
}
