package pgtest_test

import (
	"os"
	"path/filepath"
	"runtime"
	"strings"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/jackc/pgx/v5"
	"github.com/mire-go/mire/pgschema"
	"github.com/mire-go/mire/pgtest"
)

var _ = Describe("A throwaway server", Ordered, func() {
	var srv *pgtest.Server
	BeforeAll(func(ctx SpecContext) {
		var err error
		srv, err = pgtest.StartThrowaway(ctx, nil)
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(srv.Stop)
	})

	It("finds the server binaries", func() {
		dir, err := pgtest.FindBinaries()
		Expect(err).NotTo(HaveOccurred())
		Expect(filepath.Join(dir, "postgres")).To(BeAnExistingFile())
	})

	It("accepts connections, with durability off", func(ctx SpecContext) {
		conn, err := pgx.Connect(ctx, srv.URL())
		Expect(err).NotTo(HaveOccurred())
		defer conn.Close(ctx)
		var fsync, user string
		Expect(conn.QueryRow(ctx, `SELECT current_setting('fsync'), current_user`).Scan(&fsync, &user)).To(Succeed())
		Expect(fsync).To(Equal("off"))
		Expect(user).To(Equal("postgres"))
	})

	It("hands out fresh databases that already hold mire's schema", func(ctx SpecContext) {
		first, dropFirst, err := pgtest.NewDatabase(ctx, srv.URL())
		Expect(err).NotTo(HaveOccurred())
		second, dropSecond, err := pgtest.NewDatabase(ctx, srv.URL())
		Expect(err).NotTo(HaveOccurred())
		Expect(first).NotTo(Equal(second))

		conn, err := pgx.Connect(ctx, first)
		Expect(err).NotTo(HaveOccurred())
		var version int
		Expect(conn.QueryRow(ctx, `SELECT max(version) FROM mire.schema_migrations`).Scan(&version)).To(Succeed())
		Expect(version).To(Equal(pgschema.Latest()))
		Expect(conn.Close(ctx)).To(Succeed())

		Expect(dropFirst(ctx)).To(Succeed())
		Expect(dropSecond(ctx)).To(Succeed())
		_, err = pgx.Connect(ctx, first)
		Expect(err).To(MatchError(ContainSubstring("does not exist")))
	})

	It("removes every file on Stop, and Stop is safe to repeat", func(ctx SpecContext) {
		other, err := pgtest.StartThrowaway(ctx, nil)
		Expect(err).NotTo(HaveOccurred())
		dir := other.Dir()
		Expect(dir).To(BeADirectory())
		Expect(other.Stop()).To(Succeed())
		Expect(other.Stop()).To(Succeed())
		_, err = os.Stat(dir)
		Expect(os.IsNotExist(err)).To(BeTrue())
	})

	It("puts its directory under /tmp when TMPDIR is too long for a socket path, as macOS's can be", func(ctx SpecContext) {
		if runtime.GOOS == "windows" {
			Skip("Windows listens on TCP, not on a socket")
		}
		base := GinkgoT().TempDir()
		Expect(os.Chmod(base, 0o755)).To(Succeed()) // as root, the server's user must reach it
		long := filepath.Join(base, strings.Repeat("x", 100))
		Expect(os.Mkdir(long, 0o755)).To(Succeed())
		GinkgoT().Setenv("TMPDIR", long)
		srv, err := pgtest.StartThrowaway(ctx, nil)
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(srv.Stop)
		Expect(filepath.Dir(srv.Dir())).To(Equal("/tmp"))
		Expect(ping(ctx, srv.URL())).To(Succeed())
	})

	It("applies Options.Settings, quoted whatever they hold", func(ctx SpecContext) {
		name := `it's a \ server`
		srv, err := pgtest.StartThrowaway(ctx, &pgtest.Options{Durable: true, Settings: map[string]string{
			"cluster_name": name, "work_mem": "7MB",
		}})
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(srv.Stop)
		conn, err := pgx.Connect(ctx, srv.URL())
		Expect(err).NotTo(HaveOccurred())
		defer conn.Close(ctx)
		var cluster, workMem, fsync string
		Expect(conn.QueryRow(ctx, `SELECT current_setting('cluster_name'), current_setting('work_mem'), current_setting('fsync')`).
			Scan(&cluster, &workMem, &fsync)).To(Succeed())
		Expect([]string{cluster, workMem, fsync}).To(Equal([]string{name, "7MB", "on"}))
	})
})
