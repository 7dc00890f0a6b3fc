package sagas_test

import (
	"context"
	"fmt"
	"sync/atomic"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/mire-go/mire"
	"github.com/mire-go/mire/projections"
	"github.com/mire-go/mire/sagas"
)

var _ = Describe("Replicas", func() {
	It("resume a step whose worker was cancelled in the middle of it without releasing its lease, on another replica, without repeating its effect", func(ctx SpecContext) {
		e := freshEnv(ctx)
		e.stock(ctx, "apple", 10)
		entered := make(chan struct{})
		var calls atomic.Int32
		stuck := sagas.Command(func(ctx context.Context, scope *mire.TxScope, x *sagas.Exec[Fulfilment]) error {
			if err := reserve(ctx, scope, x); err != nil {
				return err
			}
			if calls.Add(1) == 1 { // the first worker: its reservation is written in its batch; it dies here
				close(entered)
				<-ctx.Done()
				return ctx.Err()
			}
			return nil
		})
		def := sagas.MustDefine(sagas.Spec[Fulfilment]{
			Name:  "fulfilment",
			Start: sagas.StartOn(placed),
			Steps: []sagas.Step[Fulfilment]{
				{Name: "reserve", Action: stuck, Compensation: sagas.Command(release)},
				{Name: "confirm", After: "reserve", Action: sagas.Command(confirm)},
			},
		})
		cfgA := quiet()
		cfgA.Projections.Owner = "a"
		a, err := sagas.NewRunner(e.store, cfgA, def)
		Expect(err).NotTo(HaveOccurred())
		sagas.CrashOnStop(a)
		aDone := make(chan error, 1)
		go func() { aDone <- a.Run(context.Background()) }()

		e.place(ctx, "o1", "apple", 3, 30)
		Eventually(entered).WithContext(ctx).Should(BeClosed())
		cfgB := quiet()
		cfgB.Projections.Owner = "b"
		e.run(cfgB, def)
		Expect(a.Stop(ctx)).To(Succeed()) // cancelled mid-step; its lease is not released
		Expect(<-aDone).To(Succeed())

		Eventually(e.instance("fulfilment", "o1")).WithContext(ctx).Should(HaveField("Status", sagas.Completed))
		Expect(calls.Load()).To(BeEquivalentTo(2))
		inv := e.inventory(ctx, "apple")
		Expect(inv.Available).To(BeEquivalentTo(7))
		Expect(inv.Reserved).To(Equal(map[string]int64{"o1": 3}))
		st, err := projections.StatusOf(ctx, e.store, sagas.ProjectionName("fulfilment"))
		Expect(err).NotTo(HaveOccurred())
		Expect(st).To(And(HaveField("Owner", "b"), HaveField("Fence", BeEquivalentTo(2))))
	})
})

var _ = Describe("Listeners", func() {
	It("report a response for an unknown instance without creating it, and one for an ended instance as Ignored", func(ctx SpecContext) {
		e := freshEnv(ctx)
		e.stock(ctx, "apple", 10)
		e.run(quiet(), fulfilment(0, 0, settled))
		_, err := e.store.Append(ctx, "payment-p0", mire.NoStream, PaymentSettled{Order: "nobody"})
		Expect(err).NotTo(HaveOccurred())
		e.place(ctx, "o1", "apple", 3, 30)
		Eventually(e.instance("fulfilment", "o1")).WithContext(ctx).Should(HaveField("Awaiting", "charge"))
		_, err = e.store.Append(ctx, "payment-p1", mire.NoStream, PaymentSettled{Order: "o1"})
		Expect(err).NotTo(HaveOccurred())
		Eventually(e.instance("fulfilment", "o1")).WithContext(ctx).Should(HaveField("Status", sagas.Completed))
		_, err = e.store.Append(ctx, "payment-p2", mire.NoStream, PaymentSettled{Order: "o1", Declined: "too late"})
		Expect(err).NotTo(HaveOccurred())

		Eventually(func(ctx context.Context) []string { return e.history(ctx, "fulfilment", "o1") }).WithContext(ctx).Should(
			HaveExactElements("Started", "StepCompleted", "StepStarted", "StepCompleted", "StepCompleted", "Ended", "Ignored"))
		_, err = sagas.Load(ctx, e.store, "fulfilment", "nobody")
		Expect(err).To(MatchError(mire.ErrNotFound))
		in, err := e.instance("fulfilment", "o1")(ctx)
		Expect(err).NotTo(HaveOccurred())
		Expect(in.Status).To(Equal(sagas.Completed), "the late decline changed nothing")
	})
})

var _ = Describe("A partitioned saga", func() {
	It("spreads its instances over the replicas' runners, each decided once", func(ctx SpecContext) {
		e := freshEnv(ctx)
		Expect(projections.MigratePartitions(ctx, e.store, 3)).To(Succeed())
		e.stock(ctx, "apple", 100)
		def := sagas.MustDefine(sagas.Spec[Fulfilment]{
			Name:  "fulfilment",
			Start: sagas.StartOn(placed),
			Steps: []sagas.Step[Fulfilment]{
				{Name: "reserve", Action: sagas.Command(reserve), Compensation: sagas.Command(release)},
				{Name: "confirm", After: "reserve", Action: sagas.Command(confirm)},
			},
			Partitions: 3,
		})
		for _, owner := range []string{"a", "b"} {
			cfg := quiet()
			cfg.Projections.Owner = owner
			e.run(cfg, def)
		}
		owners := func(ctx context.Context) (map[string]bool, error) {
			st, err := projections.StatusOf(ctx, e.store, sagas.ProjectionName("fulfilment"))
			if err != nil {
				return nil, err
			}
			held := map[string]bool{}
			for _, p := range st.ByPartition {
				if p.Owner != "" {
					held[p.Owner] = true
				}
			}
			return held, nil
		}
		// The replica that starts first may take every partition; the
		// other's arrival spreads them. Orders placed before that would all
		// go to one runner.
		Eventually(owners).WithContext(ctx).Should(HaveLen(2), "both replicas hold partitions")
		for i := range 20 {
			e.place(ctx, fmt.Sprintf("o%02d", i), "apple", 2, 20)
		}
		Eventually(func(ctx context.Context) (map[sagas.Status]int, error) {
			return sagas.Count(ctx, e.store, "fulfilment")
		}).WithContext(ctx).Should(Equal(map[sagas.Status]int{sagas.Completed: 20}))
		inv := e.inventory(ctx, "apple")
		Expect(inv.Available).To(BeEquivalentTo(60))
		Expect(inv.Reserved).To(HaveLen(20))
		st, err := projections.StatusOf(ctx, e.store, sagas.ProjectionName("fulfilment"))
		Expect(err).NotTo(HaveOccurred())
		Expect(st.ByPartition).To(HaveLen(3))
		Expect(owners(ctx)).To(HaveLen(2), "both replicas still hold partitions")
	})
})

var _ = Describe("Runner", func() {
	It("refuses a second Run while one runs, and a Run after Stop", func(ctx SpecContext) {
		e := freshEnv(ctx)
		r, err := sagas.NewRunner(e.store, quiet(), fulfilment(0, 0))
		Expect(err).NotTo(HaveOccurred())
		done := make(chan error, 1)
		go func() { done <- r.Run(context.Background()) }()
		Eventually(func(ctx context.Context) (projections.Status, error) {
			return projections.StatusOf(ctx, e.store, sagas.ProjectionName("fulfilment"))
		}).WithContext(ctx).Should(HaveField("Owner", r.Projections().Owner()))
		Expect(r.Run(ctx)).To(MatchError("sagas: run: already running"))
		Expect(r.Stop(ctx)).To(Succeed())
		Expect(<-done).To(Succeed())
		Expect(r.Run(ctx)).To(MatchError(projections.ErrStopped))
	})
})
