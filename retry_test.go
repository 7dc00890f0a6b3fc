package mire_test

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/mire-go/mire"
	"github.com/mire-go/mire/internal/mtest"
)

// saver is one of the three ways to save Roots, so the retry specs run
// through each.
type saver func(ctx context.Context, store *mire.Store, roots ...mire.Saveable) error

var (
	saveOnPool saver = func(ctx context.Context, store *mire.Store, roots ...mire.Saveable) error {
		return store.Save(ctx, roots...)
	}
	saveInCallersTx saver = func(ctx context.Context, store *mire.Store, roots ...mire.Saveable) error {
		return pgx.BeginFunc(ctx, store.Pool(), func(tx pgx.Tx) error { return store.SaveTx(ctx, tx, roots...) })
	}
	saveInScope saver = func(ctx context.Context, store *mire.Store, roots ...mire.Saveable) error {
		return store.InTx(ctx, nil, func(scope *mire.TxScope) error { return scope.Save(ctx, roots...) })
	}
	saveAndCommitInScope saver = func(ctx context.Context, store *mire.Store, roots ...mire.Saveable) error {
		return store.InTx(ctx, nil, func(scope *mire.TxScope) error { return scope.SaveAndCommit(ctx, roots...) })
	}
)

// streamEventIDs returns the event ids of a stream in version order.
func streamEventIDs(ctx context.Context, streamID string) []uuid.UUID {
	rows, err := db.Pool.Query(ctx, `SELECT event_id FROM mire.events WHERE stream_id = $1 ORDER BY version`, streamID)
	Expect(err).NotTo(HaveOccurred())
	ids, err := pgx.CollectRows(rows, pgx.RowTo[uuid.UUID])
	Expect(err).NotTo(HaveOccurred())
	return ids
}

// lostAck records deposits on a new account, saves a copy of the Root (the
// save commits) and returns the original, left as the caller holds it when
// the acknowledgement is lost.
func lostAck(ctx context.Context, store *mire.Store, amounts ...int64) *mire.Root[Account] {
	r, err := mire.Create[Account](store, mtest.Unique("lost"))
	Expect(err).NotTo(HaveOccurred())
	for _, a := range amounts {
		Expect(r.Record(Deposited{Amount: a})).To(Succeed())
	}
	committed := *r
	Expect(store.Save(ctx, &committed)).To(Succeed())
	return r
}

var _ = Describe("Retrying a save after a lost acknowledgement", func() {
	var store *mire.Store
	BeforeEach(func() { store = newStore(db.Pool) })

	DescribeTable("writes the events recorded after the lost save, once",
		func(ctx SpecContext, save saver) {
			r := lostAck(ctx, store, 1)
			Expect(r.Record(Deposited{Amount: 2})).To(Succeed())
			Expect(save(ctx, store, r)).To(Succeed())

			Expect(r.Version).To(BeEquivalentTo(2))
			Expect(r.Pending()).To(BeEmpty())
			Expect(mtest.Count(ctx, db.Pool, "events", "stream_id = $1", r.StreamID())).To(Equal(2))
			loaded, err := mire.Load[Account](ctx, store, r.ID)
			Expect(err).NotTo(HaveOccurred())
			Expect(loaded.Version).To(BeEquivalentTo(2))
			Expect(loaded.State.Balance).To(BeEquivalentTo(3))

			// The store and the Root agree: the next save is checked against version 2.
			Expect(r.Record(Deposited{Amount: 4})).To(Succeed())
			Expect(save(ctx, store, r)).To(Succeed())
			Expect(r.Version).To(BeEquivalentTo(3))
		},
		Entry("Store.Save", saveOnPool),
		Entry("Store.SaveTx", saveInCallersTx),
		Entry("TxScope.Save", saveInScope),
		Entry("TxScope.SaveAndCommit", saveAndCommitInScope),
	)

	DescribeTable("refuses the extra events when another writer followed the lost save",
		func(ctx SpecContext, save saver) {
			r := lostAck(ctx, store, 1)
			_, err := store.Append(ctx, r.StreamID(), mire.Exactly(1), Withdrawn{Amount: 9})
			Expect(err).NotTo(HaveOccurred())
			Expect(r.Record(Deposited{Amount: 2})).To(Succeed())

			err = save(ctx, store, r)
			var conflict *mire.ConcurrencyError
			Expect(errors.As(err, &conflict)).To(BeTrue(), "%v", err)
			Expect(conflict.StreamID).To(Equal(r.StreamID()))
			Expect(conflict.Actual).To(BeEquivalentTo(2))
			Expect(r.Version).To(BeZero(), "the Root is unchanged")
			Expect(r.Pending()).To(HaveLen(2))
			Expect(mtest.Count(ctx, db.Pool, "events", "stream_id = $1", r.StreamID())).To(Equal(2))
		},
		Entry("Store.Save", saveOnPool),
		Entry("Store.SaveTx", saveInCallersTx),
		Entry("TxScope.Save", saveInScope),
		Entry("TxScope.SaveAndCommit", saveAndCommitInScope),
	)

	DescribeTable("completes a multi-root save whose roots were each saved in part",
		func(ctx SpecContext, save saver) {
			a, b := lostAck(ctx, store, 1), lostAck(ctx, store, 10, 20)
			Expect(a.Record(Deposited{Amount: 2})).To(Succeed())
			Expect(b.Record(Deposited{Amount: 30})).To(Succeed())
			fresh, err := mire.Create[Account](store, mtest.Unique("fresh"))
			Expect(err).NotTo(HaveOccurred())
			Expect(fresh.Record(Deposited{Amount: 5})).To(Succeed())

			Expect(save(ctx, store, a, b, fresh)).To(Succeed())
			Expect([]int64{a.Version, b.Version, fresh.Version}).To(Equal([]int64{2, 3, 1}))
			for _, want := range []struct {
				root    *mire.Root[Account]
				balance int64
			}{{a, 3}, {b, 60}, {fresh, 5}} {
				loaded, err := mire.Load[Account](ctx, store, want.root.ID)
				Expect(err).NotTo(HaveOccurred())
				Expect(loaded.Version).To(Equal(want.root.Version))
				Expect(loaded.State.Balance).To(Equal(want.balance))
			}
		},
		Entry("Store.Save", saveOnPool),
		Entry("Store.SaveTx", saveInCallersTx),
		Entry("TxScope.Save", saveInScope),
		Entry("TxScope.SaveAndCommit", saveAndCommitInScope),
	)

	It("takes the snapshot of the completed save", func(ctx SpecContext) {
		led, err := mire.Create[Ledger](store, mtest.Unique("snapretry"))
		Expect(err).NotTo(HaveOccurred())
		Expect(led.Record(LedgerOpened{Name: led.ID})).To(Succeed())
		for range 98 {
			Expect(led.Record(LedgerPosted{Amount: 1})).To(Succeed())
		}
		committed := *led
		Expect(store.Save(ctx, &committed)).To(Succeed())
		Expect(led.Record(LedgerPosted{Amount: 1})).To(Succeed()) // the 100th event
		Expect(store.Save(ctx, led)).To(Succeed())

		Expect(led.Version).To(BeEquivalentTo(100))
		version, _, n := snapshotRow(ctx, db.Pool, led.StreamID())
		Expect(n).To(Equal(1))
		Expect(version).To(BeEquivalentTo(100))
	})
})

var _ = Describe("Retrying an Append with event ids", func() {
	var (
		store  *mire.Store
		stream string
	)
	BeforeEach(func() {
		store = newStore(db.Pool)
		stream = "account-" + mtest.Unique("idem")
	})

	DescribeTable("recognises a retry after a lost acknowledgement and stores the events once",
		func(ctx SpecContext, expected mire.ExpectedVersion) {
			if expected != mire.NoStream {
				_, err := store.Append(ctx, stream, mire.NoStream, Opened{Owner: "o"})
				Expect(err).NotTo(HaveOccurred())
			}
			ids := []uuid.UUID{uuid.New(), uuid.New()}
			events := []any{mire.WithID(ids[0], Deposited{Amount: 1}), mire.WithID(ids[1], Deposited{Amount: 2})}
			first, err := store.Append(ctx, stream, expected, events...)
			Expect(err).NotTo(HaveOccurred())
			for range 5 {
				again, err := store.Append(ctx, stream, expected, events...)
				Expect(err).NotTo(HaveOccurred())
				Expect(again).To(Equal(first))
			}
			stored := streamEventIDs(ctx, stream)
			Expect(stored[len(stored)-2:]).To(Equal(ids), "the events carry the caller's ids")
			Expect(stored).To(HaveLen(int(first)))
		},
		Entry("Any", mire.Any),
		Entry("NoStream", mire.NoStream),
		Entry("StreamExists", mire.StreamExists),
		Entry("Exactly", mire.Exactly(1)),
	)

	It("recognises the retry inside the caller's transaction", func(ctx SpecContext) {
		id := uuid.New()
		appendTx := func() (int64, error) {
			var v int64
			err := pgx.BeginFunc(ctx, db.Pool, func(tx pgx.Tx) (err error) {
				v, err = store.AppendTx(ctx, tx, stream, mire.NoStream, mire.WithID(id, Deposited{Amount: 1}))
				return err
			})
			return v, err
		}
		Expect(appendTx()).To(BeEquivalentTo(1))
		Expect(appendTx()).To(BeEquivalentTo(1))
		Expect(streamEventIDs(ctx, stream)).To(Equal([]uuid.UUID{id}))
	})

	It("writes the rest of a retry that carries more events, if the stream is still where the stored ones left it", func(ctx SpecContext) {
		a, b := uuid.New(), uuid.New()
		Expect(store.Append(ctx, stream, mire.NoStream, mire.WithID(a, Deposited{Amount: 1}))).To(BeEquivalentTo(1))
		Expect(store.Append(ctx, stream, mire.NoStream, mire.WithID(a, Deposited{Amount: 1}), mire.WithID(b, Deposited{Amount: 2}))).
			To(BeEquivalentTo(2))
		Expect(streamEventIDs(ctx, stream)).To(Equal([]uuid.UUID{a, b}))
	})

	It("is a conflict when another writer followed the stored part of the retry", func(ctx SpecContext) {
		a, b := uuid.New(), uuid.New()
		Expect(store.Append(ctx, stream, mire.NoStream, mire.WithID(a, Deposited{Amount: 1}))).To(BeEquivalentTo(1))
		Expect(store.Append(ctx, stream, mire.Exactly(1), Deposited{Amount: 9})).To(BeEquivalentTo(2))
		_, err := store.Append(ctx, stream, mire.NoStream, mire.WithID(a, Deposited{Amount: 1}), mire.WithID(b, Deposited{Amount: 2}))
		var conflict *mire.ConcurrencyError
		Expect(errors.As(err, &conflict)).To(BeTrue(), "%v", err)
		Expect(conflict.Actual).To(BeEquivalentTo(2))
		Expect(streamEventIDs(ctx, stream)).To(HaveLen(2))
	})

	It("refuses an id already stored in another stream", func(ctx SpecContext) {
		id := uuid.New()
		Expect(store.Append(ctx, stream, mire.Any, mire.WithID(id, Deposited{Amount: 1}))).To(BeEquivalentTo(1))
		_, err := store.Append(ctx, stream+"x", mire.Any, mire.WithID(id, Deposited{Amount: 1}))
		Expect(err).To(MatchError(mire.ErrInvalidEvent))
		Expect(err).To(MatchError(ContainSubstring(id.String())))
	})

	It("records a Root's event under the caller's id, so a command retried from scratch is recognised", func(ctx SpecContext) {
		id, accountID := uuid.New(), mtest.Unique("cmd")
		handle := func() error { // a command handler run twice, as after a crash
			acc, err := mire.LoadOrNew[Account](ctx, store, accountID)
			Expect(err).NotTo(HaveOccurred())
			Expect(acc.Record(mire.WithID(id, Opened{Owner: "o", Initial: 5}))).To(Succeed())
			Expect(acc.State.Balance).To(BeEquivalentTo(5), "Apply sees the event itself")
			Expect(acc.Pending()).To(Equal([]any{Opened{Owner: "o", Initial: 5}}))
			return store.Save(ctx, acc)
		}
		Expect(handle()).To(Succeed())
		err := handle() // LoadOrNew sees version 1 now: a second Opened at version 2 is refused by its id
		Expect(err).To(MatchError(mire.ErrInvalidEvent))
		Expect(streamEventIDs(ctx, "account-"+accountID)).To(Equal([]uuid.UUID{id}))
	})

	DescribeTable("refuses bad ids and writes nothing",
		func(ctx SpecContext, events []any, message string) {
			before := rowCounts(ctx, db.Pool)
			_, err := store.Append(ctx, stream, mire.Any, events...)
			Expect(err).To(MatchError(mire.ErrInvalidEvent))
			Expect(err).To(MatchError(ContainSubstring(message)))
			Expect(rowCounts(ctx, db.Pool)).To(Equal(before))
		},
		Entry("the nil uuid", []any{mire.WithID(uuid.Nil, Deposited{Amount: 1})}, "the event id is the nil uuid"),
		Entry("an id given twice", []any{
			mire.WithID(uuid.MustParse("0193c1c2-0000-7000-8000-000000000001"), Deposited{Amount: 1}),
			mire.WithID(uuid.MustParse("0193c1c2-0000-7000-8000-000000000001"), Deposited{Amount: 2}),
		}, "event 1: event id 0193c1c2-0000-7000-8000-000000000001 is given twice"),
		Entry("a nil event", []any{mire.WithID(uuid.New(), nil)}, "event 0"),
	)
})

var _ = Describe("Save checks the Root it is given", func() {
	var store *mire.Store
	BeforeEach(func() { store = newStore(db.Pool) })

	// A Root copied before its events were ever sent, the copy saved and
	// its acknowledgement lost: the original did not see its events go, so
	// the one-round-trip paths send them in the form that fails when
	// refused, and must then fall back to the path that recognises the
	// retry. (lostAck's Roots saw nothing go either; a Root whose own save
	// failed takes the two-round-trip path at once.)
	DescribeTable("recognises the retry of a Root copied before its events were first sent",
		func(ctx SpecContext, save saver) {
			r, err := mire.Create[Account](store, mtest.Unique("copied"))
			Expect(err).NotTo(HaveOccurred())
			Expect(r.Record(Deposited{Amount: 1})).To(Succeed())
			committed := *r                                      // shares the pending list, as it is now
			Expect(r.Record(Deposited{Amount: 2})).To(Succeed()) // grows it into a list of its own
			Expect(store.Save(ctx, &committed)).To(Succeed())    // the first event commits; r does not know
			other, err := mire.Create[Account](store, mtest.Unique("other"))
			Expect(err).NotTo(HaveOccurred())
			Expect(other.Record(Deposited{Amount: 5})).To(Succeed())

			Expect(save(ctx, store, r, other)).To(Succeed())
			Expect(r.Version).To(BeEquivalentTo(2))
			loaded, err := mire.Load[Account](ctx, store, r.ID)
			Expect(err).NotTo(HaveOccurred())
			Expect(loaded.State.Balance).To(BeEquivalentTo(3), "the first deposit once, the second once")
			Expect(balance(ctx, store, other.ID)).To(BeEquivalentTo(5))
		},
		Entry("Store.Save", saveOnPool),
		Entry("TxScope.SaveAndCommit", saveAndCommitInScope),
	)

	DescribeTable("refuses a Root whose id or version was edited, and writes nothing",
		func(ctx SpecContext, edit func(*mire.Root[Account]), sentinel error, message string) {
			r, err := mire.Create[Account](store, mtest.Unique("edit"))
			Expect(err).NotTo(HaveOccurred())
			Expect(r.Record(Deposited{Amount: 1})).To(Succeed())
			edit(r)
			before := rowCounts(ctx, db.Pool)
			for _, save := range []saver{saveOnPool, saveInCallersTx, saveInScope, saveAndCommitInScope} {
				err := save(ctx, store, r)
				if sentinel != nil {
					Expect(err).To(MatchError(sentinel))
				}
				Expect(err).To(MatchError(ContainSubstring(message)))
			}
			Expect(rowCounts(ctx, db.Pool)).To(Equal(before))
		},
		Entry("a negative version", func(r *mire.Root[Account]) { r.Version = -1 }, nil, "version -1"),
		Entry("an empty id", func(r *mire.Root[Account]) { r.ID = "" }, mire.ErrInvalidID, "aggregate id is empty"),
		Entry("a 10 KB id", func(r *mire.Root[Account]) { r.ID = strings.Repeat("x", 10_000) }, mire.ErrInvalidID, "longer than 256"),
		Entry("an id holding NUL", func(r *mire.Root[Account]) { r.ID = "a\x00b" }, mire.ErrInvalidID, "control character"),
	)
})

var _ = Describe("Stream ids", func() {
	var store *mire.Store
	BeforeEach(func() { store = newStore(db.Pool) })

	It("are one rule: an aggregate id of the longest length saves, appends, reads and loads", func(ctx SpecContext) {
		id := mtest.Unique("long") + strings.Repeat("y", 256)
		id = id[:mire.MaxIDLength]
		r, err := mire.Create[Account](store, id)
		Expect(err).NotTo(HaveOccurred())
		Expect(r.Record(Deposited{Amount: 1})).To(Succeed())
		Expect(store.Save(ctx, r)).To(Succeed())
		Expect(store.Append(ctx, r.StreamID(), mire.Exactly(1), Deposited{Amount: 2})).To(BeEquivalentTo(2))
		n := 0
		for env, err := range store.ReadStream(ctx, r.StreamID(), nil) {
			Expect(err).NotTo(HaveOccurred())
			Expect(env.StreamID).To(Equal(r.StreamID()))
			n++
		}
		Expect(n).To(Equal(2))
		loaded, err := mire.Load[Account](ctx, store, id)
		Expect(err).NotTo(HaveOccurred())
		Expect(loaded.State.Balance).To(BeEquivalentTo(3))
	})

	DescribeTable("that Load could not address are refused everywhere",
		func(ctx SpecContext, streamID, message string) {
			before := rowCounts(ctx, db.Pool)
			_, err := store.Append(ctx, streamID, mire.Any, Deposited{Amount: 1})
			Expect(err).To(MatchError(mire.ErrInvalidID))
			Expect(err).To(MatchError(ContainSubstring(message)))
			Expect(rowCounts(ctx, db.Pool)).To(Equal(before))
			Expect(onlyError(store.ReadStream(ctx, streamID, nil))).To(MatchError(mire.ErrInvalidID))
		},
		Entry("no aggregate id", "account", `stream id "account" has no "-" between category and id`),
		Entry("an empty aggregate id", "account-", `aggregate id is empty`),
		Entry("an aggregate id over the limit", "account-"+strings.Repeat("z", mire.MaxIDLength+1), "longer than 256"),
	)
})

var _ = Describe("Error types", func() {
	var store *mire.Store
	BeforeEach(func() { store = newStore(db.Pool) })

	It("makes a *ValidationError an ErrInvalidEvent", func() {
		r, err := mire.Create[Account](store, mtest.Unique("val"))
		Expect(err).NotTo(HaveOccurred())
		err = r.Record(Deposited{Amount: 0})
		var verr *mire.ValidationError
		Expect(errors.As(err, &verr)).To(BeTrue())
		Expect(err).To(MatchError(mire.ErrInvalidEvent))
	})

	It("reports a clash on (stream, version) as a *ConcurrencyError on the stream", func(ctx SpecContext) {
		stream := "account-" + mtest.Unique("clash")
		Expect(store.Append(ctx, stream, mire.NoStream, Deposited{Amount: 1})).To(BeEquivalentTo(1))
		// A row the stream row does not know of, as a hand-made repair might leave.
		_, err := db.Pool.Exec(ctx, `INSERT INTO mire.events (stream_id, version, category, event_id, type, data)
VALUES ($1, 2, 'account', gen_random_uuid(), 'Deposited', '{"amount":1}')`, stream)
		Expect(err).NotTo(HaveOccurred())
		_, err = store.Append(ctx, stream, mire.Exactly(1), Deposited{Amount: 2})
		var conflict *mire.ConcurrencyError
		Expect(errors.As(err, &conflict)).To(BeTrue(), "%v", err)
		Expect(conflict.StreamID).To(Equal(stream))
	})
})

var _ = Describe("A snapshot Postgres refuses inside a transaction", func() {
	DescribeTable("never costs the save",
		func(ctx SpecContext, save saver, roots int) {
			_, pool := db.Fresh(ctx)
			_, err := pool.Exec(ctx, `
CREATE FUNCTION mire.refuse() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'no snapshots today'; END $$;
CREATE TRIGGER refuse BEFORE INSERT OR UPDATE ON mire.snapshots FOR EACH ROW EXECUTE FUNCTION mire.refuse();`)
			Expect(err).NotTo(HaveOccurred())
			logs := &logRecords{}
			store, err := mire.New(pool, &mire.Config{Logger: slog.New(logs)})
			Expect(err).NotTo(HaveOccurred())

			var ledgers []mire.Saveable
			for i := range roots {
				led, err := mire.Create[Ledger](store, mtest.Unique("refused")+string(rune('a'+i)))
				Expect(err).NotTo(HaveOccurred())
				Expect(led.Record(LedgerOpened{Name: led.ID})).To(Succeed())
				for range 149 {
					Expect(led.Record(LedgerPosted{Amount: 1})).To(Succeed())
				}
				ledgers = append(ledgers, led)
			}
			Expect(save(ctx, store, ledgers...)).To(Succeed())
			Expect(mtest.Count(ctx, pool, "events", "")).To(Equal(150 * roots))
			Expect(mtest.Count(ctx, pool, "snapshots", "")).To(BeZero())
			Expect(logs.all()).To(ContainElement(And(ContainSubstring("snapshot refused"), ContainSubstring("no snapshots today"))))
			for _, led := range ledgers {
				loaded, err := mire.Load[Ledger](ctx, store, led.(*mire.Root[Ledger]).ID)
				Expect(err).NotTo(HaveOccurred())
				Expect(loaded.Version).To(BeEquivalentTo(150))
			}
		},
		Entry("Store.SaveTx, one root", saveInCallersTx, 1),
		Entry("TxScope.Save, one root", saveInScope, 1),
		Entry("Store.Save, three roots", saveOnPool, 3),
		Entry("Store.SaveTx, three roots", saveInCallersTx, 3),
		Entry("TxScope.Save, three roots", saveInScope, 3),
		Entry("TxScope.SaveAndCommit, three roots", saveAndCommitInScope, 3),
	)
})

var _ = Describe("Concurrent retries of the same write", func() {
	const writers, rounds = 8, 10
	var store *mire.Store
	BeforeEach(func() { store = newStore(db.Pool) })

	// retriedCopies returns a Root left as after a lost save, with one more
	// event recorded, and writers copies of it, as concurrent retries hold it.
	retriedCopies := func(ctx context.Context) (*mire.Root[Account], []mire.Root[Account]) {
		r := lostAck(ctx, store, 1)
		Expect(r.Record(Deposited{Amount: 2})).To(Succeed())
		copies := make([]mire.Root[Account], writers)
		for i := range copies {
			copies[i] = *r
		}
		return r, copies
	}

	// race runs write(i) for i in 0..writers-1 in goroutines released at
	// once, and returns their errors.
	race := func(write func(i int) error) []error {
		errs := make([]error, writers)
		var start, done sync.WaitGroup
		start.Add(1)
		for i := range writers {
			done.Go(func() {
				start.Wait()
				errs[i] = write(i)
			})
		}
		start.Done()
		done.Wait()
		return errs
	}

	It("stores the events once when 8 copies of a Root after a lost save are saved at once, and every save succeeds", func(ctx SpecContext) {
		for range rounds {
			r, copies := retriedCopies(ctx)
			for _, err := range race(func(i int) error { return store.Save(ctx, &copies[i]) }) {
				Expect(err).NotTo(HaveOccurred())
			}
			for _, c := range copies {
				Expect(c.Version).To(BeEquivalentTo(2))
			}
			Expect(mtest.Count(ctx, db.Pool, "events", "stream_id = $1", r.StreamID())).To(Equal(2))
		}
	})

	It("stores the events once when 8 Appends with the same ids run at once, and every Append succeeds at the same version", func(ctx SpecContext) {
		for range rounds {
			stream := "account-" + mtest.Unique("race")
			ids := []uuid.UUID{uuid.New(), uuid.New()}
			versions := make([]int64, writers)
			errs := race(func(i int) (err error) {
				versions[i], err = store.Append(ctx, stream, mire.Any, mire.WithID(ids[0], Deposited{Amount: 1}), mire.WithID(ids[1], Deposited{Amount: 2}))
				return err
			})
			for i, err := range errs {
				Expect(err).NotTo(HaveOccurred())
				Expect(versions[i]).To(BeEquivalentTo(2))
			}
			Expect(streamEventIDs(ctx, stream)).To(Equal(ids))
		}
	})

	It("never doubles events saved at once by 8 scopes, and every scope succeeds (InTx retrying a scope that lost the race)", func(ctx SpecContext) {
		for range rounds {
			r, copies := retriedCopies(ctx)
			errs := race(func(i int) error {
				return store.InTx(ctx, &mire.InTxOpts{Retries: 5}, func(scope *mire.TxScope) error {
					return scope.Save(ctx, &copies[i])
				})
			})
			for _, err := range errs {
				Expect(err).NotTo(HaveOccurred())
			}
			Expect(mtest.Count(ctx, db.Pool, "events", "stream_id = $1", r.StreamID())).To(Equal(2))
		}
	})
})
