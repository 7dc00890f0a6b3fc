// Package examples_test checks the programs under jetstream/examples/:
// each is built and run against a fresh database and an embedded NATS
// server of its own, and what it prints is compared with the output below;
// a quote of it in the repository's README is checked against it too.
package examples_test

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

// want is the output of each program, by directory.
var want = map[string]string{
	"orders": `
orders: placed order-o1: 2 x book for ann
orders: placed order-o2: 1 x lamp for ann
orders: placed order-o3: 5 x pen for ann
shipping: shop.orders.placed on application/json: 2 x book for ann (key ann, #1)
shipping: shop.orders.placed on application/json: 1 x lamp for ann (key ann, #2)
shipping: shop.orders.placed on application/json: 5 x pen for ann (key ann, #3)
orders: read model: ann has 3 orders; relay shop-relay published 3 messages, lag 0
`,
}

func TestExamples(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs every example program")
	}
	entries, err := os.ReadDir(".")
	if err != nil {
		t.Fatal(err)
	}
	var programs []string
	for _, e := range entries {
		if _, err := os.Stat(filepath.Join(e.Name(), "main.go")); e.IsDir() && err == nil {
			programs = append(programs, e.Name())
		}
	}
	for _, name := range programs {
		if _, ok := want[name]; !ok {
			t.Errorf("jetstream/examples/%s has no expected output in want", name)
		}
	}
	checkQuote(t)
	ctx := t.Context()
	bin := t.TempDir()
	args := []string{"build", "-o", bin + string(filepath.Separator)}
	for _, name := range programs {
		args = append(args, "./"+name)
	}
	if out, err := exec.CommandContext(ctx, "go", args...).CombinedOutput(); err != nil {
		t.Fatalf("go %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	srv, err := pgtest.Start(ctx, pgtest.EnvTestDatabase)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Stop() })
	for _, name := range programs {
		t.Run(name, func(t *testing.T) {
			url, drop, err := pgtest.NewDatabase(ctx, srv.URL())
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = drop(ctx) })
			exe := filepath.Join(bin, name)
			if runtime.GOOS == "windows" {
				exe += ".exe"
			}
			cmd := exec.CommandContext(ctx, exe)
			cmd.Env = append(os.Environ(), pgtest.EnvDatabase+"="+url)
			var stdout, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			if err := cmd.Run(); err != nil {
				t.Fatalf("%s: %v\nstderr:\n%s", name, err, &stderr)
			}
			if stderr.Len() > 0 {
				t.Errorf("%s wrote to stderr:\n%s", name, &stderr)
			}
			if got, exp := lines(stdout.String()), lines(want[name]); !slices.Equal(got, exp) {
				t.Errorf("%s printed\n%s\nwant\n%s", name, strings.Join(got, "\n"), strings.Join(exp, "\n"))
			}
		})
	}
}

// checkQuote checks that a fenced block of the repository's README that
// quotes a line of a program's output quotes a run of its lines.
func checkQuote(t *testing.T) {
	text, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	var blocks [][]string
	var block []string
	in := false
	sc := bufio.NewScanner(bytes.NewReader(text))
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
	for name, output := range want {
		out := lines(output)
		for _, b := range blocks {
			if !slices.ContainsFunc(b, func(l string) bool { return l != "" && slices.Contains(out, l) }) {
				continue
			}
			run := false
			for i := range out {
				if len(b) <= len(out)-i && slices.Equal(b, out[i:i+len(b)]) {
					run = true
				}
			}
			if !run {
				t.Errorf("README.md quotes the output of jetstream/examples/%s, but the program prints\n%s\nand the README has\n%s",
					name, strings.Join(out, "\n"), strings.Join(b, "\n"))
			}
		}
	}
}

func lines(s string) []string {
	out := strings.Split(strings.Trim(strings.ReplaceAll(s, "\r\n", "\n"), "\n"), "\n")
	for i, l := range out {
		out[i] = strings.TrimRight(l, " \t")
	}
	return out
}
