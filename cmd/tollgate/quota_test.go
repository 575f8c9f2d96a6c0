package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tollgate/tollgate/broker"
	"github.com/tollgate/tollgate/broker/agent"
	"github.com/tollgate/tollgate/broker/brokertest"
	"github.com/tollgate/tollgate/enforcer/gateway"
	"github.com/tollgate/tollgate/enforcer/limits"
	"github.com/tollgate/tollgate/enforcer/quota"
	"github.com/tollgate/tollgate/schemas"
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

// TestQuotaStatusAsOperator: against a running `tollgate serve`, an
// operator reads the quotas with the operator's own key (a signed request
// the gateway checks like a halt), as JSON and as a table; reading the
// bucket directly with that key is refused with advice; an agent's key is
// refused naming whose key it is; a request not signed by the operator's
// registered key is refused by the gateway with the reason.
func TestQuotaStatusAsOperator(t *testing.T) {
	dir, config := writeGatewayConfig(t)
	f, err := os.OpenFile(config, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString("quotas:\n  - {name: agent-day, scope: agent, window: day, max_tokens: 1000}\n"); err != nil {
		t.Fatal(err)
	}
	f.Close()
	ctx, cancel := context.WithCancel(context.Background())
	out := &syncBuffer{}
	done := make(chan error, 1)
	go func() {
		cmd := newRootCmd()
		cmd.SetArgs([]string{"serve", "--config", config})
		cmd.SetOut(out)
		cmd.SetErr(&syncBuffer{})
		done <- cmd.ExecuteContext(ctx)
	}()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	}()
	url := waitURL(t, out)
	keyFile := func(id string) string { return filepath.Join(dir, "keys", id+".nk") }
	connect := func(id string, h agent.Handler) *agent.Client {
		kp, err := broker.LoadSeed(keyFile(id))
		if err != nil {
			t.Fatal(err)
		}
		c, err := agent.Connect(ctx, agent.Config{ID: id, Key: kp, URL: url, Handler: h})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(c.Close)
		return c
	}
	cctx, ccancel := context.WithTimeout(ctx, 30*time.Second)
	defer ccancel()
	connect("research", func(context.Context, *agent.Task) (*agent.Result, error) {
		return &agent.Result{Output: agent.AgentText("found"), Usage: &schemas.Usage{InputTokens: 70}}, nil
	})
	connect("orchestrator", func(ctx context.Context, task *agent.Task) (*agent.Result, error) {
		r, err := task.Delegate(ctx, "research", agent.UserText("look"))
		if err != nil {
			return nil, err
		}
		return &agent.Result{Output: r.Output, Usage: &schemas.Usage{InputTokens: 5}}, nil
	})
	if _, err := connect("tomas", nil).Start(cctx, "orchestrator", agent.UserText("brief")); err != nil {
		t.Fatal(err)
	}

	var us []quota.Usage
	brokertest.Eventually(t, 10*time.Second, "the reply's usage is settled", func() bool {
		js, _, err := tollgate(t, cctx, "quota", "status", "--nats", url, "--operator", "ops", "--key", keyFile("ops"), "--json")
		if err != nil {
			t.Fatal(err)
		}
		us = nil
		if err := json.Unmarshal([]byte(js), &us); err != nil {
			t.Fatalf("%v: %s", err, js)
		}
		return len(us) == 2 && us[0].Held == 0 && us[1].Held == 0
	})
	byValue := map[string]quota.Usage{us[0].Value: us[0], us[1].Value: us[1]}
	if byValue["orchestrator"].Settled.Tokens != 70 || byValue["tomas"].Settled.Tokens != 5 || byValue["orchestrator"].Quota != "agent-day" {
		t.Fatalf("quotas as the operator reads them: %+v", us)
	}
	table, _, err := tollgate(t, cctx, "quota", "status", "--nats", url, "--operator", "ops", "--key", keyFile("ops"))
	if err != nil || !strings.Contains(table, "70+0/1000") || !strings.Contains(table, "7.0%") {
		t.Fatalf("table: %v\n%s", err, table)
	}
	// Without --operator the server says whose key it is: the operator's,
	// who asks the gateway in the same way.
	js, _, err := tollgate(t, cctx, "quota", "status", "--nats", url, "--creds", keyFile("ops"), "--json")
	var again []quota.Usage
	if err != nil || json.Unmarshal([]byte(js), &again) != nil || len(again) != 2 {
		t.Fatalf("quota status with the operator's key, no --operator: %v\n%s", err, js)
	}
	// An agent's key is not the operator's.
	_, _, err = tollgate(t, cctx, "quota", "status", "--nats", url, "--operator", "ops", "--key", keyFile("research"), "--json")
	if err == nil || !strings.Contains(err.Error(), "identity research's key") {
		t.Fatalf("quota status with an agent's key: %v", err)
	}
	// The operator's connection, a request signed by another key: the
	// gateway refuses it and says why.
	ops, err := broker.LoadSeed(keyFile("ops"))
	if err != nil {
		t.Fatal(err)
	}
	nc, err := broker.Connect(broker.ConnectConfig{URL: url, Key: ops, InboxPrefix: broker.InboxPrefix("ops"), Name: "test operator"})
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	other, err := broker.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	body, err := schemas.Encode(&schemas.QuotaStatusRequest{Version: schemas.Version, Cmd: schemas.CmdQuotaStatus, By: "ops", SentAt: time.Now().UTC()})
	if err != nil {
		t.Fatal(err)
	}
	signed, _, err := schemas.SignObject(body, schemas.ControlSigningContext, other.Sign)
	if err != nil {
		t.Fatal(err)
	}
	m, err := nc.RequestWithContext(cctx, broker.DefaultSubjects().CtlQuota(), signed)
	if err != nil {
		t.Fatal(err)
	}
	var rep schemas.QuotaStatusReply
	if err := json.Unmarshal(m.Data, &rep); err != nil || rep.OK || len(rep.Quotas) != 0 || !strings.Contains(rep.Error, `operator "ops"`) {
		t.Fatalf("a request signed by another key: %s (%v)", m.Data, err)
	}
	// And one naming an operator the gateway does not know.
	body, _ = schemas.Encode(&schemas.QuotaStatusRequest{Version: schemas.Version, Cmd: schemas.CmdQuotaStatus, By: "mallory", SentAt: time.Now().UTC()})
	signed, _, _ = schemas.SignObject(body, schemas.ControlSigningContext, ops.Sign)
	if m, err = nc.RequestWithContext(cctx, broker.DefaultSubjects().CtlQuota(), signed); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(m.Data, &rep); err != nil || rep.OK || !strings.Contains(rep.Error, `"mallory" is not a registered operator`) {
		t.Fatalf("a request by an unknown operator: %s (%v)", m.Data, err)
	}
}
