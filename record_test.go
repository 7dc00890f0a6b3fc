package mire_test

import (
	"encoding/json"
	"errors"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/mire-go/mire"
	"github.com/mire-go/mire/internal/mtest"
)

// Noted carries the free-form values whose encoding Record must check:
// strings, map keys, and JSON of any shape.
type Noted struct {
	mire.Event `mire:"entity=account,type=Noted"`
	Note       string            `json:"note"`
	Tags       map[string]string `json:"tags,omitempty"`
	Tree       any               `json:"tree,omitempty"`
}

func init() { mire.MustRegister(Noted{}) }

// nested returns depth arrays nested in one another: [[[...]]].
func nested(depth int) any {
	var v any = []any{}
	for range depth - 1 {
		v = []any{v}
	}
	return v
}

// Wrapped holds any value; what validator finds inside is known only when
// Record validates it.
type Wrapped struct {
	mire.Event `mire:"entity=account,type=Wrapped"`
	Payload    any `json:"payload"`
}

func init() { mire.MustRegister(Wrapped{}) }

// badlyTagged is not an event: Register never sees its tags.
type badlyTagged struct {
	N int `json:"n" validate:"gtx=0"`
}

var _ = Describe("Records that could not be stored exactly", func() {
	var store *mire.Store
	BeforeEach(func() { store = newStore(db.Pool) })

	DescribeTable("are refused by Record and Append with ErrInvalidEvent naming the field",
		func(ctx SpecContext, event Noted, problem string) {
			acc, err := mire.LoadOrNew[Account](ctx, store, mtest.Unique("acc"))
			Expect(err).NotTo(HaveOccurred())
			err = acc.Record(event)
			Expect(errors.Is(err, mire.ErrInvalidEvent)).To(BeTrue(), "%v", err)
			Expect(err).To(MatchError(ContainSubstring(problem)))
			Expect(acc.Pending()).To(BeEmpty())
			Expect(acc.State.Applied).To(BeZero(), "nothing applied")

			stream := mire.StreamID("account", mtest.Unique("acc"))
			_, err = store.Append(ctx, stream, mire.Any, event)
			Expect(errors.Is(err, mire.ErrInvalidEvent)).To(BeTrue(), "%v", err)
			Expect(err).To(MatchError(ContainSubstring(problem)))
			Expect(mtest.Count(ctx, db.Pool, "events", "stream_id = $1", stream)).To(BeZero())
		},
		Entry("a NUL in a string", Noted{Note: "a\x00b"},
			`mire: invalid event: mire_test.Noted field note: string "a\u0000b" holds \u0000 (NUL), which PostgreSQL's jsonb cannot store`),
		Entry("a NUL in a map key", Noted{Tags: map[string]string{"k\x00": "v"}},
			`mire_test.Noted field tags: key "k\u0000" holds \u0000 (NUL)`),
		Entry("a NUL in a map value", Noted{Tags: map[string]string{"k": "\x00"}},
			`mire_test.Noted field tags.k: string "\u0000" holds \u0000 (NUL)`),
		Entry("a NUL deep in free-form JSON", Noted{Tree: map[string]any{"a": []any{1, "x\x00"}}},
			`mire_test.Noted field tree.a[1]: string "x\u0000" holds \u0000 (NUL)`),
		Entry("a lone surrogate in raw JSON", Noted{Tree: json.RawMessage(`{"s": "\ud800"}`)},
			`mire_test.Noted field tree.s: string "\ud800" holds \ud800 without the other half of its surrogate pair`),
		Entry("a number beyond numeric's digits before the point", Noted{Tree: json.RawMessage(`{"n": 1e131072}`)},
			`mire_test.Noted field tree.n: number 1e131072 is outside the range of PostgreSQL's numeric`),
		Entry("a number beyond numeric's digits after the point", Noted{Tree: json.Number("-0.1e-16383")},
			`mire_test.Noted field tree: number -0.1e-16383 is outside the range of PostgreSQL's numeric`),
		Entry("an exponent numeric refuses even for zero", Noted{Tree: json.Number("0e1073741823")},
			`mire_test.Noted field tree: number 0e1073741823 is outside the range`),
		Entry("nesting deeper than the decoder allows", Noted{Tree: nested(10000)},
			`mire_test.Noted field tree[0][0][0]...: nesting deeper than 10000 levels, which encoding/json cannot decode`),
	)

	It("refuses, without a panic, a value in an interface field whose validate tags cannot run", func(ctx SpecContext) {
		acc, err := mire.LoadOrNew[Account](ctx, store, mtest.Unique("acc"))
		Expect(err).NotTo(HaveOccurred())
		err = acc.Record(Wrapped{Payload: badlyTagged{N: 1}})
		Expect(errors.Is(err, mire.ErrInvalidEvent)).To(BeTrue(), "%v", err)
		Expect(err).To(MatchError(ContainSubstring("validate mire_test.Wrapped: Undefined validation function 'gtx' on field 'N'")))
		Expect(acc.Pending()).To(BeEmpty())
	})

	It("stores and loads what comes up to the limits, and look-alikes of what is refused", func(ctx SpecContext) {
		acc, err := mire.LoadOrNew[Account](ctx, store, mtest.Unique("acc"))
		Expect(err).NotTo(HaveOccurred())
		Expect(acc.Record(Noted{Note: `\u0000 is not NUL`, Tags: map[string]string{`\u0000`: `\ud800`}, Tree: nested(9999)})).To(Succeed())
		Expect(acc.Record(Noted{Note: "1e131072 in a string", Tree: map[string]any{"edge": json.Number("1e-16383"), "zero": json.Number("0e99999")}})).To(Succeed())
		Expect(store.Save(ctx, acc)).To(Succeed())
		var got []any
		for env, err := range store.ReadStream(ctx, acc.StreamID(), nil) {
			Expect(err).NotTo(HaveOccurred())
			got = append(got, env.Data)
		}
		Expect(got).To(Equal([]any{
			Noted{Note: `\u0000 is not NUL`, Tags: map[string]string{`\u0000`: `\ud800`}, Tree: nested(9999)},
			Noted{Note: "1e131072 in a string", Tree: map[string]any{"edge": 1e-16383, "zero": 0.0}},
		}))
	})

	DescribeTable("a NUL in metadata is refused by Save and Append, naming the field, and nothing is written",
		func(ctx SpecContext, md mire.Metadata, problem string) {
			ctx2 := mire.WithMetadata(ctx, md)
			acc, err := mire.LoadOrNew[Account](ctx, store, mtest.Unique("acc"))
			Expect(err).NotTo(HaveOccurred())
			Expect(acc.Record(Deposited{Amount: 1})).To(Succeed())
			err = store.Save(ctx2, acc)
			Expect(errors.Is(err, mire.ErrInvalidEvent)).To(BeTrue(), "%v", err)
			Expect(err).To(MatchError(ContainSubstring(problem)))
			Expect(acc.Pending()).To(HaveLen(1), "the Root is unchanged")
			Expect(acc.Version).To(BeZero())

			_, err = store.Append(ctx2, acc.StreamID(), mire.Any, Deposited{Amount: 1})
			Expect(err).To(MatchError(ContainSubstring(problem)))
			Expect(mtest.Count(ctx, db.Pool, "events", "stream_id = $1", acc.StreamID())).To(BeZero())
		},
		Entry("in the actor", mire.Metadata{Actor: "ada\x00"}, `mire: invalid event: metadata actor "ada\x00" holds a NUL character`),
		Entry("in the correlation id", mire.Metadata{CorrelationID: "\x00"}, `metadata correlation id "\x00" holds a NUL character`),
		Entry("in the causation id", mire.Metadata{CausationID: "\x00"}, `metadata causation id "\x00" holds a NUL character`),
		Entry("in a key", mire.Metadata{Values: map[string]string{"a\x00": "b"}}, `metadata key "a\x00" holds a NUL character`),
		Entry("in a value", mire.Metadata{Values: map[string]string{"a": "b\x00"}}, `metadata value "b\x00" (key "a") holds a NUL character`),
	)
})
