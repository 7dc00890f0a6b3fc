package projections

import (
	"context"
	"errors"
	"time"

	"github.com/mire-go/mire"
	"github.com/mire-go/mire/internal/telemetry"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"
)

// runnerTelemetry is a runner's tracer and instruments. A nil tracer means
// tracing is off, a nil meter that metrics are: each costs one check per
// batch or event.
type runnerTelemetry struct {
	tracer trace.Tracer
	attrs  []attribute.KeyValue // db.system.name and db.namespace, on batch spans

	meter         metric.Meter
	batchDuration metric.Float64Histogram
	delivered     metric.Int64Counter
	handlerErrors metric.Int64Counter
	halts         metric.Int64Counter
	lagEvents     metric.Int64ObservableGauge
	lagSeconds    metric.Float64ObservableGauge
}

func newRunnerTelemetry(tp trace.TracerProvider, mp metric.MeterProvider, ns attribute.KeyValue) (*runnerTelemetry, error) {
	t := &runnerTelemetry{tracer: telemetry.Tracer(tp), attrs: []attribute.KeyValue{telemetry.PostgreSQL, ns}}
	meter := telemetry.Meter(mp)
	if meter == nil {
		return t, nil
	}
	in := telemetry.Instruments{Meter: meter}
	t.batchDuration = in.Duration("mire.projection.batch.duration", "Duration of projection batches that delivered events (read, handlers, checkpoint), by mire.projection and mire.outcome.")
	t.delivered = in.Counter("mire.projection.events", "{event}", "Events delivered to projection handlers in committed batches, by mire.projection.")
	t.handlerErrors = in.Counter("mire.projection.handler.errors", "{error}", "Projection handler calls that failed or panicked, by mire.projection.")
	t.halts = in.Counter("mire.projection.halts", "{halt}", "Projections halted on an event their handler kept failing, by mire.projection.")
	var err error
	t.lagEvents, err = meter.Int64ObservableGauge("mire.projection.lag.events", metric.WithUnit("{event}"),
		metric.WithDescription("Committed events a projection has still to deliver, by mire.projection, as Status.Lag."))
	errs := []error{in.Err(), err}
	t.lagSeconds, err = meter.Float64ObservableGauge("mire.projection.lag.seconds", metric.WithUnit("s"),
		metric.WithDescription("While events wait, the time since the last event a projection read was recorded (0 when caught up), by mire.projection."))
	errs = append(errs, err)
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	t.meter = meter
	return t, nil
}

// observeLag registers the lag gauges' callback for r's projections, while
// r runs; the returned function unregisters it. Each observation reads the
// projections' status (one query each), so every replica's runner reports
// the same values for the projections it hosts.
func (t *runnerTelemetry) observeLag(r *Runner) func() {
	if t.meter == nil {
		return func() {}
	}
	reg, err := t.meter.RegisterCallback(func(ctx context.Context, o metric.Observer) error {
		var errs []error
		for _, g := range r.groups {
			st, err := r.Status(ctx, g.p.Name)
			if errors.Is(err, mire.ErrNotFound) {
				continue // never ran: no checkpoint yet
			}
			if err != nil {
				errs = append(errs, err)
				continue
			}
			var secs float64
			if st.Lag > 0 {
				if err := r.store.Pool().QueryRow(ctx, r.sql.lagSeconds, st.Position).Scan(&secs); err != nil {
					errs = append(errs, err)
					continue
				}
			}
			attrs := metric.WithAttributes(telemetry.Projection.String(g.p.Name))
			o.ObserveInt64(t.lagEvents, st.Lag, attrs)
			o.ObserveFloat64(t.lagSeconds, secs, attrs)
		}
		return errors.Join(errs...)
	}, t.lagEvents, t.lagSeconds)
	if err != nil {
		r.cfg.Logger.Warn("mire: projections: register the lag gauges", "err", err)
		return func() {}
	}
	return func() { _ = reg.Unregister() }
}

// batchSpan is a batch's telemetry: its span (nil when tracing is off)
// and its start.
type batchSpan struct {
	span  trace.Span
	start time.Time
}

// beginBatch starts the span of w's batch that started at start (its read
// included), once it has events to deliver: an idle poll records nothing.
func (w *worker) beginBatch(ctx context.Context, start time.Time) (context.Context, batchSpan) {
	t := w.r.tel
	b := batchSpan{start: start}
	if t.tracer != nil {
		ctx, b.span = t.tracer.Start(ctx, "mire.projection.batch",
			trace.WithTimestamp(start),
			trace.WithAttributes(t.attrs...),
			trace.WithAttributes(telemetry.Projection.String(w.p.Name)))
		if w.g.partitioned() {
			b.span.SetAttributes(telemetry.Partition.Int(w.part))
		}
		w.lastSpan = b.span.SpanContext()
	}
	return ctx, b
}

// endBatch ends b's span and records the batch's metrics.
func (w *worker) endBatch(ctx context.Context, b batchSpan, delivered int64, last int64, err error) {
	t := w.r.tel
	if b.span != nil {
		b.span.SetAttributes(telemetry.Events.Int64(delivered), telemetry.Position.Int64(last))
		endSpan(b.span, err)
	}
	if t.meter == nil {
		return
	}
	out := telemetry.OutcomeOK
	if err != nil {
		out = telemetry.OutcomeError
	}
	name := telemetry.Projection.String(w.p.Name)
	t.batchDuration.Record(ctx, time.Since(b.start).Seconds(), metric.WithAttributes(name, telemetry.Outcome.String(out)))
	if err == nil && delivered > 0 {
		t.delivered.Add(ctx, delivered, metric.WithAttributes(name))
	}
}

// beginHandle starts the span of a handler call on envs (one, or a
// BatchHandler's batch), linked to the spans that wrote them.
func (w *worker) beginHandle(ctx context.Context, envs ...mire.Envelope) (context.Context, trace.Span) {
	t := w.r.tel
	if t.tracer == nil {
		return ctx, nil
	}
	links := make([]trace.Link, 0, len(envs))
	for _, env := range envs {
		if sc := env.Metadata.SpanContext(); sc.IsValid() {
			links = append(links, trace.Link{SpanContext: sc})
		}
	}
	attrs := []attribute.KeyValue{telemetry.Projection.String(w.p.Name), telemetry.Events.Int(len(envs))}
	if len(envs) == 1 {
		env := envs[0]
		attrs = append(attrs, telemetry.Stream.String(env.StreamID), telemetry.EventType.String(env.Type),
			telemetry.NewVersion.Int64(env.Version), telemetry.Position.Int64(env.Position))
	}
	return t.tracer.Start(ctx, "mire.projection.handle", trace.WithSpanKind(trace.SpanKindConsumer),
		trace.WithLinks(links...), trace.WithAttributes(attrs...))
}

// endHandle ends a handler call's span and counts its failure.
func (w *worker) endHandle(ctx context.Context, span trace.Span, err error) {
	if span != nil {
		endSpan(span, err)
	}
	if err != nil && w.r.tel.meter != nil {
		w.r.tel.handlerErrors.Add(ctx, 1, metric.WithAttributes(telemetry.Projection.String(w.p.Name)))
	}
}

// endSpan ends span, recording err.
func endSpan(span trace.Span, err error) {
	if err != nil {
		span.RecordError(err)
		span.SetAttributes(telemetry.ErrorType.String("_OTHER"))
		span.SetStatus(codes.Error, err.Error())
	}
	span.End()
}

// logContext returns ctx carrying the span context of w's last batch, so a
// log line about its failure carries its trace_id and span_id.
func (w *worker) logContext(ctx context.Context) context.Context {
	if !w.lastSpan.IsValid() {
		return ctx
	}
	return trace.ContextWithSpanContext(ctx, w.lastSpan)
}
