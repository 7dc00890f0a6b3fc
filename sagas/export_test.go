package sagas

import "github.com/mire-go/mire/internal/testhook"

// CrashOnStop makes r stop as a crashed process would: its projections'
// leases are not released. Call it before Run.
func CrashOnStop(r *Runner) { testhook.CrashOnStop(r.proj) }
