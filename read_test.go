package mire_test

import (
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/mire-go/mire"
)

var _ = Describe("Reading the log", func() {
	var store *mire.Store
	BeforeEach(func(ctx SpecContext) {
		_, pool := db.Fresh(ctx) // an empty log of our own
		store = newStore(pool)
	})

	// appendN writes n deposits to stream, one per append.
	appendN := func(ctx SpecContext, stream string, n int) {
		for i := range n {
			_, err := store.Append(ctx, stream, mire.Any, Deposited{Amount: int64(i + 1)})
			Expect(err).NotTo(HaveOccurred())
		}
	}

	collect := func(seq func(func(mire.Envelope, error) bool)) []mire.Envelope {
		var out []mire.Envelope
		for env, err := range seq {
			Expect(err).NotTo(HaveOccurred())
			out = append(out, env)
		}
		return out
	}

	It("reads a stream in version order across batches, with After and Limit", func(ctx SpecContext) {
		appendN(ctx, "account-a", 7)
		all := collect(store.ReadStream(ctx, "account-a", &mire.ReadOpts{BatchSize: 3}))
		Expect(all).To(HaveLen(7))
		for i, env := range all {
			Expect(env.Version).To(BeEquivalentTo(i + 1))
			Expect(env.Data).To(Equal(Deposited{Amount: int64(i + 1)}))
			Expect(env.StreamID).To(Equal("account-a"))
			Expect(env.Category).To(Equal("account"))
			Expect(env.Type).To(Equal("Deposited"))
			Expect(env.SchemaVersion).To(Equal(1))
			Expect(env.ID.Version()).To(BeEquivalentTo(7), "a UUIDv7 id")
			Expect(env.RecordedAt).To(BeTemporally("~", time.Now(), time.Minute))
			Expect(string(env.Raw)).To(MatchJSON(`{"amount": ` + string(rune('0'+i+1)) + `}`))
		}
		some := collect(store.ReadStream(ctx, "account-a", &mire.ReadOpts{After: 2, Limit: 4, BatchSize: 3}))
		Expect(versions(some)).To(Equal([]int64{3, 4, 5, 6}))
	})

	It("reads a category and the whole log in position order", func(ctx SpecContext) {
		appendN(ctx, "account-a", 2)
		_, err := store.Append(ctx, "customer-c", mire.Any, Renamed{Name: "c"})
		Expect(err).NotTo(HaveOccurred())
		appendN(ctx, "account-b", 2)

		accounts := collect(store.ReadCategory(ctx, "account", &mire.ReadOpts{BatchSize: 1}))
		Expect(streams(accounts)).To(Equal([]string{"account-a", "account-a", "account-b", "account-b"}))
		everything := collect(store.ReadAll(ctx, &mire.ReadOpts{BatchSize: 2}))
		Expect(streams(everything)).To(Equal([]string{"account-a", "account-a", "customer-c", "account-b", "account-b"}))
		for i := 1; i < len(everything); i++ {
			Expect(everything[i].Position).To(BeNumerically(">", everything[i-1].Position))
		}
		after := collect(store.ReadAll(ctx, &mire.ReadOpts{After: everything[2].Position}))
		Expect(after).To(Equal(everything[3:]))
	})

	It("stops fetching when the loop breaks", func(ctx SpecContext) {
		appendN(ctx, "account-a", 5)
		n := 0
		for _, err := range store.ReadAll(ctx, &mire.ReadOpts{BatchSize: 2}) {
			Expect(err).NotTo(HaveOccurred())
			n++
			if n == 3 {
				break
			}
		}
		Expect(n).To(Equal(3))
		// pgx's health check borrows idle connections for a moment; a
		// connection the iterator failed to release would stay acquired.
		Eventually(func() int32 { return store.Pool().Stat().AcquiredConns() }).WithContext(ctx).Should(BeZero(), "no connection left behind")
	})

	It("yields a decode error with the event's coordinates and stops", func(ctx SpecContext) {
		appendN(ctx, "account-a", 1)
		_, err := store.Pool().Exec(ctx, `INSERT INTO mire.events (stream_id, version, category, event_id, type, data)
			VALUES ('account-a', 2, 'account', gen_random_uuid(), 'Mystery', '{}')`)
		Expect(err).NotTo(HaveOccurred())
		var errs []error
		n := 0
		for env, err := range store.ReadStream(ctx, "account-a", nil) {
			if err != nil {
				errs = append(errs, err)
				continue
			}
			Expect(env.Version).To(BeEquivalentTo(1))
			n++
		}
		Expect(n).To(Equal(1))
		Expect(errs).To(HaveLen(1))
		Expect(errs[0]).To(MatchError(mire.ErrUnregistered))
		Expect(errs[0].Error()).To(SatisfyAll(ContainSubstring(`"account-a"`), ContainSubstring(`"Mystery"`), ContainSubstring("position")))
	})

	It("carries metadata set on the context to every event of the save", func(ctx SpecContext) {
		md := mire.Metadata{CorrelationID: "req-1", CausationID: "cmd-9", Actor: "alice", Values: map[string]string{"tenant": "t1"}}
		acc, err := mire.LoadOrNew[Account](mire.WithMetadata(ctx, md), store, "m")
		Expect(err).NotTo(HaveOccurred())
		Expect(acc.Record(Opened{Owner: "m"})).To(Succeed())
		Expect(acc.Record(Deposited{Amount: 1})).To(Succeed())
		Expect(store.Save(mire.WithMetadata(ctx, md), acc)).To(Succeed())
		_, err = store.Append(ctx, "account-m", mire.Any, Deposited{Amount: 2}) // no metadata
		Expect(err).NotTo(HaveOccurred())

		envs := collect(store.ReadStream(ctx, "account-m", nil))
		Expect(envs).To(HaveLen(3))
		Expect(envs[0].Metadata).To(Equal(md))
		Expect(envs[1].Metadata).To(Equal(md))
		Expect(envs[2].Metadata.IsZero()).To(BeTrue())
		Expect(mire.MetadataFrom(mire.WithMetadata(ctx, md))).To(Equal(md))
	})

	It("refuses a bad stream id or category with a clear error", func(ctx SpecContext) {
		Expect(onlyError(store.ReadStream(ctx, "bad\x01id", nil))).To(MatchError(mire.ErrInvalidID))
		Expect(onlyError(store.ReadCategory(ctx, "Not A Category", nil))).To(MatchError(ContainSubstring(`category "Not A Category"`)))
	})
})

func versions(envs []mire.Envelope) []int64 {
	out := make([]int64, len(envs))
	for i, e := range envs {
		out[i] = e.Version
	}
	return out
}

func streams(envs []mire.Envelope) []string {
	out := make([]string, len(envs))
	for i, e := range envs {
		out[i] = e.StreamID
	}
	return out
}

// onlyError runs seq to its end and returns the one error it yielded,
// failing if it yielded anything else.
func onlyError(seq func(func(mire.Envelope, error) bool)) error {
	var errs []error
	events := 0
	for _, err := range seq {
		if err != nil {
			errs = append(errs, err)
		} else {
			events++
		}
	}
	Expect(events).To(BeZero(), "events yielded")
	Expect(errs).To(HaveLen(1), "errors yielded")
	return errs[0]
}

var _ = Describe("Envelope", func() {
	It("gives the aggregate id of its stream, as Load takes it", func(ctx SpecContext) {
		store := newStore(db.Pool)
		id := openAccount(ctx, store, 1) + "-with-dashes"
		acc, err := mire.Create[Account](store, id)
		Expect(err).NotTo(HaveOccurred())
		Expect(acc.Record(Opened{Owner: "o"})).To(Succeed())
		Expect(store.Save(ctx, acc)).To(Succeed())
		var ids []string
		for env, err := range store.ReadStream(ctx, acc.StreamID(), nil) {
			Expect(err).NotTo(HaveOccurred())
			ids = append(ids, env.AggregateID())
		}
		Expect(ids).To(Equal([]string{id}))
	})
})
