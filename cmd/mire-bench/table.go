package main

import (
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
)

const tableHeader = `| # | workload | writers | mire | baseline | ratio | mire p50 / p99 | baseline p50 / p99 | target |
|---|---|--:|--:|--:|--:|--:|--:|---|`

// printTable writes the results as a Markdown table, then their notes.
func printTable(w io.Writer, results []*result) {
	fmt.Fprintln(w, tableHeader)
	for _, r := range results {
		fmt.Fprintln(w, row(r))
	}
	first := true
	for _, r := range results {
		if r.Note == "" {
			continue
		}
		if first {
			fmt.Fprintln(w)
			first = false
		}
		fmt.Fprintf(w, "- %s, %d writers: %s\n", r.Workload, r.Writers, r.Note)
	}
	first = true
	for _, r := range results {
		if r.Handler == nil {
			continue
		}
		if first {
			fmt.Fprintf(w, "\nCommit-to-handler latency (from an event's recorded_at to its handler)\n\n%s\n",
				"| # | workload | writers | events | p50 | p99 |\n|---|---|--:|--:|--:|--:|")
			first = false
		}
		h := r.Handler
		fmt.Fprintf(w, "| %s | %s | %d | %s | %s ms | %s ms |\n", r.Workload, r.Title, r.Writers,
			thousands(float64(h.Events)), ms(h.P50), ms(h.P99))
	}
	printCPU(w, results)
}

// printCPU writes the CPU time each side spent per op (per event where
// the workload counts events): this process's (the client: mire or the
// baseline's pgx code, and for 7w the runner) and the PostgreSQL server's,
// on Linux, where they are measured.
func printCPU(w io.Writer, results []*result) {
	first := true
	for _, r := range results {
		if !r.Mire.CPUMeasured || !r.Baseline.CPUMeasured {
			continue
		}
		if first {
			fmt.Fprintf(w, "\nCPU time per op: client (this process) + server (PostgreSQL)\n\n%s\n",
				"| # | workload | writers | per | mire client + server | baseline client + server | mire / baseline |\n|---|---|--:|---|--:|--:|--:|")
			first = false
		}
		per := func(s *sample) (client, server float64) {
			n := s.Ops
			if r.byUnits {
				n = s.Units
			}
			us := func(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) / float64(max(n, 1)) }
			return us(s.ClientCPU), us(s.ServerCPU)
		}
		mc, msv := per(r.Mire)
		bc, bsv := per(r.Baseline)
		unit := strings.TrimSuffix(r.Unit, "s")
		fmt.Fprintf(w, "| %s | %s | %d | %s | %s + %s = %s µs | %s + %s = %s µs | %.2f |\n", r.Workload, r.Title, r.Writers, unit,
			us1(mc), us1(msv), us1(mc+msv), us1(bc), us1(bsv), us1(bc+bsv), (mc+msv)/max(bc+bsv, 1e-9))
	}
}

// us1 formats microseconds with one decimal, or none from 100 up.
func us1(v float64) string {
	if v >= 100 {
		return thousands(v)
	}
	return strconv.FormatFloat(v, 'f', 1, 64)
}

func row(r *result) string {
	rate := func(s *sample) string {
		v := s.OpsPerSec()
		if r.byUnits {
			v = s.UnitsPerSec()
		}
		return thousands(v) + " " + r.Unit + "/s"
	}
	lat := func(s *sample) string { return ms(s.P50) + " / " + ms(s.P99) + " ms" }
	target := r.Target
	if r.Met != nil {
		if *r.Met {
			target += " ✓"
		} else {
			target += " ✗ missed"
		}
	}
	return fmt.Sprintf("| %s | %s | %d | %s | %s | %.2f | %s | %s | %s |",
		r.Workload, r.Title, r.Writers, rate(r.Mire), rate(r.Baseline), r.Ratio, lat(r.Mire), lat(r.Baseline), target)
}

// ms formats a duration in milliseconds with three significant digits.
func ms(d time.Duration) string {
	v := float64(d) / float64(time.Millisecond)
	switch {
	case v >= 100:
		return strconv.FormatFloat(v, 'f', 0, 64)
	case v >= 10:
		return strconv.FormatFloat(v, 'f', 1, 64)
	}
	return strconv.FormatFloat(v, 'f', 2, 64)
}

// thousands formats v rounded, with commas: 12,345.
func thousands(v float64) string {
	s := strconv.FormatInt(int64(v+0.5), 10)
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}

func mib(b uint64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }
