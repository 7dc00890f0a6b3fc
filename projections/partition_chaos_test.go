package projections_test

import (
	"math/rand/v2"
	"os"
	"os/exec"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/mire-go/mire/projections"
)

// The partitioned chaos spec's scale: the issue's.
const (
	chaosPartitions     = 16
	chaosBatch          = 50
	chaosProcesses      = 4
	partitionChaosRound = 24
	chaosPartStreams    = 200
)

// partitionChaosConfig is the worker processes' runner configuration.
func partitionChaosConfig() *projections.Config {
	cfg := quiet()
	cfg.RecheckInterval, cfg.PollInterval = 100*time.Millisecond, 50*time.Millisecond
	return cfg
}

var _ = Describe("Partitioned projections: chaos", Label("slow"), func() {
	It("delivers every event exactly once, in stream order, while runner processes are killed with -9 and restarted", func(ctx SpecContext) {
		e := partitionEnv(ctx, chaosPartitions)
		streams := make([]string, chaosPartStreams)
		for i := range streams {
			streams[i] = open(ctx, e.store, 0)
		}
		var written atomic.Int64
		written.Store(chaosPartStreams)
		writersDone := make(chan struct{})
		go func() {
			defer GinkgoRecover()
			defer close(writersDone)
			var wg sync.WaitGroup
			for w := range chaosWriters {
				wg.Go(func() {
					defer GinkgoRecover()
					// Paced, so that the writes span the rounds of kills.
					write(ctx, e.store, streams, &written, uint64(w)+100, 2*time.Millisecond)
				})
			}
			wg.Wait()
		}()

		var mu sync.Mutex
		procs := map[int]*exec.Cmd{}
		lives := map[int]int{}
		spawn := func(slot int, fresh bool) {
			mu.Lock()
			defer mu.Unlock()
			if fresh {
				lives[slot]++ // a new name: the dead one's share must lapse first
			}
			owner := []string{"p1", "p2", "p3", "p4"}[slot]
			if lives[slot] > 0 {
				owner += "-" + string(rune('a'+lives[slot]))
			}
			cmd := exec.Command(os.Args[0])
			cmd.Env = append(os.Environ(), workerEnv+"="+owner, workerPartitionsEnv+"=1", "MIRE_WORKER_DATABASE_URL="+e.url)
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

		cfg := partitionChaosConfig()
		rng := rand.New(rand.NewPCG(7, 7))
		var last int64
		kills, duringWrites := 0, 0
		for round := 0; round < partitionChaosRound || !isClosed(writersDone); round++ {
			if !isClosed(writersDone) {
				duringWrites++
			}
			Eventually(statusFn(e.store, "chaos16")).WithContext(ctx).WithTimeout(patience(cfg)).Should(
				Or(HaveField("Delivered", BeNumerically(">", last)), HaveField("Lag", BeZero())))
			st := status(ctx, e.store, "chaos16")
			Expect(st.State).To(Equal(projections.Running), st.LastError)
			last = st.Delivered

			slot := rng.IntN(chaosProcesses)
			mu.Lock()
			cmd := procs[slot]
			mu.Unlock()
			if round%5 == 4 {
				Expect(cmd.Process.Signal(syscall.SIGTERM)).To(Succeed()) // a clean stop hands over at once
			} else {
				Expect(cmd.Process.Signal(syscall.SIGKILL)).To(Succeed())
				kills++
			}
			_ = cmd.Wait()
			time.Sleep(time.Duration(rng.IntN(200)) * time.Millisecond)
			spawn(slot, round%3 == 0)
		}
		Expect(kills).To(BeNumerically(">=", 19))
		Expect(duringWrites).To(BeNumerically(">=", 20), "rounds while the writers wrote")
		Eventually(writersDone).WithContext(ctx).WithTimeout(3 * time.Minute).Should(BeClosed())
		Eventually(statusFn(e.store, "chaos16")).WithContext(ctx).WithTimeout(time.Minute + patience(cfg)).Should(
			And(HaveField("Lag", BeZero()), HaveField("Held", BeZero())))
		st := status(ctx, e.store, "chaos16")
		Expect(st.State).To(Equal(projections.Running), st.LastError)
		Expect(st.ByPartition).To(HaveLen(chaosPartitions))
		Expect(written.Load()).To(BeNumerically(">=", chaosEvents))
		expectExactOrderedLog(ctx, e.pool)
		Expect(st.Delivered).To(BeEquivalentTo(mtestCount(ctx, e, `SELECT count(*) FROM mire.events`)))
		var takeovers int64
		for _, p := range st.ByPartition {
			takeovers += p.Fence - 1
		}
		GinkgoWriter.Printf("%d events, %d kills, %d rounds during the writes, %d takeovers over %d partitions\n",
			st.Delivered, kills, duringWrites, takeovers, chaosPartitions)
		Expect(takeovers).To(BeNumerically(">=", 2*chaosPartitions), "partitions moved between processes")
	})
})

// isClosed reports whether c is closed.
func isClosed(c chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}
