package mire_test

import (
	"context"
	"fmt"
	"log"

	"github.com/mire-go/mire"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
)

// A store given a TracerProvider (or created after otel.SetTracerProvider)
// traces its loads and saves as children of the caller's span, and stores
// the save span's trace context with each event, where projections link
// to it. Here the spans go to an in-memory exporter; an application wires
// the SDK with its exporter of choice.
func ExampleConfig_tracing() {
	ctx := context.Background()
	spans := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(spans))
	store, err := mire.New(exampleStore().Pool(), &mire.Config{TracerProvider: tp})
	if err != nil {
		log.Fatal(err)
	}

	ctx, cmd := tp.Tracer("bank").Start(ctx, "open account")
	acc, err := mire.LoadOrNew[Account](ctx, store, "alice")
	if err != nil {
		log.Fatal(err)
	}
	if err := acc.Record(Opened{Owner: "alice", Initial: 10}); err != nil {
		log.Fatal(err)
	}
	if err := store.Save(ctx, acc); err != nil {
		log.Fatal(err)
	}
	cmd.End()

	var save sdktrace.ReadOnlySpan
	for _, s := range spans.GetSpans().Snapshots() {
		attrs := map[string]string{}
		for _, kv := range s.Attributes() {
			attrs[string(kv.Key)] = kv.Value.String()
		}
		fmt.Printf("%-12s parent=%-12s stream=%s events=%s\n", s.Name(), parentName(spans, s), attrs["mire.stream"], attrs["mire.events"])
		if s.Name() == "mire.save" {
			save = s
		}
	}
	for env, err := range store.ReadStream(context.Background(), "account-alice", nil) {
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println("event", env.Version, "written in the mire.save span:", env.Metadata.SpanContext().SpanID() == save.SpanContext().SpanID())
	}
	// Output:
	// mire.load    parent=open account stream=account-alice events=0
	// mire.save    parent=open account stream=account-alice events=1
	// open account parent=             stream= events=
	// event 1 written in the mire.save span: true
}

// parentName returns the name of s's parent among the exported spans.
func parentName(spans *tracetest.InMemoryExporter, s sdktrace.ReadOnlySpan) string {
	for _, p := range spans.GetSpans() {
		if p.SpanContext.SpanID() == s.Parent().SpanID() {
			return p.Name
		}
	}
	return ""
}
