package projections_test

import (
	"context"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/mire-go/mire"
	"github.com/mire-go/mire/projections"
)

// The chaos spec's scale: the full size. It runs in about 8 s
// here, and in about 20 s under -race on two busy cores. Its waits derive
// from the runners' configuration (see patience), never from these times.
const (
	chaosStreams = 100
	chaosEvents  = 10_000
	chaosRounds  = 50
	chaosWriters = 4
)

var _ = Describe("Guarantee 5: chaos", func() {
	It("keeps the read model equal to the fold of the log while workers are killed and restarted", func(ctx SpecContext) {
		e := freshEnv(ctx)
		streams := make([]string, chaosStreams)
		for i := range streams {
			streams[i] = open(ctx, e.store, 0)
		}
		var written atomic.Int64
		written.Store(chaosStreams)
		writersDone := make(chan struct{})
		go func() {
			defer GinkgoRecover()
			defer close(writersDone)
			var wg sync.WaitGroup
			for w := range chaosWriters {
				wg.Go(func() {
					defer GinkgoRecover()
					write(ctx, e.store, streams, &written, uint64(w), 0)
				})
			}
			wg.Wait()
		}()

		// The lease must outlast a batch on a loaded machine (two busy
		// cores, -race), or the two workers only fence each other off. It
		// costs the spec no waiting: a killed worker comes back under its
		// name and takes over its own lease at once, and every fourth one
		// stops cleanly, handing its lease to the other at once.
		cfg := quiet()
		cfg.RecheckInterval, cfg.PollInterval = 50*time.Millisecond, 20*time.Millisecond
		p := projections.Projection{Name: "chaos", Handler: balanceHandler(), BatchSize: 50}
		slots := []*mire.Store{e.store, e.another(ctx)}
		stops := make([]func(), len(slots))
		launches := 0
		launch := func(slot int) {
			c := *cfg
			c.Owner = []string{"A", "B"}[slot] // a restarted worker comes back under its name
			r, err := projections.NewRunner(slots[slot], &c, p)
			Expect(err).NotTo(HaveOccurred())
			if launches++; launches%4 != 0 {
				projections.CrashOnStop(r)
			}
			stops[slot] = start(r)
		}
		launch(0)
		launch(1)
		var last int64
		for round := range chaosRounds {
			// Wait for progress (or the end of the log), then kill one.
			Eventually(statusFn(e.store, "chaos")).WithContext(ctx).WithTimeout(patience(cfg)).Should(
				Or(HaveField("Delivered", BeNumerically(">", last)), HaveField("Lag", BeZero())))
			st := status(ctx, e.store, "chaos")
			Expect(st.State).To(Equal(projections.Running), st.LastError)
			last = st.Delivered
			slot := round % 2
			if round%3 == 0 && st.Owner != "" {
				slot = map[string]int{"A": 0, "B": 1}[st.Owner] // the active one, mid-batch
			}
			stops[slot]()
			launch(slot)
		}
		Eventually(writersDone).WithContext(ctx).WithTimeout(2 * time.Minute).Should(BeClosed())
		Eventually(statusFn(e.store, "chaos")).WithContext(ctx).WithTimeout(time.Minute + patience(cfg)).Should(
			And(HaveField("Lag", BeZero()), HaveField("Held", BeZero())))
		st := status(ctx, e.store, "chaos")
		Expect(st.State).To(Equal(projections.Running), st.LastError)
		Expect(st.Fence).To(BeNumerically(">", 2), "workers took over from each other")

		total := mtestCount(ctx, e, `SELECT count(*) FROM mire.events`)
		Expect(total).To(BeNumerically(">=", chaosEvents))
		Expect(st.Delivered).To(BeEquivalentTo(total), "every event exactly once")
		Expect(mtestCount(ctx, e, `SELECT sum(applied)::int FROM balances`)).To(Equal(total))
		Expect(balances(ctx, e.pool)).To(Equal(foldedBalances(ctx, e.pool)))
	})
})

// write appends events until written reaches chaosEvents: mostly single
// deposits, and one in ten a transaction over two streams, whose second
// append comes from a transaction that took its id early. It waits pace
// after each write.
func write(ctx context.Context, store *mire.Store, streams []string, written *atomic.Int64, seed uint64, pace time.Duration) {
	rng := rand.New(rand.NewPCG(seed, 42))
	for written.Load() < chaosEvents {
		time.Sleep(pace)
		i, j := rng.IntN(len(streams)), rng.IntN(len(streams))
		if rng.IntN(10) > 0 || i == j {
			_, err := store.Append(ctx, streams[i], mire.StreamExists, Deposited{Amount: 1 + rng.Int64N(9)})
			Expect(err).NotTo(HaveOccurred())
			written.Add(1)
			continue
		}
		pair := []string{streams[i], streams[j]}
		slices.Sort(pair) // one lock order: no deadlocks between writers
		err := store.InTx(ctx, nil, func(scope *mire.TxScope) error {
			if _, err := store.AppendTx(ctx, scope.Tx(), pair[0], mire.StreamExists, Deposited{Amount: 5}); err != nil {
				return err
			}
			_, err := store.AppendTx(ctx, scope.Tx(), pair[1], mire.StreamExists, Withdrawn{Amount: 2})
			return err
		})
		Expect(err).NotTo(HaveOccurred())
		written.Add(2)
	}
}
