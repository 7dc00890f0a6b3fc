package projections_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/jackc/pgx/v5"
	"github.com/mire-go/mire"
	"github.com/mire-go/mire/internal/mtest"
	"github.com/mire-go/mire/projections"
)

var _ = Describe("Runner", func() {
	var e env
	BeforeEach(func(ctx SpecContext) { e = freshEnv(ctx) })

	It("keeps a transactional read model equal to the fold of the log", func(ctx SpecContext) {
		a, b := open(ctx, e.store, 10), open(ctx, e.store, 0)
		deposit(ctx, e.store, a, 5)
		deposit(ctx, e.store, b, 7)
		r := newRunner(e.store, "", projections.Projection{Name: "balances", Handler: balanceHandler(), BatchSize: 2})
		Expect(r.CatchUp(ctx)).To(Succeed())
		Expect(balances(ctx, e.pool)).To(Equal(map[string]int64{a: 15, b: 7}))

		deposit(ctx, e.store, a, 1)
		Expect(r.CatchUp(ctx)).To(Succeed())
		Expect(balances(ctx, e.pool)).To(Equal(foldedBalances(ctx, e.pool)))
		st := status(ctx, e.store, "balances")
		Expect(st.Delivered).To(BeEquivalentTo(5))
		Expect(st.Lag).To(BeZero())
		Expect(st.State).To(Equal(projections.Running))
		Expect(st.Owner).To(BeEmpty(), "CatchUp releases the lease")
	})

	It("routes by Go type and skips types without a route", func(ctx SpecContext) {
		a := open(ctx, e.store, 3)
		deposit(ctx, e.store, a, 4)
		var opened []Opened
		var deposits []int64
		r := newRunner(e.store, "", projections.Projection{Name: "typed", Handler: projections.Routes(
			projections.On(func(_ context.Context, tx pgx.Tx, ev Opened, env mire.Envelope) error {
				Expect(tx).NotTo(BeNil())
				Expect(env.StreamID).To(Equal(a))
				opened = append(opened, ev)
				return nil
			}),
			projections.On(func(_ context.Context, _ pgx.Tx, ev Deposited, _ mire.Envelope) error {
				deposits = append(deposits, ev.Amount)
				return nil
			}),
		)})
		_, err := e.store.Append(ctx, "note-x", mire.Any, Noted{Text: "hi"})
		Expect(err).NotTo(HaveOccurred())
		Expect(r.CatchUp(ctx)).To(Succeed())
		Expect(opened).To(Equal([]Opened{{Initial: 3}}))
		Expect(deposits).To(Equal([]int64{4}))
		Expect(status(ctx, e.store, "typed").Delivered).To(BeEquivalentTo(3))
	})

	It("reads only its categories", func(ctx SpecContext) {
		a := open(ctx, e.store, 1)
		_, err := e.store.Append(ctx, "note-1", mire.Any, Noted{Text: "x"})
		Expect(err).NotTo(HaveOccurred())
		var s seen
		r := newRunner(e.store, "", projections.Projection{Name: "notes", Categories: []string{"note"}, Handler: s.recorder("r")})
		Expect(r.CatchUp(ctx)).To(Succeed())
		Expect(s.count()).To(Equal(1))
		Expect(s.events[0].Data).To(Equal(Noted{Text: "x"}))
		Expect(s.streamVersions(a)).To(BeEmpty())
		Expect(status(ctx, e.store, "notes").Lag).To(BeZero())
	})

	It("wakes on a notification without waiting for the poll", func(ctx SpecContext) {
		var s seen
		cfg := quiet()
		cfg.PollInterval = time.Hour // only a notification can wake it in time
		cfg.LeaseTTL = 3 * time.Hour
		r, err := projections.NewRunner(e.store, cfg, projections.Projection{Name: "woken", Handler: s.recorder("r")})
		Expect(err).NotTo(HaveOccurred())
		start(r)
		Eventually(statusFn(e.store, "woken")).WithContext(ctx).Should(HaveField("Owner", r.Owner()))
		// The listener may connect after the lease is taken: write until
		// one notification has been seen, then once more.
		a := open(ctx, e.store, 1)
		Eventually(func(ctx context.Context) int {
			deposit(ctx, e.store, a, 1)
			return s.count()
		}).WithContext(ctx).WithPolling(100 * time.Millisecond).Should(BeNumerically(">", 0))
		n := s.count()
		b := open(ctx, e.store, 1)
		// Far shorter than the poll, however slow the machine.
		Eventually(s.streamVersions).WithArguments(b).WithTimeout(patience(quiet())).Should(Equal([]int64{1}))
		Expect(s.count()).To(BeNumerically(">", n))
	})

	It("resets a projection's checkpoint, and rebuilds its read model with progress", func(ctx SpecContext) {
		a := open(ctx, e.store, 2)
		deposit(ctx, e.store, a, 3)
		p := projections.Projection{Name: "rebuilt", Handler: balanceHandler(), BatchSize: 1,
			Truncate: func(ctx context.Context, tx pgx.Tx) error {
				_, err := tx.Exec(ctx, `DELETE FROM balances`)
				return err
			}}
		r := newRunner(e.store, "", p)
		Expect(r.CatchUp(ctx)).To(Succeed())
		fence := status(ctx, e.store, "rebuilt").Fence

		Expect(projections.ResetCheckpoint(ctx, e.store, "rebuilt")).To(Succeed())
		st := status(ctx, e.store, "rebuilt")
		Expect(st.Position).To(BeZero())
		Expect(st.Lag).To(BeEquivalentTo(2))
		Expect(st.Fence).To(BeNumerically(">", fence))
		Expect(balances(ctx, e.pool)).To(Equal(map[string]int64{a: 5}), "the read model is kept")

		stop := start(r)
		var progress []projections.Status
		Expect(r.Rebuild(ctx, "rebuilt", &projections.RebuildOpts{
			Progress: func(st projections.Status) { progress = append(progress, st) },
		})).To(Succeed())
		Expect(progress).NotTo(BeEmpty())
		Expect(progress[len(progress)-1].Lag).To(BeZero())
		Expect(balances(ctx, e.pool)).To(Equal(map[string]int64{a: 5}))
		stop()
	})

	It("moves a checkpoint to the watermark, skipping what is stored, as after a restore", func(ctx SpecContext) {
		a := open(ctx, e.store, 1)
		var s seen
		r := newRunner(e.store, "", projections.Projection{Name: "restored", Handler: s.recorder("")})
		Expect(r.CatchUp(ctx)).To(Succeed())
		deposit(ctx, e.store, a, 2)
		deposit(ctx, e.store, a, 3)
		Expect(status(ctx, e.store, "restored").Lag).To(BeEquivalentTo(2))

		Expect(projections.MoveToWatermark(ctx, e.store, "restored")).To(Succeed())
		st := status(ctx, e.store, "restored")
		Expect(st.Lag).To(BeZero())
		Expect(st.Floor).To(Equal(positionOf(ctx, e.store, a, 3)))
		deposit(ctx, e.store, a, 4) // v4 follows v3, which is below the floor
		Expect(r.CatchUp(ctx)).To(Succeed())
		Expect(s.streamVersions(a)).To(Equal([]int64{1, 4}))
	})

	It("hands whole batches to a BatchHandler, and names the exact event a failing batch halts on", func(ctx SpecContext) {
		a := open(ctx, e.store, 0)
		for range 9 {
			deposit(ctx, e.store, a, 1)
		}
		poison := positionOf(ctx, e.store, a, 7)
		h := &upserts{poison: poison}
		r := newRunner(e.store, "", projections.Projection{Name: "batched", BatchSize: 4, Handler: h})
		err := r.CatchUp(ctx)
		Expect(errors.Is(err, projections.ErrHalted)).To(BeTrue(), "%v", err)
		st := status(ctx, e.store, "batched")
		Expect(st.FailedEvent.Position).To(Equal(poison))
		Expect(st.Delivered).To(BeEquivalentTo(6))
		Expect(balances(ctx, e.pool)).To(Equal(map[string]int64{a: 5}))
		Expect(h.sizes[:2]).To(Equal([]int{4, 4}), "full batches until the failure")

		h.poison = 0
		Expect(projections.Resume(ctx, e.store, "batched")).To(Succeed())
		Expect(r.CatchUp(ctx)).To(Succeed())
		Expect(balances(ctx, e.pool)).To(Equal(foldedBalances(ctx, e.pool)))
	})

	It("does not hold back an event whose predecessor lies below the watermark's floor", func(ctx SpecContext) {
		a := open(ctx, e.store, 1)
		var s seen
		r := newRunner(e.store, "", projections.Projection{Name: "floored", Handler: s.recorder("")})
		Expect(r.CatchUp(ctx)).To(Succeed())
		early, err := e.pool.Begin(ctx)
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(func(ctx SpecContext) { _ = early.Rollback(ctx) })
		_, err = early.Exec(ctx, `SELECT pg_current_xact_id()`)
		Expect(err).NotTo(HaveOccurred())
		deposit(ctx, e.store, a, 2) // v2, a later transaction
		Expect(projections.MoveToWatermark(ctx, e.store, "floored")).To(Succeed())
		_, err = e.store.AppendTx(ctx, early, a, mire.StreamExists, Deposited{Amount: 3}) // v3 follows v2, below the floor
		Expect(err).NotTo(HaveOccurred())
		Expect(early.Commit(ctx)).To(Succeed())
		Expect(r.CatchUp(ctx)).To(Succeed())
		Expect(s.streamVersions(a)).To(Equal([]int64{1, 3}))
		Expect(status(ctx, e.store, "floored").Held).To(BeZero())
	})

	// Only an append's first row is indexed for the reader; the rest of the
	// append is joined to it. A batch smaller than an append must stop
	// inside it, and the next batch (or the next runner, or Status) must
	// pick up exactly there.
	DescribeTable("reads appends larger than its batch whole, in log order, resuming inside an append",
		func(ctx SpecContext, batch int, categories []string, events int) {
			deposits := func(n int) []any {
				out := make([]any, n)
				for i := range out {
					out[i] = Deposited{Amount: int64(i + 1)}
				}
				return out
			}
			a := mire.StreamID("account", mtest.Unique("big"))
			_, err := e.store.Append(ctx, a, mire.NoStream, append([]any{Opened{Initial: 1}}, deposits(6)...)...)
			Expect(err).NotTo(HaveOccurred())
			tx, err := e.pool.Begin(ctx) // three appends in one transaction
			Expect(err).NotTo(HaveOccurred())
			_, err = e.store.AppendTx(ctx, tx, mire.StreamID("account", mtest.Unique("b")), mire.NoStream,
				append([]any{Opened{Initial: 2}}, deposits(2)...)...)
			Expect(err).NotTo(HaveOccurred())
			_, err = e.store.AppendTx(ctx, tx, mire.StreamID("note", mtest.Unique("n")), mire.NoStream, Noted{Text: "x"})
			Expect(err).NotTo(HaveOccurred())
			_, err = e.store.AppendTx(ctx, tx, mire.StreamID("account", mtest.Unique("c")), mire.NoStream, Opened{Initial: 3})
			Expect(err).NotTo(HaveOccurred())
			Expect(tx.Commit(ctx)).To(Succeed())
			_, err = e.store.Append(ctx, a, mire.StreamExists, deposits(5)...)
			Expect(err).NotTo(HaveOccurred())

			var want []int64 // the log's order: (xid, position)
			rows, err := e.pool.Query(ctx, `SELECT position FROM mire.events
				WHERE $1::text[] IS NULL OR category = ANY($1) ORDER BY xid, position`, categories)
			Expect(err).NotTo(HaveOccurred())
			want, err = pgx.CollectRows(rows, pgx.RowTo[int64])
			Expect(err).NotTo(HaveOccurred())
			Expect(want).To(HaveLen(events))

			_, err = e.pool.Exec(ctx, `CREATE TABLE handled (n serial PRIMARY KEY, position bigint NOT NULL UNIQUE)`)
			Expect(err).NotTo(HaveOccurred())
			poison := positionOf(ctx, e.store, a, 4) // inside the first append
			var fixed atomic.Bool
			r := newRunner(e.store, "", projections.Projection{Name: "big", BatchSize: batch, Categories: categories,
				Handler: projections.HandlerFunc(func(ctx context.Context, tx pgx.Tx, env mire.Envelope) error {
					if env.Position == poison && !fixed.Load() {
						return errors.New("not yet")
					}
					// UNIQUE: an event handled twice fails the spec.
					_, err := tx.Exec(ctx, `INSERT INTO handled (position) VALUES ($1)`, env.Position)
					return err
				})})
			Expect(errors.Is(r.CatchUp(ctx), projections.ErrHalted)).To(BeTrue())
			st := status(ctx, e.store, "big")
			Expect(st.Delivered).To(BeEquivalentTo(3))
			Expect(st.Lag).To(BeEquivalentTo(len(want)-3), "the lag counts the rest of the cursor's append")

			fixed.Store(true)
			Expect(projections.Resume(ctx, e.store, "big")).To(Succeed())
			Expect(r.CatchUp(ctx)).To(Succeed())
			rows, err = e.pool.Query(ctx, `SELECT position FROM handled ORDER BY n`)
			Expect(err).NotTo(HaveOccurred())
			got, err := pgx.CollectRows(rows, pgx.RowTo[int64])
			Expect(err).NotTo(HaveOccurred())
			Expect(got).To(Equal(want))
			st = status(ctx, e.store, "big")
			Expect(st.Delivered).To(BeEquivalentTo(len(want)))
			Expect(st.Lag).To(BeZero())
		},
		Entry("batch size 1", 1, nil, 17),
		Entry("batch size 2", 2, nil, 17),
		Entry("batch size 3", 3, nil, 17),
		Entry("default batch size", 0, nil, 17),
		Entry("batch size 2, one category", 2, []string{"account"}, 16),
	)

	It("reports a projection that never ran as not found", func(ctx SpecContext) {
		_, err := projections.StatusOf(ctx, e.store, "nothing")
		Expect(errors.Is(err, mire.ErrNotFound)).To(BeTrue(), "%v", err)
	})

	It("rejects bad configuration", func() {
		_, err := projections.NewRunner(e.store, nil)
		Expect(err).To(MatchError(ContainSubstring("no projections")))
		_, err = projections.NewRunner(e.store, nil, projections.Projection{Name: "x"})
		Expect(err).To(MatchError(ContainSubstring("handler is nil")))
		_, err = projections.NewRunner(e.store, nil, projections.Projection{Name: "bad name!", Handler: (&seen{}).recorder("")})
		Expect(err).To(MatchError(ContainSubstring("bad name!")))
		h := (&seen{}).recorder("")
		_, err = projections.NewRunner(e.store, nil, projections.Projection{Name: "x", Handler: h}, projections.Projection{Name: "x", Handler: h})
		Expect(err).To(MatchError(ContainSubstring("given twice")))
		_, err = projections.NewRunner(e.store, &projections.Config{LeaseTTL: time.Second, RecheckInterval: 2 * time.Second}, projections.Projection{Name: "x", Handler: h})
		Expect(err).To(MatchError(ContainSubstring("shorter than LeaseTTL")))
	})
})

// upserts keeps the balances read model with one round trip per batch,
// failing any batch that holds the poison position.
type upserts struct {
	poison int64
	sizes  []int
}

func (u *upserts) Handle(ctx context.Context, tx pgx.Tx, env mire.Envelope) error {
	return u.HandleBatch(ctx, tx, []mire.Envelope{env})
}

func (u *upserts) HandleBatch(ctx context.Context, tx pgx.Tx, events []mire.Envelope) error {
	u.sizes = append(u.sizes, len(events))
	b := &pgx.Batch{}
	for _, env := range events {
		if env.Position == u.poison {
			return errors.New("poison")
		}
		var delta int64
		switch e := env.Data.(type) {
		case Opened:
			delta = e.Initial
		case Deposited:
			delta = e.Amount
		case Withdrawn:
			delta = -e.Amount
		}
		b.Queue(`INSERT INTO balances VALUES ($1, $2, $3, 1) ON CONFLICT (stream) DO UPDATE
			SET balance = balances.balance + EXCLUDED.balance, version = EXCLUDED.version, applied = balances.applied + 1`,
			env.StreamID, delta, env.Version)
	}
	return tx.SendBatch(ctx, b).Close()
}

var _ = Describe("A runner's logger", func() {
	It("is the store's logger unless the config names another", func(ctx SpecContext) {
		e := freshEnv(ctx)
		var logs strings.Builder
		var mu sync.Mutex
		store, err := mire.New(e.pool, &mire.Config{Logger: slog.New(slog.NewTextHandler(lockedWriter{&mu, &logs}, nil))})
		Expect(err).NotTo(HaveOccurred())
		r, err := projections.NewRunner(store, nil, projections.Projection{Name: "logged", Handler: projections.HandlerFunc(
			func(context.Context, pgx.Tx, mire.Envelope) error { return nil })})
		Expect(err).NotTo(HaveOccurred())
		Expect(r.CatchUp(ctx)).To(Succeed())
		mu.Lock()
		defer mu.Unlock()
		Expect(logs.String()).To(ContainSubstring("lease acquired"))
	})
})

// lockedWriter serialises writes to w.
type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
