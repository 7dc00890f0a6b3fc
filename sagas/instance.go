package sagas

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/google/uuid"
	"github.com/mire-go/mire"
)

// Category is the category of every saga instance's stream: the instance
// id of saga "order" is "order:ID", its stream "saga-order:ID".
const Category = "saga"

// Status is where a saga instance stands.
type Status string

// The statuses of an instance. Completed, Compensated and Failed are
// terminal: an instance ends in exactly one of them, once.
const (
	// Running: a step is in progress or awaits its response.
	Running Status = "running"
	// Completed: every step completed.
	Completed Status = "completed"
	// Compensated: a step failed, and the compensation of every step
	// completed before it ran, in reverse order.
	Compensated Status = "compensated"
	// Failed: a compensation failed, or a step whose effect is unknown
	// (it timed out) has no compensation; an operator must look at it. The
	// reason is in Instance.Reason.
	Failed Status = "failed"
)

// Terminal reports whether s is a terminal status.
func (s Status) Terminal() bool { return s == Completed || s == Compensated || s == Failed }

// The events of a saga instance's stream. The saga's projection appends
// Started, StepStarted, StepCompleted, StepFailed, StepCompensated,
// CompensationFailed, Ignored and Ended as it decides; Responded (Deliver)
// and TimedOut (the timer loop) are its inputs, appended by others and
// decided on in stream order.
type (
	// Started starts an instance with its initial state.
	Started struct {
		mire.Event `mire:"entity=saga,type=Started"`
		Saga       string          `json:"saga"`
		State      json.RawMessage `json:"state"`
		Cause      uuid.UUID       `json:"cause"` // the trigger event's id
	}
	// StepStarted records a step that sent its message and awaits a
	// response (attempt 1, or a retry after a timeout).
	StepStarted struct {
		mire.Event `mire:"entity=saga,type=StepStarted"`
		Step       string    `json:"step"`
		Attempt    int       `json:"attempt"`
		MessageID  uuid.UUID `json:"message_id"`
		Cause      uuid.UUID `json:"cause"`
	}
	// StepCompleted records a step that completed: a command that ran, or
	// a message whose response was a success (Data).
	StepCompleted struct {
		mire.Event `mire:"entity=saga,type=StepCompleted"`
		Step       string          `json:"step"`
		State      json.RawMessage `json:"state"`
		Data       json.RawMessage `json:"data,omitempty"`
		Cause      uuid.UUID       `json:"cause"`
	}
	// StepFailed records a step that failed: its command refused (Fail),
	// its response was a failure, or it timed out (Uncertain: its effect
	// is unknown, so its own compensation runs too).
	StepFailed struct {
		mire.Event `mire:"entity=saga,type=StepFailed"`
		Step       string    `json:"step"`
		Reason     string    `json:"reason"`
		Uncertain  bool      `json:"uncertain,omitempty"`
		Cause      uuid.UUID `json:"cause"`
	}
	// StepCompensated records the compensation of one step, run once.
	StepCompensated struct {
		mire.Event `mire:"entity=saga,type=StepCompensated"`
		Step       string    `json:"step"`
		Cause      uuid.UUID `json:"cause"`
	}
	// CompensationFailed records a compensation that refused (Fail).
	CompensationFailed struct {
		mire.Event `mire:"entity=saga,type=CompensationFailed"`
		Step       string    `json:"step"`
		Reason     string    `json:"reason"`
		Cause      uuid.UUID `json:"cause"`
	}
	// Ended records the instance's terminal status, once.
	Ended struct {
		mire.Event `mire:"entity=saga,type=Ended"`
		Status     Status    `json:"status" validate:"oneof=completed compensated failed"`
		Reason     string    `json:"reason,omitempty"`
		Cause      uuid.UUID `json:"cause"`
	}
	// Responded is a response delivered by Deliver, decided on when the
	// saga's projection reaches it.
	Responded struct {
		mire.Event `mire:"entity=saga,type=Responded"`
		Step       string          `json:"step"`
		Failure    string          `json:"failure,omitempty"`
		Data       json.RawMessage `json:"data,omitempty"`
	}
	// TimedOut is a step's timer firing, appended by the timer loop.
	TimedOut struct {
		mire.Event `mire:"entity=saga,type=TimedOut"`
		Step       string `json:"step"`
		Attempt    int    `json:"attempt"`
	}
	// Ignored records a response that came too late or for another step
	// than the one awaited: reported in the history, not applied.
	Ignored struct {
		mire.Event `mire:"entity=saga,type=Ignored"`
		Step       string    `json:"step"`
		Reason     string    `json:"reason"`
		Cause      uuid.UUID `json:"cause"`
	}
)

// events are the saga events, registered in each store's registry by
// NewRunner and Deliver.
var events = []any{Started{}, StepStarted{}, StepCompleted{}, StepFailed{}, StepCompensated{},
	CompensationFailed{}, Ended{}, Responded{}, TimedOut{}, Ignored{}}

func init() { mire.MustRegister(events...) }

// Instance is a saga instance as its stream folds it: an aggregate of
// category Category, loaded with Load (or mire.Load[sagas.Instance] and the
// id InstanceID gives).
type Instance struct {
	// Saga is the saga's name.
	Saga string
	// Status is where the instance stands.
	Status Status
	// State is the saga's state as JSON, as of the last completed step
	// (decode it with StateOf).
	State json.RawMessage
	// Awaiting is the step whose response the instance awaits, "" if none;
	// Attempt its attempt (1, then more after timeouts with retries).
	Awaiting string
	Attempt  int
	// Done lists the completed steps in order; Undone the compensated ones
	// in the order they were compensated.
	Done, Undone []string
	// FailedStep is the step that failed, Uncertain whether its effect is
	// unknown (it timed out); Reason says why the instance failed or was
	// compensated.
	FailedStep string
	Uncertain  bool
	Reason     string

	causes map[uuid.UUID]bool // the input events already decided on
}

// Category returns Category.
func (*Instance) Category() string { return Category }

// Apply folds one event of the instance's stream.
func (in *Instance) Apply(event any) {
	switch e := event.(type) {
	case Started:
		in.Saga, in.Status, in.State = e.Saga, Running, e.State
		in.cause(e.Cause)
	case StepStarted:
		in.Awaiting, in.Attempt = e.Step, e.Attempt
		in.cause(e.Cause)
	case StepCompleted:
		in.Done = append(in.Done, e.Step)
		in.State, in.Awaiting, in.Attempt = e.State, "", 0
		in.cause(e.Cause)
	case StepFailed:
		in.FailedStep, in.Uncertain, in.Reason = e.Step, e.Uncertain, e.Reason
		in.Awaiting, in.Attempt = "", 0
		in.cause(e.Cause)
	case StepCompensated:
		in.Undone = append(in.Undone, e.Step)
		in.cause(e.Cause)
	case CompensationFailed:
		in.cause(e.Cause)
	case Ignored:
		in.cause(e.Cause)
	case Ended:
		in.Status = e.Status
		if e.Reason != "" {
			in.Reason = e.Reason
		}
		in.Awaiting, in.Attempt = "", 0
		in.cause(e.Cause)
	}
}

func (in *Instance) cause(id uuid.UUID) {
	if id == uuid.Nil {
		return
	}
	if in.causes == nil {
		in.causes = map[uuid.UUID]bool{}
	}
	in.causes[id] = true
}

// decided reports whether the input event id was decided on already (a
// batch redone after a crash between its decision and its checkpoint
// cannot happen, but a Rebuild or ResetCheckpoint replays inputs).
func (in *Instance) decided(id uuid.UUID) bool { return in.causes[id] }

// InstanceID returns the aggregate id of instance id of saga: "saga:id".
func InstanceID(saga, id string) string { return saga + ":" + id }

// splitInstanceID splits an aggregate id of category Category.
func splitInstanceID(aggregateID string) (saga, id string, ok bool) {
	return strings.Cut(aggregateID, ":")
}

// Load loads instance id of saga: its status, state and steps (Instance),
// and its version; read its history with store.ReadStream on the Root's
// StreamID. A missing instance is mire.ErrNotFound.
func Load(ctx context.Context, store *mire.Store, saga, id string) (*mire.Root[Instance], error) {
	if store == nil {
		return nil, errors.New("sagas: load: store is nil")
	}
	if err := errors.Join(checkName(saga), checkID(id)); err != nil {
		return nil, fmt.Errorf("sagas: load: %w", err)
	}
	if err := store.Registry().Register(events...); err != nil {
		return nil, fmt.Errorf("sagas: load: %w", err)
	}
	return mire.Load[Instance](ctx, store, InstanceID(saga, id))
}

// StateOf decodes an instance's state, as of its last completed step.
func StateOf[S any](in *Instance) (S, error) {
	var s S
	if err := json.Unmarshal(in.State, &s); err != nil {
		return s, fmt.Errorf("sagas: saga %q: decode state: %w", in.Saga, err)
	}
	return s, nil
}
