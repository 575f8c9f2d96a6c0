package a2ahttp

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strings"
)

// v03Errors adapts the errors a2av0's JSON-RPC server writes to what v0.3
// clients decode: a2av0 writes error.data as A2A v1.0's list of typed
// details, while v0.3 clients (a2a-go v0.3.x) read it as an object. The
// details are merged into one object ("reason", "policy_ids", "hop_id",
// "run_id", and the ErrorInfo under "errorInfo"). Streams pass through.
type v03Errors struct {
	w      http.ResponseWriter
	buf    bytes.Buffer
	status int
	stream bool
	wrote  bool
}

func (v *v03Errors) Header() http.Header { return v.w.Header() }

func (v *v03Errors) WriteHeader(status int) {
	if v.wrote {
		return
	}
	v.wrote = true
	v.status = status
	if strings.HasPrefix(v.w.Header().Get("Content-Type"), "text/event-stream") {
		v.stream = true
		v.w.WriteHeader(status)
	}
}

func (v *v03Errors) Write(b []byte) (int, error) {
	if !v.wrote {
		v.WriteHeader(http.StatusOK)
	}
	if v.stream {
		return v.w.Write(b)
	}
	return v.buf.Write(b)
}

// Flush passes a stream's flushes on.
func (v *v03Errors) Flush() {
	if f, ok := v.w.(http.Flusher); ok && v.stream {
		f.Flush()
	}
}

// finish writes a buffered response, its error data rewritten.
func (v *v03Errors) finish() {
	if v.stream {
		return
	}
	if !v.wrote {
		v.status = http.StatusOK
	}
	out := v.buf.Bytes()
	var resp map[string]json.RawMessage
	if json.Unmarshal(out, &resp) == nil && resp["error"] != nil {
		var e map[string]json.RawMessage
		var list []map[string]any
		if json.Unmarshal(resp["error"], &e) == nil && json.Unmarshal(e["data"], &list) == nil {
			data := map[string]any{}
			for _, d := range list {
				typ, _ := d["@type"].(string)
				delete(d, "@type")
				if strings.HasSuffix(typ, "ErrorInfo") {
					data["errorInfo"] = d
					continue
				}
				for k, val := range d {
					data[k] = val
				}
			}
			if b, err := json.Marshal(data); err == nil {
				e["data"] = b
				if b, err := json.Marshal(e); err == nil {
					resp["error"] = b
					if b, err := json.Marshal(resp); err == nil {
						out = append(b, '\n')
					}
				}
			}
		}
	}
	v.w.WriteHeader(v.status)
	_, _ = v.w.Write(out)
}
