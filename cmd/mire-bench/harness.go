package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"runtime"
	"runtime/metrics"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mire-go/mire/internal/cpustat"
)

// op is one unit of work of one side of a workload: a save, a load, a
// transfer, a full read. It returns how many units (events, usually) it
// handled, for workloads measured in events/s.
type op func(ctx context.Context, w *worker) (units int, err error)

// worker is one writer goroutine's state.
type worker struct {
	id  int
	rng *rand.Rand
	// conflicts and attempts count optimistic-concurrency refusals and save
	// attempts, for the workloads that retry.
	conflicts, attempts int64
}

// side is the mire or the baseline half of a case.
type side struct {
	op op
	// round, if set, runs before each measured round (a fresh stream to
	// hammer, say); its time is not measured.
	round func(ctx context.Context) error
}

// sample is what measuring one side over one or more rounds gave.
type sample struct {
	Ops       int64         `json:"ops"`
	Units     int64         `json:"units"`
	Elapsed   time.Duration `json:"elapsed_ns"`
	Conflicts int64         `json:"conflicts"`
	Attempts  int64         `json:"attempts"`
	PeakHeap  uint64        `json:"peak_heap_bytes,omitempty"`
	PeakLive  uint64        `json:"peak_live_heap_bytes,omitempty"`
	P50       time.Duration `json:"p50_ns"`
	P99       time.Duration `json:"p99_ns"`
	// ClientCPU and ServerCPU are the CPU time this process and the
	// PostgreSQL server used while the side ran (Linux only; zero
	// elsewhere). CPUMeasured says whether they were measured.
	ClientCPU   time.Duration   `json:"client_cpu_ns,omitempty"`
	ServerCPU   time.Duration   `json:"server_cpu_ns,omitempty"`
	CPUMeasured bool            `json:"cpu_measured,omitempty"`
	latencies   []time.Duration // of every op, unsorted
}

func (s *sample) add(o *sample) {
	s.Ops += o.Ops
	s.Units += o.Units
	s.Elapsed += o.Elapsed
	s.Conflicts += o.Conflicts
	s.Attempts += o.Attempts
	s.ClientCPU += o.ClientCPU
	s.ServerCPU += o.ServerCPU
	s.CPUMeasured = o.CPUMeasured // all or none: it depends on the OS alone
	s.PeakHeap = max(s.PeakHeap, o.PeakHeap)
	s.PeakLive = max(s.PeakLive, o.PeakLive)
	s.latencies = append(s.latencies, o.latencies...)
}

// OpsPerSec is the throughput in ops.
func (s *sample) OpsPerSec() float64 { return float64(s.Ops) / s.Elapsed.Seconds() }

// UnitsPerSec is the throughput in units (events).
func (s *sample) UnitsPerSec() float64 { return float64(s.Units) / s.Elapsed.Seconds() }

// finish computes the latency quantiles and drops the latencies, so that
// a long run does not hold them (workload 9 measures the heap).
func (s *sample) finish() {
	slices.Sort(s.latencies)
	s.P50, s.P99 = s.quantile(0.5), s.quantile(0.99)
	s.latencies = nil
}

// quantile returns the q-quantile of the sorted op latencies.
func (s *sample) quantile(q float64) time.Duration {
	if len(s.latencies) == 0 {
		return 0
	}
	return s.latencies[int(q*float64(len(s.latencies)-1))]
}

// measure runs op on writers goroutines for d (every worker completes at
// least one op) and returns the sample. With heap set it also samples the
// live heap every few milliseconds and reports the peak.
func measure(ctx context.Context, writers int, d time.Duration, o op, heap bool, seed uint64) (*sample, error) {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var stopHeap func() (uint64, uint64)
	if heap {
		stopHeap = sampleHeap()
	}
	workers := make([]*worker, writers)
	lats := make([][]time.Duration, writers)
	units := make([]int64, writers)
	var wg sync.WaitGroup
	cpu := cpustat.Now()
	start := time.Now()
	deadline := start.Add(d)
	for i := range writers {
		w := &worker{id: i, rng: rand.New(rand.NewPCG(seed, uint64(i)))}
		workers[i] = w
		wg.Go(func() {
			for n := 0; n == 0 || time.Now().Before(deadline); n++ {
				t0 := time.Now()
				u, err := o(ctx, w)
				if err != nil {
					cancel(err)
					return
				}
				lats[i] = append(lats[i], time.Since(t0))
				units[i] += int64(u)
				if ctx.Err() != nil {
					return
				}
			}
		})
	}
	wg.Wait()
	s := &sample{Elapsed: time.Since(start)}
	if used, ok := cpu.Since(); ok {
		s.ClientCPU, s.ServerCPU, s.CPUMeasured = used.Self, used.Postgres, true
	}
	if stopHeap != nil {
		s.PeakHeap, s.PeakLive = stopHeap()
	}
	if err := context.Cause(ctx); err != nil {
		return nil, err
	}
	for i, w := range workers {
		s.Ops += int64(len(lats[i]))
		s.Units += units[i]
		s.Conflicts += w.conflicts
		s.Attempts += w.attempts
		s.latencies = append(s.latencies, lats[i]...)
	}
	return s, nil
}

// The runtime metrics sampled for peak heap: bytes of heap memory occupied
// by objects, live or dead and not yet swept (what the heap holds at any
// instant); and the bytes the last collection found live (what the program
// retains, so what grows if anything accumulates).
const (
	heapObjects = "/memory/classes/heap/objects:bytes"
	heapLive    = "/gc/heap/live:bytes"
)

// sampleHeap starts sampling the heap after a full collection and returns
// a function that stops sampling and returns the peaks seen.
func sampleHeap() (stop func() (objects, live uint64)) {
	runtime.GC()
	var peak, peakLive atomic.Uint64
	done := make(chan struct{})
	finished := make(chan struct{})
	m := []metrics.Sample{{Name: heapObjects}, {Name: heapLive}}
	read := func() {
		metrics.Read(m)
		peak.Store(max(peak.Load(), m[0].Value.Uint64()))
		peakLive.Store(max(peakLive.Load(), m[1].Value.Uint64()))
	}
	go func() {
		defer close(finished)
		t := time.NewTicker(2 * time.Millisecond)
		defer t.Stop()
		for {
			read()
			select {
			case <-done:
				read()
				return
			case <-t.C:
			}
		}
	}()
	return func() (uint64, uint64) {
		close(done)
		<-finished
		return peak.Load(), peakLive.Load()
	}
}

// alternate measures the two sides of a case in rounds, mire and baseline
// taking turns (ABBA: mire, baseline, baseline, mire, ...) so that drift in
// the machine's load or the tables' size falls on both alike. Each side gets
// a short unmeasured warm-up first.
func alternate(ctx context.Context, c *bcase, writers, rounds int, per, warmup time.Duration, heap bool) (mireS, baseS *sample, err error) {
	mireS, baseS = &sample{}, &sample{}
	run := func(sd side, into *sample, d time.Duration, seed uint64) error {
		if sd.round != nil {
			if err := sd.round(ctx); err != nil {
				return fmt.Errorf("prepare round: %w", err)
			}
		}
		s, err := measure(ctx, writers, d, sd.op, heap, seed)
		if err != nil {
			return err
		}
		if into != nil {
			into.add(s)
		}
		return nil
	}
	if warmup > 0 {
		if err := run(c.mire, nil, warmup, 1); err != nil {
			return nil, nil, fmt.Errorf("mire warm-up: %w", err)
		}
		if err := run(c.baseline, nil, warmup, 1); err != nil {
			return nil, nil, fmt.Errorf("baseline warm-up: %w", err)
		}
	}
	for r := range rounds {
		order := []string{"mire", "baseline"}
		if r%2 == 1 {
			order = []string{"baseline", "mire"}
		}
		for _, name := range order {
			seed := uint64(100 + r)
			if name == "mire" {
				err = run(c.mire, mireS, per, seed)
			} else {
				err = run(c.baseline, baseS, per, seed)
			}
			if err != nil {
				return nil, nil, fmt.Errorf("%s round %d: %w", name, r+1, err)
			}
		}
	}
	return mireS, baseS, nil
}
