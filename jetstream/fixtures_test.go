package jetstream_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/mire-go/mire"
	"github.com/mire-go/mire/internal/mtest"
	mjs "github.com/mire-go/mire/jetstream"
	"github.com/mire-go/mire/jetstream/natstest"
	"github.com/mire-go/mire/projections"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// db is this process's database, set up once for the suite.
var db = mtest.Suite()

type Deposited struct {
	mire.Event `mire:"entity=account,type=Deposited"`
	Amount     int64 `json:"amount" validate:"gt=0"`
}

type Renamed struct {
	mire.Event `mire:"entity=customer,type=Renamed"`
	Name       string `json:"name"`
}

func init() { mire.MustRegister(Deposited{}, Renamed{}) }

// The test binary doubles as a relay process for the chaos spec (see
// chaos_test.go): with relayEnv set it runs one relay until killed.
const relayEnv = "MIRE_JETSTREAM_TEST_RELAY"

func TestMain(m *testing.M) {
	if os.Getenv(relayEnv) != "" {
		if err := runRelayProcess(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	code := m.Run()
	examples.Close()
	if shared.srv != nil {
		shared.srv.Stop()
	}
	os.Exit(code)
}

// shared is this process's NATS server, started on first use.
var shared struct {
	once sync.Once
	srv  *natstest.Server
	err  error
}

func natsServer() *natstest.Server {
	shared.once.Do(func() { shared.srv, shared.err = natstest.Start() })
	Expect(shared.err).NotTo(HaveOccurred())
	return shared.srv
}

// connect returns a JetStream context on srv, closed when the node ends.
func connect(srv *natstest.Server, opts ...nats.Option) jetstream.JetStream {
	opts = append([]nats.Option{nats.MaxReconnects(-1), nats.ReconnectWait(20 * time.Millisecond)}, opts...)
	nc, err := nats.Connect(srv.URL(), opts...)
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(nc.Close)
	js, err := jetstream.New(nc)
	Expect(err).NotTo(HaveOccurred())
	return js
}

// newStream creates a stream of its own for a spec, on subjects
// "<name>.>", and returns its name (also the subject prefix).
func newStream(ctx context.Context, js jetstream.JetStream, dup time.Duration) string {
	name := mtest.Unique("S")
	_, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: name, Subjects: []string{name + ".>"},
		Storage: jetstream.FileStorage, Duplicates: dup})
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(func(ctx SpecContext) { _ = js.DeleteStream(ctx, name) })
	return name
}

// quiet is the runner configuration of the specs: short leases, quiet logs.
func quiet() *projections.Config {
	return &projections.Config{
		LeaseTTL:        3 * time.Second,
		RecheckInterval: 100 * time.Millisecond,
		PollInterval:    50 * time.Millisecond,
		RetryBackoff:    10 * time.Millisecond,
		Logger:          testLogger(),
	}
}

func testLogger() *slog.Logger {
	if os.Getenv("MIRE_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(GinkgoWriter, nil))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// patience is how long a spec waits for what a relay with cfg must do,
// derived from its lease and intervals with a generous margin.
func patience(cfg *projections.Config) time.Duration {
	return 10 * (cfg.LeaseTTL + cfg.RecheckInterval + cfg.PollInterval)
}

var _ = BeforeEach(func() {
	SetDefaultEventuallyTimeout(patience(quiet()))
	EnforceDefaultTimeoutsWhenUsingContexts()
})

// freshStore returns a store on a fresh database, and its URL.
func freshStore(ctx context.Context) (*mire.Store, string) {
	url, pool := db.Fresh(ctx)
	store, err := mire.New(pool, nil)
	Expect(err).NotTo(HaveOccurred())
	return store, url
}

// anotherStore returns a store on its own pool on the database at url, as
// another replica has.
func anotherStore(ctx context.Context, url string) *mire.Store {
	var pool *pgxpool.Pool = db.Connect(ctx, url)
	store, err := mire.New(pool, nil)
	Expect(err).NotTo(HaveOccurred())
	return store
}

// stored is a message as the JetStream stream holds it.
type stored struct {
	Seq     uint64
	Subject string
	ID      string
	Stream  string
	Version int64
	Header  nats.Header
	Data    []byte
}

// storedMessages reads every message of the stream, in stream order.
func storedMessages(ctx context.Context, js jetstream.JetStream, name string) []stored {
	s, err := js.Stream(ctx, name)
	Expect(err).NotTo(HaveOccurred())
	info, err := s.Info(ctx)
	Expect(err).NotTo(HaveOccurred())
	total := info.State.Msgs
	var out []stored
	if total == 0 {
		return nil
	}
	cons, err := s.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{})
	Expect(err).NotTo(HaveOccurred())
	for uint64(len(out)) < total {
		batch, err := cons.Fetch(1000, jetstream.FetchMaxWait(time.Second))
		Expect(err).NotTo(HaveOccurred())
		for m := range batch.Messages() {
			md, err := m.Metadata()
			Expect(err).NotTo(HaveOccurred())
			v, _ := strconv.ParseInt(m.Headers().Get(mjs.HeaderVersion), 10, 64)
			out = append(out, stored{Seq: md.Sequence.Stream, Subject: m.Subject(), ID: m.Headers().Get(jetstream.MsgIDHeader),
				Stream: m.Headers().Get(mjs.HeaderStream), Version: v, Header: m.Headers(), Data: m.Data()})
		}
		Expect(batch.Error()).NotTo(HaveOccurred())
	}
	return out
}

// checkExactlyOnceInOrder checks that msgs hold each id once and, per
// stream of the log, the versions 1, 2, ... in order; it returns the
// number of messages per stream of the log.
func checkExactlyOnceInOrder(msgs []stored) map[string]int64 {
	ids := make(map[string]uint64, len(msgs))
	last := map[string]int64{}
	for _, m := range msgs {
		Expect(m.ID).NotTo(BeEmpty())
		if seq, dup := ids[m.ID]; dup {
			Fail(fmt.Sprintf("message id %s stored twice: at %d and %d", m.ID, seq, m.Seq))
		}
		ids[m.ID] = m.Seq
		if m.Version != last[m.Stream]+1 {
			Fail(fmt.Sprintf("stream %s: version %d stored after version %d (sequence %d)", m.Stream, m.Version, last[m.Stream], m.Seq))
		}
		last[m.Stream] = m.Version
	}
	return last
}

// start runs r until the node ends, or until the returned function stops it.
func start(r *mjs.Relay) func() {
	done := make(chan error, 1)
	go func() { done <- r.Run(context.Background()) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			Expect(r.Stop(ctx)).To(Succeed())
			Expect(<-done).To(Succeed())
		})
	}
	DeferCleanup(stop)
	return stop
}
