// Package runtreetest builds run ledgers by hand for tests and benchmarks:
// fixed ids, clock, keys and therefore signatures, sealed exactly as the
// ledger seals them, either in memory or appended to a real JetStream
// ledger. A Builder records what the enforcer would have recorded for the
// hops it is told about; it does not decide anything itself.
package runtreetest

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/nats-io/nkeys"

	"github.com/tollgate/tollgate/ledger"
	"github.com/tollgate/tollgate/schemas"
)

// Member is one identity of a built run, with the Cedar attributes the
// ledger records for it.
type Member struct {
	ID   string
	Type schemas.PrincipalType
	Team string
	Tags []string
}

// DemoCast is the demo's cast: user tomas and the four agents, with the
// teams and tags of cmd/tollgate's demo.
func DemoCast() []Member {
	return []Member{
		{ID: "tomas", Type: schemas.TypeUser, Team: "research"},
		{ID: "orchestrator", Type: schemas.TypeAgent, Team: "platform", Tags: []string{"entry", "orchestrator"}},
		{ID: "research", Type: schemas.TypeAgent, Team: "research"},
		{ID: "writer", Type: schemas.TypeAgent, Team: "content"},
		{ID: "critic", Type: schemas.TypeAgent, Team: "content"},
	}
}

// Key returns the fixed key pair of an identity, derived from its id, so
// that signatures (Ed25519 is deterministic) are the same on every run.
func Key(id string) nkeys.KeyPair {
	seed := sha256.Sum256([]byte("runtreetest key " + id))
	kp, err := nkeys.FromRawSeed(nkeys.PrefixByteUser, seed[:])
	if err != nil {
		// 32 bytes with a valid prefix always make a key.
		panic(fmt.Sprintf("runtreetest: key for %s: %v", id, err))
	}
	return kp
}

// PublicKey returns the nkey public key ("U...") of Key(id).
func PublicKey(id string) string {
	pub, err := Key(id).PublicKey()
	if err != nil {
		panic(fmt.Sprintf("runtreetest: public key for %s: %v", id, err))
	}
	return pub
}

type hop struct {
	id, parent, from, to string
	depth                int
	ancestry             []string
	open                 bool
	status               schemas.TaskState
	opened               time.Time
}

// Builder writes the events of one run. Every event is stamped one Step
// after the previous one. Methods record the first error and turn into
// no-ops after it; Records reports it.
type Builder struct {
	run      string
	now      time.Time
	step     time.Duration
	cast     map[string]Member
	head     ledger.Head
	recs     []ledger.Record
	hops     map[string]*hop
	order    []string
	root     string
	onBehalf string
	started  time.Time
	spent    schemas.Usage
	allowed  int
	n        int
	traceID  string
	noAttrs  bool
	err      error
}

// New starts a builder for run whose first event is at start.
func New(run string, start time.Time, cast []Member) *Builder {
	b := &Builder{run: run, now: start.UTC(), step: 10 * time.Millisecond, cast: map[string]Member{}, hops: map[string]*hop{},
		head: ledger.Head{Hash: schemas.GenesisHash}}
	for _, m := range cast {
		b.cast[m.ID] = m
	}
	return b
}

// Step sets the time between two events (default 10 ms).
func (b *Builder) Step(d time.Duration) *Builder {
	b.step = d
	return b
}

// Trace gives the run a trace id; hops then get span ids.
func (b *Builder) Trace(traceID string) *Builder {
	b.traceID = traceID
	return b
}

// WithoutAttributes leaves the Cedar attributes of caller and target out
// of the decisions, as ledgers written before they were recorded.
func (b *Builder) WithoutAttributes() *Builder {
	b.noAttrs = true
	return b
}

// SetMember changes (or adds) an identity's attributes for the events
// after it, as a config reload during the run would.
func (b *Builder) SetMember(m Member) { b.cast[m.ID] = m }

// Advance moves the clock forward by d before the next event.
func (b *Builder) Advance(d time.Duration) { b.now = b.now.Add(d) }

func (b *Builder) fail(err error) {
	if b.err == nil {
		b.err = err
	}
}

func (b *Builder) member(id string) Member {
	m, ok := b.cast[id]
	if !ok {
		b.fail(fmt.Errorf("runtreetest: %q is not in the cast", id))
		return Member{ID: id, Type: schemas.TypeAgent}
	}
	return m
}

func (b *Builder) emit(typ schemas.EventType, hopID string, data any) {
	if b.err != nil {
		return
	}
	ev, err := schemas.NewEvent(b.run, typ, hopID, b.now, data)
	if err != nil {
		b.fail(err)
		return
	}
	raw, err := ledger.Seal(&ev, b.head)
	if err != nil {
		b.fail(err)
		return
	}
	b.head = ledger.Head{Seq: ev.Seq, Hash: ev.Hash}
	b.recs = append(b.recs, ledger.Record{Event: ev, Raw: raw})
	b.now = b.now.Add(b.step)
}

func (b *Builder) nextHopID() string {
	b.n++
	return fmt.Sprintf("h%03d", b.n)
}

// message is an A2A v0.3 message with one text part.
func message(id, role, text string) json.RawMessage {
	m := map[string]any{"messageId": id, "role": role, "parts": []map[string]string{{"text": text}}}
	raw, _ := schemas.Encode(m)
	return raw
}

func (b *Builder) sign(env *schemas.Envelope) json.RawMessage {
	wire, err := env.Sign(Key(env.From).Sign)
	if err != nil {
		b.fail(fmt.Errorf("runtreetest: sign envelope of %s: %w", env.From, err))
	}
	return wire
}

// Start records run.started and the allowed root hop caller -> to, and
// returns the root hop's id.
func (b *Builder) Start(caller, to, text, workflow string, limits *schemas.RunLimits, policyIDs ...string) string {
	c := b.member(caller)
	id := b.nextHopID()
	b.root, b.onBehalf, b.started = id, caller, b.now
	b.emit(schemas.EventRunStarted, "", &schemas.RunStarted{RootHopID: id, Caller: caller, CallerType: c.Type, OnBehalfOf: caller,
		Workflow: workflow, Limits: limits, TraceID: b.traceID})
	h := &hop{id: id, from: caller, to: to, ancestry: []string{caller}}
	b.decide(h, text, nil, policyIDs, nil)
	return id
}

// Invoke records an allowed hop from the target of parent to to, and
// returns its id.
func (b *Builder) Invoke(parent, to, text string, policyIDs ...string) string {
	h := b.child(parent, to)
	if h == nil {
		return ""
	}
	b.decide(h, text, nil, policyIDs, nil)
	return h.id
}

// Denial is why Deny refuses a hop.
type Denial struct {
	Reason    schemas.Reason
	Message   string
	PolicyIDs []string
	Breach    *schemas.Breach
}

// Deny records a denied hop from the target of parent to to, and returns
// its id.
func (b *Builder) Deny(parent, to, text string, d Denial) string {
	h := b.child(parent, to)
	if h == nil {
		return ""
	}
	b.decide(h, text, &d, d.PolicyIDs, nil)
	return h.id
}

func (b *Builder) child(parentID, to string) *hop {
	p := b.hops[parentID]
	if p == nil {
		b.fail(fmt.Errorf("runtreetest: no hop %q", parentID))
		return nil
	}
	anc := append(slices.Clone(p.ancestry), p.to)
	return &hop{id: b.nextHopID(), parent: p.id, from: p.to, to: to, depth: p.depth + 1, ancestry: anc}
}

func (b *Builder) decide(h *hop, text string, denial *Denial, policyIDs []string, estimate *schemas.Usage) {
	from, to := b.member(h.from), b.member(h.to)
	env := &schemas.Envelope{Version: schemas.EnvelopeVersion, Kind: schemas.KindInvoke, HopID: h.id, ParentHopID: h.parent,
		From: h.from, To: h.to, Message: message("m-"+h.id, "ROLE_USER", text), Estimate: estimate, SentAt: b.now}
	if h.parent == "" {
		env.RunID = b.run
	}
	wire := b.sign(env)
	d := &schemas.HopDecision{
		Kind: schemas.KindInvoke, ParentHopID: h.parent, From: h.from, To: h.to,
		FromType: from.Type, FromTeam: from.Team, FromTags: from.Tags,
		ToType: to.Type, ToTeam: to.Team, ToTags: to.Tags,
		Action: actionFor(to.Type), Depth: h.depth, Ancestry: h.ancestry, OnBehalfOf: b.onBehalf,
		PolicyIDs: policyIDs, Cycle: slices.Contains(h.ancestry, h.to), Estimate: estimate,
		Envelope: wire, Size: len(wire), Digest: ledger.Digest(wire), SubmitSeq: uint64(len(b.recs) + 1),
	}
	if b.traceID != "" {
		d.TraceID, d.SpanID = b.traceID, fmt.Sprintf("%016x", b.n)
	}
	if b.noAttrs {
		d.FromType, d.FromTeam, d.FromTags, d.ToType, d.ToTeam, d.ToTags = "", "", nil, "", "", nil
	}
	typ := schemas.EventHopAllowed
	if denial != nil {
		typ = schemas.EventHopDenied
		d.Reason, d.Message, d.Breach = denial.Reason, denial.Message, denial.Breach
	} else {
		d.Deadline = b.now.Add(30 * time.Second)
		h.open = true
		b.allowed++
	}
	h.opened = b.now
	b.hops[h.id] = h
	b.order = append(b.order, h.id)
	b.emit(typ, h.id, d)
}

func actionFor(t schemas.PrincipalType) schemas.Action {
	switch t {
	case schemas.TypeTool:
		return schemas.ActionCallTool
	case schemas.TypeModel:
		return schemas.ActionCallModel
	}
	return schemas.ActionInvoke
}

// Reply records the target's reply closing hop.
func (b *Builder) Reply(hopID string, status schemas.TaskState, text string, usage *schemas.Usage) {
	h := b.hops[hopID]
	if h == nil || !h.open {
		b.fail(fmt.Errorf("runtreetest: hop %q is not open", hopID))
		return
	}
	res := &schemas.Result{Status: status, Output: message("r-"+h.id, "ROLE_AGENT", text)}
	if status == schemas.StateFailed {
		res.Output, res.Error = nil, text
	}
	env := &schemas.Envelope{Version: schemas.EnvelopeVersion, Kind: schemas.KindReply, HopID: h.id, From: h.to, To: h.from,
		Result: res, Usage: usage, SentAt: b.now}
	wire := b.sign(env)
	b.close(h, status)
	if usage != nil {
		b.spent.InputTokens += usage.InputTokens
		b.spent.OutputTokens += usage.OutputTokens
		b.spent.CostUSD += usage.CostUSD
	}
	b.emit(schemas.EventHopCompleted, h.id, &schemas.HopCompleted{Status: status, By: h.to, Usage: usage,
		LatencyMS: b.now.Sub(b.openedAt(h.id)).Milliseconds(), Error: res.Error, Envelope: wire, Digest: ledger.Digest(wire)})
}

// TimeOut records that hop passed its deadline.
func (b *Builder) TimeOut(hopID string) {
	h := b.hops[hopID]
	if h == nil || !h.open {
		b.fail(fmt.Errorf("runtreetest: hop %q is not open", hopID))
		return
	}
	b.close(h, schemas.TaskState(ledger.HopTimedOut))
	opened := b.openedAt(h.id)
	b.emit(schemas.EventHopTimedOut, h.id, &schemas.HopTimedOut{Deadline: opened.Add(30 * time.Second), LatencyMS: b.now.Sub(opened).Milliseconds()})
}

func (b *Builder) close(h *hop, status schemas.TaskState) { h.open, h.status = false, status }

func (b *Builder) openedAt(hopID string) time.Time {
	if h := b.hops[hopID]; h != nil {
		return h.opened
	}
	return b.now
}

// Breach records run.limit_breached.
func (b *Builder) Breach(br schemas.RunLimitBreached) {
	b.emit(schemas.EventRunLimitBreached, br.HopID, &br)
}

// Halt records run.halted, cancelling every open hop.
func (b *Builder) Halt(by, reason, limit string) {
	var open []string
	for _, id := range b.order {
		if h := b.hops[id]; h.open {
			open = append(open, id)
			b.close(h, schemas.StateCanceled)
		}
	}
	b.emit(schemas.EventRunHalted, "", &schemas.RunHalted{Reason: reason, By: by, Limit: limit, OpenHops: open})
}

// Complete records run.completed with the root hop's status.
func (b *Builder) Complete() {
	root := b.hops[b.root]
	if root == nil || root.open {
		b.fail(errors.New("runtreetest: the root hop is not closed"))
		return
	}
	b.emit(schemas.EventRunCompleted, "", &schemas.RunCompleted{Status: root.status, Hops: b.allowed, Tokens: b.spent.Tokens(),
		CostUSD: b.spent.CostUSD, DurationMS: b.now.Sub(b.started).Milliseconds()})
}

// Records returns the run's records (stream sequences zero) or the first
// error met while building.
func (b *Builder) Records() ([]ledger.Record, error) {
	if b.err != nil {
		return nil, b.err
	}
	return slices.Clone(b.recs), nil
}

// AppendTo appends the run to a real ledger. The events are sealed again
// on the ledger's head, which yields the very same hashes.
func (b *Builder) AppendTo(ctx context.Context, l *ledger.Ledger) ([]ledger.Record, error) {
	recs, err := b.Records()
	if err != nil {
		return nil, err
	}
	var head ledger.Head
	out := make([]ledger.Record, 0, len(recs))
	for _, r := range recs {
		ev := r.Event
		ev.Hash = ""
		h, rec, err := l.Append(ctx, head, ev)
		if err != nil {
			return nil, fmt.Errorf("append event %d of run %s: %w", ev.Seq, b.run, err)
		}
		if rec.Event.Hash != r.Event.Hash {
			return nil, fmt.Errorf("event %d of run %s: stored hash differs from the built one", ev.Seq, b.run)
		}
		head = h
		out = append(out, rec)
	}
	return out, nil
}

// WideCast is the cast of Wide: user "user" and agents agent-0 to agent-9.
func WideCast() []Member {
	cast := []Member{{ID: "user", Type: schemas.TypeUser, Team: "ops"}}
	for i := range 10 {
		cast = append(cast, Member{ID: fmt.Sprintf("agent-%d", i), Type: schemas.TypeAgent, Team: "fleet"})
	}
	return cast
}

// Wide builds a completed run of n hops (n >= 1): user calls agent-0, and
// hop i delegates to hops 10i+1 ... 10i+10 (a ten-ary tree), each hop
// allowed with a signed invoke and closed by a signed reply reporting 100
// tokens and $0.001. It has 2n+2 events.
func Wide(run string, start time.Time, n int) *Builder {
	b := New(run, start, WideCast()).Step(time.Millisecond)
	ids := make([]string, 0, n)
	ids = append(ids, b.Start("user", "agent-0", "go", "fleet", nil, "users-start-runs"))
	for i := 1; i < n; i++ {
		parent := ids[(i-1)/10]
		ids = append(ids, b.Invoke(parent, fmt.Sprintf("agent-%d", i%10), fmt.Sprintf("task %d", i), "agents-delegate"))
	}
	for i := n - 1; i >= 0; i-- {
		b.Reply(ids[i], schemas.StateCompleted, fmt.Sprintf("done %d", i), &schemas.Usage{InputTokens: 60, OutputTokens: 40, CostUSD: 0.001})
	}
	b.Complete()
	return b
}

// Tampering, for tests of verification: what an attacker with write access
// to a copy, or to the whole ledger, could do.

// Rechain seals records again from the first, as an attacker who can
// rewrite a whole ledger would after editing it: the hash chain is intact
// again, and only the envelope signatures can tell. The records returned
// carry their raw bytes only.
func Rechain(recs []ledger.Record) ([]ledger.Record, error) {
	var head ledger.Head
	out := make([]ledger.Record, len(recs))
	for i, r := range recs {
		ev, err := schemas.DecodeEvent(r.Raw)
		if err != nil {
			return nil, fmt.Errorf("rechain event %d: %w", i+1, err)
		}
		ev.Hash = ""
		raw, err := ledger.Seal(ev, head)
		if err != nil {
			return nil, fmt.Errorf("rechain event %d: %w", i+1, err)
		}
		head = ledger.Head{Seq: ev.Seq, Hash: ev.Hash}
		out[i] = ledger.Record{Raw: raw}
	}
	return out, nil
}

// EditData rewrites the data of the event in raw (its type-specific
// struct, T) with edit and seals it again at its place, so that its own
// hash matches and the next event's prev_hash no longer does.
func EditData[T any](raw []byte, edit func(*T)) ([]byte, error) {
	ev, err := schemas.DecodeEvent(raw)
	if err != nil {
		return nil, err
	}
	var d T
	if err := json.Unmarshal(ev.Data, &d); err != nil {
		return nil, fmt.Errorf("event %d is not a %T: %w", ev.Seq, d, err)
	}
	edit(&d)
	if ev.Data, err = schemas.Encode(&d); err != nil {
		return nil, err
	}
	return ledger.Seal(ev, ledger.Head{Seq: ev.Seq - 1, Hash: ev.PrevHash})
}

// ForgeInvoke replaces the message of the invoke recorded in raw (a
// hop.allowed or hop.denied) with text and signs the envelope with sign,
// keeping its sender: a forged signature, unless sign is the sender's key.
func ForgeInvoke(raw []byte, text string, sign func([]byte) ([]byte, error)) ([]byte, error) {
	var ferr error
	out, err := EditData(raw, func(d *schemas.HopDecision) {
		// The fixtures' hop ids are readable names, not derived ones: a
		// forger only needs the envelope decoded.
		env, _, err := schemas.DecodeEnvelope(d.Envelope, 0)
		if env == nil {
			ferr = err
			return
		}
		env.Message = message("forged", "ROLE_USER", text)
		d.Envelope, ferr = env.Sign(sign)
	})
	return out, errors.Join(ferr, err)
}
