package mire

// What PostgreSQL's jsonb gives back: the text layout the upcast path
// re-encodes payloads in (upcast.go). What it cannot store is storable.go.

import (
	"cmp"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
)

// appendJSONB appends v, a decoded JSON value that upcasters may have
// changed, as jsonb writes its text: object keys ordered by length and then
// by bytes, ", " between elements and ": " after keys, strings escaped as
// PostgreSQL escapes them. Values of other Go types an upcaster put in go
// through json.Marshal.
func appendJSONB(b []byte, v any, depth int) ([]byte, error) {
	if depth > maxJSONDepth {
		return nil, fmt.Errorf("nesting deeper than %d levels (or a map that contains itself)", maxJSONDepth)
	}
	switch v := v.(type) {
	case nil:
		return append(b, "null"...), nil
	case bool:
		return strconv.AppendBool(b, v), nil
	case string:
		return appendJSONBString(b, v), nil
	case map[string]any:
		keys := slices.SortedFunc(maps.Keys(v), func(x, y string) int {
			return cmp.Or(cmp.Compare(len(x), len(y)), strings.Compare(x, y))
		})
		b = append(b, '{')
		for n, k := range keys {
			if n > 0 {
				b = append(b, ", "...)
			}
			b = append(appendJSONBString(b, k), ": "...)
			var err error
			if b, err = appendJSONB(b, v[k], depth+1); err != nil {
				return nil, err
			}
		}
		return append(b, '}'), nil
	case []any:
		b = append(b, '[')
		for n, e := range v {
			if n > 0 {
				b = append(b, ", "...)
			}
			var err error
			if b, err = appendJSONB(b, e, depth+1); err != nil {
				return nil, err
			}
		}
		return append(b, ']'), nil
	}
	raw, err := json.Marshal(v) // json.Number (checked to be a number), and Go values
	if err != nil {
		return nil, err
	}
	return append(b, raw...), nil
}

// appendJSONBString appends s as a JSON string the way PostgreSQL's
// escape_json writes it.
func appendJSONBString(b []byte, s string) []byte {
	b = append(b, '"')
	for i := range len(s) {
		switch c := s[i]; c {
		case '"':
			b = append(b, `\"`...)
		case '\\':
			b = append(b, `\\`...)
		case '\b':
			b = append(b, `\b`...)
		case '\f':
			b = append(b, `\f`...)
		case '\n':
			b = append(b, `\n`...)
		case '\r':
			b = append(b, `\r`...)
		case '\t':
			b = append(b, `\t`...)
		default:
			if c < ' ' {
				b = fmt.Appendf(b, `\u%04x`, c)
			} else {
				b = append(b, c)
			}
		}
	}
	return append(b, '"')
}
