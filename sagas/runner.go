package sagas

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/mire-go/mire"
	"github.com/mire-go/mire/internal/bridge"
	"github.com/mire-go/mire/projections"
)

// Defaults of Config.
const (
	TimerIntervalDefault = time.Second
	TimerBatchDefault    = 100
)

// Config tunes a Runner. A nil *Config means all defaults.
type Config struct {
	// Projections configures the runner of the sagas' projections (lease,
	// intervals, retries, owner). Defaults to nil: the projections'
	// defaults.
	Projections *projections.Config
	// TimerInterval is how often the runner looks for due timers. A timer
	// fires within TimerInterval of its due time (plus the time to reach
	// its instance's lock). Defaults to TimerIntervalDefault.
	TimerInterval time.Duration
	// TimerBatch is how many due timers the runner fires per look.
	// Defaults to TimerBatchDefault.
	TimerBatch int
	// Logger receives ignored inputs and timer failures. Defaults to
	// Projections.Logger, or the store's logger.
	Logger *slog.Logger
}

// Runner runs sagas in one replica: each saga's projection under a
// projections.Runner (lease, fence, partitions), and a timer loop that
// fires the sagas' due timers. Run one in every replica.
type Runner struct {
	store   *mire.Store
	cfg     Config
	sql     *queries
	names   []string
	proj    *projections.Runner
	mu      sync.Mutex
	running bool               // a Run is in progress
	cancel  context.CancelFunc // ends the last Run
	done    chan struct{}      // closed when the last Run has returned
}

// NewRunner returns a Runner for sagas on store. It registers the saga
// events in the store's registry, and refuses a saga whose trigger or
// listener types the registry does not hold, and two sagas of one name.
func NewRunner(store *mire.Store, cfg *Config, sagas ...Saga) (*Runner, error) {
	if store == nil {
		return nil, errors.New("sagas: new runner: store is nil")
	}
	if len(sagas) == 0 {
		return nil, errors.New("sagas: new runner: no sagas")
	}
	if cfg == nil {
		cfg = &Config{}
	}
	r := &Runner{store: store, cfg: *cfg, sql: queriesFor(store.Schema())}
	switch {
	case cfg.TimerInterval < 0:
		return nil, fmt.Errorf("sagas: new runner: negative TimerInterval %v", cfg.TimerInterval)
	case cfg.TimerBatch < 0:
		return nil, fmt.Errorf("sagas: new runner: negative TimerBatch %d", cfg.TimerBatch)
	}
	r.cfg.TimerInterval = cmp.Or(cfg.TimerInterval, TimerIntervalDefault)
	r.cfg.TimerBatch = cmp.Or(cfg.TimerBatch, TimerBatchDefault)
	pcfg := projections.Config{}
	if cfg.Projections != nil {
		pcfg = *cfg.Projections
	}
	r.cfg.Logger = cmp.Or(cfg.Logger, pcfg.Logger, bridge.Logger(store))
	if err := store.Registry().Register(events...); err != nil {
		return nil, fmt.Errorf("sagas: new runner: %w", err)
	}
	var projs []projections.Projection
	for i, s := range sagas {
		if s == nil {
			return nil, fmt.Errorf("sagas: new runner: saga %d is nil", i)
		}
		for _, n := range r.names {
			if n == s.Name() {
				return nil, fmt.Errorf("sagas: new runner: saga %q given twice", n)
			}
		}
		r.names = append(r.names, s.Name())
		p, err := s.engine().projection(store, r.sql, r.cfg.Logger)
		if err != nil {
			return nil, err
		}
		projs = append(projs, p)
	}
	var err error
	if r.proj, err = projections.NewRunner(store, &pcfg, projs...); err != nil {
		return nil, fmt.Errorf("sagas: new runner: %w", err)
	}
	return r, nil
}

// Projections returns the runner of the sagas' projections, for its
// Status.
func (r *Runner) Projections() *projections.Runner { return r.proj }

// Run runs the sagas until ctx ends or Stop is called: their projections
// (see projections.Runner.Run, whose errors it returns: after Stop, one
// wrapping projections.ErrStopped) and the timer loop. A Run while another
// is in progress is an error.
func (r *Runner) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	r.mu.Lock()
	if r.running {
		r.mu.Unlock()
		return errors.New("sagas: run: already running")
	}
	r.running = true
	r.cancel, r.done = cancel, make(chan struct{})
	done := r.done
	r.mu.Unlock()
	defer func() {
		r.mu.Lock()
		r.running = false
		r.mu.Unlock()
		close(done)
	}()
	var wg sync.WaitGroup
	wg.Go(func() { r.timers(ctx) })
	err := r.proj.Run(ctx)
	cancel()
	wg.Wait()
	return err
}

// Stop ends Run: it stops the projections (releasing their leases, see
// projections.Runner.Stop) and the timer loop, and returns when Run has
// returned or ctx ends.
func (r *Runner) Stop(ctx context.Context) error {
	err := r.proj.Stop(ctx)
	r.mu.Lock()
	cancel, done := r.cancel, r.done
	r.mu.Unlock()
	if cancel == nil {
		return err
	}
	cancel()
	select {
	case <-done:
	case <-ctx.Done():
		return errors.Join(err, fmt.Errorf("sagas: stop: %w", ctx.Err()))
	}
	return err
}

// timers fires due timers every TimerInterval (at once again after a full
// batch) until ctx ends.
func (r *Runner) timers(ctx context.Context) {
	for ctx.Err() == nil {
		n, err := r.FireDue(ctx)
		if err != nil && ctx.Err() == nil {
			r.cfg.Logger.Warn("sagas: fire due timers", "err", err)
		}
		if n == r.cfg.TimerBatch {
			continue
		}
		t := time.NewTimer(r.cfg.TimerInterval)
		select {
		case <-ctx.Done():
		case <-t.C:
		}
		t.Stop()
	}
}

// FireDue fires up to TimerBatch due timers of the runner's sagas, each in
// a transaction of its own that appends a TimedOut event to its instance's
// stream and deletes the timer, so a timer fires once into the log; the
// saga's projection decides on it in stream order. Run calls it every
// TimerInterval; it is exported for tools and tests. It returns how many
// due timers it found.
func (r *Runner) FireDue(ctx context.Context) (int, error) {
	rows, err := r.store.Pool().Query(ctx, r.sql.selectDueTimers, r.names, r.cfg.TimerBatch)
	if err != nil {
		return 0, err
	}
	type timer struct {
		saga, id, step string
		attempt        int
	}
	var due []timer
	var t timer
	if _, err := pgx.ForEachRow(rows, []any{&t.saga, &t.id, &t.step, &t.attempt}, func() error {
		due = append(due, t)
		return nil
	}); err != nil {
		return 0, err
	}
	fired := false
	for _, t := range due {
		ok, err := r.fire(ctx, t.saga, t.id, t.step, t.attempt)
		if err != nil {
			return len(due), err
		}
		fired = fired || ok
	}
	if fired {
		r.store.Notify()
	}
	return len(due), nil
}

// fire fires one timer unless another runner is firing it.
func (r *Runner) fire(ctx context.Context, saga, id, step string, attempt int) (bool, error) {
	fired := false
	err := pgx.BeginFunc(ctx, r.store.Pool(), func(tx pgx.Tx) error {
		var one int
		if err := tx.QueryRow(ctx, r.sql.claimTimer, saga, id, step, attempt).Scan(&one); err != nil {
			if errors.Is(err, pgx.ErrNoRows) {
				return nil // fired or being fired by another runner, or settled
			}
			return err
		}
		ev := mire.WithID(derivedID("timeout", saga, id, step, fmt.Sprint(attempt)), TimedOut{Step: step, Attempt: attempt})
		if _, err := r.store.AppendTx(ctx, tx, mire.StreamID(Category, InstanceID(saga, id)), mire.StreamExists, ev); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, r.sql.deleteTimer, saga, id, step, attempt); err != nil {
			return err
		}
		fired = true
		return nil
	})
	if err != nil {
		return false, fmt.Errorf("sagas: fire timer of saga %q instance %q step %q attempt %d: %w", saga, id, step, attempt, err)
	}
	return fired, nil
}
