package store

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/shopspring/decimal"

	"github.com/tollgate/tollgate/projections/internal/rows"
)

// Tables of the projection.
const (
	TableEvents   = "events"
	TableBreaches = "breaches"
	TableHops     = "hops"
	TableRuns     = "runs"
)

// column is one column of an insert: its name and its values, a slice of
// the column's Go type. Building the column list and the values together
// keeps them in step, and appending whole columns is several times cheaper
// than appending row by row.
type column struct {
	name   string
	values any
}

func eventColumns(rs []rows.Event) []column {
	n := len(rs)
	var (
		run, typ, hop, data, prev, hash = make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
		seq, streamSeq                  = make([]uint64, n), make([]uint64, n)
		at, days                        = make([]time.Time, n), make([]time.Time, n)
		ns                              = make([]uint32, n)
		rejected                        = make([]uint8, n)
	)
	for i := range rs {
		e := &rs[i]
		run[i], seq[i], streamSeq[i], typ[i], hop[i] = e.RunID, e.Seq, e.StreamSeq, e.Type, e.HopID
		at[i], ns[i], days[i], rejected[i] = dateTime(e.At), nanos(e.At), day(e.At), flag(e.Rejected)
		data[i], prev[i], hash[i] = e.Data, e.PrevHash, e.Hash
	}
	return []column{{"run_id", run}, {"seq", seq}, {"stream_seq", streamSeq}, {"type", typ}, {"at", at}, {"at_ns", ns},
		{"day", days}, {"hop_id", hop}, {"rejected", rejected}, {"data", data}, {"prev_hash", prev}, {"hash", hash}}
}

func breachColumns(rs []rows.Breach) []column {
	n := len(rs)
	var (
		run, limit, reason, caller, target, action, hop, workflow, principal = make([]string, n), make([]string, n),
			make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
		seq          = make([]uint64, n)
		at, days     = make([]time.Time, n), make([]time.Time, n)
		ns           = make([]uint32, n)
		value, bound = make([]float64, n), make([]float64, n)
	)
	for i := range rs {
		r := &rs[i]
		run[i], seq[i], at[i], ns[i], days[i] = r.RunID, r.Seq, dateTime(r.At), nanos(r.At), day(r.At)
		limit[i], value[i], bound[i], reason[i], caller[i], target[i] = r.Limit, r.Value, r.Bound, r.Reason, r.Caller, r.Target
		action[i], hop[i], workflow[i], principal[i] = r.Action, r.HopID, r.Workflow, r.Principal
	}
	return []column{{"run_id", run}, {"seq", seq}, {"at", at}, {"at_ns", ns}, {"limit_name", limit}, {"value", value},
		{"bound", bound}, {"reason", reason}, {"caller", caller}, {"target", target}, {"action", action}, {"hop_id", hop},
		{"workflow", workflow}, {"principal", principal}, {"day", days}}
}

func hopColumns(hs map[rows.HopKey]*rows.Hop) []column {
	n := len(hs)
	str := func() []string { return make([]string, n) }
	var (
		run, hopID, parent, kind, caller, callerTeam, target, targetTeam, action = str(), str(), str(), str(), str(), str(), str(), str(), str()
		decision, reason, message, status, closedBy, errs, workflow, principal   = str(), str(), str(), str(), str(), str(), str(), str()
		hopSeq, version                                                          = make([]uint64, n), make([]uint64, n)
		depth, openedNS, closedNS                                                = make([]uint32, n), make([]uint32, n), make([]uint32, n)
		ancestry, policies                                                       = make([][]string, n), make([][]string, n)
		cycle, rejected, tainted                                                 = make([]uint8, n), make([]uint8, n), make([]uint8, n)
		taintSources, guardRules, replyRules                                     = make([][]string, n), make([][]string, n), make([][]string, n)
		guardVerdict, replyVerdict                                               = str(), str()
		opened, closed, days                                                     = make([]time.Time, n), make([]time.Time, n), make([]time.Time, n)
		latency, in, out                                                         = make([]int64, n), make([]int64, n), make([]int64, n)
		cost                                                                     = make([]decimal.Decimal, n)
	)
	i := 0
	for _, h := range hs {
		run[i], hopSeq[i], hopID[i], parent[i], kind[i] = h.RunID, h.HopSeq, h.HopID, h.ParentHopID, h.Kind
		caller[i], callerTeam[i], target[i], targetTeam[i], action[i] = h.Caller, h.CallerTeam, h.Target, h.TargetTeam, h.Action
		depth[i], ancestry[i], cycle[i] = h.Depth, array(h.Ancestry), flag(h.Cycle)
		decision[i], reason[i], message[i], policies[i] = h.Decision, h.Reason, h.Message, array(h.PolicyIDs)
		status[i], closedBy[i], errs[i] = h.Status, h.ClosedBy, h.Error
		opened[i], openedNS[i], closed[i], closedNS[i] = dateTime(h.OpenedAt), nanos(h.OpenedAt), dateTime(h.ClosedAt), nanos(h.ClosedAt)
		latency[i], in[i], out[i], cost[i] = h.LatencyMS, h.InputTokens, h.OutputTokens, usd(h.CostUSD)
		workflow[i], principal[i], rejected[i], days[i], version[i] = h.Workflow, h.Principal, flag(h.Rejected), day(h.OpenedAt), h.Version
		tainted[i], taintSources[i], guardVerdict[i], guardRules[i] = flag(h.Tainted), array(h.TaintSources), h.GuardrailVerdict, array(h.GuardrailRules)
		replyVerdict[i], replyRules[i] = h.ReplyGuardrailVerdict, array(h.ReplyGuardrailRules)
		i++
	}
	return []column{{"run_id", run}, {"hop_seq", hopSeq}, {"hop_id", hopID}, {"parent_hop_id", parent}, {"kind", kind},
		{"caller", caller}, {"caller_team", callerTeam}, {"target", target}, {"target_team", targetTeam}, {"action", action},
		{"depth", depth}, {"ancestry", ancestry}, {"cycle", cycle}, {"decision", decision}, {"reason", reason},
		{"message", message}, {"policy_ids", policies}, {"status", status}, {"closed_by", closedBy}, {"error", errs},
		{"opened_at", opened}, {"opened_at_ns", openedNS}, {"closed_at", closed}, {"closed_at_ns", closedNS},
		{"latency_ms", latency}, {"input_tokens", in}, {"output_tokens", out}, {"cost_usd", cost}, {"workflow", workflow},
		{"principal", principal}, {"rejected", rejected}, {"day", days}, {"version", version},
		{"tainted", tainted}, {"taint_sources", taintSources}, {"guardrail_verdict", guardVerdict},
		{"guardrail_rules", guardRules}, {"reply_guardrail_verdict", replyVerdict}, {"reply_guardrail_rules", replyRules}}
}

func runColumns(rs map[string]*rows.Run) []column {
	n := len(rs)
	str := func() []string { return make([]string, n) }
	u32 := func() []uint32 { return make([]uint32, n) }
	var (
		run, caller, callerType, principal, workflow, root, status, haltedBy, haltReason, haltLimit = str(), str(), str(),
			str(), str(), str(), str(), str(), str(), str()
		started, ended, days                                                     = make([]time.Time, n), make([]time.Time, n), make([]time.Time, n)
		startedNS, endedNS, depthLimit, edgeLimit, hops, denials, breaches, open = u32(), u32(), u32(), u32(), u32(), u32(), u32(), u32()
		halted                                                                   = make([]uint8, n)
		events, version                                                          = make([]uint64, n), make([]uint64, n)
		tokens, duration                                                         = make([]int64, n), make([]int64, n)
		cost                                                                     = make([]decimal.Decimal, n)
	)
	i := 0
	for _, r := range rs {
		run[i], caller[i], callerType[i], principal[i], workflow[i], root[i] = r.RunID, r.Caller, r.CallerType, r.Principal, r.Workflow, r.RootHopID
		started[i], startedNS[i], ended[i], endedNS[i] = dateTime(r.StartedAt), nanos(r.StartedAt), dateTime(r.EndedAt), nanos(r.EndedAt)
		depthLimit[i], edgeLimit[i], status[i], halted[i] = r.DepthLimit, r.EdgeRepeatLimit, r.Status, flag(r.Halted)
		haltedBy[i], haltReason[i], haltLimit[i], events[i] = r.HaltedBy, r.HaltReason, r.HaltLimit, r.Events
		hops[i], denials[i], breaches[i], open[i], tokens[i], cost[i] = r.Hops, r.Denials, r.Breaches, r.OpenHops, r.Tokens, usd(r.CostUSD)
		duration[i], days[i], version[i] = r.DurationMS, day(r.StartedAt), r.Version
		i++
	}
	return []column{{"run_id", run}, {"caller", caller}, {"caller_type", callerType}, {"principal", principal},
		{"workflow", workflow}, {"root_hop_id", root}, {"started_at", started}, {"started_at_ns", startedNS},
		{"ended_at", ended}, {"ended_at_ns", endedNS}, {"depth_limit", depthLimit}, {"edge_repeat_limit", edgeLimit},
		{"status", status}, {"halted", halted}, {"halted_by", haltedBy}, {"halt_reason", haltReason},
		{"halt_limit", haltLimit}, {"events", events}, {"hops", hops}, {"denials", denials}, {"breaches", breaches},
		{"open_hops", open}, {"tokens", tokens}, {"cost_usd", cost}, {"duration_ms", duration}, {"day", days},
		{"version", version}}
}

// Insert writes the batch's rows, one INSERT per table that has any, the
// tables concurrently: an insert's cost is mostly the server's fixed cost
// of writing a part, so four at once take little longer than the largest
// alone. After each table's insert is accepted it calls after with the
// table's name (a test seam: an error fails the batch, as a crash would).
// The inserts are not atomic across tables; the rows are idempotent, so a
// batch that failed half way is simply inserted again.
func (s *Store) Insert(ctx context.Context, b *rows.Batch, after func(table string) error) error {
	steps := []struct {
		table string
		n     int
		cols  func() []column
	}{
		{TableEvents, len(b.Events), func() []column { return eventColumns(b.Events) }},
		{TableBreaches, len(b.Breaches), func() []column { return breachColumns(b.Breaches) }},
		{TableHops, len(b.Hops), func() []column { return hopColumns(b.Hops) }},
		{TableRuns, len(b.Runs), func() []column { return runColumns(b.Runs) }},
	}
	errs := make([]error, len(steps))
	var wg sync.WaitGroup
	for i, st := range steps {
		if st.n == 0 {
			continue
		}
		wg.Go(func() {
			errs[i] = s.insert(ctx, st.table, st.n, st.cols())
			if errs[i] == nil && after != nil {
				errs[i] = after(st.table)
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// insert writes n rows into table, column by column, with an explicit
// column list (ClickHouse 18.16 needs one).
func (s *Store) insert(ctx context.Context, table string, n int, cols []column) error {
	names := make([]string, len(cols))
	for i, c := range cols {
		names[i] = c.name
	}
	ib, err := s.conn.PrepareBatch(ctx, s.SQL("INSERT INTO {db}."+table+" ("+strings.Join(names, ", ")+")"))
	if err != nil {
		return fmt.Errorf("insert into %s.%s: %w", s.db, table, err)
	}
	for i, c := range cols {
		if err := ib.Column(i).Append(c.values); err != nil {
			_ = ib.Abort()
			return fmt.Errorf("insert into %s.%s column %s: %w", s.db, table, c.name, err)
		}
	}
	if err := ib.Send(); err != nil {
		return fmt.Errorf("insert %d rows into %s.%s: %w", n, s.db, table, err)
	}
	return nil
}

var epoch = time.Unix(0, 0).UTC()

// dateTime is t for a DateTime column: the epoch for the zero time (an open
// hop's closed_at), which DateTime cannot hold otherwise.
func dateTime(t time.Time) time.Time {
	if t.Before(epoch) {
		return epoch
	}
	return t.UTC()
}

// nanos is the sub-second part of t that DateTime drops.
func nanos(t time.Time) uint32 {
	if t.Before(epoch) {
		return 0
	}
	return uint32(t.Nanosecond())
}

// day is t's UTC date, for the Date column tables are partitioned by.
func day(t time.Time) time.Time {
	t = dateTime(t)
	return time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, time.UTC)
}

func flag(b bool) uint8 {
	if b {
		return 1
	}
	return 0
}

// array is never nil, for Array(String) columns.
func array(ss []string) []string {
	if ss == nil {
		return []string{}
	}
	return ss
}

// usd converts a cost to the Decimal(18, 9) of the cost columns: the
// shortest decimal that is the float, to the nano-dollar.
func usd(f float64) decimal.Decimal { return decimal.NewFromFloat(f).Round(9) }
