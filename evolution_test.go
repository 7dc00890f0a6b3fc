package mire_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/mire-go/mire"
	"github.com/mire-go/mire/internal/mtest"
)

// The profile events, as they stand after years of changes.
//
// ProfileCreated was stored as "Registered" until it was renamed (declared
// with RegisterAlias below). At version 1 it was {"user": 9007199254740993,
// "email": "..."}; version 2 added the account's id, its start time and an
// avatar (base64), so that every field kind json decodes by hand is upcast
// too.
type ProfileCreated struct {
	mire.Event `mire:"entity=profile,type=Created,version=2"`
	User       int64          `json:"user"`
	Email      string         `json:"email"`
	Account    uuid.UUID      `json:"account"`
	Since      time.Time      `json:"since"`
	Avatar     []byte         `json:"avatar"`
	Extra      map[string]any `json:"extra,omitempty"`
}

// NameChanged was "Renamed" (the alias tag key). Version 1 held one "name";
// version 2 split it into "first" and "last"; version 3 renamed "last" to
// "family" and gained "locale".
type NameChanged struct {
	mire.Event `mire:"entity=profile,type=NameChanged,version=3,alias=Renamed"`
	First      string `json:"first"`
	Family     string `json:"family"`
	Locale     string `json:"locale"`
}

var profileSince = time.Date(2020, 1, 2, 3, 4, 5, 0, time.UTC)

func init() {
	mire.MustRegister(ProfileCreated{}, NameChanged{})
	mire.MustRegisterAlias("profile", "Registered", ProfileCreated{})
	mire.MustRegisterUpcaster("profile", "Created", 1, func(p map[string]any) (map[string]any, error) {
		p["account"] = uuid.NewSHA1(uuid.NameSpaceOID, []byte(p["email"].(string))).String()
		p["since"] = profileSince.Format(time.RFC3339)
		p["avatar"] = "AAEC" // base64 of 0, 1, 2
		return p, nil
	})
	mire.MustRegisterUpcaster("profile", "NameChanged", 1, func(p map[string]any) (map[string]any, error) {
		first, last, _ := strings.Cut(p["name"].(string), " ")
		return map[string]any{"first": first, "last": last}, nil
	})
	mire.MustRegisterUpcaster("profile", "NameChanged", 2, func(p map[string]any) (map[string]any, error) {
		p["family"] = p["last"]
		delete(p, "last")
		if _, ok := p["locale"]; !ok {
			p["locale"] = "en"
		}
		return p, nil
	})
}

type Profile struct {
	User    int64
	Email   string
	Names   []string
	Locales []string
}

func (*Profile) Category() string { return "profile" }

func (p *Profile) Apply(event any) {
	switch e := event.(type) {
	case ProfileCreated:
		p.User, p.Email = e.User, e.Email
	case NameChanged:
		p.Names = append(p.Names, e.First+" "+e.Family)
		p.Locales = append(p.Locales, e.Locale)
	}
}

// rawEvent is an event as older code stored it.
type rawEvent struct {
	typ    string
	schema int
	data   string
}

// insertRaw appends events to a stream with plain SQL, as older code (or
// another program) would have written them, and returns their positions.
func insertRaw(ctx context.Context, pool *pgxpool.Pool, streamID string, events ...rawEvent) []int64 {
	var positions []int64
	category, _, _ := strings.Cut(streamID, "-")
	Expect(pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		var version int64
		if err := tx.QueryRow(ctx, `SELECT coalesce(max(version), 0) FROM mire.events WHERE stream_id = $1`, streamID).Scan(&version); err != nil {
			return err
		}
		for _, e := range events {
			version++
			var position int64
			if err := tx.QueryRow(ctx, `INSERT INTO mire.events (stream_id, version, category, event_id, type, schema_version, data)
VALUES ($1, $2, $3, gen_random_uuid(), $4, $5, $6::jsonb) RETURNING position`,
				streamID, version, category, e.typ, e.schema, e.data).Scan(&position); err != nil {
				return err
			}
			positions = append(positions, position)
		}
		_, err := tx.Exec(ctx, `INSERT INTO mire.streams (stream_id, category, version) VALUES ($1, $2, $3)
ON CONFLICT (stream_id) DO UPDATE SET version = EXCLUDED.version`, streamID, category, version)
		return err
	})).To(Succeed())
	return positions
}

var _ = Describe("Schema evolution", func() {
	var store *mire.Store
	BeforeEach(func() { store = newStore(db.Pool) })

	It("loads version 1 events written with raw SQL, under old type names, as current structs", func(ctx SpecContext) {
		id := mtest.Unique("p")
		stream := mire.StreamID("profile", id)
		insertRaw(ctx, db.Pool, stream,
			rawEvent{"Registered", 1, `{"user": 9007199254740993, "email": "ada@example.org"}`},
			rawEvent{"Renamed", 1, `{"name": "Ada Lovelace"}`},
		)

		p, err := mire.Load[Profile](ctx, store, id)
		Expect(err).NotTo(HaveOccurred())
		Expect(p.Version).To(BeEquivalentTo(2))
		Expect(p.State).To(Equal(Profile{User: 9007199254740993, Email: "ada@example.org", Names: []string{"Ada Lovelace"}, Locales: []string{"en"}}),
			"a 64-bit id keeps every digit through the upcast")

		var envs []mire.Envelope
		for env, err := range store.ReadStream(ctx, stream, nil) {
			Expect(err).NotTo(HaveOccurred())
			envs = append(envs, env)
		}
		Expect(envs).To(HaveLen(2))
		Expect(envs[0].Type).To(Equal("Registered"), "the envelope shows the type as stored")
		Expect(envs[0].SchemaVersion).To(Equal(1))
		Expect(envs[0].Data).To(Equal(ProfileCreated{
			User: 9007199254740993, Email: "ada@example.org",
			Account: uuid.NewSHA1(uuid.NameSpaceOID, []byte("ada@example.org")),
			Since:   profileSince, Avatar: []byte{0, 1, 2},
		}))
		Expect(envs[1].Data).To(Equal(NameChanged{First: "Ada", Family: "Lovelace", Locale: "en"}))
	})

	It("folds a stream that mixes versions, old names and new events", func(ctx SpecContext) {
		id := mtest.Unique("p")
		stream := mire.StreamID("profile", id)
		insertRaw(ctx, db.Pool, stream,
			rawEvent{"Registered", 1, `{"user": 7, "email": "g@example.org"}`},
			rawEvent{"Renamed", 1, `{"name": "Grace Brewster"}`},
			rawEvent{"NameChanged", 2, `{"first": "Grace", "last": "Murray"}`},
			rawEvent{"Renamed", 2, `{"first": "Grace", "last": "Hopper", "locale": "en-US"}`},
			rawEvent{"NameChanged", 3, `{"first": "Amazing", "family": "Grace", "locale": "en-GB"}`},
		)
		p, err := mire.Load[Profile](ctx, store, id)
		Expect(err).NotTo(HaveOccurred())
		Expect(p.Record(NameChanged{First: "Rear Admiral", Family: "Hopper", Locale: "en-US"})).To(Succeed())
		Expect(store.Save(ctx, p)).To(Succeed())

		again, err := mire.Load[Profile](ctx, store, id)
		Expect(err).NotTo(HaveOccurred())
		Expect(again.Version).To(BeEquivalentTo(6))
		Expect(again.State).To(Equal(Profile{
			User: 7, Email: "g@example.org",
			Names:   []string{"Grace Brewster", "Grace Murray", "Grace Hopper", "Amazing Grace", "Rear Admiral Hopper"},
			Locales: []string{"en", "en", "en-US", "en-GB", "en-US"},
		}))

		var schemas []int
		for env, err := range store.ReadStream(ctx, stream, nil) {
			Expect(err).NotTo(HaveOccurred())
			schemas = append(schemas, env.SchemaVersion)
		}
		Expect(schemas).To(Equal([]int{1, 1, 2, 2, 3, 3}), "new events are stored at the current version")
	})

	It("upcasts in category reads and in projections", func(ctx SpecContext) {
		_, fresh := db.Fresh(ctx)
		store := newStore(fresh)
		insertRaw(ctx, fresh, "profile-x", rawEvent{"Renamed", 1, `{"name": "Alan Turing"}`})
		var read []any
		for env, err := range store.ReadCategory(ctx, "profile", nil) {
			Expect(err).NotTo(HaveOccurred())
			read = append(read, env.Data)
		}
		Expect(read).To(Equal([]any{NameChanged{First: "Alan", Family: "Turing", Locale: "en"}}))
		projected := project(ctx, store, "profile", 1)
		Expect(projected[0].Data).To(Equal(NameChanged{First: "Alan", Family: "Turing", Locale: "en"}))
		Expect(projected[0].SchemaVersion).To(Equal(1))
	})

	It("decodes an upcast payload exactly as json decodes a current one", func(ctx SpecContext) {
		current := `{"user": 9223372036854775807, "email": "e@example.org", "account": "6ba7b812-9dad-11d1-80b4-00c04fd430c8",
"since": "2024-02-29T23:59:59.123456789+01:00", "avatar": "AAEC", "extra": {"n": 1.5, "list": [1, "two"], "big": 12345678901}}`
		reg := mire.NewRegistry()
		Expect(reg.Register(ProfileCreated{})).To(Succeed())
		Expect(reg.RegisterUpcaster("profile", "Created", 1, func(p map[string]any) (map[string]any, error) { return p, nil })).To(Succeed())
		_, fresh := db.Fresh(ctx)
		store, err := mire.New(fresh, &mire.Config{Registry: reg})
		Expect(err).NotTo(HaveOccurred())
		insertRaw(ctx, fresh, "profile-z", rawEvent{"Created", 2, current}, rawEvent{"Created", 1, current})

		var got []any
		for env, err := range store.ReadStream(ctx, "profile-z", nil) {
			Expect(err).NotTo(HaveOccurred())
			got = append(got, env.Data)
		}
		Expect(got).To(HaveLen(2))
		Expect(got[1]).To(Equal(got[0]), "the upcast path (version 1) and the fast path (version 2) agree")
		Expect(got[0].(ProfileCreated).User).To(BeEquivalentTo(9223372036854775807))
	})

	Describe("decode errors", func() {
		// Doc is at version 3 in each spec's own registry; its history is
		// written with raw SQL into a fresh database, so no other spec reads
		// what these registries cannot decode.
		type Doc struct {
			mire.Event `mire:"entity=doc,type=Written,version=3"`
			Pages      int64 `json:"pages"`
		}
		errBoom := errors.New("boom")
		var (
			reg   *mire.Registry
			store *mire.Store
			pool  *pgxpool.Pool
		)
		BeforeEach(func(ctx SpecContext) {
			reg = mire.NewRegistry()
			Expect(reg.Register(Doc{})).To(Succeed())
			_, pool = db.Fresh(ctx)
			var err error
			store, err = mire.New(pool, &mire.Config{Registry: reg})
			Expect(err).NotTo(HaveOccurred())
		})

		DescribeTable("names the stream, position, type, stored and target versions, on Load and on reads",
			func(ctx SpecContext, setup func(*mire.Registry), stored rawEvent, target int, cause string) {
				setup(reg)
				positions := insertRaw(ctx, pool, "doc-d1", rawEvent{"Written", 3, `{"pages": 1}`}, stored)

				check := func(err error) {
					var de *mire.DecodeError
					Expect(errors.As(err, &de)).To(BeTrue(), "%v", err)
					Expect(errors.Is(err, mire.ErrDecode)).To(BeTrue())
					Expect(de.StreamID).To(Equal("doc-d1"))
					Expect(de.Position).To(Equal(positions[1]))
					Expect(de.Version).To(BeEquivalentTo(2))
					Expect(de.Type).To(Equal(stored.typ))
					Expect(de.SchemaVersion).To(Equal(stored.schema))
					Expect(de.TargetVersion).To(Equal(target))
					Expect(de.Error()).To(And(
						ContainSubstring(`stream "doc-d1"`), ContainSubstring(fmt.Sprintf("position %d", positions[1])),
						ContainSubstring(fmt.Sprintf("type %q", stored.typ)),
						ContainSubstring(fmt.Sprintf("stored schema version %d", stored.schema)),
						ContainSubstring(fmt.Sprintf("target version %d", target)),
						ContainSubstring(cause)))
				}
				_, err := mire.Load[DocAggregate](ctx, store, "d1")
				check(err)
				var readErr error
				for _, err := range store.ReadStream(ctx, "doc-d1", nil) {
					if err != nil {
						readErr = err
					}
				}
				check(readErr)
			},
			Entry("a missing step", func(r *mire.Registry) {
				Expect(r.RegisterUpcaster("doc", "Written", 2, func(p map[string]any) (map[string]any, error) { return p, nil })).To(Succeed())
			}, rawEvent{"Written", 1, `{"pages": 1}`}, 3, "no upcaster from version 1 to 2"),
			Entry("an upcaster's error", func(r *mire.Registry) {
				Expect(r.RegisterUpcaster("doc", "Written", 2, func(p map[string]any) (map[string]any, error) { return p, nil })).To(Succeed())
				Expect(r.RegisterUpcaster("doc", "Written", 1, func(map[string]any) (map[string]any, error) { return nil, errBoom })).To(Succeed())
			}, rawEvent{"Written", 1, `{"pages": 1}`}, 3, "upcaster from version 1 to 2: boom"),
			Entry("an upcaster that returns nothing", func(r *mire.Registry) {
				Expect(r.RegisterUpcaster("doc", "Written", 2, func(map[string]any) (map[string]any, error) { return nil, nil })).To(Succeed())
			}, rawEvent{"Written", 2, `{"pages": 1}`}, 3, "upcaster from version 2 to 3 returned a nil payload"),
			Entry("a payload that does not fit after upcasting", func(r *mire.Registry) {
				Expect(r.RegisterUpcaster("doc", "Written", 2, func(p map[string]any) (map[string]any, error) { return p, nil })).To(Succeed())
			}, rawEvent{"Written", 2, `{"pages": "many"}`}, 3, "upcast payload does not fit"),
			Entry("a payload that is not an object", func(r *mire.Registry) {
				Expect(r.RegisterUpcaster("doc", "Written", 2, func(p map[string]any) (map[string]any, error) { return p, nil })).To(Succeed())
			}, rawEvent{"Written", 2, `[1, 2]`}, 3, "payload is not a JSON object"),
			Entry("a current payload that does not fit", func(*mire.Registry) {},
				rawEvent{"Written", 3, `{"pages": "many"}`}, 3, "payload does not fit"),
			Entry("a version newer than the code", func(*mire.Registry) {},
				rawEvent{"Written", 4, `{"pages": 1}`}, 3, "stored schema version 4 is newer"),
			Entry("an unregistered type", func(*mire.Registry) {},
				rawEvent{"Erased", 1, `{}`}, 0, "not registered"),
		)

		It("wraps an upcaster's own error for errors.Is", func(ctx SpecContext) {
			Expect(reg.RegisterUpcaster("doc", "Written", 2, func(p map[string]any) (map[string]any, error) { return p, nil })).To(Succeed())
			Expect(reg.RegisterUpcaster("doc", "Written", 1, func(map[string]any) (map[string]any, error) { return nil, errBoom })).To(Succeed())
			insertRaw(ctx, pool, "doc-d2", rawEvent{"Written", 1, `{}`})
			_, err := mire.Load[DocAggregate](ctx, store, "d2")
			Expect(errors.Is(err, errBoom)).To(BeTrue(), "%v", err)
		})
	})

	Describe("registration", func() {
		type Page struct {
			mire.Event `mire:"entity=doc,type=Paged,version=4,alias=Pager"`
			N          int `json:"n"`
		}
		type Other struct {
			mire.Event `mire:"entity=doc,type=Other"`
		}
		type Foreign struct {
			mire.Event `mire:"entity=book,type=Foreign"`
		}
		same := func(p map[string]any) (map[string]any, error) { return p, nil }
		var reg *mire.Registry
		BeforeEach(func() {
			reg = mire.NewRegistry()
			Expect(reg.Register(Page{}, Other{}, Foreign{})).To(Succeed())
		})

		It("accepts a chain registered upwards or downwards", func() {
			Expect(reg.RegisterUpcaster("doc", "Paged", 2, same)).To(Succeed())
			Expect(reg.RegisterUpcaster("doc", "Paged", 3, same)).To(Succeed())
			Expect(reg.RegisterUpcaster("doc", "Paged", 1, same)).To(Succeed())
			Expect(reg.Check()).To(Succeed())
		})

		It("rejects a duplicate step and changes nothing", func() {
			Expect(reg.RegisterUpcaster("doc", "Paged", 3, same)).To(Succeed())
			err := reg.RegisterUpcaster("doc", "Paged", 3, same)
			var rerr *mire.RegistrationError
			Expect(errors.As(err, &rerr)).To(BeTrue())
			Expect(err).To(MatchError(ContainSubstring("upcaster from version 3 to 4 is already registered")))
			Expect(err.Error()).To(ContainSubstring("Page"))
		})

		It("rejects a step that leaves a gap", func() {
			Expect(reg.RegisterUpcaster("doc", "Paged", 1, same)).To(Succeed())
			Expect(reg.RegisterUpcaster("doc", "Paged", 3, same)).To(MatchError(ContainSubstring(
				"upcaster from version 3 to 4 leaves a gap: the registered steps run from version 1 to 2, so the next step must start at version 2")))
			Expect(reg.RegisterUpcaster("doc", "Paged", 2, same)).To(Succeed())
			Expect(reg.RegisterUpcaster("doc", "Paged", 3, same)).To(Succeed())
		})

		DescribeTable("rejects bad steps",
			func(typ string, from int, fn mire.Upcaster, want string) {
				Expect(reg.RegisterUpcaster("doc", typ, from, fn)).To(MatchError(ContainSubstring(want)))
			},
			Entry("from version 0", "Paged", 0, same, "want 1 <= from < current version 4"),
			Entry("from the current version", "Paged", 4, same, "want 1 <= from < current version 4"),
			Entry("from a version that wraps in 32 bits", "Paged", 1<<32+1, same, "upcaster from version 4294967297: want 1 <= from < current version 4"),
			Entry("a type at version 1", "Other", 1, same, "want 1 <= from < current version 1"),
			Entry("a nil function", "Paged", 1, nil, "upcaster from version 1 is nil"),
			Entry("an alias", "Pager", 1, same, `it is an alias of "Paged"; register the upcaster for "Paged"`),
			Entry("an unregistered type", "Nope", 1, same, `register the event type first`),
		)

		It("reports unfinished chains from Check", func() {
			err := reg.Check()
			Expect(err).To(MatchError(ContainSubstring(`entity "doc" type "Paged" is at version 4 but has no upcasters`)))
			Expect(reg.RegisterUpcaster("doc", "Paged", 1, same)).To(Succeed())
			Expect(reg.Check()).To(MatchError(ContainSubstring(`its upcasters stop at version 2`)))
			Expect(reg.RegisterUpcaster("doc", "Paged", 2, same)).To(Succeed())
			Expect(reg.RegisterUpcaster("doc", "Paged", 3, same)).To(Succeed())
			Expect(reg.Check()).To(Succeed())
		})

		It("declares aliases by call, refusing names taken and foreign entities", func() {
			Expect(reg.RegisterAlias("doc", "Leaf", Page{})).To(Succeed())
			Expect(reg.RegisterAlias("doc", "Leaf", &Page{})).To(Succeed(), "again is a no-op")
			Expect(reg.RegisterAlias("doc", "Leaf", Other{})).To(MatchError(ContainSubstring(`entity "doc" type "Leaf" is already registered by`)))
			Expect(reg.RegisterAlias("doc", "Other", Page{})).To(MatchError(ContainSubstring(`type "Other" is already registered`)))
			Expect(reg.RegisterAlias("doc", "Paged", Page{})).To(MatchError(ContainSubstring(`type "Paged" is already registered`)))
			Expect(reg.RegisterAlias("book", "Leaf", Page{})).To(MatchError(ContainSubstring(`belongs to entity "doc", not "book"`)))
			Expect(reg.RegisterAlias("doc", "bad name", Page{})).To(MatchError(ContainSubstring(`alias "bad name" must match`)))
			Expect(reg.RegisterAlias("doc", "Leaf2", struct{}{})).To(MatchError(mire.ErrUnregistered))
			Expect(reg.Register(Foreign{})).To(Succeed())
		})
	})
})

// Mixed has a field for each case where a decoder could differ from
// encoding/json. It is at version 2 in its spec's registry, with an identity
// upcaster from version 1, so the same stored payload decodes through the
// fast path (at version 2) and the upcast path (at version 1).
type Mixed struct {
	mire.Event `mire:"entity=mixed,type=Mixed,version=2"`
	mixedInner
	U8    uint8           `json:"u8"`
	I8    int8            `json:"i8"`
	S     string          `json:"s"`
	F32   float32         `json:"f32"`
	Arr   [2]int          `json:"arr"`
	Sss   int             `json:"sss"`
	Any   any             `json:"any"`
	Quote int64           `json:"quote,string"`
	Ptr   *int            `json:"ptr"`
	Map   map[string]int  `json:"map"`
	Raw   json.RawMessage `json:"raw"`
}

type mixedInner struct {
	Inner string `json:"inner"`
}

var _ = Describe("Decoding an older schema version", func() {
	DescribeTable("gives what encoding/json gives a current payload, values and errors alike",
		func(ctx SpecContext, payload string) {
			reg := mire.NewRegistry()
			Expect(reg.Register(Mixed{})).To(Succeed())
			Expect(reg.RegisterUpcaster("mixed", "Mixed", 1, func(p map[string]any) (map[string]any, error) { return p, nil })).To(Succeed())
			store, err := mire.New(db.Pool, &mire.Config{Registry: reg})
			Expect(err).NotTo(HaveOccurred())
			var stored string // as jsonb gives it back: one value per key, keys in jsonb's order
			Expect(db.Pool.QueryRow(ctx, `SELECT $1::jsonb::text`, payload).Scan(&stored)).To(Succeed())

			var want Mixed
			wantErr := json.Unmarshal([]byte(stored), &want)
			decode := func(schema int) (data any, err error) { // stored by hand, read back as users read
				stream := "mixed-" + mtest.Unique("d")
				insertRaw(ctx, db.Pool, stream, rawEvent{"Mixed", schema, stored})
				n := 0
				for env, readErr := range store.ReadStream(ctx, stream, nil) {
					data, err = env.Data, readErr
					n++
				}
				Expect(n).To(Equal(1))
				return data, err
			}
			current, currentErr := decode(2)
			upcast, upcastErr := decode(1)
			if wantErr != nil || strings.TrimSpace(stored) == "null" {
				Expect(currentErr).To(HaveOccurred(), "the fast path fails as json does")
				Expect(upcastErr).To(HaveOccurred(), "the upcast path fails as json does")
				return
			}
			Expect(currentErr).NotTo(HaveOccurred())
			Expect(upcastErr).NotTo(HaveOccurred())
			Expect(current).To(Equal(want))
			Expect(upcast).To(Equal(want))
		},
		Entry("300 into uint8", `{"u8": 300}`),
		Entry("200 into int8", `{"i8": 200}`),
		Entry("a number into a string", `{"s": 5}`),
		Entry("1e39 into float32", `{"f32": 1e39}`),
		Entry("a fraction into an integer", `{"i8": 1.5}`),
		Entry("three elements into [2]int", `{"arr": [1, 2, 3]}`),
		Entry("one element into [2]int", `{"arr": [7]}`),
		Entry("case-folded keys", `{"S": "upper", "s": "lower"}`),
		Entry("keys that fold alike but differ in length", `{"sſſ": 1, "ſss": 2}`),
		Entry("numbers into any", `{"any": {"n": 1.5, "big": 12345678901234567890, "list": [1, "two", null]}}`),
		Entry("the string option", `{"quote": "9007199254740993"}`),
		Entry("the string option with a bare number", `{"quote": 5}`),
		Entry("a null pointer and a value", `{"ptr": null, "map": {"a": 1}}`),
		Entry("raw JSON", `{"raw": {"b": [1, 2.50, "x"], "a": null}}`),
		Entry("a promoted field", `{"inner": "promoted"}`),
		Entry("null", `null`),
		Entry("an array", `[1, 2]`),
		Entry("a string", `"text"`),
		Entry("a field of the wrong shape", `{"map": [1]}`),
	)
})

// DocAggregate folds the doc events of the decode-error specs.
type DocAggregate struct{ Applied int }

func (*DocAggregate) Category() string  { return "doc" }
func (d *DocAggregate) Apply(event any) { d.Applied++ }
