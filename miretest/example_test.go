package miretest_test

import (
	"fmt"

	"github.com/onsi/gomega"

	"github.com/mire-go/mire"
	"github.com/mire-go/mire/miretest"
)

// printT stands in for the *testing.T of a test function: it prints what
// fails instead of failing.
type printT struct{}

func (printT) Helper() {}
func (printT) Fatalf(format string, args ...any) {
	fmt.Printf(format+"\n", args...)
}

// A command's spec without a database: given Ann's account with 100, when
// she withdraws, then the command records a withdrawal. In a test function
// t is the *testing.T; in a Ginkgo spec, leave WithT out.
func ExampleGiven() {
	t := printT{}
	annHas100 := []any{Opened{Owner: "Ann"}, Deposited{Amount: 100}}

	miretest.Given[Account](annHas100...).WithT(t).
		When(func(acc *mire.Root[Account]) error { return Withdraw(acc, 30) }).
		Then(Withdrawn{Amount: 30}).
		ThenState(Account{Owner: "Ann", Balance: 70}) // passes: prints nothing

	miretest.Given[Account](annHas100...).WithT(t).
		When(func(acc *mire.Root[Account]) error { return Withdraw(acc, 130) }).
		ThenError(ErrInsufficientFunds) // passes

	miretest.Given[Account](annHas100...).WithT(t).
		When(func(acc *mire.Root[Account]) error {
			if err := acc.Record(Fee{Amount: 1}); err != nil {
				return err
			}
			return Withdraw(acc, 20)
		}).
		Then(Withdrawn{Amount: 30}) // fails: prints why
	// Output:
	// miretest: given 2 events of *miretest_test.Account "given", when the command ran:
	// expected 1 event, recorded 2 events (- expected, + recorded; Go type and JSON):
	//   - [0] miretest_test.Withdrawn {"amount":30}
	//   + [0] miretest_test.Fee {"amount":1}
	//   + [1] miretest_test.Withdrawn {"amount":20}
}

// The matchers check a Root, in a Ginkgo spec with Expect or in a test
// function with gomega.NewWithT(t). Here a Gomega prints its failures.
func ExampleHaveRecorded() {
	g := gomega.NewGomega(func(message string, _ ...int) { fmt.Println(message) })

	acc, err := mire.Rehydrate[Account](nil, "ann", Opened{Owner: "Ann"}, Deposited{Amount: 100})
	if err != nil {
		panic(err)
	}
	if err := Withdraw(acc, 30); err != nil {
		panic(err)
	}
	g.Expect(acc).To(miretest.HaveRecorded(Withdrawn{Amount: 30})) // passes
	g.Expect(acc).To(miretest.HaveState(gomega.HaveField("Balance", gomega.BeEquivalentTo(70))))
	g.Expect(acc).To(miretest.HaveVersion(2)) // the history; the withdrawal is pending

	g.Expect(acc).To(miretest.HaveRecorded(Withdrawn{Amount: 30}, Fee{Amount: 1})) // fails
	// Output:
	// Root account-ann:
	// expected 2 events, recorded 1 event (- expected, + recorded; Go type and JSON):
	//     [0] miretest_test.Withdrawn {"amount":30}
	//   - [1] miretest_test.Fee {"amount":1}
}

// BeConcurrencyError matches the error of a save that lost a race,
// narrowed to the stream and versions if the spec cares.
func ExampleBeConcurrencyError() {
	g := gomega.NewGomega(func(message string, _ ...int) { fmt.Println(message) })
	err := fmt.Errorf("deposit: %w", &mire.ConcurrencyError{StreamID: "account-ann", Expected: 2, Actual: 3})

	g.Expect(err).To(miretest.BeConcurrencyError()) // passes
	g.Expect(err).To(miretest.BeConcurrencyError().WithStream("account-ann").WithExpected(2).WithActual(3))
	g.Expect(err).NotTo(miretest.BeConcurrencyError().WithStream("account-bob"))
	fmt.Println("all passed")
	// Output:
	// all passed
}
