// Package telemetry holds the OpenTelemetry plumbing that mire's own
// packages (the root and projections) share: the instrumentation scope,
// the check that a provider records anything at all, W3C trace context in
// event metadata, and the slog handler that adds trace and span ids.
//
// It depends on the OpenTelemetry API only, never the SDK.
package telemetry

import (
	"context"
	"errors"
	"log/slog"
	"reflect"
	"runtime/debug"
	"sync"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	semconv "go.opentelemetry.io/otel/semconv/v1.40.0"
	"go.opentelemetry.io/otel/trace"
	tracenoop "go.opentelemetry.io/otel/trace/noop"
)

// DurationBuckets are the bucket boundaries, in seconds, of mire's
// duration histograms: the SDK's default boundaries are meant for
// milliseconds and would put every save in the first bucket. They are the
// OpenTelemetry semantic conventions' advice for database client durations.
var DurationBuckets = []float64{0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10}

// ScopeName is the instrumentation scope of every tracer and meter mire
// creates: its module path, as otel-contrib's instrumentations name theirs.
const ScopeName = "github.com/mire-go/mire"

// Version returns the version of the mire module in the running binary
// ("" when it is not known, as in mire's own tests), the instrumentation
// scope's version.
var Version = sync.OnceValue(func() string {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return ""
	}
	if info.Main.Path == ScopeName && info.Main.Version != "(devel)" {
		return info.Main.Version
	}
	for _, dep := range info.Deps {
		if dep.Path == ScopeName {
			return dep.Version
		}
	}
	return ""
})

// globalPkg is the package of the otel globals' delegating providers,
// which otel.GetTracerProvider and otel.GetMeterProvider return until the
// application sets its own.
const globalPkg = "go.opentelemetry.io/otel/internal/global"

// isUnset reports whether p is one of the otel globals' placeholders.
func isUnset(p any) bool {
	t := reflect.TypeOf(p)
	if t == nil {
		return true
	}
	if t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	return t.PkgPath() == globalPkg
}

// Tracer returns the tracer of tp for mire's scope, or nil when tp records
// nothing (nil, a no-op provider, or the otel global before the
// application set one), so that instrumented code pays one nil check.
func Tracer(tp trace.TracerProvider) trace.Tracer {
	switch tp.(type) {
	case nil, tracenoop.TracerProvider, *tracenoop.TracerProvider:
		return nil
	}
	if isUnset(tp) {
		return nil
	}
	return tp.Tracer(ScopeName, trace.WithInstrumentationVersion(Version()), trace.WithSchemaURL(SchemaURL))
}

// Meter returns the meter of mp for mire's scope, or nil when mp records
// nothing, as Tracer does.
func Meter(mp metric.MeterProvider) metric.Meter {
	switch mp.(type) {
	case nil, metricnoop.MeterProvider, *metricnoop.MeterProvider:
		return nil
	}
	if isUnset(mp) {
		return nil
	}
	return mp.Meter(ScopeName, metric.WithInstrumentationVersion(Version()), metric.WithSchemaURL(SchemaURL))
}

// SchemaURL is the semantic conventions version mire's attributes follow.
const SchemaURL = semconv.SchemaURL

// Attribute keys: the database client conventions where they apply, and
// mire's own under "mire.".
const (
	DBNamespace     = semconv.DBNamespaceKey
	DBOperationName = semconv.DBOperationNameKey
	ErrorType       = semconv.ErrorTypeKey

	Stream          = attribute.Key("mire.stream")
	Streams         = attribute.Key("mire.streams")
	Category        = attribute.Key("mire.category")
	Events          = attribute.Key("mire.events")
	ExpectedVersion = attribute.Key("mire.expected_version")
	NewVersion      = attribute.Key("mire.version")
	ActualVersion   = attribute.Key("mire.actual_version")
	SnapshotUsed    = attribute.Key("mire.snapshot")
	Outcome         = attribute.Key("mire.outcome")
	Projection      = attribute.Key("mire.projection")
	Partition       = attribute.Key("mire.projection.partition")
	EventType       = attribute.Key("mire.event.type")
	Position        = attribute.Key("mire.position")
)

// Outcomes of a write or load, the values of the Outcome attribute.
const (
	OutcomeOK       = "ok"
	OutcomeConflict = "conflict"
	OutcomeError    = "error"
)

// PostgreSQL is the db.system.name attribute of every span.
var PostgreSQL = semconv.DBSystemNamePostgreSQL

// Namespace is the db.namespace of a store: the database and the schema,
// as the conventions write it for PostgreSQL ("database|schema").
func Namespace(database, schema string) attribute.KeyValue {
	if database == "" {
		return DBNamespace.String(schema)
	}
	return DBNamespace.String(database + "|" + schema)
}

// WrapLogger returns a logger that adds trace_id and span_id to every
// record logged with a context holding a valid span context. A logger
// already wrapped is returned as it is.
func WrapLogger(l *slog.Logger) *slog.Logger {
	if _, ok := l.Handler().(traceHandler); ok {
		return l
	}
	return slog.New(traceHandler{l.Handler()})
}

// traceHandler is WrapLogger's slog.Handler.
type traceHandler struct{ slog.Handler }

func (h traceHandler) Handle(ctx context.Context, r slog.Record) error {
	if sc := trace.SpanContextFromContext(ctx); sc.IsValid() {
		r = r.Clone()
		r.AddAttrs(slog.String("trace_id", sc.TraceID().String()), slog.String("span_id", sc.SpanID().String()))
	}
	return h.Handler.Handle(ctx, r)
}

func (h traceHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return traceHandler{h.Handler.WithAttrs(attrs)}
}

func (h traceHandler) WithGroup(name string) slog.Handler {
	return traceHandler{h.Handler.WithGroup(name)}
}

// Providers is what a store hands the projections package: the providers
// it resolved (its Config's, or the otel globals') and its db.namespace.
type Providers struct {
	Tracer    trace.TracerProvider
	Meter     metric.MeterProvider
	Namespace attribute.KeyValue
}

// Instruments creates a meter's counters and duration histograms, keeping
// every error for Err, so a package declares its instruments one line each.
type Instruments struct {
	Meter metric.Meter
	errs  []error
}

// Counter returns an Int64Counter named name, in unit, described by desc.
func (in *Instruments) Counter(name, unit, desc string) metric.Int64Counter {
	c, err := in.Meter.Int64Counter(name, metric.WithUnit(unit), metric.WithDescription(desc))
	in.keep(err)
	return c
}

// Duration returns a histogram of durations in seconds, with DurationBuckets.
func (in *Instruments) Duration(name, desc string) metric.Float64Histogram {
	h, err := in.Meter.Float64Histogram(name, metric.WithUnit("s"), metric.WithExplicitBucketBoundaries(DurationBuckets...), metric.WithDescription(desc))
	in.keep(err)
	return h
}

// keep records err.
func (in *Instruments) keep(err error) {
	if err != nil {
		in.errs = append(in.errs, err)
	}
}

// Err returns the errors of every instrument created, joined.
func (in *Instruments) Err() error { return errors.Join(in.errs...) }
