package broker

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// StreamOptions tunes the streams Provision creates.
type StreamOptions struct {
	// Replicas is the replica count of every stream (1 on a single server,
	// 3 on a cluster).
	Replicas int
	// DeliverMaxAge bounds how long deliveries are kept. A delivery subject
	// is written once; a re-forward of the same hop within this age is
	// refused by the server, so it is also how long a crashed enforcer may
	// stay down without risking a second delivery.
	DeliverMaxAge time.Duration
	// AlertMaxAge bounds how long alerts are kept.
	AlertMaxAge time.Duration
	// DuplicateWindow is the Nats-Msg-Id dedupe window of every stream.
	DuplicateWindow time.Duration
	// MaxMsgSize caps a submission at the stream; larger ones are refused by
	// the server at publish time. Zero leaves it to the server's max_payload.
	MaxMsgSize int32
	// LedgerMaxBytes caps the ledger's size; zero leaves it unbounded (up to
	// the store's disk). A full ledger discards nothing: appends are
	// refused and the gateway fails closed.
	LedgerMaxBytes int64
	// Partitions, when set, partitions the runs across enforcer
	// instances: SUBMIT maps each submission to its run's partition
	// (SubmitTransform; see partition.go). Zero leaves SUBMIT unmapped,
	// one queue shared by every enforcer.
	Partitions int
}

func (o *StreamOptions) setDefaults() {
	if o.Replicas == 0 {
		o.Replicas = 1
	}
	if o.DeliverMaxAge == 0 {
		o.DeliverMaxAge = 72 * time.Hour
	}
	if o.AlertMaxAge == 0 {
		o.AlertMaxAge = 30 * 24 * time.Hour
	}
	if o.DuplicateWindow == 0 {
		o.DuplicateWindow = 2 * time.Minute
	}
}

// Validate reports every problem with the options.
func (o StreamOptions) Validate() error {
	var errs []error
	if o.Replicas < 0 || o.Replicas > 5 {
		errs = append(errs, fmt.Errorf("replicas is %d, want 1 to 5", o.Replicas))
	}
	if o.DeliverMaxAge < 0 || o.AlertMaxAge < 0 || o.DuplicateWindow < 0 {
		errs = append(errs, errors.New("ages and windows must not be negative"))
	}
	if o.Partitions < 0 || o.Partitions > MaxPartitions {
		errs = append(errs, fmt.Errorf("partitions is %d, want 0 to %d", o.Partitions, MaxPartitions))
	}
	if o.DeliverMaxAge > 0 && o.DuplicateWindow > o.DeliverMaxAge {
		errs = append(errs, errors.New("duplicate window is longer than the delivery max age"))
	}
	return errors.Join(errs...)
}

// StreamConfigs returns the configuration of every Tollgate stream.
func (s Subjects) StreamConfigs(o StreamOptions) []jetstream.StreamConfig {
	o.setDefaults()
	var submitTransform *jetstream.SubjectTransformConfig
	if o.Partitions > 0 {
		submitTransform = s.SubmitTransform(o.Partitions)
	}
	return []jetstream.StreamConfig{
		{
			Name:        s.Stream(StreamSubmit),
			Description: "Tollgate submissions: work queue read by the enforcers",
			Subjects:    []string{s.SubmitAll()},
			// Submissions are stored under their run's partition.
			SubjectTransform: submitTransform,
			Retention:        jetstream.WorkQueuePolicy,
			Storage:          jetstream.FileStorage,
			Replicas:         o.Replicas,
			Duplicates:       o.DuplicateWindow,
			MaxMsgSize:       o.MaxMsgSize,
		},
		{
			Name:        s.Stream(StreamDeliver),
			Description: "Tollgate deliveries: one subject per hop and kind, each written once",
			Subjects:    []string{s.DeliverAll()},
			Retention:   jetstream.LimitsPolicy,
			Storage:     jetstream.FileStorage,
			Replicas:    o.Replicas,
			Duplicates:  o.DuplicateWindow,
			MaxAge:      o.DeliverMaxAge,
		},
		{
			Name:        s.Stream(StreamLedger),
			Description: "Tollgate run ledger: append-only, hash-chained, one subject per run",
			Subjects:    []string{s.LedgerAll()},
			Retention:   jetstream.LimitsPolicy,
			Discard:     jetstream.DiscardNew,
			Storage:     jetstream.FileStorage,
			Replicas:    o.Replicas,
			Duplicates:  o.DuplicateWindow,
			DenyDelete:  true,
			DenyPurge:   true,
			AllowRollup: false,
			AllowDirect: true,
			MaxBytes:    o.ledgerMaxBytes(),
		},
		{
			Name:        s.Stream(StreamTimers),
			Description: "Tollgate timers: server-side schedules of hop deadlines and run wall clocks",
			Subjects:    []string{s.TimerAll()},
			Retention:   jetstream.WorkQueuePolicy,
			Storage:     jetstream.FileStorage,
			Replicas:    o.Replicas,
			Duplicates:  o.DuplicateWindow,
			// Schedules need rollups allowed (the server purges a fired
			// schedule with one); only the gateway may write here.
			AllowMsgSchedules: true,
			AllowRollup:       true,
		},
		{
			Name:        s.Stream(StreamAlerts),
			Description: "Tollgate alerts: limit breaches and halts",
			Subjects:    []string{s.AlertAll()},
			Retention:   jetstream.LimitsPolicy,
			Storage:     jetstream.FileStorage,
			Replicas:    o.Replicas,
			MaxAge:      o.AlertMaxAge,
		},
		{
			Name:        s.Stream(StreamDeadLetter),
			Description: "Tollgate dead letters: alerts no sink took after every retry",
			Subjects:    []string{s.DeadLetterAll()},
			Retention:   jetstream.LimitsPolicy,
			Storage:     jetstream.FileStorage,
			Replicas:    o.Replicas,
			MaxAge:      o.AlertMaxAge,
			Duplicates:  2 * time.Minute,
			AllowDirect: true,
		},
	}
}

// Provision creates or updates every Tollgate stream. It is idempotent.
// On a cluster that is still electing its meta leader it retries until ctx
// ends.
func Provision(ctx context.Context, js jetstream.JetStream, s Subjects, o StreamOptions) error {
	if err := o.Validate(); err != nil {
		return fmt.Errorf("stream options: %w", err)
	}
	for _, cfg := range s.StreamConfigs(o) {
		for {
			// On a cluster without a meta leader yet no server answers: each
			// attempt has a deadline of its own.
			attempt, cancel := context.WithTimeout(ctx, 5*time.Second)
			_, err := js.CreateOrUpdateStream(attempt, cfg)
			cancel()
			if err == nil {
				break
			}
			if errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
				continue
			}
			if !retryableProvisionError(err) || ctx.Err() != nil {
				return fmt.Errorf("provision stream %s: %w", cfg.Name, err)
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("provision stream %s: %w", cfg.Name, err)
			case <-time.After(250 * time.Millisecond):
			}
		}
	}
	if _, err := ProvisionRateBucket(ctx, js, s, o.Replicas); err != nil {
		return err
	}
	if _, err := ProvisionQuotaBucket(ctx, js, s, o.Replicas); err != nil {
		return err
	}
	replicas := max(o.Replicas, 1)
	if _, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket: s.Bucket(BucketBreakers), Description: "Tollgate circuit breakers, one entry per target",
		History: 1, Storage: jetstream.FileStorage, Replicas: replicas,
	}); err != nil {
		return fmt.Errorf("provision breakers bucket: %w", err)
	}
	if _, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket: s.Bucket(BucketSpend), Description: "Tollgate recent spend per agent and team (spend-spike alerts)",
		History: 1, Storage: jetstream.FileStorage, Replicas: replicas,
	}); err != nil {
		return fmt.Errorf("provision spend bucket: %w", err)
	}
	return nil
}

// ProvisionQuotaBucket creates or updates the KV buckets of spend quotas:
// one entry per quota and scope value, updated by compare-and-set by every
// enforcer instance (returned), and the holds of open hops
// (BucketQuotaHolds).
func ProvisionQuotaBucket(ctx context.Context, js jetstream.JetStream, s Subjects, replicas int) (jetstream.KeyValue, error) {
	if replicas == 0 {
		replicas = 1
	}
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      s.Bucket(BucketQuota),
		Description: "Tollgate spend quotas (settled and reserved spend per window)",
		History:     1,
		Storage:     jetstream.FileStorage,
		Replicas:    replicas,
	})
	if err != nil {
		return nil, fmt.Errorf("provision quota bucket: %w", err)
	}
	if _, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      s.Bucket(BucketQuotaHolds),
		Description: "Tollgate spend quotas: the reservations of open hops",
		History:     1,
		TTL:         QuotaHoldsMaxAge,
		Storage:     jetstream.FileStorage,
		Replicas:    replicas,
	}); err != nil {
		return nil, fmt.Errorf("provision quota holds bucket: %w", err)
	}
	return kv, nil
}

func retryableProvisionError(err error) bool {
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) {
		// 10008: JetStream not ready / no meta leader yet; 10074:
		// insufficient resources while peers are still joining.
		return apiErr.ErrorCode == 10008 || apiErr.ErrorCode == 10074 || apiErr.Code == 503
	}
	return errors.Is(err, nats.ErrNoResponders) || errors.Is(err, nats.ErrTimeout) ||
		errors.Is(err, jetstream.ErrJetStreamNotEnabled)
}

// ProvisionRateBucket creates or updates the KV bucket of per-agent token
// buckets that makes rate limits hold across enforcer instances.
func ProvisionRateBucket(ctx context.Context, js jetstream.JetStream, s Subjects, replicas int) (jetstream.KeyValue, error) {
	if replicas == 0 {
		replicas = 1
	}
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      s.Bucket(BucketRate),
		Description: "Tollgate per-agent invoke rate limits (token buckets)",
		History:     1,
		Storage:     jetstream.FileStorage,
		Replicas:    replicas,
	})
	if err != nil {
		return nil, fmt.Errorf("provision rate bucket: %w", err)
	}
	return kv, nil
}

// ProvisionIdentity creates or updates the durable DELIVER consumer of an
// identity: the only way it reads its deliveries. ackWait is how long an
// agent may work on a delivery before acking it (it may extend that with
// in-progress acks); zero means one minute.
func ProvisionIdentity(ctx context.Context, js jetstream.JetStream, s Subjects, id string, ackWait time.Duration) error {
	if ackWait == 0 {
		ackWait = time.Minute
	}
	_, err := js.CreateOrUpdateConsumer(ctx, s.Stream(StreamDeliver), jetstream.ConsumerConfig{
		Durable:       AgentConsumer(id),
		Description:   "deliveries of " + id,
		FilterSubject: s.DeliverFor(id),
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       ackWait,
		MaxDeliver:    -1,
		DeliverPolicy: jetstream.DeliverAllPolicy,
	})
	if err != nil {
		return fmt.Errorf("provision consumer of %s: %w", id, err)
	}
	return nil
}

// RemoveIdentity deletes the durable DELIVER consumer of an identity that
// is no longer registered, so that whoever is registered under its id
// later does not receive what was waiting for the old one. A consumer that
// is gone already is not an error.
func RemoveIdentity(ctx context.Context, js jetstream.JetStream, s Subjects, id string) error {
	err := js.DeleteConsumer(ctx, s.Stream(StreamDeliver), AgentConsumer(id))
	if err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
		return fmt.Errorf("remove consumer of %s: %w", id, err)
	}
	return nil
}

func (o StreamOptions) ledgerMaxBytes() int64 {
	if o.LedgerMaxBytes <= 0 {
		return -1
	}
	return o.LedgerMaxBytes
}
