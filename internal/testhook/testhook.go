// Package testhook lets the specs of mire's packages reach hooks of other
// packages of the module that exist for tests only (as export_test.go does
// within one package), without widening any public API.
package testhook

// CrashOnStop makes a *projections.Runner (given as any) stop as a crashed
// process would: without releasing its leases. Package projections fills
// it in.
var CrashOnStop func(runner any)
