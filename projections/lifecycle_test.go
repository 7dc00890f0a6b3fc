package projections_test

import (
	"context"
	"fmt"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

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
