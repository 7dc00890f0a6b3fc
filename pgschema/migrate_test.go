package pgschema_test

import (
	"context"
	"sync"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

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

	It("refuses a bad schema name", func(ctx SpecContext) {
		Expect(pgschema.Migrate(ctx, pool, "")).To(MatchError(ContainSubstring(`schema name "" must be 1 to 63 bytes`)))
		Expect(pgschema.Migrate(ctx, pool, "a\"b")).To(MatchError(ContainSubstring(`contains '"'`)))
	})

	It("leaves nothing half-applied when cancelled", func(ctx SpecContext) {
		cancelled, cancel := context.WithCancel(ctx)
		cancel()
		Expect(pgschema.Migrate(cancelled, pool, "mire")).NotTo(Succeed())
		current, err := pgschema.Current(ctx, pool, "mire")
		Expect(err).NotTo(HaveOccurred())
		Expect(current).To(BeZero())
	})
})
