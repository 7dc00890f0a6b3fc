package sagas

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"slices"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/mire-go/mire"
	"github.com/mire-go/mire/internal/bridge"
	"github.com/mire-go/mire/projections"
)

// engine is a Definition, whatever its state type, as a Runner uses it.
type engine interface {
	projection(store *mire.Store, sql *queries, log *slog.Logger) (projections.Projection, error)
}

func (d *Definition[S]) engine() engine { return d }

// ProjectionName returns the name of saga's projection.
func ProjectionName(saga string) string { return "saga:" + saga }

// idSpace is the namespace of the ids the engine derives (messages,
// timeouts, responses), so that a redone decision derives the same ones.
var idSpace = uuid.NewSHA1(uuid.NameSpaceURL, []byte("https://github.com/mire-go/mire/sagas"))

func derivedID(parts ...string) uuid.UUID {
	var b []byte
	for _, p := range parts {
		b = append(b, p...)
		b = append(b, 0)
	}
	return uuid.NewSHA1(idSpace, b)
}

func (d *Definition[S]) projection(store *mire.Store, sql *queries, log *slog.Logger) (projections.Projection, error) {
	h := &handler[S]{d: d, store: store, sql: sql, log: log, listeners: map[reflect.Type]Listener{}}
	categories := []string{Category}
	add := func(what string, t reflect.Type) error {
		entity, ok := bridge.Entity(store.Registry(), t)
		if !ok {
			return fmt.Errorf("sagas: saga %q: %s for %v: the store's registry does not hold it (call Register on it), so no event can match it: %w",
				d.spec.Name, what, t, mire.ErrUnregistered)
		}
		if !slices.Contains(categories, entity) {
			categories = append(categories, entity)
		}
		return nil
	}
	if err := add("trigger", d.spec.Start.typ); err != nil {
		return projections.Projection{}, err
	}
	for _, l := range d.spec.Listen {
		if err := add("listener", l.typ); err != nil {
			return projections.Projection{}, err
		}
		h.listeners[l.typ] = l
	}
	return projections.Projection{
		Name:       ProjectionName(d.spec.Name),
		Categories: categories,
		BatchSize:  cmp.Or(d.spec.BatchSize, BatchSizeDefault),
		Partitions: d.spec.Partitions,
		Handler:    h,
	}, nil
}

// handler is a saga's projection handler: every decision runs in the
// batch's transaction.
type handler[S any] struct {
	d         *Definition[S]
	store     *mire.Store
	sql       *queries
	log       *slog.Logger
	listeners map[reflect.Type]Listener
}

// Handle decides on one event: a trigger starts an instance, a response or
// a timeout moves one on; the saga's own decisions are skipped.
func (h *handler[S]) Handle(ctx context.Context, tx pgx.Tx, env mire.Envelope) error {
	t := reflect.TypeOf(env.Data)
	switch {
	case env.Category == Category:
		saga, id, ok := splitInstanceID(env.AggregateID())
		if !ok || saga != h.d.spec.Name {
			return nil
		}
		switch e := env.Data.(type) {
		case Responded:
			return h.respond(ctx, tx, id, Response{Step: e.Step, Failure: e.Failure, Data: e.Data}, env)
		case TimedOut:
			return h.timedOut(ctx, tx, id, e, env)
		}
		return nil
	case t == h.d.spec.Start.typ:
		return h.start(ctx, tx, env)
	}
	if l, ok := h.listeners[t]; ok {
		id, r, ok := l.fn(env)
		if !ok {
			return nil
		}
		return h.respond(ctx, tx, id, r, env)
	}
	return nil
}

// load locks and loads instance id; a missing one is mire.ErrNotFound.
func (h *handler[S]) load(ctx context.Context, tx pgx.Tx, id string, cause uuid.UUID) (*decision[S], error) {
	scope, err := h.store.ScopeTx(tx)
	if err != nil {
		return nil, err
	}
	root, err := mire.LoadForUpdate[Instance](ctx, scope, InstanceID(h.d.spec.Name, id))
	if err != nil {
		return nil, err
	}
	d := &decision[S]{h: h, tx: tx, scope: scope, root: root, id: id, cause: cause}
	if err := d.reloadState(); err != nil {
		return nil, err
	}
	return d, nil
}

func (d *decision[S]) reloadState() error {
	var s S
	if len(d.root.State.State) > 0 {
		if err := json.Unmarshal(d.root.State.State, &s); err != nil {
			return fmt.Errorf("sagas: saga %q instance %q: decode state: %w", d.h.d.spec.Name, d.id, err)
		}
	}
	d.state = s
	return nil
}

func (h *handler[S]) start(ctx context.Context, tx pgx.Tx, env mire.Envelope) error {
	id, state, ok := h.d.spec.Start.fn(env)
	if !ok {
		return nil
	}
	if err := checkID(id); err != nil {
		return fmt.Errorf("sagas: saga %q: trigger %s of %s v%d: %w", h.d.spec.Name, env.Type, env.StreamID, env.Version, err)
	}
	scope, err := h.store.ScopeTx(tx)
	if err != nil {
		return err
	}
	aggID := InstanceID(h.d.spec.Name, id)
	_, err = mire.LoadForUpdate[Instance](ctx, scope, aggID)
	switch {
	case err == nil:
		return nil // a repeated trigger: the instance exists
	case !errors.Is(err, mire.ErrNotFound):
		return err
	}
	root, err := mire.Create[Instance](h.store, aggID)
	if err != nil {
		return fmt.Errorf("sagas: saga %q: trigger %s at position %d: instance id %q: %w", h.d.spec.Name, env.Type, env.Position, id, err)
	}
	raw, err := json.Marshal(state)
	if err != nil {
		return fmt.Errorf("sagas: saga %q instance %q: encode state: %w", h.d.spec.Name, id, err)
	}
	d := &decision[S]{h: h, tx: tx, scope: scope, root: root, id: id, state: state, cause: env.ID}
	if err := d.record(Started{Saga: h.d.spec.Name, State: raw, Cause: env.ID}); err != nil {
		return err
	}
	if err := d.advance(ctx, h.d.first); err != nil {
		return err
	}
	return d.save(ctx)
}

func (h *handler[S]) respond(ctx context.Context, tx pgx.Tx, id string, r Response, env mire.Envelope) error {
	d, err := h.load(ctx, tx, id, env.ID)
	if errors.Is(err, mire.ErrNotFound) || errors.Is(err, mire.ErrInvalidID) {
		h.log.Warn("sagas: response for an unknown instance, not applied", "saga", h.d.spec.Name, "instance", id, "step", r.Step, "event", env.ID)
		return nil
	}
	if err != nil {
		return err
	}
	in := &d.root.State
	if in.decided(env.ID) {
		return nil
	}
	switch {
	case in.Status.Terminal():
		return d.ignore(ctx, r.Step, fmt.Sprintf("response for step %q after the instance ended %s", r.Step, in.Status))
	case in.Awaiting != r.Step:
		return d.ignore(ctx, r.Step, fmt.Sprintf("response for step %q, which is not awaited (awaiting %q)", r.Step, in.Awaiting))
	}
	if _, err := tx.Exec(ctx, h.sql.deleteTimers, h.d.spec.Name, id, r.Step); err != nil {
		return fmt.Errorf("sagas: delete timers: %w", err)
	}
	if r.Failure != "" {
		if err := d.record(StepFailed{Step: r.Step, Reason: r.Failure, Cause: d.cause}); err != nil {
			return err
		}
		if err := d.compensate(ctx); err != nil {
			return err
		}
		return d.save(ctx)
	}
	if err := d.record(StepCompleted{Step: r.Step, State: in.State, Data: r.Data, Cause: d.cause}); err != nil {
		return err
	}
	if err := d.advance(ctx, h.d.next[r.Step]); err != nil {
		return err
	}
	return d.save(ctx)
}

func (h *handler[S]) timedOut(ctx context.Context, tx pgx.Tx, id string, e TimedOut, env mire.Envelope) error {
	d, err := h.load(ctx, tx, id, env.ID)
	if err != nil {
		return err // the timer loop appends to existing instances only
	}
	in := &d.root.State
	if in.decided(env.ID) {
		return nil
	}
	if in.Status != Running || in.Awaiting != e.Step || in.Attempt != e.Attempt {
		return d.ignore(ctx, e.Step, fmt.Sprintf("timeout of step %q attempt %d after the step settled", e.Step, e.Attempt))
	}
	st := h.d.steps[e.Step]
	if st == nil {
		return fmt.Errorf("sagas: saga %q instance %q: timeout of step %q, which the definition does not have", h.d.spec.Name, id, e.Step)
	}
	if e.Attempt <= st.Retries {
		if err := d.send(ctx, st, e.Attempt+1); err != nil {
			return err
		}
		return d.save(ctx)
	}
	reason := fmt.Sprintf("step %q timed out after %d attempt(s) of %v", e.Step, e.Attempt, st.Timeout)
	if err := d.record(StepFailed{Step: e.Step, Reason: reason, Uncertain: true, Cause: d.cause}); err != nil {
		return err
	}
	if err := d.compensate(ctx); err != nil {
		return err
	}
	return d.save(ctx)
}
