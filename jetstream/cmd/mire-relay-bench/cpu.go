package main

import (
	"fmt"
	"time"

	"github.com/mire-go/mire/internal/cpustat"
)

// cpuMeter measures the CPU time a phase costs per message: this process
// (relay or publisher, and the embedded NATS server) and PostgreSQL.
type cpuMeter struct{ start cpustat.Sample }

func startCPU() cpuMeter { return cpuMeter{start: cpustat.Now()} }

// perMessage returns the CPU time per message of n messages since m began,
// as "12.3 µs (process 10.1 + postgres 2.2)", or "" where it is not
// measured.
func (m cpuMeter) perMessage(n int) string {
	d, ok := m.start.Since()
	if !ok || n == 0 {
		return ""
	}
	us := func(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) / float64(n) }
	return fmt.Sprintf("%.1f µs (process %.1f + postgres %.1f)", us(d.Self+d.Postgres), us(d.Self), us(d.Postgres))
}
