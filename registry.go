package mire

import (
	"errors"
	"fmt"
	"maps"
	"reflect"
	"sync"
	"sync/atomic"

	"github.com/go-playground/validator/v10"
)

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

// RegisterAlias adds to the default registry. See Registry.RegisterAlias.
func RegisterAlias(entity, oldType string, event any) error {
	return defaultRegistry.RegisterAlias(entity, oldType, event)
}

// MustRegisterAlias is RegisterAlias that panics on error, for use in init
// functions.
func MustRegisterAlias(entity, oldType string, event any) {
	defaultRegistry.MustRegisterAlias(entity, oldType, event)
}

// MustRegisterAlias is RegisterAlias that panics on error, for init.
func (r *Registry) MustRegisterAlias(entity, oldType string, event any) {
	if err := r.RegisterAlias(entity, oldType, event); err != nil {
		panic(err)
	}
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
