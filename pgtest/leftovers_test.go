package pgtest_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/jackc/pgx/v5"
	"github.com/mire-go/mire/pgtest"
)

// The test binary doubles as a test process that starts a throwaway server
// and is then killed: with childEnv set it starts one, prints its URL and
// directory, and waits for its stdin to close.
const childEnv = "MIRE_PGTEST_CHILD"

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) != "" {
		os.Exit(runChild())
	}
	os.Exit(m.Run())
}

func runChild() int {
	srv, err := pgtest.StartThrowaway(context.Background(), nil)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer srv.Stop()
	fmt.Printf("%s\t%s\n", srv.URL(), srv.Dir())
	_, _ = io.Copy(io.Discard, os.Stdin)
	return 0
}

var _ = Describe("The leftovers of a test process that died without Stop", func() {
	It("stay while their owner lives, and the next start stops and removes them after kill -9", func(ctx SpecContext) {
		child := exec.Command(os.Args[0])
		child.Env = append(os.Environ(), childEnv+"=1")
		child.Stderr = GinkgoWriter
		stdin, err := child.StdinPipe()
		Expect(err).NotTo(HaveOccurred())
		stdout, err := child.StdoutPipe()
		Expect(err).NotTo(HaveOccurred())
		Expect(child.Start()).To(Succeed())
		DeferCleanup(func() {
			_ = stdin.Close()
			_ = child.Process.Kill()
			_ = child.Wait()
		})
		line, err := bufio.NewReader(stdout).ReadString('\n')
		Expect(err).NotTo(HaveOccurred())
		url, dir, _ := strings.Cut(strings.TrimSpace(line), "\t")
		Expect(filepath.Join(dir, pgtest.OwnerFile)).To(BeAnExistingFile())
		postmaster := postmasterPID(dir)

		By("leaving a living owner's server alone")
		stopNow(pgtest.StartThrowaway(ctx, nil))
		Expect(ping(ctx, url)).To(Succeed())

		By("killing the owner with SIGKILL")
		Expect(child.Process.Kill()).To(Succeed())
		_ = child.Wait()
		if runtime.GOOS == "linux" {
			// Pdeathsig stops the server with its owner; the directory stays
			// until a start cleans it up (this one's below, or that of a test
			// process of another package running at the same time, which is
			// why the spec does not insist on seeing it here).
			Eventually(pgtest.ProcessAlive).WithArguments(postmaster).WithTimeout(30 * time.Second).Should(BeFalse())
		}

		By("starting the next server")
		stopNow(pgtest.StartThrowaway(ctx, nil))
		Expect(dir).NotTo(BeAnExistingFile())
		Expect(pgtest.ProcessAlive(postmaster)).To(BeFalse())
	})

	It("include a server that outlived its owner (as on macOS and Windows): the next start stops it", func(ctx SpecContext) {
		orphan, err := pgtest.StartThrowaway(ctx, nil)
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(orphan.Stop)
		postmaster := postmasterPID(orphan.Dir())
		gone := exec.Command(os.Args[0], "-test.run=^$")
		Expect(gone.Run()).To(Succeed())
		Expect(os.WriteFile(filepath.Join(orphan.Dir(), pgtest.OwnerFile), []byte(strconv.Itoa(gone.Process.Pid)), 0o644)).To(Succeed())
		Expect(ping(ctx, orphan.URL())).To(Succeed())

		stopNow(pgtest.StartThrowaway(ctx, nil))
		Expect(orphan.Dir()).NotTo(BeAnExistingFile())
		Expect(pgtest.ProcessAlive(postmaster)).To(BeFalse())
		Expect(orphan.Stop()).To(Succeed())
	})
})

// postmasterPID returns the process id in a running server's postmaster.pid.
func postmasterPID(dir string) int {
	b, err := os.ReadFile(filepath.Join(dir, "data", "postmaster.pid"))
	Expect(err).NotTo(HaveOccurred())
	first, _, _ := strings.Cut(string(b), "\n")
	pid, err := strconv.Atoi(strings.TrimSpace(first))
	Expect(err).NotTo(HaveOccurred())
	return pid
}

// stopNow stops a server just started, expecting the start to have worked.
func stopNow(srv *pgtest.Server, err error) {
	GinkgoHelper()
	Expect(err).NotTo(HaveOccurred())
	Expect(srv.Stop()).To(Succeed())
}

func ping(ctx context.Context, url string) error {
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return err
	}
	return conn.Close(ctx)
}
