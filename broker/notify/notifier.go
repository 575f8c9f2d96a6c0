package notify

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	wmnats "github.com/ThreeDotsLabs/watermill-nats/v2/pkg/nats"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/message/router/middleware"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/tollgate/tollgate/broker"
	"github.com/tollgate/tollgate/schemas"
)

// Options are what a notifier needs besides its config.
type Options struct {
	// Dial opens a connection in the gateway account (one per sink and one
	// for the dead letters: watermill's subscriber drains its connection
	// when it closes). Required.
	Dial func(name string) (*nats.Conn, error)
	// Subjects are the gateway's names.
	Subjects broker.Subjects
	// Logger receives a line per delivery (info), failed attempt (warn)
	// and dead letter (error). Default: discard.
	Logger *slog.Logger
	// Registerer, when set, gets the notifier's metrics.
	Registerer prometheus.Registerer
	// HTTPClient posts to webhooks; default a client without a timeout of
	// its own (Config.Timeout bounds each attempt).
	HTTPClient *http.Client
}

// Notifier delivers alerts to sinks until closed.
type Notifier struct {
	cfg    Config
	o      Options
	log    *slog.Logger
	router *message.Router
	conns  []*nats.Conn
	// sinkConns are the subscribers' connections, drained before the
	// router closes.
	sinkConns []*nats.Conn
	done      chan error
	outcome   *prometheus.CounterVec
}

// drainWait bounds how long Close waits for deliveries in hand.
const drainWait = 5 * time.Second

// ErrPermanent marks an alert no retry can deliver (it does not decode):
// it goes to the dead letters at once.
var ErrPermanent = errors.New("undeliverable alert")

// ConsumerPrefix starts the name of every sink's durable consumer on
// ALERTS: ConsumerPrefix + the sink's name.
const ConsumerPrefix = "alerts_"

// New builds a notifier for cfg's sinks; Start runs it.
func New(cfg Config, o Options) (*Notifier, error) {
	cfg.SetDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if o.Dial == nil {
		return nil, errors.New("notify: Options.Dial is required")
	}
	n := &Notifier{cfg: cfg, o: o, log: o.Logger, done: make(chan error, 1)}
	if n.log == nil {
		n.log = slog.New(slog.DiscardHandler)
	}
	if o.HTTPClient == nil {
		n.o.HTTPClient = &http.Client{}
	}
	n.outcome = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "tollgate_alert_deliveries_total",
		Help: "Alert delivery attempts by sink and outcome (delivered, failed, dead_lettered, skipped)."}, []string{"sink", "outcome"})
	if o.Registerer != nil {
		if err := o.Registerer.Register(n.outcome); err != nil {
			var already prometheus.AlreadyRegisteredError
			if !errors.As(err, &already) {
				return nil, err
			}
			n.outcome = already.ExistingCollector.(*prometheus.CounterVec)
		}
	}
	return n, nil
}

// Start builds the router (one handler per sink) and runs it until Close
// or ctx ends; it returns once the router runs.
func (n *Notifier) Start(ctx context.Context) (err error) {
	defer func() {
		if err != nil {
			n.closeConns()
		}
	}()
	router, err := message.NewRouter(message.RouterConfig{CloseTimeout: 10 * time.Second}, watermill.NopLogger{})
	if err != nil {
		return fmt.Errorf("notify: %w", err)
	}
	pubConn, err := n.dial("tollgate alerts dead letters")
	if err != nil {
		return err
	}
	pub, err := wmnats.NewPublisherWithNatsConn(pubConn, wmnats.PublisherPublishConfig{
		Marshaler: &wmnats.NATSMarshaler{}, SubjectCalculator: wmnats.DefaultSubjectCalculator, JetStream: wmnats.JetStreamConfig{TrackMsgId: true},
	}, watermill.NopLogger{})
	if err != nil {
		return fmt.Errorf("notify: dead-letter publisher: %w", err)
	}
	// Each attempt may take Timeout, and the backoff between attempts
	// adds up: the consumer must not redeliver an alert still being
	// retried.
	c := n.cfg
	ackWait := time.Duration(c.Retry.MaxRetries+1)*(c.Timeout+c.Retry.MaxInterval) + time.Minute
	js, err := jetstream.New(pubConn)
	if err != nil {
		return fmt.Errorf("notify: %w", err)
	}
	for _, sc := range c.Sinks {
		if err := n.ensureConsumer(ctx, js, ConsumerPrefix+sc.Name, ackWait); err != nil {
			return err
		}
		conn, err := n.dial("tollgate alerts " + sc.Name)
		if err != nil {
			return err
		}
		n.sinkConns = append(n.sinkConns, conn)
		durable := ConsumerPrefix + sc.Name
		sub, err := wmnats.NewSubscriberWithNatsConn(conn, wmnats.SubscriberSubscriptionConfig{
			Unmarshaler:       rawUnmarshaler{},
			SubjectCalculator: wmnats.DefaultSubjectCalculator,
			AckWaitTimeout:    ackWait,
			CloseTimeout:      5 * time.Second,
			QueueGroupPrefix:  durable,
			JetStream: wmnats.JetStreamConfig{
				DurablePrefix: durable,
				SubscribeOptions: []nats.SubOpt{nats.ManualAck(), nats.AckExplicit(), nats.AckWait(ackWait),
					nats.BindStream(n.o.Subjects.Stream(broker.StreamAlerts))},
			},
		}, watermill.NopLogger{})
		if err != nil {
			return fmt.Errorf("notify: sink %s: %w", sc.Name, err)
		}
		h := router.AddConsumerHandler("alerts-"+sc.Name, n.o.Subjects.AlertAll(), sub, n.handle(sc, newSink(sc, n.o.HTTPClient)))
		name := sc.Name
		poison, err := middleware.PoisonQueueWithFilter(pub, n.o.Subjects.DeadLetterAlerts(sc.Name), func(err error) bool {
			n.outcome.WithLabelValues(name, "dead_lettered").Inc()
			n.log.Error("alert dead-lettered", "sink", name, "err", err)
			return true
		})
		if err != nil {
			return fmt.Errorf("notify: %w", err)
		}
		retry := middleware.Retry{
			MaxRetries: c.Retry.MaxRetries, InitialInterval: c.Retry.InitialInterval, MaxInterval: c.Retry.MaxInterval,
			Multiplier: c.Retry.Multiplier, RandomizationFactor: 0.2, ResetContextOnRetry: true,
			ShouldRetry: func(p middleware.RetryParams) bool { return !errors.Is(p.Err, ErrPermanent) },
		}
		// Outermost first: the throttle paces the sink, the poison queue
		// takes what every retry failed, each attempt has its timeout, and
		// a panicking sink is a failed attempt.
		h.AddMiddleware(middleware.NewThrottle(int64(c.ThrottlePerSecond), time.Second).Middleware, poison, retry.Middleware,
			middleware.Timeout(c.Timeout), middleware.Recoverer)
	}
	n.router = router
	go func() { n.done <- router.Run(context.WithoutCancel(ctx)) }()
	select {
	case <-router.Running():
	case err := <-n.done:
		return fmt.Errorf("notify: router: %w", err)
	case <-ctx.Done():
		_ = router.Close()
		return ctx.Err()
	}
	n.log.Info("alert notifier started", "sinks", len(c.Sinks))
	return nil
}

// ensureConsumer creates a sink's durable push consumer on ALERTS, or
// brings an existing one's ack wait in line with the config. The notifier
// creates it itself, so that closing a subscription never deletes it (the
// NATS client deletes the consumers its subscriptions created): alerts
// published while the gateway is down wait for it.
func (n *Notifier) ensureConsumer(ctx context.Context, js jetstream.JetStream, durable string, ackWait time.Duration) error {
	stream := n.o.Subjects.Stream(broker.StreamAlerts)
	cons, err := js.PushConsumer(ctx, stream, durable)
	switch {
	case errors.Is(err, jetstream.ErrConsumerNotFound):
		_, err = js.CreatePushConsumer(ctx, stream, jetstream.ConsumerConfig{
			Durable:        durable,
			Description:    "Tollgate alert notifier: one sink",
			DeliverSubject: nats.NewInbox(),
			DeliverGroup:   durable,
			DeliverPolicy:  jetstream.DeliverNewPolicy,
			FilterSubject:  n.o.Subjects.AlertAll(),
			AckPolicy:      jetstream.AckExplicitPolicy,
			AckWait:        ackWait,
			MaxAckPending:  1024,
		})
		if err != nil {
			return fmt.Errorf("notify: create consumer %s: %w", durable, err)
		}
		return nil
	case err != nil:
		return fmt.Errorf("notify: consumer %s: %w", durable, err)
	}
	cfg := cons.CachedInfo().Config
	if cfg.AckWait == ackWait {
		return nil
	}
	cfg.AckWait = ackWait
	if _, err := js.UpdatePushConsumer(ctx, stream, cfg); err != nil {
		return fmt.Errorf("notify: update consumer %s: %w", durable, err)
	}
	return nil
}

func (n *Notifier) dial(name string) (*nats.Conn, error) {
	nc, err := n.o.Dial(name)
	if err != nil {
		return nil, fmt.Errorf("notify: %w", err)
	}
	n.conns = append(n.conns, nc)
	return nc, nil
}

func (n *Notifier) closeConns() {
	for _, nc := range n.conns {
		nc.Close()
	}
	n.conns = nil
}

// Close stops the router, waiting for deliveries under way. Closing a
// closed notifier does nothing.
func (n *Notifier) Close() error {
	var err error
	if n.router != nil {
		// Drain the subscribers' connections first: deliveries in hand
		// finish and are acknowledged, and no message callback is still
		// running when the subscriber closes its output (watermill-nats
		// v2.1.3 closes it under a running callback otherwise).
		for _, nc := range n.sinkConns {
			_ = nc.Drain()
		}
		deadline := time.Now().Add(drainWait)
		for _, nc := range n.sinkConns {
			for !nc.IsClosed() && time.Now().Before(deadline) {
				time.Sleep(10 * time.Millisecond)
			}
		}
		err = n.router.Close()
		<-n.done
		n.router = nil
	}
	n.closeConns()
	return err
}

// handle delivers one alert to one sink; an error is a failed attempt.
func (n *Notifier) handle(sc SinkConfig, s sink) message.NoPublishHandlerFunc {
	return func(m *message.Message) error {
		var a schemas.Alert
		if err := json.Unmarshal(m.Payload, &a); err != nil || a.RunID == "" {
			return fmt.Errorf("%w: %s: not an alert: %v", ErrPermanent, m.Metadata.Get("subject"), err)
		}
		if !sc.wants(&a) {
			n.outcome.WithLabelValues(sc.Name, "skipped").Inc()
			return nil
		}
		if err := s.deliver(m.Context(), &a, m.Payload); err != nil {
			n.outcome.WithLabelValues(sc.Name, "failed").Inc()
			n.log.Warn("alert delivery failed", "sink", sc.Name, "run", a.RunID, "kind", a.Kind, "err", err)
			return err
		}
		n.outcome.WithLabelValues(sc.Name, "delivered").Inc()
		n.log.Info("alert delivered", "sink", sc.Name, "run", a.RunID, "kind", a.Kind)
		return nil
	}
}

// rawUnmarshaler reads the alerts as the gateway publishes them (plain
// JSON): the message's UUID is its stream sequence, its subject is kept.
type rawUnmarshaler struct{}

func (rawUnmarshaler) Unmarshal(m *nats.Msg) (*message.Message, error) {
	id := m.Header.Get(nats.MsgIdHdr)
	if meta, err := m.Metadata(); err == nil && id == "" {
		id = strconv.FormatUint(meta.Sequence.Stream, 10)
	}
	if id == "" {
		id = watermill.NewUUID()
	}
	msg := message.NewMessage(id, m.Data)
	msg.Metadata.Set("subject", m.Subject)
	return msg, nil
}
