package main

import (
	"fmt"
	"time"
)

// cpuMeter measures the CPU time a phase costs per message: this process
// (relay or publisher, and the embedded NATS server) and PostgreSQL.
type cpuMeter struct {
	self, postgres time.Duration
	ok             bool
}

func startCPU() cpuMeter {
	self, pg, ok := cpuTimes()
	return cpuMeter{self: self, postgres: pg, ok: ok}
}

// perMessage returns the CPU time per message of n messages since m began,
// as "12.3 µs (process 10.1 + postgres 2.2)", or "" where it is not
// measured.
func (m cpuMeter) perMessage(n int) string {
	self, pg, ok := cpuTimes()
	if !m.ok || !ok || n == 0 {
		return ""
	}
	us := func(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) / float64(n) }
	return fmt.Sprintf("%.1f µs (process %.1f + postgres %.1f)", us(self-m.self+pg-m.postgres), us(self-m.self), us(pg-m.postgres))
}
