package guardrail

import (
	"encoding/json"
)

// textMessage is the A2A v1.0 message ScanText scans a text as.
type textMessage struct {
	MessageID string     `json:"messageId"`
	Role      string     `json:"role"`
	Parts     []textPart `json:"parts"`
}

type textPart struct {
	Text string `json:"text"`
}

// ScanText scans a bare text (a window of a streamed model completion) as
// the one text part of a message from from to to, with the policy of the
// agent whose it is for dir (Request.Agent). When the verdict is Redacted,
// redacted is the text with the matches replaced; otherwise it is empty.
// A redaction that cannot be read back as one text is blocked instead.
func (e *Engine) ScanText(dir Direction, from, to, text string) (res Result, redacted string) {
	role := "ROLE_USER"
	if dir == Outbound {
		role = "ROLE_AGENT"
	}
	msg, err := json.Marshal(textMessage{MessageID: "text", Role: role, Parts: []textPart{{Text: text}}})
	if err != nil {
		// A Go string always encodes; scan it as malformed rather than pass it.
		msg = []byte(text)
	}
	res = e.Scan(Request{Direction: dir, From: from, To: to, Message: msg})
	if res.Verdict != Redacted {
		return res, ""
	}
	var out textMessage
	if err := json.Unmarshal(res.Redacted, &out); err != nil || len(out.Parts) != 1 {
		res.Verdict = Blocked // redaction keeps the shape; if it did not, pass nothing of it
		return res, ""
	}
	return res, out.Parts[0].Text
}
