// Package cpustat measures the CPU time a stretch of a benchmark costs: this
// process's and the PostgreSQL server's, so a benchmark can report what an
// op costs on each side of the connection as well as how fast it ran.
package cpustat

import "time"

// Sample is the CPU time used so far, user and system: by this process
// (everything in it, the garbage collector included) and by every postgres
// process on the machine (the server, its backends and helpers, and the
// backends that have exited since it started).
type Sample struct {
	Self, Postgres time.Duration
	ok             bool
}

// Now samples the CPU times. On systems where they are not measured (all
// but Linux), the sample is empty and Since reports nothing.
func Now() Sample {
	self, pg, ok := times()
	return Sample{Self: self, Postgres: pg, ok: ok}
}

// Since returns the CPU time used between s and a sample taken now, and
// whether it was measured.
func (s Sample) Since() (Sample, bool) {
	n := Now()
	if !s.ok || !n.ok {
		return Sample{}, false
	}
	return Sample{Self: n.Self - s.Self, Postgres: n.Postgres - s.Postgres, ok: true}, true
}
