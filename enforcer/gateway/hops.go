package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"

	"github.com/tollgate/tollgate/broker"
	"github.com/tollgate/tollgate/broker/agent"
	"github.com/tollgate/tollgate/broker/hopfront"
	"github.com/tollgate/tollgate/broker/ingress"
	"github.com/tollgate/tollgate/broker/models"
	"github.com/tollgate/tollgate/broker/tools"
	"github.com/tollgate/tollgate/enforcer/policy"
	"github.com/tollgate/tollgate/schemas"
)

// Paths the model and tool fronts are mounted at on the HTTP listener.
const (
	ChatCompletionsPath = "/v1/chat/completions"
	ResponsesPath       = "/v1/responses"
	MCPPath             = "/mcp"
)

// ModelConfig is one entry of the models section: a model identity served
// by a bridge to its upstream (docs/models-and-tools.md).
type ModelConfig struct {
	models.Config `yaml:",inline"`
	// Seed is the model identity's nkey seed (`tollgate agent add <id>
	// --type model`): the bridge consumes the model's deliveries with it.
	Seed string `yaml:"seed"`
}

// ToolConfig is one entry of the tools section: a tool identity mapped to
// a tool of an MCP server.
type ToolConfig struct {
	tools.Config `yaml:",inline"`
	// Seed is the tool identity's nkey seed.
	Seed string `yaml:"seed"`
}

// validateHops checks the models, mcp_servers and tools sections against
// the identities: each model and tool is a registered identity of its
// type, its key file's key is the registered one.
func (c *Config) validateHops(dir *broker.Directory) error {
	var errs []error
	check := func(what, id string, typ schemas.PrincipalType, keyFile string) {
		if dir == nil {
			return
		}
		ident, ok := dir.Get(id)
		switch {
		case !ok:
			errs = append(errs, fmt.Errorf("%s %q: not a registered identity (add it under agents: with type %s)", what, id, typeOf(typ)))
			return
		case ident.Type != typ:
			errs = append(errs, fmt.Errorf("%s %q: registered as a %s, want type %s", what, id, ident.Type, typeOf(typ)))
		}
		if keyFile == "" {
			errs = append(errs, fmt.Errorf("%s %q: seed is required (the identity's nkey seed)", what, id))
			return
		}
		kp, err := broker.LoadSeed(c.Path(keyFile))
		if err != nil {
			errs = append(errs, fmt.Errorf("%s %q: seed: %w", what, id, err))
			return
		}
		if pub, _ := kp.PublicKey(); pub != ident.PublicKey {
			errs = append(errs, fmt.Errorf("%s %q: seed holds %s, not the registered public_key", what, id, pub))
		}
	}
	seen := map[string]bool{}
	for _, m := range c.Models {
		mc := m.Config
		mc.SetDefaults()
		errs = append(errs, mc.Validate())
		if seen[m.ID] {
			errs = append(errs, fmt.Errorf("model %q: listed twice", m.ID))
		}
		seen[m.ID] = true
		check("model", m.ID, schemas.TypeModel, m.Seed)
	}
	servers := map[string]tools.ServerConfig{}
	for _, s := range c.MCPServers {
		errs = append(errs, s.Validate())
		if _, dup := servers[s.ID]; dup {
			errs = append(errs, fmt.Errorf("mcp server %q: listed twice", s.ID))
		}
		servers[s.ID] = s
	}
	for _, t := range c.Tools {
		tc := t.Config
		tc.SetDefaults()
		errs = append(errs, tc.Validate(servers))
		if seen[t.ID] {
			errs = append(errs, fmt.Errorf("tool %q: listed twice", t.ID))
		}
		seen[t.ID] = true
		check("tool", t.ID, schemas.TypeTool, t.Seed)
	}
	return errors.Join(errs...)
}

func typeOf(t schemas.PrincipalType) string {
	for name, pt := range IdentityTypes {
		if pt == t {
			return name
		}
	}
	return string(t)
}

// untrustedTools are the tools whose results are untrusted: marked so
// themselves or through their MCP server.
func (c *Config) untrustedTools() []string {
	servers := map[string]tools.ServerConfig{}
	for _, s := range c.MCPServers {
		servers[s.ID] = s
	}
	var out []string
	for _, t := range c.Tools {
		if tools.IsUntrusted(t.Config, servers[t.Server]) {
			out = append(out, t.ID)
		}
	}
	return out
}

// hops are the running model and tool bridges and their fronts.
type hops struct {
	models map[string]*models.Bridge
	tools  []*tools.Bridge
	// submit, when set (SetHopSubmitter), replaces the ingress the
	// fronts submit hops with.
	submit hopfront.Submit
}

// startHops starts a bridge per configured model and MCP server, and with
// an HTTP listener mounts the fronts: POST /v1/chat/completions, POST
// /v1/responses and the MCP endpoint /mcp.
func (g *Gateway) startHops(ctx context.Context) error {
	if len(g.cfg.Models) == 0 && len(g.cfg.Tools) == 0 {
		return nil
	}
	h := &hops{models: map[string]*models.Bridge{}}
	g.hops = h
	conn := func(id, keyFile string) (agent.Config, error) {
		kp, err := broker.LoadSeed(g.cfg.Path(keyFile))
		if err != nil {
			return agent.Config{}, fmt.Errorf("%s: seed: %w", id, err)
		}
		ac := agent.Config{ID: id, Key: kp, Subjects: &g.subjects, Logger: g.log}
		if g.emb != nil {
			ac.InProcess = g.emb
		} else {
			ac.URL = g.cfg.NATS.URL
		}
		return ac, nil
	}
	for _, m := range g.cfg.Models {
		ac, err := conn(m.ID, m.Seed)
		if err != nil {
			return err
		}
		mc := m.Config
		mc.APIKeyFile = g.cfg.Path(mc.APIKeyFile)
		b, err := models.StartBridge(ctx, models.BridgeConfig{Model: mc, Agent: ac})
		if err != nil {
			return err
		}
		h.models[m.ID] = b
	}
	costs := map[string]float64{}
	for _, s := range g.cfg.MCPServers {
		bc := tools.BridgeConfig{Server: s, Agents: map[string]agent.Config{}}
		for _, t := range g.cfg.Tools {
			if t.Server != s.ID {
				continue
			}
			ac, err := conn(t.ID, t.Seed)
			if err != nil {
				return err
			}
			bc.Tools, bc.Agents[t.ID] = append(bc.Tools, t.Config), ac
			costs[t.ID] = t.CostPerCallUSD
		}
		if len(bc.Tools) == 0 {
			continue
		}
		b, err := tools.StartBridge(ctx, bc)
		if err != nil {
			return err
		}
		h.tools = append(h.tools, b)
	}
	auth := g.Authenticator()
	if g.http == nil || auth == nil {
		return nil
	}
	authenticate := func(r *http.Request) (*broker.Identity, error) {
		id, _, err := auth.Authenticate(r)
		return id, err
	}
	submit := func(ctx context.Context, s hopfront.Submission) (*agent.Reply, error) {
		if h.submit != nil {
			return h.submit(ctx, s)
		}
		return g.submitHop(ctx, s)
	}
	if len(h.models) > 0 {
		front := models.NewFront(models.FrontConfig{Bridges: h.models, Authenticate: authenticate, Submit: submit,
			MaxBodyBytes: g.cfg.HTTP.MaxBodyBytes, Timeout: g.cfg.HTTP.CallTimeout,
			StreamGuard: g.streamGuard, StreamHoldBytes: g.cfg.Guardrails.StreamHoldBytes})
		g.HandleHTTP("POST "+ChatCompletionsPath, front)
		g.HandleHTTP("POST "+ResponsesPath, front.Responses())
	}
	if len(h.tools) > 0 {
		g.HandleHTTP(MCPPath, tools.NewFront(tools.FrontConfig{
			Bridges: h.tools, Authenticate: authenticate, Submit: submit, Costs: costs,
			Allowed: g.mayCallTool, MaxBodyBytes: g.cfg.HTTP.MaxBodyBytes, Timeout: g.cfg.HTTP.CallTimeout,
		}))
	}
	return nil
}

// mayCallTool is the policy check of tools/list: could policy permit
// caller to call the tool at all (call_tool, a hop's context at depth 1
// of a run of the caller's, untainted)? The call itself is decided on the
// hop, with its real context.
func (g *Gateway) mayCallTool(caller *broker.Identity, tool string) bool {
	target, ok := g.directory().Get(tool)
	if !ok || target.Disabled || target.Type != schemas.TypeTool {
		return false
	}
	return g.engine.Load().Decide(policy.Request{
		Principal: caller, Action: schemas.ActionCallTool, Resource: target,
		Context: policy.Context{Workflow: "default", Depth: 1, Ancestry: []string{caller.ID}, OnBehalfOf: caller.ID},
	}).Allow
}

// submitHop submits a model or tool hop through the ingress, on the
// authenticated caller's behalf, and waits for its outcome.
func (g *Gateway) submitHop(ctx context.Context, s hopfront.Submission) (*agent.Reply, error) {
	if g.ingress == nil {
		return nil, errors.New("the gateway's ingress is not running: model and tool hops cannot be submitted over HTTP")
	}
	msg, err := json.Marshal(s.Message)
	if err != nil {
		return nil, fmt.Errorf("encode message: %w", err)
	}
	p, err := g.ingress.Invoke(ctx, ingress.Call{Caller: s.Caller.ID, To: s.To, ParentHopID: s.ParentHop, RunID: s.RunID,
		Key: s.Key, Message: msg, Estimate: s.Estimate})
	if err != nil {
		return nil, err
	}
	out, err := p.Wait(ctx)
	r := &agent.Reply{RunID: p.RunID, HopID: p.HopID}
	if out != nil {
		r.Delivery = out.Delivery
	}
	var denied *ingress.DeniedError
	switch {
	case errors.As(err, &denied):
		r.Status = schemas.StateRejected
		return r, &agent.DeniedError{Denial: denied.Denial, HopID: denied.HopID}
	case errors.Is(err, ingress.ErrTimedOut):
		r.Status = schemas.StateFailed
		return r, fmt.Errorf("%w: %w", agent.ErrTimedOut, err)
	case err != nil:
		return nil, err
	}
	res := out.Reply.Result
	r.Status, r.Usage, r.Error = res.Status, out.Reply.Usage, res.Error
	if len(res.Output) > 0 {
		var m agent.Message
		if err := json.Unmarshal(res.Output, &m); err == nil {
			r.Output = &m
		}
	}
	return r, nil
}

// SetHopSubmitter replaces the function the model and tool fronts submit
// hops with (default: the gateway's ingress).
func (g *Gateway) SetHopSubmitter(s hopfront.Submit) {
	if g.hops != nil {
		g.hops.submit = s
	}
}

// ModelBridge returns the running bridge of a model; nil when none.
func (g *Gateway) ModelBridge(id string) *models.Bridge {
	if g.hops == nil {
		return nil
	}
	return g.hops.models[id]
}

// stopHops closes the bridges.
func (g *Gateway) stopHops() {
	if g.hops == nil {
		return
	}
	for _, b := range g.hops.models {
		b.Close()
	}
	for _, b := range g.hops.tools {
		b.Close()
	}
}
