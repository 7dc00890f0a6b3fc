package mire

import (
	"github.com/google/uuid"
)

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
