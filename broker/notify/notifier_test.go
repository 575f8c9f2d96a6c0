package notify_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/tollgate/tollgate/broker"
	"github.com/tollgate/tollgate/broker/brokertest"
	"github.com/tollgate/tollgate/broker/notify"
	"github.com/tollgate/tollgate/schemas"
)

// sinkServer is a real HTTP server standing for a webhook receiver: it
// fails the first failFirst requests of each alert (or all, with failAll)
// and records the bodies it accepted.
type sinkServer struct {
	*httptest.Server
	mu        sync.Mutex
	attempts  map[string]int
	accepted  map[string]int
	bodies    [][]byte
	headers   []http.Header
	failFirst int
	failAll   bool
}

func newSinkServer(t *testing.T, failFirst int, failAll bool) *sinkServer {
	s := &sinkServer{attempts: map[string]int{}, accepted: map[string]int{}, failFirst: failFirst, failAll: failAll}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		var a struct {
			RunID string `json:"run_id"`
			Text  string `json:"text"`
		}
		_ = json.Unmarshal(body, &a)
		key := a.RunID + a.Text
		s.mu.Lock()
		defer s.mu.Unlock()
		s.attempts[key]++
		if s.failAll || s.attempts[key] <= s.failFirst {
			http.Error(w, "not now", http.StatusServiceUnavailable)
			return
		}
		s.accepted[key]++
		s.bodies = append(s.bodies, body)
		s.headers = append(s.headers, r.Header.Clone())
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *sinkServer) count(key string) (attempts, accepted int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.attempts[key], s.accepted[key]
}

func (s *sinkServer) total() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.bodies)
}

type env struct {
	bus *brokertest.Bus
	reg *prometheus.Registry
	n   *notify.Notifier
}

func start(t *testing.T, cfg notify.Config) *env {
	t.Helper()
	return startOn(t, brokertest.Start(t, brokertest.Options{Open: true}), cfg)
}

func startOn(t *testing.T, bus *brokertest.Bus, cfg notify.Config) *env {
	t.Helper()
	e := &env{bus: bus, reg: prometheus.NewRegistry()}
	n, err := notify.New(cfg, notify.Options{
		Dial: func(name string) (*nats.Conn, error) {
			return broker.Connect(broker.ConnectConfig{URL: bus.Server.ClientURL(), Name: name})
		},
		Subjects:   bus.Subjects,
		Registerer: e.reg,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := n.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = n.Close() })
	e.n = n
	return e
}

func (e *env) alert(t *testing.T, run string) []byte {
	t.Helper()
	a := schemas.Alert{Version: schemas.Version, RunID: run, At: time.Now().UTC(), Kind: schemas.AlertHalt, Reason: schemas.ReasonLoop,
		Limit: "max_edge_repeats", Value: 4, Bound: 3, By: schemas.GatewayActor, Message: "edge a→b repeated", LedgerSeq: 7}
	b, err := json.Marshal(a)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := e.bus.JS.Publish(ctx, e.bus.Subjects.Alert(run), b); err != nil {
		t.Fatal(err)
	}
	return b
}

func fastRetry() notify.RetryConfig {
	return notify.RetryConfig{MaxRetries: 3, InitialInterval: 20 * time.Millisecond, MaxInterval: 50 * time.Millisecond}
}

// TestDeliveredOncePerAlert: each alert reaches the webhook exactly once,
// signed with the sink's secret, and the Slack-compatible sink gets a text
// message; a command sink gets the alert's JSON on its standard input.
func TestDeliveredOncePerAlert(t *testing.T) {
	hook, slack := newSinkServer(t, 0, false), newSinkServer(t, 0, false)
	out := filepath.Join(t.TempDir(), "alerts.jsonl")
	e := start(t, notify.Config{Retry: fastRetry(), Sinks: []notify.SinkConfig{
		{Name: "hook", Type: notify.SinkWebhook, URL: hook.URL, Secret: "s3cret"},
		{Name: "slack", Type: notify.SinkSlack, URL: slack.URL},
		{Name: "page", Type: notify.SinkCommand, Command: []string{"sh", "-c", "cat >> " + out + "; echo >> " + out}},
	}})
	runs := []string{schemas.NewID(), schemas.NewID(), schemas.NewID()}
	var raw [][]byte
	for _, r := range runs {
		raw = append(raw, e.alert(t, r))
	}
	brokertest.Eventually(t, 20*time.Second, "every sink has every alert", func() bool {
		b, _ := os.ReadFile(out)
		return hook.total() == 3 && slack.total() == 3 && strings.Count(string(b), "\n") == 3
	})
	// A fourth alert, once delivered, shows no earlier one came twice.
	last := schemas.NewID()
	e.alert(t, last)
	brokertest.Eventually(t, 20*time.Second, "the fourth alert arrives", func() bool {
		_, n := hook.count(last)
		return n == 1 && slack.total() == 4
	})
	for i, r := range runs {
		if attempts, accepted := hook.count(r); attempts != 1 || accepted != 1 {
			t.Errorf("run %s: %d attempts, %d accepted", r, attempts, accepted)
		}
		if got := hook.headers[i].Get(notify.SignatureHeader); got != notify.Sign([]byte("s3cret"), raw[i]) {
			t.Errorf("signature %q", got)
		}
	}
	if !strings.Contains(string(slack.bodies[0]), `"text":`) || !strings.Contains(string(slack.bodies[0]), "halted run") {
		t.Errorf("slack body %s", slack.bodies[0])
	}
	b, _ := os.ReadFile(out)
	for _, r := range runs {
		if !strings.Contains(string(b), r) {
			t.Errorf("the command did not get run %s's alert:\n%s", r, b)
		}
	}
	if n := testutil.ToFloat64(counter(t, e, "hook", "delivered")); n != 4 {
		t.Errorf("delivered counter %v", n)
	}
}

// TestFailThenRecover: a sink that fails twice and then recovers gets the
// alert, once, and nothing goes to the dead letters.
func TestFailThenRecover(t *testing.T) {
	hook := newSinkServer(t, 2, false)
	e := start(t, notify.Config{Retry: fastRetry(), Sinks: []notify.SinkConfig{{Name: "hook", Type: notify.SinkWebhook, URL: hook.URL}}})
	run := schemas.NewID()
	e.alert(t, run)
	brokertest.Eventually(t, 20*time.Second, "the recovered sink gets the alert", func() bool {
		_, n := hook.count(run)
		return n == 1
	})
	if attempts, _ := hook.count(run); attempts != 3 {
		t.Errorf("%d attempts, want 3", attempts)
	}
	if n := deadLetters(t, e); n != 0 {
		t.Errorf("%d dead letters", n)
	}
}

// TestAlwaysFailingGoesToDeadLetters: an alert a sink refuses after every
// retry lands on the sink's dead-letter subject with the alert intact; a
// healthy sink beside it still gets it once.
func TestAlwaysFailingGoesToDeadLetters(t *testing.T) {
	bad, good := newSinkServer(t, 0, true), newSinkServer(t, 0, false)
	e := start(t, notify.Config{Retry: fastRetry(), Sinks: []notify.SinkConfig{
		{Name: "bad", Type: notify.SinkWebhook, URL: bad.URL},
		{Name: "good", Type: notify.SinkWebhook, URL: good.URL},
	}})
	run := schemas.NewID()
	raw := e.alert(t, run)
	brokertest.Eventually(t, 20*time.Second, "the alert is dead-lettered", func() bool { return deadLetters(t, e) == 1 })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := e.bus.JS.Stream(ctx, e.bus.Subjects.Stream(broker.StreamDeadLetter))
	if err != nil {
		t.Fatal(err)
	}
	m, err := s.GetLastMsgForSubject(ctx, e.bus.Subjects.DeadLetterAlerts("bad"))
	if err != nil {
		t.Fatal(err)
	}
	if string(m.Data) != string(raw) || !strings.Contains(m.Header.Get("reason_poisoned"), "503") {
		t.Fatalf("dead letter %s %v", m.Data, m.Header)
	}
	if attempts, _ := bad.count(run); attempts != 4 {
		t.Errorf("the failing sink was tried %d times, want 4", attempts)
	}
	if _, n := good.count(run); n != 1 {
		t.Errorf("the healthy sink got the alert %d times", n)
	}
	if n := testutil.ToFloat64(counter(t, e, "bad", "dead_lettered")); n != 1 {
		t.Errorf("dead-lettered counter %v", n)
	}
}

func deadLetters(t *testing.T, e *env) uint64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := e.bus.JS.Stream(ctx, e.bus.Subjects.Stream(broker.StreamDeadLetter))
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return info.State.Msgs
}

func counter(t *testing.T, e *env, sink, outcome string) prometheus.Collector {
	t.Helper()
	mfs, err := e.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "x"})
	for _, mf := range mfs {
		if mf.GetName() != "tollgate_alert_deliveries_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			var s, o string
			for _, l := range m.GetLabel() {
				switch l.GetName() {
				case "sink":
					s = l.GetValue()
				case "outcome":
					o = l.GetValue()
				}
			}
			if s == sink && o == outcome {
				c.Add(m.GetCounter().GetValue())
			}
		}
	}
	return c
}

// TestRestartWithOtherRetry: a notifier restarted with other retry
// settings binds its sinks' consumers again (their ack wait follows) and
// delivers what was published while it was down, once.
func TestRestartWithOtherRetry(t *testing.T) {
	hook := newSinkServer(t, 0, false)
	bus := brokertest.Start(t, brokertest.Options{Open: true})
	sinks := []notify.SinkConfig{{Name: "hook", Type: notify.SinkWebhook, URL: hook.URL}}
	e := startOn(t, bus, notify.Config{Retry: fastRetry(), Sinks: sinks})
	first := schemas.NewID()
	e.alert(t, first)
	brokertest.Eventually(t, 20*time.Second, "the first alert arrives", func() bool { _, n := hook.count(first); return n == 1 })
	if err := e.n.Close(); err != nil {
		t.Fatal(err)
	}
	down := schemas.NewID()
	e.alert(t, down)
	other := fastRetry()
	other.MaxRetries, other.MaxInterval = 7, time.Second
	startOn(t, bus, notify.Config{Retry: other, Sinks: sinks})
	brokertest.Eventually(t, 20*time.Second, "the alert published while down arrives", func() bool { _, n := hook.count(down); return n == 1 })
	if _, n := hook.count(first); n != 1 {
		t.Fatalf("the first alert arrived %d times", n)
	}
}
