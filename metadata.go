package mire

import (
	"context"
	"encoding/json"
	"fmt"
)

// Metadata travels with each event: who caused it and in what flow. It is
// stored as JSON beside the payload and read back on every Envelope.
type Metadata struct {
	CorrelationID string            `json:"correlation_id,omitempty"`
	CausationID   string            `json:"causation_id,omitempty"`
	Actor         string            `json:"actor,omitempty"`
	Values        map[string]string `json:"values,omitempty"`
}

// IsZero reports whether m carries nothing.
func (m Metadata) IsZero() bool {
	return m.CorrelationID == "" && m.CausationID == "" && m.Actor == "" && len(m.Values) == 0
}

type metadataKey struct{}

// WithMetadata returns a context whose saves and appends store md with every
// event they write. A later WithMetadata replaces it.
//
//	ctx = mire.WithMetadata(ctx, mire.Metadata{CorrelationID: reqID, Actor: user})
//	err = store.Save(ctx, acc)
func WithMetadata(ctx context.Context, md Metadata) context.Context {
	return context.WithValue(ctx, metadataKey{}, md)
}

// MetadataFrom returns the metadata WithMetadata put on ctx, or the zero
// Metadata.
func MetadataFrom(ctx context.Context) Metadata {
	md, _ := ctx.Value(metadataKey{}).(Metadata)
	return md
}

// metadataJSON encodes the context's metadata, or returns nil (stored as
// NULL) when there is none.
func metadataJSON(ctx context.Context) ([]byte, error) {
	md := MetadataFrom(ctx)
	if md.IsZero() {
		return nil, nil
	}
	data, err := json.Marshal(md)
	if err != nil {
		return nil, fmt.Errorf("mire: encode metadata: %w", err)
	}
	return data, nil
}
