// Command features is an example Petrel pre-processing transform: it turns
// a JSON body of named features into the FP32 tensor "input" of shape
// [N, D], in a feature order fixed at build time.
//
// Accepted bodies (content type application/json, or empty):
//
//	{"features": {"sepal_length": 5.1, "sepal_width": 3.5, ...}}      → [1, D]
//	{"instances": [{"sepal_length": 5.1, ...}, [6.2, 2.9, 4.3, 1.3]]} → [N, D]
//
// Each instance is either an object with every feature named or an array
// of D numbers in feature order. Missing, unknown or non-numeric features
// are client errors. The order defaults to the four Iris features and is
// set with -ldflags "-X main.featureOrder=a,b,c".
//
// Build: GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared.
package main

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"strings"

	"github.com/petrel-mesh/petrel/models/wasm/guest"
)

// featureOrder is the comma-separated feature order (overridable at link
// time).
var featureOrder = "sepal_length,sepal_width,petal_length,petal_width"

// maxInstances bounds the batch a single request may carry.
const maxInstances = 4096

// errClient marks errors caused by the request body.
var errClient = errors.New("bad request")

// scratch holds the buffers of a transform, reused across calls so that a
// request allocates (almost) nothing in the guest. The tensor it returns
// aliases them: it is valid until the next call.
type scratch struct {
	data  []byte
	row   []float32
	set   []bool
	shape [2]int64
}

// transform turns a request body into the "input" tensor, with buffers of
// its own.
func transform(order []string, contentType string, body []byte) (guest.Tensor, error) {
	var sc scratch
	return sc.transform(order, contentType, body)
}

// transform turns a request body into the "input" tensor, reusing sc's
// buffers.
func (sc *scratch) transform(order []string, contentType string, body []byte) (guest.Tensor, error) {
	if !isJSON(contentType) {
		return guest.Tensor{}, fmt.Errorf("%w: content type %q is not JSON", errClient, contentType)
	}
	d := len(order)
	if len(sc.row) != d {
		sc.row, sc.set = make([]float32, d), make([]bool, d)
	}
	sc.data = sc.data[:0]
	rows, seenFeatures, seenInstances := 0, false, false
	s := &scanner{b: body}
	if s.peek() != '{' {
		return guest.Tensor{}, s.unexpected('{')
	}
	s.i++
	if s.peek() == '}' {
		s.i++
	} else {
		for {
			key, err := s.str()
			if err != nil {
				return guest.Tensor{}, err
			}
			if s.peek() != ':' {
				return guest.Tensor{}, s.unexpected(':')
			}
			s.i++
			switch string(key) {
			case "features":
				if seenFeatures {
					return guest.Tensor{}, fmt.Errorf("%w: \"features\" appears twice", errClient)
				}
				seenFeatures = true
				if err := sc.readNamed(s, order); err != nil {
					return guest.Tensor{}, err
				}
				rows++
			case "instances":
				if seenInstances {
					return guest.Tensor{}, fmt.Errorf("%w: \"instances\" appears twice", errClient)
				}
				seenInstances = true
				n, err := sc.readInstances(s, order)
				if err != nil {
					return guest.Tensor{}, err
				}
				rows += n
			default:
				return guest.Tensor{}, fmt.Errorf("%w: unknown field %q (want \"features\" or \"instances\")", errClient, key)
			}
			c := s.peek()
			s.i++
			if c == '}' {
				break
			}
			if c != ',' {
				s.i--
				return guest.Tensor{}, s.errf("want ',' or '}' in object")
			}
		}
	}
	if s.peek() != 0 {
		return guest.Tensor{}, fmt.Errorf("%w: trailing data after the JSON object", errClient)
	}
	switch {
	case seenFeatures && seenInstances:
		return guest.Tensor{}, fmt.Errorf("%w: give either \"features\" or \"instances\", not both", errClient)
	case rows == 0:
		return guest.Tensor{}, fmt.Errorf("%w: body has neither \"features\" nor any \"instances\"", errClient)
	}
	sc.shape = [2]int64{int64(rows), int64(d)}
	return guest.Tensor{Name: "input", DataType: "FP32", Shape: sc.shape[:], Data: sc.data}, nil
}

// readInstances reads an array of instances, appending a row for each,
// and returns how many there were.
func (sc *scratch) readInstances(s *scanner, order []string) (int, error) {
	if s.peek() != '[' {
		return 0, s.unexpected('[')
	}
	s.i++
	if s.peek() == ']' {
		s.i++
		return 0, nil
	}
	for n := 0; ; {
		if n >= maxInstances {
			return 0, fmt.Errorf("%w: more than %d instances", errClient, maxInstances)
		}
		var err error
		if s.peek() == '[' {
			err = sc.readRow(s, order)
		} else {
			err = sc.readNamed(s, order)
		}
		if err != nil {
			return 0, fmt.Errorf("instance %d: %w", n, err)
		}
		n++
		c := s.peek()
		s.i++
		if c == ']' {
			return n, nil
		}
		if c != ',' {
			s.i--
			return 0, s.errf("want ',' or ']' in array")
		}
	}
}

// readRow reads an array of exactly len(order) numbers and appends them as
// a row.
func (sc *scratch) readRow(s *scanner, order []string) error {
	s.i++ // the '[' peeked by the caller
	n := 0
	if s.peek() == ']' {
		s.i++
	} else {
		for {
			if n >= len(order) {
				return fmt.Errorf("%w: more than %d values (%s)", errClient, len(order), strings.Join(order, ","))
			}
			v, err := s.num()
			if err != nil {
				return err
			}
			sc.row[n] = v
			n++
			c := s.peek()
			s.i++
			if c == ']' {
				break
			}
			if c != ',' {
				s.i--
				return s.errf("want ',' or ']' in array")
			}
		}
	}
	if n != len(order) {
		return fmt.Errorf("%w: %d values, want %d (%s)", errClient, n, len(order), strings.Join(order, ","))
	}
	sc.appendRow()
	return nil
}

// readNamed reads an object of every feature by name and appends it as a
// row.
func (sc *scratch) readNamed(s *scanner, order []string) error {
	if s.peek() != '{' {
		return s.unexpected('{')
	}
	s.i++
	clear(sc.set)
	if s.peek() == '}' {
		s.i++
	} else {
		for {
			key, err := s.str()
			if err != nil {
				return err
			}
			i := index(order, key)
			if i < 0 {
				return fmt.Errorf("%w: unknown feature %q", errClient, key)
			}
			if s.peek() != ':' {
				return s.unexpected(':')
			}
			s.i++
			v, err := s.num()
			if err != nil {
				return fmt.Errorf("feature %q: %w", key, err)
			}
			sc.row[i], sc.set[i] = v, true
			c := s.peek()
			s.i++
			if c == '}' {
				break
			}
			if c != ',' {
				s.i--
				return s.errf("want ',' or '}' in object")
			}
		}
	}
	for i, ok := range sc.set {
		if !ok {
			return fmt.Errorf("%w: feature %q is missing", errClient, order[i])
		}
	}
	sc.appendRow()
	return nil
}

// appendRow appends sc.row to the tensor data (little-endian FP32).
func (sc *scratch) appendRow() {
	for _, v := range sc.row {
		sc.data = binary.LittleEndian.AppendUint32(sc.data, math.Float32bits(v))
	}
}

// isJSON accepts an empty content type, application/json and any +json
// type, with or without parameters.
func isJSON(ct string) bool {
	if i := strings.IndexByte(ct, ';'); i >= 0 {
		ct = ct[:i]
	}
	ct = strings.ToLower(strings.TrimSpace(ct))
	return ct == "" || ct == "application/json" || (strings.HasPrefix(ct, "application/") && strings.HasSuffix(ct, "+json"))
}

func index(xs []string, s []byte) int {
	for i, x := range xs {
		if eq(s, x) {
			return i
		}
	}
	return -1
}

// eq reports whether a and b hold the same bytes. It compares eight bytes
// at a time and the tail without a loop: the runtime's memequal loops once
// per byte, and in a guest with interruption checks each iteration counts.
func eq(a []byte, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for len(a) >= 8 {
		if binary.LittleEndian.Uint64(a) != le64(b) {
			return false
		}
		a, b = a[8:], b[8:]
	}
	if len(a) >= 4 {
		if binary.LittleEndian.Uint32(a) != le32(b) {
			return false
		}
		a, b = a[4:], b[4:]
	}
	if len(a) >= 2 {
		if a[0] != b[0] || a[1] != b[1] {
			return false
		}
		a, b = a[2:], b[2:]
	}
	return len(a) == 0 || a[0] == b[0]
}

func le64(s string) uint64 {
	_ = s[7]
	return uint64(s[0]) | uint64(s[1])<<8 | uint64(s[2])<<16 | uint64(s[3])<<24 |
		uint64(s[4])<<32 | uint64(s[5])<<40 | uint64(s[6])<<48 | uint64(s[7])<<56
}

func le32(s string) uint32 {
	_ = s[3]
	return uint32(s[0]) | uint32(s[1])<<8 | uint32(s[2])<<16 | uint32(s[3])<<24
}

func parseOrder(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

func main() {}
