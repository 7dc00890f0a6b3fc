package sagas

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/mire-go/mire"
)

// Errors of Deliver.
var (
	// ErrUnknownInstance: no instance of the saga has the id.
	ErrUnknownInstance = errors.New("sagas: unknown saga instance")
	// ErrFinished: the instance has ended (completed, compensated or
	// failed); the response is not applied.
	ErrFinished = errors.New("sagas: saga instance has ended")
	// ErrNotAwaited: the instance does not await a response for the step
	// (it awaits another, or none).
	ErrNotAwaited = errors.New("sagas: step not awaited")
)

// Deliver records r, a response to a step of instance id of saga, in the
// instance's stream, for the saga's projection to decide on in order: from
// an HTTP handler or a broker consumer that received the other service's
// answer (its headers HeaderSaga, HeaderInstance and HeaderStep name the
// instance and step). It refuses, recording nothing: an unknown instance
// (ErrUnknownInstance), one that has ended (ErrFinished), and a step the
// instance does not await (ErrNotAwaited). A response given again with
// the same r.Key is recognised and returns nil without being recorded
// twice. A response that loses a race with the step's timeout (recorded
// after it) is ignored by the saga and shown as Ignored in its history.
func Deliver(ctx context.Context, store *mire.Store, saga, id string, r Response) error {
	switch {
	case store == nil:
		return errors.New("sagas: deliver: store is nil")
	case checkName(saga) != nil:
		return fmt.Errorf("sagas: deliver: %w", checkName(saga))
	case checkID(id) != nil:
		return fmt.Errorf("sagas: deliver to saga %q: %w", saga, checkID(id))
	case !stepName.MatchString(r.Step):
		return fmt.Errorf("sagas: deliver to saga %q instance %q: step name %q must be 1 to 64 letters, digits or _.-", saga, id, r.Step)
	}
	if err := store.Registry().Register(events...); err != nil {
		return fmt.Errorf("sagas: deliver: %w", err)
	}
	event := any(Responded{Step: r.Step, Failure: r.Failure, Data: r.Data})
	eventID := derivedID("response", saga, id, r.Key)
	if r.Key != "" {
		event = mire.WithID(eventID, event)
	}
	sql := queriesFor(store.Schema())
	err := store.InTx(ctx, nil, func(scope *mire.TxScope) error {
		root, err := mire.LoadForUpdate[Instance](ctx, scope, InstanceID(saga, id))
		if errors.Is(err, mire.ErrNotFound) {
			return fmt.Errorf("%w: saga %q has no instance %q", ErrUnknownInstance, saga, id)
		}
		if err != nil {
			return err
		}
		if r.Key != "" {
			var stream string
			err := scope.Tx().QueryRow(ctx, sql.selectEventStream, eventID).Scan(&stream)
			if err == nil {
				return nil // delivered before
			}
			if !errors.Is(err, pgx.ErrNoRows) {
				return err
			}
		}
		in := &root.State
		switch {
		case in.Status.Terminal() && in.Reason != "":
			return fmt.Errorf("%w: saga %q instance %q is %s (%s)", ErrFinished, saga, id, in.Status, in.Reason)
		case in.Status.Terminal():
			return fmt.Errorf("%w: saga %q instance %q is %s", ErrFinished, saga, id, in.Status)
		case in.Awaiting != r.Step:
			return fmt.Errorf("%w: saga %q instance %q awaits %q, not %q", ErrNotAwaited, saga, id, in.Awaiting, r.Step)
		}
		if err := root.Record(event); err != nil {
			return err
		}
		return scope.Save(ctx, root)
	})
	if err != nil {
		return fmt.Errorf("sagas: deliver to saga %q instance %q step %q: %w", saga, id, r.Step, err)
	}
	return nil
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

// Info is an instance's row in the list of a saga's instances.
type Info struct {
	ID      string
	Status  Status
	Step    string // the step awaited, or the last completed
	Reason  string
	Version int64
	Started time.Time
	Updated time.Time
}

// ListOpts filters List. A nil *ListOpts lists every instance.
type ListOpts struct {
	// Status keeps the instances of this status. Defaults to "": all.
	Status Status
	// After starts the list after this instance id, for paging. Defaults
	// to "": from the first.
	After string
	// Limit bounds the list. Defaults to ListLimitDefault.
	Limit int
}

// ListLimitDefault is List's limit unless ListOpts.Limit says otherwise.
const ListLimitDefault = 1000

// List lists the instances of saga in id order, as of the last batch its
// projection committed.
func List(ctx context.Context, store *mire.Store, saga string, opts *ListOpts) ([]Info, error) {
	if store == nil {
		return nil, errors.New("sagas: list: store is nil")
	}
	if err := checkName(saga); err != nil {
		return nil, fmt.Errorf("sagas: list: %w", err)
	}
	var o ListOpts
	if opts != nil {
		o = *opts
	}
	switch o.Status {
	case "", Running, Completed, Compensated, Failed:
	default:
		return nil, fmt.Errorf("sagas: list saga %q: unknown status %q", saga, o.Status)
	}
	if o.Limit < 0 {
		return nil, fmt.Errorf("sagas: list saga %q: negative limit %d", saga, o.Limit)
	}
	if o.Limit == 0 {
		o.Limit = ListLimitDefault
	}
	rows, err := store.Pool().Query(ctx, queriesFor(store.Schema()).selectInstances, saga, string(o.Status), o.After, o.Limit)
	if err != nil {
		return nil, fmt.Errorf("sagas: list saga %q: %w", saga, err)
	}
	var out []Info
	var i Info
	var status string
	if _, err := pgx.ForEachRow(rows, []any{&i.ID, &status, &i.Step, &i.Reason, &i.Version, &i.Started, &i.Updated}, func() error {
		i.Status = Status(status)
		out = append(out, i)
		return nil
	}); err != nil {
		return nil, fmt.Errorf("sagas: list saga %q: %w", saga, err)
	}
	return out, nil
}

// Count returns how many instances of saga are in each status.
func Count(ctx context.Context, store *mire.Store, saga string) (map[Status]int, error) {
	if store == nil {
		return nil, errors.New("sagas: count: store is nil")
	}
	if err := checkName(saga); err != nil {
		return nil, fmt.Errorf("sagas: count: %w", err)
	}
	rows, err := store.Pool().Query(ctx, queriesFor(store.Schema()).countInstances, saga)
	if err != nil {
		return nil, fmt.Errorf("sagas: count saga %q: %w", saga, err)
	}
	out := map[Status]int{}
	var status string
	var n int
	if _, err := pgx.ForEachRow(rows, []any{&status, &n}, func() error {
		out[Status(status)] = n
		return nil
	}); err != nil {
		return nil, fmt.Errorf("sagas: count saga %q: %w", saga, err)
	}
	return out, nil
}
