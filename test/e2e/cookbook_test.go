package e2e_test

import (
	"cmp"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tollgate/tollgate/broker"
	"github.com/tollgate/tollgate/ledger"
	"github.com/tollgate/tollgate/schemas"
)

// cookbookDir holds the analysts' queries.
const cookbookDir = "../../deploy/clickhouse/queries"

// paramRe matches a ClickHouse query parameter, {name:Type}.
var paramRe = regexp.MustCompile(`\{([a-z_]+):([A-Za-z0-9]+)\}`)

// bind substitutes the query parameters the way clickhouse-client
// --param_<name> does on current releases; ClickHouse 18.16 has no query
// parameters, so the test inlines them as typed literals.
func bind(t *testing.T, q string, params map[string]any) string {
	t.Helper()
	return paramRe.ReplaceAllStringFunc(q, func(m string) string {
		sub := paramRe.FindStringSubmatch(m)
		name, typ := sub[1], sub[2]
		v, ok := params[name]
		if !ok {
			t.Fatalf("no value for parameter %s", m)
		}
		switch typ {
		case "String":
			return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(v.(string)) + "'"
		case "DateTime":
			return "toDateTime('" + v.(time.Time).UTC().Format(time.DateTime) + "', 'UTC')"
		case "Date":
			return "toDate('" + v.(time.Time).UTC().Format(time.DateOnly) + "')"
		case "UInt32", "UInt64", "Int64":
			return fmt.Sprint(v)
		}
		t.Fatalf("parameter %s: type %s not handled by the test", m, typ)
		return ""
	})
}

// documentedParams returns the {name:Type} parameters a query's header
// comment documents, and checks the header says what the query answers.
func documentedParams(t *testing.T, src string) []string {
	t.Helper()
	lines := strings.Split(src, "\n")
	if !strings.HasPrefix(lines[0], "-- ") || !strings.Contains(lines[0], ":") {
		t.Errorf("the first line must say what the query answers (-- Title: ...), got %q", lines[0])
	}
	var params []string
	for _, l := range lines {
		if !strings.HasPrefix(l, "--") {
			break
		}
		if m := regexp.MustCompile(`^--\s+(\{[a-z_]+:[A-Za-z0-9]+\})\s+\S`).FindStringSubmatch(l); m != nil {
			params = append(params, m[1])
		}
	}
	return params
}

// TestCookbook runs every query of deploy/clickhouse/queries against the
// projection of the governed scenario and checks the rows it returns.
// Every query must have its expected rows here, and its header must say
// what it answers and document each of its parameters.
func TestCookbook(t *testing.T) {
	s := runScenario(t, nil)
	startProjector(t, s.g, s.db.Config)
	waitCaughtUp(t, s.g, broker.ProjectorConsumer)

	ctx := ctxT(t, 30*time.Second)
	loop, err := s.g.Ledger.Read(ctx, s.looped)
	if err != nil {
		t.Fatal(err)
	}
	loopState, err := ledger.Fold(s.looped, loop)
	if err != nil {
		t.Fatal(err)
	}
	if len(loopState.Breaches) != 1 {
		t.Fatalf("the looping run recorded breaches %+v, want one", loopState.Breaches)
	}
	breach := loopState.Breaches[0]
	day := dump(t, s.db.Conn, "SELECT DISTINCT day FROM hops FINAL")
	if len(day) != 1 {
		t.Skipf("the scenario spans midnight (days %v); run it again", day)
	}
	since := time.Now().Add(-time.Hour)

	// Denials and answered calls, straight from the ledger.
	denials, answered, maxLatency := denialsAndLatencies(t, s)

	cases := map[string]struct {
		params map[string]any
		want   [][]string
		check  func(t *testing.T, rows [][]string)
	}{
		"top_spenders.sql": {
			params: map[string]any{"since": since, "top": 2},
			want: [][]string{
				{"research", "3", "4", "12000", "0.12"},
				{"orchestrator", "3", "5", "7500", "0.075"},
			},
		},
		"cost_per_workflow.sql": {
			params: map[string]any{"since": since},
			want:   [][]string{{day[0][0], "research-brief", "3", "11", "23300", "0.233"}},
		},
		"cost_per_team_and_principal.sql": {
			params: map[string]any{"since": since},
			want: [][]string{
				{"research", "tomas", "3", "4", "12000", "0.12"},
				{"platform", "tomas", "3", "5", "7500", "0.075"},
				{"content", "tomas", "1", "2", "3800", "0.038"},
			},
		},
		"edges_most_denied.sql": {
			params: map[string]any{"since": since, "top": 10},
			check: func(t *testing.T, rows [][]string) {
				if len(rows) != 2 {
					t.Fatalf("rows %v, want the two denied edges", rows)
				}
				if r := rows[0]; r[0] != "orchestrator" || r[1] != "research" || r[2] != "5" || r[3] != "1" || r[4] != "[depth]" {
					t.Errorf("first edge %v, want orchestrator -> research: 5 calls, 1 denied for depth", r)
				}
				if r := rows[1]; !slices.Equal(r, []string{"research", "critic", "1", "1", "[policy]", "[research-may-not-call-critic]"}) {
					t.Errorf("second edge %v, want research -> critic denied by policy", r)
				}
			},
		},
		"looping_runs.sql": {
			params: map[string]any{"since": since},
			check: func(t *testing.T, rows [][]string) {
				want := []string{s.looped, "4", "research", "orchestrator", "2", "[tomas orchestrator research]", "allowed", "", "4", "halted"}
				if len(rows) != 1 || !slices.Equal(rows[0][:len(want)], want) || rows[0][len(want)] == "" {
					t.Errorf("rows %v\nwant one row %v and the halt reason", rows, want)
				}
			},
		},
		"halted_runs.sql": {
			params: map[string]any{"since": since},
			want: [][]string{{s.looped, "research-brief", "tomas", "gateway", breach.Limit, "5", fmt.Sprint(loopState.Denied),
				breach.Limit, fmt.Sprint(breach.Value), fmt.Sprint(breach.Bound), breach.From, breach.To, breach.Action}},
		},
		"run_call_graph.sql": {
			params: map[string]any{"run_id": s.denied},
			want: [][]string{
				{"tomas", "orchestrator", "1", "1", "0", "0", "1500", "0.015"},
				{"orchestrator", "research", "1", "1", "0", "0", "3000", "0.03"},
				{"research", "critic", "1", "0", "1", "0", "0", "0"},
			},
		},
		"denials_by_reason.sql": {
			params: map[string]any{"since": since},
			want:   denials,
		},
		"slowest_edges.sql": {
			params: map[string]any{"since": since, "top": 10},
			check: func(t *testing.T, rows [][]string) {
				got := map[string]string{}
				for _, r := range rows {
					var p50, p95 float64
					var maxMS int64
					if _, err := fmt.Sscan(strings.Join(r[3:], " "), &p50, &p95, &maxMS); err != nil {
						t.Fatal(err)
					}
					edge := r[0] + " -> " + r[1]
					got[edge] = r[2]
					if p50 > p95 || p95 > float64(maxMS) || maxMS != maxLatency[edge] {
						t.Errorf("%s: p50 %g p95 %g max %d; the ledger's max latency is %d", edge, p50, p95, maxMS, maxLatency[edge])
					}
				}
				if fmt.Sprint(got) != fmt.Sprint(answered) {
					t.Errorf("answered calls per edge %v, ledger %v", got, answered)
				}
			},
		},
	}

	files, err := filepath.Glob(filepath.Join(cookbookDir, "*.sql"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no cookbook queries in %s: %v", cookbookDir, err)
	}
	for _, f := range files {
		name := filepath.Base(f)
		t.Run(name, func(t *testing.T) {
			c, ok := cases[name]
			if !ok {
				t.Fatalf("%s has no expected rows in this test: add them", name)
			}
			delete(cases, name)
			src, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			documented := documentedParams(t, string(src))
			used := slices.Compact(slices.Sorted(slices.Values(paramRe.FindAllString(string(src), -1))))
			var body []string
			for _, p := range used {
				if !slices.Contains(documented, p) {
					body = append(body, p)
				}
			}
			if len(body) > 0 {
				t.Errorf("parameters %v are used but not documented in the header", body)
			}
			rows := dump(t, s.db.Conn, bind(t, string(src), c.params))
			if c.check != nil {
				c.check(t, rows)
				return
			}
			if fmt.Sprint(rows) != fmt.Sprint(c.want) {
				t.Errorf("rows\n got %v\nwant %v", rows, c.want)
			}
		})
	}
	for name := range cases {
		t.Errorf("expected rows for %s, which is not in %s", name, cookbookDir)
	}
}

// denialsAndLatencies reads the scenario's ledger: the denials by reason
// and kind as denials_by_reason.sql lists them, and per invoke edge the
// calls answered and the longest latency.
func denialsAndLatencies(t *testing.T, s *scenario) ([][]string, map[string]string, map[string]int64) {
	t.Helper()
	type key struct{ reason, kind string }
	type count struct {
		n, withoutRun int
		callers       map[string]bool
	}
	byReason := map[key]*count{}
	answered := map[string]int{}
	maxLatency := map[string]int64{}
	ctx := ctxT(t, 30*time.Second)
	for _, run := range ledgerRuns(t, s.g) {
		recs, err := s.g.Ledger.Read(ctx, run)
		if err != nil {
			t.Fatal(err)
		}
		st, err := ledger.Fold(run, recs)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range recs {
			data, err := r.Event.DecodeData()
			if err != nil {
				t.Fatal(err)
			}
			d, ok := data.(*schemas.HopDecision)
			if !ok || r.Event.Type != schemas.EventHopDenied {
				continue
			}
			k := key{string(d.Reason), string(d.Kind)}
			if byReason[k] == nil {
				byReason[k] = &count{callers: map[string]bool{}}
			}
			byReason[k].n++
			byReason[k].callers[d.From] = true
			if !st.Started {
				byReason[k].withoutRun++
			}
		}
		for _, h := range st.Hops {
			if h.Status == ledger.HopDenied || h.Status == ledger.HopOpen {
				continue
			}
			edge := h.From + " -> " + h.To
			answered[edge]++
			maxLatency[edge] = max(maxLatency[edge], latencyOf(t, recs, h))
		}
	}
	keys := slices.Collect(func(yield func(key) bool) {
		for k := range byReason {
			if !yield(k) {
				return
			}
		}
	})
	slices.SortFunc(keys, func(a, b key) int {
		return cmp.Or(cmp.Compare(byReason[b].n, byReason[a].n), cmp.Compare(a.reason, b.reason), cmp.Compare(a.kind, b.kind))
	})
	var rows [][]string
	for _, k := range keys {
		c := byReason[k]
		rows = append(rows, []string{k.reason, k.kind, fmt.Sprint(c.n), fmt.Sprint(c.withoutRun), fmt.Sprint(len(c.callers))})
	}
	ans := map[string]string{}
	for e, n := range answered {
		ans[e] = fmt.Sprint(n)
	}
	return rows, ans, maxLatency
}

// latencyOf is the latency the ledger records for a closed hop: the
// reply's or timeout's latency_ms, or for a hop a halt cancelled, the time
// from its decision to the halt.
func latencyOf(t *testing.T, recs []ledger.Record, h *ledger.Hop) int64 {
	t.Helper()
	for _, r := range recs {
		if r.StreamSeq != h.CloseStreamSeq {
			continue
		}
		data, err := r.Event.DecodeData()
		if err != nil {
			t.Fatal(err)
		}
		switch d := data.(type) {
		case *schemas.HopCompleted:
			return d.LatencyMS
		case *schemas.HopTimedOut:
			return d.LatencyMS
		case *schemas.RunHalted:
			return r.Event.At.Sub(h.OpenedAt).Milliseconds()
		}
	}
	t.Fatalf("hop %s: no closing event at stream seq %d", h.ID, h.CloseStreamSeq)
	return 0
}
