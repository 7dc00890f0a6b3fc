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
