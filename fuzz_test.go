package mire

// Fuzz targets for what issue 11 asks of every input: registration, Record
// and decoding never panic, refuse with mire's own errors, and the two
// decode paths agree. Their f.Add seeds run with every `go test`; fuzz one
// at a time with, for example:
//
//	go test -run '^$' -fuzz FuzzDecodePaths -fuzztime 2m .

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/mire-go/mire/pgtest"
)

// fuzzAgg is the aggregate the fuzz targets record on; it folds nothing.
type fuzzAgg struct{}

func (*fuzzAgg) Category() string { return "fuzz" }
func (*fuzzAgg) Apply(any)        {}

// fuzzMixed has a field for each kind of value where two decoders could
// disagree. It is at version 2 in fuzzRegistry, with an identity upcaster
// from version 1, so one payload decodes through both paths.
type fuzzMixed struct {
	Event `mire:"entity=fuzz,type=Mixed,version=2,alias=Mixt"`
	fuzzInner
	U8     uint8           `json:"u8"`
	I8     int8            `json:"i8"`
	I64    int64           `json:"i64"`
	U64    uint64          `json:"u64"`
	S      string          `json:"s"`
	F32    float32         `json:"f32"`
	F64    float64         `json:"f64"`
	B      bool            `json:"b"`
	Arr    [2]int          `json:"arr"`
	Slice  []int16         `json:"slice"`
	Any    any             `json:"any"`
	Quoted int64           `json:"quoted,string"`
	Ptr    *string         `json:"ptr"`
	Map    map[string]int  `json:"map"`
	IntMap map[int]string  `json:"intmap"`
	Raw    json.RawMessage `json:"raw"`
	Bytes  []byte          `json:"bytes"`
	Time   time.Time       `json:"time"`
	Nested *fuzzInner      `json:"nested"`
}

type fuzzInner struct {
	Inner string `json:"inner"`
	Sss   int    `json:"sss"`
}

// fuzzRecorded is what FuzzRecord records: free-form strings, keys and JSON
// (Raw keeps numbers as written, as a json.Number would).
type fuzzRecorded struct {
	Event `mire:"entity=fuzz,type=Recorded"`
	S     string            `json:"s"`
	M     map[string]string `json:"m"`
	N     int64             `json:"n" validate:"lte=1000000"`
	F     float64           `json:"f"`
	Raw   json.RawMessage   `json:"raw,omitempty"`
	Any   any               `json:"any,omitempty"`
}

var fuzzRegistry = sync.OnceValue(func() *Registry {
	reg := NewRegistry()
	reg.MustRegister(fuzzMixed{}, fuzzRecorded{})
	if err := reg.RegisterUpcaster("fuzz", "Mixed", 1, func(p map[string]any) (map[string]any, error) { return p, nil }); err != nil {
		panic(err)
	}
	return reg
})

// jsonbText returns valid JSON data as PostgreSQL's jsonb gives it back:
// one value per key (the last), keys ordered by length then bytes, its
// separators. FuzzStoredRows checks appendJSONB against a real server.
func jsonbText(data []byte) ([]byte, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	return appendJSONB(nil, v, 0)
}

// checkDecodePaths decodes stored jsonb text at the current version (the
// fast path) and at version 1 (the upcast path, identity upcaster) and
// fails t unless both succeed with equal values or both fail.
func checkDecodePaths(t *testing.T, stored []byte) {
	t.Helper()
	reg := fuzzRegistry()
	fast, _, fastErr := reg.decode("fuzz", "Mixed", 2, stored)
	upcast, _, upcastErr := reg.decode("fuzz", "Mixed", 1, stored)
	switch {
	case (fastErr == nil) != (upcastErr == nil):
		t.Fatalf("decode paths disagree on %s:\nfast path:   %v\nupcast path: %v", stored, fastErr, upcastErr)
	case fastErr == nil && !reflect.DeepEqual(fast, upcast):
		t.Fatalf("decode paths disagree on %s:\nfast path:   %#v\nupcast path: %#v", stored, fast, upcast)
	}
}

var decodeSeeds = []string{
	`{"u8": 300}`, `{"i8": 200}`, `{"i8": -129}`, `{"s": 5}`, `{"f32": 1e39}`, `{"f64": 1e400}`,
	`{"arr": [1, 2, 3]}`, `{"arr": [7]}`, `{"S": "upper", "s": "lower"}`, `{"sſſ": 1, "ſss": 2}`,
	`{"K": 1, "k": 2}`, `{"INNER": "a", "inner": "b"}`, `{"any": {"n": 1.5, "big": 12345678901234567890, "l": [1, "two", null]}}`,
	`{"quoted": "9007199254740993"}`, `{"quoted": 5}`, `{"ptr": null, "map": {"a": 1}}`, `{"intmap": {"1": "a", "x": "b"}}`,
	`{"raw": {"b": [1, 2.50, "x"], "a": null}}`, `{"bytes": "AAEC"}`, `{"bytes": "!"}`, `{"time": "2024-02-29T23:59:59.123456789+01:00"}`,
	`{"time": "yesterday"}`, `{"nested": {"inner": "x"}, "inner": "promoted"}`, `{"u64": 18446744073709551615}`, `{"u64": -1}`,
	`{"slice": [1, 32768]}`, `{"b": "true"}`, `{"s": "\u00e9\n\u001f\"\\"}`, `{"a": 1, "a": 2}`, `null`, `[1, 2]`, `"text"`, `{}`, `{"s": "x"} trailing`, `{`,
}

func FuzzDecodePaths(f *testing.F) {
	for _, s := range decodeSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if json.Valid(data) {
			stored, err := jsonbText(data)
			if err != nil {
				t.Fatalf("valid JSON %q cannot be written as jsonb text: %v", data, err)
			}
			data = stored
		}
		checkDecodePaths(t, data)
	})
}

// FuzzEntityName: the hand-written check of a category agrees with the
// entity grammar's regexp, which tags and error messages use.
func FuzzEntityName(f *testing.F) {
	for _, s := range []string{"", "a", "account", "order_line2", "Account", "1a", "_a", "a-b", "a b", "é",
		strings.Repeat("a", 63), strings.Repeat("a", 64), "a\n", "z9_", "{", "`"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if got, want := isEntityName(s), entityName.MatchString(s); got != want {
			t.Fatalf("isEntityName(%q) = %v, the grammar %s says %v", s, got, entityName, want)
		}
	})
}

func FuzzRecord(f *testing.F) {
	f.Add("plain", "key", int64(1), 1.5, []byte(`{"a": [1, "b"]}`))
	f.Add("a\x00b", "k", int64(2), 0.0, []byte(nil))
	f.Add("s", "k\x00", int64(3), 0.0, []byte(`"\u0000"`))
	f.Add("\\u0000", `\ud800`, int64(4), math.Copysign(0, -1), []byte(`{"s": "\ud800"}`))
	f.Add("\xff\xfe", "<&>", int64(2000000), 1e308, []byte(`{"s": "\ud83d\ude00"}`))
	f.Add("", "", int64(-1), 0.0, []byte(`[[[[[[[[[[]]]]]]]]]]`))
	f.Add("\u2028", "\t", int64(0), 1e-320, []byte(`1e999999`))
	f.Add("1e5", "2E-5", int64(0), 1e300, []byte(`[0e1073741823, 1e131071, -0.1e-16383]`))
	reg := fuzzRegistry()
	f.Fuzz(func(t *testing.T, s, key string, n int64, x float64, raw []byte) {
		event := fuzzRecorded{S: s, M: map[string]string{key: s}, N: n, F: x}
		if json.Valid(raw) {
			event.Raw = raw
			_ = json.Unmarshal(raw, &event.Any)
		}
		root := &Root[fuzzAgg]{ID: "x", category: "fuzz", registry: reg}
		err := root.Record(event)
		var verr *ValidationError
		switch {
		case err != nil && !errors.Is(err, ErrInvalidEvent) && !errors.As(err, &verr):
			t.Fatalf("Record refused with an error of no kind mire names: %v", err)
		case err != nil:
			return
		}
		stored, err := jsonbText(root.pending[0].data)
		if err != nil {
			t.Fatalf("recorded payload %s is not valid JSON: %v", root.pending[0].data, err)
		}
		if _, _, err := reg.decode("fuzz", "Recorded", 1, stored); err != nil {
			t.Fatalf("recorded payload %s does not load back: %v", stored, err)
		}
	})
}

// fuzzFieldTypes are the payload field types FuzzRegisterTags builds
// events with.
var fuzzFieldTypes = []reflect.Type{
	reflect.TypeFor[int](), reflect.TypeFor[string](), reflect.TypeFor[[]string](), reflect.TypeFor[map[string]int](),
	reflect.TypeFor[*fuzzInner](), reflect.TypeFor[fuzzInner](), reflect.TypeFor[[2]float32](), reflect.TypeFor[any](),
	reflect.TypeFor[time.Time](), reflect.TypeFor[[]*fuzzInner](), reflect.TypeFor[map[string][]int](), reflect.TypeFor[bool](),
	reflect.TypeFor[uint8](), reflect.TypeFor[json.RawMessage](), reflect.TypeFor[Event](),
}

func FuzzRegisterTags(f *testing.F) {
	f.Add("entity=order,type=Placed", "amount", "gte=0", uint8(0))
	f.Add("entity=order,type=Placed,version=3,alias=Old|Older", "-", "", uint8(1))
	f.Add("entity=order,type=X,version=400000000", "a,omitempty", "gtx=0", uint8(0))
	f.Add("entity=order,type=X,version=4294967297", "a,string", "gt=abc", uint8(0))
	f.Add("entity=order,type=X", "lines", "dive,gt=abc", uint8(2))
	f.Add("entity=order,type=X", "m", "dive,keys,lenx=3,endkeys,gt=0", uint8(3))
	f.Add("entity=order,type=X", "p", "omitempty,required_if=F 1 2", uint8(4))
	f.Add("entity=order,type=X", "", "dive", uint8(0))
	f.Add(" entity = order , type = X ", "-,", "required,oneof=a b", uint8(1))
	f.Add("entity=order,,type=X", "x", "unique=Inner", uint8(9))
	f.Add("entity=order,type=X", "t", "gt", uint8(8))
	f.Add("entity=order,type=X", "e", "required", uint8(14))
	f.Fuzz(func(t *testing.T, mireTag, jsonTag, validateTag string, kind uint8) {
		typ := reflect.StructOf([]reflect.StructField{
			{Name: "Event", Type: eventMarker, Anonymous: true, Tag: reflect.StructTag("mire:" + strconv.Quote(mireTag))},
			{Name: "F", Type: fuzzFieldTypes[int(kind)%len(fuzzFieldTypes)],
				Tag: reflect.StructTag("json:" + strconv.Quote(jsonTag) + " validate:" + strconv.Quote(validateTag))},
		})
		reg := NewRegistry()
		err := reg.Register(reflect.New(typ).Interface())
		var rerr *RegistrationError
		switch {
		case err != nil && !errors.As(err, &rerr):
			t.Fatalf("Register failed with %T, not *RegistrationError: %v", err, err)
		case err != nil:
			return
		}
		et := reg.state.Load().byType[typ]
		root := &Root[fuzzAgg]{ID: "x", category: et.tag.Entity, registry: reg}
		for _, event := range []reflect.Value{reflect.New(typ).Elem(), sampleValue(typ)} {
			err := root.Record(event.Interface())
			var verr *ValidationError
			if err != nil && !errors.Is(err, ErrInvalidEvent) && !errors.As(err, &verr) {
				t.Fatalf("Record of a registered type failed with an error of no kind mire names: %v", err)
			}
		}
	})
}

func FuzzDecodeEnvelope(f *testing.F) {
	for i, s := range decodeSeeds {
		f.Add("fuzz", "Mixed", i%4, []byte(s), []byte(`{"actor": "a", "values": {"k": "v"}}`))
	}
	f.Add("fuzz", "Mixt", 1, []byte(`{}`), []byte(`null`))
	f.Add("fuzz", "Recorded", 1, []byte(`{"n": 1}`), []byte(`[1]`))
	f.Add("fuzz", "Recorded", -2147483648, []byte(`{"n": 1}`), []byte(`{"values": {"k": 1}}`))
	f.Add("", "", 0, []byte(nil), []byte(nil))
	store := &Store{registry: fuzzRegistry()}
	f.Fuzz(func(t *testing.T, category, typ string, schema int, raw, metadata []byte) {
		env := Envelope{StreamID: category + "-1", Category: category, Type: typ, SchemaVersion: schema, Raw: raw}
		err := store.decodeEnvelope(&env, metadata)
		var derr *DecodeError
		if err != nil && !errors.As(err, &derr) {
			t.Fatalf("decodeEnvelope failed with %T, not *DecodeError: %v", err, err)
		}
	})
}

// fuzzDatabase starts a throwaway server (or uses TEST_DATABASE_URL) with a
// fresh migrated database for one fuzz target, torn down when it ends.
func fuzzDatabase(f *testing.F) *pgxpool.Pool {
	ctx := context.Background()
	srv, err := pgtest.Start(ctx, pgtest.EnvTestDatabase)
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { _ = srv.Stop() })
	url, drop, err := pgtest.NewDatabase(ctx, srv.URL())
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { _ = drop(ctx) })
	pool, err := pgxpool.New(ctx, url)
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(pool.Close)
	return pool
}

// FuzzStoredRows inserts rows by hand, as older code or another program
// might have written them, and loads them: Load and ReadStream never panic,
// fail only with mire's errors and agree with each other. It also checks
// the two decode paths on the text jsonb really gives back, that
// appendJSONB writes that text exactly as PostgreSQL does, and that
// numericFits agrees with PostgreSQL on every JSON number.
func FuzzStoredRows(f *testing.F) {
	for i, s := range decodeSeeds {
		f.Add("Mixed", int32(i%4), s, `{"actor": "a"}`)
	}
	f.Add("Mixt", int32(1), `{"s": "x"}`, `null`)
	f.Add("Recorded", int32(1), `{"n": "many"}`, `{"values": {"k": 1}}`)
	f.Add("Gone", int32(1), `{}`, `{}`)
	f.Add("Recorded", int32(0), `{"n": 1}`, `[]`)
	f.Add("Mixed", int32(2), `{"s": "\ud83d\ude00 \u00e9 \u001f \t", "any": [1.0, 1e2, -0, 0.1e-5]}`, `{}`)
	for _, num := range []string{"1e131071", "1e131072", "-0.1e-16383", "0.1e-16382", "0e1073741823", "0e1073741822",
		"1E-16383", "123.456e2", "0.0000e-16380", "-0", "1e+0000000000000000000012"} {
		f.Add("Mixed", int32(2), num, `{}`)
	}
	pool := fuzzDatabase(f)
	store, err := New(pool, &Config{Registry: fuzzRegistry()})
	if err != nil {
		f.Fatal(err)
	}
	var n atomic.Int64
	f.Fuzz(func(t *testing.T, typ string, schema int32, data, metadata string) {
		ctx := context.Background()
		if num := bytes.Trim([]byte(data), " \t\r\n"); json.Valid(num) && len(num) > 0 && (num[0] == '-' || num[0] >= '0' && num[0] <= '9') {
			_, err := pool.Exec(ctx, `SELECT $1::jsonb`, data)
			if (err == nil) != numericFits(num) {
				t.Fatalf("numericFits(%s) = %v, but PostgreSQL says %v", num, numericFits(num), err)
			}
		}
		id := fmt.Sprintf("%d-%d", time.Now().UnixNano(), n.Add(1))
		stream := StreamID("fuzz", id)
		var stored []byte
		err := pool.QueryRow(ctx, `WITH s AS (INSERT INTO mire.streams (stream_id, category, version) VALUES ($1, 'fuzz', 1))
INSERT INTO mire.events (stream_id, version, category, event_id, type, schema_version, data, metadata)
VALUES ($1, 1, 'fuzz', gen_random_uuid(), $2, $3, $4::jsonb, $5::jsonb) RETURNING data::text`,
			stream, typ, schema, data, metadata).Scan(&stored)
		if err != nil {
			return // not a row Postgres stores (not JSON, a NUL, a bad type name)
		}
		if again, err := jsonbText(stored); err != nil || !bytes.Equal(again, stored) {
			t.Fatalf("appendJSONB does not write jsonb's text:\njsonb:       %s\nappendJSONB: %s (%v)", stored, again, err)
		}
		checkDecodePaths(t, stored)

		_, loadErr := Load[fuzzAgg](ctx, store, id)
		var readErr error
		for _, err := range store.ReadStream(ctx, stream, nil) {
			if err != nil {
				readErr = err
			}
		}
		var derr *DecodeError
		metadataFits := json.Unmarshal([]byte(metadata), &Metadata{}) == nil // Load reads no metadata
		switch {
		case !metadataFits && !errors.As(readErr, &derr):
			t.Fatalf("ReadStream of metadata %s that is not Metadata gave %v, not a *DecodeError", metadata, readErr)
		case !metadataFits:
		case (loadErr == nil) != (readErr == nil):
			t.Fatalf("Load and ReadStream disagree on %s %d %s / %s: %v / %v", typ, schema, stored, metadata, loadErr, readErr)
		case loadErr != nil && !errors.As(loadErr, &derr):
			t.Fatalf("Load failed with an error that is not a *DecodeError: %v", loadErr)
		case readErr != nil && !errors.As(readErr, &derr):
			t.Fatalf("ReadStream failed with an error that is not a *DecodeError: %v", readErr)
		}
	})
}
