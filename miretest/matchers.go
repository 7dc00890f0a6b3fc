package miretest

import (
	"errors"
	"fmt"
	"reflect"
	"strings"

	"github.com/onsi/gomega/format"
	"github.com/onsi/gomega/types"

	"github.com/mire-go/mire"
)

// pendingEvents is what HaveRecorded reads: a *mire.Root[T] has it.
type pendingEvents interface{ Pending() []any }

// recordedBy returns the events actual recorded and not yet saved: a
// *mire.Root[T]'s Pending, those of every Root of a mire.Roots[T] in
// order, or a []any as it is.
func recordedBy(actual any) ([]any, string, error) {
	switch a := actual.(type) {
	case pendingEvents:
		if v := reflect.ValueOf(a); v.Kind() == reflect.Pointer && v.IsNil() {
			return nil, "", fmt.Errorf("HaveRecorded: actual is a nil %T", a)
		}
		return a.Pending(), rootName(a), nil
	case []any:
		return a, "the events", nil
	}
	v := reflect.ValueOf(actual)
	if actual != nil && v.Kind() == reflect.Slice && v.Type().Elem().Implements(reflect.TypeFor[pendingEvents]()) {
		var events []any
		var names []string
		for i := range v.Len() {
			root, ok := v.Index(i).Interface().(pendingEvents)
			if !ok || v.Index(i).IsNil() {
				return nil, "", fmt.Errorf("HaveRecorded: root %d of %T is nil", i, actual)
			}
			events = append(events, root.Pending()...)
			names = append(names, rootName(root))
		}
		return events, strings.Join(names, ", "), nil
	}
	return nil, "", fmt.Errorf("HaveRecorded expects a *mire.Root[T], mire.Roots[T] or []any, not %T", actual)
}

// rootName names a Root by its stream id.
func rootName(root any) string {
	if s, ok := root.(interface{ StreamID() string }); ok {
		return "Root " + s.StreamID()
	}
	return fmt.Sprintf("%T", root)
}

// HaveRecorded succeeds for a *mire.Root[T] whose pending events (recorded
// and not yet saved) are exactly events, in order: each equal to the
// recorded one (reflect.DeepEqual), or matched by it if it is a Gomega
// matcher. It also takes a mire.Roots[T] (the pending events of each Root
// in turn) and a []any. HaveRecorded() with no events succeeds for a Root
// that recorded nothing. The failure message lists expected and recorded
// events, as Go type and JSON, as a diff, so an event missing, extra or out
// of order shows on its line.
//
//	Expect(acc).To(miretest.HaveRecorded(Withdrawn{Amount: 30}))
func HaveRecorded(events ...any) types.GomegaMatcher {
	return &recordedMatcher{expected: events}
}

type recordedMatcher struct {
	expected []any
	recorded []any
	name     string
}

func (m *recordedMatcher) Match(actual any) (bool, error) {
	var err error
	m.recorded, m.name, err = recordedBy(actual)
	if err != nil {
		return false, err
	}
	return eventsMatch(m.expected, m.recorded), nil
}

func (m *recordedMatcher) FailureMessage(any) string {
	return eventsReport(m.name, m.expected, m.recorded)
}

func (m *recordedMatcher) NegatedFailureMessage(any) string {
	return fmt.Sprintf("%s: expected other events than these, but recorded exactly them:\n%s", m.name, describeEvents(m.recorded))
}

// rootField returns field name (State or Version) of actual, which must be
// a non-nil *mire.Root[T].
func rootField(matcher string, actual any, name string) (reflect.Value, error) {
	v := reflect.ValueOf(actual)
	if actual == nil || v.Kind() != reflect.Pointer || v.Type().Elem().PkgPath() != reflect.TypeFor[mire.Store]().PkgPath() ||
		!strings.HasPrefix(v.Type().Elem().Name(), "Root[") {
		return reflect.Value{}, fmt.Errorf("%s expects a *mire.Root[T], not %T", matcher, actual)
	}
	if v.IsNil() {
		return reflect.Value{}, fmt.Errorf("%s: actual is a nil %T", matcher, actual)
	}
	return v.Elem().FieldByName(name), nil
}

// HaveState succeeds for a *mire.Root[T] whose State equals expected
// (gomega.Equal), or is matched by expected if it is a Gomega matcher:
//
//	Expect(acc).To(miretest.HaveState(Account{Owner: "Ann", Balance: 70}))
//	Expect(acc).To(miretest.HaveState(HaveField("Balance", BeEquivalentTo(70))))
func HaveState(expected any) types.GomegaMatcher {
	return &stateMatcher{matcher: valueMatcher(expected)}
}

type stateMatcher struct {
	matcher types.GomegaMatcher
	state   any
	name    string
}

func (m *stateMatcher) Match(actual any) (bool, error) {
	state, err := rootField("HaveState", actual, "State")
	if err != nil {
		return false, err
	}
	m.state, m.name = state.Interface(), rootName(actual)
	return m.matcher.Match(m.state)
}

func (m *stateMatcher) FailureMessage(any) string {
	return fmt.Sprintf("%s's State:\n%s", m.name, m.matcher.FailureMessage(m.state))
}

func (m *stateMatcher) NegatedFailureMessage(any) string {
	return fmt.Sprintf("%s's State:\n%s", m.name, m.matcher.NegatedFailureMessage(m.state))
}

// HaveVersion succeeds for a *mire.Root[T] at version: the number of
// events loaded or saved, not counting those pending.
//
//	Expect(acc).To(miretest.HaveVersion(2))
func HaveVersion(version int64) types.GomegaMatcher {
	return &versionMatcher{expected: version}
}

type versionMatcher struct {
	expected, actual int64
	name             string
}

func (m *versionMatcher) Match(actual any) (bool, error) {
	v, err := rootField("HaveVersion", actual, "Version")
	if err != nil {
		return false, err
	}
	m.actual, m.name = v.Int(), rootName(actual)
	return m.actual == m.expected, nil
}

func (m *versionMatcher) FailureMessage(any) string {
	return fmt.Sprintf("%s: expected version %d, but it is at version %d", m.name, m.expected, m.actual)
}

func (m *versionMatcher) NegatedFailureMessage(any) string {
	return fmt.Sprintf("%s: expected a version other than %d", m.name, m.expected)
}

// BeConcurrencyError succeeds for an error that is a conflict of optimistic
// concurrency: errors.Is(err, mire.ErrConcurrency). Narrow it with
// WithStream, WithExpected and WithActual, which need the
// *mire.ConcurrencyError (errors.As) carrying those values:
//
//	Expect(store.Save(ctx, stale)).To(miretest.BeConcurrencyError().WithStream("account-alice").WithActual(3))
func BeConcurrencyError() *ConcurrencyErrorMatcher {
	return &ConcurrencyErrorMatcher{}
}

// ConcurrencyErrorMatcher is the matcher BeConcurrencyError returns; its
// With methods return a copy that also checks one field.
type ConcurrencyErrorMatcher struct {
	stream   *string
	expected *mire.ExpectedVersion
	actual   *int64
}

// WithStream also requires the conflict to be on stream id.
func (m *ConcurrencyErrorMatcher) WithStream(id string) *ConcurrencyErrorMatcher {
	c := *m
	c.stream = &id
	return &c
}

// WithExpected also requires the writer to have expected version v
// (mire.Exactly(2), mire.NoStream, ...).
func (m *ConcurrencyErrorMatcher) WithExpected(v mire.ExpectedVersion) *ConcurrencyErrorMatcher {
	c := *m
	c.expected = &v
	return &c
}

// WithActual also requires the stream to have been at version v when the
// write was refused.
func (m *ConcurrencyErrorMatcher) WithActual(v int64) *ConcurrencyErrorMatcher {
	c := *m
	c.actual = &v
	return &c
}

// Match implements types.GomegaMatcher.
func (m *ConcurrencyErrorMatcher) Match(actual any) (bool, error) {
	if actual == nil {
		return false, nil
	}
	err, ok := actual.(error)
	if !ok {
		return false, fmt.Errorf("BeConcurrencyError expects an error, not %T", actual)
	}
	var cerr *mire.ConcurrencyError
	if !errors.As(err, &cerr) {
		return m.stream == nil && m.expected == nil && m.actual == nil && errors.Is(err, mire.ErrConcurrency), nil
	}
	return (m.stream == nil || *m.stream == cerr.StreamID) &&
		(m.expected == nil || *m.expected == cerr.Expected) &&
		(m.actual == nil || *m.actual == cerr.Actual), nil
}

// want describes the error the matcher wants.
func (m *ConcurrencyErrorMatcher) want() string {
	var parts []string
	if m.stream != nil {
		parts = append(parts, fmt.Sprintf("stream %q", *m.stream))
	}
	if m.expected != nil {
		parts = append(parts, fmt.Sprintf("expected version %s", *m.expected))
	}
	if m.actual != nil {
		parts = append(parts, fmt.Sprintf("actual version %d", *m.actual))
	}
	if len(parts) == 0 {
		return "a concurrency conflict (mire.ErrConcurrency)"
	}
	return "a *mire.ConcurrencyError with " + strings.Join(parts, ", ")
}

// FailureMessage implements types.GomegaMatcher.
func (m *ConcurrencyErrorMatcher) FailureMessage(actual any) string {
	if actual == nil {
		return "Expected " + m.want() + ", but there was no error"
	}
	return fmt.Sprintf("Expected %s, but the error is:\n%s", m.want(), format.Object(actual, 1))
}

// NegatedFailureMessage implements types.GomegaMatcher.
func (m *ConcurrencyErrorMatcher) NegatedFailureMessage(actual any) string {
	return fmt.Sprintf("Expected an error other than %s, but the error is:\n%s", m.want(), format.Object(actual, 1))
}
