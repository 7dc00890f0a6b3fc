package sagas_test

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/mire-go/mire"
	"github.com/mire-go/mire/sagas"
)

// The test binary doubles as the worker process of the chaos spec: with
// workerEnv set (to its owner name) it runs the chaos saga's runner until
// killed (kill -9), or until SIGTERM, on which it stops without releasing
// its leases, as a crash in the middle of a batch would.
const workerEnv = "MIRE_SAGAS_TEST_WORKER"

func TestMain(m *testing.M) {
	if owner := os.Getenv(workerEnv); owner != "" {
		if err := runWorkerProcess(owner); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	code := m.Run()
	examples.Close()
	os.Exit(code)
}

func runWorkerProcess(owner string) error {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	pool, err := pgxpool.New(ctx, os.Getenv("MIRE_WORKER_DATABASE_URL"))
	if err != nil {
		return err
	}
	defer pool.Close()
	store, err := mire.New(pool, nil)
	if err != nil {
		return err
	}
	cfg := chaosConfig()
	cfg.Projections.Owner = owner
	r, err := sagas.NewRunner(store, cfg, chaosSaga())
	if err != nil {
		return err
	}
	sagas.CrashOnStop(r)
	return r.Run(ctx)
}
