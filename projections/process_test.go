package projections_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"syscall"
	"testing"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/mire-go/mire"
	"github.com/mire-go/mire/projections"
)

// The test binary doubles as the worker process of the multi-process spec:
// with workerEnv set it runs one projection runner until killed.
const workerEnv = "MIRE_PROJECTIONS_TEST_WORKER"

// workerPartitionsEnv, set, makes the worker process host the partitioned
// chaos spec's projection instead.
const workerPartitionsEnv = "MIRE_PROJECTIONS_TEST_PARTITIONED"

func TestMain(m *testing.M) {
	if os.Getenv(workerEnv) != "" {
		if err := runWorkerProcess(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	code := m.Run()
	examples.Close()
	os.Exit(code)
}

// runWorkerProcess hosts the projection "procs", recording each event it
// handles with its owner in the table handled, through the checkpoint's
// transaction.
func runWorkerProcess() error {
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
	owner := os.Getenv(workerEnv)
	cfg := quiet()
	cfg.Owner = owner
	p := projections.Projection{Name: "procs", Handler: projections.HandlerFunc(
		func(ctx context.Context, tx pgx.Tx, env mire.Envelope) error {
			_, err := tx.Exec(ctx, `INSERT INTO handled VALUES ($1, $2)`, owner, env.Position)
			return err
		})}
	if os.Getenv(workerPartitionsEnv) != "" {
		// The partitioned chaos spec's runner (see partitionChaos).
		p = partitioned("chaos16", chaosPartitions, chaosBatch)
		cfg.RecheckInterval, cfg.PollInterval = partitionChaosConfig().RecheckInterval, partitionChaosConfig().PollInterval
		cfg.LeaseTTL = partitionChaosConfig().LeaseTTL
	}
	r, err := projections.NewRunner(store, cfg, p)
	if err != nil {
		return err
	}
	return r.Run(ctx)
}

var _ = Describe("Guarantee 3: one active worker across OS processes", func() {
	It("runs one of two processes, and fails over within TTL + recheck after kill -9", func(ctx SpecContext) {
		e := freshEnv(ctx)
		_, err := e.pool.Exec(ctx, `CREATE TABLE handled (owner text, position bigint PRIMARY KEY)`)
		Expect(err).NotTo(HaveOccurred())
		procs := map[string]*exec.Cmd{}
		for _, owner := range []string{"p1", "p2"} {
			cmd := exec.Command(os.Args[0])
			cmd.Env = append(os.Environ(), workerEnv+"="+owner, "MIRE_WORKER_DATABASE_URL="+e.url)
			cmd.Stdout, cmd.Stderr = GinkgoWriter, GinkgoWriter
			Expect(cmd.Start()).To(Succeed())
			DeferCleanup(func() {
				_ = cmd.Process.Kill()
				_ = cmd.Wait()
			})
			procs[owner] = cmd
		}
		a := open(ctx, e.store, 0)
		for range 9 {
			deposit(ctx, e.store, a, 1)
		}
		handledBy := func(ctx context.Context) (map[string]int, error) {
			rows, err := e.pool.Query(ctx, `SELECT owner, count(*)::int FROM handled GROUP BY owner`)
			if err != nil {
				return nil, err
			}
			out := map[string]int{}
			for rows.Next() {
				var o string
				var n int
				if err := rows.Scan(&o, &n); err != nil {
					return nil, err
				}
				out[o] = n
			}
			return out, rows.Err()
		}
		Eventually(handledBy).WithContext(ctx).WithTimeout(patience(quiet())).Should(Or(
			Equal(map[string]int{"p1": 10}), Equal(map[string]int{"p2": 10})))
		before := status(ctx, e.store, "procs")
		active := before.Owner
		standby := map[string]string{"p1": "p2", "p2": "p1"}[active]

		Expect(procs[active].Process.Signal(syscall.SIGKILL)).To(Succeed())
		_ = procs[active].Wait()
		deposit(ctx, e.store, a, 1)
		cfg := quiet()
		Eventually(statusFn(e.store, "procs")).WithContext(ctx).WithTimeout(patience(cfg)).Should(HaveField("Owner", standby))
		Eventually(handledBy).WithContext(ctx).Should(Equal(map[string]int{active: 10, standby: 1}))
		Expect(status(ctx, e.store, "procs").Fence).To(Equal(before.Fence + 1))
	})
})
