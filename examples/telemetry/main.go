// Command telemetry wires mire to the OpenTelemetry SDK: a command saves
// events under its own span, a projection's handler spans link back to the
// saves, and the store and runner count what they did. It prints the
// spans as trees and the counters; with -json it also prints what the SDK's
// stdout exporters write (every span and metric, as JSON). It starts a
// throwaway Postgres unless DATABASE_URL is set.
//
//	go run ./examples/telemetry
//	go run ./examples/telemetry -json
package main

import (
	"errors"
	"net/http"
	"os/signal"
	"time"

	"context"
	"flag"
	"fmt"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	"io"
	"log"
	"log/slog"
	"os"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/mire-go/mire"
	"github.com/mire-go/mire/pgtest"
	"github.com/mire-go/mire/projections"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/stdout/stdoutmetric"
	"go.opentelemetry.io/otel/exporters/stdout/stdouttrace"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
)

type Opened struct {
	mire.Event `mire:"entity=account,type=Opened"`
	Owner      string `json:"owner" validate:"required"`
}

type Deposited struct {
	mire.Event `mire:"entity=account,type=Deposited"`
	Amount     int64 `json:"amount" validate:"gt=0"`
}

func init() { mire.MustRegister(Opened{}, Deposited{}) }

type Account struct{ Balance int64 }

func (*Account) Category() string { return "account" }
func (a *Account) Apply(event any) {
	if e, ok := event.(Deposited); ok {
		a.Balance += e.Amount
	}
}

var (
	jsonOut    = flag.Bool("json", false, "also print the stdout exporters' JSON")
	prometheus = flag.String("prometheus", "", "after the run, serve the metrics for Prometheus at this address (e.g. :9464, path /metrics) until Ctrl-C")
)

func main() {
	flag.Parse()
	if err := run(context.Background()); err != nil {
		log.Fatal(err)
	}
}

func run(ctx context.Context) error {
	// The SDK: spans go to the stdout exporter (and, for the summary
	// below, to memory); metrics are read by the stdout exporter's
	// periodic reader and, for the summary, by a manual one.
	var out io.Writer = io.Discard
	if *jsonOut {
		out = os.Stdout
	}
	spanJSON, err := stdouttrace.New(stdouttrace.WithWriter(out), stdouttrace.WithPrettyPrint())
	if err != nil {
		return err
	}
	spans := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(spanJSON), sdktrace.WithSyncer(spans))
	defer func() { _ = tp.Shutdown(context.WithoutCancel(ctx)) }()
	metricJSON, err := stdoutmetric.New(stdoutmetric.WithWriter(out), stdoutmetric.WithPrettyPrint())
	if err != nil {
		return err
	}
	reader := sdkmetric.NewManualReader()
	readers := []sdkmetric.Option{sdkmetric.WithReader(reader), sdkmetric.WithReader(sdkmetric.NewPeriodicReader(metricJSON))}
	if *prometheus != "" {
		// The Prometheus exporter is a reader too: it collects on every scrape.
		exporter, err := otelprom.New()
		if err != nil {
			return err
		}
		readers = append(readers, sdkmetric.WithReader(exporter))
	}
	mp := sdkmetric.NewMeterProvider(readers...)
	defer func() { _ = mp.Shutdown(context.WithoutCancel(ctx)) }()
	// mire reads the globals when the store is created.
	otel.SetTracerProvider(tp)
	otel.SetMeterProvider(mp)

	dbURL, stop, err := pgtest.ForExample(ctx)
	if err != nil {
		return err
	}
	defer stop()
	pool, err := pgxpool.New(ctx, dbURL)
	if err != nil {
		return err
	}
	defer pool.Close()
	store, err := mire.New(pool, nil)
	if err != nil {
		return err
	}
	if err := store.Migrate(ctx); err != nil {
		return err
	}

	// A command, traced by the application: open an account and deposit.
	cmdCtx, cmd := tp.Tracer("bank").Start(ctx, "open account")
	acc, err := mire.LoadOrNew[Account](cmdCtx, store, "alice")
	if err != nil {
		return err
	}
	if err := acc.Record(Opened{Owner: "Alice"}); err != nil {
		return err
	}
	if err := acc.Record(Deposited{Amount: 100}); err != nil {
		return err
	}
	if err := store.Save(cmdCtx, acc); err != nil {
		return err
	}
	cmd.End()

	// A projection, later and perhaps in another process: its handler
	// spans link to the save that wrote each event.
	var total int64
	quiet := &projections.Config{Logger: slog.New(slog.DiscardHandler)}
	runner, err := projections.NewRunner(store, quiet, projections.Projection{
		Name: "deposits",
		Handler: projections.Routes(projections.On(func(ctx context.Context, _ pgx.Tx, e Deposited, _ mire.Envelope) error {
			total += e.Amount
			return nil
		})),
	})
	if err != nil {
		return err
	}
	if err := runner.CatchUp(ctx); err != nil {
		return err
	}
	fmt.Printf("deposits: %d\n\n", total)
	printSpans(spans.GetSpans())
	if err := printMetrics(ctx, reader); err != nil {
		return err
	}
	if *prometheus != "" {
		return serveMetrics(ctx, *prometheus)
	}
	return nil
}

// serveMetrics serves the Prometheus exporter's registry at addr/metrics
// until Ctrl-C.
func serveMetrics(ctx context.Context, addr string) error {
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt)
	defer stop()
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.Handler())
	srv := &http.Server{Addr: addr, Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		<-ctx.Done()
		_ = srv.Shutdown(context.WithoutCancel(ctx))
	}()
	fmt.Fprintf(os.Stderr, "serving metrics at http://%s/metrics (Ctrl-C to stop)\n", addr)
	if err := srv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// printSpans prints each trace as a tree of span names and a few
// attributes, and each link by the name of the span it points to.
func printSpans(spans tracetest.SpanStubs) {
	name := map[string]string{}
	for _, s := range spans {
		name[s.SpanContext.SpanID().String()] = s.Name
	}
	var tree func(parent string, depth int)
	tree = func(parent string, depth int) {
		for _, s := range spans {
			p := ""
			if s.Parent.IsValid() {
				p = s.Parent.SpanID().String()
			}
			if p != parent {
				continue
			}
			line := strings.Repeat("  ", depth) + s.Name
			for _, kv := range s.Attributes {
				switch kv.Key {
				case "mire.stream", "mire.events", "mire.version", "mire.projection", "mire.event.type":
					line += " " + string(kv.Key) + "=" + kv.Value.String()
				}
			}
			for _, l := range s.Links {
				line += " (linked to " + name[l.SpanContext.SpanID().String()] + ")"
			}
			fmt.Println(line)
			tree(s.SpanContext.SpanID().String(), depth+1)
		}
	}
	tree("", 0)
}

// printMetrics prints the sums of mire's counters by their attributes,
// and how many values each histogram holds.
func printMetrics(ctx context.Context, reader *sdkmetric.ManualReader) error {
	var rm metricdata.ResourceMetrics
	if err := reader.Collect(ctx, &rm); err != nil {
		return err
	}
	var lines []string
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			switch d := m.Data.(type) {
			case metricdata.Sum[int64]:
				for _, p := range d.DataPoints {
					lines = append(lines, fmt.Sprintf("%s{%s} %d", m.Name, attrs(p.Attributes), p.Value))
				}
			case metricdata.Histogram[float64]:
				for _, p := range d.DataPoints {
					lines = append(lines, fmt.Sprintf("%s{%s} count %d", m.Name, attrs(p.Attributes), p.Count))
				}
			}
		}
	}
	slices.Sort(lines)
	fmt.Println()
	for _, l := range lines {
		fmt.Println(l)
	}
	return nil
}

func attrs(s attribute.Set) string { return s.Encoded(attribute.DefaultEncoder()) }
