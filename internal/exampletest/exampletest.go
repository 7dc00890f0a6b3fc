// Package exampletest checks runnable example programs for the repository's
// example suites (examples/ and jetstream/examples/): each program is built
// and run against a fresh database, and what it prints is compared with the
// output its suite expects, line by line; a README that quotes a program's
// output is checked against it too, so neither the programs nor their docs
// can drift.
package exampletest

import (
	"bufio"
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/mire-go/mire/pgtest"
)

// Options says what Check checks.
type Options struct {
	// Dir names the directory of the programs (the test's working
	// directory) in messages, such as "examples".
	Dir string
	// Want is the output of each program on a fresh database, by
	// directory. Every directory with a main.go must have an entry, and
	// every entry a directory.
	Want map[string]string
	// READMEs are the Markdown files whose quotes of the programs' output
	// are checked.
	READMEs []string
	// Skip, if set, returns why program name cannot run here ("" if it
	// can).
	Skip func(name string) string
}

// Check builds every program under the working directory once, then runs
// each with DATABASE_URL set to a fresh database of its own on one server
// (TEST_DATABASE_URL's, or a throwaway one), as `go run ./NAME` would run
// on a new machine, and compares its output with o.Want. A program must
// exit 0 and write nothing to stderr. With -short it skips.
func Check(t *testing.T, o Options) {
	if testing.Short() {
		t.Skip("builds and runs every example program")
	}
	programs := programDirs(t)
	for _, name := range programs {
		if _, ok := o.Want[name]; !ok {
			t.Errorf("%s/%s has no expected output in want", o.Dir, name)
		}
	}
	for name := range o.Want {
		if !slices.Contains(programs, name) {
			t.Errorf("want has output for %s/%s, which is not a program", o.Dir, name)
		}
	}
	checkQuotes(t, o)

	ctx := t.Context()
	bin := build(t, programs)
	srv, err := pgtest.Start(ctx, pgtest.EnvTestDatabase)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := srv.Stop(); err != nil {
			t.Error(err)
		}
	})
	for _, name := range programs {
		t.Run(name, func(t *testing.T) {
			if o.Skip != nil {
				if why := o.Skip(name); why != "" {
					t.Skip(why)
				}
			}
			url, drop, err := pgtest.NewDatabase(ctx, srv.URL())
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() {
				if err := drop(ctx); err != nil {
					t.Error(err)
				}
			})
			cmd := exec.CommandContext(ctx, filepath.Join(bin, name+exe()))
			cmd.Env = append(os.Environ(), pgtest.EnvDatabase+"="+url)
			var stdout, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			if err := cmd.Run(); err != nil {
				t.Fatalf("%s/%s: %v\nstderr:\n%s", o.Dir, name, err, &stderr)
			}
			if stderr.Len() > 0 {
				t.Errorf("%s/%s wrote to stderr:\n%s", o.Dir, name, &stderr)
			}
			got, exp := lines(stdout.String()), lines(o.Want[name])
			for i := range max(len(got), len(exp)) {
				g, w := at(got, i), at(exp, i)
				if g != w {
					t.Errorf("%s/%s line %d:\n got: %q\nwant: %q", o.Dir, name, i+1, g, w)
				}
			}
		})
	}
}

// programDirs returns the directories of the working directory that hold
// a main.go.
func programDirs(t *testing.T) []string {
	entries, err := os.ReadDir(".")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		if _, err := os.Stat(filepath.Join(e.Name(), "main.go")); e.IsDir() && err == nil {
			out = append(out, e.Name())
		}
	}
	if len(out) == 0 {
		t.Fatal("no programs to check")
	}
	return out
}

// build compiles the programs into a temporary directory in one go build,
// which shares the work of their common packages.
func build(t *testing.T, programs []string) string {
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("the go command, to build the examples: %v", err)
	}
	bin := t.TempDir()
	args := []string{"build", "-o", bin + string(filepath.Separator)}
	for _, name := range programs {
		args = append(args, "./"+name)
	}
	cmd := exec.CommandContext(t.Context(), goTool, args...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return bin
}

// checkQuotes checks what the READMEs quote of the programs' output: a
// fenced block with a line of a program's output in it must be a run of
// consecutive lines of that output.
func checkQuotes(t *testing.T, o Options) {
	for _, readme := range o.READMEs {
		text, err := os.ReadFile(readme)
		if err != nil {
			t.Fatal(err)
		}
		for _, block := range fencedBlocks(string(text)) {
			for name, output := range o.Want {
				out := lines(output)
				quotes := slices.ContainsFunc(block, func(l string) bool { return l != "" && slices.Contains(out, l) })
				if quotes && !isRun(block, out) {
					t.Errorf("%s quotes the output of %s/%s, but the program prints (see want)\n%s\nand the README has\n%s",
						readme, o.Dir, name, strings.Join(out, "\n"), strings.Join(block, "\n"))
				}
			}
		}
	}
}

// isRun reports whether block is a run of consecutive lines of out.
func isRun(block, out []string) bool {
	for i := range out {
		if len(block) <= len(out)-i && slices.Equal(block, out[i:i+len(block)]) {
			return true
		}
	}
	return false
}

// fencedBlocks returns the non-empty ``` blocks of a Markdown text, as lines
// without trailing space.
func fencedBlocks(text string) [][]string {
	var blocks [][]string
	var block []string
	in := false
	sc := bufio.NewScanner(strings.NewReader(text))
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(strings.TrimSpace(line), "```") {
			if in && len(block) > 0 {
				blocks = append(blocks, block)
			}
			in, block = !in, nil
			continue
		}
		if in {
			block = append(block, strings.TrimRight(line, " \t"))
		}
	}
	return blocks
}

// lines splits s into lines without trailing space, leaving out the
// leading and trailing empty lines.
func lines(s string) []string {
	out := strings.Split(strings.Trim(strings.ReplaceAll(s, "\r\n", "\n"), "\n"), "\n")
	for i, l := range out {
		out[i] = strings.TrimRight(l, " \t")
	}
	return out
}

func at(lines []string, i int) string {
	if i < len(lines) {
		return lines[i]
	}
	return "(no line)"
}

func exe() string {
	if runtime.GOOS == "windows" {
		return ".exe"
	}
	return ""
}
