package enforcer

import (
	"time"

	"github.com/tollgate/tollgate/enforcer/quota"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the enforcer's Prometheus metrics. Register them on a
// registry with NewMetrics and pass them in Config.Metrics; a nil *Metrics
// records nothing. docs/operations.md lists every one.
type Metrics struct {
	hops        *prometheus.CounterVec
	decision    prometheus.Histogram
	deliver     prometheus.Histogram
	halts       prometheus.Counter
	alerts      prometheus.Counter
	limited     *prometheus.CounterVec
	signatures  prometheus.Counter
	dropped     prometheus.Counter
	replayed    prometheus.Counter
	unavailable prometheus.Counter
	kept        prometheus.Counter
	errors      prometheus.Counter
	redelivered prometheus.Counter
	quotaOver   *prometheus.CounterVec
	circuits    *prometheus.CounterVec
	spikes      *prometheus.CounterVec
	quotaPct    *prometheus.GaugeVec
}

// NewMetrics creates the enforcer's metrics and registers them on reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	buckets := prometheus.ExponentialBuckets(0.0001, 2, 16) // 100 µs to ~3 s
	m := &Metrics{
		hops: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "tollgate_hops_total",
			Help: "Decisions recorded, by decision (allowed, denied) and denial reason."}, []string{"decision", "reason"}),
		decision: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "tollgate_decision_seconds",
			Help: "Time to decide and record a submission, from the shard taking it to its events appended.", Buckets: buckets}),
		deliver: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "tollgate_submit_to_deliver_seconds",
			Help: "Time from the broker storing a submission to its deliveries being stored.", Buckets: buckets}),
		halts:  prometheus.NewCounter(prometheus.CounterOpts{Name: "tollgate_halts_total", Help: "Runs halted, by a breach or an operator."}),
		alerts: prometheus.NewCounter(prometheus.CounterOpts{Name: "tollgate_alerts_total", Help: "Alerts published."}),
		limited: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "tollgate_rate_limited_total",
			Help: "Submissions denied by a fleet-wide rate (invoke_rate_limit, per_principal.run_rate)."}, []string{"limit"}),
		signatures: prometheus.NewCounter(prometheus.CounterOpts{Name: "tollgate_signature_failures_total",
			Help: "Submissions whose signature did not check (or was missing)."}),
		dropped: prometheus.NewCounter(prometheus.CounterOpts{Name: "tollgate_dropped_total",
			Help: "Denied submissions dropped unrecorded: their sender was over per_agent.reject_rate_limit."}),
		replayed: prometheus.NewCounter(prometheus.CounterOpts{Name: "tollgate_replayed_total",
			Help: "Repeated invokes answered with their recorded outcome."}),
		unavailable: prometheus.NewCounter(prometheus.CounterOpts{Name: "tollgate_unavailable_total",
			Help: "Submissions denied unavailable: the ledger had no room to record them."}),
		kept: prometheus.NewCounter(prometheus.CounterOpts{Name: "tollgate_kept_total",
			Help: "Replies and cancels the ledger had no room for, kept in SUBMIT to be recorded later (counted per try)."}),
		errors: prometheus.NewCounter(prometheus.CounterOpts{Name: "tollgate_enforcer_errors_total",
			Help: "Infrastructure errors (the submission is retried)."}),
		redelivered: prometheus.NewCounter(prometheus.CounterOpts{Name: "tollgate_redelivered_total",
			Help: "Submissions delivered again after they were decided (a crash, a lost ack): their effects are repeated."}),
	}
	m.quotaOver = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "tollgate_quota_exceeded_total",
		Help: "Hops whose estimate would pass a spend quota (denied, or recorded in audit mode), by quota."}, []string{"quota"})
	m.quotaPct = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "tollgate_quota_used_percent",
		Help: "Share of a spend quota settled and reserved in its current window, as this instance last saw it, by quota and scope value."}, []string{"quota", "value"})
	m.circuits = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "tollgate_circuit_transitions_total",
		Help: "Circuit-breaker state changes, by target and new state (closed, open, half_open)."}, []string{"target", "state"})
	m.spikes = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "tollgate_spend_spikes_total",
		Help: "Spend-spike alerts raised, by scope (agent, team)."}, []string{"scope"})
	reg.MustRegister(m.quotaOver, m.quotaPct, m.circuits, m.spikes)
	reg.MustRegister(m.hops, m.decision, m.deliver, m.halts, m.alerts, m.limited, m.signatures, m.dropped,
		m.replayed, m.unavailable, m.kept, m.errors, m.redelivered)
	return m
}

func (m *Metrics) hop(decision, reason string) {
	if m != nil {
		m.hops.WithLabelValues(decision, reason).Inc()
	}
}

func (m *Metrics) decided(d time.Duration) {
	if m != nil {
		m.decision.Observe(d.Seconds())
	}
}

func (m *Metrics) delivered(d time.Duration) {
	if m != nil {
		m.deliver.Observe(d.Seconds())
	}
}

// count increments the counter pick chooses, when there are metrics.
func (m *Metrics) count(pick func(*Metrics) prometheus.Counter) {
	if m != nil {
		pick(m).Inc()
	}
}

func (m *Metrics) limit(name string) {
	if m != nil {
		m.limited.WithLabelValues(name).Inc()
	}
}

func (m *Metrics) quotaExceeded(name string) {
	if m != nil {
		m.quotaOver.WithLabelValues(name).Inc()
	}
}

func (m *Metrics) quotaUsed(u quota.Usage) {
	if m != nil {
		m.quotaPct.WithLabelValues(u.Quota, u.Value).Set(u.Percent)
	}
}
