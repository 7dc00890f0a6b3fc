package mire_test

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/google/uuid"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/mire-go/mire"
	"github.com/mire-go/mire/internal/mtest"
)

var _ = Describe("Append", func() {
	var (
		store  *mire.Store
		stream string // a stream at version 2
		fresh  string // a stream that does not exist
	)
	BeforeEach(func(ctx SpecContext) {
		store = newStore(db.Pool)
		stream = "account-" + mtest.Unique("app")
		fresh = "account-" + mtest.Unique("new")
		version, err := store.Append(ctx, stream, mire.NoStream, Opened{Owner: "o"}, Deposited{Amount: 1})
		Expect(err).NotTo(HaveOccurred())
		Expect(version).To(BeEquivalentTo(2))
	})

	// Each expectation runs with one event and with two, with the ids mire
	// makes and with given ones (WithID): an append of one event is a
	// statement of its own form (scalars, not arrays) for every
	// expectation, and given ids have statements of their own too.
	type appendShape struct {
		events int
		given  bool
	}
	shapes := []appendShape{{1, false}, {2, false}, {1, true}, {2, true}}
	expectation := func(ctx SpecContext, onExisting bool, expected mire.ExpectedVersion, wantVersion int64, wantActual int64) {
		for _, shape := range shapes {
			By(fmt.Sprintf("%d events, given ids %v", shape.events, shape.given))
			// Fresh streams for each shape: one at version 2 and one that
			// does not exist.
			existing := "account-" + mtest.Unique("app")
			_, err := store.Append(ctx, existing, mire.NoStream, Opened{Owner: "o"}, Deposited{Amount: 1})
			Expect(err).NotTo(HaveOccurred())
			target := "account-" + mtest.Unique("new")
			if onExisting {
				target = existing
			}
			events := make([]any, shape.events)
			for i := range events {
				events[i] = Deposited{Amount: 5 + int64(i)}
				if shape.given {
					events[i] = mire.WithID(uuid.New(), events[i])
				}
			}
			before := mtest.Count(ctx, db.Pool, "events", "stream_id = $1", target)
			version, err := store.Append(ctx, target, expected, events...)
			if wantVersion > 0 {
				Expect(err).NotTo(HaveOccurred())
				want := wantVersion + int64(shape.events-1)
				Expect(version).To(Equal(want))
				Expect(mtest.Count(ctx, db.Pool, "events", "stream_id = $1", target)).To(Equal(before + shape.events))
				var versions []int64
				var sizes []int32
				Expect(db.Pool.QueryRow(ctx, `SELECT array_agg(version ORDER BY version), array_agg(append_size ORDER BY version)
FROM `+store.Schema()+`.events WHERE stream_id = $1 AND version > $2`, target, want-int64(shape.events)).Scan(&versions, &sizes)).To(Succeed())
				wantSizes := make([]int32, shape.events) // the first row of an append carries its size
				wantSizes[0] = int32(shape.events)
				Expect(sizes).To(Equal(wantSizes))
				Expect(versions[len(versions)-1]).To(Equal(want))
				continue
			}
			var conflict *mire.ConcurrencyError
			Expect(errors.As(err, &conflict)).To(BeTrue(), "%v", err)
			Expect(*conflict).To(Equal(mire.ConcurrencyError{StreamID: target, Expected: expected, Actual: wantActual}))
			Expect(mtest.Count(ctx, db.Pool, "events", "stream_id = $1", target)).To(Equal(before))
		}
	}
	DescribeTable("checks the expectation on the stream", expectation,
		Entry("Any on an existing stream", true, mire.Any, int64(3), int64(0)),
		Entry("Any on a new stream", false, mire.Any, int64(1), int64(0)),
		Entry("NoStream on a new stream", false, mire.NoStream, int64(1), int64(0)),
		Entry("NoStream on an existing stream", true, mire.NoStream, int64(0), int64(2)),
		Entry("StreamExists on an existing stream", true, mire.StreamExists, int64(3), int64(0)),
		Entry("StreamExists on a new stream", false, mire.StreamExists, int64(0), int64(0)),
		Entry("the exact version", true, mire.Exactly(2), int64(3), int64(0)),
		Entry("a stale version", true, mire.Exactly(1), int64(0), int64(2)),
		Entry("a version ahead", true, mire.Exactly(5), int64(0), int64(2)),
		Entry("an exact version on a new stream", false, mire.Exactly(1), int64(0), int64(0)),
	)

	DescribeTable("refuses bad input and writes nothing",
		func(ctx SpecContext, streamID string, expected mire.ExpectedVersion, events []any, message string) {
			before := rowCounts(ctx, db.Pool)
			_, err := store.Append(ctx, streamID, expected, events...)
			Expect(err).To(MatchError(ContainSubstring(message)))
			Expect(rowCounts(ctx, db.Pool)).To(Equal(before))
		},
		Entry("no events", "account-x", mire.Any, nil, `no events`),
		Entry("an empty stream id", "", mire.Any, []any{Deposited{Amount: 1}}, "stream id is empty"),
		Entry("a stream id with a bad category", "Account-x", mire.Any, []any{Deposited{Amount: 1}}, `category "Account" must match`),
		Entry("an event of another entity", "customer-x", mire.Any, []any{Deposited{Amount: 1}}, `belongs to entity "account", not "customer"`),
		Entry("one invalid event among valid ones", "account-x", mire.Any, []any{Deposited{Amount: 1}, Deposited{Amount: 0}}, `event 1: invalid mire_test.Deposited event`),
		Entry("an unknown expectation", "account-x", mire.ExpectedVersion(-7), []any{Deposited{Amount: 1}}, "invalid expected version -7"),
	)

	It("writes inside the caller's transaction: events commit and roll back with the caller's rows", func(ctx SpecContext) {
		_, err := db.Pool.Exec(ctx, `CREATE TABLE IF NOT EXISTS public.audit (note text)`)
		Expect(err).NotTo(HaveOccurred())
		note := mtest.Unique("note")

		tx, err := db.Pool.Begin(ctx)
		Expect(err).NotTo(HaveOccurred())
		_, err = tx.Exec(ctx, `INSERT INTO public.audit VALUES ($1)`, note)
		Expect(err).NotTo(HaveOccurred())
		_, err = store.AppendTx(ctx, tx, fresh, mire.NoStream, Opened{Owner: "tx"})
		Expect(err).NotTo(HaveOccurred())
		Expect(tx.Rollback(ctx)).To(Succeed())
		Expect(mtest.Count(ctx, db.Pool, "events", "stream_id = $1", fresh)).To(BeZero())
		Expect(mtest.Count(ctx, db.Pool, "streams", "stream_id = $1", fresh)).To(BeZero())

		tx, err = db.Pool.Begin(ctx)
		Expect(err).NotTo(HaveOccurred())
		_, err = tx.Exec(ctx, `INSERT INTO public.audit VALUES ($1)`, note)
		Expect(err).NotTo(HaveOccurred())
		acc, err := mire.LoadOrNew[Account](ctx, store, fresh[len("account-"):])
		Expect(err).NotTo(HaveOccurred())
		Expect(acc.Record(Opened{Owner: "tx"})).To(Succeed())
		Expect(store.SaveTx(ctx, tx, acc)).To(Succeed())
		Expect(tx.Commit(ctx)).To(Succeed())
		Expect(mtest.Count(ctx, db.Pool, "events", "stream_id = $1", fresh)).To(Equal(1))
		var notes int
		Expect(db.Pool.QueryRow(ctx, `SELECT count(*) FROM public.audit WHERE note = $1`, note).Scan(&notes)).To(Succeed())
		Expect(notes).To(Equal(1))
	})

	It("saves several roots in one transaction: all or none", func(ctx SpecContext) {
		a, b := openAccount(ctx, store, 10), openAccount(ctx, store, 10)
		rootA, rootB := transferRoots(ctx, store, a, b, 3)
		_, err := store.Append(ctx, "account-"+b, mire.Any, Deposited{Amount: 1}) // b moves on
		Expect(err).NotTo(HaveOccurred())

		Expect(store.Save(ctx, rootA, rootB)).To(MatchError(mire.ErrConcurrency))
		Expect(mtest.Count(ctx, db.Pool, "events", "stream_id = $1", "account-"+a)).To(Equal(1), "a's event rolled back")
		Expect(rootA.Version).To(BeEquivalentTo(1))
		Expect(rootA.Pending()).To(HaveLen(1))

		rootB, err = mire.Load[Account](ctx, store, b)
		Expect(err).NotTo(HaveOccurred())
		Expect(rootB.Record(Deposited{Amount: 3})).To(Succeed())
		Expect(store.Save(ctx, rootA, rootB)).To(Succeed())
		Expect([]int64{rootA.Version, rootB.Version}).To(Equal([]int64{2, 3}))
	})

	It("does not duplicate the events of a multi-root save retried after a lost acknowledgement", func(ctx SpecContext) {
		a, b := openAccount(ctx, store, 10), openAccount(ctx, store, 10)
		rootA, rootB := transferRoots(ctx, store, a, b, 3)
		Expect(rootB.Record(Deposited{Amount: 4})).To(Succeed())
		unackedA, unackedB := *rootA, *rootB // the Roots as the caller holds them when the ack is lost

		Expect(store.Save(ctx, rootA, rootB)).To(Succeed())
		Expect(store.Save(ctx, &unackedA, &unackedB)).To(Succeed(), "the retry is recognised, root by root")
		Expect([]int64{unackedA.Version, unackedB.Version}).To(Equal([]int64{2, 3}))
		Expect(mtest.Count(ctx, db.Pool, "events", "stream_id = $1", "account-"+a)).To(Equal(2))
		Expect(mtest.Count(ctx, db.Pool, "events", "stream_id = $1", "account-"+b)).To(Equal(3))

		// New events on both, and b moved on meanwhile: a conflict, and a writes nothing.
		Expect(rootA.Record(Withdrawn{Amount: 1})).To(Succeed())
		Expect(rootB.Record(Deposited{Amount: 1})).To(Succeed())
		_, err := store.Append(ctx, "account-"+b, mire.Any, Deposited{Amount: 9})
		Expect(err).NotTo(HaveOccurred())
		err = store.Save(ctx, rootA, rootB)
		var conflict *mire.ConcurrencyError
		Expect(errors.As(err, &conflict)).To(BeTrue(), "got %v", err)
		Expect(conflict.StreamID).To(Equal("account-" + b))
		Expect(mtest.Count(ctx, db.Pool, "events", "stream_id = $1", "account-"+a)).To(Equal(2), "a's event rolled back")
	})

	It("saves the same streams from many goroutines in opposite orders without deadlock", func(ctx SpecContext) {
		a, b := openAccount(ctx, store, 0), openAccount(ctx, store, 0)
		var wg sync.WaitGroup
		for w := range 8 {
			wg.Go(func() {
				defer GinkgoRecover()
				for range 25 {
					for {
						rootA, err := mire.Load[Account](ctx, store, a)
						Expect(err).NotTo(HaveOccurred())
						rootB, err := mire.Load[Account](ctx, store, b)
						Expect(err).NotTo(HaveOccurred())
						Expect(rootA.Record(Deposited{Amount: 1})).To(Succeed())
						Expect(rootB.Record(Deposited{Amount: 1})).To(Succeed())
						roots := []mire.Saveable{rootA, rootB}
						if w%2 == 1 {
							roots = []mire.Saveable{rootB, rootA}
						}
						err = store.Save(ctx, roots...)
						if errors.Is(err, mire.ErrConcurrency) {
							continue
						}
						Expect(err).NotTo(HaveOccurred(), "no deadlock, no other error")
						break
					}
				}
			})
		}
		wg.Wait()
		for _, id := range []string{a, b} {
			acc, err := mire.Load[Account](ctx, store, id)
			Expect(err).NotTo(HaveOccurred())
			Expect(acc.State.Balance).To(BeEquivalentTo(200))
		}
	})

	It("refuses a stream given twice in one save", func(ctx SpecContext) {
		id := openAccount(ctx, store, 0)
		acc, err := mire.Load[Account](ctx, store, id)
		Expect(err).NotTo(HaveOccurred())
		Expect(acc.Record(Deposited{Amount: 1})).To(Succeed())
		Expect(store.Save(ctx, acc, acc)).To(MatchError(ContainSubstring("given twice")))
		Expect(store.Save(ctx, nil)).To(MatchError(ContainSubstring("root 0 is nil")))
	})
})

// transferRoots loads accounts a and b and records a transfer of amount
// from a to b, unsaved.
func transferRoots(ctx context.Context, store *mire.Store, a, b string, amount int64) (*mire.Root[Account], *mire.Root[Account]) {
	rootA, err := mire.Load[Account](ctx, store, a)
	Expect(err).NotTo(HaveOccurred())
	rootB, err := mire.Load[Account](ctx, store, b)
	Expect(err).NotTo(HaveOccurred())
	Expect(rootA.Record(Withdrawn{Amount: amount})).To(Succeed())
	Expect(rootB.Record(Deposited{Amount: amount})).To(Succeed())
	return rootA, rootB
}
