package rows

import (
	"bytes"
	"fmt"
	"unicode/utf8"

	jsonv2 "github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"

	"github.com/tollgate/tollgate/ledger"
	"github.com/tollgate/tollgate/schemas"
)

// Decoded is a ledger event decoded once: the record, and its data as one
// of the schemas data types (*schemas.RunStarted, *schemas.HopDecision ...)
// without the submission's wire form (HopDecision.Envelope and Raw,
// HopCompleted.Envelope are left empty: no row uses them).
type Decoded struct {
	ledger.Record
	Data any
	// Stored is the data as the events table keeps it: the event's data
	// without the submission's wire form (see Decoder).
	Stored string
}

// decodeOptions make the v2 decoder as lenient as schemas.DecodeEvent on
// what the ledger may hold.
var decodeOptions = jsonv2.JoinOptions(jsontext.AllowInvalidUTF8(true), jsontext.AllowDuplicateNames(true))

// Decoder decodes ledger messages for the projection. It is the
// projector's hot path: it reads an event and its data in one streaming
// pass with the JSON v2 decoder (github.com/go-json-experiment/json, the
// code of encoding/json/v2), several times faster than encoding/json's
// DecodeEvent followed by DecodeData, and reuses its buffers. It is not
// safe for concurrent use.
type Decoder struct {
	in  bytes.Reader
	dec *jsontext.Decoder
	out []byte // the data without its wire members
	esc []byte // a member name with escapes, unquoted
}

// NewDecoder returns a decoder.
func NewDecoder() *Decoder {
	x := &Decoder{}
	x.dec = jsontext.NewDecoder(&x.in, decodeOptions)
	return x
}

// Decode decodes a ledger message: the event, checked as
// schemas.DecodeEvent checks it, and its data. Event.Data is a slice of
// wire. Errors wrap schemas.ErrMalformed or schemas.ErrVersion.
func (x *Decoder) Decode(wire []byte, streamSeq uint64) (Decoded, error) {
	d := Decoded{Record: ledger.Record{Raw: wire, StreamSeq: streamSeq}}
	if err := x.decodeEvent(wire, &d); err != nil {
		return d, fmt.Errorf("%w: ledger event at stream seq %d: %v", schemas.ErrMalformed, streamSeq, err)
	}
	ev := &d.Event
	if ev.Version != schemas.Version {
		return d, fmt.Errorf("%w: ledger event at stream seq %d has v=%d, this build speaks v=%d", schemas.ErrVersion, streamSeq, ev.Version, schemas.Version)
	}
	if d.Data == nil { // "data" came before "type": decode it again, now
		x.in.Reset(ev.Data)
		x.dec.Reset(&x.in, decodeOptions)
		if err := x.readData(ev.Data, &d); err != nil {
			return d, fmt.Errorf("%w: ledger event at stream seq %d: %v", schemas.ErrMalformed, streamSeq, err)
		}
	}
	return d, nil
}

// decodeEvent reads the event's members in one pass, decoding the data
// straight into its type when the type came first (it does in the ledger's
// canonical encoding).
func (x *Decoder) decodeEvent(wire []byte, d *Decoded) error {
	ev := &d.Event
	x.in.Reset(wire)
	x.dec.Reset(&x.in, decodeOptions)
	if tok, err := x.dec.ReadToken(); err != nil {
		return err
	} else if tok.Kind() != '{' {
		return fmt.Errorf("event is not an object")
	}
	for x.dec.PeekKind() != '}' {
		name, err := x.name()
		if err != nil {
			return err
		}
		var into any
		var str *string
		switch string(name) { // compared without a copy
		case "v":
			into = &ev.Version
		case "run_id":
			str = &ev.RunID
		case "seq":
			into = &ev.Seq
		case "type":
			str = (*string)(&ev.Type)
		case "at":
			into = &ev.At
		case "hop_id":
			str = &ev.HopID
		case "prev_hash":
			str = &ev.PrevHash
		case "hash":
			str = &ev.Hash
		case "data":
			if err := x.readData(wire, d); err != nil {
				return err
			}
			continue
		default:
			if err := x.dec.SkipValue(); err != nil {
				return err
			}
			continue
		}
		if str != nil {
			err = x.readString(str)
		} else {
			err = jsonv2.UnmarshalDecode(x.dec, into)
		}
		if err != nil {
			return fmt.Errorf("member %q: %w", name, err)
		}
	}
	if _, err := x.dec.ReadToken(); err != nil {
		return err
	}
	if !ev.Type.Valid() {
		return fmt.Errorf("unknown event type %q", ev.Type)
	}
	return nil
}

// decodeData decodes an event's data into its type-specific struct.
func decodeData(ev *schemas.Event) (any, error) {
	v := schemas.NewEventData(ev.Type)
	if v == nil {
		return nil, fmt.Errorf("%w: unknown event type %q", schemas.ErrMalformed, ev.Type)
	}
	if err := jsonv2.Unmarshal(ev.Data, v, decodeOptions); err != nil {
		return nil, fmt.Errorf("%w: %s data: %v", schemas.ErrMalformed, ev.Type, err)
	}
	return v, nil
}

// Members of a decision's or completion's data that carry the submission's
// wire form: the signed envelope (the A2A message content) or the first
// bytes of a submission that was not JSON.
var wireMembers = map[string]bool{"envelope": true, "raw": true}

// hasWireMembers reports whether events of type t may carry wireMembers.
func hasWireMembers(t schemas.EventType) bool {
	return t == schemas.EventHopAllowed || t == schemas.EventHopDenied || t == schemas.EventHopPending || t == schemas.EventHopCompleted || t == schemas.EventHopProgress
}

// readData reads the data member the decoder is at. With the type known,
// the data is decoded into its struct; Stored is the data without its
// wireMembers. The message content stays in the ledger, where auditors
// verify it against its digest; an analytical store has no need of it, and
// it is most of every event's bytes. So for the types that carry it, the
// data's members are walked once, the wire members cut out by their byte
// offsets, and only what remains is decoded (without Envelope and Raw,
// which no row uses).
func (x *Decoder) readData(wire []byte, d *Decoded) error {
	ev := &d.Event
	start := int(x.dec.InputOffset())
	v := schemas.NewEventData(ev.Type)
	switch {
	case v == nil: // the type comes later, or is unknown: decoded after
		if err := x.dec.SkipValue(); err != nil {
			return err
		}
	case !hasWireMembers(ev.Type):
		if err := jsonv2.UnmarshalDecode(x.dec, v); err != nil {
			return fmt.Errorf("%s data: %w", ev.Type, err)
		}
	default:
		stored, err := x.cut(wire)
		if err != nil {
			return fmt.Errorf("%s data: %w", ev.Type, err)
		}
		if err := jsonv2.Unmarshal(stored, v, decodeOptions); err != nil {
			return fmt.Errorf("%s data: %w", ev.Type, err)
		}
		d.Stored = string(stored)
	}
	ev.Data = bytes.TrimLeft(wire[start:x.dec.InputOffset()], ": \t\r\n")
	if d.Stored == "" && v != nil {
		d.Stored = string(ev.Data)
	}
	if v != nil {
		d.Data = v
	}
	return nil
}

// cut walks the object the decoder is at (in wire) and returns it without
// its wireMembers, reusing x.out.
func (x *Decoder) cut(wire []byte) ([]byte, error) {
	if tok, err := x.dec.ReadToken(); err != nil {
		return nil, err
	} else if tok.Kind() != '{' {
		return nil, fmt.Errorf("not an object")
	}
	x.out = append(x.out[:0], '{')
	copied := int(x.dec.InputOffset()) // just after '{'
	kept := false                      // a member was kept before this one
	for x.dec.PeekKind() != '}' {
		before := int(x.dec.InputOffset()) // after the previous member, before its comma
		name, err := x.name()
		if err != nil {
			return nil, err
		}
		wireMember := wireMembers[string(name)] // looked up without a copy; void after the next read
		if err := x.dec.SkipValue(); err != nil {
			return nil, err
		}
		if !wireMember {
			kept = true
			continue
		}
		after := int(x.dec.InputOffset())
		if kept {
			// Cut ",name:value": the comma before it goes with it.
			x.out = append(x.out, wire[copied:before]...)
		} else {
			// Nothing kept before it: cut "name:value," and whatever
			// space came before.
			rest := bytes.TrimLeft(wire[after:], " \t\r\n")
			if len(rest) > 0 && rest[0] == ',' {
				after = len(wire) - len(rest) + 1
			}
		}
		copied = after
	}
	if _, err := x.dec.ReadToken(); err != nil { // '}'
		return nil, err
	}
	return append(x.out, wire[copied:x.dec.InputOffset()]...), nil
}

// name reads an object member's name. The bytes are the name as written,
// unquoted only when it holds escapes, so that matching names costs no
// allocation; they are void after the decoder's next read.
func (x *Decoder) name() ([]byte, error) {
	v, err := x.dec.ReadValue()
	if err != nil {
		return nil, err
	}
	if len(v) < 2 || v[0] != '"' {
		return nil, fmt.Errorf("member name %s is not a string", v)
	}
	if bytes.IndexByte(v, '\\') < 0 {
		return v[1 : len(v)-1], nil
	}
	// The decoder has checked the string's syntax, so the only error left
	// is invalid UTF-8, which decodeOptions allow: it comes out as U+FFFD,
	// as it would from the decoder's own tokens.
	x.esc, _ = jsontext.AppendUnquote(x.esc[:0], v)
	return x.esc, nil
}

// readString reads a string member into s. A plain string (no escapes,
// valid UTF-8, which is how the ledger writes every one) is copied as it
// is; anything else goes through the JSON decoder, with its rules.
func (x *Decoder) readString(s *string) error {
	v, err := x.dec.ReadValue()
	if err != nil {
		return err
	}
	if len(v) >= 2 && v[0] == '"' && bytes.IndexByte(v, '\\') < 0 && utf8.Valid(v) {
		*s = string(v[1 : len(v)-1])
		return nil
	}
	return jsonv2.Unmarshal(v, s, decodeOptions)
}
