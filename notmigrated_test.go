package mire_test

import (
	"context"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/mire-go/mire"
)

// recorded returns a new Root of T with its first events recorded.
func recorded[T any, PT interface {
	*T
	mire.Aggregate
}](store *mire.Store, id string, events ...any) *mire.Root[T] {
	root, err := mire.Create[T, PT](store, id)
	Expect(err).NotTo(HaveOccurred())
	for _, e := range events {
		Expect(root.Record(e)).To(Succeed())
	}
	return root
}

// ledgerEvents returns the events of a new ledger long enough for its save
// to store a snapshot.
func ledgerEvents() []any {
	events := []any{LedgerOpened{Name: "l"}}
	for range 99 {
		events = append(events, LedgerPosted{Amount: 1})
	}
	return events
}

// inScope runs fn in a scope of store, rolled back at the end.
func inScope(ctx context.Context, store *mire.Store, fn func(*mire.TxScope) error) error {
	scope, err := store.Begin(ctx, nil)
	Expect(err).NotTo(HaveOccurred(), "BEGIN needs no table")
	defer func() { Expect(scope.Rollback(ctx)).To(Succeed()) }()
	return fn(scope)
}

var _ = Describe("A store over an unmigrated schema", func() {
	// Each entry point, run against a store whose schema is not migrated.
	type call func(ctx context.Context, store *mire.Store) error
	calls := []TableEntry{
		Entry("Load", call(func(ctx context.Context, store *mire.Store) error {
			_, err := mire.Load[Account](ctx, store, "a")
			return err
		})),
		Entry("LoadOrNew", call(func(ctx context.Context, store *mire.Store) error {
			_, err := mire.LoadOrNew[Account](ctx, store, "a")
			return err
		})),
		Entry("LoadOrNew of an aggregate with snapshots", call(func(ctx context.Context, store *mire.Store) error {
			_, err := mire.LoadOrNew[Ledger](ctx, store, "l")
			return err
		})),
		Entry("Save of one root", call(func(ctx context.Context, store *mire.Store) error {
			return store.Save(ctx, recorded[Account](store, "a", Opened{Owner: "a"}))
		})),
		Entry("Save of one root with a snapshot", call(func(ctx context.Context, store *mire.Store) error {
			return store.Save(ctx, recorded[Ledger](store, "l", ledgerEvents()...))
		})),
		Entry("Save of several roots", call(func(ctx context.Context, store *mire.Store) error {
			return store.Save(ctx, recorded[Account](store, "a", Opened{Owner: "a"}), recorded[Account](store, "b", Opened{Owner: "b"}))
		})),
		Entry("SaveTx", call(func(ctx context.Context, store *mire.Store) error {
			tx, err := store.Pool().Begin(ctx)
			Expect(err).NotTo(HaveOccurred())
			defer func() { _ = tx.Rollback(ctx) }()
			return store.SaveTx(ctx, tx, recorded[Account](store, "a", Opened{Owner: "a"}), recorded[Account](store, "b", Opened{Owner: "b"}))
		})),
		Entry("Append", call(func(ctx context.Context, store *mire.Store) error {
			_, err := store.Append(ctx, "account-a", mire.Any, Opened{Owner: "a"})
			return err
		})),
		Entry("AppendTx", call(func(ctx context.Context, store *mire.Store) error {
			tx, err := store.Pool().Begin(ctx)
			Expect(err).NotTo(HaveOccurred())
			defer func() { _ = tx.Rollback(ctx) }()
			_, err = store.AppendTx(ctx, tx, "account-a", mire.NoStream, Opened{Owner: "a"})
			return err
		})),
		Entry("ReadStream", call(func(ctx context.Context, store *mire.Store) error {
			return onlyError(store.ReadStream(ctx, "account-a", nil))
		})),
		Entry("ReadCategory", call(func(ctx context.Context, store *mire.Store) error {
			return onlyError(store.ReadCategory(ctx, "account", nil))
		})),
		Entry("ReadAll", call(func(ctx context.Context, store *mire.Store) error {
			return onlyError(store.ReadAll(ctx, nil))
		})),
		Entry("Load in a TxScope", call(func(ctx context.Context, store *mire.Store) error {
			return inScope(ctx, store, func(scope *mire.TxScope) error {
				_, err := mire.Load[Account](ctx, scope, "a")
				return err
			})
		})),
		Entry("LoadForUpdate", call(func(ctx context.Context, store *mire.Store) error {
			return inScope(ctx, store, func(scope *mire.TxScope) error {
				_, err := mire.LoadForUpdate[Account](ctx, scope, "a")
				return err
			})
		})),
		Entry("LoadManyForUpdate", call(func(ctx context.Context, store *mire.Store) error {
			return inScope(ctx, store, func(scope *mire.TxScope) error {
				_, err := mire.LoadManyForUpdate[Account](ctx, scope, "a", "b")
				return err
			})
		})),
		Entry("TxScope.Save", call(func(ctx context.Context, store *mire.Store) error {
			return inScope(ctx, store, func(scope *mire.TxScope) error {
				return scope.Save(ctx, recorded[Account](store, "a", Opened{Owner: "a"}), recorded[Account](store, "b", Opened{Owner: "b"}))
			})
		})),
		Entry("TxScope.Commit after a failed call", call(func(ctx context.Context, store *mire.Store) error {
			scope, err := store.Begin(ctx, nil)
			Expect(err).NotTo(HaveOccurred())
			defer func() { _ = scope.Rollback(ctx) }()
			Expect(scope.Save(ctx, recorded[Account](store, "a", Opened{Owner: "a"}))).NotTo(Succeed())
			return scope.Commit(ctx)
		})),
		Entry("InTx", call(func(ctx context.Context, store *mire.Store) error {
			return store.InTx(ctx, nil, func(scope *mire.TxScope) error {
				acc, err := mire.LoadOrNew[Account](ctx, scope, "a")
				if err != nil {
					return err
				}
				Expect(acc.Record(Opened{Owner: "a"})).To(Succeed())
				return scope.Save(ctx, acc)
			})
		})),
		Entry("InTxOpts with retries", call(func(ctx context.Context, store *mire.Store) error {
			return store.InTx(ctx, &mire.InTxOpts{Retries: 3}, func(scope *mire.TxScope) error {
				return scope.Save(ctx, recorded[Account](store, "a", Opened{Owner: "a"}))
			})
		})),
	}

	// fails asserts that run, on store, returns ErrNotMigrated and nothing
	// else of mire's.
	fails := func(ctx context.Context, store *mire.Store, run call) {
		err := run(ctx, store)
		Expect(err).To(MatchError(mire.ErrNotMigrated), "%v", err)
		Expect(err.Error()).To(HavePrefix("mire: "))
		for _, other := range []error{mire.ErrNotFound, mire.ErrConcurrency, mire.ErrCorruptStream, mire.ErrTxDone} {
			Expect(err).NotTo(MatchError(other))
		}
	}

	var pool *pgxpool.Pool
	BeforeEach(func(ctx SpecContext) { _, pool = db.Empty(ctx) })

	DescribeTable("returns ErrNotMigrated when the schema does not exist",
		func(ctx SpecContext, run call) {
			fails(ctx, newStore(pool), run)
		}, calls)

	DescribeTable("returns ErrNotMigrated when the schema exists without mire's tables",
		func(ctx SpecContext, run call) {
			_, err := pool.Exec(ctx, "CREATE SCHEMA bare") // a database of the spec's own
			Expect(err).NotTo(HaveOccurred())
			store, err := mire.New(pool, &mire.Config{Schema: "bare"})
			Expect(err).NotTo(HaveOccurred())
			fails(ctx, store, run)
		}, calls)
})
