package gateway

import (
	"context"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/tollgate/tollgate/broker"
	"github.com/tollgate/tollgate/enforcer"
)

// metrics are the gateway's Prometheus registry: the enforcer's metrics,
// gauges read from the running parts, and the Go runtime's; served on the
// admin listener at /metrics.
type metrics struct {
	reg      *prometheus.Registry
	enforcer *enforcer.Metrics
	reloads  *prometheus.CounterVec
	// projectorStarts counts the projector's start attempts; projectorUp
	// is 1 while it runs.
	projectorStarts prometheus.Counter
	projectorUp     prometheus.Gauge
}

func (g *Gateway) newMetrics() *metrics {
	reg := prometheus.NewRegistry()
	m := &metrics{reg: reg, enforcer: enforcer.NewMetrics(reg)}
	m.reloads = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "tollgate_reloads_total",
		Help: "Config reloads, by outcome (ok, refused)."}, []string{"outcome"})
	gauge := func(name, help string, f func() float64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, f)
	}
	m.projectorStarts = prometheus.NewCounter(prometheus.CounterOpts{Name: "tollgate_projector_starts_total",
		Help: "Projector start attempts: more than one means ClickHouse was down or an insert failed, and it was retried with backoff."})
	m.projectorUp = prometheus.NewGauge(prometheus.GaugeOpts{Name: "tollgate_projector_up",
		Help: "1 while the ClickHouse projector runs, 0 while it waits to be retried (or without a DSN)."})
	reg.MustRegister(m.reloads, m.projectorStarts, m.projectorUp,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		gauge("tollgate_run_cache_bytes", "Estimated size of the run states the enforcer holds in memory.", func() float64 {
			if e := g.enf; e != nil {
				return float64(e.CacheBytes())
			}
			return 0
		}),
		gauge("tollgate_open_runs", "Open runs (started, not ended) the enforcer holds in memory.", func() float64 {
			if e := g.enf; e != nil {
				return float64(e.OpenRuns())
			}
			return 0
		}),
		gauge("tollgate_pending_submissions", "Submissions waiting in SUBMIT for the enforcers.", func() float64 {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			c, err := g.js.Consumer(ctx, g.subjects.Stream(broker.StreamSubmit), broker.EnforcerConsumer)
			if err != nil {
				return -1
			}
			info, err := c.Info(ctx)
			if err != nil {
				return -1
			}
			return float64(info.NumPending + uint64(info.NumAckPending))
		}),
		gauge("tollgate_projector_lag_events", "Ledger events the ClickHouse projection trails by (0 without a projector).", func() float64 {
			if p := g.Projector(); p != nil {
				return float64(p.Info().Lag())
			}
			return 0
		}),
		gauge("tollgate_projector_events", "Ledger events the projector wrote to ClickHouse since it started.", func() float64 {
			if p := g.Projector(); p != nil {
				return float64(p.Info().Events)
			}
			return 0
		}),
		gauge("tollgate_projector_errors", "Errors the projector hit (failed inserts, failed reads) since it started.", func() float64 {
			if p := g.Projector(); p != nil {
				return float64(p.Info().Errors)
			}
			return 0
		}),
	)
	return m
}

// metricsHandler serves the registry.
func (m *metrics) handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}
