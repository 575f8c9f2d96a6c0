package guardrail

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
)

// Engine scans A2A messages against the shipped rule packs and applies a
// Config's actions. It is built once per configuration (New compiles
// every pack) and is safe for concurrent use; to change the configuration
// build a new Engine and swap it in.
type Engine struct {
	lim      Limits
	rules    []*rule
	byID     map[string]*rule
	patterns []*pattern
	kw       *keywords
	def      policy
	agents   map[string]policy
	pool     sync.Pool // *scanner
}

// Request is one message to scan.
type Request struct {
	// Direction is Inbound for an invoke's message, Outbound for a reply's
	// output (an A2A Message or Task). Anything else is taken as Inbound.
	Direction Direction
	// From and To are the sender's and the recipient's identity ids.
	From, To string
	// Message is the A2A message or task as raw JSON, A2A v0.3 or v1.0.
	Message json.RawMessage
	// External is the external checker's answer for this message, when the
	// caller consulted it (see Engine.Check); nil when it did not.
	External *ExternalResult
}

// Agent is the agent whose policy applies: the recipient of an inbound
// invoke, the sender of an outbound reply.
func (r *Request) Agent() string {
	if r.Direction == Outbound {
		return r.From
	}
	return r.To
}

// ExternalResult is what the external checker said about a message, or
// why it said nothing.
type ExternalResult struct {
	// Answer is the checker's verdict and findings, when Err is nil.
	Answer CheckResponse
	// Err is why the checker gave no answer; it wraps one of the
	// ErrChecker* errors. The agent's hook mode decides what it does.
	Err error
}

// New compiles the rule packs and the configuration's policies. The
// configuration's errors wrap ErrConfig, all of them at once.
func New(cfg Config) (*Engine, error) {
	cfg.SetDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	rules, pats, kw, err := compileRules()
	if err != nil {
		return nil, err
	}
	e := &Engine{
		lim: cfg.Limits, rules: rules, byID: make(map[string]*rule, len(rules)), patterns: pats, kw: kw,
		agents: make(map[string]policy, len(cfg.Agents)),
	}
	for _, r := range rules {
		e.byID[r.ID] = r
	}
	e.def = newPolicy(rules, nil, cfg.Default)
	for id, p := range cfg.Agents {
		e.agents[id] = newPolicy(rules, &p, cfg.Default)
	}
	e.pool.New = func() any { return newScanner(e) }
	return e, nil
}

// Rules lists every rule the engine knows, with its pack, severity and
// default action.
func (e *Engine) Rules() []Rule {
	out := make([]Rule, len(e.rules))
	for i, r := range e.rules {
		out[i] = r.Rule
	}
	return out
}

// rule returns a rule the engine reports itself; the ids are constants.
func (e *Engine) rule(id string) *rule { return e.byID[id] }

// HookMode returns the external checker mode of an agent.
func (e *Engine) HookMode(agent string) HookMode {
	return e.policyOf(agent).hook
}

func (e *Engine) policyOf(agent string) *policy {
	if p, ok := e.agents[agent]; ok {
		return &p
	}
	return &e.def
}

// Scan scans req.Message and applies the policy of req.Agent() for
// req.Direction. It does no I/O and never fails: whatever is wrong with
// the message (invalid JSON, too large, too deep) is a finding of the
// scanner pack, and the verdict says what to do.
func (e *Engine) Scan(req Request) (res Result) {
	dir := req.Direction
	if !dir.valid() {
		dir = Inbound
	}
	p := e.policyOf(req.Agent())
	tab := &p.in
	if dir == Outbound {
		tab = &p.out
	}
	s := e.pool.Get().(*scanner)
	defer func() {
		if r := recover(); r != nil {
			// A bug in the scanner must not take the enforcer down, nor
			// let the message through unscanned.
			res = Result{Verdict: Blocked, Findings: []Finding{{
				Rule: RuleInternalError, Pack: PackScanner, Severity: Critical, Action: Block,
				Detail: fmt.Sprint(r), Count: 1,
			}}}
			return
		}
		s.reset(nil, nil)
		e.pool.Put(s)
	}()
	s.reset(tab, &res)
	s.scanMessage(req.Message)
	if req.External != nil && p.hook != HookOff {
		s.addExternal(req.External, p.hook)
	}
	s.finish(req.Message)
	return res
}

// Check is Scan with the external checker: when the agent's hook mode is
// not off and the local scan does not already block, it asks c (within
// ctx) and merges its answer, its failure handled by the mode (fail-open
// flags, fail-closed blocks). With a nil c it is Scan. The checker's own
// timeout bounds the call; ctx can only shorten it.
func (e *Engine) Check(ctx context.Context, c Checker, req Request) Result {
	req.External = nil
	res := e.Scan(req)
	mode := e.HookMode(req.Agent())
	if c == nil || mode == HookOff || res.Blocked() {
		return res
	}
	ans, err := c.Check(ctx, CheckRequest{
		Version: CheckVersion, Direction: req.Direction, Agent: req.Agent(),
		From: req.From, To: req.To, Message: req.Message,
	})
	req.External = &ExternalResult{Answer: ans, Err: err}
	return e.Scan(req)
}
