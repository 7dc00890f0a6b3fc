package miretest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/onsi/ginkgo/v2"
	"github.com/onsi/gomega"

	"github.com/mire-go/mire"
	"github.com/mire-go/mire/pgtest"
)

// TB is what Store needs of a test: *testing.T, *testing.B, *testing.F and
// Ginkgo's GinkgoT() all have it.
type TB interface {
	Helper()
	Cleanup(func())
	Fatalf(format string, args ...any)
}

// DB is a fresh database with mire's schema (in mire.SchemaDefault), on
// the server of TEST_DATABASE_URL or on a throwaway one.
type DB struct {
	ServerURL string        // the server's maintenance database, where databases are created
	URL       string        // this database
	Pool      *pgxpool.Pool // a pool on URL: mire.ConfigurePool, at most 40 connections, opened as used
	Store     *mire.Store   // a store on Pool with the default Config
}

// setupTimeout bounds starting a server and creating a database.
const setupTimeout = 2 * time.Minute

// server is the PostgreSQL server this test process uses: the one
// TEST_DATABASE_URL names, or a throwaway one started on first use, or, in
// a Ginkgo suite's other parallel processes, the first process's.
var server struct {
	mu       sync.Mutex
	url      string         // "" until a server is known
	srv      *pgtest.Server // the server this process started or found, to stop; nil if borrowed
	users    int            // holders: databases Store handed out and not yet dropped, and a Suite
	main     bool           // Main runs: the server stays until it ends
	borrowed bool           // url is another process's server, for the suite's duration
}

// acquire returns the URL of the process's server, starting it if need be,
// and the function that gives it back: when the last holder gives it back
// and Main is not running, the server stops.
func acquire(ctx context.Context) (string, func() error, error) {
	server.mu.Lock()
	defer server.mu.Unlock()
	if server.url == "" {
		srv, err := pgtest.Start(ctx, pgtest.EnvTestDatabase)
		if err != nil {
			return "", nil, err
		}
		server.url, server.srv = srv.URL(), srv
	}
	server.users++
	return server.url, func() error {
		server.mu.Lock()
		defer server.mu.Unlock()
		server.users--
		return stopUnused()
	}, nil
}

// stopUnused stops the server this process started if nothing holds it.
// The caller holds server.mu.
func stopUnused() error {
	if server.users > 0 || server.main || server.srv == nil {
		return nil
	}
	srv := server.srv
	server.url, server.srv = "", nil
	return srv.Stop()
}

// Store returns a store on a fresh database with mire's schema, dropped
// (and its pool closed) by t's Cleanup. The database is on the server
// TEST_DATABASE_URL names or, without it, on a throwaway server that the
// test process shares:
//
//	func TestDeposit(t *testing.T) {
//		store := miretest.Store(t)
//		...
//	}
//
// A test helper cannot stop a server when the process ends, so the
// throwaway server stops when the last database Store handed out is
// dropped, and the next Store starts another (a second or two). Call Main
// from TestMain to keep one server for the whole package; in a Ginkgo
// suite, Store uses the server of Suite. A Ginkgo suite with a
// SynchronizedBeforeSuite of its own (which Suite would clash with) can
// call Store(GinkgoT()) in its all-processes function: each process then
// has a database, and a throwaway server, of its own until the suite ends. For a Config of your own, build a store on the
// same pool: mire.New(miretest.Store(t).Pool(), cfg) (and Migrate it if
// cfg names another schema).
//
// It fails t if no server can be started or the database cannot be made.
func Store(t TB) *mire.Store {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), setupTimeout)
	defer cancel()
	serverURL, release, err := acquire(ctx)
	if err != nil {
		t.Fatalf("miretest: %v", err)
	}
	db, closeDB, err := open(ctx, serverURL)
	if err != nil {
		t.Fatalf("miretest: %v", errors.Join(err, release()))
	}
	t.Cleanup(func() {
		if err := errors.Join(closeDB(context.Background()), release()); err != nil {
			t.Fatalf("miretest: %v", err)
		}
	})
	return db.Store
}

// Main runs a package's tests with one server for all of them, stopped
// when they are done, and exits with their status. Call it from TestMain
// where tests use Store:
//
//	func TestMain(m *testing.M) { miretest.Main(m) }
func Main(m *testing.M) {
	os.Exit(run(m))
}

// run is Main without the exit.
func run(m interface{ Run() int }) int {
	server.mu.Lock()
	server.main = true
	server.mu.Unlock()
	code := m.Run()
	server.mu.Lock()
	defer server.mu.Unlock()
	server.main = false
	if err := stopUnused(); err != nil {
		fmt.Fprintln(os.Stderr, "miretest:", err)
	}
	return code
}

// Suite sets up a Ginkgo suite's database, in a SynchronizedBeforeSuite
// that it registers: the first parallel process starts the server (or
// uses TEST_DATABASE_URL's, or Main's), stopped when the suite ends unless
// Main keeps it; every process gets a fresh database of its own, dropped
// then. Call it once per suite,
// at package level, in place of a BeforeSuite of your own:
//
//	var db = miretest.Suite()
//
// The returned DB is ready in the specs. db.Fresh gives a spec a database
// of its own; Store(GinkgoT()) in a spec does the same on this suite's
// server.
func Suite() *DB {
	db := &DB{}
	ginkgo.SynchronizedBeforeSuite(func(ctx ginkgo.SpecContext) []byte {
		url, release, err := acquire(ctx)
		gomega.Expect(err).NotTo(gomega.HaveOccurred(), "miretest: start the suite's server")
		ginkgo.DeferCleanup(release)
		return []byte(url)
	}, func(ctx ginkgo.SpecContext, serverURL []byte) {
		server.mu.Lock()
		if server.url == "" { // another parallel process's server
			server.url, server.borrowed = string(serverURL), true
		}
		server.mu.Unlock()
		ginkgo.DeferCleanup(func() {
			server.mu.Lock()
			if server.borrowed { // the first process stops it after this
				server.url, server.borrowed = "", false
			}
			server.mu.Unlock()
		})
		*db = *fresh(ctx, string(serverURL))
	})
	return db
}

// Fresh returns another fresh database on db's server, dropped when the
// current Ginkgo node ends: call it in a BeforeEach or a spec that needs
// an empty log of its own.
func (db *DB) Fresh(ctx context.Context) *DB {
	ginkgo.GinkgoHelper()
	return fresh(ctx, db.ServerURL)
}

// fresh is Fresh on the server at serverURL.
func fresh(ctx context.Context, serverURL string) *DB {
	ginkgo.GinkgoHelper()
	db, closeDB, err := open(ctx, serverURL)
	gomega.Expect(err).NotTo(gomega.HaveOccurred(), "miretest: a fresh database")
	ginkgo.DeferCleanup(func(ctx ginkgo.SpecContext) {
		gomega.Expect(closeDB(ctx)).To(gomega.Succeed(), "miretest: drop the database")
	})
	return db
}

// open creates a fresh migrated database on the server at serverURL with
// a pool and a store on it, and returns the function that closes the pool
// and drops the database.
func open(ctx context.Context, serverURL string) (*DB, func(context.Context) error, error) {
	url, drop, err := pgtest.NewDatabase(ctx, serverURL)
	if err != nil {
		return nil, nil, err
	}
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, nil, errors.Join(err, drop(ctx))
	}
	// Specs of concurrent writers need more connections than pgx's
	// default (4, or the number of CPUs); the pool opens them only as
	// they are used.
	cfg.MaxConns = 40
	mire.ConfigurePool(cfg)
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, nil, errors.Join(err, drop(ctx))
	}
	store, err := mire.New(pool, nil)
	if err != nil {
		pool.Close()
		return nil, nil, errors.Join(err, drop(ctx))
	}
	return &DB{ServerURL: serverURL, URL: url, Pool: pool, Store: store}, func(ctx context.Context) error {
		pool.Close()
		return drop(ctx)
	}, nil
}
