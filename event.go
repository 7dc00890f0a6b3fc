package mire

import (
	"encoding/json"
	"fmt"
	"reflect"

	"github.com/google/uuid"
)

// Event is a zero-size marker embedded in every event struct. Its `mire`
// struct tag names the event:
//
//	type Opened struct {
//	    mire.Event `mire:"entity=account,type=Opened,version=1"`
//	    Initial    int64 `json:"initial" validate:"gte=0"`
//	}
//
// Keys: entity (required; the category of the streams the event belongs to),
// type (required; the stored discriminator, never derived from the Go type
// name), version (the payload's schema version, a whole number from 1 to
// MaxSchemaVersion, default 1) and alias (an old type name whose stored
// events load as this type; repeat with '|' for several:
// alias=Created|Started).
type Event struct{}

// IdentifiedEvent is an event with the id it is to be stored under, made
// by WithID.
type IdentifiedEvent struct {
	id    uuid.UUID
	event any
}

// WithID gives event the id it is stored under, in place of the new UUIDv7
// that Record and Append otherwise make. Pass the result to Append,
// AppendTx or Root.Record where the event itself would go.
//
// An id makes a write safe to retry from scratch. Append with ids it has
// stored already (all of them, in order, at the versions the expectation
// allows) reports success with the version they reached instead of storing
// them again; a retry that carries more events than the stored ones writes
// the rest if the stream is still where the stored ones left it. Ids derived
// from the command (a message id, a request id) make a command handler
// idempotent across crashes. An id already stored anywhere else is refused
// with ErrInvalidEvent. The id must not be uuid.Nil; UUIDv7 ids keep the
// index compact.
func WithID(id uuid.UUID, event any) IdentifiedEvent {
	return IdentifiedEvent{id: id, event: event}
}

// ID returns the event's id.
func (e IdentifiedEvent) ID() uuid.UUID { return e.id }

// Event returns the event.
func (e IdentifiedEvent) Event() any { return e.event }

// pendingEvent is a recorded event, validated and encoded, awaiting Save.
type pendingEvent struct {
	id     uuid.UUID
	typ    string
	schema int32
	data   []byte
	value  any
	given  bool // the id came with the event (WithID)
}

// prepare checks, validates and encodes an event bound for a stream of
// category.
func (reg *Registry) prepare(category string, event any) (pendingEvent, error) {
	var id uuid.UUID
	if ie, ok := event.(IdentifiedEvent); ok {
		if ie.id == uuid.Nil {
			return pendingEvent{}, fmt.Errorf("%w: the event id is the nil uuid", ErrInvalidEvent)
		}
		id, event = ie.id, ie.event
	}
	if event != nil {
		if v := reflect.ValueOf(event); v.Kind() == reflect.Pointer && v.IsNil() {
			return pendingEvent{}, fmt.Errorf("%w: nil %T", ErrInvalidEvent, event)
		}
	}
	et, err := reg.lookup(event)
	if err != nil {
		return pendingEvent{}, err
	}
	if et.tag.Entity != category {
		return pendingEvent{}, fmt.Errorf("%w: %v belongs to entity %q, not %q", ErrInvalidEvent, et.goType, et.tag.Entity, category)
	}
	if err := reg.check(et, event); err != nil {
		return pendingEvent{}, err
	}
	data, err := json.Marshal(event)
	if err != nil {
		return pendingEvent{}, fmt.Errorf("%w: encode %v: %v", ErrInvalidEvent, et.goType, err)
	}
	if err := checkStorable(data); err != nil {
		return pendingEvent{}, fmt.Errorf("%w: %v %v", ErrInvalidEvent, et.goType, err)
	}
	given := id != uuid.Nil
	if !given {
		if id, err = uuid.NewV7(); err != nil {
			return pendingEvent{}, fmt.Errorf("mire: new event id: %w", err)
		}
	}
	return pendingEvent{id: id, typ: et.tag.Type, schema: int32(et.tag.Version), data: data, value: event, given: given}, nil
}
