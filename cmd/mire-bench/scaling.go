package main

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/mire-go/mire"
	"github.com/mire-go/mire/projections"
)

// Workloads 10 and 10n: how a catch-up scales with the runner processes
// sharing a partitioned projection, and what the partitioned reader costs
// per event.

// scalingResult is one catch-up figure: a handler, a partition count and
// a number of runner processes.
type scalingResult struct {
	Workload   string `json:"workload"`
	Handler    string `json:"handler"`
	Partitions int    `json:"partitions"`
	Processes  int    `json:"processes"`
	// Serial marks Runner.CatchUp in the benchmark's own process, which
	// runs the partitions one after another in one goroutine: the
	// reader's cost per event, without the parallelism.
	Serial  bool          `json:"serial,omitempty"`
	Events  int           `json:"events"` // per round
	Rounds  int           `json:"rounds"`
	Elapsed time.Duration `json:"elapsed_ns"` // over all rounds
	Rate    float64       `json:"events_per_sec"`
	// Ratio is Rate over the rate of the setup Versus names (0 for the
	// reference rows).
	Ratio  float64 `json:"ratio,omitempty"`
	Versus string  `json:"versus,omitempty"`
	Target string  `json:"target,omitempty"`
	Met    *bool   `json:"met,omitempty"`
}

// scalingTargets are the targets for the slow handler, by number
// of processes: the rate over the rate of 1 process.
var scalingTargets = map[int]float64{2: 1.8, 4: 3.2}

// scalingCase is workload 10 (handler sleepHandler) or 10n (noopHandler):
// catch-up of the log by 1, 2 and 4 runner processes sharing 16
// partitions; for 10n also by 1 process running the projection
// unpartitioned, the single-worker reader of today.
func scalingCase(handler string) func(ctx context.Context, pe *procEnv) (*procResults, error) {
	return func(ctx context.Context, pe *procEnv) (*procResults, error) {
		id, n, what := "10", pe.scale.PartEvents, fmt.Sprintf("%v sleep per event (Plain)", handlerSleep)
		if handler == noopHandler {
			id, n, what = "10n", pe.scale.PartNoop, "no-op (transactional)"
		}
		res := &procResults{}
		if handler == noopHandler {
			serial, err := serialCatchUps(ctx, pe, n)
			if err != nil {
				return nil, err
			}
			res.Scaling = serial
		}
		type setup struct{ partitions, procs int }
		setups := []setup{{benchPartitions, 1}, {benchPartitions, 2}, {benchPartitions, 4}}
		if handler == noopHandler {
			setups = append([]setup{{1, 1}}, setups...)
		}
		elapsed := make([]time.Duration, len(setups))
		var spreadMax float64
		var statusMax time.Duration // StatusOf's time with the whole log to deliver
		for r := range pe.rounds {
			for j := range setups {
				i := j
				if r%2 == 1 {
					i = len(setups) - 1 - j
				}
				s := setups[i]
				run, err := timedCatchUp(ctx, pe, handler, s.partitions, s.procs, n)
				if err != nil {
					return nil, fmt.Errorf("%d partitions, %d processes: %w", s.partitions, s.procs, err)
				}
				d := run.elapsed
				fmt.Fprintf(pe.out, "%s: %s handler, %d partitions, %d processes: %s events in %s (%s events/s)\n",
					id, handler, s.partitions, s.procs, thousands(float64(n)), d.Round(time.Millisecond), thousands(float64(n)/d.Seconds()))
				elapsed[i] += d
				spreadMax = max(spreadMax, run.imbalance)
				if s.partitions > 1 {
					statusMax = max(statusMax, run.status)
				}
			}
		}
		rate := func(i int) float64 { return float64(n*pe.rounds) / elapsed[i].Seconds() }
		ref := slices.Index(setups, setup{benchPartitions, 1})
		for i, s := range setups {
			sr := &scalingResult{Workload: id, Handler: handler, Partitions: s.partitions, Processes: s.procs,
				Events: n, Rounds: pe.rounds, Elapsed: elapsed[i], Rate: rate(i)}
			switch {
			case s.partitions == 1:
			case s.procs == 1 && handler == noopHandler:
				sr.Ratio, sr.Versus = rate(i)/rate(slices.Index(setups, setup{1, 1})), "1 partition, 1 process"
			case s.procs > 1:
				sr.Ratio, sr.Versus = rate(i)/rate(ref), fmt.Sprintf("%d partitions, 1 process", benchPartitions)
				if t, ok := scalingTargets[s.procs]; ok && handler == sleepHandler {
					met := sr.Ratio >= t
					sr.Target, sr.Met = fmt.Sprintf(">= %.1f", t), &met
				}
			}
			res.Scaling = append(res.Scaling, sr)
		}
		note := fmt.Sprintf("%s: handler %s; %s events per run over %s streams (1-event appends); the busiest of the %d partitions holds %.2fx the mean",
			id, what, thousands(float64(n)), thousands(float64(pe.scale.PartStreams)), benchPartitions, spreadMax)
		if handler == sleepHandler {
			// At 4 processes each partition has a connection to itself, so
			// the busiest one's events set the time.
			note += fmt.Sprintf(", which caps the ratio at 4 processes near %.1f", 4/spreadMax)
		}
		if statusMax > 0 {
			note += fmt.Sprintf("; StatusOf took up to %s ms with the %s events still to deliver (its lag counts them)", ms(statusMax), thousands(float64(n)))
		}
		res.Notes = append(res.Notes, note)
		if handler == noopHandler {
			res.Notes = append(res.Notes, fmt.Sprintf("10n: CatchUp rows: Runner.CatchUp in the benchmark's process (pool MaxConns %d), "+
				"which runs the partitions one after another in one goroutine, of a projection of 16 partitions and of an unpartitioned one "+
				"over the same log in one database, reset between calls, %d calls each in ABBA order: what reading through the partition "+
				"index costs per event, without parallelism. The 16 partitions at 1 process are compared with the unpartitioned projection "+
				"in 1 process (one worker), measured alike: that ratio adds the partitions' parallelism", runnerConns, serialCalls))
		}
		return res, nil
	}
}

// catchUpNote says how workloads 10 and 10n are measured.
func catchUpNote(rounds int) string {
	order := "one run per setup"
	if rounds > 1 {
		order = fmt.Sprintf("%d runs per setup, in ABBA order", rounds)
	}
	return fmt.Sprintf("10, 10n: each run has a fresh database; its runner processes (pool MaxConns %d each, batch %d, LeaseTTL %v, "+
		"RecheckInterval %v, PollInterval %v) are started and given time until the partitions are spread over them; then the events "+
		"are written in one transaction that an older open transaction hides from the readers (they read below the oldest running "+
		"transaction). The clock runs from the end of that older transaction (and Store.Notify) until the partitions' delivered counts "+
		"add up to the events (polled every %v from the subscriptions table: StatusOf's lag walks the remaining index entries, too "+
		"heavy to poll), and StatusOf then shows Lag 0 and Held 0: process start-up and membership are excluded; %s",
		runnerConns, runnerBatch, runnerTimings.LeaseTTL, runnerTimings.RecheckInterval, runnerTimings.PollInterval, deliveredPoll, order)
}

// catchUpRun is what one timed catch-up gave.
type catchUpRun struct {
	elapsed time.Duration
	// imbalance is the busiest partition's events over the mean (0 if
	// unpartitioned).
	imbalance float64
	// status is how long StatusOf took with every event still to deliver.
	status time.Duration
}

// timedCatchUp times one catch-up of n events (see catchUpNote) by procs
// runner processes hosting the projection of partitions with handler.
func timedCatchUp(ctx context.Context, pe *procEnv, handler string, partitions, procs, n int) (run catchUpRun, err error) {
	e, err := newEnv(ctx, pe.serverURL, pe.scale, 3)
	if err != nil {
		return run, err
	}
	defer func() { err = errors.Join(err, e.close(ctx)) }()
	if err := projections.MigratePartitions(ctx, e.store, partitions); err != nil {
		return run, err
	}
	var runners []*runnerProc
	defer func() { err = errors.Join(err, stopAll(runners)) }() // before the database is dropped
	for i := range procs {
		p, err := startRunner(e.url, fmt.Sprintf("r%d", i+1), handler, partitions, pe.out)
		if err != nil {
			return run, err
		}
		runners = append(runners, p)
	}
	if _, err := waitSpread(ctx, e.store, runners); err != nil {
		return run, err
	}

	hold, err := e.pool.Begin(ctx)
	if err != nil {
		return run, err
	}
	defer func() { _ = hold.Rollback(context.WithoutCancel(ctx)) }()
	if _, err := hold.Exec(ctx, `SELECT pg_current_xact_id()`); err != nil {
		return run, err
	}
	streams := pe.scale.PartStreams
	if err := fill(ctx, e, streams, n/streams, n); err != nil {
		return run, err
	}
	if partitions > 1 {
		if err := e.pool.QueryRow(ctx, partitionImbalance, partitions).Scan(&run.imbalance); err != nil {
			return run, err
		}
	}
	start := time.Now()
	st, err := projections.StatusOf(ctx, e.store, benchProjection)
	if err != nil {
		return run, err
	}
	if run.status = time.Since(start); st.Lag != int64(n) {
		return run, fmt.Errorf("before catch-up: lag %d, want %d", st.Lag, n)
	}

	start = time.Now()
	if err := hold.Rollback(ctx); err != nil {
		return run, err
	}
	e.store.Notify()
	for {
		var delivered int64
		if err := e.pool.QueryRow(ctx, sumDelivered, benchProjection).Scan(&delivered); err != nil {
			return run, err
		}
		if delivered >= int64(n) {
			break
		}
		for _, p := range runners {
			if err := p.alive(); err != nil {
				return run, err
			}
		}
		if time.Since(start) > catchUpTimeout {
			return run, fmt.Errorf("catch-up: %d of %d events delivered after %v", delivered, n, catchUpTimeout)
		}
		if err := pause(ctx, deliveredPoll); err != nil {
			return run, err
		}
	}
	run.elapsed = time.Since(start)
	st, err = projections.StatusOf(ctx, e.store, benchProjection)
	switch {
	case err != nil:
		return run, err
	case st.State != projections.Running:
		return run, fmt.Errorf("projection halted: %s", st.LastError)
	case st.Lag != 0 || st.Held != 0 || st.Delivered != int64(n):
		return run, fmt.Errorf("after catch-up: lag %d, held %d, delivered %d of %d", st.Lag, st.Held, st.Delivered, n)
	}
	return run, nil
}

// serialCalls is how many times serialCatchUps calls each projection's
// CatchUp.
const serialCalls = 4

// serialCatchUps times Runner.CatchUp of the same n events by the
// projection of 16 partitions and by the unpartitioned one, with the
// no-op handler, in this process, taking turns (see the 10n note), and
// returns their rows.
func serialCatchUps(ctx context.Context, pe *procEnv, n int) (rows []*scalingResult, err error) {
	e, err := newEnv(ctx, pe.serverURL, pe.scale, runnerConns)
	if err != nil {
		return nil, err
	}
	defer func() { err = errors.Join(err, e.close(ctx)) }()
	if err := projections.MigratePartitions(ctx, e.store, benchPartitions); err != nil {
		return nil, err
	}
	if err := fill(ctx, e, pe.scale.PartStreams, n/pe.scale.PartStreams, n); err != nil {
		return nil, err
	}
	cfg := runnerTimings
	cfg.Logger = runnerConfig.Logger
	var runners [2]*projections.Runner
	var names [2]string
	for i, parts := range []int{1, benchPartitions} {
		p, err := benchProjectionOf(noopHandler, parts)
		if err != nil {
			return nil, err
		}
		p.Name = fmt.Sprintf("%s-%d", p.Name, parts)
		if runners[i], err = projections.NewRunner(e.store, &cfg, p); err != nil {
			return nil, err
		}
		names[i] = p.Name
	}
	var elapsed [2]time.Duration
	for call := range 2 * serialCalls {
		i := call % 2
		if call/2%2 == 1 {
			i = 1 - i
		}
		// The first call of each finds no checkpoint to reset.
		if err := projections.ResetCheckpoint(ctx, e.store, names[i]); err != nil && !errors.Is(err, mire.ErrNotFound) {
			return nil, err
		}
		start := time.Now()
		if err := runners[i].CatchUp(ctx); err != nil {
			return nil, err
		}
		d := time.Since(start)
		elapsed[i] += d
		st, err := runners[i].Status(ctx, names[i])
		if err == nil && (st.Lag != 0 || st.Delivered != int64(n)) {
			err = fmt.Errorf("after catch-up: lag %d, delivered %d of %d", st.Lag, st.Delivered, n)
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", names[i], err)
		}
		fmt.Fprintf(pe.out, "10n: noop handler, %s, CatchUp in one goroutine: %s events in %s (%s events/s)\n",
			names[i], thousands(float64(n)), d.Round(time.Millisecond), thousands(float64(n)/d.Seconds()))
	}
	for i, parts := range []int{1, benchPartitions} {
		rows = append(rows, &scalingResult{Workload: "10n", Handler: noopHandler, Partitions: parts, Processes: 1, Serial: true,
			Events: n, Rounds: serialCalls, Elapsed: elapsed[i], Rate: float64(n*serialCalls) / elapsed[i].Seconds()})
	}
	rows[1].Ratio, rows[1].Versus = rows[1].Rate/rows[0].Rate, "1 partition, CatchUp"
	return rows, nil
}

const (
	sumDelivered = `SELECT coalesce(sum(delivered), 0)::bigint FROM mire.subscriptions WHERE name = $1`
	// partitionImbalance is the busiest partition's events over the mean,
	// for $1 partitions (the partition of a stream as the projections
	// package computes it).
	partitionImbalance = `SELECT max(c)::float8 * $1::int / sum(c)::float8
FROM (SELECT count(*) AS c FROM mire.events GROUP BY (hashtext(stream_id) & 2147483647) % $1::int) p`
)
