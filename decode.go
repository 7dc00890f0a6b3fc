package mire

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
)

// decodeEnvelope fills env.Data from env.Raw through the store's registry
// (upcasting older schema versions) and env.Metadata from metadata, the
// stored metadata JSON (nil or empty for none). env's other fields must
// already hold the stored row. A payload it cannot decode is a
// *DecodeError naming the stream, position and type.
func (s *Store) decodeEnvelope(env *Envelope, metadata []byte) error {
	switch {
	case s == nil:
		return fmt.Errorf("mire: decode envelope: store is nil")
	case env == nil:
		return fmt.Errorf("mire: decode envelope: env is nil")
	}
	target, err := s.registry.decodeData(env)
	if err != nil {
		return err
	}
	return decodeMetadata(env, metadata, target)
}

// decodeMetadata fills env.Metadata from metadata, the stored metadata
// JSON (nil or empty for none). target is the version the payload was
// decoded to, for the error.
func decodeMetadata(env *Envelope, metadata []byte, target int) error {
	env.Metadata = Metadata{}
	if len(metadata) > 0 && string(metadata) != "{}" { // most events carry none
		if err := json.Unmarshal(metadata, &env.Metadata); err != nil {
			return newDecodeError(env.StreamID, env.Position, env.Version, env.Type, env.SchemaVersion, target, fmt.Errorf("metadata: %w", err))
		}
	}
	return nil
}

// newDecodeError is the one constructor of *DecodeError.
func newDecodeError(streamID string, position, version int64, typ string, schema, target int, err error) *DecodeError {
	return &DecodeError{StreamID: streamID, Position: position, Version: version, Type: typ, SchemaVersion: schema, TargetVersion: target, Err: err}
}

// errNullPayload is a stored payload of JSON null: json.Unmarshal would
// leave the struct at its zero value, but no write stores null, so both
// decode paths refuse it.
var errNullPayload = errors.New("payload is null, not a JSON object")

// decode turns a stored payload into the registered Go value (not a
// pointer), and returns the type's current version (0 if it is not
// registered), the version it decodes to. Payloads at the current version
// are unmarshalled straight into the struct (the fast path); older ones go
// through the upcaster chain and then json.Unmarshal too (upcast.go), so
// both paths decode alike.
func (r *Registry) decode(entity, typ string, schemaVersion int, data []byte) (any, int, error) {
	state := r.state.Load()
	et, ok := state.byName[eventName{entity, typ}]
	if !ok {
		return nil, 0, fmt.Errorf("%w: entity %q type %q", ErrUnregistered, entity, typ)
	}
	target := et.tag.Version
	ptr := reflect.New(et.goType)
	switch {
	case schemaVersion < 1:
		return nil, target, fmt.Errorf("stored schema version %d is not valid: versions start at 1", schemaVersion)
	case schemaVersion == target:
		if bytes.Equal(bytes.Trim(data, " \t\r\n"), []byte("null")) {
			return nil, target, errNullPayload
		}
		if err := json.Unmarshal(data, ptr.Interface()); err != nil {
			return nil, target, fmt.Errorf("payload does not fit %v: %w", et.goType, err)
		}
	case schemaVersion < target:
		if err := state.upcast(et, schemaVersion, data, ptr.Interface()); err != nil {
			return nil, target, err
		}
	default:
		return nil, target, fmt.Errorf("stored schema version %d is newer than %v's version %d (written by newer code?)", schemaVersion, et.goType, target)
	}
	return ptr.Elem().Interface(), target, nil
}

// Decode fills env.Data from env.Raw as the store's reads do: into the Go
// type registered for (env.Category, env.Type), upcasting a payload stored
// at an older env.SchemaVersion (an outbox message, of type MessageType,
// decodes into a Message). It is for services that receive events some
// other way than reading the store, such as from a broker a relay
// publishes to; reads decode for themselves. A payload it cannot decode is
// a *DecodeError naming env's stream, position, version and type; env's
// other fields are left as they are.
func (r *Registry) Decode(env *Envelope) error {
	if env == nil {
		return fmt.Errorf("mire: decode: env is nil")
	}
	_, err := r.decodeData(env)
	return err
}

// decodeData is Decode; it also returns the version the payload decodes
// to (see decode).
func (r *Registry) decodeData(env *Envelope) (int, error) {
	var data any
	var target int
	var err error
	if env.Type == MessageType {
		data, target, err = decodeMessage(env)
	} else {
		data, target, err = r.decode(env.Category, env.Type, env.SchemaVersion, env.Raw)
	}
	if err != nil {
		return target, newDecodeError(env.StreamID, env.Position, env.Version, env.Type, env.SchemaVersion, target, err)
	}
	env.Data = data
	return target, nil
}
