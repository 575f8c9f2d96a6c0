package enforcer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/tollgate/tollgate/broker"
	"github.com/tollgate/tollgate/enforcer/limits"
	"github.com/tollgate/tollgate/schemas"
)

// Circuit states.
const (
	CircuitClosed   = "closed"
	CircuitOpen     = "open"
	CircuitHalfOpen = "half_open"
)

// circuit is a target's breaker state, kept in the KV bucket
// broker.BucketBreakers so that every enforcer instance sees the same.
type circuit struct {
	State string `json:"s"`
	// Failures are the times (unix ms) of recent failures.
	Failures []int64 `json:"f,omitempty"`
	// OpenedAt is when it last opened (unix ms); TrialUntil how long the
	// one hop let through when half-open has to settle it.
	OpenedAt   int64 `json:"o,omitempty"`
	TrialUntil int64 `json:"t,omitempty"`
}

// breakerKV returns the breakers bucket, opened once.
func (e *Enforcer) breakerKV(ctx context.Context) (jetstream.KeyValue, error) {
	e.breakerMu.Lock()
	defer e.breakerMu.Unlock()
	if e.breakers != nil {
		return e.breakers, nil
	}
	kv, err := e.js.KeyValue(ctx, e.subjects.Bucket(broker.BucketBreakers))
	if err != nil {
		return nil, fmt.Errorf("breakers bucket: %w", err)
	}
	e.breakers = kv
	return kv, nil
}

// updateCircuit applies fn to target's circuit with compare-and-set and
// returns the state before and after.
func (e *Enforcer) updateCircuit(ctx context.Context, target string, fn func(c *circuit) bool) (before, after circuit, err error) {
	kv, err := e.breakerKV(ctx)
	if err != nil {
		return before, after, err
	}
	for range 32 {
		var rev uint64
		c := circuit{State: CircuitClosed}
		entry, gerr := kv.Get(ctx, target)
		switch {
		case errors.Is(gerr, jetstream.ErrKeyNotFound):
		case gerr != nil:
			return before, after, fmt.Errorf("circuit of %s: %w", target, gerr)
		default:
			rev = entry.Revision()
			_ = json.Unmarshal(entry.Value(), &c)
		}
		before = c
		c.Failures = append([]int64(nil), c.Failures...)
		if !fn(&c) {
			return before, before, nil
		}
		b, _ := json.Marshal(c)
		if rev == 0 {
			_, err = kv.Create(ctx, target, b)
		} else {
			_, err = kv.Update(ctx, target, b, rev)
		}
		if err == nil {
			return before, c, nil
		}
		var apiErr *jetstream.APIError
		if !errors.Is(err, jetstream.ErrKeyExists) && !(errors.As(err, &apiErr) && apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence) {
			return before, after, fmt.Errorf("circuit of %s: %w", target, err)
		}
	}
	return before, after, fmt.Errorf("circuit of %s: too much contention", target)
}

// circuitOpen reports whether hops to target must fail fast (or fall
// back): its circuit is open and cooling down, or half-open with its one
// trial hop still out. An open circuit past its cool-down lets exactly one
// hop through, fleet-wide (compare-and-set to half_open).
func (e *Enforcer) circuitOpen(ctx context.Context, target string, b limits.Breaker, now time.Time) (bool, []outgoing) {
	if !b.Enabled() {
		return false, nil
	}
	open := false
	before, after, err := e.updateCircuit(ctx, target, func(c *circuit) bool {
		nowMS := now.UnixMilli()
		switch c.State {
		case CircuitOpen:
			if nowMS < c.OpenedAt+b.CoolDownOrDefault().Milliseconds() {
				open = true
				return false
			}
		case CircuitHalfOpen:
			if nowMS < c.TrialUntil {
				open = true
				return false
			}
		default:
			return false
		}
		// Cooled down (or the trial never settled): this hop is the trial.
		c.State, c.TrialUntil = CircuitHalfOpen, nowMS+e.cfg.DefaultTimeout.Milliseconds()
		return true
	})
	if err != nil {
		e.cfg.Logger.Warn("circuit", "target", target, "err", err)
		return false, nil // the breaker is advice: it never blocks on its own failure
	}
	return open, e.circuitChanged(target, before, after, now)
}

// circuitResult records a hop's outcome at target in its breaker: a
// failure (timeout, failed reply, retried attempt) counts in the window
// and opens the circuit at Failures, or again when half-open; a success
// closes it.
func (e *Enforcer) circuitResult(ctx context.Context, target string, failed bool, now time.Time) []outgoing {
	b := e.rules.Load().Limits.Targets[target].Breaker
	if !b.Enabled() {
		return nil
	}
	before, after, err := e.updateCircuit(ctx, target, func(c *circuit) bool {
		nowMS := now.UnixMilli()
		if !failed {
			if c.State == CircuitClosed && len(c.Failures) == 0 {
				return false
			}
			*c = circuit{State: CircuitClosed}
			return true
		}
		from := nowMS - b.WindowOrDefault().Milliseconds()
		kept := c.Failures[:0]
		for _, f := range c.Failures {
			if f > from {
				kept = append(kept, f)
			}
		}
		c.Failures = append(kept, nowMS)
		if c.State == CircuitHalfOpen || c.State != CircuitOpen && len(c.Failures) >= b.Failures {
			c.State, c.OpenedAt, c.TrialUntil = CircuitOpen, nowMS, 0
		}
		return true
	})
	if err != nil {
		e.cfg.Logger.Warn("circuit", "target", target, "err", err)
		return nil
	}
	return e.circuitChanged(target, before, after, now)
}

// circuitChanged logs, counts and alerts a change of a circuit's state.
func (e *Enforcer) circuitChanged(target string, before, after circuit, now time.Time) []outgoing {
	if before.State == after.State || after.State == "" {
		return nil
	}
	e.cfg.Logger.Warn("circuit changed", "target", target, "from", before.State, "to", after.State, "failures", len(after.Failures))
	e.cfg.Metrics.count(func(m *Metrics) prometheus.Counter { return m.circuits.WithLabelValues(target, after.State) })
	e.cfg.Metrics.count(func(m *Metrics) prometheus.Counter { return m.alerts })
	alert := schemas.Alert{Version: schemas.Version, Kind: schemas.AlertCircuit, At: now.UTC(), By: schemas.GatewayActor,
		Agent: target, Circuit: after.State, Value: float64(len(after.Failures)),
		Message: fmt.Sprintf("circuit of %s: %s -> %s (%d recent failures)", target, before.State, after.State, len(after.Failures))}
	data, err := schemas.Encode(&alert)
	if err != nil {
		return nil
	}
	return []outgoing{{subject: e.subjects.AlertFleet(schemas.AlertCircuit, target), data: data}}
}
