package a2ahttp

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/a2aproject/a2a-go/v2/a2a"

	"github.com/tollgate/tollgate/schemas"
)

// TaskID is the A2A task id of hop of run.
func TaskID(run, hop string) a2a.TaskID { return a2a.TaskID(run + "." + hop) }

// ParseTaskID splits a task id into run and hop.
func ParseTaskID(id a2a.TaskID) (run, hop string, ok bool) {
	run, hop, ok = strings.Cut(string(id), ".")
	if !ok || !schemas.ValidID(run) || !schemas.ValidID(hop) {
		return "", "", false
	}
	return run, hop, true
}

// taskState maps a hop's terminal status to an A2A task state.
func taskState(s schemas.TaskState) a2a.TaskState {
	switch s {
	case schemas.StateCompleted:
		return a2a.TaskStateCompleted
	case schemas.StateCanceled:
		return a2a.TaskStateCanceled
	case schemas.StateRejected:
		return a2a.TaskStateRejected
	}
	return a2a.TaskStateFailed
}

// HopState maps an A2A terminal task state to a hop's status (failed for
// any state that is not completed, canceled or rejected).
func HopState(s a2a.TaskState) schemas.TaskState {
	switch s {
	case a2a.TaskStateCompleted:
		return schemas.StateCompleted
	case a2a.TaskStateCanceled:
		return schemas.StateCanceled
	case a2a.TaskStateRejected:
		return schemas.StateRejected
	}
	return schemas.StateFailed
}

// replyTask is the A2A task of a hop answered by reply: its state, the
// callee's message (or its task's status message and artifacts), and the
// usage in the metadata.
func replyTask(run, hop string, reply *schemas.Envelope) *a2a.Task {
	t := &a2a.Task{ID: TaskID(run, hop), ContextID: run, Status: a2a.TaskStatus{State: taskState(reply.Result.Status)}}
	if out := reply.Result.Output; len(out) > 0 {
		var probe struct {
			MessageID string `json:"messageId"`
		}
		_ = json.Unmarshal(out, &probe)
		if probe.MessageID != "" {
			var m a2a.Message
			if json.Unmarshal(out, &m) == nil {
				m.TaskID, m.ContextID = t.ID, run
				t.Status.Message = &m
			}
		} else {
			var inner a2a.Task
			if json.Unmarshal(out, &inner) == nil {
				t.Artifacts = inner.Artifacts
				if inner.Status.Message != nil {
					inner.Status.Message.TaskID, inner.Status.Message.ContextID = t.ID, run
					t.Status.Message = inner.Status.Message
				}
			}
		}
	}
	if reply.Result.Error != "" && t.Status.Message == nil {
		t.Status.Message = &a2a.Message{ID: a2a.NewMessageID(), Role: a2a.MessageRoleAgent, TaskID: t.ID, ContextID: run,
			Parts: a2a.ContentParts{a2a.NewTextPart(reply.Result.Error)}}
	}
	if u := reply.Usage; u != nil {
		t.SetMeta(UsageMetadataKey, usageMeta(u))
	}
	return t
}

func usageMeta(u *schemas.Usage) map[string]any {
	return map[string]any{"input_tokens": u.InputTokens, "output_tokens": u.OutputTokens, "cost_usd": u.CostUSD}
}

// UsageOf reads the usage an A2A server reported under UsageMetadataKey
// in meta; nil when there is none or it is not a usage.
func UsageOf(meta map[string]any) *schemas.Usage {
	raw, ok := meta[UsageMetadataKey]
	if !ok {
		return nil
	}
	b, err := json.Marshal(raw)
	if err != nil {
		return nil
	}
	var u schemas.Usage
	if err := json.Unmarshal(b, &u); err != nil || u.InputTokens < 0 || u.OutputTokens < 0 || u.CostUSD < 0 ||
		u.InputTokens > schemas.MaxTokens || u.OutputTokens > schemas.MaxTokens || u.CostUSD > schemas.MaxCostUSD {
		return nil
	}
	return &u
}

// parentTask reads the task a call is made for from the message's or the
// request's metadata.
func parentTask(req *a2a.SendMessageRequest) (run, hop string, named bool, err error) {
	var v any
	if req.Message != nil && req.Message.Metadata != nil {
		v, named = req.Message.Metadata[ParentTaskKey]
	}
	if !named && req.Metadata != nil {
		v, named = req.Metadata[ParentTaskKey]
	}
	if !named {
		return "", "", false, nil
	}
	s, _ := v.(string)
	run, hop, ok := ParseTaskID(a2a.TaskID(s))
	if !ok {
		return "", "", true, fmt.Errorf("metadata %s %q is not a task id of this gateway (<run>.<hop>)", ParentTaskKey, s)
	}
	return run, hop, true, nil
}
