package mire_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/mire-go/mire"
	"github.com/mire-go/mire/internal/mtest"
)

// errInsufficientFunds is the business rejection of txTransfer.
var errInsufficientFunds = errors.New("insufficient funds")

// txTransfer moves amount from one account to another in a scope that
// locks both first: the pattern TxScope exists for.
func txTransfer(ctx context.Context, store *mire.Store, from, to string, amount int64) error {
	return store.InTx(ctx, nil, func(scope *mire.TxScope) error {
		accs, err := mire.LoadManyForUpdate[Account](ctx, scope, from, to)
		if err != nil {
			return err
		}
		src, dst := accs[0], accs[1]
		if src.State.Balance < 0 || dst.State.Balance < 0 {
			return fmt.Errorf("negative balance seen: %s=%d, %s=%d", from, src.State.Balance, to, dst.State.Balance)
		}
		if src.State.Balance < amount {
			return errInsufficientFunds
		}
		if err := src.Record(Withdrawn{Amount: amount}); err != nil {
			return err
		}
		if err := dst.Record(Deposited{Amount: amount}); err != nil {
			return err
		}
		// Half the transfers end with SaveAndCommit (appends and COMMIT in
		// one round trip), half with Save and InTx's Commit.
		if amount%2 == 1 {
			return scope.SaveAndCommit(ctx, accs)
		}
		return scope.Save(ctx, accs) // the Roots LoadManyForUpdate returned, whole
	})
}

// transferOne moves 1 between two accounts in a scope with opts, ending
// with SaveAndCommit (oneTrip) or with Save and InTx's Commit.
func transferOne(ctx context.Context, store *mire.Store, opts *mire.InTxOpts, from, to string, oneTrip bool) error {
	return store.InTx(ctx, opts, func(scope *mire.TxScope) error {
		accs, err := mire.LoadManyForUpdate[Account](ctx, scope, from, to)
		if err != nil {
			return err
		}
		if err := accs[0].Record(Withdrawn{Amount: 1}); err != nil {
			return err
		}
		if err := accs[1].Record(Deposited{Amount: 1}); err != nil {
			return err
		}
		if oneTrip {
			return scope.SaveAndCommit(ctx, accs)
		}
		return scope.Save(ctx, accs)
	})
}

// lockWaiters counts the backends of pool's database waiting on a lock in a
// statement that touches mire's streams.
func lockWaiters(ctx context.Context, pool *pgxpool.Pool) int {
	var n int
	Expect(pool.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity
		WHERE datname = current_database() AND wait_event_type = 'Lock' AND query LIKE '%streams%'`).Scan(&n)).To(Succeed())
	return n
}

// holdsRowLocks reports whether the scope's transaction has taken an xid,
// which locking or writing any row requires.
func holdsRowLocks(ctx context.Context, scope *mire.TxScope) bool {
	var assigned bool
	Expect(scope.Tx().QueryRow(ctx, `SELECT pg_current_xact_id_if_assigned() IS NOT NULL`).Scan(&assigned)).To(Succeed())
	return assigned
}

// balance loads an account outside any scope and returns its balance.
func balance(ctx context.Context, store *mire.Store, id string) int64 {
	acc, err := mire.Load[Account](ctx, store, id)
	Expect(err).NotTo(HaveOccurred())
	return acc.State.Balance
}

var _ = Describe("TxScope", func() {
	var (
		pool  *pgxpool.Pool
		store *mire.Store
	)
	BeforeEach(func(ctx SpecContext) {
		_, pool = db.Fresh(ctx) // an empty log, so whole-table counts are exact
		store = newStore(pool)
	})

	It("runs 2,000 concurrent transfers in both directions without deadlock, overdraft or lost money", Label("slow"), func(ctx SpecContext) {
		const (
			accounts  = 6
			workers   = 8
			transfers = 2000
			initial   = 100
			total     = accounts * initial
		)
		ids := make([]string, accounts)
		for i := range ids {
			ids[i] = openAccount(ctx, store, initial)
		}

		var (
			succeeded, rejected atomic.Int64
			mu                  sync.Mutex
			failures            []error
		)
		fail := func(err error) {
			mu.Lock()
			defer mu.Unlock()
			failures = append(failures, err)
		}
		jobs := make(chan int)
		var wg sync.WaitGroup
		for w := range workers {
			wg.Go(func() {
				rng := rand.New(rand.NewPCG(uint64(GinkgoRandomSeed()), uint64(w)))
				for range jobs {
					from := rng.IntN(accounts)
					to := (from + 1 + rng.IntN(accounts-1)) % accounts
					switch err := txTransfer(ctx, store, ids[from], ids[to], 1+rng.Int64N(60)); {
					case err == nil:
						succeeded.Add(1)
					case errors.Is(err, errInsufficientFunds):
						rejected.Add(1)
					default:
						fail(err)
					}
				}
			})
		}

		// While the transfers run, a repeatable-read scope keeps taking a
		// consistent picture of all accounts: no balance below zero, the
		// sum always the same.
		stop := make(chan struct{})
		var checks atomic.Int64
		checked := make(chan struct{})
		go func() {
			defer close(checked)
			for {
				select {
				case <-stop:
					return
				default:
				}
				err := store.InTx(ctx, &mire.InTxOpts{TxOpts: mire.TxOpts{IsoLevel: pgx.RepeatableRead}}, func(scope *mire.TxScope) error {
					var sum int64
					for _, id := range ids {
						acc, err := mire.Load[Account](ctx, scope, id)
						if err != nil {
							return err
						}
						if acc.State.Balance < 0 {
							return fmt.Errorf("account %s has balance %d", id, acc.State.Balance)
						}
						sum += acc.State.Balance
					}
					if sum != total {
						return fmt.Errorf("sum of balances is %d, not %d", sum, total)
					}
					return nil
				})
				if err != nil {
					fail(fmt.Errorf("checker: %w", err))
				}
				checks.Add(1)
			}
		}()

		for i := range transfers {
			jobs <- i
		}
		close(jobs)
		wg.Wait()
		close(stop)
		<-checked

		Expect(failures).To(BeEmpty(), "no deadlock, serialization or other error surfaces")
		Expect(succeeded.Load() + rejected.Load()).To(BeEquivalentTo(transfers))
		Expect(succeeded.Load()).To(BeNumerically(">", 0))
		Expect(checks.Load()).To(BeNumerically(">", 0))

		var sum, versions int64
		for _, id := range ids {
			acc, err := mire.Load[Account](ctx, store, id)
			Expect(err).NotTo(HaveOccurred())
			Expect(acc.State.Balance).To(BeNumerically(">=", 0))
			sum += acc.State.Balance
			versions += acc.Version
		}
		Expect(sum).To(BeEquivalentTo(total))
		Expect(versions).To(Equal(accounts + 2*succeeded.Load()))
		Expect(rowCounts(ctx, pool)).To(Equal([2]int{accounts, accounts + 2*int(succeeded.Load())}))
	})

	Describe("a plain Store.Save on a stream an open scope has locked", func() {
		var (
			id    string
			stale *mire.Root[Account]
			scope *mire.TxScope
			saved chan error
		)
		BeforeEach(func(ctx SpecContext) {
			id = openAccount(ctx, store, 100)
			var err error
			stale, err = mire.Load[Account](ctx, store, id)
			Expect(err).NotTo(HaveOccurred())

			scope, err = store.Begin(ctx, nil)
			Expect(err).NotTo(HaveOccurred())
			DeferCleanup(func(ctx SpecContext) { Expect(scope.Rollback(ctx)).To(Succeed()) })
			acc, err := mire.LoadForUpdate[Account](ctx, scope, id)
			Expect(err).NotTo(HaveOccurred())
			Expect(acc.Record(Withdrawn{Amount: 40})).To(Succeed())
			Expect(scope.Save(ctx, acc)).To(Succeed())

			Expect(stale.Record(Deposited{Amount: 5})).To(Succeed())
		})

		// saveStale starts the plain save of the stale root and returns once
		// it waits on the scope's lock.
		saveStale := func(ctx context.Context) {
			saved = make(chan error, 1)
			go func() { saved <- store.Save(ctx, stale) }()
			Eventually(lockWaiters).WithContext(ctx).WithArguments(pool).Should(Equal(1), "the plain save waits on the scope's lock")
			Expect(saved).NotTo(Receive())
		}

		It("fails with ErrConcurrency once the scope commits", func(ctx SpecContext) {
			saveStale(ctx)
			Expect(scope.Commit(ctx)).To(Succeed())
			var err error
			Eventually(saved).WithContext(ctx).Should(Receive(&err))
			var conflict *mire.ConcurrencyError
			Expect(errors.As(err, &conflict)).To(BeTrue(), "%v", err)
			Expect(conflict.Expected).To(BeEquivalentTo(1))
			Expect(conflict.Actual).To(BeEquivalentTo(2))
			Expect(stale.Version).To(BeEquivalentTo(1), "the stale root is unchanged")
			Expect(stale.Pending()).To(HaveLen(1))

			Expect(balance(ctx, store, id)).To(BeEquivalentTo(60))
			Expect(rowCounts(ctx, pool)).To(Equal([2]int{1, 2}))
		})

		It("succeeds once the scope rolls back", func(ctx SpecContext) {
			saveStale(ctx)
			Expect(scope.Rollback(ctx)).To(Succeed())
			var err error
			Eventually(saved).WithContext(ctx).Should(Receive(&err))
			Expect(err).NotTo(HaveOccurred())
			Expect(stale.Version).To(BeEquivalentTo(2))

			Expect(balance(ctx, store, id)).To(BeEquivalentTo(105))
			Expect(rowCounts(ctx, pool)).To(Equal([2]int{1, 2}))
		})
	})

	Describe("a multi-root save", func() {
		var first, second string // account ids, in stream id order
		BeforeEach(func(ctx SpecContext) {
			ids := []string{openAccount(ctx, store, 100), openAccount(ctx, store, 100)}
			slices.Sort(ids)
			first, second = ids[0], ids[1]
		})

		It("commits nothing when its second root conflicts, and leaves both roots ready to retry", func(ctx SpecContext) {
			scope, err := store.Begin(ctx, nil)
			Expect(err).NotTo(HaveOccurred())
			defer func() { Expect(scope.Rollback(ctx)).To(Succeed()) }()
			a, err := mire.LoadForUpdate[Account](ctx, scope, first)
			Expect(err).NotTo(HaveOccurred())
			b, err := mire.Load[Account](ctx, scope, second) // no lock: another writer gets in
			Expect(err).NotTo(HaveOccurred())
			_, err = store.Append(ctx, b.StreamID(), mire.Exactly(1), Deposited{Amount: 1})
			Expect(err).NotTo(HaveOccurred())

			Expect(a.Record(Withdrawn{Amount: 10})).To(Succeed())
			Expect(b.Record(Deposited{Amount: 10})).To(Succeed())
			err = scope.Save(ctx, b, a) // written in stream id order: a, then b
			Expect(err).To(MatchError(mire.ErrConcurrency))
			for _, root := range []*mire.Root[Account]{a, b} {
				Expect(root.Version).To(BeEquivalentTo(1), "root %s is back at its loaded version", root.ID)
				Expect(root.Pending()).To(HaveLen(1), "root %s keeps its pending event", root.ID)
			}
			Expect(scope.Save(ctx, a)).To(MatchError(mire.ErrConcurrency), "the failed save poisons the scope")
			_, err = mire.LoadForUpdate[Account](ctx, scope, second)
			Expect(err).To(MatchError(ContainSubstring("an earlier call in the scope failed")))
			Expect(scope.Commit(ctx)).To(MatchError(mire.ErrConcurrency))
			Expect(scope.Rollback(ctx)).To(Succeed())

			Expect(balance(ctx, store, first)).To(BeEquivalentTo(100))
			Expect(balance(ctx, store, second)).To(BeEquivalentTo(101))
			Expect(rowCounts(ctx, pool)).To(Equal([2]int{2, 3}), "two opens and the other writer's deposit")
			Expect(mtest.Count(ctx, pool, "streams", "stream_id = $1 AND version = 1", a.StreamID())).To(Equal(1))

			// The caller retries: the restored root a as it is, b reloaded.
			err = store.InTx(ctx, nil, func(scope *mire.TxScope) error {
				b, err := mire.LoadForUpdate[Account](ctx, scope, second)
				if err != nil {
					return err
				}
				if err := b.Record(Deposited{Amount: 10}); err != nil {
					return err
				}
				return scope.Save(ctx, a, b)
			})
			Expect(err).NotTo(HaveOccurred())
			Expect(a.Version).To(BeEquivalentTo(2))
			Expect(a.Pending()).To(BeEmpty())
			Expect(balance(ctx, store, first)).To(BeEquivalentTo(90))
			Expect(balance(ctx, store, second)).To(BeEquivalentTo(111))
			Expect(rowCounts(ctx, pool)).To(Equal([2]int{2, 5}))
		})

		It("commits nothing when its first root conflicts, though the second's append runs in the same round trip", func(ctx SpecContext) {
			scope, err := store.Begin(ctx, nil)
			Expect(err).NotTo(HaveOccurred())
			defer func() { Expect(scope.Rollback(ctx)).To(Succeed()) }()
			a, err := mire.Load[Account](ctx, scope, first) // no lock: another writer gets in
			Expect(err).NotTo(HaveOccurred())
			b, err := mire.LoadForUpdate[Account](ctx, scope, second)
			Expect(err).NotTo(HaveOccurred())
			_, err = store.Append(ctx, a.StreamID(), mire.Exactly(1), Deposited{Amount: 1})
			Expect(err).NotTo(HaveOccurred())

			Expect(a.Record(Withdrawn{Amount: 10})).To(Succeed())
			Expect(b.Record(Deposited{Amount: 10})).To(Succeed())
			err = scope.Save(ctx, b, a)
			var conflict *mire.ConcurrencyError
			Expect(errors.As(err, &conflict)).To(BeTrue(), "got %v", err)
			Expect(conflict.StreamID).To(Equal(a.StreamID()))
			Expect([]int64{int64(conflict.Expected), conflict.Actual}).To(Equal([]int64{1, 2}))
			Expect([]int64{a.Version, b.Version}).To(Equal([]int64{1, 1}), "both roots are back at their loaded versions")
			Expect(scope.Commit(ctx)).To(MatchError(mire.ErrConcurrency))

			Expect(balance(ctx, store, first)).To(BeEquivalentTo(101))
			Expect(balance(ctx, store, second)).To(BeEquivalentTo(100), "b's deposit went with the rolled-back scope")
			Expect(rowCounts(ctx, pool)).To(Equal([2]int{2, 3}))
			Expect(mtest.Count(ctx, pool, "streams", "stream_id = $1 AND version = 1", b.StreamID())).To(Equal(1))
		})

		It("reports the lock timeout of its second root over the conflict of its first, and commits nothing", func(ctx SpecContext) {
			holder, err := store.Begin(ctx, nil)
			Expect(err).NotTo(HaveOccurred())
			defer func() { Expect(holder.Rollback(ctx)).To(Succeed()) }()
			_, err = mire.LoadForUpdate[Account](ctx, holder, second)
			Expect(err).NotTo(HaveOccurred())

			scope, err := store.Begin(ctx, &mire.TxOpts{LockTimeout: 20 * time.Millisecond})
			Expect(err).NotTo(HaveOccurred())
			defer func() { Expect(scope.Rollback(ctx)).To(Succeed()) }()
			a, err := mire.Load[Account](ctx, scope, first)
			Expect(err).NotTo(HaveOccurred())
			b, err := mire.Load[Account](ctx, scope, second)
			Expect(err).NotTo(HaveOccurred())
			_, err = store.Append(ctx, a.StreamID(), mire.Exactly(1), Deposited{Amount: 1})
			Expect(err).NotTo(HaveOccurred())
			Expect(a.Record(Withdrawn{Amount: 10})).To(Succeed())
			Expect(b.Record(Deposited{Amount: 10})).To(Succeed())

			// a's append is refused; b's waits on the holder's lock past the
			// timeout, which aborts the transaction, so the refusal cannot
			// be looked into and the timeout is what the save reports.
			Expect(scope.Save(ctx, a, b)).To(MatchError(mire.ErrLockTimeout))
			Expect([]int64{a.Version, b.Version}).To(Equal([]int64{1, 1}))
			Expect(scope.Commit(ctx)).To(MatchError(mire.ErrLockTimeout))
			Expect(rowCounts(ctx, pool)).To(Equal([2]int{2, 3}), "two opens and the other writer's deposit")
		})

		It("puts saved roots back as they were when the scope rolls back, so they can be saved again", func(ctx SpecContext) {
			scope, err := store.Begin(ctx, nil)
			Expect(err).NotTo(HaveOccurred())
			accs, err := mire.LoadManyForUpdate[Account](ctx, scope, second, first)
			Expect(err).NotTo(HaveOccurred())
			Expect(accs[0].ID).To(Equal(second), "roots come back in the order of the ids")
			Expect(accs[1].ID).To(Equal(first))
			Expect(accs[0].Record(Withdrawn{Amount: 10})).To(Succeed())
			Expect(accs[1].Record(Deposited{Amount: 10})).To(Succeed())
			Expect(scope.Save(ctx, accs[0], accs[1])).To(Succeed())
			Expect(accs[0].Version).To(BeEquivalentTo(2))
			Expect(accs[0].Record(Withdrawn{Amount: 1})).To(Succeed())
			Expect(scope.Save(ctx, accs[0])).To(Succeed(), "a root saves twice in one scope")
			Expect(accs[0].Version).To(BeEquivalentTo(3))

			Expect(scope.Rollback(ctx)).To(Succeed())
			Expect(accs[0].Version).To(BeEquivalentTo(1))
			Expect(accs[0].Pending()).To(Equal([]any{Withdrawn{Amount: 10}, Withdrawn{Amount: 1}}))
			Expect(accs[1].Version).To(BeEquivalentTo(1))
			Expect(accs[1].Pending()).To(Equal([]any{Deposited{Amount: 10}}))
			Expect(rowCounts(ctx, pool)).To(Equal([2]int{2, 2}))

			Expect(store.Save(ctx, accs[0], accs[1])).To(Succeed())
			Expect(balance(ctx, store, second)).To(BeEquivalentTo(89))
			Expect(balance(ctx, store, first)).To(BeEquivalentTo(110))
			Expect(rowCounts(ctx, pool)).To(Equal([2]int{2, 5}))
		})
	})

	It("locks in stream id order whatever order the ids come in", func(ctx SpecContext) {
		ids := []string{openAccount(ctx, store, 100), openAccount(ctx, store, 100)}
		slices.Sort(ids)
		first, second := ids[0], ids[1]

		holder, err := store.Begin(ctx, nil)
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(func(ctx SpecContext) { Expect(holder.Rollback(ctx)).To(Succeed()) })
		_, err = mire.LoadForUpdate[Account](ctx, holder, first)
		Expect(err).NotTo(HaveOccurred())

		// The ids in reverse order: the scope must wait on first before it
		// touches second.
		loaded := make(chan error, 1)
		go func() {
			loaded <- store.InTx(ctx, nil, func(scope *mire.TxScope) error {
				accs, err := mire.LoadManyForUpdate[Account](ctx, scope, second, first)
				if err != nil {
					return err
				}
				if err := accs[0].Record(Withdrawn{Amount: 1}); err != nil {
					return err
				}
				if err := accs[1].Record(Deposited{Amount: 1}); err != nil {
					return err
				}
				return scope.Save(ctx, accs[0], accs[1])
			})
		}()
		Eventually(lockWaiters).WithContext(ctx).WithArguments(pool).Should(Equal(1))

		// Had the waiting scope locked second first, this would deadlock.
		acc, err := mire.LoadForUpdate[Account](ctx, holder, second)
		Expect(err).NotTo(HaveOccurred())
		Expect(acc.Record(Deposited{Amount: 10})).To(Succeed())
		Expect(holder.Save(ctx, acc)).To(Succeed())
		Expect(holder.Commit(ctx)).To(Succeed())

		Eventually(loaded).WithContext(ctx).Should(Receive(&err))
		Expect(err).NotTo(HaveOccurred())
		Expect(balance(ctx, store, first)).To(BeEquivalentTo(101))
		Expect(balance(ctx, store, second)).To(BeEquivalentTo(109))
		Expect(rowCounts(ctx, pool)).To(Equal([2]int{2, 5}))
	})

	// With one connection in the pool, a leaked connection would make every
	// later query wait until the spec times out.
	It("rolls back on a panic inside InTx, re-panics, and hands the connection back usable", func(ctx SpecContext) {
		cfg, err := pgxpool.ParseConfig(pool.Config().ConnString())
		Expect(err).NotTo(HaveOccurred())
		cfg.MaxConns = 1
		single, err := pgxpool.NewWithConfig(ctx, cfg)
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(single.Close)
		store := newStore(single)
		id := openAccount(ctx, store, 100)
		backend := func() (pid int) {
			Expect(single.QueryRow(ctx, `SELECT pg_backend_pid()`).Scan(&pid)).To(Succeed())
			return pid
		}
		before := backend()

		Expect(func() {
			_ = store.InTx(ctx, nil, func(scope *mire.TxScope) error {
				acc, err := mire.LoadForUpdate[Account](ctx, scope, id)
				Expect(err).NotTo(HaveOccurred())
				Expect(acc.Record(Withdrawn{Amount: 30})).To(Succeed())
				Expect(scope.Save(ctx, acc)).To(Succeed())
				panic("boom")
			})
		}).To(PanicWith("boom"))

		Expect(backend()).To(Equal(before), "the same connection went back to the pool, not a new one")
		var open int
		Expect(single.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity
			WHERE datname = current_database() AND state LIKE 'idle in transaction%'`).Scan(&open)).To(Succeed())
		Expect(open).To(BeZero(), "no transaction is left open")
		Expect(store.InTx(ctx, nil, func(scope *mire.TxScope) error {
			acc, err := mire.LoadForUpdate[Account](ctx, scope, id)
			if err != nil {
				return err
			}
			Expect(acc.Version).To(BeEquivalentTo(1))
			return acc.Record(Deposited{Amount: 1})
		})).To(Succeed(), "the single connection runs the next scope, and the lock is gone")
		Expect(balance(ctx, store, id)).To(BeEquivalentTo(100), "a recorded but unsaved event commits nothing")
		Expect(rowCounts(ctx, pool)).To(Equal([2]int{1, 1}))
	}, SpecTimeout(time.Minute))

	Describe("the lock timeout", func() {
		var (
			id     string
			holder *mire.TxScope
		)
		BeforeEach(func(ctx SpecContext) {
			id = openAccount(ctx, store, 100)
			var err error
			holder, err = store.Begin(ctx, nil)
			Expect(err).NotTo(HaveOccurred())
			DeferCleanup(func(ctx SpecContext) { Expect(holder.Rollback(ctx)).To(Succeed()) })
			_, err = mire.LoadForUpdate[Account](ctx, holder, id)
			Expect(err).NotTo(HaveOccurred())
		})

		It("turns a locking load's wait into ErrLockTimeout and poisons the scope", func(ctx SpecContext) {
			waiter, err := store.Begin(ctx, &mire.TxOpts{LockTimeout: 20 * time.Millisecond})
			Expect(err).NotTo(HaveOccurred())
			defer func() { Expect(waiter.Rollback(ctx)).To(Succeed()) }()
			_, err = mire.LoadForUpdate[Account](ctx, waiter, id)
			Expect(err).To(MatchError(mire.ErrLockTimeout))
			Expect(waiter.Commit(ctx)).To(MatchError(mire.ErrLockTimeout))
			Expect(rowCounts(ctx, pool)).To(Equal([2]int{1, 1}))
		})

		It("bounds a scope's save behind another scope's lock", func(ctx SpecContext) {
			waiter, err := store.Begin(ctx, &mire.TxOpts{LockTimeout: 20 * time.Millisecond})
			Expect(err).NotTo(HaveOccurred())
			defer func() { Expect(waiter.Rollback(ctx)).To(Succeed()) }()
			acc, err := mire.Load[Account](ctx, waiter, id)
			Expect(err).NotTo(HaveOccurred())
			Expect(acc.Record(Deposited{Amount: 1})).To(Succeed())
			Expect(waiter.Save(ctx, acc)).To(MatchError(mire.ErrLockTimeout))
			Expect(acc.Version).To(BeEquivalentTo(1))
			Expect(acc.Pending()).To(HaveLen(1))
			Expect(rowCounts(ctx, pool)).To(Equal([2]int{1, 1}))
		})

		It("is not retried by InTxOpts", func(ctx SpecContext) {
			attempts := 0
			err := store.InTx(ctx, &mire.InTxOpts{TxOpts: mire.TxOpts{LockTimeout: 20 * time.Millisecond}, Retries: 3}, func(scope *mire.TxScope) error {
				attempts++
				_, err := mire.LoadForUpdate[Account](ctx, scope, id)
				return err
			})
			Expect(err).To(MatchError(mire.ErrLockTimeout))
			Expect(attempts).To(Equal(1))
			Expect(rowCounts(ctx, pool)).To(Equal([2]int{1, 1}))
		})
	})

	Describe("InTx retries", func() {
		var id string
		BeforeEach(func(ctx SpecContext) { id = openAccount(ctx, store, 100) })

		// withdraw loads without a lock and, on the first attempt only, lets
		// another writer append to the stream before saving.
		withdraw := func(ctx context.Context, opts *mire.InTxOpts, attempts *int) error {
			return store.InTx(ctx, opts, func(scope *mire.TxScope) error {
				*attempts++
				acc, err := mire.Load[Account](ctx, scope, id)
				if err != nil {
					return err
				}
				if *attempts == 1 {
					if _, err := store.Append(ctx, acc.StreamID(), mire.Exactly(acc.Version), Deposited{Amount: 1}); err != nil {
						return err
					}
				}
				if err := acc.Record(Withdrawn{Amount: 10}); err != nil {
					return err
				}
				return scope.Save(ctx, acc)
			})
		}

		It("runs the function again after a concurrency conflict", func(ctx SpecContext) {
			attempts := 0
			Expect(withdraw(ctx, &mire.InTxOpts{Retries: 2, RetryBackoff: time.Millisecond}, &attempts)).To(Succeed())
			Expect(attempts).To(Equal(2))
			Expect(balance(ctx, store, id)).To(BeEquivalentTo(91))
			Expect(rowCounts(ctx, pool)).To(Equal([2]int{1, 3}))
		})

		It("returns the conflict without retries", func(ctx SpecContext) {
			attempts := 0
			Expect(withdraw(ctx, nil, &attempts)).To(MatchError(mire.ErrConcurrency))
			Expect(attempts).To(Equal(1))
			Expect(balance(ctx, store, id)).To(BeEquivalentTo(101))
			Expect(rowCounts(ctx, pool)).To(Equal([2]int{1, 2}))
		})

		It("runs the function again after a serialization failure", func(ctx SpecContext) {
			attempts := 0
			err := store.InTx(ctx, &mire.InTxOpts{TxOpts: mire.TxOpts{IsoLevel: pgx.RepeatableRead}, Retries: 1}, func(scope *mire.TxScope) error {
				attempts++
				if _, err := mire.Load[Account](ctx, scope, id); err != nil { // takes the snapshot
					return err
				}
				if attempts == 1 {
					if _, err := store.Append(ctx, "account-"+id, mire.Exactly(1), Deposited{Amount: 1}); err != nil {
						return err
					}
				}
				acc, err := mire.LoadForUpdate[Account](ctx, scope, id)
				if err != nil {
					return err
				}
				if err := acc.Record(Withdrawn{Amount: 10}); err != nil {
					return err
				}
				return scope.Save(ctx, acc)
			})
			Expect(err).NotTo(HaveOccurred())
			Expect(attempts).To(Equal(2))
			Expect(balance(ctx, store, id)).To(BeEquivalentTo(91))
			Expect(rowCounts(ctx, pool)).To(Equal([2]int{1, 3}))
		})

		It("returns a function's own error at once, and rejects bad options", func(ctx SpecContext) {
			attempts := 0
			boom := errors.New("boom")
			Expect(store.InTx(ctx, &mire.InTxOpts{Retries: 5}, func(*mire.TxScope) error {
				attempts++
				return boom
			})).To(MatchError(boom))
			Expect(attempts).To(Equal(1))

			Expect(store.InTx(ctx, &mire.InTxOpts{Retries: -1}, func(*mire.TxScope) error { return nil })).
				To(MatchError(ContainSubstring("negative retries")))
			_, err := store.Begin(ctx, &mire.TxOpts{LockTimeout: -time.Second})
			Expect(err).To(MatchError(ContainSubstring("negative lock timeout")))
			_, err = store.Begin(ctx, &mire.TxOpts{IsoLevel: "chaotic"})
			Expect(err).To(MatchError(ContainSubstring(`unsupported isolation level "chaotic"`)))
			Expect(rowCounts(ctx, pool)).To(Equal([2]int{1, 1}))
		})
	})

	// A transfer's work takes two round trips (the locks and loads, the
	// saves) and its COMMIT a third (with Save; SaveAndCommit sends it with
	// the saves, see below): BEGIN goes with the first.
	It("sends BEGIN, and its lock timeout, with its first batch, not in round trips of their own, and nothing for a scope that sends nothing", func(ctx SpecContext) {
		store, trips := tracedStore(ctx)
		from, to := openAccount(ctx, store, 10), openAccount(ctx, store, 10)

		for _, opts := range []*mire.InTxOpts{nil, {TxOpts: mire.TxOpts{LockTimeout: time.Second}}} {
			trips.reset()
			Expect(transferOne(ctx, store, opts, from, to, false)).To(Succeed())
			got := trips.list()
			Expect(got).To(HaveLen(3), "round trips: %q", got)
			Expect(got[0]).To(HavePrefix("batch: begin"))
			Expect(got[1]).To(HavePrefix("batch: "))
			Expect(got[2]).To(Equal("commit"))
		}
		Expect(balance(ctx, store, from)).To(BeEquivalentTo(8))

		// A scope that sends nothing costs nothing.
		trips.reset()
		Expect(store.InTx(ctx, nil, func(*mire.TxScope) error { return nil })).To(Succeed())
		scope, err := store.Begin(ctx, nil)
		Expect(err).NotTo(HaveOccurred())
		Expect(scope.Rollback(ctx)).To(Succeed())
		Expect(trips.list()).To(BeEmpty())
	})

	It("saves several roots outside a scope in one round trip: BEGIN, the appends and COMMIT", func(ctx SpecContext) {
		store, trips := tracedStore(ctx)
		a, b := openAccount(ctx, store, 10), openAccount(ctx, store, 10)
		accA, err := mire.Load[Account](ctx, store, a)
		Expect(err).NotTo(HaveOccurred())
		accB, err := mire.Load[Account](ctx, store, b)
		Expect(err).NotTo(HaveOccurred())
		Expect(accA.Record(Withdrawn{Amount: 1})).To(Succeed())
		Expect(accB.Record(Deposited{Amount: 1})).To(Succeed())
		trips.reset()
		Expect(store.Save(ctx, accA, accB)).To(Succeed())
		got := trips.list()
		Expect(got).To(HaveLen(1), "round trips: %q", got)
		Expect(got[0]).To(HavePrefix("batch: begin"))
		Expect(balance(ctx, store, a)).To(BeEquivalentTo(9))
		Expect(balance(ctx, store, b)).To(BeEquivalentTo(11))

		// Events with given ids may be a retry, which a refusal read in the
		// transaction tells: two round trips, BEGIN with the appends, then
		// COMMIT.
		Expect(accA.Record(mire.WithID(uuid.New(), Withdrawn{Amount: 1}))).To(Succeed())
		Expect(accB.Record(Deposited{Amount: 1})).To(Succeed())
		trips.reset()
		Expect(store.Save(ctx, accA, accB)).To(Succeed())
		got = trips.list()
		Expect(got).To(HaveLen(2), "round trips: %q", got)
		Expect(got[1]).To(Equal("commit"))
		Expect(balance(ctx, store, a)).To(BeEquivalentTo(8))
		Expect(balance(ctx, store, b)).To(BeEquivalentTo(12))

		// A conflict in one stream writes neither.
		stale, err := mire.Load[Account](ctx, store, a)
		Expect(err).NotTo(HaveOccurred())
		Expect(accA.Record(Withdrawn{Amount: 1})).To(Succeed())
		Expect(store.Save(ctx, accA)).To(Succeed())
		Expect(stale.Record(Withdrawn{Amount: 1})).To(Succeed())
		Expect(accB.Record(Deposited{Amount: 1})).To(Succeed())
		Expect(store.Save(ctx, stale, accB)).To(MatchError(mire.ErrConcurrency))
		Expect(balance(ctx, store, a)).To(BeEquivalentTo(7))
		Expect(balance(ctx, store, b)).To(BeEquivalentTo(12))
	})

	Describe("SaveAndCommit", func() {
		It("makes a transfer two round trips in all: BEGIN with the locks and loads, then the appends with COMMIT", func(ctx SpecContext) {
			store, trips := tracedStore(ctx)
			from, to := openAccount(ctx, store, 10), openAccount(ctx, store, 10)
			for _, opts := range []*mire.InTxOpts{nil, {TxOpts: mire.TxOpts{LockTimeout: time.Second}}} {
				trips.reset()
				Expect(transferOne(ctx, store, opts, from, to, true)).To(Succeed())
				got := trips.list()
				Expect(got).To(HaveLen(2), "round trips: %q", got)
				Expect(got[0]).To(HavePrefix("batch: begin"))
				Expect(got[1]).To(HavePrefix("batch: WITH s AS"))
			}
			Expect(balance(ctx, store, from)).To(BeEquivalentTo(8))
			Expect(balance(ctx, store, to)).To(BeEquivalentTo(12))

			// A scope that has sent nothing yet sends BEGIN, the appends and
			// COMMIT in one round trip.
			trips.reset()
			scope, err := store.Begin(ctx, nil)
			Expect(err).NotTo(HaveOccurred())
			a, err := mire.Create[Account](store, "one-trip-a")
			Expect(err).NotTo(HaveOccurred())
			b, err := mire.Create[Account](store, "one-trip-b")
			Expect(err).NotTo(HaveOccurred())
			Expect(a.Record(Opened{Owner: "a", Initial: 5})).To(Succeed())
			Expect(b.Record(Opened{Owner: "b", Initial: 6})).To(Succeed())
			Expect(b.Record(Deposited{Amount: 1})).To(Succeed()) // two events: the other form of the statement
			Expect(scope.SaveAndCommit(ctx, a, b)).To(Succeed())
			Expect(trips.list()).To(HaveLen(1), "round trips: %q", trips.list())
			Expect(a.Version).To(BeEquivalentTo(1))
			Expect(b.Version).To(BeEquivalentTo(2))
			Expect(b.Pending()).To(BeEmpty())
			Expect(balance(ctx, store, "one-trip-a")).To(BeEquivalentTo(5))
			Expect(balance(ctx, store, "one-trip-b")).To(BeEquivalentTo(7))

			// A stream that exists is refused to a Create, as by Save.
			again, err := mire.Create[Account](store, "one-trip-a")
			Expect(err).NotTo(HaveOccurred())
			Expect(again.Record(Opened{Owner: "a", Initial: 9})).To(Succeed())
			scope, err = store.Begin(ctx, nil)
			Expect(err).NotTo(HaveOccurred())
			var conflict *mire.ConcurrencyError
			Expect(errors.As(scope.SaveAndCommit(ctx, again), &conflict)).To(BeTrue())
			Expect(*conflict).To(Equal(mire.ConcurrencyError{StreamID: again.StreamID(), Expected: mire.NoStream, Actual: 1}))
			Expect(balance(ctx, store, "one-trip-a")).To(BeEquivalentTo(5))
			Expect(scope.Commit(ctx)).To(MatchError(mire.ErrTxDone), "the scope is committed")
			Expect(scope.Rollback(ctx)).To(Succeed(), "a no-op after commit")
		})

		// With one connection in the pool, a connection SaveAndCommit did
		// not hand back, or handed back inside a transaction, would make
		// the next query wait or fail.
		It("commits nothing when one root's append is refused, puts the roots back, and hands a clean connection back", func(ctx SpecContext) {
			cfg, err := pgxpool.ParseConfig(pool.Config().ConnString())
			Expect(err).NotTo(HaveOccurred())
			cfg.MaxConns = 1
			single, err := pgxpool.NewWithConfig(ctx, cfg)
			Expect(err).NotTo(HaveOccurred())
			DeferCleanup(single.Close)
			store := newStore(single)
			ids := []string{openAccount(ctx, store, 100), openAccount(ctx, store, 100)}
			slices.Sort(ids)
			backend := func() (pid int) {
				Expect(single.QueryRow(ctx, `SELECT pg_backend_pid()`).Scan(&pid)).To(Succeed())
				return pid
			}
			before := backend()

			stale, err := mire.Load[Account](ctx, store, ids[1]) // no lock: another writer gets in
			Expect(err).NotTo(HaveOccurred())
			_, err = store.Append(ctx, stale.StreamID(), mire.Exactly(1), Deposited{Amount: 1})
			Expect(err).NotTo(HaveOccurred())
			scope, err := store.Begin(ctx, nil)
			Expect(err).NotTo(HaveOccurred())
			a, err := mire.LoadForUpdate[Account](ctx, scope, ids[0])
			Expect(err).NotTo(HaveOccurred())
			Expect(a.Record(Withdrawn{Amount: 10})).To(Succeed())
			Expect(stale.Record(Deposited{Amount: 10})).To(Succeed())
			err = scope.SaveAndCommit(ctx, a, stale) // a's append is written first, and must not commit
			var conflict *mire.ConcurrencyError
			Expect(errors.As(err, &conflict)).To(BeTrue(), "%v", err)
			Expect(*conflict).To(Equal(mire.ConcurrencyError{StreamID: stale.StreamID(), Expected: mire.Exactly(1), Actual: 2}))
			for _, root := range []*mire.Root[Account]{a, stale} {
				Expect(root.Version).To(BeEquivalentTo(1), "root %s is back at its loaded version", root.ID)
				Expect(root.Pending()).To(HaveLen(1), "root %s keeps its pending event", root.ID)
			}
			Expect(scope.Commit(ctx)).To(MatchError(mire.ErrTxDone), "the scope is over")
			Expect(scope.Rollback(ctx)).To(Succeed())

			Expect(balance(ctx, store, ids[0])).To(BeEquivalentTo(100), "a's withdrawal did not commit")
			Expect(balance(ctx, store, ids[1])).To(BeEquivalentTo(101))
			Expect(rowCounts(ctx, pool)).To(Equal([2]int{2, 3}), "two opens and the other writer's deposit")
			Expect(backend()).To(Equal(before), "the same connection went back to the pool, not a new one")
			var open int
			Expect(single.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity
				WHERE datname = current_database() AND state LIKE 'idle in transaction%'`).Scan(&open)).To(Succeed())
			Expect(open).To(BeZero(), "no transaction is left open")

			// The same roots, reloaded where stale, save and commit.
			Expect(store.InTx(ctx, nil, func(scope *mire.TxScope) error {
				b, err := mire.LoadForUpdate[Account](ctx, scope, ids[1])
				if err != nil {
					return err
				}
				if err := b.Record(Deposited{Amount: 10}); err != nil {
					return err
				}
				return scope.SaveAndCommit(ctx, a, b)
			})).To(Succeed())
			Expect(balance(ctx, store, ids[0])).To(BeEquivalentTo(90))
			Expect(balance(ctx, store, ids[1])).To(BeEquivalentTo(111))
			Expect(backend()).To(Equal(before))
		}, SpecTimeout(time.Minute))

		It("is retried by InTx after a conflict, and leaves InTx nothing to commit", func(ctx SpecContext) {
			id := openAccount(ctx, store, 100)
			attempts := 0
			Expect(store.InTx(ctx, &mire.InTxOpts{Retries: 2}, func(scope *mire.TxScope) error {
				attempts++
				acc, err := mire.Load[Account](ctx, scope, id)
				if err != nil {
					return err
				}
				if attempts == 1 { // another writer gets in between the load and the save
					_, err := store.Append(ctx, acc.StreamID(), mire.Exactly(acc.Version), Deposited{Amount: 5})
					Expect(err).NotTo(HaveOccurred())
				}
				if err := acc.Record(Withdrawn{Amount: 30}); err != nil {
					return err
				}
				return scope.SaveAndCommit(ctx, acc)
			})).To(Succeed())
			Expect(attempts).To(Equal(2))
			Expect(balance(ctx, store, id)).To(BeEquivalentTo(75))
		})

		It("saves and then commits, in two round trips, events with given ids, which may be a retry", func(ctx SpecContext) {
			store, trips := tracedStore(ctx)
			id := openAccount(ctx, store, 100)
			eventID := uuid.New()
			transfer := func() error {
				return store.InTx(ctx, nil, func(scope *mire.TxScope) error {
					acc, err := mire.LoadForUpdate[Account](ctx, scope, id)
					if err != nil {
						return err
					}
					if acc.Version > 1 { // a retry after a lost acknowledgement: the same event, loaded past it
						acc, err = mire.Rehydrate[Account](nil, id, Opened{Owner: "o", Initial: 100})
						if err != nil {
							return err
						}
					}
					if err := acc.Record(mire.WithID(eventID, Withdrawn{Amount: 7})); err != nil {
						return err
					}
					return scope.SaveAndCommit(ctx, acc)
				})
			}
			trips.reset()
			Expect(transfer()).To(Succeed())
			got := trips.list()
			Expect(got).To(HaveLen(3), "round trips: %q", got)
			Expect(got[2]).To(Equal("commit"))
			Expect(transfer()).To(Succeed(), "the retry is recognised")
			Expect(balance(ctx, store, id)).To(BeEquivalentTo(93), "the withdrawal is stored once")
		})

		It("rolls back a scope an earlier call poisoned, and refuses a scope of the caller's transaction", func(ctx SpecContext) {
			id := openAccount(ctx, store, 100)
			stale, err := mire.Load[Account](ctx, store, id)
			Expect(err).NotTo(HaveOccurred())
			_, err = store.Append(ctx, stale.StreamID(), mire.Exactly(1), Deposited{Amount: 1})
			Expect(err).NotTo(HaveOccurred())
			scope, err := store.Begin(ctx, nil)
			Expect(err).NotTo(HaveOccurred())
			Expect(stale.Record(Withdrawn{Amount: 1})).To(Succeed())
			Expect(scope.Save(ctx, stale)).To(MatchError(mire.ErrConcurrency))
			fresh, err := mire.Create[Account](store, "after-poison")
			Expect(err).NotTo(HaveOccurred())
			Expect(fresh.Record(Opened{Owner: "x", Initial: 1})).To(Succeed())
			err = scope.SaveAndCommit(ctx, fresh)
			Expect(err).To(MatchError(ContainSubstring("an earlier call in the scope failed, rolled back")))
			Expect(err).To(MatchError(mire.ErrConcurrency))
			Expect(mtest.Count(ctx, pool, "streams", "stream_id = $1", fresh.StreamID())).To(BeZero())
			Expect(scope.SaveAndCommit(ctx, fresh)).To(MatchError(mire.ErrTxDone))

			tx, err := pool.Begin(ctx)
			Expect(err).NotTo(HaveOccurred())
			defer func() { _ = tx.Rollback(ctx) }()
			inCallers, err := store.ScopeTx(tx)
			Expect(err).NotTo(HaveOccurred())
			Expect(inCallers.SaveAndCommit(ctx, fresh)).To(MatchError(ContainSubstring("inside the caller's transaction")))
		})
	})

	Describe("its life cycle", func() {
		var id string
		BeforeEach(func(ctx SpecContext) { id = openAccount(ctx, store, 100) })

		It("makes Rollback after Commit a no-op, and every call after Rollback ErrTxDone", func(ctx SpecContext) {
			scope, err := store.Begin(ctx, nil)
			Expect(err).NotTo(HaveOccurred())
			acc, err := mire.LoadForUpdate[Account](ctx, scope, id)
			Expect(err).NotTo(HaveOccurred())
			Expect(acc.Record(Deposited{Amount: 5})).To(Succeed())
			Expect(scope.Save(ctx, acc)).To(Succeed())
			Expect(scope.Commit(ctx)).To(Succeed())
			Expect(scope.Rollback(ctx)).To(Succeed())
			Expect(acc.Version).To(BeEquivalentTo(2), "Rollback after Commit restores nothing")
			Expect(scope.Commit(ctx)).To(MatchError(mire.ErrTxDone))
			Expect(rowCounts(ctx, pool)).To(Equal([2]int{1, 2}))

			scope, err = store.Begin(ctx, nil)
			Expect(err).NotTo(HaveOccurred())
			Expect(scope.Rollback(ctx)).To(Succeed())
			Expect(scope.Rollback(ctx)).To(Succeed())
			Expect(scope.Commit(ctx)).To(MatchError(mire.ErrTxDone))
			Expect(acc.Record(Deposited{Amount: 5})).To(Succeed())
			Expect(scope.Save(ctx, acc)).To(MatchError(mire.ErrTxDone))
			_, err = mire.LoadForUpdate[Account](ctx, scope, id)
			Expect(err).To(MatchError(mire.ErrTxDone))
			_, err = mire.Load[Account](ctx, scope, id)
			Expect(err).To(MatchError(mire.ErrTxDone))
			Expect(rowCounts(ctx, pool)).To(Equal([2]int{1, 2}))
		})

		It("begins on Tx() under the context the scope was begun with, when nothing else began it", func(ctx SpecContext) {
			bctx, cancel := context.WithCancel(ctx)
			scope, err := store.Begin(bctx, nil)
			Expect(err).NotTo(HaveOccurred())
			defer func() { _ = scope.Rollback(ctx) }()
			cancel()
			_, err = scope.Tx().Exec(ctx, `SELECT 1`)
			Expect(err).To(MatchError(pgx.ErrTxClosed))
			Expect(scope.Commit(ctx)).To(MatchError(context.Canceled))

			scope, err = store.Begin(ctx, nil)
			Expect(err).NotTo(HaveOccurred())
			defer func() { _ = scope.Rollback(ctx) }()
			Expect(holdsRowLocks(ctx, scope)).To(BeFalse())
			_, err = mire.LoadForUpdate[Account](ctx, scope, id)
			Expect(err).NotTo(HaveOccurred())
			Expect(holdsRowLocks(ctx, scope)).To(BeTrue(), "the load ran in the transaction Tx began")
			Expect(scope.Commit(ctx)).To(Succeed())
		})

		It("commits and rolls back plain SQL on Tx() with the events", func(ctx SpecContext) {
			_, err := pool.Exec(ctx, `CREATE TABLE notes (id serial PRIMARY KEY, text text NOT NULL)`)
			Expect(err).NotTo(HaveOccurred())
			notes := func() int {
				var n int
				Expect(pool.QueryRow(ctx, `SELECT count(*) FROM notes`).Scan(&n)).To(Succeed())
				return n
			}
			depositWithNote := func(commit bool) {
				scope, err := store.Begin(ctx, nil)
				Expect(err).NotTo(HaveOccurred())
				defer func() { Expect(scope.Rollback(ctx)).To(Succeed()) }()
				acc, err := mire.LoadForUpdate[Account](ctx, scope, id)
				Expect(err).NotTo(HaveOccurred())
				Expect(acc.Record(Deposited{Amount: 5})).To(Succeed())
				Expect(scope.Save(ctx, acc)).To(Succeed())
				_, err = scope.Tx().Exec(ctx, `INSERT INTO notes (text) VALUES ('deposit')`)
				Expect(err).NotTo(HaveOccurred())
				if commit {
					Expect(scope.Commit(ctx)).To(Succeed())
				}
			}

			depositWithNote(false)
			Expect(notes()).To(BeZero())
			Expect(rowCounts(ctx, pool)).To(Equal([2]int{1, 1}))

			depositWithNote(true)
			Expect(notes()).To(Equal(1))
			Expect(rowCounts(ctx, pool)).To(Equal([2]int{1, 2}))
		})

		It("reports a transaction its own SQL aborted at Commit, writing nothing", func(ctx SpecContext) {
			scope, err := store.Begin(ctx, nil)
			Expect(err).NotTo(HaveOccurred())
			defer func() { Expect(scope.Rollback(ctx)).To(Succeed()) }()
			acc, err := mire.LoadForUpdate[Account](ctx, scope, id)
			Expect(err).NotTo(HaveOccurred())
			Expect(acc.Record(Deposited{Amount: 5})).To(Succeed())
			Expect(scope.Save(ctx, acc)).To(Succeed())
			_, err = scope.Tx().Exec(ctx, `SELECT * FROM no_such_table`)
			Expect(err).To(HaveOccurred())
			Expect(scope.Commit(ctx)).To(MatchError(ContainSubstring("aborted by an earlier error")))
			Expect(acc.Version).To(BeEquivalentTo(1))
			Expect(acc.Pending()).To(HaveLen(1))
			Expect(rowCounts(ctx, pool)).To(Equal([2]int{1, 1}))
		})

		It("loads a missing stream for update as ErrNotFound, holding no lock and leaving the scope usable", func(ctx SpecContext) {
			scope, err := store.Begin(ctx, nil)
			Expect(err).NotTo(HaveOccurred())
			defer func() { Expect(scope.Rollback(ctx)).To(Succeed()) }()
			missing := mtest.Unique("acc")
			_, err = mire.LoadForUpdate[Account](ctx, scope, missing)
			Expect(err).To(MatchError(mire.ErrNotFound))
			Expect(err).To(MatchError(ContainSubstring(`"account-` + missing + `"`)))
			Expect(holdsRowLocks(ctx, scope)).To(BeFalse(), "locking no row takes no transaction id")

			acc, err := mire.LoadOrNew[Account](ctx, scope, missing)
			Expect(err).NotTo(HaveOccurred())
			Expect(acc.Record(Opened{Owner: missing, Initial: 7})).To(Succeed())
			Expect(scope.Save(ctx, acc)).To(Succeed())
			Expect(scope.Commit(ctx)).To(Succeed())
			Expect(balance(ctx, store, missing)).To(BeEquivalentTo(7))
			Expect(rowCounts(ctx, pool)).To(Equal([2]int{2, 2}))
		})

		It("locks an existing stream for update", func(ctx SpecContext) {
			scope, err := store.Begin(ctx, nil)
			Expect(err).NotTo(HaveOccurred())
			defer func() { Expect(scope.Rollback(ctx)).To(Succeed()) }()
			_, err = mire.Load[Account](ctx, scope, id)
			Expect(err).NotTo(HaveOccurred())
			Expect(holdsRowLocks(ctx, scope)).To(BeFalse(), "a plain Load locks nothing")
			_, err = mire.LoadForUpdate[Account](ctx, scope, id)
			Expect(err).NotTo(HaveOccurred())
			Expect(holdsRowLocks(ctx, scope)).To(BeTrue())
			Expect(rowCounts(ctx, pool)).To(Equal([2]int{1, 1}))
		})

		It("rejects bad input to LoadManyForUpdate", func(ctx SpecContext) {
			scope, err := store.Begin(ctx, nil)
			Expect(err).NotTo(HaveOccurred())
			defer func() { Expect(scope.Rollback(ctx)).To(Succeed()) }()
			_, err = mire.LoadManyForUpdate[Account](ctx, scope)
			Expect(err).To(MatchError(ContainSubstring("no ids")))
			_, err = mire.LoadManyForUpdate[Account](ctx, scope, id, id)
			Expect(err).To(MatchError(ContainSubstring(`stream "account-` + id + `" given twice`)))
			_, err = mire.LoadManyForUpdate[Account](ctx, scope, id, "")
			Expect(err).To(MatchError(mire.ErrInvalidID))
			Expect(holdsRowLocks(ctx, scope)).To(BeFalse())
			Expect(rowCounts(ctx, pool)).To(Equal([2]int{1, 1}))
		})
	})
})

// tracedStore returns a store on a fresh database whose pool lists its
// round trips.
func tracedStore(ctx context.Context) (*mire.Store, *roundTrips) {
	url, _ := db.Fresh(ctx)
	cfg, err := pgxpool.ParseConfig(url)
	Expect(err).NotTo(HaveOccurred())
	trips := &roundTrips{}
	cfg.ConnConfig.Tracer = trips
	mire.ConfigurePool(cfg)
	traced, err := pgxpool.NewWithConfig(ctx, cfg)
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(traced.Close)
	return newStore(traced), trips
}

// roundTrips is a pgx tracer that lists a pool's round trips: each
// statement sent alone by its SQL, each batch as "batch: " and its first
// statement's SQL. The store's wake-up notifications are left out.
type roundTrips struct {
	mu   sync.Mutex
	sqls []string
}

func (r *roundTrips) add(sql string) {
	if strings.Contains(sql, "pg_notify") {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.sqls = append(r.sqls, strings.TrimSpace(sql))
}

func (r *roundTrips) reset() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.sqls = nil
}

func (r *roundTrips) list() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.sqls)
}

func (r *roundTrips) TraceQueryStart(ctx context.Context, _ *pgx.Conn, d pgx.TraceQueryStartData) context.Context {
	r.add(d.SQL)
	return ctx
}

func (r *roundTrips) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}

func (r *roundTrips) TraceBatchStart(ctx context.Context, _ *pgx.Conn, d pgx.TraceBatchStartData) context.Context {
	r.add("batch: " + d.Batch.QueuedQueries[0].SQL)
	return ctx
}

func (r *roundTrips) TraceBatchQuery(context.Context, *pgx.Conn, pgx.TraceBatchQueryData) {}

func (r *roundTrips) TraceBatchEnd(context.Context, *pgx.Conn, pgx.TraceBatchEndData) {}
