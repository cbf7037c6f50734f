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
	row   []float64
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
	data := sc.data[:0]
	rows, seenFeatures, seenInstances := 0, false, false
	appendRow := func(row []float64) error {
		for _, v := range row {
			f := float32(v)
			if math.IsInf(float64(f), 0) || math.IsNaN(v) {
				return fmt.Errorf("%w: value %g does not fit FP32", errClient, v)
			}
			data = binary.LittleEndian.AppendUint32(data, math.Float32bits(f))
		}
		rows++
		return nil
	}
	if len(sc.row) != d {
		sc.row, sc.set = make([]float64, d), make([]bool, d)
	}
	row, set := sc.row, sc.set
	s := &scanner{b: body}
	err := s.object(func(key string) error {
		switch key {
		case "features":
			if seenFeatures {
				return fmt.Errorf("%w: \"features\" appears twice", errClient)
			}
			seenFeatures = true
			if err := readNamed(s, order, row, set); err != nil {
				return err
			}
			return appendRow(row)
		case "instances":
			if seenInstances {
				return fmt.Errorf("%w: \"instances\" appears twice", errClient)
			}
			seenInstances = true
			return s.array(func(i int) error {
				if i >= maxInstances {
					return fmt.Errorf("%w: more than %d instances", errClient, maxInstances)
				}
				var err error
				if s.peek() == '[' {
					err = readRow(s, order, row)
				} else {
					err = readNamed(s, order, row, set)
				}
				if err != nil {
					return fmt.Errorf("instance %d: %w", i, err)
				}
				return appendRow(row)
			})
		default:
			return fmt.Errorf("%w: unknown field %q (want \"features\" or \"instances\")", errClient, key)
		}
	})
	if err != nil {
		return guest.Tensor{}, err
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
	sc.data = data
	sc.shape = [2]int64{int64(rows), int64(d)}
	return guest.Tensor{Name: "input", DataType: "FP32", Shape: sc.shape[:], Data: data}, nil
}

// readRow reads an array of exactly len(order) numbers into row.
func readRow(s *scanner, order []string, row []float64) error {
	n := 0
	err := s.array(func(i int) error {
		if i >= len(order) {
			return fmt.Errorf("%w: more than %d values (%s)", errClient, len(order), strings.Join(order, ","))
		}
		v, err := s.num()
		row[i], n = v, i+1
		return err
	})
	if err == nil && n != len(order) {
		err = fmt.Errorf("%w: %d values, want %d (%s)", errClient, n, len(order), strings.Join(order, ","))
	}
	return err
}

// readNamed reads an object of every feature by name into row.
func readNamed(s *scanner, order []string, row []float64, set []bool) error {
	clear(set)
	err := s.object(func(key string) error {
		i := index(order, key)
		if i < 0 {
			return fmt.Errorf("%w: unknown feature %q", errClient, key)
		}
		v, err := s.num()
		if err != nil {
			return fmt.Errorf("feature %q: %w", key, err)
		}
		row[i], set[i] = v, true
		return nil
	})
	if err != nil {
		return err
	}
	for i, ok := range set {
		if !ok {
			return fmt.Errorf("%w: feature %q is missing", errClient, order[i])
		}
	}
	return nil
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

func index(xs []string, s string) int {
	for i, x := range xs {
		if x == s {
			return i
		}
	}
	return -1
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
