package mire

import (
	"fmt"
	"reflect"
	"strings"

	"github.com/go-playground/validator/v10"
)

// checkEventStruct checks what Register needs of an event struct beyond its
// `mire` tag: that encoding/json would store some of its fields, and that
// its `validate` tags can run. Both mistakes would otherwise surface only
// later, as payloads stored as {} or as a panic in Record.
func checkEventStruct(v *validator.Validate, t reflect.Type) error {
	if n := t.NumField() - 1; n > 0 && !encodesFields(t, map[reflect.Type]bool{}) {
		return &RegistrationError{Type: t, Reason: fmt.Sprintf(`none of its %d fields besides mire.Event is encoded as JSON (unexported, or tagged json:"-"), so every payload would be stored as {}`, n)}
	}
	if err := checkValidateTags(v, t); err != nil {
		return &RegistrationError{Type: t, Reason: "validate tags: " + err.Error()}
	}
	return nil
}

// encodesFields reports whether encoding/json encodes at least one field of
// struct type t, following its rules: exported fields not tagged "-", and
// the fields promoted from embedded structs (even unexported ones).
func encodesFields(t reflect.Type, seen map[reflect.Type]bool) bool {
	if seen[t] {
		return false
	}
	seen[t] = true
	for i := range t.NumField() {
		f := t.Field(i)
		tag := f.Tag.Get("json")
		if tag == "-" {
			continue
		}
		name, _, _ := strings.Cut(tag, ",")
		if f.Anonymous {
			ft := f.Type
			if ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			if ft.Kind() == reflect.Struct && name == "" {
				if encodesFields(ft, seen) {
					return true
				}
				continue
			}
			if !f.IsExported() && ft.Kind() != reflect.Struct {
				continue
			}
			return true
		}
		if f.IsExported() {
			return true
		}
	}
	return false
}

// checkValidateTags runs the validator over two values of t under recover:
// the zero value, and a sample whose pointers, slices and maps hold one
// element and whose scalars are not zero, so that tags behind omitempty,
// dive and nil pointers run too. validator/v10 reports a tag naming no
// validator, a parameter it cannot parse or a rule on the wrong kind of
// field by panicking while it validates; the validation errors themselves
// are expected (the sample is nonsense) and ignored.
func checkValidateTags(v *validator.Validate, t reflect.Type) error {
	msg := validatePanic(v, t)
	if msg == "" {
		return nil
	}
	// Name the field: the first whose own one-field struct panics the same
	// way (a cross-field rule may panic differently without its siblings).
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() || f.Type == eventMarker {
			continue
		}
		probe := reflect.StructOf([]reflect.StructField{{Name: f.Name, Type: f.Type, Tag: f.Tag}})
		if validatePanic(v, probe) == msg {
			return fmt.Errorf("field %s: %s", f.Name, msg)
		}
	}
	return fmt.Errorf("%s", msg)
}

// validatePanic returns the message of the panic validating a zero or a
// sample value of struct type t causes, or "" if neither panics.
func validatePanic(v *validator.Validate, t reflect.Type) string {
	for _, value := range []reflect.Value{reflect.New(t).Elem(), sampleValue(t)} {
		if msg := validateRecovered(v, value.Interface()); msg != "" {
			return msg
		}
	}
	return ""
}

// validateRecovered validates event and returns the message of the panic it
// causes, or "".
func validateRecovered(v *validator.Validate, event any) (msg string) {
	defer func() {
		if p := recover(); p != nil {
			msg = fmt.Sprint(p)
		}
	}()
	_ = v.Struct(event)
	return ""
}

// sampleValue returns a value of t in which every settable field, element
// and pointer target reachable without recursion is filled in.
func sampleValue(t reflect.Type) reflect.Value {
	v := reflect.New(t).Elem()
	fillSample(v, map[reflect.Type]bool{}, 0)
	return v
}

// sampleDepth bounds how deep fillSample goes; validator's own recursion
// through a sample this deep exercises every tag that a type declares.
const sampleDepth = 16

func fillSample(v reflect.Value, onPath map[reflect.Type]bool, depth int) {
	t := v.Type()
	if depth > sampleDepth || onPath[t] {
		return
	}
	onPath[t] = true
	defer delete(onPath, t)
	switch t.Kind() {
	case reflect.Bool:
		v.SetBool(true)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		v.SetInt(1)
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		v.SetUint(1)
	case reflect.Float32, reflect.Float64:
		v.SetFloat(1)
	case reflect.Complex64, reflect.Complex128:
		v.SetComplex(1)
	case reflect.String:
		v.SetString("a")
	case reflect.Pointer:
		if onPath[t.Elem()] {
			return
		}
		p := reflect.New(t.Elem())
		fillSample(p.Elem(), onPath, depth+1)
		v.Set(p)
	case reflect.Slice:
		s := reflect.MakeSlice(t, 1, 1)
		fillSample(s.Index(0), onPath, depth+1)
		v.Set(s)
	case reflect.Array:
		for i := range min(t.Len(), 2) {
			fillSample(v.Index(i), onPath, depth+1)
		}
	case reflect.Map:
		key, elem := reflect.New(t.Key()).Elem(), reflect.New(t.Elem()).Elem()
		fillSample(key, onPath, depth+1)
		fillSample(elem, onPath, depth+1)
		m := reflect.MakeMapWithSize(t, 1)
		m.SetMapIndex(key, elem)
		v.Set(m)
	case reflect.Struct:
		for i := range t.NumField() {
			if f := v.Field(i); f.CanSet() {
				fillSample(f, onPath, depth+1)
			}
		}
	}
}
