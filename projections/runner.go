package projections

import (
	"cmp"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/mire-go/mire"
	"github.com/mire-go/mire/internal/bridge"
	"github.com/mire-go/mire/internal/pgerr"
	"github.com/mire-go/mire/internal/telemetry"
	"github.com/mire-go/mire/pgschema"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"
)

// Defaults of Config.
const (
	LeaseTTLDefault        = 10 * time.Second
	RecheckIntervalDefault = time.Second
	PollIntervalDefault    = time.Second
	RetryBackoffDefault    = 100 * time.Millisecond
	MaxAttemptsDefault     = 5
)

// ErrStopped is returned (wrapped) by Run and CatchUp called after Stop,
// and by a CatchUp that Stop interrupted.
var ErrStopped = errors.New("mire: runner stopped")

// ErrHalted is returned (wrapped, with the error and event) by CatchUp and
// Rebuild when a projection halted on an event its handler keeps failing.
var ErrHalted = errors.New("mire: projection halted")

// Config tunes a Runner. A nil *Config means all defaults.
type Config struct {
	// LeaseTTL is how long a worker's lease on a projection lasts without
	// renewal. A worker renews it with every checkpoint and while idle, so a
	// batch must finish within it; a replica that dies is replaced within
	// LeaseTTL + RecheckInterval. Defaults to LeaseTTLDefault.
	LeaseTTL time.Duration
	// RecheckInterval is how often a standby replica tries to take over a
	// projection, and a halted one looks for a Resume. Defaults to
	// RecheckIntervalDefault.
	RecheckInterval time.Duration
	// PollInterval is the backstop: an idle worker reads again after it even
	// if no notification arrived. Defaults to PollIntervalDefault.
	PollInterval time.Duration
	// RetryBackoff is the first wait before a failed batch is retried; it
	// doubles with each attempt (with jitter). Defaults to
	// RetryBackoffDefault.
	RetryBackoff time.Duration
	// MaxAttempts is how many times an event is tried before its projection
	// halts. Defaults to MaxAttemptsDefault.
	MaxAttempts int
	// Owner names this runner in the leases it holds. It must be unique
	// among live runners: a runner takes over a lease held under its own
	// name at once, raising the fence (so a replica restarted under a
	// stable name, such as its pod name, resumes without waiting for the
	// lease of its previous life to expire, even after a crash). Defaults
	// to "host:pid:random", which is new at every start.
	Owner string
	// Logger receives handler failures, takeovers and lost leases; a line
	// about a failed batch carries the batch span's trace_id and span_id.
	// Defaults to the store's Config.Logger (itself slog.Default() unless
	// set).
	Logger *slog.Logger
	// TracerProvider creates the tracer of the runner's spans
	// (mire.projection.batch for each batch that delivers events, and
	// mire.projection.handle for each handler call, linked to the spans
	// that wrote its events). Defaults to the store's (its
	// Config.TracerProvider, or the otel global New read).
	TracerProvider trace.TracerProvider
	// MeterProvider creates the meter of the runner's instruments
	// (mire.projection.batch.duration, mire.projection.events,
	// mire.projection.handler.errors, mire.projection.halts, and, while
	// the runner runs, the gauges mire.projection.lag.events and
	// mire.projection.lag.seconds). Defaults to the store's.
	MeterProvider metric.MeterProvider
	// OnHalt, if set, tells the application that a projection has halted,
	// so that it can alert or exit: a halted projection is otherwise only
	// visible in its Status. It is called when this runner halts a
	// projection on an event its handler keeps failing (Config.MaxAttempts),
	// and again whenever this runner takes the lease of a projection that
	// is halted (after a restart, say), until Resume. name is the
	// projection's; err wraps ErrHalted and names the event (and, on the
	// halt itself, wraps the handler's error). OnHalt runs on a goroutine
	// of its own, so it may block or call Stop; it may outlive Run.
	// Defaults to nil: a halt is logged and shown in Status only.
	OnHalt func(name string, err error)
}

// Runner hosts projections: in every replica of an application, one Runner
// (or more) runs the same projections, and each projection (each
// partition of a partitioned one) is active in exactly one of them at a
// time.
type Runner struct {
	store   *mire.Store
	cfg     Config
	sql     *queries
	groups  []*group
	workers []*worker // every group's
	byName  map[string]*group
	tel     *runnerTelemetry // spans and metrics (telemetry.go)

	mu       sync.Mutex
	running  bool                    // a Run or CatchUp is in progress
	stopped  bool                    // Stop was called
	cancel   context.CancelCauseFunc // ends the last Run or CatchUp
	done     chan struct{}           // closed when the last Run or CatchUp has returned
	released error                   // the leases it could not release

	noRelease bool // tests: stop without releasing leases, as a crash would
}

// NewRunner returns a Runner for the projections on store. It does not
// touch the database; call Run.
func NewRunner(store *mire.Store, cfg *Config, projections ...Projection) (*Runner, error) {
	if store == nil {
		return nil, fmt.Errorf("mire: new runner: store is nil")
	}
	if cfg == nil {
		cfg = &Config{}
	}
	r := &Runner{store: store, cfg: *cfg, sql: queriesFor(store.Schema()), byName: make(map[string]*group)}
	r.cfg.LeaseTTL = cmp.Or(cfg.LeaseTTL, LeaseTTLDefault)
	r.cfg.RecheckInterval = cmp.Or(cfg.RecheckInterval, RecheckIntervalDefault)
	r.cfg.PollInterval = cmp.Or(cfg.PollInterval, PollIntervalDefault)
	r.cfg.RetryBackoff = cmp.Or(cfg.RetryBackoff, RetryBackoffDefault)
	r.cfg.MaxAttempts = cmp.Or(cfg.MaxAttempts, MaxAttemptsDefault)
	r.cfg.Logger = telemetry.WrapLogger(cmp.Or(cfg.Logger, bridge.Logger(store)))
	providers := bridge.Telemetry(store)
	r.cfg.TracerProvider = cmp.Or(cfg.TracerProvider, providers.Tracer)
	r.cfg.MeterProvider = cmp.Or(cfg.MeterProvider, providers.Meter)
	var err error
	if r.tel, err = newRunnerTelemetry(r.cfg.TracerProvider, r.cfg.MeterProvider, providers.Namespace); err != nil {
		return nil, fmt.Errorf("mire: new runner: create instruments: %w", err)
	}
	if r.cfg.Owner == "" {
		host, _ := os.Hostname()
		r.cfg.Owner = fmt.Sprintf("%s:%d:%s", host, os.Getpid(), rand.Text()[:8])
	}
	if err := r.cfg.validate(); err != nil {
		return nil, err
	}
	if len(projections) == 0 {
		return nil, fmt.Errorf("mire: new runner: no projections")
	}
	for _, p := range projections {
		if err := p.validate(); err != nil {
			return nil, fmt.Errorf("mire: new runner: %w", err)
		}
		if err := p.checkRoutes(store); err != nil {
			return nil, fmt.Errorf("mire: new runner: %w", err)
		}
		if _, dup := r.byName[p.Name]; dup {
			return nil, fmt.Errorf("mire: new runner: projection %q given twice", p.Name)
		}
		p.BatchSize = cmp.Or(p.BatchSize, BatchSizeDefault)
		p.Partitions = cmp.Or(p.Partitions, 1)
		g := newGroup(r, p)
		r.groups = append(r.groups, g)
		r.workers = append(r.workers, g.workers...)
		r.byName[p.Name] = g
	}
	return r, nil
}

func (c *Config) validate() error {
	switch {
	case c.LeaseTTL < 0, c.RecheckInterval < 0, c.PollInterval < 0, c.RetryBackoff < 0:
		return fmt.Errorf("mire: new runner: negative duration in config")
	case c.MaxAttempts < 0:
		return fmt.Errorf("mire: new runner: negative MaxAttempts %d", c.MaxAttempts)
	case c.RecheckInterval >= c.LeaseTTL:
		return fmt.Errorf("mire: new runner: RecheckInterval %v must be shorter than LeaseTTL %v", c.RecheckInterval, c.LeaseTTL)
	}
	return nil
}

// Owner returns the name this runner holds leases under.
func (r *Runner) Owner() string { return r.cfg.Owner }

// Run hosts the runner's projections until ctx ends or Stop is called,
// then releases the leases it holds (so another replica takes over at
// once) and returns nil. End it with Stop, which returns once the leases
// are released, and close the store's pool after that (a pool closed
// first costs each lease a connection of its own to be released).
// Each projection competes for its lease; the one that wins reads in
// batches, hands events to the handler and checkpoints, woken by the
// store's notifications or, failing those, every PollInterval. Run returns
// an error only if it is already running, if Stop was called (wrapping
// ErrStopped), or, at once, if the store's schema is not migrated
// (wrapping mire.ErrNotMigrated); a database that cannot be reached is
// retried, not returned.
func (r *Runner) Run(ctx context.Context) error {
	ctx, release, err := r.claim(ctx, "run")
	if err != nil {
		return err
	}
	var releaseErrs []error
	defer func() { release(errors.Join(releaseErrs...)) }()

	// A worker that finds the schema unmigrated ends the whole run: no
	// projection can run, and waiting would hide the mistake.
	var fatal error
	var once sync.Once
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	fail := func(err error) {
		once.Do(func() { fatal = err })
		cancel()
	}
	var wg sync.WaitGroup
	wg.Go(func() { r.listen(ctx) })
	for _, g := range r.groups {
		if g.partitioned() {
			wg.Go(func() { g.coordinate(ctx, fail) })
		}
	}
	for _, w := range r.workers {
		wg.Go(func() { w.run(ctx, fail) })
	}
	wg.Wait()
	for _, w := range r.workers {
		releaseErrs = append(releaseErrs, w.releaseErr)
	}
	// The leases are free: leaving now lets the others take them at once.
	for _, g := range r.groups {
		if g.partitioned() && !r.noRelease {
			releaseErrs = append(releaseErrs, g.leave())
		}
	}
	return fatal
}

// Stop ends the runner for good: it cancels the Run (or CatchUp) in
// progress, and waits until it has released its leases and is done with
// the pool (it is returning), so that another replica, or this application
// started again, takes over at once. Call it before closing the store's
// pool.
// Later calls of Run and CatchUp return an error wrapping ErrStopped at
// once, so Stop also ends a Run whose goroutine has not started yet.
//
// Stop returns an error if ctx ends first (Run then goes on stopping in
// the background) or if a lease could not be released (it then expires
// after LeaseTTL). Calling it again waits for the same end and returns the
// same result; on a runner that never ran it returns nil.
func (r *Runner) Stop(ctx context.Context) error {
	r.mu.Lock()
	r.stopped = true
	cancel, done := r.cancel, r.done
	r.mu.Unlock()
	if done == nil {
		return nil
	}
	cancel(ErrStopped)
	select {
	case <-done:
	case <-ctx.Done():
		return fmt.Errorf("mire: runner %s: stop: %w", r.cfg.Owner, ctx.Err())
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.released != nil {
		return fmt.Errorf("mire: runner %s: stop: %w", r.cfg.Owner, r.released)
	}
	return nil
}

// listen wakes the workers on every notification of the store's channel.
// Notifications are only a shortcut: if listening fails, the workers still
// poll, and listen tries again after PollInterval.
func (r *Runner) listen(ctx context.Context) {
	channel := pgx.Identifier{pgschema.NotifyChannel(r.store.Schema())}.Sanitize()
	for ctx.Err() == nil {
		err := r.listenOnce(ctx, channel)
		if ctx.Err() != nil {
			return
		}
		r.cfg.Logger.Warn("mire: projections: listen for notifications", "err", err)
		sleep(ctx, r.cfg.PollInterval)
	}
}

func (r *Runner) listenOnce(ctx context.Context, channel string) error {
	conn, err := r.store.Pool().Acquire(ctx)
	if err != nil {
		return err
	}
	// The connection carries LISTEN state: never give it back to the pool.
	// At the end it is closed under the waiting reader, which is much
	// quicker than cancelling the wait (a cancel request to the server).
	c := conn.Hijack()
	stop := context.AfterFunc(ctx, func() { _ = c.PgConn().Conn().Close() })
	defer func() {
		stop()
		_ = c.PgConn().Conn().Close()
		_ = c.Close(context.Background()) // fails fast on the closed socket; frees the rest
	}()
	if _, err := c.Exec(ctx, "LISTEN "+channel); err != nil {
		return err
	}
	r.wakeAll() // events may have arrived while nobody listened
	for {
		n, err := c.WaitForNotification(context.WithoutCancel(ctx))
		if err != nil {
			return err
		}
		if name, ok := strings.CutPrefix(n.Payload, rebalancePrefix); ok {
			if g := r.byName[name]; g != nil {
				g.woken()
			}
			continue
		}
		r.wakeAll()
	}
}

func (r *Runner) wakeAll() {
	for _, w := range r.workers {
		select {
		case w.wake <- struct{}{}:
		default:
		}
	}
}

// CatchUp runs each of the runner's projections in the calling goroutine
// until it has handled every event below the watermark (every event of a
// transaction older than all transactions still running; so, with no
// write in flight, every event committed before the call), then releases
// its lease. It waits for a lease another replica holds (until
// ctx ends). It is meant for tools, tests and benchmarks that want to
// drive projections to the end of the log and stop: a long-running
// application uses Run. A projection that halts makes CatchUp return an
// error wrapping ErrHalted; Stop makes it return one wrapping ErrStopped.
func (r *Runner) CatchUp(ctx context.Context) error {
	ctx, release, err := r.claim(ctx, "catch up")
	if err != nil {
		return err
	}
	var releaseErrs []error
	defer func() { release(errors.Join(releaseErrs...)) }()
	for _, w := range r.workers {
		err := w.catchUp(ctx)
		releaseErrs = append(releaseErrs, w.releaseErr)
		if err != nil {
			return err
		}
	}
	return nil
}

// halted tells the application, through Config.OnHalt, that projection
// name is halted.
func (r *Runner) halted(name string, err error) {
	if r.cfg.OnHalt != nil {
		go r.cfg.OnHalt(name, err)
	}
}

// sleep waits for d or the end of ctx.
func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// claim marks the runner running for op (Run or CatchUp, which must not
// overlap) and returns the context op runs in, which Stop cancels, and the
// function that marks the runner idle again, noting the leases op could
// not release.
func (r *Runner) claim(ctx context.Context, op string) (context.Context, func(released error), error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.stopped {
		return nil, nil, fmt.Errorf("mire: runner %s: %s: %w", r.cfg.Owner, op, ErrStopped)
	}
	if r.running {
		return nil, nil, fmt.Errorf("mire: runner %s: %s: already running", r.cfg.Owner, op)
	}
	ctx, cancel := context.WithCancelCause(ctx)
	done := make(chan struct{})
	r.running, r.cancel, r.done = true, cancel, done
	unobserve := r.tel.observeLag(r)
	return ctx, func(released error) {
		unobserve()
		cancel(nil)
		r.mu.Lock()
		r.running, r.released = false, released
		r.mu.Unlock()
		close(done)
	}, nil
}

// notMigrated wraps err with mire.ErrNotMigrated, naming the schema, if it
// says that the store's schema or one of its tables does not exist.
func notMigrated(schema string, err error) error {
	if pgerr.NotMigrated(err) {
		return fmt.Errorf("%w: schema %q: %v", mire.ErrNotMigrated, schema, err)
	}
	return err
}
