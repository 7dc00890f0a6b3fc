package mire_test

import (
	"context"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/mire-go/mire"
	"github.com/mire-go/mire/internal/mtest"
	"go.opentelemetry.io/otel"
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

// spanAttrs returns a span's attributes by key.
func spanAttrs(s tracetest.SpanStub) map[attribute.Key]attribute.Value {
	m := make(map[attribute.Key]attribute.Value, len(s.Attributes))
	for _, kv := range s.Attributes {
		m[kv.Key] = kv.Value
	}
	return m
}

// spanNames returns the names of spans, in the order they ended.
func spanNames(spans tracetest.SpanStubs) []string {
	names := make([]string, len(spans))
	for i, s := range spans {
		names[i] = s.Name
	}
	return names
}

// sums collects reader's metrics and returns each counter's data points'
// sum and each histogram's count, by metric name and the attribute set's
// encoding ("" for no attributes).
func sums(ctx context.Context, reader *sdkmetric.ManualReader) map[string]map[string]int64 {
	var rm metricdata.ResourceMetrics
	Expect(reader.Collect(ctx, &rm)).To(Succeed())
	out := map[string]map[string]int64{}
	for _, sm := range rm.ScopeMetrics {
		Expect(sm.Scope.Name).To(Equal(mire.InstrumentationName))
		for _, m := range sm.Metrics {
			points := map[string]int64{}
			switch d := m.Data.(type) {
			case metricdata.Sum[int64]:
				for _, p := range d.DataPoints {
					points[p.Attributes.Encoded(attribute.DefaultEncoder())] += p.Value
				}
			case metricdata.Histogram[float64]:
				for _, p := range d.DataPoints {
					points[p.Attributes.Encoded(attribute.DefaultEncoder())] += int64(p.Count)
				}
			}
			out[m.Name] = points
		}
	}
	return out
}

var _ = Describe("Telemetry", func() {
	var (
		spans  *tracetest.InMemoryExporter
		tp     *sdktrace.TracerProvider
		reader *sdkmetric.ManualReader
		store  *mire.Store
	)
	BeforeEach(func() {
		spans = tracetest.NewInMemoryExporter()
		tp = sdktrace.NewTracerProvider(sdktrace.WithSyncer(spans))
		reader = sdkmetric.NewManualReader()
		mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
		var err error
		store, err = mire.New(db.Pool, &mire.Config{TracerProvider: tp, MeterProvider: mp})
		Expect(err).NotTo(HaveOccurred())
	})

	It("records a save span with the stream, the versions and the database client attributes", func(ctx SpecContext) {
		id := mtest.Unique("tel")
		acc, err := mire.LoadOrNew[Account](ctx, store, id)
		Expect(err).NotTo(HaveOccurred())
		Expect(acc.Record(Opened{Owner: id, Initial: 1})).To(Succeed())
		Expect(acc.Record(Deposited{Amount: 2})).To(Succeed())
		Expect(store.Save(ctx, acc)).To(Succeed())

		got := spans.GetSpans()
		Expect(spanNames(got)).To(Equal([]string{"mire.load", "mire.save"}))
		save := got[1]
		Expect(save.SpanKind).To(Equal(trace.SpanKindClient))
		Expect(save.InstrumentationScope.Name).To(Equal("github.com/mire-go/mire"))
		Expect(save.Status.Code).To(Equal(codes.Unset))
		a := spanAttrs(save)
		Expect(a["db.system.name"].AsString()).To(Equal("postgresql"))
		Expect(a["db.namespace"].AsString()).To(HaveSuffix("|mire"))
		Expect(a["db.operation.name"].AsString()).To(Equal("save"))
		Expect(a["mire.stream"].AsString()).To(Equal("account-" + id))
		Expect(a["mire.category"].AsString()).To(Equal("account"))
		Expect(a["mire.events"].AsInt64()).To(BeEquivalentTo(2))
		Expect(a["mire.expected_version"].AsString()).To(Equal("no stream"))
		Expect(a["mire.version"].AsInt64()).To(BeEquivalentTo(2))
	})

	It("records a load span with the events replayed", func(ctx SpecContext) {
		id := openAccount(ctx, store, 5)
		spans.Reset()
		_, err := mire.Load[Account](ctx, store, id)
		Expect(err).NotTo(HaveOccurred())
		got := spans.GetSpans()
		Expect(spanNames(got)).To(Equal([]string{"mire.load"}))
		a := spanAttrs(got[0])
		Expect(a["mire.stream"].AsString()).To(Equal("account-" + id))
		Expect(a["mire.events"].AsInt64()).To(BeEquivalentTo(1))
		Expect(a["mire.snapshot"].AsBool()).To(BeFalse())
	})

	It("marks a conflict on the save span, with an event naming the versions", func(ctx SpecContext) {
		id := openAccount(ctx, store, 5)
		a, err := mire.Load[Account](ctx, store, id)
		Expect(err).NotTo(HaveOccurred())
		b, err := mire.Load[Account](ctx, store, id)
		Expect(err).NotTo(HaveOccurred())
		Expect(a.Record(Deposited{Amount: 1})).To(Succeed())
		Expect(b.Record(Deposited{Amount: 1})).To(Succeed())
		Expect(store.Save(ctx, a)).To(Succeed())
		spans.Reset()
		Expect(store.Save(ctx, b)).To(MatchError(mire.ErrConcurrency))

		got := spans.GetSpans()
		Expect(spanNames(got)).To(Equal([]string{"mire.save"}))
		Expect(got[0].Status.Code).To(Equal(codes.Error))
		Expect(spanAttrs(got[0])["error.type"].AsString()).To(Equal("conflict"))
		Expect(got[0].Events).To(HaveLen(1))
		Expect(got[0].Events[0].Name).To(Equal("mire.conflict"))
		Expect(got[0].Events[0].Attributes).To(ContainElements(
			attribute.String("mire.expected_version", "1"), attribute.Int64("mire.actual_version", 2)))

		m := sums(ctx, reader)
		Expect(m["mire.saves"]).To(HaveKeyWithValue("db.operation.name=save,mire.outcome=conflict", BeEquivalentTo(1)))
		Expect(m["mire.saves"]).To(HaveKeyWithValue("db.operation.name=save,mire.outcome=ok", BeEquivalentTo(2)))
	})

	It("stores the save span's W3C trace context in each event's metadata", func(ctx SpecContext) {
		ctx2, parent := tp.Tracer("test").Start(ctx, "command")
		ctx2 = mire.WithMetadata(ctx2, mire.Metadata{CorrelationID: "corr-1"})
		id := openAccount(ctx2, store, 5)
		parent.End()

		var save tracetest.SpanStub
		for _, s := range spans.GetSpans() {
			if s.Name == "mire.save" {
				save = s
			}
		}
		Expect(save.Parent.SpanID()).To(Equal(parent.SpanContext().SpanID()))
		read := 0
		for env, err := range store.ReadStream(ctx, "account-"+id, nil) {
			read++
			Expect(err).NotTo(HaveOccurred())
			Expect(env.Metadata.CorrelationID).To(Equal("corr-1"), "the context's metadata is kept")
			Expect(env.Metadata.TraceParent).To(Equal("00-" + save.SpanContext.TraceID().String() + "-" +
				save.SpanContext.SpanID().String() + "-01"))
			sc := env.Metadata.SpanContext()
			Expect(sc.IsRemote()).To(BeTrue())
			Expect(sc.Equal(save.SpanContext.WithRemote(true))).To(BeTrue())
		}
		Expect(read).To(BeNumerically(">", 0), "the stream has the saved events")
	})

	It("records an append span", func(ctx SpecContext) {
		stream := "account-" + mtest.Unique("app")
		_, err := store.Append(ctx, stream, mire.NoStream, Opened{Owner: "x", Initial: 1})
		Expect(err).NotTo(HaveOccurred())
		got := spans.GetSpans()
		Expect(spanNames(got)).To(Equal([]string{"mire.append"}))
		Expect(spanAttrs(got[0])["db.operation.name"].AsString()).To(Equal("append"))
		Expect(spanAttrs(got[0])["mire.stream"].AsString()).To(Equal(stream))
	})

	It("nests a scope's loads and saves under its mire.tx span, from Begin to Commit", func(ctx SpecContext) {
		from, to := openAccount(ctx, store, 10), openAccount(ctx, store, 0)
		spans.Reset()
		Expect(store.InTx(ctx, nil, func(scope *mire.TxScope) error {
			accs, err := mire.LoadManyForUpdate[Account](ctx, scope, from, to)
			if err != nil {
				return err
			}
			Expect(accs[0].Record(Withdrawn{Amount: 3})).To(Succeed())
			Expect(accs[1].Record(Deposited{Amount: 3})).To(Succeed())
			return scope.Save(ctx, accs)
		})).To(Succeed())

		got := spans.GetSpans()
		Expect(spanNames(got)).To(Equal([]string{"mire.load", "mire.save", "mire.tx"}))
		tx := got[2]
		Expect(spanAttrs(tx)["db.operation.name"].AsString()).To(Equal("transaction"))
		Expect(got[0].Parent.SpanID()).To(Equal(tx.SpanContext.SpanID()))
		Expect(got[1].Parent.SpanID()).To(Equal(tx.SpanContext.SpanID()))
		Expect(spanAttrs(got[0])["db.operation.name"].AsString()).To(Equal("load for update"))
		Expect(spanAttrs(got[1])["mire.streams"].AsStringSlice()).To(HaveLen(2))
		Expect(spanAttrs(got[1])["mire.events"].AsInt64()).To(BeEquivalentTo(2))
	})

	It("counts saves, events written, loads and events replayed, with their durations", func(ctx SpecContext) {
		id := openAccount(ctx, store, 5)
		_, err := mire.Load[Account](ctx, store, id)
		Expect(err).NotTo(HaveOccurred())
		m := sums(ctx, reader)
		Expect(m["mire.saves"]).To(Equal(map[string]int64{"db.operation.name=save,mire.outcome=ok": 1}))
		Expect(m["mire.save.duration"]).To(Equal(map[string]int64{"db.operation.name=save,mire.outcome=ok": 1}))
		Expect(m["mire.events.written"]).To(Equal(map[string]int64{"mire.category=account": 1}))
		Expect(m["mire.loads"]).To(Equal(map[string]int64{"db.operation.name=load,mire.outcome=ok": 2}))
		Expect(m["mire.load.duration"]).To(Equal(map[string]int64{"db.operation.name=load,mire.outcome=ok": 2}))
		Expect(m["mire.events.replayed"]).To(Equal(map[string]int64{"mire.category=account": 1}))

		// Durations are in seconds: a save lands in a bucket below 1 s, not
		// in the first of the SDK's default (millisecond) boundaries.
		var rm metricdata.ResourceMetrics
		Expect(reader.Collect(ctx, &rm)).To(Succeed())
		for _, sm := range rm.ScopeMetrics {
			for _, m := range sm.Metrics {
				if h, ok := m.Data.(metricdata.Histogram[float64]); ok {
					for _, p := range h.DataPoints {
						Expect(p.Bounds).To(ContainElement(0.001), m.Name)
						Expect(p.Bounds[len(p.Bounds)-1]).To(BeNumerically("<=", 10), m.Name)
					}
				}
			}
		}
	})

	It("defaults to the otel global providers as New finds them", func(ctx SpecContext) {
		otel.SetTracerProvider(tp)
		DeferCleanup(func() { otel.SetTracerProvider(tracenoop.NewTracerProvider()) })
		global, err := mire.New(db.Pool, nil)
		Expect(err).NotTo(HaveOccurred())
		otel.SetTracerProvider(tracenoop.NewTracerProvider())
		openAccount(ctx, global, 5)
		Expect(spanNames(spans.GetSpans())).To(Equal([]string{"mire.load", "mire.save"}), "New read the global once")
	})

	It("records nothing, and works, with no provider or no-op ones", func(ctx SpecContext) {
		for _, cfg := range []*mire.Config{nil, {TracerProvider: tracenoop.NewTracerProvider(), MeterProvider: metricnoop.NewMeterProvider()}} {
			quiet, err := mire.New(db.Pool, cfg)
			Expect(err).NotTo(HaveOccurred())
			id := openAccount(ctx, quiet, 5)
			_, err = mire.Load[Account](ctx, quiet, id)
			Expect(err).NotTo(HaveOccurred())
			read := 0
			for env, err := range quiet.ReadStream(ctx, "account-"+id, nil) {
				read++
				Expect(err).NotTo(HaveOccurred())
				Expect(env.Metadata.IsZero()).To(BeTrue())
			}
			Expect(read).To(BeNumerically(">", 0), "the stream has the saved events")
		}
		Expect(spans.GetSpans()).To(BeEmpty())
		Expect(sums(ctx, reader)).To(BeEmpty())
	})
})
