package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/tollgate/tollgate/broker"
)

// admin is the operators' HTTP listener (admin.listen): /healthz, /readyz,
// and whatever else is mounted on its mux (metrics, the console).
type admin struct {
	srv *http.Server
	ln  net.Listener
	mux *http.ServeMux
}

// startAdmin listens on admin.listen at once, so that an address in use is
// an error of Start naming it, and serves in the background.
func (g *Gateway) startAdmin() error {
	addr := g.cfg.Admin.Listen
	if addr == "" {
		return nil
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("admin.listen %s: %w", addr, err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	mux.HandleFunc("GET /readyz", g.ready)
	mux.Handle("GET /metrics", g.metrics.handler())
	g.admin = &admin{srv: &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}, ln: ln, mux: mux}
	g.mountPprof()
	go func() {
		if err := g.admin.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			g.log.Error("admin listener", "err", err)
		}
	}()
	g.log.Info("admin listening", "addr", ln.Addr().String())
	return nil
}

// AdminAddr is the admin listener's address; "" without one.
func (g *Gateway) AdminAddr() string {
	if g.admin == nil {
		return ""
	}
	return g.admin.ln.Addr().String()
}

// Handle mounts h on the admin listener's mux at pattern (an
// http.ServeMux pattern). It does nothing without an admin listener.
func (g *Gateway) Handle(pattern string, h http.Handler) {
	if g.admin != nil {
		g.admin.mux.Handle(pattern, h)
	}
}

// Readiness says whether the gateway governs: connected to NATS, the
// streams present, the enforcer's consumer bound.
type Readiness struct {
	Ready  bool              `json:"ready"`
	Checks map[string]string `json:"checks"`
	// Projector is the ClickHouse projector's state, when there is one:
	// detail only, since analytics never hold governance back.
	Projector *ProjectorState `json:"projector,omitempty"`
}

// Ready checks what /readyz reports.
func (g *Gateway) Ready(ctx context.Context) Readiness {
	r := Readiness{Ready: true, Checks: map[string]string{}}
	fail := func(name, why string) {
		r.Ready = false
		r.Checks[name] = why
	}
	if g.nc == nil || !g.nc.IsConnected() {
		fail("nats", "not connected")
	} else {
		r.Checks["nats"] = "connected"
	}
	for _, name := range []string{broker.StreamSubmit, broker.StreamDeliver, broker.StreamLedger, broker.StreamAlerts, broker.StreamTimers} {
		if _, err := g.js.Stream(ctx, g.subjects.Stream(name)); err != nil {
			fail("stream "+name, err.Error())
		}
	}
	if g.enf == nil {
		fail("enforcer", "not running")
	} else if _, err := g.js.Consumer(ctx, g.subjects.Stream(broker.StreamSubmit), broker.EnforcerConsumer); err != nil {
		fail("enforcer", "consumer not bound: "+err.Error())
	} else {
		r.Checks["enforcer"] = "consuming"
	}
	if st, ok := g.ProjectorState(); ok {
		r.Projector = &st
	}
	return r
}

func (g *Gateway) ready(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
	defer cancel()
	rd := g.Ready(ctx)
	status := http.StatusOK
	if !rd.Ready {
		status = http.StatusServiceUnavailable
	}
	writeJSON(w, status, rd)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
