package projections

import "github.com/mire-go/mire/internal/testhook"

func init() {
	testhook.CrashOnStop = func(r any) { r.(*Runner).noRelease = true }
}
