package pgschema_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/mire-go/mire/internal/mtest"
	"github.com/mire-go/mire/pgschema"
)

var db = mtest.Suite()

var _ = Describe("Migrate", func() {
	var pool *pgxpool.Pool
	BeforeEach(func(ctx SpecContext) { _, pool = db.Empty(ctx) })

	applied := func(ctx context.Context, schema string) []int {
		rows, err := pool.Query(ctx, `SELECT version FROM `+schema+`.schema_migrations ORDER BY version`)
		Expect(err).NotTo(HaveOccurred())
		var out []int
		for rows.Next() {
			var v int
			Expect(rows.Scan(&v)).To(Succeed())
			out = append(out, v)
		}
		Expect(rows.Err()).NotTo(HaveOccurred())
		return out
	}

	It("succeeds from 8 goroutines at once on a fresh database, applying each migration once", func(ctx SpecContext) {
		var wg sync.WaitGroup
		errs := make(chan error, 8)
		for range 8 {
			wg.Go(func() { errs <- pgschema.Migrate(ctx, pool, "mire") })
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			Expect(err).NotTo(HaveOccurred())
		}
		want := make([]int, pgschema.Latest())
		for i := range want {
			want[i] = i + 1
		}
		Expect(applied(ctx, "mire")).To(Equal(want))
		current, err := pgschema.Current(ctx, pool, "mire")
		Expect(err).NotTo(HaveOccurred())
		Expect(current).To(Equal(pgschema.Latest()))
	})

	It("takes no advisory or DDL lock once the schema is current", func(ctx SpecContext) {
		Expect(pgschema.Migrate(ctx, pool, "mire")).To(Succeed())

		// Another session holds the migration lock and an exclusive lock on
		// the tables; a migration that needed either would wait.
		holder, err := pool.Begin(ctx)
		Expect(err).NotTo(HaveOccurred())
		defer holder.Rollback(ctx)
		_, err = holder.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtextextended('mire.migrate:' || 'mire', 0))`)
		Expect(err).NotTo(HaveOccurred())
		_, err = holder.Exec(ctx, `LOCK TABLE mire.events, mire.streams IN ACCESS EXCLUSIVE MODE`)
		Expect(err).NotTo(HaveOccurred())

		quick, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		Expect(pgschema.Migrate(quick, pool, "mire")).To(Succeed())
	})

	It("migrates into a schema of another name, quoted", func(ctx SpecContext) {
		Expect(pgschema.Migrate(ctx, pool, "Event Store")).To(Succeed())
		Expect(applied(ctx, `"Event Store"`)).To(HaveLen(pgschema.Latest()))
		current, err := pgschema.Current(ctx, pool, "mire")
		Expect(err).NotTo(HaveOccurred())
		Expect(current).To(BeZero(), "the default schema was not touched")
	})

	// longest is the longest schema name whose NOTIFY channel,
	// "mire_events:" + name, fits in a Postgres identifier (63 bytes).
	longest := 63 - len("mire_events:")

	schemas := func(ctx context.Context) int {
		var n int
		Expect(pool.QueryRow(ctx, `SELECT count(*) FROM pg_namespace`).Scan(&n)).To(Succeed())
		return n
	}

	DescribeTable("refuses a bad schema name with an error naming it, touching nothing",
		func(ctx SpecContext, name, message string) {
			before := schemas(ctx)
			err := pgschema.Migrate(ctx, pool, name)
			Expect(err).To(MatchError(ContainSubstring(fmt.Sprintf("schema name %q", name))))
			Expect(err).To(MatchError(ContainSubstring(message)))
			Expect(pgschema.ValidateSchema(name)).To(MatchError(err.Error()))
			_, err = pgschema.Current(ctx, pool, name)
			Expect(err).To(MatchError(ContainSubstring(fmt.Sprintf("schema name %q", name))))
			Expect(schemas(ctx)).To(Equal(before))
		},
		Entry("empty", "", "must be 1 to"),
		Entry("one byte too long for its NOTIFY channel", strings.Repeat("s", longest+1), fmt.Sprintf("must be 1 to %d bytes", longest)),
		Entry("too long for an identifier", strings.Repeat("s", 64), fmt.Sprintf("must be 1 to %d bytes", longest)),
		Entry("not UTF-8", "mire\xff", "not valid UTF-8"),
		Entry("with a double quote", "a\"b", `contains '"'`),
		Entry("with a control character", "a\nb", `contains '\n'`),
		Entry("reserved by Postgres", "pg_mire", `starts with "pg_"`),
	)

	It("migrates a schema name of the longest length, in multibyte characters too, whose NOTIFY channel works", func(ctx SpecContext) {
		for _, name := range []string{strings.Repeat("s", longest), strings.Repeat("é", longest/2) + strings.Repeat("s", longest%2)} {
			Expect(name).To(HaveLen(longest))
			Expect(pgschema.Migrate(ctx, pool, name)).To(Succeed())
			Expect(pgschema.Current(ctx, pool, name)).To(Equal(pgschema.Latest()))
			var schema string
			Expect(pool.QueryRow(ctx, `SELECT nspname FROM pg_namespace WHERE nspname = $1`, name).Scan(&schema)).To(Succeed(), "not truncated")
			_, err := pool.Exec(ctx, `SELECT pg_notify($1, '')`, "mire_events:"+name)
			Expect(err).NotTo(HaveOccurred())
		}
	})

	It("leaves nothing half-applied when cancelled mid-migration, and a later Migrate succeeds", func(ctx SpecContext) {
		// Another session creates one of the first migration's tables and
		// keeps its transaction open: the migration creates the tables
		// before it, then waits on that one.
		_, err := pool.Exec(ctx, `CREATE SCHEMA mire`)
		Expect(err).NotTo(HaveOccurred())
		holder, err := pool.Begin(ctx)
		Expect(err).NotTo(HaveOccurred())
		defer holder.Rollback(ctx)
		_, err = holder.Exec(ctx, `CREATE TABLE mire.snapshots (held int)`)
		Expect(err).NotTo(HaveOccurred())

		migrating, cancel := context.WithCancel(ctx)
		defer cancel()
		done := make(chan error, 1)
		go func() { done <- pgschema.Migrate(migrating, pool, "mire") }()
		Eventually(func(ctx context.Context) int {
			var n int
			Expect(pool.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity
				WHERE datname = current_database() AND wait_event_type = 'Lock' AND wait_event = 'transactionid'`).Scan(&n)).To(Succeed())
			return n
		}).WithContext(ctx).Should(Equal(1), "the migration waits on the held table")
		tables := func(ctx context.Context) []string {
			rows, err := pool.Query(ctx, `SELECT tablename FROM pg_tables WHERE schemaname = 'mire' ORDER BY 1`)
			Expect(err).NotTo(HaveOccurred())
			names, err := pgx.CollectRows(rows, pgx.RowTo[string])
			Expect(err).NotTo(HaveOccurred())
			return names
		}
		Expect(tables(ctx)).To(Equal([]string{"schema_migrations"}), "the tables created so far are not visible")

		cancel()
		var migrateErr error
		Eventually(done).WithContext(ctx).Should(Receive(&migrateErr))
		Expect(migrateErr).To(MatchError(ContainSubstring("0001_init")))
		Expect(holder.Rollback(ctx)).To(Succeed())

		Expect(tables(ctx)).To(Equal([]string{"schema_migrations"}), "nothing of the migration is left")
		Expect(applied(ctx, "mire")).To(BeEmpty())
		Expect(pgschema.Migrate(ctx, pool, "mire")).To(Succeed())
		Expect(applied(ctx, "mire")).To(HaveLen(pgschema.Latest()))
		Expect(tables(ctx)).To(ContainElements("events", "schema_migrations", "snapshots", "streams", "subscriptions"))
	})
})
