package mire

import (
	"bytes"
	"encoding"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/go-playground/validator/v10"
	"github.com/go-viper/mapstructure/v2"
)

// Upcaster turns a stored payload of one schema version into the payload of
// the next version up. It works on the decoded JSON object (numbers arrive
// as json.Number, so large integers keep every digit) and may modify and
// return the map it is given. Returning an error makes the load or read fail
// with a *DecodeError that wraps it.
type Upcaster func(payload map[string]any) (map[string]any, error)

// Registry maps event Go types to their stored (entity, type, version) and
// back. It is safe for concurrent use; lookups take no lock.
//
// Most programs use the default registry through Register and MustRegister;
// NewRegistry gives an isolated one to pass in Config.
type Registry struct {
	mu       sync.Mutex                  // serialises writers; readers use state
	state    atomic.Pointer[registryMap] // copy-on-write, replaced whole on each registration
	validate *validator.Validate
}

// registryMap is one immutable generation of a Registry's contents.
type registryMap struct {
	byType    map[reflect.Type]*eventType
	byName    map[eventName]*eventType // includes aliases
	upcasters map[upcastStep]Upcaster
}

// eventName is the stored identity of an event: its entity and type.
type eventName struct{ entity, typ string }

type upcastStep struct {
	name eventName
	from int
}

// eventType is a registered event: its Go type and compiled tag.
type eventType struct {
	goType reflect.Type
	tag    eventTag
}

// NewRegistry returns an empty registry.
func NewRegistry() *Registry {
	r := &Registry{validate: validator.New(validator.WithRequiredStructEnabled())}
	r.state.Store(&registryMap{
		byType:    map[reflect.Type]*eventType{},
		byName:    map[eventName]*eventType{},
		upcasters: map[upcastStep]Upcaster{},
	})
	return r
}

var defaultRegistry = NewRegistry()

// DefaultRegistry returns the registry used by Register, MustRegister and
// every Store whose Config names no other.
func DefaultRegistry() *Registry { return defaultRegistry }

// Register adds event types to the default registry. See Registry.Register.
func Register(events ...any) error { return defaultRegistry.Register(events...) }

// MustRegister is Register that panics on error, for use in init functions.
func MustRegister(events ...any) {
	if err := Register(events...); err != nil {
		panic(err)
	}
}

// Register adds event types, given as zero values (Opened{}) or pointers to
// them (&Opened{}). Each must be a struct embedding Event with a valid `mire`
// tag, and its (entity, type) and aliases must not be taken by another Go
// type. Its `validate` tags must name validators with parameters they can
// parse (in nested structs, slice and map elements too), and if it has
// fields besides the Event marker, encoding/json must encode at least one
// of them. Registering the same Go type again is a no-op. On error nothing
// is registered.
func (r *Registry) Register(events ...any) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	next := r.state.Load().clone()
	for _, event := range events {
		t := reflect.TypeOf(event)
		if t != nil && t.Kind() == reflect.Pointer {
			if t.Elem().Kind() == reflect.Pointer {
				return &RegistrationError{Type: t, Reason: "a pointer to a pointer is not an event type"}
			}
			t = t.Elem()
		}
		tag, err := parseEventType(t)
		if err != nil {
			return err
		}
		if _, done := next.byType[t]; done {
			continue
		}
		if err := checkEventStruct(r.validate, t); err != nil {
			return err
		}
		et := &eventType{goType: t, tag: tag}
		for _, name := range append([]string{tag.Type}, tag.Aliases...) {
			key := eventName{tag.Entity, name}
			if other, taken := next.byName[key]; taken {
				return &RegistrationError{Type: t, Reason: fmt.Sprintf("entity %q type %q is already registered by %v", key.entity, key.typ, other.goType)}
			}
			next.byName[key] = et
		}
		next.byType[t] = et
	}
	r.state.Store(next)
	return nil
}

// MustRegister is Register that panics on error.
func (r *Registry) MustRegister(events ...any) {
	if err := r.Register(events...); err != nil {
		panic(err)
	}
}

// RegisterUpcaster adds to the default registry. See Registry.RegisterUpcaster.
func RegisterUpcaster(entity, typ string, from int, fn Upcaster) error {
	return defaultRegistry.RegisterUpcaster(entity, typ, from, fn)
}

// MustRegisterUpcaster is RegisterUpcaster that panics on error, for use in
// init functions.
func MustRegisterUpcaster(entity, typ string, from int, fn Upcaster) {
	if err := RegisterUpcaster(entity, typ, from, fn); err != nil {
		panic(err)
	}
}

// RegisterAlias adds to the default registry. See Registry.RegisterAlias.
func RegisterAlias(entity, oldType string, event any) error {
	return defaultRegistry.RegisterAlias(entity, oldType, event)
}

// MustRegisterAlias is RegisterAlias that panics on error, for use in init
// functions.
func MustRegisterAlias(entity, oldType string, event any) {
	if err := RegisterAlias(entity, oldType, event); err != nil {
		panic(err)
	}
}

// RegisterUpcaster adds the step that turns payloads of (entity, typ) stored
// at schema version from into version from+1. Stored payloads below the
// type's current version (its `version` tag key) run through the steps in
// order, v1 -> v2 -> v3, before they are decoded into the struct.
//
// The event type must already be registered under typ (not under an alias:
// aliases share their type's steps), and 1 <= from < its current version.
// Registration rejects, and changes nothing for:
//   - a step already registered (a duplicate);
//   - a step that would leave a gap: the steps of one type always form one
//     unbroken run, so once a type has a step, each new one must extend the
//     run at either end (1->2 and then 2->3, or 2->3 and then 1->2; never
//     1->2 and then 3->4).
//
// A run that stops short of the current version (1->2 registered for a type
// at version 4) cannot be caught step by step, since the missing steps may
// be registered next; Check reports it once registration is complete, and
// loading a payload that needs a missing step is a *DecodeError.
func (r *Registry) RegisterUpcaster(entity, typ string, from int, fn Upcaster) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	next := r.state.Load().clone()
	key := eventName{entity, typ}
	et, ok := next.byName[key]
	switch {
	case !ok:
		return fmt.Errorf("%w: cannot add an upcaster for entity %q type %q: register the event type first", ErrUnregistered, entity, typ)
	case et.tag.Type != typ:
		return &RegistrationError{Type: et.goType, Reason: fmt.Sprintf("upcaster for type %q: it is an alias of %q; register the upcaster for %q", typ, et.tag.Type, et.tag.Type)}
	case fn == nil:
		return &RegistrationError{Type: et.goType, Reason: fmt.Sprintf("upcaster from version %d is nil", from)}
	case from < 1 || from >= et.tag.Version:
		return &RegistrationError{Type: et.goType, Reason: fmt.Sprintf("upcaster from version %d: want 1 <= from < current version %d", from, et.tag.Version)}
	}
	step := upcastStep{key, from}
	if _, dup := next.upcasters[step]; dup {
		return &RegistrationError{Type: et.goType, Reason: fmt.Sprintf("upcaster from version %d to %d is already registered", from, from+1)}
	}
	if lo, hi, has := next.chain(et); has && from != lo-1 && from != hi+1 {
		var want []string
		if lo > 1 {
			want = append(want, strconv.Itoa(lo-1))
		}
		if hi+1 < et.tag.Version {
			want = append(want, strconv.Itoa(hi+1))
		}
		return &RegistrationError{Type: et.goType, Reason: fmt.Sprintf("upcaster from version %d to %d leaves a gap: the registered steps run from version %d to %d, so the next step must start at version %s",
			from, from+1, lo, hi+1, strings.Join(want, " or "))}
	}
	next.upcasters[step] = fn
	r.state.Store(next)
	return nil
}

// chain returns the lowest and highest from-versions of et's registered
// upcaster steps (which RegisterUpcaster keeps unbroken), and whether it has
// any.
func (m *registryMap) chain(et *eventType) (lo, hi int, has bool) {
	name := eventName{et.tag.Entity, et.tag.Type}
	for v := 1; v < et.tag.Version; v++ {
		if _, ok := m.upcasters[upcastStep{name, v}]; ok {
			if !has {
				lo, has = v, true
			}
			hi = v
		}
	}
	return lo, hi, has
}

// RegisterAlias declares oldType, a type name that history of entity was
// written under, as another name of the registered event type of event
// (given as Renamed{} or &Renamed{}): stored events of type oldType then
// load as that Go type, through the same upcasters and versions. The `alias`
// tag key (alias=Old|Older) does the same at registration. The entity must
// be the event's own, and oldType must not name another type or alias of
// the entity. Declaring the same alias again is a no-op.
func (r *Registry) RegisterAlias(entity, oldType string, event any) error {
	t := reflect.TypeOf(event)
	if t != nil && t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	next := r.state.Load().clone()
	et, ok := next.byType[t]
	switch {
	case !ok:
		return fmt.Errorf("%w: cannot add alias %q for %v: register the event type first", ErrUnregistered, oldType, t)
	case et.tag.Entity != entity:
		return &RegistrationError{Type: t, Reason: fmt.Sprintf("alias %q: the event belongs to entity %q, not %q", oldType, et.tag.Entity, entity)}
	case !typeName.MatchString(oldType):
		return &RegistrationError{Type: t, Reason: fmt.Sprintf("alias %q must match %s", oldType, typeName)}
	}
	key := eventName{entity, oldType}
	if other, taken := next.byName[key]; taken {
		if other == et && other.tag.Type != oldType {
			return nil
		}
		return &RegistrationError{Type: t, Reason: fmt.Sprintf("alias %q: entity %q type %q is already registered by %v", oldType, entity, oldType, other.goType)}
	}
	next.byName[key] = et
	r.state.Store(next)
	return nil
}

// Check reports every registered event type whose upcaster chain does not
// reach its current version: a type at version N > 1 needs steps that run
// without a gap up to N-1 (from version 1, or from the oldest version its
// history holds). RegisterUpcaster rejects gaps and duplicates as they come;
// Check finds the chains left unfinished, which only the complete set of
// registrations can show. Call it once after registering, at boot or in a
// test:
//
//	if err := mire.DefaultRegistry().Check(); err != nil { log.Fatal(err) }
func (r *Registry) Check() error {
	state := r.state.Load()
	var errs []error
	for _, et := range state.byType {
		if et.tag.Version == 1 {
			continue
		}
		_, hi, has := state.chain(et)
		switch {
		case !has:
			errs = append(errs, &RegistrationError{Type: et.goType, Reason: fmt.Sprintf("entity %q type %q is at version %d but has no upcasters", et.tag.Entity, et.tag.Type, et.tag.Version)})
		case hi != et.tag.Version-1:
			errs = append(errs, &RegistrationError{Type: et.goType, Reason: fmt.Sprintf("entity %q type %q is at version %d but its upcasters stop at version %d", et.tag.Entity, et.tag.Type, et.tag.Version, hi+1)})
		}
	}
	slices.SortFunc(errs, func(a, b error) int { return strings.Compare(a.Error(), b.Error()) })
	return errors.Join(errs...)
}

func (m *registryMap) clone() *registryMap {
	return &registryMap{
		byType:    maps.Clone(m.byType),
		byName:    maps.Clone(m.byName),
		upcasters: maps.Clone(m.upcasters),
	}
}

// lookup returns the registration of an event value's Go type.
func (r *Registry) lookup(event any) (*eventType, error) {
	if event == nil {
		return nil, fmt.Errorf("%w: nil event", ErrInvalidEvent)
	}
	t := reflect.TypeOf(event)
	et, ok := r.state.Load().byType[t]
	if !ok {
		if t.Kind() == reflect.Pointer {
			return nil, fmt.Errorf("%w: record %v as a value, not a pointer", ErrInvalidEvent, t)
		}
		return nil, fmt.Errorf("%w: %v (call mire.Register)", ErrUnregistered, t)
	}
	return et, nil
}

// check validates an event's payload with its `validate` tags. Register
// made sure the type's own tags run; a panic can still come from a value
// held in an interface field, and is an error here, not a crash.
func (r *Registry) check(et *eventType, event any) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("%w: validate %v: %v", ErrInvalidEvent, et.goType, p)
		}
	}()
	err = r.validate.Struct(event)
	if err == nil {
		return nil
	}
	verr := &ValidationError{Type: et.goType, Err: err}
	var fields validator.ValidationErrors
	if errors.As(err, &fields) {
		for _, f := range fields {
			verr.Fields = append(verr.Fields, FieldError{Path: f.StructNamespace(), Tag: f.Tag(), Param: f.Param(), Value: f.Value()})
		}
	}
	return verr
}

// decode turns a stored payload into the registered Go value (not a
// pointer), and returns the type's current version (0 if it is not
// registered), the version it decodes to. Payloads at the current version
// are unmarshalled straight into the struct (the fast path); older ones go
// through the upcaster chain and mapstructure (the rare path).
func (r *Registry) decode(entity, typ string, schemaVersion int, data []byte) (any, int, error) {
	state := r.state.Load()
	et, ok := state.byName[eventName{entity, typ}]
	if !ok {
		return nil, 0, fmt.Errorf("%w: entity %q type %q", ErrUnregistered, entity, typ)
	}
	target := et.tag.Version
	ptr := reflect.New(et.goType)
	switch {
	case schemaVersion == target:
		if err := json.Unmarshal(data, ptr.Interface()); err != nil {
			return nil, target, fmt.Errorf("payload does not fit %v: %w", et.goType, err)
		}
	case schemaVersion < target:
		if err := state.upcast(et, schemaVersion, data, ptr.Interface()); err != nil {
			return nil, target, err
		}
	default:
		return nil, target, fmt.Errorf("stored schema version %d is newer than %v's version %d (written by newer code?)", schemaVersion, et.goType, target)
	}
	return ptr.Elem().Interface(), target, nil
}

// upcast runs the stored payload through the steps from version from to the
// type's current version and decodes the result into target.
func (m *registryMap) upcast(et *eventType, from int, data []byte, target any) error {
	var payload map[string]any
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	if err := dec.Decode(&payload); err != nil {
		return fmt.Errorf("payload is not a JSON object: %w", err)
	}
	if payload == nil {
		return fmt.Errorf("payload is null, not a JSON object")
	}
	name := eventName{et.tag.Entity, et.tag.Type}
	for v := from; v < et.tag.Version; v++ {
		step, ok := m.upcasters[upcastStep{name, v}]
		if !ok {
			return fmt.Errorf("no upcaster from version %d to %d", v, v+1)
		}
		next, err := step(payload)
		if err != nil {
			return fmt.Errorf("upcaster from version %d to %d: %w", v, v+1, err)
		}
		if next == nil {
			return fmt.Errorf("upcaster from version %d to %d returned a nil payload", v, v+1)
		}
		payload = next
	}
	md, err := mapstructure.NewDecoder(&mapstructure.DecoderConfig{
		DecodeHook: jsonCompatible,
		TagName:    "json",
		Squash:     true,
		Result:     target,
	})
	if err != nil {
		return fmt.Errorf("upcast payload: %w", err)
	}
	if err := md.Decode(payload); err != nil {
		return fmt.Errorf("upcast payload does not fit %v: %w", et.goType, err)
	}
	return nil
}

var (
	jsonUnmarshalerType = reflect.TypeFor[json.Unmarshaler]()
	textUnmarshalerType = reflect.TypeFor[encoding.TextUnmarshaler]()
)

// jsonCompatible makes mapstructure decode what json.Unmarshal would, so an
// upcast payload lands in the struct as a current one does: types with
// their own UnmarshalJSON (time.Time, say) or UnmarshalText (uuid.UUID) get
// the value through it, []byte comes from base64, and numbers headed for an
// interface (at any depth) become the float64s json would give.
func jsonCompatible(from, to reflect.Value) (any, error) {
	if !from.IsValid() || !to.CanAddr() {
		return from.Interface(), nil
	}
	ptr := to.Addr().Type()
	switch {
	case ptr.Implements(jsonUnmarshalerType):
		raw, err := json.Marshal(from.Interface())
		if err != nil {
			return nil, err
		}
		out := reflect.New(to.Type())
		if err := out.Interface().(json.Unmarshaler).UnmarshalJSON(raw); err != nil {
			return nil, err
		}
		return out.Elem().Interface(), nil
	case ptr.Implements(textUnmarshalerType) && from.Kind() == reflect.String:
		out := reflect.New(to.Type())
		if err := out.Interface().(encoding.TextUnmarshaler).UnmarshalText([]byte(from.String())); err != nil {
			return nil, err
		}
		return out.Elem().Interface(), nil
	case to.Type() == reflect.TypeFor[[]byte]() && from.Kind() == reflect.String:
		return base64.StdEncoding.DecodeString(from.String())
	case to.Kind() == reflect.Interface:
		return plainJSON(from.Interface())
	}
	return from.Interface(), nil
}

// plainJSON returns v with every json.Number in it, at any depth, turned
// into a float64.
func plainJSON(v any) (any, error) {
	switch v := v.(type) {
	case json.Number:
		return v.Float64()
	case map[string]any:
		for k, e := range v {
			p, err := plainJSON(e)
			if err != nil {
				return nil, err
			}
			v[k] = p
		}
	case []any:
		for i, e := range v {
			p, err := plainJSON(e)
			if err != nil {
				return nil, err
			}
			v[i] = p
		}
	}
	return v, nil
}
