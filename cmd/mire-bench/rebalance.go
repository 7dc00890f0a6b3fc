package main

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/mire-go/mire/projections"
)

// rebalanceResult is how long the partitions took to settle after one
// kind of membership change, over a number of tries, beside the runners'
// timings.
type rebalanceResult struct {
	Workload        string          `json:"workload"`
	Event           string          `json:"event"`
	Tries           int             `json:"tries"`
	P50             time.Duration   `json:"p50_ns"`
	Max             time.Duration   `json:"max_ns"`
	Times           []time.Duration `json:"times_ns"`
	LeaseTTL        time.Duration   `json:"lease_ttl_ns"`
	RecheckInterval time.Duration   `json:"recheck_interval_ns"`
	PollInterval    time.Duration   `json:"poll_interval_ns"`
}

// rebalanceCase is workload 10r: with 2 runner processes sharing the 16
// partitions, a 3rd joins (timed from its start until the partitions are
// held 5, 5 and 6 by the 3), then the oldest of the 3 is killed (timed
// from the kill until the 2 survivors hold 8 each); so many times over.
// The log is idle.
func rebalanceCase(ctx context.Context, pe *procEnv) (res *procResults, err error) {
	e, err := newEnv(ctx, pe.serverURL, pe.scale, 2)
	if err != nil {
		return nil, err
	}
	defer func() { err = errors.Join(err, e.close(ctx)) }()
	if err := projections.MigratePartitions(ctx, e.store, benchPartitions); err != nil {
		return nil, err
	}
	var live []*runnerProc
	defer func() { err = errors.Join(err, stopAll(live)) }() // before the database is dropped
	started := 0
	spawn := func() error {
		started++
		p, err := startRunner(e.url, fmt.Sprintf("m%02d", started), noopHandler, benchPartitions, pe.out)
		if err == nil {
			live = append(live, p)
		}
		return err
	}
	for range 2 {
		if err := spawn(); err != nil {
			return nil, err
		}
	}
	if _, err := waitSpread(ctx, e.store, live); err != nil {
		return nil, err
	}
	var joins, kills []time.Duration
	for try := range pe.scale.RebalanceTries {
		start := time.Now()
		if err := spawn(); err != nil {
			return nil, err
		}
		if _, err := waitSpread(ctx, e.store, live); err != nil {
			return nil, fmt.Errorf("try %d, join: %w", try+1, err)
		}
		joins = append(joins, time.Since(start))

		victim := live[0]
		live = live[1:]
		start = time.Now()
		victim.kill()
		if _, err := waitSpread(ctx, e.store, live); err != nil {
			return nil, fmt.Errorf("try %d, kill: %w", try+1, err)
		}
		kills = append(kills, time.Since(start))
		fmt.Fprintf(pe.out, "10r: try %d: join %s, kill -9 %s\n", try+1, joins[try].Round(time.Millisecond), kills[try].Round(time.Millisecond))
	}
	result := func(event string, times []time.Duration) *rebalanceResult {
		sorted := slices.Sorted(slices.Values(times))
		return &rebalanceResult{Workload: "10r", Event: event, Tries: len(times),
			P50: sorted[(len(sorted)-1)/2], Max: sorted[len(sorted)-1], Times: times,
			LeaseTTL: runnerTimings.LeaseTTL, RecheckInterval: runnerTimings.RecheckInterval, PollInterval: runnerTimings.PollInterval}
	}
	return &procResults{
		Rebalance: []*rebalanceResult{result("join: 2 -> 3 processes", joins), result("kill -9: 3 -> 2 processes", kills)},
		Notes: []string{fmt.Sprintf("10r: runner processes as in 10 (no-op handler, idle log). Join: from starting the 3rd process "+
			"(exec, connecting and Run included) until the %d partitions are held 5, 5 and 6 by the 3. Kill: from os.Process.Kill "+
			"(SIGKILL; TerminateProcess on windows) of the oldest of the 3 until the 2 survivors hold 8 each; the documented bound "+
			"for a dead replica is LeaseTTL + RecheckInterval = %v. Owners polled every %v through StatusOf; p50 is the lower median",
			benchPartitions, runnerTimings.LeaseTTL+runnerTimings.RecheckInterval, spreadPoll)},
	}, nil
}
