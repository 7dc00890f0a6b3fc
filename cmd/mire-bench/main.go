// Command mire-bench measures mire against a raw-pgx baseline doing the same
// minimum SQL, on the same server, in the same run, and prints a table.
//
//	go run ./cmd/mire-bench          # full run, a few minutes
//	go run ./cmd/mire-bench -short   # about two minutes
//	go run ./cmd/mire-bench -replica # loads on a primary with a streaming replica
//
// It starts a throwaway PostgreSQL with durable commits (fsync and
// synchronous_commit on, as in production) unless DATABASE_URL names a
// server, on which it creates and drops one database per case (the role
// needs CREATEDB). Each case runs mire and the baseline in alternating
// rounds, after a short warm-up of each. See the README's Performance section for what each
// workload means.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/mire-go/mire/pgtest"
)

// options are the command's flags.
type options struct {
	short      bool
	workloads  []string // ids to run; empty: all
	writers    []int
	duration   time.Duration // measured time per side per case
	rounds     int
	warmup     time.Duration
	durable    bool
	jsonOut    bool
	readAll    int
	cpuProfile string
	replica    bool
	pause      time.Duration // -replica: how long replay is paused
}

func main() {
	if isRunnerProcess() {
		os.Exit(runnerMain())
	}
	opts, err := parseFlags(os.Args[1:])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, opts, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "mire-bench:", err)
		os.Exit(1)
	}
}

func parseFlags(args []string) (*options, error) {
	fs := flag.NewFlagSet("mire-bench", flag.ContinueOnError)
	o := &options{}
	var workloadList, writerList string
	fs.BoolVar(&o.short, "short", false, "a quick run (about two minutes): shorter rounds, 100,000 events for workload 9, fewer for 10 and 10n")
	fs.StringVar(&workloadList, "workloads", "", "comma-separated workload ids to run (1,1a,1l,1s,1t,1p,2,3,3p,4,5,6,7,7u,7w,8,8s,9,10,10n,10r); default all")
	fs.StringVar(&writerList, "writers", "1,8", "comma-separated writer counts for the workloads that vary them")
	fs.DurationVar(&o.duration, "duration", 0, "measured time per side per case, split over the rounds (default 8s, 600ms with -short)")
	fs.IntVar(&o.rounds, "rounds", 0, "alternating rounds per side per case (default 4, 2 with -short)")
	fs.DurationVar(&o.warmup, "warmup", -1, "unmeasured warm-up per side per case (default 500ms, 100ms with -short)")
	fs.BoolVar(&o.durable, "durable", true, "run the throwaway server with fsync and synchronous_commit on")
	fs.BoolVar(&o.jsonOut, "json", false, "print the results as JSON instead of a table")
	fs.IntVar(&o.readAll, "events", 0, "events in the log for workload 9 (default 1,000,000, 100,000 with -short)")
	fs.StringVar(&o.cpuProfile, "cpuprofile", "", "write a CPU profile of the whole run to this file")
	fs.BoolVar(&o.replica, "replica", false, "instead of the workloads, measure loads on a primary with a streaming replica (throughput with 8 readers, a token's latency, fallbacks while replay is paused)")
	fs.DurationVar(&o.pause, "pause", time.Second, "with -replica, how long the replica's replay is paused")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	for id := range strings.SplitSeq(workloadList, ",") {
		if id = strings.TrimSpace(id); id == "" {
			continue
		}
		if !slices.ContainsFunc(workloads, func(w workload) bool { return w.id == id }) {
			return nil, fmt.Errorf("mire-bench: unknown workload %q", id)
		}
		o.workloads = append(o.workloads, id)
	}
	for s := range strings.SplitSeq(writerList, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 1 {
			return nil, fmt.Errorf("mire-bench: bad writer count %q", s)
		}
		o.writers = append(o.writers, n)
	}
	def := func(short, full time.Duration) time.Duration {
		if o.short {
			return short
		}
		return full
	}
	if o.duration <= 0 {
		o.duration = def(600*time.Millisecond, 8*time.Second)
	}
	if o.rounds <= 0 {
		o.rounds = 4
		if o.short {
			o.rounds = 2
		}
	}
	if o.warmup < 0 {
		o.warmup = def(100*time.Millisecond, 500*time.Millisecond)
	}
	return o, nil
}

// result is one row of the table.
type result struct {
	Workload string  `json:"workload"`
	Title    string  `json:"title"`
	Writers  int     `json:"writers"`
	Unit     string  `json:"unit"`
	Mire     *sample `json:"mire"`
	Baseline *sample `json:"baseline"`
	Ratio    float64 `json:"ratio"`
	Target   string  `json:"target,omitempty"`
	Met      *bool   `json:"met,omitempty"`
	Note     string  `json:"note,omitempty"`
	// Handler is the commit-to-handler latency of the events the mire
	// side wrote, for the workloads that attach a runner (7w).
	Handler *handlerLatency `json:"commit_to_handler,omitempty"`

	byUnits bool
}

// handlerLatency is the time from an event's recorded_at (its
// transaction's start, on the server's clock) to its handler.
type handlerLatency struct {
	Events int           `json:"events"`
	P50    time.Duration `json:"p50_ns"`
	P99    time.Duration `json:"p99_ns"`
}

func run(ctx context.Context, o *options, stdout, stderr io.Writer) error {
	if o.cpuProfile != "" {
		f, err := os.Create(o.cpuProfile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	if o.replica {
		streams := fullScale.Streams
		if o.short {
			streams = shortScale.Streams
		}
		f, err := runReplica(ctx, o, streams, stderr)
		if err != nil {
			return err
		}
		if o.jsonOut {
			return json.NewEncoder(stdout).Encode(f)
		}
		printReplica(stdout, f)
		return nil
	}
	serverURL, stopServer, err := server(ctx, o)
	if err != nil {
		return err
	}
	defer stopServer()
	machine, err := describe(ctx, serverURL, o)
	if err != nil {
		return err
	}
	fmt.Fprintln(stderr, machine)
	sc := fullScale
	if o.short {
		sc = shortScale
	}
	if o.readAll > 0 {
		sc.ReadAll = o.readAll
	}
	start := time.Now()
	var results []*result
	procs, procRounds := &procResults{}, 2
	if o.short {
		procRounds = 1
	}
	for _, w := range workloads {
		if len(o.workloads) > 0 && !slices.Contains(o.workloads, w.id) {
			continue
		}
		if w.procs != nil {
			r, err := w.procs(ctx, &procEnv{serverURL: serverURL, scale: sc, rounds: procRounds, out: stderr})
			if err != nil {
				return fmt.Errorf("workload %s: %w", w.id, err)
			}
			fmt.Fprintf(stderr, "%s done (%s)\n", w.id, time.Since(start).Round(time.Second))
			procs.add(r)
			continue
		}
		for _, writers := range cmpOr(w.writers, o.writers) {
			r, err := runFresh(ctx, serverURL, sc, o, w, writers)
			if err != nil {
				return fmt.Errorf("workload %s, %d writers: %w", w.id, writers, err)
			}
			fmt.Fprintf(stderr, "%s (%s)\n", row(r), time.Since(start).Round(time.Second))
			results = append(results, r)
		}
	}
	if len(procs.Scaling) > 0 {
		procs.Notes = append([]string{catchUpNote(procRounds)}, procs.Notes...)
	}
	if o.jsonOut {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		out := map[string]any{"machine": machine, "scale": sc, "results": results}
		if len(procs.Scaling)+len(procs.Rebalance) > 0 {
			out["partitions"] = procs
		}
		return enc.Encode(out)
	}
	fmt.Fprintf(stdout, "%s\n\n", machine)
	if len(results) > 0 {
		printTable(stdout, results)
	}
	printProcs(stdout, procs)
	fmt.Fprintf(stdout, "\ntotal time %s\n", time.Since(start).Round(time.Second))
	return nil
}

func cmpOr(a, b []int) []int {
	if len(a) > 0 {
		return a
	}
	return b
}

// runFresh runs one workload at one writer count in a fresh database.
func runFresh(ctx context.Context, serverURL string, sc scale, o *options, w workload, writers int) (res *result, err error) {
	e, err := newEnv(ctx, serverURL, sc, writers+2)
	if err != nil {
		return nil, err
	}
	defer func() { err = errors.Join(err, e.close(ctx)) }()
	return runCase(ctx, e, o, w, writers)
}

// runCase runs one workload at one writer count in e.
func runCase(ctx context.Context, e *env, o *options, w workload, writers int) (res *result, err error) {
	c, err := w.setup(ctx, e, writers)
	if err != nil {
		return nil, fmt.Errorf("setup: %w", err)
	}
	if c.cleanup != nil {
		defer func() { err = errors.Join(err, c.cleanup()) }()
	}
	rounds, warmup := o.rounds, o.warmup
	if w.heavy {
		rounds, warmup = min(rounds, 2), 0
	}
	per := o.duration / time.Duration(rounds)
	m, b, err := alternate(ctx, c, writers, rounds, per, warmup, w.heap)
	if err != nil {
		return nil, err
	}
	m.finish()
	b.finish()
	res = &result{Workload: w.id, Title: w.title, Writers: writers, Unit: w.unit, Mire: m, Baseline: b,
		Ratio: ratio(m, b, w.byUnits), Target: w.target, byUnits: w.byUnits}
	if w.met != nil {
		met := w.met(m, b)
		res.Met = &met
	}
	if c.note != nil {
		res.Note = c.note(m, b)
	}
	if c.handler != nil {
		res.Handler = c.handler()
	}
	return res, nil
}

// server returns the server to measure on: DATABASE_URL's, or a throwaway
// one started here.
func server(ctx context.Context, o *options) (string, func(), error) {
	if u := os.Getenv(pgtest.EnvDatabase); u != "" {
		return u, func() {}, nil
	}
	srv, err := pgtest.StartThrowaway(ctx, &pgtest.Options{Durable: o.durable})
	if err != nil {
		return "", nil, err
	}
	return srv.URL(), func() { _ = srv.Stop() }, nil
}

// describe names the machine and the server settings that decide the
// figures.
func describe(ctx context.Context, serverURL string, o *options) (string, error) {
	conn, err := pgx.Connect(ctx, serverURL)
	if err != nil {
		return "", fmt.Errorf("connect: %w", err)
	}
	defer conn.Close(ctx)
	var version, fsync, syncCommit string
	err = conn.QueryRow(ctx, `SELECT current_setting('server_version'), current_setting('fsync'), current_setting('synchronous_commit')`).
		Scan(&version, &fsync, &syncCommit)
	if err != nil {
		return "", fmt.Errorf("read server settings: %w", err)
	}
	mode := "full"
	if o.short {
		mode = "short"
	}
	return fmt.Sprintf("mire-bench (%s): %d CPUs, %s RAM, %s/%s, %s; PostgreSQL %s, fsync=%s, synchronous_commit=%s; %s per side per case in %d alternating rounds",
		mode, runtime.NumCPU(), memTotal(), runtime.GOOS, runtime.GOARCH, runtime.Version(),
		version, fsync, syncCommit, o.duration, o.rounds), nil
}

// memTotal reads the machine's memory from /proc/meminfo, or "?".
func memTotal() string {
	data, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return "?"
	}
	for line := range strings.SplitSeq(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, "MemTotal:"); ok {
			kb, err := strconv.ParseFloat(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 64)
			if err == nil {
				return fmt.Sprintf("%.0f GiB", kb/(1<<20))
			}
		}
	}
	return "?"
}
