package main_test

import (
	"fmt"
	"strings"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/mire-go/mire/pgschema"
)

var _ = Describe("the command line", func() {
	It("documents the exit codes and exits 2 on usage errors", func(ctx SpecContext) {
		help := mireCmd(ctx, "", "", "--help")
		Expect(help.Code).To(Equal(0))
		Expect(help.Stdout).To(ContainSubstring("Exit codes: 0 success, 1 error, 2 usage error"))
		Expect(help.Stdout).To(ContainSubstring("completion"))

		for _, args := range [][]string{{"bogus"}, {"streams", "--limit", "x"}, {"show"}, {"streams", "--nope"}, {"streams"}} {
			r := mireCmd(ctx, "", "", args...)
			Expect(r.Code).To(Equal(2), "%v: %s", args, r.Stderr)
			Expect(r.Stderr).To(ContainSubstring("--help' for usage"))
		}
	})

	DescribeTable("--help on every command, without a database",
		func(ctx SpecContext, args ...string) {
			r := mireCmd(ctx, "", "", append(args, "--help")...)
			Expect(r.Code).To(Equal(0), r.Stderr)
			Expect(r.Stdout).To(ContainSubstring("Usage:\n  mire " + strings.Join(args, " ")))
			Expect(r.Stdout).To(ContainSubstring("--database-url"))
		},
		Entry(nil, "migrate"), Entry(nil, "version"), Entry(nil, "streams"), Entry(nil, "show"),
		Entry(nil, "projections"), Entry(nil, "projections", "reset"), Entry(nil, "projections", "resume"),
		Entry(nil, "projections", "move-to-watermark"), Entry(nil, "projections", "rebuild"),
		Entry(nil, "export"), Entry(nil, "import"), Entry(nil, "tail"),
	)

	It("generates shell completion", func(ctx SpecContext) {
		r := mireCmd(ctx, "", "", "completion", "bash")
		Expect(r.Code).To(Equal(0), r.Stderr)
		Expect(r.Stdout).To(ContainSubstring("__start_mire"))
	})
})

// latest is this mire's newest migration.
var latest = pgschema.Latest()

var _ = Describe("migrate and version", func() {
	It("migrates an empty database, and says so", func(ctx SpecContext) {
		url, _ := db.Empty(ctx)

		r := mireCmd(ctx, url, "", "version")
		Expect(r.Code).To(Equal(0), r.Stderr)
		Expect(r.Stdout).To(MatchRegexp(`^mire \S+`))
		Expect(r.Stdout).To(ContainSubstring("not migrated: run `mire migrate`"))

		r = mireCmd(ctx, url, "", "streams")
		Expect(r.Code).To(Equal(1))
		Expect(r.Stderr).To(ContainSubstring("not migrated: run `mire migrate`"))

		r = mireCmd(ctx, url, "", "migrate")
		Expect(r.Code).To(Equal(0), r.Stderr)
		Expect(r.Stdout).To(Equal(fmt.Sprintf("Migrated schema \"mire\" from 0 to %d.\n", latest)))

		r = mireCmd(ctx, url, "", "migrate")
		Expect(r.Stdout).To(Equal(fmt.Sprintf("Schema \"mire\" is up to date at migration %d.\n", latest)))

		v := fromJSON[map[string]any](mireCmd(ctx, url, "", "version", "--json"))
		Expect(v).To(HaveKeyWithValue("current", BeNumerically("==", pgschema.Latest())))
		Expect(v).To(HaveKeyWithValue("state", "current"))
	})

	It("prints SQL that another tool can apply", func(ctx SpecContext) {
		url, pool := db.Empty(ctx)
		r := mireCmd(ctx, "", "", "migrate", "--print", "--schema", "ops")
		Expect(r.Code).To(Equal(0), r.Stderr)
		Expect(r.Stdout).To(ContainSubstring(`CREATE TABLE "ops".events`))

		_, err := pool.Exec(ctx, r.Stdout)
		Expect(err).NotTo(HaveOccurred())
		v := fromJSON[map[string]any](mireCmd(ctx, url, "", "version", "--json", "--schema", "ops"))
		Expect(v).To(HaveKeyWithValue("state", "current"))

		// Migrating after the script finds nothing to do.
		r = mireCmd(ctx, url, "", "migrate", "--schema", "ops")
		Expect(r.Stdout).To(ContainSubstring(fmt.Sprintf("up to date at migration %d.", latest)))
	})

	It("says when the schema is behind or ahead", func(ctx SpecContext) {
		url, pool := db.Empty(ctx)
		script, err := pgschema.Script("mire", 0)
		Expect(err).NotTo(HaveOccurred())
		_, err = pool.Exec(ctx, script)
		Expect(err).NotTo(HaveOccurred())

		_, err = pool.Exec(ctx, `DELETE FROM mire.schema_migrations WHERE version = $1`, latest)
		Expect(err).NotTo(HaveOccurred())
		r := mireCmd(ctx, url, "", "version")
		Expect(r.Stdout).To(ContainSubstring(fmt.Sprintf(`schema "mire": migration %d of %d, behind: run `+"`mire migrate`", latest-1, latest)))
		r = mireCmd(ctx, url, "", "streams")
		Expect(r.Code).To(Equal(1))
		Expect(r.Stderr).To(ContainSubstring(fmt.Sprintf("behind this mire's %d: run `mire migrate`", latest)))

		_, err = pool.Exec(ctx, `INSERT INTO mire.schema_migrations (version, name) VALUES ($1, 'x'), ($1 + 1, 'future')`, latest)
		Expect(err).NotTo(HaveOccurred())
		r = mireCmd(ctx, url, "", "version")
		Expect(r.Stdout).To(ContainSubstring(fmt.Sprintf("migration %d of %d, ahead: a newer mire migrated it; upgrade this binary", latest+1, latest)))
	})

	It("refuses a bad --from with a usage error", func(ctx SpecContext) {
		r := mireCmd(ctx, "", "", "migrate", "--print", "--from", "99")
		Expect(r.Code).To(Equal(2))
		Expect(r.Stderr).To(ContainSubstring(fmt.Sprintf("want 0 to %d", latest)))
	})
})
