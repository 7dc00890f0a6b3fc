package mire_test

import (
	"context"
	"strconv"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/mire-go/mire"
	"github.com/mire-go/mire/pgtest"
	"github.com/mire-go/mire/projections"
)

// BenchmarkSaveInline saves a new account of 3 events, with an inline
// projection that upserts a balance row in the saving transaction, and,
// as the reference in the same run, without one.
//
//	go test -run '^$' -bench SaveInline -count 5 .
func BenchmarkSaveInline(b *testing.B) {
	ctx := context.Background()
	srv, err := pgtest.Start(ctx, pgtest.EnvTestDatabase)
	if err != nil {
		b.Fatal(err)
	}
	defer srv.Stop()
	run := func(b *testing.B, inline bool) {
		url, drop, err := pgtest.NewDatabase(ctx, srv.URL())
		if err != nil {
			b.Fatal(err)
		}
		defer drop(ctx)
		pool, err := pgxpool.New(ctx, url)
		if err != nil {
			b.Fatal(err)
		}
		defer pool.Close()
		store, err := mire.New(pool, nil)
		if err != nil {
			b.Fatal(err)
		}
		if inline {
			if _, err := pool.Exec(ctx, `CREATE TABLE balances (id text PRIMARY KEY, balance bigint NOT NULL)`); err != nil {
				b.Fatal(err)
			}
			err := projections.Inline(store, projections.Projection{Name: "balances", Handler: projections.Routes(
				projections.On(func(ctx context.Context, tx pgx.Tx, e Deposited, env mire.Envelope) error {
					_, err := tx.Exec(ctx, `INSERT INTO balances (id, balance) VALUES ($1, $2)
ON CONFLICT (id) DO UPDATE SET balance = balances.balance + EXCLUDED.balance`, env.AggregateID(), e.Amount)
					return err
				}),
			)})
			if err != nil {
				b.Fatal(err)
			}
		}
		b.ResetTimer()
		for i := 0; b.Loop(); i++ {
			acc, err := mire.Create[Account](store, "b"+strconv.Itoa(i))
			if err != nil {
				b.Fatal(err)
			}
			for _, e := range []any{Opened{Owner: "o"}, Deposited{Amount: 1}, Deposited{Amount: 2}} {
				if err := acc.Record(e); err != nil {
					b.Fatal(err)
				}
			}
			if err := store.Save(ctx, acc); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.Run("inline", func(b *testing.B) { run(b, true) })
	b.Run("none", func(b *testing.B) { run(b, false) })
}
