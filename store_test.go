package mire_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/mire-go/mire"
	"github.com/mire-go/mire/internal/mtest"
	"github.com/mire-go/mire/pgschema"
)

var _ = Describe("Store", func() {
	var store *mire.Store
	BeforeEach(func() { store = newStore(db.Pool) })

	It("saves recorded events and loads the aggregate back", func(ctx SpecContext) {
		id := openAccount(ctx, store, 10)
		acc, err := mire.Load[Account](ctx, store, id)
		Expect(err).NotTo(HaveOccurred())
		Expect(acc.Record(Deposited{Amount: 5})).To(Succeed())
		Expect(acc.State.Balance).To(BeEquivalentTo(15), "Record applies at once")
		Expect(store.Save(ctx, acc)).To(Succeed())
		Expect(acc.Version).To(BeEquivalentTo(2))
		Expect(acc.Pending()).To(BeEmpty())

		loaded, err := mire.Load[Account](ctx, store, id)
		Expect(err).NotTo(HaveOccurred())
		Expect(loaded.State).To(Equal(Account{Owner: id, Balance: 15, Applied: 2}))
		Expect(loaded.Version).To(BeEquivalentTo(2))
		Expect(loaded.StreamID()).To(Equal("account-" + id))
	})

	It("returns ErrNotFound from Load and version 0 from LoadOrNew for a missing stream", func(ctx SpecContext) {
		_, err := mire.Load[Account](ctx, store, "nobody")
		Expect(err).To(MatchError(mire.ErrNotFound))
		Expect(err.Error()).To(ContainSubstring(`"account-nobody"`))
		acc, err := mire.LoadOrNew[Account](ctx, store, "nobody")
		Expect(err).NotTo(HaveOccurred())
		Expect(acc.Version).To(BeZero())
	})

	It("treats a save with nothing recorded as a no-op", func(ctx SpecContext) {
		acc, err := mire.LoadOrNew[Account](ctx, store, mtest.Unique("idle"))
		Expect(err).NotTo(HaveOccurred())
		before := rowCounts(ctx, db.Pool)
		Expect(store.Save(ctx, acc)).To(Succeed())
		Expect(rowCounts(ctx, db.Pool)).To(Equal(before))
	})

	It("stores the discriminator from the tag, so renaming the Go type keeps history loadable", func(ctx SpecContext) {
		id := openAccount(ctx, store, 42)
		var typ string
		Expect(db.Pool.QueryRow(ctx, `SELECT type FROM mire.events WHERE stream_id = $1`, "account-"+id).Scan(&typ)).To(Succeed())
		Expect(typ).To(Equal("Opened"))

		// A second program, where the Go type is now called AccountOpened.
		type AccountOpened struct {
			mire.Event `mire:"entity=account,type=Opened"`
			Owner      string `json:"owner"`
			Initial    int64  `json:"initial"`
		}
		reg := mire.NewRegistry()
		Expect(reg.Register(AccountOpened{})).To(Succeed())
		renamed, err := mire.New(db.Pool, &mire.Config{Registry: reg})
		Expect(err).NotTo(HaveOccurred())
		var seen []any
		for env, err := range renamed.ReadStream(ctx, "account-"+id, nil) {
			Expect(err).NotTo(HaveOccurred())
			seen = append(seen, env.Data)
		}
		Expect(seen).To(Equal([]any{AccountOpened{Owner: id, Initial: 42}}))
	})

	Describe("optimistic concurrency", func() {
		It("lets exactly one of two writers at the same version win; the loser's Root is unchanged", func(ctx SpecContext) {
			id := openAccount(ctx, store, 0)
			first, err := mire.Load[Account](ctx, store, id)
			Expect(err).NotTo(HaveOccurred())
			second, err := mire.Load[Account](ctx, store, id)
			Expect(err).NotTo(HaveOccurred())
			Expect(first.Record(Deposited{Amount: 1})).To(Succeed())
			Expect(second.Record(Deposited{Amount: 2})).To(Succeed())
			Expect(second.Record(Deposited{Amount: 3})).To(Succeed())

			Expect(store.Save(ctx, first)).To(Succeed())
			err = store.Save(ctx, second)

			Expect(err).To(MatchError(mire.ErrConcurrency))
			var conflict *mire.ConcurrencyError
			Expect(errors.As(err, &conflict)).To(BeTrue())
			Expect(*conflict).To(Equal(mire.ConcurrencyError{StreamID: "account-" + id, Expected: 1, Actual: 2}))
			Expect(second.Version).To(BeEquivalentTo(1))
			Expect(second.Pending()).To(Equal([]any{Deposited{Amount: 2}, Deposited{Amount: 3}}))
			Expect(mtest.Count(ctx, db.Pool, "events", "stream_id = $1", "account-"+id)).To(Equal(2))
		})

		It("keeps 16 goroutines x 100 deposits with reload-and-retry exact, versions 1..1601 without gap", Label("slow"), func(ctx SpecContext) {
			id := openAccount(ctx, store, 0)
			const workers, deposits = 16, 100
			var wg sync.WaitGroup
			var conflicts sync.Map
			for w := range workers {
				wg.Go(func() {
					defer GinkgoRecover()
					for range deposits {
						for attempt := 0; ; attempt++ {
							acc, err := mire.Load[Account](ctx, store, id)
							Expect(err).NotTo(HaveOccurred())
							Expect(acc.Record(Deposited{Amount: 1})).To(Succeed())
							err = store.Save(ctx, acc)
							if errors.Is(err, mire.ErrConcurrency) {
								conflicts.Store(w, attempt+1)
								continue
							}
							Expect(err).NotTo(HaveOccurred())
							break
						}
					}
				})
			}
			wg.Wait()

			acc, err := mire.Load[Account](ctx, store, id)
			Expect(err).NotTo(HaveOccurred())
			Expect(acc.State.Balance).To(BeEquivalentTo(workers * deposits))
			Expect(acc.Version).To(BeEquivalentTo(workers*deposits + 1))
			var count, minV, maxV, distinct int64
			Expect(db.Pool.QueryRow(ctx, `SELECT count(*), min(version), max(version), count(DISTINCT version)
				FROM mire.events WHERE stream_id = $1`, "account-"+id).Scan(&count, &minV, &maxV, &distinct)).To(Succeed())
			Expect([]int64{count, minV, maxV, distinct}).To(Equal([]int64{1601, 1, 1601, 1601}))
			var streamVersion int64
			Expect(db.Pool.QueryRow(ctx, `SELECT version FROM mire.streams WHERE stream_id = $1`, "account-"+id).Scan(&streamVersion)).To(Succeed())
			Expect(streamVersion).To(BeEquivalentTo(1601))
		})
	})

	It("does not duplicate events when a save is retried after a lost acknowledgement", func(ctx SpecContext) {
		id := openAccount(ctx, store, 0)
		acc, err := mire.Load[Account](ctx, store, id)
		Expect(err).NotTo(HaveOccurred())
		Expect(acc.Record(Deposited{Amount: 7})).To(Succeed())
		Expect(acc.Record(Deposited{Amount: 8})).To(Succeed())
		unacknowledged := *acc // the Root as the caller still holds it when the ack is lost

		Expect(store.Save(ctx, acc)).To(Succeed()) // committed; pretend the answer never arrived
		Expect(store.Save(ctx, &unacknowledged)).To(Succeed(), "the retry is recognised")

		Expect(unacknowledged.Version).To(BeEquivalentTo(3))
		Expect(unacknowledged.Pending()).To(BeEmpty())
		Expect(mtest.Count(ctx, db.Pool, "events", "stream_id = $1", "account-"+id)).To(Equal(3))
		loaded, err := mire.Load[Account](ctx, store, id)
		Expect(err).NotTo(HaveOccurred())
		Expect(loaded.State.Balance).To(BeEquivalentTo(15))
	})

	Describe("bad input", func() {
		DescribeTable("is refused with a clear error and writes nothing",
			func(ctx SpecContext, id string, event any, sentinel error, message string) {
				before := rowCounts(ctx, db.Pool)
				err := func() error {
					acc, err := mire.LoadOrNew[Account](ctx, store, id)
					if err != nil {
						return err
					}
					if err := acc.Record(event); err != nil {
						return err
					}
					return store.Save(ctx, acc)
				}()
				Expect(err).To(HaveOccurred())
				if sentinel != nil {
					Expect(err).To(MatchError(sentinel))
				}
				Expect(err.Error()).To(ContainSubstring(message))
				Expect(rowCounts(ctx, db.Pool)).To(Equal(before))
			},
			Entry("an invalid payload", "bad1", Deposited{Amount: -5}, nil, `field Deposited.Amount = -5 fails "gt=0"`),
			Entry("a missing required field", "bad2", Opened{}, nil, `field Opened.Owner =  fails "required"`),
			Entry("an unregistered type", "bad3", struct{ mire.Event }{}, mire.ErrUnregistered, "struct { mire.Event }"),
			Entry("a nil event", "bad4", nil, mire.ErrInvalidEvent, "nil event"),
			Entry("a nil pointer event", "bad5", (*Deposited)(nil), mire.ErrInvalidEvent, "nil *mire_test.Deposited"),
			Entry("a pointer event", "bad6", &Deposited{Amount: 1}, mire.ErrInvalidEvent, "as a value, not a pointer"),
			Entry("another entity's event", "bad7", Renamed{Name: "x"}, mire.ErrInvalidEvent, `belongs to entity "customer", not "account"`),
			Entry("an empty id", "", Deposited{Amount: 1}, mire.ErrInvalidID, "aggregate id is empty"),
			Entry("an over-long id", strings.Repeat("x", mire.MaxIDLength+1), Deposited{Amount: 1}, mire.ErrInvalidID, "257 bytes, longer than 256"),
			Entry("an id with a control character", "bob\x00", Deposited{Amount: 1}, mire.ErrInvalidID, `contains control character U+0000`),
			Entry("an id with a newline", "bob\nalice", Deposited{Amount: 1}, mire.ErrInvalidID, `contains control character U+000A`),
			Entry("an id that is not UTF-8", "bob\xff", Deposited{Amount: 1}, mire.ErrInvalidID, "not valid UTF-8"),
		)

		It("reports the validation failure as a *ValidationError with the field", func(ctx SpecContext) {
			acc, err := mire.LoadOrNew[Account](ctx, store, mtest.Unique("v"))
			Expect(err).NotTo(HaveOccurred())
			err = acc.Record(Withdrawn{Amount: 0})
			var invalid *mire.ValidationError
			Expect(errors.As(err, &invalid)).To(BeTrue())
			Expect(invalid.Fields).To(ConsistOf(mire.FieldError{Path: "Withdrawn.Amount", Tag: "gt", Param: "0", Value: int64(0)}))
			Expect(acc.Pending()).To(BeEmpty())
			Expect(acc.State.Applied).To(BeZero(), "a refused event is not applied")
		})

		DescribeTable("refuses, at New, a schema name that Migrate or NOTIFY could not use, naming it",
			func(name, message string) {
				store, err := mire.New(db.Pool, &mire.Config{Schema: name})
				Expect(err).To(MatchError(SatisfyAll(HavePrefix("mire: "), ContainSubstring(fmt.Sprintf("%q", name)), ContainSubstring(message))))
				Expect(store).To(BeNil())
			},
			Entry("not UTF-8", "mire\xfe", "not valid UTF-8"),
			Entry("too long for its NOTIFY channel", strings.Repeat("m", 64-len(pgschema.NotifyChannel(""))), "bytes"),
			Entry("reserved by Postgres", "pg_events", `"pg_"`),
		)

		It("refuses every call on a closed store", func(ctx SpecContext) {
			closed := newStore(db.Pool)
			closed.Close()
			_, err := mire.LoadOrNew[Account](ctx, closed, "x")
			Expect(err).To(MatchError(mire.ErrClosed))
			_, err = closed.Append(ctx, "account-x", mire.Any, Deposited{Amount: 1})
			Expect(err).To(MatchError(mire.ErrClosed))
			Expect(onlyError(closed.ReadAll(ctx, nil))).To(MatchError(mire.ErrClosed))
		})
	})

	Describe("a cancelled context", func() {
		It("fails before touching the database", func(ctx SpecContext) {
			id := openAccount(ctx, store, 0)
			acc, err := mire.Load[Account](ctx, store, id)
			Expect(err).NotTo(HaveOccurred())
			Expect(acc.Record(Deposited{Amount: 1})).To(Succeed())
			cancelled, cancel := context.WithCancel(ctx)
			cancel()
			Expect(store.Save(cancelled, acc)).To(MatchError(context.Canceled))
			Expect(acc.Version).To(BeEquivalentTo(1))
			Expect(mtest.Count(ctx, db.Pool, "events", "stream_id = $1", "account-"+id)).To(Equal(1))
		})

		// blockedSave starts saving two deposits to a stream whose row another
		// transaction holds, cancels the save while it waits on the lock,
		// then releases the lock. It returns the Root and the save's error.
		blockedSave := func(ctx SpecContext, store *mire.Store, id string) (*mire.Root[Account], error) {
			acc, err := mire.Load[Account](ctx, store, id)
			Expect(err).NotTo(HaveOccurred())
			Expect(acc.Record(Deposited{Amount: 1})).To(Succeed())
			Expect(acc.Record(Deposited{Amount: 2})).To(Succeed())
			blocker, err := db.Pool.Begin(ctx)
			Expect(err).NotTo(HaveOccurred())
			defer blocker.Rollback(ctx)
			_, err = blocker.Exec(ctx, `SELECT 1 FROM mire.streams WHERE stream_id = $1 FOR UPDATE`, "account-"+id)
			Expect(err).NotTo(HaveOccurred())

			saveCtx, cancel := context.WithCancel(ctx)
			done := make(chan error, 1)
			go func() { done <- store.Save(saveCtx, acc) }()
			Eventually(waitingOnLocks).WithContext(ctx).Should(Equal(1), "the save is waiting on the row lock")
			cancel()
			var saveErr error
			Eventually(done).WithContext(ctx).Should(Receive(&saveErr))
			Expect(blocker.Rollback(ctx)).To(Succeed())
			Eventually(waitingOnLocks).WithContext(ctx).Should(BeZero())
			return acc, saveErr
		}

		It("aborts a save blocked mid-flight on the server, with ConfigurePool: nothing written", func(ctx SpecContext) {
			id := openAccount(ctx, store, 0) // db.Pool is configured with mire.ConfigurePool
			acc, err := blockedSave(ctx, store, id)
			Expect(err).To(MatchError(context.Canceled))
			Eventually(func() int { return mtest.Count(ctx, db.Pool, "events", "stream_id = $1", "account-"+id) }).
				WithContext(ctx).Should(Equal(1))
			Consistently(func() int { return mtest.Count(ctx, db.Pool, "events", "stream_id = $1", "account-"+id) }).
				WithContext(ctx).Should(Equal(1), "the statement was cancelled, not left to commit later")
			Expect(acc.Version).To(BeEquivalentTo(1))
			Expect(acc.Pending()).To(HaveLen(2))
			Expect(store.Save(ctx, acc)).To(Succeed(), "the same Root saves once the way is clear")
			Expect(mtest.Count(ctx, db.Pool, "events", "stream_id = $1", "account-"+id)).To(Equal(3))
		})

		It("never leaves half a save with pgx's default cancellation, and a retry completes it once", func(ctx SpecContext) {
			plain, err := pgxpool.New(ctx, db.URL) // pgx default: cancel drops the connection
			Expect(err).NotTo(HaveOccurred())
			defer plain.Close()
			plainStore := newStore(plain)
			id := openAccount(ctx, plainStore, 0)
			acc, err := blockedSave(ctx, plainStore, id)
			Expect(err).To(MatchError(context.Canceled))
			Expect(mtest.Count(ctx, db.Pool, "events", "stream_id = $1", "account-"+id)).To(BeElementOf(1, 3),
				"the outcome is unknown to the caller, but all or nothing")
			Expect(plainStore.Save(ctx, acc)).To(Succeed())
			Expect(mtest.Count(ctx, db.Pool, "events", "stream_id = $1", "account-"+id)).To(Equal(3))
			loaded, err := mire.Load[Account](ctx, plainStore, id)
			Expect(err).NotTo(HaveOccurred())
			Expect(loaded.State.Balance).To(BeEquivalentTo(3))
		})
	})

	Describe("stored data it cannot use", func() {
		It("loads a stream with a version gap as ErrCorruptStream", func(ctx SpecContext) {
			id := openAccount(ctx, store, 0)
			_, err := store.Append(ctx, "account-"+id, mire.Exactly(1), Deposited{Amount: 1}, Deposited{Amount: 2})
			Expect(err).NotTo(HaveOccurred())
			_, err = db.Pool.Exec(ctx, `DELETE FROM mire.events WHERE stream_id = $1 AND version = 2`, "account-"+id)
			Expect(err).NotTo(HaveOccurred())

			_, err = mire.Load[Account](ctx, store, id)
			Expect(err).To(MatchError(mire.ErrCorruptStream))
			Expect(err.Error()).To(ContainSubstring("version 3 follows version 1"))
		})

		DescribeTable("loads a stream whose row and events disagree as ErrCorruptStream naming both versions, in and out of a scope",
			func(ctx SpecContext, tamper string, message string) {
				id := openAccount(ctx, store, 0)
				stream := "account-" + id
				_, err := store.Append(ctx, stream, mire.Exactly(1), Deposited{Amount: 1}, Deposited{Amount: 2})
				Expect(err).NotTo(HaveOccurred())
				_, err = db.Pool.Exec(ctx, tamper, stream)
				Expect(err).NotTo(HaveOccurred())
				corrupt := SatisfyAll(MatchError(mire.ErrCorruptStream), MatchError(ContainSubstring(`stream %q`, stream)), MatchError(ContainSubstring(message)))

				_, err = mire.Load[Account](ctx, store, id)
				Expect(err).To(corrupt)
				_, err = mire.LoadOrNew[Account](ctx, store, id)
				Expect(err).To(corrupt, "not a new Root, whose saves would conflict forever")

				other := openAccount(ctx, store, 0)
				scope, err := store.Begin(ctx, nil)
				Expect(err).NotTo(HaveOccurred())
				defer scope.Rollback(ctx)
				_, err = mire.LoadForUpdate[Account](ctx, scope, id)
				Expect(err).To(corrupt)
				_, err = mire.LoadManyForUpdate[Account](ctx, scope, other, id)
				Expect(err).To(corrupt)
			},
			Entry("its last event deleted", `DELETE FROM mire.events WHERE stream_id = $1 AND version = 3`,
				"the stream row is at version 3 but its events end at version 2"),
			Entry("every event deleted", `DELETE FROM mire.events WHERE stream_id = $1`,
				"the stream row is at version 3 but its events end at version 0"),
			Entry("its row behind its events", `UPDATE mire.streams SET version = 2 WHERE stream_id = $1`,
				"the stream row is at version 2 but its events end at version 3"),
			Entry("its row deleted", `DELETE FROM mire.streams WHERE stream_id = $1`,
				"the stream has no row but its events end at version 3"),
		)

		It("reports a row of an unregistered type with stream, position and type", func(ctx SpecContext) {
			id := openAccount(ctx, store, 0)
			var position int64
			Expect(db.Pool.QueryRow(ctx, `INSERT INTO mire.events (stream_id, version, category, event_id, type, data)
				VALUES ($1, 2, 'account', gen_random_uuid(), 'Frozen', '{}') RETURNING position`, "account-"+id).Scan(&position)).To(Succeed())
			_, err := db.Pool.Exec(ctx, `UPDATE mire.streams SET version = 2 WHERE stream_id = $1`, "account-"+id)
			Expect(err).NotTo(HaveOccurred())

			_, err = mire.Load[Account](ctx, store, id)
			var decodeErr *mire.DecodeError
			Expect(errors.As(err, &decodeErr)).To(BeTrue(), "%v", err)
			Expect(decodeErr.StreamID).To(Equal("account-" + id))
			Expect(decodeErr.Position).To(Equal(position))
			Expect(decodeErr.Type).To(Equal("Frozen"))
			Expect(err).To(MatchError(mire.ErrUnregistered))
			Expect(err).To(MatchError(mire.ErrDecode))
		})

		It("reports a payload that does not fit the struct", func(ctx SpecContext) {
			id := openAccount(ctx, store, 0)
			_, err := db.Pool.Exec(ctx, `INSERT INTO mire.events (stream_id, version, category, event_id, type, data)
				VALUES ($1, 2, 'account', gen_random_uuid(), 'Deposited', '{"amount": "lots"}')`, "account-"+id)
			Expect(err).NotTo(HaveOccurred())
			_, err = mire.Load[Account](ctx, store, id)
			Expect(err).To(MatchError(mire.ErrDecode))
			Expect(err.Error()).To(SatisfyAll(ContainSubstring(`"account-`+id+`"`), ContainSubstring(`type "Deposited"`)))
		})
	})
})

// waitingOnLocks counts the backends of this database waiting on a lock.
func waitingOnLocks(ctx context.Context) int {
	var n int
	Expect(db.Pool.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity
		WHERE datname = current_database() AND wait_event_type = 'Lock'`).Scan(&n)).To(Succeed())
	return n
}

var _ = Describe("Create", func() {
	It("gives a new Root without a read, whose save refuses a stream that exists", func(ctx SpecContext) {
		store := newStore(db.Pool)
		id := mtest.Unique("create")
		acc, err := mire.Create[Account](store, id)
		Expect(err).NotTo(HaveOccurred())
		Expect(acc.Version).To(BeZero())
		Expect(acc.Record(Opened{Owner: "c", Initial: 5})).To(Succeed())
		Expect(store.Save(ctx, acc)).To(Succeed())
		Expect(acc.Version).To(BeEquivalentTo(1))

		again, err := mire.Create[Account](store, id)
		Expect(err).NotTo(HaveOccurred())
		Expect(again.Record(Opened{Owner: "d"})).To(Succeed())
		err = store.Save(ctx, again)
		var conflict *mire.ConcurrencyError
		Expect(errors.As(err, &conflict)).To(BeTrue(), "%v", err)
		Expect(*conflict).To(Equal(mire.ConcurrencyError{StreamID: "account-" + id, Expected: 0, Actual: 1}))
		Expect(mtest.Count(ctx, db.Pool, "events", "stream_id = $1", "account-"+id)).To(Equal(1))

		_, err = mire.Create[Account](store, "")
		Expect(err).To(MatchError(mire.ErrInvalidID))
	})
})
