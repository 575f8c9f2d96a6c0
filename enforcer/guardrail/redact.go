package guardrail

import (
	"encoding/base64"
	"encoding/json"
	"sort"
	"strings"
)

// redact returns raw with the redacted spans of each string replaced by
// "[redacted:<rule>]". Only string contents change, each re-encoded as a
// JSON string, so the result is valid JSON of the same shape.
func redact(raw []byte, edits map[int]*tokenEdit) []byte {
	toks := make([]*tokenEdit, 0, len(edits))
	for _, e := range edits {
		toks = append(toks, e)
	}
	sort.Slice(toks, func(i, j int) bool { return toks[i].tok.start < toks[j].tok.start })
	out := make([]byte, 0, len(raw))
	pos := 0
	for _, e := range toks {
		if e.tok.start < pos || e.tok.end > len(raw) {
			continue
		}
		out = append(out, raw[pos:e.tok.start]...)
		replaced := replaceSpans(e.tok.s, e.spans)
		if e.tok.fileBytes {
			// The file's content becomes the redaction text, still base64.
			replaced = base64.StdEncoding.EncodeToString([]byte(replaced))
		}
		enc, err := json.Marshal(replaced)
		if err != nil {
			enc = raw[e.tok.start:e.tok.end]
		}
		out = append(out, enc...)
		pos = e.tok.end
	}
	return append(out, raw[pos:]...)
}

// replaceSpans replaces the (possibly overlapping) spans of s, each merged
// run labelled with the rule of its first span.
func replaceSpans(s string, spans []span) string {
	sort.Slice(spans, func(i, j int) bool {
		if spans[i].start != spans[j].start {
			return spans[i].start < spans[j].start
		}
		return spans[i].end > spans[j].end
	})
	var b strings.Builder
	pos := 0
	for i := 0; i < len(spans); {
		start, end, rule := spans[i].start, spans[i].end, spans[i].rule
		for i++; i < len(spans) && spans[i].start < end; i++ {
			end = max(end, spans[i].end)
		}
		start, end = max(start, pos), min(end, len(s))
		if start >= end {
			continue
		}
		b.WriteString(s[pos:start])
		b.WriteString("[redacted:" + rule + "]")
		pos = end
	}
	b.WriteString(s[pos:])
	return b.String()
}
