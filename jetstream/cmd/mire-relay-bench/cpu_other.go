//go:build !linux

package main

import "time"

// cpuTimes is measured on Linux only.
func cpuTimes() (self, postgres time.Duration, ok bool) { return 0, 0, false }
