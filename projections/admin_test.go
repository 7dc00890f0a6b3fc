package projections_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/jackc/pgx/v5"
	"github.com/mire-go/mire"
	"github.com/mire-go/mire/internal/mtest"
	"github.com/mire-go/mire/projections"
)

var _ = Describe("Admin operations", func() {
	var e env
	BeforeEach(func(ctx SpecContext) { e = freshEnv(ctx) })

	DescribeTable("refuses an unknown projection name with an error naming it",
		func(ctx SpecContext, op func(context.Context, *mire.Store, string) error) {
			r := newRunner(e.store, "", projections.Projection{Name: "known", Handler: (&seen{}).recorder("")})
			Expect(r.CatchUp(ctx)).To(Succeed())
			err := op(ctx, e.store, "knwon") // a typo during an incident
			Expect(errors.Is(err, mire.ErrNotFound)).To(BeTrue(), "%v", err)
			Expect(err).To(MatchError(ContainSubstring(`"knwon"`)))
			Expect(op(ctx, e.store, "known")).To(Succeed())
		},
		Entry("ResetCheckpoint", projections.ResetCheckpoint),
		Entry("Resume", projections.Resume),
		Entry("MoveToWatermark", projections.MoveToWatermark),
		Entry("Runner.Rebuild with NoWait", func(ctx context.Context, store *mire.Store, name string) error {
			r := newRunner(store, "", projections.Projection{Name: "known", Handler: (&seen{}).recorder("")})
			return r.Rebuild(ctx, name, &projections.RebuildOpts{NoWait: true})
		}),
		Entry("Runner.Rebuild", func(ctx context.Context, store *mire.Store, name string) error {
			r := newRunner(store, "", projections.Projection{Name: "known", Handler: (&seen{}).recorder("")})
			start(r)
			return r.Rebuild(ctx, name, nil)
		}),
	)

	// An idle worker renews its lease only every third of LeaseTTL; an
	// admin operation must not wait for that to reach it. With a long
	// lease, the holder must be back within a small multiple of
	// RecheckInterval, far below LeaseTTL/3.
	DescribeTable("reaches an idle lease holder within its recheck interval, not at its next renewal",
		func(ctx SpecContext, partitions int, op func(context.Context, *mire.Store, string) error) {
			cfg := quiet()
			cfg.LeaseTTL, cfg.RecheckInterval, cfg.PollInterval, cfg.Owner = time.Minute, 100*time.Millisecond, 50*time.Millisecond, "idle"
			if partitions > 1 {
				Expect(projections.MigratePartitions(ctx, e.store, partitions)).To(Succeed())
			}
			p := projections.Projection{Name: "idle", Partitions: partitions, Handler: (&seen{}).recorder("")}
			r, err := projections.NewRunner(e.store, cfg, p)
			Expect(err).NotTo(HaveOccurred())
			start(r)
			deposit(ctx, e.store, open(ctx, e.store, 1), 1)
			Eventually(statusFn(e.store, "idle")).WithContext(ctx).Should(And(HaveField("Lag", BeZero()), HaveField("Owner", "idle")))
			before := status(ctx, e.store, "idle")
			Expect(op(ctx, e.store, "idle")).To(Succeed())
			Eventually(func(ctx context.Context) (bool, error) {
				st, err := projections.StatusOf(ctx, e.store, "idle")
				return st.Owner == "idle" && st.Fence >= before.Fence+2 && st.Lag == 0, err
			}).WithContext(ctx).WithTimeout(50*cfg.RecheckInterval).Should(BeTrue(), "taken again and caught up")
		},
		Entry("ResetCheckpoint", 1, projections.ResetCheckpoint),
		Entry("Resume", 1, projections.Resume),
		Entry("MoveToWatermark, partitioned", 3, projections.MoveToWatermark),
	)

	It("refuses a Rebuild with a Progress that NoWait would never call, changing nothing", func(ctx SpecContext) {
		r := newRunner(e.store, "", projections.Projection{Name: "kept", Handler: (&seen{}).recorder("")})
		Expect(r.CatchUp(ctx)).To(Succeed())
		fence := status(ctx, e.store, "kept").Fence
		err := r.Rebuild(ctx, "kept", &projections.RebuildOpts{NoWait: true, Progress: func(projections.Status) {}})
		Expect(err).To(MatchError(ContainSubstring("Progress")))
		Expect(status(ctx, e.store, "kept").Fence).To(Equal(fence))
	})

	// Every entry point, on a database that was never migrated (or a schema
	// that was not), says so instead of "relation does not exist".
	for _, where := range []string{"an empty database", "a schema never migrated"} {
		DescribeTable("reports "+where+" as not migrated",
			func(ctx SpecContext, op func(context.Context, *mire.Store, *projections.Runner) error) {
				pool, cfg := e.pool, &mire.Config{Schema: "never_migrated"}
				if where == "an empty database" {
					_, pool = db.Empty(ctx)
					cfg = nil
				}
				store, err := mire.New(pool, cfg)
				Expect(err).NotTo(HaveOccurred())
				r := newRunner(store, "", projections.Projection{Name: "p", Handler: (&seen{}).recorder("")})
				ctx2, cancel := context.WithTimeout(ctx, patience(quiet()))
				defer cancel()
				err = op(ctx2, store, r)
				Expect(errors.Is(err, mire.ErrNotMigrated)).To(BeTrue(), "%v", err)
				Expect(err).To(MatchError(ContainSubstring(store.Schema())))
			},
			Entry("Runner.Run", func(ctx context.Context, _ *mire.Store, r *projections.Runner) error { return r.Run(ctx) }),
			Entry("Runner.CatchUp", func(ctx context.Context, _ *mire.Store, r *projections.Runner) error { return r.CatchUp(ctx) }),
			Entry("StatusOf", func(ctx context.Context, s *mire.Store, _ *projections.Runner) error {
				_, err := projections.StatusOf(ctx, s, "p")
				return err
			}),
			Entry("Runner.Status", func(ctx context.Context, _ *mire.Store, r *projections.Runner) error {
				_, err := r.Status(ctx, "p")
				return err
			}),
			Entry("ResetCheckpoint", func(ctx context.Context, s *mire.Store, _ *projections.Runner) error {
				return projections.ResetCheckpoint(ctx, s, "p")
			}),
			Entry("Resume", func(ctx context.Context, s *mire.Store, _ *projections.Runner) error {
				return projections.Resume(ctx, s, "p")
			}),
			Entry("MoveToWatermark", func(ctx context.Context, s *mire.Store, _ *projections.Runner) error {
				return projections.MoveToWatermark(ctx, s, "p")
			}),
			Entry("Runner.Rebuild with NoWait", func(ctx context.Context, _ *mire.Store, r *projections.Runner) error {
				return r.Rebuild(ctx, "p", &projections.RebuildOpts{NoWait: true})
			}),
			Entry("Runner.Rebuild", func(ctx context.Context, _ *mire.Store, r *projections.Runner) error {
				return r.Rebuild(ctx, "p", nil)
			}),
		)
	}

	// The batch transaction writes read-model rows and then its checkpoint;
	// the admin transaction resets the checkpoint and truncates the read
	// model. Taken in opposite orders, the two locks deadlock.
	DescribeTable("rebuilds a projection, waiting or not, while its runner is in the middle of a batch", Label("slow"), func(ctx SpecContext, marks bool) {
		const streams, perStream = 30, 50 // a backlog of 1,500 events
		for range streams {
			events := []any{Opened{Initial: 1}}
			for range perStream - 1 {
				events = append(events, Deposited{Amount: 2})
			}
			_, err := e.store.Append(ctx, mire.StreamID("account", mtest.Unique("load")), mire.NoStream, events...)
			Expect(err).NotTo(HaveOccurred())
		}
		// With marks, the read model has a second table, written at the end
		// of each batch (a stream's last event) but cleared first.
		_, err := e.pool.Exec(ctx, `CREATE TABLE marks (stream text PRIMARY KEY)`)
		Expect(err).NotTo(HaveOccurred())
		midBatch := make(chan struct{}, 1)
		slow := balanceHandler()
		p := projections.Projection{Name: "rebuilt-under-load", BatchSize: 50,
			Handler: projections.HandlerFunc(func(ctx context.Context, tx pgx.Tx, env mire.Envelope) error {
				if err := slow.Handle(ctx, tx, env); err != nil {
					return err
				}
				if marks && env.Version == perStream {
					if _, err := tx.Exec(ctx, `INSERT INTO marks VALUES ($1)`, env.StreamID); err != nil {
						return err
					}
				}
				select { // the batch has written read-model rows
				case midBatch <- struct{}{}:
				default:
				}
				_, err := tx.Exec(ctx, `SELECT pg_sleep(0.001)`)
				return err
			}),
			Truncate: func(ctx context.Context, tx pgx.Tx) error {
				if _, err := tx.Exec(ctx, `TRUNCATE marks`); err != nil {
					return err
				}
				_, err := tx.Exec(ctx, `TRUNCATE balances`)
				return err
			}}
		r := newRunner(e.store, "", p)
		start(r)
		inBatch := func() {
			select { // a signal from before the last reset may be waiting
			case <-midBatch:
			default:
			}
			Eventually(midBatch).WithContext(ctx).WithTimeout(patience(quiet())).Should(Receive())
		}
		noWait := &projections.RebuildOpts{NoWait: true}
		for i := range 3 {
			inBatch()
			Expect(r.Rebuild(ctx, p.Name, noWait)).To(Succeed(), "rebuild without waiting %d", i)
			inBatch()
			Expect(r.Rebuild(ctx, p.Name, nil)).To(Succeed(), "rebuild %d", i)
			Expect(r.Rebuild(ctx, p.Name, noWait)).To(Succeed()) // replay again
		}
		inBatch()
		Expect(r.Rebuild(ctx, p.Name, nil)).To(Succeed())
		st := status(ctx, e.store, p.Name)
		Expect(st.Delivered).To(BeEquivalentTo(streams*perStream), fmt.Sprintf("%+v", st))
		Expect(mtestCount(ctx, e, `SELECT sum(applied)::int FROM balances`)).To(Equal(streams * perStream))
		Expect(balances(ctx, e.pool)).To(Equal(foldedBalances(ctx, e.pool)))
		if marks {
			Expect(mtestCount(ctx, e, `SELECT count(*) FROM marks`)).To(Equal(streams))
		}
	},
		Entry("a read model of one table", false),
		Entry("a read model of two tables, cleared in the order opposite to the batch's writes", true),
	)
})
