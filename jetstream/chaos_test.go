package jetstream_test

import (
	"context"
	"math/rand/v2"
	"os"
	"os/exec"
	"os/signal"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/mire-go/mire"
	mjs "github.com/mire-go/mire/jetstream"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// The chaos spec's scale: the issue's. Its waits derive from the relay's
// configuration (patience), never from these numbers.
const (
	chaosStreams = 100
	chaosTotal   = 10_000 // events and outbox messages
	chaosRounds  = 30
	chaosWriters = 4
)

// chaosConfig is the relay configuration of the chaos spec, in the spec's
// process and in the relay processes.
func chaosConfig(stream string) *mjs.Config {
	return &mjs.Config{Name: "chaos", Stream: stream, SubjectPrefix: stream, BatchSize: 200,
		Categories: []string{"account", mire.OutboxDefault}, Runner: quiet()}
}

// runRelayProcess runs the chaos spec's relay in a process of its own,
// under the owner relayEnv names, until it is killed.
func runRelayProcess() error {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	pool, err := pgxpool.New(ctx, os.Getenv("MIRE_RELAY_DATABASE_URL"))
	if err != nil {
		return err
	}
	defer pool.Close()
	store, err := mire.New(pool, nil)
	if err != nil {
		return err
	}
	nc, err := nats.Connect(os.Getenv("MIRE_RELAY_NATS_URL"), nats.MaxReconnects(-1))
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	cfg := chaosConfig(os.Getenv("MIRE_RELAY_STREAM"))
	cfg.Runner.Owner = os.Getenv(relayEnv)
	relay, err := mjs.NewRelay(store, js, cfg)
	if err != nil {
		return err
	}
	return relay.Run(ctx)
}

var _ = Describe("Chaos", Label("slow"), func() {
	It("stores each event and message exactly once, in stream order, while relays are stopped and killed -9 at random", func(ctx SpecContext) {
		store, url := freshStore(ctx)
		srv := natsServer()
		js := connect(srv)
		name := newStream(ctx, js, 0)

		streams := make([]string, chaosStreams)
		for i := range streams {
			streams[i] = mire.StreamID("account", "c"+string(rune('A'+i/26))+string(rune('a'+i%26)))
		}
		// The writers write in steps, a step per round, so that every kill
		// lands while events and messages are being written.
		var written, allowed atomic.Int64
		step := int64(chaosTotal / chaosRounds)
		allowed.Store(step)
		writersDone := make(chan struct{})
		go func() {
			defer GinkgoRecover()
			defer close(writersDone)
			var wg sync.WaitGroup
			for w := range chaosWriters {
				wg.Go(func() {
					defer GinkgoRecover()
					chaosWrite(ctx, store, name, streams, &written, &allowed, uint64(w))
				})
			}
			wg.Wait()
		}()

		rng := rand.New(rand.NewPCG(7, 7))
		// Slot 0 is a relay in this process, stopped by cancelling it; slot
		// 1 a relay process, killed with SIGKILL mid-flight (its lease is
		// not released: it comes back under its name and takes it back).
		cfg := chaosConfig(name)
		inProcess := anotherStore(ctx, url)
		var stops [2]func()
		launch := func(slot int) {
			if slot == 0 {
				c := *cfg
				rc := *cfg.Runner
				rc.Owner = "A"
				c.Runner = &rc
				// Its publishes also fail now and then (see flaky).
				f := &flaky{JetStream: js, rng: rand.New(rand.NewPCG(uint64(rng.IntN(1000)), 3)), failEvery: 50}
				r, err := mjs.NewRelay(inProcess, f, &c)
				Expect(err).NotTo(HaveOccurred())
				stops[0] = start(r)
				return
			}
			cmd := exec.Command(os.Args[0])
			cmd.Env = append(os.Environ(), relayEnv+"=B", "MIRE_RELAY_DATABASE_URL="+url,
				"MIRE_RELAY_NATS_URL="+srv.URL(), "MIRE_RELAY_STREAM="+name)
			cmd.Stdout, cmd.Stderr = GinkgoWriter, GinkgoWriter
			Expect(cmd.Start()).To(Succeed())
			var once sync.Once
			stops[1] = func() {
				once.Do(func() {
					_ = cmd.Process.Signal(syscall.SIGKILL)
					_ = cmd.Wait()
				})
			}
			DeferCleanup(stops[1])
		}
		launch(0)
		launch(1)
		observer, err := mjs.NewRelay(store, js, cfg)
		Expect(err).NotTo(HaveOccurred())
		var last int64
		var kills [2]int // by slot: cancelled in this process, killed -9
		for round := range chaosRounds {
			Eventually(observer.Status).WithContext(ctx).WithTimeout(patience(cfg.Runner)).Should(
				Or(HaveField("Delivered", BeNumerically(">", last)), HaveField("Lag", BeZero())))
			st, err := observer.Status(ctx)
			Expect(err).NotTo(HaveOccurred())
			Expect(st.LastError).To(BeEmpty())
			last = st.Delivered
			slot := round % 2
			if round%3 == 0 && st.Owner != "" {
				slot = map[string]int{"A": 0, "B": 1}[st.Owner] // the active one, mid-batch
			}
			// A random point: somewhere in the next batch or two.
			time.Sleep(time.Duration(rng.IntN(20)) * time.Millisecond)
			allowed.Add(step)
			stops[slot]()
			kills[slot]++
			launch(slot)
		}
		Expect(kills[0] + kills[1]).To(Equal(chaosRounds))
		Expect(kills[0]).To(BeNumerically(">=", chaosRounds/4), "relays cancelled")
		Expect(kills[1]).To(BeNumerically(">=", chaosRounds/4), "relay processes killed -9")
		GinkgoWriter.Printf("relays cancelled: %d, relay processes killed -9: %d\n", kills[0], kills[1])
		allowed.Store(chaosTotal)
		Eventually(writersDone).WithContext(ctx).WithTimeout(2 * time.Minute).Should(BeClosed())
		Eventually(observer.Status).WithContext(ctx).WithTimeout(time.Minute + patience(cfg.Runner)).Should(
			And(HaveField("Lag", BeZero()), HaveField("Held", BeZero())))
		st, err := observer.Status(ctx)
		Expect(err).NotTo(HaveOccurred())
		Expect(st.Fence).To(BeNumerically(">", 2), "relays took over from each other")

		var total int
		Expect(store.Pool().QueryRow(ctx, `SELECT count(*) FROM mire.events`).Scan(&total)).To(Succeed())
		Expect(total).To(BeNumerically(">=", chaosTotal))
		var msgs []stored
		Eventually(func(ctx context.Context) []stored {
			msgs = storedMessages(ctx, js, name)
			return msgs
		}).WithContext(ctx).Should(HaveLen(total), "every event and message exactly once")
		perStream := checkExactlyOnceInOrder(msgs)
		var outboxStreams int
		for env, err := range store.ReadAll(ctx, nil) {
			Expect(err).NotTo(HaveOccurred())
			Expect(perStream[env.StreamID]).To(BeNumerically(">=", env.Version), "%s v%d stored", env.StreamID, env.Version)
			if env.Category == mire.OutboxDefault && env.Version == 1 {
				outboxStreams++
			}
		}
		Expect(outboxStreams).To(BeNumerically(">", 0), "outbox messages were written")
	})
})

// chaosWrite writes until written reaches chaosTotal, never past allowed: mostly single
// deposits, and one in five a deposit with an outbox message (keyed by the
// account) in the same transaction.
func chaosWrite(ctx context.Context, store *mire.Store, subject string, streams []string, written, allowed *atomic.Int64, seed uint64) {
	rng := rand.New(rand.NewPCG(seed, 42))
	for written.Load() < chaosTotal {
		if written.Load() >= allowed.Load() {
			time.Sleep(time.Millisecond) // the next step comes with the next round
			continue
		}
		s := streams[rng.IntN(len(streams))]
		if rng.IntN(5) > 0 {
			_, err := store.Append(ctx, s, mire.Any, Deposited{Amount: 1 + rng.Int64N(9)})
			Expect(err).NotTo(HaveOccurred())
			written.Add(1)
			continue
		}
		err := store.InTx(ctx, nil, func(scope *mire.TxScope) error {
			if _, err := store.AppendTx(ctx, scope.Tx(), s, mire.Any, Deposited{Amount: 5}); err != nil {
				return err
			}
			return store.EnqueueTx(ctx, scope.Tx(), nil, mire.Message{Subject: subject + ".deposits", Key: s, Payload: []byte(s)})
		})
		Expect(err).NotTo(HaveOccurred())
		written.Add(2)
	}
}
