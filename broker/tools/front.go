package tools

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/tollgate/tollgate/broker"
	"github.com/tollgate/tollgate/broker/agent"
	"github.com/tollgate/tollgate/broker/hopfront"
	"github.com/tollgate/tollgate/schemas"
)

// FrontConfig is the MCP endpoint's config.
type FrontConfig struct {
	// Bridges are the MCP servers whose governed tools are offered.
	Bridges []*Bridge
	// Authenticate says who calls.
	Authenticate hopfront.Authenticate
	// Allowed reports whether policy can permit caller to call the tool
	// (call_tool on Tool::"<tool>"): tools/list offers only those.
	Allowed func(caller *broker.Identity, tool string) bool
	// Submit submits a tools/call as a hop on the caller's behalf.
	Submit hopfront.Submit
	// Costs are the tools' cost per call by tool id, reserved at
	// admission.
	Costs map[string]float64
	// ListTTL is how long the servers' tool lists are kept (default 30 s).
	ListTTL time.Duration
	// MaxBodyBytes bounds a request body (default: the go-sdk's); Timeout
	// how long a call waits for its hop's outcome (default: as long as
	// the client waits).
	MaxBodyBytes int64
	Timeout      time.Duration
}

// Front is the MCP endpoint (streamable HTTP) agents call tools through.
type Front struct {
	cfg FrontConfig
	mcp *mcp.StreamableHTTPHandler

	mu     sync.Mutex
	listed []*mcp.Tool
	at     time.Time
}

// NewFront returns the MCP endpoint. Every request must carry the
// caller's credential; a tools/call must also name the hop the caller
// serves (hopfront.ParentHopHeader).
func NewFront(cfg FrontConfig) *Front {
	if cfg.ListTTL == 0 {
		cfg.ListTTL = 30 * time.Second
	}
	f := &Front{cfg: cfg}
	f.mcp = mcp.NewStreamableHTTPHandler(f.server, &mcp.StreamableHTTPOptions{Stateless: true, JSONResponse: true, MaxRequestBodyBytes: cfg.MaxBodyBytes})
	return f
}

// callerKey carries the authenticated caller to the MCP server built for
// its request.
type callerKey struct{}

// ServeHTTP authenticates the caller and serves MCP for it.
func (f *Front) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	caller, err := f.cfg.Authenticate(r)
	if err != nil {
		hopfront.Deny(w, http.StatusUnauthorized, "unauthenticated", err.Error())
		return
	}
	if !caller.IsCaller() {
		hopfront.Deny(w, http.StatusForbidden, "not_a_caller", fmt.Sprintf("%s is a %s: only agents call tools", caller.ID, caller.Type))
		return
	}
	f.mcp.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), callerKey{}, caller)))
}

// tools returns the governed tools of every server, from a list kept for
// ListTTL.
func (f *Front) tools(ctx context.Context) []*mcp.Tool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.listed != nil && time.Since(f.at) < f.cfg.ListTTL {
		return f.listed
	}
	var all []*mcp.Tool
	for _, b := range f.cfg.Bridges {
		ts, err := b.Tools(ctx)
		if err != nil {
			continue // a server that is down offers nothing until it is back
		}
		all = append(all, ts...)
	}
	f.listed, f.at = all, time.Now()
	return all
}

// server is the MCP server of one request: the tools policy can permit
// the caller, each call governed.
func (f *Front) server(r *http.Request) *mcp.Server {
	caller, _ := r.Context().Value(callerKey{}).(*broker.Identity)
	s := mcp.NewServer(&mcp.Implementation{Name: "tollgate", Version: "1"}, nil)
	if caller == nil {
		return s
	}
	for _, t := range f.tools(r.Context()) {
		if f.cfg.Allowed != nil && !f.cfg.Allowed(caller, t.Name) {
			continue
		}
		id := t.Name
		s.AddTool(t, func(ctx context.Context, req *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
			return f.call(ctx, caller, id, req)
		})
	}
	return s
}

// call governs one tools/call: a call_tool hop on the caller's behalf.
// What the gateway decides comes back as a tool error the caller's model
// can read; a missing parent hop is a protocol error.
func (f *Front) call(ctx context.Context, caller *broker.Identity, tool string, req *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
	h := http.Header{}
	if req.Extra != nil && req.Extra.Header != nil {
		h = req.Extra.Header
	}
	parent, run, err := hopfront.ParentHop(h)
	if err != nil {
		return nil, err
	}
	if f.cfg.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, f.cfg.Timeout)
		defer cancel()
	}
	var args map[string]any
	if len(req.Params.Arguments) > 0 {
		if err := json.Unmarshal(req.Params.Arguments, &args); err != nil {
			return toolError("arguments must be a JSON object: " + err.Error()), nil
		}
	}
	reply, err := f.cfg.Submit(ctx, hopfront.Submission{
		Caller: caller, ParentHop: parent, RunID: run, To: tool, Message: CallMessage(args),
		Estimate: &schemas.Usage{CostUSD: f.cfg.Costs[tool]},
	})
	var denied *agent.DeniedError
	switch {
	case errors.As(err, &denied):
		return toolError(fmt.Sprintf("denied by the gateway (%s): %s", denied.Denial.Reason, denied.Denial.Message)), nil
	case err != nil:
		return toolError("the call failed: " + err.Error()), nil
	case reply.Status != schemas.StateCompleted:
		if res, err := ResultFrom(reply.Output); err == nil && res.IsError {
			return res, nil
		}
		return toolError(fmt.Sprintf("the call ended %s: %s", reply.Status, reply.Error)), nil
	}
	res, err := ResultFrom(reply.Output)
	if err != nil {
		return toolError(err.Error()), nil
	}
	return res, nil
}

func toolError(msg string) *mcp.CallToolResult {
	return &mcp.CallToolResult{IsError: true, Content: []mcp.Content{&mcp.TextContent{Text: msg}}}
}
