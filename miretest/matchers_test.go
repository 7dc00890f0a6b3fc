package miretest_test

import (
	"fmt"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/onsi/gomega/types"

	"github.com/mire-go/mire"
	"github.com/mire-go/mire/miretest"
)

// account returns Ann's account with 100 that recorded events.
func account(recorded ...any) *mire.Root[Account] {
	GinkgoHelper()
	acc, err := mire.Rehydrate[Account](nil, "ann", Opened{Owner: "Ann"}, Deposited{Amount: 100})
	Expect(err).NotTo(HaveOccurred())
	for _, e := range recorded {
		Expect(acc.Record(e)).To(Succeed())
	}
	return acc
}

// failureOf returns the failure message of matcher on actual, which must
// not match.
func failureOf(matcher types.GomegaMatcher, actual any) string {
	GinkgoHelper()
	ok, err := matcher.Match(actual)
	Expect(err).NotTo(HaveOccurred())
	Expect(ok).To(BeFalse(), "the matcher fails")
	return matcher.FailureMessage(actual)
}

var _ = Describe("HaveRecorded", func() {
	w10, w20, fee := Withdrawn{Amount: 10}, Withdrawn{Amount: 20}, Fee{Amount: 1}

	It("matches a Root's pending events, in order", func() {
		Expect(account(w10, fee)).To(miretest.HaveRecorded(w10, fee))
		Expect(account()).To(miretest.HaveRecorded())
		Expect(account(w10, fee)).To(miretest.HaveRecorded(w10, BeAssignableToTypeOf(Fee{})))
		Expect(account(w10)).NotTo(miretest.HaveRecorded())
	})

	It("does not count events saved or applied from history", func() {
		acc := account()
		Expect(acc).To(miretest.HaveVersion(2))
		Expect(acc).To(miretest.HaveRecorded())
	})

	DescribeTable("fails on events out of order, extra or missing, marking each on its line",
		func(recorded, expected []any, diff string) {
			msg := failureOf(miretest.HaveRecorded(expected...), account(recorded...))
			Expect(msg).To(HavePrefix("Root account-ann:\nexpected "))
			Expect(msg).To(HaveSuffix(diff))
		},
		Entry("out of order", []any{w10, fee}, []any{fee, w10},
			"expected 2 events, recorded 2 events (- expected, + recorded; Go type and JSON):\n"+
				"  - [0] miretest_test.Fee {\"amount\":1}\n"+
				"    [0] miretest_test.Withdrawn {\"amount\":10}\n"+
				"  + [1] miretest_test.Fee {\"amount\":1}\n"),
		Entry("an extra one in the middle", []any{w10, fee, w20}, []any{w10, w20},
			"expected 2 events, recorded 3 events (- expected, + recorded; Go type and JSON):\n"+
				"    [0] miretest_test.Withdrawn {\"amount\":10}\n"+
				"  + [1] miretest_test.Fee {\"amount\":1}\n"+
				"    [2] miretest_test.Withdrawn {\"amount\":20}\n"),
		Entry("one missing at the end", []any{w10}, []any{w10, fee},
			"expected 2 events, recorded 1 event (- expected, + recorded; Go type and JSON):\n"+
				"    [0] miretest_test.Withdrawn {\"amount\":10}\n"+
				"  - [1] miretest_test.Fee {\"amount\":1}\n"),
		Entry("none recorded", nil, []any{w10},
			"expected 1 event, recorded 0 events (- expected, + recorded; Go type and JSON):\n"+
				"  - [0] miretest_test.Withdrawn {\"amount\":10}\n"),
		Entry("another value", []any{w20}, []any{w10},
			"  - [0] miretest_test.Withdrawn {\"amount\":10}\n"+
				"  + [0] miretest_test.Withdrawn {\"amount\":20}\n"),
		Entry("a matcher that does not match", []any{w20}, []any{BeAssignableToTypeOf(Fee{})},
			"  - [0] an event matching *matchers.AssignableToTypeOfMatcher\n"+
				"  + [0] miretest_test.Withdrawn {\"amount\":20}\n"),
	)

	It("reads every Root of a mire.Roots[T] in turn, and a []any", func() {
		a, b := account(w10), account(fee)
		Expect(mire.Roots[Account]{a, b}).To(miretest.HaveRecorded(w10, fee))
		Expect(failureOf(miretest.HaveRecorded(fee, w10), mire.Roots[Account]{a, b})).To(HavePrefix("Root account-ann, Root account-ann:\n"))
		Expect([]any{w10}).To(miretest.HaveRecorded(w10))
	})

	It("shows in Go syntax events that read the same as JSON but differ", func() {
		type note struct {
			Text string
			seen bool
		}
		msg := failureOf(miretest.HaveRecorded(note{Text: "x"}), []any{note{Text: "x", seen: true}})
		Expect(msg).To(HaveSuffix("  - [0] miretest_test.note {\"Text\":\"x\"}\n" +
			"  + [0] miretest_test.note {\"Text\":\"x\"}\n" +
			"Events that read the same differ in what JSON does not show:\n" +
			"  expected miretest_test.note{Text:\"x\", seen:false}\n" +
			"  recorded miretest_test.note{Text:\"x\", seen:true}\n"))
	})

	It("says what it wanted when the negation fails", func() {
		m := miretest.HaveRecorded(w10)
		Expect(m.Match(account(w10))).To(BeTrue())
		Expect(m.NegatedFailureMessage(account(w10))).To(Equal("Root account-ann: expected other events than these, but recorded exactly them:\n    [0] miretest_test.Withdrawn {\"amount\":10}\n"))
	})

	It("refuses what is not a Root", func() {
		_, err := miretest.HaveRecorded().Match(Account{})
		Expect(err).To(MatchError("HaveRecorded expects a *mire.Root[T], mire.Roots[T] or []any, not miretest_test.Account"))
		_, err = miretest.HaveRecorded().Match((*mire.Root[Account])(nil))
		Expect(err).To(MatchError("HaveRecorded: actual is a nil *mire.Root[github.com/mire-go/mire/miretest_test.Account]"))
		_, err = miretest.HaveRecorded().Match(mire.Roots[Account]{nil})
		Expect(err).To(MatchError(ContainSubstring("root 0 of mire.Roots")))
	})
})

var _ = Describe("HaveState and HaveVersion", func() {
	It("match a Root's State, equal or matched, and its Version", func() {
		acc := account(Withdrawn{Amount: 30})
		Expect(acc).To(miretest.HaveState(Account{Owner: "Ann", Balance: 70}))
		Expect(acc).To(miretest.HaveState(HaveField("Balance", BeEquivalentTo(70))))
		Expect(acc).To(miretest.HaveVersion(2))
		Expect(acc).NotTo(miretest.HaveVersion(3))
	})

	It("say which Root and what they found", func() {
		acc := account(Withdrawn{Amount: 30})
		msg := failureOf(miretest.HaveState(Account{Owner: "Ann", Balance: 60}), acc)
		Expect(msg).To(HavePrefix("Root account-ann's State:\nExpected\n"))
		Expect(msg).To(ContainSubstring("Balance: 70"))
		Expect(failureOf(miretest.HaveVersion(3), acc)).To(Equal("Root account-ann: expected version 3, but it is at version 2"))
	})

	It("refuse what is not a Root", func() {
		_, err := miretest.HaveState(Account{}).Match(Account{})
		Expect(err).To(MatchError("HaveState expects a *mire.Root[T], not miretest_test.Account"))
		_, err = miretest.HaveVersion(1).Match(&mire.Store{})
		Expect(err).To(MatchError("HaveVersion expects a *mire.Root[T], not *mire.Store"))
		_, err = miretest.HaveVersion(1).Match((*mire.Root[Account])(nil))
		Expect(err).To(MatchError(ContainSubstring("HaveVersion: actual is a nil *mire.Root")))
	})
})

var _ = Describe("BeConcurrencyError", func() {
	conflict := fmt.Errorf("save: %w", &mire.ConcurrencyError{StreamID: "account-ann", Expected: 2, Actual: 3})

	It("matches a conflict, narrowed by stream, expected and actual version", func() {
		Expect(conflict).To(miretest.BeConcurrencyError())
		Expect(conflict).To(miretest.BeConcurrencyError().WithStream("account-ann").WithExpected(mire.Exactly(2)).WithActual(3))
		Expect(conflict).NotTo(miretest.BeConcurrencyError().WithActual(4))
		Expect(conflict).NotTo(miretest.BeConcurrencyError().WithStream("account-bob"))
		Expect(conflict).NotTo(miretest.BeConcurrencyError().WithExpected(mire.NoStream))
		Expect(fmt.Errorf("%w: unique violation", mire.ErrConcurrency)).To(miretest.BeConcurrencyError())
		Expect(fmt.Errorf("%w: unique violation", mire.ErrConcurrency)).NotTo(miretest.BeConcurrencyError().WithActual(0), "no versions to check")
		Expect(mire.ErrNotFound).NotTo(miretest.BeConcurrencyError())
		Expect(nil).NotTo(miretest.BeConcurrencyError())
	})

	It("leaves the matcher it narrows as it was", func() {
		m := miretest.BeConcurrencyError()
		_ = m.WithActual(4)
		Expect(conflict).To(m)
	})

	It("says what it wanted and what it got", func() {
		Expect(failureOf(miretest.BeConcurrencyError().WithStream("account-bob").WithActual(4), conflict)).To(
			HavePrefix("Expected a *mire.ConcurrencyError with stream \"account-bob\", actual version 4, but the error is:\n"))
		Expect(failureOf(miretest.BeConcurrencyError(), nil)).To(Equal("Expected a concurrency conflict (mire.ErrConcurrency), but there was no error"))
		_, err := miretest.BeConcurrencyError().Match(42)
		Expect(err).To(MatchError("BeConcurrencyError expects an error, not int"))
	})
})
