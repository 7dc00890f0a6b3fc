package miretest

import (
	"fmt"

	"github.com/onsi/ginkgo/v2"
	"github.com/onsi/gomega"
	"github.com/onsi/gomega/types"

	"github.com/mire-go/mire"
)

// GivenID is the aggregate id of a Scenario's Root unless WithID names
// another.
const GivenID = "given"

// Scenario is a spec of an aggregate's command without a database: given
// past events, when a command runs on the Root they rebuild, then it
// records these events, or fails with this error. Given starts one; its
// Then methods run it.
//
//	miretest.Given[Account](Opened{Owner: "Ann"}, Deposited{Amount: 100}).
//		When(func(acc *mire.Root[Account]) error { return Withdraw(acc, 30) }).
//		Then(Withdrawn{Amount: 30})
//
// A failed Then reports through Gomega: in a Ginkgo suite the fail handler
// registered with RegisterFailHandler; in a plain test, the *testing.T
// given to WithT. The scenario runs once, at its first Then; further Then
// calls check the same outcome, so they chain:
//
//	...Then(Withdrawn{Amount: 30}).ThenState(HaveField("Balance", BeEquivalentTo(70)))
type Scenario[T any] struct {
	history   []any
	id        string
	registry  *mire.Registry
	aggregate string // the aggregate's pointer type, for messages

	// rehydrate is mire.Rehydrate[T, PT]: Given knows PT, so the
	// scenario's type needs only T.
	rehydrate func(reg *mire.Registry, id string, history ...any) (*mire.Root[T], error)

	command func(*mire.Root[T]) error
	when    bool                 // When was called
	t       types.GomegaTestingT // nil: Gomega's global fail handler

	ran  bool
	root *mire.Root[T] // nil if Rehydrate refused the history
	err  error         // the command's error, or Rehydrate's
}

// Given starts a scenario of aggregate T rebuilt from history, applied as
// versions 1..n (see mire.Rehydrate), with id GivenID and the default
// registry. The history is checked as Record checks events, when the
// scenario runs.
func Given[T any, PT interface {
	*T
	mire.Aggregate
}](history ...any) *Scenario[T] {
	return &Scenario[T]{history: history, id: GivenID, rehydrate: mire.Rehydrate[T, PT], aggregate: fmt.Sprintf("%T", PT(nil))}
}

// WithT makes the scenario fail through t (a *testing.T, or anything with
// Helper and Fatalf) instead of Gomega's global fail handler, for plain
// `go test` functions and parallel tests.
func (s *Scenario[T]) WithT(t types.GomegaTestingT) *Scenario[T] {
	s.t = t
	return s
}

// WithID gives the Root id instead of GivenID, for commands whose events
// carry the aggregate's id.
func (s *Scenario[T]) WithID(id string) *Scenario[T] {
	s.id = id
	return s
}

// WithRegistry rebuilds the Root with reg instead of the default registry,
// for events registered only in a registry of their own.
func (s *Scenario[T]) WithRegistry(reg *mire.Registry) *Scenario[T] {
	s.registry = reg
	return s
}

// When sets the command that runs on the Root the history rebuilt. A
// scenario has one command; without When, the Then methods check the
// history alone (ThenState: what Apply makes of it).
func (s *Scenario[T]) When(command func(root *mire.Root[T]) error) *Scenario[T] {
	s.command, s.when = command, true
	return s
}

// Then checks that the command succeeded and recorded exactly events, in
// order: each equal to the recorded one (reflect.DeepEqual), or matched by
// it if it is a Gomega matcher. Then() with no events checks that the
// command recorded nothing. On failure the message lists the expected and
// recorded events as Go types and JSON, as a diff.
func (s *Scenario[T]) Then(events ...any) *Scenario[T] {
	ginkgo.GinkgoHelper()
	s.helper()
	s.check(func() string {
		if s.err != nil {
			return fmt.Sprintf("%s:\nexpected it to succeed and record %s, but it failed: %v\nrecorded before it failed:\n%s",
				s.title(), plural(len(events)), s.err, describeEvents(s.root.Pending()))
		}
		if recorded := s.root.Pending(); !eventsMatch(events, recorded) {
			return eventsReport(s.title(), events, recorded)
		}
		return ""
	})
	return s
}

// ThenError checks that the command failed with an error matching
// expected, as gomega.MatchError matches: an error (errors.Is), a string
// (the whole message) or a matcher of the message. The events the command
// recorded before failing are not checked: a failed command's Root is not
// saved.
func (s *Scenario[T]) ThenError(expected any) *Scenario[T] {
	ginkgo.GinkgoHelper()
	s.helper()
	s.check(func() string {
		if s.err == nil {
			return fmt.Sprintf("%s:\nexpected it to fail with %s, but it succeeded and recorded:\n%s",
				s.title(), describeExpectedError(expected), describeEvents(s.root.Pending()))
		}
		m := gomega.MatchError(expected)
		ok, err := m.Match(s.err)
		if err != nil {
			return fmt.Sprintf("%s: ThenError: %v", s.title(), err)
		}
		if !ok {
			return fmt.Sprintf("%s:\nexpected it to fail with %s, but it failed with:\n    %v",
				s.title(), describeExpectedError(expected), s.err)
		}
		return ""
	})
	return s
}

// ThenState checks the Root's State after the command: equal to expected
// (gomega.Equal), or matched by it if it is a Gomega matcher
// (HaveField("Balance", BeEquivalentTo(70)), say). It does not check the
// command's error: chain it after Then or ThenError.
func (s *Scenario[T]) ThenState(expected any) *Scenario[T] {
	ginkgo.GinkgoHelper()
	s.helper()
	s.check(func() string {
		m := valueMatcher(expected)
		ok, err := m.Match(s.root.State)
		if err != nil {
			return fmt.Sprintf("%s: ThenState: %v", s.title(), err)
		}
		if !ok {
			return fmt.Sprintf("%s:\nthe State is not the expected one:\n%s", s.title(), m.FailureMessage(s.root.State))
		}
		return ""
	})
	return s
}

// Root returns the Root after the command ran (running the scenario if no
// Then has), for checks the Then methods do not cover; nil if the history
// was refused, which then fails the spec.
func (s *Scenario[T]) Root() *mire.Root[T] {
	ginkgo.GinkgoHelper()
	s.helper()
	s.check(func() string { return "" })
	return s.root
}

// check runs the scenario if it has not run, and fails through Gomega with
// the message problem returns, unless that is "".
func (s *Scenario[T]) check(problem func() string) {
	ginkgo.GinkgoHelper()
	s.helper()
	var msg string
	switch {
	case !s.run():
		msg = fmt.Sprintf("miretest: given %s of %s: %v", plural(len(s.history)), s.aggregate, s.err)
	case s.when && s.command == nil:
		msg = s.title() + ": When was given a nil command"
	default:
		msg = problem()
	}
	s.gomega().Expect(msg).To(beNoProblem{})
}

// run rebuilds the Root and runs the command, once; it reports whether
// the history was accepted.
func (s *Scenario[T]) run() bool {
	if !s.ran {
		s.ran = true
		s.root, s.err = s.rehydrate(s.registry, s.id, s.history...)
		if s.err == nil && s.command != nil {
			s.err = s.command(s.root)
		}
	}
	return s.root != nil
}

// title says what the scenario did, to start its failure messages.
func (s *Scenario[T]) title() string {
	if !s.when {
		return fmt.Sprintf("miretest: given %s of %s %q", plural(len(s.history)), s.aggregate, s.id)
	}
	return fmt.Sprintf("miretest: given %s of %s %q, when the command ran", plural(len(s.history)), s.aggregate, s.id)
}

func (s *Scenario[T]) gomega() types.Gomega {
	if s.t != nil {
		return gomega.NewWithT(s.t)
	}
	return gomega.Default
}

func (s *Scenario[T]) helper() {
	if s.t != nil {
		s.t.Helper()
	}
}

// describeExpectedError renders what ThenError was given.
func describeExpectedError(expected any) string {
	switch e := expected.(type) {
	case error:
		return fmt.Sprintf("an error that is %q (%T)", e, e)
	case string:
		return fmt.Sprintf("the error %q", e)
	case types.GomegaMatcher:
		return fmt.Sprintf("an error whose message matches %T", e)
	}
	return fmt.Sprintf("%#v", expected)
}

// beNoProblem is how a Scenario fails through Gomega: its actual value
// is the failure message, "" when there is none.
type beNoProblem struct{}

func (beNoProblem) Match(actual any) (bool, error) { return actual == "", nil }
func (beNoProblem) FailureMessage(actual any) string {
	msg, _ := actual.(string)
	return msg
}
func (beNoProblem) NegatedFailureMessage(any) string { return "" }
