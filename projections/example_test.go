package projections_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/mire-go/mire"
	"github.com/mire-go/mire/internal/mtest"
	"github.com/mire-go/mire/projections"
)

// examples gives each runnable example a fresh database (internal/mtest).
var examples mtest.Examples

// exampleStore returns a store on a fresh, migrated database, so that each
// example starts from an empty log, and the function that closes the pool
// and drops the database.
func exampleStore(ctx context.Context) (*mire.Store, func()) {
	store, err := mire.New(examples.Database(ctx, true), nil)
	if err != nil {
		log.Fatal(err)
	}
	return store, examples.Drop
}

// Stop is the clean shutdown: it ends Run, releases the runner's leases so
// that another replica (or the next start of this one) takes over at once,
// and returns when Run has returned. Close the pool only after it.
func ExampleRunner_Stop() {
	ctx := context.Background()
	store, cleanup := exampleStore(ctx)
	defer cleanup()

	handled := make(chan string, 1)
	runner, err := projections.NewRunner(store, &projections.Config{Logger: slog.New(slog.DiscardHandler)},
		projections.Projection{Name: "printer", Handler: projections.Plain(func(_ context.Context, e mire.Envelope) error {
			handled <- e.Type
			return nil
		})})
	if err != nil {
		log.Fatal(err)
	}
	runDone := make(chan error, 1)
	go func() { runDone <- runner.Run(context.Background()) }() // in main: a signal.NotifyContext

	if _, err := store.Append(ctx, "account-ann", mire.NoStream, Opened{Initial: 5}); err != nil {
		log.Fatal(err)
	}
	fmt.Println("handled", <-handled)

	if err := runner.Stop(ctx); err != nil { // before the pool closes
		log.Fatal(err)
	}
	fmt.Println("Run returned", <-runDone)
	st, err := runner.Status(ctx, "printer")
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
	runner, err := projections.NewRunner(store, cfg, projections.Projection{Name: "picky",
		Categories: []string{"parcel"},
		Handler:    projections.Plain(func(context.Context, mire.Envelope) error { return errNoRoom })})
	if err != nil {
		log.Fatal(err)
	}
	go func() { _ = runner.Run(ctx) }()
	defer func() { _ = runner.Stop(ctx) }()

	if _, err := store.Append(ctx, "parcel-p1", mire.NoStream, Shipped{To: "Lyon"}); err != nil {
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

	if _, err := store.Pool().Exec(ctx, `CREATE TABLE opened (stream text PRIMARY KEY)`); err != nil {
		log.Fatal(err)
	}
	opened := projections.Projection{Name: "opened", Categories: []string{"account"},
		Handler: projections.Routes(projections.On(func(ctx context.Context, tx pgx.Tx, _ Opened, env mire.Envelope) error {
			_, err := tx.Exec(ctx, `INSERT INTO opened VALUES ($1)`, env.StreamID)
			return err // a replay into rows that are still there would fail here
		})),
		Truncate: func(ctx context.Context, tx pgx.Tx) error {
			_, err := tx.Exec(ctx, `DELETE FROM opened`)
			return err
		}}
	runner, err := projections.NewRunner(store, &projections.Config{Logger: slog.New(slog.DiscardHandler)}, opened)
	if err != nil {
		log.Fatal(err)
	}
	go func() { _ = runner.Run(ctx) }()
	defer func() { _ = runner.Stop(ctx) }()

	for _, stream := range []string{"account-ann", "account-bob"} {
		if _, err := store.Append(ctx, stream, mire.NoStream, Opened{Initial: 1}); err != nil {
			log.Fatal(err)
		}
	}
	var last projections.Status
	err = runner.Rebuild(ctx, "opened", &projections.RebuildOpts{Progress: func(st projections.Status) { last = st }})
	if err != nil {
		log.Fatal(err)
	}
	var rows int
	if err := store.Pool().QueryRow(ctx, `SELECT count(*) FROM opened`).Scan(&rows); err != nil {
		log.Fatal(err)
	}
	fmt.Println("lag:", last.Lag, "state:", last.State)
	fmt.Println("rows:", rows)
	// Output:
	// lag: 0 state: running
	// rows: 2
}

// CatchUp drives a runner's projections to the end of the log in the
// calling goroutine and returns: for tools, tests and one-off backfills. A
// second CatchUp goes on from the checkpoint. Here a transactional
// projection keeps balances in a table; its rows commit with its checkpoint.
func ExampleRunner_CatchUp() {
	ctx := context.Background()
	store, cleanup := exampleStore(ctx)
	defer cleanup()
	if _, err := store.Pool().Exec(ctx, `CREATE TABLE balances (stream text PRIMARY KEY, balance bigint)`); err != nil {
		log.Fatal(err)
	}
	balances := projections.Projection{
		Name:       "balances",
		Categories: []string{"account"},
		Handler: projections.Routes(
			projections.On(func(ctx context.Context, tx pgx.Tx, e Opened, env mire.Envelope) error {
				_, err := tx.Exec(ctx, `INSERT INTO balances VALUES ($1, $2)`, env.StreamID, e.Initial)
				return err
			}),
			projections.On(func(ctx context.Context, tx pgx.Tx, e Deposited, env mire.Envelope) error {
				_, err := tx.Exec(ctx, `UPDATE balances SET balance = balance + $2 WHERE stream = $1`, env.StreamID, e.Amount)
				return err
			}),
		),
	}
	runner, err := projections.NewRunner(store, &projections.Config{Logger: slog.New(slog.DiscardHandler)}, balances)
	if err != nil {
		log.Fatal(err)
	}
	report := func() {
		if err := runner.CatchUp(ctx); err != nil {
			log.Fatal(err)
		}
		var rows string
		if err := store.Pool().QueryRow(ctx,
			`SELECT string_agg(stream || ' ' || balance, ', ' ORDER BY stream) FROM balances`).Scan(&rows); err != nil {
			log.Fatal(err)
		}
		st, err := runner.Status(ctx, "balances")
		if err != nil {
			log.Fatal(err)
		}
		fmt.Printf("%s (delivered %d, lag %d)\n", rows, st.Delivered, st.Lag)
	}

	if _, err := store.Append(ctx, "account-ann", mire.NoStream, Opened{Initial: 10}, Deposited{Amount: 5}); err != nil {
		log.Fatal(err)
	}
	if _, err := store.Append(ctx, "account-bob", mire.NoStream, Opened{Initial: 7}); err != nil {
		log.Fatal(err)
	}
	report()
	if _, err := store.Append(ctx, "account-bob", mire.Exactly(1), Deposited{Amount: 3}); err != nil {
		log.Fatal(err)
	}
	report()
	// Output:
	// account-ann 15, account-bob 7 (delivered 3, lag 0)
	// account-ann 15, account-bob 10 (delivered 4, lag 0)
}

// An inline projection runs inside the transaction that saves the events,
// so its read model is up to date as soon as Save returns, and a failing
// handler fails the save. Keep such handlers small: they hold the stream's
// lock.
func ExampleInline() {
	ctx := context.Background()
	store, cleanup := exampleStore(ctx)
	defer cleanup()
	if _, err := store.Pool().Exec(ctx, `CREATE TABLE accounts (stream text PRIMARY KEY)`); err != nil {
		log.Fatal(err)
	}
	err := projections.Inline(store, projections.Projection{
		Name:       "accounts",
		Categories: []string{"account"},
		Handler: projections.Routes(projections.On(func(ctx context.Context, tx pgx.Tx, _ Opened, env mire.Envelope) error {
			_, err := tx.Exec(ctx, `INSERT INTO accounts VALUES ($1)`, env.StreamID)
			return err
		})),
	})
	if err != nil {
		log.Fatal(err)
	}

	_, err = store.Append(ctx, "account-cy", mire.NoStream, Opened{Initial: 1})
	fmt.Println("first open:", err)
	var n int
	if err := store.Pool().QueryRow(ctx, `SELECT count(*) FROM accounts`).Scan(&n); err != nil {
		log.Fatal(err)
	}
	fmt.Println("accounts:", n) // read your own write: no runner, no wait

	_, err = store.Append(ctx, "account-cy", mire.Any, Opened{Initial: 1}) // the handler's INSERT fails
	fmt.Println("second open failed:", err != nil)
	var events int
	if err := store.Pool().QueryRow(ctx, `SELECT count(*) FROM mire.events`).Scan(&events); err != nil {
		log.Fatal(err)
	}
	fmt.Println("events:", events)
	// Output:
	// first open: <nil>
	// accounts: 1
	// second open failed: true
	// events: 1
}

// A projection with Partitions is split by stream: each partition has its
// own checkpoint and lease, and the runners hosting the projection (one
// per replica) share the partitions. MigratePartitions creates, once, the
// index its readers need. Here one runner catches all four partitions up,
// and the status rolls them up and lists each.
func ExampleMigratePartitions() {
	ctx := context.Background()
	store, cleanup := exampleStore(ctx)
	defer cleanup()
	if err := projections.MigratePartitions(ctx, store, 4); err != nil {
		log.Fatal(err)
	}
	counted := projections.Projection{
		Name:       "counted",
		Partitions: 4,
		Handler:    projections.Plain(func(context.Context, mire.Envelope) error { return nil }),
	}
	runner, err := projections.NewRunner(store, &projections.Config{Owner: "app-1", Logger: slog.New(slog.DiscardHandler)}, counted)
	if err != nil {
		log.Fatal(err)
	}
	for _, name := range []string{"ann", "bob", "cid", "dan", "eve", "fay"} {
		if _, err := store.Append(ctx, "account-"+name, mire.NoStream, Opened{Initial: 1}, Deposited{Amount: 2}); err != nil {
			log.Fatal(err)
		}
	}
	if err := runner.CatchUp(ctx); err != nil {
		log.Fatal(err)
	}
	st, err := runner.Status(ctx, "counted")
	if err != nil {
		log.Fatal(err)
	}
	var sum int64
	for _, p := range st.ByPartition {
		sum += p.Delivered
	}
	fmt.Printf("%d partitions: delivered %d (sum of partitions %d), lag %d, state %s\n",
		st.Partitions, st.Delivered, sum, st.Lag, st.State)

	// Another partition count for the same projection is refused until a
	// Rebuild starts it over.
	counted.Partitions = 2
	other, err := projections.NewRunner(store, &projections.Config{Logger: slog.New(slog.DiscardHandler)}, counted)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(errors.Is(other.CatchUp(ctx), projections.ErrPartitionCount))
	// Output:
	// 4 partitions: delivered 12 (sum of partitions 12), lag 0, state running
	// true
}

// A Raw projection receives payloads as they are stored, undecoded: it
// passes them on (to a broker, a file, another service) without the event
// types registered in its process, and spends nothing on decoding them.
func ExampleProjection_raw() {
	ctx := context.Background()
	store, cleanup := exampleStore(ctx)
	defer cleanup()
	if _, err := store.Append(ctx, "account-ann", mire.NoStream, Opened{Initial: 5}, Deposited{Amount: 7}); err != nil {
		log.Fatal(err)
	}

	runner, err := projections.NewRunner(store, &projections.Config{Logger: slog.New(slog.DiscardHandler)},
		projections.Projection{Name: "forwarder", Raw: true, Handler: projections.Plain(func(_ context.Context, e mire.Envelope) error {
			fmt.Printf("%s v%d %s %s (Data %v)\n", e.StreamID, e.Version, e.Type, e.Raw, e.Data)
			return nil
		})})
	if err != nil {
		log.Fatal(err)
	}
	if err := runner.CatchUp(ctx); err != nil {
		log.Fatal(err)
	}
	// Output:
	// account-ann v1 Opened {"initial": 5} (Data <nil>)
	// account-ann v2 Deposited {"amount": 7} (Data <nil>)
}
