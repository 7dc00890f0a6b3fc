package mire

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
)

// Upcaster turns a stored payload of one schema version into the payload of
// the next version up. It works on the decoded JSON object (numbers arrive
// as json.Number, so large integers keep every digit) and may modify and
// return the map it is given. The last step's map is encoded back to JSON
// and decoded into the struct with json.Unmarshal, as a current payload is,
// so values an upcaster adds may be anything encoding/json encodes.
// Returning an error makes the load or read fail with a *DecodeError that
// wraps it.
type Upcaster func(payload map[string]any) (map[string]any, error)

type upcastStep struct {
	name eventName
	from int
}

// RegisterUpcaster adds to the default registry. See Registry.RegisterUpcaster.
func RegisterUpcaster(entity, typ string, from int, fn Upcaster) error {
	return defaultRegistry.RegisterUpcaster(entity, typ, from, fn)
}

// MustRegisterUpcaster is RegisterUpcaster that panics on error, for use in
// init functions.
func MustRegisterUpcaster(entity, typ string, from int, fn Upcaster) {
	defaultRegistry.MustRegisterUpcaster(entity, typ, from, fn)
}

// MustRegisterUpcaster is RegisterUpcaster that panics on error, for init.
func (r *Registry) MustRegisterUpcaster(entity, typ string, from int, fn Upcaster) {
	if err := r.RegisterUpcaster(entity, typ, from, fn); err != nil {
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

// upcast runs the stored payload through the steps from version from to the
// type's current version and decodes the result into target.
//
// The result is encoded back to JSON and decoded with json.Unmarshal, the
// decoder of the fast path, so an upcast payload lands in the struct
// exactly as a current one would: the same overflow errors, the same
// case-insensitive key matching, the same UnmarshalJSON and UnmarshalText
// calls. The encoding follows jsonb's text layout (keys ordered by length,
// then bytes; ", " and ": " separators), so an identity upcast of a stored
// payload gives its stored text back: the order decides which of two keys
// that fold alike wins, and a json.RawMessage field gets the same bytes.
func (m *registryMap) upcast(et *eventType, from int, data []byte, target any) error {
	var payload map[string]any
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	if err := dec.Decode(&payload); err != nil {
		return fmt.Errorf("payload is not a JSON object: %w", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return fmt.Errorf("payload is not a JSON object: data after the object")
	}
	if payload == nil {
		return errNullPayload
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
	upcast, err := appendJSONB(nil, payload, 0)
	if err != nil {
		return fmt.Errorf("upcast payload cannot be encoded as JSON: %w", err)
	}
	if err := json.Unmarshal(upcast, target); err != nil {
		return fmt.Errorf("upcast payload does not fit %v: %w", et.goType, err)
	}
	return nil
}
