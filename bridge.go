package mire

import (
	"context"
	"fmt"
	"log/slog"
	"reflect"

	"github.com/jackc/pgx/v5"
	"github.com/mire-go/mire/internal/bridge"
	"github.com/mire-go/mire/internal/telemetry"
)

// Fills in the bridge for the projections package: the store's registry,
// envelope scanner and inline projections, without public API.
func init() {
	bridge.Entity = func(reg any, t reflect.Type) (string, bool) {
		if t == nil || t.Kind() == reflect.Pointer {
			return "", false
		}
		et, err := reg.(*Registry).lookup(reflect.Zero(t).Interface())
		if err != nil {
			return "", false
		}
		return et.tag.Entity, true
	}
	bridge.ScanEnvelope = func(store any, rows pgx.Rows, env any, before, after []any) (error, error) {
		return store.(*Store).scanEnvelope(rows, env.(*Envelope), before, after)
	}
	bridge.Logger = func(store any) *slog.Logger { return store.(*Store).logger }
	bridge.Telemetry = func(store any) telemetry.Providers { return store.(*Store).tel.providers }
	bridge.AddInline = func(store any, fn any) error {
		return store.(*Store).addInline(inlineProjection(fn.(func(context.Context, pgx.Tx, []Envelope) error)))
	}
}

// scanEnvelope scans the current row (the columns of before, then
// bridge.EnvelopeColumns, then after) into env and decodes its payload and
// metadata. A row that does not scan is err; a payload that does not decode
// is decodeErr, with env filled in but for Data.
func (s *Store) scanEnvelope(rows pgx.Rows, env *Envelope, before, after []any) (decodeErr, err error) {
	var schema int32
	var raw, meta []byte
	*env = Envelope{}
	// The id scans as [16]byte and the payload as []byte: through
	// uuid.UUID's sql.Scanner and json.RawMessage's UnmarshalJSON pgx would
	// format and parse the id as text and validate every payload twice.
	dest := make([]any, 0, len(before)+10+len(after))
	dest = append(dest, before...)
	dest = append(dest, (*[16]byte)(&env.ID), &env.StreamID, &env.Category, &env.Version, &env.Position,
		&env.Type, &schema, &raw, &meta, &env.RecordedAt)
	dest = append(dest, after...)
	if err := rows.Scan(dest...); err != nil {
		return nil, fmt.Errorf("scan event: %w", err)
	}
	env.Raw = raw
	env.SchemaVersion = int(schema)
	return s.decodeEnvelope(env, meta), nil
}
