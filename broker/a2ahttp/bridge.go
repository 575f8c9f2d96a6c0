package a2ahttp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/a2aproject/a2a-go/v2/a2a"
	"github.com/a2aproject/a2a-go/v2/a2aclient"
	"github.com/a2aproject/a2a-go/v2/a2aclient/agentcard"
	"github.com/a2aproject/a2a-go/v2/a2acompat/a2av0"

	"github.com/tollgate/tollgate/broker/agent"
	"github.com/tollgate/tollgate/schemas"
)

// BridgeConfig puts an A2A server behind the gateway as a registered
// agent.
type BridgeConfig struct {
	// Agent is the agent's bus identity: its id, key and where the bus is.
	// Its Handler is the bridge's.
	Agent agent.Config
	// ServerURL is the A2A server's base URL; its card is read from
	// /.well-known/agent-card.json there (A2A v1.0 or v0.3).
	ServerURL string
	// HTTPClient calls the server. Default: a client with no timeout
	// (tasks are bounded by the hop's deadline).
	HTTPClient *http.Client
	// Logger receives the bridge's logs. Default: discard.
	Logger *slog.Logger
}

// Bridge consumes an agent's deliveries and calls its A2A server with
// each task: the reply is the server's result, with the usage it
// reported; a cancel of the hop cancels the server's task.
type Bridge struct {
	cfg    BridgeConfig
	card   *a2a.AgentCard
	client *a2aclient.Client
	agent  *agent.Client
	log    *slog.Logger
}

// StartBridge reads the server's card, connects the agent and starts
// serving its tasks.
func StartBridge(ctx context.Context, cfg BridgeConfig) (*Bridge, error) {
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{}
	}
	b := &Bridge{cfg: cfg, log: cfg.Logger}
	if b.log == nil {
		b.log = slog.New(slog.DiscardHandler)
	}
	resolver := &agentcard.Resolver{Client: cfg.HTTPClient, CardParser: a2av0.NewAgentCardParser()}
	card, err := resolver.Resolve(ctx, cfg.ServerURL)
	if err != nil {
		return nil, fmt.Errorf("bridge %s: read the card of %s: %w", cfg.Agent.ID, cfg.ServerURL, err)
	}
	b.card = card
	b.client, err = a2aclient.NewFromCard(ctx, card,
		a2aclient.WithJSONRPCTransport(cfg.HTTPClient),
		a2aclient.WithRESTTransport(cfg.HTTPClient),
		a2av0.WithJSONRPCTransport(a2av0.JSONRPCTransportConfig{Client: cfg.HTTPClient}))
	if err != nil {
		return nil, fmt.Errorf("bridge %s: no transport this bridge speaks in the card of %s: %w", cfg.Agent.ID, cfg.ServerURL, err)
	}
	ac := cfg.Agent
	ac.Handler = b.serve
	if b.agent, err = agent.Connect(ctx, ac); err != nil {
		return nil, err
	}
	return b, nil
}

// Card is the server's card, as read.
func (b *Bridge) Card() *a2a.AgentCard { return b.card }

// Close stops serving; running tasks are cancelled.
func (b *Bridge) Close() {
	b.agent.Close()
	_ = b.client.Destroy()
}

// serve runs one task on the server.
func (b *Bridge) serve(ctx context.Context, t *agent.Task) (*agent.Result, error) {
	msg := *t.Message
	// The message id is the hop's: a task redelivered after a crash sends
	// the server the same message, which a server that deduplicates by
	// message id recognises.
	msg.ID = "tollgate-" + t.Context.HopID
	msg.TaskID, msg.ContextID = "", ""
	msg.Metadata = map[string]any{}
	for k, v := range t.Message.Metadata {
		msg.Metadata[k] = v
	}
	delete(msg.Metadata, ParentTaskKey)
	msg.Metadata[TaskKey] = string(TaskID(t.Context.RunID, t.Context.HopID))
	req := &a2a.SendMessageRequest{Message: &msg}
	var final a2a.Event
	var taskID a2a.TaskID
	if b.card.Capabilities.Streaming {
		for ev, err := range b.client.SendStreamingMessage(ctx, req) {
			if err != nil {
				return b.failed(ctx, taskID, err)
			}
			if id := ev.TaskInfo().TaskID; id != "" {
				taskID = id
			}
			final = merge(final, ev)
		}
	} else {
		res, err := b.client.SendMessage(ctx, req)
		if err != nil {
			return b.failed(ctx, taskID, err)
		}
		final = res
	}
	return b.result(ctx, final)
}

// failed is the result of a call that did not end with a result: the
// hop's cancel (the server's task is cancelled too) or an error.
func (b *Bridge) failed(ctx context.Context, task a2a.TaskID, err error) (*agent.Result, error) {
	if ctx.Err() != nil {
		if task != "" {
			cctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if _, cerr := b.client.CancelTask(cctx, &a2a.CancelTaskRequest{ID: task}); cerr != nil {
				b.log.Warn("bridge: cancel the server's task", "task", task, "err", cerr)
			}
		}
		return &agent.Result{Status: schemas.StateCanceled, Error: "cancelled"}, nil
	}
	return &agent.Result{Status: schemas.StateFailed, Error: fmt.Sprintf("A2A server %s: %v", b.cfg.ServerURL, err)}, nil
}

// merge folds a streamed event into what is known of the task so far.
func merge(cur, ev a2a.Event) a2a.Event {
	switch e := ev.(type) {
	case *a2a.Task, *a2a.Message:
		return ev
	case *a2a.TaskStatusUpdateEvent:
		t, _ := cur.(*a2a.Task)
		if t == nil {
			t = &a2a.Task{ID: e.TaskID, ContextID: e.ContextID}
		}
		t.Status = e.Status
		for k, v := range e.Metadata {
			t.SetMeta(k, v)
		}
		return t
	case *a2a.TaskArtifactUpdateEvent:
		t, _ := cur.(*a2a.Task)
		if t == nil {
			t = &a2a.Task{ID: e.TaskID, ContextID: e.ContextID}
		}
		if e.Artifact != nil {
			t.Artifacts = append(t.Artifacts, e.Artifact)
		}
		return t
	}
	return cur
}

// result is the reply of a finished call: a message answers completed; a
// task answers with its state, its artifacts' and status message's parts,
// and the usage in its (or its message's) metadata.
func (b *Bridge) result(ctx context.Context, final a2a.Event) (*agent.Result, error) {
	switch r := final.(type) {
	case *a2a.Message:
		out := *r
		out.TaskID, out.ContextID = "", ""
		return &agent.Result{Status: schemas.StateCompleted, Output: &out, Usage: UsageOf(r.Metadata)}, nil
	case *a2a.Task:
		if !r.Status.State.Terminal() {
			if ctx.Err() != nil {
				return b.failed(ctx, r.ID, ctx.Err())
			}
			return &agent.Result{Status: schemas.StateFailed, Error: fmt.Sprintf("the A2A server left task %s %s", r.ID, r.Status.State)}, nil
		}
		out := &a2a.Message{ID: a2a.NewMessageID(), Role: a2a.MessageRoleAgent}
		for _, a := range r.Artifacts {
			out.Parts = append(out.Parts, a.Parts...)
		}
		usage := UsageOf(r.Metadata)
		if m := r.Status.Message; m != nil {
			out.Parts = append(out.Parts, m.Parts...)
			if usage == nil {
				usage = UsageOf(m.Metadata)
			}
		}
		res := &agent.Result{Status: HopState(r.Status.State), Usage: usage}
		if len(out.Parts) > 0 {
			res.Output = out
		}
		if res.Status != schemas.StateCompleted && r.Status.Message != nil {
			res.Error = agent.MessageText(r.Status.Message)
		}
		return res, nil
	}
	return nil, errors.New("the A2A server's stream ended without a task or message")
}
