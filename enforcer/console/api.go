package console

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/tollgate/tollgate/broker/operator"
	"github.com/tollgate/tollgate/enforcer/policy"
	"github.com/tollgate/tollgate/enforcer/whatif"
	"github.com/tollgate/tollgate/ledger"
	"github.com/tollgate/tollgate/ledger/runtree"
	"github.com/tollgate/tollgate/schemas"
)

// requestTimeout bounds the ledger reads of one request.
const requestTimeout = 30 * time.Second

// defaultSince is how far back the runs list looks unless asked.
const defaultSince = 7 * 24 * time.Hour

// RunRow is a run of the runs list: the ledger's summary of it and the
// badges the list shows.
type RunRow struct {
	*runtree.Summary
	// Looping: the run tried a cycle or tripped a loop limit.
	Looping bool `json:"looping"`
	// AwaitingApproval: hops of the run are held for a human.
	AwaitingApproval bool `json:"awaiting_approval"`
}

func row(s *runtree.Summary) RunRow {
	return RunRow{Summary: s, Looping: s.Cycles > 0 || s.Breach == "cycle" || s.Breach == "max_edge_repeats",
		AwaitingApproval: len(s.Pending) > 0}
}

// RunsJSON is the runs list.
type RunsJSON struct {
	Runs []RunRow `json:"runs"`
	// Total is how many runs matched before the limit.
	Total int `json:"total"`
	// Unreadable counts ledger events that could not be read.
	Unreadable int `json:"unreadable"`
}

// matches reports whether q (lower case) is in one of the run's names.
func matches(s *runtree.Summary, q string) bool {
	if q == "" {
		return true
	}
	for _, f := range append([]string{s.RunID, s.Caller, s.OnBehalfOf, s.Workflow, s.RootAgent, s.Status, s.Breach}, s.Agents...) {
		if strings.Contains(strings.ToLower(f), q) {
			return true
		}
	}
	return false
}

func (s *Server) runs(w http.ResponseWriter, r *http.Request, _ *session) {
	q := r.URL.Query()
	since := time.Now().Add(-defaultSince)
	switch v := q.Get("since"); v {
	case "":
	case "all":
		since = time.Time{}
	default:
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("since %q: want a duration such as 24h, or all", v))
			return
		}
		since = time.Now().Add(-d)
	}
	var sel runtree.Selection
	for st := range strings.SplitSeq(q.Get("status"), ",") {
		if st == "" {
			continue
		}
		if !slices.Contains(runtree.Statuses(), st) {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("status %q: want one of %s", st, strings.Join(runtree.Statuses(), ", ")))
			return
		}
		sel.Statuses = append(sel.Statuses, st)
	}
	limit := 500
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			writeError(w, http.StatusBadRequest, "limit: want a positive number")
			return
		}
		limit = n
	}
	ctx, cancel := context.WithTimeout(r.Context(), requestTimeout)
	defer cancel()
	all, unreadable, err := runtree.List(ctx, s.deps.Ledger, since)
	if err != nil {
		writeError(w, http.StatusBadGateway, "console: read the ledger: "+err.Error())
		return
	}
	search := strings.ToLower(strings.TrimSpace(q.Get("q")))
	out := RunsJSON{Runs: []RunRow{}, Unreadable: unreadable}
	for _, sum := range runtree.Select(all, sel) {
		if matches(sum, search) {
			out.Runs = append(out.Runs, row(sum))
		}
	}
	out.Total = len(out.Runs)
	if len(out.Runs) > limit {
		out.Runs = out.Runs[:limit]
	}
	writeJSON(w, http.StatusOK, out)
}

// TimelineEvent is one event of a run, for the time slider.
type TimelineEvent struct {
	Seq   uint64            `json:"seq"`
	Type  schemas.EventType `json:"type"`
	At    time.Time         `json:"at"`
	HopID string            `json:"hop_id,omitempty"`
}

// RunJSON is a run page: the run's tree as the fold builds it from the
// verified events (as of an event with ?at), its call graph, the
// verification, and every event for the time slider.
type RunJSON struct {
	*runtree.Run
	Graph        *runtree.Graph       `json:"graph"`
	Verification *ledger.Verification `json:"verification"`
	Timeline     []TimelineEvent      `json:"timeline"`
	// TraceURL is the tracing UI's URL template ({trace_id}, {span_id}).
	TraceURL string `json:"trace_url,omitempty"`
	// Payloads says whether the hops carry their input and output.
	Payloads bool `json:"payloads"`
}

// readRun reads and verifies a run; it answers the request itself (and
// returns nil) when it cannot.
func (s *Server) readRun(w http.ResponseWriter, r *http.Request) *ledger.Verified {
	run := r.PathValue("run")
	if !validRun(run) {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("%q is not a run id", run))
		return nil
	}
	ctx, cancel := context.WithTimeout(r.Context(), requestTimeout)
	defer cancel()
	v, err := s.deps.Ledger.ReadVerified(ctx, run, s.deps.SigningKeys())
	if errors.Is(err, ledger.ErrNoRun) {
		writeError(w, http.StatusNotFound, "run "+run+" is not in the ledger")
		return nil
	}
	if err != nil {
		writeError(w, http.StatusBadGateway, "console: read the ledger: "+err.Error())
		return nil
	}
	return v
}

// validRun reports whether run is a run token: a run id, or the entry of a
// rejected submission (ledger.RejectedPrefix and an id). Nothing else may
// reach a ledger subject: a wildcard there would read other runs.
func validRun(run string) bool {
	if rest, ok := strings.CutPrefix(run, ledger.RejectedPrefix); ok {
		return schemas.ValidID(rest)
	}
	return schemas.ValidID(run)
}

func (s *Server) run(w http.ResponseWriter, r *http.Request, _ *session) {
	v := s.readRun(w, r)
	if v == nil {
		return
	}
	var tree *runtree.Run
	var err error
	if at := r.URL.Query().Get("at"); at != "" {
		seq, perr := strconv.ParseUint(at, 10, 64)
		if perr != nil {
			writeError(w, http.StatusBadRequest, "at: want an event seq")
			return
		}
		tree, err = runtree.FromVerifiedAsOf(v, seq)
		if err != nil {
			writeError(w, http.StatusBadRequest, err.Error())
			return
		}
	} else if tree, err = runtree.FromVerified(v); err != nil {
		writeError(w, http.StatusInternalServerError, err.Error())
		return
	}
	cfg := s.cfg()
	if cfg.Payloads {
		tree.LoadPayloads()
	}
	out := RunJSON{Run: tree, Graph: tree.Graph(), Verification: &v.Verification, TraceURL: cfg.TraceURL, Payloads: cfg.Payloads,
		Timeline: []TimelineEvent{}}
	for _, e := range v.Entries() {
		out.Timeline = append(out.Timeline, TimelineEvent{Seq: e.Event.Seq, Type: e.Event.Type, At: e.Event.At, HopID: e.Event.HopID})
	}
	writeJSON(w, http.StatusOK, out)
}

// PoliciesJSON lists the candidate policy sets the gateway knows.
type PoliciesJSON struct {
	Sets []PolicySetJSON `json:"sets"`
}

// PolicySetJSON is a candidate set and its files.
type PolicySetJSON struct {
	Name  string   `json:"name"`
	Files []string `json:"files"`
}

func (s *Server) policySources() ([]PolicySource, error) {
	if s.deps.Policies == nil {
		return nil, nil
	}
	return s.deps.Policies()
}

func (s *Server) policies(w http.ResponseWriter, _ *http.Request, _ *session) {
	srcs, err := s.policySources()
	if err != nil {
		writeError(w, http.StatusInternalServerError, "console: candidate policies: "+err.Error())
		return
	}
	out := PoliciesJSON{Sets: []PolicySetJSON{}}
	for _, src := range srcs {
		ps := PolicySetJSON{Name: src.Name, Files: []string{}}
		for _, f := range src.Files {
			ps.Files = append(ps.Files, f.Name)
		}
		out.Sets = append(out.Sets, ps)
	}
	writeJSON(w, http.StatusOK, out)
}

// WhatIfRequest names the candidate set: one the gateway knows (Set), or
// uploaded files.
type WhatIfRequest struct {
	Set   string       `json:"set,omitempty"`
	Files []UploadFile `json:"files,omitempty"`
}

// UploadFile is an uploaded Cedar file.
type UploadFile struct {
	Name string `json:"name"`
	Text string `json:"text"`
}

// WhatIfJSON is a what-if: the report of enforcer/whatif.
type WhatIfJSON struct {
	*whatif.Report
	Verification *ledger.Verification `json:"verification"`
}

// maxUpload bounds an uploaded policy set.
const maxUpload = 2 << 20

func (s *Server) whatIf(w http.ResponseWriter, r *http.Request, _ *session) {
	var req WhatIfRequest
	if !decodeBody(w, r, &req, maxUpload) {
		return
	}
	var files []policy.File
	source := req.Set
	switch {
	case req.Set != "" && len(req.Files) == 0:
		srcs, err := s.policySources()
		if err != nil {
			writeError(w, http.StatusInternalServerError, "console: candidate policies: "+err.Error())
			return
		}
		i := slices.IndexFunc(srcs, func(p PolicySource) bool { return p.Name == req.Set })
		if i < 0 {
			writeError(w, http.StatusNotFound, fmt.Sprintf("no candidate policy set %q (admin.console.policy_dirs)", req.Set))
			return
		}
		files = srcs[i].Files
	case req.Set == "" && len(req.Files) > 0:
		var names []string
		for _, f := range req.Files {
			files = append(files, policy.File{Name: "upload/" + f.Name, Src: []byte(f.Text)})
			names = append(names, f.Name)
		}
		source = "uploaded " + strings.Join(names, ", ")
	default:
		writeError(w, http.StatusBadRequest, "what-if: name a set the gateway knows, or upload files, not both")
		return
	}
	set, err := policy.Compile(files)
	if err != nil {
		writeError(w, http.StatusUnprocessableEntity, "candidate policies: "+err.Error())
		return
	}
	v := s.readRun(w, r)
	if v == nil {
		return
	}
	if !v.OK() {
		writeError(w, http.StatusConflict, "refusing a what-if on a run that fails verification: "+v.Summary())
		return
	}
	rep, err := whatif.Evaluate(v.RunID, v.Records(), set, whatif.Options{Identities: s.deps.Identities(), Source: source})
	if err != nil {
		writeError(w, http.StatusUnprocessableEntity, err.Error())
		return
	}
	writeJSON(w, http.StatusOK, WhatIfJSON{Report: rep, Verification: &v.Verification})
}

// AnswerRequest is an operator's answer to a hop held for approval: a
// note (required to reject: the caller is told it).
type AnswerRequest struct {
	Note string `json:"note"`
}

// answer approves or rejects a hop held for approval with the operator's
// signed command (broker/operator, as tollgate approve/reject sends it).
func (s *Server) answer(approve bool) func(http.ResponseWriter, *http.Request, *session) {
	return func(w http.ResponseWriter, r *http.Request, ss *session) {
		if ss.role != RoleOperator || ss.key == nil {
			writeError(w, http.StatusForbidden, ErrForbidden.Error()+": log in with an operator's key to answer a held hop")
			return
		}
		var req AnswerRequest
		if !decodeBody(w, r, &req, 8<<10) {
			return
		}
		run, hop := r.PathValue("run"), r.PathValue("hop")
		if !schemas.ValidID(run) || !schemas.ValidID(hop) {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("%q / %q: not a run and hop id", run, hop))
			return
		}
		c := s.asOperator(w, ss)
		if c == nil {
			return
		}
		defer c.Close()
		ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
		defer cancel()
		var reply *schemas.ApprovalReply
		var err error
		if approve {
			reply, err = c.Approve(ctx, run, hop, req.Note)
		} else {
			reply, err = c.Reject(ctx, run, hop, req.Note)
		}
		if writeOperatorError(w, err, http.StatusBadRequest) {
			return
		}
		s.log.Info("console answer", "run", run, "hop", hop, "operator", ss.name, "approve", approve)
		writeJSON(w, http.StatusOK, reply)
	}
}

// HaltRequest is an operator's halt.
type HaltRequest struct {
	Reason string `json:"reason"`
}

func (s *Server) halt(w http.ResponseWriter, r *http.Request, ss *session) {
	if ss.role != RoleOperator || ss.key == nil {
		writeError(w, http.StatusForbidden, ErrForbidden.Error()+": log in with an operator's key to halt a run")
		return
	}
	var req HaltRequest
	if !decodeBody(w, r, &req, 8<<10) {
		return
	}
	run := r.PathValue("run")
	if !schemas.ValidID(run) {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("%q is not a run id", run))
		return
	}
	if strings.TrimSpace(req.Reason) == "" {
		writeError(w, http.StatusBadRequest, "a halt needs a reason: the ledger and the alert record it")
		return
	}
	c := s.asOperator(w, ss)
	if c == nil {
		return
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
	defer cancel()
	reply, err := c.Halt(ctx, run, req.Reason)
	if writeOperatorError(w, err, http.StatusBadGateway) {
		return
	}
	s.log.Info("console halt", "run", run, "operator", ss.name, "reason", req.Reason, "already", reply.Already)
	writeJSON(w, http.StatusOK, reply)
}

// asOperator connects to the bus as the session's operator, with its key.
// When it cannot, it answers the request itself and returns nil.
func (s *Server) asOperator(w http.ResponseWriter, ss *session) *operator.Client {
	oc := s.deps.OperatorConfig()
	oc.ID, oc.Key = ss.name, ss.key
	c, err := operator.Connect(oc)
	if err != nil {
		writeError(w, http.StatusBadGateway, "console: connect as operator "+ss.name+": "+err.Error())
		return nil
	}
	return c
}

// writeOperatorError answers the failure of an operator's command, if err
// is one, and reports whether it was: the gateway refused it (409), gave
// no answer in time (504), or it failed otherwise (status).
func writeOperatorError(w http.ResponseWriter, err error, status int) bool {
	switch {
	case err == nil:
		return false
	case errors.Is(err, operator.ErrRefused):
		writeError(w, http.StatusConflict, err.Error())
	case errors.Is(err, operator.ErrNoAnswer):
		writeError(w, http.StatusGatewayTimeout, err.Error())
	default:
		writeError(w, status, err.Error())
	}
	return true
}
