package mire

import (
	"bytes"
	"encoding/json"
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// maxJSONDepth is the deepest nesting of objects and arrays encoding/json
// decodes (its scanner's limit). PostgreSQL stores deeper payloads, which
// would then make every load of their stream fail, so Record refuses them.
const maxJSONDepth = 10000

// checkStorable reports the first part of an encoded payload that jsonb
// cannot store or that json cannot load back: a string or key holding
// \u0000 or half a surrogate pair (jsonb refuses both, SQLSTATE 22P05 or
// 22P02), a number outside PostgreSQL's numeric range (22003; only a
// json.Number or json.RawMessage can hold one), or nesting deeper than
// maxJSONDepth. data is json.Marshal's output, so valid JSON; the scan is
// skipped when none of these can occur: no \u escape, no exponent, and too
// short to nest that deep or to spell a number with that many digits.
func checkStorable(data []byte) error {
	if len(data) <= maxJSONDepth && !bytes.Contains(data, []byte(`\u`)) && !hasExponent(data) {
		return nil
	}
	s := &storableScan{data: data}
	return s.value(0)
}

// hasExponent reports whether data may hold a number with an exponent: a
// digit followed by e or E (inside strings too; then the scan finds none).
func hasExponent(data []byte) bool {
	for i := 1; i < len(data); i++ {
		if c := data[i]; (c == 'e' || c == 'E') && data[i-1] >= '0' && data[i-1] <= '9' {
			return true
		}
	}
	return false
}

// PostgreSQL's numeric, which jsonb stores numbers as, holds at most 131072
// digits before the decimal point and 16383 after it (a base-10000 weight
// in an int16, a display scale in 14 bits), and refuses exponents from
// INT_MAX/2 up outright.
const (
	numericMaxIntDigits = 131072
	numericMaxScale     = 16383
	numericMaxExponent  = 1<<30 - 1
	numericMaxExpDigits = 10 // longer exponents are out of range anyway
)

// numericFits reports whether PostgreSQL's numeric can hold the JSON number
// num, following its input routine: the digits after the point, less the
// exponent, are its scale; the most significant non-zero digit's place
// decides its weight.
func numericFits(num []byte) bool {
	mantissa, expText, hasExp := bytes.Cut(bytes.ToLower(num), []byte("e"))
	mantissa = bytes.TrimPrefix(mantissa, []byte("-"))
	intPart, fracPart, _ := bytes.Cut(mantissa, []byte("."))
	exp := 0
	if hasExp {
		digits := bytes.TrimLeft(bytes.TrimLeft(expText, "+-"), "0")
		if len(digits) > numericMaxExpDigits {
			return false
		}
		e, err := strconv.Atoi(string(digits))
		if len(digits) > 0 && err != nil {
			return false
		}
		if bytes.HasPrefix(expText, []byte("-")) {
			e = -e
		}
		if e >= numericMaxExponent || e <= -numericMaxExponent {
			return false
		}
		exp = e
	}
	if len(fracPart)-exp > numericMaxScale {
		return false
	}
	all := append(append([]byte(nil), intPart...), fracPart...)
	lead := len(all) - len(bytes.TrimLeft(all, "0"))
	if lead == len(all) {
		return true // zero
	}
	place := len(intPart) - 1 - lead + exp // 0 for units, 1 for tens, -1 for tenths
	return place < numericMaxIntDigits
}

// storableScan walks encoded JSON, keeping the path to the current value
// for the error message.
type storableScan struct {
	data []byte
	i    int
	path []pathElem
}

// pathElem is one step of a path into a JSON document: an object key (raw
// JSON string, quotes included) or an array index.
type pathElem struct {
	key   []byte
	index int
}

// storableError is a part of a payload that cannot be stored, with the path
// to it.
type storableError struct {
	path    []pathElem
	problem string
}

func (e *storableError) Error() string {
	if len(e.path) == 0 {
		return e.problem
	}
	return fmt.Sprintf("field %s: %s", formatPath(e.path), e.problem)
}

// plainKey is a key formatPath writes without quotes.
var plainKey = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// formatPath writes a path as note, tags.k, tree.a[1] or tags["a b"],
// eliding all but the first four steps.
func formatPath(path []pathElem) string {
	var b strings.Builder
	for n, p := range path {
		if n == 4 {
			b.WriteString("...")
			break
		}
		if p.key == nil {
			fmt.Fprintf(&b, "[%d]", p.index)
			continue
		}
		var key string
		if json.Unmarshal(p.key, &key) != nil {
			key = string(p.key)
		}
		switch {
		case !plainKey.MatchString(key):
			fmt.Fprintf(&b, "[%s]", strconv.Quote(key))
		case n > 0:
			b.WriteString("." + key)
		default:
			b.WriteString(key)
		}
	}
	return b.String()
}

func (s *storableScan) fail(problem string, args ...any) error {
	return &storableError{path: append([]pathElem(nil), s.path...), problem: fmt.Sprintf(problem, args...)}
}

func (s *storableScan) skipSpace() {
	for s.i < len(s.data) && strings.IndexByte(" \t\r\n", s.data[s.i]) >= 0 {
		s.i++
	}
}

// value scans the value at s.i, nested depth containers deep.
func (s *storableScan) value(depth int) error {
	s.skipSpace()
	if s.i >= len(s.data) {
		return s.fail("unexpected end of JSON")
	}
	switch s.data[s.i] {
	case '{', '[':
		if depth+1 > maxJSONDepth {
			return s.fail("nesting deeper than %d levels, which encoding/json cannot decode", maxJSONDepth)
		}
		return s.container(depth + 1)
	case '"':
		_, err := s.str("string")
		return err
	}
	start := s.i
	for s.i < len(s.data) && strings.IndexByte(",]} \t\r\n", s.data[s.i]) < 0 {
		s.i++
	}
	if c := s.data[start]; (c == '-' || c >= '0' && c <= '9') && !numericFits(s.data[start:s.i]) {
		num := s.data[start:s.i]
		if len(num) > 40 {
			num = append(num[:37:37], "..."...)
		}
		return s.fail("number %s is outside the range of PostgreSQL's numeric, which jsonb stores numbers as", num)
	}
	return nil
}

// container scans the object or array at s.i.
func (s *storableScan) container(depth int) error {
	object := s.data[s.i] == '{'
	end := byte(']')
	if object {
		end = '}'
	}
	s.i++
	s.skipSpace()
	if s.i < len(s.data) && s.data[s.i] == end {
		s.i++
		return nil
	}
	for n := 0; ; n++ {
		elem := pathElem{index: n}
		if object {
			s.skipSpace()
			key, err := s.str("key")
			if err != nil {
				return err
			}
			elem.key = key
			s.skipSpace()
			if s.i >= len(s.data) || s.data[s.i] != ':' {
				return s.fail("malformed JSON object")
			}
			s.i++
		}
		s.path = append(s.path, elem)
		if err := s.value(depth); err != nil {
			return err
		}
		s.path = s.path[:len(s.path)-1]
		s.skipSpace()
		if s.i >= len(s.data) {
			return s.fail("unexpected end of JSON")
		}
		switch s.data[s.i] {
		case ',':
			s.i++
		case end:
			s.i++
			return nil
		default:
			return s.fail("malformed JSON")
		}
	}
}

// str scans the string at s.i (a value or, as what says, a key) and returns
// its raw JSON text, refusing \u0000 and unpaired surrogates.
func (s *storableScan) str(what string) ([]byte, error) {
	start := s.i
	if s.i >= len(s.data) || s.data[s.i] != '"' {
		return nil, s.fail("malformed JSON string")
	}
	s.i++
	highAt := -1 // the offset of a high surrogate escape awaiting its low half
	for s.i < len(s.data) {
		c := s.data[s.i]
		switch {
		case c == '"':
			s.i++
			if highAt >= 0 {
				return nil, s.unpaired(what, start, highAt)
			}
			return s.data[start:s.i], nil
		case c == '\\' && s.i+1 < len(s.data) && s.data[s.i+1] == 'u' && s.i+6 <= len(s.data):
			code, err := strconv.ParseUint(string(s.data[s.i+2:s.i+6]), 16, 32)
			if err != nil {
				return nil, s.fail("malformed \\u escape in %s", what)
			}
			switch {
			case highAt >= 0 && (code < 0xdc00 || code > 0xdfff):
				return nil, s.unpaired(what, start, highAt)
			case highAt >= 0:
				highAt = -1
			case code == 0:
				return nil, s.fail(`%s %s holds \u0000 (NUL), which PostgreSQL's jsonb cannot store`, what, s.excerpt(start))
			case code >= 0xd800 && code <= 0xdbff:
				highAt = s.i
			case code >= 0xdc00 && code <= 0xdfff:
				return nil, s.unpaired(what, start, s.i)
			}
			s.i += 6
		case c == '\\':
			if highAt >= 0 {
				return nil, s.unpaired(what, start, highAt)
			}
			s.i += 2
		default:
			if highAt >= 0 {
				return nil, s.unpaired(what, start, highAt)
			}
			s.i++
		}
	}
	return nil, s.fail("unterminated JSON string")
}

func (s *storableScan) unpaired(what string, start, at int) error {
	return s.fail(`%s %s holds %s without the other half of its surrogate pair, which PostgreSQL's jsonb cannot store`, what, s.excerpt(start), s.data[at:at+6])
}

// excerpt returns the JSON text of the string starting at start, cut to
// about 40 bytes.
func (s *storableScan) excerpt(start int) string {
	i := start + 1
	for i < len(s.data) && s.data[i] != '"' {
		if s.data[i] == '\\' {
			i++
		}
		i++
	}
	text := s.data[start:min(i+1, len(s.data))]
	if len(text) > 40 {
		return string(text[:40]) + `..."`
	}
	return string(text)
}
