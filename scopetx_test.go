package mire_test

import (
	"context"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/jackc/pgx/v5"
	"github.com/mire-go/mire"
	"github.com/mire-go/mire/internal/mtest"
)

var _ = Describe("A scope inside the caller's transaction (ScopeTx)", func() {
	var store *mire.Store
	BeforeEach(func(ctx SpecContext) {
		store = newStore(db.Pool)
		_, err := db.Pool.Exec(ctx, `CREATE TABLE IF NOT EXISTS public.jobs (id text PRIMARY KEY, done bool NOT NULL)`)
		Expect(err).NotTo(HaveOccurred())
	})

	// work is a job's unit of work in the caller's transaction: it marks the
	// job done and moves 10 between two accounts through the scope.
	work := func(ctx context.Context, tx pgx.Tx, job, from, to string) (balances []int64) {
		_, err := tx.Exec(ctx, `INSERT INTO public.jobs (id, done) VALUES ($1, true)`, job)
		Expect(err).NotTo(HaveOccurred())
		scope, err := store.ScopeTx(tx)
		Expect(err).NotTo(HaveOccurred())
		accs, err := mire.LoadManyForUpdate[Account](ctx, scope, from, to)
		Expect(err).NotTo(HaveOccurred())
		Expect(accs[0].Record(Withdrawn{Amount: 10})).To(Succeed())
		Expect(accs[1].Record(Deposited{Amount: 10})).To(Succeed())
		Expect(scope.Save(ctx, accs)).To(Succeed())

		// Loads and reads in the scope see its own writes.
		again, err := mire.Load[Account](ctx, scope, from)
		Expect(err).NotTo(HaveOccurred())
		n := 0
		for env, err := range scope.ReadStream(ctx, "account-"+to, nil) {
			Expect(err).NotTo(HaveOccurred())
			Expect(env.Version).To(BeEquivalentTo(n + 1))
			n++
		}
		Expect(n).To(Equal(2))
		return []int64{again.State.Balance, accs[1].State.Balance}
	}

	It("loads, locks, reads and saves inside the caller's transaction, committing with the caller's rows", func(ctx SpecContext) {
		from, to, job := openAccount(ctx, store, 100), openAccount(ctx, store, 0), mtest.Unique("job")
		Expect(pgx.BeginFunc(ctx, db.Pool, func(tx pgx.Tx) error {
			Expect(work(ctx, tx, job, from, to)).To(Equal([]int64{90, 10}))
			return nil
		})).To(Succeed())
		Expect(balanceOf(ctx, store, from)).To(BeEquivalentTo(90))
		Expect(balanceOf(ctx, store, to)).To(BeEquivalentTo(10))
		Expect(jobsDone(ctx, job)).To(Equal(1))
	})

	It("rolls back with the caller's transaction", func(ctx SpecContext) {
		from, to, job := openAccount(ctx, store, 100), openAccount(ctx, store, 0), mtest.Unique("job")
		before := rowCounts(ctx, db.Pool)
		tx, err := db.Pool.Begin(ctx)
		Expect(err).NotTo(HaveOccurred())
		work(ctx, tx, job, from, to)
		Expect(tx.Rollback(ctx)).To(Succeed())
		Expect(rowCounts(ctx, db.Pool)).To(Equal(before))
		Expect(balanceOf(ctx, store, from)).To(BeEquivalentTo(100))
		Expect(jobsDone(ctx, job)).To(BeZero())
	})

	It("leaves Commit and Rollback to the caller, and refuses a nil tx", func(ctx SpecContext) {
		tx, err := db.Pool.Begin(ctx)
		Expect(err).NotTo(HaveOccurred())
		defer func() { Expect(tx.Rollback(ctx)).To(Succeed()) }()
		scope, err := store.ScopeTx(tx)
		Expect(err).NotTo(HaveOccurred())
		Expect(scope.Commit(ctx)).To(MatchError(ContainSubstring("inside the caller's transaction (ScopeTx); commit that transaction instead")))
		Expect(scope.Rollback(ctx)).To(MatchError(ContainSubstring("rollback that transaction instead")))
		_, err = store.ScopeTx(nil)
		Expect(err).To(MatchError("mire: scope tx: tx is nil"))
	})
})

// balanceOf loads an account and returns its balance.
func balanceOf(ctx context.Context, store *mire.Store, id string) int64 {
	acc, err := mire.Load[Account](ctx, store, id)
	Expect(err).NotTo(HaveOccurred())
	return acc.State.Balance
}

// jobsDone counts the rows of job in public.jobs.
func jobsDone(ctx context.Context, job string) int {
	var n int
	Expect(db.Pool.QueryRow(ctx, `SELECT count(*) FROM public.jobs WHERE id = $1 AND done`, job).Scan(&n)).To(Succeed())
	return n
}
