package miretest_test

import (
	"errors"
	"fmt"
	"strings"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/mire-go/mire"
	"github.com/mire-go/mire/miretest"
)

// fakeT stands in for a *testing.T and keeps the failures.
type fakeT struct{ failures []string }

func (f *fakeT) Helper() {}
func (f *fakeT) Fatalf(format string, args ...any) {
	f.failures = append(f.failures, fmt.Sprintf(format, args...))
}

// failure returns the one failure the fake saw, without the newline
// gomega.NewWithT puts first.
func (f *fakeT) failure() string {
	GinkgoHelper()
	Expect(f.failures).To(HaveLen(1), "one failure")
	return strings.TrimPrefix(f.failures[0], "\n")
}

// given is the history most specs start from: Ann's account with 100.
func given() *miretest.Scenario[Account] {
	return miretest.Given[Account](Opened{Owner: "Ann"}, Deposited{Amount: 100})
}

var _ = Describe("A Given/When/Then scenario", func() {
	It("passes when the command records the events expected, in Ginkgo through the registered fail handler", func() {
		given().When(withdraw(30)).Then(Withdrawn{Amount: 30}).ThenState(Account{Owner: "Ann", Balance: 70})
		given().When(func(*mire.Root[Account]) error { return nil }).Then()
		given().Then().ThenState(HaveField("Balance", BeEquivalentTo(100)))
	})

	It("passes when the command fails as expected: an error it wraps, its message, or a matcher of it", func() {
		given().When(withdraw(130)).ThenError(ErrInsufficientFunds)
		given().When(withdraw(130)).ThenError("withdraw 130 from 100: insufficient funds")
		given().When(withdraw(130)).ThenError(ContainSubstring("insufficient"))
	})

	It("takes matchers for events whose values the spec does not fix", func() {
		given().When(withdraw(30)).Then(BeAssignableToTypeOf(Withdrawn{}))
		given().When(withdraw(30)).Then(HaveField("Amount", BeNumerically(">", 10)))
	})

	It("runs the command once, however many Thens check it, and gives its Root", func() {
		runs := 0
		s := given().When(func(acc *mire.Root[Account]) error { runs++; return Withdraw(acc, 10) })
		s.Then(Withdrawn{Amount: 10}).ThenState(HaveField("Balance", BeEquivalentTo(90))).Then(Withdrawn{Amount: 10})
		Expect(s.Root()).To(miretest.HaveVersion(2))
		Expect(runs).To(Equal(1))
	})

	It("rebuilds the Root with the id and registry given", func() {
		reg := mire.NewRegistry()
		reg.MustRegister(Opened{}, Withdrawn{})
		var id string
		miretest.Given[Account](Opened{Owner: "Bo"}).WithID("bo-1").WithRegistry(reg).
			When(func(acc *mire.Root[Account]) error { id = acc.StreamID(); return acc.Record(Withdrawn{Amount: 1}) }).
			Then(Withdrawn{Amount: 1})
		Expect(id).To(Equal("account-bo-1"))

		t := &fakeT{}
		miretest.Given[Account](Deposited{Amount: 1}).WithRegistry(reg).WithT(t).Then()
		Expect(t.failure()).To(ContainSubstring("mire: event type not registered: miretest_test.Deposited"))
	})

	Describe("when it fails", func() {
		It("shows the expected and recorded events as Go types and JSON, as a diff", func() {
			t := &fakeT{}
			given().WithT(t).When(func(acc *mire.Root[Account]) error {
				if err := acc.Record(Fee{Amount: 1}); err != nil {
					return err
				}
				return Withdraw(acc, 20)
			}).Then(Withdrawn{Amount: 30})
			Expect(t.failure()).To(Equal(`miretest: given 2 events of *miretest_test.Account "given", when the command ran:
expected 1 event, recorded 2 events (- expected, + recorded; Go type and JSON):
  - [0] miretest_test.Withdrawn {"amount":30}
  + [0] miretest_test.Fee {"amount":1}
  + [1] miretest_test.Withdrawn {"amount":20}
`))
		})

		It("fails a Ginkgo spec with the same message through Gomega's fail handler", func() {
			failures := InterceptGomegaFailures(func() {
				given().When(withdraw(20)).Then(Withdrawn{Amount: 30})
			})
			Expect(failures).To(HaveLen(1))
			Expect(failures[0]).To(ContainSubstring("- [0] miretest_test.Withdrawn {\"amount\":30}\n  + [0] miretest_test.Withdrawn {\"amount\":20}\n"))
		})

		It("says so when the command failed where Then expected events, with what it recorded first", func() {
			t := &fakeT{}
			given().WithT(t).When(func(acc *mire.Root[Account]) error {
				_ = acc.Record(Fee{Amount: 1})
				return Withdraw(acc, 200)
			}).Then(Withdrawn{Amount: 200})
			Expect(t.failure()).To(Equal(`miretest: given 2 events of *miretest_test.Account "given", when the command ran:
expected it to succeed and record 1 event, but it failed: withdraw 200 from 99: insufficient funds
recorded before it failed:
    [0] miretest_test.Fee {"amount":1}
`))
		})

		It("says so when the command succeeded where ThenError expected an error, with what it recorded", func() {
			t := &fakeT{}
			given().WithT(t).When(withdraw(20)).ThenError(ErrInsufficientFunds)
			Expect(t.failure()).To(Equal(`miretest: given 2 events of *miretest_test.Account "given", when the command ran:
expected it to fail with an error that is "insufficient funds" (*errors.errorString), but it succeeded and recorded:
    [0] miretest_test.Withdrawn {"amount":20}
`))
		})

		It("says which error it got when ThenError expected another", func() {
			t := &fakeT{}
			given().WithT(t).When(func(*mire.Root[Account]) error { return errors.New("closed") }).ThenError(ErrInsufficientFunds)
			Expect(t.failure()).To(HaveSuffix("expected it to fail with an error that is \"insufficient funds\" (*errors.errorString), but it failed with:\n    closed"))
		})

		It("shows the State expected and found", func() {
			t := &fakeT{}
			given().WithT(t).When(withdraw(20)).ThenState(Account{Owner: "Ann", Balance: 70})
			msg := t.failure()
			Expect(msg).To(HavePrefix("miretest: given 2 events of *miretest_test.Account \"given\", when the command ran:\nthe State is not the expected one:\n"))
			Expect(msg).To(ContainSubstring("Balance: 80"))
			Expect(msg).To(ContainSubstring("Balance: 70"))
		})

		It("refuses a history that Record would refuse, naming the event", func() {
			t := &fakeT{}
			miretest.Given[Account](Opened{Owner: "Ann"}, Deposited{Amount: -5}).WithT(t).When(withdraw(1)).Then()
			Expect(t.failure()).To(Equal(`miretest: given 2 events of *miretest_test.Account: mire: rehydrate stream "account-given": event 1: invalid miretest_test.Deposited event: field Deposited.Amount = -5 fails "gt=0"`))
		})

		It("refuses a nil command", func() {
			t := &fakeT{}
			given().WithT(t).When(nil).Then()
			Expect(t.failure()).To(HaveSuffix("when the command ran: When was given a nil command"))
		})

		It("notes events that read the same as JSON but differ", func() {
			t := &fakeT{}
			given().WithT(t).When(withdraw(20)).Then(&Withdrawn{Amount: 20})
			msg := t.failure()
			Expect(msg).To(ContainSubstring("  - [0] *miretest_test.Withdrawn {\"amount\":20}\n  + [0] miretest_test.Withdrawn {\"amount\":20}\n"))
			Expect(strings.Count(msg, "\n")).To(BeNumerically("<", 10))
		})
	})
})
