package mire

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"reflect"
	"sync"
	"sync/atomic"

	"github.com/go-playground/validator/v10"
	"github.com/go-viper/mapstructure/v2"
)

// Upcaster turns a stored payload of one schema version into the payload of
// the next version up. It works on the decoded JSON object and may modify and
// return the map it is given.
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
// type. Registering the same Go type again is a no-op. On error nothing is
// registered.
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

// RegisterUpcaster adds the step that turns payloads of (entity, typ) stored
// at schema version from into version from+1. The event type must already be
// registered, from must be below its current version, and each step may be
// registered once.
func (r *Registry) RegisterUpcaster(entity, typ string, from int, fn Upcaster) error {
	if fn == nil {
		return fmt.Errorf("mire: upcaster for entity %q type %q from version %d is nil", entity, typ, from)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	next := r.state.Load().clone()
	key := eventName{entity, typ}
	et, ok := next.byName[key]
	if !ok || et.tag.Type != typ {
		return fmt.Errorf("%w: cannot add an upcaster for entity %q type %q: register the event type first", ErrUnregistered, entity, typ)
	}
	if from < 1 || from >= et.tag.Version {
		return fmt.Errorf("mire: upcaster for entity %q type %q from version %d: want 1 <= from < current version %d", entity, typ, from, et.tag.Version)
	}
	step := upcastStep{key, from}
	if _, dup := next.upcasters[step]; dup {
		return fmt.Errorf("mire: upcaster for entity %q type %q from version %d is already registered", entity, typ, from)
	}
	next.upcasters[step] = fn
	r.state.Store(next)
	return nil
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

// check validates an event's payload with its `validate` tags.
func (r *Registry) check(et *eventType, event any) error {
	err := r.validate.Struct(event)
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

// decode turns a stored payload into the registered Go value (not a pointer).
// Payloads at the current version are unmarshalled straight into the struct;
// older ones go through the upcaster chain and mapstructure.
func (r *Registry) decode(entity, typ string, schemaVersion int, data []byte) (any, error) {
	state := r.state.Load()
	et, ok := state.byName[eventName{entity, typ}]
	if !ok {
		return nil, fmt.Errorf("%w: entity %q type %q", ErrUnregistered, entity, typ)
	}
	ptr := reflect.New(et.goType)
	switch {
	case schemaVersion == et.tag.Version:
		if err := json.Unmarshal(data, ptr.Interface()); err != nil {
			return nil, fmt.Errorf("payload does not fit %v: %w", et.goType, err)
		}
	case schemaVersion < et.tag.Version:
		if err := state.upcast(et, schemaVersion, data, ptr.Interface()); err != nil {
			return nil, err
		}
	default:
		return nil, fmt.Errorf("stored schema version %d is newer than %v's version %d", schemaVersion, et.goType, et.tag.Version)
	}
	return ptr.Elem().Interface(), nil
}

func (m *registryMap) upcast(et *eventType, from int, data []byte, target any) error {
	var payload map[string]any
	if err := json.Unmarshal(data, &payload); err != nil {
		return fmt.Errorf("payload is not a JSON object: %w", err)
	}
	name := eventName{et.tag.Entity, et.tag.Type}
	for v := from; v < et.tag.Version; v++ {
		step, ok := m.upcasters[upcastStep{name, v}]
		if !ok {
			return fmt.Errorf("no upcaster from version %d to %d (target version %d)", v, v+1, et.tag.Version)
		}
		next, err := step(payload)
		if err != nil {
			return fmt.Errorf("upcaster from version %d to %d: %w", v, v+1, err)
		}
		payload = next
	}
	dec, err := mapstructure.NewDecoder(&mapstructure.DecoderConfig{
		TagName:          "json",
		Result:           target,
		WeaklyTypedInput: true,
		ErrorUnused:      false,
		Squash:           true,
	})
	if err != nil {
		return err
	}
	if err := dec.Decode(payload); err != nil {
		return fmt.Errorf("upcast payload (version %d) does not fit %v: %w", et.tag.Version, et.goType, err)
	}
	return nil
}
