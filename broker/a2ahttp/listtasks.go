package a2ahttp

import (
	"cmp"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/a2aproject/a2a-go/v2/a2a"

	"github.com/tollgate/tollgate/ledger"
	"github.com/tollgate/tollgate/schemas"
)

// ListTasks page sizes (A2A v1.0: 1 to 100, 50 when not given).
const (
	defaultPageSize = 50
	maxPageSize     = 100
)

// ListTasks implements a2asrv.RequestHandler: the caller's tasks at the
// agent, newest first (in the order the gateway admitted them), from
// gateway state derived from the ledger. With a contextId, the run's
// hops as the ledger has them; without, the task list (see taskList),
// after it has read the ledger as far as it went when the call came. A
// call reads at most TaskListConfig.PerCaller listed tasks and at most
// one ledger event per task it returns (the reply that closed it).
func (g *governed) ListTasks(ctx context.Context, req *a2a.ListTasksRequest) (*a2a.ListTasksResponse, error) {
	c, err := g.who(ctx)
	if err != nil {
		return nil, err
	}
	p, err := newPager(req)
	if err != nil {
		return nil, a2a.NewError(a2a.ErrInvalidParams, err.Error())
	}
	if req.ContextID != "" {
		if !schemas.ValidID(req.ContextID) {
			return nil, a2a.NewError(a2a.ErrInvalidParams, "contextId is not a run id of this gateway")
		}
		hops, err := g.runHops(ctx, req.ContextID, c.caller.ID, c.target)
		if err != nil {
			return nil, a2a.NewError(a2a.ErrInternalError, err.Error())
		}
		slices.SortFunc(hops, func(a, b ledger.Hop) int { return cmp.Compare(b.DecisionStreamSeq, a.DecisionStreamSeq) })
		for i := range hops {
			p.offer(req.ContextID, &hops[i])
		}
	} else {
		if g.s.tasks == nil {
			return nil, a2a.NewError(a2a.ErrUnsupportedOperation, "tollgate: this ingress lists tasks by contextId only (it has no ledger)")
		}
		if err := g.s.tasks.sync(ctx); err != nil {
			g.s.log.Warn("a2a ingress: list tasks", "caller", c.caller.ID, "err", err)
			return nil, a2a.NewError(a2a.ErrInternalError, "tollgate: "+err.Error()+"; try again")
		}
		g.s.tasks.each(c.caller.ID, c.target, func(run string, h *ledger.Hop) bool {
			return h.From != c.caller.ID || h.To != c.target || p.offer(run, h)
		})
	}
	out := &a2a.ListTasksResponse{Tasks: make([]*a2a.Task, 0, len(p.page)), TotalSize: p.total, PageSize: p.size}
	for _, f := range p.page {
		h, err := g.s.cfg.Ingress.Task(ctx, c.caller.ID, f.run, &f.hop)
		if err != nil {
			return nil, a2a.NewError(a2a.ErrInternalError, fmt.Sprintf("tollgate: read task %s: %v", TaskID(f.run, f.hop.ID), err))
		}
		t := taskOf(h)
		if !req.IncludeArtifacts {
			t.Artifacts = nil
		}
		out.Tasks = append(out.Tasks, t)
	}
	if p.more && len(p.page) > 0 {
		out.NextPageToken = pageToken(p.page[len(p.page)-1].hop.DecisionStreamSeq)
	}
	return out, nil
}

// runHops returns the hops of run from caller to agent: from the task
// list when it holds the run's state (caught up with the ledger), or
// else folded from the ledger.
func (g *governed) runHops(ctx context.Context, run, caller, agent string) ([]ledger.Hop, error) {
	if g.s.tasks != nil && g.s.tasks.sync(ctx) == nil {
		if hops, ok := g.s.tasks.runHops(run, caller, agent); ok {
			return hops, nil
		}
	}
	st, err := g.s.cfg.Ingress.Run(ctx, run)
	if err != nil {
		return nil, err
	}
	var out []ledger.Hop
	for _, h := range st.Hops {
		if h.From == caller && h.To == agent {
			out = append(out, *h)
		}
	}
	return out, nil
}

// found is a task a page holds: a copy of its hop as listed.
type found struct {
	run string
	hop ledger.Hop
}

// pager filters tasks offered newest first and keeps one page of them.
type pager struct {
	state  a2a.TaskState
	after  *time.Time
	cursor uint64 // tasks admitted at or after this stream sequence were on earlier pages
	size   int

	page  []found
	total int  // every task the filters keep, on any page
	more  bool // a kept task follows the page
}

// newPager reads the request's filters and paging.
func newPager(req *a2a.ListTasksRequest) (*pager, error) {
	p := &pager{state: req.Status, after: req.StatusTimestampAfter, size: req.PageSize}
	var errs []error
	switch {
	case p.size == 0:
		p.size = defaultPageSize
	case p.size < 1 || p.size > maxPageSize:
		errs = append(errs, fmt.Errorf("pageSize %d: want 1 to %d", req.PageSize, maxPageSize))
	}
	if req.HistoryLength != nil && *req.HistoryLength < 0 {
		errs = append(errs, fmt.Errorf("historyLength %d: want 0 or more", *req.HistoryLength))
	}
	if req.PageToken != "" {
		seq, err := parsePageToken(req.PageToken)
		if err != nil {
			errs = append(errs, err)
		}
		p.cursor = seq
	}
	return p, errors.Join(errs...)
}

// offer shows the pager the next task, newest first; it reports whether
// it wants more. Every task is counted (totalSize); the page keeps those
// after the cursor, up to its size.
func (p *pager) offer(run string, h *ledger.Hop) bool {
	if p.state != a2a.TaskStateUnspecified && hopState(h) != p.state {
		return true
	}
	if p.after != nil && statusTime(h).Before(*p.after) {
		return true
	}
	p.total++
	switch {
	case p.cursor != 0 && h.DecisionStreamSeq >= p.cursor:
	case len(p.page) < p.size:
		p.page = append(p.page, found{run: run, hop: *h})
	default:
		p.more = true
	}
	return true
}

// pageToken is the opaque token of the page after the task admitted at
// stream sequence seq.
func pageToken(seq uint64) string {
	return base64.RawURLEncoding.EncodeToString([]byte("tg1." + strconv.FormatUint(seq, 10)))
}

func parsePageToken(tok string) (uint64, error) {
	errBad := fmt.Errorf("pageToken %.40q is not a page token of this gateway (pass nextPageToken as it came)", tok)
	b, err := base64.RawURLEncoding.Strict().DecodeString(tok)
	if err != nil {
		return 0, errBad
	}
	v, ok := strings.CutPrefix(string(b), "tg1.")
	if !ok {
		return 0, errBad
	}
	seq, err := strconv.ParseUint(v, 10, 64)
	if err != nil || seq == 0 || strconv.FormatUint(seq, 10) != v {
		return 0, errBad
	}
	return seq, nil
}

// hopState is the A2A state of a hop as the ledger has it.
func hopState(h *ledger.Hop) a2a.TaskState {
	switch h.Status {
	case ledger.HopOpen, ledger.HopPending:
		return a2a.TaskStateWorking
	case ledger.HopDenied:
		return a2a.TaskStateRejected
	case ledger.HopTimedOut:
		return a2a.TaskStateFailed
	}
	return taskState(schemas.TaskState(h.Status))
}

// statusTime is when a hop's task reached its state: when the hop was
// closed, or admitted.
func statusTime(h *ledger.Hop) time.Time {
	if !h.ClosedAt.IsZero() {
		return h.ClosedAt
	}
	return h.OpenedAt
}
