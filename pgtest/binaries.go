package pgtest

import (
	"cmp"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
)

// FindBinaries returns the directory holding the PostgreSQL server programs
// (initdb and postgres, and pg_ctl on Windows). It looks, in this order, in
// PATH, in `pg_config --bindir`, and where the common installs of the
// current platform put them:
//
//   - Linux: /usr/lib/postgresql/*/bin (Debian, Ubuntu) and /usr/pgsql-*/bin
//     (the PGDG packages for Red Hat and Fedora), newest version first;
//   - macOS: Homebrew on Apple silicon (/opt/homebrew/opt/postgresql@*/bin,
//     /opt/homebrew/bin) and on Intel (/usr/local/opt/postgresql@*/bin,
//     /usr/local/bin), then Postgres.app
//     (/Applications/Postgres.app/Contents/Versions/*/bin, "latest" first);
//   - Windows: the EDB installer's %ProgramFiles%\PostgreSQL\*\bin, newest
//     version first.
//
// The error, when nothing is found, says how to install the server on each
// platform and how to use a running server instead.
func FindBinaries() (string, error) {
	host := platform{
		goos:   runtime.GOOS,
		getenv: os.Getenv,
		glob: func(pattern string) []string {
			m, _ := filepath.Glob(pattern)
			return m
		},
		pgConfig: pgConfigBindir,
	}
	dirs := binDirCandidates(host)
	for _, dir := range dirs {
		if hasServerPrograms(runtime.GOOS, dir) {
			return dir, nil
		}
	}
	return "", binariesNotFound(runtime.GOOS)
}

// platform is what the search for binaries depends on, so that the search
// for every platform can be specified on any one.
type platform struct {
	goos     string
	getenv   func(name string) string
	glob     func(pattern string) []string
	pgConfig func() string // the output of `pg_config --bindir`; "" without pg_config
}

// binDirCandidates returns the directories that may hold the server
// programs, best first, without duplicates. See FindBinaries for the order.
func binDirCandidates(p platform) []string {
	dirs := splitPath(p.goos, p.getenv("PATH"))
	if dir := p.pgConfig(); dir != "" {
		dirs = append(dirs, dir)
	}
	for _, pattern := range installDirs(p) {
		if !strings.Contains(pattern, "*") {
			dirs = append(dirs, pattern)
			continue
		}
		matches := p.glob(pattern)
		slices.SortStableFunc(matches, func(a, b string) int { return compareVersions(versionOf(b), versionOf(a)) })
		dirs = append(dirs, matches...)
	}
	seen := map[string]bool{}
	return slices.DeleteFunc(dirs, func(dir string) bool {
		dup := seen[dir]
		seen[dir] = true
		return dup
	})
}

// installDirs returns where the common installs of p.goos put the server
// programs, best first; a "*" stands for the version and is globbed.
func installDirs(p platform) []string {
	switch p.goos {
	case "windows":
		programFiles := cmp.Or(p.getenv("ProgramFiles"), `C:\Program Files`)
		return []string{programFiles + `\PostgreSQL\*\bin`}
	case "darwin":
		return []string{
			"/opt/homebrew/opt/postgresql@*/bin", "/opt/homebrew/bin",
			"/usr/local/opt/postgresql@*/bin", "/usr/local/bin",
			"/Applications/Postgres.app/Contents/Versions/*/bin",
		}
	default:
		return []string{"/usr/lib/postgresql/*/bin", "/usr/pgsql-*/bin"}
	}
}

// splitPath splits a PATH value the way goos does, keeping only absolute
// directories: an empty or relative entry would run whatever the working
// directory holds.
func splitPath(goos, path string) []string {
	sep := ":"
	if goos == "windows" {
		sep = ";"
	}
	var dirs []string
	for _, dir := range strings.Split(path, sep) {
		dir = strings.Trim(dir, `"`)
		if isAbs(goos, dir) {
			dirs = append(dirs, dir)
		}
	}
	return dirs
}

func isAbs(goos, path string) bool {
	if goos == "windows" {
		return strings.HasPrefix(path, `\\`) ||
			len(path) >= 3 && path[1] == ':' && (path[2] == '\\' || path[2] == '/')
	}
	return strings.HasPrefix(path, "/")
}

// versionOf returns the version in an install's bin directory: "17" in
// /usr/lib/postgresql/17/bin and /opt/homebrew/opt/postgresql@17/bin,
// "9.6" in /usr/pgsql-9.6/bin, "latest" in Postgres.app's Versions/latest/bin.
func versionOf(binDir string) string {
	parts := strings.FieldsFunc(binDir, func(r rune) bool { return r == '/' || r == '\\' })
	if len(parts) < 2 {
		return ""
	}
	name := parts[len(parts)-2]
	if i := strings.LastIndexAny(name, "@-"); i >= 0 {
		name = name[i+1:]
	}
	return name
}

// compareVersions orders "9.6" < "10" < "17" < "latest"; anything else that
// is not a number sorts below every version.
func compareVersions(a, b string) int {
	key := func(v string) []int {
		if v == "latest" {
			return []int{1 << 30}
		}
		var k []int
		for _, part := range strings.Split(v, ".") {
			n, err := strconv.Atoi(part)
			if err != nil {
				return []int{-1}
			}
			k = append(k, n)
		}
		return k
	}
	return slices.Compare(key(a), key(b))
}

// serverPrograms returns the programs pgtest runs, as named on goos: pg_ctl
// starts and stops the server on Windows.
func serverPrograms(goos string) []string {
	names := []string{"initdb", "postgres"}
	if goos == "windows" {
		names = append(names, "pg_ctl")
	}
	for i, name := range names {
		names[i] = exe(goos, name)
	}
	return names
}

func exe(goos, name string) string {
	if goos == "windows" {
		return name + ".exe"
	}
	return name
}

func hasServerPrograms(goos, dir string) bool {
	for _, name := range serverPrograms(goos) {
		info, err := os.Stat(filepath.Join(dir, name))
		if err != nil || !isExecutable(goos, info) {
			return false
		}
	}
	return true
}

// isExecutable reports whether a file can be run. Windows has no mode bits
// for that: a regular file with the right name is a program there.
func isExecutable(goos string, info fs.FileInfo) bool {
	if !info.Mode().IsRegular() {
		return false
	}
	return goos == "windows" || info.Mode()&0o111 != 0
}

// pgConfigBindir returns what `pg_config --bindir` prints, or "".
func pgConfigBindir() string {
	path, err := exec.LookPath(exe(runtime.GOOS, "pg_config"))
	if err != nil {
		return ""
	}
	out, err := exec.Command(path, "--bindir").Output()
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(out))
}

// installHints maps a GOOS to how to install the server there.
var installHints = map[string]string{
	"linux":   "Debian/Ubuntu: sudo apt-get install postgresql (Fedora/RHEL: sudo dnf install postgresql-server)",
	"darwin":  "macOS: brew install postgresql@17 (or Postgres.app, https://postgresapp.com)",
	"windows": "Windows: winget install PostgreSQL.PostgreSQL.17 (or the EDB installer, https://www.postgresql.org/download/windows/)",
}

// binariesNotFound is FindBinaries' error on goos: where it looked, how to
// install the server (this platform first), and the variables that point
// tests and examples at a running server instead.
func binariesNotFound(goos string) error {
	var b strings.Builder
	b.WriteString("pgtest: no PostgreSQL server binaries (" + strings.Join(serverPrograms(goos), ", ") + ") found in PATH, `pg_config --bindir`")
	for _, dir := range installDirs(platform{goos: goos, getenv: os.Getenv}) {
		b.WriteString(", " + dir)
	}
	b.WriteString(".\nInstall PostgreSQL:\n")
	order := []string{goos}
	for _, other := range []string{"linux", "darwin", "windows"} {
		if other != goos {
			order = append(order, other)
		}
	}
	for _, goos := range order {
		if hint, ok := installHints[goos]; ok {
			b.WriteString("  " + hint + "\n")
		}
	}
	b.WriteString("or use a running server (a role that may create databases): set " + EnvTestDatabase +
		" for tests and " + EnvDatabase + " for examples, for example " +
		EnvTestDatabase + "=postgres://postgres@localhost:5432/postgres")
	return errors.New(b.String())
}

// findProgram returns the path of another program of the server binaries
// in bin (pg_basebackup, say). A bin whose postgres is a link to an install
// elsewhere (/usr/local/bin/postgres -> /usr/lib/postgresql/15/bin/postgres)
// may not link that program too; then it is looked for beside the
// postgres the link leads to.
func findProgram(bin, name string) (string, error) {
	name = exe(runtime.GOOS, name)
	tried := []string{filepath.Join(bin, name)}
	if real, err := filepath.EvalSymlinks(filepath.Join(bin, exe(runtime.GOOS, "postgres"))); err == nil {
		if dir := filepath.Dir(real); dir != bin {
			tried = append(tried, filepath.Join(dir, name))
		}
	}
	for _, path := range tried {
		if info, err := os.Stat(path); err == nil && isExecutable(runtime.GOOS, info) {
			return path, nil
		}
	}
	return "", fmt.Errorf("pgtest: %s not found (looked for %s); it comes with the PostgreSQL server binaries", name, strings.Join(tried, ", "))
}
