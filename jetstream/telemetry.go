package jetstream

import (
	"context"
	"errors"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

// scope is the instrumentation scope of the relay's instruments.
const scope = "github.com/mire-go/mire/jetstream"

// relayTelemetry is a relay's instruments, recorded once per batch.
type relayTelemetry struct {
	attrs      metric.MeasurementOption // mire.projection = the relay's name
	published  metric.Int64Counter
	duplicates metric.Int64Counter
	failures   metric.Int64Counter
}

func newRelayTelemetry(mp metric.MeterProvider, name string) (*relayTelemetry, error) {
	if mp == nil {
		mp = otel.GetMeterProvider()
	}
	m := mp.Meter(scope)
	t := &relayTelemetry{attrs: metric.WithAttributeSet(attribute.NewSet(attribute.String("mire.projection", name)))}
	var errs [3]error
	t.published, errs[0] = m.Int64Counter("mire.relay.messages", metric.WithUnit("{message}"),
		metric.WithDescription("Messages JetStream acknowledged to a relay (duplicates included), by mire.projection."))
	t.duplicates, errs[1] = m.Int64Counter("mire.relay.duplicates", metric.WithUnit("{message}"),
		metric.WithDescription("Messages a relay published again that JetStream had stored already (acknowledged as duplicates), by mire.projection."))
	t.failures, errs[2] = m.Int64Counter("mire.relay.publish.failures", metric.WithUnit("{failure}"),
		metric.WithDescription("Publishes that failed or were not acknowledged in time, and were retried, by mire.projection."))
	if err := errors.Join(errs[:]...); err != nil {
		return nil, err
	}
	return t, nil
}

// record adds a batch's counts.
func (t *relayTelemetry) record(ctx context.Context, published, duplicates, failures int) {
	if published > 0 {
		t.published.Add(ctx, int64(published), t.attrs)
	}
	if duplicates > 0 {
		t.duplicates.Add(ctx, int64(duplicates), t.attrs)
	}
	if failures > 0 {
		t.failures.Add(ctx, int64(failures), t.attrs)
	}
}
