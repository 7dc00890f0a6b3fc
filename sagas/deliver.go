package sagas

import (
	"context"
	"errors"
	"fmt"

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
