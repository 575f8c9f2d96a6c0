package quota_test

import (
	"context"
	"testing"
	"time"

	"github.com/tollgate/tollgate/broker/brokertest"
	"github.com/tollgate/tollgate/enforcer/limits"
	"github.com/tollgate/tollgate/enforcer/quota"
)

func store(t *testing.T) *quota.Store {
	t.Helper()
	bus := brokertest.Start(t, brokertest.Options{})
	s, err := quota.Open(context.Background(), bus.JS, bus.Subjects)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestWindowsAlignToTheZone(t *testing.T) {
	ny, err := time.LoadLocation("America/New_York")
	if err != nil {
		t.Fatal(err)
	}
	// 03:30 UTC on March 1st is still February 28th in New York.
	now := time.Date(2026, 3, 1, 3, 30, 0, 0, time.UTC)
	cases := []struct {
		window     string
		start, end time.Time
	}{
		{limits.WindowHour, time.Date(2026, 2, 28, 22, 0, 0, 0, ny), time.Date(2026, 2, 28, 23, 0, 0, 0, ny)},
		{limits.WindowDay, time.Date(2026, 2, 28, 0, 0, 0, 0, ny), time.Date(2026, 3, 1, 0, 0, 0, 0, ny)},
		{limits.WindowMonth, time.Date(2026, 2, 1, 0, 0, 0, 0, ny), time.Date(2026, 3, 1, 0, 0, 0, 0, ny)},
	}
	for _, tc := range cases {
		start, end := quota.Window(&limits.Quota{Window: tc.window}, ny, now)
		if !start.Equal(tc.start) || !end.Equal(tc.end) {
			t.Errorf("%s window: %s - %s, want %s - %s", tc.window, start, end, tc.start, tc.end)
		}
	}
}

// TestRollingWindow: spend settled in a rolling window leaves it once it
// is older than the window; a reservation never settled lapses at its
// until, and settling a hop twice counts once.
func TestRollingWindow(t *testing.T) {
	s := store(t)
	ctx := context.Background()
	q := &limits.Quota{Name: "r", Scope: limits.ScopeAgent, Window: limits.WindowRolling, Rolling: time.Hour, MaxTokens: 100}
	ap := []limits.Applied{{Quota: q, Value: "a"}}
	t0 := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	reserve := func(hop string, tokens int64, at time.Time) *quota.Over {
		t.Helper()
		over, err := s.Reserve(ctx, time.UTC, ap, hop, quota.Amount{Tokens: tokens}, at.Add(10*time.Minute), at, false)
		if err != nil {
			t.Fatal(err)
		}
		return over
	}
	if over := reserve("r/1", 60, t0); over != nil {
		t.Fatalf("first reservation: over %+v", over)
	}
	if err := s.Settle(ctx, time.UTC, ap, "r/1", &quota.Amount{Tokens: 70}, t0.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if err := s.Settle(ctx, time.UTC, ap, "r/1", &quota.Amount{Tokens: 70}, t0.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if over := reserve("r/2", 31, t0.Add(2*time.Minute)); over == nil || over.Used != 70 || over.Would != 101 {
		t.Fatalf("70 settled (once) + 31: over %+v, want 101 > 100", over)
	}
	if over := reserve("r/3", 30, t0.Add(2*time.Minute)); over != nil {
		t.Fatalf("70 + 30: over %+v", over)
	}
	// r/3 never settles: 10 minutes later its reservation has lapsed.
	if over := reserve("r/4", 30, t0.Add(13*time.Minute)); over != nil {
		t.Fatalf("after r/3 lapsed: over %+v", over)
	}
	// An hour after the settle, its 70 tokens have left the window; r/4
	// has lapsed too.
	u, err := s.Usage(ctx, time.UTC, ap[0], t0.Add(62*time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if u.Settled.Tokens != 0 || u.Reserved.Tokens != 0 || u.Held != 0 {
		t.Fatalf("an hour later: %+v; want an empty window", u)
	}
}

// TestAllOrNothing: a hop that passes its second quota reserves in none.
func TestAllOrNothing(t *testing.T) {
	s := store(t)
	ctx := context.Background()
	agent := &limits.Quota{Name: "agent", Scope: limits.ScopeAgent, Window: limits.WindowDay, MaxTokens: 1000}
	team := &limits.Quota{Name: "team", Scope: limits.ScopeTeam, Window: limits.WindowDay, MaxCostUSD: 1}
	ap := []limits.Applied{{Quota: agent, Value: "a"}, {Quota: team, Value: "t"}}
	now := time.Now()
	over, err := s.Reserve(ctx, time.UTC, ap, "r/1", quota.Amount{Tokens: 10, CostUSD: 2}, now.Add(time.Hour), now, false)
	if err != nil || over == nil || over.Quota != team || over.Dimension != "cost" {
		t.Fatalf("over %+v, %v; want the team's cost", over, err)
	}
	u, err := s.Usage(ctx, time.UTC, ap[0], now)
	if err != nil || u.Reserved.Tokens != 0 || u.Held != 0 {
		t.Fatalf("agent quota after the refused hop: %+v %v; want nothing reserved", u, err)
	}
	if k := quota.Key("q", "a b"); k != "q.=612062" {
		t.Fatalf("key of a value with a space: %q", k)
	}
	if name, value, ok := quota.ParseKey("q.=612062"); !ok || name != "q" || value != "a b" {
		t.Fatalf("ParseKey: %q %q %v", name, value, ok)
	}
}

// TestChargeKeepsTheHold: a failed attempt's usage is charged while the
// hop stays open holding its reservation (renewed to the next deadline);
// the same step charges once; the close settles the rest.
func TestChargeKeepsTheHold(t *testing.T) {
	s := store(t)
	ctx := context.Background()
	q := &limits.Quota{Name: "d", Scope: limits.ScopeAgent, Window: limits.WindowDay, MaxTokens: 1000}
	ap := limits.Applied{Quota: q, Value: "a"}
	now := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	if over, err := s.Reserve(ctx, time.UTC, []limits.Applied{ap}, "run/h1", quota.Amount{Tokens: 100}, now.Add(time.Minute), now, false); err != nil || over != nil {
		t.Fatalf("reserve: %v %+v", err, over)
	}
	usage := func() quota.Usage {
		t.Helper()
		u, err := s.Usage(ctx, time.UTC, ap, now)
		if err != nil {
			t.Fatal(err)
		}
		return u
	}
	for range 2 { // the same step twice: one charge
		if err := s.Charge(ctx, time.UTC, []limits.Applied{ap}, "run/h1", &quota.Amount{Tokens: 30}, 7, now.Add(time.Hour), now); err != nil {
			t.Fatal(err)
		}
	}
	if u := usage(); u.Settled.Tokens != 30 || u.Reserved.Tokens != 100 || u.Held != 1 {
		t.Fatalf("after a charge: %+v; want 30 settled, the 100 still reserved by one hop", u)
	}
	// An earlier step (an effect found again) charges nothing.
	if err := s.Charge(ctx, time.UTC, []limits.Applied{ap}, "run/h1", &quota.Amount{Tokens: 30}, 5, now.Add(time.Hour), now); err != nil {
		t.Fatal(err)
	}
	// The reservation was renewed: it outlives its first until.
	later := now.Add(30 * time.Minute)
	if u, err := s.Usage(ctx, time.UTC, ap, later); err != nil || u.Reserved.Tokens != 100 {
		t.Fatalf("half an hour on: %+v %v; the renewed reservation lapsed", u, err)
	}
	if err := s.Settle(ctx, time.UTC, []limits.Applied{ap}, "run/h1", &quota.Amount{Tokens: 50}, now); err != nil {
		t.Fatal(err)
	}
	if u := usage(); u.Settled.Tokens != 80 || u.Reserved.Tokens != 0 || u.Held != 0 {
		t.Fatalf("after the close: %+v; want 80 settled, nothing held", u)
	}
	// A charge after the close finds no hold: nothing.
	if err := s.Charge(ctx, time.UTC, []limits.Applied{ap}, "run/h1", &quota.Amount{Tokens: 30}, 9, now.Add(time.Hour), now); err != nil {
		t.Fatal(err)
	}
	if u := usage(); u.Settled.Tokens != 80 {
		t.Fatalf("a charge after the close counted: %+v", u)
	}
}

// TestCloseKeepsTheHoldForTheSettle: a halt closes a hop (Close): its
// reservation is released at once, and the late settle of what it used is
// counted in the quota it reserved in, once, even when two instances
// (two Stores over one bucket) settle it at the same time. A closed hold
// is closed once, charges nothing and reserves nothing.
func TestCloseKeepsTheHoldForTheSettle(t *testing.T) {
	bus := brokertest.Start(t, brokertest.Options{})
	ctx := context.Background()
	s1, err := quota.Open(ctx, bus.JS, bus.Subjects)
	if err != nil {
		t.Fatal(err)
	}
	_, js2 := bus.NewConn()
	s2, err := quota.Open(ctx, js2, bus.Subjects)
	if err != nil {
		t.Fatal(err)
	}
	q := &limits.Quota{Name: "d", Scope: limits.ScopeAgent, Window: limits.WindowDay, MaxTokens: 1000, MaxCostUSD: 10}
	ap := []limits.Applied{{Quota: q, Value: "a"}}
	now := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	usage := func() quota.Usage {
		t.Helper()
		u, err := s2.Usage(ctx, time.UTC, ap[0], now)
		if err != nil {
			t.Fatal(err)
		}
		return u
	}
	for _, hop := range []string{"run/h1", "run/h2"} {
		if over, err := s1.Reserve(ctx, time.UTC, ap, hop, quota.Amount{Tokens: 100, CostUSD: 1}, now.Add(time.Minute), now, false); err != nil || over != nil {
			t.Fatalf("reserve %s: %v %+v", hop, err, over)
		}
	}
	for range 2 { // the halt's effects found again: closed once
		if err := s1.Close(ctx, time.UTC, ap, "run/h1", now); err != nil {
			t.Fatal(err)
		}
	}
	if u := usage(); u.Reserved.Tokens != 100 || u.Held != 1 || u.Settled.Tokens != 0 {
		t.Fatalf("after the close: %+v; want only h2's 100 reserved, nothing settled", u)
	}
	// A charge of a closed hop counts nothing.
	if err := s1.Charge(ctx, time.UTC, ap, "run/h1", &quota.Amount{Tokens: 5}, 9, now.Add(time.Hour), now); err != nil {
		t.Fatal(err)
	}
	// Both instances settle the same hop at once: counted once.
	errs := make(chan error, 2)
	for _, s := range []*quota.Store{s1, s2} {
		go func() { errs <- s.Settle(ctx, time.UTC, ap, "run/h1", &quota.Amount{Tokens: 250, CostUSD: 1.5}, now) }()
	}
	for range 2 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if u := usage(); u.Settled.Tokens != 250 || u.Settled.CostUSD != 1.5 || u.Reserved.Tokens != 100 || u.Held != 1 {
		t.Fatalf("after the settle: %+v; want 250 tokens and $1.5 settled once, h2 still holding 100", u)
	}
	// Closing or settling again after the settle: nothing.
	if err := s2.Close(ctx, time.UTC, ap, "run/h1", now); err != nil {
		t.Fatal(err)
	}
	if err := s2.Settle(ctx, time.UTC, ap, "run/h1", &quota.Amount{Tokens: 250}, now); err != nil {
		t.Fatal(err)
	}
	// h2 is closed and never settled: its reservation is released all the
	// same, and it holds nothing when its until passes.
	if err := s2.Close(ctx, time.UTC, ap, "run/h2", now); err != nil {
		t.Fatal(err)
	}
	if u := usage(); u.Settled.Tokens != 250 || u.Reserved.Tokens != 0 || u.Held != 0 {
		t.Fatalf("at the end: %+v; want 250 settled, nothing reserved", u)
	}
}
