package projections_test

import (
	"context"
	"errors"
	"fmt"
	"sync"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/mire-go/mire"
	"github.com/mire-go/mire/projections"
)

// partitioned returns a projection of n partitions keeping the balances
// read model and logging every event it handles in the table handled (in
// handling order, through the checkpoint's transaction).
func partitioned(name string, n, batch int) projections.Projection {
	balances := balanceHandler()
	return projections.Projection{Name: name, Partitions: n, BatchSize: batch,
		Handler: projections.HandlerFunc(func(ctx context.Context, tx pgx.Tx, env mire.Envelope) error {
			if _, err := tx.Exec(ctx, `INSERT INTO handled (position, stream, version) VALUES ($1, $2, $3)`,
				env.Position, env.StreamID, env.Version); err != nil {
				return err
			}
			return balances.Handle(ctx, tx, env)
		}),
		Truncate: func(ctx context.Context, tx pgx.Tx) error {
			_, err := tx.Exec(ctx, `TRUNCATE balances, handled`)
			return err
		}}
}

// partitionEnv is a fresh database with the balances read model, the
// handled log (a position handled twice is a primary key violation, which
// fails the batch) and the index of n partitions.
func partitionEnv(ctx context.Context, n int) env {
	e := freshEnv(ctx)
	_, err := e.pool.Exec(ctx, `CREATE TABLE handled (
		seq bigserial, position bigint PRIMARY KEY, stream text NOT NULL, version bigint NOT NULL)`)
	Expect(err).NotTo(HaveOccurred())
	Expect(projections.MigratePartitions(ctx, e.store, n)).To(Succeed())
	return e
}

// expectExactOrderedLog checks the handled log against the events: every
// event handled exactly once, and each stream's versions handled in
// order; and the balances read model against the fold of the log.
func expectExactOrderedLog(ctx context.Context, pool *pgxpool.Pool) {
	var events, handled, missing, inversions int
	Expect(pool.QueryRow(ctx, `SELECT
		(SELECT count(*) FROM mire.events),
		(SELECT count(*) FROM handled),
		(SELECT count(*) FROM mire.events e WHERE NOT EXISTS (SELECT 1 FROM handled h WHERE h.position = e.position)),
		(SELECT count(*) FROM (SELECT version, lag(version) OVER (PARTITION BY stream ORDER BY seq) AS prev FROM handled) v
		 WHERE v.prev IS NOT NULL AND v.version <> v.prev + 1)`).Scan(&events, &handled, &missing, &inversions)).To(Succeed())
	Expect(missing).To(BeZero(), "events never handled")
	Expect(handled).To(Equal(events), "every event handled exactly once")
	Expect(inversions).To(BeZero(), "stream versions handled out of order")
	Expect(balances(ctx, pool)).To(Equal(foldedBalances(ctx, pool)))
}

// owners returns, per owner, how many partitions of the projection it
// holds.
func owners(st projections.Status) map[string]int {
	out := map[string]int{}
	for _, p := range st.ByPartition {
		out[p.Owner]++
	}
	return out
}

func ownersFn(store *mire.Store, name string) func(context.Context) (map[string]int, error) {
	return func(ctx context.Context) (map[string]int, error) {
		st, err := projections.StatusOf(ctx, store, name)
		return owners(st), err
	}
}

// earlyXid appends to stream from a transaction that took its id before
// another transaction appended to stream and committed: its event sorts
// before its predecessor in (xid, position) order.
func earlyXid(ctx context.Context, store *mire.Store, pool *pgxpool.Pool, stream string) {
	tx, err := pool.Begin(ctx)
	Expect(err).NotTo(HaveOccurred())
	defer func() { _ = tx.Rollback(ctx) }()
	_, err = tx.Exec(ctx, `SELECT pg_current_xact_id()`)
	Expect(err).NotTo(HaveOccurred())
	deposit(ctx, store, stream, 1) // commits with a later xid
	_, err = store.AppendTx(ctx, tx, stream, mire.StreamExists, Deposited{Amount: 2})
	Expect(err).NotTo(HaveOccurred())
	Expect(tx.Commit(ctx)).To(Succeed())
}

var _ = Describe("Partitioned projections", func() {
	It("puts every stream in one partition and keeps its version order, early transactions and batches of 1 included", func(ctx SpecContext) {
		const n = 4
		e := partitionEnv(ctx, n)
		streams := make([]string, 24)
		for i := range streams {
			streams[i] = open(ctx, e.store, 10)
		}
		for round := range 3 {
			for i, s := range streams {
				if (i+round)%3 == 0 {
					earlyXid(ctx, e.store, e.pool, s)
				} else {
					deposit(ctx, e.store, s, 1)
				}
			}
		}
		r := newRunner(e.store, "solo", partitioned("split", n, 1))
		Expect(r.CatchUp(ctx)).To(Succeed())
		expectExactOrderedLog(ctx, e.pool)

		// Each partition delivered exactly the events of the streams the
		// hash puts in it, and the partitions share the streams.
		st := status(ctx, e.store, "split")
		Expect(st.Partitions).To(Equal(n))
		Expect(st.ByPartition).To(HaveLen(n))
		perPartition := map[int]int64{}
		rows, err := e.pool.Query(ctx, `SELECT (hashtext(stream_id) & 2147483647) % 4, count(*) FROM mire.events GROUP BY 1`)
		Expect(err).NotTo(HaveOccurred())
		for rows.Next() {
			var p int
			var c int64
			Expect(rows.Scan(&p, &c)).To(Succeed())
			perPartition[p] = c
		}
		Expect(rows.Err()).NotTo(HaveOccurred())
		Expect(len(perPartition)).To(BeNumerically(">", 1), "24 streams in more than one partition")
		var total int64
		for _, p := range st.ByPartition {
			Expect(p.Delivered).To(Equal(perPartition[p.Partition]), "partition %d", p.Partition)
			total += p.Delivered
		}
		Expect(st.Delivered).To(Equal(total))
		Expect(st.Lag).To(BeZero())
	})

	It("spreads the partitions over the live runners, and moves a runner's share when it stops, dies or joins", func(ctx SpecContext) {
		const n = 12
		e := partitionEnv(ctx, n)
		p := partitioned("spread", n, 50)
		runners := map[string]func(){}
		launch := func(owner string, crash bool) {
			r := newRunner(e.another(ctx), owner, p)
			if crash {
				projections.CrashOnStop(r)
			}
			runners[owner] = start(r)
		}
		for _, o := range []string{"a", "b", "c"} {
			launch(o, o == "c")
		}
		s := open(ctx, e.store, 1)
		Eventually(ownersFn(e.store, "spread")).WithContext(ctx).Should(Equal(map[string]int{"a": 4, "b": 4, "c": 4}))

		By("a clean stop hands the share over to the others")
		runners["a"]()
		Eventually(ownersFn(e.store, "spread")).WithContext(ctx).Should(Equal(map[string]int{"b": 6, "c": 6}))

		By("a joining runner gets its share")
		launch("d", false)
		Eventually(ownersFn(e.store, "spread")).WithContext(ctx).Should(Equal(map[string]int{"b": 4, "c": 4, "d": 4}))

		By("a dead runner's share moves after its lease and membership lapse")
		runners["c"]() // stops without releasing or leaving, as a crash would
		Eventually(ownersFn(e.store, "spread")).WithContext(ctx).Should(Equal(map[string]int{"b": 6, "d": 6}))

		deposit(ctx, e.store, s, 5)
		Eventually(statusFn(e.store, "spread")).WithContext(ctx).Should(HaveField("Lag", BeZero()))
		expectExactOrderedLog(ctx, e.pool)
	})

	It("hands a partition over between batches, never in the middle of one", func(ctx SpecContext) {
		const n = 2
		e := partitionEnv(ctx, n)
		release := make(chan struct{})
		var once sync.Once
		entered := make(chan string, 1)
		p := partitioned("handover", n, 100)
		inner := p.Handler
		p.Handler = projections.HandlerFunc(func(ctx context.Context, tx pgx.Tx, env mire.Envelope) error {
			once.Do(func() {
				entered <- env.StreamID
				<-release
			})
			return inner.Handle(ctx, tx, env)
		})
		r := newRunner(e.store, "a", p)
		start(r)
		s := open(ctx, e.store, 1)
		var stream string
		Eventually(entered).WithContext(ctx).Should(Receive(&stream))
		var part int
		Expect(e.pool.QueryRow(ctx, `SELECT (hashtext($1) & 2147483647) % 2`, stream).Scan(&part)).To(Succeed())
		// Runner b joins; by name order, a keeps partition 0 and b takes 1.
		start(newRunner(e.another(ctx), "b", p))
		cfg := quiet()
		Consistently(func(ctx context.Context) string {
			return status(ctx, e.store, "handover").ByPartition[part].Owner
		}).WithContext(ctx).WithTimeout(5*cfg.RecheckInterval).Should(Equal("a"), "the batch in flight keeps its lease")
		close(release)
		Eventually(ownersFn(e.store, "handover")).WithContext(ctx).Should(Equal(map[string]int{"a": 1, "b": 1}))
		deposit(ctx, e.store, s, 1)
		Eventually(statusFn(e.store, "handover")).WithContext(ctx).Should(HaveField("Lag", BeZero()))
		expectExactOrderedLog(ctx, e.pool)
	})

	It("halts only the partition whose handler keeps failing; the others go on, and status says which", func(ctx SpecContext) {
		const n = 4
		e := partitionEnv(ctx, n)
		poison := open(ctx, e.store, 1)
		var bad int
		Expect(e.pool.QueryRow(ctx, `SELECT (hashtext($1) & 2147483647) % 4`, poison).Scan(&bad)).To(Succeed())
		p := partitioned("halting", n, 10)
		inner := p.Handler
		p.Handler = projections.HandlerFunc(func(ctx context.Context, tx pgx.Tx, env mire.Envelope) error {
			if env.StreamID == poison && env.Version == 2 {
				return errors.New("poison")
			}
			return inner.Handle(ctx, tx, env)
		})
		start(newRunner(e.store, "a", p))
		deposit(ctx, e.store, poison, 1)
		Eventually(statusFn(e.store, "halting")).WithContext(ctx).Should(HaveField("State", projections.Halted))
		st := status(ctx, e.store, "halting")
		Expect(st.LastError).To(HavePrefix(fmt.Sprintf("partition %d: ", bad)))
		Expect(st.FailedEvent).To(HaveField("StreamID", poison))
		for _, ps := range st.ByPartition {
			if ps.Partition == bad {
				Expect(ps.State).To(Equal(projections.Halted))
			} else {
				Expect(ps.State).To(Equal(projections.Running))
			}
		}
		// Streams of the other partitions are still delivered.
		var others []string
		for len(others) < 6 {
			s := open(ctx, e.store, 3)
			var part int
			Expect(e.pool.QueryRow(ctx, `SELECT (hashtext($1) & 2147483647) % 4`, s).Scan(&part)).To(Succeed())
			if part != bad {
				others = append(others, s)
			}
		}
		Eventually(func(ctx context.Context) (int, error) {
			var c int
			err := e.pool.QueryRow(ctx, `SELECT count(*) FROM balances WHERE stream = ANY($1)`, others).Scan(&c)
			return c, err
		}).WithContext(ctx).Should(Equal(len(others)))
		Expect(status(ctx, e.store, "halting").ByPartition[bad].State).To(Equal(projections.Halted))
	})

	It("refuses to run with another partition count than stored, until a Rebuild starts it over with the new one", func(ctx SpecContext) {
		e := partitionEnv(ctx, 4)
		Expect(projections.MigratePartitions(ctx, e.store, 8)).To(Succeed())
		for range 5 {
			deposit(ctx, e.store, open(ctx, e.store, 2), 1)
		}
		Expect(newRunner(e.store, "old", partitioned("resized", 4, 10)).CatchUp(ctx)).To(Succeed())

		r8 := newRunner(e.store, "new", partitioned("resized", 8, 10))
		err := r8.Run(ctx)
		Expect(err).To(MatchError(projections.ErrPartitionCount))
		Expect(err).To(MatchError(ContainSubstring("stored with 4 partitions and declared with 8")))
		Expect(r8.CatchUp(ctx)).To(MatchError(projections.ErrPartitionCount))
		Expect(status(ctx, e.store, "resized").Partitions).To(Equal(4), "nothing changed")

		fenceBefore := status(ctx, e.store, "resized").Fence
		Expect(r8.Rebuild(ctx, "resized", &projections.RebuildOpts{NoWait: true})).To(Succeed())
		st := status(ctx, e.store, "resized")
		Expect(st.Partitions).To(Equal(8))
		Expect(st.ByPartition[0].Fence).To(BeNumerically(">", fenceBefore), "fences above the old rows'")
		Expect(r8.CatchUp(ctx)).To(Succeed())
		expectExactOrderedLog(ctx, e.pool)

		By("a runner of the old count now refuses in turn")
		Expect(newRunner(e.store, "old", partitioned("resized", 4, 10)).Run(ctx)).To(MatchError(projections.ErrPartitionCount))

		By("as does a runner still running the projection unpartitioned, standing by, once its check comes round")
		one := partitioned("resized", 1, 10)
		Expect(projections.NewRunner(e.store, quiet(), one)).Error().NotTo(HaveOccurred())
		r1 := newRunner(e.store, "one", one)
		Expect(r1.Rebuild(ctx, "resized", &projections.RebuildOpts{NoWait: true})).To(Succeed())
		Expect(status(ctx, e.store, "resized").Partitions).To(Equal(1))
		runErr := make(chan error, 1)
		go func() { runErr <- r1.Run(ctx) }()
		Eventually(statusFn(e.store, "resized")).WithContext(ctx).Should(HaveField("Owner", "one"))
		r8b := newRunner(e.store, "new", partitioned("resized", 8, 10))
		Expect(r8b.Rebuild(ctx, "resized", &projections.RebuildOpts{NoWait: true})).To(Succeed())
		Eventually(runErr).WithContext(ctx).Should(Receive(MatchError(projections.ErrPartitionCount)))
	})

	It("refuses to run a partitioned projection whose index is missing, naming the call that creates it", func(ctx SpecContext) {
		e := partitionEnv(ctx, 4)
		err := newRunner(e.store, "", partitioned("unindexed", 6, 10)).Run(ctx)
		Expect(err).To(MatchError(mire.ErrNotMigrated))
		Expect(err).To(MatchError(ContainSubstring("projections.MigratePartitions(ctx, store, 6)")))
		_, err = projections.StatusOf(ctx, e.store, "unindexed")
		Expect(err).To(MatchError(mire.ErrNotFound), "nothing created")
	})

	It("creates a partition index once when many processes ask at the same time, and refuses a count out of range", func(ctx SpecContext) {
		e := freshEnv(ctx)
		var wg sync.WaitGroup
		errs := make([]error, 6)
		for i := range errs {
			wg.Go(func() { errs[i] = projections.MigratePartitions(ctx, e.another(ctx), 16) })
		}
		wg.Wait()
		for _, err := range errs {
			Expect(err).NotTo(HaveOccurred())
		}
		var valid int
		Expect(e.pool.QueryRow(ctx, `SELECT count(*) FROM pg_index WHERE indexrelid = 'mire.events_heads_p16_idx'::regclass AND indisvalid`).Scan(&valid)).To(Succeed())
		Expect(valid).To(Equal(1))
		Expect(projections.MigratePartitions(ctx, e.store, 0)).To(MatchError(ContainSubstring("count 0 out of range 1..1024")))
		Expect(projections.MigratePartitions(ctx, e.store, 1)).To(Succeed())
		_, err := projections.NewRunner(e.store, nil, projections.Projection{Name: "x", Partitions: 2000, Handler: balanceHandler()})
		Expect(err).To(MatchError(ContainSubstring("partitions 2000 out of range 1..1024")))
	})

	It("resets, resumes and moves every partition in one transaction", func(ctx SpecContext) {
		const n = 4
		e := partitionEnv(ctx, n)
		for range 8 {
			deposit(ctx, e.store, open(ctx, e.store, 2), 1)
		}
		Expect(newRunner(e.store, "a", partitioned("whole", n, 10)).CatchUp(ctx)).To(Succeed())
		before := status(ctx, e.store, "whole")
		Expect(projections.ResetCheckpoint(ctx, e.store, "whole")).To(Succeed())
		st := status(ctx, e.store, "whole")
		for i, p := range st.ByPartition {
			Expect(p.Position).To(BeZero())
			Expect(p.Delivered).To(BeZero())
			Expect(p.Fence).To(Equal(before.ByPartition[i].Fence + 1))
		}
		Expect(st.Lag).To(Equal(before.Delivered))
		Expect(projections.MoveToWatermark(ctx, e.store, "whole")).To(Succeed())
		Expect(status(ctx, e.store, "whole").Lag).To(BeZero())
		Expect(projections.Resume(ctx, e.store, "whole")).To(Succeed())
		for i, p := range status(ctx, e.store, "whole").ByPartition {
			Expect(p.Fence).To(Equal(before.ByPartition[i].Fence + 3))
		}
	})
})
