package pgtest

import (
	"os"
	"path/filepath"
	"strings"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
)

// fakePlatform is a platform with the given environment, glob results
// (pattern -> matches, in the order a file system might return them) and
// `pg_config --bindir` output.
func fakePlatform(goos string, env map[string]string, globs map[string][]string, pgConfig string) platform {
	return platform{
		goos:     goos,
		getenv:   func(name string) string { return env[name] },
		glob:     func(pattern string) []string { return append([]string(nil), globs[pattern]...) },
		pgConfig: func() string { return pgConfig },
	}
}

var _ = Describe("Where FindBinaries looks", func() {
	DescribeTable("PATH, then pg_config --bindir, then the platform's common installs, newest version first",
		func(p platform, want []string) {
			Expect(binDirCandidates(p)).To(Equal(want))
		},
		Entry("on Debian and Ubuntu (and PGDG on Red Hat)", fakePlatform("linux",
			map[string]string{"PATH": "/home/me/bin::relative/bin:/usr/bin"},
			map[string][]string{
				"/usr/lib/postgresql/*/bin": {"/usr/lib/postgresql/15/bin", "/usr/lib/postgresql/9.6/bin", "/usr/lib/postgresql/17/bin", "/usr/lib/postgresql/16/bin"},
				"/usr/pgsql-*/bin":          {"/usr/pgsql-13/bin"},
			}, "/usr/lib/postgresql/16/bin"),
			[]string{"/home/me/bin", "/usr/bin", "/usr/lib/postgresql/16/bin",
				"/usr/lib/postgresql/17/bin", "/usr/lib/postgresql/15/bin", "/usr/lib/postgresql/9.6/bin", "/usr/pgsql-13/bin"}),
		Entry("on macOS: Homebrew on Apple silicon, then on Intel, then Postgres.app with latest first", fakePlatform("darwin",
			map[string]string{"PATH": "/usr/bin:/bin:/usr/local/bin"},
			map[string][]string{
				"/opt/homebrew/opt/postgresql@*/bin":                 {"/opt/homebrew/opt/postgresql@14/bin", "/opt/homebrew/opt/postgresql@17/bin"},
				"/usr/local/opt/postgresql@*/bin":                    {"/usr/local/opt/postgresql@16/bin"},
				"/Applications/Postgres.app/Contents/Versions/*/bin": {"/Applications/Postgres.app/Contents/Versions/16/bin", "/Applications/Postgres.app/Contents/Versions/17/bin", "/Applications/Postgres.app/Contents/Versions/latest/bin"},
			}, ""),
			[]string{"/usr/bin", "/bin", "/usr/local/bin",
				"/opt/homebrew/opt/postgresql@17/bin", "/opt/homebrew/opt/postgresql@14/bin", "/opt/homebrew/bin",
				"/usr/local/opt/postgresql@16/bin",
				"/Applications/Postgres.app/Contents/Versions/latest/bin", "/Applications/Postgres.app/Contents/Versions/17/bin", "/Applications/Postgres.app/Contents/Versions/16/bin"}),
		Entry("on Windows: the EDB installer's directories under %ProgramFiles%", fakePlatform("windows",
			map[string]string{"PATH": `C:\Windows\system32;"C:\Program Files\Git\cmd";.;\\server\tools`, "ProgramFiles": `D:\Programs`},
			map[string][]string{
				`D:\Programs\PostgreSQL\*\bin`: {`D:\Programs\PostgreSQL\9.6\bin`, `D:\Programs\PostgreSQL\17\bin`, `D:\Programs\PostgreSQL\16\bin`},
			}, `D:\Programs\PostgreSQL\16\bin`),
			[]string{`C:\Windows\system32`, `C:\Program Files\Git\cmd`, `\\server\tools`, `D:\Programs\PostgreSQL\16\bin`,
				`D:\Programs\PostgreSQL\17\bin`, `D:\Programs\PostgreSQL\9.6\bin`}),
		Entry("on Windows without ProgramFiles set: C:\\Program Files", fakePlatform("windows",
			map[string]string{"PATH": ""},
			map[string][]string{`C:\Program Files\PostgreSQL\*\bin`: {`C:\Program Files\PostgreSQL\17\bin`}}, ""),
			[]string{`C:\Program Files\PostgreSQL\17\bin`}),
	)

	It("needs pg_ctl as well on Windows, where every program ends in .exe", func() {
		Expect(serverPrograms("linux")).To(Equal([]string{"initdb", "postgres"}))
		Expect(serverPrograms("darwin")).To(Equal([]string{"initdb", "postgres"}))
		Expect(serverPrograms("windows")).To(Equal([]string{"initdb.exe", "postgres.exe", "pg_ctl.exe"}))
	})

	It("takes any regular file as executable on Windows, which has no mode bits for it", func() {
		dir := GinkgoT().TempDir()
		plain := filepath.Join(dir, "postgres.exe")
		Expect(os.WriteFile(plain, nil, 0o644)).To(Succeed())
		program := filepath.Join(dir, "postgres")
		Expect(os.WriteFile(program, nil, 0o755)).To(Succeed())
		stat := func(path string) os.FileInfo {
			info, err := os.Stat(path)
			Expect(err).NotTo(HaveOccurred())
			return info
		}
		Expect(isExecutable("windows", stat(plain))).To(BeTrue())
		Expect(isExecutable("linux", stat(plain))).To(BeFalse())
		Expect(isExecutable("darwin", stat(program))).To(BeTrue())
		Expect(isExecutable("windows", stat(dir))).To(BeFalse())
		Expect(isExecutable("linux", stat(dir))).To(BeFalse())
	})
})

var _ = Describe("The error when no binaries are found", func() {
	DescribeTable("names both variables and every platform's install, this platform's first",
		func(goos, first string) {
			msg := binariesNotFound(goos).Error()
			Expect(msg).To(ContainSubstring("TEST_DATABASE_URL for tests"))
			Expect(msg).To(ContainSubstring("DATABASE_URL for examples"))
			for _, hint := range []string{"sudo apt-get install postgresql", "brew install postgresql@17", "Postgres.app, https://postgresapp.com", "winget install PostgreSQL.PostgreSQL", "EDB installer"} {
				Expect(msg).To(ContainSubstring(hint))
			}
			Expect(msg).To(ContainSubstring("\n  " + first))
			for _, label := range []string{"\n  Debian/Ubuntu: ", "\n  macOS: ", "\n  Windows: "} {
				if !strings.HasPrefix(first, strings.TrimPrefix(label, "\n  ")) {
					Expect(strings.Index(msg, "\n  "+first)).To(BeNumerically("<", strings.Index(msg, label)), "%q before %q", first, label)
				}
			}
		},
		Entry("on Linux", "linux", "Debian/Ubuntu: sudo apt-get install postgresql"),
		Entry("on macOS", "darwin", "macOS: brew install postgresql@17"),
		Entry("on Windows", "windows", "Windows: winget install PostgreSQL.PostgreSQL"),
	)

	It("says where it looked", func() {
		Expect(binariesNotFound("darwin").Error()).To(ContainSubstring("/opt/homebrew/opt/postgresql@*/bin"))
		Expect(binariesNotFound("windows").Error()).To(ContainSubstring(`\PostgreSQL\*\bin`))
		Expect(binariesNotFound("windows").Error()).To(ContainSubstring("pg_ctl.exe"))
	})
})

var _ = Describe("Where a server's directory goes", func() {
	// A Unix socket path holds at most 107 bytes on Linux and 103 on macOS:
	// TMPDIR + "/pgtest-" + 10 digits + "/.s.PGSQL.5432" is TMPDIR + 32.
	DescribeTable("TMPDIR while the socket path fits, else /tmp",
		func(goos string, tmpLen int, want string) {
			tmp := "/" + strings.Repeat("t", tmpLen-1)
			Expect(tempRoot(goos, tmp)).To(Equal(strings.Replace(want, "TMPDIR", tmp, 1)))
			Expect(tempRoot(goos, tmp+"/")).To(Equal(strings.Replace(want, "TMPDIR", tmp+"/", 1)), "with a trailing slash, as macOS sets it")
		},
		Entry("macOS, the usual /var/folders/xx/.../T/ (49 bytes)", "darwin", 49, "TMPDIR"),
		Entry("macOS, 71 bytes", "darwin", 71, "TMPDIR"),
		Entry("macOS, 72 bytes", "darwin", 72, "/tmp"),
		Entry("Linux, 75 bytes", "linux", 75, "TMPDIR"),
		Entry("Linux, 76 bytes", "linux", 76, "/tmp"),
		Entry("Windows, which uses TCP, any length", "windows", 200, "TMPDIR"),
	)
})
