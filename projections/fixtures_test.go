package projections_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/mire-go/mire"
	"github.com/mire-go/mire/internal/mtest"
	"github.com/mire-go/mire/projections"
)

// db is this process's database; most specs take a fresh one, because a
// projection reads the whole log.
var db = mtest.Suite()

type Opened struct {
	mire.Event `mire:"entity=account,type=Opened"`
	Initial    int64 `json:"initial" validate:"gte=0"`
}

type Deposited struct {
	mire.Event `mire:"entity=account,type=Deposited"`
	Amount     int64 `json:"amount" validate:"gt=0"`
}

type Withdrawn struct {
	mire.Event `mire:"entity=account,type=Withdrawn"`
	Amount     int64 `json:"amount" validate:"gt=0"`
}

// Noted is an event of another category, for category filters.
type Noted struct {
	mire.Event `mire:"entity=note,type=Noted"`
	Text       string `json:"text"`
}

func init() { mire.MustRegister(Opened{}, Deposited{}, Withdrawn{}, Noted{}) }

// quiet is the runner configuration of the specs: short leases and
// intervals, a silent logger.
func quiet() *projections.Config {
	return &projections.Config{
		LeaseTTL:        2 * time.Second,
		RecheckInterval: 100 * time.Millisecond,
		PollInterval:    50 * time.Millisecond,
		RetryBackoff:    5 * time.Millisecond,
		MaxAttempts:     3,
		Logger:          testLogger(),
	}
}

// patience is how long a spec waits for something a runner with cfg must
// do: a takeover, a batch, a caught-up projection. It is derived from the
// configured lease and intervals with a generous margin, so that a loaded
// machine (two busy cores, -race) does not fail a spec that a quiet one
// passes; only a real failure waits it out.
func patience(cfg *projections.Config) time.Duration {
	return 10 * (cfg.LeaseTTL + cfg.RecheckInterval + cfg.PollInterval)
}

// Every wait without a timeout of its own gets patience(quiet()), also
// one given the spec's context (which Gomega would otherwise wait on
// forever).
var _ = BeforeEach(func() {
	SetDefaultEventuallyTimeout(patience(quiet()))
	EnforceDefaultTimeoutsWhenUsingContexts()
})

// env is a fresh database with a store and the balances read model.
type env struct {
	url   string
	pool  *pgxpool.Pool
	store *mire.Store
}

func freshEnv(ctx context.Context) env {
	url, pool := db.Fresh(ctx)
	store, err := mire.New(pool, nil)
	Expect(err).NotTo(HaveOccurred())
	_, err = pool.Exec(ctx, `CREATE TABLE balances (
		stream text PRIMARY KEY, balance bigint NOT NULL, version bigint NOT NULL, applied int NOT NULL)`)
	Expect(err).NotTo(HaveOccurred())
	return env{url: url, pool: pool, store: store}
}

// another returns a store on its own pool on the same database, as another
// replica would have.
func (e env) another(ctx context.Context) *mire.Store {
	store, err := mire.New(db.Connect(ctx, e.url), nil)
	Expect(err).NotTo(HaveOccurred())
	return store
}

// errOutOfOrder is what the balances handler returns for an event that
// does not follow the last one it applied to its stream.
var errOutOfOrder = errors.New("event out of stream order")

// balanceHandler keeps the balances read model through tx. It refuses an
// event that is not the next version of its stream, so any reordering or
// duplicate halts the projection instead of passing silently.
func balanceHandler() projections.Handler {
	apply := func(ctx context.Context, tx pgx.Tx, env mire.Envelope, delta int64) error {
		tag, err := tx.Exec(ctx, `UPDATE balances SET balance = balance + $2, version = $3, applied = applied + 1
			WHERE stream = $1 AND version = $3 - 1`, env.StreamID, delta, env.Version)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return fmt.Errorf("%w: %s v%d", errOutOfOrder, env.StreamID, env.Version)
		}
		return nil
	}
	return projections.Routes(
		projections.On(func(ctx context.Context, tx pgx.Tx, e Opened, env mire.Envelope) error {
			if env.Version != 1 {
				return fmt.Errorf("%w: %s opened at v%d", errOutOfOrder, env.StreamID, env.Version)
			}
			_, err := tx.Exec(ctx, `INSERT INTO balances VALUES ($1, $2, 1, 1)`, env.StreamID, e.Initial)
			return err
		}),
		projections.On(func(ctx context.Context, tx pgx.Tx, e Deposited, env mire.Envelope) error {
			return apply(ctx, tx, env, e.Amount)
		}),
		projections.On(func(ctx context.Context, tx pgx.Tx, e Withdrawn, env mire.Envelope) error {
			return apply(ctx, tx, env, -e.Amount)
		}),
	)
}

// balances returns the read model: stream -> balance.
func balances(ctx context.Context, pool *pgxpool.Pool) map[string]int64 {
	return balanceMap(ctx, pool, `SELECT stream, balance FROM balances`)
}

// foldedBalances computes the balances straight from the log.
func foldedBalances(ctx context.Context, pool *pgxpool.Pool) map[string]int64 {
	return balanceMap(ctx, pool, `SELECT stream_id, sum(CASE type
		WHEN 'Opened' THEN (data->>'initial')::bigint
		WHEN 'Deposited' THEN (data->>'amount')::bigint
		ELSE -(data->>'amount')::bigint END)::bigint
		FROM mire.events WHERE category = 'account' GROUP BY stream_id`)
}

// balanceMap runs sql, which selects (stream, balance) rows, into a map.
func balanceMap(ctx context.Context, pool *pgxpool.Pool, sql string) map[string]int64 {
	rows, err := pool.Query(ctx, sql)
	Expect(err).NotTo(HaveOccurred())
	out := map[string]int64{}
	for rows.Next() {
		var s string
		var b int64
		Expect(rows.Scan(&s, &b)).To(Succeed())
		out[s] = b
	}
	Expect(rows.Err()).NotTo(HaveOccurred())
	return out
}

// seen records what a handler saw, safely across goroutines.
type seen struct {
	mu     sync.Mutex
	events []mire.Envelope
	by     []string
}

func (s *seen) add(env mire.Envelope, who string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.events = append(s.events, env)
	s.by = append(s.by, who)
}

// streamVersions returns the versions seen of stream, in delivery order.
func (s *seen) streamVersions(stream string) []int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []int64
	for _, e := range s.events {
		if e.StreamID == stream {
			out = append(out, e.Version)
		}
	}
	return out
}

func (s *seen) positions() []int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]int64, len(s.events))
	for i, e := range s.events {
		out[i] = e.Position
	}
	return out
}

func (s *seen) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.events)
}

func (s *seen) owners() map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string]int{}
	for _, b := range s.by {
		out[b]++
	}
	return out
}

// recorder is a handler that records every event under the name who.
func (s *seen) recorder(who string) projections.Handler {
	return projections.Plain(func(_ context.Context, env mire.Envelope) error {
		s.add(env, who)
		return nil
	})
}

// newRunner builds a runner with the specs' configuration (owner set if
// not empty).
func newRunner(store *mire.Store, owner string, ps ...projections.Projection) *projections.Runner {
	cfg := quiet()
	cfg.Owner = owner
	r, err := projections.NewRunner(store, cfg, ps...)
	Expect(err).NotTo(HaveOccurred())
	return r
}

// start runs r in the background until the returned stop is called (or the
// spec ends).
func start(r *projections.Runner) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer GinkgoRecover()
		defer close(done)
		Expect(r.Run(ctx)).To(Succeed())
	}()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			<-done
		})
	}
	DeferCleanup(stop)
	return stop
}

// status returns the projection's status, failing the spec on error.
func status(ctx context.Context, store *mire.Store, name string) projections.Status {
	st, err := projections.StatusOf(ctx, store, name)
	Expect(err).NotTo(HaveOccurred())
	return st
}

// open saves a new account stream with initial and returns its stream id.
func open(ctx context.Context, store *mire.Store, initial int64) string {
	id := mtest.Unique("a")
	stream := mire.StreamID("account", id)
	_, err := store.Append(ctx, stream, mire.NoStream, Opened{Initial: initial})
	Expect(err).NotTo(HaveOccurred())
	return stream
}

func deposit(ctx context.Context, store *mire.Store, stream string, amount int64) {
	_, err := store.Append(ctx, stream, mire.StreamExists, Deposited{Amount: amount})
	Expect(err).NotTo(HaveOccurred())
}

// Account is the aggregate of the account events, for specs that save
// through a TxScope.
type Account struct{ Balance int64 }

func (*Account) Category() string { return "account" }

func (a *Account) Apply(event any) {
	switch e := event.(type) {
	case Opened:
		a.Balance = e.Initial
	case Deposited:
		a.Balance += e.Amount
	case Withdrawn:
		a.Balance -= e.Amount
	}
}

// statusFn polls a projection's status, for Eventually: a projection not
// yet started is an error to retry, not a failure.
func statusFn(store *mire.Store, name string) func(context.Context) (projections.Status, error) {
	return func(ctx context.Context) (projections.Status, error) { return projections.StatusOf(ctx, store, name) }
}

// testLogger is silent unless MIRE_TEST_LOG is set.
func testLogger() *slog.Logger {
	if os.Getenv("MIRE_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(GinkgoWriter, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

// batchFunc is a BatchHandler made of a function.
type batchFunc struct {
	fn func(ctx context.Context, tx pgx.Tx, events []mire.Envelope) error
}

func (b *batchFunc) Handle(ctx context.Context, tx pgx.Tx, env mire.Envelope) error {
	return b.fn(ctx, tx, []mire.Envelope{env})
}

func (b *batchFunc) HandleBatch(ctx context.Context, tx pgx.Tx, events []mire.Envelope) error {
	return b.fn(ctx, tx, events)
}
