// Package mtest wires pgtest into our own Ginkgo suites through
// miretest.Suite (one throwaway server per suite run, one database per
// parallel process, fresh databases for specs that need an empty log),
// adding empty databases for the migrator's specs and row counts.
package mtest

import (
	"context"
	"crypto/rand"
	"fmt"
	"strings"

	"github.com/onsi/ginkgo/v2"
	"github.com/onsi/gomega"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/mire-go/mire"
	"github.com/mire-go/mire/miretest"
	"github.com/mire-go/mire/pgtest"
)

// DB is the database of one test process, ready after the suite's setup:
// miretest's, with Fresh giving a URL and a pool as our specs use them.
type DB struct{ *miretest.DB }

// Suite registers the suite-level setup (miretest.Suite): process 1 starts
// (or finds, with TEST_DATABASE_URL) the server; every process gets its own
// migrated database. Call it once per package, at package level:
//
//	var db = mtest.Suite()
func Suite() *DB { return &DB{miretest.Suite()} }

// Fresh returns a new migrated database and a pool on it, both dropped
// when the current node ends.
func (db *DB) Fresh(ctx context.Context) (string, *pgxpool.Pool) {
	fresh := db.DB.Fresh(ctx)
	return fresh.URL, fresh.Pool
}

// Empty returns a new database without mire's schema and a pool on it.
func (db *DB) Empty(ctx context.Context) (string, *pgxpool.Pool) {
	url, drop, err := pgtest.NewEmptyDatabase(ctx, db.ServerURL)
	gomega.Expect(err).NotTo(gomega.HaveOccurred())
	ginkgo.DeferCleanup(func(ctx ginkgo.SpecContext) { gomega.Expect(drop(ctx)).To(gomega.Succeed()) })
	return url, db.Connect(ctx, url)
}

// Connect opens a pool on url, configured with mire.ConfigurePool and closed
// when the current node ends.
func (db *DB) Connect(ctx context.Context, url string) *pgxpool.Pool {
	cfg, err := pgxpool.ParseConfig(url)
	gomega.Expect(err).NotTo(gomega.HaveOccurred())
	cfg.MaxConns = 40
	mire.ConfigurePool(cfg)
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	gomega.Expect(err).NotTo(gomega.HaveOccurred())
	ginkgo.DeferCleanup(pool.Close)
	return pool
}

// Count returns the number of rows of a mire table (in schema "mire")
// matching where (SQL, may be empty) with args.
func Count(ctx context.Context, pool *pgxpool.Pool, table, where string, args ...any) int {
	sql := fmt.Sprintf("SELECT count(*) FROM mire.%s", table)
	if strings.TrimSpace(where) != "" {
		sql += " WHERE " + where
	}
	var n int
	gomega.Expect(pool.QueryRow(ctx, sql, args...).Scan(&n)).To(gomega.Succeed())
	return n
}

// Unique returns a name unique to this spec run, for stream ids.
func Unique(prefix string) string {
	return fmt.Sprintf("%s%d%s", prefix, ginkgo.GinkgoParallelProcess(), randomID())
}

func randomID() string { return rand.Text()[:12] }
