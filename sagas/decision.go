package sagas

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/mire-go/mire"
)

// decision is one decision on one instance, in the batch's transaction.
type decision[S any] struct {
	h     *handler[S]
	tx    pgx.Tx
	scope *mire.TxScope
	root  *mire.Root[Instance]
	id    string
	state S
	cause uuid.UUID
}

func (d *decision[S]) record(event any) error { return d.root.Record(event) }

// ignore records a stale input, reported in the history, not applied.
func (d *decision[S]) ignore(ctx context.Context, step, reason string) error {
	d.h.log.Info("sagas: input ignored", "saga", d.h.d.spec.Name, "instance", d.id, "reason", reason)
	if err := d.record(Ignored{Step: step, Reason: reason, Cause: d.cause}); err != nil {
		return err
	}
	return d.save(ctx)
}

// save writes the decision's events and the instance's row of the read
// model.
func (d *decision[S]) save(ctx context.Context) error {
	if err := d.scope.Save(ctx, d.root); err != nil {
		return err
	}
	in := &d.root.State
	step := in.Awaiting
	if step == "" && len(in.Done) > 0 {
		step = in.Done[len(in.Done)-1]
	}
	_, err := d.tx.Exec(ctx, d.h.sql.upsertInstance, d.h.d.spec.Name, d.id, string(in.Status), step, in.Reason, d.root.Version)
	if err != nil {
		return fmt.Errorf("sagas: update instance row: %w", err)
	}
	return nil
}

func (d *decision[S]) exec(step string, attempt int, compensation bool) *Exec[S] {
	key := d.h.d.spec.Name + "/" + d.id + "/" + step
	if compensation {
		key += "/compensate"
	}
	return &Exec[S]{Saga: d.h.d.spec.Name, ID: d.id, Step: step, Attempt: attempt, Key: key, State: &d.state}
}

// advance runs the steps from step on: Commands one after the other, until
// a Send step awaits its response, a step fails, or the last completes.
func (d *decision[S]) advance(ctx context.Context, step string) error {
	for ; step != ""; step = d.h.d.next[step] {
		st := d.h.d.steps[step]
		if st.Action.send != nil {
			return d.send(ctx, st, 1)
		}
		err := d.command(ctx, st.Action.do, d.exec(step, 1, false))
		if reason, ok := failed(err); ok {
			if err := d.reloadState(); err != nil {
				return err
			}
			if err := d.record(StepFailed{Step: step, Reason: reason, Cause: d.cause}); err != nil {
				return err
			}
			return d.compensate(ctx)
		}
		if err != nil {
			return fmt.Errorf("sagas: saga %q instance %q: step %q: %w", d.h.d.spec.Name, d.id, step, err)
		}
		raw, err := json.Marshal(d.state)
		if err != nil {
			return fmt.Errorf("sagas: saga %q instance %q: encode state: %w", d.h.d.spec.Name, d.id, err)
		}
		if err := d.record(StepCompleted{Step: step, State: raw, Cause: d.cause}); err != nil {
			return err
		}
	}
	return d.record(Ended{Status: Completed, Cause: d.cause})
}

// command runs fn in a savepoint of the batch's transaction, so that a
// command that fails its step leaves nothing of what it wrote.
func (d *decision[S]) command(ctx context.Context, fn func(context.Context, *mire.TxScope, *Exec[S]) error, x *Exec[S]) error {
	sp, err := d.tx.Begin(ctx)
	if err != nil {
		return err
	}
	scope, err := d.h.store.ScopeTx(sp)
	if err != nil {
		return err
	}
	if err := fn(ctx, scope, x); err != nil {
		if rerr := sp.Rollback(ctx); rerr != nil {
			return errors.Join(err, rerr)
		}
		return err
	}
	return sp.Commit(ctx)
}

// send sends the message of Send step st for attempt, and starts the wait
// for its response (and its timer).
func (d *decision[S]) send(ctx context.Context, st *Step[S], attempt int) error {
	x := d.exec(st.Name, attempt, false)
	msg, err := d.message(ctx, st.Action.send, x, strconv.Itoa(attempt))
	if reason, ok := failed(err); ok {
		if err := d.record(StepFailed{Step: st.Name, Reason: reason, Cause: d.cause}); err != nil {
			return err
		}
		return d.compensate(ctx)
	}
	if err != nil {
		return err
	}
	if err := d.record(StepStarted{Step: st.Name, Attempt: attempt, MessageID: msg.ID, Cause: d.cause}); err != nil {
		return err
	}
	if st.Timeout > 0 {
		if _, err := d.tx.Exec(ctx, d.h.sql.insertTimer, d.h.d.spec.Name, d.id, st.Name, attempt, st.Timeout); err != nil {
			return fmt.Errorf("sagas: set timer: %w", err)
		}
	}
	return nil
}

// message makes the message of a Send action and enqueues it in the
// batch's transaction.
func (d *decision[S]) message(ctx context.Context, fn func(context.Context, *Exec[S]) (mire.Message, error), x *Exec[S], attempt string) (mire.Message, error) {
	msg, err := fn(ctx, x)
	if err != nil {
		return msg, err
	}
	if msg.ID == uuid.Nil {
		msg.ID = derivedID("message", x.Key, attempt)
	}
	headers := make(map[string]string, len(msg.Headers)+4)
	headers[HeaderKey] = x.Key
	headers[HeaderSaga], headers[HeaderInstance], headers[HeaderStep] = x.Saga, x.ID, x.Step
	for k, v := range msg.Headers {
		headers[k] = v
	}
	msg.Headers = headers
	var opts *mire.EnqueueOpts
	if d.h.d.spec.Outbox != "" {
		opts = &mire.EnqueueOpts{Outbox: d.h.d.spec.Outbox}
	}
	if err := d.h.store.EnqueueTx(ctx, d.tx, opts, msg); err != nil {
		return msg, fmt.Errorf("sagas: saga %q instance %q: step %q: %w", x.Saga, x.ID, x.Step, err)
	}
	return msg, nil
}

// compensate runs the compensation of every completed step in reverse
// order (first the failed step's own if its effect is unknown), each
// recorded, and ends the instance.
func (d *decision[S]) compensate(ctx context.Context) error {
	in := &d.root.State
	var undo []string
	if in.Uncertain {
		if d.h.d.steps[in.FailedStep].Compensation.none() {
			return d.record(Ended{Status: Failed, Cause: d.cause,
				Reason: in.Reason + "; its effect is unknown and it has no compensation"})
		}
		undo = append(undo, in.FailedStep)
	}
	for _, s := range slices.Backward(in.Done) {
		undo = append(undo, s)
	}
	for _, step := range undo {
		comp := d.h.d.steps[step].Compensation
		x := d.exec(step, 1, true)
		var err error
		if comp.do != nil {
			err = d.command(ctx, comp.do, x)
		} else {
			_, err = d.message(ctx, comp.send, x, "compensate")
		}
		if reason, ok := failed(err); ok {
			if err := d.record(CompensationFailed{Step: step, Reason: reason, Cause: d.cause}); err != nil {
				return err
			}
			return d.record(Ended{Status: Failed, Cause: d.cause,
				Reason: fmt.Sprintf("%s; compensation of step %q failed: %s", in.Reason, step, reason)})
		}
		if err != nil {
			return fmt.Errorf("sagas: saga %q instance %q: compensate step %q: %w", d.h.d.spec.Name, d.id, step, err)
		}
		if err := d.record(StepCompensated{Step: step, Cause: d.cause}); err != nil {
			return err
		}
	}
	return d.record(Ended{Status: Compensated, Reason: in.Reason, Cause: d.cause})
}
