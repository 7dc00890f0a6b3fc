package pgtest_test

import (
	"context"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/jackc/pgx/v5"
	"github.com/mire-go/mire/pgtest"
)

var _ = Describe("A streaming replica", Ordered, func() {
	var primary, replica *pgtest.Server
	var primaryDB, replicaDB string
	BeforeAll(func(ctx SpecContext) {
		var err error
		primary, err = pgtest.StartThrowaway(ctx, nil)
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(primary.Stop)
		replica, err = pgtest.StartReplica(ctx, primary, nil)
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(replica.Stop)

		var drop func(context.Context) error
		primaryDB, drop, err = pgtest.NewDatabase(ctx, primary.URL())
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(drop)
		replicaDB, err = replica.DatabaseURL(primaryDB)
		Expect(err).NotTo(HaveOccurred())
		Expect(replica.CatchUp(ctx)).To(Succeed())
	})

	count := func(ctx context.Context, url string) int {
		conn, err := pgx.Connect(ctx, url)
		Expect(err).NotTo(HaveOccurred())
		defer conn.Close(ctx)
		var n int
		Expect(conn.QueryRow(ctx, `SELECT count(*) FROM mire.streams`).Scan(&n)).To(Succeed())
		return n
	}
	insert := func(ctx context.Context, id string) {
		conn, err := pgx.Connect(ctx, primaryDB)
		Expect(err).NotTo(HaveOccurred())
		defer conn.Close(ctx)
		_, err = conn.Exec(ctx, `INSERT INTO mire.streams (stream_id, category, version) VALUES ($1, 'x', 1)`, id)
		Expect(err).NotTo(HaveOccurred())
	}

	It("is a read-only hot standby with the primary's databases", func(ctx SpecContext) {
		conn, err := pgx.Connect(ctx, replicaDB)
		Expect(err).NotTo(HaveOccurred())
		defer conn.Close(ctx)
		var inRecovery bool
		Expect(conn.QueryRow(ctx, `SELECT pg_is_in_recovery()`).Scan(&inRecovery)).To(Succeed())
		Expect(inRecovery).To(BeTrue())
		_, err = conn.Exec(ctx, `INSERT INTO mire.streams (stream_id, category, version) VALUES ('x-1', 'x', 1)`)
		Expect(err).To(MatchError(ContainSubstring("read-only transaction")))
	})

	It("shows nothing new while its replay is paused, and catches up after", func(ctx SpecContext) {
		Expect(replica.PauseReplay(ctx)).To(Succeed())
		DeferCleanup(replica.ResumeReplay)
		before := count(ctx, replicaDB)
		insert(ctx, "x-paused")
		Expect(count(ctx, primaryDB)).To(Equal(before + 1))
		Expect(replica.CatchUp(ctx)).To(MatchError(ContainSubstring("replay is paused")))
		Expect(count(ctx, replicaDB)).To(Equal(before))

		Expect(replica.ResumeReplay(ctx)).To(Succeed())
		Expect(replica.CatchUp(ctx)).To(Succeed())
		Expect(count(ctx, replicaDB)).To(Equal(before + 1))
	})

	It("refuses what only a replica can do on a primary", func(ctx SpecContext) {
		Expect(primary.CatchUp(ctx)).To(MatchError(ContainSubstring("not a replica")))
		Expect(primary.PauseReplay(ctx)).To(MatchError(ContainSubstring("not a replica")))
		_, err := pgtest.StartReplica(ctx, replica, nil)
		Expect(err).To(MatchError(ContainSubstring("not an external server or a replica")))
	})

	It("stops on its own, leaving the primary running, and removes its files", func(ctx SpecContext) {
		dir := replica.Dir()
		Expect(replica.Stop()).To(Succeed())
		Expect(dir).NotTo(BeADirectory())
		insert(ctx, "x-after-stop")
		Expect(count(ctx, primaryDB)).To(BeNumerically(">=", 2))
	})
})

var _ = Describe("A synchronous streaming replica", func() {
	It("has applied every commit by the time the commit returns", func(ctx SpecContext) {
		primary, err := pgtest.StartThrowaway(ctx, nil)
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(primary.Stop)
		replica, err := pgtest.StartReplica(ctx, primary, &pgtest.ReplicaOptions{Synchronous: true})
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(replica.Stop) // before the primary's: commits wait for it

		conn, err := pgx.Connect(ctx, primary.URL())
		Expect(err).NotTo(HaveOccurred())
		defer conn.Close(ctx)
		rconn, err := pgx.Connect(ctx, replica.URL())
		Expect(err).NotTo(HaveOccurred())
		defer rconn.Close(ctx)
		Expect(conn.Exec(ctx, `CREATE TABLE t (n int)`)).Error().NotTo(HaveOccurred())
		for n := range 20 {
			Expect(conn.Exec(ctx, `INSERT INTO t VALUES ($1)`, n)).Error().NotTo(HaveOccurred())
			var seen int
			Expect(rconn.QueryRow(ctx, `SELECT count(*) FROM t`).Scan(&seen)).To(Succeed())
			Expect(seen).To(Equal(n + 1))
		}
	})
})

var _ = DescribeTable("The WAL position a replica must replay past",
	func(insert, want string) {
		got, err := pgtest.ReplayTarget(insert)
		Expect(err).NotTo(HaveOccurred())
		Expect(got).To(Equal(want))
	},
	Entry("mid-page: the position itself", "0/16B3748", "0/16B3748"),
	Entry("just after a page header: the page boundary", "0/16B4018", "0/16B4000"),
	Entry("just after a segment's long header: the boundary", "1/1000028", "1/1000000"),
	Entry("past the headers: the position itself", "0/16B4048", "0/16B4048"),
)
