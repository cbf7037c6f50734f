package main

import (
	"encoding/json"
	"fmt"
	"strconv"
)

// A small JSON reader for the one request shape this transform accepts.
// encoding/json is correct but slow in a wasm guest (reflection, maps); this
// reader keeps a request to a few microseconds. Strings with escapes are
// handed to encoding/json, so they are decoded exactly as JSON says.

type scanner struct {
	b []byte
	i int
}

func (s *scanner) errf(format string, args ...any) error {
	return fmt.Errorf("%w: at byte %d: %s", errClient, s.i, fmt.Sprintf(format, args...))
}

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

// peek skips white space and returns the next byte, or 0 at the end.
func (s *scanner) peek() byte {
	s.ws()
	if s.i < len(s.b) {
		return s.b[s.i]
	}
	return 0
}

func (s *scanner) expect(c byte) error {
	if s.peek() != c {
		if s.i >= len(s.b) {
			return s.errf("unexpected end of body, want %q", c)
		}
		return s.errf("unexpected %q, want %q", s.b[s.i], c)
	}
	s.i++
	return nil
}

// str reads a JSON string.
func (s *scanner) str() (string, error) {
	if err := s.expect('"'); err != nil {
		return "", err
	}
	start, escaped := s.i, false
	for s.i < len(s.b) {
		c := s.b[s.i]
		switch {
		case c == '\\':
			escaped = true
			s.i += 2
			continue
		case c == '"':
			raw := s.b[start:s.i]
			s.i++
			if !escaped {
				return string(raw), nil
			}
			var v string
			if err := json.Unmarshal(s.b[start-1:s.i], &v); err != nil {
				return "", s.errf("bad string: %v", err)
			}
			return v, nil
		case c < 0x20:
			return "", s.errf("control character in string")
		}
		s.i++
	}
	return "", s.errf("unterminated string")
}

// num reads a JSON number.
func (s *scanner) num() (float64, error) {
	s.ws()
	start := s.i
	for s.i < len(s.b) {
		c := s.b[s.i]
		if (c < '0' || c > '9') && c != '-' && c != '+' && c != '.' && c != 'e' && c != 'E' {
			break
		}
		s.i++
	}
	lit := s.b[start:s.i]
	if len(lit) == 0 || (lit[0] != '-' && (lit[0] < '0' || lit[0] > '9')) {
		return 0, s.errf("want a number")
	}
	if d := lit; (d[0] == '0' && len(d) > 1 && d[1] >= '0' && d[1] <= '9') ||
		(d[0] == '-' && len(d) > 2 && d[1] == '0' && d[2] >= '0' && d[2] <= '9') {
		return 0, s.errf("number %q has a leading zero", lit)
	}
	v, err := strconv.ParseFloat(string(lit), 64)
	if err != nil {
		return 0, s.errf("bad number %q", lit)
	}
	return v, nil
}

// object calls f for each key of a JSON object; f must read the value.
func (s *scanner) object(f func(key string) error) error {
	if err := s.expect('{'); err != nil {
		return err
	}
	if s.peek() == '}' {
		s.i++
		return nil
	}
	for {
		k, err := s.str()
		if err != nil {
			return err
		}
		if err := s.expect(':'); err != nil {
			return err
		}
		if err := f(k); err != nil {
			return err
		}
		switch s.peek() {
		case ',':
			s.i++
		case '}':
			s.i++
			return nil
		default:
			return s.errf("want ',' or '}' in object")
		}
	}
}

// array calls f for each element of a JSON array; f must read the element.
func (s *scanner) array(f func(i int) error) error {
	if err := s.expect('['); err != nil {
		return err
	}
	if s.peek() == ']' {
		s.i++
		return nil
	}
	for i := 0; ; i++ {
		if err := f(i); err != nil {
			return err
		}
		switch s.peek() {
		case ',':
			s.i++
		case ']':
			s.i++
			return nil
		default:
			return s.errf("want ',' or ']' in array")
		}
	}
}
