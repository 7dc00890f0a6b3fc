package projections_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/mire-go/mire"
	"github.com/mire-go/mire/internal/mtest"
	"github.com/mire-go/mire/projections"
)

// leasesHeld counts the subscriptions whose lease is held by some owner.
func leasesHeld(ctx context.Context, e env) int {
	return mtest.Count(ctx, e.pool, "subscriptions", "owner IS NOT NULL")
}

var _ = Describe("Stopping runners", func() {
	var e env
	BeforeEach(func(ctx SpecContext) { e = freshEnv(ctx) })

	It("stops with Stop: Run returns, every lease is released, and the pool may be closed at once", func(ctx SpecContext) {
		store := e.another(ctx) // its own pool, closed right after Stop
		names := []string{"one", "two", "three"}
		var ps []projections.Projection
		for _, n := range names {
			ps = append(ps, projections.Projection{Name: n, Handler: (&seen{}).recorder("")})
		}
		r := newRunner(store, "", ps...)
		runDone := make(chan error, 1)
		go func() { runDone <- r.Run(context.Background()) }() // only Stop ends it
		for _, n := range names {
			Eventually(statusFn(e.store, n)).WithContext(ctx).WithTimeout(patience(quiet())).Should(HaveField("Owner", r.Owner()))
		}
		Expect(r.Stop(ctx)).To(Succeed())
		store.Pool().Close() // Run has done with it: its leases are released
		Expect(leasesHeld(ctx, e)).To(BeZero())
		Eventually(runDone).WithContext(ctx).Should(Receive(BeNil())) // Run's return value is on its way

		Expect(r.Stop(ctx)).To(Succeed(), "a second Stop does nothing")
		Expect(r.Run(ctx)).To(MatchError(projections.ErrStopped))
		Expect(r.CatchUp(ctx)).To(MatchError(projections.ErrStopped))
	})

	It("releases its leases even when the pool was closed before Run returned", func(ctx SpecContext) {
		store := e.another(ctx)
		r := newRunner(store, "", projections.Projection{Name: "orphan", Handler: (&seen{}).recorder("")})
		runCtx, cancel := context.WithCancel(context.Background())
		runDone := make(chan error, 1)
		go func() { runDone <- r.Run(runCtx) }()
		Eventually(statusFn(e.store, "orphan")).WithContext(ctx).Should(HaveField("Owner", r.Owner()))
		store.Pool().Close() // the shutdown order the README once suggested
		cancel()
		Eventually(runDone).WithContext(ctx).Should(Receive(BeNil()))
		Expect(leasesHeld(ctx, e)).To(BeZero())
	})

	It("makes a Run started after Stop return at once, and a CatchUp in progress stop", func(ctx SpecContext) {
		r := newRunner(e.store, "", projections.Projection{Name: "early", Handler: (&seen{}).recorder("")})
		Expect(r.Stop(ctx)).To(Succeed())
		Expect(r.Run(ctx)).To(MatchError(projections.ErrStopped))

		// A CatchUp waiting for a lease another runner holds ends with Stop.
		holder := newRunner(e.store, "holder", projections.Projection{Name: "held", Handler: (&seen{}).recorder("")})
		start(holder)
		Eventually(statusFn(e.store, "held")).WithContext(ctx).WithTimeout(patience(quiet())).Should(HaveField("Owner", "holder"))
		waiter := newRunner(e.store, "waiter", projections.Projection{Name: "held", Handler: (&seen{}).recorder("")})
		caught := make(chan error, 1)
		go func() { caught <- waiter.CatchUp(ctx) }()
		Consistently(caught).WithContext(ctx).Within(3 * quiet().RecheckInterval).ShouldNot(Receive())
		Expect(waiter.Stop(ctx)).To(Succeed())
		Eventually(caught).WithContext(ctx).Should(Receive(MatchError(projections.ErrStopped)))
	})

	It("lets a restarted runner with the same Owner take over its own lease at once, raising the fence", func(ctx SpecContext) {
		cfg := quiet()
		cfg.LeaseTTL = 10 * time.Minute // expiry cannot be what frees the lease
		cfg.Owner = "pod-0"
		p := projections.Projection{Name: "restarted", Handler: (&seen{}).recorder("")}
		crashed, err := projections.NewRunner(e.another(ctx), cfg, p)
		Expect(err).NotTo(HaveOccurred())
		projections.CrashOnStop(crashed) // as a killed process, or a pool closed under Run
		stop := start(crashed)
		Eventually(statusFn(e.store, "restarted")).WithContext(ctx).WithTimeout(patience(quiet())).Should(HaveField("Owner", "pod-0"))
		stop()
		before := status(ctx, e.store, "restarted")
		Expect(before.Owner).To(Equal("pod-0"), "the lease is still held")

		restarted, err := projections.NewRunner(e.store, cfg, p)
		Expect(err).NotTo(HaveOccurred())
		start(restarted)
		a := open(ctx, e.store, 1)
		Eventually(statusFn(e.store, "restarted")).WithContext(ctx).WithTimeout(cfg.LeaseTTL / 10).Should(And(
			HaveField("Fence", BeNumerically(">", before.Fence)), HaveField("Lag", BeZero()), HaveField("Position", positionOf(ctx, e.store, a, 1))))
	})

	// A standby that takes the lease just as it is told to stop must still
	// give it back: after every clean stop, no lease is held.
	It("leaves no lease held when the active runner and a standby stop at about the same moment", Label("slow"), func(ctx SpecContext) {
		open(ctx, e.store, 1)
		cfg := quiet()
		cfg.RecheckInterval = time.Millisecond // the standby is always about to take over
		for trial := range 100 {
			name := fmt.Sprintf("stop-%d", trial)
			runner := func(owner string) *projections.Runner {
				c := *cfg
				c.Owner = owner
				r, err := projections.NewRunner(e.store, &c, projections.Projection{Name: name, Handler: (&seen{}).recorder(owner)})
				Expect(err).NotTo(HaveOccurred())
				return r
			}
			stopActive := start(runner("active"))
			Eventually(statusFn(e.store, name)).WithContext(ctx).Should(HaveField("Owner", "active"))
			stopStandby := start(runner("standby"))
			if trial%2 == 0 {
				stopActive()
				stopStandby()
			} else {
				done := make(chan struct{})
				go func() { defer close(done); stopActive() }()
				stopStandby()
				<-done
			}
			Expect(leasesHeld(ctx, e)).To(BeZero(), "trial %d: %+v", trial, status(ctx, e.store, name))
		}
	})
})

var _ = Describe("OnHalt", func() {
	var e env
	BeforeEach(func(ctx SpecContext) { e = freshEnv(ctx) })

	type halt struct {
		name string
		err  error
	}

	It("tells the application when a projection halts, and when a runner takes over one that has halted", func(ctx SpecContext) {
		a := open(ctx, e.store, 1)
		deposit(ctx, e.store, a, 2)
		poison := errors.New("cannot handle deposits")
		p := projections.Projection{Name: "told", Handler: projections.Plain(func(_ context.Context, env mire.Envelope) error {
			if env.Version == 2 {
				return poison
			}
			return nil
		})}
		halts := make(chan halt, 10)
		runner := func() *projections.Runner {
			cfg := quiet()
			cfg.OnHalt = func(name string, err error) { halts <- halt{name, err} }
			r, err := projections.NewRunner(e.store, cfg, p, projections.Projection{Name: "fine", Handler: (&seen{}).recorder("")})
			Expect(err).NotTo(HaveOccurred())
			return r
		}
		stop := start(runner())
		var h halt
		Eventually(halts).WithContext(ctx).WithTimeout(patience(quiet())).Should(Receive(&h))
		Expect(h.name).To(Equal("told"))
		Expect(errors.Is(h.err, projections.ErrHalted)).To(BeTrue(), "%v", h.err)
		Expect(errors.Is(h.err, poison)).To(BeTrue(), "%v", h.err)
		Expect(h.err).To(MatchError(And(ContainSubstring(`"told"`), ContainSubstring(a+" v2"))))
		Expect(status(ctx, e.store, "told").State).To(Equal(projections.Halted))
		stop()
		Expect(halts).NotTo(Receive(), "told once")

		// A restarted application is told again: the projection is still halted.
		start(runner())
		Eventually(halts).WithContext(ctx).WithTimeout(patience(quiet())).Should(Receive(&h))
		Expect(h.name).To(Equal("told"))
		Expect(errors.Is(h.err, projections.ErrHalted)).To(BeTrue(), "%v", h.err)
		Expect(h.err).To(MatchError(ContainSubstring("cannot handle deposits")))
	})

	It("is told by CatchUp too", func(ctx SpecContext) {
		open(ctx, e.store, 1)
		told := make(chan string, 10)
		cfg := quiet()
		cfg.OnHalt = func(name string, _ error) { told <- name }
		r, err := projections.NewRunner(e.store, cfg, projections.Projection{Name: "caught", Handler: projections.Plain(
			func(context.Context, mire.Envelope) error { return errors.New("no") })})
		Expect(err).NotTo(HaveOccurred())
		Expect(errors.Is(r.CatchUp(ctx), projections.ErrHalted)).To(BeTrue())
		Eventually(told).WithContext(ctx).WithTimeout(patience(cfg)).Should(Receive(Equal("caught")))
		Consistently(told).WithContext(ctx).Within(cfg.PollInterval).ShouldNot(Receive(), "told once")
	})
})
