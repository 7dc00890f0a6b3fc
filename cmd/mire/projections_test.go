package main_test

import (
	"context"
	"errors"
	"log/slog"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/mire-go/mire"
	"github.com/mire-go/mire/miretest"
	"github.com/mire-go/mire/projections"
)

// runProjections drives two projections over the seeded log: "balances"
// to the end, and "flaky", which halts on the first Deposited.
func runProjections(ctx context.Context, fresh *miretest.DB) {
	GinkgoHelper()
	ok := projections.Projection{Name: "balances", Categories: []string{"account"},
		Handler: projections.Plain(func(context.Context, mire.Envelope) error { return nil })}
	runner, err := projections.NewRunner(fresh.Store, &projections.Config{Logger: quiet}, ok)
	Expect(err).NotTo(HaveOccurred())
	Expect(runner.CatchUp(ctx)).To(Succeed())

	flaky := projections.Projection{Name: "flaky",
		Handler: projections.Plain(func(_ context.Context, env mire.Envelope) error {
			if env.Type == "Deposited" {
				return errors.New("boom")
			}
			return nil
		})}
	runner, err = projections.NewRunner(fresh.Store, &projections.Config{MaxAttempts: 1, Logger: quiet}, flaky)
	Expect(err).NotTo(HaveOccurred())
	Expect(runner.CatchUp(ctx)).To(MatchError(projections.ErrHalted))
}

// quiet discards the runners' logs.
var quiet = slog.New(slog.DiscardHandler)

var _ = Describe("projections", func() {
	var fresh *miretest.DB
	BeforeEach(func(ctx SpecContext) {
		fresh = db.DB.Fresh(ctx)
		seed(ctx, fresh.Store)
		runProjections(ctx, fresh)
		// One more event: balances lags by one.
		_, err := fresh.Store.Append(ctx, "account-alice", mire.Exactly(3), Deposited{Amount: 5})
		Expect(err).NotTo(HaveOccurred())
	})

	It("reports every projection's position, lag, fence, state and last error", func(ctx SpecContext) {
		r := mireCmd(ctx, fresh.URL, "", "projections")
		Expect(r.Code).To(Equal(0), r.Stderr)
		Expect(r.Stdout).To(MatchRegexp(`^NAME +PARTITIONS +POSITION +LAG +LAG TIME +OWNER +FENCE +STATE +LAST ERROR\n` +
			`balances +1 +3 +1 +\d+s +- +1 +running +-\n` +
			`flaky +1 +0 +5 +\d+s +- +1 +halted +mire: projection: event account-alice v2 \(position 2, type Deposited\): boom\n$`))

		list := fromJSON[[]map[string]any](mireCmd(ctx, fresh.URL, "", "projections", "--json"))
		Expect(list).To(HaveLen(2))
		Expect(list[0]).To(HaveKeyWithValue("name", "balances"))
		Expect(list[0]).To(HaveKeyWithValue("lag", BeNumerically("==", 1)))
		Expect(list[0]).To(HaveKeyWithValue("state", "running"))
		Expect(list[1]).To(HaveKeyWithValue("state", "halted"))
		Expect(list[1]).To(HaveKeyWithValue("failed_event", And(HaveKeyWithValue("position", BeNumerically("==", 2)), HaveKeyWithValue("stream_id", "account-alice"))))
	})

	It("resumes, resets and moves a projection, confirming each", func(ctx SpecContext) {
		r := mireCmd(ctx, fresh.URL, "", "projections", "resume", "flaky")
		Expect(r.Code).To(Equal(0), r.Stderr)
		Expect(r.Stdout).To(Equal(`Projection "flaky" resumed; a runner takes it over within its recheck interval (position 0, floor 0, lag 5, fence 2).` + "\n"))
		st, err := projections.StatusOf(ctx, fresh.Store, "flaky")
		Expect(err).NotTo(HaveOccurred())
		Expect(st.State).To(Equal(projections.Running))

		r = mireCmd(ctx, fresh.URL, "", "projections", "move-to-watermark", "balances", "--json")
		Expect(fromJSON[map[string]any](r)).To(And(HaveKeyWithValue("lag", BeNumerically("==", 0)), HaveKeyWithValue("floor", BeNumerically("==", 5))))

		r = mireCmd(ctx, fresh.URL, "", "projections", "reset", "balances")
		Expect(r.Code).To(Equal(0), r.Stderr)
		Expect(r.Stdout).To(Equal(`Projection "balances" reset to the start of the log; its runner replays every event (position 0, floor 0, lag 4, fence 3).` + "\n"))
	})

	It("refuses a name that never ran", func(ctx SpecContext) {
		for _, op := range []string{"reset", "resume", "move-to-watermark"} {
			r := mireCmd(ctx, fresh.URL, "", "projections", op, "nope")
			Expect(r.Code).To(Equal(1), op)
			Expect(r.Stderr).To(Equal("mire: no projection \"nope\" has run (see `mire projections`)\n"))
		}
		Expect(mireCmd(ctx, fresh.URL, "", "projections", "reset").Code).To(Equal(2))
	})

	It("creates a partition index and reports a partitioned projection per partition", func(ctx SpecContext) {
		r := mireCmd(ctx, fresh.URL, "", "migrate", "--partitions", "3")
		Expect(r.Code).To(Equal(0), r.Stderr)
		Expect(r.Stdout).To(HaveSuffix("The index of projections of 3 partitions is in place.\n"))
		Expect(mireCmd(ctx, fresh.URL, "", "migrate", "--partitions", "1").Code).To(Equal(2))

		split := projections.Projection{Name: "split", Partitions: 3, Handler: projections.Plain(
			func(context.Context, mire.Envelope) error { return nil })}
		runner, err := projections.NewRunner(fresh.Store, &projections.Config{Owner: "app-1", Logger: quiet}, split)
		Expect(err).NotTo(HaveOccurred())
		Expect(runner.CatchUp(ctx)).To(Succeed())

		r = mireCmd(ctx, fresh.URL, "", "projections")
		Expect(r.Stdout).To(MatchRegexp(`\nsplit +3 +\d+ +0 +- +- +1 +running +-\n$`))
		r = mireCmd(ctx, fresh.URL, "", "projections", "partitions", "split")
		Expect(r.Code).To(Equal(0), r.Stderr)
		Expect(r.Stdout).To(MatchRegexp(`^PARTITION +POSITION +LAG +DELIVERED +OWNER +FENCE +STATE +LAST ERROR\n` +
			`0 +\d+ +0 +\d+ +- +1 +running +-\n1 +\d+ +0 +\d+ +- +1 +running +-\n2 +\d+ +0 +\d+ +- +1 +running +-\n$`))
		parts := fromJSON[[]map[string]any](mireCmd(ctx, fresh.URL, "", "projections", "partitions", "split", "--json"))
		Expect(parts).To(HaveLen(3))
		var delivered float64
		for _, p := range parts {
			delivered += p["delivered"].(float64)
		}
		var events float64
		Expect(fresh.Pool.QueryRow(ctx, `SELECT count(*)::float8 FROM mire.events`).Scan(&events)).To(Succeed())
		Expect(delivered).To(Equal(events), "every event of the log in one partition")

		r = mireCmd(ctx, fresh.URL, "", "migrate", "--print", "--partitions", "3")
		Expect(r.Stdout).To(ContainSubstring(`CREATE INDEX CONCURRENTLY IF NOT EXISTS "events_heads_p3_idx"`))
	})

	It("completes projection names", func(ctx SpecContext) {
		r := mireCmd(ctx, fresh.URL, "", "__complete", "projections", "resume", "")
		Expect(r.Code).To(Equal(0), r.Stderr)
		Expect(r.Stdout).To(HavePrefix("balances\nflaky\n"))
	})
})
