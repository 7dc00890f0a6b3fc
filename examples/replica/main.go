// Command replica sends an application's loads to a streaming replica
// while its writes go to the primary. It starts both servers for you (a
// throwaway primary, and a replica of it made with pg_basebackup), makes
// the replica lag by pausing its replay, and shows a stale read, a
// read-your-writes read with a token, a save of the stale Root refused,
// and Update retrying it from the primary.
//
//	go run ./examples/replica
//
// It always starts its own pair: a replica cannot be made of the server
// DATABASE_URL names.
package main

import (
	"context"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"os"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/mire-go/mire"
	"github.com/mire-go/mire/pgtest"
	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
)

type Opened struct {
	mire.Event `mire:"entity=account,type=Opened"`
	Owner      string `json:"owner" validate:"required"`
	Initial    int64  `json:"initial" validate:"gte=0"`
}

type Withdrawn struct {
	mire.Event `mire:"entity=account,type=Withdrawn"`
	Amount     int64 `json:"amount" validate:"gt=0"`
}

type Deposited struct {
	mire.Event `mire:"entity=account,type=Deposited"`
	Amount     int64 `json:"amount" validate:"gt=0"`
}

func init() { mire.MustRegister(Opened{}, Withdrawn{}, Deposited{}) }

type Account struct{ Balance int64 }

func (*Account) Category() string { return "account" }

func (a *Account) Apply(event any) {
	switch e := event.(type) {
	case Opened:
		a.Balance = e.Initial
	case Deposited:
		a.Balance += e.Amount
	case Withdrawn:
		a.Balance -= e.Amount
	}
}

// errInsufficientFunds refuses a withdrawal larger than the balance.
var errInsufficientFunds = errors.New("insufficient funds")

func main() {
	if err := run(context.Background()); err != nil {
		log.Fatal(err)
	}
}

func run(ctx context.Context) error {
	primary, err := pgtest.StartThrowaway(ctx, nil)
	if err != nil {
		return err
	}
	defer primary.Stop()
	replica, err := pgtest.StartReplica(ctx, primary, nil)
	if err != nil {
		return err
	}
	defer replica.Stop() // before the primary (defers run last in, first out)
	dbURL, _, err := pgtest.NewDatabase(ctx, primary.URL())
	if err != nil {
		return err
	}
	replicaURL, err := replica.DatabaseURL(dbURL)
	if err != nil {
		return err
	}
	if err := replica.CatchUp(ctx); err != nil { // the new database is on the replica
		return err
	}
	primaryPool, err := connect(ctx, dbURL)
	if err != nil {
		return err
	}
	defer primaryPool.Close()
	replicaPool, err := connect(ctx, replicaURL)
	if err != nil {
		return err
	}
	defer replicaPool.Close()

	reader := sdkmetric.NewManualReader()
	store, err := mire.New(primaryPool, &mire.Config{
		Replica: replicaPool,
		// Checks would soon see the paused replica lagging and send every
		// load to the primary; this program wants to show a stale read,
		// so it keeps them away. Keep the default in an application.
		ReplicaCheckInterval: time.Hour,
		Logger:               slog.New(slog.NewTextHandler(os.Stdout, &slog.HandlerOptions{ReplaceAttr: logAttr})),
		MeterProvider:        sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader)),
	})
	if err != nil {
		return err
	}

	acc, err := mire.Create[Account](store, "alice")
	if err != nil {
		return err
	}
	if err := acc.Record(Opened{Owner: "Alice", Initial: 100}); err != nil {
		return err
	}
	if err := store.Save(ctx, acc); err != nil {
		return err
	}
	if err := replica.CatchUp(ctx); err != nil {
		return err
	}

	// The replica lags: it shows nothing newer until its replay resumes.
	if err := replica.PauseReplay(ctx); err != nil {
		return err
	}
	fmt.Println("replica replay paused")
	if err := acc.Record(Deposited{Amount: 50}); err != nil {
		return err
	}
	if err := store.Save(ctx, acc); err != nil {
		return err
	}
	// The token covers the save: a handler would send it to the client in
	// a cookie or header, and read it back on the next request.
	tok, err := store.Token(ctx)
	if err != nil {
		return err
	}
	fmt.Printf("saved a deposit of 50: version %d\n", acc.Version)

	stale, err := mire.Load[Account](ctx, store, "alice")
	if err != nil {
		return err
	}
	fmt.Printf("load without the token: balance %d at version %d (stale, from the replica)\n", stale.State.Balance, stale.Version)

	parsed, err := mire.ParseToken(tok.String())
	if err != nil {
		return err
	}
	fresh, err := mire.Load[Account](mire.WithToken(ctx, parsed), store, "alice")
	if err != nil {
		return err
	}
	fmt.Printf("load with the token: balance %d at version %d (from the primary: the replica replays nothing)\n", fresh.State.Balance, fresh.Version)

	// Deciding on the stale Root cannot lose the deposit: the save is refused.
	if err := stale.Record(Withdrawn{Amount: 120}); err != nil {
		return err
	}
	err = store.Save(ctx, stale)
	fmt.Println("save of the stale load:", err)

	// Update loads (from the replica), decides, saves, and after a conflict
	// reloads from the primary and decides again.
	attempts := 0
	updated, err := mire.Update[Account](ctx, store, "alice", func(acc *mire.Root[Account]) error {
		attempts++
		fmt.Printf("  update attempt %d decides on balance %d at version %d\n", attempts, acc.State.Balance, acc.Version)
		if acc.State.Balance < 30 {
			return errInsufficientFunds
		}
		return acc.Record(Withdrawn{Amount: 30})
	}, nil)
	if err != nil {
		return err
	}
	fmt.Printf("update withdrew 30: balance %d at version %d\n", updated.State.Balance, updated.Version)

	if err := replica.ResumeReplay(ctx); err != nil {
		return err
	}
	if err := replica.CatchUp(ctx); err != nil {
		return err
	}
	fmt.Println("replica replay resumed")
	current, err := mire.Load[Account](ctx, store, "alice")
	if err != nil {
		return err
	}
	fmt.Printf("load without the token: balance %d at version %d\n", current.State.Balance, current.Version)
	return printFallbacks(ctx, reader)
}

// connect opens a pool configured for mire.
func connect(ctx context.Context, url string) (*pgxpool.Pool, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, err
	}
	mire.ConfigurePool(cfg)
	return pgxpool.NewWithConfig(ctx, cfg)
}

// logAttr leaves out of the store's log lines what changes from run to
// run: the time, and the error naming a WAL position.
func logAttr(_ []string, a slog.Attr) slog.Attr {
	if a.Key == slog.TimeKey || a.Key == "error" {
		return slog.Attr{}
	}
	return a
}

// printFallbacks prints the mire.replica.fallbacks counter.
func printFallbacks(ctx context.Context, reader *sdkmetric.ManualReader) error {
	var rm metricdata.ResourceMetrics
	if err := reader.Collect(ctx, &rm); err != nil {
		return err
	}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if sum, ok := m.Data.(metricdata.Sum[int64]); ok && m.Name == "mire.replica.fallbacks" {
				for _, p := range sum.DataPoints {
					fmt.Printf("%s{%s} %d\n", m.Name, p.Attributes.Encoded(attribute.DefaultEncoder()), p.Value)
				}
			}
		}
	}
	return nil
}
