// Package bridge lets mire's own packages (projections) reach into a
// *mire.Store and its Registry without widening the root package's API.
// The root package fills these functions in when it is initialised
// (bridge.go there); this package cannot import the root, which imports
// it, so the root's types travel as any and the root asserts them back.
package bridge

import (
	"log/slog"
	"reflect"

	"github.com/jackc/pgx/v5"
	"github.com/mire-go/mire/internal/telemetry"
)

var (
	// Entity returns the entity (the stream category) under which the Go
	// type t is registered in reg, a *mire.Registry, and false if it is not.
	Entity func(reg any, t reflect.Type) (entity string, ok bool)

	// EnvelopeScanner returns a function that scans the current row of
	// rows into env, a *mire.Envelope, and decodes its payload and
	// metadata through store's registry (store is a *mire.Store). The row
	// holds the store's envelope columns (EnvelopeColumns) between the
	// columns that before and after scan into. A row that does not scan is
	// err; a payload that does not decode is decodeErr (a
	// *mire.DecodeError), with every field of env but Data filled in. One
	// scanner serves every row of a query, so a row costs no destination
	// list of its own. With raw, payloads other than outbox messages are
	// not decoded: env.Data stays nil and the registry is not asked.
	EnvelopeScanner func(store any, env any, before, after []any, raw bool) func(rows pgx.Rows) (decodeErr, err error)

	// Logger returns the logger of store, a *mire.Store (its
	// Config.Logger).
	Logger func(store any) *slog.Logger

	// Telemetry returns the providers store, a *mire.Store, resolved
	// from its Config (or the otel globals) and its db.namespace.
	Telemetry func(store any) telemetry.Providers

	// AddInline registers fn, a func(context.Context, pgx.Tx,
	// []mire.Envelope) error, to run inside every later write of store, a
	// *mire.Store, with the events just written.
	AddInline func(store any, fn any) error
)

// EnvelopeColumns is the select list EnvelopeScanner reads, from the events
// table aliased as e.
const EnvelopeColumns = `e.event_id, e.stream_id, e.category, e.version, e.position, e.type, e.schema_version, e.data, e.metadata, e.recorded_at`
