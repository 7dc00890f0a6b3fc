package jetstream_test

import (
	"context"
	"math/rand/v2"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/mire-go/mire"
	mjs "github.com/mire-go/mire/jetstream"
	"github.com/mire-go/mire/projections"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
)

// relayCounts returns the relay's counters by name.
func relayCounts(ctx context.Context, reader *sdkmetric.ManualReader) map[string]int64 {
	var rm metricdata.ResourceMetrics
	Expect(reader.Collect(ctx, &rm)).To(Succeed())
	out := map[string]int64{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if sum, ok := m.Data.(metricdata.Sum[int64]); ok {
				for _, p := range sum.DataPoints {
					out[m.Name] += p.Value
				}
			}
		}
	}
	return out
}

var _ = Describe("Relay instruments", func() {
	It("count messages, the duplicates JetStream dropped after a republish, and failed publishes", func(ctx SpecContext) {
		store, _ := freshStore(ctx)
		js := connect(natsServer())
		name := newStream(ctx, js, 0)
		for i := range 50 {
			_, err := store.Append(ctx, []string{"account-m1", "account-m2"}[i%2], mire.Any, Deposited{Amount: 1})
			Expect(err).NotTo(HaveOccurred())
		}
		reader := sdkmetric.NewManualReader()
		cfg := quiet()
		cfg.MeterProvider = sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
		f := &flaky{JetStream: js, rng: rand.New(rand.NewPCG(3, 4)), failEvery: 5}
		relay, err := mjs.NewRelay(store, f, &mjs.Config{Stream: name, SubjectPrefix: name, Categories: []string{"account"}, Runner: cfg})
		Expect(err).NotTo(HaveOccurred())
		Expect(relay.CatchUp(ctx)).To(Succeed())
		first := relayCounts(ctx, reader)
		Expect(first["mire.relay.messages"]).To(BeNumerically(">=", 50))
		Expect(first["mire.relay.publish.failures"]).To(BeEquivalentTo(f.failed))

		// Back to the start of the log: everything is published again, and
		// JetStream stores nothing twice.
		Expect(projections.ResetCheckpoint(ctx, store, relay.Name())).To(Succeed())
		Expect(relay.CatchUp(ctx)).To(Succeed())
		again := relayCounts(ctx, reader)
		Expect(again["mire.relay.duplicates"] - first["mire.relay.duplicates"]).To(BeEquivalentTo(50))
		Expect(checkExactlyOnceInOrder(storedMessages(ctx, js, name))).To(Equal(map[string]int64{"account-m1": 25, "account-m2": 25}))
	})
})
