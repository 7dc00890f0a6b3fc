package mire

import (
	"fmt"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"sync"
)

// MaxSchemaVersion is the highest schema version an event's `version` tag
// key may give. Versions count payload changes, so real types stay far
// below it; the bound keeps a typo from making a version that the database's
// 32-bit column would truncate, or an upcaster chain too long to check.
const MaxSchemaVersion = 10000

// eventTag is the compiled form of an event struct's `mire` tag.
type eventTag struct {
	Entity  string
	Type    string
	Version int
	Aliases []string
}

var (
	eventMarker = reflect.TypeFor[Event]()
	entityName  = regexp.MustCompile(`^[a-z][a-z0-9_]{0,62}$`)
	typeName    = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_.]{0,126}$`)
	versionText = regexp.MustCompile(`^[1-9][0-9]{0,4}$`) // at most 99999; MaxSchemaVersion is checked after
)

// tagCache holds the parsed tag of each event type: reflect.Type -> tagResult.
var tagCache sync.Map

type tagResult struct {
	tag eventTag
	err error
}

// parseEventType returns the compiled tag of event struct type t, parsing it
// once and caching the result (errors included).
func parseEventType(t reflect.Type) (eventTag, error) {
	if cached, ok := tagCache.Load(t); ok {
		r := cached.(tagResult)
		return r.tag, r.err
	}
	tag, err := compileEventType(t)
	tagCache.Store(t, tagResult{tag, err})
	return tag, err
}

func compileEventType(t reflect.Type) (eventTag, error) {
	if t == nil {
		return eventTag{}, &RegistrationError{Type: t, Reason: "nil is not an event type"}
	}
	if t.Kind() != reflect.Struct {
		return eventTag{}, &RegistrationError{Type: t, Reason: fmt.Sprintf("an event must be a struct, not %s", t.Kind())}
	}
	field, ok := markerField(t)
	if !ok {
		return eventTag{}, &RegistrationError{Type: t, Reason: "it does not embed mire.Event"}
	}
	raw, ok := field.Tag.Lookup("mire")
	if !ok {
		return eventTag{}, &RegistrationError{Type: t, Reason: "the embedded mire.Event has no `mire` tag"}
	}
	tag, err := parseTag(raw)
	if err != nil {
		return eventTag{}, &RegistrationError{Type: t, Reason: fmt.Sprintf("tag %q: %v", raw, err)}
	}
	return tag, nil
}

// markerField finds the directly embedded mire.Event field.
func markerField(t reflect.Type) (reflect.StructField, bool) {
	for i := range t.NumField() {
		f := t.Field(i)
		if f.Anonymous && f.Type == eventMarker {
			return f, true
		}
	}
	return reflect.StructField{}, false
}

// parseTag parses the `mire` tag grammar: comma-separated key=value pairs.
func parseTag(raw string) (eventTag, error) {
	tag := eventTag{Version: 1}
	seen := map[string]bool{}
	for part := range strings.SplitSeq(raw, ",") {
		key, value, ok := strings.Cut(strings.TrimSpace(part), "=")
		key, value = strings.TrimSpace(key), strings.TrimSpace(value)
		if !ok || key == "" {
			return tag, fmt.Errorf("%q is not key=value", part)
		}
		if seen[key] {
			return tag, fmt.Errorf("key %q given twice", key)
		}
		seen[key] = true
		switch key {
		case "entity":
			if !entityName.MatchString(value) {
				return tag, fmt.Errorf("entity %q must match %s", value, entityName)
			}
			tag.Entity = value
		case "type":
			if !typeName.MatchString(value) {
				return tag, fmt.Errorf("type %q must match %s", value, typeName)
			}
			tag.Type = value
		case "version":
			v, err := strconv.Atoi(value)
			if !versionText.MatchString(value) || err != nil || v > MaxSchemaVersion {
				return tag, fmt.Errorf("version %q must be a whole number from 1 to %d", value, MaxSchemaVersion)
			}
			tag.Version = v
		case "alias":
			for alias := range strings.SplitSeq(value, "|") {
				if !typeName.MatchString(alias) {
					return tag, fmt.Errorf("alias %q must match %s", alias, typeName)
				}
				tag.Aliases = append(tag.Aliases, alias)
			}
		default:
			return tag, fmt.Errorf("unknown key %q (want entity, type, version, alias)", key)
		}
	}
	if tag.Entity == "" {
		return tag, fmt.Errorf("missing entity")
	}
	if tag.Type == "" {
		return tag, fmt.Errorf("missing type")
	}
	return tag, nil
}
