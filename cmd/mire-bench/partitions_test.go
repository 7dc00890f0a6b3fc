package main

import (
	"bytes"
	"os"
	"testing"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
)

// The test binary doubles as the runner processes of workloads 10, 10n and
// 10r, as the command's binary does (see runnerproc.go).
func TestMain(m *testing.M) {
	if isRunnerProcess() {
		os.Exit(runnerMain())
	}
	os.Exit(m.Run())
}

var _ = Describe("the process workloads", func() {
	// A few events and one try: the specs prove that the workloads run
	// and report, not how fast.
	pe := func() *procEnv {
		sc := tinyScale
		sc.PartStreams, sc.PartEvents, sc.PartNoop, sc.RebalanceTries = 32, 320, 640, 1
		return &procEnv{serverURL: db.ServerURL, scale: sc, rounds: 1, out: GinkgoWriter}
	}

	It("times the catch-up by 1, 2 and 4 runner processes, and the unpartitioned one and CatchUp for the no-op handler", func(ctx SpecContext) {
		res := &procResults{}
		for _, h := range []string{sleepHandler, noopHandler} {
			r, err := scalingCase(h)(ctx, pe())
			Expect(err).NotTo(HaveOccurred())
			res.add(r)
		}
		Expect(res.Scaling).To(HaveLen(3 + 6))
		for _, s := range res.Scaling {
			Expect(s.Rate).To(BeNumerically(">", 0))
			if s.Processes > 1 {
				Expect(s.Ratio).To(BeNumerically(">", 0))
			}
			if s.Handler == sleepHandler && s.Processes > 1 {
				Expect(s.Met).NotTo(BeNil(), "the slow handler's scaling has a target")
			}
		}
		var out bytes.Buffer
		printProcs(&out, res)
		Expect(out.String()).To(ContainSubstring("| 10n | noop | 1 | 1 |"))
		Expect(out.String()).To(ContainSubstring("| 10 | sleep | 16 | 4 |"))
		Expect(out.String()).To(ContainSubstring("| 10n | noop | 16 | CatchUp |"))
	})

	It("times a join and a kill -9 of a runner process", func(ctx SpecContext) {
		r, err := rebalanceCase(ctx, pe())
		Expect(err).NotTo(HaveOccurred())
		Expect(r.Rebalance).To(HaveLen(2))
		for _, b := range r.Rebalance {
			Expect(b.Tries).To(Equal(1))
			Expect(b.Max).To(BeNumerically(">=", b.P50))
			Expect(b.P50).To(BeNumerically(">", 0))
		}
		var out bytes.Buffer
		printProcs(&out, r)
		Expect(out.String()).To(ContainSubstring("| 10r | kill -9: 3 -> 2 processes | 1 |"))
	})
})
