package main

import (
	"encoding/json"
	"fmt"
	"strconv"
)

// A small JSON reader for the one request shape this transform accepts.
//
// encoding/json is correct but slow in a wasm guest (reflection, maps).
// The node runs guests with interruption checks (its deadline per call),
// and there every function call and every loop iteration pays for a check,
// so this reader scans strings eight bytes per iteration, parses numbers
// itself, converts no keys to strings and takes no closures. Strings with
// escapes are handed to encoding/json and numbers beyond the exact fast
// path to strconv, so both are decoded exactly as JSON says.

type scanner struct {
	b []byte
	i int
}

func (s *scanner) errf(format string, args ...any) error {
	return fmt.Errorf("%w: at byte %d: %s", errClient, s.i, fmt.Sprintf(format, args...))
}

// peek skips white space and returns the next byte, or 0 at the end.
func (s *scanner) peek() byte {
	b, i := s.b, s.i
	for i < len(b) {
		switch b[i] {
		case ' ', '\t', '\n', '\r':
			i++
			continue
		}
		s.i = i
		return b[i]
	}
	s.i = i
	return 0
}

func (s *scanner) unexpected(want byte) error {
	if s.i >= len(s.b) {
		return s.errf("unexpected end of body, want %q", want)
	}
	return s.errf("unexpected %q, want %q", s.b[s.i], want)
}

// special reports whether a byte ends the fast scan of a string: a quote,
// a backslash or a control character.
func special(c byte) bool { return c == '"' || c == '\\' || c < 0x20 }

// str reads a JSON string at s.i (after white space) and returns its
// content. Unescaped strings alias the body; the rest are decoded by
// encoding/json into a new buffer.
func (s *scanner) str() ([]byte, error) {
	if s.peek() != '"' {
		return nil, s.unexpected('"')
	}
	b := s.b
	start := s.i + 1
	i := start
	// Eight bytes per iteration while none of them is special.
	for i+8 <= len(b) && !special(b[i]) && !special(b[i+1]) && !special(b[i+2]) && !special(b[i+3]) &&
		!special(b[i+4]) && !special(b[i+5]) && !special(b[i+6]) && !special(b[i+7]) {
		i += 8
	}
	escaped := false
	for i < len(b) {
		c := b[i]
		switch {
		case c == '"':
			s.i = i + 1
			if !escaped {
				return b[start:i:i], nil
			}
			var v string
			if err := json.Unmarshal(b[start-1:i+1], &v); err != nil {
				s.i = start - 1
				return nil, s.errf("bad string: %v", err)
			}
			return []byte(v), nil
		case c == '\\':
			escaped = true
			i += 2
			continue
		case c < 0x20:
			s.i = i
			return nil, s.errf("control character in string")
		}
		i++
	}
	s.i = len(b)
	return nil, s.errf("unterminated string")
}

// pow10 holds the powers of ten that float32 represents exactly.
var pow10 = [...]float32{1, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10}

// num reads a JSON number as the float32 nearest to it. Numbers with at
// most seven significant digits and a small exponent (the usual features)
// are computed exactly, as one correctly rounded multiplication or division
// of two exact float32 values; the rest go to strconv.ParseFloat.
func (s *scanner) num() (float32, error) {
	s.peek()
	b, i := s.b, s.i
	start := i
	if i < len(b) && b[i] == '-' {
		i++
	}
	if i >= len(b) || b[i] < '0' || b[i] > '9' {
		return 0, s.errf("want a number")
	}
	var mant uint64
	exp, digits := 0, 0
	if b[i] == '0' {
		i++
		if i < len(b) && b[i] >= '0' && b[i] <= '9' {
			return 0, s.errf("number has a leading zero")
		}
	} else {
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			if digits < 19 {
				mant = mant*10 + uint64(b[i]-'0')
				digits++
			} else {
				exp++
			}
			i++
		}
	}
	if i < len(b) && b[i] == '.' {
		i++
		if i >= len(b) || b[i] < '0' || b[i] > '9' {
			s.i = i
			return 0, s.errf("want a digit after the decimal point")
		}
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			if digits < 19 {
				mant = mant*10 + uint64(b[i]-'0')
				if mant != 0 {
					digits++
				}
				exp--
			}
			i++
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		eneg := false
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			eneg = b[i] == '-'
			i++
		}
		if i >= len(b) || b[i] < '0' || b[i] > '9' {
			s.i = i
			return 0, s.errf("want a digit in the exponent")
		}
		e := 0
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			if e < 10000 {
				e = e*10 + int(b[i]-'0')
			}
			i++
		}
		if eneg {
			e = -e
		}
		exp += e
	}
	s.i = i
	if digits < 19 && mant < 1<<24 && exp >= -10 && exp <= 10 {
		f := float32(mant)
		if exp < 0 {
			f /= pow10[-exp]
		} else {
			f *= pow10[exp]
		}
		if b[start] == '-' {
			f = -f
		}
		return f, nil
	}
	v, err := strconv.ParseFloat(string(b[start:i]), 32)
	if err != nil {
		s.i = start
		return 0, s.errf("number %s does not fit FP32", b[start:i])
	}
	return float32(v), nil
}
