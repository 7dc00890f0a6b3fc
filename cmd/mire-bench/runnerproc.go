package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/mire-go/mire"
	"github.com/mire-go/mire/projections"
)

// The benchmark binary (or the specs' test binary) doubles as the runner
// processes of workloads 10, 10n and 10r: started with runnerOwnerEnv set,
// it hosts the projection benchProjection until its standard input closes
// (a clean stop: Run returns, releasing its leases) or it is killed.
// Closing stdin works on every platform, where signals other than kill do
// not, and a parent that dies closes it too.
const (
	runnerOwnerEnv      = "MIRE_BENCH_RUNNER"            // the runner's Config.Owner
	runnerURLEnv        = "MIRE_BENCH_RUNNER_URL"        // the database
	runnerHandlerEnv    = "MIRE_BENCH_RUNNER_HANDLER"    // sleepHandler or noopHandler
	runnerPartitionsEnv = "MIRE_BENCH_RUNNER_PARTITIONS" // the projection's partition count
)

// The runner processes' projection and settings, printed beside the
// figures.
const (
	benchProjection = "bench"
	// runnerConns is each runner process's pool size: pgxpool's default
	// MaxConns on a 2-core machine (max(4, NumCPU)), stated rather than
	// left to the machine. A transactional handler holds its connection for
	// the whole batch, so the pool bounds how many partitions a process
	// handles at once. The LISTEN connection is taken out of the pool
	// (hijacked), so it comes on top.
	runnerConns = 4
	runnerBatch = 100
	// handlerSleep is what the slow handler spends on each event outside
	// the database, standing for an external call.
	handlerSleep = 2 * time.Millisecond
)

// The handlers a runner process can host.
const (
	sleepHandler = "sleep" // at-least-once (Plain): sleeps handlerSleep per event, writes nothing
	noopHandler  = "noop"  // transactional, does nothing (as workload 7's)
)

// runnerTimings are the runner processes' Config durations.
var runnerTimings = projections.Config{
	LeaseTTL:        2 * time.Second,
	RecheckInterval: 200 * time.Millisecond,
	PollInterval:    100 * time.Millisecond,
}

// isRunnerProcess reports whether this process was started as a runner
// process.
func isRunnerProcess() bool { return os.Getenv(runnerOwnerEnv) != "" }

// runnerMain runs this process as a runner process and returns its exit
// code.
func runnerMain() int {
	if err := serveRunner(); err != nil {
		fmt.Fprintf(os.Stderr, "mire-bench runner %s: %v\n", os.Getenv(runnerOwnerEnv), err)
		return 1
	}
	return 0
}

func serveRunner() error {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		_, _ = io.Copy(io.Discard, os.Stdin)
		cancel()
	}()
	parts, err := strconv.Atoi(os.Getenv(runnerPartitionsEnv))
	if err != nil {
		return fmt.Errorf("partitions: %w", err)
	}
	p, err := benchProjectionOf(os.Getenv(runnerHandlerEnv), parts)
	if err != nil {
		return err
	}
	cfg, err := pgxpool.ParseConfig(os.Getenv(runnerURLEnv))
	if err != nil {
		return err
	}
	cfg.MaxConns, cfg.MinConns = runnerConns, runnerConns
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return err
	}
	defer pool.Close()
	store, err := mire.New(pool, nil)
	if err != nil {
		return err
	}
	rc := runnerTimings
	rc.Owner, rc.Logger = os.Getenv(runnerOwnerEnv), runnerConfig.Logger
	r, err := projections.NewRunner(store, &rc, p)
	if err != nil {
		return err
	}
	return r.Run(ctx)
}

// benchProjectionOf returns the projection the runner processes host.
func benchProjectionOf(handler string, partitions int) (projections.Projection, error) {
	p := projections.Projection{Name: benchProjection, Partitions: partitions, BatchSize: runnerBatch}
	switch handler {
	case sleepHandler:
		p.Handler = projections.Plain(func(context.Context, mire.Envelope) error {
			time.Sleep(handlerSleep)
			return nil
		})
	case noopHandler:
		p.Handler = projections.HandlerFunc(func(context.Context, pgx.Tx, mire.Envelope) error { return nil })
	default:
		return p, fmt.Errorf("unknown handler %q", handler)
	}
	return p, nil
}

// runnerProc is a runner process started by the benchmark.
type runnerProc struct {
	owner  string
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	exited chan struct{} // closed when the process has exited; err is then set
	err    error
}

// startRunner starts a runner process named owner, hosting the projection
// of partitions with handler on the database at url. Its output goes to
// out.
func startRunner(url, owner, handler string, partitions int, out io.Writer) (*runnerProc, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("start runner %s: %w", owner, err)
	}
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), runnerOwnerEnv+"="+owner, runnerURLEnv+"="+url,
		runnerHandlerEnv+"="+handler, runnerPartitionsEnv+"="+strconv.Itoa(partitions))
	cmd.Stdout, cmd.Stderr = out, out
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, fmt.Errorf("start runner %s: %w", owner, err)
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start runner %s: %w", owner, err)
	}
	p := &runnerProc{owner: owner, cmd: cmd, stdin: stdin, exited: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.exited)
	}()
	return p, nil
}

// stop makes the runner stop cleanly (releasing its leases) and waits for
// it to exit, killing it if it has not within 10 s.
func (p *runnerProc) stop() error {
	_ = p.stdin.Close()
	t := time.NewTimer(10 * time.Second)
	defer t.Stop()
	select {
	case <-p.exited:
		if p.err != nil {
			return fmt.Errorf("runner %s: %w", p.owner, p.err)
		}
		return nil
	case <-t.C:
		p.kill()
		return fmt.Errorf("runner %s: did not stop within 10 s: killed", p.owner)
	}
}

// kill kills the runner (SIGKILL on unix, TerminateProcess on windows)
// and waits for it to exit.
func (p *runnerProc) kill() {
	_ = p.cmd.Process.Kill()
	<-p.exited
	_ = p.stdin.Close()
}

// alive returns an error if the runner has exited.
func (p *runnerProc) alive() error {
	select {
	case <-p.exited:
		return fmt.Errorf("runner %s exited: %v", p.owner, p.err)
	default:
		return nil
	}
}

// stopAll stops the runners, returning their errors.
func stopAll(procs []*runnerProc) error {
	var errs []error
	for _, p := range procs {
		errs = append(errs, p.stop())
	}
	return errors.Join(errs...)
}
