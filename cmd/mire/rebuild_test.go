package main_test

import (
	"context"
	"errors"
	"sync/atomic"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/mire-go/mire"
	"github.com/mire-go/mire/miretest"
	"github.com/mire-go/mire/projections"
)

var _ = Describe("projections rebuild", func() {
	var fresh *miretest.DB
	var failing atomic.Bool
	var runner *projections.Runner
	BeforeEach(func(ctx SpecContext) {
		failing.Store(false)
		fresh = db.DB.Fresh(ctx)
		seed(ctx, fresh.Store)
		for i := range 100 {
			_, err := fresh.Store.Append(ctx, "account-alice", mire.Exactly(int64(3+i)), Deposited{Amount: 1})
			Expect(err).NotTo(HaveOccurred())
		}
		p := projections.Projection{Name: "balances", BatchSize: 10,
			Handler: projections.Plain(func(context.Context, mire.Envelope) error {
				if failing.Load() {
					return errors.New("boom")
				}
				return nil
			})}
		var err error
		runner, err = projections.NewRunner(fresh.Store, &projections.Config{
			Owner: "app-1", Logger: quiet, MaxAttempts: 1,
			RecheckInterval: 50 * time.Millisecond, PollInterval: 50 * time.Millisecond,
		}, p)
		Expect(err).NotTo(HaveOccurred())
		runCtx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- runner.Run(runCtx) }()
		DeferCleanup(func(ctx SpecContext) {
			Expect(runner.Stop(ctx)).To(Succeed())
			cancel()
			Eventually(done).WithContext(ctx).Should(Receive())
		})
		Eventually(func(ctx context.Context) int64 {
			st, err := projections.StatusOf(ctx, fresh.Store, "balances")
			if err != nil {
				return -1
			}
			return st.Delivered
		}).WithContext(ctx).Should(BeNumerically("==", 104))
	}, NodeTimeout(time.Minute))

	It("resets and follows the runners' replay until it has caught up", func(ctx SpecContext) {
		r := mireCmd(ctx, fresh.URL, "", "projections", "rebuild", "balances", "--wait")
		Expect(r.Code).To(Equal(0), r.Stderr)
		Expect(r.Stdout).To(MatchRegexp(`^Projection "balances" rebuilt: 104 events replayed by app-1; caught up at position 104\.\n$`))
		Expect(r.Stderr).To(ContainSubstring("replay balances"))
		Expect(r.Stderr).To(ContainSubstring("104/104"))

		st := fromJSON[map[string]any](mireCmd(ctx, fresh.URL, "", "projections", "rebuild", "balances", "--wait", "--json"))
		Expect(st).To(HaveKeyWithValue("delivered", BeNumerically("==", 104)))
	}, SpecTimeout(time.Minute))

	It("without --wait, only resets", func(ctx SpecContext) {
		// With the runner running, it could replay a batch between the
		// reset and the count the command prints.
		Expect(runner.Stop(ctx)).To(Succeed())
		r := mireCmd(ctx, fresh.URL, "", "projections", "rebuild", "balances")
		Expect(r.Code).To(Equal(0), r.Stderr)
		Expect(r.Stdout).To(HavePrefix(`Projection "balances" reset to the start of the log: the runners replay 104 events`))
	}, SpecTimeout(time.Minute))

	It("fails with the error when the projection halts during the replay", func(ctx SpecContext) {
		failing.Store(true)
		r := mireCmd(ctx, fresh.URL, "", "projections", "rebuild", "balances", "--wait")
		Expect(r.Code).To(Equal(1))
		Expect(r.Stderr).To(ContainSubstring(`projection "balances" halted during the replay: `))
		Expect(r.Stderr).To(ContainSubstring("boom\nFix the cause, then run `mire projections resume balances`"))
	}, SpecTimeout(time.Minute))

	It("refuses a name that never ran", func(ctx SpecContext) {
		r := mireCmd(ctx, fresh.URL, "", "projections", "rebuild", "nope", "--wait")
		Expect(r.Code).To(Equal(1))
		Expect(r.Stderr).To(ContainSubstring(`no projection "nope" has run`))
	}, SpecTimeout(time.Minute))
})
