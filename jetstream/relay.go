package jetstream

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/mire-go/mire"
	"github.com/mire-go/mire/projections"
	"github.com/nats-io/nats.go/jetstream"
)

// Defaults of Config.
const (
	SubjectPrefixDefault = "mire"
	MaxInFlightDefault   = 1024
	BatchSizeDefault     = 5000
	AckTimeoutDefault    = 5 * time.Second
)

// ErrDuplicateWindow is returned (wrapped) by Relay.CheckStream when the
// stream's duplicate window is shorter than a republish can take after a
// crash: a message republished after it would be stored twice.
var ErrDuplicateWindow = errors.New("mire/jetstream: duplicate window too short")

// Config configures a Relay. Stream and Categories are required.
type Config struct {
	// Name is the relay's projection: its checkpoint and lease (one active
	// relay per name across all replicas). Defaults to "jetstream." + Stream.
	Name string
	// Stream is the JetStream stream the relay's subjects are bound to. The
	// relay publishes only into it (Nats-Expected-Stream) and checks its
	// duplicate window at start. Required.
	Stream string
	// Categories are the categories of the log to publish: event
	// categories (each event becomes a message, its id the event's id) and
	// outboxes (each mire.Message is published as it is; see
	// mire.Store.EnqueueTx). Required.
	Categories []string
	// SubjectPrefix begins the default subjects of events:
	// "<prefix>.<category>.<type>". Defaults to SubjectPrefixDefault.
	SubjectPrefix string
	// Subject returns an event's subject. Defaults to
	// "<SubjectPrefix>.<category>.<type>" for events and the message's
	// Subject for outbox messages (see DefaultSubject). An error halts the
	// relay on that event (after the runner's retries), as a poison event
	// halts a projection.
	Subject func(env mire.Envelope) (string, error)
	// MaxInFlight bounds the messages published and not yet acknowledged.
	// Defaults to MaxInFlightDefault.
	MaxInFlight int
	// BatchSize is how many events the relay reads and publishes before it
	// checkpoints. Defaults to BatchSizeDefault.
	BatchSize int
	// Partitions splits the relay by stream, as projections.Projection's
	// Partitions does: the relays of every replica share the partitions,
	// and each publishes its streams' messages in order (a stream is in
	// one partition), so the broker still receives each stream in version
	// order, while streams of different partitions are published in
	// parallel. It needs the partition count's index
	// (projections.MigratePartitions). Defaults to 1: one active relay.
	Partitions int
	// AckTimeout is how long the relay waits for JetStream's
	// acknowledgement of one message before it publishes it again (the
	// broker drops the copy if the first one arrived). Defaults to
	// AckTimeoutDefault.
	AckTimeout time.Duration
	// PublishTimeout is how long one batch may take to publish, retries
	// included (a broker outage shorter than it costs no failed batch).
	// It must be shorter than the runner's LeaseTTL, within which a batch
	// must finish. Defaults to half the LeaseTTL.
	PublishTimeout time.Duration
	// Runner configures the runner that hosts the relay's projection
	// (lease TTL, owner, logger, telemetry). Its MeterProvider also creates
	// the relay's instruments (mire.relay.messages, mire.relay.duplicates,
	// mire.relay.publish.failures; the otel global if it is nil). Defaults
	// to the runner's defaults. A broker outage does not count towards its
	// MaxAttempts (the relay marks it projections.Transient): only a
	// message that can never be published (too large, a bad subject) or a
	// failing Subject function halts the relay.
	Runner *projections.Config
}

// Relay publishes events and outbox messages of a mire store to a
// JetStream stream, once each, in the order of each stream of the log.
// It is a projection (see projections.Runner): in every replica one Relay
// runs under the same Name, and one of them is active.
//
// A batch is published asynchronously, at most MaxInFlight messages at a
// time and at most one per stream of the log, so a message is sent only
// after JetStream has stored its predecessor: a failed publish can never
// let a later message of its stream overtake it. Payloads are published
// as stored, undecoded: the relay's process needs no event type
// registered. The checkpoint moves,
// in the projection's transaction, only when every message of the batch
// is acknowledged. After a crash or a failed batch its messages are
// published again under the same Nats-Msg-Id, and JetStream drops those it
// stored already (within the stream's duplicate window; see CheckStream).
type Relay struct {
	store  *mire.Store
	js     jetstream.JetStream
	cfg    Config
	rcfg   projections.Config
	runner *projections.Runner
	log    *slog.Logger
	subj   func(env mire.Envelope) (string, error)
	tel    *relayTelemetry
}

var streamName = regexp.MustCompile(`^[^\s.*>/\\]{1,255}$`)

// NewRelay returns a relay of store's events and outbox messages to js. It
// does not touch the database or the broker; call Run.
func NewRelay(store *mire.Store, js jetstream.JetStream, cfg *Config) (*Relay, error) {
	switch {
	case store == nil:
		return nil, fmt.Errorf("mire/jetstream: new relay: store is nil")
	case js == nil:
		return nil, fmt.Errorf("mire/jetstream: new relay: JetStream is nil")
	case cfg == nil:
		return nil, fmt.Errorf("mire/jetstream: new relay: config is nil: Stream and Categories are required")
	}
	r := &Relay{store: store, js: js, cfg: *cfg}
	if cfg.Runner != nil {
		r.rcfg = *cfg.Runner
	}
	r.rcfg.LeaseTTL = cmp.Or(r.rcfg.LeaseTTL, projections.LeaseTTLDefault)
	c := &r.cfg
	c.Name = cmp.Or(c.Name, "jetstream."+c.Stream)
	c.SubjectPrefix = cmp.Or(c.SubjectPrefix, SubjectPrefixDefault)
	c.MaxInFlight = cmp.Or(c.MaxInFlight, MaxInFlightDefault)
	c.BatchSize = cmp.Or(c.BatchSize, BatchSizeDefault)
	c.AckTimeout = cmp.Or(c.AckTimeout, AckTimeoutDefault)
	c.PublishTimeout = cmp.Or(c.PublishTimeout, r.rcfg.LeaseTTL/2)
	c.Categories = slices.Clone(c.Categories)
	switch {
	case !streamName.MatchString(c.Stream):
		return nil, fmt.Errorf("mire/jetstream: new relay: stream name %q must be 1 to 255 characters without spaces, '.', '*', '>', '/' or '\\'", c.Stream)
	case len(c.Categories) == 0:
		return nil, fmt.Errorf("mire/jetstream: new relay %q: no categories: name the event categories and outboxes to publish", c.Name)
	case !validSubject(c.SubjectPrefix):
		return nil, fmt.Errorf("mire/jetstream: new relay %q: subject prefix %q is not a NATS subject without wildcards", c.Name, c.SubjectPrefix)
	case c.MaxInFlight < 0, c.BatchSize < 0, c.AckTimeout < 0, c.PublishTimeout < 0:
		return nil, fmt.Errorf("mire/jetstream: new relay %q: negative MaxInFlight, BatchSize, AckTimeout or PublishTimeout", c.Name)
	case c.PublishTimeout >= r.rcfg.LeaseTTL:
		return nil, fmt.Errorf("mire/jetstream: new relay %q: PublishTimeout %v must be shorter than the runner's LeaseTTL %v, within which a batch must finish", c.Name, c.PublishTimeout, r.rcfg.LeaseTTL)
	}
	r.log = cmp.Or(r.rcfg.Logger, slog.Default())
	var err error
	if r.tel, err = newRelayTelemetry(r.rcfg.MeterProvider, c.Name); err != nil {
		return nil, fmt.Errorf("mire/jetstream: new relay %q: create instruments: %w", c.Name, err)
	}
	r.subj = c.Subject
	if r.subj == nil {
		r.subj = DefaultSubject(c.SubjectPrefix)
	}
	r.runner, err = projections.NewRunner(store, &r.rcfg, projections.Projection{
		Name: c.Name, Categories: c.Categories, BatchSize: c.BatchSize, Partitions: c.Partitions, Raw: true, Handler: (*handler)(r),
	})
	if err != nil {
		return nil, fmt.Errorf("mire/jetstream: new relay: %w", err)
	}
	return r, nil
}

// DefaultSubject returns the default subject function for prefix:
// "<prefix>.<category>.<type>" for events, the message's Subject for
// outbox messages.
func DefaultSubject(prefix string) func(env mire.Envelope) (string, error) {
	return func(env mire.Envelope) (string, error) {
		if m, ok := env.Data.(mire.Message); ok {
			return m.Subject, nil
		}
		return prefix + "." + env.Category + "." + env.Type, nil
	}
}

// Name returns the relay's projection name.
func (r *Relay) Name() string { return r.cfg.Name }

// Runner returns the runner that hosts the relay's projection, for its
// admin calls (Rebuild republishes the log from the start).
func (r *Relay) Runner() *projections.Runner { return r.runner }

// Run relays until ctx ends or Stop is called, as projections.Runner.Run
// does: in every replica, one of the relays of the same Name is active. It
// first checks the stream's duplicate window (CheckStream), in the
// background, logging what it finds wrong: a broker that is down at start
// is retried, not fatal.
func (r *Relay) Run(ctx context.Context) error {
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go r.checkInBackground(cctx)
	return r.runner.Run(ctx)
}

func (r *Relay) checkInBackground(ctx context.Context) {
	wait := 100 * time.Millisecond
	for {
		err := r.CheckStream(ctx)
		switch {
		case err == nil || ctx.Err() != nil:
			return
		case errors.Is(err, ErrDuplicateWindow), errors.Is(err, jetstream.ErrStreamNotFound):
			r.log.Warn("mire/jetstream: relay: check stream", "relay", r.cfg.Name, "err", err)
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		wait = min(2*wait, 10*time.Second)
	}
}

// CatchUp publishes everything up to the end of the log and returns (see
// projections.Runner.CatchUp), for tools, tests and benchmarks.
func (r *Relay) CatchUp(ctx context.Context) error { return r.runner.CatchUp(ctx) }

// Stop ends Run and releases the relay's lease (see
// projections.Runner.Stop). Call it before closing the store's pool.
func (r *Relay) Stop(ctx context.Context) error { return r.runner.Stop(ctx) }

// Status returns the relay's projection status: position, lag, owner,
// fence, state and last error.
func (r *Relay) Status(ctx context.Context) (projections.Status, error) {
	return r.runner.Status(ctx, r.cfg.Name)
}

// CheckStream checks that the relay's stream exists and that its duplicate
// window covers the longest time a message can take to be published again
// after a crash: the lease TTL (until another replica takes over), the
// recheck interval and the batch's publish timeout. A shorter window
// returns an error wrapping ErrDuplicateWindow: a message republished
// after it would be stored twice. Run calls it and logs the error.
func (r *Relay) CheckStream(ctx context.Context) error {
	s, err := r.js.Stream(ctx, r.cfg.Stream)
	if err != nil {
		return fmt.Errorf("mire/jetstream: relay %q: stream %q: %w", r.cfg.Name, r.cfg.Stream, err)
	}
	window := s.CachedInfo().Config.Duplicates
	need := r.rcfg.LeaseTTL + cmp.Or(r.rcfg.RecheckInterval, projections.RecheckIntervalDefault) + r.cfg.PublishTimeout
	if window < need {
		return fmt.Errorf("%w: stream %q keeps message ids for %v, but relay %q may republish a message up to %v later (lease TTL + recheck interval + publish timeout): raise the stream's Duplicates",
			ErrDuplicateWindow, r.cfg.Stream, window, r.cfg.Name, need)
	}
	return nil
}

// handler is the relay's projection handler.
type handler Relay

func (h *handler) Handle(ctx context.Context, tx pgx.Tx, env mire.Envelope) error {
	return h.HandleBatch(ctx, tx, []mire.Envelope{env})
}

func (h *handler) HandleBatch(ctx context.Context, tx pgx.Tx, events []mire.Envelope) error {
	if err := (*Relay)(h).publish(ctx, events); err != nil {
		return err
	}
	return asyncCommit(ctx, tx)
}

// asyncCommit lets the checkpoint's commit return before its WAL record is
// flushed to disk: a checkpoint lost in a crash of the database only makes
// the relay publish the batch again, which JetStream drops as duplicates
// within its window (the relay writes nothing else through tx). It spares
// each batch a disk flush, the largest fixed cost of a batch.
func asyncCommit(ctx context.Context, tx pgx.Tx) error {
	if _, err := tx.Exec(ctx, `SET LOCAL synchronous_commit = off`); err != nil {
		return fmt.Errorf("mire/jetstream: relay: %w", err)
	}
	return nil
}
