//go:build !linux

package cpustat

import "time"

// times is measured on Linux only.
func times() (self, postgres time.Duration, ok bool) { return 0, 0, false }
