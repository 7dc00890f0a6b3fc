// Command partitions runs a partitioned projection over three runners, as
// three replicas of an application would (each with its own connection
// pool): its six partitions spread two to each; when one replica stops,
// its share moves to the other two at once, and no event is lost or
// handled twice. It starts a throwaway Postgres unless DATABASE_URL is
// set.
//
//	go run ./examples/partitions
package main

import (
	"context"
	"fmt"
	"log"
	"log/slog"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/mire-go/mire"
	"github.com/mire-go/mire/pgtest"
	"github.com/mire-go/mire/projections"
)

type Deposited struct {
	mire.Event `mire:"entity=account,type=Deposited"`
	Amount     int64 `json:"amount" validate:"gt=0"`
}

func init() { mire.MustRegister(Deposited{}) }

// totals is the read model: each account's balance and how many deposits
// it applied, written through the checkpoint's transaction (exactly once).
// Its six partitions split the accounts by stream; each account's events
// stay in order.
var totals = projections.Projection{
	Name:       "totals",
	Partitions: 6,
	Handler: projections.Routes(
		projections.On(func(ctx context.Context, tx pgx.Tx, e Deposited, env mire.Envelope) error {
			_, err := tx.Exec(ctx, `INSERT INTO totals (stream, balance, deposits) VALUES ($1, $2, 1)
				ON CONFLICT (stream) DO UPDATE SET balance = totals.balance + $2, deposits = totals.deposits + 1`,
				env.StreamID, e.Amount)
			return err
		}),
	),
}

func main() {
	if err := run(context.Background()); err != nil {
		log.Fatal(err)
	}
}

func run(ctx context.Context) error {
	dbURL, stop, err := pgtest.ForExample(ctx)
	if err != nil {
		return err
	}
	defer stop()
	store, pool, err := connect(ctx, dbURL)
	if err != nil {
		return err
	}
	defer pool.Close()
	if err := store.Migrate(ctx); err != nil {
		return err
	}
	// Once per partition count, at boot (or `mire migrate --partitions 6`).
	if err := projections.MigratePartitions(ctx, store, totals.Partitions); err != nil {
		return err
	}
	if _, err := pool.Exec(ctx, `CREATE TABLE IF NOT EXISTS totals (stream text PRIMARY KEY, balance bigint, deposits int)`); err != nil {
		return err
	}

	// Three replicas, each with its own pool and runner.
	replicas := map[string]*replica{}
	for _, name := range []string{"replica-1", "replica-2", "replica-3"} {
		if replicas[name], err = startReplica(ctx, dbURL, name); err != nil {
			return err
		}
	}
	defer func() {
		for _, r := range replicas {
			r.stop()
		}
	}()
	if err := deposit(ctx, store, 40); err != nil {
		return err
	}
	if err := report(ctx, store, pool, 3); err != nil {
		return err
	}

	fmt.Println("replica-2 stops; its share moves to the others:")
	replicas["replica-2"].stop()
	delete(replicas, "replica-2")
	if err := deposit(ctx, store, 40); err != nil {
		return err
	}
	return report(ctx, store, pool, 2)
}

func connect(ctx context.Context, url string) (*mire.Store, *pgxpool.Pool, error) {
	pool, err := pgxpool.New(ctx, url)
	if err != nil {
		return nil, nil, err
	}
	store, err := mire.New(pool, nil)
	if err != nil {
		pool.Close()
		return nil, nil, err
	}
	return store, pool, nil
}

// replica is one application replica's runner.
type replica struct {
	runner *projections.Runner
	pool   *pgxpool.Pool
	done   chan struct{}
}

func startReplica(ctx context.Context, url, name string) (*replica, error) {
	store, pool, err := connect(ctx, url)
	if err != nil {
		return nil, err
	}
	cfg := &projections.Config{Owner: name, LeaseTTL: 2 * time.Second, RecheckInterval: 100 * time.Millisecond,
		Logger: slog.New(slog.DiscardHandler)}
	runner, err := projections.NewRunner(store, cfg, totals)
	if err != nil {
		pool.Close()
		return nil, err
	}
	r := &replica{runner: runner, pool: pool, done: make(chan struct{})}
	go func() {
		defer close(r.done)
		if err := runner.Run(ctx); err != nil {
			log.Print(err)
		}
	}()
	return r, nil
}

// stop shuts the replica down cleanly: Stop releases its leases and ends
// its membership, so the others take its partitions at once.
func (r *replica) stop() {
	if err := r.runner.Stop(context.Background()); err != nil {
		log.Print(err)
	}
	<-r.done
	r.pool.Close()
}

// deposit appends n deposits of 1 over ten accounts.
func deposit(ctx context.Context, store *mire.Store, n int) error {
	for i := range n {
		stream := mire.StreamID("account", fmt.Sprintf("acc%d", i%10))
		if _, err := store.Append(ctx, stream, mire.Any, Deposited{Amount: 1}); err != nil {
			return err
		}
	}
	return nil
}

// report waits until the partitions are spread over members runners and
// the projection has caught up, then prints who holds what and the read
// model's totals.
func report(ctx context.Context, store *mire.Store, pool *pgxpool.Pool, members int) error {
	var st projections.Status
	spread := func(st projections.Status) bool {
		held := holdings(st)
		if len(held) != members || held[""] != nil {
			return false
		}
		for _, parts := range held {
			if len(parts) != totals.Partitions/members {
				return false
			}
		}
		return st.Lag == 0
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		var err error
		st, err = projections.StatusOf(ctx, store, totals.Name)
		if err == nil && spread(st) {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("waiting for the partitions to spread: last status %+v, %v", st, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	fmt.Printf("%d partitions over %d runners:\n", st.Partitions, members)
	held := holdings(st)
	for _, owner := range slices.Sorted(maps.Keys(held)) {
		var parts []string
		for _, p := range held[owner] {
			parts = append(parts, strconv.Itoa(p))
		}
		fmt.Printf("  %s holds partitions %s\n", owner, strings.Join(parts, ", "))
	}
	var accounts, deposits, balance int64
	if err := pool.QueryRow(ctx, `SELECT count(*), coalesce(sum(deposits), 0), coalesce(sum(balance), 0) FROM totals`).
		Scan(&accounts, &deposits, &balance); err != nil {
		return err
	}
	fmt.Printf("  read model: %d accounts, %d deposits applied, total %d; %d delivered, lag %d\n",
		accounts, deposits, balance, st.Delivered, st.Lag)
	return nil
}

// holdings maps each owner to the partitions it holds.
func holdings(st projections.Status) map[string][]int {
	out := map[string][]int{}
	for _, p := range st.ByPartition {
		out[p.Owner] = append(out[p.Owner], p.Partition)
	}
	return out
}
