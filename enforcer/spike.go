package enforcer

import (
	"encoding/hex"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tollgate/tollgate/enforcer/limits"
	"github.com/tollgate/tollgate/ledger"
	"github.com/tollgate/tollgate/schemas"
)

// spikes watches settled spend per agent and per team for spikes
// (limits.SpendSpikes). Each enforcer instance watches the runs it
// governs: runs are partitioned across instances, so rates and baselines
// are both of the same share of the traffic.
type spikes struct {
	mu   sync.Mutex
	keys map[string]*spendKey
	// first is the first spend watched: nothing alerts before Warmup.
	first time.Time
}

// spendKey is the recent spend of one agent or team: sums per slot
// (Short/6) over the baseline, and the items of the short window.
type spendKey struct {
	slots     map[int64]float64
	recent    []spendEvent
	lastAlert time.Time
}

type spendEvent struct {
	at        time.Time
	run, edge string
	cost      float64
}

// observeSpend counts a settled cost charged to a hop's caller (and the
// caller's team) and returns the alerts of the spikes it reveals.
func (e *Enforcer) observeSpend(cfg limits.SpendSpikes, caller, team, run, edge string, cost float64, at time.Time) []outgoing {
	if !cfg.Enabled() || cost <= 0 {
		return nil
	}
	cfg = cfg.WithDefaults()
	var out []outgoing
	for _, k := range []struct{ scope, id string }{{"agent", caller}, {"team", team}} {
		if k.id == "" {
			continue
		}
		if a := e.spikes.observe(cfg, k.scope, k.id, run, edge, cost, at); a != nil {
			out = append(out, e.spikeAlert(a, k.scope, k.id)...)
		}
	}
	return out
}

func (s *spikes) observe(cfg limits.SpendSpikes, scope, id, run, edge string, cost float64, at time.Time) *schemas.Alert {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.keys == nil {
		s.keys = map[string]*spendKey{}
		s.first = at
	}
	k := s.keys[scope+":"+id]
	if k == nil {
		k = &spendKey{slots: map[int64]float64{}}
		s.keys[scope+":"+id] = k
	}
	width := max(int64(cfg.Short/6), int64(time.Second))
	slot := at.UnixNano() / width
	k.slots[slot] += cost
	k.recent = append(k.recent, spendEvent{at: at, run: run, edge: edge, cost: cost})
	// Forget what is older than the baseline and the short window.
	shortFrom := at.Add(-cfg.Short)
	baseFrom := shortFrom.Add(-cfg.Baseline)
	for sl := range k.slots {
		if sl < baseFrom.UnixNano()/width {
			delete(k.slots, sl)
		}
	}
	kept := k.recent[:0]
	for _, ev := range k.recent {
		if ev.at.After(shortFrom) {
			kept = append(kept, ev)
		}
	}
	k.recent = kept
	var short, base float64
	for sl, c := range k.slots {
		if sl >= shortFrom.UnixNano()/width {
			short += c
		} else {
			base += c
		}
	}
	rate := short / cfg.Short.Minutes()
	baseline := base / cfg.Baseline.Minutes()
	if short < cfg.MinCostUSD || rate <= cfg.Factor*baseline || at.Sub(s.first) < cfg.Warmup || at.Sub(k.lastAlert) < cfg.Cooldown {
		return nil
	}
	k.lastAlert = at
	a := &schemas.Alert{Version: schemas.Version, Kind: schemas.AlertSpendSpike, At: at.UTC(), By: schemas.GatewayActor,
		Scope: scope, Rate: rate, Baseline: baseline, Factor: cfg.Factor}
	if baseline > 0 {
		a.Value = rate / baseline
	}
	a.TopRuns, a.TopEdges = top(k.recent, func(ev spendEvent) string { return ev.run }), top(k.recent, func(ev spendEvent) string { return ev.edge })
	if len(a.TopRuns) > 0 {
		a.RunID = a.TopRuns[0].Key
	}
	a.Message = fmt.Sprintf("%s %s spends $%.2f/min over the last %s against a baseline of $%.4f/min over the %s before (alert past %gx); top run %s",
		scope, id, rate, cfg.Short, baseline, cfg.Baseline, cfg.Factor, a.RunID)
	return a
}

// top sums the short window's spend by key, costliest first (at most 5).
func top(evs []spendEvent, key func(spendEvent) string) []schemas.SpendItem {
	sums := map[string]*schemas.SpendItem{}
	for _, ev := range evs {
		it := sums[key(ev)]
		if it == nil {
			it = &schemas.SpendItem{Key: key(ev)}
			sums[key(ev)] = it
		}
		it.CostUSD += ev.cost
		it.Hops++
	}
	out := make([]schemas.SpendItem, 0, len(sums))
	for _, it := range sums {
		out = append(out, *it)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].CostUSD != out[j].CostUSD {
			return out[i].CostUSD > out[j].CostUSD
		}
		return out[i].Key < out[j].Key
	})
	if len(out) > 5 {
		out = out[:5]
	}
	return out
}

func (e *Enforcer) spikeAlert(a *schemas.Alert, scope, id string) []outgoing {
	if scope == "agent" {
		a.Agent = id
	} else {
		a.Team = id
	}
	e.cfg.Logger.Warn("spend spike", "scope", scope, "id", id, "rate_per_min", a.Rate, "baseline_per_min", a.Baseline, "top_run", a.RunID)
	e.cfg.Metrics.count(func(m *Metrics) prometheus.Counter { return m.spikes.WithLabelValues(scope) })
	e.cfg.Metrics.count(func(m *Metrics) prometheus.Counter { return m.alerts })
	data, err := schemas.Encode(a)
	if err != nil {
		return nil
	}
	// Team names come from the config and may not be subject tokens.
	return []outgoing{{subject: e.subjects.AlertFleet(schemas.AlertSpendSpike, scope+"."+subjectToken(id)), data: data}}
}

// spendOf feeds the spend an appended event settles (a reply's usage, a
// failed attempt's) to the spike watch, charged to the hop's caller.
func (e *Enforcer) spendOf(st *ledger.State, ev *schemas.Event) []outgoing {
	rules := e.rules.Load()
	if !rules.Limits.SpendSpikes.Enabled() {
		return nil
	}
	var usage *schemas.Usage
	switch ev.Type {
	case schemas.EventHopCompleted, schemas.EventHopRetried:
		data, err := ev.DecodeData()
		if err != nil {
			return nil
		}
		switch d := data.(type) {
		case *schemas.HopCompleted:
			usage = d.Usage
		case *schemas.HopRetried:
			usage = d.Usage
		}
	}
	hop := st.Hops[ev.HopID]
	if usage == nil || hop == nil {
		return nil
	}
	team := ""
	if id, ok := rules.Dir.Get(hop.From); ok {
		team = id.Team
	}
	return e.observeSpend(rules.Limits.SpendSpikes, hop.From, team, st.RunID, hop.From+"->"+hop.To, usage.Cost(), ev.At)
}

// subjectToken is id when it is a plain token, else its hex form after
// '=' (which no plain token has).
func subjectToken(id string) string {
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return "=" + hex.EncodeToString([]byte(id))
		}
	}
	if id == "" {
		return "="
	}
	return id
}
