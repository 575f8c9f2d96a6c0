package main

import (
	"context"
	"encoding/json"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/tollgate/tollgate/enforcer/gateway"
	"github.com/tollgate/tollgate/enforcer/limits"
	"github.com/tollgate/tollgate/enforcer/quota"
)

// TestQuotaStatus: quota status reads the quotas a gateway left in its
// data folder, in the windows of the config's time zone, as JSON and as a
// table.
func TestQuotaStatus(t *testing.T) {
	_, config := writeGatewayConfig(t)
	extra := "quota_time_zone: Europe/Berlin\nquotas:\n" +
		"  - {name: agent-day, scope: agent, window: day, max_tokens: 1000}\n" +
		"  - {name: platform-month, scope: team, match: platform, window: month, max_cost_usd: 10}\n"
	f, err := os.OpenFile(config, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString(extra); err != nil {
		t.Fatal(err)
	}
	f.Close()
	cfg, err := gateway.LoadConfig(config)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	gw, err := gateway.Start(ctx, cfg, gateway.Options{NoEnforcer: true})
	if err != nil {
		t.Fatal(err)
	}
	store, err := quota.Open(ctx, gw.JetStream(), gw.Subjects())
	if err != nil {
		t.Fatal(err)
	}
	set := cfg.EnforcerConfig().LimitSet()
	now := time.Now()
	research := []limits.Applied{{Quota: &set.Quotas[0], Value: "research"}}
	if _, err := store.Reserve(ctx, set.Zone(), research, "run/hop1", quota.Amount{Tokens: 300}, now.Add(time.Hour), now, false); err != nil {
		t.Fatal(err)
	}
	if err := store.Settle(ctx, set.Zone(), research, "run/hop1", &quota.Amount{Tokens: 250, CostUSD: 2}, now); err != nil {
		t.Fatal(err)
	}
	if err := gw.Close(ctx); err != nil {
		t.Fatal(err)
	}

	out, _, err := tollgate(t, ctx, "quota", "status", "--config", config, "--json")
	if err != nil {
		t.Fatal(err)
	}
	var us []quota.Usage
	if err := json.Unmarshal([]byte(out), &us); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if len(us) != 2 {
		t.Fatalf("status %s; want the research agent's day and the platform team's month", out)
	}
	berlin, _ := time.LoadLocation("Europe/Berlin")
	day := now.In(berlin)
	if u := us[0]; u.Quota != "agent-day" || u.Value != "research" || u.Settled.Tokens != 250 || u.Held != 0 || u.Percent != 25 ||
		!u.Start.Equal(time.Date(day.Year(), day.Month(), day.Day(), 0, 0, 0, 0, berlin)) {
		t.Fatalf("agent-day: %+v", u)
	}
	if u := us[1]; u.Quota != "platform-month" || u.Value != "platform" || u.Settled.CostUSD != 0 || u.Percent != 0 {
		t.Fatalf("platform-month (nothing counted yet): %+v", u)
	}
	table, _, err := tollgate(t, ctx, "quota", "status", "--config", config)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(table, "agent-day") || !strings.Contains(table, "250+0/1000") || !strings.Contains(table, "25.0%") {
		t.Fatalf("table:\n%s", table)
	}
}
