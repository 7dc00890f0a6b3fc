package projections_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/jackc/pgx/v5"
	"github.com/mire-go/mire"
	"github.com/mire-go/mire/projections"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	tracenoop "go.opentelemetry.io/otel/trace/noop"
)

// named returns the spans called name.
func named(spans tracetest.SpanStubs, name string) []tracetest.SpanStub {
	var out []tracetest.SpanStub
	for _, s := range spans {
		if s.Name == name {
			out = append(out, s)
		}
	}
	return out
}

// attr returns the value of span attribute key.
func attr(s tracetest.SpanStub, key attribute.Key) attribute.Value {
	for _, kv := range s.Attributes {
		if kv.Key == key {
			return kv.Value
		}
	}
	return attribute.Value{}
}

// points collects reader's metrics: by metric name, each data point's
// value (a counter's sum, a histogram's count, a gauge's value) by the
// value of its mire.projection attribute.
func points(ctx context.Context, reader *sdkmetric.ManualReader) map[string]map[string]float64 {
	var rm metricdata.ResourceMetrics
	Expect(reader.Collect(ctx, &rm)).To(Succeed())
	out := map[string]map[string]float64{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			ps := map[string]float64{}
			key := func(s attribute.Set) string {
				v, _ := s.Value("mire.projection")
				return v.AsString()
			}
			switch d := m.Data.(type) {
			case metricdata.Sum[int64]:
				for _, p := range d.DataPoints {
					ps[key(p.Attributes)] += float64(p.Value)
				}
			case metricdata.Histogram[float64]:
				for _, p := range d.DataPoints {
					ps[key(p.Attributes)] += float64(p.Count)
				}
			case metricdata.Gauge[int64]:
				for _, p := range d.DataPoints {
					ps[key(p.Attributes)] = float64(p.Value)
				}
			case metricdata.Gauge[float64]:
				for _, p := range d.DataPoints {
					ps[key(p.Attributes)] = p.Value
				}
			}
			out[m.Name] = ps
		}
	}
	return out
}

var _ = Describe("Telemetry", func() {
	var (
		e      env
		spans  *tracetest.InMemoryExporter
		tp     *sdktrace.TracerProvider
		reader *sdkmetric.ManualReader
		store  *mire.Store
	)
	BeforeEach(func(ctx SpecContext) {
		e = freshEnv(ctx)
		spans = tracetest.NewInMemoryExporter()
		tp = sdktrace.NewTracerProvider(sdktrace.WithSyncer(spans))
		reader = sdkmetric.NewManualReader()
		var err error
		store, err = mire.New(e.pool, &mire.Config{TracerProvider: tp,
			MeterProvider: sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))})
		Expect(err).NotTo(HaveOccurred())
	})

	It("links each handler span to the save that wrote its event, under a batch span", func(ctx SpecContext) {
		cmdCtx, cmd := tp.Tracer("test").Start(ctx, "command")
		_, err := store.Append(cmdCtx, "account-a", mire.NoStream, Opened{Initial: 5}, Deposited{Amount: 2})
		Expect(err).NotTo(HaveOccurred())
		cmd.End()
		appendSpan := named(spans.GetSpans(), "mire.append")[0]
		Expect(appendSpan.Parent.SpanID()).To(Equal(cmd.SpanContext().SpanID()))

		r := newRunner(store, "", projections.Projection{Name: "balances", Handler: balanceHandler()})
		Expect(r.CatchUp(ctx)).To(Succeed())

		got := spans.GetSpans()
		batches := named(got, "mire.projection.batch")
		Expect(batches).To(HaveLen(1), "an idle poll records no batch span")
		Expect(attr(batches[0], "mire.projection").AsString()).To(Equal("balances"))
		Expect(attr(batches[0], "mire.events").AsInt64()).To(BeEquivalentTo(2))
		Expect(attr(batches[0], "db.system.name").AsString()).To(Equal("postgresql"))
		handles := named(got, "mire.projection.handle")
		Expect(handles).To(HaveLen(2))
		for i, h := range handles {
			Expect(h.SpanKind).To(Equal(trace.SpanKindConsumer))
			Expect(h.Parent.SpanID()).To(Equal(batches[0].SpanContext.SpanID()))
			Expect(attr(h, "mire.stream").AsString()).To(Equal("account-a"))
			Expect(attr(h, "mire.version").AsInt64()).To(BeEquivalentTo(i + 1))
			Expect(h.Links).To(HaveLen(1))
			Expect(h.Links[0].SpanContext.TraceID()).To(Equal(cmd.SpanContext().TraceID()))
			Expect(h.Links[0].SpanContext.SpanID()).To(Equal(appendSpan.SpanContext.SpanID()))
		}

		m := points(ctx, reader)
		Expect(m["mire.projection.events"]).To(Equal(map[string]float64{"balances": 2}))
		Expect(m["mire.projection.batch.duration"]).To(Equal(map[string]float64{"balances": 1}))
	})

	It("names the partition on a partitioned projection's batch spans, and counts its events under the projection", func(ctx SpecContext) {
		Expect(projections.MigratePartitions(ctx, store, 3)).To(Succeed())
		for _, s := range []string{"account-a", "account-b", "account-c", "account-d"} {
			_, err := store.Append(ctx, s, mire.NoStream, Opened{Initial: 5})
			Expect(err).NotTo(HaveOccurred())
		}
		r := newRunner(store, "", projections.Projection{Name: "split", Partitions: 3, Handler: balanceHandler()})
		Expect(r.CatchUp(ctx)).To(Succeed())
		parts := map[int64]int64{}
		for _, b := range named(spans.GetSpans(), "mire.projection.batch") {
			Expect(attr(b, "mire.projection").AsString()).To(Equal("split"))
			parts[attr(b, "mire.projection.partition").AsInt64()] += attr(b, "mire.events").AsInt64()
		}
		st := status(ctx, store, "split")
		for _, p := range st.ByPartition {
			Expect(parts[int64(p.Partition)]).To(Equal(p.Delivered), "partition %d", p.Partition)
		}
		Expect(points(ctx, reader)["mire.projection.events"]).To(Equal(map[string]float64{"split": 4}))
	})

	It("reports each projection's lag while the runner runs", func(ctx SpecContext) {
		_, err := store.Append(ctx, "account-b", mire.NoStream, Opened{Initial: 5})
		Expect(err).NotTo(HaveOccurred())
		blocked := make(chan struct{})
		r := newRunner(store, "", projections.Projection{Name: "stuck", Handler: projections.HandlerFunc(
			func(ctx context.Context, _ pgx.Tx, _ mire.Envelope) error {
				<-blocked
				return nil
			})})
		stop := start(r)
		DeferCleanup(stop)
		DeferCleanup(func() { close(blocked) })
		Eventually(func() map[string]float64 { return points(ctx, reader)["mire.projection.lag.events"] }).
			WithContext(ctx).Should(Equal(map[string]float64{"stuck": 1}))
		Expect(points(ctx, reader)["mire.projection.lag.seconds"]).To(HaveKeyWithValue("stuck", BeNumerically(">", 0)))
	})

	It("counts handler failures and the halt, and logs them with the batch's trace id", func(ctx SpecContext) {
		_, err := store.Append(ctx, "account-c", mire.NoStream, Opened{Initial: 5})
		Expect(err).NotTo(HaveOccurred())
		var logs bytes.Buffer
		cfg := quiet()
		cfg.Logger = slog.New(slog.NewTextHandler(&logs, nil))
		r, err := projections.NewRunner(store, cfg, projections.Projection{Name: "poison", Handler: projections.HandlerFunc(
			func(context.Context, pgx.Tx, mire.Envelope) error { return errors.New("boom") })})
		Expect(err).NotTo(HaveOccurred())
		Expect(r.CatchUp(ctx)).To(MatchError(projections.ErrHalted))

		m := points(ctx, reader)
		Expect(m["mire.projection.handler.errors"]).To(Equal(map[string]float64{"poison": float64(cfg.MaxAttempts)}))
		Expect(m["mire.projection.halts"]).To(Equal(map[string]float64{"poison": 1}))
		handles := named(spans.GetSpans(), "mire.projection.handle")
		Expect(handles).To(HaveLen(cfg.MaxAttempts))
		Expect(handles[0].Status.Code).To(Equal(codes.Error))
		batch := named(spans.GetSpans(), "mire.projection.batch")[cfg.MaxAttempts-1]
		Expect(logs.String()).To(ContainSubstring("msg=\"mire: projection halted\""))
		Expect(logs.String()).To(ContainSubstring("trace_id=" + batch.SpanContext.TraceID().String()))
		Expect(logs.String()).To(ContainSubstring("span_id=" + batch.SpanContext.SpanID().String()))
	})

	It("records nothing, and works, with no-op providers", func(ctx SpecContext) {
		_, err := store.Append(ctx, "account-d", mire.NoStream, Opened{Initial: 5})
		Expect(err).NotTo(HaveOccurred())
		spans.Reset()
		cfg := quiet()
		cfg.TracerProvider, cfg.MeterProvider = tracenoop.NewTracerProvider(), metricnoop.NewMeterProvider()
		r, err := projections.NewRunner(store, cfg, projections.Projection{Name: "balances", Handler: balanceHandler()})
		Expect(err).NotTo(HaveOccurred())
		Expect(r.CatchUp(ctx)).To(Succeed())
		Expect(balances(ctx, e.pool)).To(Equal(map[string]int64{"account-d": 5}))
		Expect(spans.GetSpans()).To(BeEmpty())
		Expect(points(ctx, reader)).NotTo(HaveKey(HavePrefix("mire.projection")))
	})
})
