package schemas

import (
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
	ctx, err := Encode(&d.Context)
	if err != nil {
		return nil, err
	}
	b = append(b, `,"context":`...)
	b = append(b, ctx...)
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
