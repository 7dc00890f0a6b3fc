// Command projection keeps an account-balance read model with a
// transactional projection, hosted by two runners as two replicas of an
// application would: one is active, the other stands by, and takes over
// (with the next fence token) when the first stops. It starts a throwaway
// Postgres unless DATABASE_URL is set.
//
//	go run ./examples/projection
package main

import (
	"context"
	"fmt"
	"log"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/mire-go/mire"
	"github.com/mire-go/mire/pgtest"
	"github.com/mire-go/mire/projections"
)

type Opened struct {
	mire.Event `mire:"entity=account,type=Opened"`
	Owner      string `json:"owner" validate:"required"`
}

type Deposited struct {
	mire.Event `mire:"entity=account,type=Deposited"`
	Amount     int64 `json:"amount" validate:"gt=0"`
}

type Withdrawn struct {
	mire.Event `mire:"entity=account,type=Withdrawn"`
	Amount     int64 `json:"amount" validate:"gt=0"`
}

func init() { mire.MustRegister(Opened{}, Deposited{}, Withdrawn{}) }

// balances is the read model. Its rows are written through the
// checkpoint's transaction, so each event is applied exactly once.
var balances = projections.Projection{
	Name:       "balances",
	Categories: []string{"account"},
	Handler: projections.Routes(
		projections.On(func(ctx context.Context, tx pgx.Tx, e Opened, env mire.Envelope) error {
			_, err := tx.Exec(ctx, `INSERT INTO balances (stream, owner, balance) VALUES ($1, $2, 0)`, env.StreamID, e.Owner)
			return err
		}),
		projections.On(func(ctx context.Context, tx pgx.Tx, e Deposited, env mire.Envelope) error {
			_, err := tx.Exec(ctx, `UPDATE balances SET balance = balance + $2 WHERE stream = $1`, env.StreamID, e.Amount)
			return err
		}),
		projections.On(func(ctx context.Context, tx pgx.Tx, e Withdrawn, env mire.Envelope) error {
			_, err := tx.Exec(ctx, `UPDATE balances SET balance = balance - $2 WHERE stream = $1`, env.StreamID, e.Amount)
			return err
		}),
	),
	Truncate: func(ctx context.Context, tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `DELETE FROM balances`)
		return err
	},
}

func main() {
	if err := run(context.Background()); err != nil {
		log.Fatal(err)
	}
}

func run(ctx context.Context) error {
	dbURL, stop, err := pgtest.ForExample(ctx)
	if err != nil {
		return err
	}
	defer stop()
	pool, err := pgxpool.New(ctx, dbURL)
	if err != nil {
		return err
	}
	defer pool.Close()
	store, err := mire.New(pool, nil)
	if err != nil {
		return err
	}
	if err := store.Migrate(ctx); err != nil {
		return err
	}
	if _, err := pool.Exec(ctx, `CREATE TABLE IF NOT EXISTS balances (stream text PRIMARY KEY, owner text, balance bigint)`); err != nil {
		return err
	}

	// Two replicas of the application, each with its runner.
	cfg := func(owner string) *projections.Config {
		return &projections.Config{Owner: owner, LeaseTTL: 2 * time.Second, RecheckInterval: 100 * time.Millisecond,
			Logger: slog.New(slog.DiscardHandler)}
	}
	replica1, err := projections.NewRunner(store, cfg("replica-1"), balances)
	if err != nil {
		return err
	}
	replica2, err := projections.NewRunner(store, cfg("replica-2"), balances)
	if err != nil {
		return err
	}
	ctx1, stop1 := context.WithCancel(ctx)
	defer stop1()
	done1 := goRun(ctx1, replica1)
	if err := waitFor(ctx, store, func(st projections.Status) bool { return st.Owner == "replica-1" }); err != nil {
		return err
	}
	ctx2, stop2 := context.WithCancel(ctx)
	defer stop2()
	done2 := goRun(ctx2, replica2)

	if _, err := store.Append(ctx, "account-alice", mire.NoStream, Opened{Owner: "Alice"}, Deposited{Amount: 100}); err != nil {
		return err
	}
	if _, err := store.Append(ctx, "account-bob", mire.NoStream, Opened{Owner: "Bob"}, Deposited{Amount: 50}); err != nil {
		return err
	}
	if err := report(ctx, store, pool); err != nil {
		return err
	}

	// Replica 1 shuts down: it releases its lease, replica 2 takes over
	// with the next fence token and carries on from the checkpoint.
	stop1()
	<-done1
	if err := waitFor(ctx, store, func(st projections.Status) bool { return st.Owner == "replica-2" }); err != nil {
		return err
	}
	if _, err := store.Append(ctx, "account-alice", mire.StreamExists, Withdrawn{Amount: 30}); err != nil {
		return err
	}
	if err := report(ctx, store, pool); err != nil {
		return err
	}
	stop2()
	<-done2
	return nil
}

func goRun(ctx context.Context, r *projections.Runner) <-chan struct{} {
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := r.Run(ctx); err != nil {
			log.Print(err)
		}
	}()
	return done
}

// report waits until the projection has caught up, then prints who runs it
// and the read model.
func report(ctx context.Context, store *mire.Store, pool *pgxpool.Pool) error {
	if err := waitFor(ctx, store, func(st projections.Status) bool { return st.Lag == 0 }); err != nil {
		return err
	}
	st, err := projections.StatusOf(ctx, store, "balances")
	if err != nil {
		return err
	}
	fmt.Printf("projection %s: owner %s, fence %d, %d events delivered\n", st.Name, st.Owner, st.Fence, st.Delivered)
	rows, err := pool.Query(ctx, `SELECT owner, balance FROM balances ORDER BY owner`)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var owner string
		var balance int64
		if err := rows.Scan(&owner, &balance); err != nil {
			return err
		}
		fmt.Printf("  %-5s %4d\n", owner, balance)
	}
	return rows.Err()
}

// waitFor polls the projection's status until ok says so (or ten seconds).
func waitFor(ctx context.Context, store *mire.Store, ok func(projections.Status) bool) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	for {
		st, err := projections.StatusOf(ctx, store, "balances")
		if err == nil && ok(st) {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for projection balances: %w (last status %+v, %v)", ctx.Err(), st, err)
		case <-time.After(20 * time.Millisecond):
		}
	}
}
