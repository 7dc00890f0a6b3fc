package projections

// CrashOnStop makes r stop as a crashed process would: without releasing
// its leases. Call it before Run.
func CrashOnStop(r *Runner) { r.noRelease = true }
