package miretest_test

import (
	"context"
	"fmt"
	"os"
	"testing"

	"github.com/jackc/pgx/v5"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/mire-go/mire"
	"github.com/mire-go/mire/miretest"
	"github.com/mire-go/mire/pgtest"
)

// db is this suite's database: miretest.Suite, as a user's suite has it.
var db = miretest.Suite()

// fakeTB stands in for a *testing.T: it keeps failures and cleanups, and
// runs the cleanups when told, last first.
type fakeTB struct {
	failures []string
	cleanups []func()
}

func (f *fakeTB) Helper()           {}
func (f *fakeTB) Cleanup(fn func()) { f.cleanups = append(f.cleanups, fn) }
func (f *fakeTB) Fatalf(format string, args ...any) {
	f.failures = append(f.failures, fmt.Sprintf(format, args...))
}

func (f *fakeTB) end() {
	for i := len(f.cleanups) - 1; i >= 0; i-- {
		f.cleanups[i]()
	}
	f.cleanups = nil
}

// saveAccount saves an opened account and reads it back.
func saveAccount(ctx context.Context, store *mire.Store, id string) *mire.Root[Account] {
	GinkgoHelper()
	acc, err := mire.Create[Account](store, id)
	Expect(err).NotTo(HaveOccurred())
	Expect(acc.Record(Opened{Owner: id})).To(Succeed())
	Expect(store.Save(ctx, acc)).To(Succeed())
	loaded, err := mire.Load[Account](ctx, store, id)
	Expect(err).NotTo(HaveOccurred())
	return loaded
}

// databaseExists reports whether the database at url's name exists on the server.
func databaseExists(ctx context.Context, url string) bool {
	GinkgoHelper()
	cfg, err := pgx.ParseConfig(url)
	Expect(err).NotTo(HaveOccurred())
	conn, err := pgx.Connect(ctx, db.ServerURL)
	Expect(err).NotTo(HaveOccurred())
	defer conn.Close(ctx)
	var exists bool
	Expect(conn.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)", cfg.Database).Scan(&exists)).To(Succeed())
	return exists
}

var _ = Describe("Suite", func() {
	It("gives each process a migrated database with a store on it", func(ctx SpecContext) {
		Expect(db.URL).NotTo(BeEmpty())
		Expect(saveAccount(ctx, db.Store, "suite")).To(miretest.HaveVersion(1))
		Expect(db.Store.Pool()).To(BeIdenticalTo(db.Pool))
	})

	It("gives a spec a fresh database of its own, dropped when the spec ends", func(ctx SpecContext) {
		var fresh *miretest.DB
		DeferCleanup(func(ctx SpecContext) { // runs after Fresh's cleanups, registered later
			Expect(databaseExists(ctx, fresh.URL)).To(BeFalse(), "dropped")
		})
		fresh = db.Fresh(ctx)
		Expect(fresh.URL).NotTo(Equal(db.URL))
		Expect(fresh.ServerURL).To(Equal(db.ServerURL))
		Expect(saveAccount(ctx, fresh.Store, "fresh")).To(miretest.HaveVersion(1))
		_, err := mire.Load[Account](ctx, db.Store, "fresh")
		Expect(err).To(MatchError(mire.ErrNotFound), "the suite's database does not see it")
	})
})

var _ = Describe("Store in a Ginkgo suite", func() {
	It("makes a database on the suite's server, dropped by the cleanup", func(ctx SpecContext) {
		t := &fakeTB{}
		store := miretest.Store(t)
		Expect(t.failures).To(BeEmpty())
		Expect(miretest.ServerURL()).To(Equal(db.ServerURL))
		Expect(saveAccount(ctx, store, "a")).To(miretest.HaveState(Account{Owner: "a"}))
		Expect(databaseExists(ctx, store.Pool().Config().ConnString())).To(BeTrue())

		t.end()
		Expect(t.failures).To(BeEmpty())
		Expect(databaseExists(ctx, store.Pool().Config().ConnString())).To(BeFalse(), "dropped")
		Expect(miretest.ServerURL()).To(Equal(db.ServerURL), "the suite's server stays")
		Expect(saveAccount(ctx, db.Store, mire.StreamID("x", "after"))).To(miretest.HaveVersion(1))
	})

	It("works with GinkgoT()", func(ctx SpecContext) {
		store := miretest.Store(GinkgoT())
		Expect(saveAccount(ctx, store, "b")).To(miretest.HaveVersion(1))
	})
})

// TestStoreWithoutMain runs outside the Ginkgo suite, where no suite
// server is in use (before the suite starts, or after it gave its server
// back), so Store starts a throwaway server of its own.
func TestStoreWithoutMain(t *testing.T) {
	if os.Getenv(pgtest.EnvTestDatabase) != "" {
		t.Skip("TEST_DATABASE_URL names the server: Store neither starts nor stops one")
	}
	g := NewWithT(t)
	ctx := context.Background()
	g.Expect(miretest.ServerURL()).To(BeEmpty(), "the suite gave its server back")

	first, second := &fakeTB{}, &fakeTB{}
	a := miretest.Store(first)
	b := miretest.Store(second)
	g.Expect(miretest.ServerRunning()).To(BeTrue())
	g.Expect(a.Pool().Config().ConnString()).NotTo(Equal(b.Pool().Config().ConnString()), "a database each")
	_, err := a.Append(ctx, "account-x", mire.Any, Opened{Owner: "x"})
	g.Expect(err).NotTo(HaveOccurred())

	first.end()
	g.Expect(miretest.ServerRunning()).To(BeTrue(), "the second database still needs the server")
	_, err = b.Append(ctx, "account-x", mire.NoStream, Opened{Owner: "x"})
	g.Expect(err).NotTo(HaveOccurred(), "the second database is its own")
	second.end()
	g.Expect(miretest.ServerRunning()).To(BeFalse(), "the last cleanup stops the server")
	g.Expect(miretest.ServerURL()).To(BeEmpty())
	g.Expect(append(first.failures, second.failures...)).To(BeEmpty())
}

// fakeM runs a function as its tests.
type fakeM func() int

func (m fakeM) Run() int { return m() }

func TestMainKeepsOneServer(t *testing.T) {
	if os.Getenv(pgtest.EnvTestDatabase) != "" {
		t.Skip("TEST_DATABASE_URL names the server: Store neither starts nor stops one")
	}
	g := NewWithT(t)
	var urls []string
	code := miretest.RunMain(fakeM(func() int {
		for range 2 {
			tb := &fakeTB{}
			store := miretest.Store(tb)
			g.Expect(store.Pool().Ping(context.Background())).To(Succeed())
			tb.end()
			g.Expect(miretest.ServerRunning()).To(BeTrue(), "Main keeps the server between tests")
			urls = append(urls, miretest.ServerURL())
		}
		return 3
	}))
	g.Expect(code).To(Equal(3), "Main returns the tests' status")
	g.Expect(urls[0]).To(Equal(urls[1]), "one server")
	g.Expect(miretest.ServerRunning()).To(BeFalse(), "stopped when the tests are done")
}
