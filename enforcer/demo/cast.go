package demo

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"

	"github.com/tollgate/tollgate/broker/agent"
	"github.com/tollgate/tollgate/schemas"
)

// User is the demo's user: he starts the run at the orchestrator.
const User = "tomas"

// member is one agent of the demo's cast.
type member struct {
	id, team, workflow string
	tags               []string
	handler            func(say func(string, ...any)) agent.Handler
}

// cast is the demo's agents: the orchestrator delegates to research,
// writer and critic; research re-invokes the orchestrator.
func cast() []member {
	return []member{
		{id: "orchestrator", team: "platform", workflow: "research-brief", tags: []string{"entry", "orchestrator"}, handler: orchestrator},
		{id: "research", team: "research", handler: research},
		{id: "writer", team: "content", handler: worker("drafted the brief", schemas.Usage{InputTokens: 1800, OutputTokens: 900, CostUSD: 0.027})},
		{id: "critic", team: "content", handler: worker("reviewed the draft: two fixes", schemas.Usage{InputTokens: 900, OutputTokens: 200, CostUSD: 0.011})},
	}
}

// orchestrator plans the brief: research, then writing, then review.
func orchestrator(say func(string, ...any)) agent.Handler {
	return func(ctx context.Context, t *agent.Task) (*agent.Result, error) {
		topic := agent.MessageText(t.Message)
		var notes []string
		for _, step := range []struct{ to, ask string }{
			{"research", "Find sources: " + topic},
			{"writer", "Draft the brief: " + topic},
			{"critic", "Review the draft: " + topic},
		} {
			r, err := t.Delegate(ctx, step.to, agent.UserText(step.ask))
			if err != nil {
				return &agent.Result{Usage: &schemas.Usage{InputTokens: 1200, OutputTokens: 300, CostUSD: 0.015}},
					fmt.Errorf("%s failed: %w", step.to, err)
			}
			notes = append(notes, step.to+": "+agent.MessageText(r.Output))
		}
		return &agent.Result{
			Output: agent.AgentText(fmt.Sprintf("brief ready (%d steps)", len(notes))),
			Usage:  &schemas.Usage{InputTokens: 1200, OutputTokens: 300, CostUSD: 0.015},
		}, nil
	}
}

// research hits a transient error on its search backend and, as the buggy
// retry logic of the incident does, re-invokes the orchestrator to re-plan.
func research(say func(string, ...any)) agent.Handler {
	var calls atomic.Int64
	return func(ctx context.Context, t *agent.Task) (*agent.Result, error) {
		n := calls.Add(1)
		say("research (depth %d): search backend timed out; re-invoking the orchestrator to re-plan", t.Context.Depth)
		_, err := t.Delegate(ctx, "orchestrator", agent.UserText("retry: search failed, re-plan the brief"))
		var denied *agent.DeniedError
		switch {
		case errors.As(err, &denied):
			say("research (depth %d): re-invocation denied by the gateway: %s (%s)", t.Context.Depth, denied.Denial.Reason, denied.Denial.Message)
		case err != nil:
			say("research (depth %d): re-invocation failed: %v", t.Context.Depth, err)
		}
		return &agent.Result{
			Output: agent.AgentText(fmt.Sprintf("found 7 sources (attempt %d)", n)),
			Usage:  &schemas.Usage{InputTokens: 2400, OutputTokens: 600, CostUSD: 0.030},
		}, nil
	}
}

func worker(out string, usage schemas.Usage) func(func(string, ...any)) agent.Handler {
	return func(func(string, ...any)) agent.Handler {
		return func(ctx context.Context, t *agent.Task) (*agent.Result, error) {
			u := usage
			return &agent.Result{Output: agent.AgentText(out), Usage: &u}, nil
		}
	}
}

// loopCast is the loop scenario's cast: research's buggy retry logic
// first hammers its paid search backend, then re-invokes the orchestrator.
// The burst of spend is what the spend-spike alert catches.
func loopCast() []member {
	var out []member
	for _, m := range cast() {
		if m.id == "research" {
			m.handler = loopResearch
		}
		out = append(out, m)
	}
	return append(out, member{id: "search", team: "research",
		handler: worker("3 results", schemas.Usage{InputTokens: 400, OutputTokens: 100, CostUSD: 0.03})})
}

// searchRetries is how often research retries its search in the loop.
const searchRetries = 6

// loopResearch retries its search in a tight loop (each call billed), then
// re-invokes the orchestrator, as research does in the incident.
func loopResearch(say func(string, ...any)) agent.Handler {
	reinvoke := research(say)
	return func(ctx context.Context, t *agent.Task) (*agent.Result, error) {
		for i := 1; i <= searchRetries; i++ {
			if _, err := t.Delegate(ctx, "search", agent.UserText(fmt.Sprintf("search again (try %d)", i))); err != nil {
				say("research: search try %d: %v", i, err)
			}
		}
		say("research (depth %d): retried its paid search %d times in a row", t.Context.Depth, searchRetries)
		return reinvoke(ctx, t)
	}
}
