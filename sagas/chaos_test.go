package sagas_test

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/mire-go/mire"
	"github.com/mire-go/mire/projections"
	"github.com/mire-go/mire/sagas"
)

// The chaos spec's scale: the issue's.
const (
	chaosOrders     = 500
	chaosProcesses  = 3
	chaosKills      = 30
	chaosPartitions = 4
	chaosStock      = 200 // of each of chaosSKUs
	chaosTimeout    = time.Second
)

var chaosSKUs = []string{"apple", "pear", "plum", "fig", "kiwi"}

// chaosConfig is the worker processes' runner configuration.
func chaosConfig() *sagas.Config {
	cfg := quiet()
	cfg.Projections.LeaseTTL = 3 * time.Second
	return cfg
}

// chaosSaga is the order fulfilment saga of the chaos spec: partitioned,
// in small batches (a batch holds its stock rows' locks until it commits),
// the charge answered through Deliver or through PaymentSettled events.
func chaosSaga() *sagas.Definition[Fulfilment] {
	return sagas.MustDefine(sagas.Spec[Fulfilment]{
		Name:  "fulfilment",
		Start: sagas.StartOn(placed),
		Steps: []sagas.Step[Fulfilment]{
			{Name: "reserve", Action: sagas.Command(reserve), Compensation: sagas.Command(release)},
			{Name: "charge", After: "reserve", Action: sagas.Send(charge), Compensation: sagas.Send(refund), Timeout: chaosTimeout, Retries: 1},
			{Name: "confirm", After: "charge", Action: sagas.Command(confirm)},
		},
		Listen:     []sagas.Listener{settled},
		Partitions: chaosPartitions,
		BatchSize:  10,
	})
}

// outcome is what the simulated payment service does with an order's
// charges.
type outcome int

const (
	pays     outcome = iota // charges, answers soon
	declines                // does not charge, answers soon
	silent                  // never answers (and does not charge)
	late                    // charges, answers after 1 to 3 timeouts
)

func outcomeOf(order string) outcome {
	h := fnv.New32a()
	_, _ = h.Write([]byte(order))
	switch n := h.Sum32() % 100; {
	case n < 55:
		return pays
	case n < 70:
		return declines
	case n < 85:
		return silent
	default:
		return late
	}
}

// payments is the simulated payment service: a projection of the outbox
// that charges (and refunds) once per idempotency key and schedules its
// answer; a replier sends the answers when due, through Deliver for even
// orders and as PaymentSettled events for odd ones.
func payments(e env) projections.Projection {
	return projections.Projection{Name: "payments", Categories: []string{mire.OutboxDefault}, Handler: projections.HandlerFunc(
		func(ctx context.Context, tx pgx.Tx, env mire.Envelope) error {
			m := env.Data.(mire.Message)
			order, key := m.Headers[sagas.HeaderInstance], m.Headers[sagas.HeaderKey]
			if m.Subject == "payments.refund" {
				_, err := tx.Exec(ctx, `INSERT INTO refunds VALUES ($1, $2, 1) ON CONFLICT (key) DO UPDATE SET messages = refunds.messages + 1`, key, order)
				return err
			}
			o := outcomeOf(order)
			if o == pays || o == late {
				if _, err := tx.Exec(ctx, `INSERT INTO charges VALUES ($1, $2, 1) ON CONFLICT (key) DO UPDATE SET messages = charges.messages + 1`, key, order); err != nil {
					return err
				}
			}
			rng := rand.New(rand.NewPCG(uint64(m.ID.ID()), 1))
			delay, failure := time.Duration(rng.IntN(300))*time.Millisecond, ""
			switch o {
			case silent:
				return nil
			case declines:
				failure = "card declined"
			case late:
				delay = chaosTimeout + time.Duration(rng.Int64N(int64(2*chaosTimeout)))
			}
			_, err := tx.Exec(ctx, `INSERT INTO replies VALUES ($1, $2, $3, now() + $4::interval)`, m.ID, order, failure, delay)
			return err
		})}
}

// reply sends the due answers; it returns how many it found.
func reply(ctx context.Context, e env, reported *int) (int, error) {
	rows, err := e.pool.Query(ctx, `SELECT msg, order_id, failure FROM replies WHERE due_at <= now() LIMIT 50`)
	if err != nil {
		return 0, err
	}
	type answer struct {
		msg            uuid.UUID
		order, failure string
	}
	due, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (answer, error) {
		var a answer
		err := row.Scan(&a.msg, &a.order, &a.failure)
		return a, err
	})
	if err != nil {
		return 0, err
	}
	for _, a := range due {
		var n int
		fmt.Sscanf(a.order, "o%d", &n)
		if n%2 == 0 {
			err := sagas.Deliver(ctx, e.store, "fulfilment", a.order, sagas.Response{Step: "charge", Failure: a.failure, Key: a.msg.String()})
			switch {
			case errors.Is(err, sagas.ErrFinished), errors.Is(err, sagas.ErrNotAwaited):
				*reported++
			case err != nil:
				return 0, err
			}
		} else {
			ev := mire.WithID(uuid.NewSHA1(a.msg, []byte("reply")), PaymentSettled{Order: a.order, Declined: a.failure})
			if _, err := e.store.Append(ctx, "payment-"+a.order, mire.Any, ev); err != nil {
				return 0, err
			}
		}
		if _, err := e.pool.Exec(ctx, `DELETE FROM replies WHERE msg = $1`, a.msg); err != nil {
			return 0, err
		}
	}
	return len(due), nil
}

var _ = Describe("Sagas: chaos", Label("slow"), func() {
	It("ends every saga in exactly one terminal state, never oversells or double-releases stock, charges no order twice and loses no timer, while worker processes are killed", func(ctx SpecContext) {
		e := freshEnv(ctx)
		Expect(projections.MigratePartitions(ctx, e.store, chaosPartitions)).To(Succeed())
		_, err := e.pool.Exec(ctx, `
			CREATE TABLE charges (key text PRIMARY KEY, order_id text NOT NULL, messages int NOT NULL);
			CREATE TABLE refunds (key text PRIMARY KEY, order_id text NOT NULL, messages int NOT NULL);
			CREATE TABLE replies (msg uuid PRIMARY KEY, order_id text NOT NULL, failure text NOT NULL, due_at timestamptz NOT NULL)`)
		Expect(err).NotTo(HaveOccurred())
		for _, sku := range chaosSKUs {
			e.stock(ctx, sku, chaosStock)
		}

		// The payment service, in this process, never killed.
		pay, err := projections.NewRunner(e.store, quiet().Projections, payments(e))
		Expect(err).NotTo(HaveOccurred())
		payDone := make(chan error, 1)
		go func() { payDone <- pay.Run(context.Background()) }()
		replyCtx, stopReplies := context.WithCancel(context.Background())
		replierDone := make(chan struct{})
		reported := 0
		go func() {
			defer GinkgoRecover()
			defer close(replierDone)
			for replyCtx.Err() == nil {
				n, err := reply(replyCtx, e, &reported)
				if err != nil && replyCtx.Err() == nil {
					GinkgoWriter.Println("reply:", err)
				}
				if n == 0 {
					time.Sleep(20 * time.Millisecond)
				}
			}
		}()
		DeferCleanup(func(ctx SpecContext) {
			stopReplies()
			<-replierDone
			Expect(pay.Stop(ctx)).To(Succeed())
			Expect(<-payDone).To(Succeed())
		})

		// The orders, paced so that they span the kills.
		ordersDone := make(chan struct{})
		go func() {
			defer GinkgoRecover()
			defer close(ordersDone)
			rng := rand.New(rand.NewPCG(1, 2))
			for i := range chaosOrders {
				e.place(ctx, fmt.Sprintf("o%03d", i), chaosSKUs[rng.IntN(len(chaosSKUs))], 1+rng.Int64N(3), 10+rng.Int64N(90))
				time.Sleep(20 * time.Millisecond)
			}
		}()

		var mu sync.Mutex
		procs := map[int]*exec.Cmd{}
		lives := map[int]int{}
		spawn := func(slot int, fresh bool) {
			mu.Lock()
			defer mu.Unlock()
			if fresh {
				lives[slot]++ // a new name: the dead one's leases must lapse first
			}
			cmd := exec.Command(os.Args[0])
			cmd.Env = append(os.Environ(), fmt.Sprintf("%s=w%d-%d", workerEnv, slot, lives[slot]), "MIRE_WORKER_DATABASE_URL="+e.url)
			cmd.Stdout, cmd.Stderr = GinkgoWriter, GinkgoWriter
			Expect(cmd.Start()).To(Succeed())
			procs[slot] = cmd
		}
		DeferCleanup(func() {
			mu.Lock()
			defer mu.Unlock()
			for _, cmd := range procs {
				_ = cmd.Process.Kill()
				_ = cmd.Wait()
			}
		})
		for slot := range chaosProcesses {
			spawn(slot, false)
		}

		rng := rand.New(rand.NewPCG(7, 7))
		kills, cancels, duringOrders := 0, 0, 0
		for kills+cancels < chaosKills || !isClosed(ordersDone) {
			time.Sleep(time.Duration(150+rng.IntN(350)) * time.Millisecond)
			if !isClosed(ordersDone) {
				duringOrders++
			}
			slot := rng.IntN(chaosProcesses)
			mu.Lock()
			cmd := procs[slot]
			mu.Unlock()
			if rng.IntN(3) == 0 {
				Expect(cmd.Process.Signal(syscall.SIGTERM)).To(Succeed()) // cancelled without releasing its leases
				cancels++
			} else {
				Expect(cmd.Process.Signal(syscall.SIGKILL)).To(Succeed())
				kills++
			}
			_ = cmd.Wait()
			spawn(slot, rng.IntN(3) == 0)
		}
		Expect(duringOrders).To(BeNumerically(">=", chaosKills/2), "kills while orders were placed")

		terminal := func(ctx context.Context) (int, error) {
			var n int
			err := e.pool.QueryRow(ctx, `SELECT count(*) FROM mire.saga_instances WHERE status <> 'running'`).Scan(&n)
			return n, err
		}
		Eventually(terminal).WithContext(ctx).WithTimeout(4 * time.Minute).WithPolling(500 * time.Millisecond).Should(Equal(chaosOrders))
		Eventually(func(ctx context.Context) (int, error) {
			var n int
			err := e.pool.QueryRow(ctx, `SELECT count(*) FROM replies`).Scan(&n)
			return n, err
		}).WithContext(ctx).WithTimeout(time.Minute).Should(BeZero(), "every answer sent")
		st, err := projections.StatusOf(ctx, e.store, sagas.ProjectionName("fulfilment"))
		Expect(err).NotTo(HaveOccurred())
		Expect(st.State).To(Equal(projections.Running), st.LastError)
		var takeovers int64
		for _, p := range st.ByPartition {
			takeovers += p.Fence - 1
		}
		Expect(takeovers).To(BeNumerically(">=", chaosKills/3), "the kills hit the partitions' holders")

		// Exactly one terminal state per saga, in its stream and its row.
		ends := queryMap(ctx, e, `SELECT split_part(stream_id, ':', 2), string_agg(data->>'status', ',')
			FROM mire.events WHERE category = 'saga' AND type = 'Ended' GROUP BY 1`)
		Expect(ends).To(HaveLen(chaosOrders))
		rows := queryMap(ctx, e, `SELECT instance_id, status FROM mire.saga_instances`)
		Expect(rows).To(Equal(ends), "each stream has one Ended, and the row agrees")
		statuses := map[string]int{}
		for _, s := range ends {
			statuses[s]++
		}

		// Stock: never negative, reserved once per order, released exactly
		// once for each reservation of a cancelled order, never for a
		// confirmed one.
		reserved, released := map[string]int{}, map[string]int{}
		for _, sku := range chaosSKUs {
			available := int64(0)
			for env, err := range e.store.ReadStream(ctx, mire.StreamID("inventory", sku), nil) {
				Expect(err).NotTo(HaveOccurred())
				switch ev := env.Data.(type) {
				case Stocked:
					available += ev.Qty
				case Reserved:
					available -= ev.Qty
					reserved[ev.Order]++
				case Released:
					available += ev.Qty
					released[ev.Order]++
				}
				Expect(available).To(BeNumerically(">=", 0), "stock of %s at version %d", sku, env.Version)
			}
		}
		charged := queryMap(ctx, e, `SELECT order_id, count(*)::text FROM charges GROUP BY order_id`)
		refunded := queryMap(ctx, e, `SELECT order_id, count(*)::text FROM refunds GROUP BY order_id`)
		timedOut := 0
		for order, status := range ends {
			Expect(reserved[order]).To(BeNumerically("<=", 1), order)
			Expect(charged[order]).To(BeElementOf("", "1"), "distinct idempotency keys charged for %s", order)
			order, err := mire.Load[Order](ctx, e.store, order)
			Expect(err).NotTo(HaveOccurred())
			switch status {
			case "completed":
				Expect(reserved[order.ID]).To(Equal(1), order.ID)
				Expect(released[order.ID]).To(BeZero(), order.ID)
				Expect(order.State.Status).To(Equal("confirmed"), order.ID)
				Expect(charged[order.ID]).To(Equal("1"), order.ID)
				Expect(refunded[order.ID]).To(BeEmpty(), order.ID)
				Expect(outcomeOf(order.ID)).To(BeElementOf(pays, late), order.ID)
			case "compensated":
				Expect(released[order.ID]).To(Equal(reserved[order.ID]), "released exactly once: %s", order.ID)
				if charged[order.ID] != "" {
					Expect(refunded[order.ID]).To(Equal("1"), "a charge of a cancelled order is refunded: %s", order.ID)
				}
				if reserved[order.ID] == 1 {
					Expect(order.State.Status).To(Equal("cancelled"), order.ID)
				}
				if reserved[order.ID] == 1 && outcomeOf(order.ID) == silent {
					in, err := sagas.Load(ctx, e.store, "fulfilment", order.ID)
					Expect(err).NotTo(HaveOccurred())
					Expect(in.State.Reason).To(ContainSubstring("timed out after 2 attempt(s)"), order.ID)
					timedOut++
				}
			default:
				Fail(fmt.Sprintf("saga %s ended %s", order.ID, status))
			}
		}
		Expect(timedOut).To(BeNumerically(">", 0), "silent payments time out")

		// No timer lost or fired twice; no message enqueued twice.
		Expect(countRows(ctx, e, `SELECT count(*) FROM mire.saga_timers`)).To(BeZero())
		Expect(countRows(ctx, e, `SELECT count(*) FROM (SELECT 1 FROM mire.events WHERE category = 'saga' AND type = 'TimedOut'
			GROUP BY stream_id, data->>'step', data->>'attempt' HAVING count(*) > 1) d`)).To(BeZero())
		Expect(countRows(ctx, e, `SELECT count(*) FROM (SELECT 1 FROM mire.events WHERE category = 'outbox'
			GROUP BY data->'headers'->>'Idempotency-Key' HAVING count(*) > 2) d`)).To(BeZero(), "a charge is sent at most twice (one retry)")

		deadlocks := countRows(ctx, e, `SELECT deadlocks::int FROM pg_stat_database WHERE datname = current_database()`)
		GinkgoWriter.Printf("%d sagas %v; %d kill -9, %d cancels without release (%d while ordering), %d takeovers; %d late answers reported; %d timed out; %d deadlocks retried\n",
			len(ends), statuses, kills, cancels, duringOrders, takeovers, reported, timedOut, deadlocks)
		Expect(statuses["completed"]).To(BeNumerically(">", 0))
		Expect(statuses["compensated"]).To(BeNumerically(">", 0))
	})
})

// queryMap runs sql, which selects (key, value) text rows, into a map.
func queryMap(ctx context.Context, e env, sql string) map[string]string {
	rows, err := e.pool.Query(ctx, sql)
	Expect(err).NotTo(HaveOccurred())
	out := map[string]string{}
	for rows.Next() {
		var k, v string
		Expect(rows.Scan(&k, &v)).To(Succeed())
		out[k] = v
	}
	Expect(rows.Err()).NotTo(HaveOccurred())
	return out
}

// isClosed reports whether c is closed.
func isClosed(c chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}
