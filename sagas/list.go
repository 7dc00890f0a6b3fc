package sagas

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/mire-go/mire"
)

// Info is an instance's row in the list of a saga's instances.
type Info struct {
	// ID is the instance's id (its stream is "saga-NAME:ID").
	ID string
	// Status is where the instance stands.
	Status Status
	// Step is the step awaited, or the last completed.
	Step string
	// Reason says why the instance was compensated or failed.
	Reason string
	// Version is the instance's stream version as of the row.
	Version int64
	// Started and Updated are when the instance started and last changed.
	Started, Updated time.Time
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
