package mire

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/mire-go/mire/internal/telemetry"
	"go.opentelemetry.io/otel/trace"
)

// Metadata travels with each event: who caused it and in what flow. It is
// stored as JSON beside the payload and read back on every Envelope.
type Metadata struct {
	CorrelationID string            `json:"correlation_id,omitempty"`
	CausationID   string            `json:"causation_id,omitempty"`
	Actor         string            `json:"actor,omitempty"`
	Values        map[string]string `json:"values,omitempty"`

	// TraceParent and TraceState are the W3C trace context of the span
	// that wrote the event (the write's mire.save or mire.append span,
	// or, with tracing off, the span of its context, if any). A save or
	// append fills them in from its context, replacing what WithMetadata
	// set; they are empty when the context holds no span. Projections
	// link their handler spans to this span context (see SpanContext).
	TraceParent string `json:"traceparent,omitempty"`
	TraceState  string `json:"tracestate,omitempty"`
}

// IsZero reports whether m carries nothing.
func (m Metadata) IsZero() bool {
	return m.CorrelationID == "" && m.CausationID == "" && m.Actor == "" && len(m.Values) == 0 &&
		m.TraceParent == "" && m.TraceState == ""
}

// SpanContext returns the span context of m's TraceParent and TraceState,
// marked remote, or the zero SpanContext (not valid) when m has none: a
// handler that starts its own spans links them to it
// (trace.WithLinks(trace.Link{SpanContext: env.Metadata.SpanContext()})).
func (m Metadata) SpanContext() trace.SpanContext {
	return telemetry.ParseTraceParent(m.TraceParent, m.TraceState)
}

type metadataKey struct{}

// WithMetadata returns a context whose saves and appends store md with every
// event they write. A later WithMetadata replaces it. Its strings must not
// hold a NUL character (PostgreSQL cannot store one): a save or append with
// such metadata fails with ErrInvalidEvent and writes nothing.
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
	md.TraceParent, md.TraceState = telemetry.TraceParent(trace.SpanContextFromContext(ctx))
	if md.IsZero() {
		return nil, nil
	}
	if err := md.checkStorable(); err != nil {
		return nil, err
	}
	data, err := json.Marshal(md)
	if err != nil {
		return nil, fmt.Errorf("mire: encode metadata: %w", err)
	}
	return data, nil
}

// checkStorable refuses metadata that PostgreSQL's jsonb cannot store: a
// NUL character in any of its strings.
func (m Metadata) checkStorable() error {
	for _, f := range []struct{ name, value string }{
		{"correlation id", m.CorrelationID}, {"causation id", m.CausationID}, {"actor", m.Actor},
	} {
		if strings.IndexByte(f.value, 0) >= 0 {
			return fmt.Errorf("%w: metadata %s %q holds a NUL character, which PostgreSQL's jsonb cannot store", ErrInvalidEvent, f.name, f.value)
		}
	}
	for _, k := range slices.Sorted(maps.Keys(m.Values)) {
		if strings.IndexByte(k, 0) >= 0 {
			return fmt.Errorf("%w: metadata key %q holds a NUL character, which PostgreSQL's jsonb cannot store", ErrInvalidEvent, k)
		}
		if v := m.Values[k]; strings.IndexByte(v, 0) >= 0 {
			return fmt.Errorf("%w: metadata value %q (key %q) holds a NUL character, which PostgreSQL's jsonb cannot store", ErrInvalidEvent, v, k)
		}
	}
	return nil
}
