package main

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

// TestRun runs the whole benchmark at a tiny scale, so that the harness
// cannot rot; it measures nothing.
func TestRun(t *testing.T) {
	if testing.Short() {
		t.Skip("starts PostgreSQL and NATS")
	}
	var out bytes.Buffer
	o := options{events: 300, streams: 40, rounds: 1, rate: 200, duration: 300 * time.Millisecond, batch: 100, inFlight: 64}
	if err := run(t.Context(), o, &out); err != nil {
		t.Fatalf("%v\n%s", err, &out)
	}
	for _, want := range []string{"ratio", "no-op projection", "commit-to-broker latency"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("the output has no %q:\n%s", want, &out)
		}
	}
}
