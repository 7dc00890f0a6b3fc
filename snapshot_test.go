package mire_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"reflect"
	"sync"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/mire-go/mire"
	"github.com/mire-go/mire/internal/mtest"
	"github.com/mire-go/mire/pgtest"
	"github.com/mire-go/mire/projections"
)

// The ledger events and aggregates of the snapshot specs.
type LedgerOpened struct {
	mire.Event `mire:"entity=ledger,type=Opened"`
	Name       string `json:"name"`
}

type LedgerPosted struct {
	mire.Event `mire:"entity=ledger,type=Posted"`
	Amount     int64  `json:"amount"`
	Memo       string `json:"memo,omitempty"`
}

func init() { mire.MustRegister(LedgerOpened{}, LedgerPosted{}) }

// LedgerState is the fold the ledger aggregates share. Applied counts the
// Apply calls on this value since it was created or restored from a
// snapshot (it is not stored), so a spec can tell a full replay from a
// snapshot's tail.
type LedgerState struct {
	Name    string
	Balance int64
	Posted  int64
	Memos   map[string]int64
	Applied int `json:"-"`
}

func (l *LedgerState) apply(event any) {
	l.Applied++
	switch e := event.(type) {
	case LedgerOpened:
		l.Name = e.Name
	case LedgerPosted:
		l.Balance += e.Amount
		l.Posted++
		if e.Memo != "" {
			if l.Memos == nil {
				l.Memos = map[string]int64{}
			}
			l.Memos[e.Memo] += e.Amount
		}
	}
}

// Ledger takes a snapshot every 100 events, at snapshot version 1.
type Ledger struct{ LedgerState }

func (*Ledger) Category() string  { return "ledger" }
func (l *Ledger) Apply(event any) { l.apply(event) }
func (*Ledger) SnapshotPolicy() mire.SnapshotPolicy {
	return mire.SnapshotPolicy{Every: 100, Version: 1}
}

// LedgerV2 is Ledger after a (pretend) change of its State's shape: the
// same streams, snapshot version 2.
type LedgerV2 struct{ LedgerState }

func (*LedgerV2) Category() string  { return "ledger" }
func (l *LedgerV2) Apply(event any) { l.apply(event) }
func (*LedgerV2) SnapshotPolicy() mire.SnapshotPolicy {
	return mire.SnapshotPolicy{Every: 100, Version: 2}
}

// PlainLedger reads the same streams without snapshots.
type PlainLedger struct{ LedgerState }

func (*PlainLedger) Category() string  { return "ledger" }
func (l *PlainLedger) Apply(event any) { l.apply(event) }

// FragileLedger snapshots every 10 events a State that JSON cannot encode.
type FragileLedger struct {
	LedgerState
	OnChange func() `json:"on_change"`
}

func (*FragileLedger) Category() string  { return "ledger" }
func (l *FragileLedger) Apply(event any) { l.apply(event) }
func (*FragileLedger) SnapshotPolicy() mire.SnapshotPolicy {
	return mire.SnapshotPolicy{Every: 10, Version: 1}
}

// NulLedger snapshots every 10 events a State holding a NUL character,
// which JSON encodes and Postgres's jsonb refuses.
type NulLedger struct {
	LedgerState
	Mark string
}

func (*NulLedger) Category() string { return "ledger" }
func (l *NulLedger) Apply(event any) {
	l.apply(event)
	l.Mark = "\x00"
}
func (*NulLedger) SnapshotPolicy() mire.SnapshotPolicy {
	return mire.SnapshotPolicy{Every: 10, Version: 1}
}

// logRecords is a slog.Handler that keeps the messages it is given.
type logRecords struct {
	mu       sync.Mutex
	messages []string
}

func (h *logRecords) Enabled(context.Context, slog.Level) bool { return true }
func (h *logRecords) WithAttrs([]slog.Attr) slog.Handler       { return h }
func (h *logRecords) WithGroup(string) slog.Handler            { return h }
func (h *logRecords) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	msg := r.Message
	r.Attrs(func(a slog.Attr) bool { msg += " " + a.String(); return true })
	h.messages = append(h.messages, msg)
	return nil
}

func (h *logRecords) all() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]string(nil), h.messages...)
}

// postLedger records n postings (after an Opened, if the ledger is new) on
// root in saves of at most batch events.
func postLedger[T any, PT interface {
	*T
	mire.Aggregate
}](ctx context.Context, store *mire.Store, root *mire.Root[T], n, batch int) {
	if root.Version == 0 {
		Expect(root.Record(LedgerOpened{Name: root.ID})).To(Succeed())
		n--
	}
	for i := range n {
		memo := ""
		if i%7 == 0 {
			memo = fmt.Sprintf("memo%d", i%5)
		}
		Expect(root.Record(LedgerPosted{Amount: int64(i%13 + 1), Memo: memo})).To(Succeed())
		if len(root.Pending()) >= batch || i == n-1 {
			Expect(store.Save(ctx, root)).To(Succeed())
		}
	}
	if len(root.Pending()) > 0 {
		Expect(store.Save(ctx, root)).To(Succeed())
	}
}

// snapshotRow returns the stored snapshot of a stream: version, schema
// version, and how many rows there are (0 or 1).
func snapshotRow(ctx context.Context, pool *pgxpool.Pool, streamID string) (version int64, schema int, n int) {
	n = mtest.Count(ctx, pool, "snapshots", "stream_id = $1", streamID)
	if n > 0 {
		Expect(pool.QueryRow(ctx, `SELECT version, schema_version FROM mire.snapshots WHERE stream_id = $1`, streamID).
			Scan(&version, &schema)).To(Succeed())
	}
	return version, schema, n
}

// project runs a projection over category on store until it has seen want
// events, and returns them.
func project(ctx context.Context, store *mire.Store, category string, want int) []mire.Envelope {
	var (
		mu   sync.Mutex
		seen []mire.Envelope
	)
	runner, err := projections.NewRunner(store, &projections.Config{
		PollInterval: 20 * time.Millisecond, Logger: slog.New(slog.DiscardHandler),
	}, projections.Projection{
		Name:       mtest.Unique("p"),
		Categories: []string{category},
		Handler: projections.Plain(func(_ context.Context, env mire.Envelope) error {
			mu.Lock()
			defer mu.Unlock()
			seen = append(seen, env)
			return nil
		}),
	})
	Expect(err).NotTo(HaveOccurred())
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer GinkgoRecover()
		defer close(done)
		Expect(runner.Run(runCtx)).To(Succeed())
	}()
	defer func() { stop(); <-done }()
	Eventually(func() int {
		mu.Lock()
		defer mu.Unlock()
		return len(seen)
	}).WithContext(ctx).Should(BeNumerically(">=", want))
	mu.Lock()
	defer mu.Unlock()
	return append([]mire.Envelope(nil), seen...)
}

// withoutApplied returns s with the replay counter cleared, for comparing
// states loaded different ways.
func withoutApplied(s LedgerState) LedgerState { s.Applied = 0; return s }

var _ = Describe("Snapshots", func() {
	var (
		store *mire.Store
		pool  *pgxpool.Pool
		logs  *logRecords
	)
	BeforeEach(func() {
		pool, logs = db.Pool, &logRecords{}
		var err error
		store, err = mire.New(pool, &mire.Config{Logger: slog.New(logs)})
		Expect(err).NotTo(HaveOccurred())
	})

	It("stores one when a save crosses a multiple of Every, and none otherwise", func(ctx SpecContext) {
		led, err := mire.LoadOrNew[Ledger](ctx, store, mtest.Unique("l"))
		Expect(err).NotTo(HaveOccurred())
		postLedger(ctx, store, led, 99, 99)
		_, _, n := snapshotRow(ctx, pool, led.StreamID())
		Expect(n).To(BeZero(), "version 99 crosses nothing")

		postLedger(ctx, store, led, 1, 1)
		version, schema, _ := snapshotRow(ctx, pool, led.StreamID())
		Expect(version).To(BeEquivalentTo(100))
		Expect(schema).To(Equal(1))

		postLedger(ctx, store, led, 150, 150) // 100 -> 250 crosses 200
		version, _, _ = snapshotRow(ctx, pool, led.StreamID())
		Expect(version).To(BeEquivalentTo(250), "the snapshot is of the state the save reached")

		var stored LedgerState
		Expect(pool.QueryRow(ctx, `SELECT state FROM mire.snapshots WHERE stream_id = $1`, led.StreamID()).Scan(&stored)).To(Succeed())
		Expect(stored).To(Equal(withoutApplied(led.State.LedgerState)))

		postLedger(ctx, store, led, 30, 10) // 250 -> 280: no crossing
		version, _, _ = snapshotRow(ctx, pool, led.StreamID())
		Expect(version).To(BeEquivalentTo(250))
		Expect(logs.all()).To(BeEmpty())
	})

	It("loads a 10,000-event stream to the same State with and without snapshots", func(ctx SpecContext) {
		id := mtest.Unique("l")
		led, err := mire.LoadOrNew[Ledger](ctx, store, id)
		Expect(err).NotTo(HaveOccurred())
		postLedger(ctx, store, led, 10_000, 97) // saves of 97 cross a multiple of 100 most times
		Expect(led.Version).To(BeEquivalentTo(10_000))
		snapVersion, _, _ := snapshotRow(ctx, pool, led.StreamID())
		Expect(snapVersion).To(BeNumerically(">", 9_900))

		fast, err := mire.Load[Ledger](ctx, store, id)
		Expect(err).NotTo(HaveOccurred())
		full, err := mire.Load[PlainLedger](ctx, store, id)
		Expect(err).NotTo(HaveOccurred())

		Expect(full.State.Applied).To(Equal(10_000))
		Expect(fast.State.Applied).To(BeEquivalentTo(10_000-snapVersion), "only the events after the snapshot")
		Expect(fast.Version).To(Equal(full.Version))
		Expect(withoutApplied(fast.State.LedgerState)).To(Equal(withoutApplied(full.State.LedgerState)))
		Expect(withoutApplied(led.State.LedgerState)).To(Equal(withoutApplied(full.State.LedgerState)))

		// And the loaded root saves on from where it stands.
		Expect(fast.Record(LedgerPosted{Amount: 5})).To(Succeed())
		Expect(store.Save(ctx, fast)).To(Succeed())
		Expect(fast.Version).To(BeEquivalentTo(10_001))
	})

	It("ignores snapshots of another version after a bump, and takes new ones", func(ctx SpecContext) {
		id := mtest.Unique("l")
		led, err := mire.LoadOrNew[Ledger](ctx, store, id)
		Expect(err).NotTo(HaveOccurred())
		postLedger(ctx, store, led, 150, 50)
		_, schema, _ := snapshotRow(ctx, pool, led.StreamID())
		Expect(schema).To(Equal(1))

		v2, err := mire.Load[LedgerV2](ctx, store, id)
		Expect(err).NotTo(HaveOccurred())
		Expect(v2.State.Applied).To(Equal(150), "a full replay: the version 1 snapshot is ignored")
		Expect(withoutApplied(v2.State.LedgerState)).To(Equal(withoutApplied(led.State.LedgerState)))

		postLedger(ctx, store, v2, 50, 50) // 150 -> 200: a version 2 snapshot
		version, schema, _ := snapshotRow(ctx, pool, led.StreamID())
		Expect([]int64{version, int64(schema)}).To(Equal([]int64{200, 2}))

		again, err := mire.Load[LedgerV2](ctx, store, id)
		Expect(err).NotTo(HaveOccurred())
		Expect(again.State.Applied).To(BeZero())
		old, err := mire.Load[Ledger](ctx, store, id)
		Expect(err).NotTo(HaveOccurred())
		Expect(old.State.Applied).To(Equal(200), "version 1 code ignores the version 2 snapshot")
		Expect(withoutApplied(old.State.LedgerState)).To(Equal(withoutApplied(again.State.LedgerState)))
		Expect(logs.all()).To(BeEmpty(), "another version is expected, not worth a warning")
	})

	DescribeTable("ignores a corrupt snapshot row, replaying the whole stream",
		func(ctx SpecContext, state string) {
			id := mtest.Unique("l")
			led, err := mire.LoadOrNew[Ledger](ctx, store, id)
			Expect(err).NotTo(HaveOccurred())
			postLedger(ctx, store, led, 120, 60)
			_, err = pool.Exec(ctx, `UPDATE mire.snapshots SET state = $2::jsonb WHERE stream_id = $1`, led.StreamID(), state)
			Expect(err).NotTo(HaveOccurred())

			loaded, err := mire.Load[Ledger](ctx, store, id)
			Expect(err).NotTo(HaveOccurred())
			Expect(loaded.State.Applied).To(Equal(120))
			Expect(loaded.Version).To(BeEquivalentTo(120))
			Expect(withoutApplied(loaded.State.LedgerState)).To(Equal(withoutApplied(led.State.LedgerState)))
			Expect(logs.all()).To(ContainElement(ContainSubstring("snapshot ignored")))

			// In a scope too.
			Expect(store.InTx(ctx, nil, func(scope *mire.TxScope) error {
				locked, err := mire.LoadForUpdate[Ledger](ctx, scope, id)
				Expect(err).NotTo(HaveOccurred())
				Expect(locked.State.Applied).To(Equal(120))
				return nil
			})).To(Succeed())
		},
		Entry("a field of the wrong type", `{"Balance": "lots"}`),
		Entry("a field State does not have", `{"Balance": 1, "Overdraft": 5}`),
		Entry("null", `null`),
		Entry("an array", `[1, 2]`),
		Entry("a string", `"garbage"`),
	)

	It("passes over a snapshot above the stream's version, replaying the stream, in and out of a scope", func(ctx SpecContext) {
		id := mtest.Unique("l")
		led, err := mire.LoadOrNew[Ledger](ctx, store, id)
		Expect(err).NotTo(HaveOccurred())
		postLedger(ctx, store, led, 120, 60) // a snapshot at 120
		_, err = pool.Exec(ctx, `UPDATE mire.snapshots SET version = 500 WHERE stream_id = $1`, led.StreamID())
		Expect(err).NotTo(HaveOccurred())

		loaded, err := mire.Load[Ledger](ctx, store, id)
		Expect(err).NotTo(HaveOccurred())
		Expect(loaded.Version).To(BeEquivalentTo(120))
		Expect(loaded.State.Applied).To(Equal(120), "a full replay")
		Expect(withoutApplied(loaded.State.LedgerState)).To(Equal(withoutApplied(led.State.LedgerState)))
		Expect(logs.all()).To(ContainElement(SatisfyAll(ContainSubstring("snapshot ignored"), ContainSubstring("version 500"))))
		Expect(store.InTx(ctx, nil, func(scope *mire.TxScope) error {
			locked, err := mire.LoadForUpdate[Ledger](ctx, scope, id)
			Expect(err).NotTo(HaveOccurred())
			Expect(locked.Version).To(BeEquivalentTo(120))
			Expect(locked.State.Applied).To(Equal(120))
			return nil
		})).To(Succeed())

		Expect(loaded.Record(LedgerPosted{Amount: 1})).To(Succeed())
		Expect(store.Save(ctx, loaded)).To(Succeed(), "the loaded Root saves")
		Expect(loaded.Version).To(BeEquivalentTo(121))
	})

	It("passes over the snapshot of a stream deleted by hand, before and after the stream is written again", func(ctx SpecContext) {
		id := mtest.Unique("l")
		led, err := mire.LoadOrNew[Ledger](ctx, store, id)
		Expect(err).NotTo(HaveOccurred())
		postLedger(ctx, store, led, 120, 50) // a snapshot at 100
		_, err = pool.Exec(ctx, `DELETE FROM mire.events WHERE stream_id = $1`, led.StreamID())
		Expect(err).NotTo(HaveOccurred())
		_, err = pool.Exec(ctx, `DELETE FROM mire.streams WHERE stream_id = $1`, led.StreamID())
		Expect(err).NotTo(HaveOccurred())

		_, err = mire.Load[Ledger](ctx, store, id)
		Expect(err).To(MatchError(mire.ErrNotFound))
		again, err := mire.LoadOrNew[Ledger](ctx, store, id)
		Expect(err).NotTo(HaveOccurred())
		Expect(again.Version).To(BeZero())
		Expect(again.State.Applied).To(BeZero())

		// A new history, of other amounts, up to the old snapshot's version:
		// the save's own snapshot at 100 replaces the old one.
		Expect(again.Record(LedgerOpened{Name: "second"})).To(Succeed())
		for range 99 {
			Expect(again.Record(LedgerPosted{Amount: 1000})).To(Succeed())
		}
		Expect(store.Save(ctx, again)).To(Succeed())
		loaded, err := mire.Load[Ledger](ctx, store, id)
		Expect(err).NotTo(HaveOccurred())
		Expect(loaded.Version).To(BeEquivalentTo(100))
		Expect(loaded.State.Balance).To(BeEquivalentTo(99_000), "not the old history's state")
		Expect(withoutApplied(loaded.State.LedgerState)).To(Equal(withoutApplied(again.State.LedgerState)))
		Expect(loaded.State.Applied).To(BeZero(), "loaded from the new history's snapshot")
	})

	It("stores a snapshot only in the transaction of its events, never from a retry", func(ctx SpecContext) {
		led, err := mire.Create[Ledger](store, mtest.Unique("l"))
		Expect(err).NotTo(HaveOccurred())
		Expect(led.Record(LedgerOpened{Name: led.ID})).To(Succeed())
		for range 99 {
			Expect(led.Record(LedgerPosted{Amount: 1})).To(Succeed())
		}
		committed := *led
		Expect(store.Save(ctx, &committed)).To(Succeed())
		_, _, n := snapshotRow(ctx, pool, led.StreamID())
		Expect(n).To(Equal(1))
		_, err = pool.Exec(ctx, `DELETE FROM mire.snapshots WHERE stream_id = $1`, led.StreamID())
		Expect(err).NotTo(HaveOccurred())

		Expect(store.Save(ctx, led)).To(Succeed(), "the retry is recognised")
		_, _, n = snapshotRow(ctx, pool, led.StreamID())
		Expect(n).To(BeZero(), "a snapshot stored now would not belong to its event's transaction, and loads would pass it over")
		Expect(logs.all()).NotTo(ContainElement(ContainSubstring("snapshot ignored")))
	})

	It("reports a stream whose tail after the snapshot was deleted as ErrCorruptStream, in and out of a scope", func(ctx SpecContext) {
		id := mtest.Unique("l")
		led, err := mire.LoadOrNew[Ledger](ctx, store, id)
		Expect(err).NotTo(HaveOccurred())
		postLedger(ctx, store, led, 120, 50) // a snapshot at 100
		snapVersion, _, _ := snapshotRow(ctx, pool, led.StreamID())
		Expect(snapVersion).To(BeEquivalentTo(100))
		_, err = pool.Exec(ctx, `DELETE FROM mire.events WHERE stream_id = $1 AND version = 120`, led.StreamID())
		Expect(err).NotTo(HaveOccurred())
		corrupt := SatisfyAll(MatchError(mire.ErrCorruptStream),
			MatchError(ContainSubstring("the stream row is at version 120 but its events end at version 119")))

		_, err = mire.Load[Ledger](ctx, store, id)
		Expect(err).To(corrupt)
		Expect(store.InTx(ctx, nil, func(scope *mire.TxScope) error {
			_, err := mire.LoadForUpdate[Ledger](ctx, scope, id)
			return err
		})).To(corrupt)
	})

	It("never shows snapshot rows in ReadAll, ReadCategory or projections", func(ctx SpecContext) {
		_, fresh := db.Fresh(ctx)
		store := newStore(fresh)
		led, err := mire.LoadOrNew[Ledger](ctx, store, "books")
		Expect(err).NotTo(HaveOccurred())
		postLedger(ctx, store, led, 250, 100)
		Expect(mtest.Count(ctx, fresh, "snapshots", "")).To(Equal(1))

		for _, seq := range map[string]func(func(mire.Envelope, error) bool){
			"all":      store.ReadAll(ctx, nil),
			"category": store.ReadCategory(ctx, "ledger", nil),
			"stream":   store.ReadStream(ctx, "ledger-books", nil),
		} {
			n := 0
			for env, err := range seq {
				Expect(err).NotTo(HaveOccurred())
				Expect(env.Data).To(Or(BeAssignableToTypeOf(LedgerOpened{}), BeAssignableToTypeOf(LedgerPosted{})))
				n++
				Expect(env.Version).To(BeEquivalentTo(n))
			}
			Expect(n).To(Equal(250))
		}

		projected := project(ctx, store, "ledger", 250)
		Expect(projected).To(HaveLen(250))
		for i, env := range projected {
			Expect(env.Version).To(BeEquivalentTo(i + 1))
			Expect(env.Data).To(Or(BeAssignableToTypeOf(LedgerOpened{}), BeAssignableToTypeOf(LedgerPosted{})))
		}
	})

	It("gives LoadForUpdate and LoadManyForUpdate in a TxScope the same state as Load, from the snapshot", func(ctx SpecContext) {
		a, b := mtest.Unique("l"), mtest.Unique("l")
		for _, id := range []string{a, b} {
			led, err := mire.LoadOrNew[Ledger](ctx, store, id)
			Expect(err).NotTo(HaveOccurred())
			postLedger(ctx, store, led, 230, 100)
		}
		off, err := mire.Load[Ledger](ctx, store, a)
		Expect(err).NotTo(HaveOccurred())
		Expect(off.State.Applied).To(Equal(30))

		scope, err := store.Begin(ctx, nil)
		Expect(err).NotTo(HaveOccurred())
		defer scope.Rollback(ctx)
		in, err := mire.LoadForUpdate[Ledger](ctx, scope, a)
		Expect(err).NotTo(HaveOccurred())
		Expect(in.State).To(Equal(off.State))
		Expect(in.Version).To(Equal(off.Version))

		many, err := mire.LoadManyForUpdate[Ledger](ctx, scope, b, a)
		Expect(err).NotTo(HaveOccurred())
		Expect(many[1].State).To(Equal(off.State))
		full, err := mire.Load[PlainLedger](ctx, store, b)
		Expect(err).NotTo(HaveOccurred())
		Expect(withoutApplied(many[0].State.LedgerState)).To(Equal(withoutApplied(full.State.LedgerState)))
		Expect(many[0].State.Applied).To(Equal(30))

		// A save in the scope that crosses 300 stores its snapshot in the
		// scope's transaction: nothing until Commit, then there.
		for range 80 {
			Expect(in.Record(LedgerPosted{Amount: 1})).To(Succeed())
		}
		Expect(scope.Save(ctx, in)).To(Succeed())
		version, _, _ := snapshotRow(ctx, pool, in.StreamID())
		Expect(version).To(BeEquivalentTo(200), "not visible before commit")
		Expect(scope.Commit(ctx)).To(Succeed())
		version, _, _ = snapshotRow(ctx, pool, in.StreamID())
		Expect(version).To(BeEquivalentTo(310))

		after, err := mire.Load[Ledger](ctx, store, a)
		Expect(err).NotTo(HaveOccurred())
		Expect(after.State.Applied).To(BeZero())
		Expect(after.State.Balance).To(Equal(off.State.Balance + 80))
	})

	It("writes no snapshot for a save refused by a conflict", func(ctx SpecContext) {
		id := mtest.Unique("l")
		led, err := mire.LoadOrNew[Ledger](ctx, store, id)
		Expect(err).NotTo(HaveOccurred())
		postLedger(ctx, store, led, 99, 99)
		rival, err := mire.Load[Ledger](ctx, store, id)
		Expect(err).NotTo(HaveOccurred())

		postLedger(ctx, store, led, 1, 1)
		for range 5 {
			Expect(rival.Record(LedgerPosted{Amount: 1000})).To(Succeed())
		}
		Expect(store.Save(ctx, rival)).To(MatchError(mire.ErrConcurrency))

		version, _, _ := snapshotRow(ctx, pool, led.StreamID())
		Expect(version).To(BeEquivalentTo(100))
		loaded, err := mire.Load[Ledger](ctx, store, id)
		Expect(err).NotTo(HaveOccurred())
		Expect(withoutApplied(loaded.State.LedgerState)).To(Equal(withoutApplied(led.State.LedgerState)))
	})

	It("stores a snapshot for each root of a multi-root save that crosses Every, and none for the others", func(ctx SpecContext) {
		a, err := mire.LoadOrNew[Ledger](ctx, store, mtest.Unique("l"))
		Expect(err).NotTo(HaveOccurred())
		b, err := mire.LoadOrNew[Ledger](ctx, store, mtest.Unique("l"))
		Expect(err).NotTo(HaveOccurred())
		fragile, err := mire.LoadOrNew[FragileLedger](ctx, store, mtest.Unique("l"))
		Expect(err).NotTo(HaveOccurred())
		postLedger(ctx, store, a, 90, 90)
		postLedger(ctx, store, b, 50, 50)
		Expect(fragile.Record(LedgerOpened{Name: fragile.ID})).To(Succeed())
		post := func(root interface{ Record(any) error }, n int) {
			for range n {
				Expect(root.Record(LedgerPosted{Amount: 1})).To(Succeed())
			}
		}
		post(a, 30)       // 90 -> 120 crosses 100
		post(b, 30)       // 50 -> 80 crosses nothing
		post(fragile, 14) // 0 -> 15 crosses 10, with a State JSON cannot encode

		Expect(store.Save(ctx, a, b, fragile)).To(Succeed())
		Expect([]int64{a.Version, b.Version, fragile.Version}).To(Equal([]int64{120, 80, 15}))
		version, _, _ := snapshotRow(ctx, pool, a.StreamID())
		Expect(version).To(BeEquivalentTo(120))
		_, _, n := snapshotRow(ctx, pool, b.StreamID())
		Expect(n).To(BeZero())
		_, _, n = snapshotRow(ctx, pool, fragile.StreamID())
		Expect(n).To(BeZero())
		Expect(logs.all()).To(ConsistOf(And(ContainSubstring("snapshot not taken"), ContainSubstring(fragile.StreamID()))))

		// The same in a scope: b crosses 100 this time, a crosses nothing.
		err = store.InTx(ctx, nil, func(scope *mire.TxScope) error {
			both, err := mire.LoadManyForUpdate[Ledger](ctx, scope, a.ID, b.ID)
			if err != nil {
				return err
			}
			post(both[0], 10) // 120 -> 130
			post(both[1], 30) // 80 -> 110
			return scope.Save(ctx, both[0], both[1])
		})
		Expect(err).NotTo(HaveOccurred())
		version, _, _ = snapshotRow(ctx, pool, a.StreamID())
		Expect(version).To(BeEquivalentTo(120))
		version, _, _ = snapshotRow(ctx, pool, b.StreamID())
		Expect(version).To(BeEquivalentTo(110))
		loaded, err := mire.Load[Ledger](ctx, store, b.ID)
		Expect(err).NotTo(HaveOccurred())
		Expect(loaded.Version).To(BeEquivalentTo(110))
		Expect(loaded.State.Applied).To(BeZero(), "b loads from the snapshot the scope stored, with nothing to replay")
	})

	It("logs and saves without a snapshot when State cannot be encoded", func(ctx SpecContext) {
		id := mtest.Unique("l")
		led, err := mire.LoadOrNew[FragileLedger](ctx, store, id)
		Expect(err).NotTo(HaveOccurred())
		postLedger(ctx, store, led, 25, 10)
		Expect(led.Version).To(BeEquivalentTo(25))
		_, _, n := snapshotRow(ctx, pool, led.StreamID())
		Expect(n).To(BeZero())
		Expect(logs.all()).To(ContainElement(And(ContainSubstring("snapshot not taken"), ContainSubstring("unsupported type"))))

		// A NUL character, which jsonb refuses, is caught the same way.
		nul, err := mire.LoadOrNew[NulLedger](ctx, store, mtest.Unique("l"))
		Expect(err).NotTo(HaveOccurred())
		postLedger(ctx, store, nul, 25, 10)
		Expect(nul.Version).To(BeEquivalentTo(25))
		_, _, n = snapshotRow(ctx, pool, nul.StreamID())
		Expect(n).To(BeZero())
		Expect(logs.all()).To(ContainElement(ContainSubstring("NUL character")))
	})

	It("saves without the snapshot when Postgres refuses the snapshot row", func(ctx SpecContext) {
		_, fresh := db.Fresh(ctx)
		_, err := fresh.Exec(ctx, `
CREATE FUNCTION mire.refuse() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'no snapshots today'; END $$;
CREATE TRIGGER refuse BEFORE INSERT OR UPDATE ON mire.snapshots FOR EACH ROW EXECUTE FUNCTION mire.refuse();`)
		Expect(err).NotTo(HaveOccurred())
		store, err := mire.New(fresh, &mire.Config{Logger: slog.New(logs)})
		Expect(err).NotTo(HaveOccurred())

		led, err := mire.LoadOrNew[Ledger](ctx, store, "refused")
		Expect(err).NotTo(HaveOccurred())
		postLedger(ctx, store, led, 150, 150)
		Expect(led.Version).To(BeEquivalentTo(150))
		Expect(mtest.Count(ctx, fresh, "events", "")).To(Equal(150))
		Expect(mtest.Count(ctx, fresh, "snapshots", "")).To(BeZero())
		Expect(logs.all()).To(ContainElement(And(ContainSubstring("snapshot refused"), ContainSubstring("no snapshots today"))))

		loaded, err := mire.Load[Ledger](ctx, store, "refused")
		Expect(err).NotTo(HaveOccurred())
		Expect(withoutApplied(loaded.State.LedgerState)).To(Equal(withoutApplied(led.State.LedgerState)))
	})
})

// BenchmarkLoad10k loads a 10,000-event ledger four ways: from its
// snapshot (taken every 100 events), by full replay, by full replay through
// the snapshot query (a snapshot of another version), and, as the baseline,
// with raw pgx reading and unmarshalling the same rows with no mire at all.
//
//	go test -run '^$' -bench Load10k .
func BenchmarkLoad10k(b *testing.B) {
	ctx := context.Background()
	srv, err := pgtest.Start(ctx, pgtest.EnvTestDatabase)
	if err != nil {
		b.Fatal(err)
	}
	defer srv.Stop()
	url, drop, err := pgtest.NewDatabase(ctx, srv.URL())
	if err != nil {
		b.Fatal(err)
	}
	defer drop(ctx)
	pool, err := pgxpool.New(ctx, url)
	if err != nil {
		b.Fatal(err)
	}
	defer pool.Close()
	store, err := mire.New(pool, nil)
	if err != nil {
		b.Fatal(err)
	}
	led, err := mire.LoadOrNew[Ledger](ctx, store, "bench")
	if err != nil {
		b.Fatal(err)
	}
	if err := led.Record(LedgerOpened{Name: "bench"}); err != nil {
		b.Fatal(err)
	}
	for i := 1; i < 10_000; i++ {
		if err := led.Record(LedgerPosted{Amount: int64(i % 13), Memo: fmt.Sprintf("m%d", i%5)}); err != nil {
			b.Fatal(err)
		}
		if i%100 == 99 || i == 9_999 { // saves of 100: a snapshot at every multiple of 100
			if err := store.Save(ctx, led); err != nil {
				b.Fatal(err)
			}
		}
	}
	want := withoutApplied(led.State.LedgerState)

	b.Run("snapshot", func(b *testing.B) {
		for b.Loop() {
			got, err := mire.Load[Ledger](ctx, store, "bench")
			if err != nil || got.State.Applied != 0 || !reflect.DeepEqual(withoutApplied(got.State.LedgerState), want) {
				b.Fatalf("got %+v, %v", got.State, err)
			}
		}
	})
	b.Run("full", func(b *testing.B) {
		for b.Loop() {
			got, err := mire.Load[PlainLedger](ctx, store, "bench")
			if err != nil || got.State.Applied != 10_000 {
				b.Fatalf("got %+v, %v", got.State, err)
			}
		}
	})
	b.Run("other-version", func(b *testing.B) { // the snapshot query, no usable snapshot
		for b.Loop() {
			got, err := mire.Load[LedgerV2](ctx, store, "bench")
			if err != nil || got.State.Applied != 10_000 {
				b.Fatalf("got %+v, %v", got.State, err)
			}
		}
	})
	b.Run("raw-pgx", func(b *testing.B) {
		for b.Loop() {
			rows, err := pool.Query(ctx, `SELECT version, type, data FROM mire.events WHERE stream_id = $1 ORDER BY version`, "ledger-bench")
			if err != nil {
				b.Fatal(err)
			}
			var state LedgerState
			var version int64
			var typ string
			var data []byte
			_, err = pgx.ForEachRow(rows, []any{&version, &typ, &data}, func() error {
				if typ == "Opened" {
					var e LedgerOpened
					if err := json.Unmarshal(data, &e); err != nil {
						return err
					}
					state.apply(e)
					return nil
				}
				var e LedgerPosted
				if err := json.Unmarshal(data, &e); err != nil {
					return err
				}
				state.apply(e)
				return nil
			})
			if err != nil || state.Applied != 10_000 {
				b.Fatalf("got %+v, %v", state, err)
			}
		}
	})
}
