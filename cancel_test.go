package mire_test

import (
	"context"
	"errors"
	"math/rand/v2"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/mire-go/mire"
	"github.com/mire-go/mire/internal/mtest"
)

var _ = Describe("ConfigurePool", func() {
	It("closes a connection on which a cancel request was sent instead of reusing it", func(ctx SpecContext) {
		cfg, err := pgxpool.ParseConfig(db.URL)
		Expect(err).NotTo(HaveOccurred())
		cfg.MaxConns = 1
		mire.ConfigurePool(cfg)
		pool, err := pgxpool.NewWithConfig(ctx, cfg)
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(pool.Close)
		backend := func() (pid int32) {
			Expect(pool.QueryRow(ctx, `SELECT pg_backend_pid()`).Scan(&pid)).To(Succeed())
			return pid
		}

		first := backend()
		Expect(backend()).To(Equal(first), "an uncancelled connection is reused")
		short, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
		defer cancel()
		_, err = pool.Exec(short, `SELECT pg_sleep(10)`)
		Expect(err).To(HaveOccurred())
		Expect(backend()).NotTo(Equal(first), "a late cancel request could still reach the cancelled connection")
	})

	It("never lets the cancel request of one statement cancel a later one on the same connection", Label("slow"), func(ctx SpecContext) {
		cfg, err := pgxpool.ParseConfig(db.URL)
		Expect(err).NotTo(HaveOccurred())
		cfg.MaxConns = 1 // every statement reuses the connection the cancelled one ran on
		mire.ConfigurePool(cfg)
		pool, err := pgxpool.NewWithConfig(ctx, cfg)
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(pool.Close)
		store := newStore(pool)

		stray := 0
		for i := range 300 {
			// A statement cancelled about when it ends, so the cancel request
			// may reach the server after the statement has finished.
			short, cancel := context.WithTimeout(ctx, time.Duration(2+rand.IntN(6))*time.Millisecond)
			_, _ = pool.Exec(short, `SELECT pg_sleep(0.005)`)
			cancel()
			// The next statements on the pool must not see that cancel.
			for range 3 {
				_, err := store.Append(ctx, "account-"+mtest.Unique("cx"), mire.NoStream, Deposited{Amount: 1})
				var pgErr *pgconn.PgError
				if errors.As(err, &pgErr) && pgErr.Code == "57014" || err != nil && errors.Is(err, context.Canceled) {
					stray++
				}
				Expect(err).NotTo(HaveOccurred(), "round %d: a statement whose context is alive was cancelled", i)
			}
		}
		Expect(stray).To(BeZero())
	})
})
