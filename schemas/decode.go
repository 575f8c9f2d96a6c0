package schemas

import (
	"bytes"
	"fmt"
	"strings"

	jsonv2 "github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
)

// The envelope decoder: one pass that checks the syntax, the UTF-8 and
// duplicate member names anywhere while compacting (jsontext), then one
// walk of the compact form that checks the member names of the envelope's
// own objects and decodes its fields. Before, the compact form was read
// three times (compaction, a token decoder for the names, a reflective
// unmarshal); what is accepted, and the envelope decoded, are the same
// (TestDecodeEnvelopeMatchesReference, FuzzDecodeEnvelopeMatchesReference).

// compactStrict is how the envelope is compacted: unlike Compact's
// defaults, duplicate names and invalid UTF-8 are refused, anywhere in
// the envelope, as every decoder that reads it afterwards would refuse
// (or read) them differently.
var compactStrict = []jsontext.Options{jsontext.AllowDuplicateNames(false), jsontext.AllowInvalidUTF8(false)}

// member is one member of a compact JSON object: its name (unquoted) and
// its value's bytes.
type member struct {
	name  string
	value []byte
}

// members appends to dst the members of the compact, valid JSON object
// obj, in order.
func members(dst []member, obj []byte) []member {
	i := 1 // past '{'
	for i < len(obj) && obj[i] != '}' {
		end := skipString(obj, i)
		name, known := knownNames[string(obj[i+1:end-1])]
		if !known {
			name = unquoteString(obj[i:end])
		}
		start := end + 1 // past ':'
		i = skipValue(obj, start)
		dst = append(dst, member{name: name, value: obj[start:i]})
		if i < len(obj) && obj[i] == ',' {
			i++
		}
	}
	return dst
}

// knownNames interns the member names of the envelope's own objects, so
// that reading them allocates nothing.
var knownNames = func() map[string]string {
	m := map[string]string{}
	for _, fields := range envelopeFields {
		for _, f := range fields {
			m[f] = f
		}
	}
	m["error_class"] = "error_class"
	return m
}()

// skipString returns the index after the JSON string starting at b[i].
func skipString(b []byte, i int) int {
	for i++; i < len(b); i++ {
		switch b[i] {
		case '\\':
			i++
		case '"':
			return i + 1
		}
	}
	return len(b)
}

// skipValue returns the index after the compact JSON value starting at b[i].
func skipValue(b []byte, i int) int {
	switch b[i] {
	case '"':
		return skipString(b, i)
	case '{', '[':
		depth := 0
		for i < len(b) {
			switch b[i] {
			case '"':
				i = skipString(b, i)
				continue
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return i + 1
				}
			}
			i++
		}
		return len(b)
	}
	for i < len(b) && b[i] != ',' && b[i] != '}' && b[i] != ']' {
		i++
	}
	return i
}

// unquoteString is the value of a valid JSON string literal.
func unquoteString(lit []byte) string {
	if bytes.IndexByte(lit, '\\') < 0 {
		return string(lit[1 : len(lit)-1])
	}
	s, err := jsontext.AppendUnquote(nil, lit)
	if err != nil { // not after a successful compaction
		return string(lit[1 : len(lit)-1])
	}
	return string(s)
}

// caseVariant returns an error for a member name that folds to one of
// fields without being it.
func caseVariant(name, at string, fields []string) error {
	for _, f := range fields {
		if name == f {
			return nil // no two fields of an object fold to the same name
		}
	}
	for _, f := range fields {
		if name != f && strings.EqualFold(name, f) {
			where := "the envelope"
			if at != "" {
				where = at
			}
			return fmt.Errorf("member %q of %s is a case variant of %q", name, where, f)
		}
	}
	return nil
}

// decodeCompact decodes the envelope from its compact form (a valid JSON
// object without duplicate names): first every member name is checked
// (the envelope's, and those of its result, usage, estimate and
// spawned_from objects), then the fields are decoded in document order.
func decodeCompact(compact []byte) (*Envelope, error) {
	var buf [24]member
	ms := members(buf[:0], compact)
	var nested [8]member
	for _, m := range ms {
		if err := caseVariant(m.name, "", envelopeFields[""]); err != nil {
			return nil, err
		}
		if fields, ok := envelopeFields[m.name]; ok && m.value[0] == '{' {
			for _, n := range members(nested[:0], m.value) {
				if err := caseVariant(n.name, m.name, fields); err != nil {
					return nil, err
				}
			}
		}
	}
	e := &Envelope{}
	for _, m := range ms {
		var err error
		switch m.name {
		case "v":
			err = decodeInt(m.value, &e.Version)
		case "via":
			err = decodeString(m.value, &e.Via)
		case "kind":
			err = decodeString(m.value, (*string)(&e.Kind))
		case "hop_id":
			err = decodeString(m.value, &e.HopID)
		case "run_id":
			err = decodeString(m.value, &e.RunID)
		case "parent_hop_id":
			err = decodeString(m.value, &e.ParentHopID)
		case "hop_key":
			err = decodeString(m.value, &e.HopKey)
		case "spawned_from":
			err = jsonv2.Unmarshal(m.value, &e.SpawnedFrom)
		case "from":
			err = decodeString(m.value, &e.From)
		case "to":
			err = decodeString(m.value, &e.To)
		case "message":
			if m.value[0] == '{' || m.value[0] == '[' {
				e.Message = bytes.Clone(m.value)
			} else {
				err = jsonv2.Unmarshal(m.value, &e.Message)
			}
		case "result":
			err = jsonv2.Unmarshal(m.value, &e.Result)
		case "usage":
			err = jsonv2.Unmarshal(m.value, &e.Usage)
		case "estimate":
			err = jsonv2.Unmarshal(m.value, &e.Estimate)
		case "sent_at":
			err = jsonv2.Unmarshal(m.value, &e.SentAt)
		case "signature":
			err = decodeString(m.value, &e.Signature)
		}
		if err != nil {
			return nil, fmt.Errorf("member %q: %w", m.name, err)
		}
	}
	return e, nil
}

// decodeString decodes a JSON value into a Go string as jsonv2 does: a
// string without escapes directly, anything else through jsonv2.
func decodeString(v []byte, dst *string) error {
	if len(v) >= 2 && v[0] == '"' {
		*dst = unquoteString(v)
		return nil
	}
	return jsonv2.Unmarshal(v, dst)
}

// decodeInt decodes a JSON value into a Go int as jsonv2 does: a short
// run of digits directly, anything else through jsonv2.
func decodeInt(v []byte, dst *int) error {
	if len(v) > 0 && len(v) < 10 && (v[0] != '0' || len(v) == 1) {
		n := 0
		for _, c := range v {
			if c < '0' || c > '9' {
				return jsonv2.Unmarshal(v, dst)
			}
			n = n*10 + int(c-'0')
		}
		*dst = n
		return nil
	}
	return jsonv2.Unmarshal(v, dst)
}
