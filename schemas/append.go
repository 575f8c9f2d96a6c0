package schemas

import (
	"encoding/base64"
	"strconv"
	"time"
	"unicode/utf8"
)

// The encoders below write the same compact JSON as Encode, member for
// member, but append raw JSON members (event data, delivered envelopes) as
// they are instead of having encoding/json scan and re-validate them: those
// are the largest members and were validated when they were made.

// AppendUnhashed appends the event's compact JSON without its "hash"
// member: the input of the event's hash (see ledger.Hash).
func (e *Event) AppendUnhashed(b []byte) []byte {
	b = append(b, `{"v":`...)
	b = strconv.AppendInt(b, int64(e.Version), 10)
	b = append(b, `,"run_id":`...)
	b = appendString(b, e.RunID)
	b = append(b, `,"seq":`...)
	b = strconv.AppendUint(b, e.Seq, 10)
	b = append(b, `,"type":`...)
	b = appendString(b, string(e.Type))
	b = append(b, `,"at":"`...)
	b = e.At.AppendFormat(b, time.RFC3339Nano)
	b = append(b, '"')
	if e.HopID != "" {
		b = append(b, `,"hop_id":`...)
		b = appendString(b, e.HopID)
	}
	b = append(b, `,"data":`...)
	if len(e.Data) == 0 {
		b = append(b, "null"...)
	} else {
		b = append(b, e.Data...)
	}
	b = append(b, `,"prev_hash":`...)
	b = appendString(b, e.PrevHash)
	return append(b, '}')
}

// Marshal encodes the delivery as Encode would, appending the envelope's
// wire form untouched (so its signature still checks).
func (d *Delivery) Marshal() ([]byte, error) {
	b := make([]byte, 0, 256+len(d.Envelope))
	b = append(b, `{"v":`...)
	b = strconv.AppendInt(b, int64(d.Version), 10)
	b = append(b, `,"kind":`...)
	b = appendString(b, string(d.Kind))
	if len(d.Envelope) > 0 {
		b = append(b, `,"envelope":`...)
		b = append(b, d.Envelope...)
	}
	b = append(b, `,"context":`...)
	b, err := d.Context.appendJSON(b)
	if err != nil {
		return nil, err
	}
	if d.Denial != nil {
		den, err := Encode(d.Denial)
		if err != nil {
			return nil, err
		}
		b = append(b, `,"denial":`...)
		b = append(b, den...)
	}
	if d.LedgerSeq != 0 {
		b = append(b, `,"ledger_seq":`...)
		b = strconv.AppendUint(b, d.LedgerSeq, 10)
	}
	return append(b, '}'), nil
}

// appendString appends s as a JSON string the way Encode writes it (no
// HTML escaping).
func appendString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c == '"' || c == '\\' || c >= utf8.RuneSelf {
			q, err := Encode(s)
			if err != nil { // strings always encode
				return append(b, `""`...)
			}
			return append(b, q...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}

// MarshalData encodes a hop decision as Encode would, member for member,
// without reflection; the nested objects that are rare on the hot path
// (audit findings, breach, estimate, guardrail, approval) go through
// Encode. Envelope is appended as it is: it is the submission's compact
// wire form (DecodeEnvelope), validated when it was decoded.
func (d *HopDecision) MarshalData() ([]byte, error) {
	b := make([]byte, 0, 512+len(d.Envelope)+len(d.Redacted)+len(d.Raw)*4/3)
	b = append(b, '{')
	str := func(name, v string) {
		if v != "" {
			b = append(b, name...)
			b = appendString(b, v)
		}
	}
	strs := func(name string, vs []string) {
		if len(vs) == 0 {
			return
		}
		b = append(b, name...)
		for i, v := range vs {
			if i == 0 {
				b = append(b, '[')
			} else {
				b = append(b, ',')
			}
			b = appendString(b, v)
		}
		b = append(b, ']')
	}
	var err error
	obj := func(name string, v any) {
		if err != nil {
			return
		}
		var raw []byte
		if raw, err = Encode(v); err == nil {
			b = append(b, name...)
			b = append(b, raw...)
		}
	}
	str(`,"kind":`, string(d.Kind))
	str(`,"parent_hop_id":`, d.ParentHopID)
	str(`,"from":`, d.From)
	str(`,"to":`, d.To)
	str(`,"from_type":`, string(d.FromType))
	str(`,"from_team":`, d.FromTeam)
	strs(`,"from_tags":`, d.FromTags)
	str(`,"to_type":`, string(d.ToType))
	str(`,"to_team":`, d.ToTeam)
	strs(`,"to_tags":`, d.ToTags)
	str(`,"action":`, string(d.Action))
	b = append(b, `,"depth":`...)
	b = strconv.AppendInt(b, int64(d.Depth), 10)
	strs(`,"ancestry":`, d.Ancestry)
	str(`,"on_behalf_of":`, d.OnBehalfOf)
	str(`,"reason":`, string(d.Reason))
	str(`,"message":`, d.Message)
	strs(`,"policy_ids":`, d.PolicyIDs)
	if len(d.Audit) > 0 {
		obj(`,"audit":`, d.Audit)
	}
	if d.Cycle {
		b = append(b, `,"cycle":true`...)
	}
	if d.Breach != nil {
		obj(`,"breach":`, d.Breach)
	}
	if !d.Deadline.IsZero() {
		b, err = appendTime(b, `,"deadline":`, d.Deadline)
	}
	if d.Estimate != nil {
		obj(`,"estimate":`, d.Estimate)
	}
	if d.SubmitSeq != 0 {
		b = append(b, `,"submit_seq":`...)
		b = strconv.AppendUint(b, d.SubmitSeq, 10)
	}
	if len(d.Envelope) > 0 {
		b = append(b, `,"envelope":`...)
		b = append(b, d.Envelope...)
	}
	if len(d.Raw) > 0 {
		b = append(b, `,"raw":"`...)
		b = base64.StdEncoding.AppendEncode(b, d.Raw)
		b = append(b, '"')
	}
	b = append(b, `,"size":`...)
	b = strconv.AppendInt(b, int64(d.Size), 10)
	b = append(b, `,"digest":`...)
	b = appendString(b, d.Digest)
	str(`,"trace_id":`, d.TraceID)
	str(`,"span_id":`, d.SpanID)
	str(`,"parent_span_id":`, d.ParentSpanID)
	if d.Guardrail != nil {
		obj(`,"guardrail":`, d.Guardrail)
	}
	if d.Tainted {
		b = append(b, `,"tainted":true`...)
	}
	strs(`,"taint_sources":`, d.TaintSources)
	if len(d.Redacted) > 0 {
		obj(`,"redacted":`, d.Redacted)
	}
	if d.Approval != nil {
		obj(`,"approval":`, d.Approval)
	}
	if err != nil {
		return nil, err
	}

	if len(b) > 1 && b[1] == ',' {
		b = append(b[:1], b[2:]...)
	}
	return append(b, '}'), nil
}

// appendTime appends name and t as encoding/json writes a time.Time
// (RFC 3339 with nanoseconds, quoted); the error is the one Encode gives
// for a year it cannot write.
func appendTime(b []byte, name string, t time.Time) ([]byte, error) {
	if y := t.Year(); y < 0 || y > 9999 {
		_, err := Encode(t)
		return b, err
	}
	b = append(b, name...)
	b = append(b, '"')
	b = t.AppendFormat(b, time.RFC3339Nano)
	return append(b, '"'), nil
}

// appendJSON appends the context as Encode would, member for member.
func (c *Context) appendJSON(b []byte) ([]byte, error) {
	b = append(b, `{"run_id":`...)
	b = appendString(b, c.RunID)
	b = append(b, `,"hop_id":`...)
	b = appendString(b, c.HopID)
	if c.ParentHopID != "" {
		b = append(b, `,"parent_hop_id":`...)
		b = appendString(b, c.ParentHopID)
	}
	b = append(b, `,"depth":`...)
	b = strconv.AppendInt(b, int64(c.Depth), 10)
	if len(c.Ancestry) > 0 {
		b = append(b, `,"ancestry":`...)
		for i, a := range c.Ancestry {
			if i == 0 {
				b = append(b, '[')
			} else {
				b = append(b, ',')
			}
			b = appendString(b, a)
		}
		b = append(b, ']')
	}
	if c.OnBehalfOf != "" {
		b = append(b, `,"on_behalf_of":`...)
		b = appendString(b, c.OnBehalfOf)
	}
	if !c.Deadline.IsZero() {
		var err error
		if b, err = appendTime(b, `,"deadline":`, c.Deadline); err != nil {
			return nil, err
		}
	}
	if c.TraceParent != "" {
		b = append(b, `,"traceparent":`...)
		b = appendString(b, c.TraceParent)
	}
	if c.Attempt != 0 {
		b = append(b, `,"attempt":`...)
		b = strconv.AppendInt(b, int64(c.Attempt), 10)
	}
	return append(b, '}'), nil
}
