package gateway

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/tollgate/tollgate/broker"
	"github.com/tollgate/tollgate/schemas"
)

// reloadWindow is how far a reload request's sent_at may be from the
// gateway's clock when the enforcer config sets no replay window.
const reloadWindow = 5 * time.Minute

// listenReload answers operators' signed reload requests on tg.ctl.reload
// (every gateway instance reloads; the first answer reaches the operator).
func (g *Gateway) listenReload() error {
	sub, err := g.nc.Subscribe(g.subjects.CtlReload(), g.onReload)
	if err != nil {
		return fmt.Errorf("subscribe %s: %w", g.subjects.CtlReload(), err)
	}
	g.reloadSub = sub
	return nil
}

// onReload checks a reload request's signature against the operator's
// registered key and reloads the config file (Options.LoadConfig).
func (g *Gateway) onReload(m *nats.Msg) {
	reply := func(r schemas.ReloadReply) {
		b, _ := json.Marshal(r)
		_ = m.Respond(b)
	}
	req, err := g.checkReload(m.Data)
	if err != nil {
		g.log.Warn("reload request refused", "err", err)
		g.reloaded(false)
		reply(schemas.ReloadReply{Error: err.Error()})
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	g.log.Info("reload requested", "by", req.By, "reason", req.Reason)
	rep, err := g.ReloadFromSource(ctx, "operator "+req.By)
	if err != nil {
		reply(schemas.ReloadReply{Error: err.Error()})
		return
	}
	reply(rep)
}

// checkReload decodes a reload request and checks who sent it and when.
func (g *Gateway) checkReload(data []byte) (*schemas.ReloadRequest, error) {
	req, err := schemas.DecodeReloadRequest(data)
	if err != nil {
		return nil, err
	}
	g.mu.Lock()
	cfg := g.cfg
	g.mu.Unlock()
	var pub string
	for _, op := range cfg.Operators {
		if op.ID == req.By {
			pub = op.PublicKey
		}
	}
	window := cfg.Enforcer.ReplayWindow
	if window <= 0 {
		window = reloadWindow
	}
	if err := broker.VerifyControl(schemas.CmdReload, req.By, pub, data, req.SentAt, time.Now(), window); err != nil {
		return nil, err
	}
	return req, nil
}

// ReloadFromSource reloads the config that Options.LoadConfig reads, as
// SIGHUP and `tollgate reload` do; by says who asked, for the log. The
// outcome is logged and counted; a refused config leaves the running one.
func (g *Gateway) ReloadFromSource(ctx context.Context, by string) (schemas.ReloadReply, error) {
	g.mu.Lock()
	o := g.opts
	g.mu.Unlock()
	if o.LoadConfig == nil {
		return schemas.ReloadReply{}, fmt.Errorf("%w: this gateway was started without a config file to reload", ErrReloadRefused)
	}
	cfg, err := o.LoadConfig()
	if err == nil {
		err = g.Reload(ctx, cfg, o)
	} else {
		g.reloaded(false)
		err = fmt.Errorf("%w, the running config stays:\n%w", ErrReloadRefused, err)
	}
	if err != nil {
		g.log.Error("reload refused; the running config stays", "by", by, "err", err)
		return schemas.ReloadReply{}, err
	}
	reg := g.Registry()
	rep := schemas.ReloadReply{OK: true, Identities: len(reg.Dir.All()), Policies: g.Policies().Len()}
	g.log.Info("reloaded", "by", by, "identities", rep.Identities, "policies", rep.Policies)
	return rep, nil
}
