package mire

import (
	"context"
	"fmt"
	"log/slog"
	"reflect"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
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
	bridge.EnvelopeScanner = func(store any, env any, before, after []any, raw bool) func(pgx.Rows) (error, error) {
		sc := store.(*Store).newEnvelopeScanner(env.(*Envelope), before, after)
		sc.undecoded = raw
		return sc.scan
	}
	bridge.Logger = func(store any) *slog.Logger { return store.(*Store).logger }
	bridge.Telemetry = func(store any) telemetry.Providers { return store.(*Store).tel.providers }
	bridge.AddInline = func(store any, fn any) error {
		return store.(*Store).addInline(inlineProjection(fn.(func(context.Context, pgx.Tx, []Envelope) error)))
	}
}

// envelopeScanner scans rows of the envelope columns (with the columns of
// before and after around them) into one Envelope, decoding its payload
// and metadata, reusing one destination list for every row of a query.
type envelopeScanner struct {
	s      *Store
	env    *Envelope
	dest   []any
	schema int32
	raw    []byte
	meta   pgtype.DriverBytes // decoded at once: no copy of pgx's buffer
	// undecoded leaves Data nil (but for outbox messages) and the
	// registry unasked: Raw is all the reader wants of a payload.
	undecoded bool
}

// newEnvelopeScanner returns the scanner of rows into env. The id scans
// as [16]byte and the payload as []byte: through uuid.UUID's sql.Scanner
// and json.RawMessage's UnmarshalJSON pgx would format and parse the id as
// text and validate every payload twice.
func (s *Store) newEnvelopeScanner(env *Envelope, before, after []any) *envelopeScanner {
	sc := &envelopeScanner{s: s, env: env}
	sc.dest = make([]any, 0, len(before)+10+len(after))
	sc.dest = append(sc.dest, before...)
	sc.dest = append(sc.dest, (*[16]byte)(&env.ID), &env.StreamID, &env.Category, &env.Version, &env.Position,
		&env.Type, &sc.schema, &sc.raw, &sc.meta, &env.RecordedAt)
	sc.dest = append(sc.dest, after...)
	return sc
}

// scan scans the current row into the scanner's Envelope (and the
// destinations of before and after) and decodes its payload (unless the
// scanner leaves payloads undecoded) and metadata. A row that does not
// scan is err; a payload that does not decode is decodeErr, with the
// Envelope filled in but for Data.
func (sc *envelopeScanner) scan(rows pgx.Rows) (decodeErr, err error) {
	*sc.env = Envelope{}
	if err := rows.Scan(sc.dest...); err != nil {
		return nil, fmt.Errorf("scan event: %w", err)
	}
	sc.env.Raw = sc.raw // a copy of its own: pgx makes a new slice for every row
	sc.env.SchemaVersion = int(sc.schema)
	if sc.undecoded && sc.env.Type != MessageType {
		return decodeMetadata(sc.env, sc.meta, 0), nil
	}
	return sc.s.decodeEnvelope(sc.env, sc.meta), nil
}
