package oip

import (
	"fmt"
	"strconv"
	"unicode/utf8"
)

// maxValueDepth bounds the nesting of arrays and objects in values the
// decoder does not interpret (parameters, skipped fields).
const maxValueDepth = 32

// scanner is a minimal JSON tokenizer over one byte slice. It never
// allocates except when a string has escapes (which must be rewritten) and
// when formatting errors.
type scanner struct {
	b        []byte
	i        int
	sentinel error // ErrBadRequest or ErrBadResponse
}

// fail returns an error wrapping the sentinel.
func (s *scanner) fail(format string, a ...any) error {
	return fmt.Errorf("%w: %s", s.sentinel, fmt.Sprintf(format, a...))
}

// syntax returns a JSON syntax error at the current offset.
func (s *scanner) syntax(format string, a ...any) error {
	return fmt.Errorf("%w: invalid JSON at offset %d: %s", s.sentinel, s.i, fmt.Sprintf(format, a...))
}

// ws skips whitespace.
func (s *scanner) ws() {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

// peek skips whitespace and returns the next byte, or 0 at the end.
func (s *scanner) peek() byte {
	s.ws()
	if s.i < len(s.b) {
		return s.b[s.i]
	}
	return 0
}

// describe names the value at the current position for error messages.
func (s *scanner) describe() string {
	s.ws()
	if s.i >= len(s.b) {
		return "end of input"
	}
	switch c := s.b[s.i]; {
	case c == '"':
		return "a string"
	case c == '[':
		return "an array"
	case c == '{':
		return "an object"
	case c == '-' || c >= '0' && c <= '9' || c == 't' || c == 'f' || c == 'n' || c == 'N' || c == 'I':
		j := s.i
		for j < len(s.b) && j-s.i < 32 {
			c := s.b[j]
			if c == ',' || c == ']' || c == '}' || c == ' ' || c == '\t' || c == '\n' || c == '\r' {
				break
			}
			j++
		}
		return strconv.Quote(string(s.b[s.i:j]))
	default:
		return fmt.Sprintf("character %q", rune(c))
	}
}

// next moves to the next member or element of the object or array being
// read, which closes with end. It consumes the separating comma, or the
// closing byte, in which case it returns false. When it returns true, the
// position is at a non-space byte (s.b[s.i] is safe to read).
func (s *scanner) next(end byte, first bool) (bool, error) {
	c := s.peek()
	if c == end && s.i < len(s.b) {
		s.i++
		return false, nil
	}
	if !first {
		if c != ',' || s.i >= len(s.b) {
			return false, s.syntax("expected ',' or '%c', found %s", end, s.describe())
		}
		s.i++
		s.ws()
	}
	if s.i >= len(s.b) {
		return false, s.syntax("unexpected end of input")
	}
	return true, nil
}

// key reads an object key and the colon after it.
func (s *scanner) key() ([]byte, error) {
	if s.peek() != '"' {
		return nil, s.syntax("expected a string key, found %s", s.describe())
	}
	k, err := s.str()
	if err != nil {
		return nil, err
	}
	if s.peek() != ':' {
		return nil, s.syntax("expected ':' after key %q, found %s", k, s.describe())
	}
	s.i++
	return k, nil
}

// isNull consumes a null literal if one is next.
func (s *scanner) isNull() bool {
	if s.peek() == 'n' && len(s.b)-s.i >= 4 && string(s.b[s.i:s.i+4]) == "null" {
		s.i += 4
		return true
	}
	return false
}

// lit consumes the literal word if it is next.
func (s *scanner) lit(word string) bool {
	if len(s.b)-s.i >= len(word) && string(s.b[s.i:s.i+len(word)]) == word {
		s.i += len(word)
		return true
	}
	return false
}

// boolean reads true or false.
func (s *scanner) boolean() (v, ok bool) {
	switch s.peek() {
	case 't':
		return true, s.lit("true")
	case 'f':
		return false, s.lit("false")
	}
	return false, false
}

// str reads a string. Without escapes the result aliases the input;
// with escapes it is a new slice.
func (s *scanner) str() ([]byte, error) {
	if s.peek() != '"' {
		return nil, s.syntax("expected a string, found %s", s.describe())
	}
	start := s.i + 1
	for j := start; j < len(s.b); j++ {
		switch c := s.b[j]; {
		case c == '"':
			s.i = j + 1
			return s.b[start:j:j], nil
		case c == '\\':
			return s.appendStr(nil)
		case c < 0x20:
			s.i = j
			return nil, s.syntax("control character %#02x in string", c)
		}
	}
	s.i = len(s.b)
	return nil, s.syntax("unterminated string")
}

// appendStr appends the unescaped contents of the string at the current
// position (which must be '"') to dst.
func (s *scanner) appendStr(dst []byte) ([]byte, error) {
	b := s.b
	j := s.i + 1
	for j < len(b) {
		c := b[j]
		switch {
		case c == '"':
			s.i = j + 1
			return dst, nil
		case c == '\\':
			if j+1 >= len(b) {
				s.i = j
				return dst, s.syntax("unterminated string")
			}
			switch e := b[j+1]; e {
			case '"', '\\', '/':
				dst = append(dst, e)
			case 'b':
				dst = append(dst, '\b')
			case 'f':
				dst = append(dst, '\f')
			case 'n':
				dst = append(dst, '\n')
			case 'r':
				dst = append(dst, '\r')
			case 't':
				dst = append(dst, '\t')
			case 'u':
				r, ok := hex4(b[j+2:])
				if !ok {
					s.i = j
					return dst, s.syntax(`invalid \u escape`)
				}
				j += 6
				if r >= 0xd800 && r < 0xdc00 && j+1 < len(b) && b[j] == '\\' && b[j+1] == 'u' {
					if r2, ok := hex4(b[j+2:]); ok && r2 >= 0xdc00 && r2 < 0xe000 {
						r = 0x10000 + (r-0xd800)<<10 + (r2 - 0xdc00)
						j += 6
					}
				}
				if r >= 0xd800 && r < 0xe000 {
					r = utf8.RuneError // lone surrogate
				}
				dst = utf8.AppendRune(dst, r)
				continue
			default:
				s.i = j
				return dst, s.syntax("invalid escape %q in string", []byte{'\\', e})
			}
			j += 2
		case c < 0x20:
			s.i = j
			return dst, s.syntax("control character %#02x in string", c)
		default:
			k := j + 1
			for k < len(b) && b[k] != '"' && b[k] != '\\' && b[k] >= 0x20 {
				k++
			}
			dst = append(dst, b[j:k]...)
			j = k
		}
	}
	s.i = len(b)
	return dst, s.syntax("unterminated string")
}

// skipStr validates the string at the current position without keeping it.
func (s *scanner) skipStr() error {
	b := s.b
	j := s.i + 1
	for j < len(b) {
		c := b[j]
		switch {
		case c == '"':
			s.i = j + 1
			return nil
		case c == '\\':
			if j+1 >= len(b) {
				break
			}
			switch b[j+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				j += 2
			case 'u':
				if _, ok := hex4(b[j+2:]); !ok {
					s.i = j
					return s.syntax(`invalid \u escape`)
				}
				j += 6
			default:
				s.i = j
				return s.syntax("invalid escape %q in string", b[j:j+2])
			}
			continue
		case c < 0x20:
			s.i = j
			return s.syntax("control character %#02x in string", c)
		}
		j++
	}
	s.i = len(b)
	return s.syntax("unterminated string")
}

func hex4(b []byte) (rune, bool) {
	if len(b) < 4 {
		return 0, false
	}
	var r rune
	for _, c := range b[:4] {
		switch {
		case c >= '0' && c <= '9':
			c -= '0'
		case c >= 'a' && c <= 'f':
			c -= 'a' - 10
		case c >= 'A' && c <= 'F':
			c -= 'A' - 10
		default:
			return 0, false
		}
		r = r<<4 | rune(c)
	}
	return r, true
}

// num reads a number as JSON spells it and returns its text; isInt is
// true when it has neither fraction nor exponent.
func (s *scanner) num() (tok []byte, isInt bool, err error) {
	s.ws()
	b := s.b
	start := s.i
	j := start
	if j < len(b) && b[j] == '-' {
		j++
	}
	switch {
	case j < len(b) && b[j] == '0':
		j++
	case j < len(b) && b[j] >= '1' && b[j] <= '9':
		j++
		for j < len(b) && b[j] >= '0' && b[j] <= '9' {
			j++
		}
	default:
		return nil, false, s.syntax("expected a number, found %s", s.describe())
	}
	isInt = true
	if j < len(b) && b[j] == '.' {
		j++
		if j >= len(b) || b[j] < '0' || b[j] > '9' {
			s.i = j
			return nil, false, s.syntax("expected a digit after the decimal point")
		}
		for j < len(b) && b[j] >= '0' && b[j] <= '9' {
			j++
		}
		isInt = false
	}
	if j < len(b) && (b[j] == 'e' || b[j] == 'E') {
		j++
		if j < len(b) && (b[j] == '+' || b[j] == '-') {
			j++
		}
		if j >= len(b) || b[j] < '0' || b[j] > '9' {
			s.i = j
			return nil, false, s.syntax("expected a digit in the exponent")
		}
		for j < len(b) && b[j] >= '0' && b[j] <= '9' {
			j++
		}
		isInt = false
	}
	s.i = j
	return b[start:j], isInt, nil
}

// nonFinite reads the literals NaN, Infinity, -Infinity, Inf and -Inf that
// Triton reads and writes for non-finite floats, if one is next.
func (s *scanner) nonFinite() (float64, bool) {
	switch s.peek() {
	case 'N':
		if s.lit("NaN") {
			return nanValue, true
		}
	case 'I':
		if s.lit("Infinity") || s.lit("Inf") {
			return posInf, true
		}
	case '-':
		if s.lit("-Infinity") || s.lit("-Inf") {
			return negInf, true
		}
	}
	return 0, false
}

// skip validates and skips one value of any kind.
func (s *scanner) skip(depth int) error {
	switch c := s.peek(); c {
	case '{', '[':
		if depth >= maxValueDepth {
			return s.syntax("nesting deeper than %d levels", maxValueDepth)
		}
		end := byte('}')
		if c == '[' {
			end = ']'
		}
		s.i++
		for first := true; ; first = false {
			more, err := s.next(end, first)
			if err != nil || !more {
				return err
			}
			if c == '{' {
				if _, err := s.key(); err != nil {
					return err
				}
			}
			if err := s.skip(depth + 1); err != nil {
				return err
			}
		}
	case '"':
		return s.skipStr()
	case 't':
		if s.lit("true") {
			return nil
		}
	case 'f':
		if s.lit("false") {
			return nil
		}
	case 'n':
		if s.lit("null") {
			return nil
		}
	default:
		if _, ok := s.nonFinite(); ok {
			return nil
		}
		if c == '-' || c >= '0' && c <= '9' {
			_, _, err := s.num()
			return err
		}
	}
	return s.syntax("expected a value, found %s", s.describe())
}

// value parses any JSON value into Go values: map[string]any, []any,
// string, bool, nil, int64 for integers that fit, float64 otherwise.
func (s *scanner) value(depth int) (any, error) {
	switch c := s.peek(); c {
	case '{':
		if depth >= maxValueDepth {
			return nil, s.syntax("nesting deeper than %d levels", maxValueDepth)
		}
		s.i++
		m := map[string]any{}
		for first := true; ; first = false {
			more, err := s.next('}', first)
			if err != nil {
				return nil, err
			}
			if !more {
				return m, nil
			}
			k, err := s.key()
			if err != nil {
				return nil, err
			}
			if _, dup := m[string(k)]; dup {
				return nil, s.fail("duplicate key %q", k)
			}
			v, err := s.value(depth + 1)
			if err != nil {
				return nil, err
			}
			m[string(k)] = v
		}
	case '[':
		if depth >= maxValueDepth {
			return nil, s.syntax("nesting deeper than %d levels", maxValueDepth)
		}
		s.i++
		a := []any{}
		for first := true; ; first = false {
			more, err := s.next(']', first)
			if err != nil {
				return nil, err
			}
			if !more {
				return a, nil
			}
			v, err := s.value(depth + 1)
			if err != nil {
				return nil, err
			}
			a = append(a, v)
		}
	case '"':
		b, err := s.str()
		return string(b), err
	case 't', 'f':
		if v, ok := s.boolean(); ok {
			return v, nil
		}
	case 'n':
		if s.lit("null") {
			return nil, nil
		}
	default:
		if c == '-' || c >= '0' && c <= '9' {
			start := s.i
			tok, isInt, err := s.num()
			if err != nil {
				return nil, err
			}
			if isInt {
				if v, err := strconv.ParseInt(string(tok), 10, 64); err == nil {
					return v, nil
				}
			}
			f, err := strconv.ParseFloat(string(tok), 64)
			if err != nil {
				s.i = start
				return nil, s.syntax("number %s is out of range", tok)
			}
			return f, nil
		}
	}
	return nil, s.syntax("expected a value, found %s", s.describe())
}
