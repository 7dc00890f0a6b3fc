package projections_test

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/mire-go/mire"
	"github.com/mire-go/mire/pgtest"
	"github.com/mire-go/mire/projections"
)

// exampleStore returns a store on a fresh database (DATABASE_URL, or a
// throwaway server) and the function that closes the pool and drops it.
// The examples name their streams and projections uniquely, so that they
// also run on a DATABASE_URL that is not empty.
func exampleStore(ctx context.Context) (*mire.Store, func()) {
	url, drop, err := pgtest.ForExample(ctx)
	if err != nil {
		log.Fatal(err)
	}
	pool, err := pgxpool.New(ctx, url)
	if err != nil {
		log.Fatal(err)
	}
	store, err := mire.New(pool, nil)
	if err != nil {
		log.Fatal(err)
	}
	if err := store.Migrate(ctx); err != nil {
		log.Fatal(err)
	}
	return store, func() {
		pool.Close()
		drop()
	}
}

// Stop is the clean shutdown: it ends Run, releases the runner's leases so
// that another replica (or the next start of this one) takes over at once,
// and returns when Run has returned. Close the pool only after it.
func ExampleRunner_Stop() {
	ctx := context.Background()
	store, cleanup := exampleStore(ctx)
	defer cleanup()

	stream, name := mire.StreamID("account", rand.Text()), "printer-"+rand.Text()
	handled := make(chan string, 1)
	runner, err := projections.NewRunner(store, &projections.Config{Logger: slog.New(slog.DiscardHandler)},
		projections.Projection{Name: name, Handler: projections.Plain(func(_ context.Context, e mire.Envelope) error {
			if e.StreamID == stream {
				handled <- e.Type
			}
			return nil
		})})
	if err != nil {
		log.Fatal(err)
	}
	runDone := make(chan error, 1)
	go func() { runDone <- runner.Run(context.Background()) }() // in main: a signal.NotifyContext

	if _, err := store.Append(ctx, stream, mire.NoStream, Opened{Initial: 5}); err != nil {
		log.Fatal(err)
	}
	fmt.Println("handled", <-handled)

	if err := runner.Stop(ctx); err != nil { // before the pool closes
		log.Fatal(err)
	}
	fmt.Println("Run returned", <-runDone)
	st, err := runner.Status(ctx, name)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("lease owner %q\n", st.Owner)
	fmt.Println("Run again:", errors.Is(runner.Run(ctx), projections.ErrStopped))
	// Output:
	// handled Opened
	// Run returned <nil>
	// lease owner ""
	// Run again: true
}

// Shipped is the event of the OnHalt example, in a category of its own.
type Shipped struct {
	mire.Event `mire:"entity=parcel,type=Shipped"`
	To         string `json:"to"`
}

func init() { mire.MustRegister(Shipped{}) }

// OnHalt tells the application that a projection has halted on an event
// its handler keeps failing, so that it can alert or exit.
func ExampleConfig_onHalt() {
	ctx := context.Background()
	store, cleanup := exampleStore(ctx)
	defer cleanup()

	halted := make(chan error, 1)
	cfg := &projections.Config{
		MaxAttempts: 2,
		OnHalt: func(name string, err error) {
			halted <- err // alert someone, or end the program
		},
		Logger: slog.New(slog.DiscardHandler),
	}
	errNoRoom := errors.New("no room for it")
	runner, err := projections.NewRunner(store, cfg, projections.Projection{Name: "picky-" + rand.Text(),
		Categories: []string{"parcel"},
		Handler:    projections.Plain(func(context.Context, mire.Envelope) error { return errNoRoom })})
	if err != nil {
		log.Fatal(err)
	}
	go func() { _ = runner.Run(ctx) }()
	defer func() { _ = runner.Stop(ctx) }()

	if _, err := store.Append(ctx, mire.StreamID("parcel", rand.Text()), mire.NoStream, Shipped{To: "Lyon"}); err != nil {
		log.Fatal(err)
	}
	err = <-halted
	fmt.Println("halted:", errors.Is(err, projections.ErrHalted))
	fmt.Println("the handler's error:", errors.Is(err, errNoRoom))
	fmt.Println("names the event:", strings.Contains(err.Error(), "v1 (position "), strings.Contains(err.Error(), "type Shipped"))
	// Output:
	// halted: true
	// the handler's error: true
	// names the event: true true
}

// Rebuild clears a projection's read model with its Truncate and replays
// the log into it, in whichever replica runs the projection, returning once
// the replay has caught up.
func ExampleRunner_Rebuild() {
	ctx := context.Background()
	store, cleanup := exampleStore(ctx)
	defer cleanup()

	// One read-model table for every run of the example: rows are kept per
	// projection name.
	if _, err := store.Pool().Exec(ctx, `CREATE TABLE IF NOT EXISTS example_opened (
		projection text, stream text, PRIMARY KEY (projection, stream))`); err != nil {
		log.Fatal(err)
	}
	name := "opened-" + rand.Text()
	opened := projections.Projection{Name: name, Categories: []string{"account"},
		Handler: projections.Routes(projections.On(func(ctx context.Context, tx pgx.Tx, _ Opened, env mire.Envelope) error {
			_, err := tx.Exec(ctx, `INSERT INTO example_opened VALUES ($1, $2)`, name, env.StreamID)
			return err // a replay into rows that are still there would fail here
		})),
		Truncate: func(ctx context.Context, tx pgx.Tx) error {
			_, err := tx.Exec(ctx, `DELETE FROM example_opened WHERE projection = $1`, name)
			return err
		}}
	runner, err := projections.NewRunner(store, &projections.Config{Logger: slog.New(slog.DiscardHandler)}, opened)
	if err != nil {
		log.Fatal(err)
	}
	go func() { _ = runner.Run(ctx) }()
	defer func() { _ = runner.Stop(ctx) }()

	streams := []string{mire.StreamID("account", rand.Text()), mire.StreamID("account", rand.Text())}
	for _, stream := range streams {
		if _, err := store.Append(ctx, stream, mire.NoStream, Opened{Initial: 1}); err != nil {
			log.Fatal(err)
		}
	}
	var last projections.Status
	err = runner.Rebuild(ctx, name, &projections.RebuildOpts{Progress: func(st projections.Status) { last = st }})
	if err != nil {
		log.Fatal(err)
	}
	var rows int
	if err := store.Pool().QueryRow(ctx, `SELECT count(*) FROM example_opened WHERE projection = $1 AND stream = ANY($2)`,
		name, streams).Scan(&rows); err != nil {
		log.Fatal(err)
	}
	fmt.Println("lag:", last.Lag, "state:", last.State)
	fmt.Println("rows:", rows)
	// Output:
	// lag: 0 state: running
	// rows: 2
}
