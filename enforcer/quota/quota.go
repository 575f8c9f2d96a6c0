// Package quota keeps the spend quotas (limits.Quota) fleet-wide: one KV
// entry per quota and scope value in the bucket broker.BucketQuota, updated
// by compare-and-set, so that N enforcer instances admit exactly what the
// quota allows. A hop reserves its estimate when it is admitted (Reserve)
// and settles what its reply reports when it closes (Settle), as run
// budgets do; both are idempotent per hop, so a redelivered submission or
// a repeated effect never counts twice. A hop a halt closes while its
// target works releases its reservation but keeps its hold (Close), so
// that what the target reports late is settled in the same entries.
package quota

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/tollgate/tollgate/broker"
	"github.com/tollgate/tollgate/enforcer/limits"
)

// Amount is a quantity of spend.
type Amount struct {
	Tokens  int64   `json:"tokens"`
	CostUSD float64 `json:"cost_usd"`
}

// Over says which quota a reservation would exceed, and by how much.
type Over struct {
	Quota *limits.Quota
	Value string
	// Dimension is "tokens" or "cost".
	Dimension string
	// Used is what was settled and reserved in the window before this
	// hop; Would is Used plus the hop's estimate; Bound the quota.
	Used, Would, Bound float64
}

// Usage is a quota's state for one scope value at a time.
type Usage struct {
	Quota string `json:"quota"`
	Scope string `json:"scope"`
	Value string `json:"value"`
	// Window is hour, day, month or rolling; Start and End bound the
	// current calendar window (for a rolling window: now-Rolling and now).
	Window string    `json:"window"`
	Start  time.Time `json:"start"`
	End    time.Time `json:"end"`
	// Settled is what replies reported in the window; Reserved what open
	// hops hold (their estimates); Held counts those hops.
	Settled  Amount `json:"settled"`
	Reserved Amount `json:"reserved"`
	Held     int    `json:"held"`
	// MaxTokens and MaxCostUSD are the quota's bounds (0: unbounded).
	MaxTokens  int64   `json:"max_tokens"`
	MaxCostUSD float64 `json:"max_cost_usd"`
	// Percent is the highest share of a bound used (settled + reserved).
	Percent float64 `json:"percent"`
}

// costSlack absorbs float rounding when a sum of costs meets its bound.
const costSlack = 1e-9

// state is what the store keeps for one quota and scope value: settled
// spend and the sum of open reservations. Which hops hold a reservation is
// kept apart, one key per hop in the holds bucket, so an entry stays small
// however many hops are open.
type state struct {
	// Window is the start (unix seconds) of the calendar window Tokens and
	// Cost were settled in.
	Window  int64   `json:"w,omitempty"`
	Tokens  int64   `json:"t,omitempty"`
	CostUSD float64 `json:"c,omitempty"`
	// Slots are a rolling window's settled spend, per slot start.
	Slots []slot `json:"s,omitempty"`
	// Reserved sums the open reservations by the minute (unix seconds)
	// they lapse at, if their hop never settles (an enforcer crashed
	// between reserving and recording it).
	Reserved map[int64]reserved `json:"r,omitempty"`
}

type slot struct {
	At      int64   `json:"a"`
	Tokens  int64   `json:"t,omitempty"`
	CostUSD float64 `json:"c,omitempty"`
}

type reserved struct {
	Tokens  int64   `json:"t,omitempty"`
	CostUSD float64 `json:"c,omitempty"`
	// Hops counts the reservations.
	Hops int `json:"n"`
}

// hold is one hop's reservation in one entry, stored under HoldKey.
type hold struct {
	Tokens  int64   `json:"t,omitempty"`
	CostUSD float64 `json:"c,omitempty"`
	// Lapse is the minute its amount is summed under in state.Reserved.
	Lapse int64 `json:"l"`
	// Step is the last step (Charge) that charged the hop's spend while
	// the hold stayed: a step at or below it is done.
	Step uint64 `json:"s,omitempty"`
	// Closed marks the hold of a hop a halt closed (Close): it reserves
	// nothing (its amounts are zero and it is in no sum), and is kept only
	// so that the hop's late settle is counted in the quotas it reserved
	// in, once.
	Closed bool `json:"x,omitempty"`
}

// lapseMinute is the minute a reservation until lapses at: the next whole
// minute, so few sums are kept.
func lapseMinute(until time.Time) int64 {
	return (until.Unix() + 59) / 60 * 60
}

// rollingSlots is how many slots a rolling window is counted in.
const rollingSlots = 60

// Window returns the bounds of q's window containing now, in zone.
func Window(q *limits.Quota, zone *time.Location, now time.Time) (start, end time.Time) {
	t := now.In(zone)
	switch q.Window {
	case limits.WindowHour:
		start = time.Date(t.Year(), t.Month(), t.Day(), t.Hour(), 0, 0, 0, zone)
		return start, start.Add(time.Hour)
	case limits.WindowDay:
		start = time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, zone)
		return start, start.AddDate(0, 0, 1)
	case limits.WindowMonth:
		start = time.Date(t.Year(), t.Month(), 1, 0, 0, 0, 0, zone)
		return start, start.AddDate(0, 1, 0)
	}
	return now.Add(-q.Rolling), now
}

func slotWidth(q *limits.Quota) int64 {
	return max(int64(q.Rolling/time.Second)/rollingSlots, 1)
}

// normalize moves s to the window of now: a calendar window that ended is
// emptied, a rolling window's old slots and every lapsed reservation are
// dropped. Open reservations carry over into a new window.
func (s *state) normalize(q *limits.Quota, zone *time.Location, now time.Time) {
	if q.Window == limits.WindowRolling {
		from := now.Add(-q.Rolling).Unix()
		w := slotWidth(q)
		kept := s.Slots[:0]
		for _, sl := range s.Slots {
			if sl.At+w > from {
				kept = append(kept, sl)
			}
		}
		s.Slots = kept
		s.Window, s.Tokens, s.CostUSD = 0, 0, 0
	} else {
		start, _ := Window(q, zone, now)
		// A window ahead of ours (another instance's clock) stays.
		if s.Window < start.Unix() {
			s.Window, s.Tokens, s.CostUSD = start.Unix(), 0, 0
		}
		s.Slots = nil
	}
	for at := range s.Reserved {
		if at < now.Unix() {
			delete(s.Reserved, at)
		}
	}
}

func (s *state) settled() Amount {
	a := Amount{Tokens: s.Tokens, CostUSD: s.CostUSD}
	for _, sl := range s.Slots {
		a.Tokens += sl.Tokens
		a.CostUSD += sl.CostUSD
	}
	return a
}

func (s *state) reserved() (Amount, int) {
	var a Amount
	n := 0
	for _, r := range s.Reserved {
		a.Tokens += r.Tokens
		a.CostUSD += r.CostUSD
		n += r.Hops
	}
	return a, n
}

// reserve adds a hold to the sums.
func (s *state) reserve(h hold) {
	if s.Reserved == nil {
		s.Reserved = map[int64]reserved{}
	}
	r := s.Reserved[h.Lapse]
	r.Tokens += h.Tokens
	r.CostUSD += h.CostUSD
	r.Hops++
	s.Reserved[h.Lapse] = r
}

// release takes a hold out of the sums (nothing when its minute lapsed,
// or when it is closed: a closed hold is in no sum).
func (s *state) release(h hold) {
	r, ok := s.Reserved[h.Lapse]
	if !ok || h.Closed {
		return
	}
	r.Tokens = max(r.Tokens-h.Tokens, 0)
	r.CostUSD = max(r.CostUSD-h.CostUSD, 0)
	r.Hops--
	if r.Hops <= 0 {
		delete(s.Reserved, h.Lapse)
		return
	}
	s.Reserved[h.Lapse] = r
}

// add counts settled spend at now.
func (s *state) add(q *limits.Quota, a Amount, now time.Time) {
	if a == (Amount{}) {
		return
	}
	if q.Window != limits.WindowRolling {
		s.Tokens += a.Tokens
		s.CostUSD += a.CostUSD
		return
	}
	w := slotWidth(q)
	at := now.Unix() / w * w
	if n := len(s.Slots); n > 0 && s.Slots[n-1].At == at {
		s.Slots[n-1].Tokens += a.Tokens
		s.Slots[n-1].CostUSD += a.CostUSD
		return
	}
	s.Slots = append(s.Slots, slot{At: at, Tokens: a.Tokens, CostUSD: a.CostUSD})
}

// over reports whether adding est to what the window holds passes q.
func (s *state) over(ap limits.Applied, est Amount) *Over {
	q := ap.Quota
	used := s.settled()
	r, _ := s.reserved()
	used.Tokens += r.Tokens
	used.CostUSD += r.CostUSD
	if q.MaxTokens > 0 && used.Tokens+est.Tokens > q.MaxTokens {
		return &Over{Quota: q, Value: ap.Value, Dimension: "tokens", Used: float64(used.Tokens),
			Would: float64(used.Tokens + est.Tokens), Bound: float64(q.MaxTokens)}
	}
	if q.MaxCostUSD > 0 && used.CostUSD+est.CostUSD > q.MaxCostUSD+costSlack {
		return &Over{Quota: q, Value: ap.Value, Dimension: "cost", Used: used.CostUSD,
			Would: used.CostUSD + est.CostUSD, Bound: q.MaxCostUSD}
	}
	return nil
}

func (s *state) usage(ap limits.Applied, zone *time.Location, now time.Time) Usage {
	q := ap.Quota
	start, end := Window(q, zone, now)
	r, n := s.reserved()
	u := Usage{Quota: q.Name, Scope: q.Scope, Value: ap.Value, Window: q.Window, Start: start, End: end,
		Settled: s.settled(), Reserved: r, Held: n, MaxTokens: q.MaxTokens, MaxCostUSD: q.MaxCostUSD}
	if q.MaxTokens > 0 {
		u.Percent = 100 * float64(u.Settled.Tokens+u.Reserved.Tokens) / float64(q.MaxTokens)
	}
	if q.MaxCostUSD > 0 {
		u.Percent = max(u.Percent, 100*(u.Settled.CostUSD+u.Reserved.CostUSD)/q.MaxCostUSD)
	}
	return u
}

var plainValue = regexp.MustCompile(`^[A-Za-z0-9_-]{1,128}$`)

// Key is the KV key of a quota's entry for one scope value. A value that
// is not a plain token is hex-encoded behind '=', which no plain token
// contains, so two values never share a key.
func Key(name, value string) string {
	if plainValue.MatchString(value) {
		return name + "." + value
	}
	return name + ".=" + hex.EncodeToString([]byte(value))
}

// Store keeps the quotas in a KV bucket. It is safe for concurrent use;
// several Stores over one bucket (one per enforcer instance) agree.
type Store struct {
	kv, holds jetstream.KeyValue

	mu   sync.Mutex
	keys map[string]*entry
}

// entry serialises this instance's updates of one key and caches the last
// value it saw, so an uncontended update is one round trip.
type entry struct {
	mu  sync.Mutex
	val state
	rev uint64 // 0: unknown; newKey: absent from the store
}

const newKey = ^uint64(0)

// New returns a store over the quota bucket kv and the holds bucket holds
// (see broker.ProvisionQuotaBucket).
func New(kv, holds jetstream.KeyValue) *Store {
	return &Store{kv: kv, holds: holds, keys: map[string]*entry{}}
}

// HoldKey is the key of hop's reservation in an entry: hop is "run/hop",
// whose ids are plain tokens.
func HoldKey(entry, hop string) string {
	run, id, _ := strings.Cut(hop, "/")
	if !plainValue.MatchString(run) || !plainValue.MatchString(id) {
		return entry + ".=" + hex.EncodeToString([]byte(hop))
	}
	return entry + "." + run + "." + id
}

// maxAttempts bounds compare-and-set retries under contention.
const maxAttempts = 64

// update applies fn to the key's state until it is written without a
// conflict; fn returns false to write nothing.
func (s *Store) update(ctx context.Context, key string, fn func(*state) bool) error {
	e := s.entry(key)
	e.mu.Lock()
	defer e.mu.Unlock()
	for attempt := 0; attempt < maxAttempts; attempt++ {
		if e.rev == 0 {
			if err := s.load(ctx, key, e); err != nil {
				return err
			}
		}
		next := e.val.clone()
		if !fn(&next) {
			return nil
		}
		b, err := json.Marshal(&next)
		if err != nil {
			return fmt.Errorf("quota %s: %w", key, err)
		}
		var rev uint64
		if e.rev == newKey {
			rev, err = s.kv.Create(ctx, key, b)
		} else {
			rev, err = s.kv.Update(ctx, key, b, e.rev)
		}
		if err == nil {
			e.val, e.rev = next, rev
			return nil
		}
		if !isConflict(err) {
			return fmt.Errorf("quota %s: %w", key, err)
		}
		e.rev = 0 // another instance wrote first: read again
	}
	return fmt.Errorf("quota %s: too much contention", key)
}

func (s *Store) load(ctx context.Context, key string, e *entry) error {
	kve, err := s.kv.Get(ctx, key)
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound):
		e.val, e.rev = state{}, newKey
		return nil
	case err != nil:
		return fmt.Errorf("quota %s: %w", key, err)
	}
	var st state
	if err := json.Unmarshal(kve.Value(), &st); err != nil {
		return fmt.Errorf("quota %s: stored value does not decode: %w", key, err)
	}
	e.val, e.rev = st, kve.Revision()
	return nil
}

func (s *Store) entry(key string) *entry {
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.keys[key]
	if e == nil {
		e = &entry{}
		s.keys[key] = e
	}
	return e
}

func (st state) clone() state {
	c := st
	c.Slots = append([]slot(nil), st.Slots...)
	if st.Reserved != nil {
		c.Reserved = make(map[int64]reserved, len(st.Reserved)+1)
		for k, v := range st.Reserved {
			c.Reserved[k] = v
		}
	}
	return c
}

// Reserve reserves est for hop in every applied quota, or in none: when
// one would pass its bound it returns which, and releases what it had
// reserved. With force (a caller in audit mode), and in a quota whose
// mode is audit, it reserves whatever the bound and still reports the
// first quota passed (Over.Quota.Mode then says whether it is enforced).
// A hop already holding a reservation in a quota keeps it: a decision
// taken again reserves nothing more. until is when the reservation lapses
// if the hop never settles.
//
// Each quota costs two writes: the hop's hold (a create, which fails for
// a hop that holds one) and a compare-and-set of the quota's entry.
func (s *Store) Reserve(ctx context.Context, zone *time.Location, applied []limits.Applied, hop string, est Amount, until, now time.Time, force bool) (*Over, error) {
	var first *Over
	h := hold{Tokens: est.Tokens, CostUSD: est.CostUSD, Lapse: lapseMinute(until)}
	hb, err := json.Marshal(h)
	if err != nil {
		return nil, err
	}
	for i, ap := range applied {
		key := Key(ap.Quota.Name, ap.Value)
		holdKey := HoldKey(key, hop)
		if _, err := s.holds.Create(ctx, holdKey, hb); err != nil {
			if errors.Is(err, jetstream.ErrKeyExists) {
				continue // reserved when the hop was decided before
			}
			return nil, fmt.Errorf("quota %s: hold of %s: %w", key, hop, err)
		}
		enforced := !force && ap.Quota.Mode != limits.ModeAudit
		var over *Over
		err := s.update(ctx, key, func(st *state) bool {
			st.normalize(ap.Quota, zone, now)
			if over = st.over(ap, est); over != nil && enforced {
				return false
			}
			st.reserve(h)
			return true
		})
		if err == nil && over != nil && enforced {
			err = s.holds.Delete(ctx, holdKey)
		}
		if err != nil {
			return nil, err
		}
		if over != nil && first == nil {
			first = over
		}
		if over != nil && enforced {
			if err := s.Settle(ctx, zone, applied[:i], hop, nil, now); err != nil {
				return nil, err
			}
			return over, nil
		}
	}
	return first, nil
}

// Settle closes hop's reservations in the applied quotas: each is
// released, and used (nil for a hop that spent nothing it reported:
// cancelled, timed out) is counted in the window of now. A hop that holds
// no reservation there (already settled, or admitted before the quota
// existed) changes nothing, so settling twice counts once: the hold is
// deleted (compare-and-delete on its revision) before the entry changes.
// A hold Close left is settled the same way: used is counted, and nothing
// is released (Close did).
func (s *Store) Settle(ctx context.Context, zone *time.Location, applied []limits.Applied, hop string, used *Amount, now time.Time) error {
	return s.settle(ctx, zone, applied, hop, used, nil, now)
}

// Close releases hop's reservations in the applied quotas, as Settle with
// no usage does, but keeps each hold, marked closed and reserving
// nothing: it is how a halt closes a hop whose target may still report
// what it used (a model stream the halt cut). That late report settles
// the closed holds (Settle), so it is counted in the quotas and scope
// values the hop reserved in, once; a closed hold nobody settles holds
// nothing and goes with the holds bucket's max age
// (broker.QuotaHoldsMaxAge). Closing again, or a Charge of a closed
// hold, changes nothing.
func (s *Store) Close(ctx context.Context, zone *time.Location, applied []limits.Applied, hop string, now time.Time) error {
	return s.settle(ctx, zone, applied, hop, nil, &renewal{closed: true}, now)
}

// Charge counts used (what a failed attempt of hop reported, when the hop
// goes on: retried) in the applied quotas where hop holds a reservation,
// and keeps the reservation, to lapse at until instead (the next
// attempt's deadline). It is Settle that keeps the hold: step (the ledger
// seq of the event that charges) is recorded in the hold, so the same
// step, or an earlier one, charges nothing again.
func (s *Store) Charge(ctx context.Context, zone *time.Location, applied []limits.Applied, hop string, used *Amount, step uint64, until, now time.Time) error {
	return s.settle(ctx, zone, applied, hop, used, &renewal{step: step, lapse: lapseMinute(until)}, now)
}

// renewal is the hold a Charge keeps: charged at step, lapsing at lapse;
// or, closed, the hold a Close keeps.
type renewal struct {
	step   uint64
	lapse  int64
	closed bool
}

// settle is Settle (keep nil: the hold is deleted), Charge (the hold
// stays, renewed) and Close (the hold stays, closed): the hold changes
// first, by compare-and-set on its revision, so that of two instances
// settling the same step (or closing the same hop) one does.
func (s *Store) settle(ctx context.Context, zone *time.Location, applied []limits.Applied, hop string, used *Amount, keep *renewal, now time.Time) error {
	for _, ap := range applied {
		key := Key(ap.Quota.Name, ap.Value)
		holdKey := HoldKey(key, hop)
		kve, err := s.holds.Get(ctx, holdKey)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			continue
		}
		if err != nil {
			return fmt.Errorf("quota %s: hold of %s: %w", key, hop, err)
		}
		var h hold
		if err := json.Unmarshal(kve.Value(), &h); err != nil {
			return fmt.Errorf("quota %s: hold of %s does not decode: %w", key, hop, err)
		}
		next := h
		if keep != nil {
			if h.Closed || !keep.closed && h.Step >= keep.step {
				continue // closed, or charged at this step before
			}
			next.Step, next.Lapse = keep.step, keep.lapse
			if keep.closed {
				next = hold{Step: h.Step, Closed: true}
			}
			b, err := json.Marshal(next)
			if err != nil {
				return fmt.Errorf("quota %s: hold of %s: %w", key, hop, err)
			}
			_, err = s.holds.Update(ctx, holdKey, b, kve.Revision())
			if isConflict(err) {
				continue // charged by another instance just now
			}
			if err != nil {
				return fmt.Errorf("quota %s: renew hold of %s: %w", key, hop, err)
			}
		} else if err := s.holds.Delete(ctx, holdKey, jetstream.LastRevision(kve.Revision())); err != nil {
			if isConflict(err) {
				continue // settled by another instance just now
			}
			return fmt.Errorf("quota %s: release hold of %s: %w", key, hop, err)
		}
		err = s.update(ctx, key, func(st *state) bool {
			st.normalize(ap.Quota, zone, now)
			st.release(h)
			if used != nil {
				st.add(ap.Quota, *used, now)
			}
			if keep != nil && !next.Closed {
				st.reserve(next)
			}
			return true
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// Usage reads a quota's state for one scope value from the store.
func (s *Store) Usage(ctx context.Context, zone *time.Location, ap limits.Applied, now time.Time) (Usage, error) {
	e := s.entry(Key(ap.Quota.Name, ap.Value))
	e.mu.Lock()
	defer e.mu.Unlock()
	if err := s.load(ctx, Key(ap.Quota.Name, ap.Value), e); err != nil {
		return Usage{}, err
	}
	st := e.val.clone()
	st.normalize(ap.Quota, zone, now)
	return st.usage(ap, zone, now), nil
}

// Percent is the highest share (in percent, rounded down) of any applied
// quota's bound that is settled or reserved, from what this instance last
// saw of each (read from the store once, then kept current by this
// instance's own updates). It is what policies read as
// context.quota_used; the reservation itself is always checked against the
// store.
func (s *Store) Percent(ctx context.Context, zone *time.Location, applied []limits.Applied, now time.Time) (int64, error) {
	var top float64
	for _, ap := range applied {
		key := Key(ap.Quota.Name, ap.Value)
		e := s.entry(key)
		e.mu.Lock()
		var err error
		if e.rev == 0 {
			err = s.load(ctx, key, e)
		}
		st := e.val.clone()
		e.mu.Unlock()
		if err != nil {
			return 0, err
		}
		st.normalize(ap.Quota, zone, now)
		top = max(top, st.usage(ap, zone, now).Percent)
	}
	return int64(math.Floor(top)), nil
}

// Keys lists the store's keys (quota name and scope value).
func (s *Store) Keys(ctx context.Context) ([]string, error) {
	lister, err := s.kv.ListKeys(ctx)
	if err != nil {
		return nil, fmt.Errorf("quota keys: %w", err)
	}
	var out []string
	for k := range lister.Keys() {
		out = append(out, k)
	}
	return out, nil
}

func isConflict(err error) bool {
	var apiErr *jetstream.APIError
	return errors.Is(err, jetstream.ErrKeyExists) ||
		errors.As(err, &apiErr) && (apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
			apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant)
}

// ParseKey splits a key made by Key into the quota name and scope value.
func ParseKey(key string) (name, value string, ok bool) {
	for i := 0; i < len(key); i++ {
		if key[i] != '.' {
			continue
		}
		name, value = key[:i], key[i+1:]
		if len(value) > 0 && value[0] == '=' {
			b, err := hex.DecodeString(value[1:])
			if err != nil {
				return "", "", false
			}
			value = string(b)
		}
		return name, value, name != "" && value != ""
	}
	return "", "", false
}

// Cached is a quota's usage for one scope value as this instance last saw
// it, without reading the store; false when it never read it.
func (s *Store) Cached(zone *time.Location, ap limits.Applied, now time.Time) (Usage, bool) {
	e := s.entry(Key(ap.Quota.Name, ap.Value))
	e.mu.Lock()
	if e.rev == 0 {
		e.mu.Unlock()
		return Usage{}, false
	}
	st := e.val.clone()
	e.mu.Unlock()
	st.normalize(ap.Quota, zone, now)
	return st.usage(ap, zone, now), true
}

// Open returns a store over the quota buckets of a gateway (provisioned by
// broker.Provision) through js.
func Open(ctx context.Context, js jetstream.JetStream, subjects broker.Subjects) (*Store, error) {
	kv, err := js.KeyValue(ctx, subjects.Bucket(broker.BucketQuota))
	if err != nil {
		return nil, fmt.Errorf("quota bucket %s: %w", subjects.Bucket(broker.BucketQuota), err)
	}
	holds, err := js.KeyValue(ctx, subjects.Bucket(broker.BucketQuotaHolds))
	if err != nil {
		return nil, fmt.Errorf("quota holds bucket %s: %w", subjects.Bucket(broker.BucketQuotaHolds), err)
	}
	return New(kv, holds), nil
}
