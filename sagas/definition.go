package sagas

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"regexp"
	"time"

	"github.com/mire-go/mire"
)

// Spec describes a saga type: its name, what starts an instance, its steps
// in order, and the events that answer its steps. Define checks it.
type Spec[S any] struct {
	// Name names the saga: its projection ("saga:" + Name), its instances'
	// ids ("Name:id") and its timers. Required; 1 to 63 lowercase letters,
	// digits or _, starting with a letter.
	Name string
	// Start starts an instance (see StartOn). Required.
	Start Trigger[S]
	// Steps are the saga's steps. The first has no After; each other step
	// runs after the step it names, once that step completed. Required.
	Steps []Step[S]
	// Listen maps events of other categories to responses of the saga's
	// steps (see ListenFor). Defaults to none: responses come through
	// Deliver.
	Listen []Listener
	// Partitions splits the saga's projection (projections.Projection
	// Partitions; build its index once with projections.MigratePartitions).
	// Instances, triggers and responses of different partitions are
	// decided concurrently; each instance's decisions stay serial (every
	// decision locks its stream). Defaults to 1.
	Partitions int
	// BatchSize is the projection's batch size. Defaults to
	// BatchSizeDefault.
	BatchSize int
	// Outbox is the outbox the saga's Send actions enqueue to
	// (mire.EnqueueOpts.Outbox). Defaults to mire.OutboxDefault.
	Outbox string
}

// BatchSizeDefault is a saga projection's batch size unless Spec.BatchSize
// says otherwise: smaller than the projections' default, since a saga's
// batch holds the row locks of the aggregates its steps change until it
// commits.
const BatchSizeDefault = 100

// Step is one step of a saga: an Action, run once when the step it
// follows completed, and the Compensation that undoes it when a later step
// fails.
type Step[S any] struct {
	// Name names the step, in the saga's events and in responses.
	// Required; 1 to 64 letters, digits or _.-, unique in the saga.
	Name string
	// After names the step this one follows. Defaults to "": the first
	// step (exactly one step has none).
	After string
	// Action is what the step does: a Command (completes at once) or a
	// Send (completes when its response arrives). Required.
	Action Action[S]
	// Compensation undoes the step: a Command, or a Send whose message is
	// not awaited. Required for every step but the last; the last step's
	// is used if it is a Send that timed out.
	Compensation Action[S]
	// Timeout bounds the wait for a Send step's response: a durable timer
	// then wakes the saga, which retries (Retries) or fails the step and
	// compensates. Defaults to 0: wait for ever. Only for Send steps.
	Timeout time.Duration
	// Retries is how many times a timed-out Send step sends its message
	// again (with the same idempotency key) before it fails. Defaults to 0.
	Retries int
}

// Action is what a step or a compensation does, made by Command or Send.
type Action[S any] struct {
	do   func(ctx context.Context, scope *mire.TxScope, x *Exec[S]) error
	send func(ctx context.Context, x *Exec[S]) (mire.Message, error)
}

// Command is an action on mire aggregates, run in the transaction of the
// saga's projection batch, which also records the saga's progress (and
// checkpoints): load and save aggregates through scope (LoadForUpdate,
// Save), so the command happens exactly once. It may change *x.State; the
// change is recorded with the step. Returning an error made by Fail fails
// the step (its writes are rolled back, the steps before it compensated);
// any other error fails the batch, which the projection retries.
func Command[S any](fn func(ctx context.Context, scope *mire.TxScope, x *Exec[S]) error) Action[S] {
	return Action[S]{do: fn}
}

// Send is an action that sends a message to another service through the
// outbox, in the transaction of the saga's progress, so it is enqueued
// exactly once. A step's message is awaited: the step completes or fails
// when its Response arrives (an event of Spec.Listen, or Deliver). The
// engine fills in the message's ID (one per attempt) unless set, and the
// headers HeaderKey (x.Key, the same for every attempt: the receiver
// dedupes on it), HeaderSaga, HeaderInstance and HeaderStep, which the
// receiver passes back to Deliver. Returning an error made by Fail fails
// the step.
func Send[S any](fn func(ctx context.Context, x *Exec[S]) (mire.Message, error)) Action[S] {
	return Action[S]{send: fn}
}

// The headers Send adds to each message.
const (
	HeaderKey      = "Idempotency-Key"
	HeaderSaga     = "Mire-Saga"
	HeaderInstance = "Mire-Saga-Instance"
	HeaderStep     = "Mire-Saga-Step"
)

func (a Action[S]) none() bool { return a.do == nil && a.send == nil }

// Exec is what an action sees of its instance.
type Exec[S any] struct {
	// Saga and ID name the instance.
	Saga, ID string
	// Step is the step whose action or compensation runs.
	Step string
	// Attempt is 1, or more for a Send step retried after a timeout.
	Attempt int
	// Key is the step's idempotency key, the same for every attempt:
	// "saga/id/step" for an action, with "/compensate" for its
	// compensation.
	Key string
	// State is the instance's state; a Command may change it.
	State *S
}

// failure is the error of Fail.
type failure struct{ reason string }

func (f *failure) Error() string { return "sagas: step failed: " + f.reason }

// Fail returns the error an action returns to fail its step (or its
// compensation) for a business reason, recorded as the reason.
func Fail(reason string) error { return &failure{reason: reason} }

// failed returns the reason of a Fail error in err's chain.
func failed(err error) (string, bool) {
	var f *failure
	if errors.As(err, &f) {
		return f.reason, true
	}
	return "", false
}

// Trigger starts instances of a saga, made by StartOn.
type Trigger[S any] struct {
	typ reflect.Type
	fn  func(env mire.Envelope) (string, S, bool)
}

// StartOn starts an instance on each event of type E (a registered event
// struct, as a value) for which fn returns ok: fn gives the instance's id
// and initial state. An event whose instance exists already (a repeated
// trigger, a replay) starts nothing.
func StartOn[E, S any](fn func(e E, env mire.Envelope) (id string, state S, ok bool)) Trigger[S] {
	return Trigger[S]{typ: reflect.TypeFor[E](), fn: func(env mire.Envelope) (string, S, bool) {
		return fn(env.Data.(E), env)
	}}
}

// Response answers a step of a saga instance.
type Response struct {
	// Step is the step answered. Required.
	Step string `json:"step"`
	// Failure, if not empty, fails the step for this reason; empty is a
	// success.
	Failure string `json:"failure,omitempty"`
	// Data is recorded with the step's completion. Defaults to none.
	Data json.RawMessage `json:"data,omitempty"`
	// Key is the response's idempotency key, for Deliver: a response
	// delivered again with the same key is recognised and not recorded
	// twice. Defaults to "": each Deliver records its response.
	Key string `json:"-"`
}

// Listener maps events of another category to responses, made by
// ListenFor.
type Listener struct {
	typ reflect.Type
	fn  func(env mire.Envelope) (string, Response, bool)
}

// ListenFor maps each event of type E for which fn returns ok to a
// response for the saga instance id. The saga's projection reads E's
// category.
func ListenFor[E any](fn func(e E, env mire.Envelope) (id string, r Response, ok bool)) Listener {
	return Listener{typ: reflect.TypeFor[E](), fn: func(env mire.Envelope) (string, Response, bool) {
		return fn(env.Data.(E), env)
	}}
}

var (
	sagaName = regexp.MustCompile(`^[a-z][a-z0-9_]{0,62}$`)
	stepName = regexp.MustCompile(`^[A-Za-z0-9_.\-]{1,64}$`)
)

// Saga is a defined saga type, as Define returns it, for NewRunner.
type Saga interface {
	// Name returns the saga's name.
	Name() string
	engine() engine
}

// Definition is a saga type Define checked.
type Definition[S any] struct {
	spec  Spec[S]
	steps map[string]*Step[S]
	next  map[string]string // step -> the step after it
	first string
	last  string
}

// Define checks spec and returns its definition. It refuses, naming the
// problem: a bad or missing name, a missing trigger, no steps, a step
// without a name or an action, two steps of one name, an After naming no
// step, two steps after one step, steps that do not form one chain from the
// first (a cycle), a step but the last without a compensation, a Timeout
// or Retries on a Command step or a negative one, and a trigger or
// listener for a pointer or non-struct type.
func Define[S any](spec Spec[S]) (*Definition[S], error) {
	d := &Definition[S]{spec: spec, steps: map[string]*Step[S]{}, next: map[string]string{}}
	if err := d.check(); err != nil {
		return nil, fmt.Errorf("sagas: define %q: %w", spec.Name, err)
	}
	return d, nil
}

// MustDefine is Define that panics on error, for package-level
// definitions.
func MustDefine[S any](spec Spec[S]) *Definition[S] {
	d, err := Define(spec)
	if err != nil {
		panic(err)
	}
	return d
}

func (d *Definition[S]) check() error {
	s := &d.spec
	if err := checkName(s.Name); err != nil {
		return err
	}
	switch {
	case s.Start.fn == nil:
		return errors.New("no trigger: set Start with StartOn")
	case len(s.Steps) == 0:
		return errors.New("no steps")
	case s.Partitions < 0:
		return fmt.Errorf("negative partitions %d", s.Partitions)
	case s.BatchSize < 0:
		return fmt.Errorf("negative batch size %d", s.BatchSize)
	}
	if err := eventStruct("trigger", s.Start.typ); err != nil {
		return err
	}
	seen := map[reflect.Type]bool{s.Start.typ: true}
	for i, l := range s.Listen {
		if l.fn == nil {
			return fmt.Errorf("listener %d not made by ListenFor", i)
		}
		if err := eventStruct("listener", l.typ); err != nil {
			return err
		}
		if seen[l.typ] {
			return fmt.Errorf("listener for %v: the type already starts the saga or has a listener", l.typ)
		}
		seen[l.typ] = true
	}
	for i := range s.Steps {
		st := &s.Steps[i]
		switch {
		case !stepName.MatchString(st.Name):
			return fmt.Errorf("step %d: name %q must be 1 to 64 letters, digits or _.-", i, st.Name)
		case d.steps[st.Name] != nil:
			return fmt.Errorf("step %q given twice", st.Name)
		case st.Action.none():
			return fmt.Errorf("step %q: no action: set Action with Command or Send", st.Name)
		case st.Timeout < 0 || st.Retries < 0:
			return fmt.Errorf("step %q: negative timeout %v or retries %d", st.Name, st.Timeout, st.Retries)
		case st.Action.do != nil && (st.Timeout > 0 || st.Retries > 0):
			return fmt.Errorf("step %q: a Command step completes at once; Timeout %v and Retries %d are for Send steps", st.Name, st.Timeout, st.Retries)
		case st.Retries > 0 && st.Timeout == 0:
			return fmt.Errorf("step %q: Retries %d without a Timeout: a retry follows a timeout", st.Name, st.Retries)
		}
		d.steps[st.Name] = st
	}
	for _, st := range s.Steps {
		if st.After == "" {
			if d.first != "" {
				return fmt.Errorf("steps %q and %q both have no After: exactly one step is first", d.first, st.Name)
			}
			d.first = st.Name
			continue
		}
		if d.steps[st.After] == nil {
			return fmt.Errorf("step %q: After names unknown step %q", st.Name, st.After)
		}
		if other, dup := d.next[st.After]; dup {
			return fmt.Errorf("steps %q and %q both follow %q: a saga's steps form one chain", other, st.Name, st.After)
		}
		d.next[st.After] = st.Name
	}
	if d.first == "" {
		return errors.New("every step has an After: the steps form a cycle, with no first step")
	}
	n := 0
	for name := d.first; name != ""; name = d.next[name] {
		n++
		d.last = name
	}
	if n != len(s.Steps) {
		var stray []string
		for _, st := range s.Steps {
			if !d.reachable(st.Name) {
				stray = append(stray, st.Name)
			}
		}
		return fmt.Errorf("steps %q are not reached from the first step %q: their Afters form a cycle", stray, d.first)
	}
	for _, st := range s.Steps {
		if st.Name != d.last && st.Compensation.none() {
			return fmt.Errorf("step %q has no compensation: every step but the last must have one, to be undone when a later step fails", st.Name)
		}
	}
	return nil
}

func (d *Definition[S]) reachable(step string) bool {
	for name := d.first; name != ""; name = d.next[name] {
		if name == step {
			return true
		}
	}
	return false
}

// checkName checks a saga's name.
func checkName(name string) error {
	if !sagaName.MatchString(name) {
		return fmt.Errorf("saga name %q must be 1 to 63 lowercase letters, digits or _, starting with a letter", name)
	}
	return nil
}

// checkID checks an instance id: the rest of the aggregate id's rules
// are mire's.
func checkID(id string) error {
	if id == "" {
		return fmt.Errorf("%w: instance id is empty", mire.ErrInvalidID)
	}
	return nil
}

func eventStruct(what string, t reflect.Type) error {
	if t.Kind() != reflect.Struct {
		return fmt.Errorf("%s for %v: events are delivered as struct values, so no event can match it", what, t)
	}
	return nil
}

// Name returns the saga's name.
func (d *Definition[S]) Name() string { return d.spec.Name }
