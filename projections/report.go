package projections

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/shopspring/decimal"

	"github.com/tollgate/tollgate/projections/internal/store"
)

// Reader answers the reports (cost, call graph, loops) from ClickHouse.
// It is safe for concurrent use.
type Reader struct {
	st *store.Store
}

// NewReader connects to the projection of cfg.
func NewReader(ctx context.Context, cfg Config) (*Reader, error) {
	cfg, err := cfg.resolved()
	if err != nil {
		return nil, err
	}
	st, err := store.Open(ctx, cfg.DSN, cfg.Database)
	if err != nil {
		return nil, err
	}
	v, err := st.SchemaVersion(ctx)
	if err != nil {
		st.Close()
		return nil, err
	}
	if v == 0 {
		st.Close()
		return nil, fmt.Errorf("database %s: %w", cfg.Database, ErrNoProjection)
	}
	return &Reader{st: st}, nil
}

// Close closes the connection.
func (r *Reader) Close() error { return r.st.Close() }

// Filter narrows a report.
type Filter struct {
	// Since keeps hops decided (for loops: runs started) at or after it;
	// zero keeps everything.
	Since time.Time
	// RunID keeps one run; empty keeps every run.
	RunID string
	// Limit bounds the rows; zero means 100.
	Limit int
}

// where returns the filter as SQL conditions (with a leading AND) over a
// time column and run_id, and their arguments.
func (f Filter) where(timeColumn string) (string, []any) {
	var sql strings.Builder
	var args []any
	if !f.Since.IsZero() {
		sql.WriteString(" AND " + timeColumn + " >= ?")
		args = append(args, f.Since.UTC().Truncate(time.Second))
	}
	if f.RunID != "" {
		sql.WriteString(" AND run_id = ?")
		args = append(args, f.RunID)
	}
	return sql.String(), args
}

func (f Filter) limit() int {
	if f.Limit <= 0 {
		return 100
	}
	return f.Limit
}

// Dimension is what a cost report groups by.
type Dimension string

// Cost dimensions.
const (
	// ByAgent groups by the agent that reported the spend: the hop's target.
	ByAgent Dimension = "agent"
	// ByWorkflow groups by the run's workflow.
	ByWorkflow Dimension = "workflow"
	// ByTeam groups by the team of the agent that spent.
	ByTeam Dimension = "team"
	// ByPrincipal groups by the user the run works for (on_behalf_of).
	ByPrincipal Dimension = "principal"
)

// Dimensions lists every cost dimension.
var Dimensions = []Dimension{ByAgent, ByWorkflow, ByTeam, ByPrincipal}

// column is the hops column a dimension groups by.
func (d Dimension) column() (string, error) {
	switch d {
	case ByAgent:
		return "target", nil
	case ByWorkflow:
		return "workflow", nil
	case ByTeam:
		return "target_team", nil
	case ByPrincipal:
		return "principal", nil
	}
	return "", fmt.Errorf("cost dimension %q: want one of %v", string(d), Dimensions)
}

// CostRow is the spend of one agent, workflow, team or principal.
type CostRow struct {
	Key          string  `json:"key"`
	Runs         uint64  `json:"runs"`
	Hops         uint64  `json:"hops"`
	InputTokens  int64   `json:"input_tokens"`
	OutputTokens int64   `json:"output_tokens"`
	Tokens       int64   `json:"tokens"`
	CostUSD      float64 `json:"cost_usd"`
}

// CostBy returns the spend per dimension of dims (Cost for each).
func (r *Reader) CostBy(ctx context.Context, dims []Dimension, f Filter) (map[Dimension][]CostRow, error) {
	out := map[Dimension][]CostRow{}
	for _, d := range dims {
		rows, err := r.Cost(ctx, d, f)
		if err != nil {
			return nil, err
		}
		out[d] = rows
	}
	return out, nil
}

// Cost returns the spend per dim, most expensive first. Spend is what the
// callee reported in its reply, counted on allowed invokes.
func (r *Reader) Cost(ctx context.Context, dim Dimension, f Filter) ([]CostRow, error) {
	col, err := dim.column()
	if err != nil {
		return nil, err
	}
	cond, args := f.where("opened_at")
	rows, err := r.st.Query(ctx, `
SELECT `+col+` AS key, uniqExact(run_id) AS runs, count() AS hop_count,
       sum(input_tokens) AS in_tokens, sum(output_tokens) AS out_tokens, sum(tokens) AS all_tokens,
       sum(cost_usd) AS total_cost
FROM {db}.hops FINAL
WHERE kind = 'invoke' AND decision = 'allowed'`+cond+`
GROUP BY key
ORDER BY total_cost DESC, all_tokens DESC, key
LIMIT `+fmt.Sprint(f.limit()), args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []CostRow
	for rows.Next() {
		var c CostRow
		var cost decimal.Decimal
		if err := rows.Scan(&c.Key, &c.Runs, &c.Hops, &c.InputTokens, &c.OutputTokens, &c.Tokens, &cost); err != nil {
			return nil, fmt.Errorf("cost by %s: %w", dim, err)
		}
		c.CostUSD = cost.InexactFloat64()
		out = append(out, c)
	}
	return out, rows.Err()
}

// Edge is one caller -> target edge of the call graph.
type Edge struct {
	Caller string `json:"caller"`
	Target string `json:"target"`
	Runs   uint64 `json:"runs"`
	// Calls counts invoke decisions, Allowed and Denials split them.
	Calls   uint64 `json:"calls"`
	Allowed uint64 `json:"allowed"`
	Denials uint64 `json:"denials"`
	// Cycles counts calls whose target was already in the ancestry.
	Cycles uint64 `json:"cycles"`
	// Reasons are the denial reasons seen on the edge, sorted.
	Reasons []string `json:"reasons,omitempty"`
	Tokens  int64    `json:"tokens"`
	CostUSD float64  `json:"cost_usd"`
}

// Graph returns the call graph: every edge, most called first.
func (r *Reader) Graph(ctx context.Context, f Filter) ([]Edge, error) {
	cond, args := f.where("opened_at")
	rows, err := r.st.Query(ctx, `
SELECT caller, target, uniqExact(run_id) AS runs, count() AS calls,
       countIf(decision = 'allowed') AS allowed_calls, countIf(decision = 'denied') AS denied_calls,
       countIf(cycle = 1) AS cycle_calls, groupUniqArrayIf(reason, decision = 'denied') AS reasons,
       sum(tokens) AS all_tokens, sum(cost_usd) AS total_cost
FROM {db}.hops FINAL
WHERE kind = 'invoke'`+cond+`
GROUP BY caller, target
ORDER BY calls DESC, caller, target
LIMIT `+fmt.Sprint(f.limit()), args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Edge
	for rows.Next() {
		var e Edge
		var cost decimal.Decimal
		if err := rows.Scan(&e.Caller, &e.Target, &e.Runs, &e.Calls, &e.Allowed, &e.Denials, &e.Cycles, &e.Reasons, &e.Tokens, &cost); err != nil {
			return nil, fmt.Errorf("call graph: %w", err)
		}
		slices.Sort(e.Reasons)
		e.CostUSD = cost.InexactFloat64()
		out = append(out, e)
	}
	return out, rows.Err()
}

// LoopSignal is what points at a loop in one run.
type LoopSignal struct {
	RunID      string    `json:"run_id"`
	Workflow   string    `json:"workflow"`
	Principal  string    `json:"principal"`
	StartedAt  time.Time `json:"started_at"`
	Status     string    `json:"status"`
	Halted     bool      `json:"halted"`
	HaltReason string    `json:"halt_reason,omitempty"`
	HaltLimit  string    `json:"halt_limit,omitempty"`
	// Breaches counts run.limit_breached events.
	Breaches uint32 `json:"breaches"`
	// Invokes counts invoke decisions.
	Invokes uint64 `json:"invokes"`
	// Cycles counts invokes whose target was already in the ancestry;
	// FirstCycleSeq and FirstCycleEdge say where the first one formed.
	Cycles         uint64 `json:"cycles"`
	FirstCycleSeq  uint64 `json:"first_cycle_seq,omitempty"`
	FirstCycleEdge string `json:"first_cycle_edge,omitempty"`
	// MaxDepth is the deepest allowed hop, DepthLimit the run's limit.
	MaxDepth   uint32 `json:"max_depth"`
	DepthLimit uint32 `json:"depth_limit"`
	// DepthDenials and LoopDenials count invokes denied for depth or loop.
	DepthDenials uint64 `json:"depth_denials"`
	LoopDenials  uint64 `json:"loop_denials"`
	// MaxEdgeCalls is how often the most called edge was called.
	MaxEdgeCalls   uint64 `json:"max_edge_calls"`
	MostCalledEdge string `json:"most_called_edge"`
}

// Loops returns the runs with a loop signal, newest first: a cycle, an
// edge called at least repeats times, the depth limit reached, a depth or
// loop denial, a breach, or a halt. With f.RunID it returns that run
// whatever its signals.
func (r *Reader) Loops(ctx context.Context, f Filter, repeats int) ([]LoopSignal, error) {
	cond, args := f.where("started_at")
	if f.RunID == "" {
		cond += ` AND (cycles > 0 OR max_edge_calls >= ? OR (depth_limit > 0 AND max_depth >= depth_limit)
      OR depth_denials > 0 OR loop_denials > 0 OR breaches > 0 OR halted = 1)`
		args = append(args, uint64(max(repeats, 1)))
	}
	rows, err := r.st.Query(ctx, `
SELECT run_id, workflow, principal, started_at, status, halted, halt_reason, halt_limit, breaches,
       invokes, cycles, first_cycle_seq, first_cycle_edge, max_depth, depth_limit, depth_denials,
       loop_denials, max_edge_calls, most_called_edge
FROM {db}.loop_signals
WHERE 1 = 1`+cond+`
ORDER BY started_at DESC, run_id
LIMIT `+fmt.Sprint(f.limit()), args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []LoopSignal
	for rows.Next() {
		var s LoopSignal
		var halted uint8
		if err := rows.Scan(&s.RunID, &s.Workflow, &s.Principal, &s.StartedAt, &s.Status, &halted, &s.HaltReason, &s.HaltLimit,
			&s.Breaches, &s.Invokes, &s.Cycles, &s.FirstCycleSeq, &s.FirstCycleEdge, &s.MaxDepth, &s.DepthLimit,
			&s.DepthDenials, &s.LoopDenials, &s.MaxEdgeCalls, &s.MostCalledEdge); err != nil {
			return nil, fmt.Errorf("loop signals: %w", err)
		}
		s.Halted, s.StartedAt = halted == 1, s.StartedAt.UTC()
		out = append(out, s)
	}
	return out, rows.Err()
}
