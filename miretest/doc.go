// Package miretest helps users of mire write specs of their own code, in
// Ginkgo and Gomega's style or in plain `go test`.
//
// # Commands, without a database
//
// [Given] rebuilds an aggregate from past events (with [mire.Rehydrate]),
// [Scenario.When] runs a command on it, and [Scenario.Then] checks the
// events it recorded, or [Scenario.ThenError] its error:
//
//	miretest.Given[Account](Opened{Owner: "Ann"}, Deposited{Amount: 100}).
//		When(func(acc *mire.Root[Account]) error { return Withdraw(acc, 30) }).
//		Then(Withdrawn{Amount: 30})
//
// A failure lists the expected and recorded events, each as its Go type and
// JSON, as a diff. In a Ginkgo suite a failure goes to the fail handler
// that RegisterFailHandler registered; in a plain test, add WithT(t).
//
// # Matchers
//
// [HaveRecorded], [HaveState] and [HaveVersion] check a *mire.Root[T];
// [BeConcurrencyError] checks an error. They are Gomega matchers, so they
// work in Ginkgo specs and in plain tests through gomega.NewWithT(t):
//
//	Expect(acc).To(miretest.HaveRecorded(Withdrawn{Amount: 30}))
//	Expect(store.Save(ctx, stale)).To(miretest.BeConcurrencyError().WithActual(3))
//
// # A real database
//
// [Store] gives a plain test a store on a fresh database with mire's
// schema, dropped when the test ends; [Main] keeps one throwaway server for
// the whole package. [Suite] does the same for a Ginkgo suite:
//
//	var db = miretest.Suite() // db.Store, db.Pool; db.Fresh(ctx) for a spec's own
//
// The server is the one TEST_DATABASE_URL names, or else a throwaway one
// that package pgtest starts (it needs the PostgreSQL server programs
// installed, not running).
package miretest
