package mire_test

import (
	"context"
	"strings"
	"sync"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/jackc/pgx/v5"
	"github.com/mire-go/mire"
	"github.com/mire-go/mire/internal/mtest"
	"github.com/mire-go/mire/pgschema"
	"github.com/mire-go/mire/projections"
)

var _ = Describe("Notify", func() {
	var store *mire.Store
	var listener *pgx.Conn

	BeforeEach(func(ctx SpecContext) {
		// A database of its own: no other spec's notifications.
		_, pool := db.Fresh(ctx)
		store = newStore(pool)
		conn, err := pool.Acquire(ctx)
		Expect(err).NotTo(HaveOccurred())
		listener = conn.Hijack()
		DeferCleanup(func(ctx SpecContext) { _ = listener.Close(ctx) })
		_, err = listener.Exec(ctx, "LISTEN "+pgx.Identifier{pgschema.NotifyChannel(store.Schema())}.Sanitize())
		Expect(err).NotTo(HaveOccurred())
	})

	// notified waits for the next notification on the store's channel.
	notified := func(ctx context.Context) error {
		ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		_, err := listener.WaitForNotification(ctx)
		return err
	}

	It("wakes listeners after Save, Append and TxScope.Commit", func(ctx SpecContext) {
		id := openAccount(ctx, store, 1)
		Expect(notified(ctx)).To(Succeed())

		_, err := store.Append(ctx, mire.StreamID("account", id), mire.StreamExists, Deposited{Amount: 1})
		Expect(err).NotTo(HaveOccurred())
		Expect(notified(ctx)).To(Succeed())

		Expect(store.InTx(ctx, nil, func(scope *mire.TxScope) error {
			acc, err := mire.LoadForUpdate[Account](ctx, scope, id)
			if err != nil {
				return err
			}
			if err := acc.Record(Deposited{Amount: 2}); err != nil {
				return err
			}
			return scope.Save(ctx, acc)
		})).To(Succeed())
		Expect(notified(ctx)).To(Succeed())
	})

	It("coalesces a burst of writes into fewer notifications, the last one after the last commit", func(ctx SpecContext) {
		// Each save's own transaction also sends a "commit" notification,
		// which Postgres delivers when, and in the order that, the save
		// commits: a store notification must follow the last of them.
		channel := pgschema.NotifyChannel(store.Schema())
		Expect(projections.Inline(store, projections.Projection{Name: "commit-notify", Handler: projections.HandlerFunc(
			func(ctx context.Context, tx pgx.Tx, _ mire.Envelope) error {
				_, err := tx.Exec(ctx, `SELECT pg_notify($1, 'commit')`, channel)
				return err
			})})).To(Succeed())
		const writers, each = 8, 25
		var wg sync.WaitGroup
		for range writers {
			wg.Go(func() {
				defer GinkgoRecover()
				for range each {
					openAccount(ctx, store, 1)
				}
			})
		}
		wg.Wait()
		Expect(mtest.Count(ctx, store.Pool(), "events", "")).To(Equal(writers * each))

		reading, cancel := context.WithTimeout(ctx, time.Minute)
		defer cancel()
		commits, wakeups, wokenAfterLast := 0, 0, false
		for commits < writers*each || !wokenAfterLast {
			n, err := listener.WaitForNotification(reading)
			Expect(err).NotTo(HaveOccurred(), "%d of %d commits seen, %d wake-ups, none after the last commit", commits, writers*each, wakeups)
			if n.Payload == "commit" {
				commits++
				continue
			}
			wakeups++
			wokenAfterLast = commits == writers*each
		}
		Expect(wakeups).To(BeNumerically("<", writers*each))
	})

	It("wakes listeners on a store whose schema name is as long as its channel allows", func(ctx SpecContext) {
		schema := strings.Repeat("n", 63-len(pgschema.NotifyChannel("")))
		long, err := mire.New(store.Pool(), &mire.Config{Schema: schema})
		Expect(err).NotTo(HaveOccurred())
		Expect(long.Migrate(ctx)).To(Succeed())
		_, err = listener.Exec(ctx, "LISTEN "+pgx.Identifier{pgschema.NotifyChannel(schema)}.Sanitize())
		Expect(err).NotTo(HaveOccurred())

		_, err = long.Append(ctx, mire.StreamID("account", "long"), mire.NoStream, Opened{Owner: "long"})
		Expect(err).NotTo(HaveOccurred())
		quiet, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		n, err := listener.WaitForNotification(quiet)
		Expect(err).NotTo(HaveOccurred())
		Expect(n.Channel).To(Equal(pgschema.NotifyChannel(schema)))
	})

	It("is sent by Notify for writes in the caller's own transaction", func(ctx SpecContext) {
		tx, err := store.Pool().Begin(ctx)
		Expect(err).NotTo(HaveOccurred())
		_, err = store.AppendTx(ctx, tx, mire.StreamID("account", mtest.Unique("n")), mire.NoStream, Opened{Owner: "n"})
		Expect(err).NotTo(HaveOccurred())
		Expect(tx.Commit(ctx)).To(Succeed())
		store.Notify()
		Expect(notified(ctx)).To(Succeed())
	})
})
