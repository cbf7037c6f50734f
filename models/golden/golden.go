// Package golden runs a model's golden examples: inputs with the outputs
// the model must reproduce (models.Golden). Nodes run them when they load
// a version, the coordinator's validation gate before a version may
// deploy, and the CLI reads them from files.
//
// It is a package of its own, not part of models, because it decodes
// golden tensors with the OIP JSON decoder (models/oip), which imports
// models.
package golden

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"

	"github.com/petrel-mesh/petrel/models"
	"github.com/petrel-mesh/petrel/models/oip"
)

// RunGolden runs each golden example on s and compares the outputs it
// names with the expected ones, within the example's tolerance. It stops
// at the first failure; the error says which example and, for a mismatch,
// which output and element ("golden example 1: output \"y\" element 3:
// 0.5, golden 0.25 (tolerance 0.001)").
func RunGolden(ctx context.Context, s models.Session, golden []models.Golden) error {
	for i, g := range golden {
		ins, err := GoldenTensors(g.Inputs)
		if err != nil {
			return fmt.Errorf("golden example %d inputs: %w", i, err)
		}
		want, err := GoldenTensors(g.Outputs)
		if err != nil {
			return fmt.Errorf("golden example %d outputs: %w", i, err)
		}
		names := make([]string, len(want))
		for j, w := range want {
			names[j] = w.Name
		}
		got, err := s.Run(ctx, ins, names)
		if err != nil {
			return fmt.Errorf("golden example %d: %w", i, err)
		}
		if len(got) != len(want) {
			return fmt.Errorf("golden example %d: the session returned %d outputs for the %d asked for", i, len(got), len(want))
		}
		for j := range want {
			if err := CompareTensors(&got[j], &want[j], g.Tolerance); err != nil {
				return fmt.Errorf("golden example %d: %w", i, err)
			}
		}
	}
	return nil
}

// RunInputs runs the inputs of each golden example on s without looking at
// the outputs: the check for examples of an earlier version, whose outputs
// a new version may legitimately change. The error says which example
// failed.
func RunInputs(ctx context.Context, s models.Session, golden []models.Golden) error {
	for i, g := range golden {
		ins, err := GoldenTensors(g.Inputs)
		if err != nil {
			return fmt.Errorf("golden example %d inputs: %w", i, err)
		}
		if _, err := s.Run(ctx, ins, nil); err != nil {
			return fmt.Errorf("golden example %d: %w", i, err)
		}
	}
	return nil
}

// GoldenTensors decodes golden tensors (JSON data, flattened row-major)
// into tensors, with the OIP JSON decoder's checks: known datatype, data
// that matches the shape and fits the datatype.
func GoldenTensors(gs []models.GoldenTensor) ([]models.Tensor, error) {
	// Reuse the OIP JSON decoder: a golden tensor is an OIP JSON input.
	body := []byte(`{"inputs":[`)
	for i, g := range gs {
		if len(bytes.TrimSpace(g.Data)) == 0 {
			return nil, fmt.Errorf("tensor %q has no data", g.Name)
		}
		if !json.Valid(g.Data) {
			return nil, fmt.Errorf("tensor %q: data is not valid JSON", g.Name)
		}
		if i > 0 {
			body = append(body, ',')
		}
		name, _ := json.Marshal(g.Name)           // strings always marshal
		dt, _ := json.Marshal(string(g.DataType)) // likewise
		shape := g.Shape
		if shape == nil {
			shape = []int64{}
		}
		sh, _ := json.Marshal(shape)
		body = fmt.Appendf(body, `{"name":%s,"datatype":%s,"shape":%s,"data":%s}`, name, dt, sh, g.Data)
	}
	body = append(body, "]}"...)
	req, err := oip.DecodeRequest(body, -1, oip.Limits{})
	if err != nil {
		return nil, err
	}
	return req.Inputs, nil
}

// CompareTensors checks got against want: same datatype and shape, and
// every element within tol (absolute) of the expected one. NaN matches
// NaN and equal infinities match. BYTES elements must be equal byte for
// byte. The error names the output and the first element that differs.
func CompareTensors(got, want *models.Tensor, tol float64) error {
	if got.DataType != want.DataType {
		return fmt.Errorf("output %q: datatype %s, golden %s", want.Name, got.DataType, want.DataType)
	}
	if !slices.Equal(got.Shape, want.Shape) {
		return fmt.Errorf("output %q: shape %v, golden %v", want.Name, got.Shape, want.Shape)
	}
	if want.DataType == models.Bytes {
		return compareBytes(got, want)
	}
	g, err := got.Float64s()
	if err != nil {
		return err
	}
	w, err := want.Float64s()
	if err != nil {
		return err
	}
	if len(g) != len(w) {
		return fmt.Errorf("output %q: %d elements, golden %d", want.Name, len(g), len(w))
	}
	for i := range w {
		if math.IsNaN(g[i]) && math.IsNaN(w[i]) {
			continue
		}
		if !(math.Abs(g[i]-w[i]) <= tol) && g[i] != w[i] { // != keeps equal infinities equal
			return fmt.Errorf("output %q element %d: %v, golden %v (tolerance %v)", want.Name, i, g[i], w[i], tol)
		}
	}
	return nil
}

func compareBytes(got, want *models.Tensor) error {
	g, err := splitBytes(got)
	if err != nil {
		return err
	}
	w, err := splitBytes(want)
	if err != nil {
		return err
	}
	if len(g) != len(w) {
		return fmt.Errorf("output %q: %d elements, golden %d", want.Name, len(g), len(w))
	}
	for i := range w {
		if !bytes.Equal(g[i], w[i]) {
			return fmt.Errorf("output %q element %d: %q, golden %q", want.Name, i, g[i], w[i])
		}
	}
	return nil
}

// splitBytes returns the elements of a BYTES tensor.
func splitBytes(t *models.Tensor) ([][]byte, error) {
	var out [][]byte
	b := t.Data
	for len(b) > 0 {
		if len(b) < 4 {
			return nil, fmt.Errorf("tensor %q: truncated BYTES length prefix", t.Name)
		}
		n := uint64(b[0]) | uint64(b[1])<<8 | uint64(b[2])<<16 | uint64(b[3])<<24
		b = b[4:]
		if uint64(len(b)) < n {
			return nil, fmt.Errorf("tensor %q: BYTES element %d needs %d bytes, %d left", t.Name, len(out), n, len(b))
		}
		out = append(out, b[:n])
		b = b[n:]
	}
	return out, nil
}

// ValidateGolden checks golden examples without running them: each has at
// least one input and one output, unique tensor names within its inputs
// and within its outputs, a finite non-negative tolerance, and tensors
// that decode (GoldenTensors). The error names the example and tensor.
func ValidateGolden(golden []models.Golden) error {
	for i, g := range golden {
		if len(g.Inputs) == 0 {
			return fmt.Errorf("golden example %d has no inputs", i)
		}
		if len(g.Outputs) == 0 {
			return fmt.Errorf("golden example %d has no outputs to compare", i)
		}
		if math.IsNaN(g.Tolerance) || math.IsInf(g.Tolerance, 0) || g.Tolerance < 0 {
			return fmt.Errorf("golden example %d: tolerance %v: want a finite number >= 0", i, g.Tolerance)
		}
		for _, part := range []struct {
			kind string
			ts   []models.GoldenTensor
		}{{"inputs", g.Inputs}, {"outputs", g.Outputs}} {
			seen := make(map[string]bool, len(part.ts))
			for j, t := range part.ts {
				if t.Name == "" {
					return fmt.Errorf("golden example %d %s: tensor %d has no name", i, part.kind, j)
				}
				if seen[t.Name] {
					return fmt.Errorf("golden example %d %s: %q appears twice", i, part.kind, t.Name)
				}
				seen[t.Name] = true
			}
			if _, err := GoldenTensors(part.ts); err != nil {
				return fmt.Errorf("golden example %d %s: %w", i, part.kind, err)
			}
		}
	}
	return nil
}

// ParseGoldenFile decodes a golden file: either a JSON array of examples
// or an object whose "golden" field is one (a manifest, for instance;
// other fields of the object are ignored). Unknown fields inside an
// example are refused, since they are most likely misspelt. The examples
// are checked with ValidateGolden, and a file without any is an error.
func ParseGoldenFile(b []byte) ([]models.Golden, error) {
	b = bytes.TrimSpace(b)
	if len(b) == 0 {
		return nil, errors.New("golden file is empty: want a JSON array of examples or {\"golden\": [...]}")
	}
	list := b
	switch b[0] {
	case '[':
	case '{':
		var obj map[string]json.RawMessage
		if err := json.Unmarshal(b, &obj); err != nil {
			return nil, fmt.Errorf("golden file: %w", err)
		}
		raw, ok := obj["golden"]
		if !ok {
			return nil, errors.New("golden file: object has no \"golden\" field: want a JSON array of examples or {\"golden\": [...]}")
		}
		list = bytes.TrimSpace(raw)
		if len(list) == 0 || list[0] != '[' {
			return nil, errors.New("golden file: \"golden\" is not an array of examples")
		}
	default:
		return nil, errors.New("golden file: want a JSON array of examples or {\"golden\": [...]}")
	}
	var gs []models.Golden
	dec := json.NewDecoder(bytes.NewReader(list))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&gs); err != nil {
		return nil, fmt.Errorf("golden file: %w", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, errors.New("golden file: unexpected data after the examples")
	}
	if len(gs) == 0 {
		return nil, errors.New("golden file has no examples")
	}
	if err := ValidateGolden(gs); err != nil {
		return nil, fmt.Errorf("golden file: %w", err)
	}
	return gs, nil
}
