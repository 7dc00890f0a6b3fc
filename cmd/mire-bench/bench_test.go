package main

import (
	"bytes"
	"os"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/mire-go/mire/internal/mtest"
	"github.com/mire-go/mire/pgtest"
)

// db gives the specs a throwaway server; each case makes its own database.
var db = mtest.Suite()

// tinyScale keeps each workload to a few ops, so the specs only prove the
// harness still runs, not how fast.
var tinyScale = scale{Streams: 20, StreamLen: 3, Batch: 10, LongLen: 30, Accounts: 5, ProjEvents: 120, ProjUpsert: 60, SnapLen: 300, ReadAll: 250}

var _ = Describe("the benchmark harness", Ordered, func() {
	opts := &options{duration: 60 * time.Millisecond, rounds: 2, warmup: 10 * time.Millisecond}
	var e *env

	// One database serves every workload (emptied between them), since a
	// fresh one per case, as the command makes, costs more than the case.
	BeforeAll(func(ctx SpecContext) {
		var err error
		e, err = newEnv(ctx, db.ServerURL, tinyScale, 12)
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(func(ctx SpecContext) { Expect(e.close(ctx)).To(Succeed()) })
	})
	BeforeEach(func(ctx SpecContext) { Expect(e.empty(ctx)).To(Succeed()) })

	for _, w := range workloads {
		if w.procs != nil {
			continue // partitions_test.go
		}
		It("runs workload "+w.id+" for mire and the baseline", func(ctx SpecContext) {
			writers := 2
			if len(w.writers) > 0 {
				writers = w.writers[0]
			}
			r, err := runCase(ctx, e, opts, w, writers)
			Expect(err).NotTo(HaveOccurred())
			Expect(r.Mire.Ops).To(BeNumerically(">=", int64(2*writers)), "each round runs at least one op per writer")
			Expect(r.Baseline.Ops).To(BeNumerically(">=", int64(2*writers)))
			Expect(r.Mire.Units).To(BeNumerically(">=", r.Mire.Ops))
			Expect(r.Ratio).To(BeNumerically(">", 0))
			if w.heap {
				Expect(r.Mire.PeakHeap).To(BeNumerically(">", 0))
			}

			var out bytes.Buffer
			printTable(&out, []*result{r})
			Expect(out.String()).To(ContainSubstring("| " + w.id + " | " + w.title + " |"))
		})
	}

	It("measures loads on a primary with a streaming replica", func(ctx SpecContext) {
		if _, err := pgtest.FindBinaries(); err != nil && os.Getenv(pgtest.EnvTestDatabase) != "" {
			Skip("a replica needs the PostgreSQL server programs here: " + err.Error())
		}
		o := &options{duration: 100 * time.Millisecond, rounds: 2, pause: 100 * time.Millisecond}
		var log bytes.Buffer
		f, err := runReplica(ctx, o, 20, &log)
		Expect(err).NotTo(HaveOccurred())
		Expect(f.PrimaryLoadsPerSec).To(BeNumerically(">", 0))
		Expect(f.ReplicaLoadsPerSec).To(BeNumerically(">", 0))
		Expect(f.TokenLoad).To(BeNumerically(">", 0))
		// Readers with the latest token fall back while replay is paused.
		Expect(f.TokenPhases[1].Fallbacks).To(BeNumerically(">", 0))
		var out bytes.Buffer
		printReplica(&out, f)
		Expect(out.String()).To(ContainSubstring("8 readers: primary alone"))
	})

	It("parses its flags, with -short defaults", func() {
		o, err := parseFlags([]string{"-short", "-workloads", "1,9,10r", "-writers", "1,4"})
		Expect(err).NotTo(HaveOccurred())
		Expect(o.workloads).To(Equal([]string{"1", "9", "10r"}))
		Expect(o.writers).To(Equal([]int{1, 4}))
		Expect(o.rounds).To(Equal(2))
		Expect(o.durable).To(BeTrue())

		_, err = parseFlags([]string{"-workloads", "42"})
		Expect(err).To(MatchError(ContainSubstring(`unknown workload "42"`)))
	})
})
