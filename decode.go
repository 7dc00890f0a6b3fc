package mire

import (
	"encoding/json"
	"fmt"
)

// DecodeEnvelope fills env.Data from env.Raw through the store's registry
// (upcasting older schema versions) and env.Metadata from metadata, the
// stored metadata JSON (nil or empty for none). env's other fields must
// already hold the stored row. It is for packages that read the events table
// with their own SQL, such as projections; a payload it cannot decode is a
// *DecodeError naming the stream, position and type.
func (s *Store) DecodeEnvelope(env *Envelope, metadata []byte) error {
	if env == nil {
		return fmt.Errorf("mire: decode envelope: env is nil")
	}
	data, target, err := s.registry.decode(env.Category, env.Type, env.SchemaVersion, env.Raw)
	if err != nil {
		return &DecodeError{StreamID: env.StreamID, Position: env.Position, Version: env.Version, Type: env.Type, SchemaVersion: env.SchemaVersion, TargetVersion: target, Err: err}
	}
	env.Data = data
	env.Metadata = Metadata{}
	if len(metadata) > 0 {
		if err := json.Unmarshal(metadata, &env.Metadata); err != nil {
			return &DecodeError{StreamID: env.StreamID, Position: env.Position, Version: env.Version, Type: env.Type, SchemaVersion: env.SchemaVersion, Err: fmt.Errorf("metadata: %w", err)}
		}
	}
	return nil
}
