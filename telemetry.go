package mire

import (
	"context"
	"errors"
	"time"

	"github.com/mire-go/mire/internal/telemetry"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"
)

// InstrumentationName is the instrumentation scope of the tracers and
// meters mire creates, in this package and in projections: the module
// path. Its version is the mire module's version in the running binary.
const InstrumentationName = telemetry.ScopeName

// storeTelemetry is a store's tracer and instruments. A nil tracer means
// tracing is off, a false metrics that metrics are: each costs one check
// per call, nothing more.
type storeTelemetry struct {
	providers telemetry.Providers
	tracer    trace.Tracer
	attrs     []attribute.KeyValue // db.system.name and db.namespace, on every span

	metrics        bool
	saveDuration   metric.Float64Histogram
	saves          metric.Int64Counter
	eventsWritten  metric.Int64Counter
	loadDuration   metric.Float64Histogram
	loads          metric.Int64Counter
	eventsReplayed metric.Int64Counter
	fallbacks      metric.Int64Counter
}

// newStoreTelemetry resolves the providers (nil meaning the otel globals,
// read now, once) and creates the store's tracer and instruments.
func newStoreTelemetry(tp trace.TracerProvider, mp metric.MeterProvider, database, schema string) (*storeTelemetry, error) {
	ns := telemetry.Namespace(database, schema)
	t := &storeTelemetry{
		providers: telemetry.Providers{Tracer: tp, Meter: mp, Namespace: ns},
		tracer:    telemetry.Tracer(tp),
		attrs:     []attribute.KeyValue{telemetry.PostgreSQL, ns},
	}
	meter := telemetry.Meter(mp)
	if meter == nil {
		return t, nil
	}
	in := telemetry.Instruments{Meter: meter}
	t.saveDuration = in.Duration("mire.save.duration", "Duration of saves and appends, by db.operation.name and mire.outcome.")
	t.saves = in.Counter("mire.saves", "{save}", "Saves and appends, by db.operation.name and mire.outcome (ok, conflict, error).")
	t.eventsWritten = in.Counter("mire.events.written", "{event}", "Events written by saves and appends, by mire.category.")
	t.loadDuration = in.Duration("mire.load.duration", "Duration of aggregate loads, by db.operation.name and mire.outcome.")
	t.loads = in.Counter("mire.loads", "{load}", "Aggregate loads, by db.operation.name and mire.outcome (ok, error).")
	t.eventsReplayed = in.Counter("mire.events.replayed", "{event}", "Events applied while loading aggregates, by mire.category.")
	t.fallbacks = in.Counter("mire.replica.fallbacks", "{fallback}", "Loads and reads that went to the primary instead of the replica, by db.operation.name and mire.reason (lag, unavailable).")
	if err := in.Err(); err != nil {
		return nil, err
	}
	t.metrics = true
	return t, nil
}

// on reports whether any signal is recorded.
func (t *storeTelemetry) on() bool { return t.tracer != nil || t.metrics }

// op is one instrumented call: its span (nil when tracing is off) and its
// start (zero when metrics are off).
type op struct {
	name  string // db.operation.name
	span  trace.Span
	start time.Time
}

// begin starts the span of operation name ("save", "load", ...), a child
// of ctx's span, named "mire." + spanName, and returns the context that
// carries it.
func (t *storeTelemetry) begin(ctx context.Context, spanName, name string) (context.Context, op) {
	o := op{name: name}
	if t.tracer != nil {
		ctx, o.span = t.tracer.Start(ctx, "mire."+spanName,
			trace.WithSpanKind(trace.SpanKindClient),
			trace.WithAttributes(t.attrs...),
			trace.WithAttributes(telemetry.DBOperationName.String(name)))
	}
	if t.metrics {
		o.start = time.Now()
	}
	return ctx, o
}

// outcome classifies err for the mire.outcome attribute.
func outcome(err error) string {
	switch {
	case err == nil:
		return telemetry.OutcomeOK
	case errors.Is(err, ErrConcurrency):
		return telemetry.OutcomeConflict
	}
	return telemetry.OutcomeError
}

// end ends o's span with err's status: a conflict is an event
// ("mire.conflict", with the stream and versions) and the error status,
// any other error is recorded on the span.
func (o op) end(err error) {
	if o.span == nil {
		return
	}
	switch out := outcome(err); out {
	case telemetry.OutcomeOK:
	case telemetry.OutcomeConflict:
		var cerr *ConcurrencyError
		attrs := []attribute.KeyValue{}
		if errors.As(err, &cerr) {
			attrs = append(attrs, telemetry.Stream.String(cerr.StreamID),
				telemetry.ExpectedVersion.String(cerr.Expected.String()), telemetry.ActualVersion.Int64(cerr.Actual))
		}
		o.span.AddEvent("mire.conflict", trace.WithAttributes(attrs...))
		o.span.SetAttributes(telemetry.ErrorType.String(out))
		o.span.SetStatus(codes.Error, err.Error())
	default:
		o.span.RecordError(err)
		o.span.SetAttributes(telemetry.ErrorType.String("_OTHER"))
		o.span.SetStatus(codes.Error, err.Error())
	}
	o.span.End()
}

// written ends the span and records the metrics of a save or append of
// writes that reached versions (nil on err).
func (t *storeTelemetry) written(ctx context.Context, o op, writes []streamWrite, versions []int64, err error) {
	if o.span != nil {
		if len(writes) == 1 {
			w := writes[0]
			o.span.SetAttributes(telemetry.Stream.String(w.streamID), telemetry.Category.String(w.category),
				telemetry.Events.Int(len(w.events)), telemetry.ExpectedVersion.String(w.expected.String()))
			if err == nil {
				o.span.SetAttributes(telemetry.NewVersion.Int64(versions[0]))
			}
		} else {
			ids := make([]string, len(writes))
			n := 0
			for i, w := range writes {
				ids[i] = w.streamID
				n += len(w.events)
			}
			o.span.SetAttributes(telemetry.Streams.StringSlice(ids), telemetry.Events.Int(n))
		}
		o.end(err)
	}
	if !t.metrics {
		return
	}
	attrs := metric.WithAttributes(telemetry.DBOperationName.String(o.name), telemetry.Outcome.String(outcome(err)))
	t.saves.Add(ctx, 1, attrs)
	t.saveDuration.Record(ctx, time.Since(o.start).Seconds(), attrs)
	if err != nil {
		return
	}
	for _, w := range writes {
		t.eventsWritten.Add(ctx, int64(len(w.events)), metric.WithAttributes(telemetry.Category.String(w.category)))
	}
}

// replayStats is what a load applied: events, and whether it started from
// a snapshot.
type replayStats struct {
	events   int64
	snapshot bool
}

// loaded ends the span and records the metrics of a load of streams (of
// one category).
func (t *storeTelemetry) loaded(ctx context.Context, o op, category string, streams []string, st replayStats, err error) {
	if o.span != nil {
		if len(streams) == 1 {
			o.span.SetAttributes(telemetry.Stream.String(streams[0]))
		} else {
			o.span.SetAttributes(telemetry.Streams.StringSlice(streams))
		}
		o.span.SetAttributes(telemetry.Category.String(category), telemetry.Events.Int64(st.events), telemetry.SnapshotUsed.Bool(st.snapshot))
		o.end(err)
	}
	if !t.metrics {
		return
	}
	attrs := metric.WithAttributes(telemetry.DBOperationName.String(o.name), telemetry.Outcome.String(outcome(err)))
	t.loads.Add(ctx, 1, attrs)
	t.loadDuration.Record(ctx, time.Since(o.start).Seconds(), attrs)
	if st.events > 0 {
		t.eventsReplayed.Add(ctx, st.events, metric.WithAttributes(telemetry.Category.String(category)))
	}
}

// fellBack records a load or read (op) that went to the primary instead of
// the replica, for reason: an event on a load's mire.load span (a read has
// no span of its own, and the caller's is left alone), and the
// mire.replica.fallbacks counter.
func (t *storeTelemetry) fellBack(ctx context.Context, op, reason string) {
	if t.tracer != nil && op == "load" {
		trace.SpanFromContext(ctx).AddEvent("mire.replica.fallback", trace.WithAttributes(telemetry.Reason.String(reason)))
	}
	if t.metrics {
		t.fallbacks.Add(ctx, 1, metric.WithAttributes(telemetry.DBOperationName.String(op), telemetry.Reason.String(reason)))
	}
}

// streamWrites returns the streamWrite of each rootWrite.
func streamWrites(writes []rootWrite) []streamWrite {
	ws := make([]streamWrite, len(writes))
	for i, w := range writes {
		ws[i] = w.write
	}
	return ws
}
