package enforcer

import (
	"cmp"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/tollgate/tollgate/broker"
	"github.com/tollgate/tollgate/enforcer/limits"
	"github.com/tollgate/tollgate/ledger"
	"github.com/tollgate/tollgate/schemas"
)

// spikes is this instance's part of the spend-spike watch
// (limits.SpendSpikes). The hot path only counts: observe adds each settled
// cost to what is pending, in memory. Every Flush, FlushSpend adds what is
// pending to the fleet's entry of each agent and team in the KV bucket
// broker.BucketSpend (compare-and-set, so every instance's share counts)
// and checks the entry there: the instance whose write records a spike
// (the entry's LastAlert) publishes the alert, so a spike is alerted once
// across the fleet however its runs are spread over the instances.
type spikes struct {
	mu      sync.Mutex
	pending map[string]*spendDelta

	// flushMu serialises flushes; kv is the bucket, opened on first use;
	// owed are alerts recorded in the bucket but not yet published.
	flushMu sync.Mutex
	kv      jetstream.KeyValue
	owed    []claimedSpike
}

// spendDelta is the spend of one agent or team this instance saw since
// its last flush, by slot.
type spendDelta struct {
	scope, id string
	first     int64 // unix ms of the earliest spend in it
	slots     map[int64]*spendSlot
}

// spendEntry is the fleet's recent spend of one agent or team, as the
// bucket keeps it: sums per slot (Short/6 wide) over the short window and
// the baseline before it, with the costliest runs and edges of each slot.
type spendEntry struct {
	// First is when the fleet first counted spend of it (unix ms): no
	// alert before Warmup has passed since.
	First int64 `json:"f"`
	// LastAlert is when a spike of it was last alerted (unix ms).
	LastAlert int64       `json:"a,omitempty"`
	Slots     []spendSlot `json:"s,omitempty"` // oldest first
}

type spendSlot struct {
	At    int64       `json:"t"` // slot start, unix ms
	Cost  float64     `json:"c"`
	Hops  int         `json:"n"`
	Runs  []spendItem `json:"r,omitempty"`
	Edges []spendItem `json:"e,omitempty"`
}

type spendItem struct {
	Key  string  `json:"k"`
	Cost float64 `json:"c"`
	Hops int     `json:"n"`
}

// slotItems bounds the runs and edges a slot keeps (the costliest): the
// alert's top five are exact unless a slot had more than this many.
const slotItems = 8

// claimedSpike is an alert an instance recorded in the bucket and owes
// the fleet.
type claimedSpike struct {
	subject, msgID string
	data           []byte
}

// observeSpend counts a settled cost charged to a hop's caller (and the
// caller's team); the next flush adds it to the fleet's counters.
func (e *Enforcer) observeSpend(cfg limits.SpendSpikes, caller, team, run, edge string, cost float64, at time.Time) {
	if !cfg.Enabled() || cost <= 0 {
		return
	}
	cfg = cfg.WithDefaults()
	for _, k := range []struct{ scope, id string }{{"agent", caller}, {"team", team}} {
		if k.id != "" {
			e.spikes.observe(cfg, k.scope, k.id, run, edge, cost, at)
		}
	}
}

func slotMillis(cfg limits.SpendSpikes) int64 {
	return max(cfg.Short.Milliseconds()/6, 1000)
}

func (s *spikes) observe(cfg limits.SpendSpikes, scope, id, run, edge string, cost float64, at time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.pending == nil {
		s.pending = map[string]*spendDelta{}
	}
	key := scope + "." + subjectToken(id)
	d := s.pending[key]
	ms := at.UnixMilli()
	if d == nil {
		d = &spendDelta{scope: scope, id: id, first: ms, slots: map[int64]*spendSlot{}}
		s.pending[key] = d
	}
	d.first = min(d.first, ms)
	w := slotMillis(cfg)
	sl := d.slots[ms/w*w]
	if sl == nil {
		sl = &spendSlot{At: ms / w * w}
		d.slots[sl.At] = sl
	}
	sl.add(run, edge, cost, 1)
}

func (sl *spendSlot) add(run, edge string, cost float64, hops int) {
	sl.Cost += cost
	sl.Hops += hops
	sl.Runs = addItem(sl.Runs, spendItem{Key: run, Cost: cost, Hops: hops})
	sl.Edges = addItem(sl.Edges, spendItem{Key: edge, Cost: cost, Hops: hops})
}

func addItem(items []spendItem, it spendItem) []spendItem {
	for i := range items {
		if items[i].Key == it.Key {
			items[i].Cost += it.Cost
			items[i].Hops += it.Hops
			return items
		}
	}
	return append(items, it)
}

// merge adds d to the entry and forgets what is older than the short
// window and the baseline before now.
func (en *spendEntry) merge(d *spendDelta, cfg limits.SpendSpikes, now time.Time) {
	if en.First == 0 || d.first < en.First {
		en.First = d.first
	}
	for _, sl := range d.slots {
		i, found := sort.Find(len(en.Slots), func(i int) int { return cmp.Compare(sl.At, en.Slots[i].At) })
		if !found {
			en.Slots = append(en.Slots, spendSlot{})
			copy(en.Slots[i+1:], en.Slots[i:])
			en.Slots[i] = spendSlot{At: sl.At}
		}
		into := &en.Slots[i]
		into.Cost += sl.Cost
		into.Hops += sl.Hops
		for _, it := range sl.Runs {
			into.Runs = addItem(into.Runs, it)
		}
		for _, it := range sl.Edges {
			into.Edges = addItem(into.Edges, it)
		}
		into.Runs, into.Edges = costliest(into.Runs, slotItems), costliest(into.Edges, slotItems)
	}
	w := slotMillis(cfg)
	from := now.Add(-cfg.Short-cfg.Baseline).UnixMilli() / w * w
	kept := en.Slots[:0]
	for _, sl := range en.Slots {
		if sl.At >= from {
			kept = append(kept, sl)
		}
	}
	en.Slots = kept
}

// costliest sorts items costliest first and keeps n.
func costliest(items []spendItem, n int) []spendItem {
	sort.Slice(items, func(i, j int) bool {
		if items[i].Cost != items[j].Cost {
			return items[i].Cost > items[j].Cost
		}
		return items[i].Key < items[j].Key
	})
	if len(items) > n {
		items = items[:n]
	}
	return items
}

// spike checks the entry at now: the alert of a spike it shows (and
// LastAlert set), or nil.
func (en *spendEntry) spike(cfg limits.SpendSpikes, scope, id string, now time.Time) *schemas.Alert {
	w := slotMillis(cfg)
	shortFrom := now.Add(-cfg.Short).UnixMilli() / w * w
	baseFrom := now.Add(-cfg.Short-cfg.Baseline).UnixMilli() / w * w
	var short, base float64
	var runs, edges []spendItem
	for _, sl := range en.Slots {
		switch {
		case sl.At >= shortFrom:
			short += sl.Cost
			for _, it := range sl.Runs {
				runs = addItem(runs, it)
			}
			for _, it := range sl.Edges {
				edges = addItem(edges, it)
			}
		case sl.At >= baseFrom:
			base += sl.Cost
		}
	}
	rate := short / cfg.Short.Minutes()
	baseline := base / cfg.Baseline.Minutes()
	ms := now.UnixMilli()
	if short < cfg.MinCostUSD || rate <= cfg.Factor*baseline || ms-en.First < cfg.Warmup.Milliseconds() ||
		en.LastAlert != 0 && ms-en.LastAlert < cfg.Cooldown.Milliseconds() {
		return nil
	}
	en.LastAlert = ms
	a := &schemas.Alert{Version: schemas.Version, Kind: schemas.AlertSpendSpike, At: now.UTC(), By: schemas.GatewayActor,
		Scope: scope, Rate: rate, Baseline: baseline, Factor: cfg.Factor}
	if baseline > 0 {
		a.Value = rate / baseline
	}
	a.TopRuns, a.TopEdges = top(runs), top(edges)
	if len(a.TopRuns) > 0 {
		a.RunID = a.TopRuns[0].Key
	}
	if scope == "agent" {
		a.Agent = id
	} else {
		a.Team = id
	}
	a.Message = fmt.Sprintf("%s %s spends $%.2f/min over the last %s against a baseline of $%.4f/min over the %s before (alert past %gx); top run %s",
		scope, id, rate, cfg.Short, baseline, cfg.Baseline, cfg.Factor, a.RunID)
	return a
}

// top is the short window's costliest items (at most 5).
func top(items []spendItem) []schemas.SpendItem {
	items = costliest(items, 5)
	out := make([]schemas.SpendItem, 0, len(items))
	for _, it := range items {
		out = append(out, schemas.SpendItem{Key: it.Key, CostUSD: it.Cost, Hops: it.Hops})
	}
	return out
}

// spendKV returns the spend bucket, opened once.
func (e *Enforcer) spendKV(ctx context.Context) (jetstream.KeyValue, error) {
	if e.spikes.kv != nil {
		return e.spikes.kv, nil
	}
	kv, err := e.js.KeyValue(ctx, e.subjects.Bucket(broker.BucketSpend))
	if err != nil {
		return nil, fmt.Errorf("spend bucket: %w", err)
	}
	e.spikes.kv = kv
	return kv, nil
}

// FlushSpend adds the spend this instance counted since its last flush to
// the fleet's counters (broker.BucketSpend) and publishes the spikes its
// writes record. The enforcer calls it every SpendSpikes.Flush and when it
// stops; the demo calls it before it reads the alerts. What cannot be
// written now stays pending for the next flush.
func (e *Enforcer) FlushSpend(ctx context.Context) error {
	e.spikes.flushMu.Lock()
	defer e.spikes.flushMu.Unlock()
	e.spikes.mu.Lock()
	pending := e.spikes.pending
	e.spikes.pending = nil
	e.spikes.mu.Unlock()
	cfg := e.rules.Load().Limits.SpendSpikes
	enabled := cfg.Enabled() // turned off by a reload: what is pending is dropped
	cfg = cfg.WithDefaults()
	var errs []error
	if enabled && len(pending) > 0 {
		kv, err := e.spendKV(ctx)
		if err != nil {
			e.repend(pending, cfg)
			return err
		}
		keys := make([]string, 0, len(pending))
		for k := range pending {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, key := range keys {
			d := pending[key]
			a, err := e.addSpend(ctx, kv, cfg, key, d)
			if err != nil {
				e.repend(map[string]*spendDelta{key: d}, cfg)
				errs = append(errs, err)
				continue
			}
			if a != nil {
				e.spikes.owed = append(e.spikes.owed, e.spikeAlert(a, key))
			}
		}
	}
	owed := e.spikes.owed[:0]
	for _, c := range e.spikes.owed {
		if _, err := e.js.Publish(ctx, c.subject, c.data, jetstream.WithMsgID(c.msgID)); err != nil {
			owed = append(owed, c)
			errs = append(errs, fmt.Errorf("publish spend-spike alert %s: %w", c.subject, err))
		}
	}
	e.spikes.owed = owed
	return errors.Join(errs...)
}

// repend puts deltas that could not be written back into what is
// pending, but for slots too old to count in any window: however long the
// bucket is unreachable, what waits stays bounded.
func (e *Enforcer) repend(ds map[string]*spendDelta, cfg limits.SpendSpikes) {
	w := slotMillis(cfg)
	from := e.cfg.Clock().Add(-cfg.Short-cfg.Baseline).UnixMilli() / w * w
	e.spikes.mu.Lock()
	defer e.spikes.mu.Unlock()
	if e.spikes.pending == nil {
		e.spikes.pending = map[string]*spendDelta{}
	}
	for key, d := range ds {
		for at := range d.slots {
			if at < from {
				delete(d.slots, at)
			}
		}
		cur := e.spikes.pending[key]
		if cur == nil {
			e.spikes.pending[key] = d
			continue
		}
		cur.first = min(cur.first, d.first)
		for at, sl := range d.slots {
			into := cur.slots[at]
			if into == nil {
				cur.slots[at] = sl
				continue
			}
			into.Cost += sl.Cost
			into.Hops += sl.Hops
			for _, it := range sl.Runs {
				into.Runs = addItem(into.Runs, it)
			}
			for _, it := range sl.Edges {
				into.Edges = addItem(into.Edges, it)
			}
		}
	}
}

// addSpend adds d to the fleet's entry key by compare-and-set and checks
// it; the alert it returns is this instance's to publish (its write
// recorded it).
func (e *Enforcer) addSpend(ctx context.Context, kv jetstream.KeyValue, cfg limits.SpendSpikes, key string, d *spendDelta) (*schemas.Alert, error) {
	for range 32 {
		var en spendEntry
		var rev uint64
		kve, err := kv.Get(ctx, key)
		switch {
		case errors.Is(err, jetstream.ErrKeyNotFound):
		case err != nil:
			return nil, fmt.Errorf("spend of %s: %w", key, err)
		default:
			rev = kve.Revision()
			if err := json.Unmarshal(kve.Value(), &en); err != nil {
				en = spendEntry{} // an unreadable entry starts again
			}
		}
		now := e.cfg.Clock()
		en.merge(d, cfg, now)
		a := en.spike(cfg, d.scope, d.id, now)
		b, err := json.Marshal(&en)
		if err != nil {
			return nil, fmt.Errorf("spend of %s: %w", key, err)
		}
		if rev == 0 {
			_, err = kv.Create(ctx, key, b)
		} else {
			_, err = kv.Update(ctx, key, b, rev)
		}
		if err == nil {
			return a, nil
		}
		if !errors.Is(err, jetstream.ErrKeyExists) && !isWrongSequence(err) {
			return nil, fmt.Errorf("spend of %s: %w", key, err)
		}
	}
	return nil, fmt.Errorf("spend of %s: too much contention", key)
}

func isWrongSequence(err error) bool {
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && (apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
		apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant)
}

// watchSpend flushes the spend counted every SpendSpikes.Flush until ctx
// ends, then once more.
func (e *Enforcer) watchSpend(ctx context.Context) {
	for {
		every := e.rules.Load().Limits.SpendSpikes.WithDefaults().Flush
		select {
		case <-ctx.Done():
			fctx, cancel := context.WithTimeout(context.Background(), e.cfg.OpTimeout)
			if err := e.FlushSpend(fctx); err != nil {
				e.cfg.Logger.Warn("spend-spike watch: last flush", "err", err)
			}
			cancel()
			return
		case <-time.After(every):
		}
		if err := e.FlushSpend(ctx); err != nil && ctx.Err() == nil {
			e.cfg.Logger.Warn("spend-spike watch: flush", "err", err)
		}
	}
}

// spikeAlert logs and counts a spike this instance recorded, and returns
// the alert to publish: on tg.alert.fleet.spend_spike.<scope>.<id>, with a
// message id of the entry and the alert's time, so a publish repeated
// after a failure is stored once.
func (e *Enforcer) spikeAlert(a *schemas.Alert, key string) claimedSpike {
	id := a.Agent + a.Team
	e.cfg.Logger.Warn("spend spike", "scope", a.Scope, "id", id, "rate_per_min", a.Rate, "baseline_per_min", a.Baseline, "top_run", a.RunID)
	e.cfg.Metrics.count(func(m *Metrics) prometheus.Counter { return m.spikes.WithLabelValues(a.Scope) })
	e.cfg.Metrics.count(func(m *Metrics) prometheus.Counter { return m.alerts })
	data, _ := schemas.Encode(a) // an Alert always encodes
	// Team names come from the config and may not be subject tokens.
	return claimedSpike{subject: e.subjects.AlertFleet(schemas.AlertSpendSpike, a.Scope+"."+subjectToken(id)),
		msgID: "spike-" + key + "-" + strconv.FormatInt(a.At.UnixMilli(), 10), data: data}
}

// spendOf feeds the spend an appended event settles (a reply's usage, a
// failed attempt's) to the spike watch, charged to the hop's caller.
func (e *Enforcer) spendOf(st *ledger.State, ev *schemas.Event) {
	rules := e.rules.Load()
	if !rules.Limits.SpendSpikes.Enabled() {
		return
	}
	var usage *schemas.Usage
	switch ev.Type {
	case schemas.EventHopCompleted, schemas.EventHopRetried:
		data, err := ev.DecodeData()
		if err != nil {
			return
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
		return
	}
	team := ""
	if id, ok := rules.Dir.Get(hop.From); ok {
		team = id.Team
	}
	e.observeSpend(rules.Limits.SpendSpikes, hop.From, team, st.RunID, hop.From+"->"+hop.To, usage.Cost(), ev.At)
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
